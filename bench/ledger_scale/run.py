#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""The ledger at enterprise scale (issue 21): append, verify, archive, backup and restore.

    .venv/bin/python bench/ledger_scale/run.py                        # the full size: 1,000,000 entries
    .venv/bin/python bench/ledger_scale/run.py --entries 50000        # small, for a shared machine
    .venv/bin/python bench/ledger_scale/run.py --sections append --backends postgresql --dsn "$DSN"

Every ledger is generated through the public, set-based ``SystemOfRecord.append`` (batches of 500, as the
recorder's writer thread appends), never by writing rows directly. One ledger per backend of ``--verify-backends``
(``--entries`` entries; ``--postgresql-entries`` on PostgreSQL) is built once and used by verify, backup and
archive in that order (archive last: it moves entries out). At 1,000,000 entries the timed verifications run once (``--repeat``: 3 up
to 100,000 entries) and the full verify that opens every payload is skipped above 200,000 entries
(``--payload-verify``; the incremental one with payloads is printed instead). Each section's figures go to
``--json`` as soon as it ends, so a run stopped part-way keeps what it measured.

Sections (``--sections``, default ``verify,backup,archive,append``, run in the order given), each printing every
figure with its baseline from this same run:

``append``   ``SystemOfRecord.append`` in batches of ``--batch`` entries, by 1, 8 and 16 writer processes at
             once (``--writers``), per backend (``--backends``), for two shapes (``--append-shapes``): ``results``,
             task results of one run per writer (the recorder's bulk: about 1 kB of canonical JSON each, three
             shapes), and ``recorder``, whole recorder-shaped runs (start, play, gate, three results per host, end:
             the register tests' ``synthetic_run``, about 10 entries a run, hosts of 300 registered CIs), what the
             review service's 1,000,000-event ledger is built of. Each writer appends its share of
             ``--append-entries`` (default min(--entries, 50,000): a rate, steady after a few thousand entries)
             into one fresh ledger; the figure is all entries over the wall time from
             the first writer's start to the last one's end. Baseline: the append path before issue 21
             (kept below as :func:`legacy_append`: per entry an idempotency query, the seal, the ledger
             INSERT and the projector's statements, the change event read and parsed for every result).
             Quick form: ``--sections append --append-entries 5000 --writers 1,16``.
``cost``     what one entry costs one writer, in this process, for the same shapes and backends: CPU time per entry
             (``time.process_time``: building the entries as the writer does, sealing, projecting, SQLite's own work;
             PostgreSQL: the client's share) and, on PostgreSQL, result fetches per entry (each a round trip: the
             append's other statements are queued in pipeline mode). Baseline and now alternate, two rounds, the
             lower CPU time of each is printed: figures a shared machine's load moves less than the wall-time rates.
             Quick form: ``--sections cost --append-entries 3000``.
``verify``   a ledger of ``--entries`` entries (SQLite; PostgreSQL too with ``--verify-backends``): the full
             chain-only walk (the fast path) against the walk ``ledger_verify`` made before (the general
             ``verify_rows`` over ``Entry`` objects); then ``--new-entries`` more entries and the incremental
             verify from the signed verified-up-to marker, against a full verify of the same ledger.
``chain``    the full chain-only walk alone, in CPU time (``time.process_time``: SQLite works in-process; for
             PostgreSQL the client's share, the server's is not counted) and wall time per entry, three walks in
             alternating rounds (median of ``--repeat``): the general walk (``verify_rows`` over ``Entry`` objects,
             the walk before issue 21), the fast walk as it was before it was tuned (kept below as
             :func:`previous_walk_chain`: 50,000-row batches, the salt read), and the backend's walk now
             (``SystemOfRecord.verify(payloads=False)``), each with its ratio. Quick form on a shared machine:
             ``--sections chain --entries 100000``; ``--chain-ledger PATH`` walks an existing SQLite ledger instead
             of building one (the ledger is only read).
``archive``  ``ledger_archive`` of every entry of that ledger older than a cutoff into a compressed,
             self-verifying archive, the archive checked offline, and the live ledger verified from the
             archive's last hash; baselines: the full chain-only verify of the ledger before archiving (for the
             live ledger's verify after it), and the full verify with every payload (for the offline check, per
             entry). Per backend of
             ``--verify-backends``, with the peak resident memory after each step; ``--trace-memory`` also
             gives the peak of the memory Python allocated (``tracemalloc``) during the archive and during the
             offline check, which the ledger's build does not cloud as it does the resident peak (slower: for
             memory figures, not times).
``backup``   per backend of ``--verify-backends``: ``ledger_backup`` of the ledger while another process appends
             (SQLite's online backup API; PostgreSQL's pg_dump from an exported snapshot), against a plain copy
             of the closed SQLite file / a plain ``pg_dump --format=custom`` with no writer; the restore (copy
             back / pg_restore into a new database, against the plain copy / a pg_restore of the plain dump
             into a database of its own) and the restored ledger's chain-only verification (its head
             must be the one the backup reported); then a witness checkpoint of the live head and
             ``ledger_verify`` of the live ledger (baseline, valid) and of the restored one, which must report
             the rollback (``truncated`` at the witnessed entry) or the benchmark stops.

For PostgreSQL, ``--dsn`` names a database the benchmark may create schemas in (each variant gets a fresh
schema); without it a throwaway server is started on loopback with ``bench/postgresql_server.sh`` (default
durability settings, fsync on) and stopped at the end. Nothing here asserts on time; the load average is
printed at the start and the end because on a shared machine the figures are only as steady as the load.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))

