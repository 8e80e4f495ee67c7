# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How much does changeops.itsm.change_recorder slow a playbook down, next to no callback and next to ARA?

    .venv/bin/python bench/recorder_overhead/run.py                 # 200 hosts x 20 tasks, forks 10, 3 runs each
    .venv/bin/python bench/recorder_overhead/run.py --hosts 20 --runs 1      # a quick look
    .venv/bin/python bench/recorder_overhead/run.py --backend postgresql --dsn postgresql://u:p@127.0.0.1/bench

The same generated playbook (local connection, cheap tasks, some changed, a loop, a skipped and a no_log
task) runs with three callback set-ups, interleaved round by round so machine noise hits them alike:

* ``none``             no extra callback (the baseline);
* ``change_recorder``  ``changeops.itsm.change_recorder`` writing to a fresh ledger;
* ``ara``              ARA's default callback in its offline SQLite mode (``pip install "ara[server]"``).

Every variant runs with the same ``ansible-playbook`` of one benchmark virtualenv (``bench/.venv-ara``,
built on first use with the ansible-core version of the interpreter running this script, plus ARA), so the
baseline is the same interpreter and Ansible. After the runs the script checks that each recorder run is
in the ledger (successful, every host) and that ARA stored every run, so a callback that silently failed to
load cannot produce a flattering figure. It prints the median wall time of each variant and the ratios
``change_recorder/none`` (target <= 1.05) and ``(change_recorder - none)/(ara - none)`` (target <= 0.10).

This is a benchmark, not a test: it asserts nothing about time and exits non-zero only when a run failed
or was not recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(BENCH_DIR))
COLLECTIONS_PATH = os.path.join(REPO_ROOT, ".build", "collections")
DEFAULT_VENV = os.path.join(REPO_ROOT, "bench", ".venv-ara")
VARIANTS = ("none", "change_recorder", "ara")
RECORDER = "changeops.itsm.change_recorder"
TARGET_RATIO = 1.05
TARGET_SHARE_OF_ARA = 0.10

# Twenty cheap tasks: the work is Ansible's own per-task, per-host machinery, which is what a callback adds to.
TASKS = """
    - name: Ping
      ansible.builtin.ping:
    - name: Say hello
      ansible.builtin.debug:
        msg: "hello from {{ inventory_hostname }}"
    - name: Remember a fact
      ansible.builtin.set_fact:
        bench_fact: "{{ inventory_hostname | upper }}"
    - name: Run a command (reports changed)
      ansible.builtin.command: /bin/true
    - name: Run a command that changes nothing
      ansible.builtin.command: /bin/true
      changed_when: false
    - name: Stat the root directory
      ansible.builtin.stat:
        path: /
    - name: Check the fact
      ansible.builtin.assert:
        that: bench_fact == inventory_hostname | upper
        quiet: true
    - name: Loop over three items
      ansible.builtin.debug:
        msg: "item {{ item }}"
      loop: [one, two, three]
    - name: Skipped everywhere
      ansible.builtin.debug:
        msg: never
      when: false
    - name: Another fact
      ansible.builtin.set_fact:
        bench_other: 42
    - name: Shell echo
      ansible.builtin.shell: echo "{{ inventory_hostname }}"
      changed_when: false
    - name: Make this run's directory for the host
      ansible.builtin.file:
        path: "{{ out_dir }}/{{ inventory_hostname }}"
        state: directory
        mode: "0700"
    - name: Write a file with a secret-looking argument (no_log)
      ansible.builtin.copy:
        content: "token=not-a-real-secret\\n"
        dest: "{{ out_dir }}/{{ inventory_hostname }}/config"
        mode: "0600"
      no_log: true
    - name: Show a variable
      ansible.builtin.debug:
        var: bench_other
    - name: Ping again
      ansible.builtin.ping:
    - name: Stat the file just written
      ansible.builtin.stat:
        path: "{{ out_dir }}/{{ inventory_hostname }}/config"
    - name: True again
      ansible.builtin.command: /bin/true
      changed_when: false
    - name: Assert arithmetic
      ansible.builtin.assert:
        that: bench_other | int == 42
        quiet: true
    - name: Say goodbye
      ansible.builtin.debug:
        msg: bye
    - name: Read the file back
      ansible.builtin.slurp:
        src: "{{ out_dir }}/{{ inventory_hostname }}/config"
"""


