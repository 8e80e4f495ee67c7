#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""The change_gate TASK's own wall time in a real ansible-playbook run, collisions and blast radius on.

    python bench/gate_task/run.py                               # 10,000 hosts, 1,000 CIs, 500 requests, SQLite
    python bench/gate_task/run.py --hosts 500 --cis 100 --requests 50 --runs 3      # small
    python bench/gate_task/run.py --backend postgresql --dsn "$(bash bench/postgresql_server.sh start | tail -n1)"
    python bench/gate_task/run.py --runs 1 --profile            # where the time goes, per phase (profiled)
    python bench/gate_task/run.py --runs 3 --phases             # each phase's wall time and page faults, unprofiled
    python bench/gate_task/run.py --runs 3 --twice              # run() twice in one worker: the first touch's cost
    python bench/gate_task/run.py --compare main                # this tree and main alternating: their ratio

Unlike bench/gate_eval (the in-memory decision), this times everything the gate task does in a real run:
play inspection, the system-of-record reads (each host's CI, the published policy, the blast radius walk
over the CMDB's relationships, runs in progress, change requests overlapping now), the decision, and the
``run.gate`` ledger write. The figure is the gate result's ``duration_ms`` as the change_recorder recorded
it (the task's own time, not ansible-playbook's start-up or inventory parsing).

Set-up, through the public append path: a host CI per inventory host, ``--cis`` application/service CIs each
``runs_on`` 10 hosts and ``depends_on`` 2 others (a connected graph with cycles), ``--requests`` approved
change requests of which one in ten overlap now (each on 5 hosts), a published policy with 20 standard
templates, a blast-radius condition, collisions set to ``warn`` and three maintenance windows, and a few
stale running runs of another controller. Baseline, in the same play and run: ``ansible.builtin.debug`` with
``run_once`` (Ansible's own cost of one task over the same hosts). Prints the median of each and the
gate's against the 100 ms budget.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (  # noqa: E402
    open_system_of_record,
)

BUDGET_MS = 100.0
ENVIRONMENTS = ["test", "staging", "production"]

POLICY_HEAD = """
collisions:
  running_runs: warn
  change_requests: warn
  maintenance_windows: warn
blast_radius:
  max_depth: 4
  max_items: 2000
maintenance_windows:
  - {name: backups, owner: backup-team, cron: "0 1 * * *", timezone: Europe/Paris, duration: 3h, groups: [dc0]}
  - {name: batch, owner: data-team, rrule: "FREQ=WEEKLY;BYDAY=SA;BYHOUR=2;BYMINUTE=0", timezone: UTC, duration: 4h,
     services: [svc-3, svc-7]}
  - {name: patching, owner: linux-team, cron: "0 22 * * 2", timezone: UTC, duration: 2h, environments: [test]}
templates:
"""

PLAY = """
- name: Fleet change
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Baseline (one task over the same hosts, run once)
      ansible.builtin.debug:
        msg: baseline
      run_once: true
    - name: Change gate
      changeops.itsm.change_gate:
        fail_on_deny: false
      tags: [always]
"""


def policy_text(templates=20):
    lines = [POLICY_HEAD]
    for number in range(templates):
        lines.append("  - name: routine-%d\n    conditions:\n      - \"contains(tags, 'routine-%d') || "
                     "blast_radius.service_count < `5000`\"\n      - \"blast_radius.truncated == `false` || "
                     "`true`\"\n    max_hosts: 20000\n" % (number, number))
    return "".join(lines)


def seed(sor, hosts, cis, requests, batch=2000):
    rng = random.Random(18)
    now = datetime.datetime.now(datetime.timezone.utc)
    entries = []

    def flush(force=False):
        if entries and (force or len(entries) >= batch):
            sor.append(list(entries))
            del entries[:]

    host_ids = []
    for index, host in enumerate(hosts):
        ci_id = "ci-h%06d" % index
        host_ids.append(ci_id)
        entries.append(Entry("ci.created", ci_id, {"ci_id": ci_id, "identities": {}, "attributes": {
            "name": host, "class": "server", "status": "operational", "environment": ENVIRONMENTS[index % 3],
            "services": ["svc-%d" % (index % 10)], "support_group": "team-%d" % (index % 8)}}))
        flush()
    service_ids = ["ci-s%05d" % number for number in range(cis)]
    for number, ci_id in enumerate(service_ids):
        entries.append(Entry("ci.created", ci_id, {"ci_id": ci_id, "identities": {}, "attributes": {
            "name": "app-%d" % number, "class": "application", "environment": ENVIRONMENTS[number % 3],
            "criticality": 1 + number % 4, "owner": "team-%d" % (number % 8)}}))
        flush()
    flush(True)
    for number, ci_id in enumerate(service_ids):
        for target in rng.sample(host_ids, min(10, len(host_ids))):
            entries.append(Entry("ci.relationship_added", ci_id, {"source": ci_id, "type": "runs_on", "target": target}))
        for target in rng.sample(service_ids, min(2, len(service_ids))):
            if target != ci_id:
                entries.append(Entry("ci.relationship_added", ci_id, {"source": ci_id, "type": "depends_on",
                                                                      "target": target}))
        flush()
    flush(True)
    for number in range(requests):
        overlapping = number % 10 == 0
        start = now - datetime.timedelta(hours=1) if overlapping else now + datetime.timedelta(days=1 + number % 30)
        record = {"number": "CHG%07d" % (number + 1), "state": "scheduled", "type": "normal", "approval": "approved",
                  "short_description": "bench change %d" % number, "requested_by": "team-%d" % (number % 8),
                  "planned_start": format_time(start), "planned_end": format_time(start + datetime.timedelta(hours=4)),
                  "timezone": "UTC", "affected_cis": sorted(rng.sample(hosts, min(5, len(hosts)))), "approvals": []}
        entries.append(Entry("change_request.created", record["number"], {"record": record, "base_version": 0}))
        flush()
    stale = format_time(now - datetime.timedelta(days=2))
    for number in range(3):
        run_id = "stale-%d" % number
        entries.append(Entry("run.started", run_id, {"run_id": run_id, "started_at": stale, "controller": "elsewhere",
                                                     "user": "ops", "pid": 1, "playbooks": ["old.yml"]}, at=stale))
        entries.append(Entry("run.play", run_id, {"run_id": run_id, "play_id": "p", "hosts": hosts[:50]}, at=stale))
    flush(True)


def write_project(root, hosts, backend_env):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "inventory.ini"), "w") as handle:
        handle.write("[fleet]\n")
        for index, host in enumerate(hosts):
            handle.write("%s ansible_connection=local\n" % host)
        handle.write("\n[dc0]\n" + "\n".join(hosts[::4]) + "\n")
    with open(os.path.join(root, "ansible.cfg"), "w") as handle:
        handle.write("[defaults]\ninventory = inventory.ini\nhost_key_checking = False\nforks = 10\n"
                     "interpreter_python = %s\n" % sys.executable)
    with open(os.path.join(root, "policy.yml"), "w") as handle:
        handle.write(policy_text())
    with open(os.path.join(root, "play.yml"), "w") as handle:
        handle.write(PLAY)
    with open(os.path.join(root, "publish.yml"), "w") as handle:
        handle.write("- hosts: localhost\n  gather_facts: false\n  tasks:\n    - changeops.itsm.change_policy:\n"
                     "        src: policy.yml\n")


