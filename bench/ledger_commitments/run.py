#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""What the salted per-field commitments (entry format 2) cost, against the format-1 sealing they replace.

(Entries are sealed as format 3 now; for the ``run.result`` entries measured here it cuts the payload exactly
as format 2, so "format 2" below is what a new task result costs.)

    .venv/bin/python bench/ledger_commitments/run.py [--entries 20000] [--batch 200] [--repeat 5]

In one process, on the same payloads (task results shaped like the recorder's: a command's result, a
copy with a diff, a loop item; about 0.6-1.3 kB of canonical JSON each):

* seal (CPU only, no storage): format 1 (canonical JSON of the data to store + SHA-256 over the whole
  canonical entry, all of it under the ledger's lock) against format 2 (``Entry.prepare``: salts,
  per-field commitments and the stored JSON in one pass, done before the append takes the lock, then
  ``seal``: one SHA-256 over the header, under the lock). Printed per entry, and the part that holds the
  lock, which is what bounds the append rate of concurrent writers.
* append: ``SystemOfRecord.append`` into a fresh SQLite ledger in batches, entries per second, format 1
  against format 2 (projections included, as the recorder's writer thread does it).
* verify: the whole chain walked with payloads opened (format 2 against format 1), and chain-only
  (``payloads=False``: hashes and links, no JSON parsed), per entry and extrapolated to 1,000,000.
* redact: one field of one entry of the ledger (the ``task_results`` row rewritten, then ``VACUUM`` and
  the WAL checkpoint), and one field whose redaction rebuilds the query tables.

Prints medians of ``--repeat`` rounds and the ratios. Numbers from a shared machine vary by 10 % or more.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import (  # noqa: E402
    GENESIS_HASH,
    canonical_json,
    chain_hash,
)
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (  # noqa: E402
    open_system_of_record,
)


def payloads(run_id, count):
    """Task results like the recorder's, cycling through three shapes."""
    shapes = []
    for index in range(count):
        host = "web%04d" % (index % 200)
        base = {"run_id": run_id, "play_id": "5254-0001-play", "host": host, "item": None,
                "started_at": "2026-12-05T07:43:00.156250Z", "ended_at": "2026-12-05T07:43:01.286557Z",
                "duration_ms": 1130, "status": "changed", "changed": True,
                "task": {"uuid": "5254-0001-%08d" % (index % 20), "name": "Task number %d of the play" % (index % 20),
                         "action": "ansible.builtin.command", "path": "/srv/ansible/site.yml:%d" % (index % 20 * 7),
                         "tags": ["deploy"], "role": None, "handler": False, "check_mode": False}}
        kind = index % 3
        if kind == 0:
            base["result"] = {"cmd": "systemctl restart app-%d" % index, "rc": 0, "start": "2026-12-05 07:43:01",
                              "end": "2026-12-05 07:43:01", "delta": "0:00:00.004536", "msg": "",
                              "stderr": "", "stdout": "restarted app-%d on %s; " % (index, host) * 6}
        elif kind == 1:
            base["task"]["action"] = "ansible.builtin.copy"
            base["result"] = {"checksum": "a030523ae44742b42cfc21d37030f308705b042c", "dest": "/etc/app/app.conf",
                              "group": "root", "mode": "0644", "owner": "root", "state": "file"}
            base["diff"] = [{"before": "listen 8080\nworkers 4\n", "after": "listen 8080\nworkers %d\n" % (index % 16),
                             "before_header": "/etc/app/app.conf", "after_header": "/etc/app/app.conf"}]
        else:
            base["item"] = {"index": index % 5, "label": "package-%d" % (index % 5)}
            base["task"]["action"] = "ansible.builtin.apt"
            base["result"] = {"msg": "package-%d is installed" % (index % 5), "changed": False, "cache_updated": False}
            base["status"], base["changed"] = "ok", False
        shapes.append(base)
    return shapes


def run_started(run_id):
    return {"run_id": run_id, "started_at": "2026-12-05T07:43:00.000000Z", "user": "ops", "controller": "ctl",
            "playbooks": ["/srv/ansible/site.yml"], "check_mode": False}


def seal_format1(entry, prev_hash):
    """Format 1 as the collection sealed it before schema 6 (all of it under the lock)."""
    entry.data_json()  # the stored text
    return chain_hash(prev_hash, canonical_json(entry.hashed_document()))


def bench_seal(data, repeat):
    rounds = {"format1": [], "format2": [], "format2_locked": []}
    for _round in range(repeat):
        entries = [Entry("run.result", "run-1", payload, format=1, at="2026-12-05T07:43:01.286557Z") for payload in data]
        started = time.perf_counter()
        prev = GENESIS_HASH
        for entry in entries:
            prev = seal_format1(entry, prev)
        rounds["format1"].append((time.perf_counter() - started) / len(entries))

        entries = [Entry("run.result", "run-1", payload, at="2026-12-05T07:43:01.286557Z") for payload in data]
        started = time.perf_counter()
        for entry in entries:
            entry.prepare()
        prepared = time.perf_counter()
        prev = GENESIS_HASH
        for index, entry in enumerate(entries):
            entry.seal(index + 1, prev)
            prev = entry.hash
        finished = time.perf_counter()
        rounds["format2"].append((finished - started) / len(entries))
        rounds["format2_locked"].append((finished - prepared) / len(entries))
    return {name: statistics.median(values) for name, values in rounds.items()}


def fill(path, entry_format, count, batch):
    """Append ``count`` task results (plus the run's start) in batches; returns seconds for the results."""
    sor = open_system_of_record({"backend": "sqlite", "sqlite_path": path, "busy_timeout": 60})
    sor.append([Entry("run.started", "run-1", run_started("run-1"), format=entry_format)])
    data = payloads("run-1", count)
    started = time.perf_counter()
    for start in range(0, count, batch):
        sor.append([Entry("run.result", "run-1", payload, format=entry_format) for payload in data[start:start + batch]])
    elapsed = time.perf_counter() - started
    return sor, elapsed


def timed(function, repeat):
    values = []
    for _round in range(repeat):
        started = time.perf_counter()
        function()
        values.append(time.perf_counter() - started)
    return statistics.median(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="changeops-bench-commitments-")
    os.makedirs(workdir, exist_ok=True)
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    try:
        seal = bench_seal(payloads("run-1", min(args.entries, 5000)), args.repeat)
        print("\nseal, CPU per entry (median of %d rounds):" % args.repeat)
        print("  format 1 (baseline), all under the lock   %7.1f us" % (seal["format1"] * 1e6))
        print("  format 2, in all                          %7.1f us   ratio %.2f" % (
            seal["format2"] * 1e6, seal["format2"] / seal["format1"]))
        print("  format 2, under the lock                  %7.1f us   ratio %.2f" % (
            seal["format2_locked"] * 1e6, seal["format2_locked"] / seal["format1"]))

        results = {}
        for entry_format in (1, 2):
            rates = []
            for round_number in range(max(1, args.repeat // 2)):
                path = os.path.join(workdir, "append-f%d-%d.sqlite" % (entry_format, round_number))
                sor, elapsed = fill(path, entry_format, args.entries, args.batch)
                rates.append(args.entries / elapsed)
                if round_number:
                    sor.close()
                    for suffix in ("", "-wal", "-shm"):
                        if os.path.exists(path + suffix):
                            os.unlink(path + suffix)
                else:
                    results[entry_format] = (sor, path)
            results["rate%d" % entry_format] = statistics.median(rates)
        print("\nappend into SQLite, %d task results in batches of %d (projections included):" % (args.entries, args.batch))
        print("  format 1 (baseline)   %8.0f entries/s" % results["rate1"])
        print("  format 2              %8.0f entries/s   ratio %.2f" % (results["rate2"], results["rate2"] / results["rate1"]))

        print("\nverify, %d entries (median of %d):" % (args.entries + 1, args.repeat))
        figures = {}
        for name, entry_format, payloads_checked in (("format 1, payloads (baseline)", 1, True),
                                                     ("format 2, payloads", 2, True),
                                                     ("format 1, chain only", 1, False),
                                                     ("format 2, chain only", 2, False)):
            sor = results[entry_format][0]
            seconds = timed(lambda: sor.verify(payloads=payloads_checked), args.repeat)
            figures[name] = seconds
            print("  %-32s %7.3f s  %6.1f us/entry  ~%6.1f s per 1,000,000" % (
                name, seconds, seconds / (args.entries + 1) * 1e6, seconds / (args.entries + 1) * 1e6))
        print("  ratio format 2 / format 1 with payloads: %.2f" % (
            figures["format 2, payloads"] / figures["format 1, payloads (baseline)"]))

        sor, path = results[2]
        copy = os.path.join(workdir, "redact.sqlite")
        sor.close()
        shutil.copyfile(path, copy)
        target = open_system_of_record({"backend": "sqlite", "sqlite_path": copy, "busy_timeout": 60})
        middle = args.entries // 2
        middle -= middle % 3
        started = time.perf_counter()
        target.redact_entry(middle + 2, ["result.stdout"], "bench", "bench", "bench@ctl")
        row_only = time.perf_counter() - started
        started = time.perf_counter()
        target.scrub_storage()
        compact = time.perf_counter() - started
        started = time.perf_counter()
        target.redact_entry(middle + 2, ["task.name"], "bench", "bench", "bench@ctl")
        replayed = time.perf_counter() - started
        target.close()
        print("\nredact one field of entry %d of %d:" % (middle + 2, args.entries + 1))
        print("  result.stdout (its task_results row rewritten)   %7.3f s" % row_only)
        print("  VACUUM + WAL checkpoint (compact: true)          %7.3f s" % compact)
        print("  task.name (query tables rebuilt from the ledger) %7.3f s" % replayed)
    finally:
        print("\nload average at end: %.2f %.2f %.2f" % os.getloadavg())
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
