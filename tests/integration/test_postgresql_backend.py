# -*- coding: utf-8 -*-
"""The PostgreSQL system of record against a real server: schema, concurrency, faults, secrets."""

from __future__ import annotations

import multiprocessing
import os
import threading

import psycopg
import pytest

from support import postgresql_server

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import GENESIS_HASH
from ansible_collections.changeops.itsm.plugins.module_utils.errors import (
    BackendUnavailable,
    ConfigurationError,
    ConflictError,
)
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import postgresql, schema
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

pytestmark = [pytest.mark.postgresql, pytest.mark.backends("postgresql")]


def pg_config(dsn, **overrides):
    config = {"backend": "postgresql", "postgresql_dsn": dsn, "busy_timeout": 60}
    config.update(overrides)
    return config


def started(run_id):
    return Entry("run.started", run_id, {"run_id": run_id, "started_at": "2026-11-23T10:00:00Z",
                                         "playbooks": ["site.yml"], "controller": "ctl"})


def result(run_id, host, index, status="changed"):
    return Entry("run.result", run_id, {
        "run_id": run_id, "play_id": "p1", "host": host, "status": status, "changed": status == "changed",
        "task": {"uuid": "t%d" % index, "name": "task %d" % index, "action": "ansible.builtin.copy"},
        "item": None})


def ci_created(ci_id, name):
    return Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": name, "class": "linux_server"},
                                       "identities": {"fqdn": name + ".example.org"}})


@pytest.fixture
def dsn(backend_env):
    return backend_env["CHANGEOPS_POSTGRESQL_DSN"]


@pytest.fixture(scope="module")
def private_server():
    """A cluster of our own, for tests that stop and start the server."""
    server = postgresql_server.LocalServer(max_connections=50).start()
    yield server
    server.remove()


@pytest.fixture
def private_dsn(private_server):
    yield from postgresql_server.database_on_stoppable_server(private_server, "changeops_fault")


# --------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------
def test_first_open_creates_the_shared_schema_with_64_bit_integers(sor, dsn):
    assert sor.schema_version() == schema.LATEST_VERSION
    with psycopg.connect(dsn) as conn:
        types = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'ledger'").fetchall())
        indexes = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert types["seq"] == "bigint"
    assert types["data"] == "text"
    # the indexes the info modules, inventory and register rely on exist on PostgreSQL too
    assert {"ledger_subject", "ledger_kind", "change_events_started", "run_hosts_host", "task_results_run",
            "configuration_items_name", "ci_identities_ci", "ci_relationships_target", "change_requests_state",
            "evidence_run", "reviews_run", "change_events_authorisation", "task_results_status"} <= indexes


def test_the_tables_read_by_index_alone_are_vacuumed_after_a_few_thousand_inserts(sor, dsn):
    # migration 21: autovacuum visits them after VACUUM_AFTER_INSERTS rows whatever their size (the default waits for a
    # fifth of the table, leaving the newest period, the one metrics read, to be looked up row by row in the table)
    assert sor.schema_version() == schema.LATEST_VERSION  # (the store connects, and migrates, on its first read)
    with psycopg.connect(dsn) as conn:
        server = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0]
        options = dict(conn.execute("SELECT relname, reloptions FROM pg_class WHERE relkind = 'r'"
                                    " AND relnamespace = current_schema()::regnamespace AND reloptions IS NOT NULL").fetchall())
    if server < 130000:
        assert not options  # (no insert-driven autovacuum before PostgreSQL 13: nothing set)
        return
    expected = ["autovacuum_vacuum_insert_threshold=%d" % schema.VACUUM_AFTER_INSERTS,
                "autovacuum_vacuum_insert_scale_factor=0"]
    assert options == {table: expected for table in ("metric_changes", "metric_ci_next", "ci_changes")}


def test_a_database_of_an_earlier_schema_gets_the_later_migrations_once(dsn, monkeypatch):
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
    monkeypatch.setattr(schema, "LATEST_VERSION", 1)
    with open_system_of_record(pg_config(dsn)) as sor:
        assert sor.schema_version() == 1
    monkeypatch.undo()
    # an entry as the collection stored it at schema 1: entry format 1, in the nine columns that schema has
    # (today's append writes the columns of migration 6); the replays of migrations 3 and 4 project it
    entry = Entry("run.started", "r1", dict(started("r1").data), format=1).seal(1, GENESIS_HASH)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO ledger (seq, entry_id, at, kind, subject, actor, data, prev_hash, hash)"
                     " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                     (entry.seq, entry.id, entry.at, entry.kind, entry.subject, entry.actor, entry.data_json(),
                      entry.prev_hash, entry.hash))
    for _reopen in range(2):  # CREATE INDEX without IF NOT EXISTS fails if a migration ever runs twice
        with open_system_of_record(pg_config(dsn)) as sor:
            assert sor.schema_version() == schema.LATEST_VERSION
            assert sor.verify(projections=True).valid and sor.head()[0] == 1
            assert sor.get_change_event("r1")["controller"] == "ctl" and sor.get_entry("1").format == 1
    with psycopg.connect(dsn) as conn:
        indexes = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert {"change_events_authorisation", "task_results_status"} <= indexes
    assert versions == [migration[0] for migration in schema.MIGRATIONS]


