# -*- coding: utf-8 -*-
"""The SQLite backend itself: WAL, busy timeout, file permissions, schema version and migrations."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.errors import BackendUnavailable, ConfigurationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import sqlite as sqlite_backend
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.sqlite import SqliteSystemOfRecord


def sqlite_config(path, busy_timeout=60):
    return {"backend": "sqlite", "sqlite_path": str(path), "busy_timeout": busy_timeout}


def evidence(n):
    return Entry("evidence.recorded", "run-1", {"run_id": "run-1", "checklist": "cis", "n": n})


def raw(path):
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def tables(path):
    conn = raw(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def test_factory_gives_the_sqlite_backend(sqlite_sor):
    assert isinstance(sqlite_sor, SqliteSystemOfRecord)
    assert sqlite_sor.describe() == "sqlite:%s" % sqlite_sor.path


def test_ledger_is_in_wal_mode(sqlite_sor):
    sqlite_sor.append([evidence(1)])
    conn = raw(sqlite_sor.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert os.path.exists(sqlite_sor.path + "-wal")


def test_busy_timeout_is_set_on_the_connection(tmp_path):
    with open_system_of_record(sqlite_config(tmp_path / "l.sqlite", busy_timeout=7)) as sor:
        assert sor._connection().execute("PRAGMA busy_timeout").fetchone()[0] == 7000
        assert sor._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_writer_waits_for_the_lock_instead_of_failing(tmp_path):
    path = tmp_path / "l.sqlite"
    with open_system_of_record(sqlite_config(path, busy_timeout=30)) as sor:
        sor.append([evidence(1)])
        locked, released = threading.Event(), threading.Event()

        def hold_the_lock_briefly():
            holder = raw(path)  # sqlite3 connections belong to the thread that made them
            holder.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(0.5)
            holder.execute("COMMIT")
            released.set()
            holder.close()

        thread = threading.Thread(target=hold_the_lock_briefly)
        thread.start()
        assert locked.wait(30)
        appended = sor.append([evidence(2)])
        thread.join()
        assert released.is_set()
        assert appended[0].seq == 2 and sor.verify().valid


def test_a_writer_gives_up_after_the_busy_timeout_with_a_clear_error(tmp_path):
    path = tmp_path / "l.sqlite"
    with open_system_of_record(sqlite_config(path, busy_timeout=1)) as sor:
        sor.append([evidence(1)])
        holder = raw(path)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(BackendUnavailable) as caught:
                sor.append([evidence(2)])
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert str(path) in str(caught.value) and "lock" in str(caught.value)
        # nothing half-written, and the same connection works once the lock is free
        assert sor.head()[0] == 1
        assert sor.append([evidence(3)])[0].seq == 2


def test_the_busy_timeout_bounds_the_whole_wait_for_the_lock(tmp_path):
    """One deadline for the lock, not one per retry: a stuck writer blocks an append for busy_timeout, no more."""
    path = tmp_path / "l.sqlite"
    with open_system_of_record(sqlite_config(path, busy_timeout=2)) as sor:
        sor.append([evidence(1)])
        holder = raw(path)
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        try:
            with pytest.raises(BackendUnavailable):
                sor.append([evidence(2)])
        finally:
            waited = time.monotonic() - started
            holder.execute("ROLLBACK")
            holder.close()
        # 5 busy timeouts (10 s) before; generous margin over the 2 s for a loaded machine
        assert 1.9 <= waited < 4.5, waited
        # the retries' shortened timeouts are not left on the connection
        assert sor._connection().execute("PRAGMA busy_timeout").fetchone()[0] == 2000


def test_readers_are_not_blocked_by_a_writer(sqlite_sor):
    sqlite_sor.append([evidence(1)])
    holder = raw(sqlite_sor.path)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("DELETE FROM evidence")
    try:
        assert sqlite_sor.head()[0] == 1
        assert len(sqlite_sor.find_evidence()) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_new_ledger_file_and_directory_are_private(tmp_path):
    path = tmp_path / "new" / "dir" / "ledger.sqlite"
    with open_system_of_record(sqlite_config(path)) as sor:
        sor.append([evidence(1)])
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(path.parent)).st_mode) == 0o700


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with open_system_of_record(sqlite_config(path)) as sor:
        sor.append([evidence(1)])
    os.chmod(str(path), 0o640)
    with open_system_of_record(sqlite_config(path)) as sor:
        assert sor.head()[0] == 1
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o640


def test_unusable_path_names_the_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "ledger.sqlite"
    with pytest.raises(BackendUnavailable) as caught:
        with open_system_of_record(sqlite_config(path)) as sor:
            sor.head()
    assert str(path) in str(caught.value)


def test_a_file_that_is_not_a_database_names_the_path(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not a database, " * 100)
    with pytest.raises(BackendUnavailable) as caught:
        with open_system_of_record(sqlite_config(path)) as sor:
            sor.head()
    assert str(path) in str(caught.value)


def test_empty_path_is_a_configuration_error():
    with pytest.raises(ConfigurationError) as caught:
        open_system_of_record({"backend": "sqlite", "sqlite_path": ""})
    assert "CHANGEOPS_SQLITE_PATH" in str(caught.value)


def test_fresh_ledger_has_the_latest_schema(sqlite_sor):
    assert sqlite_sor.schema_version() == schema.LATEST_VERSION
    assert {"ledger", "change_events", "run_hosts", "task_results", "configuration_items", "ci_identities",
            "ci_relationships", "change_requests", "evidence", "reviews", "counters",
            "schema_migrations"} <= tables(sqlite_sor.path)


def test_reopening_does_not_reapply_migrations(tmp_path):
    path = tmp_path / "l.sqlite"
    with open_system_of_record(sqlite_config(path)) as sor:
        sor.append([evidence(1)])
    conn = raw(path)
    before = conn.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version").fetchall()
    conn.close()
    for _reopen in range(3):
        with open_system_of_record(sqlite_config(path)) as sor:
            assert sor.head()[0] == 1
    conn = raw(path)
    try:
        assert conn.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version").fetchall() == before
        assert [r[0] for r in before] == [m[0] for m in schema.MIGRATIONS]
    finally:
        conn.close()


def add_notes_table_migration(monkeypatch):
    """A new schema version (one CREATE TABLE test_notes) after the real ones; returns the migration."""
    upgrade = (schema.LATEST_VERSION + 1, "test: notes table",
               ["CREATE TABLE test_notes (id {int} PRIMARY KEY, note TEXT)"])
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS + [upgrade])
    monkeypatch.setattr(schema, "LATEST_VERSION", upgrade[0])
    return upgrade


def test_a_new_migration_is_applied_once_to_an_existing_ledger(tmp_path, monkeypatch):
    path = tmp_path / "l.sqlite"
    with open_system_of_record(sqlite_config(path)) as sor:
        sor.append([evidence(1)])
    upgrade = add_notes_table_migration(monkeypatch)
    for _reopen in range(2):  # CREATE TABLE without IF NOT EXISTS fails if it ever runs twice
        with open_system_of_record(sqlite_config(path)) as sor:
            assert sor.schema_version() == upgrade[0]
            assert sor.verify().valid and sor.head()[0] == 1
    assert "test_notes" in tables(path)


def test_a_migration_waiting_for_the_lock_lets_ansible_fork_meanwhile(tmp_path, monkeypatch):
    """The first open after an upgrade waits for another writer's lock; it must not hold the fork guard
    for that wait (Ansible could not fork a worker for up to busy_timeout), only slice by slice."""
    path = tmp_path / "l.sqlite"
    with open_system_of_record(sqlite_config(path)) as sor:
        sor.append([evidence(1)])
    upgrade = add_notes_table_migration(monkeypatch)
    holder = raw(path)
    holder.execute("BEGIN IMMEDIATE")
    opened, outcome = threading.Event(), {}

    def open_after_the_upgrade():
        try:
            with open_system_of_record(sqlite_config(path, busy_timeout=30)) as upgraded:
                outcome["version"] = upgraded.schema_version()
                outcome["head"] = upgraded.head()[0]
        except Exception as exc:  # pylint: disable=broad-except
            outcome["error"] = exc
        opened.set()

    thread = threading.Thread(target=open_after_the_upgrade)
    thread.start()
    try:
        time.sleep(0.5)  # the migration is waiting for the lock by now
        assert not opened.is_set()
        for _fork in range(5):
            # what os.fork takes first (register_at_fork): free within a slice, not after busy_timeout
            assert sqlite_backend._FORK_GUARD.acquire(timeout=5), "the migration holds the fork guard while it waits"
            sqlite_backend._FORK_GUARD.release()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        thread.join(60)
    assert outcome == {"version": upgrade[0], "head": 1}
    assert "test_notes" in tables(path)


def test_a_migration_gives_up_after_the_busy_timeout_naming_the_ledger(tmp_path, monkeypatch):
    path = tmp_path / "l.sqlite"
    with open_system_of_record(sqlite_config(path)) as sor:
        sor.append([evidence(1)])
    upgrade = (schema.LATEST_VERSION + 1, "test: notes table", ["CREATE TABLE test_notes (id {int} PRIMARY KEY)"])
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS + [upgrade])
    monkeypatch.setattr(schema, "LATEST_VERSION", upgrade[0])
    holder = raw(path)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(BackendUnavailable) as caught:
            with open_system_of_record(sqlite_config(path, busy_timeout=1)) as sor:
                sor.head()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert str(path) in str(caught.value) and "locked" in str(caught.value)
    with open_system_of_record(sqlite_config(path)) as sor:
        assert sor.schema_version() == upgrade[0] and sor.head()[0] == 1


def test_a_failing_migration_leaves_the_ledger_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "l.sqlite"
    with open_system_of_record(sqlite_config(path)) as sor:
        sor.append([evidence(1)])
    broken = (schema.LATEST_VERSION + 1, "test: broken",
              ["CREATE TABLE half_done (id {int})", "ALTER TABLE no_such_table ADD COLUMN x TEXT"])
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS + [broken])
    monkeypatch.setattr(schema, "LATEST_VERSION", broken[0])
    with pytest.raises(BackendUnavailable) as caught:
        with open_system_of_record(sqlite_config(path)) as sor:
            sor.head()
    assert str(path) in str(caught.value)
    assert "half_done" not in tables(path)
    monkeypatch.undo()
    with open_system_of_record(sqlite_config(path)) as sor:
        assert sor.schema_version() == schema.LATEST_VERSION and sor.head()[0] == 1


def test_a_ledger_from_a_newer_collection_is_refused(tmp_path):
    path = tmp_path / "l.sqlite"
    with open_system_of_record(sqlite_config(path)) as sor:
        sor.append([evidence(1)])
    conn = raw(path)
    conn.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, 'future', 'x')",
                 (schema.LATEST_VERSION + 5,))
    conn.close()
    with pytest.raises(ConfigurationError) as caught:
        with open_system_of_record(sqlite_config(path)) as sor:
            sor.append([evidence(2)])
    message = str(caught.value)
    assert str(path) in message
    assert str(schema.LATEST_VERSION + 5) in message and str(schema.LATEST_VERSION) in message
    assert "upgrade" in message
    conn = raw(path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 1
    finally:
        conn.close()


def test_closing_twice_is_harmless(sqlite_sor):
    sqlite_sor.head()
    sqlite_sor.close()
    sqlite_sor.close()
    assert sqlite_sor.head() == (0, None)  # reopens on demand
