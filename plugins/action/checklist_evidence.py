# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.checklist_evidence on the controller."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.checklist_evidence import (
    CHECKLIST_EVIDENCE_SPEC,
    record_evidence,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = CHECKLIST_EVIDENCE_SPEC
    operation = staticmethod(record_evidence)
