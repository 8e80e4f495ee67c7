# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.standard_change_candidates_info on the controller."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.candidates import (
    STANDARD_CHANGE_CANDIDATES_INFO_SPEC,
    candidates_info,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = STANDARD_CHANGE_CANDIDATES_INFO_SPEC
    operation = staticmethod(candidates_info)
