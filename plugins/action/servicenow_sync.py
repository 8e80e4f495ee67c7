# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.servicenow_sync on the controller."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.operations import (
    SERVICENOW_SYNC_MUTUALLY_EXCLUSIVE,
    SERVICENOW_SYNC_SPEC,
    servicenow_sync,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = SERVICENOW_SYNC_SPEC
    MUTUALLY_EXCLUSIVE = SERVICENOW_SYNC_MUTUALLY_EXCLUSIVE
    operation = staticmethod(servicenow_sync)
