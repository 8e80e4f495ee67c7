# -*- coding: utf-8 -*-
"""What opening a connection costs on PostgreSQL (a real server): one statement once the schema is there.

Every forked Ansible worker that reads or writes the record (the change gate of every play) opens its own
connection; under load each round trip waits for the server process to be scheduled. The session's
``lock_timeout`` and the schema version check are one statement on a migrated database, and a database
without the changeops tables still gets both (and its migration) on its first connection.
"""

from __future__ import annotations

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import postgresql, schema

pytest.importorskip("psycopg")

pytestmark = pytest.mark.backends("postgresql")


def _statements(monkeypatch):
    sent = []
    execute = postgresql._ForkSafeConnection.execute  # pylint: disable=protected-access

    def counting(self, query, *args, **kwargs):
        sent.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(postgresql._ForkSafeConnection, "execute", counting)  # pylint: disable=protected-access
    return sent


def test_a_connection_to_a_migrated_database_sends_one_statement(open_sor, monkeypatch):
    first = open_sor()
    assert first.schema_version() == schema.LATEST_VERSION  # the first connection creates the schema
    first.close()
    sent = _statements(monkeypatch)
    sor = open_sor(busy_timeout=17)
    conn = sor._connection()  # pylint: disable=protected-access
    assert len(sent) == 1 and "lock_timeout" in sent[0] and "schema_migrations" in sent[0]
    assert conn.execute("SHOW lock_timeout").fetchone()[0] == "17s"
    assert sor.schema_version() == schema.LATEST_VERSION


def test_the_first_connection_to_an_empty_database_still_sets_up_the_session(open_sor, monkeypatch):
    sent = _statements(monkeypatch)
    sor = open_sor(busy_timeout=23)
    conn = sor._connection()  # pylint: disable=protected-access
    assert conn.execute("SHOW lock_timeout").fetchone()[0] == "23s"
    assert sor.schema_version() == schema.LATEST_VERSION
    assert len(sent) > 3  # the missing table's error, the fallback and the migration


@pytest.mark.parametrize("whole_table_above", [2000, 2])
def test_a_read_of_cis_fetches_their_facets_in_the_same_round_trip(open_sor, monkeypatch, whole_table_above):
    # the gate reads its play's host CIs and the CIs its blast radius reaches this way: one pipeline each
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry  # pylint: disable=import-outside-toplevel
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import intelligence

    monkeypatch.setattr(intelligence.IntelligenceQueries, "WHOLE_TABLE_ABOVE", whole_table_above)
    sor = open_sor()
    sor.append([Entry("ci.created", "ci-%d" % number, {"ci_id": "ci-%d" % number, "identities": {}, "attributes": {
        "name": "web%d" % number, "class": "server", "services": ["b", "a"] if number % 2 else ["c"],
        "owner": "team-%d" % number}}) for number in range(5)])
    pipelines, single = [], []
    queries, query = type(sor)._queries, type(sor)._query
    monkeypatch.setattr(type(sor), "_queries",
                        lambda self, statements: pipelines.append(len(statements)) or queries(self, statements))
    monkeypatch.setattr(type(sor), "_query", lambda self, *args: single.append(args) or query(self, *args))
    found = sor.find_ci_summaries(names=["web1", "web2", "web3"], ci_ids=["ci-4"], facets=("service",))
    # (a store's first packed read asks the tables' sizes once, kept a minute: see PostgresqlSystemOfRecord._packable)
    assert pipelines == [3] and len(single) == 1 and "pg_table_size" in single[0][0]
    assert sor.find_ci_summaries(names=["web1", "web2", "web3"], ci_ids=["ci-4"], facets=("service",)) == found
    assert pipelines == [3, 3] and len(single) == 1
    assert [(ci["ci_id"], ci["attributes"]) for ci in found] == [
        ("ci-1", {"services": ["a", "b"]}), ("ci-2", {"services": ["c"]}), ("ci-3", {"services": ["a", "b"]}),
        ("ci-4", {"services": ["c"]})]


def test_the_session_compresses_large_values_with_lz4_where_the_server_left_the_default(open_sor):
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry  # pylint: disable=import-outside-toplevel

    sor = open_sor()
    conn = sor._connection()  # pylint: disable=protected-access
    offered = conn.execute("SELECT 'lz4' = ANY(enumvals), source FROM pg_settings"
                           " WHERE name = 'default_toast_compression'").fetchone()
    if offered is None or not offered[0]:
        pytest.skip("this PostgreSQL server has no lz4 compression (before 14, or built without it)")
    assert conn.execute("SHOW default_toast_compression").fetchone()[0] == "lz4"
    hosts = ["host%05d" % number for number in range(10000)]
    [entry] = sor.append([Entry("run.play", "run-1", {"run_id": "run-1", "play_id": "p1", "hosts": hosts})])
    assert conn.execute("SELECT pg_column_compression(data) FROM ledger WHERE seq = %s",
                        (entry.seq,)).fetchone()[0] == "lz4"
    assert sor.get_entry(entry.seq).data["hosts"] == hosts


def test_a_compression_the_administrator_chose_is_kept(open_sor):
    sor = open_sor()
    conn = sor._connection()  # pylint: disable=protected-access
    if conn.execute("SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression'").fetchone()[0] == 0:
        pytest.skip("PostgreSQL before 14 has one TOAST compression")
    database = conn.execute("SELECT current_database()").fetchone()[0]
    conn.execute('ALTER DATABASE "%s" SET default_toast_compression = pglz' % database)
    sor.close()
    other = open_sor()
    assert other._connection().execute(  # pylint: disable=protected-access
        "SHOW default_toast_compression").fetchone()[0] == "pglz"
