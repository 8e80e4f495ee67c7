# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.change_policy on the controller: the publisher is the account running the play."""

from __future__ import annotations

import os

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.policy_store import (
    CHANGE_POLICY_SPEC,
    publish_policy,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = CHANGE_POLICY_SPEC
    operation = staticmethod(publish_policy)

    def build_context(self, sor, params, task_vars):
        # a relative src is looked up next to the playbook first, like the gate's policy
        src = params.get("src")
        playbook_dir = task_vars.get("playbook_dir")
        if src and not os.path.isabs(src) and playbook_dir and os.path.exists(os.path.join(playbook_dir, src)):
            params = dict(params, src=os.path.join(playbook_dir, src))
        return super(ActionModule, self).build_context(sor, params, task_vars)
