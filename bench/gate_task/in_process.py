#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""The gate's own CPU time, in-process, this tree against another git ref over the same ledger.

    python bench/gate_task/in_process.py --compare main                       # SQLite, 10,000 hosts
    python bench/gate_task/in_process.py --compare main --backend postgresql --dsn "$DSN"

``bench/gate_task/run.py`` times the gate task in a real ansible-playbook run: the figure the budget is about,
but wall time in a worker forked from a 10,000-host ansible-playbook swings with the load of a shared machine.
This runs the gate's operation itself (``change_gate.run_gate``: opening the system of record, host CIs, change
context, blast radius, collisions, deciding, sealing and appending ``run.gate``; the play inspection and the
published-policy read are left out: the policy is parsed once), many times in one process per tree, and takes
its CPU time (``time.process_time``), alternating the two trees in ABBA rounds of fresh processes: a ratio that
holds while others load the machine. Same estate, policy and play shape as run.py.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def child(args):
    """Run the gate ``args.runs`` times with the collection found on ``args.collections``; print CPU ms."""
    sys.path.insert(0, args.collections)  # the tree measured, and nothing else of this repository
    # pylint: disable=import-outside-toplevel
    from ansible_collections.changeops.itsm.plugins.action.change_gate import InventoryGroups
    from ansible_collections.changeops.itsm.plugins.module_utils import change_gate, change_policy
    from ansible_collections.changeops.itsm.plugins.module_utils.canonical import utc_now
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
    from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

    config = json.loads(args.config)
    hosts = ["host%05d" % index for index in range(args.hosts)]
    groups = {"all": hosts, "fleet": hosts, "dc0": hosts[::4]}
    with open(args.policy, "rb") as handle:
        policy = change_policy.parse_policy_text(handle.read(), args.policy)
    full = dict((name, option.get("default")) for name, option in change_gate.CHANGE_GATE_SPEC.items())
    full.update(fail_on_deny=False)
    play = {"name": "Fleet change", "tags": [], "playbook_name": "play.yml", "modules": ["ansible.builtin.debug"],
            "play_host_count": len(hosts)}
    figures, walls = [], []
    for _number in range(args.runs):
        # a run around each gate, as the change_recorder records it: started before, finished after (a run left
        # running would be a collision of every later gate, and each evaluation would cost more than the last)
        run_id = "bench-%s" % uuid.uuid4().hex
        sor = open_system_of_record(config)
        sor.append([Entry("run.started", run_id, {"run_id": run_id, "started_at": utc_now(), "user": "ops",
                                                  "controller": "bench", "playbooks": ["play.yml"]})])
        sor.close()
        # as the action plugin runs it: no cyclic collection during the gate (see plugins/action/change_gate.py)
        gc.disable()
        gc.freeze()
        started, wall = time.process_time(), time.perf_counter()
        sor = open_system_of_record(config)
        try:
            ctx = OperationContext(sor, full, run_id=run_id, actor="ops@controller")
            result = change_gate.run_gate(ctx, policy, dict(play), hosts, InventoryGroups(groups), "play-1",
                                          uuid.uuid4().hex, progress=lambda message: None)
        finally:
            sor.close()
        figures.append((time.process_time() - started) * 1000)
        walls.append((time.perf_counter() - wall) * 1000)
        gc.unfreeze()
        gc.enable()
        gc.collect()
        sor = open_system_of_record(config)
        sor.append([Entry("run.finished", run_id, {"run_id": run_id, "outcome": "successful"})])
        sor.close()
        decision = result["decision"]
    print(json.dumps({"cpu_ms": figures, "wall_ms": walls, "type": decision["type"],
                      "services": (decision.get("blast_radius") or {}).get("service_count")}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--cis", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=6, help="ABBA rounds (a fresh process per tree and round)")
    parser.add_argument("--runs", type=int, default=5, help="gate evaluations per process")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--dsn")
    parser.add_argument("--compare", metavar="REF", default="main")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--collections", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sys.path.insert(0, HERE)
    import run as bench  # pylint: disable=import-outside-toplevel

    root = tempfile.mkdtemp(prefix="changeops-gate-cpu-")
    if args.backend == "postgresql" and not args.dsn:
        parser.error("--backend postgresql needs --dsn (bash bench/postgresql_server.sh start)")
    config = {"backend": args.backend, "sqlite_path": os.path.join(root, "ledger.sqlite"),
              "postgresql_dsn": args.dsn, "busy_timeout": 60}
    print("load average at start: %s" % " ".join("%.2f" % value for value in os.getloadavg()))
    hosts = ["host%05d" % index for index in range(args.hosts)]
    policy_path = os.path.join(root, "policy.yml")
    with open(policy_path, "w") as handle:
        handle.write(bench.policy_text())
    sor = bench.open_system_of_record(config)
    bench.seed(sor, hosts, args.cis, args.requests)
    sor.close()
    trees = [("this tree", os.path.join(REPO, ".build", "collections")),
             (args.compare, bench.export_tree(args.compare, root))]
    figures = {label: [] for label, _path in trees}
    walls = {label: [] for label, _path in trees}
    for number in range(args.rounds):
        for label, path in (trees if number % 2 == 0 else trees[::-1]):
            completed = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", "--collections", path, "--config",
                 json.dumps(config), "--policy", policy_path, "--hosts", str(args.hosts), "--runs", str(args.runs)],
                stdout=subprocess.PIPE, check=True, universal_newlines=True)
            found = json.loads(completed.stdout.strip().splitlines()[-1])
            # the first evaluation of a process pays its imports and caches: not the figure
            figures[label].extend(found["cpu_ms"][1:])
            walls[label].extend(found["wall_ms"][1:])
            print("round %d, %s: %s ms CPU (wall %s); decision %s, blast radius %s services"
                  % (number + 1, label, " ".join("%.1f" % value for value in found["cpu_ms"]),
                     " ".join("%.0f" % value for value in found["wall_ms"]), found["type"],
                     found["services"]))
    print("\n%s, %d hosts, %d CIs, %d change requests, %s" % (args.backend, args.hosts, args.cis, args.requests,
                                                              datetime.date.today()))
    medians = {label: statistics.median(figures[label]) for label, _path in trees}
    wall_medians = {label: statistics.median(walls[label]) for label, _path in trees}
    for label, _path in trees:
        print("  %-10s run_gate CPU median %7.1f ms, wall %7.1f ms  (of %d)"
              % (label, medians[label], wall_medians[label], len(figures[label])))
    print("run_gate CPU, this tree / %s: %.2f" % (args.compare, medians["this tree"] / medians[args.compare]))
    # the wall time adds the waits (the database server's own work, round trips) and whatever the load takes
    print("run_gate wall, this tree / %s: %.2f (the load's share included)"
          % (args.compare, wall_medians["this tree"] / wall_medians[args.compare]))
    print("load average at end: %s" % " ".join("%.2f" % value for value in os.getloadavg()))
    subprocess.run(["rm", "-rf", root], check=False)


if __name__ == "__main__":
    main()
