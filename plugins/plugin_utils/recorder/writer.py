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

An append that waits (another writer holds the ledger's lock, a slow network)
must not leave results only in memory for the whole busy timeout: once it has
waited ``flush_interval``, a watchdog thread writes a safety copy of what the
writer holds to the spool, and again every ``flush_interval`` while it waits.
The copy is removed when the append succeeds; after ``kill -9`` the next run
replays it (entry ids make that idempotent). Another run never replays a copy
while the process that wrote it lives (see ``spool``): that process may still
append it itself.

At the end of the run the writer looks up the CMDB links first (a few bulk
queries, see ``links``) and then appends the run's end and its links in one
batch. The append that writes a run's end, the run's own or a replay's, runs
its post-run hooks; links have one id per run and CI. So whatever the timing,
a run gets its links and its hooks once.

"Cannot write now" (``BackendUnavailable``...) and "will not take this"
(a projector's ``ConflictError``/``ValidationError``) are told apart: the first
keeps the batch for a retry, the second appends the batch entry by entry and
sets the refused entries aside in ``<batch>.rejected`` with a warning, so one
refused entry never holds back a run's results.

At start it also marks as interrupted the runs of this controller that are
still ``running`` although their process is gone (``kill -9``, power loss).

Durability: an entry is *durable* once it is in the ledger or in a spool
file. ``wait_durable`` (used with ``on_record_failure: fail``) blocks the
callback until every entry put so far is, and says why when none of the
places takes them. Entries that are durable nowhere when the run ends are
*lost*: the writer then warns with their number, kinds and run (every time,
never folded into the one-warning-per-run rule) and leaves a ``run.incomplete``
marker wherever a small file still fits (``SpoolChain.write_marker``); the run
that replays it records the marker, and the run's change event says what is
missing.

A ledger whose storage is damaged (``LedgerCorrupted``: a file with random
bytes inside, a page PostgreSQL cannot read) is reported once per run with
what to do, and is not written again by this run: its entries go to the
spool, to be replayed once the ledger has been restored.
"""

from __future__ import annotations

import hashlib
import os
import collections
import threading
import time
import uuid

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.errors import (
    BackendUnavailable,
    ConfigurationError,
    LedgerCorrupted,
    MissingDependency,
)
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import RUN_END_KINDS, Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import hooks, links, processes, runinfo
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool import SpoolError

PREFIX = "changeops.itsm.change_recorder: "

#: errors meaning the system of record cannot be written now: the entries are kept and retried
UNAVAILABLE_ERRORS = (BackendUnavailable, ConfigurationError, MissingDependency, OSError)


def is_refusal(exc):
    """True when the system of record refused the entries (retrying the same entries cannot help)."""
    return not isinstance(exc, UNAVAILABLE_ERRORS)


def run_of(document):
    """The run an entry document belongs to (its ``data.run_id``, else its subject)."""
    data = document.get("data")
    return (data.get("run_id") if isinstance(data, dict) else None) or document.get("subject")


class _Barrier(threading.Event):
    """``wait_durable``'s marker in the queue: set when every entry before it is durable, or not (``failure``)."""

    def __init__(self, puts):
        super(_Barrier, self).__init__()
        self.puts = puts
        self.failure = None

    def settle(self, failure=None):
        if not self.is_set():
            self.failure = failure
            self.set()


def entry_document(kind, subject, data, at=None, entry_id=None):
    """A queued entry: what ``ledger.Entry`` needs, as plain data (ids make replays idempotent; a derived
    entry that any run may make, a CMDB link, passes its own deterministic ``entry_id``)."""
    return {"id": entry_id or uuid.uuid4().hex, "at": at or utc_now(), "kind": kind, "subject": subject,
            "actor": None, "data": data}


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
        # _state guards what the writer holds (_pending, _inflight, _processing) so emergency_spool and the
        # watchdog never see an entry in neither place; it also carries the watchdog's wake-ups
        self._state = threading.Condition(threading.RLock())
        self._pending = []
        self._pending_since = None
        self._inflight = []
        self._processing = None
        # the run's end while the writer makes its CMDB links: never in the ledger before them, never
        # out of what emergency_spool saves
        self._finishing = None
        self._append_started = None
        self._safety_files = []
        self._safety_ids = set()
        self._watchdog = None
        self._stopping = False
        self.safety_copies = 0
        self._my_spool_files = set()
        self._next_retry = 0.0
        self._warned = False
        self._actor = None
        self._controller = None
        #: the run this writer records (from its run.started, or finish)
        self.run_id = None
        # runs whose end this writer's own appends wrote: only the append that wrote a run's end runs
        # its post-run hooks, so a run and a run replaying its spooled end never both do
        self._ended_here = set()
        self.appended = 0
        self.spooled = 0
        self.reached_ledger = False
        self.last_error = None
        #: why what the writer holds is durable nowhere (ledger and every spool location refused), or None
        self.durability_failure = None
        #: entries that were durable nowhere when the run ended, by run id
        self.lost = {}
        # entries put so far, and how many of them a barrier found durable (wait_durable's shortcut)
        self._puts = 0
        self._durable_puts = 0
        self._barrier = None
        self._storage_checked = False
        self._end_saved = False
        self._corruption_reported = False
        #: LedgerCorrupted met this run: the ledger is not written again by this process
        self.corrupted = None
        # the post-run hook modules, imported here on the callback's main thread before any worker is forked
        # (their append hooks follow the ledger during the run); problems are told with the post-run hooks
        self._hook_problems = hooks.discover_post_run_hooks()

    # ------------------------------------------------------------------
    # producer side (callback thread, signal handlers, atexit)
    # ------------------------------------------------------------------
    def put(self, document):
        self._puts += 1
        self.queue.append(("entry", document))
        if len(self.queue) >= self.batch_size:
            self._wake.set()

    def put_run_started(self, document):
        self._puts += 1
        self.run_id = self.run_id or document.get("subject")
        self.queue.append(("start", document))

    def wait_durable(self, timeout):
        """Block until every entry put so far is in the ledger or a spool file; None then, else the reason.

        A safety copy in the spool counts: an append that waits for the ledger's lock does not hold the
        caller for longer than ``flush_interval`` when the spool takes the copy.
        """
        puts = self._puts
        if puts == self._durable_puts:
            return None
        if self.done.is_set():
            return self.durability_failure or "the recorder's writer has stopped (%s)" % (
                self.last_error or "end of the run")
        barrier = _Barrier(puts)
        self.queue.append(("barrier", barrier))
        self._wake.set()
        if not barrier.wait(timeout):
            return "the entries of this run did not reach the system of record nor a spool file within %s s" % timeout
        if barrier.failure is None:
            self._durable_puts = max(self._durable_puts, puts)
        return barrier.failure

    def request_flush(self):
        """Ask for a flush now; returns an Event set when it happened."""
        flushed = threading.Event()
        self.queue.append(("flush", flushed))
        self._wake.set()
        return flushed

    def finish(self, run_id, changed_hosts, timeout, wake=True, end=None, context=None):
        """The run's end, its CMDB links, final flush and post-run hooks; waits at most ``timeout`` seconds.

        ``end``: the run's ``run.finished``/``run.interrupted`` document. It reaches the ledger in one
        batch with the links, so a deadline that passes while the links are looked up leaves it in
        the spool, and the run that replays it makes them. ``changed_hosts``: the hosts this run
        really changed, as names or ``{host: {"ci_id": ...}}`` (register_host's answers);
        ``context``: a ``links.RunContext`` to read their facts and the inventory from, here in the
        writer thread, while the callback waits.

        Returns True when the writer finished in time. Otherwise everything it
        still held is written to the spool from the calling thread, so the
        process may exit without losing an entry. A signal handler passes
        ``wake=False`` (``Event.set`` takes a lock the interrupted code may
        hold); the writer then notices within ``flush_interval``.
        """
        if not isinstance(changed_hosts, dict):
            changed_hosts = dict((host, {}) for host in changed_hosts or ())
        self.run_id = self.run_id or run_id
        self.queue.append(("finish", {"run_id": run_id, "changed_hosts": changed_hosts, "end": end,
                                      "context": context}))
        if wake:
            self._wake.set()
        if self.done.wait(timeout):
            return True
        self.emergency_spool()
        return False

    def emergency_spool(self):
        """Spool whatever has not reached the ledger, from any thread (duplicates are harmless).

        What no spool location takes is lost: reported, and a marker left where one still fits (``_lose``).
        Done once: the timed-out ``finish`` and the writer's own end may both ask.
        """
        with self._state:
            if self._end_saved:
                return
            self._end_saved = True
        documents = self._held_documents(drain=True)
        if not documents:
            return
        try:
            self.spool.write(documents)
            message = ("the system of record did not take this run's last %d entries by the end of the run; they"
                       " were saved to the spool %s and will be replayed by the next run" % (
                           len(documents), self.spool.directory))
            if self._warned:
                # the user was already told that entries go to the spool: one warning per run
                self.display.vv(PREFIX + message)
            else:
                self._warn(message)
        except SpoolError as exc:
            self._lose(documents, "the system of record did not take them (%s) and no spool location did (%s)" % (
                self.last_error or "no answer by the end of the run", exc))

    def _lose(self, documents, reason):
        """``documents`` are durable nowhere and the run ends: say so every time, and leave a marker per run.

        The marker is one ``run.incomplete`` entry in spool format (id derived from the run and the lost
        entries, so writing it twice records it once), written to the first spool location that still
        takes a small file, else to the temporary directory. The next run that replays it appends it.
        """
        by_run = collections.OrderedDict()
        for document in documents:
            by_run.setdefault(run_of(document), []).append(document)
        for run_id, lost in by_run.items():
            self.lost[run_id] = self.lost.get(run_id, 0) + len(lost)
            marker = self._marker_document(run_id, lost, reason)
            try:
                where = "a marker in %s tells the next run to record run %s as incomplete" % (
                    self.spool.write_marker([marker]), run_id)
            except SpoolError as exc:
                if any(document["kind"] == "run.started" for document in lost):
                    where = ("no marker could be left either (%s): nothing of run %s reached the system of record"
                             % (exc, run_id))
                else:
                    where = ("no marker could be left either (%s); the next run on this controller marks run %s"
                             " interrupted if its end is among the lost entries" % (exc, run_id))
            self._warn("%d entries of run %s are LOST (%s): %s; %s" % (
                len(lost), run_id, describe_kinds(lost), reason, where), always=True)

    def _marker_document(self, run_id, lost, reason):
        kinds = collections.Counter(document["kind"] for document in lost)
        ids = hashlib.sha256("\n".join(sorted(document["id"] for document in lost)).encode("utf-8")).hexdigest()
        data = {"run_id": run_id, "lost_entries": len(lost), "lost_kinds": dict(sorted(kinds.items())),
                "reason": reason, "noted_at": utc_now(),
                "lost_from": min(document["at"] for document in lost),
                "run_ended": any(document["kind"] in RUN_END_KINDS for document in lost)}
        ends = [document for document in lost if document["kind"] in RUN_END_KINDS and document["subject"] == run_id]
        if ends:
            # how the run ended (Ansible's own stats included): the marker may be all that is left of it
            data["end"] = dict(ends[-1]["data"], kind=ends[-1]["kind"])
        started = [document for document in lost if document["kind"] == "run.started"]
        if started:
            # nothing else tells the record who ran it, where and what
            run = self._complete_run_started(started[0], slow_facts=False)["data"]
            data["run"] = {key: run.get(key) for key in (
                "started_at", "user", "controller", "pid", "playbooks", "kind", "adhoc", "check_mode")
                if run.get(key) is not None}
        return entry_document("run.incomplete", run_id, data, entry_id="incomplete-%s" % ids[:32])

    def _report_corruption(self, exc):
        """Once per run: the ledger's storage is damaged; what happens to this run's entries and what to do."""
        self.corrupted = exc
        if not self._corruption_reported:
            self._corruption_reported = True
            self._warned = True  # no "cannot write" warning on top of this one
            self._warn("%s. This run does not write to it again: its entries are kept in the spool (%s) and the"
                       " first run after the ledger is restored replays them." % (
                           str(exc).rstrip("."), ", ".join(self.spool.directories)), always=True)

    def _held_documents(self, drain=False):
        """Copies of every entry not yet in the ledger, in order: in flight, pending, being prepared, queued.

        ``drain`` also takes the queued ones out of the queue (the writer will not get to them).
        """
        with self._state:
            held = list(self._inflight) + list(self._pending)
            if self._processing is not None:
                held.append(self._complete_run_started(self._processing, slow_facts=False))
            if self._finishing is not None:
                held.append(self._finishing)
            if drain:
                queued = []
                while True:
                    try:
                        queued.append(self.queue.popleft())
                    except IndexError:
                        break
            else:
                # a deque is copied in one step under the GIL: a concurrent put cannot break it
                queued = list(self.queue)
            for kind, payload in queued:
                if kind == "entry":
                    held.append(payload)
                elif kind == "start":
                    held.append(self._complete_run_started(payload, slow_facts=False))
                elif kind == "finish" and payload.get("end") is not None:
                    held.append(payload["end"])
        return [dict(document, actor=document.get("actor") or self._actor) for document in held]

    # ------------------------------------------------------------------
    # writer thread
    # ------------------------------------------------------------------
    def run(self):
        try:
            self._actor = runinfo.controller_user()
            self._controller = runinfo.controller_name()
            self._start_watchdog()
            self._prepare()
            self._loop()
        except Exception as exc:  # pylint: disable=broad-except
            # never let a bug in the recorder break the playbook: keep what we hold
            self.last_error = exc
            self._warn("the recorder's writer stopped unexpectedly (%s: %s); saving what it held to the spool" % (
                type(exc).__name__, exc))
            self.emergency_spool()
        finally:
            with self._state:
                self._stopping = True
                self._state.notify_all()
            if self._pending:
                # the end of the run found no durable place for these: one last try, then they are lost
                self.emergency_spool()
            self._close()
            self.done.set()

    def _loop(self):
        while True:
            self._wake.wait(self._next_timeout())
            self._wake.clear()
            while True:
                with self._state:
                    # taken and made pending in one step: never in neither place
                    try:
                        kind, payload = self.queue.popleft()
                    except IndexError:
                        break
                    if kind == "entry":
                        self._add(payload, flush=False)
                    elif kind == "start":
                        self._processing = payload
                if kind == "entry":
                    if len(self._pending) >= self.batch_size:
                        self._flush()
                elif kind == "start":
                    completed = self._complete_run_started(payload)
                    with self._state:
                        self._processing = None
                        self._add(completed, flush=False)
                elif kind == "flush":
                    self._flush(retry_spool=True)
                    payload.set()
                elif kind == "barrier":
                    with self._state:
                        self._barrier = payload
                    self._flush()
                    with self._state:
                        self._barrier = None
                    payload.settle(self.durability_failure if self._pending else None)
                elif kind == "finish":
                    with self._state:
                        self._finishing = payload.get("end")
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
        with self._state:
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
        if self.corrupted is not None:
            raise self.corrupted
        if self._sor is None:
            sor = self._opener(self.config)
            if not self._storage_checked:
                # once per run, before its first write: damage a write would not touch is found here too
                try:
                    check = getattr(sor, "check_storage", None)
                    if check is not None:
                        check()
                except LedgerCorrupted as exc:
                    self.corrupted = exc
                    try:
                        sor.close()
                    except Exception:  # pylint: disable=broad-except
                        pass
                    raise
                self._storage_checked = True
            self._sor = sor
        return self._sor

    def _close(self):
        if self._sor is not None:
            try:
                self._sor.close()
            except Exception:  # pylint: disable=broad-except
                pass
            self._sor = None

    def _append_entries(self, entries):
        """``sor.append`` watched by the watchdog: a wait longer than ``flush_interval`` gets a safety copy."""
        with self._state:
            self._append_started = time.monotonic()
            self._state.notify_all()
        answered = False
        try:
            appended = self._open().append(entries)
            answered = True
            if appended:
                # in the ledger now: whatever follows it during the run (the outbox's feeder) is told
                hooks.run_append_hooks(self, appended)
            return appended
        except Exception as exc:
            answered = is_refusal(exc)
            if not answered:
                # a connection that failed may be unusable: reopen on the next attempt
                self._close()
            raise
        finally:
            with self._state:
                self._append_started = None
                safety_files, self._safety_files = self._safety_files, []
                self._safety_ids = set()
            if answered:
                # the ledger took the entries or refused them (the caller sets those aside): what the copies
                # held is in the ledger now or still held by this writer
                for path in safety_files:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
            else:
                # keep them: replayed before anything this run spools later, so the order holds
                self._my_spool_files.update(safety_files)

    def _append_or_refuse(self, entries):
        """Append ``entries``; ``(appended, refused)`` with ``refused`` a list of ``(entry, error)``.

        When the system of record refuses the batch, its entries are appended one by one, in order, so only
        the refused ones are left out. Raises when it is unavailable (nothing is refused then).
        """
        try:
            return list(self._append_entries(entries) or ()), []
        except Exception as exc:  # pylint: disable=broad-except
            if not is_refusal(exc):
                raise
            if len(entries) == 1:
                return [], [(entries[0], exc)]
        appended, refused = [], []
        for entry in entries:
            try:
                appended.extend(self._append_entries([entry]) or ())
            except Exception as exc:  # pylint: disable=broad-except
                if not is_refusal(exc):
                    raise
                refused.append((entry, exc))
        return appended, refused

    def _append_documents(self, documents):
        """Append a batch of documents; refused ones are set aside with a warning. Raises when unavailable."""
        entries = [Entry.from_dict(document) for document in documents]
        appended, refused = self._append_or_refuse(entries)
        self._ended_here.update(entry.subject for entry in appended if entry.kind in RUN_END_KINDS)
        if refused:
            refused_ids = set(entry.id for entry, _exc in refused)
            self._set_aside([document for document in documents if document["id"] in refused_ids], refused)
        return appended

    def _set_aside(self, documents, refused):
        first = refused[0][1]
        reason = "%s: %s" % (type(first).__name__, first)
        try:
            path = self.spool.set_aside(documents)
        except SpoolError as exc:
            self._warn("the system of record refused %d entries of this run (%s) and they could not be set aside"
                       " either (%s); they are LOST" % (len(documents), reason, exc), always=True)
            return
        self._warn("the system of record refused %d %s (first: %s); set aside in %s, the other entries were recorded"
                   % (len(documents), describe_kinds(entry for entry, _exc in refused), reason, path), always=True)

    # -- the watchdog ---------------------------------------------------------
    def _start_watchdog(self):
        self._watchdog = threading.Thread(target=self._watch_appends, name="changeops-recorder-watchdog",
                                          daemon=True)
        self._watchdog.start()

    def _watch_appends(self):
        """Safety copies of what the writer holds while an append waits (its own thread: the writer is blocked)."""
        try:
            with self._state:
                while not self._stopping:
                    if self._append_started is None:
                        self._state.wait()
                        continue
                    due = self._append_started + self.flush_interval - time.monotonic()
                    if due > 0:
                        self._state.wait(due)
                        continue
                    # still waiting: copy what came in since the last copy, then look again in flush_interval
                    self._append_started = time.monotonic()
                    self._write_safety_copy()
        except Exception as exc:  # pylint: disable=broad-except
            self.last_error = exc  # the writer itself goes on; it only loses its safety copies

    def _write_safety_copy(self):
        """Called with ``_state`` held, so the writer cannot take or drop entries meanwhile."""
        documents = [document for document in self._held_documents() if document["id"] not in self._safety_ids]
        barriers = [payload for kind, payload in list(self.queue) if kind == "barrier"]
        if self._barrier is not None:
            barriers.append(self._barrier)
        if not documents:
            for barrier in barriers:
                barrier.settle()
            return
        try:
            path = self.spool.write(documents)
        except SpoolError as exc:
            self.durability_failure = ("the system of record has not taken this run's entries for %.1f s and no"
                                       " spool location takes a copy (%s)" % (self.flush_interval, exc))
            for barrier in barriers:
                barrier.settle(self.durability_failure)
            self._warn("the ledger is slow to take this run's entries and the spool cannot hold a copy (%s)" % exc)
            return
        for barrier in barriers:
            barrier.settle()
        self._safety_files.append(path)
        self._safety_ids.update(document["id"] for document in documents)
        self.safety_copies += 1
        try:
            self.display.vv(PREFIX + "the ledger is slow to take entries; %d saved to the spool meanwhile" % len(
                documents))
        except Exception:  # pylint: disable=broad-except
            pass

    def _replay_spool(self):
        """Replay the spool in order; True when none of this run's entries remain in it."""
        self._next_retry = time.monotonic() + self.retry_interval
        ended_runs = []
        linked_runs = set()

        def append_and_note_ended_runs(entries):
            appended, refused = self._append_or_refuse(entries)
            ended_runs.extend(entry for entry in appended if entry.kind in RUN_END_KINDS)
            # the links a run made itself travel in one batch with its end (see finish)
            linked_runs.update((entry.data or {}).get("run_id") for entry in entries if entry.kind == "ci.changed_by_run")
            return refused

        try:
            _batches, _entries, problems = self.spool.replay(append_and_note_ended_runs, Entry.from_dict)
        except LedgerCorrupted as exc:
            self.last_error = exc
            self._report_corruption(exc)
        except Exception as exc:  # pylint: disable=broad-except
            # unavailable: the files stay for the next attempt; said once per run, like a failed flush
            self.last_error = exc
            self._warn("cannot replay the spool %s into the system of record (%s); it is kept and retried"
                       % (self.spool.directory, exc))
        else:
            for problem in problems:
                self._warn(problem, always=True)
        self._my_spool_files = set(path for path in self._my_spool_files if os.path.exists(path))
        own_run = self.run_id or os.environ.get("CHANGEOPS_RUN_ID")
        for entry in ended_runs:
            if entry.subject == own_run:
                self._ended_here.add(own_run)  # this run links its own hosts and runs its hooks in _finish
                continue
            if entry.subject not in linked_runs:
                self._link_hosts_of_ended_run(entry.subject)
            if "detected_by_run" not in (entry.data or {}):
                # a run found dead never recorded its end: a person decides what its change request needs
                self._run_hooks(entry.subject, replayed=True)
        return not self._my_spool_files

    def _link_hosts_of_ended_run(self, run_id):
        """CMDB links of a run whose own writer could not make them: its end reached the ledger only through
        the spool, or it was killed. Queued, not flushed: this may run inside a flush."""
        try:
            sor = self._open()
            results = sor.get_task_results(run_id, changed_only=True)
            event = sor.get_change_event(run_id) or {}
            run_check_mode = bool(event.get("check_mode", event.get("dry_run")))
            hosts = dict((result["host"], {}) for result in results if links.changes_host(result, run_check_mode))
            for result in self._register_results(sor, run_id, hosts):
                hosts[result["host"]]["ci_id"] = result["result"]["ci_id"]
            documents = self._link_documents(sor, run_id, hosts)
        except Exception as exc:  # pylint: disable=broad-except
            self._warn("could not link the hosts changed by run %s to configuration items: %s"
                       % (run_id, exc), always=True)
            return
        for document in documents:
            self._add(document, flush=False)

    @staticmethod
    def _register_results(sor, run_id, hosts):
        """register_host results of ``hosts`` in a run: they name each host's CI."""
        if not hosts:
            return []
        return [result for result in sor.get_task_results(run_id)
                if result.get("host") in hosts and links.is_register_host((result.get("task") or {}).get("action"))
                and isinstance(result.get("result"), dict) and result["result"].get("ci_id")]

    @staticmethod
    def _link_documents(sor, run_id, hosts, context=None):
        """``ci.changed_by_run`` documents for ``hosts`` (see ``links.resolve_host_cis``), one per CI."""
        if not hosts:
            return []
        if context is not None:
            found = links.resolve_host_cis(sor, hosts, facts_of=context.facts, inventory_names=context.inventory_host_names(),
                                           rules=context.rules)
        else:
            found = links.resolve_host_cis(sor, hosts)
        documents, seen = [], set()
        for host in sorted(found):
            ci_id = found[host]
            if ci_id in seen:
                continue  # two inventory names of one machine: one link per run and CI
            seen.add(ci_id)
            documents.append(entry_document("ci.changed_by_run", ci_id, {"ci_id": ci_id, "run_id": run_id, "host": host},
                                            entry_id=links.link_id(run_id, ci_id)))
        return documents

    def _prepare(self):
        """Replay what earlier runs left in the spool, then close runs whose process died."""
        try:
            self._replay_spool()
            self._mark_dead_runs_interrupted()
            self._flush()
        except LedgerCorrupted as exc:
            self.last_error = exc
            self._report_corruption(exc)
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
        # The system of record skips an interruption "detected_by_run" when, inside its write transaction, the
        # run is no longer running: its real end may have been replayed from a spool since the query above.
        appended = self._append_entries([Entry(
            kind="run.interrupted", subject=event["run_id"], actor=self._actor,
            data={"run_id": event["run_id"], "ended_at": now,
                  "reason": "process %s on %s ended without finishing the run (killed or crashed); detected"
                            " by a later run" % (event.get("pid"), self._controller),
                  "detected_by_run": own_run}) for event in stale])
        for entry in appended or ():
            self._link_hosts_of_ended_run(entry.subject)

    def _flush(self, retry_spool=False):
        """Append the pending batch, or spool it; never raises."""
        if self._my_spool_files and (retry_spool or time.monotonic() >= self._next_retry):
            self._replay_spool()
        if not self._pending:
            return
        with self._state:
            # in flight before it leaves pending: emergency_spool must always find it in one of them
            batch = self._inflight = self._pending
            self._pending = []
        try:
            if self._my_spool_files or self.corrupted is not None:
                # keep the run's order: earlier entries still wait in the spool (or the ledger is damaged)
                self._spool(batch)
                return
            try:
                self._append_documents(batch)
                self.appended += len(batch)
                self.durability_failure = None
            except Exception as exc:  # pylint: disable=broad-except
                self.last_error = exc
                spooled = self._spool(batch)
                if isinstance(exc, LedgerCorrupted):
                    self._report_corruption(exc)
                elif spooled:
                    self._warn("cannot write to the system of record (%s); this run's entries are kept in the spool"
                               " %s and will be replayed automatically" % (exc, self.spool.directory))
        finally:
            with self._state:
                self._inflight = []

    def _spool(self, batch):
        """Write ``batch`` to the spool; True when it is there. Otherwise it is held in memory and retried."""
        try:
            path = self.spool.write(batch)
        except SpoolError as exc:
            # neither the ledger nor any spool location can be written: keep the batch in memory and retry
            with self._state:
                self._pending = batch + self._pending
                self._pending_since = time.monotonic()
            self.durability_failure = "cannot write to the system of record (%s) nor to any spool location (%s)" % (
                self.last_error, exc)
            self._warn("%s; the entries are held in memory and retried until the end of the run"
                       % self.durability_failure)
            return False
        self.durability_failure = None
        self.spooled += len(batch)
        self._my_spool_files.add(path)
        if not self._next_retry or self._next_retry < time.monotonic():
            self._next_retry = time.monotonic() + self.retry_interval
        return True

    def _finish(self, info):
        run_id = info["run_id"]
        documents, unavailable = self._links_of(info)
        with self._state:
            # end and links become pending in one step: in one batch, in the ledger or in the spool
            if info.get("end") is not None:
                self._add(info["end"], flush=False)
            for document in documents:
                self._add(document, flush=False)
            self._finishing = None
        self._flush(retry_spool=True)
        if self._pending or self._my_spool_files:
            return
        if unavailable:
            # the ledger came back for the end: this run's links are its own to make, not a replay's
            for document in self._links_of(info, warn_unavailable=True)[0]:
                self._add(document, flush=False)
            self._flush()
            if self._pending or self._my_spool_files:
                return
        self.reached_ledger = True
        if run_id in self._ended_here:
            self._run_hooks(run_id)

    def _links_of(self, info, warn_unavailable=False):
        """``(link documents, unavailable)`` for the hosts the finishing run changed."""
        if not info["changed_hosts"]:
            return [], False
        try:
            return self._link_documents(self._open(), info["run_id"], info["changed_hosts"], info.get("context")), False
        except Exception as exc:  # pylint: disable=broad-except
            self.last_error = exc
            if is_refusal(exc) or warn_unavailable:
                self._warn("could not link changed hosts to configuration items: %s" % exc, always=True)
                return [], False
            # the flush meets it too and says so once; the end then goes to the spool, and the run
            # replaying it makes the links
            self._close()
            return [], True

    def _run_hooks(self, run_id, replayed=False):
        problems, self._hook_problems = self._hook_problems + hooks.discover_post_run_hooks(), []
        for problem in problems:
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

    # -- run.started ---------------------------------------------------------
    def _complete_run_started(self, document, slow_facts=True):
        """Add what needs a syscall, a file or a subprocess: user, controller, process identity, git.

        Returns a new document: the queued one may be copied by another thread (emergency_spool) meanwhile.
        """
        document = dict(document)
        data = document["data"] = dict(document["data"])
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


def describe_kinds(entries):
    """``"2 run.result, 1 run.finished"`` of entries or entry documents."""
    counts = collections.Counter(entry["kind"] if isinstance(entry, dict) else entry.kind for entry in entries)
    return ", ".join("%d %s" % (count, kind) for kind, count in sorted(counts.items()))