def run_env(root, backend_env):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CHANGEOPS_"))}
    env.update(backend_env)
    env.update(HOME=os.path.join(root, "home"), ANSIBLE_CONFIG=os.path.join(root, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"),
               ANSIBLE_CALLBACKS_ENABLED="changeops.itsm.change_recorder", ANSIBLE_NOCOLOR="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    os.makedirs(env["HOME"], exist_ok=True)
    return env


# --profile: the gate task runs in a worker forked from ansible-playbook, so the profiler is installed there by a
# sitecustomize module (on PYTHONPATH for ansible-playbook only) that wraps the change_gate action's run() when
# Ansible defines the class; the collection's code carries no profiling hook.
SITECUSTOMIZE = """
import cProfile
import json
import os
import resource
import time

import ansible.plugins.action as _actions

_OUT = os.environ.get("CHANGEOPS_BENCH_PROFILE")
_CPU = os.environ["CHANGEOPS_BENCH_CPU"]
_TWICE = os.environ.get("CHANGEOPS_BENCH_TWICE")


def _faults():
    # minor page faults so far: in a worker forked from ansible-playbook, mostly copies of inherited pages written to
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _wrap(run):
    def measured(self, *args, **kwargs):
        if _PHASES:
            # the phases of this task only: the worker inherits what the parent's threads timed before the fork (the
            # recorder seals entries too), and a start the fork caught halfway
            _TIMES.clear()
            _FAULTS.clear()
            _STARTED.clear()
        profiler = cProfile.Profile() if _OUT else None
        first = None
        started, cpu, faults = time.perf_counter(), time.process_time(), _faults()
        try:
            if _TWICE:
                # --twice: run() once as every real run does, then again in the same worker, whose pages are its own
                # by then: the difference is what the first touch of the worker's memory costs
                run(self, *args, **kwargs)
                first = [time.perf_counter() - started, time.process_time() - cpu, _faults() - faults]
                started, cpu, faults = time.perf_counter(), time.process_time(), _faults()
            if profiler is None:
                return run(self, *args, **kwargs)
            return profiler.runcall(run, self, *args, **kwargs)
        finally:
            cpu = time.process_time() - cpu
            elapsed = time.perf_counter() - started
            with open(_CPU, "w") as handle:
                json.dump({"cpu": cpu, "wall": elapsed, "faults": _faults() - faults, "first": first}, handle)
            if _PHASES:
                _TIMES["run()"] = elapsed
                _write_phases()
            if profiler is not None:
                profiler.dump_stats(_OUT)
                with open(_OUT + ".wall", "w") as handle:
                    handle.write("%.6f" % elapsed)
    return measured


def _subclassed(cls, **kwargs):
    if cls.__module__.endswith("plugins.action.change_gate") and "run" in vars(cls):
        cls.run = _wrap(cls.run)
        if _PHASES:
            _watch_phases()


# --phases: each phase function's wall time, unprofiled. sys.monitoring events are switched on for those functions'
# code objects only, so the rest of the task runs at full speed (cProfile's overhead skews the split).
_PHASES = os.environ.get("CHANGEOPS_BENCH_PHASES")
_PHASES_OUT = os.environ.get("CHANGEOPS_BENCH_PHASES_OUT")
_TIMES = {}
_FAULTS = {}
_STARTED = {}


def _watch_phases():
    import sys

    monitoring = sys.monitoring
    tool = monitoring.PROFILER_ID
    monitoring.use_tool_id(tool, "changeops-bench")
    labels = {}
    namespaces = []
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("ansible_collections.changeops."):
            namespaces.append(vars(module))
            namespaces.extend(vars(value) for value in vars(module).values() if isinstance(value, type))
    for label, file_end, name in json.loads(_PHASES):
        for namespace in namespaces:
            code = getattr(getattr(namespace.get(name), "__wrapped__", namespace.get(name)), "__code__", None)
            if code is not None and code.co_filename.endswith("/" + file_end) and code not in labels:
                labels[code] = label
                monitoring.set_local_events(tool, code, monitoring.events.PY_START | monitoring.events.PY_RETURN)
    monitoring.set_events(tool, monitoring.events.PY_UNWIND)  # (not a local event: every unwinding frame, ignored)

    def start(code, _offset):
        _STARTED.setdefault(code, []).append((time.perf_counter(), _faults()))

    def end(code, _offset, _value):
        if code not in labels:
            return
        begun, faults = _STARTED[code].pop()
        if not _STARTED[code]:  # the outermost call of a recursive one
            label = labels[code]
            _TIMES[label] = _TIMES.get(label, 0.0) + time.perf_counter() - begun
            _FAULTS[label] = _FAULTS.get(label, 0) + _faults() - faults

    monitoring.register_callback(tool, monitoring.events.PY_START, start)
    monitoring.register_callback(tool, monitoring.events.PY_RETURN, end)
    monitoring.register_callback(tool, monitoring.events.PY_UNWIND, end)


def _write_phases():
    with open(_PHASES_OUT, "w") as handle:
        json.dump({"times": _TIMES, "faults": _FAULTS}, handle)


_actions.ActionBase.__init_subclass__ = classmethod(_subclassed)
"""

#: the phases of the gate task, each a function whose cumulative time is the phase's
PHASES = (
    ("play inspection", "play_inspection.py", "inspect_play"),
    ("policy in force", "policy_store.py", "gate_policy"),
    ("host CIs and context, by column", "change_gate.py", "lean_change_context"),
    ("  of which host CI columns", "cmdb_identity.py", "find_host_ci_columns"),
    ("host CIs (as records)", "cmdb_identity.py", "find_host_cis"),
    ("change context (records)", "change_gate.py", "build_change_context"),
    ("blast radius", "graph.py", "blast_radius"),
    ("  of which the walk", "graph.py", "walk"),
    ("collisions and blast radius", "gate.py", "__init__"),
    ("runs in progress", "collisions.py", "running_runs"),
    ("change requests now", "collisions.py", "change_requests"),
    ("decide (+ collisions)", "change_gate.py", "policy_decisions"),
    ("decide: first policy", "change_gate.py", "decide_under"),
    ("seal + append run.gate", "change_gate.py", "finish"),
    ("  of which sealing", "commitments.py", "seal_payload"),
    ("whole task", "change_gate.py", "run"),
)


def measuring_env(root, env, profile, phases=False, twice=False):
    """``env`` with the sitecustomize that times the gate action's run() in the worker: its CPU time
    (``time.process_time``, a figure that holds while others load the machine), wall time and minor page faults
    always, a cProfile of it with ``profile``, each phase's wall time with ``phases``, a first run() before the
    one measured with ``twice``."""
    directory = os.path.join(root, "profile")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "sitecustomize.py"), "w") as handle:
        handle.write(SITECUSTOMIZE)
    env = dict(env, CHANGEOPS_BENCH_CPU=os.path.join(directory, "gate.cpu"),
               PYTHONPATH=os.pathsep.join(filter(None, [directory, env.get("PYTHONPATH")])))
    if profile:
        env["CHANGEOPS_BENCH_PROFILE"] = os.path.join(directory, "gate.pstats")
    if phases:
        env.update(CHANGEOPS_BENCH_PHASES=json.dumps(PHASES), CHANGEOPS_BENCH_PHASES_OUT=phases_path(root))
    if twice:
        env["CHANGEOPS_BENCH_TWICE"] = "1"
    return env