def test_concurrent_first_opens_migrate_exactly_once(dsn):
    opened, failures = [], []
    barrier = threading.Barrier(8)

    def first_open():
        try:
            barrier.wait()
            sor = open_system_of_record(pg_config(dsn))
            opened.append(sor.schema_version())
            sor.close()
        except Exception as exc:  # pylint: disable=broad-except
            failures.append(repr(exc))

    threads = [threading.Thread(target=first_open) for _opener in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert opened == [schema.LATEST_VERSION] * 8
    with psycopg.connect(dsn) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [migration[0] for migration in schema.MIGRATIONS]


def test_a_database_from_a_newer_collection_is_refused(sor, dsn):
    sor.head()
    sor.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (%s, 'from the future', 'now')", (schema.LATEST_VERSION + 1,))
    with pytest.raises(ConfigurationError, match="newer than this collection understands"):
        open_system_of_record(pg_config(dsn)).head()


# --------------------------------------------------------------------------
# the append algorithm on PostgreSQL
# --------------------------------------------------------------------------
def test_appends_project_and_verify_like_sqlite(sor):
    appended = sor.append([started("r1"), result("r1", "web1", 1), result("r1", "web2", 2, "ok"),
                           ci_created("ci1", "web1"),
                           Entry("run.finished", "r1", {"run_id": "r1", "outcome": "successful"})])
    assert [entry.seq for entry in appended] == [1, 2, 3, 4, 5]
    event = sor.get_change_event("r1")
    assert (event["status"], event["host_count"], event["changed_host_count"]) == ("successful", 2, 1)
    assert [r["host"] for r in sor.get_task_results("r1", changed_only=True)] == ["web1"]
    assert sor.find_ci_by_identity("fqdn", "web1.example.org") == "ci1"
    assert sor.find_change_events(playbook="site")[0]["run_id"] == "r1"
    report = sor.verify()
    assert report.valid and report.entries_checked == 5
    assert sor.head() == (5, appended[-1].hash)


def test_replaying_the_same_entries_is_a_no_op(sor):
    batch = [started("r1"), result("r1", "web1", 1)]
    assert len(sor.append(batch)) == 2
    replay = [Entry.from_dict(entry.to_dict()) for entry in batch]
    assert sor.append(replay) == []
    assert sor.head()[0] == 2


def test_a_refused_projection_rolls_the_whole_batch_back(sor):
    sor.append([ci_created("ci1", "web1")])
    with pytest.raises(ConflictError, match="already belongs"):
        sor.append([started("r1"), Entry("ci.created", "ci2", {
            "ci_id": "ci2", "attributes": {"name": "other"}, "identities": {"fqdn": "web1.example.org"}})])
    assert sor.head()[0] == 1
    assert sor.get_change_event("r1") is None
    assert sor.append([started("r1")])[0].seq == 2


def test_an_append_guarded_by_a_stale_head_is_refused_and_writes_nothing(sor):
    first = sor.append([started("r1")])[0]
    sor.append([result("r1", "web1", 1)])
    with pytest.raises(ConflictError, match="head moved to entry 2"):
        sor.append([result("r1", "web2", 2)], expected_head=(first.seq, first.hash))
    assert sor.head()[0] == 2
    with pytest.raises(ConflictError):
        sor.append([result("r1", "web2", 2)], expected_head=(0, None))
    assert sor.append([result("r1", "web2", 2)], expected_head=sor.head())[0].seq == 3


def _writer_process(dsn, writer, batches, queue):
    """Child process: several threads, each with its own connection, appending small batches."""
    failures = []

    def thread_main(thread_index):
        sor = open_system_of_record(pg_config(dsn))
        try:
            for batch in range(batches):
                run_id = "w%d-t%d" % (writer, thread_index)
                entries = [result(run_id, "host%d" % n, batch * 10 + n) for n in range(1 + batch % 3)]
                if batch == 0:
                    entries.insert(0, started(run_id))
                # every writer also races to append the same shared entry: stored once
                entries.append(Entry("run.play", "shared", {"run_id": "shared", "play_id": "p%d" % batch},
                                     entry_id="shared-play-%d" % batch))
                sor.append(entries)
        except Exception as exc:  # pylint: disable=broad-except
            failures.append(repr(exc))
        finally:
            sor.close()

    threads = [threading.Thread(target=thread_main, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((writer, failures))


def test_many_processes_and_threads_append_one_unforked_chain(sor, dsn):
    writers, batches = 6, 25
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_writer_process, args=(dsn, writer, batches, queue))
                 for writer in range(writers)]
    for process in processes:
        process.start()
    outcomes = dict(queue.get(timeout=300) for _process in processes)
    for process in processes:
        process.join(timeout=60)
    assert all(failures == [] for failures in outcomes.values()), outcomes
    assert all(process.exitcode == 0 for process in processes)

    per_thread = 1 + sum(1 + batch % 3 for batch in range(batches))
    expected = writers * 3 * per_thread + batches  # + one stored copy of each shared entry
    report = sor.verify()
    assert report.valid, report.summary()
    assert report.entries_checked == expected
    assert sor.head()[0] == expected
    with psycopg.connect(dsn) as conn:
        seqs = [row[0] for row in conn.execute("SELECT seq FROM ledger ORDER BY seq")]
        shared = conn.execute("SELECT COUNT(*) FROM ledger WHERE entry_id LIKE 'shared-play-%%'").fetchone()[0]
        results = conn.execute("SELECT COUNT(*) FROM task_results").fetchone()[0]
    assert seqs == list(range(1, expected + 1))
    assert shared == batches
    assert results == writers * 3 * (per_thread - 1)


def test_a_writer_waiting_longer_than_busy_timeout_for_the_lock_gets_backend_unavailable(open_sor, dsn):
    sor = open_sor(busy_timeout=1)
    sor.append([started("r1")])
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (postgresql.LEDGER_LOCK_KEY,))
        with pytest.raises(BackendUnavailable, match="held the ledger lock .* more than 1 s"):
            sor.append([result("r1", "web1", 1)])
        holder.rollback()
    assert sor.append([result("r1", "web1", 1)])[0].seq == 2
    assert sor.verify().valid


