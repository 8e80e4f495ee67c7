# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.change_policy_info on the controller."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.policy_store import (
    CHANGE_POLICY_INFO_SPEC,
    query_policies,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = CHANGE_POLICY_INFO_SPEC
    operation = staticmethod(query_policies)
    READS_ONLY = True  # from postgresql_read_dsn when configured
