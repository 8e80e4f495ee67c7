# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open the configured system of record."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError


def load_backend(config):
    """Import the configured backend and return its class, without opening anything.

    A process that starts threads and then forks (the change_recorder callback's
    writer thread inside ansible-playbook, which forks a worker per task) must
    call this in the main thread before starting the thread: a fork while
    another thread is halfway through importing a module (psycopg takes a
    while) leaves that module's import lock held for ever in the child, and the
    worker hangs on its first ``open_system_of_record``.
    """
    backend = config.get("backend") or "sqlite"
    if backend == "sqlite":
        from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.sqlite import (
            SqliteSystemOfRecord,
        )
        return SqliteSystemOfRecord
    if backend == "postgresql":
        try:
            from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.postgresql import (
                PostgresqlSystemOfRecord,
            )
        except ImportError as exc:
            raise ConfigurationError("the postgresql backend is not available: %s" % exc)
        return PostgresqlSystemOfRecord
    raise ConfigurationError("unknown backend %r: choose sqlite or postgresql" % backend)


def open_system_of_record(config):
    """Return a :class:`base.SystemOfRecord` for a resolved backend config (see ``config.py``)."""
    return load_backend(config)(config)
