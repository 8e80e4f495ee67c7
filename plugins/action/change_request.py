# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.change_request on the controller."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import (
    CHANGE_REQUEST_SPEC,
    ensure_change_request,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = CHANGE_REQUEST_SPEC
    operation = staticmethod(ensure_change_request)
