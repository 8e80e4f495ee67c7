# -*- coding: utf-8 -*-
"""What appending a run costs must not grow with the ledger: no statement the projectors issue may walk a whole
table, or an index range that holds the whole history (every failed result ever recorded).

Such a statement is correct, and fast on a test ledger; it shows only at scale, as each run's end getting slower
with every run before it (a 1,000,000-event ledger built for bench/review_service slowed from 600 to 160 runs a
second that way: a projector's ``status = 'failed'`` made SQLite walk the status index instead of the run's rows).
So this test records every statement an append of recorder-shaped runs (with their CI links) issues on SQLite, with
its values, and asks SQLite for each statement's plan; a search of a per-change table by CI alone counts as a scan:
it is the CI's whole history.
"""

from __future__ import annotations

import datetime
import random

import pytest
from register_fixtures import register_cis, synthetic_run

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

KINDS = ("standard", "normal", "emergency", "unauthorised", "dry-run", "no-change", "failed")

#: plans that read a bounded number of rows although they say SCAN: the ledger head (the newest row by seq)
BOUNDED = {("SCAN ledger", "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")}

#: index searches whose range is the whole history of a value shared by many runs
UNBOUNDED_SEARCHES = ("USING INDEX task_results_status (status=?)",)

#: tables with a row per change and CI, whose search by CI alone reads the CI's whole history (a busy CI has
#: thousands of changes: metric_ci_next's upkeep reads only the rows a new link displaces, docs/metrics.md "Speed")
PER_CHANGE_OF_A_CI = ("ci_changes", "metric_ci_next")


def whole_ci_history(detail):
    # (the table may show under its alias; its indexes are named after it: ci_changes_ci_time, metric_ci_next_...)
    return (detail.startswith("SEARCH ") and detail.endswith("(ci_id=?)")
            and any(table in detail for table in PER_CHANGE_OF_A_CI))


def with_links(run_id, entries, ci_ids):
    """The run's entries and, as the recorder writes them after its end, its ``ci.changed_by_run`` links."""
    changed = sorted(set(entry.data["host"] for entry in entries
                         if entry.kind == "run.result" and entry.data["changed"]))
    return entries + [Entry("ci.changed_by_run", ci_ids[host], {"ci_id": ci_ids[host], "run_id": run_id, "host": host})
                      for host in changed]


def plans_of_an_append(sor, entries):
    connection = sor._connection()  # pylint: disable=protected-access
    statements = []
    connection.set_trace_callback(statements.append)
    try:
        sor.append(entries)
    finally:
        connection.set_trace_callback(None)
    for statement in statements:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT", "WITH")):
            for row in connection.execute("EXPLAIN QUERY PLAN " + statement).fetchall():
                yield row[3], statement


@pytest.mark.backends("sqlite")
def test_appending_a_run_reads_nothing_that_grows_with_the_ledger(open_sor):
    sor = open_sor()
    rng = random.Random(29)
    pool = ["web%02d.example.net" % number for number in range(24)]
    ci_ids = register_cis(sor, pool, "production")
    start = datetime.datetime(2026, 1, 5, tzinfo=datetime.timezone.utc)
    for number in range(120):  # a history with failed results, gates, reviews of every kind of run
        run_id, entries = synthetic_run(number, start + datetime.timedelta(minutes=9 * number), rng,
                                        sorted(rng.sample(pool, 2)), KINDS[number % len(KINDS)],
                                        environment="production", diff=number % 4 == 0)
        sor.append(with_links(run_id, entries, ci_ids))
    # then one more run of each kind, whose statements are examined; the last ones arrive late (a spool flushed
    # after later runs), which moves the next emergency change or deployment of the CIs' earlier changes
    for position, kind in enumerate(KINDS + ("emergency", "standard")):
        moment = start + (datetime.timedelta(days=2) if position < len(KINDS) else datetime.timedelta(hours=5))
        run_id, entries = synthetic_run(1000 + position, moment, rng, sorted(rng.sample(pool, 2)), kind,
                                        environment="production", diff=True)
        problems = []
        for detail, statement in plans_of_an_append(sor, with_links(run_id, entries, ci_ids)):
            unbounded_scan = detail.startswith("SCAN ") and (detail, statement.strip()) not in BOUNDED
            if unbounded_scan or whole_ci_history(detail) or any(search in detail for search in UNBOUNDED_SEARCHES):
                problems.append("%s: %s" % (detail, statement.strip()[:200]))
        assert not problems, "a %s run's append:\n%s" % (kind, "\n".join(problems))
