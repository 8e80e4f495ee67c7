# -*- coding: utf-8 -*-
"""The review service's read routing without a replica, and what a page says about where its data came from.

The routing itself (replica, lag, read-your-writes, a stopped replica) is tested against a real primary and hot
standby in ``tests/integration/test_review_service_replica.py``.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

pytest.importorskip("fastapi")

from ansible_collections.changeops.itsm.review_service.store import Store  # noqa: E402
from ansible_collections.changeops.itsm.review_service.views import read_from_notice  # noqa: E402
from support.backends import backend_config  # noqa: E402


def test_without_a_replica_change_data_is_read_from_the_primary_and_no_position_is_kept(tmp_path):
    store = Store({"backend": "sqlite", "sqlite_path": str(tmp_path / "ledger.sqlite"), "busy_timeout": 5,
                   "postgresql_read_dsn": "host=ignored-for-sqlite"})
    try:
        assert not store.has_replica
        sor, read_from = store.reader("rita")
        assert sor is store.get() and read_from is None
        store.note_write("rita")
        assert store.get().get_review_write_position("rita") == 0
    finally:
        store.close()


def test_write_positions_only_move_forward(tmp_path):
    store = Store({"backend": "sqlite", "sqlite_path": str(tmp_path / "ledger.sqlite"), "busy_timeout": 5})
    try:
        sor = store.get()
        sor.note_review_write("rita", 12, "2026-12-05T10:00:00Z")
        sor.note_review_write("rita", 7, "2026-12-05T10:00:01Z")  # an older action finishing late
        assert sor.get_review_write_position("rita") == 12
        sor.note_review_write("rita", 15, "2026-12-05T10:00:02Z")
        assert sor.get_review_write_position("rita") == 15 and sor.get_review_write_position("remy") == 0
    finally:
        store.close()


def _server_connections(env, expected):
    """Client connections the test's PostgreSQL database has open besides this count's own (psycopg: the backend's
    own driver), once they reach ``expected`` or after 5 s: a closed connection's server process may take a moment
    to leave pg_stat_activity."""
    import psycopg
    deadline = time.monotonic() + 5
    while True:
        with psycopg.connect(env["CHANGEOPS_POSTGRESQL_DSN"], autocommit=True) as connection:
            count = connection.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()[0]
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def _open_files(path):
    """The descriptors this process holds on ``path`` (an SQLite ledger: its file, its -wal and -shm files)."""
    held = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(os.path.join("/proc/self/fd", name))
        except OSError:
            continue  # (the listing's own descriptor, closed by now)
        if target.startswith(path):
            held.append(target)
    return sorted(held)


def test_the_connections_of_ended_worker_threads_are_closed(backend, backend_env):
    """The request thread pool ends idle threads and starts new ones for the next burst: each new thread's
    connection must not leave an ended thread's open (they piled up until PostgreSQL refused clients). On SQLite
    the connection itself is closed, not only dropped by its instance: a dropped one kept its file descriptors
    until the cyclic GC freed it."""
    store = Store(backend_config(backend_env))
    opened = []

    def request():
        opened.append(store.get())
        opened[-1].head()

    try:
        for _burst in range(6):
            worker = threading.Thread(target=request)
            worker.start()
            worker.join()
        store.get().head()  # this thread's own instance: the sixth worker's is closed as it is opened
        assert len(set(map(id, opened))) == 6
        assert all(sor._conn is None for sor in opened), "an ended thread's connection is still open"
        if backend == "postgresql":
            assert _server_connections(backend_env, 1) == 1  # this thread's
        else:
            path = store.backend_config["sqlite_path"]
            # this thread's connection alone: the ledger file and its -wal and -shm files once each
            assert _open_files(path) == [path, path + "-shm", path + "-wal"]
        assert len(store._opened) == 1
    finally:
        store.close()
    if backend == "postgresql":
        assert _server_connections(backend_env, 0) == 0


def test_a_thread_that_ends_while_the_store_asks_is_closed_not_forgotten(tmp_path):
    store = Store({"backend": "sqlite", "sqlite_path": str(tmp_path / "ledger.sqlite"), "busy_timeout": 5})

    class EndsWhileAsked(object):
        """A worker thread alive when first asked and ended from then on."""
        answers = iter([True])

        def is_alive(self):
            return next(self.answers, False)

    try:
        sor = store.get()
        sor.head()  # (opens its connection)
        store._opened[:] = [(EndsWhileAsked(), sor)]  # as if another thread had opened it
        store._close_ended()  # alive: kept
        assert store._opened and sor._conn is not None
        store._close_ended()  # ended: closed
        assert store._opened == [] and sor._conn is None
    finally:
        store.close()


REPLICA = "postgresql:host=db-standby dbname=changeops"


@pytest.mark.parametrize("read_from, level, server, words", [
    (None, None, None, None),
    ({"server": "replica", "lag_seconds": 0.0, "replayed_seq": 42, "reason": None, "cause": None},
     "info", "replica", "up to date, entry 42"),
    ({"server": "replica", "lag_seconds": 12.34, "replayed_seq": 40, "reason": None, "cause": None},
     "warn", "replica", "12.3 s behind the primary (replayed up to entry 40)"),
    ({"server": "primary", "lag_seconds": None, "replayed_seq": 40, "own_write_seq": 43, "cause": "position",
      "reason": "reading from the primary: the read replica %s has not replayed entry 43 yet" % REPLICA},
     "info", "primary", "your latest action (entry 43) is not on the read replica yet"),
    ({"server": "primary", "lag_seconds": None, "replayed_seq": None, "cause": "unreachable",
      "reason": "reading from the primary: the read replica %s is unreachable (connection refused)" % REPLICA},
     "warn", "primary", "not the read replica: the read replica %s is unreachable" % REPLICA),
])
def test_the_notice_names_the_source_and_the_lag(read_from, level, server, words):
    notice = read_from_notice(read_from)
    if read_from is None:
        assert notice is None
        return
    assert notice["level"] == level and notice["server"] == server
    assert words in notice["text"], notice["text"]
