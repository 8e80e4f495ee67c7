# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open the configured system of record."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError


def open_system_of_record(config):
    """Return a :class:`base.SystemOfRecord` for a resolved backend config (see ``config.py``)."""
    backend = config.get("backend") or "sqlite"
    if backend == "sqlite":
        from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.sqlite import (
            SqliteSystemOfRecord,
        )
        return SqliteSystemOfRecord(config)
    if backend == "postgresql":
        try:
            from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.postgresql import (
                PostgresqlSystemOfRecord,
            )
        except ImportError as exc:
            raise ConfigurationError("the postgresql backend is not available: %s" % exc)
        return PostgresqlSystemOfRecord(config)
    raise ConfigurationError("unknown backend %r: choose sqlite or postgresql" % backend)
