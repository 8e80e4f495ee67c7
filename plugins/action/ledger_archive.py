# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.ledger_archive on the controller, where the key, the witnesses and the archives are."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.archives import LEDGER_ARCHIVE_SPEC, archive_ledger
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction, ansible_cfg_path


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = LEDGER_ARCHIVE_SPEC
    operation = staticmethod(archive_ledger)

    def build_context(self, sor, params, task_vars):
        context = super(ActionModule, self).build_context(sor, params, task_vars)
        context.config_file = ansible_cfg_path()
        return context
