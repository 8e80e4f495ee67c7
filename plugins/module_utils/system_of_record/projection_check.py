# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check that the query tables still say what the ledger says.

The hash chain protects the ledger, but the register, the info modules, the
gate and the inventory read the query tables (projections). Someone who can
write the database could edit those and leave the chain intact. This module
replays the ledger into a fresh SQLite database (a scratch file for a live
ledger's check: its query tables can be gigabytes) with the same projectors and
compares every query table with the live one: by keyed multiset digests, the
live rows read a page at a time (constant memory), and row by row only for the
part of a table that differs (:func:`table_problems`).

Counters (change request numbers) live outside the ledger and are not compared.
"""

from __future__ import annotations

import collections
import decimal
import fractions
import hashlib
import json
import math
import os
import shutil
import sqlite3
import tempfile
import zlib

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import (
    change_index,
    metric_rollups,
    projections,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.statements import Statements
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.schema import (
    BACKFILL_METRIC_LEADS_PACKED,
    MIGRATIONS,
    PYTHON_STEPS,
    filled_columns,
    statements_for,
)

#: query tables and the column that identifies a row in a report
PROJECTION_TABLES = collections.OrderedDict([
    ("change_events", "run_id"),
    ("run_hosts", "run_id"),
    ("task_results", "seq"),
    ("configuration_items", "ci_id"),
    ("ci_identities", "ci_id"),
    ("ci_relationships", "source"),
    ("change_requests", "number"),
    ("evidence", "seq"),
    ("reviews", "seq"),
    ("policies", "version"),
    ("ledger_archives", "archive_seq"),
    # the review service's (change_index.py; its free-text index follows change_list.words)
    ("change_list", "run_id"),
    ("change_list_facets", "list_key"),
    ("change_list_counts", "facet"),
    ("acknowledgements", "seq"),
    ("review_accounts", "name"),
    ("review_audit", "seq"),
    # change intelligence (intelligence.py)
    ("ci_changes", "ci_id"),
    ("ci_facets", "ci_id"),
    ("change_facts", "run_id"),
    ("change_links", "seq"),
    ("change_request_windows", "number"),
    # daily metric rollups (metric_rollups.py)
    ("metric_changes", "run_id"),
    ("metric_days", "day"),
    ("metric_ci_labels", "ci_id"),
    ("metric_ci_next", "ci_id"),
])


def rebuild(entries, base_rows=(), path=":memory:", with_ledger=True):
    """A SQLite database (in memory, or a scratch file at ``path``) holding the query tables rebuilt from
    ``entries`` (in chain order), starting from ``base_rows`` (``(table, row_json)``: the state at the last
    archived entry, see :func:`load_rows`) instead of empty tables."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if path != ":memory:":
            # a scratch file nobody else reads, removed by the caller: no journal, no fsync
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
        for migration in MIGRATIONS:
            for statement in statements_for("INTEGER", migration):
                conn.execute(statement)
        conn.execute("BEGIN")
        db = Statements(conn.cursor())  # sqlite3 speaks the projectors' dialect: ``?`` placeholders
        load_rows(db, base_rows)
        for entry in entries:
            if with_ledger:
                # the ledger table too, as a replay leaves it (projectors never read it: docs/architecture.md)
                db.execute("INSERT INTO ledger (seq, entry_id, at, kind, subject, actor, data, prev_hash, hash)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (entry.seq, entry.id, entry.at, entry.kind, entry.subject, entry.actor, entry.data_json(),
                            entry.prev_hash, entry.hash))
            projections.project(db, entry)
        conn.execute("COMMIT")
    except BaseException:
        conn.close()  # (the caller gets no connection to close: a refused state row, a projector's error)
        raise
    return conn


