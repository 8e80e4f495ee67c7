# -*- coding: utf-8 -*-
"""A system of record put back to the schema an older collection left, for upgrade tests.

Entries appended before rolling back must be sealed as that version sealed them (``format=1``
before migration 6): the columns of entry format 2 go away with the rollback.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema

#: what undoes a migration besides dropping the tables it creates (``schema.tables_until`` finds those)
UNDO = {
    6: ["ALTER TABLE ledger DROP COLUMN %s" % column for column in ("entry_format", "salt", "payload_root", "redactions")],
    # SQLite drops no column that an index uses: the index first
    7: ["DROP INDEX change_events_kind", "ALTER TABLE change_events DROP COLUMN kind"],
}


def roll_back(cursor, version):
    """Inside a write transaction: undo every migration after ``version`` (its rows in schema_migrations too)."""
    later = sorted((number for number, _description, _steps in schema.MIGRATIONS if number > version), reverse=True)
    for number in later:
        for statement in UNDO.get(number, ()):
            cursor.execute(statement)
    for table in sorted(schema.tables_until(schema.LATEST_VERSION) - schema.tables_until(version)):
        cursor.execute("DROP TABLE %s" % table)
    cursor.execute("DELETE FROM schema_migrations WHERE version > %d" % version)
