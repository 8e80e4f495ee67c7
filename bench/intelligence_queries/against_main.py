#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""The metrics queries of ``run.py`` with this tree's code against another checkout's (main), in alternating
processes, on ledgers seeded by ``run.py --reuse`` (each opened by its own code: copy the ledger first, since this
tree's code migrates it):

    cp density.sqlite /tmp/main.sqlite && cp density.sqlite /tmp/new.sqlite
    python bench/intelligence_queries/against_main.py --main /work/main --main-ledger /tmp/main.sqlite \\
        --ledger /tmp/new.sqlite

Each side times every query 4 times a round (CPU time, ``time.process_time``, and wall time), for ``--rounds``
rounds, the two sides alternating and swapping order each round, and computes one shifted 30-day period whose
figures must be identical on both sides. Prints medians and main / this ratios, with the load average.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUERIES = [("7 days, daily, by service", 7, "day", "service", {}),
           ("30 days, weekly, by service", 30, "week", "service", {}),
           ("30 days, production, by team", 30, "week", "team", {"environments": ["production"]}),
           ("30 days, one service", 30, "week", None, {"services": ["svc-7"]}),
           ("90 days, weekly, by service", 90, "week", "service", {})]
END = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)


def side(collections, ledger, round_number):
    """In a child process: time the queries with the code under ``collections``; JSON on stdout."""
    import time
    sys.path.insert(0, collections)
    from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import metrics
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (
        open_system_of_record,
    )
    sor = open_system_of_record({"backend": "sqlite", "sqlite_path": ledger, "busy_timeout": 60})
    out = {}
    for name, days, bucket, group_by, filters in QUERIES:
        cpu, wall = [], []
        for number in range(4):
            until = END - datetime.timedelta(days=round_number * 4 + number)
            begin_cpu, begin_wall = time.process_time(), time.perf_counter()
            metrics.compute(sor, until - datetime.timedelta(days=days), until, bucket=bucket, group_by=group_by,
                            **filters)
            cpu.append((time.process_time() - begin_cpu) * 1000.0)
            wall.append((time.perf_counter() - begin_wall) * 1000.0)
        out[name] = [cpu, wall]
    until = END - datetime.timedelta(days=2, hours=5, minutes=17)
    out["figures"] = json.dumps(metrics.compute(sor, until - datetime.timedelta(days=30), until, bucket="week",
                                                group_by="service"), sort_keys=True, default=str)
    print(json.dumps(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--main", required=True, help="the other checkout (with .build/collections)")
    parser.add_argument("--main-ledger", required=True, help="a copy of the ledger for the other checkout's code")
    parser.add_argument("--ledger", required=True, help="a copy of the ledger for this tree's code")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side[0], args.side[1], int(args.side[2]))
        return
    sides = [("main", os.path.join(args.main, ".build", "collections"), args.main_ledger),
             ("this", os.path.join(REPO, ".build", "collections"), args.ledger)]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # (nothing written into the other checkout)
    times = {name: {} for name, _path, _ledger in sides}
    figures = {}
    print("load average at start: %s" % " ".join("%.2f" % value for value in os.getloadavg()))
    for round_number in range(args.rounds):
        for name, collections, ledger in (sides if round_number % 2 == 0 else sides[::-1]):
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--main", args.main, "--main-ledger",
                                   args.main_ledger, "--ledger", args.ledger, "--side", collections, ledger,
                                   str(round_number)], env=env, capture_output=True, text=True, check=True)
            data = json.loads(done.stdout)
            figures[name] = data.pop("figures")
            for query, (cpu, wall) in data.items():
                cell = times[name].setdefault(query, ([], []))
                cell[0].extend(cpu)
                cell[1].extend(wall)
    print("identical figures (30 days by service, shifted period): %s"
          % ("yes" if figures["main"] == figures["this"] else "NO"))
    print("%-32s %12s %12s %7s %13s %13s %7s" % ("query", "main cpu ms", "this cpu ms", "x", "main wall ms",
                                                 "this wall ms", "x"))
    for query, _days, _bucket, _group_by, _filters in QUERIES:
        old, new = times["main"][query], times["this"][query]
        old_cpu, new_cpu, old_wall, new_wall = (statistics.median(values)
                                                for values in (old[0], new[0], old[1], new[1]))
        print("%-32s %12.1f %12.1f %7.2f %13.1f %13.1f %7.2f"
              % (query, old_cpu, new_cpu, old_cpu / new_cpu, old_wall, new_wall, old_wall / new_wall))
    print("load average at end: %s" % " ".join("%.2f" % value for value in os.getloadavg()))


if __name__ == "__main__":
    main()