def state_after_archive(conn, last_seq):
    """The query tables' state an archive up to ``last_seq`` leaves behind, from a rebuilt scratch database:
    the archive takes the task results' detail, the summaries stay (as the ``ledger.archived`` projector does).

    Yields sorted ``(table, row_json)`` rows without holding them: each row's JSON goes into a table of the scratch
    database, which SQLite sorts (spilling to temporary files) and hands back a row at a time. Its BINARY order
    compares the UTF-8 bytes, which order as the code points Python sorts ``str`` by: the order of
    :func:`state_digest`'s sort."""
    conn.execute("DELETE FROM task_results WHERE seq <= ?", (last_seq,))
    conn.execute("CREATE TEMP TABLE archived_state (tbl TEXT NOT NULL, row_json TEXT NOT NULL)")
    for table in PROJECTION_TABLES:
        columns = columns_of(conn, table)
        rows = conn.cursor().execute("SELECT %s FROM %s" % (", ".join(columns), table))
        conn.executemany("INSERT INTO archived_state (tbl, row_json) VALUES (?, ?)",
                         ((table, canonical_json(dict(zip(columns, values)))) for values in rows))
    yield from conn.execute("SELECT tbl, row_json FROM archived_state ORDER BY tbl, row_json")  # (a row at a time)


#: the Python steps a migration's ``FilledColumns`` may fill its columns by, as functions of the statements
_PYTHON_FILLS = {BACKFILL_METRIC_LEADS_PACKED: metric_rollups.backfill_leads_packed}


def _fills_by_table():
    fills = {}
    for step in filled_columns():
        fill = _PYTHON_FILLS[step.fill] if step.fill in PYTHON_STEPS else step.fill
        fills.setdefault(step.table, []).append((step.column_names, fill))
    return fills


#: per query table, the columns migrations added to it and filled from the query tables, each group with its filling
#: (a statement, or a function of the statements), from the migrations' ``FilledColumns`` steps: an archive's state
#: made before such a migration has rows without them, and is brought up to date as the migration brought the live
#: tables (from the same state's rows), so a replay from it gives what the live tables hold
FILLED_BY_MIGRATION = _fills_by_table()
#: the metric tables migration 13 made and backfilled from the intelligence tables
_METRIC_TABLES = frozenset(("metric_changes", "metric_days", "metric_ci_labels"))


def load_rows(db, rows):
    """Insert ``(table, row_json)`` rows (a row as a JSON object of its columns) into the query tables.

    A state archived by an older collection is brought to this schema as the upgrade brought the live tables,
    from the state's own rows: the metric tables backfilled when it predates them (migrations 13 and 16, or 14's
    shape of ``metric_ci_next``), and the columns of :data:`FILLED_BY_MIGRATION` filled. Otherwise a replay from it
    (the projection check, a redaction's rebuild) would lack what the upgrade gave the archived changes, and the
    check would report them as altered."""
    loaded = set()
    fills = []
    next_rows_stale = False
    for table, row_json in rows:
        if table not in PROJECTION_TABLES:
            raise ValueError("the archived query-table state names table %r, which is not a query table" % (table,))
        row = json.loads(row_json)
        if table == "metric_ci_next" and "start_us" not in row:
            next_rows_stale = True  # (migration 14's shape: migration 16 made the table again, backfilled)
            continue
        columns = sorted(row)
        db.execute("INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(columns), ", ".join("?" * len(columns))),
                   tuple(row[column] for column in columns))
        loaded.add(table)
        for columns, fill in FILLED_BY_MIGRATION.get(table, ()):
            if fill not in fills and not all(column in row for column in columns):
                fills.append(fill)
    # (not in a replay inside an older migration, which has its tables only: the later migrations bring them, with
    # the rows loaded here, up to date as they do the rest)
    if rows and getattr(db, "tables", None) is None:
        _upgrade_loaded(db, loaded, fills, next_rows_stale)
    if "change_list" in loaded:
        # SQLite's free-text index of the change list is external content: told of rows loaded behind its back
        change_index.loaded(db)


def _upgrade_loaded(db, loaded, fills, next_rows_stale):
    """The migrations' backfills and fills over an older state's rows just loaded (:func:`load_rows`)."""
    if not loaded & _METRIC_TABLES:
        metric_rollups.backfill(db)
        fills = [fill for filled in FILLED_BY_MIGRATION.values() for _columns, fill in filled]
    for fill in fills:
        if callable(fill):
            fill(db)
        else:
            db.execute(fill)
    if next_rows_stale or "metric_ci_next" not in loaded:
        metric_rollups.backfill_next(db)


