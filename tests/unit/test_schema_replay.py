# -*- coding: utf-8 -*-
"""Upgrading a system of record whose query tables an older collection filled (every backend).

The query tables are a cache of the ledger kept by projections.py. When what a projection derives
from an entry changes, a migration replays the ledger into them, so an upgraded ledger verifies
instead of having every row an older version computed reported as altered.
"""

from __future__ import annotations

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema


def ci_created(ci_id, name, environment):
    # entries as the older version sealed them (format 1: it had no payload commitments)
    return Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": name, "class": "server",
                                                                      "environment": environment},
                                       "identities": {}}, format=1)


#: what undoes the migrations after the last replay, so a test can go back to the schema before it
UNDO = {
    4: ["DROP TABLE witness_cursors"] + ["ALTER TABLE ledger DROP COLUMN %s" % column
                                         for column in ("entry_format", "salt", "payload_root", "redactions")],
}


def as_written_by_an_older_version(sor, statements):
    """Rows as an older projection rule left them, and the schema at the version before the replay."""
    replay = max(version for version, _description, steps in schema.MIGRATIONS if schema.REPLAY_LEDGER in steps)
    with sor._write_transaction() as cursor:
        for statement in statements:
            cursor.execute(statement)
        for version in sorted((version for version, _d, _s in schema.MIGRATIONS if version > replay), reverse=True):
            for statement in UNDO[version]:
                cursor.execute(statement)
        cursor.execute("DELETE FROM schema_migrations WHERE version >= %d" % replay)
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
