# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change intelligence tables: projectors, their backfill, and the queries over them (issue 18).

Four narrow query tables, kept from the ledger like every other one (``projection_check`` replays
and compares them), answer the questions of ``module_utils/intelligence/`` with indexed reads:

``ci_changes``
    one row per CI a run changed (from ``ci.changed_by_run``) with the run's start: "what changed
    this CI (or anything it depends on) before the incident" and the per-service metrics;
``ci_facets``
    the CI attributes changes are grouped by: ``service`` (one row per name of its ``services``),
    ``owner``, ``support_group``, ``criticality``;
``change_facts``
    a narrow copy of each change event's columns that metrics read (with ``commit_at``, the git commit
    time of the playbook tree that ``run.started`` records), so a metrics query never parses the wide
    change event documents;
``change_links``
    incidents linked to a change and changes declared as the remediation of another (``run.linked``);
``change_request_windows``
    each change request's state and planned window, so collisions read only the requests whose window
    overlaps.

The projectors *follow* an entry kind's own projector (``projections.FOLLOWERS``) and only ever
recompute their rows from the entry and the tables the main projectors keep, so the backfill of an
existing ledger (:func:`backfill`, the migration's ``BACKFILL_INTELLIGENCE`` step) and a replay of the
ledger fill them identically.

:class:`IntelligenceQueries` is mixed into the SQL backends: plain-dict methods of the
``SystemOfRecord`` interface (``base.py``) that the gate, the info modules, the register and the
review service call. No SQL lives anywhere else.
"""

from __future__ import annotations

import itertools
import json
import operator
import re

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import name_list
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema

#: the schema version that made these tables: a replay inside an older migration leaves them alone
TABLES_VERSION = schema.version_of(schema.INTELLIGENCE_MIGRATION)
#: CI attributes kept as facets (``services`` is a list of names, one row each)
FACET_ATTRIBUTES = (("service", "services"), ("owner", "owner"), ("support_group", "support_group"),
                    ("criticality", "criticality"))
#: facet -> the attribute it comes from
FACET_NAMES = dict(FACET_ATTRIBUTES)
#: ``run.linked`` link kinds: an incident the change caused, a change that remediated it
LINK_KINDS = ("incident", "remediated_by")
LINK_ENTRY = "run.linked"
#: values per ``IN (...)`` list: well under the dialects' bound-parameter limits
BATCH = 500

_FACT_COLUMNS = ("run_id, started_at, ended_at, status, dry_run, authorisation, authorisation_ref, environment,"
                 " playbook, user_name")


def _batches(values, size=BATCH):
    values = list(dict.fromkeys(values))
    return [values[start:start + size] for start in range(0, len(values), size)]


def _marks(values):
    return ", ".join("?" * len(values))


def select_chunked(query, select, clauses, params, column=None, values=None, tail=""):
    """Rows of ``select`` where every clause of ``clauses`` holds (``params`` bound in order) and, unless ``values``
    is None, ``column`` is one of ``values``: one statement per BATCH of values (SQLite's bound-parameter limit),
    ``tail`` (an ORDER BY) applied per statement. No values, no rows. ``query(sql, params)`` runs a statement."""
    chunks = [None] if values is None else _batches(values)
    rows = []
    for chunk in chunks:
        where, chunk_params = list(clauses), list(params)
        if chunk is not None:
            where.append("%s IN (%s)" % (column, _marks(chunk)))
            chunk_params.extend(chunk)
        sql = select + (" WHERE " + " AND ".join(where) if where else "") + tail
        rows.extend(query(sql, tuple(chunk_params)))
    return rows


_NAME_AND_ID = operator.itemgetter("name", "ci_id")


def _columns(rows, count):
    """``rows`` (tuples of ``count`` values) as ``count`` lists, one per column."""
    return list(map(list, zip(*rows))) if rows else [[] for _column in range(count)]


def _compress(columns, keep):
    """``columns`` without the rows ``keep`` (one flag per row) rules out; unchanged when it keeps every row."""
    if all(keep):
        return columns
    return [list(itertools.compress(column, keep)) for column in columns]


FROM_TABLE = re.compile(r"FROM (\w+)")

#: what joins a column's values in a PostgreSQL packed read (``IntelligenceQueries._packed_select``)
_SEPARATOR = "\x1f"


def _joined(values):
    """``values`` joined by :data:`_SEPARATOR`, when the server's ``string_to_array(text, chr(31))`` gives them back
    exactly: text values none of which holds the separator, and not the one empty string (an empty text splits
    into no values); else None (bound as an array)."""
    if not values or (len(values) == 1 and values[0] == ""):
        return None
    try:
        joined = _SEPARATOR.join(values)
    except TypeError:  # a value that is not text (None: a NULL element, which matches nothing)
        return None
    # (each value without the separator: then the joined text holds exactly one per join)
    return joined if joined.count(_SEPARATOR) == len(values) - 1 else None


#: the columns of the tables read packed that schema.py declares NOT NULL: their packed reads carry no null flags
#: (tests/unit/test_gate_equivalence.py checks this against each backend's schema)
PACKED_NOT_NULL = {
    "configuration_items": frozenset(["ci_id", "name", "ci_class", "status"]),
    "ci_facets": frozenset(["ci_id", "facet", "value"]),
    "ci_relationships": frozenset(["source", "rel_type", "target"]),
}


def _text_layout(columns, rest):
    """``[(column, flagged)]`` of a PostgreSQL packed read: each column, and whether a null flag follows its values
    (the one layout ``_packed_select`` writes and ``_unpacked`` reads)."""
    not_null = PACKED_NOT_NULL.get(FROM_TABLE.match(rest).group(1), ())
    return [(name, name not in not_null) for name in (column.strip() for column in columns.split(","))]


# --------------------------------------------------------------------------
# projectors (they follow the main projector of their entry kind)
# --------------------------------------------------------------------------
def _commit_time(data):
    git = data.get("git") if isinstance(data, dict) else None
    if isinstance(git, dict) and git.get("commit_time"):
        return str(git["commit_time"])
    return None


def _sync_facts(db, run_id, commit_at=None):
    db.execute(
        "INSERT INTO change_facts (%s, commit_at) SELECT %s, ? FROM change_events WHERE run_id = ?"
        " ON CONFLICT (run_id) DO UPDATE SET started_at = excluded.started_at, ended_at = excluded.ended_at,"
        " status = excluded.status, dry_run = excluded.dry_run, authorisation = excluded.authorisation,"
        " authorisation_ref = excluded.authorisation_ref, environment = excluded.environment,"
        " playbook = excluded.playbook, user_name = excluded.user_name,"
        " commit_at = COALESCE(excluded.commit_at, change_facts.commit_at)" % (_FACT_COLUMNS, _FACT_COLUMNS),
        (commit_at, run_id))


def _run_started(db, entry):
    run_id = entry.data["run_id"]
    _sync_facts(db, run_id, _commit_time(entry.data))
    # a start replayed after the run's links (a spool) moves the links' start too
    db.execute("UPDATE ci_changes SET started_at = (SELECT started_at FROM change_events WHERE run_id = ?)"
               " WHERE run_id = ?", (run_id, run_id))


def _run_ended(db, entry):
    _sync_facts(db, entry.data["run_id"])


def _ci_changed_by_run(db, entry):
    data = entry.data
    db.execute(
        "INSERT INTO ci_changes (ci_id, run_id, host, started_at, seq) VALUES"
        " (?, ?, ?, COALESCE((SELECT started_at FROM change_events WHERE run_id = ?), ?), ?)"
        " ON CONFLICT (ci_id, run_id) DO NOTHING",
        (data["ci_id"], data["run_id"], data.get("host"), data["run_id"], entry.at, entry.seq))


def facets_of(attributes):
    """``[(facet, value)]`` of a CI's attributes (what ``ci_facets`` holds for it)."""
    facets = set()
    for facet, attribute in FACET_ATTRIBUTES:
        value = attributes.get(attribute)
        if value in (None, "", [], {}):
            continue
        if facet == "service":
            try:
                names = name_list(value)
            except ValidationError:
                continue
            facets.update((facet, name) for name in names)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            facets.add((facet, str(value)))
    return sorted(facets)


def _refresh_facets(db, ci_id):
    db.execute("DELETE FROM ci_facets WHERE ci_id = ?", (ci_id,))
    row = db.execute("SELECT attributes FROM configuration_items WHERE ci_id = ?", (ci_id,)).fetchone()
    if row is None:
        return
    for facet, value in facets_of(json.loads(row[0]) if row[0] else {}):
        db.execute("INSERT INTO ci_facets (ci_id, facet, value) VALUES (?, ?, ?)", (ci_id, facet, value))


def _ci_written(db, entry):
    _refresh_facets(db, entry.data["ci_id"])


def _change_request_saved(db, entry):
    record = entry.data["record"]
    _save_window(db, record["number"], record.get("state"), record.get("planned_start"), record.get("planned_end"))


def _save_window(db, number, state, start, end):
    db.execute("INSERT INTO change_request_windows (number, state, planned_start, planned_end) VALUES (?, ?, ?, ?)"
               " ON CONFLICT (number) DO UPDATE SET state = excluded.state, planned_start = excluded.planned_start,"
               " planned_end = excluded.planned_end", (number, state or "new", start, end))


def _run_linked(db, entry):
    data = entry.data
    if data.get("link") not in LINK_KINDS:
        raise ValidationError("run.linked: link must be one of %s, got %r" % (", ".join(LINK_KINDS), data.get("link")))
    db.execute("INSERT INTO change_links (seq, run_id, link, target, linked_at, doc) VALUES (?, ?, ?, ?, ?, ?)",
               (entry.seq, data["run_id"], data["link"], str(data["target"]), data.get("linked_at") or entry.at,
                entry.data_json()))


#: entry kind -> projectors run after the kind's own one (``projections.project``)
FOLLOWERS = {
    "run.started": [_run_started],
    "run.finished": [_run_ended],
    "run.interrupted": [_run_ended],
    "ci.changed_by_run": [_ci_changed_by_run],
    "ci.created": [_ci_written],
    "ci.updated": [_ci_written],
    "ci.deleted": [_ci_written],
}
for _kind in ("change_request.created", "change_request.updated", "change_request.transitioned",
              "change_request.approved", "change_request.rejected", "change_request.closed"):
    FOLLOWERS[_kind] = [_change_request_saved]

#: entry kinds these tables introduce, with their own (main) projector
PROJECTORS = {LINK_ENTRY: _run_linked}


# --------------------------------------------------------------------------
# backfill: an existing ledger gets the rows a replay would give it
# --------------------------------------------------------------------------
def backfill(db, batch=2000):
    """Fill the tables from the ledger and the older query tables (the migration's Python step).

    ``db`` speaks ``?`` placeholders (``sql._Statements``) inside the migration's transaction.
    The ledger cannot hold ``run.linked`` entries yet (the kind is newer than these tables), and
    ``run.started`` entries written before it carry no commit time, so neither needs reading.
    """
    db.execute("INSERT INTO change_facts (%s, commit_at) SELECT %s, NULL FROM change_events WHERE run_id IN"
               " (SELECT subject FROM ledger WHERE kind IN ('run.started', 'run.finished', 'run.interrupted'))"
               % (_FACT_COLUMNS, _FACT_COLUMNS))
    last = 0
    while True:
        rows = db.execute("SELECT seq, at, data FROM ledger WHERE kind = 'ci.changed_by_run' AND seq > ?"
                          " ORDER BY seq LIMIT %d" % batch, (last,)).fetchall()
        for seq, at, data in rows:
            link = json.loads(data)
            db.execute(
                "INSERT INTO ci_changes (ci_id, run_id, host, started_at, seq) VALUES"
                " (?, ?, ?, COALESCE((SELECT started_at FROM change_events WHERE run_id = ?), ?), ?)"
                " ON CONFLICT (ci_id, run_id) DO NOTHING",
                (link["ci_id"], link["run_id"], link.get("host"), link["run_id"], at, seq))
        if len(rows) < batch:
            break
        last = rows[-1][0]
    for ci_id, attributes in db.execute("SELECT ci_id, attributes FROM configuration_items").fetchall():
        for facet, value in facets_of(json.loads(attributes) if attributes else {}):
            db.execute("INSERT INTO ci_facets (ci_id, facet, value) VALUES (?, ?, ?)", (ci_id, facet, value))
    for number, state, doc in db.execute("SELECT number, state, doc FROM change_requests").fetchall():
        record = json.loads(doc)
        _save_window(db, number, state, record.get("planned_start"), record.get("planned_end"))


# --------------------------------------------------------------------------
# queries
# --------------------------------------------------------------------------
class IntelligenceQueries(object):
    """The change intelligence methods of ``SystemOfRecord``, for SQL backends (``self._query``)."""

    #: ids above which a read takes the table whole (of the wanted relationship types or facets) and filters it
    #: here: fetching rows is what costs, and a play over most of the estate wants most of them anyway
    WHOLE_TABLE_ABOVE = 2000

    #: how a list of values is bound as ONE parameter (``_in_values``): ``json_each`` (SQLite's JSON1 table-valued
    #: function over a JSON array) or ``any`` (a PostgreSQL array); the backends set it
    set_parameter = "json_each"

    #: how ``_packed_rows`` has the database pack many rows into one row, one value per column: ``json`` (SQLite's
    #: ``json_group_array``, parsed in C) or ``text`` (PostgreSQL's ``string_agg`` with a separator, split in C:
    #: json_agg measured slower there than rows); the backends set it
    packs_rows = "json"

    #: the most rows ``_packed_rows`` packs into one value: a table that may hold more (its largest rowid, read from
    #: its primary key in microseconds, bounds its rows) is read as rows. One JSON text of a whole huge CMDB would
    #: be as large in memory as the table and could pass SQLite's 1 GB limit on one value; 250,000 short rows pack
    #: into some 20 MB. Below it rows stay packed: for the gate's reads of a 10,000-host estate fetching rows cost two
    #: to four times as much, and paging the packed reads by rowid (to bound every value) twice as much
    PACK_ROWS_UP_TO = 250000

    #: whether ``_queries`` sends its statements in one round trip (a PostgreSQL pipeline): then a read of CIs
    #: fetches their facets in the same round trip (``find_ci_summaries``); the backends set it
    pipelines_reads = False

    def _queries(self, statements):
        """The rows of each ``(sql, params)``; a backend that can sends them at once (``pipelines_reads``)."""
        return [self._query(sql, params) for sql, params in statements]

    def _in_values(self, column, values):
        """``(clause, params)``: ``column`` is one of ``values``, however many, as one query with one bound
        parameter (no IN list per batch of 500, no whole-table read filtered here): the gate's set-based reads
        of the CIs and relationships of a play of thousands of hosts."""
        if self.set_parameter == "any":
            values = list(values)
            joined = _joined(values)
            if joined is not None:
                # one text the server splits (string_to_array, in C on both sides): an array parameter of 1,000 ids
                # was dumped element by element here and parsed as an array literal there, 0.6 ms more a read
                return "%s = ANY(string_to_array(?, chr(31)))" % column, (joined,)
            return "%s = ANY(CAST(? AS TEXT[]))" % column, (values,)
        return "%s IN (SELECT value FROM json_each(?))" % column, (json.dumps(list(values)),)

    def _select_in(self, select, clauses, params, column=None, values=None, tail="", sort_key=None):
        """:func:`select_chunked`'s rows: every clause of ``clauses`` holds and, unless ``values`` is None,
        ``column`` is one of ``values``. Where the dialect binds a set as one parameter (PostgreSQL's array), one
        statement whatever the number of values, ``tail`` applied to all of them: a 90-day period's failure rules
        look thousands of run ids and CIs up, which in IN lists of 500 were a round trip and a plan each. SQLite
        keeps its IN lists: it has no round trips to save (and ``tail`` orders each list's rows only).
        ``sort_key``: the order ``tail`` gives, as a key of a row; rows that came from several lists are sorted
        into it, so the caller gets one order on either dialect."""
        if values is None or self.set_parameter != "any":
            rows = select_chunked(self._query, select, clauses, params, column, values, tail)
            if sort_key is not None and self._in_several_statements(values):
                rows.sort(key=sort_key)
            return rows
        if not values:
            return []
        clause, value_params = self._in_values(column, values)
        return self._query(select + " WHERE " + " AND ".join(list(clauses) + [clause]) + tail,
                           tuple(params) + tuple(value_params))

    def _in_several_statements(self, values):
        """Whether :meth:`_select_in` reads ``values`` in several statements (SQLite's lists of BATCH), whose rows
        its caller may have to merge into one order."""
        return values is not None and self.set_parameter != "any" and len(dict.fromkeys(values)) > BATCH

    def _packed_rows(self, columns, rest, params=()):
        """The rows of ``SELECT columns rest``, as tuples, fetched as ONE row of packed columns (``packs_rows``): on
        SQLite one JSON array per column (``json_group_array``), on PostgreSQL the column's values joined by a
        separator (``string_agg``), either unpacked in C, and the columns zip back into rows. For the tens of
        thousands of short rows the gate reads of a 10,000-host play (its host CIs, their services, the
        relationships a blast radius walks), the driver's per-row and per-value objects were most of each read's
        time; the values are the same (text and nulls; these columns hold no numbers). Row order is the table's:
        callers sort. ``rest`` starts ``FROM table``; a table too large to pack (:meth:`_packable`) is read as rows."""
        if not self.packs_rows or not self._packable([rest])[0]:
            return self._query("SELECT %s %s" % (columns, rest), params)
        return list(zip(*self._packed_columns(columns, rest, params, checked=True)))

    def _packed_columns(self, columns, rest, params=(), checked=False):
        """:meth:`_packed_rows` as one list per column of ``columns`` (a read whose caller works column by column
        builds no row at all). ``checked``: the caller found the read small enough to pack."""
        return self._column_reads([(columns, rest, params)], checked=checked)[0]

    def _column_reads(self, reads, checked=False):
        """One list per column for each read ``(columns, rest, params)`` (``SELECT columns rest``), packed by the
        database where it can (:meth:`_packed_rows`), in one round trip where the backend pipelines its statements
        (``pipelines_reads``: a read of CIs and the read of their facets). ``checked``: packable, known already."""
        packed = [bool(self.packs_rows)] * len(reads)
        if self.packs_rows and not checked:
            packed = self._packable([rest for _columns, rest, _params in reads])
        # a table a value of which held the separator is read as rows by this store from then on (see below)
        split_fails = self.__dict__.setdefault("_tables_read_as_rows", set())
        packed = [pack and FROM_TABLE.match(rest).group(1) not in split_fails
                  for pack, (_columns, rest, _params) in zip(packed, reads)]
        results = self._queries([(self._packed_select(columns, rest) if pack else "SELECT %s %s" % (columns, rest),
                                  params) for (columns, rest, params), pack in zip(reads, packed)])
        found = []
        for (columns, rest, params), pack, rows in zip(reads, packed, results):
            unpacked = self._unpacked(rows[0], columns, rest) if pack else None
            if unpacked is None and pack:
                # a value holding the separator: read again as rows, and so from the start next time (each read of
                # that table would otherwise cost the packed statement and the rows' both)
                split_fails.add(FROM_TABLE.match(rest).group(1))
                rows = self._query("SELECT %s %s" % (columns, rest), params)
            found.append(unpacked if unpacked is not None else _columns(rows, columns.count(",") + 1))
        return found

    def _packed_select(self, columns, rest):
        """``SELECT columns rest`` as one row of packed columns. The aggregates of one statement step over the same
        rows in the same order, so the columns zip back into the rows. One array per column, not one per row:
        SQLite builds a value per row of json_array, and one parse of 11,000 short arrays costs twice what the same
        values in five long ones cost (the gate's host CIs: 9 ms against 5.5; its relationships 5.3 against 3.7
        with the rows zipped back, 2026-12-06)."""
        if self.packs_rows == "json":
            return "SELECT %s %s" % (", ".join("json_group_array(%s)" % column.strip()
                                               for column in columns.split(",")), rest)
        # text: the row count, then per column its values joined by the unit separator (PostgreSQL's text holds no
        # NUL, the only character never in one) and, unless the column is NOT NULL, one null flag per row (a null
        # is packed as '' and flagged '1')
        aggregates = ["count(*)"]
        for name, flagged in _text_layout(columns, rest):
            aggregates.append("string_agg(coalesce(%s, ''), chr(31))" % name)
            if flagged:
                aggregates.append("string_agg(CASE WHEN %s IS NULL THEN '1' ELSE '0' END, '')" % name)
        return "SELECT %s %s" % (", ".join(aggregates), rest)

    def _unpacked(self, row, columns, rest):
        """The columns of a row of :meth:`_packed_select`; None when a value held the separator (the values split
        into more than the rows counted: the caller reads the rows instead)."""
        if self.packs_rows == "json":
            return list(map(json.loads, row))
        layout = _text_layout(columns, rest)
        total = row[0]
        if not total:
            return [[] for _column in layout]
        found, position = [], 1
        for _name, flagged in layout:
            values = row[position].split(_SEPARATOR)
            position += 1
            if len(values) != total:
                return None
            if flagged:
                flags = row[position]
                position += 1
                if "1" in flags:
                    values = [None if flag == "1" else value for value, flag in zip(values, flags)]
            found.append(values)
        return found

    def _packable(self, rests):
        """Whether each read of ``rests`` (``FROM table ...``) may be packed into one value per column: on SQLite,
        its table holds at most :attr:`PACK_ROWS_UP_TO` rows (its largest rowid is a bound: rowids are distinct
        positive integers, so a table never holds more rows than its largest; one with deletions is read as rows a
        little early, which is only slower). The PostgreSQL backend bounds the tables' size instead."""
        return [(self._query("SELECT max(rowid) %s" % FROM_TABLE.match(rest).group(0))[0][0] or 0)
                <= self.PACK_ROWS_UP_TO for rest in rests]

    def find_relationships(self, sources=None, targets=None, types=None, as_rows=False):
        """Relationships ``{source, type, target}`` whose source is one of ``sources`` or whose target is one of
        ``targets`` (both given: either), of one of ``types`` when given; one query per direction given.
        ``as_rows``: ``(source, type, target)`` tuples instead of dicts (a graph walk over many CIs)."""
        type_clause, type_params = "", ()
        if types:
            type_clause = " AND rel_type IN (%s)" % _marks(types)
            type_params = tuple(types)
        rows = []
        wanted = [(column, values) for column, values in (("source", sources), ("target", targets))
                  if values is not None]
        if not wanted:
            rows = self._packed_rows("source, rel_type, target", "FROM ci_relationships WHERE 1 = 1%s" % type_clause,
                                     type_params)
        elif sum(len(values) for _column, values in wanted) > self.WHOLE_TABLE_ABOVE:
            # the table filtered column by column at C level (the first level of the blast radius of a 10,000-host
            # play keeps 10,000 of its rows): only the rows kept are made
            columns = self._packed_columns("source, rel_type, target",
                                           "FROM ci_relationships WHERE 1 = 1%s" % type_clause, type_params)
            keep = None
            for values, column in ((sources, columns[0]), (targets, columns[2])):
                if values:
                    found = list(map((values if isinstance(values, (set, frozenset, dict))
                                      else set(values)).__contains__, column))
                    keep = found if keep is None else list(map(operator.or_, keep, found))
            rows = list(itertools.compress(zip(*columns), keep)) if keep is not None else []
        else:
            for column, values in wanted:
                if not values:
                    continue
                clause, params = self._in_values(column, values)
                rows.extend(self._packed_rows("source, rel_type, target", "FROM ci_relationships WHERE %s%s"
                                              % (clause, type_clause), params + type_params))
            if len(wanted) > 1:
                rows = list(dict.fromkeys(tuple(row) for row in rows))
        if as_rows:
            return rows  # tuples already: the drivers' rows, the packed read's zip (no copy of 10,000 rows)
        return [{"source": row[0], "type": row[1], "target": row[2]} for row in rows]

    def find_ci_summaries(self, names=None, ci_ids=None, facets=None):
        """CIs named one of ``names`` or with one of ``ci_ids``, without parsing their attribute documents:
        ``{ci_id, name, class, status, environment, attributes}`` where ``attributes`` holds only the facets
        (``services`` as a list, ``owner``, ``support_group``, ``criticality``; only those of ``facets``, facet
        names, when given). What the gate reads of the CIs of a play of thousands of hosts, ordered by name like
        ``find_cis``: one query for the CIs of each kind of key given and one for their facets."""
        found = {}
        columns = "ci_id, name, ci_class, status, environment"
        facet_clause, facet_params = "", ()
        if facets is not None:
            facet_clause = " AND facet IN (%s)" % _marks(facets)
            facet_params = tuple(facets)
        reads, wanted_by, chosen = [], [], []
        for column, values in (("name", names), ("ci_id", ci_ids)):
            if not values:
                continue
            if len(values) > self.WHOLE_TABLE_ABOVE:
                wanted = values if isinstance(values, (set, frozenset, dict)) else set(values)
                reads.append(("FROM configuration_items", ()))
                wanted_by.append((1 if column == "name" else 0, wanted))
                chosen = None
            else:
                clause, params = self._in_values(column, values)
                reads.append(("FROM configuration_items WHERE %s" % clause, params))
                wanted_by.append(None)
                if chosen is not None:
                    chosen.append((clause, params))
        facet_rows = None
        if self.pipelines_reads and reads:
            # the facets of the CIs those statements select, in the same round trip (a pipeline): chosen by the same
            # clauses in a subquery, or the whole table when a statement takes the whole table (filtered below)
            statements = [(columns, rest, params) for rest, params in reads]
            if chosen is None:
                statements.append(("ci_id, facet, value", "FROM ci_facets WHERE 1 = 1%s" % facet_clause,
                                   facet_params))
            else:
                statements.append((
                    "ci_id, facet, value", "FROM ci_facets WHERE ci_id IN (SELECT ci_id FROM configuration_items"
                    " WHERE %s)%s" % (" OR ".join(clause for clause, _params in chosen), facet_clause),
                    tuple(value for _clause, params in chosen for value in params) + facet_params))
            results = [list(zip(*found)) for found in self._column_reads(statements)]
            facet_rows = results.pop()
        else:
            results = [self._packed_rows(columns, rest, params) for rest, params in reads]
        # each CI's attributes by its id: the facet rows below go straight to them (a whole-table read of the
        # facets holds rows of CIs not asked for: no attributes, skipped); one pass per read, no filtered copy
        attributes_of = {}
        for rows, wanted in zip(results, wanted_by):
            index, wanted = wanted if wanted is not None else (None, None)
            for ci_id, name, ci_class, status, environment in rows:
                if index is not None and (name if index else ci_id) not in wanted:
                    continue
                attributes = attributes_of[ci_id] = {}
                found[ci_id] = {"ci_id": ci_id, "name": name, "class": ci_class, "status": status,
                                "environment": environment, "attributes": attributes}
        if found:
            if facet_rows is not None:
                rows = facet_rows
            elif len(found) > self.WHOLE_TABLE_ABOVE:
                rows = self._packed_rows("ci_id, facet, value", "FROM ci_facets WHERE 1 = 1%s" % facet_clause,
                                         facet_params)
            else:
                clause, params = self._in_values("ci_id", found)
                rows = self._packed_rows("ci_id, facet, value", "FROM ci_facets WHERE %s%s" % (clause, facet_clause),
                                         params + facet_params)
            listed = []
            attributes_for = attributes_of.get
            for ci_id, facet, value in rows:
                attributes = attributes_for(ci_id)
                if attributes is None:
                    continue
                if facet == "service":
                    services = attributes.get("services")
                    if services is None:
                        attributes["services"] = [value]
                    else:
                        services.append(value)
                        listed.append(services)
                else:
                    attributes[FACET_NAMES[facet]] = value
            for services in listed:
                services.sort()  # in value order, whatever order the backend returned them in
        # names and ids are NOT NULL columns: the C-level key (11,000 CIs of a 10,000-host play)
        return sorted(found.values(), key=_NAME_AND_ID)

    def find_ci_columns(self, names, facet="service"):
        """The CIs named one of ``names`` as columns (``base.SystemOfRecord.find_ci_columns``): no record per CI,
        for the gate's read of the 10,000 host CIs of a play, which it aggregates column by column. The same
        statements as :meth:`find_ci_summaries` (one round trip on PostgreSQL once the store knows the tables' sizes), read column by column."""
        wanted = names if isinstance(names, (set, frozenset, dict)) else set(names)
        keys = ("ci_id", "name", "class", "environment")
        if not wanted:
            return dict({key: [] for key in keys}, facet_ci_id=[], facet_value=[])
        columns = "ci_id, name, ci_class, environment"
        whole = len(wanted) > self.WHOLE_TABLE_ABOVE
        if whole:
            # a play over most of the estate: both tables whole (of the facet), filtered here
            reads = [("FROM configuration_items", ()), ("FROM ci_facets WHERE facet = ?", (facet,))]
        else:
            clause, params = self._in_values("name", wanted)
            reads = [("FROM configuration_items WHERE %s" % clause, params),
                     ("FROM ci_facets WHERE facet = ? AND ci_id IN (SELECT ci_id FROM configuration_items WHERE %s)"
                      % clause, (facet,) + params)]
        cis, facet_rows = self._column_reads([(columns,) + reads[0], ("ci_id, value",) + reads[1]])
        if whole:
            cis = _compress(cis, list(map(wanted.__contains__, cis[1])))
        # only the facets of the CIs read (a whole-table read holds others; and the two statements are two reads,
        # so a CI written between them must not bring its facets without its columns)
        facet_rows = _compress(facet_rows, list(map(set(cis[0]).__contains__, facet_rows[0])))
        found = dict(zip(keys, cis))
        found.update(facet_ci_id=facet_rows[0], facet_value=facet_rows[1])
        return found

    def find_ci_changes(self, ci_ids=None, since=None, until=None, limit=None):
        """Changes of CIs (``ci.changed_by_run``): ``{ci_id, run_id, host, started_at}``, newest first; only
        those of ``ci_ids`` when given, whose run started in ``[since, until]``."""
        clauses, params = [], []
        if since:
            clauses.append("started_at >= ?")
            params.append(since)
        if until:
            clauses.append("started_at <= ?")
            params.append(until)
        ci_ids = None if ci_ids is None else list(ci_ids)
        tail = " ORDER BY started_at DESC, run_id, ci_id" + (" LIMIT %d" % int(limit) if limit else "")
        rows = self._select_in("SELECT ci_id, run_id, host, started_at FROM ci_changes", clauses, params, "ci_id",
                               ci_ids, tail)
        if self._in_several_statements(ci_ids):
            # each list's rows in the statement's order (and limit): merged into it, newest first, ties by run and CI
            rows.sort(key=operator.itemgetter(1, 0))
            rows.sort(key=operator.itemgetter(3), reverse=True)
            rows = rows[:limit] if limit else rows
        return [{"ci_id": row[0], "run_id": row[1], "host": row[2], "started_at": row[3]} for row in rows]

    def find_ci_facets(self, ci_ids=None, facet=None, values=None):
        """``{ci_id, facet, value}`` rows: the services, owner, support group and criticality of CIs."""
        clauses, params = [], []
        if facet:
            clauses.append("facet = ?")
            params.append(facet)
        if values:
            clauses.append("value IN (%s)" % _marks(values))
            params.extend(values)
        rows = self._select_in("SELECT ci_id, facet, value FROM ci_facets", clauses, params,
                               "ci_id", ci_ids, " ORDER BY ci_id, facet, value")
        return [{"ci_id": row[0], "facet": row[1], "value": row[2]} for row in rows]

    def find_change_facts(self, since=None, until=None, run_ids=None):
        """The narrow row of each change event (for metrics), oldest first: ``run_id, started_at, ended_at,
        status, dry_run, authorisation, authorisation_ref, environment, playbook, user, commit_at``."""
        clauses, params = [], []
        if since:
            clauses.append("started_at >= ?")
            params.append(since)
        if until:
            clauses.append("started_at < ?")
            params.append(until)
        rows = self._select_in("SELECT %s, commit_at FROM change_facts" % _FACT_COLUMNS, clauses, params,
                               "run_id", run_ids, " ORDER BY started_at, run_id",
                               sort_key=lambda row: (row[1], row[0]))
        keys = ("run_id", "started_at", "ended_at", "status", "dry_run", "authorisation", "authorisation_ref",
                "environment", "playbook", "user", "commit_at")
        facts = []
        for row in rows:
            fact = dict(zip(keys, row))
            fact["dry_run"] = bool(fact["dry_run"])
            facts.append(fact)
        return facts

    def find_change_links(self, run_ids=None, link=None, target=None):
        """Links of change events (``run.linked``): ``{run_id, link, target, linked_at, seq, ...}`` in ledger order."""
        clauses, params = [], []
        if link:
            clauses.append("link = ?")
            params.append(link)
        if target is not None:
            clauses.append("target = ?")
            params.append(str(target))
        rows = self._select_in("SELECT seq, doc FROM change_links", clauses, params, "run_id",
                               None if run_ids is None else list(run_ids), " ORDER BY seq",
                               sort_key=operator.itemgetter(0))
        return [dict(json.loads(doc), seq=seq) for seq, doc in rows]

    def find_run_hosts(self, run_ids):
        """``{run_id: [host, ...]}``: the hosts each run ran on (its per-host counts), each run's hosts by name."""
        found = {}
        # (a run's rows all come from one statement, whichever list holds its id: no order across lists is needed)
        for run_id, host in self._select_in("SELECT run_id, host FROM run_hosts", [], [], "run_id", list(run_ids),
                                            " ORDER BY run_id, host"):
            found.setdefault(run_id, []).append(host)
        return found

    def find_change_requests_in_window(self, start, end, states=None):
        """Change requests whose planned window overlaps ``[start, end)`` (ISO UTC), in one of ``states`` when
        given, oldest window first; full records like ``get_change_request``."""
        clauses = ["w.planned_end > ?", "w.planned_start < ?"]
        params = [start, end]
        if states:
            clauses.append("w.state IN (%s)" % _marks(states))
            params.extend(states)
        rows = self._query(
            "SELECT r.doc, r.version FROM change_request_windows w JOIN change_requests r ON r.number = w.number"
            " WHERE %s ORDER BY w.planned_start, w.number" % " AND ".join(clauses), tuple(params))
        records = []
        for doc, version in rows:
            record = json.loads(doc)
            record["version"] = version
            records.append(record)
        return records


def link_document(run_id, link, target, linked_at, identity, comment=None):
    """The data of a ``run.linked`` entry."""
    return {"run_id": run_id, "link": link, "target": target, "linked_at": linked_at, "linked_by": identity,
            "comment": comment}
