# -*- coding: utf-8 -*-
"""The system-of-record backends every test runs against, for fixtures of any scope.

``tests/conftest.py`` builds its function-scoped ``backend`` fixture from these;
module-scoped fixtures (a ledger filled by real runs once, read by many tests)
parametrise themselves with ``params=BACKENDS`` and call :func:`fresh_env`.
"""

from __future__ import annotations

import pytest

BACKENDS = ["sqlite", "postgresql"]


def fresh_env(backend, request, directory):
    """Environment variables selecting a fresh, empty system of record of ``backend``.

    SQLite: a ledger file in ``directory``; PostgreSQL: a new database on the
    session's real server, dropped when ``request``'s scope ends.
    """
    if backend == "sqlite":
        return {"CHANGEOPS_BACKEND": "sqlite", "CHANGEOPS_SQLITE_PATH": str(directory / "ledger.sqlite")}
    try:
        from support import postgresql_server  # provided with the PostgreSQL backend
    except ImportError:
        pytest.skip("the PostgreSQL backend is not implemented yet")
    return postgresql_server.fresh_database_env(request)


def backend_config(env):
    """The ``open_system_of_record`` configuration that ``env`` (from :func:`fresh_env`) selects."""
    return {
        "backend": env["CHANGEOPS_BACKEND"],
        "sqlite_path": env.get("CHANGEOPS_SQLITE_PATH"),
        "postgresql_dsn": env.get("CHANGEOPS_POSTGRESQL_DSN"),
        "busy_timeout": int(env.get("CHANGEOPS_BUSY_TIMEOUT", "60")),
    }