def log(message):
    print(message, flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=200, help="inventory hosts, all local (default 200)")
    parser.add_argument("--forks", type=int, default=10, help="ansible forks (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant; the median counts (default 3)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of %s (default: all)" % ", ".join(VARIANTS))
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                        help="system of record for change_recorder runs (default sqlite: a fresh file)")
    parser.add_argument("--dsn", help="PostgreSQL connection string, with --backend postgresql")
    parser.add_argument("--venv", default=DEFAULT_VENV,
                        help="benchmark virtualenv, built when missing (default bench/.venv-ara)")
    parser.add_argument("--workdir", help="scratch directory (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, ledgers)")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        parser.error("--variants: unknown %s (choose from %s)" % (", ".join(unknown) or "(empty)", ", ".join(VARIANTS)))
    if args.backend == "postgresql" and not args.dsn:
        parser.error("--backend postgresql needs --dsn")
    if args.dsn and args.backend != "postgresql":
        parser.error("--dsn is only used with --backend postgresql")
    for name in ("hosts", "forks", "runs"):
        if getattr(args, name) < 1:
            parser.error("--%s must be at least 1, got %d" % (name, getattr(args, name)))
    return args


# --------------------------------------------------------------------------- the benchmark virtualenv
def ansible_core_version():
    try:
        from importlib.metadata import version
        return version("ansible-core")
    except Exception:  # pylint: disable=broad-except
        raise SystemExit("run this script with the project's interpreter (.venv/bin/python): ansible-core not found")


def psycopg_requirement():
    try:
        from importlib.metadata import version
        return "psycopg[binary]==%s" % version("psycopg")
    except Exception:  # pylint: disable=broad-except
        return "psycopg[binary]>=3.1,<4"


def ensure_venv(venv, variants, backend):
    """Build (or top up) the benchmark virtualenv; ARA is installed here and nowhere else."""
    requirements = ["ansible-core==%s" % ansible_core_version()]
    if "ara" in variants:
        requirements.append("ara[server]")
    if backend == "postgresql":
        requirements.append(psycopg_requirement())
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, "changeops-bench-requirements.json")
    installed = []
    if os.path.exists(marker):
        with open(marker) as handle:
            installed = json.load(handle)
    missing = [r for r in requirements if r not in installed]
    if os.path.exists(python) and not missing:
        return python
    if not os.path.exists(python):
        log("building the benchmark virtualenv %s" % venv)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    log("installing into %s: %s" % (venv, " ".join(missing)))
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"] + missing, check=True)
    with open(marker, "w") as handle:
        json.dump(sorted(set(installed) | set(requirements)), handle)
    return python


# --------------------------------------------------------------------------- the project under test
def write_project(workdir, hosts, forks, python):
    inventory = ["[bench]"]
    inventory += ["bench%03d ansible_connection=local ansible_python_interpreter=%s" % (n, python)
                  for n in range(1, hosts + 1)]
    with open(os.path.join(workdir, "inventory.ini"), "w") as handle:
        handle.write("\n".join(inventory) + "\n")
    with open(os.path.join(workdir, "ansible.cfg"), "w") as handle:
        handle.write("[defaults]\ninventory = inventory.ini\nforks = %d\nhost_key_checking = False\n"
                     "retry_files_enabled = False\ninterpreter_python = %s\ngathering = explicit\n" % (forks, python))
    with open(os.path.join(workdir, "bench.yml"), "w") as handle:
        handle.write("---\n- name: Recorder overhead benchmark\n  hosts: bench\n  gather_facts: false\n"
                     "  tasks:\n" + TASKS.lstrip("\n"))


def variant_env(variant, workdir, venv, args):
    home = os.path.join(workdir, "home")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ANSIBLE_", "CHANGEOPS_", "ARA_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(
        HOME=home,
        ANSIBLE_HOME=os.path.join(home, ".ansible"),
        ANSIBLE_CONFIG=os.path.join(workdir, "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH,
        ANSIBLE_NOCOLOR="1",
        PATH=os.path.join(venv, "bin") + os.pathsep + os.environ.get("PATH", ""),
    )
    if variant == "change_recorder":
        env["ANSIBLE_CALLBACKS_ENABLED"] = RECORDER
        env["CHANGEOPS_SPOOL_DIR"] = os.path.join(workdir, "spool")
        env.update(recorder_backend_env(workdir, args))
    elif variant == "ara":
        callback_dir = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "ara.setup.callback_plugins"],
                                      check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
        env.update(ANSIBLE_CALLBACK_PLUGINS=callback_dir, ARA_API_CLIENT="offline",
                   ARA_BASE_DIR=os.path.join(workdir, "ara"))
    return env


