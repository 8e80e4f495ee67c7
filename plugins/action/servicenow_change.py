# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.servicenow_change on the controller (the hosts' CIs come from the system of record)."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.standard_change import (
    SERVICENOW_CHANGE_SPEC,
    servicenow_change,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = SERVICENOW_CHANGE_SPEC
    operation = staticmethod(servicenow_change)