class StateRowRefused(ValueError):
    """A state row :class:`StateDigest` refuses: its table is not a query table, or its text holds a line break (a
    row's canonical JSON never does), either of which could frame two rows as one under the same digest."""


class StateOutOfOrder(StateRowRefused):
    """A state row given to :class:`StateDigest` sorts before the one given before it."""


class StateDigest(object):
    """:func:`state_digest` taken a row at a time, the rows given in sorted order (an archive's state, written or
    read a row at a time); a row out of order raises :class:`StateOutOfOrder`, another refused row
    :class:`StateRowRefused`. Equal rows may repeat."""

    def __init__(self):
        self._digest = hashlib.sha256(b"changeops.itsm archived state v1\n")
        self._last = None
        self.rows = 0

    def update(self, table, row_json):
        if table not in PROJECTION_TABLES or "\n" in row_json:
            raise StateRowRefused("state row %d names table %r, which is not a query table, or holds a line break"
                                  % (self.rows + 1, str(table)[:60]))
        row = (table, row_json)
        if self._last is not None and row < self._last:
            raise StateOutOfOrder("state row %d (table %s) sorts before the row before it" % (self.rows + 1, table))
        self._last = row
        self._digest.update(("%s\t%s\n" % row).encode("utf-8"))
        self.rows += 1

    def hexdigest(self):
        return self._digest.hexdigest()


def digested(rows, digest):
    """``rows`` as they are, each given to ``digest`` (a :class:`StateDigest`) on its way: a state checked by the
    same read that loads or writes it."""
    for table, row_json in rows:
        digest.update(table, row_json)
        yield table, row_json


def state_digest(rows):
    """SHA-256 over sorted ``(table, row_json)`` rows: what a ``ledger.archived`` entry records of the state."""
    digest = StateDigest()
    for table, row_json in sorted(rows):
        digest.update(table, row_json)
    return digest.hexdigest()


def columns_of(conn, table):
    return [row[1] for row in conn.execute("PRAGMA table_info(%s)" % table)]


def primary_key_of(conn, table):
    """The primary key's columns of a query table, in key order (the live tables have the same schema)."""
    return [row[1] for row in sorted(conn.execute("PRAGMA table_info(%s)" % table), key=lambda row: row[5])
            if row[5] > 0]


class ScratchDatabase(object):
    """A file for :func:`rebuild` in a private temporary directory; :meth:`remove` deletes both."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="changeops-projection-check-")
        self.path = os.path.join(self.directory, "rebuilt.sqlite")

    def remove(self):
        shutil.rmtree(self.directory, ignore_errors=True)


#: a multiset's digest is the sum of its rows' digests modulo this (see :func:`table_problems`)
_MULTISET_MODULUS = 1 << 256
#: the buckets a table's rows are digested in, by their reporting key (:data:`PROJECTION_TABLES`): a table that
#: differs is read again for its differing buckets only (:func:`table_problems`)
DIGEST_BUCKETS = 1024
#: the rows (live and rebuilt together) one further reading of a table that differs holds at most, when its
#: differing buckets hold more (a single bucket is read alone whatever it holds)
ROWS_HELD = 100000


#: the types a backend returns a value as that need no normal form (:func:`normal_row`)
_PLAIN_TYPES = frozenset((str, int, type(None)))
#: the normal form of a NaN: a tuple, which no column value's ``repr`` can be taken for
_NAN = ("NaN",)


def _normal(value):
    """``value`` in a form equal for the values Python compares equal whatever type a backend returned them as:
    ``True``, ``1.0`` and ``Decimal("1.0")`` as ``1``, other finite numbers as exact fractions, infinities as
    floats, a NaN as one marker (Python's hash of a NaN is its identity's), bytes-like values as ``bytes``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, decimal.Decimal)):
        decimal_value = isinstance(value, decimal.Decimal)
        if value.is_nan() if decimal_value else math.isnan(value):
            return _NAN
        if value.is_infinite() if decimal_value else math.isinf(value):
            return float(value)
        ratio = fractions.Fraction(value)
        return ratio.numerator if ratio.denominator == 1 else ratio
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def normal_row(row):
    """``row`` as a tuple of :func:`_normal` values (the row itself, as a tuple, when every value is plain already:
    text, integers and NULLs, the usual case)."""
    row = tuple(row)
    if _PLAIN_TYPES.issuperset(map(type, row)):
        return row
    return tuple(map(_normal, row))


