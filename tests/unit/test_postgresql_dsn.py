# -*- coding: utf-8 -*-
"""PostgreSQL connection strings: secrets never reach a message, defaults never override the user."""

from __future__ import annotations

import builtins
import importlib
import sys

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError, MissingDependency
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import postgresql
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record


@pytest.mark.parametrize("dsn, secret", [
    ("postgresql://ops:s3cr%40t@db.example.org:5432/changeops?sslmode=verify-full", "s3cr%40t"),
    ("postgres://ops:pa:ss@db/changeops", "pa:ss"),
    ("host=db.example.org user=ops password=plainSecret dbname=changeops", "plainSecret"),
    ("host=db user=ops password='quoted secret' dbname=changeops", "quoted secret"),
    ("host=db PASSWORD = Upper0Case dbname=x", "Upper0Case"),
])
def test_describe_and_scrub_hide_the_password_in_every_form(dsn, secret):
    assert secret not in postgresql.describe_dsn(dsn, environ={})
    # a server or libpq error that echoes the raw secret (or the DSN) is scrubbed too
    message = "connection to %s failed: FATAL: bad password %s" % (dsn, secret)
    scrubbed = postgresql.scrub(message, dsn, environ={})
    assert secret not in scrubbed
    assert "********" in scrubbed


def test_pgpassword_from_the_environment_is_scrubbed_as_well():
    scrubbed = postgresql.scrub("echo: EnvSecret99", "host=db", environ={"PGPASSWORD": "EnvSecret99"})
    assert "EnvSecret99" not in scrubbed


def test_empty_dsn_is_described_by_the_libpq_variables_without_pgpassword():
    environ = {"PGHOST": "db.example.org", "PGPORT": "6432", "PGDATABASE": "changeops", "PGPASSWORD": "nope123"}
    description = postgresql.describe_dsn("", environ=environ)
    assert description == "postgresql:(libpq environment: PGHOST=db.example.org PGPORT=6432 PGDATABASE=changeops)"
    assert postgresql.describe_dsn("", environ={}) == "postgresql:(libpq environment and defaults)"


def test_connection_defaults_fill_only_what_the_dsn_leaves_out():
    kwargs = postgresql.connection_kwargs("host=db connect_timeout=2 application_name=ci-runner-7")
    assert "connect_timeout" not in kwargs and "application_name" not in kwargs
    assert kwargs["keepalives_idle"] == "30"
    assert postgresql.connection_kwargs("")["connect_timeout"] == "10"
    # libpq's Kerberos probe is not fork-safe: off unless the DSN asks for GSSAPI encryption
    assert postgresql.connection_kwargs("host=db")["gssencmode"] == "disable"
    assert "gssencmode" not in postgresql.connection_kwargs("host=db gssencmode=require")
    uri = postgresql.connection_kwargs("postgresql://db/changeops?keepalives_idle=5&sslmode=verify-full")
    assert "keepalives_idle" not in uri


def test_a_malformed_dsn_names_the_problem_and_hides_the_password():
    with pytest.raises(ConfigurationError) as raised:
        open_system_of_record({"backend": "postgresql", "postgresql_dsn": "host=db password=TopSecret1 = broken"})
    assert "not a valid libpq connection string" in raised.value.message
    assert "TopSecret1" not in raised.value.message


def test_without_psycopg_the_backend_reports_the_missing_library(monkeypatch):
    real_import = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name == "psycopg" or name.startswith("psycopg."):
            raise ImportError("No module named 'psycopg'")
        return real_import(name, *args, **kwargs)

    module_name = postgresql.__name__
    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    monkeypatch.delitem(sys.modules, module_name)
    try:
        reloaded = importlib.import_module(module_name)
        with pytest.raises(MissingDependency, match=r"psycopg 3 .*pip install 'psycopg\[binary\]'"):
            reloaded.PostgresqlSystemOfRecord({"backend": "postgresql", "postgresql_dsn": "host=db"})
    finally:
        monkeypatch.undo()
        sys.modules[module_name] = postgresql
