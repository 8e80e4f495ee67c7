# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One system-of-record connection per worker thread, and with a read replica a second one for change data.

Request handlers run in a small thread pool; an SQLite connection belongs to the thread that opened it
and a PostgreSQL connection serves one statement at a time, so each thread opens its own, once, and
keeps it while the thread lives. The pool ends threads that stay idle (anyio: after 10 s) and starts new ones
in the next burst of requests: the first time a new thread opens its connection, those of every thread that has
ended are closed (:meth:`Store._close_ended`). Kept until the service stopped, each quiet spell left up to a
pool's worth of PostgreSQL connections open, until the server refused new clients. A connection that fails (a
restarted PostgreSQL, a locked SQLite file) raises ``BackendUnavailable``; the PostgreSQL backend reconnects by
itself on the next request.

With a PostgreSQL read replica configured (``CHANGEOPS_POSTGRESQL_READ_DSN``), routing is per request:

* :meth:`Store.get` is the primary, always: sign-in, sessions, API tokens, revocations, accounts and
  permission checks, every action and the reads that validate it (separation of duties, the current state
  of a change request), because the service reads those back at once and a replica may not have them yet;
* :meth:`Store.reader` is the thread's reader instance, routed again for each request (``route_reads``):
  the replica when it answers, lags at most ``postgresql_read_max_lag`` seconds and has replayed the
  ledger position of the person's own newest action there (read-your-writes), else the primary. Its
  ``route_reads`` result is what the page's banner and the API's ``read_from`` field say.
"""

from __future__ import annotations

import threading

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record


class Store(object):
    def __init__(self, backend_config):
        self.backend_config = dict(backend_config)
        self._local = threading.local()
        self._lock = threading.Lock()
        #: (thread, system of record) of every instance opened and not yet closed
        self._opened = []

    @property
    def has_replica(self):
        """True when change data may be read from a PostgreSQL streaming replica."""
        return self.backend_config.get("backend") == "postgresql" and bool(self.backend_config.get("postgresql_read_dsn"))

    def _open(self, attribute, config):
        sor = getattr(self._local, attribute, None)
        if sor is None:
            self._close_ended()
            # (an SQLite instance this store may close once its thread has ended: see _close_ended)
            sor = open_system_of_record(dict(config, close_from_any_thread=True))
            setattr(self._local, attribute, sor)
            with self._lock:
                self._opened.append((threading.current_thread(), sor))
        return sor

    def _close_ended(self):
        """Close the instances of threads that have ended (a new thread is about to open its own)."""
        with self._lock:
            # each thread asked once: one that ends between two questions would be neither kept nor closed
            ended, alive = [], []
            for thread, sor in self._opened:
                (alive if thread.is_alive() else ended).append((thread, sor))
            self._opened = alive
        for _thread, sor in ended:
            _close_quietly(sor)

    def get(self):
        """The primary: everything that writes, and every read that must see what was just written."""
        # not opened as a reader (config "reader": PostgreSQL reads from postgresql_read_dsn): the service reads back
        # at once what it has just written (a session after sign-in, a revoked token, a sign-off)
        return self._open("sor", self.backend_config)

    def reader(self, name=None):
        """``(sor, read_from)`` for one request's change data: ``read_from`` is None without a replica, else
        ``route_reads``' answer (the server, the replica's lag and replayed entry, why the primary was read).
        ``name``: the signed-in person, whose newest action here the replica must have replayed."""
        if not self.has_replica:
            return self.get(), None
        written = self.get().get_review_write_position(name) if name else 0
        sor = self._open("reader", dict(self.backend_config, reader=True))
        read_from = sor.route_reads(min_seq=written)
        if read_from is not None:
            read_from["own_write_seq"] = written or None
            if read_from.get("server") == "primary":
                # the thread's primary instance answers: the reader instance would open a second primary connection
                sor = self.get()
        return sor, read_from

    def note_write(self, name):
        """After ``name``'s action: the ledger position their next pages must see (read-your-writes). The head, not
        the action's own entry: it may include other writers' later entries, which only makes the wait longer."""
        if not self.has_replica or not name:
            return
        primary = self.get()
        head = primary.head()
        if head:
            primary.note_review_write(name, head[0], utc_now())

    def close(self):
        with self._lock:
            opened, self._opened = self._opened, []
        for _thread, sor in opened:
            _close_quietly(sor)


def _close_quietly(sor):
    # (the store opens its SQLite instances closable from another thread: a thread that has ended cannot close its own)
    try:
        sor.close()
    except Exception:  # pylint: disable=broad-except
        pass
