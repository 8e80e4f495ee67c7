# -*- coding: utf-8 -*-
"""Upgrading a system of record whose query tables an older collection filled (every backend).

The query tables are a cache of the ledger kept by projections.py. When what a projection derives
from an entry changes, a migration replays the ledger into them, so an upgraded ledger verifies
instead of having every row an older version computed reported as altered.
"""

from __future__ import annotations

import pytest

from support.schema_history import roll_back

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema


def ci_created(ci_id, name, environment):
    # entries as the older version sealed them (format 1: it had no payload commitments)
    return Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": name, "class": "server",
                                                                      "environment": environment},
                                       "identities": {}}, format=1)


def as_written_by_an_older_version(sor, statements):
    """Rows as an older projection rule left them, and the schema at the version before the replay."""
    replay = max(version for version, _description, steps in schema.MIGRATIONS if schema.REPLAY_LEDGER in steps)
    with sor._write_transaction() as cursor:
        for statement in statements:
            cursor.execute(statement)
        # and without the migrations from the replay on, which the upgrade applies again
        roll_back(cursor, replay - 1)
    sor.close()


def test_opening_an_older_schema_replays_the_ledger_into_the_query_tables(open_sor):
    sor = open_sor()
    sor.append([ci_created("ci-1", "web01", "production"), ci_created("ci-2", "web02", "staging")])
    as_written_by_an_older_version(sor, ["UPDATE configuration_items SET environment = 'stale'",
                                         "DELETE FROM configuration_items WHERE ci_id = 'ci-2'"])

    upgraded = open_sor()
    assert [(ci["ci_id"], ci["environment"]) for ci in upgraded.find_cis()] == [
        ("ci-1", "production"), ("ci-2", "staging")]
    report = upgraded.verify(projections=True)
    assert report.valid and report.projections_checked, report.summary()
    assert upgraded._query("SELECT MAX(version) FROM schema_migrations")[0][0] == schema.LATEST_VERSION


@pytest.mark.tampers_query_tables
def test_an_entry_the_replay_refuses_stops_the_upgrade_naming_it(open_sor):
    sor = open_sor()
    sor.append([ci_created("ci-1", "web01", "production")])
    # a link to a CI that does not exist: the ci.changed_by_run projection refuses it
    as_written_by_an_older_version(sor, [
        "INSERT INTO ledger (seq, entry_id, at, kind, subject, actor, data, prev_hash, hash) VALUES"
        " (2, 'e-2', '2026-01-01T00:00:00.000000Z', 'ci.changed_by_run', 'ci-gone', 'test',"
        " '{\"ci_id\":\"ci-gone\",\"host\":\"x\",\"run_id\":\"r\"}', 'p', 'h')",
        "UPDATE configuration_items SET environment = 'stale'"])

    with pytest.raises(ConfigurationError) as caught:
        open_sor().find_cis()  # the schema is checked when the store is first used
    assert "replaying ledger entry 2 (ci.changed_by_run)" in str(caught.value)
    assert "CI ci-gone does not exist" in str(caught.value)


def test_runs_classified_before_the_one_definition_of_a_change_are_replayed(open_sor):
    """Migration 4: a CMDB-only run was 'no-change' and its changed_host_count Ansible's; replayed, it is
    'record-only' and changed no host, and the ledger verifies."""
    sor = open_sor()
    run = "run-cmdb"
    sor.append([
        Entry("run.started", run, {"run_id": run, "check_mode": False}, format=1),
        Entry("run.result", run, {"run_id": run, "play_id": "p", "host": "localhost", "item": None,
                                  "status": "changed", "changed": True,
                                  "task": {"uuid": "t1", "name": "register", "action": "changeops.itsm.register_host",
                                           "check_mode": False}}, format=1),
        Entry("run.finished", run, {"run_id": run, "outcome": "successful"}, format=1)])
    assert sor.get_change_event(run)["authorisation"] == "record-only"
    as_written_by_an_older_version(sor, [
        "UPDATE change_events SET authorisation = 'no-change', changed_host_count = 1 WHERE run_id = 'run-cmdb'"])

    upgraded = open_sor()
    event = upgraded.get_change_event(run)
    assert (event["authorisation"], event["changed_host_count"]) == ("record-only", 0)
    assert upgraded.verify(projections=True).valid


