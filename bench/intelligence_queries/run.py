#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""Triage and DevOps metrics on a large ledger: 1,000,000 change events and 10,000 CIs by default.

    python bench/intelligence_queries/run.py                         # full size (SQLite; seeding takes long)
    python bench/intelligence_queries/run.py --events 20000 --cis 2000   # small
    python bench/intelligence_queries/run.py --backend postgresql --dsn "$(bash bench/postgresql_server.sh start | tail -n1)"
    python bench/intelligence_queries/run.py --reuse /path/ledger.sqlite # time again on a ledger seeded before

The ledger is filled through the public append path (``SystemOfRecord.append``, batches of 2,000 entries) as
the recorder and the gate fill it: per change event ``run.started`` (with the git commit time), ``run.gate``
(standard, normal or emergency), one changed ``run.result``, ``run.finished`` (about 4 % failed) and the
``ci.changed_by_run`` link, spread over two years. The CMDB: hosts (90 % of the CIs, each listing one of 50
services and one of 12 support groups) and applications (10 %) that run on 5 hosts and depend on 2 others.

Timed, each the median (and p95) of ``--repeat`` calls with different arguments:

* ``triage``   - ``change_event_info``'s triage (``intelligence/triage.py``) of a random application at a random
                 moment, 24 h window, depth 3, 20 results with what each changed;
* ``metrics``  - ``change_metrics_info`` (``intelligence/metrics.py``) over 7 days per day by service, 30 days per
                 week by service, 30 days of one environment by team, 30 days of one service, 90 days per week by
                 service: read from the daily rollups (``metrics_rollup.py``, the default) and, as the baseline in
                 the same run, computed from every change of the period (``use_rollups=False``, the raw
                 computation; fewer repeats: it is slow). Each pair's results are compared: they must be identical;
* baseline     - ``get_change_event`` of a random run: one indexed read, what the machine does in the same run.

Budget: triage and every metrics query <= 200 ms at full size.

``--main-path`` also times each rollup query as main had it before ``metric_ci_next`` (migration 14): the emergency
rule as one join over the CI change log, every failed change's time to restore from all deployments of its CIs
(``main path ms``, alternating with the new path call by call; ``x main`` is the ratio).
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import (  # noqa: E402
    metrics,
    metrics_rollup,
    triage,
)
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (  # noqa: E402
    open_system_of_record,
)

BUDGET_MS = 200.0
SPAN = datetime.timedelta(days=730)