def phases_path(root):
    return os.path.join(root, "profile", "gate.phases.json")


def print_phases(root):
    with open(phases_path(root)) as handle:
        found = json.load(handle)
    times = found["times"]
    print("  phases (wall, unprofiled, and minor page faults; the action's run() %.1f ms):" % (times.pop("run()") * 1000))
    for label, _file_end, _name in PHASES:
        if label in times:
            print("    %-32s %7.1f ms %6d faults" % (label, times[label] * 1000, found["faults"].get(label, 0)))


def gate_run_figures(root):
    """What the worker measured of the action's run(): ``{"cpu", "wall"}`` seconds, ``"faults"`` (minor page faults)
    and, with --twice, ``"first"``: the first run()'s ``[wall, cpu, faults]``."""
    path = os.path.join(root, "profile", "gate.cpu")
    with open(path) as handle:
        figures = json.load(handle)
    os.unlink(path)
    return figures


def print_profile(path, top=25):
    import pstats  # pylint: disable=import-outside-toplevel

    stats = pstats.Stats(path)
    cumulative = {}
    for (filename, _line, function), (_cc, _nc, _tt, cumtime, _callers) in stats.stats.items():
        for label, file_end, name in PHASES:
            if function == name and filename.endswith(file_end):
                cumulative[label] = cumulative.get(label, 0.0) + cumtime
    print("  profiled phases (cumulative, with the profiler's overhead):")
    for label, _file_end, _name in PHASES:
        if label in cumulative:
            print("    %-32s %7.1f ms" % (label, cumulative[label] * 1000))
    print("  top functions by own time:")
    stats.sort_stats("tottime").print_stats(top)


