# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One system-of-record connection per worker thread.

Request handlers run in a small thread pool; an SQLite connection belongs to the thread that opened it
and a PostgreSQL connection serves one statement at a time, so each thread opens its own, once, and
keeps it. A connection that fails (a restarted PostgreSQL, a locked SQLite file) raises
``BackendUnavailable``; the PostgreSQL backend reconnects by itself on the next request.
"""

from __future__ import annotations

import threading

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record


class Store(object):
    def __init__(self, backend_config):
        self.backend_config = dict(backend_config)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened = []

    def get(self):
        sor = getattr(self._local, "sor", None)
        if sor is None:
            # not opened as a reader (config "reader": PostgreSQL reads from postgresql_read_dsn): the service
            # reads back at once what it has just written (a session after sign-in, a revoked token, a sign-off),
            # which a lagging replica would not show yet; a reader replica would need per-request routing
            sor = open_system_of_record(self.backend_config)
            self._local.sor = sor
            with self._lock:
                self._opened.append(sor)
        return sor

    def close(self):
        with self._lock:
            opened, self._opened = self._opened, []
        for sor in opened:
            try:
                sor.close()
            except Exception:  # pylint: disable=broad-except
                pass
