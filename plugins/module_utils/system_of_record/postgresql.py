# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL backend: one shared system of record for many controllers.

Same schema, canonical JSON and hash chain as the SQLite default (the SQL and
the append algorithm live once in ``sql.py``); this module only supplies the
connection, the write lock and the migrations.

Concurrency model: every append runs in a short READ COMMITTED transaction
that first takes ``pg_advisory_xact_lock(LEDGER_LOCK_KEY)`` and only then
reads the chain head, so writers from any number of controllers queue up on
that lock and never fork the chain (``ledger.seq`` being the primary key is
the second line of defence). The lock is released by COMMIT/ROLLBACK, so a
writer that dies mid-transaction cannot leave it held. Readers never take it.

Faults: a connection that cannot be opened, or that broke, raises
``BackendUnavailable`` with a secret-free reason (the recorder callback spools
on it, the change gate fails closed on it). A connection found broken is
replaced once, transparently, before giving up: appends are safe to retry
because entry ids are idempotency keys.
"""

from __future__ import annotations

import contextlib
# psycopg resolves host names with socket.getaddrinfo, which imports the idna codec on first use;
# importing it now keeps that import out of a writer thread that may be
# running while the main thread forks (see factory.load_backend).
import encodings.idna  # noqa: F401 pylint: disable=unused-import
import os
import re
import shutil
import subprocess
import threading
import time

try:
    import psycopg
    from psycopg import conninfo as _conninfo
    from psycopg import errors as _pg_errors
except ImportError as _import_error:  # pragma: no cover - depends on the controller's Python
    psycopg = None
    PSYCOPG_IMPORT_ERROR = _import_error
else:
    PSYCOPG_IMPORT_ERROR = None

# Ansible forks its workers from the controller process while the change_recorder's writer
# thread talks to PostgreSQL. libpq does its TLS and SCRAM work in OpenSSL, whose locks are not
# fork-safe: a worker forked while the writer thread held one inherits it locked and blocks in its
# own connect for ever, past connect_timeout (seen in this project's tests: a worker stuck in
# pthread_rwlock_rdlock under CRYPTO_THREAD_read_lock). So every step of libpq work in this
# process holds _FORK_GUARD and fork takes it first. Waiting for the socket between two steps does
# not hold it, so a slow or unreachable server never holds up Ansible's forks: only one step can
# (its CPU work, and the host name lookup libpq makes when it starts connecting).
_FORK_GUARD = threading.RLock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_FORK_GUARD.acquire, after_in_parent=_FORK_GUARD.release,
                        after_in_child=_FORK_GUARD.release)


def _guarded_steps(gen):
    """Run each step of a psycopg generator under the fork guard, the waits between them outside it."""
    try:
        with _FORK_GUARD:
            request = next(gen)
        while True:
            ready = yield request
            with _FORK_GUARD:
                request = gen.send(ready)
    except StopIteration as stop:
        return stop.value


if psycopg is not None:
    class _ForkSafeConnection(psycopg.Connection):
        """A psycopg connection whose libpq work never overlaps a fork of this process.

        psycopg runs every operation as a generator of libpq steps and socket waits: connecting
        through ``_connect_gen``, everything else through ``wait``; ``close`` calls libpq directly.
        """

        @classmethod
        def _connect_gen(cls, conninfo=""):
            return _guarded_steps(super(_ForkSafeConnection, cls)._connect_gen(conninfo))

        def wait(self, gen, *args, **kwargs):
            return super(_ForkSafeConnection, self).wait(_guarded_steps(gen), *args, **kwargs)

        def close(self):
            with _FORK_GUARD:
                super(_ForkSafeConnection, self).close()

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.config import redact_dsn
from ansible_collections.changeops.itsm.plugins.module_utils.errors import (
    BackendUnavailable,
    ConfigurationError,
    ConflictError,
    LedgerCorrupted,
    MissingDependency,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.intelligence import (
    FROM_TABLE,
    PACKED_NOT_NULL,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.sql import SqlSystemOfRecord

#: ``pg_advisory_xact_lock`` keys (64-bit, database-wide). Chosen once and
#: never changed: every controller version must agree on them. They spell
#: "chgops" + a suffix in ASCII so they are recognisable in ``pg_locks``.
LEDGER_LOCK_KEY = 0x6368676F70730001
MIGRATION_LOCK_KEY = 0x6368676F70730002

#: libpq parameters we set when the DSN does not: fail fast when the server is
#: unreachable (the recorder then spools instead of stalling the playbook),
#: notice a silently dropped TCP connection within about a minute, and keep
#: libpq out of its GSSAPI (Kerberos) probe, which is not fork-safe: Ansible
#: forks its workers while the recorder's writer thread is connected, and a
#: worker that inherits a Kerberos lock mid-probe blocks in connect forever,
#: past connect_timeout (seen once in this project's tests; a known libpq/krb5
#: hazard). Sites that do use GSSAPI encryption set gssencmode in the DSN.
CONNECTION_DEFAULTS = {
    "connect_timeout": "10",
    "gssencmode": "disable",
    "application_name": "changeops.itsm",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}

#: libpq environment variables that name *where* the server is (never PGPASSWORD).
_LOCATION_ENV = ("PGSERVICE", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSSLMODE")

#: SQLSTATE 55P03: lock_timeout expired while waiting for the ledger lock.
_LOCK_NOT_AVAILABLE = "55P03"

#: SQLSTATE XX001 data_corrupted, XX002 index_corrupted: the server read a damaged page.
_DAMAGED_STATES = ("XX001", "XX002")

#: ``check_storage`` reads the whole ledger table up to this size (a sequential scan, like SQLite's
#: quick_check limit in sqlite.py); larger ledgers are checked by the reads and writes that touch a page.
CHECK_STORAGE_MAX_BYTES = 128 * 1024 * 1024

#: how long a reader that must see entry ``read_min_seq`` (the recorder's register refresh: its own run) waits for
#: the replica to replay it before reading from the primary; at most postgresql_read_max_lag
READ_MIN_SEQ_WAIT = 10.0

#: a long-lived reader (``route_reads``, the review service) that could not connect to its replica reads the primary
#: for this many seconds before it tries to connect again: a replica that is down costs one connection attempt per
#: interval and thread, not one per request
REPLICA_RETRY_SECONDS = 5.0

#: connections inherited from a parent process (a forked Ansible worker):
#: kept referenced and never closed here, because closing would end the
#: parent's session; psycopg itself skips the close in a forked child on GC.
_INHERITED_CONNECTIONS = []


def require_psycopg():
    if psycopg is None:
        raise MissingDependency(
            "the postgresql backend needs the Python library psycopg 3 on the controller"
            " (pip install 'psycopg[binary]'): %s" % PSYCOPG_IMPORT_ERROR)


def secret_values(dsn, environ=None):
    """Every password that ``dsn`` or the libpq environment carries, for scrubbing messages."""
    environ = os.environ if environ is None else environ
    secrets = set()
    if environ.get("PGPASSWORD"):
        secrets.add(environ["PGPASSWORD"])
    if dsn:
        if psycopg is not None:
            try:
                password = _conninfo.conninfo_to_dict(dsn).get("password")
                if password:
                    secrets.add(str(password))
            except psycopg.Error:
                pass
        # a DSN libpq cannot parse still must not leak what looks like its password
        match = re.search(r"://[^:/@]*:([^@]*)@", dsn)
        if match and match.group(1):
            secrets.add(match.group(1))
        for match in re.finditer(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn, flags=re.IGNORECASE):
            value = match.group(1)
            secrets.add(value)
            secrets.add(value.strip("'"))
    return sorted((s for s in secrets if s), key=len, reverse=True)


def scrub(text, dsn, environ=None):
    """``text`` with the DSN's password (in any form) replaced by asterisks."""
    text = redact_dsn(str(text))
    for secret in secret_values(dsn, environ):
        text = text.replace(secret, "********")
    return text