# --------------------------------------------------------------------------
# faults and secrets
# --------------------------------------------------------------------------
def test_unreachable_server_at_open_is_backend_unavailable_without_the_password():
    dsn = "postgresql://changeops:Sup3rSecret!@127.0.0.1:%d/ledger?connect_timeout=3" % postgresql_server.free_port()
    with pytest.raises(BackendUnavailable) as raised:
        open_system_of_record(pg_config(dsn)).head()
    message = raised.value.message
    assert "cannot connect to the PostgreSQL system of record" in message
    assert "127.0.0.1" in message and "refused" in message.lower()
    assert "Sup3rSecret" not in message and "Sup3rSecret" not in repr(raised.value.details)


def test_wrong_password_is_reported_without_either_password(dsn):
    wrong = psycopg.conninfo.make_conninfo(dsn, password="Wr0ngPassw0rd")
    with pytest.raises(BackendUnavailable, match="password authentication failed") as raised:
        open_system_of_record(pg_config(wrong)).head()
    assert "Wr0ngPassw0rd" not in raised.value.message


def test_an_invalid_dsn_is_a_configuration_error_without_the_password():
    with pytest.raises(ConfigurationError, match="not a valid libpq connection string") as raised:
        open_system_of_record(pg_config("host=127.0.0.1 password=Hunter2Hunter2 frobnicate=yes"))
    assert "Hunter2Hunter2" not in raised.value.message
    assert "frobnicate" in raised.value.message


def test_tls_options_are_passed_through_to_libpq(dsn):
    # the test server has no certificate: sslmode=require must make libpq refuse it
    with pytest.raises(BackendUnavailable, match="(?i)ssl") as raised:
        open_system_of_record(pg_config(dsn + "?sslmode=require")).head()
    assert "********" in raised.value.message
    open_system_of_record(pg_config(dsn + "?sslmode=prefer")).close()


