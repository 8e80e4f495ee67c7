# -*- coding: utf-8 -*-
"""A PostgreSQL primary and a hot standby of it, both started on loopback for the test (``pg_basebackup -R``), and
what replica tests do with them: run SQL on the standby (pause and resume replay), wait until it has replayed an
entry, wait until it has *received* WAL it has not replayed (a replica that is provably behind).

Used by ``test_postgresql_replica.py`` (the plugins' readers) and ``test_review_service_replica.py``.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record


@contextlib.contextmanager
def primary_and_standby(prefix="changeops_replica"):
    """``(primary, standby, database name)``: the schema is created on the primary before the standby is cloned."""
    from support import postgresql_server

    if postgresql_server.find_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    primary = postgresql_server.LocalServer().start()
    standby = None
    try:
        name = postgresql_server.create_database(primary, prefix=prefix)
        open_system_of_record({"backend": "postgresql", "postgresql_dsn": primary.dsn(name)}).close()
        standby = postgresql_server.StandbyServer(primary).start()
        yield primary, standby, name
    finally:
        if standby is not None:
            standby.remove()
        primary.remove()


def standby_sql(standby, sql):
    import psycopg

    with psycopg.connect(standby.dsn("postgres"), autocommit=True) as conn:
        return conn.execute(sql).fetchone()


def wait_until_replayed(standby, name, head_seq, timeout=120):
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(standby.dsn(name), autocommit=True) as conn:
                row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger").fetchone()
            if row[0] >= head_seq:
                return
        except psycopg.Error:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the standby did not replay entry %d within %d s" % (head_seq, timeout))
        time.sleep(0.2)


def wait_until_received_but_not_replayed(standby, timeout=120):
    """With replay paused after a write on the primary: wait until the standby has received that WAL (so it knows it
    is behind: its receive position is past its replay position)."""
    deadline = time.monotonic() + timeout
    while True:
        behind = standby_sql(standby, "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")[0]
        if behind:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the standby did not receive the primary's new WAL within %d s" % timeout)
        time.sleep(0.2)
