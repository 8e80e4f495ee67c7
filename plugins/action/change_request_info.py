# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.change_request_info on the controller."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import (
    CHANGE_REQUEST_INFO_SPEC,
    query_change_requests,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = CHANGE_REQUEST_INFO_SPEC
    operation = staticmethod(query_change_requests)
    READS_ONLY = True  # from postgresql_read_dsn when configured
