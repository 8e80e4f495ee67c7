# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deliver an outbox while the run goes on: the recorder's background feeder of an external system.

The ledger is the outbox (docs/architecture.md): an external system is fed the entries after its
cursor, in ledger order, idempotently. :class:`OutboxFeeder` does that *during* a run, in a daemon
thread of its own with its own connection to the system of record, so the playbook never waits for
it: the writer nudges it after each append (an append hook, see ``hooks.py``), and it also looks
every ``interval`` seconds (entries other processes wrote: ``register_host``'s CIs). Before it takes
the drain lease (a write) it asks the outbox, reading only, whether anything is deliverable, so an
idle feeder costs the ledger one read per nudge.

Failures never reach the playbook: a drain that stops (unreachable, 401/403, a 429 beyond the
budget) leaves its entries in the outbox, and the feeder tries again after a back-off that doubles
up to ``max_backoff`` (never before a 429's retry time, which the outbox keeps).

At the end of the run the post-run hook calls :meth:`finish` with the end-of-run budget: the drain in
progress is cut to that deadline (a sleep that would end after it, a 429's ``Retry-After`` included,
is given up at once and the request after it is not sent), then one last drain delivers what is left,
partial IRE batches and the run's end included, within what remains. So a 429 storm or a dead instance holds the run up by the
budget at most, and whatever is not delivered by then waits in the outbox for the next run or
``servicenow_sync``: nothing is lost.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import parse_time

#: seconds between looks at the outbox without a nudge
INTERVAL = 2.0
#: first wait after a drain that stopped; doubles up to MAX_BACKOFF
BACKOFF = 5.0
MAX_BACKOFF = 60.0


class OutboxFeeder(threading.Thread):
    """``open_sor()`` opens this thread's system of record; ``make_outbox(sor, client_factory)`` builds the
    outbox (its ``drain`` builds clients with ``client_factory``, so their deadline and sleeps can be cut);
    ``drain_timeout``: seconds of one drain during the run."""

    def __init__(self, open_sor, make_outbox, client_class, drain_timeout, interval=INTERVAL, backoff=BACKOFF,
                 max_backoff=MAX_BACKOFF, name="changeops-outbox-feeder", clock=time.monotonic):
        super(OutboxFeeder, self).__init__(name=name, daemon=True)
        self._open_sor = open_sor
        self._make_outbox = make_outbox
        self._client_class = client_class
        self.drain_timeout = float(drain_timeout)
        self.interval = float(interval)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._clock = clock
        self._wake = threading.Event()
        # set by finish(): the current drain's sleeps wake to look at the deadline again
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._client = None
        self._final_deadline = None
        self._not_before = 0.0
        self._failures = 0
        self.done = threading.Event()
        #: reports of the drains made while the run went on, and of the last one (``finish``)
        self.reports = []
        self.final_report = None
        self.error = None

    # -- the writer's side --------------------------------------------------------------------------------
    def nudge(self):
        """New entries reached the ledger (called from the writer thread: returns at once)."""
        self._wake.set()

    def finish(self, budget):
        """Cut the drain in progress to ``budget`` seconds from now, deliver what is left within it, stop.
        Returns True when the feeder stopped within the budget (the caller waits no longer than that)."""
        deadline = self._clock() + max(0.0, float(budget))
        with self._lock:
            self._final_deadline = deadline
            client = self._client
            if client is not None and (client.deadline is None or client.deadline > deadline):
                client.deadline = deadline
        self._cut.set()
        self._wake.set()
        if not self.is_alive() and not self.done.is_set():
            return False
        # a request already in flight when the deadline passes ends at its own timeout (capped by the deadline
        # when it was sent): a little grace for that, then the run goes on without the feeder
        return self.done.wait(max(0.0, deadline - self._clock()) + 1.0)

    # -- the feeder thread -----------------------------------------------------------------------------------
    def run(self):
        sor = None
        try:
            sor = self._open_sor()
            outbox = self._make_outbox(sor, self._client_factory)
            while self._final_deadline is None:
                self._wake.wait(self.interval)
                self._wake.clear()
                if self._final_deadline is not None or self._clock() < self._not_before:
                    continue
                if outbox.ready(partial_batches=False):
                    self._drain(outbox, self.drain_timeout, partial_batches=False)
            left = self._final_deadline - self._clock()
            if left > 0:
                self.final_report = self._drain(outbox, left, partial_batches=True)
        except Exception as exc:  # pylint: disable=broad-except
            # never the playbook's problem: the entries wait in the outbox; the post-run hook reports this
            self.error = exc
        finally:
            if sor is not None:
                try:
                    sor.close()
                except Exception:  # pylint: disable=broad-except
                    pass
            self.done.set()

    def _drain(self, outbox, timeout, partial_batches):
        report = outbox.drain(timeout, partial_batches=partial_batches)
        with self._lock:
            self._client = None
        if not partial_batches:
            self.reports.append(report)
        if report.stopped and not report.busy:
            self._failures += 1
            wait = min(self.max_backoff, self.backoff * (2 ** (self._failures - 1)))
            if report.waiting_until:
                wait = max(wait, _seconds_until(report.waiting_until))
            self._not_before = self._clock() + wait
        else:
            self._failures = 0
        return report

    def _client_factory(self, settings, deadline=None, cooldown=None):
        with self._lock:
            if self._final_deadline is not None and (deadline is None or deadline > self._final_deadline):
                deadline = self._final_deadline
            client = self._client_class(settings, deadline=deadline, cooldown=cooldown, sleep=self._sleep,
                                        clock=self._clock)
            self._client = client
        return client

    def _sleep(self, seconds):
        """The clients' sleep: as asked, but awake when :meth:`finish` cuts the deadline (then the client's next
        request finds the deadline passed and the drain stops, its entries left in the outbox)."""
        end = self._clock() + seconds
        while True:
            now = self._clock()
            with self._lock:
                client = self._client
                deadline = client.deadline if client is not None else None
                if self._final_deadline is not None and client is not None and deadline is not None and \
                        deadline < end:
                    # the run ends before this wait would (a 429's Retry-After): give the wait up now, and with
                    # it the request after it, so the last drain gets the budget
                    client.deadline = min(deadline, now)
                    return
            until = end if deadline is None else min(end, deadline)
            if now >= until:
                return
            if self._cut.wait(until - now):
                self._cut.clear()


def _seconds_until(iso_time):
    try:
        return max(0.0, parse_time(iso_time).timestamp() - time.time())
    except (TypeError, ValueError):
        return 0.0
