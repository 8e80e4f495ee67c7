# -*- coding: utf-8 -*-
"""What keeping ``metric_ci_next`` costs the end of a run on a CI with a long history: incremental against full refresh.

For each size N (``--sizes``, default 100, 1,000 and 10,000), a fresh SQLite ledger gets one busy CI and N earlier
changes of it through the append path (seven in ten standard changes, two normal, one emergency, one in
twenty-five failed, 37 minutes apart). Then runs of the CI are appended one at a time, each later than all before
(the recorder's order; every fifth an emergency change, so a run's link displaces the rows since the last one), with
the two ways of keeping ``metric_ci_next`` alternating run by run and rotated each round:

``incremental``
    this tree's ``metric_rollups._link_next``: the rows the new change displaces and its own next ones, index
    ranges bounded by what changes;
``full``
    ``metric_rollups._refresh_next``, the upkeep before (every change of the CI read again and recomputed).

It prints, per size and variant, the median CPU time (``time.process_time``) of the ``metric_ci_next`` upkeep of a
link alone and of the whole append of the run (every projector), and their ratios full / incremental. CPU time,
not wall time: it holds while other processes load the machine (the load average is printed at the start and the
end). Before printing it checks that the rows equal ``next_rows`` over the CI's whole history (the backfill's
computation), so a variant that skipped work cannot give a flattering figure.

    .venv/bin/python bench/metric_next_upkeep/run.py                      # N = 100, 1,000, 10,000 (~3 min)
    .venv/bin/python bench/metric_next_upkeep/run.py --sizes 100 --repeat 3     # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import metric_rollups  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (  # noqa: E402
    open_system_of_record,
)

CI_ID = "ci-busy"
ORIGIN = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
STEP = datetime.timedelta(minutes=37)


def run_entries(number, gate, status="successful"):
    """A recorder-shaped run of the busy CI: start, gate, one changed result, end, then its CI link."""
    run_id = "run-%08d" % number
    at = ORIGIN + STEP * number
    started, ended = format_time(at), format_time(at + datetime.timedelta(minutes=3))
    return [
        Entry("run.started", run_id, {"run_id": run_id, "started_at": started, "user": "ops", "controller": "ctl",
                                      "pid": 1, "playbooks": ["site.yml"], "check_mode": False,
                                      "git": {"commit": "%040x" % number, "commit_time": format_time(
                                          at - datetime.timedelta(hours=2))}}, at=started),
        Entry("run.gate", run_id, {"run_id": run_id, "play_id": "p", "decision_id": "d" + run_id, "allowed": True,
                                   "type": gate, "reference": gate, "reasons": [], "hosts": ["busy01"],
                                   "checked_at": started}, at=started),
        Entry("run.result", run_id, {"run_id": run_id, "play_id": "p", "host": "busy01", "item": None,
                                     "status": "changed", "changed": True, "started_at": started,
                                     "task": {"uuid": "t", "name": "Configure", "action": "ansible.builtin.copy",
                                              "check_mode": False}, "result": {"dest": "/etc/app.conf"}}, at=started),
        Entry("run.finished", run_id, {"run_id": run_id, "ended_at": ended, "outcome": status}, at=ended),
        Entry("ci.changed_by_run", CI_ID, {"ci_id": CI_ID, "run_id": run_id, "host": "busy01"}, at=ended)]


def seed(sor, count, batch=2500):
    sor.append([Entry("ci.created", CI_ID, {"ci_id": CI_ID, "identities": {}, "attributes": {
        "name": "busy01", "class": "server", "environment": "production", "services": ["shop"],
        "support_group": "web"}})])
    entries = []
    for number in range(count):
        gate = ("standard", "normal", "emergency")[0 if number % 10 < 7 else (1 if number % 10 < 9 else 2)]
        entries.extend(run_entries(number, gate, "failed" if number % 25 == 0 else "successful"))
        if len(entries) >= batch:
            sor.append(entries)
            entries = []
    if entries:
        sor.append(entries)


def exact(sor):
    """True when the CI's rows are ``next_rows`` over its whole history."""
    members = [tuple(row) for row in sor._query(  # pylint: disable=protected-access
        "SELECT m.run_id, m.started_at, m.start_us, m.end_us, m.emergency, m.deployment FROM ci_changes c"
        " JOIN metric_changes m ON m.run_id = c.run_id WHERE c.ci_id = ?", (CI_ID,))]
    stored = sorted(tuple(row) for row in sor._query(  # pylint: disable=protected-access
        "SELECT %s FROM metric_ci_next WHERE ci_id = ?" % metric_rollups._NEXT_COLUMNS, (CI_ID,)))
    return stored == sorted(metric_rollups.next_rows(CI_ID, members)) and len(stored) == len(members)


def measure(size, repeat, root):
    path = os.path.join(root, "ledger-%d.sqlite" % size)
    sor = open_system_of_record({"backend": "sqlite", "sqlite_path": path, "busy_timeout": 60})
    began = time.monotonic()
    seed(sor, size)
    print("N = %d: seeded %d runs of one CI in %.0f s" % (size, size, time.monotonic() - began))
    incremental = metric_rollups._link_next  # pylint: disable=protected-access
    upkeep = {}

    def timed(function):
        def link(db, ci_id, run_id):
            started = time.process_time()
            function(db, ci_id, run_id)
            upkeep["last"] = time.process_time() - started
        return link

    variants = {"incremental": timed(incremental),
                "full": timed(lambda db, ci_id, _run_id: metric_rollups._refresh_next(db, ci_id))}
    figures = {name: {"upkeep": [], "append": []} for name in variants}
    number = size
    try:
        for round_number in range(repeat):
            order = sorted(variants) if round_number % 2 else sorted(variants, reverse=True)
            for name in order:
                gate = "emergency" if number % 5 == 0 else "standard"
                entries = run_entries(number, gate)
                number += 1
                metric_rollups._link_next = variants[name]  # pylint: disable=protected-access
                started = time.process_time()
                sor.append(entries)
                figures[name]["append"].append(time.process_time() - started)
                figures[name]["upkeep"].append(upkeep.pop("last"))
    finally:
        metric_rollups._link_next = incremental  # pylint: disable=protected-access
    if not exact(sor):
        raise SystemExit("N = %d: metric_ci_next differs from next_rows over the CI's history" % size)
    sor.close()
    os.unlink(path)
    return {name: {part: statistics.median(values) * 1000 for part, values in parts.items()}
            for name, parts in figures.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="the CI's earlier changes, comma-separated")
    parser.add_argument("--repeat", type=int, default=21, help="runs appended per variant and size")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print("load average at start: %s" % " ".join("%.2f" % value for value in os.getloadavg()))
    root = tempfile.mkdtemp(prefix="changeops-metric-next-")
    try:
        results = [(size, measure(size, args.repeat, root)) for size in sizes]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print("median CPU ms per run appended to a CI with N earlier changes (%d runs per variant and size)" % args.repeat)
    headings = ("N", "upkeep full / incr.", "append full / incr.", "upkeep ratio", "append ratio")
    print("%8s  %22s  %22s  %15s  %15s" % headings)
    for size, figures in results:
        full, incr = figures["full"], figures["incremental"]
        print("%8d  %10.3f / %9.3f  %10.3f / %9.3f  %15.1f  %15.2f" % (
            size, full["upkeep"], incr["upkeep"], full["append"], incr["append"],
            full["upkeep"] / incr["upkeep"], full["append"] / incr["append"]))
    print("load average at end: %s" % " ".join("%.2f" % value for value in os.getloadavg()))


if __name__ == "__main__":
    main()
