# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``SystemOfRecord.read_aside``: a read beside the caller's own reads.

PostgreSQL runs it in a thread on a store of its own, kept for the next read aside; SQLite runs it at once (a thread
measured no faster there). The metrics period's day sums are its user (``intelligence/metrics_rollup.py``); their
figures against the raw computation are in test_metric_rollups.py, on both backends."""

from __future__ import annotations

import datetime
import threading
import time

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import metrics_rollup
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry


def _ci(number):
    ci_id = "ci-aside-%d" % number
    return Entry("ci.created", ci_id, {"ci_id": ci_id, "identities": {}, "attributes": {
        "name": "aside-%d" % number, "class": "server", "status": "operational", "environment": "test"}})


def _names(store, names):
    return sorted(ci["name"] for ci in store.find_ci_summaries(names=names))


def test_postgresql_reads_aside_and_sqlite_at_once(open_sor):
    sor = open_sor()
    assert sor.reads_aside is (sor.backend_name == "postgresql")


@pytest.mark.backends("sqlite")
def test_sqlite_reads_at_once_in_the_caller_s_thread_on_its_own_store(open_sor):
    sor = open_sor()
    sor.append([_ci(0)])
    calls = []

    def read(store):
        calls.append((store, threading.current_thread()))
        return _names(store, ["aside-0"])

    wait = sor.read_aside(read)
    assert calls == [(sor, threading.current_thread())]
    assert wait() == ["aside-0"] and wait() == ["aside-0"]


@pytest.mark.backends("postgresql")
def test_postgresql_reads_aside_on_a_store_of_its_own_kept_until_the_store_closes(open_sor):
    sor = open_sor()
    sor.append([_ci(number) for number in range(3)])
    seen = []

    def read(store):
        seen.append((store, threading.current_thread()))
        return _names(store, ["aside-0", "aside-2", "nothing"])

    wait = sor.read_aside(read)
    # the caller's own store reads meanwhile
    assert _names(sor, ["aside-1"]) == ["aside-1"]
    assert wait() == ["aside-0", "aside-2"]
    assert sor.read_aside(read)() == ["aside-0", "aside-2"]
    (first, first_thread), (second, second_thread) = seen
    assert first is second and first is not sor and type(first) is type(sor)
    assert threading.current_thread() not in (first_thread, second_thread)
    assert first._conn is not None  # kept, connected, for the next read aside
    sor.close()
    assert first._conn is None and sor._aside is None


@pytest.mark.backends("postgresql")
def test_the_error_of_a_read_aside_is_raised_where_its_result_is_asked_for(open_sor):
    sor = open_sor()

    def read(store):
        store.find_ci_summaries(names=["x"])
        raise ValidationError("refused aside", path="day_ranges")

    wait = sor.read_aside(read)
    with pytest.raises(ValidationError, match="refused aside"):
        wait()
    # and the next read aside works
    assert sor.read_aside(lambda store: _names(store, ["x"]))() == []


@pytest.mark.backends("postgresql")
def test_a_metrics_period_whose_failure_rules_fail_leaves_no_read_aside_running(open_sor, monkeypatch):
    # the day sums are read aside while the failed changes are worked out; an error there waits for the read
    # before it goes on
    sor = open_sor()
    started, finished = threading.Event(), threading.Event()
    original = type(sor).find_metric_day_sums

    def slow_sums(store, day_ranges):
        started.set()
        try:
            time.sleep(0.3)  # (still reading when the caller's error comes)
            return original(store, day_ranges)
        finally:
            finished.set()

    def failing(*_args, **_kwargs):
        assert started.wait(10)
        raise ValidationError("the failure rules broke")

    monkeypatch.setattr(type(sor), "find_metric_day_sums", slow_sums)
    monkeypatch.setattr(metrics_rollup, "_failures", failing)
    until = datetime.datetime(2026, 1, 31, tzinfo=datetime.timezone.utc)
    with pytest.raises(ValidationError, match="the failure rules broke"):
        metrics_rollup.compute(sor, until - datetime.timedelta(days=30), until)
    assert finished.is_set()
