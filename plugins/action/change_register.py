# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.change_register on the controller, where its templates are."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.change_register import (
    CHANGE_REGISTER_SPEC,
    generate_register_operation,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction
from ansible_collections.changeops.itsm.plugins.plugin_utils.register_render import RegisterRenderer


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = CHANGE_REGISTER_SPEC
    operation = staticmethod(generate_register_operation)
    READS_ONLY = True  # from postgresql_read_dsn when configured; the page says which server it read

    def build_context(self, sor, params, task_vars):
        context = super(ActionModule, self).build_context(sor, params, task_vars)
        context.register_renderer = RegisterRenderer()
        return context
