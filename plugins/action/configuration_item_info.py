# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.configuration_item_info on the controller."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb import (
    CONFIGURATION_ITEM_INFO_SPEC,
    configuration_item_info,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = CONFIGURATION_ITEM_INFO_SPEC
    operation = staticmethod(configuration_item_info)
    READS_ONLY = True  # from postgresql_read_dsn when configured