sys.path[:0] = [os.path.join(REPO, "tests"), os.path.join(REPO, "tests", "integration")]

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import GENESIS_HASH  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils import ledger  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry, verify_rows  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projections  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (  # noqa: E402
    open_system_of_record,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.sql import (  # noqa: E402
    LEDGER_COLUMNS,
    _Statements,
)
from register_fixtures import register_cis, synthetic_run  # noqa: E402

#: the CIs the recorder-shaped runs' hosts are (registered in each append ledger first), and the kinds of run
RECORDER_HOSTS = ["web%04d.example.net" % number for number in range(300)]
RECORDER_KINDS = ("standard",) * 5 + ("normal",) * 2 + ("emergency", "unauthorised", "dry-run", "no-change", "failed")


# ------------------------------------------------------------------------------------------------
# payloads: task results like the recorder's
# ------------------------------------------------------------------------------------------------
def result_payload(run_id, index, hosts=200):
    host = "web%04d" % (index % hosts)
    data = {"run_id": run_id, "play_id": "5254-0001-play", "host": host, "item": None,
            "started_at": "2026-12-05T07:43:00.156250Z", "ended_at": "2026-12-05T07:43:01.286557Z",
            "duration_ms": 1130, "status": "changed", "changed": True,
            "task": {"uuid": "5254-0001-%08d" % (index % 20), "name": "Task number %d of the play" % (index % 20),
                     "action": "ansible.builtin.command", "path": "/srv/ansible/site.yml:%d" % (index % 20 * 7),
                     "tags": ["deploy"], "role": None, "handler": False, "check_mode": False}}
    shape = index % 3
    if shape == 0:
        data["result"] = {"cmd": "systemctl restart app-%d" % index, "rc": 0, "start": "2026-12-05 07:43:01",
                          "end": "2026-12-05 07:43:01", "delta": "0:00:00.004536", "msg": "", "stderr": "",
                          "stdout": "restarted app-%d on %s; " % (index, host) * 6}
    elif shape == 1:
        data["task"]["action"] = "ansible.builtin.copy"
        data["result"] = {"checksum": "a030523ae44742b42cfc21d37030f308705b042c", "dest": "/etc/app/app.conf",
                          "group": "root", "mode": "0644", "owner": "root", "state": "file"}
        data["diff"] = [{"before": "listen 8080\nworkers 4\n", "after": "listen 8080\nworkers %d\n" % (index % 16),
                         "before_header": "/etc/app/app.conf", "after_header": "/etc/app/app.conf"}]
    else:
        data["item"] = {"index": index % 5, "label": "package-%d" % (index % 5)}
        data["task"]["action"] = "ansible.builtin.apt"
        data["result"] = {"msg": "package-%d is installed" % (index % 5), "changed": False, "cache_updated": False}
        data["status"], data["changed"] = "ok", False
    return data


def run_started(run_id, at="2026-12-05T07:43:00.000000Z"):
    return {"run_id": run_id, "started_at": at, "user": "ops", "controller": "ctl",
            "playbooks": ["/srv/ansible/site.yml"], "check_mode": False}


def run_finished(run_id, at):
    return {"run_id": run_id, "ended_at": at, "outcome": "successful", "stats": {}}


# ------------------------------------------------------------------------------------------------
# the append path before issue 21, kept as the baseline
# ------------------------------------------------------------------------------------------------
def _legacy_run_result(db, entry):
    """``projections._run_result`` before issue 21: the event's doc read and parsed for every result, then
    one INSERT and one upsert."""
    data = entry.data
    run_id = data["run_id"]
    row = db.execute("SELECT doc FROM change_events WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        db.execute("INSERT INTO change_events (run_id, started_at, status, dry_run, doc, last_seq)"
                   " VALUES (?, ?, ?, ?, ?, ?)", (run_id, entry.at, "running", 0, projections._dump(
                       {"run_id": run_id, "started_at": entry.at, "incomplete": True}), entry.seq))
    else:
        json.loads(row[0])
    task = data.get("task") or {}
    item = data.get("item")
    status = data["status"]
    db.execute(
        "INSERT INTO task_results (seq, run_id, play_id, task_uuid, task_name, action, host, item_label, status,"
        " changed, started_at, duration_ms, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.seq, run_id, data.get("play_id"), task.get("uuid"), task.get("name"), task.get("action"),
         data["host"], item.get("label") if isinstance(item, dict) else None, status,
         1 if data.get("changed") else 0, data.get("started_at"), data.get("duration_ms"), entry.data_json()))
    if item is not None:
        return
    counts = [0, 0, 0, 0, 0]
    if status in projections._HOST_COUNTS:
        counts[projections._HOST_COUNTS.index(status)] = 1
    db.execute(projections._RUN_HOSTS_UPSERT, (run_id, data["host"]) + tuple(counts))


def legacy_append(sor, entries):
    """``SqlSystemOfRecord.append`` before issue 21 (statement for statement)."""
    entries = list(entries)
    for entry in entries:
        entry.prepare()
    appended = []
    with sor._write_transaction() as cursor:  # pylint: disable=protected-access
        db = _Statements(cursor, sor.placeholder)
        row = db.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (row[0], row[1]) if row else (0, GENESIS_HASH)
        seen = set()
        for entry in entries:
            if entry.id in seen or db.execute("SELECT 1 FROM ledger WHERE entry_id = ?", (entry.id,)).fetchone():
                continue
            if not sor._still_applies(db, entry):  # pylint: disable=protected-access
                continue
            seen.add(entry.id)
            seq += 1
            entry.seal(seq, prev_hash)
            prev_hash = entry.hash
            db.execute("INSERT INTO ledger (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" % LEDGER_COLUMNS,
                       sor._ledger_row(entry))  # pylint: disable=protected-access
            if entry.kind == "run.result":
                _legacy_run_result(db, entry)
            else:
                projections.project(db, entry)
            appended.append(entry)
    return appended


def _retrying(function, sor, *args):
    """A PostgreSQL append retried when a lost connection is reported (the backend's own retry wrapper)."""
    retry = getattr(sor, "_retrying", None)
    if retry is None:
        return function(sor, *args)
    return retry(lambda: function(sor, *args), "appending (benchmark)")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def load():
    return "%.2f %.2f %.2f" % os.getloadavg()


def rate(count, seconds):
    return count / seconds if seconds > 0 else float("inf")


