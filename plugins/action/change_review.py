# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.change_review on the controller."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.change_register import CHANGE_REVIEW_SPEC, record_review
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = CHANGE_REVIEW_SPEC
    operation = staticmethod(record_review)
