# -*- coding: utf-8 -*-
"""What appending a run costs must not grow with the ledger: no statement the projectors issue may walk a whole
table, or an index range that holds the whole history (every failed result ever recorded).

Such a statement is correct, and fast on a test ledger; it shows only at scale, as each run's end getting slower
with every run before it (a 1,000,000-event ledger built for bench/review_service slowed from 600 to 160 runs a
second that way: a projector's ``status = 'failed'`` made SQLite walk the status index instead of the run's rows).
So this test records every statement an append of recorder-shaped runs issues on SQLite, with its values, and asks
SQLite for each statement's plan.
"""

from __future__ import annotations

import datetime
import random

import pytest
from register_fixtures import register_cis, synthetic_run

KINDS = ("standard", "normal", "emergency", "unauthorised", "dry-run", "no-change", "failed")

#: plans that read a bounded number of rows although they say SCAN: the ledger head (the newest row by seq)
BOUNDED = {("SCAN ledger", "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")}

#: index searches whose range is the whole history of a value shared by many runs
UNBOUNDED_SEARCHES = ("USING INDEX task_results_status (status=?)",)


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
    register_cis(sor, pool, "production")
    start = datetime.datetime(2026, 1, 5, tzinfo=datetime.timezone.utc)
    for number in range(120):  # a history with failed results, gates, reviews of every kind of run
        _run_id, entries = synthetic_run(number, start + datetime.timedelta(minutes=9 * number), rng,
                                         sorted(rng.sample(pool, 2)), KINDS[number % len(KINDS)],
                                         environment="production", diff=number % 4 == 0)
        sor.append(entries)
    for kind in KINDS:  # then one more run of each kind, whose statements are examined
        _run_id, entries = synthetic_run(1000 + KINDS.index(kind), start + datetime.timedelta(days=2), rng,
                                         sorted(rng.sample(pool, 2)), kind, environment="production", diff=True)
        problems = []
        for detail, statement in plans_of_an_append(sor, entries):
            unbounded_scan = detail.startswith("SCAN ") and (detail, statement.strip()) not in BOUNDED
            if unbounded_scan or any(search in detail for search in UNBOUNDED_SEARCHES):
                problems.append("%s: %s" % (detail, statement.strip()[:200]))
        assert not problems, "a %s run's append:\n%s" % (kind, "\n".join(problems))