def export_tree(ref, root):
    """The collection as of git ``ref`` (``git archive``), as a collections path beside the bench's files."""
    path = os.path.join(root, "compare")
    target = os.path.join(path, "ansible_collections", "changeops", "itsm")
    os.makedirs(target)
    archive = subprocess.run(["git", "-C", REPO, "archive", ref], stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    return path


def durations(sor, run_id):
    found = {}
    for result in sor.get_task_results(run_id):
        found[(result.get("task") or {}).get("action")] = result.get("duration_ms")
    return found


def fresh_database(dsn):
    """``(name, dsn)`` of a new, empty database on the server of ``dsn`` (whose role may create databases, as
    bench/postgresql_server.sh's does), for one run of this benchmark."""
    import psycopg  # pylint: disable=import-outside-toplevel
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # pylint: disable=import-outside-toplevel

    name = "changeops_gate_task_%s" % uuid.uuid4().hex[:12]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE %s" % name)
    return name, make_conninfo("", **dict(conninfo_to_dict(dsn), dbname=name))


def drop_database(dsn, name):
    import psycopg  # pylint: disable=import-outside-toplevel
    from psycopg.conninfo import conninfo_to_dict, make_conninfo  # pylint: disable=import-outside-toplevel

    # connected to the server's maintenance database: a database cannot be dropped from a session inside it
    with psycopg.connect(make_conninfo("", **dict(conninfo_to_dict(dsn), dbname="postgres")),
                         autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--cis", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--dsn")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json")
    measuring = parser.add_mutually_exclusive_group()  # (a profiler would inflate the phases; both use sys.monitoring)
    measuring.add_argument("--profile", action="store_true",
                           help="profile the gate task (cProfile in the forked worker) and print its time per phase; "
                                "the profiler slows it, so these runs' durations are not the figure")
    measuring.add_argument("--phases", action="store_true",
                           help="print each phase's wall time in the worker, unprofiled (sys.monitoring on the phase "
                                "functions only)")
    measuring.add_argument("--twice", action="store_true",
                           help="run the action's run() twice in the same worker and print both: the first is what a "
                                "real run pays, the second runs on pages the worker has made its own (each records "
                                "a decision, and the task's duration holds both: these runs' task figures are not "
                                "the budget's)")
    parser.add_argument("--compare", metavar="REF",
                        help="also run the play with the collection as of git REF (e.g. main), alternating with this "
                             "tree's over the same ledger, and print the ratio of their gate medians")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="changeops-gate-task-")
    backend_env = {"CHANGEOPS_BACKEND": args.backend}
    if args.backend == "sqlite":
        backend_env["CHANGEOPS_SQLITE_PATH"] = os.path.join(root, "ledger.sqlite")
    database = None
    if args.backend == "postgresql":
        if not args.dsn:
            parser.error("--backend postgresql needs --dsn (bash bench/postgresql_server.sh start)")
        # a database of its own per run: the seeding creates fixed CI ids, so a second run into the --dsn database
        # itself would fail ("CI ... already exists")
        database, args.dsn = fresh_database(args.dsn)
        backend_env["CHANGEOPS_POSTGRESQL_DSN"] = args.dsn
    config = {"backend": args.backend, "sqlite_path": backend_env.get("CHANGEOPS_SQLITE_PATH"),
              "postgresql_dsn": args.dsn, "busy_timeout": 60}
    hosts = ["host%05d" % index for index in range(args.hosts)]
    print("load average at start: %s" % " ".join("%.2f" % value for value in os.getloadavg()))
    started = time.monotonic()
    sor = open_system_of_record(config)
    seed(sor, hosts, args.cis, args.requests)
    sor.close()
    write_project(root, hosts, backend_env)
    env = measuring_env(root, run_env(root, backend_env), args.profile, args.phases, args.twice)
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "publish.yml"], cwd=root,
                   env=env, check=True, stdout=subprocess.DEVNULL)
    print("seeded %d host CIs, %d CIs with relationships, %d change requests in %.0f s"
          % (args.hosts, args.cis, args.requests, time.monotonic() - started))
    trees = [("this tree", env)]
    if args.compare:
        trees.append((args.compare, dict(env, ANSIBLE_COLLECTIONS_PATH=export_tree(args.compare, root))))
    figures = {label: {"gate_ms": [], "gate_cpu_ms": [], "gate_run_wall_ms": [], "gate_faults": [], "baseline_ms": [],
                       "wall_s": []} for label, _env in trees}
    for number in range(args.runs):
        # ABBA: each tree runs first in every other round, so a load that drifts weighs on both alike
        for label, tree_env in (trees if number % 2 == 0 else trees[::-1]):
            figure = figures[label]
            begin = time.monotonic()
            completed = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "play.yml"],
                                       cwd=root, env=tree_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       universal_newlines=True, check=False)
            figure["wall_s"].append(time.monotonic() - begin)
            if completed.returncode != 0:
                print(completed.stdout[-5000:])
                raise SystemExit("ansible-playbook failed (%s)" % label)
            sor = open_system_of_record(config)
            try:
                event = sor.find_change_events(limit=1, playbook="play.yml")[0]
                times = durations(sor, event["run_id"])
                decision = event["gates"][-1]
            finally:
                sor.close()
            if args.profile:
                print_profile(os.path.join(root, "profile", "gate.pstats"))
                with open(os.path.join(root, "profile", "gate.pstats.wall")) as handle:
                    in_run = float(handle.read()) * 1000
                print("  the action's run() took %.0f ms (profiled) of the task's %d ms: the rest is Ansible's "
                      "(the worker, task variables, the result's way back)" % (in_run, times["changeops.itsm.change_gate"]))
            if args.phases:
                print_phases(root)
            in_worker = gate_run_figures(root)
            figure["gate_ms"].append(times["changeops.itsm.change_gate"])
            figure["gate_cpu_ms"].append(in_worker["cpu"] * 1000)
            figure["gate_run_wall_ms"].append(in_worker["wall"] * 1000)
            figure["gate_faults"].append(in_worker["faults"])
            figure["baseline_ms"].append(times["ansible.builtin.debug"])
            if in_worker["first"]:
                first_wall, first_cpu, first_faults = in_worker["first"]
                figure.setdefault("first_run", []).append(in_worker["first"])
                print("  run() in the worker: first %.1f ms wall, %.1f ms CPU, %d minor faults; second %.1f ms wall, "
                      "%.1f ms CPU, %d minor faults" % (
                          first_wall * 1000, first_cpu * 1000, first_faults,
                          in_worker["wall"] * 1000, in_worker["cpu"] * 1000, in_worker["faults"]))
            print("run %d, %s: gate %d ms (its run() %.1f ms CPU, %d minor faults), baseline task %d ms, "
                  "ansible-playbook %.1f s; decision %s, %d collisions, blast radius %d services%s" % (
                      number + 1, label, figure["gate_ms"][-1], figure["gate_cpu_ms"][-1], figure["gate_faults"][-1],
                      figure["baseline_ms"][-1], figure["wall_s"][-1],
                      decision["type"], len(decision.get("collisions") or ()),
                      (decision.get("blast_radius") or {}).get("service_count", 0),
                      " (truncated)" if (decision.get("blast_radius") or {}).get("truncated") else ""))
    print("\n%s, %d hosts, %d CIs, %d change requests, %d runs"
          % (args.backend, args.hosts, args.cis, args.requests, args.runs))
    for label, _env in trees:
        median_gate = statistics.median(figures[label]["gate_ms"])
        median_base = statistics.median(figures[label]["baseline_ms"])
        verdict = "met" if median_gate <= BUDGET_MS else "NOT met"
        print("%s:" % label)
        print("  gate task median      %8.1f ms   (budget %.0f ms: %s)" % (median_gate, BUDGET_MS, verdict))
        print("  baseline task median  %8.1f ms   gate / baseline %.2f"
              % (median_base, median_gate / max(median_base, 1)))
        print("  gate run() CPU median %8.1f ms   (time.process_time in the worker)"
              % statistics.median(figures[label]["gate_cpu_ms"]))
        if figures[label].get("first_run"):
            firsts = figures[label]["first_run"]
            print("  --twice: run() wall median, first %.1f ms (%d minor faults), second %.1f ms (%d); the task "
                  "figures above hold both runs" % (
                      statistics.median(wall for wall, _cpu, _faults in firsts) * 1000,
                      statistics.median(faults for _wall, _cpu, faults in firsts),
                      statistics.median(figures[label]["gate_run_wall_ms"]),
                      statistics.median(figures[label]["gate_faults"])))
    if args.compare:
        this, other = (statistics.median(figures[label]["gate_ms"]) for label, _env in trees)
        print("gate task, this tree / %s: %.2f" % (args.compare, this / max(other, 1)))
        this, other = (statistics.median(figures[label]["gate_cpu_ms"]) for label, _env in trees)
        print("gate run() CPU, this tree / %s: %.2f" % (args.compare, this / max(other, 0.001)))
    print("load average at end: %s" % " ".join("%.2f" % value for value in os.getloadavg()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"backend": args.backend, "hosts": args.hosts, "cis": args.cis, "requests": args.requests,
                       "figures": figures}, handle, indent=2)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
        if database:
            drop_database(args.dsn, database)
    elif database:
        print("kept the ledger in PostgreSQL database %s" % database)


if __name__ == "__main__":
    main()