def recorder_backend_env(workdir, args):
    if args.backend == "postgresql":
        return {"CHANGEOPS_BACKEND": "postgresql", "CHANGEOPS_POSTGRESQL_DSN": args.dsn}
    return {"CHANGEOPS_BACKEND": "sqlite", "CHANGEOPS_SQLITE_PATH": os.path.join(workdir, "ledger.sqlite")}


def prepare_ara(workdir, venv):
    """Create ARA's database before timing: its first-use migration is set-up, not per-run overhead."""
    env = dict(os.environ, ARA_BASE_DIR=os.path.join(workdir, "ara"), HOME=os.path.join(workdir, "home"))
    subprocess.run([os.path.join(venv, "bin", "ara-manage"), "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def run_once(variant, index, workdir, venv, args):
    out_dir = os.path.join(workdir, "out", "%s-%d" % (variant, index))
    log_path = os.path.join(workdir, "logs", "%s-%d.log" % (variant, index))
    command = [os.path.join(venv, "bin", "ansible-playbook"), "bench.yml", "-e", "out_dir=%s" % out_dir]
    env = variant_env(variant, workdir, venv, args)
    with open(log_path, "w") as output:
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        completed = subprocess.run(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, check=False)
        elapsed = time.perf_counter() - started
        usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of ansible-playbook and every worker it reaped: far steadier than wall time on a shared VM
    cpu = (usage_after.ru_utime + usage_after.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime)
    if completed.returncode != 0:
        raise SystemExit("%s run %d failed (exit %d): see %s" % (variant, index, completed.returncode, log_path))
    with open(log_path) as handle:
        text = handle.read()
    if "[WARNING]: Skipping callback" in text or "Traceback" in text:
        raise SystemExit("%s run %d: a callback did not load cleanly: see %s" % (variant, index, log_path))
    return elapsed, cpu


# --------------------------------------------------------------------------- proof that the callbacks recorded
def check_recorder(workdir, args, runs):
    sys.path.insert(0, COLLECTIONS_PATH)
    from ansible_collections.changeops.itsm.plugins.module_utils.config import resolve_backend_config
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (
        open_system_of_record,
    )

    config = resolve_backend_config({}, recorder_backend_env(workdir, args))
    sor = open_system_of_record(config)
    try:
        events = [e for e in sor.find_change_events(playbook="bench.yml", limit=10000)
                  if e.get("started_at", "") >= args.started_at]
        bad = [e["run_id"] for e in events if e["status"] != "successful" or e["host_count"] != args.hosts]
        if len(events) != runs or bad:
            raise SystemExit("change_recorder recorded %d of %d runs completely (incomplete: %s)"
                             % (len(events) - len(bad), runs, ", ".join(bad) or "none"))
        results = len(sor.get_task_results(events[0]["run_id"]))
        report = sor.verify()
        if not report.valid:
            raise SystemExit("the benchmark ledger does not verify: %s" % report.summary())
        return "%d runs recorded, %d task results in the latest, chain of %d entries verified" % (
            len(events), results, report.entries_checked)
    finally:
        sor.close()


def check_ara(workdir, runs):
    conn = sqlite3.connect(os.path.join(workdir, "ara", "ansible.sqlite"))
    try:
        playbooks = conn.execute("SELECT COUNT(*) FROM playbooks WHERE status = 'completed'").fetchone()[0]
        results = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    finally:
        conn.close()
    if playbooks != runs:
        raise SystemExit("ARA stored %d completed playbooks, expected %d" % (playbooks, runs))
    return "%d playbooks, %d results stored" % (playbooks, results)


# --------------------------------------------------------------------------- report
def report_ratios(label, medians, samples, args):
    """Print one table (wall-clock or CPU seconds) and its ratios; return the ratios for the JSON figures."""
    ratios = {}
    log("")
    log("%-16s %10s   %s" % ("variant", "median %s s" % label, "runs (s)"))
    for variant in args.variants:
        log("%-16s %10.1f   %s" % (variant, medians[variant], ", ".join("%.1f" % t for t in samples[variant])))
    base = medians.get("none")
    rec = medians.get("change_recorder")
    ara = medians.get("ara")
    if base and rec is not None:
        ratios["recorder_ratio"] = rec / base
        log("%s: change_recorder / none  = %.3f   (target <= %.2f: %s)" % (
            label, rec / base, TARGET_RATIO, "met" if rec / base <= TARGET_RATIO else "MISSED"))
    if base and ara is not None:
        ratios["ara_ratio"] = ara / base
        log("%s: ara / none              = %.3f" % (label, ara / base))
    if base and rec is not None and ara is not None:
        if ara - base > 0:
            share = (rec - base) / (ara - base)
            ratios["recorder_share_of_ara_overhead"] = share
            log("%s: recorder added / ara added = %.3f   (target <= %.2f: %s)" % (
                label, share, TARGET_SHARE_OF_ARA, "met" if share <= TARGET_SHARE_OF_ARA else "MISSED"))
        else:
            log("%s: recorder added / ara added: undefined (ARA added no time in this sample)" % label)
    return ratios


def summarise(timings, cpu_timings, args, checks):
    figures = {"hosts": args.hosts, "tasks": TASKS.count("- name:"), "forks": args.forks, "runs": args.runs,
               "backend": args.backend, "timings": timings, "cpu_timings": cpu_timings, "checks": checks}
    figures["load_average"] = {"start": args.load_at_start, "end": os.getloadavg()[0], "cpus": os.cpu_count()}
    log("")
    log("recorder overhead: %d hosts x %d tasks, forks %d, %d run(s) per variant, recorder backend %s"
        % (args.hosts, figures["tasks"], args.forks, args.runs, args.backend))
    log("1-minute load average %.1f at the start, %.1f at the end, on %d CPUs (other work on the machine"
        " makes the figures noisier)" % (args.load_at_start, figures["load_average"]["end"], os.cpu_count()))
    for label, samples in (("wall", timings), ("cpu", cpu_timings)):
        medians = {variant: statistics.median(values) for variant, values in samples.items()}
        figures["medians" if label == "wall" else "cpu_medians"] = medians
        ratios = report_ratios(label, medians, samples, args)
        figures.update({(key if label == "wall" else "cpu_" + key): value for key, value in ratios.items()})
    for variant, text in checks.items():
        log("check %-16s %s" % (variant, text))
    return figures


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isdir(os.path.join(COLLECTIONS_PATH, "ansible_collections", "changeops", "itsm")):
        raise SystemExit("%s is missing: run scripts/bootstrap first" % COLLECTIONS_PATH)
    python = ensure_venv(os.path.abspath(args.venv), args.variants, args.backend)
    venv = os.path.dirname(os.path.dirname(python))
    workdir = os.path.abspath(args.workdir) if args.workdir else tempfile.mkdtemp(prefix="changeops-bench-")
    for sub in ("logs", "out", "home", "spool"):
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    write_project(workdir, args.hosts, args.forks, python)
    if "ara" in args.variants:
        prepare_ara(workdir, venv)
    from datetime import datetime, timezone
    args.started_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    args.load_at_start = os.getloadavg()[0]
    log("scratch directory: %s" % workdir)
    timings = {variant: [] for variant in args.variants}
    cpu_timings = {variant: [] for variant in args.variants}
    try:
        for index in range(args.runs):
            # rotate the order each round so drift in machine load is shared out
            order = args.variants[index % len(args.variants):] + args.variants[:index % len(args.variants)]
            for variant in order:
                elapsed, cpu = run_once(variant, index, workdir, venv, args)
                timings[variant].append(elapsed)
                cpu_timings[variant].append(cpu)
                log("round %d/%d  %-16s %7.1f s wall %7.1f s CPU" % (index + 1, args.runs, variant, elapsed, cpu))
        checks = {}
        if "change_recorder" in args.variants:
            checks["change_recorder"] = check_recorder(workdir, args, args.runs)
        if "ara" in args.variants:
            checks["ara"] = check_ara(workdir, args.runs)
        figures = summarise(timings, cpu_timings, args, checks)
        if args.json_path:
            with open(args.json_path, "w") as handle:
                json.dump(figures, handle, indent=2, sort_keys=True)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
