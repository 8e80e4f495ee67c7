# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The part of the system of record that SQL backends share.

A subclass supplies a DB-API connection, its placeholder style, how to take
the chain's write lock (``_write_transaction``) and how to migrate. Everything
else, the append algorithm, projections and queries, lives here once.
"""

from __future__ import annotations

import contextlib
import functools
import json

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import (
    CHAIN_ROW_DATA_NEEDED,
    CHAIN_ROW_SALT_NEEDED,
    COMMITTED_FORMATS,
    KIND_ARCHIVED,
    Entry,
    walk_chain,
)
from ansible_collections.changeops.itsm.plugins.module_utils import ledger_redaction
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import GENESIS_HASH, canonical_json, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.errors import (
    ChangeopsError,
    ConfigurationError,
    ConflictError,
    NotFound,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check, projections, schema
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import change_index
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import metric_rollups
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.base import SystemOfRecord
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.sync_state import SqlSyncState
# _Statements is imported from here by older code and tests
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.statements import (  # noqa: F401
    Statements as _Statements,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.review_queries import ReviewQueries
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.intelligence import (
    IntelligenceQueries,
    backfill as backfill_intelligence,
    select_chunked,
)

#: the columns a projector needs, present in every schema version (a migration's ledger replay reads these)
PROJECTED_COLUMNS = "seq, entry_id, at, kind, subject, actor, data, prev_hash, hash"
LEDGER_COLUMNS = PROJECTED_COLUMNS + ", entry_format, salt, payload_root, redactions"


class SqlSystemOfRecord(SqlSyncState, ReviewQueries, IntelligenceQueries, metric_rollups.MetricRollupQueries,
                        SystemOfRecord):
    placeholder = "?"
    #: how ``Statements.insert_rows`` stores many rows (``executemany``, or ``copy`` on PostgreSQL)
    bulk_insert = "executemany"
    #: the task results of given runs, read through the run index (``find_task_results``): SQLite keeps no
    #: statistics, and with a status filter as well it walked the status index over every changed result of the
    #: ledger (triage at 1,000,000 change events: 390 ms a query, 6 s at p95); PostgreSQL's planner has them
    task_results_by_run = "task_results INDEXED BY task_results_run"

    # -- to be provided by the dialect --------------------------------------
    def _connection(self):
        raise NotImplementedError

    def _write_transaction(self):
        """Context manager yielding a cursor that holds the chain's exclusive write lock; commits on success."""
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------
    def _sql(self, sql):
        if self.placeholder == "?":
            return sql
        return sql.replace("%", "%%").replace("?", self.placeholder)

    def _query(self, sql, params=()):
        cursor = self._connection().cursor()
        try:
            cursor.execute(self._sql(sql), params, **self._read_options(sql))
            return cursor.fetchall()
        finally:
            cursor.close()
            self._end_read()

    def _read_options(self, sql):
        """Driver options of one read's ``execute`` (keyword arguments): none by default."""
        return {}

    def _end_read(self):
        """Dialects with implicit transactions end the read here."""

    # -- ledger ---------------------------------------------------------------
    def append(self, entries, expected_head=None):
        """See ``SystemOfRecord.append``. ``expected_head`` ``(seq, hash)`` (``(0, None)``: empty ledger)
        makes the append refuse with ``ConflictError`` when another writer moved the head meanwhile;
        ``ledger_migrate`` relies on it to copy a chain without interleaving foreign entries.

        Under the write lock a batch costs a fixed number of statements, not a few per entry: one query
        finds the ids already stored (idempotency), the entries are sealed onto the head in memory (one
        SHA-256 each: their commitments were computed before the lock), and each run of consecutive
        entries whose kind has a set-based projector (``projections.BATCH_PROJECTORS``: task results,
        the bulk of every run) is stored and projected with one ``executemany`` per table. Any other
        entry is stored and projected on its own, after what came before it in the batch, as before.
        """
        entries = list(entries)
        if not entries:
            return []
        for entry in entries:
            # the payload commitments, and the header a format-2 or -3 hash covers after the previous hash, need no chain
            # position: computed before taking the lock (the lock then holds one SHA-256 of the header per entry)
            entry.prepare()
        headers = dict((id(entry), entry.header()) for entry in entries if entry.format in COMMITTED_FORMATS)
        with self._write_transaction() as cursor:
            return self._append_locked(cursor, _Statements(cursor, self.placeholder, self.bulk_insert), entries,
                                       expected_head, headers)

    def _head_locked(self, db):
        """``(seq, hash)`` of the newest entry, read under the write lock; None for a new ledger (an archive never
        empties the table: its own ``ledger.archived`` entry stays live)."""
        row = db.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None

    def _append_locked(self, cursor, db, entries, expected_head=None, headers=None):
        """The body of :meth:`append`, inside a write transaction that holds the lock.

        The batch's ledger rows are stored together once every entry is projected (one bulk insert: COPY on
        PostgreSQL): no projector reads the ledger table, and the transaction makes rows and projections one
        write. While the batch is projected, ``db.event_docs`` keeps the change-event documents this
        transaction wrote (a run's start, plays, gates and end read the document the entry before wrote), and
        the dialect may queue the statements of a batch that holds entries projected on their own
        (:meth:`_projecting`: PostgreSQL's pipeline mode); a batch of task results alone goes by bulk inserts.
        """
        row = self._head_locked(db)
        seq, prev_hash = row if row else (0, GENESIS_HASH)
        if expected_head is not None and tuple(expected_head) != ((seq, prev_hash) if row else (0, None)):
            raise ConflictError("the ledger head moved to entry %d while this batch was prepared for entry %d"
                                % (seq, expected_head[0]), head_seq=seq)
        seen = set(found[0] for found in db.select_in(
            "SELECT entry_id FROM ledger WHERE entry_id IN ({marks})", set(entry.id for entry in entries)))
        db.event_docs = {}
        try:
            projections.prefetch_event_docs(db, [entry for entry in entries if entry.id not in seen])
            appended = self._project_batch(db, entries, seen, seq, prev_hash, headers)
        finally:
            # defensive: each append has its own Statements, but the cache holds what this transaction wrote and must
            # not be consulted after it (a failed append rolls back)
            db.event_docs = None
            db.absent_events = None
        self._store_rows(cursor, db, [self._ledger_row(entry) for entry in appended])
        return appended

    def _project_batch(self, db, entries, seen, seq, prev_hash, headers=None):
        """Seal and project the batch's new entries in chain order; returns them (their rows are stored after)."""
        appended = []
        pending = []
        # a batch of task results alone is stored by bulk inserts (COPY on PostgreSQL); one with entries projected on
        # their own (a run's start, plays, gates, end: a dozen statements each) may have its statements queued
        queued = any(entry.kind not in projections.BATCH_PROJECTORS for entry in entries)
        with self._projecting(db) if queued else contextlib.nullcontext():
            for entry in entries:
                if entry.id in seen:
                    continue
                batched = entry.kind in projections.BATCH_PROJECTORS
                if not batched:
                    # what this entry's own checks and projector read must include the entries before it
                    projections.project_many(db, pending)
                    pending = []
                    if not self._still_applies(db, entry):
                        continue
                seen.add(entry.id)
                seq += 1
                entry.seal(seq, prev_hash, (headers or {}).get(id(entry)))
                prev_hash = entry.hash
                appended.append(entry)
                pending.append(entry)
                if not batched:
                    projections.project_many(db, pending)
                    pending = []
            projections.project_many(db, pending)
        return appended

    @staticmethod
    def _projecting(db):
        """Context in which a batch with entries projected on their own is projected; a dialect may queue its
        statements there (fetches still wait for their results). SQLite runs each at once."""
        del db
        return contextlib.nullcontext()

    @staticmethod
    def _ledger_row(entry):
        return (entry.seq, entry.id, entry.at, entry.kind, entry.subject, entry.actor, entry.data_json(),
                entry.prev_hash, entry.hash, entry.format, entry.salt, entry.payload_root,
                canonical_json(entry.redactions) if entry.redactions else None)

    @staticmethod
    def _store_rows(cursor, db, rows):
        """Insert ledger rows (tuples in ``LEDGER_COLUMNS`` order) with the dialect's bulk insert."""
        del cursor
        db.insert_rows("ledger", LEDGER_COLUMNS.split(", "), rows)

    @classmethod
    def _insert_sealed(cls, db, entry):
        """Store a sealed entry and apply it to the query tables (inside the write transaction)."""
        db.execute("INSERT INTO ledger (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" % LEDGER_COLUMNS,
                   cls._ledger_row(entry))
        projections.project(db, entry)

    def _replay_ledger(self, cursor, batch=2000, until=None):
        """Rebuild every query table from the ledger (the :data:`schema.REPLAY_LEDGER` migration step).

        Runs on the migration's cursor, inside its transaction and with appends locked out, so the
        tables are never seen half rebuilt. An entry the current projection rules refuse stops the
        upgrade with its seq and kind: the tables stay as they were.
        """
        # a replay in an older migration fills the tables that exist at that point (``until``: its version)
        existing = schema.tables_until(until) if until is not None else None
        db = _Statements(cursor, self.placeholder, self.bulk_insert, tables=existing)
        for table in projection_check.PROJECTION_TABLES:
            if existing is None or table in existing:
                db.execute("DELETE FROM %s" % table)
        change_index.cleared(db)
        last = 0
        if existing is None or "archive_base" in existing:
            # after an archive, the tables start from their state at its last entry, not empty
            point = self._archive_point_in(db)
            if point is not None:
                projection_check.load_rows(db, self._archived_rows_in(cursor))
                last = point["last_seq"]
        while True:
            rows = db.execute("SELECT %s FROM ledger WHERE seq > ? ORDER BY seq LIMIT %d" % (PROJECTED_COLUMNS, batch),
                              (last,)).fetchall()
            for row in rows:
                entry = Entry.from_row(row)
                try:
                    projections.project(db, entry, until=until)
                except ChangeopsError as exc:
                    raise ConfigurationError(
                        "cannot upgrade %s: replaying ledger entry %d (%s) into the query tables failed: %s"
                        % (self.describe(), entry.seq, entry.kind, exc))
            if len(rows) < batch:
                return
            last = rows[-1][0]

    def _backfill_intelligence(self, cursor):
        """The :data:`schema.BACKFILL_INTELLIGENCE` migration step, on the migration's cursor and transaction."""
        backfill_intelligence(_Statements(cursor, self.placeholder, self.bulk_insert))

    def _backfill_metric_rollups(self, cursor):
        """The :data:`schema.BACKFILL_METRIC_ROLLUPS` migration step, on the migration's cursor and transaction."""
        metric_rollups.backfill(_Statements(cursor, self.placeholder, self.bulk_insert))

    def _backfill_metric_next(self, cursor):
        """The :data:`schema.BACKFILL_METRIC_NEXT` migration step, on the migration's cursor and transaction."""
        metric_rollups.backfill_next(_Statements(cursor, self.placeholder, self.bulk_insert))

    def _backfill_metric_leads_packed(self, cursor):
        """The :data:`schema.BACKFILL_METRIC_LEADS_PACKED` migration step, on the migration's cursor and transaction."""
        metric_rollups.backfill_leads_packed(_Statements(cursor, self.placeholder, self.bulk_insert))

    @staticmethod
    def _still_applies(db, entry):
        """An interruption that another run detected (``detected_by_run``) is skipped when, under the write
        lock, its run is no longer running: the run's own end can have been replayed from a spool between
        the detecting run's query and this append, and must not be followed by a false interruption."""
        if entry.kind != "run.interrupted" or "detected_by_run" not in (entry.data or {}):
            return True
        row = db.execute("SELECT status FROM change_events WHERE run_id = ?", (entry.subject,)).fetchone()
        return row is not None and row[0] == "running"

    def iter_entries(self, after_seq=0, kinds=None, subject=None, limit=None, batch=2000):
        clauses = ["seq > ?"]
        params = [after_seq]
        if kinds:
            clauses.append("kind IN (%s)" % ", ".join("?" * len(kinds)))
            params.extend(kinds)
        if subject is not None:
            clauses.append("subject = ?")
            params.append(subject)
        produced = 0
        last = after_seq
        while True:
            size = batch if limit is None else min(batch, limit - produced)
            if size <= 0:
                return
            params[0] = last
            rows = self._query(
                "SELECT %s FROM ledger WHERE %s ORDER BY seq LIMIT %d" % (LEDGER_COLUMNS, " AND ".join(clauses), size),
                tuple(params))
            for row in rows:
                yield Entry.from_row(row)
            produced += len(rows)
            if len(rows) < size:
                return
            last = rows[-1][0]

    def verify(self, expected_head=None, projections=False, payloads=True, anchors=None, since=None):
        """See ``SystemOfRecord.verify``; with ``projections`` a valid chain is also replayed into fresh query
        tables that must match the live ones (see ``projection_check``). An incremental verification
        (``since``) does not compare them: that needs the whole chain."""
        report = super(SqlSystemOfRecord, self).verify(expected_head=expected_head, payloads=payloads,
                                                       anchors=anchors, since=since)
        if projections and report.valid and not since:
            report.projections_checked, report.projection_problems = self._check_projections()
        return report

    def _walk(self, expected_head=None, payloads=True, anchors=None, base=None):
        """A chain-only walk reads raw rows (no payload unless a check needs it) through ``ledger.walk_chain``;
        anything it does not find plainly right is walked again by ``verify_rows`` for the exact report."""
        if not payloads:
            report = walk_chain(self._chain_rows(base[0] if base else 0), expected_head=expected_head,
                                anchors=anchors, base=base, load_entries=self.entries_at)
            if report is not None:
                return report
        return super(SqlSystemOfRecord, self)._walk(expected_head=expected_head, payloads=payloads, anchors=anchors,
                                                    base=base)

    #: rows a chain-only walk reads per query: a batch that stays in the CPU's caches (50,000 cost SQLite ~0.7 us
    #: more per entry); PostgreSQL takes more per round trip
    _CHAIN_BATCH = 2000

    def _chain_rows(self, after_seq=0, batch=None):
        """Raw ledger rows after ``after_seq`` in chain order, ``data`` and ``salt`` only where ``walk_chain`` needs
        them (``CHAIN_ROW_DATA_NEEDED``, ``CHAIN_ROW_SALT_NEEDED``)."""
        batch = batch or self._CHAIN_BATCH
        columns = LEDGER_COLUMNS.replace(", data,", ", CASE WHEN %s THEN data END," % CHAIN_ROW_DATA_NEEDED).replace(
            ", salt,", ", CASE WHEN %s THEN salt END," % CHAIN_ROW_SALT_NEEDED)
        statement = "SELECT %s FROM ledger WHERE seq > ? ORDER BY seq LIMIT %d" % (columns, batch)
        last = after_seq
        while True:
            rows = self._query(statement, (last,))
            yield from rows
            if len(rows) < batch:
                return
            last = rows[-1][0]

    def hashes_at(self, seqs):
        return dict(select_chunked(self._query, "SELECT seq, hash FROM ledger", (), (), "seq", seqs))

    def has_hash(self, entry_hash):
        return bool(self._query("SELECT 1 FROM ledger WHERE hash = ? LIMIT 1", (entry_hash,)))

    def entries_at(self, seqs):
        # (each list of seqs in order: the callers ask for seqs in order, so the entries come in order)
        return [Entry.from_row(row) for row in select_chunked(
            self._query, "SELECT %s FROM ledger" % LEDGER_COLUMNS, (), (), "seq", seqs, " ORDER BY seq")]

    def _check_projections(self, limit=20, attempts=3):
        """``(checked, problems)``. A comparison counts only if no entry was appended while it ran;
        after ``attempts`` busy tries it gives up with ``(False, [])`` rather than report a false alarm.

        After an archive the replay starts from the query tables' state at its last entry (``archive_base``),
        whose digest the ``ledger.archived`` entry recorded: the rows the replay loads are digested on their way,
        and a state edited since is reported first."""
        for _attempt in range(attempts):
            head_seq = self.head()[0]
            point = self.archive_point()
            base_digest = projection_check.StateDigest()
            base_rows = projection_check.digested(self.archive_state(), base_digest) if point else []
            # the replay goes to a scratch file, not memory: the query tables of a large live ledger are gigabytes
            # (made inside the try: a replay that fails part-way, a full TMPDIR or an interrupt, must not leave
            # a partial copy of the query tables behind in the temporary directory)
            scratch = projection_check.ScratchDatabase()
            rebuilt = None
            try:
                refused = None
                try:
                    rebuilt = projection_check.rebuild(
                        (entry for entry in self.iter_entries() if entry.seq <= head_seq), base_rows=base_rows,
                        path=scratch.path)
                except projection_check.StateRowRefused as exc:
                    refused = str(exc)
                if point:
                    if self.archive_point() != point:
                        continue  # an archive replaced the state while it was read: read the new one
                    if refused or base_digest.hexdigest() != point.get("state_digest"):
                        return True, [{"table": "archive_base", "key": "archive_seq=%s" % point["seq"],
                                       "problem": "altered",
                                       "detail": "archive_base: the query tables' state at archived entry %s is not"
                                                 " the one ledger entry %s recorded (%s): it was edited"
                                                 % (point["last_seq"], point["seq"], refused or "its digest differs")}]
                problems = []
                for table, key_column in projection_check.PROJECTION_TABLES.items():
                    columns = projection_check.columns_of(rebuilt, table)
                    select = "SELECT %s FROM %s" % (", ".join(columns), table)
                    key_columns = projection_check.primary_key_of(rebuilt, table)
                    # (each reads its table afresh when called: the live one a page at a time)
                    found = projection_check.table_problems(
                        table, key_column, columns, functools.partial(self._paged_rows, table, columns, key_columns),
                        functools.partial(rebuilt.execute, select), limit - len(problems),
                        unchanged=lambda head_seq=head_seq: self.head()[0] == head_seq)
                    if found is None:
                        break  # an append moved the tables meanwhile: try again rather than report (below)
                    problems += found
                    if len(problems) >= limit:
                        break
            finally:
                if rebuilt is not None:
                    rebuilt.close()
                scratch.remove()
            if self.head()[0] == head_seq:
                return True, problems
        return False, []

    #: rows a projection check reads per query of a live table (it holds a sum per bucket, not the rows)
    _PROJECTION_PAGE = 5000

    def _paged_rows(self, table, columns, key_columns, query=None, page=None):
        """The rows of a query table (``columns``), a page at a time in the order of its primary key
        ``key_columns`` (keyset pagination: each page a range scan of the key's index, never an OFFSET to skip),
        so the whole table is never in memory. Rows appended meanwhile can shift the pages; the caller then
        finds the head moved and checks again. ``query(sql, params)`` reads a page (default: :meth:`_query`),
        ``page`` rows at a time (default: :data:`_PROJECTION_PAGE`)."""
        query = query or self._query
        page = page or self._PROJECTION_PAGE
        positions = [columns.index(column) for column in key_columns]
        order = ", ".join(key_columns)
        select = "SELECT %s FROM %s" % (", ".join(columns), table)
        after = None
        while True:
            if after is None:
                rows = query("%s ORDER BY %s LIMIT %d" % (select, order, page), ())
            else:
                rows = query("%s WHERE (%s) > (%s) ORDER BY %s LIMIT %d" % (
                    select, order, ", ".join("?" * len(key_columns)), order, page), after)
            yield from rows
            if len(rows) < page:
                return
            after = tuple(rows[-1][position] for position in positions)

    # -- redaction (see ledger_redaction.py) ----------------------------------------
    def get_entry(self, ref):
        ref = str(ref).strip()
        if ref.isdigit():
            rows = self._query("SELECT %s FROM ledger WHERE seq = ?" % LEDGER_COLUMNS, (int(ref),))
        else:
            rows = self._query("SELECT %s FROM ledger WHERE entry_id = ?" % LEDGER_COLUMNS, (ref,))
        return Entry.from_row(rows[0]) if rows else None

    def redact_entry(self, seq, fields, reason, redacted_by, actor):
        """See ``SystemOfRecord.redact_entry``: plan, ``ledger.redacted`` entry, tombstones and query tables in
        one transaction, planned again under the lock so a concurrent redaction is never undone."""
        with self._write_transaction() as cursor:
            db = _Statements(cursor, self.placeholder, self.bulk_insert)
            row = db.execute("SELECT %s FROM ledger WHERE seq = ?" % LEDGER_COLUMNS, (seq,)).fetchone()
            if row is None:
                raise NotFound("the ledger has no entry %s" % seq, entry=seq)
            plan = ledger_redaction.plan_redaction(Entry.from_row(row), fields)
            if not plan.changes:
                return None
            record = ledger_redaction.redaction_entry(plan, reason, redacted_by, actor)
            record.prepare()
            head = db.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
            record.seal(head[0] + 1, head[1])
            self._insert_sealed(db, record)
            data_json, redactions = plan.stored_state(record.seq)
            db.execute("UPDATE ledger SET data = ?, salt = NULL, payload_root = ?, redactions = ? WHERE seq = ?",
                       (data_json, plan.payload_root, canonical_json(redactions), seq))
            verbatim = projections.VERBATIM_DOCS.get(plan.entry.kind)
            if verbatim and not any(path[0] in verbatim[1] for path, _digest, _value in plan.new):
                # the only query-table copy of these fields is the entry's own row: rewrite its document
                db.execute("UPDATE %s SET doc = ? WHERE seq = ?" % verbatim[0], (data_json, seq))
            else:
                # other tables derive from what changed: rebuild them as ledger_verify's replay would
                self._replay_ledger(cursor)
        return record

    def scrub_storage(self, compact=True):
        """After a redaction: what the backend did so that no page or log it keeps still holds the values."""
        return {"compacted": False, "warnings": []}

    # -- archives (see archives/) -------------------------------------------------------
    def _archive_point_in(self, db):
        row = db.execute("SELECT %s FROM ledger WHERE kind = ? ORDER BY seq DESC LIMIT 1" % LEDGER_COLUMNS,
                         (KIND_ARCHIVED,)).fetchone()
        if row is None:
            return None
        entry = Entry.from_row(row)
        return dict(entry.data, seq=entry.seq)

    def archive_state(self):
        """The query tables' state at the last archived entry: an iterator of ``(table, row_json)`` rows in sorted
        order, read a part at a time, never whole (it keeps a row per archived run and host). Read it to the end
        before the next read of this store."""
        raise NotImplementedError

    def _archived_rows_in(self, cursor):
        """``archive_base``'s ``(table, row_json)`` rows, in no promised order, a part at a time on ``cursor`` inside
        its transaction, which writes between the parts (a replay loading them into the query tables)."""
        raise NotImplementedError

    def archives(self):
        """The archives made of this ledger (rows of ``ledger_archives``), oldest first."""
        return [dict(json.loads(row[0]), seq=row[1]) for row in self._query(
            "SELECT doc, archive_seq FROM ledger_archives ORDER BY last_seq")]

    def archive_boundary(self, cutoff, after_seq=0, until_seq=None):
        """The last entry an archive made now may hold, for entries older than ``cutoff`` (a time text): every
        entry up to it was made before ``cutoff``, none is after ``until_seq``, no playbook run has entries on both
        sides of it (a run's end is projected from its results, which an archive takes out of the query tables),
        and at least the newest entry stays live. Returns ``after_seq`` when there is nothing to archive."""
        row = self._query("SELECT MIN(seq) FROM ledger WHERE seq > ? AND at >= ?", (after_seq, cutoff))
        newer = row[0][0] if row and row[0][0] is not None else None
        boundary = (newer - 1) if newer is not None else self.head()[0] - 1
        if until_seq is not None:
            boundary = min(boundary, until_seq)
        while boundary > after_seq:
            # runs with entries on both sides: the boundary moves back before the first of them
            rows = self._query(
                "SELECT MIN(first_seq) FROM (SELECT subject, MIN(seq) AS first_seq, MAX(seq) AS last_seq FROM ledger"
                " WHERE seq > ? AND kind LIKE 'run.%' GROUP BY subject) AS runs"
                " WHERE first_seq <= ? AND last_seq > ?", (after_seq, boundary, boundary))
            split = rows[0][0] if rows else None
            if split is None:
                break
            boundary = split - 1
        return max(boundary, after_seq)

    def commit_archive(self, first_seq, last_seq, last_hash, records, state_rows):
        """Take entries ``first_seq``..``last_seq`` out of the live ledger, atomically with appending ``records``
        (the archive's checkpoint and ``ledger.archived`` entries, whose projector prunes the task results) and
        replacing the archived query-table state. Refused (``ConflictError``, nothing changed) unless, under the
        write lock, the live ledger still starts at ``first_seq`` and entry ``last_seq`` still has ``last_hash``:
        what is deleted is exactly what the archive holds. Returns the appended records."""
        for record in records:
            record.prepare()
        with self._write_transaction() as cursor:
            db = _Statements(cursor, self.placeholder, self.bulk_insert)
            first = db.execute("SELECT MIN(seq) FROM ledger").fetchone()[0]
            stored = db.execute("SELECT hash FROM ledger WHERE seq = ?", (last_seq,)).fetchone()
            if first != first_seq or stored is None or stored[0] != last_hash:
                raise ConflictError(
                    "the ledger changed while the archive of entries %d to %d was written (it now starts at entry %s,"
                    " and entry %d has hash %s): nothing was deleted; run the archive again"
                    % (first_seq, last_seq, first, last_seq, stored[0][:16] if stored else "none"))
            appended = self._append_locked(cursor, db, records)
            db.execute("DELETE FROM archive_base")
            # (in the order given, sorted: SQLite's archive_state reads them back in rowid order)
            db.insert_rows("archive_base", ("tbl", "row_json"), state_rows)
            db.execute("DELETE FROM ledger WHERE seq <= ?", (last_seq,))
        return appended

    def latest_entry(self, kinds):
        rows = self._query("SELECT %s FROM ledger WHERE kind IN (%s) ORDER BY seq DESC LIMIT 1"
                           % (LEDGER_COLUMNS, ", ".join("?" * len(kinds))), tuple(kinds))
        return Entry.from_row(rows[0]) if rows else None

    def recent_entries(self, kinds, limit=20, data_contains=None):
        sql = "SELECT %s FROM ledger WHERE kind IN (%s)" % (LEDGER_COLUMNS, ", ".join("?" * len(kinds)))
        params = list(kinds)
        if data_contains is not None:
            sql += " AND data LIKE ?"
            params.append("%" + data_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
            sql += " ESCAPE '\\'"
        rows = self._query(sql + " ORDER BY seq DESC LIMIT %d" % int(limit), tuple(params))
        return [Entry.from_row(row) for row in rows]

    # -- witness cursors (see witnesses/) ---------------------------------------------
    def witness_cursor(self, witness):
        rows = self._query("SELECT seq FROM witness_cursors WHERE witness = ?", (witness,))
        return rows[0][0] if rows else None

    def list_witness_cursors(self):
        return dict(self._query("SELECT witness, seq FROM witness_cursors ORDER BY witness"))

    def advance_witness_cursor(self, witness, seq):
        with self._write_transaction() as cursor:
            db = _Statements(cursor, self.placeholder, self.bulk_insert)
            db.execute("INSERT INTO witness_cursors (witness, seq, updated_at) VALUES (?, ?, ?)"
                       " ON CONFLICT (witness) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at"
                       " WHERE witness_cursors.seq < excluded.seq", (witness, int(seq), utc_now()))

    def head(self):
        rows = self._query("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
        return (rows[0][0], rows[0][1]) if rows else (0, None)

    def has_entry(self, entry_id):
        return bool(self._query("SELECT 1 FROM ledger WHERE entry_id = ?", (entry_id,)))

    # -- change events ----------------------------------------------------------
    _EVENT_COLUMNS = ("run_id, started_at, ended_at, status, dry_run, user_name, controller, playbook, environment,"
                      " authorisation, authorisation_ref, review_status, host_count, changed_host_count,"
                      " failed_host_count, doc, last_seq, kind")

    @staticmethod
    def _event(row):
        doc = json.loads(row[15])
        event = dict(doc)
        event.update(
            run_id=row[0], started_at=row[1], ended_at=row[2], status=row[3], dry_run=bool(row[4]),
            user=row[5], controller=row[6], playbook=row[7], environment=row[8],
            authorisation=row[9], authorisation_ref=row[10], review_status=row[11], host_count=row[12],
            changed_host_count=row[13], failed_host_count=row[14], last_seq=row[16])
        # rows written before change events had a kind are playbook runs
        event["kind"] = row[17] or "playbook"
        return event

    def get_change_event(self, run_id):
        rows = self._query("SELECT %s FROM change_events WHERE run_id = ?" % self._EVENT_COLUMNS, (run_id,))
        if not rows:
            return None
        event = self._event(rows[0])
        event["hosts"] = [
            {"host": r[0], "ok": r[1], "changed": r[2], "failed": r[3], "skipped": r[4], "unreachable": r[5]}
            for r in self._query(
                "SELECT host, ok, changed, failed, skipped, unreachable FROM run_hosts WHERE run_id = ? ORDER BY host",
                (run_id,))]
        return event

    def find_change_events(self, since=None, until=None, host=None, playbook=None, outcome=None,
                           authorisation=None, controller=None, status=None, limit=None, offset=0, kind=None):
        clauses, params = [], []
        if kind:
            kinds = kind if isinstance(kind, (list, tuple)) else [kind]
            clauses.append("COALESCE(kind, 'playbook') IN (%s)" % ", ".join("?" * len(kinds)))
            params.extend(kinds)
        if since:
            clauses.append("started_at >= ?")
            params.append(since)
        if until:
            clauses.append("started_at <= ?")
            params.append(until)
        if host:
            clauses.append("run_id IN (SELECT run_id FROM run_hosts WHERE host = ?)")
            params.append(host)
        if playbook:
            clauses.append("playbook LIKE ?")
            params.append("%" + playbook + "%")
        for column, value in (("status", outcome or status), ("authorisation", authorisation),
                              ("controller", controller)):
            if value:
                values = value if isinstance(value, (list, tuple)) else [value]
                clauses.append("%s IN (%s)" % (column, ", ".join("?" * len(values))))
                params.extend(values)
        sql = "SELECT %s FROM change_events" % self._EVENT_COLUMNS
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY started_at DESC, run_id"
        if limit:
            sql += " LIMIT %d OFFSET %d" % (int(limit), int(offset or 0))
        return [self._event(row) for row in self._query(sql, tuple(params))]

    def get_task_results(self, run_id, host=None, changed_only=False):
        sql = "SELECT seq, doc FROM task_results WHERE run_id = ?"
        params = [run_id]
        if host:
            sql += " AND host = ?"
            params.append(host)
        if changed_only:
            sql += " AND changed = 1"
        sql += " ORDER BY seq"
        results = []
        for seq, doc in self._query(sql, tuple(params)):
            result = json.loads(doc)
            result["seq"] = seq
            results.append(result)
        return results

    def find_task_results(self, run_ids=None, statuses=None, batch=500):
        # One query for every run (or one per batch of run ids, which keeps the
        # statement under the dialects' bound-parameter limits).
        status_clause, status_params = "", ()
        if statuses:
            status_clause = " AND status IN (%s)" % ", ".join("?" * len(statuses))
            status_params = tuple(statuses)
        if run_ids is None:
            batches = [None]
        else:
            run_ids = list(run_ids)
            batches = [run_ids[start:start + batch] for start in range(0, len(run_ids), batch)]
        rows = []
        for chunk in batches:
            if chunk is None:
                sql = "SELECT seq, doc FROM task_results WHERE 1 = 1" + status_clause
                params = status_params
            elif not chunk:
                continue
            else:
                sql = "SELECT seq, doc FROM %s WHERE run_id IN (%s)%s" % (
                    self.task_results_by_run, ", ".join("?" * len(chunk)), status_clause)
                params = tuple(chunk) + status_params
            rows.extend(self._query(sql + " ORDER BY seq", params))
        if run_ids is not None and len(batches) > 1:
            rows.sort(key=lambda row: row[0])
        for seq, doc in rows:
            result = json.loads(doc)
            result["seq"] = seq
            yield result

    # -- configuration items ----------------------------------------------------
    _CI_COLUMNS = ("ci_id, attributes, version, created_at, updated_at, last_change_run_id, last_seq,"
                   " name, ci_class, status, environment")

    @staticmethod
    def _ci(row):
        ci = {"ci_id": row[0], "attributes": json.loads(row[1]), "version": row[2], "created_at": row[3],
              "updated_at": row[4], "last_change_run_id": row[5], "last_seq": row[6]}
        # The indexed columns hold the effective values (a CI registered without
        # a class is a cmdb_ci), so report those rather than the raw attributes.
        ci.update(name=row[7], status=row[9], environment=row[10])
        ci["class"] = row[8]
        return ci

    def get_ci(self, ci_id):
        rows = self._query("SELECT %s FROM configuration_items WHERE ci_id = ?" % self._CI_COLUMNS, (ci_id,))
        if not rows:
            return None
        ci = self._ci(rows[0])
        ci["identities"] = dict(self._query("SELECT kind, value FROM ci_identities WHERE ci_id = ?", (ci_id,)))
        ci["relationships"] = self.get_relationships(ci_id)
        return ci

    def find_cis(self, name=None, ci_class=None, status=None, environment=None, names=None, limit=None):
        clauses, params = [], []
        for column, value in (("name", name), ("ci_class", ci_class), ("status", status),
                              ("environment", environment), ("name", names)):
            if value:
                values = value if isinstance(value, (list, tuple, set)) else [value]
                clauses.append("%s IN (%s)" % (column, ", ".join("?" * len(values))))
                params.extend(values)
        sql = "SELECT %s FROM configuration_items" % self._CI_COLUMNS
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY name, ci_id"
        if limit:
            sql += " LIMIT %d" % int(limit)
        return [self._ci(row) for row in self._query(sql, tuple(params))]

    def find_ci_by_identity(self, kind, value):
        rows = self._query("SELECT ci_id FROM ci_identities WHERE kind = ? AND value = ?", (kind, str(value)))
        return rows[0][0] if rows else None

    def find_cis_by_identities(self, kind, values):
        return dict(self._select_in("SELECT value, ci_id FROM ci_identities", ["kind = ?"], [kind], "value",
                                    [str(value) for value in values]))

    def get_cis(self, ci_ids):
        ci_ids = list(ci_ids)
        found = {}
        for row in self._select_in("SELECT %s FROM configuration_items" % self._CI_COLUMNS, [], [], "ci_id", ci_ids):
            found[row[0]] = dict(self._ci(row), identities={})
        for ci_id, kind, value in self._select_in("SELECT ci_id, kind, value FROM ci_identities", [], [], "ci_id",
                                                  ci_ids):
            if ci_id in found:
                found[ci_id]["identities"][kind] = value
        return found

    def get_relationships(self, ci_id=None, rel_type=None, direction="both"):
        clauses, params = [], []
        if ci_id is not None:
            if direction == "outbound":
                clauses.append("source = ?")
                params.append(ci_id)
            elif direction == "inbound":
                clauses.append("target = ?")
                params.append(ci_id)
            else:
                clauses.append("(source = ? OR target = ?)")
                params.extend([ci_id, ci_id])
        if rel_type:
            clauses.append("rel_type = ?")
            params.append(rel_type)
        sql = "SELECT source, rel_type, target FROM ci_relationships"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY source, rel_type, target"
        return [{"source": r[0], "type": r[1], "target": r[2]} for r in self._query(sql, tuple(params))]

    # -- change requests ----------------------------------------------------------
    def get_change_request(self, number):
        rows = self._query("SELECT doc, version FROM change_requests WHERE number = ?", (number,))
        if not rows:
            return None
        record = json.loads(rows[0][0])
        record["version"] = rows[0][1]
        return record

    def find_change_requests(self, state=None, change_type=None, ci_id=None, limit=None):
        clauses, params = [], []
        for column, value in (("state", state), ("change_type", change_type)):
            if value:
                values = value if isinstance(value, (list, tuple)) else [value]
                clauses.append("%s IN (%s)" % (column, ", ".join("?" * len(values))))
                params.extend(values)
        sql = "SELECT doc, version FROM change_requests"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at DESC, number DESC"
        records = []
        for doc, version in self._query(sql, tuple(params)):
            record = json.loads(doc)
            record["version"] = version
            if ci_id and ci_id not in (record.get("affected_cis") or []):
                continue
            records.append(record)
            if limit and len(records) >= limit:
                break
        return records

    def next_number(self, counter):
        with self._write_transaction() as cursor:
            db = _Statements(cursor, self.placeholder, self.bulk_insert)
            db.execute("INSERT INTO counters (name, value) VALUES (?, 1)"
                       " ON CONFLICT (name) DO UPDATE SET value = counters.value + 1", (counter,))
            return db.execute("SELECT value FROM counters WHERE name = ?", (counter,)).fetchone()[0]

    def counters(self):
        """Every named counter and its last allocated value (counters live outside the ledger)."""
        return dict(self._query("SELECT name, value FROM counters ORDER BY name"))

    def advance_counters(self, values):
        """Raise counters to at least ``values`` ({name: value}), never lower them; returns the names raised."""
        raised = []
        with self._write_transaction() as cursor:
            db = _Statements(cursor, self.placeholder, self.bulk_insert)
            for name, value in sorted(values.items()):
                row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
                if row is not None and row[0] >= value:
                    continue
                db.execute("INSERT INTO counters (name, value) VALUES (?, ?)"
                           " ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, int(value)))
                raised.append(name)
        return raised

    # -- evidence and reviews ------------------------------------------------------
    def find_evidence(self, run_id=None, ci_id=None, host=None, checklist=None, limit=None):
        clauses, params = [], []
        for column, value in (("run_id", run_id), ("ci_id", ci_id), ("host", host), ("checklist", checklist)):
            if value:
                clauses.append("%s = ?" % column)
                params.append(value)
        sql = "SELECT seq, doc FROM evidence"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seq DESC"
        if limit:
            sql += " LIMIT %d" % int(limit)
        records = []
        for seq, doc in self._query(sql, tuple(params)):
            record = json.loads(doc)
            record["seq"] = seq
            records.append(record)
        return records

    def find_reviews(self, run_id=None):
        sql = "SELECT seq, doc FROM reviews"
        params = ()
        if run_id:
            sql += " WHERE run_id = ?"
            params = (run_id,)
        sql += " ORDER BY seq DESC"
        return [dict(json.loads(doc), seq=seq) for seq, doc in self._query(sql, params)]

    # -- the published change policy -----------------------------------------------
    def get_policy(self, version=None):
        if version is None:
            rows = self._query("SELECT doc, last_seq FROM policies ORDER BY version DESC LIMIT 1")
        else:
            rows = self._query("SELECT doc, last_seq FROM policies WHERE version = ?", (int(version),))
        return dict(json.loads(rows[0][0]), seq=rows[0][1]) if rows else None

    def find_policies(self, sha256=None, limit=None):
        sql = "SELECT doc, last_seq FROM policies"
        params = ()
        if sha256 is not None:
            sql += " WHERE sha256 = ?"
            params = (sha256,)
        sql += " ORDER BY version DESC"
        if limit:
            sql += " LIMIT %d" % int(limit)
        versions = []
        for doc, seq in self._query(sql, params):
            version = json.loads(doc)
            version.pop("text", None)
            version.pop("document", None)
            version["seq"] = seq
            versions.append(version)
        return versions