class Postgres(object):
    """A database for the benchmark: ``--dsn``, or a throwaway server of bench/postgresql_server.sh."""

    def __init__(self, dsn, workdir):
        self.dsn = dsn
        self.started = None
        if not dsn:
            self.started = os.path.join(workdir, "pg")
            # as root the server runs as the postgres user, which must be able to reach its directory
            os.chmod(workdir, 0o711)
            script = os.path.join(REPO, "bench", "postgresql_server.sh")
            output = subprocess.run(["bash", script, "start", self.started], check=True, stdout=subprocess.PIPE,
                                    universal_newlines=True).stdout
            self.dsn = output.strip().splitlines()[-1]

    def schema_config(self, name):
        """Backend config of a fresh schema ``name`` in the benchmark's database."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute('DROP SCHEMA IF EXISTS "%s" CASCADE' % name)
            conn.execute('CREATE SCHEMA "%s"' % name)
        separator = "&" if "?" in self.dsn else "?"
        if "://" not in self.dsn:
            return {"backend": "postgresql", "busy_timeout": 600,
                    "postgresql_dsn": "%s options='-csearch_path=%s'" % (self.dsn, name)}
        return {"backend": "postgresql", "busy_timeout": 600,
                "postgresql_dsn": "%s%soptions=-csearch_path%%3D%s" % (self.dsn, separator, name)}

    def drop_schema(self, name):
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute('DROP SCHEMA IF EXISTS "%s" CASCADE' % name)

    def stop(self):
        if self.started:
            subprocess.run(["bash", os.path.join(REPO, "bench", "postgresql_server.sh"), "stop", self.started],
                           check=False)


# ------------------------------------------------------------------------------------------------
# append
# ------------------------------------------------------------------------------------------------
def recorder_documents(count, seed, hosts=RECORDER_HOSTS):
    """Entry documents of recorder-shaped runs (start, play, gate, three results per host, end: the register
    tests' ``synthetic_run``, 1 to 3 hosts of a pool of CIs), about ``count`` entries in whole runs."""
    rng = random.Random(seed)
    started = datetime.datetime(2026, 12, 5, 7, 0, tzinfo=datetime.timezone.utc)
    runs = []
    written = 0
    number = 0
    while written < count:
        _run_id, entries = synthetic_run(seed * 1000000 + number, started + datetime.timedelta(seconds=number),
                                         rng, sorted(rng.sample(hosts, rng.randint(1, 3))),
                                         RECORDER_KINDS[number % len(RECORDER_KINDS)], environment="production",
                                         diff=number % 10 == 0)
        runs.append([dict(entry.to_dict(), format=None) for entry in entries])
        written += len(entries)
        number += 1
    return runs


def _batches(shape, run_id, count, batch, seed):
    """Entry documents in batches: ``results`` (task results of one run) or ``recorder`` (whole runs, batches of
    at least ``batch`` entries). Built before the clock starts."""
    if shape == "results":
        payloads = [result_payload(run_id, index) for index in range(count)]
        return [[{"id": uuid.uuid4().hex, "at": "2026-12-05T07:43:01.286557Z", "kind": "run.result",
                  "subject": run_id, "actor": None, "data": payload} for payload in payloads[start:start + batch]]
                for start in range(0, count, batch)]
    batches, pending = [], []
    for run in recorder_documents(count, seed):
        pending.extend(run)
        if len(pending) >= batch:
            batches.append(pending)
            pending = []
    return batches + ([pending] if pending else [])


def _writer(config, variant, count, batch, barrier, results, shape="results", seed=0):
    """One writer process: its own run, ``count`` entries in batches; reports (start, end, appended)."""
    sor = open_system_of_record(config)
    try:
        run_id = uuid.uuid4().hex
        sor.append([Entry("run.started", run_id, run_started(run_id))])
        batches = _batches(shape, run_id, count, batch, seed)
        append = legacy_append if variant == "baseline" else type(sor).append
        barrier.wait()
        started = time.perf_counter()
        appended = 0
        for documents in batches:
            # entries are built as the recorder's writer builds them from its queue (from_dict)
            entries = [Entry.from_dict(document) for document in documents]
            appended += len(_retrying(append, sor, entries))
        results.put((started, time.perf_counter(), appended, sum(len(documents) for documents in batches)))
    finally:
        sor.close()


def append_rate(config, variant, writers, total, batch, shape="results"):
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(writers)
    results = context.Queue()
    share = max(batch, total // writers)
    processes = [context.Process(target=_writer, args=(config, variant, share, batch, barrier, results, shape,
                                                       number + 1))
                 for number in range(writers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=3600) for _process in processes]
    for process in processes:
        process.join()
        if process.exitcode:
            raise SystemExit("a %s writer failed (exit %d)" % (variant, process.exitcode))
    appended = sum(outcome[2] for outcome in outcomes)
    if appended != sum(outcome[3] for outcome in outcomes):
        raise SystemExit("%s: %d of %d entries appended" % (variant, appended, sum(outcome[3] for outcome in outcomes)))
    return rate(appended, max(outcome[1] for outcome in outcomes) - min(outcome[0] for outcome in outcomes))


def check_ledger(config):
    sor = open_system_of_record(config)
    try:
        report = sor.verify(projections=True, payloads=False)
        if not report.valid:
            raise SystemExit("the benchmark's ledger does not verify: %s" % report.summary())
        return report.entries_checked
    finally:
        sor.close()


def section_append(args, workdir, postgres, figures):
    for shape in args.append_shapes:
        what = ("task results (one run per writer)" if shape == "results" else
                "entries of recorder-shaped runs (start, play, gate, results, end; ~10 entries a run)")
        print("\n== append: %d %s per variant, batches of %d (entries/s, all writers together; variants alternate)"
              % (args.append_entries, what, args.batch))
        print("   %-11s %7s %14s %14s %7s  %s" % ("backend", "writers", "baseline", "now", "ratio", "load average"))
        for backend in args.backends:
            for writers in args.writers:
                measured = {}
                for variant in ("baseline", "now"):
                    name = "append_%s_%s_%s_%d" % (shape, backend, variant, writers)
                    config = scratch_config(backend, workdir, postgres, name)
                    sor = open_system_of_record(config)  # schema created before the writers race for it
                    try:
                        if shape == "recorder":
                            for position, environment in enumerate(("production", "staging", "development")):
                                register_cis(sor, RECORDER_HOSTS[position::3], environment)
                    finally:
                        sor.close()
                    measured[variant] = append_rate(config, variant, writers, args.append_entries, args.batch, shape)
                    check_ledger(config)
                    drop_scratch(config, postgres, name)
                key = "%s/%d" % (backend, writers) if shape == "results" else "%s/%s/%d" % (shape, backend, writers)
                figures["append"][key] = measured
                ratio = measured["now"] / measured["baseline"]
                print("   %-11s %7d %14.0f %14.0f %7.2f  %s" % (
                    backend, writers, measured["baseline"], measured["now"], ratio, load()), flush=True)


class _FetchCounter(object):
    """Counts the result fetches of psycopg cursors while it is entered: in the append's pipeline mode each one
    waits for the server (a round trip), the rest of the statements are queued."""

    def __init__(self):
        self.count = 0
        self._saved = {}

    def __enter__(self):
        import psycopg

        for name in ("fetchone", "fetchall"):
            original = self._saved[name] = getattr(psycopg.Cursor, name)

            def counted(cursor, *args, _original=original, **kwargs):
                self.count += 1
                return _original(cursor, *args, **kwargs)

            setattr(psycopg.Cursor, name, counted)
        return self

    def __exit__(self, *exc_info):
        import psycopg

        for name, original in self._saved.items():
            setattr(psycopg.Cursor, name, original)


def append_cost(config, variant, shape, count, batch):
    """One writer in this process: CPU seconds (``time.process_time``: building the entries as the writer does,
    sealing, projecting, SQLite's own work; for PostgreSQL the client's share) and result fetches per entry."""
    sor = open_system_of_record(config)
    try:
        if shape == "recorder":
            for position, environment in enumerate(("production", "staging", "development")):
                register_cis(sor, RECORDER_HOSTS[position::3], environment)
        run_id = uuid.uuid4().hex
        sor.append([Entry("run.started", run_id, run_started(run_id))])
        batches = _batches(shape, run_id, count, batch, 1)
        append = legacy_append if variant == "baseline" else type(sor).append
        counter = _FetchCounter() if sor.backend_name == "postgresql" else contextlib.nullcontext()
        appended = 0
        with counter:
            started = time.process_time()
            for documents in batches:
                appended += len(append(sor, [Entry.from_dict(document) for document in documents]))
            seconds = time.process_time() - started
        return seconds / appended, (counter.count / appended if sor.backend_name == "postgresql" else None)
    finally:
        sor.close()


def section_cost(args, workdir, figures, postgres=None):
    """``cost``: what one entry costs one writer, in CPU time and (PostgreSQL) round trips, figures that the load
    of a shared machine moves less than wall-time rates: baseline and now alternate, two rounds, the lower CPU
    time of each is printed."""
    count = min(args.append_entries, 10000)
    print("\n== append cost: one writer, %d entries per variant and round, batches of %d (CPU us per entry;"
          " PostgreSQL: the client's CPU, and result fetches per entry, each a round trip)" % (count, args.batch))
    print("   %-9s %-11s %14s %14s %7s %16s  %s" % (
        "shape", "backend", "baseline CPU", "now CPU", "ratio", "fetches b -> n", "load average"))
    figures.setdefault("cost", {})
    for shape in args.append_shapes:
        for backend in args.backends:
            measured = {"baseline": [], "now": []}
            for round_number in range(2):
                for variant in ("baseline", "now"):
                    name = "cost_%s_%s_%s_%d" % (shape, backend, variant, round_number)
                    config = scratch_config(backend, workdir, postgres, name)
                    measured[variant].append(append_cost(config, variant, shape, count, args.batch))
                    drop_scratch(config, postgres, name)
            best = {variant: min(values) for variant, values in measured.items()}
            figures["cost"]["%s/%s" % (shape, backend)] = {
                variant: {"cpu_us": value[0] * 1e6, "fetches": value[1]} for variant, value in best.items()}
            fetches = ("%.2f -> %.2f" % (best["baseline"][1], best["now"][1])) if backend == "postgresql" else "-"
            print("   %-9s %-11s %14.1f %14.1f %7.2f %16s  %s" % (
                shape, backend, best["baseline"][0] * 1e6, best["now"][0] * 1e6, best["baseline"][0] / best["now"][0],
                fetches, load()), flush=True)


# ------------------------------------------------------------------------------------------------
# a big ledger, and verify
# ------------------------------------------------------------------------------------------------
def build_ledger(config, entries, run_size=1000, batch=500, started_at=None, progress=True):
    """Append ``entries`` entries as runs of ``run_size`` results (start, results, finish), in batches."""
    sor = open_system_of_record(config)
    try:
        written = sor.head()[0]
        run_number = 0
        began = time.perf_counter()
        while written < entries:
            run_number += 1
            run_id = "run-%06d-%s" % (run_number, uuid.uuid4().hex[:8])
            at = started_at(run_number) if started_at else "2026-12-05T07:43:00.000000Z"
            size = min(run_size, entries - written - 2)
            batches = [[Entry("run.started", run_id, run_started(run_id, at), at=at)]]
            payloads = [result_payload(run_id, index) for index in range(max(size, 0))]
            for start in range(0, len(payloads), batch):
                batches.append([Entry("run.result", run_id, payload, at=at) for payload in payloads[start:start + batch]])
            batches.append([Entry("run.finished", run_id, run_finished(run_id, at), at=at)])
            for chunk in batches:
                written += len(sor.append(chunk))
            if progress and run_number % 100 == 0:
                print("   ... %d entries (%.0f/s)" % (written, rate(written, time.perf_counter() - began)), flush=True)
        return written
    finally:
        sor.close()


def traced(function, trace):
    """``(function(), peak MB of the memory Python allocated while it ran)``; the peak is None unless ``trace``."""
    if not trace:
        return function(), None
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def timed(function, repeat=1):
    values = []
    result = None
    for _round in range(repeat):
        started = time.perf_counter()
        result = function()
        values.append(time.perf_counter() - started)
    return statistics.median(values), result


def _verify_ctx(sor, settings, **params):
    from ansible_collections.changeops.itsm.plugins.module_utils.change_events import LEDGER_VERIFY_SPEC
    from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

    values = {name: spec.get("default") for name, spec in LEDGER_VERIFY_SPEC.items()}
    values.update(settings)
    values.update(params)
    return OperationContext(sor, values, actor="bench@ctl", warn=lambda message: None)


def ledger_verify(config, settings, **params):
    """``ledger_verify``'s operation (witnesses, markers and all), as a playbook task runs it."""
    from ansible_collections.changeops.itsm.plugins.module_utils.change_events import verify_ledger

    sor = open_system_of_record(config)
    try:
        result = verify_ledger(_verify_ctx(sor, settings, **params))
        if result.get("failed"):
            raise SystemExit("ledger_verify failed: %s" % result.get("msg"))
        return result
    finally:
        sor.close()


def bench_settings(workdir):
    from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints

    key = os.path.join(workdir, "keys", "checkpoint.key")
    if not os.path.exists(key):
        checkpoints.generate_key(key)
    return {"checkpoint_key": key, "witness_file": os.path.join(workdir, "witness.jsonl"), "witness_syslog": "false"}


def open_head(config):
    sor = open_system_of_record(config)
    try:
        return sor.head()[0]
    finally:
        sor.close()


def scratch_config(backend, workdir, postgres, name):
    """A bench ledger called ``name``: an SQLite file in ``workdir`` or a schema of the bench's PostgreSQL."""
    if backend == "sqlite":
        return {"backend": "sqlite", "sqlite_path": os.path.join(workdir, name + ".sqlite"), "busy_timeout": 600}
    return postgres.schema_config(name)


def drop_scratch(config, postgres, name):
    """Remove the ledger :func:`scratch_config` gave for ``name``."""
    if config["backend"] == "sqlite":
        _remove_files(config["sqlite_path"])
    else:
        postgres.drop_schema(name)


def verify_config(backend, workdir, postgres=None, name="verify"):
    return scratch_config(backend, workdir, postgres, name if backend == "sqlite" else "%s_%s" % (name, backend))


_SHARED = {}


def shared_sqlite_ledger(args, workdir, figures):
    """The SQLite ledger of the verify, backup and archive sections: ``--entries`` entries, nine tenths of the runs
    dated 2020 (what the archive section archives), built once through ``SystemOfRecord.append``."""
    if "sqlite" not in _SHARED:
        config = verify_config("sqlite", workdir, name="ledger")
        print("\n== building the SQLite ledger of %d entries (verify, backup, archive use it)" % args.entries, flush=True)
        seconds, written = timed(lambda: build_ledger(config, args.entries, started_at=old_then_new(args.entries)))
        print("   built in %.1f s (%.0f entries/s through SystemOfRecord.append, one writer, batches of 500)"
              % (seconds, rate(written, seconds)), flush=True)
        figures["build"]["sqlite"] = {"entries": written, "seconds": seconds}
        _SHARED["sqlite"] = config
    return _SHARED["sqlite"]


def shared_postgresql_ledger(args, workdir, figures, postgres):
    """The PostgreSQL ledger of the verify, backup and archive sections (``--postgresql-entries``, default
    ``--entries``; dated like the SQLite one), built once through ``SystemOfRecord.append``."""
    if "postgresql" not in _SHARED:
        config = verify_config("postgresql", workdir, postgres, name="ledger")
        size = args.postgresql_entries or args.entries
        print("\n== building the PostgreSQL ledger of %d entries (verify, backup, archive use it)" % size, flush=True)
        seconds, written = timed(lambda: build_ledger(config, size, started_at=old_then_new(size)))
        print("   built in %.1f s (%.0f entries/s through SystemOfRecord.append, one writer, batches of 500)"
              % (seconds, rate(written, seconds)), flush=True)
        figures["build"]["postgresql"] = {"entries": written, "seconds": seconds}
        _SHARED["postgresql"] = config
    return _SHARED["postgresql"]


def shared_ledger(backend, args, workdir, figures, postgres):
    if backend == "sqlite":
        return shared_sqlite_ledger(args, workdir, figures)
    return shared_postgresql_ledger(args, workdir, figures, postgres)


def section_verify(args, workdir, figures, postgres=None):
    settings = bench_settings(workdir)
    for backend in args.verify_backends:
        config = shared_ledger(backend, args, workdir, figures, postgres)
        written = open_head(config)
        print("\n== verify (%s): a ledger of %d entries" % (backend, written), flush=True)
        sor = open_system_of_record(config)
        try:
            baseline, old = timed(lambda: verify_rows(sor.iter_entries, payloads=False), args.repeat)
            now, new = timed(lambda: sor.verify(payloads=False), args.repeat)
            assert old.valid and new.valid and old.head_hash == new.head_hash
            payloads = None
            if args.payload_verify == "yes" or (args.payload_verify == "auto" and written <= 200000):
                payloads, full = timed(lambda: sor.verify(payloads=True))
                assert full.valid
        finally:
            sor.close()
        per_million = 1e6 / written
        print("   full chain-only verify of %d entries (median of %d):" % (written, args.repeat))
        print("     baseline (the walk before issue 21) %8.2f s  %6.2f us/entry  ~%6.1f s per 1,000,000" % (
            baseline, baseline / written * 1e6, baseline * per_million))
        print("     now (raw rows, header hashes)        %8.2f s  %6.2f us/entry  ~%6.1f s per 1,000,000   ratio %.2f" % (
            now, now / written * 1e6, now * per_million, now / baseline))
        if payloads is None:
            print("   full verify with payloads opened:      skipped above 200,000 entries (--payload-verify yes)")
        else:
            print("   full verify with payloads opened:      %8.2f s  %6.2f us/entry" % (payloads, payloads / written * 1e6))

        # a marker at the head, then new entries: incremental against full, through the module's operation
        ledger_verify(config, settings, mode="full", record_marker=True, check_projections=False,
                      check_payloads=False)
        build_ledger(config, written + args.new_entries, progress=False)
        full_seconds, full_result = timed(lambda: ledger_verify(config, settings, mode="full", check_projections=False,
                                                                check_payloads=False, record_marker=False))
        incremental_seconds, result = timed(lambda: ledger_verify(config, settings, mode="incremental",
                                                                  check_payloads=False, record_marker=False),
                                            args.repeat)
        walked = result["verification"]["entries_checked"]
        assert result["verification"]["mode"] == "incremental" and walked <= args.new_entries + 10, result["verification"]
        with_payloads, _result = timed(
            lambda: ledger_verify(config, settings, mode="incremental", check_payloads=True, record_marker=False),
            args.repeat)
        print("   after %d new entries (ledger_verify, witnesses read, chain only unless said):" % args.new_entries)
        print("     baseline: full verify of %d entries   %8.2f s" % (
            full_result["verification"]["entries_checked"], full_seconds))
        print("     incremental (%d entries walked)      %8.3f s   ratio %.4f" % (
            walked, incremental_seconds, incremental_seconds / full_seconds))
        print("     incremental with payloads opened      %8.3f s   (%.0f us per entry walked)" % (
            with_payloads, with_payloads / max(walked, 1) * 1e6))
        figures["verify"][backend] = {
            "entries": written, "full_chain_baseline_s": baseline, "full_chain_s": now, "full_payloads_s": payloads,
            "per_million_baseline_s": baseline * per_million, "per_million_s": now * per_million,
            "new_entries": args.new_entries, "full_after_new_s": full_seconds, "incremental_s": incremental_seconds,
            "incremental_payloads_s": with_payloads}


# ------------------------------------------------------------------------------------------------
# the chain-only fast walk before it was tuned (main fd6688f), kept as the chain section's baseline
# ------------------------------------------------------------------------------------------------
def previous_chain_rows(sor, after_seq=0, batch=50000):
    """``SqlSystemOfRecord._chain_rows`` before: 50,000-row batches, every row's salt."""
    columns = LEDGER_COLUMNS.replace(", data,", ", CASE WHEN %s THEN data END," % ledger.CHAIN_ROW_DATA_NEEDED)
    last = after_seq
    while True:
        rows = sor._query("SELECT %s FROM ledger WHERE seq > ? ORDER BY seq LIMIT %d" % (columns, batch), (last,))
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1][0]


def previous_walk_chain(rows, expected_head=None, anchors=None, base=None, load_entries=None):
    """``ledger.walk_chain`` before (see there): the same checks, a per-row first-entry test and count."""
    from json.encoder import encode_basestring as quote

    encode_value = ledger.encode_value
    base = tuple(base) if base else (0, GENESIS_HASH)
    wanted = ledger._anchor_index(anchors)
    anchor_failures = []
    redactions = ledger._Redactions()
    anchor_found = False
    sha256 = hashlib.sha256
    last_seq, last_hash = base
    first = True
    count = 0
    for row in rows:
        seq, entry_id, at, kind, subject, actor, data, prev_hash, entry_hash, entry_format, _salt, root, marks = row
        if prev_hash != last_hash or (seq != last_seq + 1 and not (first and not base[0])):
            return None
        if entry_format == 2 and marks is None and root is not None:
            if sha256((prev_hash + "[2,%s,%s,%s,%s,%s,%s]" % (
                    quote(entry_id), quote(at), quote(kind),
                    "null" if subject is None else quote(subject) if subject.__class__ is str else encode_value(subject),
                    "null" if actor is None else quote(actor) if actor.__class__ is str else encode_value(actor),
                    quote(root))).encode("utf-8")).hexdigest() != entry_hash:
                return None
            if kind == ledger.KIND_REDACTED:
                redactions.note_record(Entry.from_row(row))
        else:
            entry = Entry.from_row(row)
            if ledger.entry_problem(entry, False) is not None:
                return None
            redactions.note_entry(entry)
            if kind == ledger.KIND_REDACTED:
                redactions.note_record(entry)
        if seq in wanted:
            for anchor in wanted[seq]:
                if anchor["hash"] != entry_hash:
                    anchor_failures.append(dict(anchor, problem="rewritten", detail=anchor["detail_rewritten"]))
        if expected_head is not None and entry_hash == expected_head:
            anchor_found = True
        last_seq, last_hash = seq, entry_hash
        first = False
        count += 1
    head = (last_seq, last_hash) if count else (base[0], base[1] if base[0] else None)
    report = ledger._finish_walk(count, head, False, redactions, base, load_entries, wanted, anchor_failures,
                                 expected_head, anchor_found)
    return None if report.first_broken is not None else report


def cpu_timed(function):
    """``(cpu_seconds, wall_seconds, result)`` of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def section_chain(args, workdir, figures, postgres=None):
    """The full chain-only walk, three ways in alternating rounds: see the module's docstring."""
    for backend in args.verify_backends:
        if backend == "sqlite" and args.chain_ledger:
            config = {"backend": "sqlite", "sqlite_path": args.chain_ledger, "busy_timeout": 600}
        elif backend == "sqlite":
            config = shared_sqlite_ledger(args, workdir, figures)
        else:
            config = verify_config(backend, workdir, postgres, name="chain")
            size = args.postgresql_entries or args.entries
            print("\n== chain (%s): building a ledger of %d entries" % (backend, size), flush=True)
            seconds, written = timed(lambda: build_ledger(config, size))
            figures["build"]["chain_" + backend] = {"entries": written, "seconds": seconds}
        sor = open_system_of_record(config)
        try:
            written = sor.head()[0]
            walks = [
                ("general", "the general walk (before issue 21)", lambda: verify_rows(sor.iter_entries, payloads=False)),
                ("previous", "the fast walk before tuning", lambda: previous_walk_chain(
                    previous_chain_rows(sor), load_entries=sor.entries_at)),
                ("now", "the walk now (SystemOfRecord.verify)", lambda: sor.verify(payloads=False)),
            ]
            print("\n== chain (%s): full chain-only walk of %d entries, %d alternating rounds, load average %s"
                  % (backend, written, args.repeat, load()), flush=True)
            measured = {name: ([], []) for name, _label, _walk in walks}
            heads = set()
            for _round in range(args.repeat):
                for name, _label, walk in walks:
                    cpu, wall, report = cpu_timed(walk)
                    if report is None or not report.valid:
                        raise SystemExit("the %s walk did not verify the benchmark's ledger" % name)
                    heads.add(report.head_hash)
                    measured[name][0].append(cpu)
                    measured[name][1].append(wall)
            assert len(heads) == 1, heads
        finally:
            sor.close()
        now_cpu = statistics.median(measured["now"][0])
        result = {"entries": written, "rounds": args.repeat, "load_after": load()}
        for name, label, _walk in walks:
            cpu, wall = statistics.median(measured[name][0]), statistics.median(measured[name][1])
            result[name] = {"cpu_s": cpu, "wall_s": wall, "cpu_us_per_entry": cpu / written * 1e6,
                            "cpu_s_per_million": cpu / written * 1e6}
            print("   %-40s CPU %7.2f us/entry (~%5.1f s per 1,000,000)  wall %7.2f us/entry  now/this %.2f" % (
                label, cpu / written * 1e6, cpu / written * 1e6, wall / written * 1e6, now_cpu / cpu))
        figures.setdefault("chain", {})[backend] = result


# ------------------------------------------------------------------------------------------------
# archive, backup and restore (SQLite: the default backend, and the one a single controller keeps)
# ------------------------------------------------------------------------------------------------
def _operation(function, spec, config, **params):
    from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

    values = {name: option.get("default") for name, option in spec.items()}
    values.update(params)
    # config None: no ledger opened, as the modules do for ``ledger: false`` (archives checked offline)
    sor = open_system_of_record(config) if config is not None else None
    try:
        result = function(OperationContext(sor, values, actor="bench@ctl", warn=lambda message: None))
        if result.get("failed"):
            raise SystemExit("%s failed: %s" % (function.__name__, result.get("msg")))
        return result
    finally:
        if sor is not None:
            sor.close()


def old_then_new(entries, run_size=1000):
    """``started_at`` for build_ledger: nine tenths of the runs in 2020 (archived), the rest now (kept live)."""
    old_runs = max(1, int(entries * 0.9) // (run_size + 2))

    def started_at(run_number):
        return "2020-06-01T00:00:00.000000Z" if run_number <= old_runs else "2026-12-05T07:43:00.000000Z"
    return started_at


def section_archive(args, workdir, figures, postgres=None):
    settings = bench_settings(workdir)
    for backend in args.verify_backends:
        _archive_one(backend, args, workdir, figures, postgres, settings)


def _archive_one(backend, args, workdir, figures, postgres, settings):
    from ansible_collections.changeops.itsm.plugins.module_utils.archives import LEDGER_ARCHIVE_SPEC, archive_ledger
    from ansible_collections.changeops.itsm.plugins.module_utils.change_events import LEDGER_VERIFY_SPEC, verify_ledger

    config = shared_ledger(backend, args, workdir, figures, postgres)
    entries = open_head(config)
    print("\n== archive (%s): the ledger of %d entries, nine tenths of the first ones from 2020, load average %s"
          % (backend, entries, load()), flush=True)
    sor = open_system_of_record(config)
    try:
        baseline, report = timed(lambda: sor.verify(payloads=False))
        assert report.valid
        # the offline check's baseline: the same work (chain and every payload) on the live ledger, per entry
        payload_baseline, report = timed(lambda: sor.verify(payloads=True))
        assert report.valid
    finally:
        sor.close()
    archive_dir = os.path.join(workdir, "archives-" + backend)
    (seconds, result), archive_traced = traced(lambda: timed(lambda: _operation(
        archive_ledger, LEDGER_ARCHIVE_SPEC, config, older_than="2021-01-01T00:00:00Z", archive_dir=archive_dir,
        **settings)), args.trace_memory)
    archive_rss = peak_rss_mb()
    archived = sum(item["entries"] for item in result["archives"])
    size = sum(item["bytes"] for item in result["archives"])
    (offline, checked), offline_traced = traced(lambda: timed(lambda: _operation(
        verify_ledger, LEDGER_VERIFY_SPEC, None, archives=[archive_dir], ledger=False,
        witness_file=settings["witness_file"], witness_syslog="false")), args.trace_memory)
    assert checked["archives"]["valid"], checked["archives"]
    sor = open_system_of_record(config)
    try:
        live, report = timed(lambda: sor.verify(payloads=False))
        assert report.valid and report.archived_through > 0
    finally:
        sor.close()
    print("   baseline: full chain-only verify of the whole ledger   %8.2f s" % baseline)
    print("   ledger_archive of %d entries into %d file(s), %.1f MB   %8.2f s  (%.0f entries/s)" % (
        archived, len(result["archives"]), size / 1e6, seconds, rate(archived, seconds)))
    offline_us = offline / max(archived, 1) * 1e6
    live_us = payload_baseline / max(entries, 1) * 1e6
    print("   baseline: full verify of the live ledger before archiving (chain, payloads)  %8.2f s  (%.0f us/entry)"
          % (payload_baseline, live_us))
    print("   the archive verified offline (ledger: false; chain, payloads, state)  %8.2f s  (%.0f us/entry,"
          " ratio %.2f per entry)" % (offline, offline_us, offline_us / live_us))
    print("   the live ledger verified from the archive's last hash  %8.2f s   ratio %.3f" % (live, live / baseline))
    print("   peak RSS: %.0f MB after the archive, %.0f MB after the offline verify" % (archive_rss, peak_rss_mb()))
    if args.trace_memory:
        print("   peak traced memory (tracemalloc): %.1f MB during the archive (%d state rows), %.1f MB during the"
              " offline check" % (archive_traced, sum(item["state_rows"] for item in result["archives"]),
                                  offline_traced))
    figures["archive"][backend] = {"entries": entries, "archived": archived, "archive_bytes": size,
                                   "archive_s": seconds, "offline_verify_s": offline,
                                   "live_verify_baseline_s": baseline, "live_verify_s": live,
                                   "payload_verify_baseline_s": payload_baseline,
                                   "peak_rss_after_archive_mb": archive_rss, "peak_rss_mb": peak_rss_mb(),
                                   "archive_traced_peak_mb": archive_traced, "offline_traced_peak_mb": offline_traced,
                                   "load_after": load()}
    shutil.rmtree(archive_dir, ignore_errors=True)


def _appender(config, stop, appended, batch=200):
    """A writer appending task results of one run in batches until ``stop`` is set (the backup's load)."""
    sor = open_system_of_record(config)
    try:
        run_id = "backup-writer-%s" % uuid.uuid4().hex[:8]
        sor.append([Entry("run.started", run_id, run_started(run_id))])
        index = 0
        while not stop.is_set():
            entries = [Entry("run.result", run_id, result_payload(run_id, index + offset)) for offset in range(batch)]
            index += batch
            with appended.get_lock():
                appended.value += len(sor.append(entries))
        sor.append([Entry("run.finished", run_id, run_finished(run_id, "2026-12-05T08:43:00.000000Z"))])
    finally:
        sor.close()


class Appending(object):
    """``with Appending(config) as writer:`` a writer process appends meanwhile; ``writer.appended`` after."""

    def __init__(self, config):
        self.config = config
        self.appended = 0

    def __enter__(self):
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._count = context.Value("q", 0)
        self._process = context.Process(target=_appender, args=(self.config, self._stop, self._count))
        self._process.start()
        deadline = time.time() + 120
        while self._count.value == 0 and time.time() < deadline:  # the writer is appending before the backup starts
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._process.join(600)
        self.appended = self._count.value
        if self._process.exitcode != 0:
            raise SystemExit("the writer appending during the backup failed (exit %s)" % self._process.exitcode)


def peak_rss_mb():
    """This process's peak resident memory so far (MB): what each step of the archive and backup needed."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _remove_files(*paths):
    for path in paths:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)


def _rollback_check(backend, live_config, restored_config, backup_head, settings):
    """A checkpoint of the live ledger's head (fed to the witness file), then ``ledger_verify`` (full, chain only)
    of the live ledger (the baseline: valid) and of the restored one, which must report the rollback."""
    from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints

    signed = _operation(checkpoints.checkpoint_ledger, checkpoints.LEDGER_CHECKPOINT_SPEC, live_config, **settings)
    options = dict(mode="full", check_projections=False, check_payloads=False, record_marker=False,
                   fail_on_broken=False)
    live_seconds, live = timed(lambda: ledger_verify(live_config, settings, **options))
    assert live["verification"]["valid"], live["verification"]
    seconds, result = timed(lambda: ledger_verify(restored_config, settings, **options))
    verification = result["verification"]
    mismatch = verification.get("history_mismatch") or {}
    if verification["valid"] or mismatch.get("problem") != "truncated" or mismatch.get("seq", 0) <= backup_head:
        raise SystemExit("%s: the restore to entry %d was not reported as a rollback: %r" % (
            backend, backup_head, verification))
    print("   witness checkpoint of the live head (entry %s); ledger_verify (full, chain only):" % (
        (signed.get("checkpoint") or {}).get("seq")))
    print("     baseline: the live ledger (%d entries), valid          %8.2f s" % (
        live["verification"]["entries_checked"], live_seconds))
    print("     the restored ledger: rollback reported (%s at entry %s)  %8.2f s   ratio %.2f" % (
        mismatch["problem"], mismatch["seq"], seconds, seconds / live_seconds))
    return {"live_verify_s": live_seconds, "rollback_verify_s": seconds, "problem": mismatch["problem"],
            "witnessed_seq": mismatch["seq"], "backup_head": backup_head}


def _pg_tool(name):
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/%s" % name), key=lambda path: int(path.split("/")[4]))
    if not candidates:
        raise SystemExit("%s not found: apt-get install postgresql-client" % name)
    return candidates[-1]


def _pg_environment(postgres):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(postgres.dsn)
    environment = dict(os.environ, PGPASSWORD=str(params.pop("password", "")))
    return params, environment, make_conninfo


def section_backup(args, workdir, figures, postgres=None):
    """Backup while a writer appends, restore, the restored ledger verified, and a restore to an older point
    reported as a rollback against the witness: see the module's docstring."""
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger_backup import LEDGER_BACKUP_SPEC, backup_ledger

    settings = bench_settings(workdir)
    for backend in args.verify_backends:
        config = shared_ledger(backend, args, workdir, figures, postgres)
        entries = open_head(config)
        print("\n== backup and restore (%s): the ledger of %d entries, load average %s" % (backend, entries, load()),
              flush=True)
        dest = os.path.join(workdir, "ledger-%s.backup" % backend)
        if backend == "sqlite":
            open_system_of_record(config).close()  # closed: its WAL is checkpointed into the file the baseline copies
            copy_path = os.path.join(workdir, "plain-copy.sqlite")
            baseline, _none = timed(lambda: shutil.copyfile(config["sqlite_path"], copy_path))
            baseline_label = "plain copy of the closed database file"
            _remove_files(copy_path)  # at 1,000,000 entries each copy is gigabytes
        else:
            params, environment, make_conninfo = _pg_environment(postgres)
            plain = os.path.join(workdir, "plain.pgdump")
            baseline, _none = timed(lambda: subprocess.run(
                [_pg_tool("pg_dump"), "--format=custom", "--no-password", "--file=%s" % plain,
                 "--schema=%s" % "ledger_postgresql", "--dbname=%s" % make_conninfo("", **params)],
                env=environment, check=True, stdin=subprocess.DEVNULL))
            baseline_label = "plain pg_dump --format=custom, no writer"
        with Appending(config) as writer:
            seconds, result = timed(lambda: _operation(backup_ledger, LEDGER_BACKUP_SPEC, config, dest=dest,
                                                       force=True, verify=False))
        backup_rss = peak_rss_mb()
        restored_db = None
        if backend == "sqlite":
            restored = os.path.join(workdir, "restored.sqlite")
            restore_seconds, _none = timed(lambda: shutil.copyfile(dest, restored))
            restore_baseline, restore_baseline_label = baseline, baseline_label
            restored_config = dict(config, sqlite_path=restored)
            restore_label = "restore (copy back)"
        else:
            restored_db = "changeops_restored"
            import psycopg

            def restore_into(database, dump):
                with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                    conn.execute("DROP DATABASE IF EXISTS %s" % database)
                    conn.execute("CREATE DATABASE %s" % database)
                return timed(lambda: subprocess.run(
                    [_pg_tool("pg_restore"), "--no-owner", "--exit-on-error",
                     "--dbname=%s" % make_conninfo("", **dict(params, dbname=database)), dump],
                    env=environment, check=True, stdin=subprocess.DEVNULL))[0]

            # the restore's baseline: pg_restore of the plain dump (no writer) into a database of its own, before and
            # after the backup's restore (the server's checkpoints and caches favour neither)
            plain_before = restore_into("changeops_plain_restored", plain)
            restore_seconds = restore_into(restored_db, dest)
            plain_after = restore_into("changeops_plain_restored", plain)
            restore_baseline = (plain_before + plain_after) / 2
            restore_baseline_label = "plain pg_restore of the plain dump (%.2f, %.2f s)" % (plain_before, plain_after)
            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS changeops_plain_restored")
            _remove_files(plain)
            restored_config = dict(config, postgresql_dsn="%s options='-csearch_path=%s'" % (
                make_conninfo("", **dict(params, password=environment["PGPASSWORD"], dbname=restored_db)),
                "ledger_postgresql"))
            restore_label = "pg_restore into a new database"
        sor = open_system_of_record(restored_config)
        try:
            verify_seconds, report = timed(lambda: sor.verify(payloads=False))
            assert report.valid and report.head_hash == result["head"]["hash"], report.to_dict()
        finally:
            sor.close()
        print("   baseline: %s (%.1f MB)  %8.2f s" % (baseline_label, result["bytes"] / 1e6, baseline))
        print("   ledger_backup (%s) while a writer appended %d entries  %8.2f s   ratio %.2f" % (
            result["format"], writer.appended, seconds, seconds / baseline))
        print("   baseline: %-48s %8.2f s" % (restore_baseline_label, restore_baseline))
        print("   %-48s %8.2f s   ratio %.2f" % (restore_label, restore_seconds, restore_seconds / restore_baseline))
        print("   the restored ledger verified (chain only, head = the backup's)  %8.2f s  (peak RSS %.0f MB)"
              % (verify_seconds, backup_rss))
        rollback = _rollback_check(backend, config, restored_config, result["head"]["seq"], settings)
        figures["backup"][backend] = dict(
            entries=entries, bytes=result["bytes"], baseline_s=baseline, backup_s=seconds, appended_meanwhile=writer.appended,
            backup_head=result["head"]["seq"], restore_s=restore_seconds, restore_baseline_s=restore_baseline,
            restored_verify_s=verify_seconds,
            rollback=rollback, peak_rss_mb=peak_rss_mb(), load_after=load())
        _remove_files(dest)
        if backend == "sqlite":
            _remove_files(restored)
        else:
            import psycopg

            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS %s" % restored_db)


# ------------------------------------------------------------------------------------------------
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000000, help="ledger size for verify/archive/backup")
    parser.add_argument("--postgresql-entries", type=int, default=None,
                        help="ledger size for the PostgreSQL verify (default: --entries; building it is the slow part)")
    parser.add_argument("--new-entries", type=int, default=10000, help="entries appended before the incremental verify")
    parser.add_argument("--append-entries", type=int, default=None,
                        help="task results per append variant (default: min(--entries, 50000))")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--append-shapes", default="results,recorder",
                        help="append section: task results of one run (results) and/or whole recorder-shaped runs"
                             " (recorder)")
    parser.add_argument("--writers", default="1,8,16")
    parser.add_argument("--backends", default="sqlite,postgresql", help="for the append section")
    parser.add_argument("--verify-backends", default="sqlite",
                        help="for the verify section (sqlite,postgresql: also on PostgreSQL)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="rounds of each timed verification (median; default 3 up to 100,000 entries, else 1)")
    parser.add_argument("--payload-verify", choices=("auto", "yes", "no"), default="auto",
                        help="time a full verify that opens every payload (auto: up to 200,000 entries)")
    parser.add_argument("--sections", default="verify,backup,archive,append",
                        help="any of verify, chain, backup, archive, append, run in the order given")
    parser.add_argument("--chain-ledger", help="chain section: walk this existing SQLite ledger (only read)")
    parser.add_argument("--trace-memory", action="store_true",
                        help="archive section: the peak of Python's allocations (tracemalloc) during the archive and "
                             "the offline check")
    parser.add_argument("--dsn", help="PostgreSQL database to create benchmark schemas in")
    parser.add_argument("--workdir")
    parser.add_argument("--json", help="write the figures here as JSON")
    args = parser.parse_args()
    args.writers = [int(part) for part in args.writers.split(",") if part]
    args.append_shapes = [part for part in args.append_shapes.split(",") if part]
    args.backends = [part for part in args.backends.split(",") if part]
    args.verify_backends = [part for part in args.verify_backends.split(",") if part]
    args.sections = [part for part in args.sections.split(",") if part]
    args.append_entries = args.append_entries or min(args.entries, 50000)
    if args.repeat is None:
        args.repeat = 3 if args.entries <= 100000 else 1
    unknown = set(args.sections) - {"append", "cost", "verify", "chain", "archive", "backup"}
    if unknown:
        parser.error("--sections: unknown %s (append, cost, verify, chain, archive, backup)" % ", ".join(sorted(unknown)))
    workdir = args.workdir or tempfile.mkdtemp(prefix="changeops-bench-scale-")
    os.makedirs(workdir, exist_ok=True)
    print("load average at start: %s (%d CPUs)" % (load(), os.cpu_count()))
    figures = {"append": {}, "verify": {}, "chain": {}, "archive": {}, "backup": {}, "build": {}, "sections": {},
               "entries": args.entries, "append_entries": args.append_entries, "load_start": load()}

    def save():
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(figures, handle, indent=2, sort_keys=True)

    postgres = None
    try:
        if ("postgresql" in args.backends and set(args.sections) & {"append", "cost"}) or (
                "postgresql" in args.verify_backends and set(args.sections) & {"verify", "chain", "backup", "archive"}):
            postgres = Postgres(args.dsn, workdir)
        for section in args.sections:
            started = time.perf_counter()
            if section == "append":
                section_append(args, workdir, postgres, figures)
            else:
                globals()["section_" + section](args, workdir, figures, postgres)
            figures["sections"][section] = {"seconds": time.perf_counter() - started, "load_after": load()}
            took = figures["sections"][section]
            print("   (section %s: %.0f s, load average %s)" % (section, took["seconds"], took["load_after"]), flush=True)
            save()
    finally:
        figures["load_end"] = load()
        print("\nload average at end: %s" % figures["load_end"])
        if postgres is not None:
            postgres.stop()
        save()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