def bucket_of(value, buckets=DIGEST_BUCKETS):
    """The bucket of a row whose reporting key is ``value``: a CRC of its normal form, so the same on
    every reading and in every process (the problems of a table come out in the same order each time). Text and
    integers, the usual keys, go straight to the CRC (a number and its digits as text may share a bucket: harmless)."""
    kind = type(value)
    if kind is not str and kind is not int:
        value = _normal(value)
        kind = type(value)
    text = value if kind is str else str(value) if kind is int else repr(value)
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % buckets


def _row_hasher(key):
    """The keyed BLAKE2b of a row (the ``repr`` of its :func:`normal_row`): the function each multiset digest
    sums."""
    keyed = hashlib.blake2b(key=key, digest_size=32)
    from_bytes = int.from_bytes

    def row_hash(row):
        hashing = keyed.copy()
        hashing.update(repr(normal_row(row)).encode("utf-8", "surrogatepass"))
        return from_bytes(hashing.digest(), "big")
    return row_hash


def bucket_digests(rows, key, key_index, buckets=DIGEST_BUCKETS, wanted=None, kept=None):
    """``{bucket: (digest, count)}`` of the buckets that hold rows: per bucket, the sum modulo 2**256 of its rows'
    BLAKE2b keyed by ``key`` (over their normal form) and their number, in constant memory; a row in bucket
    :func:`bucket_of` its reporting key (``row[key_index]``). The order of the rows does not matter; a row's
    multiplicity does. Rows with the same reporting key share a bucket, so an altered row differs in one bucket,
    which holds both of its versions. With ``wanted`` (a set of buckets), only their rows count, and ``kept`` (a
    list) receives them, as normal rows. (Only the buckets used are returned, so comparing a check's many small
    tables costs next to nothing.)"""
    row_hash = _row_hasher(key)
    sums = [0] * buckets
    counts = [0] * buckets
    for row in rows:
        bucket = bucket_of(row[key_index], buckets)
        if wanted is not None:
            if bucket not in wanted:
                continue
            kept.append(normal_row(row))
        sums[bucket] += row_hash(row)
        counts[bucket] += 1
    return {bucket: (sums[bucket] % _MULTISET_MODULUS, count) for bucket, count in enumerate(counts) if count}


#: the digest of a bucket no row is in
_EMPTY_BUCKET = (0, 0)