def test_an_upgrade_through_several_replaying_migrations_replays_once_after_the_last(open_sor, monkeypatch):
    """Every replay uses this version's projection rules, which write columns later migrations add
    (change_events.kind, migration 7): a schema-3 ledger with a run replays once, after migration 8,
    and is then what a new ledger would hold."""
    sor = open_sor()
    run = "run-old"
    sor.append([Entry("run.started", run, {"run_id": run, "check_mode": False, "playbooks": ["site.yml"]}, format=1),
                Entry("run.finished", run, {"run_id": run, "outcome": "successful"}, format=1)])
    with sor._write_transaction() as cursor:
        roll_back(cursor, 3)
    sor.close()
    replays = []
    original = type(sor)._replay_ledger

    def counting(self, cursor, batch=2000, until=None):
        replays.append(until)
        return original(self, cursor, batch=batch, until=until)

    monkeypatch.setattr(type(sor), "_replay_ledger", counting)
    upgraded = open_sor()
    event = upgraded.get_change_event(run)
    replaying = [version for version, _description, steps in schema.MIGRATIONS if schema.REPLAY_LEDGER in steps]
    assert replays == [replaying[-1]]
    assert (event["kind"], event["status"], event["authorisation"]) == ("playbook", "successful", "no-change")
    assert upgraded.verify(projections=True).valid
    assert [step[1] for step in schema.upgrade_steps(3)] == [
        version == replaying[-1] for version, _description, _steps in schema.MIGRATIONS if version > 3]


def test_a_filled_columns_step_is_its_columns_then_its_filling_and_what_an_archive_load_fills():
    """A ``FilledColumns`` step is declared once: the migration's SQL in place (its columns added, then their
    filling, or its Python step after the migration's SQL), and what loading an older archive's state fills."""
    sql_fill = schema.FilledColumns("t", (("a", "TEXT"), ("b", "INTEGER NOT NULL DEFAULT 0")), "UPDATE t SET a = 'x'")
    python_fill = schema.FilledColumns("t", (("c", "TEXT"),), schema.BACKFILL_METRIC_LEADS_PACKED)
    migration = (99, "a test migration", ["CREATE TABLE t (id {int})", sql_fill, "CREATE INDEX t_a ON t (a)",
                                          python_fill])
    assert schema.statements_for("INTEGER", migration) == [
        "CREATE TABLE t (id INTEGER)", "ALTER TABLE t ADD COLUMN a TEXT",
        "ALTER TABLE t ADD COLUMN b INTEGER NOT NULL DEFAULT 0", "UPDATE t SET a = 'x'", "CREATE INDEX t_a ON t (a)",
        "ALTER TABLE t ADD COLUMN c TEXT"]
    assert schema.backfills_metric_leads_packed(migration)
    assert not schema.backfills_metric_leads_packed((99, "no Python step", [sql_fill]))
    assert schema.tables_until(schema.LATEST_VERSION) >= {step.table for step in schema.filled_columns()}

    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import metric_rollups, projection_check

    assert {table: [columns for columns, _fill in filled] for table, filled in projection_check.FILLED_BY_MIGRATION.items()} == {
        "metric_changes": [("failed_status", "failed_environment")], "metric_days": [("lead_packed",)]}
    assert projection_check.FILLED_BY_MIGRATION["metric_changes"][0][1] == schema.FILL_FAILED_FACTS
    assert projection_check.FILLED_BY_MIGRATION["metric_days"][0][1] is metric_rollups.backfill_leads_packed
