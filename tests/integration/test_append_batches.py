# -*- coding: utf-8 -*-
"""A batch appended at once is the same ledger, and the same query tables, as its entries appended one by one.

``SqlSystemOfRecord.append`` projects a batch set-based where it can (runs of task results), keeps the change-event
documents it wrote in memory, stores the ledger rows of the whole batch in one bulk insert after the projections and,
on PostgreSQL, sends the statements in pipeline mode (issue 21: append throughput). None of that may change what is
stored: these tests build recorder-shaped batches (CIs, runs with plays, gates, results and ends, a serial play, a run
whose start arrives after its results, an entry given twice) and compare every ledger column and every query table
with a store that got the same entries one append each, on both backends. The entries are sealed once before they
are copied into both stores, so the two ledgers hold the same salts and must hold the same hashes.
"""

from __future__ import annotations

import contextlib
import datetime
import random
import sqlite3

import pytest
from register_fixtures import synthetic_run
from support.backends import backend_config, fresh_env

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check, projections
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.sql import LEDGER_COLUMNS, SqlSystemOfRecord

KINDS = ("standard", "normal", "emergency", "unauthorised", "dry-run", "no-change", "failed")
HOSTS = ["web%02d.example.net" % number for number in range(1, 13)]


def ci_entries():
    entries = []
    for position, host in enumerate(HOSTS):
        ci_id = "ci-%02d" % position
        entries.append(Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {
            "name": host, "class": "cmdb_ci_linux_server", "status": "operational",
            "environment": ("production", "staging")[position % 2], "services": ["shop"] if position % 3 else [],
            "os": "Debian 12"}, "identities": {"fqdn": host}, "run_id": None}))
    return entries


def recorder_batch(runs=14, seed=5):
    """CIs and ``runs`` recorder-shaped runs, with the oddities a spool replay brings."""
    rng = random.Random(seed)
    start = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.timezone.utc)
    entries = ci_entries()
    for number in range(runs):
        hosts = sorted(rng.sample(HOSTS, rng.randint(1, 3)))
        _run_id, run = synthetic_run(number, start + datetime.timedelta(minutes=7 * number), rng, hosts,
                                     KINDS[number % len(KINDS)], environment="production", diff=number % 2 == 0)
        if number == 3:
            # a serial play: the same play started again for a second batch of hosts
            run.insert(3, Entry("run.play", run[1].subject, dict(run[1].data, hosts=["web12.example.net"]),
                                at=run[1].at))
        if number == 5:
            # the start replayed after the results (a spool drained out of order)
            run = run[1:-1] + [run[0], run[-1]]
        if number == 6:
            run.insert(4, run[2])  # one entry given twice in the batch
        if number in (2, 9):
            run.append(Entry("ci.changed_by_run", "ci-%02d" % HOSTS.index(hosts[0]), {
                "ci_id": "ci-%02d" % HOSTS.index(hosts[0]), "run_id": run[0].subject, "host": hosts[0]}))
        entries.extend(run)
    for entry in entries:
        entry.prepare()  # salts chosen once: both stores get the same commitments
    return entries


def copies(entries):
    return [Entry.from_dict(entry.to_dict()) for entry in entries]


def ledger_rows(sor):
    return sor._query("SELECT %s FROM ledger ORDER BY seq" % LEDGER_COLUMNS)  # pylint: disable=protected-access


def query_tables(sor):
    tables = {}
    for table in projection_check.PROJECTION_TABLES:
        rows = sor._query("SELECT * FROM %s" % table)  # pylint: disable=protected-access
        tables[table] = sorted((tuple(row) for row in rows), key=repr)
    return tables


@contextlib.contextmanager
def appended_one_by_one(backend, request, tmp_path, entries):
    """A second, fresh store that got ``entries`` one append each: ``(store, the entries it appended)``."""
    directory = tmp_path / "one_by_one"
    directory.mkdir()
    store = open_system_of_record(backend_config(fresh_env(backend, request, directory)))
    try:
        singly = []
        for entry in copies(entries):
            singly.extend(store.append([entry]))
        yield store, singly
    finally:
        store.close()