def test_libpq_environment_variables_locate_the_server(dsn, monkeypatch):
    parts = psycopg.conninfo.conninfo_to_dict(dsn)
    for name, key in (("PGHOST", "host"), ("PGPORT", "port"), ("PGUSER", "user"), ("PGPASSWORD", "password"),
                      ("PGDATABASE", "dbname")):
        monkeypatch.setenv(name, str(parts[key]))
    sor = open_system_of_record(pg_config(None))
    try:
        assert sor.append([started("r1")])[0].seq == 1
        description = sor.describe()
        assert "PGHOST=127.0.0.1" in description and "PGDATABASE=%s" % parts["dbname"] in description
        assert parts["password"] not in description
    finally:
        sor.close()


def test_a_terminated_session_is_replaced_transparently(sor, dsn):
    sor.append([started("r1")])
    backend_pid = sor._connection().info.backend_pid  # pylint: disable=protected-access
    with psycopg.connect(dsn, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid,)).fetchone()[0]
    assert sor.append([result("r1", "web1", 1)])[0].seq == 2
    assert sor._connection().info.backend_pid != backend_pid  # pylint: disable=protected-access
    assert sor.get_change_event("r1")["host_count"] == 0


def test_server_stopped_mid_run_then_restarted(private_server, private_dsn):
    sor = open_system_of_record(pg_config(private_dsn))
    try:
        sor.append([started("r1"), result("r1", "web1", 1)])
        private_server.stop("immediate")
        with pytest.raises(BackendUnavailable) as raised:
            sor.append([result("r1", "web2", 2)])
        assert "PostgreSQL system of record" in raised.value.message
        assert private_server.password not in raised.value.message
        with pytest.raises(BackendUnavailable):
            sor.get_change_event("r1")
        private_server.start()
        # the same object reconnects by itself once the server is back
        assert sor.append([result("r1", "web2", 2)])[0].seq == 3
        report = sor.verify()
        assert report.valid and report.entries_checked == 3
    finally:
        sor.close()


def _use_in_child(sor, queue):
    try:
        queue.put(sor.append([result("r1", "child", 9)])[0].seq)
        sor.close()
    except Exception as exc:  # pylint: disable=broad-except
        queue.put(repr(exc))


def test_a_forked_worker_never_closes_its_parents_session(sor):
    sor.append([started("r1")])
    parent_pid = sor._connection().info.backend_pid  # pylint: disable=protected-access
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_use_in_child, args=(sor, queue))
    child.start()
    assert queue.get(timeout=60) == 2
    child.join(timeout=60)
    assert sor._connection().info.backend_pid == parent_pid  # pylint: disable=protected-access
    assert sor.append([result("r1", "parent", 10)])[0].seq == 3
    assert os.getpid() == sor._pid  # pylint: disable=protected-access


# --------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_server():
    """A cluster of our own that serves TLS with a self-signed certificate (see support/postgresql_server)."""
    server = postgresql_server.LocalServer(max_connections=20, tls=True).start()
    yield server
    server.remove()


def _ssl_of_session(server, application_name):
    """``(ssl, version)`` of every session named ``application_name``, seen from the server's side."""
    with psycopg.connect(server.admin_dsn, autocommit=True, sslmode="disable") as admin:
        return admin.execute("SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
                             " WHERE a.application_name = %s", (application_name,)).fetchall()


@pytest.mark.parametrize("mode", ["require", "verify-full"])
def test_the_system_of_record_connects_over_tls(tls_server, mode):
    name = postgresql_server.create_database(tls_server, prefix="changeops_tls")
    try:
        options = {"sslmode": mode, "application_name": "changeops-tls-%s" % mode}
        if mode == "verify-full":
            # the certificate names 127.0.0.1, so verifying the host name as well as the chain succeeds
            options["sslrootcert"] = tls_server.ca_file
        dsn = psycopg.conninfo.make_conninfo(tls_server.dsn(name), **options)
        with open_system_of_record(pg_config(dsn)) as sor:
            assert sor.append([started("r1")])[0].seq == 1
            assert sor.get_change_event("r1")["status"] == "running"
            sessions = _ssl_of_session(tls_server, options["application_name"])
            assert len(sessions) == 1 and sessions[0][0] is True, sessions
            assert sessions[0][1].startswith("TLSv1.")
            assert tls_server.password not in sor.describe()
    finally:
        postgresql_server.drop_database(tls_server, name)


def test_verify_full_refuses_a_certificate_it_does_not_trust(tls_server, tmp_path):
    stranger = postgresql_server.self_signed_certificate(str(tmp_path), "stranger")[0]
    dsn = psycopg.conninfo.make_conninfo(tls_server.dsn(), sslmode="verify-full", sslrootcert=stranger)
    with pytest.raises(BackendUnavailable, match="certificate verify failed") as raised:
        open_system_of_record(pg_config(dsn)).head()
    assert tls_server.password not in raised.value.message