def describe_dsn(dsn, environ=None):
    """Secret-free location: the redacted DSN, or the libpq variables that place the server."""
    environ = os.environ if environ is None else environ
    if dsn:
        return "postgresql:%s" % scrub(dsn, dsn, environ)
    parts = ["%s=%s" % (name, environ[name]) for name in _LOCATION_ENV if environ.get(name)]
    return "postgresql:(libpq environment%s)" % ((": " + " ".join(parts)) if parts else " and defaults")


def connection_kwargs(dsn):
    """Defaults from :data:`CONNECTION_DEFAULTS` for every parameter ``dsn`` leaves unset."""
    given = _conninfo.conninfo_to_dict(dsn or "")
    return {key: value for key, value in CONNECTION_DEFAULTS.items() if key not in given}


#: The session compresses the large values it writes (TOAST) with lz4 where the server offers it (PostgreSQL 14 and
#: later, built with lz4, as Debian's are) and its administrator left ``default_toast_compression`` at its default
#: (pglz); a setting made in the server's configuration, for the database or the role is kept. A gate decision over
#: 10,000 hosts is a 170 kB ``run.gate`` entry and a change event document of the same size: pglz took about 5 ms of
#: the server's time to compress the two, lz4 a fraction of it (the gate task 3-5 ms faster in-process, 2026-12-07;
#: reading pg_settings adds 0.3 ms to the session's first statement). Values written before keep their compression:
#: PostgreSQL reads both.
_LZ4_WHERE_DEFAULT = ("(SELECT set_config(name, 'lz4', false) FROM pg_settings WHERE name = 'default_toast_compression'"
                      " AND source = 'default' AND 'lz4' = ANY(enumvals))")


class _ConnectionLost(BackendUnavailable):
    """The connection broke. Callers that can retry (see ``_retrying``) reconnect and try once
    more; anywhere else it surfaces as the ``BackendUnavailable`` it is."""

    def __init__(self, message, cause, **details):
        super(_ConnectionLost, self).__init__(message, **details)
        self.cause = cause