def test_a_batch_is_stored_and_projected_as_its_entries_one_by_one(open_sor, backend, request, tmp_path):
    entries = recorder_batch()
    batched = open_sor()
    appended = batched.append(copies(entries))
    with appended_one_by_one(backend, request, tmp_path, entries) as (one_by_one, singly):
        assert [entry.hash for entry in appended] == [entry.hash for entry in singly]
        assert len(appended) == len(entries) - 1  # the entry given twice is stored once
        assert ledger_rows(batched) == ledger_rows(one_by_one)
        tables = query_tables(batched)
        assert tables == query_tables(one_by_one)
        assert len(tables["change_events"]) == 14 and tables["change_list"] and tables["metric_changes"]
        for sor in (batched, one_by_one):
            report = sor.verify(projections=True)
            assert report.valid and report.projections_checked, report.summary()


def test_a_batch_appended_again_changes_nothing(open_sor):
    entries = recorder_batch(runs=8, seed=11)
    sor = open_sor()
    first = sor.append(copies(entries))
    head = sor.head()
    rows, tables = ledger_rows(sor), query_tables(sor)
    # the same entries again (a spool replayed twice), whole and as a part of a larger batch
    assert sor.append(copies(entries)) == []
    assert sor.head() == head and ledger_rows(sor) == rows and query_tables(sor) == tables
    run_id = first[-1].subject
    extra = Entry("run.reviewed", run_id, {"run_id": run_id, "reviewer": "alice", "outcome": "accepted",
                                           "reviewed_at": "2026-03-03T10:00:00.000000Z"})
    again = sor.append(copies(entries[:40]) + [extra] + copies(entries[40:]))
    assert [entry.id for entry in again] == [extra.id]
    assert again[0].seq == head[0] + 1 and again[0].prev_hash == head[1]
    assert ledger_rows(sor)[:len(rows)] == rows
    report = sor.verify(projections=True)
    assert report.valid and report.projections_checked, report.summary()


def test_a_failed_batch_leaves_nothing_behind_for_the_next_append(open_sor, backend, request, tmp_path, monkeypatch):
    """A batch that fails part-way (here a projector raising at the ninth run's end, as a full disk or a broken
    statement would) rolls back whole: the next append of the same entries stores and projects them exactly as
    appending them one by one does, so nothing the failed batch kept in memory (the change-event documents it
    wrote, PostgreSQL's queued statements) leaks into it."""
    entries = recorder_batch(runs=10, seed=17)
    sor = open_sor()
    before = (sor.head(), ledger_rows(sor), query_tables(sor))
    real_project_many = projections.project_many
    failing_run = [entry for entry in entries if entry.kind == "run.finished"][8].subject

    def failing(db, batch):
        if any(entry.kind == "run.finished" and entry.subject == failing_run for entry in batch):
            raise RuntimeError("projector failed part-way (test)")
        return real_project_many(db, batch)

    monkeypatch.setattr(projections, "project_many", failing)
    with pytest.raises(Exception, match="projector failed part-way"):
        sor.append(copies(entries))
    monkeypatch.setattr(projections, "project_many", real_project_many)
    assert (sor.head(), ledger_rows(sor), query_tables(sor)) == before
    appended = sor.append(copies(entries))
    with appended_one_by_one(backend, request, tmp_path, entries) as (one_by_one, singly):
        assert [entry.hash for entry in appended] == [entry.hash for entry in singly]
        assert ledger_rows(sor) == ledger_rows(one_by_one)
        assert query_tables(sor) == query_tables(one_by_one)


@pytest.mark.backends("sqlite")
def test_projectors_never_read_the_ledger_table(open_sor, monkeypatch):
    """An append stores the batch's ledger rows after every projector ran (one bulk insert): correct only while no
    projector reads the ``ledger`` table (docs/architecture.md). SQLite's authorizer refuses any read of it while
    the batch is projected, so a projector that starts reading it fails here."""
    sor = open_sor()
    real_project_batch = SqlSystemOfRecord._project_batch  # pylint: disable=protected-access
    refused = []

    def authorizer(action, table, _column, _database, _source):
        if action == sqlite3.SQLITE_READ and table == "ledger":
            refused.append(table)
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def watched(self, db, *args):
        connection = self._connection()  # pylint: disable=protected-access
        connection.set_authorizer(authorizer)
        try:
            return real_project_batch(self, db, *args)
        finally:
            connection.set_authorizer(None)

    monkeypatch.setattr(SqlSystemOfRecord, "_project_batch", watched)
    appended = sor.append(copies(recorder_batch(runs=14, seed=23)))
    assert appended and not refused
    report = sor.verify(projections=True)
    assert report.valid and report.projections_checked, report.summary()


def namesake_cis():
    """Application CIs named like two of the hosts (a name is not an identity): their services count for those
    hosts' changes (``change_index``), and a host on two CIs is still one host of the change."""
    entries = []
    for position, host in ((0, HOSTS[0]), (1, HOSTS[4]), (2, HOSTS[4])):
        ci_id = "app-%02d" % position
        entries.append(Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {
            "name": host, "class": "cmdb_ci_appl", "status": "operational", "environment": "production",
            "services": ["checkout %d" % position, "shop"]}, "identities": {}, "run_id": None}))
    return entries


def test_runs_split_across_appends_are_projected_as_entry_by_entry(open_sor, backend, request, tmp_path):
    """An append reads the change-event documents of its batch's runs in one query before projecting them, a run's
    end reads its hosts with their failures in one query, and the change list reads an event with its list row and
    a run's hosts with their CIs' services in one query each (fewer round trips on PostgreSQL). Runs cut in two by
    the batch boundary (the start in one append, the plays, gates, results and end in the next, or a run's start
    replayed in a later batch than its results), hosts with namesake CIs and failing hosts must give exactly the
    tables of the same entries appended one at a time, and of a replay entry by entry (``verify``)."""
    entries = namesake_cis() + recorder_batch(runs=21, seed=29)
    for entry in entries:
        entry.prepare()
    cuts = [0, 40, 41, 97, 150, len(entries)]  # inside runs, one single-entry batch
    batched = open_sor()
    appended = []
    for start, end in zip(cuts, cuts[1:]):
        appended.extend(batched.append(copies(entries[start:end])))
    with appended_one_by_one(backend, request, tmp_path, entries) as (one_by_one, singly):
        assert [entry.hash for entry in appended] == [entry.hash for entry in singly]
        assert ledger_rows(batched) == ledger_rows(one_by_one)
        tables = query_tables(batched)
        assert tables == query_tables(one_by_one)
        services = " ".join(row[LIST_INDEX["services"]] for row in tables["change_list"])
        assert "checkout_1" in services and "checkout_2" in services
        for row in tables["change_list"]:
            listed_hosts = row[LIST_INDEX["hosts"]].split()
            assert listed_hosts == sorted(set(listed_hosts)), row
        for sor in (batched, one_by_one):
            report = sor.verify(projections=True)
            assert report.valid and report.projections_checked, report.summary()
            for event in sor.find_change_events():
                hosts = [row["host"] for row in sor.get_change_event(event["run_id"])["hosts"]]
                assert len(hosts) == len(set(hosts)), hosts


#: column positions in ``SELECT * FROM change_list`` (list_key first)
LIST_INDEX = {column: position + 1 for position, column in enumerate(
    ("run_id", "started_at", "ended_at", "listed", "outcome", "review", "ack", "categories", "environments",
     "services", "hosts", "refs", "playbook", "user_name", "words"))}
