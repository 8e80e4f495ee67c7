# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.register_host on the controller, with the host's facts from task_vars."""

from __future__ import annotations

from ansible.errors import AnsibleError

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb import REGISTER_HOST_SPEC, register_host
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import collect_facts
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = REGISTER_HOST_SPEC
    operation = staticmethod(register_host)

    def build_context(self, sor, params, task_vars):
        context = super(ActionModule, self).build_context(sor, params, task_vars)
        # Gathered or cached facts, plus ansible_* host vars for plays that
        # run with gather_facts: false; templated only where they hold Jinja.
        context.facts = collect_facts(task_vars, template=self._template_quietly)
        return context

    def _template_quietly(self, value):
        # A connection variable that cannot be templated here is not a fact
        # anyone maps; it must not fail the registration.
        try:
            return self._templar.template(value)
        except AnsibleError:
            return value
