# -*- coding: utf-8 -*-
"""tests/fixtures/ledger_v3: a schema-3 ledger written by the collection at db415c6 (real recorded runs,
two planted values its redaction let through), loaded into a test's empty system of record."""

from __future__ import annotations

import json
import os
import shutil

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "ledger_v3")

with open(os.path.join(FIXTURE, "manifest.json")) as _handle:
    MANIFEST = json.load(_handle)
STDOUT_LEAK, DIFF_LEAK = MANIFEST["planted"]


def load_fixture(backend_env):
    """The fixture ledger, as the old collection left it, in the test's (empty) system of record."""
    if backend_env["CHANGEOPS_BACKEND"] == "sqlite":
        shutil.copyfile(os.path.join(FIXTURE, "ledger.sqlite"), backend_env["CHANGEOPS_SQLITE_PATH"])
        return
    import psycopg

    with open(os.path.join(FIXTURE, "ledger.postgresql.sql")) as handle:
        # psql meta-commands (\restrict) are not SQL; the rest is pg_dump's plain output
        dump = "".join(line for line in handle if not line.startswith("\\"))
    with psycopg.connect(backend_env["CHANGEOPS_POSTGRESQL_DSN"], autocommit=True) as conn:
        conn.execute(dump)