def table_problems(table, key_column, columns, live_rows, rebuilt_rows, limit, unchanged=None):
    """Problems (dicts, at most ``limit``) where a live query table differs from its replay; ``[]`` when they hold
    the same rows, None when ``unchanged()`` says the live tables moved while the table was read again.

    ``live_rows`` and ``rebuilt_rows`` are functions that read the table's rows (``columns``) afresh, a row at a
    time. Both are first digested per bucket (:func:`bucket_digests`): equal digests in every bucket, the same rows,
    in constant memory. Otherwise both are read again for the differing buckets only, as many at a time as hold
    :data:`ROWS_HELD` rows, and those rows compared exactly (:func:`compare_table`): a check that finds one edited
    row in a table of millions holds that bucket's rows, not the table (which, read whole on both sides, could
    exhaust the memory of the very check that found the edit).

    Why sums, and why a key: a live table can have millions of rows (``task_results``: about 6 million in the
    1,000,000-change-event bench ledger), and a digest held per row cost about 110 bytes a row, some 650 MB for
    that table alone. A sum of row hashes is an incremental multiset hash; unkeyed it could be aimed at (someone who
    edits the live table before the check could search for rows whose hashes sum to the original's), so the hash is
    keyed with 32 random bytes (``os.urandom``) this function draws for the table and never writes anywhere. For
    two different multisets of rows the sums then agree with probability at most 2**-216 (a row's multiplicity
    differs by less than 2**40, and a keyed hash's outputs are independent and uniform). Equal digests mean equal
    ``repr`` of the rows' normal forms (:func:`normal_row`), and so equal rows, but for a chance of that size:
    values a backend returns typed differently from SQLite (``True``, ``1.0`` or ``Decimal("1")`` for ``1``, a
    ``memoryview`` for ``bytes``) have the same normal form, so they neither differ nor cost a second reading.
    A second reading is digested again: rows that change between the two readings of one check while no entry is
    appended are reported (the table is being written behind the ledger's back)."""
    key_index = columns.index(key_column)
    key = os.urandom(32)
    live = bucket_digests(live_rows(), key, key_index)
    rebuilt = bucket_digests(rebuilt_rows(), key, key_index)

    def rows_in(bucket):
        return live.get(bucket, _EMPTY_BUCKET)[1] + rebuilt.get(bucket, _EMPTY_BUCKET)[1]

    def same(first, second, bucket):
        return first.get(bucket, _EMPTY_BUCKET) == second.get(bucket, _EMPTY_BUCKET)

    differing = sorted(bucket for bucket in set(live) | set(rebuilt) if not same(live, rebuilt, bucket))
    problems = []
    while differing and len(problems) < limit:
        if unchanged is not None and not unchanged():
            return None
        group, held = set(), 0
        while differing and (not group or held + rows_in(differing[0]) <= ROWS_HELD):
            bucket = differing.pop(0)
            group.add(bucket)
            held += rows_in(bucket)
        live_kept, rebuilt_kept = [], []
        live_again = bucket_digests(live_rows(), key, key_index, wanted=group, kept=live_kept)
        rebuilt_again = bucket_digests(rebuilt_rows(), key, key_index, wanted=group, kept=rebuilt_kept)
        if not all(same(live_again, live, bucket) and same(rebuilt_again, rebuilt, bucket) for bucket in group):
            if unchanged is not None and not unchanged():
                return None
            # the same rows read twice in one check, with no entry appended, gave other digests: the table is being
            # written behind the ledger's back (what the exact comparison then names is what it read the second time)
            problems.append(_problem(table, key_column, "*", "altered",
                                     "the table's rows changed between two readings of this check while no ledger"
                                     " entry was appended: something writes the table directly"))
        problems += compare_table(table, key_column, columns, live_kept, rebuilt_kept, limit - len(problems))
    return problems[:limit]


def _sort_key(row):
    return tuple((value is None, str(value)) for value in row)


def compare_table(table, key_column, columns, live_rows, rebuilt_rows, limit):
    """Problems (dicts) where ``live_rows`` differ from ``rebuilt_rows``; at most ``limit``. Rows are compared in
    their normal form (:func:`normal_row`), as they are digested."""
    live = collections.Counter(map(normal_row, live_rows))
    rebuilt = collections.Counter(map(normal_row, rebuilt_rows))
    if live == rebuilt:
        return []
    key_index = columns.index(key_column)
    only_live = sorted((live - rebuilt).elements(), key=_sort_key)
    only_rebuilt = sorted((rebuilt - live).elements(), key=_sort_key)
    rebuilt_by_key = collections.defaultdict(list)
    for row in only_rebuilt:
        rebuilt_by_key[row[key_index]].append(row)
    problems = []
    for row in only_live:
        key = row[key_index]
        if rebuilt_by_key.get(key):
            expected = rebuilt_by_key[key].pop(0)
            changed = [columns[i] for i, (a, b) in enumerate(zip(row, expected)) if a != b]
            problems.append(_problem(table, key_column, key, "altered",
                                     "columns %s differ from what the ledger says" % ", ".join(changed)))
        else:
            problems.append(_problem(table, key_column, key, "unexpected",
                                     "the row has no ledger entry behind it"))
    for key, rows in sorted(rebuilt_by_key.items(), key=lambda item: _sort_key((item[0],))):
        for _row in rows:
            problems.append(_problem(table, key_column, key, "missing",
                                     "the ledger has it but the table does not"))
    return problems[:limit]


def _problem(table, key_column, key, problem, detail):
    return {"table": table, "key": "%s=%s" % (key_column, key), "problem": problem,
            "detail": "%s row %s=%s: %s" % (table, key_column, key, detail)}
