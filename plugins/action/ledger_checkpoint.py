# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.ledger_checkpoint on the controller, where the key and the witnesses are."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.checkpoints import LEDGER_CHECKPOINT_SPEC, checkpoint_ledger
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction, ansible_cfg_path


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = LEDGER_CHECKPOINT_SPEC
    operation = staticmethod(checkpoint_ledger)

    def build_context(self, sor, params, task_vars):
        context = super(ActionModule, self).build_context(sor, params, task_vars)
        context.config_file = ansible_cfg_path()
        return context
