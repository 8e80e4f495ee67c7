# -*- coding: utf-8 -*-
"""What the review service's list index costs an append, per ledger entry (a ratio in the same script).

    .venv/bin/python bench/review_service/append_cost.py                       # SQLite, 3,000 runs
    .venv/bin/python bench/review_service/append_cost.py --backend postgresql --dsn "$DSN"

The same runs (the recorder's entry shapes: start, play, gate, three results per host, finish; 1-3 hosts)
are appended through ``SystemOfRecord.append`` twice into fresh ledgers, batch by batch as the recorder's
writer thread does: once as shipped, once with the list index's projection (``change_index.reindex``)
turned into a no-op. The difference is what the list index costs: printed per run and per entry, and as a
share of the append. Both passes alternate in rounds so that the machine's load hits both alike; on SQLite
the figures are this process's CPU time (the database works in it), so another job on the machine does
not move them; on PostgreSQL they are wall times.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(REPO, "tests"), os.path.join(REPO, "tests", "integration"),
                os.path.join(REPO, ".build", "collections")]

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import change_index  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (  # noqa: E402
    open_system_of_record,
)
from register_fixtures import register_cis, synthetic_run  # noqa: E402

KINDS = ["standard"] * 5 + ["normal"] * 2 + ["emergency", "unauthorised", "dry-run", "no-change", "failed"]


def batches(runs, batch_runs, seed=7, host_pool=500):
    rng = random.Random(seed)
    pool = ["web%04d.example.net" % number for number in range(host_pool)]
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    pending, out, entries = [], [], 0
    for number in range(runs):
        hosts = sorted(rng.sample(pool, rng.randint(1, 3)))
        _run_id, run_entries = synthetic_run(number, start + datetime.timedelta(seconds=30 * number), rng, hosts,
                                             KINDS[number % len(KINDS)], environment="production", diff=False)
        pending.extend(run_entries)
        entries += len(run_entries)
        if (number + 1) % batch_runs == 0:
            out.append(pending)
            pending = []
    if pending:
        out.append(pending)
    return out, entries, pool


def fresh(args, tag):
    if args.backend == "postgresql":
        import psycopg
        name = "bench_append_cost_%s" % tag
        admin = psycopg.connect(args.dsn, autocommit=True)
        admin.execute("DROP DATABASE IF EXISTS %s" % name)
        admin.execute("CREATE DATABASE %s" % name)
        admin.close()
        dsn = args.dsn.rsplit("/", 1)[0] + "/" + name
        return {"backend": "postgresql", "postgresql_dsn": dsn}
    return {"backend": "sqlite", "sqlite_path": os.path.join(args.tmp, "ledger-%s.sqlite" % tag)}


def one_pass(args, tag, work, pool, indexed):
    config = fresh(args, tag)
    sor = open_system_of_record(config)
    register_cis(sor, pool, "production")
    original = change_index.reindex
    if not indexed:
        change_index.reindex = lambda db, run_id, full=True: None
    try:
        copies = [[entry.__class__.from_dict(entry.to_dict()) for entry in batch] for batch in work]  # unsealed
        began, cpu = time.perf_counter(), time.process_time()
        for batch in copies:
            sor.append(batch)
        # SQLite works in this process: its CPU time is what the append costs, whatever else loads the machine
        # (PostgreSQL works in the server: there the wall time is all there is)
        return time.process_time() - cpu if args.backend == "sqlite" else time.perf_counter() - began
    finally:
        change_index.reindex = original
        sor.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--dsn", help="PostgreSQL DSN of a database the bench may create databases from")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--batch-runs", type=int, default=5, help="runs per append (the recorder appends small batches)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    args.tmp = tempfile.mkdtemp(prefix="append-cost-")
    work, entries, pool = batches(args.runs, args.batch_runs)
    times = {True: [], False: []}
    try:
        for number in range(args.rounds):
            for indexed in (False, True):
                times[indexed].append(one_pass(args, "%s%d" % ("i" if indexed else "n", number), work, pool, indexed))
    finally:
        shutil.rmtree(args.tmp, ignore_errors=True)
    without, with_index = min(times[False]), min(times[True])
    extra = with_index - without
    print("%s: %d runs, %d entries, %d runs per append (best of %d rounds)" % (
        args.backend, args.runs, entries, args.batch_runs, args.rounds))
    unit = "CPU s" if args.backend == "sqlite" else "s"
    print("  without the list index: %.2f %s  (%.0f entries/s)" % (without, unit, entries / without))
    print("  with the list index:    %.2f %s  (%.0f entries/s)" % (with_index, unit, entries / with_index))
    print("  the list index costs %.0f us per run, %.1f us per entry: %.0f %% of the append" % (
        extra / args.runs * 1e6, extra / entries * 1e6, 100.0 * extra / with_index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
