#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""The ServiceNow outbox: how many requests an item costs, how many items a second, what it adds to a run.

    .venv/bin/python bench/servicenow_sync/run.py [--cis 5000] [--events 1000] [--hosts 20] [--runs 3]
        [--skip-delivery | --skip-overhead]

Against the loopback ServiceNow simulator (tests/support/servicenow_sim, a simulator of the documented
API, not a real instance; its own process, records in memory):

1. **Delivery.** A fresh SQLite ledger gets ``--cis`` CIs (the ``ci.created`` entries register_host
   writes) and ``--events`` change events (run.started, an allowing gate decision under one of ten
   ServiceNow CHGs, a changed result, run.finished), appended directly; then the outbox delivers them
   (``Outbox.drain``), CIs first, change events second. Printed per kind: items, requests, requests per
   item, items per second, and checks that ServiceNow holds every CI once and two notes and one
   attachment per event.
2. **The recorder's overhead.** Real ``ansible-playbook`` runs over ``--hosts`` local hosts (register_host
   with an attribute that changes every run, so every run has every CI to deliver, and four cheap tasks),
   with the change_recorder on, ServiceNow off (the baseline) and on (the recorder's background delivery
   during the run and the end-of-run delivery to the simulator), alternated ``--runs`` times;
   ``--skip-delivery`` runs only this part. Printed: median wall time of each and their ratio; the
   recorder's budget is 1.05.

It never asserts on time; it exits 1 only when a delivery check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))

from support.servicenow_sim import Control  # noqa: E402

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import utc_now  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.outbox import Outbox  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import resolve_settings  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (  # noqa: E402
    open_system_of_record,
)

USER, PASSWORD = "changeops.integration", "integration-simulator-password"
PLAYBOOK = """- name: Bench
  hosts: all
  gather_facts: false
  tasks:
    - name: Register
      changeops.itsm.register_host:
        attributes:
          bench_run: "{{ bench_run }}"
    - name: Ping
      ansible.builtin.ping:
    - name: Fact
      ansible.builtin.set_fact:
        x: "{{ inventory_hostname }}"
    - name: Command
      ansible.builtin.command: "true"
      changed_when: false
    - name: Debug
      ansible.builtin.debug:
        msg: "{{ x }}"
"""


def start_simulator(workdir):
    port_file = os.path.join(workdir, "sim.port")
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "support", "servicenow_sim"),
                                "--port", "0", "--port-file", port_file], stdin=subprocess.DEVNULL,
                               stdout=open(os.path.join(workdir, "sim.log"), "wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        if os.path.exists(port_file):
            return process, "http://127.0.0.1:%s" % open(port_file).read().strip()
        time.sleep(0.05)
    raise SystemExit("the simulator did not start (see %s)" % os.path.join(workdir, "sim.log"))


def settings(url, **extra):
    values = {"host": url, "username": USER, "password": PASSWORD, "max_requests": 1000000, "timeout": 60}
    values.update(extra)
    return resolve_settings(values, environ={}, ini={})


def fill_ledger(sor, cis, events, changes):
    batch = []
    for number in range(cis):
        ci_id = "ci-bench%012d" % number
        name = "node%05d" % number
        batch.append(Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {
            "name": name, "class": "server", "status": "operational", "os_family": "Debian", "os": "Debian",
            "serial_number": "SN%08d" % number,
            "primary_ipv4": "10.%d.%d.%d" % (number // 65536, number // 256 % 256, number % 256),
            "environment": "production"}, "identities": {"name": "host/%s" % name}}))
        if len(batch) >= 1000:
            sor.append(batch)
            batch = []
    for number in range(events):
        run_id = uuid.uuid4().hex
        change = changes[number % len(changes)]
        now = utc_now()
        batch.extend([
            Entry("run.started", run_id, {"run_id": run_id, "started_at": now, "user": "bench", "controller": "bench",
                                          "playbooks": ["/srv/bench.yml"], "check_mode": False}),
            Entry("run.gate", run_id, {"run_id": run_id, "play_id": "p", "decision_id": uuid.uuid4().hex,
                                       "allowed": True, "type": "normal", "reference": change["number"], "reasons": [],
                                       "hosts": ["node00000"], "checked_at": now,
                                       "servicenow": {"sys_id": change["sys_id"], "number": change["number"]}}),
            Entry("run.result", run_id, {"run_id": run_id, "play_id": "p", "host": "node00000", "status": "changed",
                                         "changed": True, "started_at": utc_now(), "item": None,
                                         "task": {"uuid": "t", "name": "t", "action": "ansible.builtin.copy",
                                                  "check_mode": False}}),
            Entry("run.finished", run_id, {"run_id": run_id, "ended_at": utc_now(), "outcome": "successful",
                                           "stats": {}}),
        ])
        if len(batch) >= 1000:
            sor.append(batch)
            batch = []
    if batch:
        sor.append(batch)


