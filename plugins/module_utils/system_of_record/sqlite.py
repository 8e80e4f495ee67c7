# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite backend: the embedded default, one file, no set-up.

Concurrency model: WAL journal so readers never block the writer; every
append takes SQLite's single write lock with ``BEGIN IMMEDIATE`` *before* it
reads the chain head, so concurrent ``ansible-playbook`` processes (and the
recorder's writer thread) queue up instead of forking the chain. The busy
timeout bounds how long a writer waits for that lock.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.errors import (
    BackendUnavailable,
    ConfigurationError,
    ConflictError,
    LedgerCorrupted,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.sql import SqlSystemOfRecord

# A write transaction (an append, a migration) waits for the lock in slices of this many seconds, and
# between slices it lets go of the fork guard: Ansible keeps forking workers
# while another writer holds the ledger, instead of stalling with the writer.
_LOCK_SLICE = 0.1
_BETWEEN_SLICES = 0.005

# Ansible forks its workers from the controller process, where the
# change_recorder's writer thread keeps a connection. A child forked while that
# thread is inside a transaction inherits SQLite's in-process lock bookkeeping
# ("this process holds the write lock") without the lock itself, so every
# write from the child fails with "database is locked" after the busy timeout.
# Every use of a connection holds this lock, and fork takes it first, so no
# worker is ever born mid-transaction.
_FORK_GUARD = threading.RLock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release,
                        after_in_child=_FORK_GUARD.release)


def _is_locked(exc):
    text = str(exc).lower()
    return "locked" in text or "busy" in text


#: SQLite's primary result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB
_DAMAGED_CODES = (11, 26)

#: ``check_storage`` runs ``PRAGMA quick_check`` (it reads every page: about 0.6 s for 128 MiB measured
#: on the CI machine under load) on ledgers up to this size; larger ones get the header and schema
#: read, and damage elsewhere is found by the write or read that touches it, or by ledger_verify.
QUICK_CHECK_MAX_BYTES = 128 * 1024 * 1024


def _is_damage(exc):
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _DAMAGED_CODES
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def damaged_ledger_message(path, problem):
    """``problem`` (what SQLite said) and what to do about a damaged ledger (the recorder shows it once per run)."""
    return ("%s. The ledger file is damaged. What to do: stop the runs that write to it; keep a copy of the file"
            " and its -wal file; restore the newest backup, or recover what SQLite can still read"
            " (sqlite3 %s .recover | sqlite3 %s.recovered) and check the result with changeops.itsm.ledger_verify"
            " before putting it in place" % (problem, path, path))


def _storage_error(exc, message, path):
    """``LedgerCorrupted`` when SQLite says the file is damaged, else ``BackendUnavailable(message)``."""
    if _is_damage(exc):
        return LedgerCorrupted(damaged_ledger_message(path, message), path=path)
    return BackendUnavailable(message, path=path)


class SqliteSystemOfRecord(SqlSystemOfRecord):
    backend_name = "sqlite"
    placeholder = "?"

    def __init__(self, config):
        super(SqliteSystemOfRecord, self).__init__(config)
        self.path = config.get("sqlite_path")
        if not self.path:
            raise ConfigurationError("sqlite_path is empty: set it or CHANGEOPS_SQLITE_PATH")
        self.busy_timeout = int(config.get("busy_timeout") or 60)
        #: the connection may be closed by another thread than its own: for an owner that uses each instance from one
        #: thread at a time and closes it once that thread has ended (the review service's request threads). Without
        #: it, SQLite refuses the close, the instance drops the connection, and the connection's file descriptors
        #: stay open until the cyclic GC frees it (its statement cache refers back to it).
        self.close_from_any_thread = bool(config.get("close_from_any_thread"))
        self._conn = None

    def describe(self):
        return "sqlite:%s" % self.path

    # -- connection and schema ---------------------------------------------
    def _connection(self):
        if self._conn is None:
            self._ensure_open()
        return self._conn

    def _ensure_open(self):
        """Open the ledger and bring its schema up to date; call it without holding ``_FORK_GUARD``.

        A migration waits for the write lock like an append does, in slices with the fork guard let go
        between them: the first open after an upgrade may wait for another writer for up to
        ``busy_timeout``, and Ansible must go on forking its workers meanwhile.
        """
        if self._conn is not None:
            return
        with _FORK_GUARD:
            conn = self._connect()
        try:
            self._migrate(conn)
        except BaseException:
            with _FORK_GUARD:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            raise
        self._conn = conn

    def _connect(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700)
            created = not os.path.exists(self.path)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, cached_statements=512,
                                   check_same_thread=not self.close_from_any_thread)
            if created:
                os.chmod(self.path, 0o600)
            conn.execute("PRAGMA busy_timeout = %d" % (self.busy_timeout * 1000))
            mode = self._switch_to_wal(conn)
            if str(mode).lower() != "wal":
                raise BackendUnavailable("%s: cannot switch the ledger to WAL mode (got %s)" % (self.path, mode))
            # FULL: a committed batch survives power loss too; the recorder
            # commits in batches, so the fsync cost is paid rarely.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise _storage_error(exc, "cannot open the SQLite ledger %s: %s" % (self.path, exc), self.path)
        except OSError as exc:
            raise BackendUnavailable("cannot create the SQLite ledger %s: %s" % (self.path, exc), path=self.path)
        return conn

    def _switch_to_wal(self, conn):
        """``PRAGMA journal_mode = WAL``, tried again until ``busy_timeout`` is spent while the file is locked.

        A new ledger switching to WAL needs a lock that SQLite refuses at once, without its busy handler,
        while other processes open the same new file (seen with four writers starting together under load).
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(_BETWEEN_SLICES)

    @staticmethod
    def _current_version(conn):
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone():
            return 0
        return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]

    def _migrate(self, conn):
        try:
            with _FORK_GUARD:
                current = self._current_version(conn)
            if current >= schema.LATEST_VERSION:
                if current > schema.LATEST_VERSION:
                    raise ConfigurationError(
                        "%s has schema version %d, newer than this collection understands (%d): upgrade changeops.itsm"
                        % (self.path, current, schema.LATEST_VERSION))
                return
            locked_out = ("cannot open the SQLite ledger %s: its schema needs an upgrade and the database is locked"
                          " (another writer held it for more than busy_timeout, %d s)" % (self.path, self.busy_timeout))
            with self._write_lock(lambda: conn, locked_out):
                self._apply_migrations(conn)
        except sqlite3.Error as exc:
            raise _storage_error(exc, "cannot open the SQLite ledger %s: %s" % (self.path, exc), self.path)

    def _apply_migrations(self, conn):
        """Inside the write lock: the migrations not applied yet (another process may have done some), then COMMIT."""
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                         " description TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = self._current_version(conn)
            for migration, replay in schema.upgrade_steps(current):
                for statement in schema.statements_for("INTEGER", migration):
                    conn.execute(statement)
                if replay:
                    self._replay_ledger(conn.cursor(), until=migration[0])
                if schema.backfills_intelligence(migration):
                    self._backfill_intelligence(conn.cursor())
                if schema.backfills_metric_rollups(migration):
                    self._backfill_metric_rollups(conn.cursor())
                if schema.backfills_metric_next(migration):
                    self._backfill_metric_next(conn.cursor())
                if schema.backfills_metric_leads_packed(migration):
                    self._backfill_metric_leads_packed(conn.cursor())
                conn.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                             (migration[0], migration[1], utc_now()))
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def schema_version(self):
        return self._query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0]

    @contextlib.contextmanager
    def _write_transaction(self):
        self._ensure_open()
        locked_out = ("cannot lock the SQLite ledger %s for writing: database is locked (another writer held it for"
                      " more than busy_timeout, %d s)" % (self.path, self.busy_timeout))
        # _write_lock holds the fork guard in a with block, which is left on GeneratorExit too
        with self._write_lock(self._connection, locked_out) as conn:  # pylint: disable=contextmanager-generator-missing-cleanup
            with self._locked_transaction(conn) as cursor:
                yield cursor

    @contextlib.contextmanager
    def _write_lock(self, connection, locked_out):
        """The write lock (``BEGIN IMMEDIATE``) on ``connection()``, held with ``_FORK_GUARD`` while the body runs.

        It is waited for in slices, the fork guard let go between them, within one overall ``busy_timeout``;
        after that, ``BackendUnavailable(locked_out)``.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            with _FORK_GUARD:
                conn = connection()
                if self._try_lock(conn, deadline):
                    yield conn
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendUnavailable(locked_out, path=self.path)
            time.sleep(min(_BETWEEN_SLICES, remaining))

    def _try_lock(self, conn, deadline):
        """``BEGIN IMMEDIATE`` waiting at most one slice of what is left; False when another writer still has it."""
        slice_ms = max(1, int(min(_LOCK_SLICE, max(0.0, deadline - time.monotonic())) * 1000))
        try:
            conn.execute("PRAGMA busy_timeout = %d" % slice_ms)
            try:
                conn.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc):
                    raise
                return False
            finally:
                conn.execute("PRAGMA busy_timeout = %d" % (self.busy_timeout * 1000))
        except sqlite3.Error as exc:
            raise _storage_error(exc, "cannot lock the SQLite ledger %s for writing: %s" % (self.path, exc),
                                 self.path)

    @contextlib.contextmanager
    def _locked_transaction(self, conn):
        cursor = conn.cursor()
        try:
            yield cursor
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            # a constraint the batch breaks: deterministic, so a refusal rather than "try again later"
            self._rollback(conn)
            raise ConflictError("the SQLite ledger %s refused the batch: %s" % (self.path, exc), path=self.path)
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise _storage_error(exc, "cannot write the SQLite ledger %s: %s" % (self.path, exc), self.path)
        except BaseException:
            self._rollback(conn)
            raise
        finally:
            cursor.close()

    @staticmethod
    def _rollback(conn):
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _query(self, sql, params=()):
        try:
            self._ensure_open()
            with _FORK_GUARD:
                return super(SqliteSystemOfRecord, self)._query(sql, params)
        except sqlite3.Error as exc:
            raise _storage_error(exc, "cannot read the SQLite ledger %s: %s" % (self.path, exc), self.path)

    #: rows of ``archive_base`` read per query
    _STATE_PAGE = 5000

    def archive_state(self):
        """``SqlSystemOfRecord.archive_state`` a page at a time in rowid order, each page a read of its own (no
        statement stays open across a fork): ``commit_archive`` inserts the rows sorted, as the archive file holds
        them, so rowid order is their order. Rows moved since come out of order, which ``StateDigest`` refuses (the
        projection check reports the state edited)."""
        return self._state_pages(self._query)

    def _archived_rows_in(self, cursor):
        return self._state_pages(lambda sql, params: cursor.execute(sql, params).fetchall())

    def _state_pages(self, query):
        for _rowid, table, row_json in self._paged_rows("archive_base", ["rowid", "tbl", "row_json"], ["rowid"],
                                                        query=query, page=self._STATE_PAGE):
            yield table, row_json

    def check_storage(self):
        """``PRAGMA quick_check`` (every page's structure) up to :data:`QUICK_CHECK_MAX_BYTES`, else the
        header and schema; raises ``LedgerCorrupted`` with what to do."""
        try:
            self._ensure_open()
            with _FORK_GUARD:
                if os.path.getsize(self.path) <= QUICK_CHECK_MAX_BYTES:
                    problems = [row[0] for row in self._conn.execute("PRAGMA quick_check(5)").fetchall()]
                else:
                    self._conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
                    problems = ["ok"]
        except sqlite3.Error as exc:
            raise _storage_error(exc, "cannot check the SQLite ledger %s: %s" % (self.path, exc), self.path)
        except OSError as exc:
            raise BackendUnavailable("cannot check the SQLite ledger %s: %s" % (self.path, exc), path=self.path)
        if problems != ["ok"]:
            # one line: quick_check's first problem starts with "*** in database main ***" and a newline
            detail = "; ".join(line.strip() for problem in problems for line in problem.splitlines()
                               if line.strip() and not line.startswith("***"))
            raise LedgerCorrupted(damaged_ledger_message(
                self.path, "the SQLite ledger %s fails PRAGMA quick_check: %s" % (self.path, detail)), path=self.path)

    # -- redaction: leave no copy of a redacted value in the file or its WAL ------------
    def redact_entry(self, seq, fields, reason, redacted_by, actor):
        # secure_delete: the cells and pages the redaction frees are overwritten with zeros, not just unlinked
        self._ensure_open()
        with _FORK_GUARD:
            previous = self._conn.execute("PRAGMA secure_delete").fetchone()[0]
            self._conn.execute("PRAGMA secure_delete = ON")
        try:
            return super(SqliteSystemOfRecord, self).redact_entry(seq, fields, reason, redacted_by, actor)
        finally:
            with _FORK_GUARD:
                if self._conn is not None:
                    self._conn.execute("PRAGMA secure_delete = %d" % int(previous))

    def scrub_storage(self, compact=True):
        """``VACUUM`` (``compact``): rewrite the file, so no free page or page slack written before the redaction
        keeps a copy; then a ``TRUNCATE`` checkpoint empties the write-ahead log, which held every page ever
        written since the last one. Another connection reading at that moment can keep the log from being
        emptied: that is reported, and the next redaction or any checkpoint finishes the job."""
        self._ensure_open()
        warnings = []
        try:
            with _FORK_GUARD:
                if compact:
                    self._conn.execute("PRAGMA secure_delete = ON")
                    try:
                        self._conn.execute("VACUUM")
                    finally:
                        self._conn.execute("PRAGMA secure_delete = OFF")
                busy, log_frames, checkpointed = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            raise BackendUnavailable("cannot compact the SQLite ledger %s after the redaction: %s (the redaction "
                                     "itself is recorded; run the module again to retry)" % (self.path, exc),
                                     path=self.path)
        wal_size = os.path.getsize(self.path + "-wal") if os.path.exists(self.path + "-wal") else 0
        if busy or wal_size:
            warnings.append("the write-ahead log %s-wal could not be emptied (another process is reading the ledger):"
                            " it may still hold the redacted values until the next checkpoint; run ledger_redact"
                            " again when no playbook is running" % self.path)
        return {"compacted": bool(compact), "wal_checkpointed": not busy and not wal_size,
                "wal_frames": log_frames, "checkpointed_frames": checkpointed, "warnings": warnings}

    def backup(self, destination, tool=None):
        """SQLite's online backup API in one step: one read snapshot, so the copy is the ledger as of one commit,
        while writers (WAL mode) go on. Written beside ``destination`` and renamed over it once complete and
        synced: a crash leaves the old backup or none, never half of one."""
        self._ensure_open()
        partial = destination + ".partial"
        try:
            _remove(partial)
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            with _FORK_GUARD:
                source = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            try:
                source.execute("PRAGMA busy_timeout = %d" % (self.busy_timeout * 1000))
                target = sqlite3.connect(partial, isolation_level=None)
                try:
                    source.backup(target)  # pages=-1: every page in one step, under one read transaction
                    head = target.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
                finally:
                    target.close()
            finally:
                source.close()
            _fsync(partial)
            os.replace(partial, destination)
            _fsync(os.path.dirname(os.path.abspath(destination)) or ".")
        except (sqlite3.Error, OSError) as exc:
            _remove(partial)
            raise BackendUnavailable("cannot back up the SQLite ledger %s to %s: %s" % (self.path, destination, exc),
                                     path=self.path)
        return {"format": "sqlite", "head_seq": head[0] if head else 0, "head_hash": head[1] if head else None}

    def close(self):
        with _FORK_GUARD:
            self._close()

    def _close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _fsync(path):
    """Flush a file (or a directory's entries) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
