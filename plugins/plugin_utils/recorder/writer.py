# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The recorder's writer thread: the only place the callback does I/O.

Callback methods append small, already-redacted entry documents to a
``collections.deque`` and return. Appending wakes nobody: waking the writer
for every result would hand it the GIL after each one and stall the
callback thread (measured: milliseconds per result). The writer wakes on its
own every ``flush_interval``, or at once when a full batch or a control
message (flush, finish) is waiting. ``deque.append`` takes no Python-level
lock, so it is also safe from a signal handler. This thread opens the system of record itself, batches
entries into ``sor.append`` transactions (by size and by age), and when an
append fails it writes the batch to the durable spool instead, warning once.
While any of this run's entries wait in the spool, later batches queue up
behind them so the run's order is kept; the spool is retried periodically and
at the end of the run, and the next run on this controller replays it first.

At start it also marks as interrupted the runs of this controller that are
still ``running`` although their process is gone (``kill -9``, power loss).
"""

from __future__ import annotations

import os
import collections
import threading
import time
import uuid

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.projections import (
    RECORD_ONLY_ACTION_PREFIX,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import hooks, processes, runinfo
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool import SpoolError

PREFIX = "changeops.itsm.change_recorder: "
RUN_END_KINDS = ("run.finished", "run.interrupted")


def entry_document(kind, subject, data, at=None):
    """A queued entry: what ``ledger.Entry`` needs, as plain data (ids make replays idempotent)."""
    return {"id": uuid.uuid4().hex, "at": at or utc_now(), "kind": kind, "subject": subject, "actor": None,
            "data": data}


class RecorderWriter(threading.Thread):
    def __init__(self, config, spool, display, options=None, batch_size=200, flush_interval=1.0,
                 retry_interval=10.0, opener=open_system_of_record):
        super(RecorderWriter, self).__init__(name="changeops-recorder-writer", daemon=True)
        self.config = config
        self.spool = spool
        self.display = display
        self.options = dict(options or {})
        self.batch_size = max(1, int(batch_size))
        self.flush_interval = max(0.05, float(flush_interval))
        self.retry_interval = max(0.5, float(retry_interval))
        self._opener = opener
        self.queue = collections.deque()
        self._wake = threading.Event()
        self.done = threading.Event()
        self._sor = None
        self._pending = []
        self._pending_since = None
        self._inflight = []
        self._my_spool_files = set()
        self._next_retry = 0.0
        self._warned = False
        self._actor = None
        self._controller = None
        self.appended = 0
        self.spooled = 0
        self.reached_ledger = False
        self.last_error = None

    # ------------------------------------------------------------------
    # producer side (callback thread, signal handlers, atexit)
    # ------------------------------------------------------------------
    def put(self, document):
        self.queue.append(("entry", document))
        if len(self.queue) >= self.batch_size:
            self._wake.set()

    def put_run_started(self, document):
        self.queue.append(("start", document))

    def request_flush(self):
        """Ask for a flush now; returns an Event set when it happened."""
        flushed = threading.Event()
        self.queue.append(("flush", flushed))
        self._wake.set()
        return flushed

    def finish(self, run_id, changed_hosts, timeout, wake=True):
        """Final flush, CMDB links and post-run hooks; waits at most ``timeout`` seconds.

        Returns True when the writer finished in time. Otherwise everything it
        still held is written to the spool from the calling thread, so the
        process may exit without losing an entry. A signal handler passes
        ``wake=False`` (``Event.set`` takes a lock the interrupted code may
        hold); the writer then notices within ``flush_interval``.
        """
        self.queue.append(("finish", {"run_id": run_id, "changed_hosts": sorted(changed_hosts or ())}))
        if wake:
            self._wake.set()
        if self.done.wait(timeout):
            return True
        self.emergency_spool()
        return False

    def emergency_spool(self):
        """Spool whatever has not reached the ledger, from any thread (duplicates are harmless)."""
        documents = list(self._inflight) + list(self._pending)
        while True:
            try:
                message = self.queue.popleft()
            except IndexError:
                break
            if message[0] == "entry":
                documents.append(message[1])
            elif message[0] == "start":
                documents.append(self._complete_run_started(message[1], slow_facts=False))
        for document in documents:
            document["actor"] = document.get("actor") or self._actor
        if not documents:
            return
        try:
            self.spool.write(documents)
            message = ("the ledger did not take this run's last %d entries within the flush timeout; they were"
                       " saved to the spool %s and will be replayed by the next run" % (
                           len(documents), self.spool.directory))
            if self._warned:
                # the user was already told that entries go to the spool: one warning per run
                self.display.vv(PREFIX + message)
            else:
                self._warn(message)
        except SpoolError as exc:
            self._warn("%d entries of this run are LOST: the ledger did not take them in time and %s" % (
                len(documents), exc))

    # ------------------------------------------------------------------
    # writer thread
    # ------------------------------------------------------------------
    def run(self):
        try:
            self._actor = runinfo.controller_user()
            self._controller = runinfo.controller_name()
            self._prepare()
            self._loop()
        except Exception as exc:  # pylint: disable=broad-except
            # never let a bug in the recorder break the playbook: keep what we hold
            self.last_error = exc
            self._warn("the recorder's writer stopped unexpectedly (%s: %s); saving what it held to the spool" % (
                type(exc).__name__, exc))
            self.emergency_spool()
        finally:
            self._close()
            self.done.set()

    def _loop(self):
        while True:
            self._wake.wait(self._next_timeout())
            self._wake.clear()
            while True:
                try:
                    kind, payload = self.queue.popleft()
                except IndexError:
                    break
                if kind == "entry":
                    self._add(payload)
                elif kind == "start":
                    self._add(self._complete_run_started(payload))
                elif kind == "flush":
                    self._flush(retry_spool=True)
                    payload.set()
                elif kind == "finish":
                    self._finish(payload)
                    return
            self._flush_if_due()

    def _next_timeout(self):
        """Seconds until the next flush or spool retry is due; at most ``flush_interval`` (new entries)."""
        deadlines = [time.monotonic() + self.flush_interval]
        if self._pending:
            deadlines.append(self._pending_since + self.flush_interval)
        if self._my_spool_files:
            deadlines.append(self._next_retry)
        return max(0.0, min(deadlines) - time.monotonic())

    def _add(self, document, flush=True):
        document["actor"] = document.get("actor") or self._actor
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(document)
        if flush and len(self._pending) >= self.batch_size:
            self._flush()

    def _flush_if_due(self):
        now = time.monotonic()
        if self._pending and now - self._pending_since >= self.flush_interval:
            self._flush()
        elif self._my_spool_files and now >= self._next_retry:
            self._flush(retry_spool=True)

    # -- the system of record ------------------------------------------
    def _open(self):
        if self._sor is None:
            self._sor = self._opener(self.config)
        return self._sor

    def _close(self):
        if self._sor is not None:
            try:
                self._sor.close()
            except Exception:  # pylint: disable=broad-except
                pass
            self._sor = None

    def _append_entries(self, entries):
        try:
            return self._open().append(entries)
        except Exception:
            # a connection that failed may be unusable: reopen on the next attempt
            self._close()
            raise

    def _append_documents(self, documents):
        return self._append_entries([Entry.from_dict(document) for document in documents])

    def _replay_spool(self):
        """Replay the spool in order; True when none of this run's entries remain in it."""
        self._next_retry = time.monotonic() + self.retry_interval
        ended_runs = []

        def append_and_note_ended_runs(entries):
            appended = self._append_entries(entries)
            ended_runs.extend(entry.subject for entry in appended or () if entry.kind in RUN_END_KINDS)
            return appended

        try:
            _batches, _entries, problems = self.spool.replay(append_and_note_ended_runs, Entry.from_dict)
        except Exception as exc:  # pylint: disable=broad-except
            self.last_error = exc
        else:
            for problem in problems:
                self._warn(problem, always=True)
        self._my_spool_files = set(path for path in self._my_spool_files if os.path.exists(path))
        own_run = os.environ.get("CHANGEOPS_RUN_ID")
        for run_id in ended_runs:
            if run_id != own_run:  # this run links its own hosts and runs its hooks in _finish
                self._link_hosts_of_ended_run(run_id)
                self._run_hooks(run_id, replayed=True)
        return not self._my_spool_files

    def _link_hosts_of_ended_run(self, run_id):
        """CMDB links of a run whose own writer could not make them: its end reached the ledger only through
        the spool, or it was killed. Queued, not flushed: this may run inside a flush."""
        try:
            results = self._open().get_task_results(run_id, changed_only=True)
        except Exception as exc:  # pylint: disable=broad-except
            self._warn("could not link the hosts changed by run %s to configuration items: %s"
                       % (run_id, exc), always=True)
            return
        self._link_changed_cis(run_id, set(r["host"] for r in results if is_host_change(r)), flush=False)

    def _prepare(self):
        """Replay what earlier runs left in the spool, then close runs whose process died."""
        try:
            self._replay_spool()
            self._mark_dead_runs_interrupted()
            self._flush()
        except Exception as exc:  # pylint: disable=broad-except
            # not fatal: the first flush will find out and spool if the ledger is really unavailable
            self.last_error = exc
            self._close()

    def _mark_dead_runs_interrupted(self):
        sor = self._open()
        own_run = os.environ.get("CHANGEOPS_RUN_ID")
        stale = []
        for event in sor.find_change_events(status="running", controller=self._controller):
            if event.get("run_id") == own_run:
                continue
            if processes.run_process_is_gone(event.get("pid"), event.get("pid_identity")):
                stale.append(event)
        if not stale:
            return
        now = utc_now()
        self._append_entries([Entry(
            kind="run.interrupted", subject=event["run_id"], actor=self._actor,
            data={"run_id": event["run_id"], "ended_at": now,
                  "reason": "process %s on %s ended without finishing the run (killed or crashed); detected"
                            " by a later run" % (event.get("pid"), self._controller),
                  "detected_by_run": own_run}) for event in stale])
        for event in stale:
            self._link_hosts_of_ended_run(event["run_id"])

    def _flush(self, retry_spool=False):
        """Append the pending batch, or spool it; never raises."""
        if self._my_spool_files and (retry_spool or time.monotonic() >= self._next_retry):
            self._replay_spool()
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._inflight = batch
        try:
            if self._my_spool_files:
                # keep the run's order: earlier entries still wait in the spool
                self._spool(batch)
                return
            try:
                self._append_documents(batch)
                self.appended += len(batch)
            except Exception as exc:  # pylint: disable=broad-except
                self.last_error = exc
                self._spool(batch)
                self._warn("cannot write to the system of record (%s); this run's entries are kept in the spool %s"
                           " and will be replayed automatically" % (exc, self.spool.directory))
        finally:
            self._inflight = []

    def _spool(self, batch):
        try:
            path = self.spool.write(batch)
        except SpoolError as exc:
            # neither the ledger nor the spool can be written: keep the batch in memory and retry
            self._pending = batch + self._pending
            self._pending_since = time.monotonic()
            self._warn("cannot write to the system of record nor to the spool (%s); retrying" % exc)
            return
        self.spooled += len(batch)
        self._my_spool_files.add(path)
        if not self._next_retry or self._next_retry < time.monotonic():
            self._next_retry = time.monotonic() + self.retry_interval

    def _finish(self, info):
        self._flush(retry_spool=True)
        if self._pending or self._my_spool_files:
            return
        self.reached_ledger = True
        self._link_changed_cis(info["run_id"], info["changed_hosts"])
        if self._pending or self._my_spool_files:
            return
        self._run_hooks(info["run_id"])

    def _run_hooks(self, run_id, replayed=False):
        for problem in hooks.discover_post_run_hooks():
            self._warn(problem, always=True)
        if not hooks.post_run_hooks(replayed):
            return
        try:
            sor = self._open()
        except Exception as exc:  # pylint: disable=broad-except
            self._warn("post-run hooks skipped for run %s: cannot open the system of record: %s" % (run_id, exc),
                       always=True)
            return
        hooks.run_post_run_hooks(sor, run_id, self.options, self.display, replayed=replayed)

    def _link_changed_cis(self, run_id, changed_hosts, flush=True):
        """``ci.changed_by_run`` for each changed host that is a configuration item."""
        if not changed_hosts:
            return
        try:
            cis = self._open().find_cis(names=list(changed_hosts))
        except Exception as exc:  # pylint: disable=broad-except
            self._warn("could not link changed hosts to configuration items: %s" % exc, always=True)
            return
        for ci in cis:
            self._add(entry_document("ci.changed_by_run", ci["ci_id"], {
                "ci_id": ci["ci_id"], "run_id": run_id, "host": ci["name"]}), flush=False)
        if flush:
            self._flush()

    # -- run.started ---------------------------------------------------------
    def _complete_run_started(self, document, slow_facts=True):
        """Add what needs a syscall, a file or a subprocess: user, controller, process identity, git."""
        data = document["data"]
        data["user"] = self._actor or runinfo.controller_user()
        data["controller"] = self._controller or runinfo.controller_name()
        if slow_facts:
            data["pid_identity"] = processes.process_identity(data["pid"])
            repositories = []
            seen_roots = set()
            for playbook in data.get("playbooks") or []:
                state = runinfo.git_state(playbook)
                if state and state["root"] not in seen_roots:
                    seen_roots.add(state["root"])
                    repositories.append(state)
            data["git"] = repositories[0] if repositories else None
            if len(repositories) > 1:
                data["git_repositories"] = repositories
        else:
            data.setdefault("pid_identity", None)
            data.setdefault("git", None)
        document["actor"] = data["user"]
        return document

    # -- reporting --------------------------------------------------------------
    def _warn(self, message, always=False):
        """One warning per run about the ledger being unavailable; ``always`` for distinct problems."""
        if not always:
            if self._warned:
                return
            self._warned = True
        try:
            self.display.warning(PREFIX + message)
        except Exception:  # pylint: disable=broad-except
            pass


def is_record_only_action(action):
    return bool(action) and str(action).startswith(RECORD_ONLY_ACTION_PREFIX)


def is_host_change(result):
    """Whether a ``run.result`` changed its host: a changed task result (a loop counts once, by its own
    result, not per item) of an action that changes hosts rather than only writing to the record."""
    return (not result.get("item") and result.get("status") == "changed"
            and not is_record_only_action((result.get("task") or {}).get("action")))
