# -*- coding: utf-8 -*-
"""A system of record put back to the schema an older collection left, for upgrade tests.

Entries appended before rolling back must be sealed as that version sealed them (``format=1``
before migration 6): the columns of entry format 2 go away with the rollback.
"""

from __future__ import annotations

import sqlite3

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema

#: what undoes a migration besides dropping the tables it creates (``schema.tables_until`` finds those): statements,
#: or a function of the version rolled back to that gives them
UNDO = {
    6: ["ALTER TABLE ledger DROP COLUMN %s" % column for column in ("entry_format", "salt", "payload_root", "redactions")],
    # SQLite drops no column that an index uses: the index first
    7: ["DROP INDEX change_events_kind", "ALTER TABLE change_events DROP COLUMN kind"],
    # the review service's free-text index (SQLite: a virtual table the CREATE TABLE scan does not see)
    11: ["DROP TABLE IF EXISTS change_list_words"],
    # metric_ci_next back to migration 14's shape, unless the rollback drops it (its rows do not matter: migration 16
    # makes it again)
    schema.version_of(schema.METRIC_NEXT_INCREMENTAL_MIGRATION): lambda version: [] if version < schema.version_of(
        schema.METRIC_NEXT_MIGRATION) else ["DROP TABLE metric_ci_next"] + schema.statements_for("BIGINT", next(
            migration for migration in schema.MIGRATIONS if migration[1] == schema.METRIC_NEXT_MIGRATION)),
    # the covering indexes of migration 18 back to their earlier columns (migrations 12 to 14), on the tables the
    # rollback keeps
    schema.version_of(schema.METRIC_FAILURE_ROWS_MIGRATION): lambda version: [
        statement for table, statements in (
            ("metric_changes", ["DROP INDEX metric_changes_failed",
                                "CREATE INDEX metric_changes_failed ON metric_changes (status_failed, started_at)",
                                "ALTER TABLE metric_changes DROP COLUMN failed_status",
                                "ALTER TABLE metric_changes DROP COLUMN failed_environment"]),
            ("metric_ci_next", ["DROP INDEX metric_ci_next_run",
                                "CREATE INDEX metric_ci_next_run ON metric_ci_next (run_id)"]),
            ("metric_changes", ["DROP INDEX metric_changes_run_deployment"]),
            ("metric_days", ["ALTER TABLE metric_days DROP COLUMN lead_packed"]),
            ("ci_changes", ["DROP INDEX ci_changes_ci_time",
                            "CREATE INDEX ci_changes_ci_time ON ci_changes (ci_id, started_at)"]))
        if table in schema.tables_until(version) for statement in statements],
    # migration 19's indexes, unless the rollback drops their table
    schema.version_of(schema.METRIC_DEPLOYMENT_STARTS_MIGRATION): lambda version: (
        ["DROP INDEX metric_ci_next_deployment_starts", "DROP INDEX metric_ci_next_near_emergencies"]
        if "metric_ci_next" in schema.tables_until(version) else []),
}
#: the same for PostgreSQL only (SQLite has nothing of these migrations to undo)
UNDO_POSTGRESQL = {
    # the stored word vector back to migration 11's expression index, unless the rollback drops change_list
    schema.version_of(schema.PG_SEARCH_VECTOR_MIGRATION): lambda version: [] if version < 11 else [
        "DROP INDEX change_list_search", "ALTER TABLE change_list DROP COLUMN search"] + [
        statement for statement in schema.statements_for("BIGINT", next(
            migration for migration in schema.MIGRATIONS if migration[0] == 11)) if "change_list_words" in statement],
    # migration 21's autovacuum settings back to the server's defaults, on the tables the rollback keeps
    schema.version_of(schema.METRIC_TABLES_VACUUM_MIGRATION): lambda version: [
        "ALTER TABLE %s RESET (autovacuum_vacuum_insert_threshold, autovacuum_vacuum_insert_scale_factor)" % table
        for table in schema.INSERT_VACUUMED_TABLES if table in schema.tables_until(version)],
}


def roll_back(cursor, version):
    """Inside a write transaction: undo every migration after ``version`` (its rows in schema_migrations too)."""
    later = sorted((number for number, _description, _steps in schema.MIGRATIONS if number > version), reverse=True)
    # the tables first: an index of a dropped table goes with it (PostgreSQL's free-text index)
    for table in sorted(schema.tables_until(schema.LATEST_VERSION) - schema.tables_until(version)):
        cursor.execute("DROP TABLE %s" % table)
    postgresql = not isinstance(cursor, sqlite3.Cursor)
    for number in later:
        for undo in (UNDO.get(number, ()), UNDO_POSTGRESQL.get(number, ()) if postgresql else ()):
            for statement in undo(version) if callable(undo) else undo:
                cursor.execute(statement)
    cursor.execute("DELETE FROM schema_migrations WHERE version > %d" % version)
