# -*- coding: utf-8 -*-
"""Fixtures shared by unit and integration tests.

``backend`` is parametrised over the system-of-record backends, so a test that
takes ``sor``, ``backend_env`` or ``project`` runs once per backend. Tests that
only make sense for one backend use the ``sqlite_sor``/``sqlite_project``
fixtures or ``pytest.mark.backends("sqlite")``.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support.backends import BACKENDS, backend_config, fresh_env  # noqa: E402
from support.project import Project, ensure_collection_tree  # noqa: E402

ensure_collection_tree()
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".build", "collections"))

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError  # noqa: E402

#: fixtures of the ServiceNow simulator (simulator, sn, sn_process)
pytest_plugins = ["support.servicenow"]
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (  # noqa: E402
    open_system_of_record,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run only against these system-of-record backends")
    config.addinivalue_line("markers", "tampers_query_tables: edits query tables on purpose (no consistency check)")


@pytest.fixture(autouse=True)
def _witness_state_in_tmp(monkeypatch, tmp_path_factory):
    """The recorder keeps its default file witness (post-run checkpoint) and its fallback spool under
    $XDG_STATE_HOME (for root without it: /var/lib/changeops): keep the writers that tests run in-process
    out of the real home directory and /var/lib. ``Project`` runs get their project's own (state_home)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


@pytest.fixture(params=BACKENDS)
def backend(request):
    marker = request.node.get_closest_marker("backends")
    if marker is not None and request.param not in marker.args:
        pytest.skip("test is for backends %s only" % ", ".join(marker.args))
    return request.param


@pytest.fixture
def backend_env(backend, request, tmp_path):
    """Environment variables that select a fresh, empty system of record."""
    return fresh_env(backend, request, tmp_path)


@pytest.fixture
def open_sor(backend_env, request):
    """Factory: open the test's system of record (callers may open several connections).

    After the test, the query tables must still match a replay of the ledger, so
    every test that writes through the collection also checks that projections are
    deterministic. Tests that edit query tables on purpose opt out with
    ``pytest.mark.tampers_query_tables``.
    """
    opened = []

    def _open(**overrides):
        config = backend_config(backend_env)
        config.update(overrides)
        sor = open_system_of_record(config)
        opened.append(sor)
        return sor

    yield _open
    for sor in opened:
        sor.close()
    if opened and request.node.get_closest_marker("tampers_query_tables") is None:
        _assert_query_tables_match_the_ledger(backend_env)


def _assert_query_tables_match_the_ledger(backend_env):
    try:
        sor = open_system_of_record(backend_config(backend_env))
        try:
            report = sor.verify(projections=True)
        finally:
            sor.close()
    except ChangeopsError:
        return  # a fault test left the store unreachable, unreadable or from the future on purpose
    if report.first_broken is None and report.projection_problems:
        pytest.fail("after the test the query tables disagree with a replay of the ledger: %s"
                    % report.projection_problems)


@pytest.fixture
def sor(open_sor):
    return open_sor()


@pytest.fixture
def project(tmp_path, backend_env):
    """An Ansible project whose runs record into the test's system of record.

    Its runs are checked for imports on our threads after the test too (``Project.assert_fork_safe``), so a run
    the test started and killed is checked as well as those it ran to the end."""
    made = Project(tmp_path / "project", backend_env)
    yield made
    made.assert_fork_safe()


@pytest.fixture
def sqlite_env(tmp_path):
    return {"CHANGEOPS_BACKEND": "sqlite", "CHANGEOPS_SQLITE_PATH": str(tmp_path / "ledger.sqlite")}


@pytest.fixture
def sqlite_sor(sqlite_env):
    sor = open_system_of_record(backend_config(sqlite_env))
    yield sor
    sor.close()


@pytest.fixture
def sqlite_project(tmp_path, sqlite_env):
    made = Project(tmp_path / "project", sqlite_env)
    yield made
    made.assert_fork_safe()
