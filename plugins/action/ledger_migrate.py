# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.ledger_migrate on the controller."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.ledger_migrate import LEDGER_MIGRATE_SPEC, migrate_ledger
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import SystemOfRecordAction


class ActionModule(SystemOfRecordAction):
    ARGUMENT_SPEC = LEDGER_MIGRATE_SPEC
    operation = staticmethod(migrate_ledger)