def seed(sor, events, cis, end, batch=2000, progress=True, span=SPAN):
    """Seed the ledger with ``cis`` CIs and ``events`` change events; resumes a seeding that stopped.

    Everything drawn is drawn again on a resume (the same random sequence), but only what the ledger does not
    hold yet is appended: the CMDB when it has no CI, and the change events from the first one it lacks. Each
    append is one transaction, so an interrupted seeding leaves whole batches only."""
    rng = random.Random(18)
    hosts = max(1, cis * 9 // 10)
    apps = max(1, cis - hosts)
    host_ids = ["ci-h%06d" % number for number in range(hosts)]
    app_ids = ["ci-a%05d" % number for number in range(apps)]
    entries = []
    have_cmdb = bool(sor.find_cis(limit=1))
    have_events = sor.list_change_events({"all": True}, limit=1)["total"] or 0 if have_cmdb else 0
    if have_cmdb and progress:
        print("  resuming: the CMDB and %d change events are there already" % have_events, flush=True)

    def flush(force=False):
        if entries and (force or len(entries) >= batch):
            if not skipping:
                sor.append(list(entries))
            del entries[:]

    skipping = have_cmdb

    for number, ci_id in enumerate(host_ids):
        entries.append(Entry("ci.created", ci_id, {"ci_id": ci_id, "identities": {}, "attributes": {
            "name": "host%06d" % number, "class": "server", "environment": ("production", "staging")[number % 2],
            "services": ["svc-%d" % (number % 50)], "support_group": "team-%d" % (number % 12)}}))
        flush()
    for number, ci_id in enumerate(app_ids):
        entries.append(Entry("ci.created", ci_id, {"ci_id": ci_id, "identities": {}, "attributes": {
            "name": "app-%05d" % number, "class": "application", "criticality": 1 + number % 4}}))
        flush()
    flush(True)
    for ci_id in app_ids:
        for target in rng.sample(host_ids, min(5, len(host_ids))):
            entries.append(Entry("ci.relationship_added", ci_id, {"source": ci_id, "type": "runs_on", "target": target}))
        for target in rng.sample(app_ids, min(2, len(app_ids))):
            if target != ci_id:
                entries.append(Entry("ci.relationship_added", ci_id, {"source": ci_id, "type": "depends_on",
                                                                      "target": target}))
        flush()
    flush(True)
    skipping = False
    start = end - span
    step = span / max(events, 1)
    begun = time.monotonic()
    for number in range(events):
        if number < have_events:
            rng.randrange(hosts)
            continue
        run_id = "run-%08d" % number
        at = start + step * number
        host_number = rng.randrange(hosts)
        host, ci_id = "host%06d" % host_number, host_ids[host_number]
        started, ended = format_time(at), format_time(at + datetime.timedelta(minutes=3))
        gate = ("standard", "normal", "emergency")[0 if number % 10 < 7 else (1 if number % 10 < 9 else 2)]
        status = "failed" if number % 25 == 0 else "successful"
        entries.extend([
            Entry("run.started", run_id, {"run_id": run_id, "started_at": started, "user": "ops", "controller": "ctl",
                                          "pid": 1, "playbooks": ["site-%d.yml" % (number % 40)], "check_mode": False,
                                          "git": {"commit": "%040x" % number, "commit_time": format_time(
                                              at - datetime.timedelta(hours=1 + number % 48))}}, at=started),
            Entry("run.gate", run_id, {"run_id": run_id, "play_id": "p", "decision_id": "d" + run_id,
                                       "allowed": True, "type": gate, "reference": gate, "reasons": [],
                                       "hosts": [host], "checked_at": started}, at=started),
            Entry("run.result", run_id, {"run_id": run_id, "play_id": "p", "host": host, "item": None,
                                         "status": "changed", "changed": True, "started_at": started,
                                         "task": {"uuid": "t", "name": "Configure", "action": "ansible.builtin.copy",
                                                  "check_mode": False},
                                         "result": {"dest": "/etc/app/%d.conf" % (number % 7)}}, at=started),
            Entry("run.finished", run_id, {"run_id": run_id, "ended_at": ended, "outcome": status}, at=ended),
            Entry("ci.changed_by_run", ci_id, {"ci_id": ci_id, "run_id": run_id, "host": host}, at=ended)])
        flush()
        if progress and number > have_events and number % 50000 == 0:
            rate = (number - have_events) / (time.monotonic() - begun)
            print("  %d events (%.0f per second, %.0f min to go)" % (number, rate, (events - number) / rate / 60),
                  flush=True)
    flush(True)
    return app_ids


#: the emergency rule's query before metric_ci_next (main before migration 14): the baseline of --main-path
MAIN_EMERGENCY_SQL = (
    "SELECT DISTINCT x.run_id FROM metric_changes e"
    " JOIN ci_changes ec ON ec.run_id = e.run_id"
    " JOIN ci_changes xc ON xc.ci_id = ec.ci_id AND xc.started_at >= ? AND xc.started_at <= e.started_at"
    " JOIN metric_changes x ON x.run_id = xc.run_id"
    " WHERE e.emergency = 1 AND e.started_at >= ? AND e.started_at < ?"
    " AND x.run_id <> e.run_id AND x.started_at >= ? AND x.started_at < ?"
    " AND x.start_us < e.start_us AND x.end_us <= e.start_us AND x.end_us >= e.start_us - ?")


class main_path(object):
    """Within the block, the rollup computation runs main's path: the emergency rule's join and every failed
    change's time to restore from all deployments of its CIs."""

    def __init__(self, sor):
        self.sor = sor

    def __enter__(self):
        sor = self.sor
        self.saved = (sor.find_emergency_marked, metrics_rollup._restore_times)
        sor.find_emergency_marked = lambda since, until, window_us: [row[0] for row in sor._query(
            MAIN_EMERGENCY_SQL, (since, since, until, since, until, int(window_us)))]
        metrics_rollup._restore_times = lambda sor_, changes, since, horizon, *_rest: (
            metrics_rollup._restore_from_deployments(sor_, changes, [change for change in changes.values()
                                                                     if change.failed], since, horizon))

    def __exit__(self, *exc):
        self.sor.find_emergency_marked, metrics_rollup._restore_times = self.saved
        del self.sor.find_emergency_marked


def timed_pair(new, old, repeat):
    """Median (and p95) of ``new`` and of ``old``, called alternately (the same load on both)."""
    times = ([], [])
    for number in range(repeat):
        for which, function in enumerate((new, old)):
            begin = time.perf_counter()
            function(number)
            times[which].append((time.perf_counter() - begin) * 1000.0)
    return [(statistics.median(values), sorted(values)[min(len(values) - 1, int(0.95 * len(values)))])
            for values in times]


def timed(function, repeat):
    times = []
    for number in range(repeat):
        begin = time.perf_counter()
        function(number)
        times.append((time.perf_counter() - begin) * 1000.0)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--events", type=int, default=1000000)
    parser.add_argument("--cis", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--dsn")
    parser.add_argument("--reuse", help="an SQLite ledger to seed and keep: seeded here when the file does not exist "
                                        "yet, and a seeding that stopped part-way resumes (so does a --dsn database)")
    parser.add_argument("--seed-only", action="store_true", help="seed (or resume seeding) and stop")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--span-days", type=float, default=SPAN.days,
                        help="the history's span: fewer events over a shorter span keep the full size's changes per "
                             "30 days (--events 100000 --span-days 73 is 1,000,000 over two years' density)")
    parser.add_argument("--skip-raw", action="store_true", help="time the rollups only (no raw baseline)")
    parser.add_argument("--main-path", action="store_true",
                        help="also time the rollup queries as main had them before metric_ci_next (migration 14)")
    args = parser.parse_args()
    if args.seed_only and not (args.reuse or args.dsn):
        parser.error("--seed-only seeds a ledger that is kept: give --reuse PATH or --dsn")
    root = tempfile.mkdtemp(prefix="changeops-intelligence-")
    end = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    if args.backend == "postgresql":
        if not args.dsn:
            parser.error("--backend postgresql needs --dsn (bash bench/postgresql_server.sh start)")
        config = {"backend": "postgresql", "postgresql_dsn": args.dsn, "busy_timeout": 60}
    else:
        config = {"backend": "sqlite", "sqlite_path": args.reuse or os.path.join(root, "ledger.sqlite"),
                  "busy_timeout": 60}
    print("load average at start: %s" % " ".join("%.2f" % value for value in os.getloadavg()))
    sor = open_system_of_record(config)
    begun = time.monotonic()
    app_ids = seed(sor, args.events, args.cis, end, span=datetime.timedelta(days=args.span_days))
    print("seeded %d change events and %d CIs in %.0f s (what was not there yet)"
          % (args.events, args.cis, time.monotonic() - begun), flush=True)
    if args.seed_only:
        sor.close()
        shutil.rmtree(root, ignore_errors=True)
        return 0
    sor.close()
    sor = open_system_of_record(config)
    rng = random.Random(7)
    runs = ["run-%08d" % rng.randrange(args.events) for _number in range(args.repeat)]
    anchors = [(rng.choice(app_ids), end - datetime.timedelta(days=args.span_days) * rng.random())
               for _number in range(args.repeat)]
    found = []

    def run_triage(number):
        ci_id, at = anchors[number]
        found.append(triage.triage(sor, at, ci=ci_id, window=datetime.timedelta(hours=24), max_depth=3, limit=20))

    def metrics_call(days, bucket, group_by=None, use_rollups=True, **filters):
        def call(number):
            until = end - datetime.timedelta(days=number)
            return metrics.compute(sor, until - datetime.timedelta(days=days), until, bucket=bucket,
                                   group_by=group_by, use_rollups=use_rollups, **filters)
        return call

    results = {
        "baseline (get_change_event)": timed(lambda number: sor.get_change_event(runs[number]), args.repeat),
        "triage": timed(run_triage, args.repeat),
    }
    metric_queries = [
        ("metrics (7 days, daily, by service)", (7, "day", "service"), {}),
        ("metrics (30 days, weekly, by service)", (30, "week", "service"), {}),
        ("metrics (30 days, production, by team)", (30, "week", "team"), {"environments": ["production"]}),
        ("metrics (30 days, one service)", (30, "week", None), {"services": ["svc-7"]}),
        ("metrics (90 days, weekly, by service)", (90, "week", "service"), {}),
    ]
    raw_repeat = max(2, args.repeat // 5)
    raw, identical, main = {}, {}, {}
    for name, (days, bucket, group_by), filters in metric_queries:
        if args.main_path:
            new_call = metrics_call(days, bucket, group_by, True, **filters)

            def old_call(number, new_call=new_call):
                with main_path(sor):
                    return new_call(number)
            results[name], main[name] = timed_pair(new_call, old_call, args.repeat)
            until = end - datetime.timedelta(days=1, hours=7)
            with main_path(sor):
                before = metrics.compute(sor, until - datetime.timedelta(days=days), until, bucket=bucket,
                                         group_by=group_by, **filters)
            if before != metrics.compute(sor, until - datetime.timedelta(days=days), until, bucket=bucket,
                                         group_by=group_by, **filters):
                print("%s: main's path and the new one DIFFER" % name)
        else:
            results[name] = timed(metrics_call(days, bucket, group_by, True, **filters), args.repeat)
        if not args.skip_raw:
            raw[name] = timed(metrics_call(days, bucket, group_by, False, **filters), raw_repeat)
            # the rollups must give the raw computation's figures exactly (a shifted period: edge days too)
            shifted = end - datetime.timedelta(days=3, hours=5, minutes=17)
            pair = [metrics.compute(sor, shifted - datetime.timedelta(days=days), shifted, bucket=bucket,
                                    group_by=group_by, use_rollups=flag, **filters) for flag in (True, False)]
            identical[name] = pair[0] == pair[1]
    sor.close()
    base = results["baseline (get_change_event)"][0]
    print("\n%s, %d change events, %d CIs; triage found %.1f changes on average"
          % (args.backend, args.events, args.cis, statistics.mean(item["change_count"] for item in found)))
    print("%-40s %9s %9s %9s %11s %9s %10s %12s %7s"
          % ("query", "median ms", "p95 ms", "x base", "raw med ms", "x faster", "identical", "main path ms",
             "x main"))
    for name, (median, p95) in results.items():
        verdict = ""
        if name.startswith(("triage", "metrics")):
            verdict = "  budget %.0f ms: %s" % (BUDGET_MS, "met" if median <= BUDGET_MS else "NOT met")
        raw_median = raw.get(name, (None, None))[0]
        main_median = main.get(name, (None, None))[0]
        print("%-40s %9.1f %9.1f %9.1f %11s %9s %10s %12s %7s%s" % (
            name, median, p95, median / max(base, 0.001),
            "-" if raw_median is None else "%.1f" % raw_median,
            "-" if raw_median is None else "%.1f" % (raw_median / max(median, 0.001)),
            {True: "yes", False: "NO"}.get(identical.get(name), "-"),
            "-" if main_median is None else "%.1f" % main_median,
            "-" if main_median is None else "%.2f" % (main_median / max(median, 0.001)), verdict))
    print("load average at end: %s" % " ".join("%.2f" % value for value in os.getloadavg()))
    if args.keep:
        print("kept: %s" % root)
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
