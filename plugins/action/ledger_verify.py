# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.ledger_verify on the controller."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.change_events import LEDGER_VERIFY_SPEC, verify_ledger
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction, ansible_cfg_path


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = LEDGER_VERIFY_SPEC
    operation = staticmethod(verify_ledger)

    def opens_system_of_record(self, params):
        # ledger: false checks archive files alone (offline), without opening (or creating) a ledger
        return params.get("ledger", True)

    def build_context(self, sor, params, task_vars):
        context = super(ActionModule, self).build_context(sor, params, task_vars)
        # checkpoint and witness settings are read from the same ansible.cfg as the recorder's
        context.config_file = ansible_cfg_path()
        return context
