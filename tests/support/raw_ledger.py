# -*- coding: utf-8 -*-
"""Direct connections to a system of record's storage, for tests that tamper behind the collection's back.

What an administrator with write access to ``ledger.sqlite`` (sqlite3) or to the
shared PostgreSQL database (psycopg) could do; both take sqlite3-style ``?``
placeholders so one tampering works on either backend.
"""

from __future__ import annotations

import sqlite3


class _PostgresqlConnection:
    def __init__(self, dsn):
        import psycopg

        self._conn = psycopg.connect(dsn, autocommit=True)

    def execute(self, sql, params=()):
        return self._conn.execute(sql.replace("?", "%s"), params)

    def close(self):
        self._conn.close()


def raw_ledger_connection(sor, backend_env):
    """An autocommit connection to the storage behind ``sor``, outside the system-of-record interface."""
    if backend_env["CHANGEOPS_BACKEND"] == "postgresql":
        return _PostgresqlConnection(backend_env["CHANGEOPS_POSTGRESQL_DSN"])
    conn = sqlite3.connect(sor.path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn
