# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.ledger_redact on the controller, where the spool and the register's templates are."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import (
    LEDGER_REDACT_MUTUALLY_EXCLUSIVE,
    LEDGER_REDACT_REQUIRED_ONE_OF,
    LEDGER_REDACT_REQUIRED_TOGETHER,
    LEDGER_REDACT_SPEC,
    redact_ledger,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction, ansible_cfg_path
from ansible_collections.changeops.itsm.plugins.plugin_utils.register_render import RegisterRenderer


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = LEDGER_REDACT_SPEC
    MUTUALLY_EXCLUSIVE = LEDGER_REDACT_MUTUALLY_EXCLUSIVE
    REQUIRED_ONE_OF = LEDGER_REDACT_REQUIRED_ONE_OF
    REQUIRED_TOGETHER = LEDGER_REDACT_REQUIRED_TOGETHER
    operation = staticmethod(redact_ledger)

    def build_context(self, sor, params, task_vars):
        context = super(ActionModule, self).build_context(sor, params, task_vars)
        context.register_renderer = RegisterRenderer()
        context.config_file = ansible_cfg_path()
        return context
