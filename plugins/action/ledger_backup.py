# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.ledger_backup on the controller, where the system of record and its backups are."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.ledger_backup import LEDGER_BACKUP_SPEC, backup_ledger
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = LEDGER_BACKUP_SPEC
    operation = staticmethod(backup_ledger)