def deliver(args, workdir, url, control):
    sor = open_system_of_record({"backend": "sqlite", "sqlite_path": os.path.join(workdir, "delivery.sqlite"),
                                 "busy_timeout": 60})
    failures = []
    try:
        now = time.time()
        window = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now - 3600)),
                  time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now + 86400)))
        changes = [control.insert("change_request", {"short_description": "bench %d" % number, "type": "normal",
                                                     "state": "-1", "approval": "approved",
                                                     "start_date": window[0], "end_date": window[1]})
                   for number in range(10)]
        fill_ledger(sor, args.cis, args.events, changes)
        results = {}
        for label, limit in (("CIs", args.cis), ("change events", None)):
            outbox = Outbox(sor, settings(url))
            before = len(control.requests())
            started = time.monotonic()
            report = outbox.drain(3600, max_entries=limit)
            elapsed = time.monotonic() - started
            requests = len(control.requests()) - before
            items = report.delivered if label == "CIs" else args.events
            if report.stopped or report.set_aside:
                failures.append("%s: stopped %s, set aside %d" % (label, report.stopped, len(report.set_aside)))
            results[label] = {"items": items, "entries": report.delivered, "requests": requests,
                              "requests_per_item": requests / float(max(items, 1)),
                              "items_per_second": items / max(elapsed, 1e-9), "seconds": elapsed}
            print("  %-14s %6d items  %7d requests  %6.3f requests/item  %8.1f items/s  (%.1f s)" % (
                label, items, requests, results[label]["requests_per_item"], results[label]["items_per_second"],
                elapsed), flush=True)
        servers = control.records("cmdb_ci_linux_server")
        if len(servers) != args.cis or len(set(row["name"] for row in servers)) != args.cis:
            failures.append("ServiceNow holds %d server CIs, %d distinct, for %d pushed" % (
                len(servers), len(set(row["name"] for row in servers)), args.cis))
        notes = control.records("sys_journal_field", "element=work_notes")
        attachments = control.records("sys_attachment", "table_name=change_request")
        if len(notes) != 2 * args.events or len(attachments) != args.events:
            failures.append("%d notes and %d attachments for %d change events (2 and 1 each expected)" % (
                len(notes), len(attachments), args.events))
        return results, failures
    finally:
        sor.close()


def overhead(args, workdir, url):
    project = os.path.join(workdir, "project")
    os.makedirs(project)
    with open(os.path.join(project, "inventory.ini"), "w") as handle:
        handle.write("[all]\n")
        for number in range(args.hosts):
            handle.write("h%04d ansible_connection=local ansible_python_interpreter=%s ansible_os_family=Debian "
                         "ansible_product_serial=SN-h%04d\n" % (number, sys.executable, number))
    with open(os.path.join(project, "bench.yml"), "w") as handle:
        handle.write(PLAYBOOK)
    with open(os.path.join(project, "ansible.cfg"), "w") as handle:
        handle.write("[defaults]\ninventory = inventory.ini\nforks = %d\nretry_files_enabled = False\n" % args.forks)
    base = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CHANGEOPS_", "SN_"))}
    base.update(HOME=project, ANSIBLE_CONFIG=os.path.join(project, "ansible.cfg"),
                ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"),
                ANSIBLE_CALLBACKS_ENABLED="changeops.itsm.change_recorder",
                PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""), NO_PROXY="127.0.0.1")
    variants = {
        "recorder": dict(base, CHANGEOPS_SQLITE_PATH=os.path.join(workdir, "off.sqlite")),
        "recorder+servicenow": dict(base, CHANGEOPS_SQLITE_PATH=os.path.join(workdir, "on.sqlite"), SN_HOST=url,
                                    SN_USERNAME=USER, SN_PASSWORD=PASSWORD, CHANGEOPS_SERVICENOW="true"),
    }
    times = dict((name, []) for name in variants)
    for round_number in range(args.runs):
        order = list(variants) if round_number % 2 == 0 else list(reversed(list(variants)))
        for name in order:
            started = time.monotonic()
            completed = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "bench.yml", "-e",
                                        "bench_run=%d" % round_number], cwd=project, env=variants[name],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                       check=False)
            elapsed = time.monotonic() - started
            if completed.returncode != 0 or "ServiceNow not fed" in completed.stdout or \
                    "then stopped" in completed.stdout:
                sys.stderr.write(completed.stdout[-4000:])
                raise SystemExit("%s run failed or did not feed ServiceNow" % name)
            times[name].append(elapsed)
            print("  round %d %-20s %6.1f s" % (round_number + 1, name, elapsed), flush=True)
    medians = dict((name, statistics.median(values)) for name, values in times.items())
    ratio = medians["recorder+servicenow"] / medians["recorder"]
    print("  median: recorder %.1f s, recorder+servicenow %.1f s: ratio %.3f (budget 1.05: %s)" % (
        medians["recorder"], medians["recorder+servicenow"], ratio, "met" if ratio <= 1.05 else "NOT met"))
    return {"medians": medians, "ratio": ratio, "runs": times}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cis", type=int, default=5000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--forks", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-delivery", action="store_true", help="only the recorder's overhead (part 2)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="servicenow_sync.")
    process, url = start_simulator(workdir)
    control = Control(url)
    try:
        load = os.getloadavg()
        print("servicenow_sync: %d CIs, %d change events; %d hosts x %d runs; load %.2f %.2f %.2f" % (
            args.cis, args.events, args.hosts, args.runs, load[0], load[1], load[2]), flush=True)
        results, failures = ({}, []) if args.skip_delivery else deliver(args, workdir, url, control)
        if not args.skip_overhead:
            control.call("POST", "log/reset", {})
            results["overhead"] = overhead(args, workdir, url)
        load = os.getloadavg()
        print("  load at the end %.2f %.2f %.2f" % load)
        for failure in failures:
            print("  CHECK FAILED: %s" % failure)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(results, handle, indent=1)
        return 1 if failures else 0
    finally:
        process.terminate()
        process.wait(timeout=30)
        if args.keep:
            print("  kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