class PostgresqlSystemOfRecord(SqlSystemOfRecord):
    backend_name = "postgresql"
    placeholder = "%s"
    #: a list of values is bound as one array parameter (``intelligence.IntelligenceQueries._in_values``)
    set_parameter = "any"
    #: many short rows are fetched as one row, each column's values joined by a separator (``string_agg``; see
    #: ``intelligence.IntelligenceQueries._packed_rows``): json_agg measured slower here than rows, this faster
    packs_rows = "text"
    #: the largest table (bytes of its heap and TOAST, ``pg_table_size``) read packed: every value of a column is
    #: stored there with more than a byte of header, so a packed column is smaller, and far below the 1 GB a
    #: PostgreSQL value may hold
    PACK_BYTES_UP_TO = 256 * 1024 * 1024
    #: how long a store trusts the table sizes it read (a round trip each read otherwise: a gate reads several times
    #: within a second, a review service for hours)
    PACK_SIZES_FOR_SECONDS = 60.0
    #: ``_queries`` sends its statements in one pipeline (``intelligence.IntelligenceQueries.find_ci_summaries``)
    pipelines_reads = True
    #: a read aside (``SystemOfRecord.read_aside``) on a connection of its own: the server works in a process of its
    #: own meanwhile (a 90-day metrics period's day sums, 40 ms of the server's time at 1,000,000 change events,
    #: while this connection reads the failed changes and their rules run here). SQLite does not: there the day
    #: sums are this process's own work, and reading them in a thread measured no faster (2026-12-07)
    reads_aside = True
    #: metric_days' lead times joined by the database (``metric_rollups.MetricRollupQueries.find_metric_day_sums``)
    text_aggregate = "STRING_AGG(%s, '')"
    #: its planner keeps statistics and finds the run index itself (``SqlSystemOfRecord.task_results_by_run``)
    task_results_by_run = "task_results"
    # COPY FROM STDIN for the ledger rows and the task results of a batch: measured (bench/ledger_scale) to
    # hold the ledger lock a fraction of the time executemany's pipeline does for the same rows
    bulk_insert = "copy"

    def __init__(self, config):
        super(PostgresqlSystemOfRecord, self).__init__(config)
        require_psycopg()
        self.dsn = config.get("postgresql_dsn") or ""
        self.busy_timeout = int(config.get("busy_timeout") or 60)
        try:
            self._connect_kwargs = connection_kwargs(self.dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError("postgresql_dsn is not a valid libpq connection string (%s): %s"
                                     % (self.describe(), self._scrub(exc)))
        self._conn = None
        self._pid = None
        # a streaming replica for this instance's reads, only when its opener is a reader (config "reader")
        self.read_dsn = (config.get("postgresql_read_dsn") or None) if config.get("reader") else None
        max_lag = config.get("postgresql_read_max_lag")
        self.read_max_lag = 30 if max_lag is None else int(max_lag)
        # a reader that must see what was just written on the primary (the recorder's register refresh)
        self.read_min_seq = int(config.get("read_min_seq") or 0)
        self._replica = None
        self._read_source = None
        # per-request routing (route_reads): the replica's schema, checked once per connection; its newest entry; why
        # the reads went to the primary; until when a replica that refused connections is left alone
        self._replica_version = None
        self._replayed_seq = None
        self._replica_lag = None
        self._read_cause = None
        self._replica_retry_at = None
        # the store reads aside run on (read_aside), kept for the next one: its connection and its server process's
        # caches are warm (a new one costs the connection and a first read of each table's catalog entries, about
        # 18 ms, half of what a 90-day period's day sums take); one read aside at a time uses it
        self._aside = None
        self._aside_lock = threading.Lock()

    def describe(self):
        return describe_dsn(self.dsn)

    def _scrub(self, text):
        return scrub(text, self.dsn)

    # -- connection and schema ---------------------------------------------
    def _connection(self):
        if self._conn is not None and self._pid != os.getpid():
            _INHERITED_CONNECTIONS.append(self._conn)
            self._conn = None
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._discard()
        if self._conn is None:
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self):
        try:
            conn = _ForkSafeConnection.connect(self.dsn, autocommit=True, **self._connect_kwargs)
        except psycopg.Error as exc:
            raise BackendUnavailable(
                "cannot connect to the PostgreSQL system of record %s: %s"
                % (self.describe(), self._scrub(_one_line(exc))), backend=self.describe())
        try:
            # READ COMMITTED whatever the server default: the head must be read
            # with a snapshot taken *after* the ledger lock was granted.
            conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
            self._migrate(conn, self._prepare_session(conn))
        except psycopg.Error as exc:
            _close_quietly(conn)
            self._raise_if_damaged(exc)
            raise BackendUnavailable(
                "cannot prepare the PostgreSQL system of record %s: %s"
                % (self.describe(), self._scrub(_one_line(exc))), backend=self.describe())
        except BaseException:
            _close_quietly(conn)
            raise
        return conn

    def _prepare_session(self, conn):
        """Set the session's lock_timeout and return the applied schema version (None: no changeops tables yet).

        One round trip on a database already migrated (every connection but the first ever): each forked Ansible
        worker that reads or writes the record (the change gate of every play) opens its own connection, and
        under load every round trip waits for the server process to be scheduled. The first connection to an
        empty database gets an error for the missing table, without effect (autocommit: no transaction is left
        aborted), and takes the three statements the single one stands for."""
        timeout = "%ds" % self.busy_timeout
        try:
            return conn.execute("SELECT set_config('lock_timeout', %s, false), " + _LZ4_WHERE_DEFAULT +
                                ", (SELECT COALESCE(MAX(version), 0) FROM schema_migrations)", (timeout,)).fetchone()[2]
        except _pg_errors.UndefinedTable:
            conn.execute("SELECT set_config('lock_timeout', %s, false), " + _LZ4_WHERE_DEFAULT, (timeout,))
            return self._schema_version(conn)

    def _migrate(self, conn, current):
        if current is not None and current >= schema.LATEST_VERSION:
            self._refuse_newer(current)
            return
        # DDL is transactional in PostgreSQL: a migration applies whole or not
        # at all, and the advisory lock makes concurrent first opens queue up
        # and then find the work done.
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                         " description TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = self._schema_version(conn) or 0
            self._refuse_newer(current)
            for migration, replay in schema.upgrade_steps(current):
                for statement in schema.statements_for("BIGINT", migration):
                    conn.execute(statement)
                if replay:
                    # appenders take only the ledger lock: holding it too keeps them out of the rebuild
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK_KEY,))
                    with conn.cursor() as cursor:
                        self._replay_ledger(cursor, until=migration[0])
                if schema.backfills_intelligence(migration):
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK_KEY,))
                    with conn.cursor() as cursor:
                        self._backfill_intelligence(cursor)
                if schema.backfills_metric_rollups(migration):
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK_KEY,))
                    with conn.cursor() as cursor:
                        self._backfill_metric_rollups(cursor)
                if schema.backfills_metric_next(migration):
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK_KEY,))
                    with conn.cursor() as cursor:
                        self._backfill_metric_next(cursor)
                if schema.backfills_metric_leads_packed(migration):
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK_KEY,))
                    with conn.cursor() as cursor:
                        self._backfill_metric_leads_packed(cursor)
                conn.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (%s, %s, %s)",
                             (migration[0], migration[1], utc_now()))

    @staticmethod
    def _schema_version(conn):
        """Applied schema version, or None when the database has no changeops tables yet."""
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
        if not exists:
            return None
        return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]

    def _refuse_newer(self, current):
        if current > schema.LATEST_VERSION:
            raise ConfigurationError(
                "%s has schema version %d, newer than this collection understands (%d): upgrade changeops.itsm"
                % (self.describe(), current, schema.LATEST_VERSION))

    def schema_version(self):
        return self._query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0]

    def _discard(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)

    def _lost(self, exc):
        """True when ``exc`` means the connection itself is gone (not a refused statement)."""
        conn = self._conn
        return conn is None or conn.closed or conn.broken or isinstance(exc, psycopg.InterfaceError)

    # -- transactions ---------------------------------------------------------
    @contextlib.contextmanager
    def _write_transaction(self):
        conn = self._connection()
        try:
            with conn.transaction():
                with conn.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK_KEY,))
                    yield cursor
        except psycopg.Error as exc:
            if self._lost(exc):
                self._discard()
                raise _ConnectionLost("lost the connection to the PostgreSQL system of record %s while writing: %s"
                                      % (self.describe(), self._scrub(_one_line(exc))), exc,
                                      backend=self.describe())
            if isinstance(exc, (psycopg.IntegrityError, psycopg.DataError)):
                # a constraint or value the batch breaks is deterministic: a refusal (the spool sets the
                # entries aside), not "unavailable" (the spool would retry the same batch forever)
                raise ConflictError("the PostgreSQL system of record %s refused the batch: %s"
                                    % (self.describe(), self._scrub(_one_line(exc))), backend=self.describe())
            self._raise_if_damaged(exc)
            if getattr(exc, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise BackendUnavailable(
                    "another writer held the ledger lock of %s for more than %d s (busy_timeout)"
                    % (self.describe(), self.busy_timeout), backend=self.describe())
            raise BackendUnavailable("cannot write the PostgreSQL system of record %s: %s"
                                     % (self.describe(), self._scrub(_one_line(exc))), backend=self.describe())

    @contextlib.contextmanager
    def _projecting(self, db):
        """A batch that holds entries projected on their own (a run's start, plays, gates, end: a dozen statements
        each) is projected in pipeline mode: a statement whose result nobody reads (the inserts and updates) is
        sent without waiting for the server, and a read flushes what is queued before it, so such an entry costs a
        round trip per read instead of per statement. An error still fails the batch: it is raised at the next
        read or at the end, inside the transaction. COPY cannot run in a pipeline: bulk inserts there go by
        ``executemany`` (the ledger rows are stored by COPY after it; a batch of task results alone, the bulk of
        a long play, keeps COPY throughout: ``SqlSystemOfRecord._append_locked``)."""
        bulk = db.bulk
        db.bulk = "executemany"
        try:
            with self._conn.pipeline():
                yield
        finally:
            db.bulk = bulk

    def _raise_if_damaged(self, exc):
        """``LedgerCorrupted`` with what to do when the server reports a damaged page."""
        if getattr(exc, "sqlstate", None) in _DAMAGED_STATES:
            raise LedgerCorrupted(
                "the PostgreSQL system of record %s cannot read its own data (%s): the database is damaged. What to do:"
                " stop the runs that write to it and"
                " ask its database administrator to restore the database from a backup (or point-in-time"
                " recovery) and find the cause (storage, memory); check the result with changeops.itsm.ledger_verify"
                % (self.describe(), self._scrub(_one_line(exc))), backend=self.describe())

    def _retrying(self, action, what):
        """Run ``action``; on a lost connection reconnect and run it once more."""
        try:
            return action()
        except _ConnectionLost:
            pass
        try:
            return action()
        except _ConnectionLost as exc:
            raise BackendUnavailable(
                "lost the connection to the PostgreSQL system of record %s while %s: %s"
                % (self.describe(), what, self._scrub(_one_line(exc.cause))), backend=self.describe())

    def append(self, entries, expected_head=None):
        entries = list(entries)
        parent = super(PostgresqlSystemOfRecord, self)
        return self._retrying(lambda: parent.append(entries, expected_head=expected_head), "appending to the ledger")

    def advance_counters(self, values):
        parent = super(PostgresqlSystemOfRecord, self)
        return self._retrying(lambda: parent.advance_counters(values), "advancing counters")

    def redact_entry(self, seq, fields, reason, redacted_by, actor):
        # planned again under the lock on every attempt, so a retry after a lost connection cannot redact twice
        parent = super(PostgresqlSystemOfRecord, self)
        return self._retrying(lambda: parent.redact_entry(seq, fields, reason, redacted_by, actor),
                              "redacting a ledger entry")

    #: the tables a redaction rewrites: the ledger row and the query tables that copy entry data
    _REDACTED_TABLES = ("ledger", "task_results", "change_events", "evidence", "reviews", "change_requests",
                        "configuration_items")

    def scrub_storage(self, compact=True):
        """An UPDATE leaves the old row version in the table file until VACUUM reclaims it, and even then its
        bytes stay until the space is reused. ``compact``: ``VACUUM FULL`` of the tables the redaction rewrote,
        which writes them to new files and drops the old ones (it locks each table while it copies it). The
        server's write-ahead log, its archives, backups and replicas keep the old values until they are
        recycled: docs/ledger.md says what to do about them."""
        warnings = ["PostgreSQL keeps the redacted values in its write-ahead log (and any WAL archive, base backup"
                    " or replica) until they are recycled or rebuilt: see docs/ledger.md"]
        if not compact:
            warnings.insert(0, "the old row versions stay in the table files until VACUUM FULL (compact: true)")
            return {"compacted": False, "warnings": warnings}

        def vacuum():
            conn = self._connection()
            try:
                # autocommit connection: VACUUM cannot run inside a transaction block
                for table in self._REDACTED_TABLES:
                    conn.execute("VACUUM (FULL) %s" % table)
            except psycopg.Error as exc:
                if self._lost(exc):
                    self._discard()
                    raise _ConnectionLost("lost the connection to %s while compacting" % self.describe(), exc,
                                          backend=self.describe())
                raise BackendUnavailable("cannot VACUUM FULL the PostgreSQL system of record %s after the redaction:"
                                         " %s (the redaction itself is recorded)"
                                         % (self.describe(), self._scrub(_one_line(exc))), backend=self.describe())

        self._retrying(vacuum, "compacting the tables after a redaction")
        return {"compacted": True, "warnings": warnings}

    def next_number(self, counter):
        # A retry after a COMMIT whose acknowledgement was lost may skip one
        # number; numbers stay unique, which is what matters.
        parent = super(PostgresqlSystemOfRecord, self)
        return self._retrying(lambda: parent.next_number(counter), "allocating a number")

    # -- reads from a streaming replica --------------------------------------
    def read_source(self):
        if not self.read_dsn:
            return None
        if self._read_source is None:
            self._choose_read_server()
        return dict(self._read_source)

    def route_reads(self, min_seq=0):
        if not self.read_dsn:
            return None
        # a replica that failed a moment ago is left alone until _replica_retry_at: its _read_source still says why
        resting = self._replica is None and self._replica_retry_at is not None and time.monotonic() < self._replica_retry_at
        if not resting:
            self._replayed_seq = self._replica_lag = None
            self._choose_read_server(min_seq=min_seq, wait=False)
        return dict(self._read_source, replayed_seq=self._replayed_seq, replica_lag_seconds=self._replica_lag,
                    cause=self._read_cause)

    def _fall_back(self, why, cause="error", keep_connection=False):
        if not keep_connection:
            self._close_replica()
        self._read_cause = cause
        self._read_source = {"server": "primary", "lag_seconds": None, "replica": describe_dsn(self.read_dsn),
                             "reason": "reading from the primary: the read replica %s %s"
                                       % (describe_dsn(self.read_dsn), scrub(why, self.read_dsn))}

    def _close_replica(self):
        if self._replica is not None:
            _close_quietly(self._replica)
            self._replica = None
        self._replica_version = None

    def _choose_read_server(self, min_seq=None, wait=True):
        """Read from the replica if it is a standby of this schema that lags at most ``read_max_lag`` seconds (0 when
        it replayed all it received while streaming) and has replayed entry ``min_seq`` (default: ``read_min_seq``;
        waited for when ``wait``), else from the primary. Once per instance, or once per request (``route_reads``),
        on one replica connection kept open between requests."""
        min_seq = self.read_min_seq if min_seq is None else min_seq
        in_recovery = caught_up = replay_age = replayed = version = None
        # a connection kept from an earlier request may have died meanwhile (the replica restarted): one new one
        for reused in ((True, False) if self._replica is not None else (False,)):
            if not reused:
                self._close_replica()
                try:
                    self._replica = _ForkSafeConnection.connect(self.read_dsn, autocommit=True,
                                                                **connection_kwargs(self.read_dsn))
                except psycopg.Error as exc:
                    self._replica_retry_at = time.monotonic() + REPLICA_RETRY_SECONDS
                    self._fall_back("is unreachable (%s)" % _one_line(exc), cause="unreachable")
                    return
                self._replica_retry_at = None
            replica = self._replica
            try:
                if self._replica_version is None or self._replica_version < schema.LATEST_VERSION:
                    self._replica_version = self._schema_version(replica)
                version = self._replica_version
                newest = "(SELECT COALESCE(MAX(seq), 0) FROM ledger)" if (
                    version is not None and version >= schema.LATEST_VERSION) else "NULL"
                in_recovery, caught_up, replay_age, replayed = replica.execute(
                    "SELECT pg_is_in_recovery(),"
                    " pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"
                    " AND COALESCE((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),"
                    " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), %s" % newest).fetchone()
                break
            except psycopg.Error as exc:
                if reused:
                    continue
                # a replica that accepts connections but fails the probe is left alone like an unreachable one
                self._replica_retry_at = time.monotonic() + REPLICA_RETRY_SECONDS
                self._fall_back("cannot be read (%s)" % _one_line(exc))
                return
        self._replayed_seq = replayed
        if not in_recovery:
            self._fall_back("is not a standby (not in recovery)", cause="not-standby", keep_connection=not wait)
            return
        if version is None or version < schema.LATEST_VERSION:
            self._fall_back("has schema version %s, older than %d (not replayed yet)" % (version, schema.LATEST_VERSION),
                            cause="schema", keep_connection=not wait)
            return
        lag = 0.0 if caught_up else (float(replay_age) if replay_age is not None else None)
        self._replica_lag = lag
        if lag is None or lag > self.read_max_lag:
            self._fall_back("lags %s behind (postgresql_read_max_lag: %d s)" % (
                "an unknown time" if lag is None else "%.1f s" % lag, self.read_max_lag), cause="lag",
                keep_connection=not wait)
            return
        if min_seq:
            if wait:
                replayed = self._replayed_through(replica, min_seq)
                self._replayed_seq = replayed
            if replayed < min_seq:
                self._fall_back("has not replayed entry %d yet (its newest is %d)" % (min_seq, replayed),
                                cause="position", keep_connection=not wait)
                return
        self._read_cause = None
        self._read_source = {"server": "replica", "lag_seconds": lag, "replica": describe_dsn(self.read_dsn),
                             "reason": None}

    def _replayed_through(self, replica, wanted):
        """The replica's newest ledger entry, waited for (polling) until it reaches ``wanted`` or
        min(READ_MIN_SEQ_WAIT, read_max_lag) seconds pass: streaming replay is usually milliseconds behind."""
        deadline = time.monotonic() + min(READ_MIN_SEQ_WAIT, self.read_max_lag)
        while True:
            try:
                newest = replica.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger").fetchone()[0]
            except psycopg.Error:
                return 0
            if newest >= wanted or time.monotonic() >= deadline:
                return newest
            time.sleep(0.1)

    def _query(self, sql, params=()):
        if self.read_dsn:
            if self._read_source is None:
                self._choose_read_server()
            if self._read_source["server"] == "replica":
                try:
                    with self._replica.cursor() as cursor:
                        cursor.execute(self._sql(sql), params, **self._read_options(sql))
                        return cursor.fetchall()
                except psycopg.Error as exc:
                    # gone in the middle of a task: the rest of its reads go to the primary, and it says so
                    self._fall_back("failed while reading (%s)" % _one_line(exc))
        parent = super(PostgresqlSystemOfRecord, self)

        def attempt():
            self._connection()
            try:
                return parent._query(sql, params)
            except psycopg.Error as exc:
                self._raise_read_error(exc)

        return self._retrying(attempt, "reading")

    def archive_state(self):
        """``SqlSystemOfRecord.archive_state`` as one ``COPY ... TO STDOUT``, streamed: one snapshot, sorted by the
        server in byte order (``COLLATE "C"``: in a UTF8 database, the order of the code points Python sorts
        ``str`` by). From the server the store's other reads go to (a replica when one serves them, so that the
        state matches the ``archive_point`` and tables read there; the primary if the replica fails before its
        first row). The connection is busy until the last row is read."""
        if self.read_dsn:
            if self._read_source is None:
                self._choose_read_server()
            if self._read_source["server"] == "replica":
                started = False
                try:
                    for row in self._copy_state(self._replica):
                        started = True
                        yield row
                    return
                except psycopg.Error as exc:
                    if started:
                        raise BackendUnavailable("the read replica of %s failed while the archived state was read: %s"
                                                 % (self.describe(), self._scrub(_one_line(exc))),
                                                 backend=self.describe())
                    self._fall_back("failed while reading (%s)" % _one_line(exc))
        try:
            yield from self._copy_state(self._connection())
        except psycopg.Error as exc:
            self._raise_read_error(exc)

    @staticmethod
    def _copy_state(conn):
        with conn.cursor() as cursor:
            with cursor.copy('COPY (SELECT tbl, row_json FROM archive_base ORDER BY tbl COLLATE "C",'
                             ' row_json COLLATE "C") TO STDOUT') as copy:
                yield from copy.rows()

    #: rows of ``archive_base`` a replay fetches at a time
    _STATE_PAGE = 5000

    def _archived_rows_in(self, cursor):
        """A server-side cursor in the replay's transaction (other statements run between its fetches)."""
        with cursor.connection.cursor(name="changeops_archived_state") as rows:
            rows.itersize = self._STATE_PAGE
            rows.execute("SELECT tbl, row_json FROM archive_base")
            yield from rows

    def _read_options(self, sql):
        """A read matching search words (a ``tsquery``) is planned for its words every time: psycopg prepares a
        statement a connection has run five times, and PostgreSQL then keeps a generic plan, made without the
        parameters' values, once it does not look costlier than the custom ones. For a search that plan walks
        the list newest first testing every row, since it cannot know how few rows rare words match: at 700,000
        changes a search matching 22 read all 700,678 rows (2 s, against 14 ms planned for its words), and the
        review service, running each statement again and again on its connections, fell to 4 searches a
        second. Other reads keep psycopg's prepared statements (their plans do not hinge on a value)."""
        return {"prepare": False} if "tsquery" in sql else {}

    def _raise_read_error(self, exc):
        """A read's driver error as the collection's: a lost connection (retried by ``_retrying``), a damaged
        database, else the system of record unavailable; the DSN's password scrubbed from the message."""
        if self._lost(exc):
            self._discard()
            raise _ConnectionLost("lost the connection to the PostgreSQL system of record %s while reading: %s"
                                  % (self.describe(), self._scrub(_one_line(exc))), exc, backend=self.describe())
        self._raise_if_damaged(exc)
        raise BackendUnavailable("cannot read the PostgreSQL system of record %s: %s"
                                 % (self.describe(), self._scrub(_one_line(exc))), backend=self.describe())

    def _packable(self, rests):
        """Whether each read of ``rests`` (``FROM table ...``) may be packed: its table holds at most
        :attr:`PACK_BYTES_UP_TO` bytes (``pg_table_size``: its heap and TOAST). The sizes of the tables read packed
        (``intelligence.PACKED_NOT_NULL``) are read in one statement and kept :attr:`PACK_SIZES_FOR_SECONDS`."""
        tables = [FROM_TABLE.match(rest).group(1) for rest in rests]
        read_at, sizes = self.__dict__.get("_pack_sizes") or (None, {})
        now = time.monotonic()
        if read_at is None or now - read_at > self.PACK_SIZES_FOR_SECONDS or not set(tables) <= set(sizes):
            names = sorted(set(PACKED_NOT_NULL) | set(tables))
            found = self._query("SELECT %s" % ", ".join(["pg_table_size(to_regclass(?))"] * len(names)),
                                tuple(names))[0]
            sizes = dict(zip(names, found))
            self._pack_sizes = (now, sizes)
        return [(sizes.get(table) or 0) <= self.PACK_BYTES_UP_TO for table in tables]

    def _queries(self, statements):
        """The statements in one pipeline: one round trip for all (the CIs of a play and their facets), where each
        would wait for its answer and, under load, for the server process to be scheduled. A reader routed to a
        replica reads them one by one (``_query`` chooses its server)."""
        if self.read_dsn or len(statements) < 2:
            return super(PostgresqlSystemOfRecord, self)._queries(statements)

        def attempt():
            conn = self._connection()
            cursors = []
            try:
                with conn.pipeline():
                    for sql, params in statements:
                        cursor = conn.cursor()
                        cursors.append(cursor)
                        cursor.execute(self._sql(sql), params)
                    return [cursor.fetchall() for cursor in cursors]
            except psycopg.Error as exc:
                self._raise_read_error(exc)
            finally:
                for cursor in cursors:
                    cursor.close()

        return self._retrying(attempt, "reading")

    def check_storage(self):
        """Reads every page of the ledger table (up to :data:`CHECK_STORAGE_MAX_BYTES`): the server checks each
        page header it reads (and its checksum, when the cluster has data checksums), and a damaged one
        raises ``LedgerCorrupted``. Indexes and the query tables are not read; ``ledger_verify`` and, for
        the database administrator, the ``amcheck`` extension check the rest."""
        if self._query("SELECT pg_relation_size('ledger')")[0][0] <= CHECK_STORAGE_MAX_BYTES:
            # the data column is in no index, so this reads the table itself, page by page
            self._query("SELECT SUM(OCTET_LENGTH(data)) FROM ledger")

    def backup(self, destination, tool=None):
        """``pg_dump --format=custom`` of the database, from a snapshot a REPEATABLE READ transaction of ours exports
        (``--snapshot``): the head read in that transaction is exactly the newest entry in the dump, and writers go
        on meanwhile. The password reaches pg_dump in its environment (PGPASSWORD), never on its command line."""
        pg_dump = tool or shutil.which("pg_dump")
        if not pg_dump or not os.path.isfile(pg_dump):
            raise ConfigurationError("cannot back up %s: pg_dump %s: install the PostgreSQL client (the server's major"
                                     " version or newer), or give its path" % (
                                         self.describe(), "was not found on PATH" if not tool else "%s does not exist"
                                         % tool))
        self._connection()  # the schema is current before it is dumped
        params = dict(self._connect_kwargs, **_conninfo.conninfo_to_dict(self.dsn))
        password = params.pop("password", None)
        environment = dict(os.environ)
        if password:
            environment["PGPASSWORD"] = str(password)
        partial = destination + ".partial"
        try:
            snapshot_conn = _ForkSafeConnection.connect(self.dsn, autocommit=True, **self._connect_kwargs)
        except psycopg.Error as exc:
            raise BackendUnavailable("cannot connect to %s for a backup: %s" % (self.describe(), self._scrub(_one_line(exc))),
                                     backend=self.describe())
        try:
            snapshot_conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = snapshot_conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            head = snapshot_conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
            if os.path.exists(partial):
                os.remove(partial)
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            command = [pg_dump, "--format=custom", "--no-password", "--snapshot=%s" % snapshot, "--file=%s" % partial,
                       "--dbname=%s" % _conninfo.make_conninfo("", **params)]
            # controller-side backend code, no AnsibleModule here to offer run_command
            done = subprocess.run(  # pylint: disable=ansible-bad-function
                command, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                check=False)
            if done.returncode != 0:
                raise BackendUnavailable("pg_dump of %s failed (exit %d): %s" % (
                    self.describe(), done.returncode, self._scrub(done.stderr.decode("utf-8", "replace").strip())),
                    backend=self.describe())
            snapshot_conn.execute("COMMIT")
            descriptor = os.open(partial, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(partial, destination)
        except psycopg.Error as exc:
            raise BackendUnavailable("cannot back up %s: %s" % (self.describe(), self._scrub(_one_line(exc))),
                                     backend=self.describe())
        except OSError as exc:
            raise BackendUnavailable("cannot back up %s to %s: %s" % (self.describe(), destination, exc),
                                     backend=self.describe())
        finally:
            _close_quietly(snapshot_conn)
            if os.path.exists(partial):
                os.remove(partial)
        return {"format": "pg_dump custom", "head_seq": head[0] if head else 0, "head_hash": head[1] if head else None}

    def read_aside(self, read):
        """``SystemOfRecord.read_aside``: ``read`` runs in a thread on a store of its own (this one's configuration and
        its own connection), kept for this store's next read aside, and closed with this store."""
        # this store connected first, here: whatever connecting imports the first time is imported on the caller's
        # thread, not the read's ("threads of ours never import", docs/architecture.md); the caller reads on it next
        self._connection()
        outcome = {}

        def work():
            try:
                with self._aside_lock:
                    if self._aside is None:
                        self._aside = PostgresqlSystemOfRecord(self.config)
                    outcome["result"] = read(self._aside)
            except BaseException as exc:  # pylint: disable=broad-except
                outcome["error"] = exc

        thread = threading.Thread(target=work, name="changeops-read-aside", daemon=True)
        thread.start()

        def wait():
            thread.join()
            if "error" in outcome:
                raise outcome["error"]
            return outcome["result"]
        return wait

    def close(self):
        # (not under the lock: a process forked while a thread of its parent read aside would wait for ever)
        aside, self._aside = self._aside, None
        if aside is not None:
            aside.close()
        self._close_replica()
        if self._conn is not None and self._pid != os.getpid():
            _INHERITED_CONNECTIONS.append(self._conn)
            self._conn = None
        self._discard()


def _one_line(exc):
    """The error text on one line (libpq spreads hints over several)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(exc).__name__


def _close_quietly(conn):
    try:
        conn.close()
    except Exception:  # pylint: disable=broad-except
        pass
