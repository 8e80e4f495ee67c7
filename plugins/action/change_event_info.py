# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.change_event_info on the controller."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.change_events import (
    CHANGE_EVENT_INFO_MUTUALLY_EXCLUSIVE,
    CHANGE_EVENT_INFO_SPEC,
    query_change_events,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = CHANGE_EVENT_INFO_SPEC
    operation = staticmethod(query_change_events)
    READS_ONLY = True  # from postgresql_read_dsn when configured
    MUTUALLY_EXCLUSIVE = CHANGE_EVENT_INFO_MUTUALLY_EXCLUSIVE

    def reads_only(self, params):
        # a decision is looked up right after the gate wrote it (a rescue): on the primary, never a lagging replica
        return self.READS_ONLY and params.get("decision_id") is None
