# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The review service's reads and working state, for the SQL backends (mixed into ``SqlSystemOfRecord``).

Lists of change events at scale, over the list index of ``change_index.py``:

* every filter is a *condition*: a facet value (``host = web01``, a ``change_list_facets`` range keyed
  newest first), the free-text words (every word must start a word of the event: SQLite FTS5 prefix
  queries, PostgreSQL ``tsquery`` prefixes over the stored word vector ``change_list.search`` and its GIN
  index), ``listed`` (runs that changed something), and the time range and cursor, which are ranges of the
  list key;
* the page walks the condition with the fewest matches in the key range (each counted up to
  :data:`ESTIMATE_LIMIT`) newest first and probes the others per event by primary key, stopping when
  the page is full. A deep page is a keyset cursor (``before``: the key of the last row shown), so it
  costs what the first page does; plain offsets are allowed up to :data:`MAX_OFFSET` rows;
* the total is exact from the per-day counts when at most one counted facet is filtered, otherwise counted
  up to :data:`COUNT_LIMIT` matches; the facet counts likewise, or left out for broader lists (the page
  says so).

The service's working state that is not a record (password hashes, sessions, API token hashes, single
sign-on attempts) lives in tables outside the ledger, like the counters; the accounts and the audit of
sign-in failures and tokens are ledger entries (``change_index.py`` projects them).
"""

from __future__ import annotations

import collections
import datetime
import json
import threading

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import change_index

#: past this many matches a multi-filter total is reported as "more than" and facets are not counted
COUNT_LIMIT = 2000
#: the longest word prefix the SQLite free-text index keeps a prefix index for (schema: FTS5 prefix='2 3 4 5 6')
FTS_PREFIX = 6
#: the number of matches of one condition counted to choose the one a page walks
ESTIMATE_LIMIT = 500
#: the deepest plain offset a page may ask for: deeper pages follow a cursor (or narrow the time range)
MAX_OFFSET = 10000
#: PostgreSQL's search page: the changes its first newest-first walk reads, and the most any later walk reads
#: (see ``ReviewQueries._text_page_keys``)
TEXT_WALK_FIRST = 2000
TEXT_WALK_MOST = 40000
#: fewer matches than this in the whole list make a search word rare enough for GIN to read alone, if at most
#: RARE_WORD_SEEN of the first walk's changes have it
RARE_WORD_MATCHES = 1000
RARE_WORD_SEEN = 2
#: search words each process found to match RARE_WORD_MATCHES or more, kept (most recent) for the next search
COMMON_WORDS_KEPT = 4096
#: lists whose total and facet counts each process keeps for the ledger's current head (0: none kept)
SUMMARY_CACHE_SIZE = 512
#: facets whose counts the list shows beside its filters
COUNTED_FACETS = change_index.COUNTED_FACETS
#: orders a list may be sorted in (the API's names -> ``change_list`` columns), each walked along an index
SORT_COLUMNS = {"started_at": "list_key", "ended_at": "ended_at", "playbook": "playbook", "user": "user_name"}
LIST_COLUMNS = ("run_id", "started_at", "ended_at", "status", "dry_run", "user_name", "controller", "playbook",
                "environment", "authorisation", "authorisation_ref", "review_status", "host_count",
                "changed_host_count", "failed_host_count")
#: above any character of a value: ``word`` to ``word + _TOP`` is every value starting with ``word``
_TOP = "\U0010ffff"
_ALL_KEYS = (change_index.KEY_MIN, change_index.KEY_MAX)
#: the ``change_list`` columns facet counts over matches are grouped by
_GROUPED = ("outcome", "review", "ack", "categories", "environments", "services")
#: (describe(), filters) -> ((head seq, head hash), summary): see ``ReviewQueries._summary``
_SUMMARIES = collections.OrderedDict()
_SUMMARIES_LOCK = threading.Lock()
#: (describe(), word) -> True: see ``ReviewQueries._rare_words`` (guarded by _SUMMARIES_LOCK)
_COMMON_WORDS = collections.OrderedDict()


class _Condition(object):
    """A facet value (``kind`` facet) or the search words (``kind`` text)."""

    def __init__(self, kind, facet=None, value=None, words=None):
        self.kind = kind
        self.facet = facet
        self.value = value
        self.words = words or []
        #: PostgreSQL: the words a search reads from GIN when some are rare (None: all of them); the others are
        #: checked on the rows GIN gives (``ReviewQueries._rare_words``)
        self.index_words = None

    def fts(self):
        """The FTS5 query of the words, each a prefix (``"deploy"* "web00"*``; the words hold no quotes). A word
        longer than the longest prefix index is asked for by that prefix (FTS5 then reads one doclist instead
        of merging every word that starts with it) and checked whole by :meth:`long_words`."""
        return " ".join('"%s"*' % word[:FTS_PREFIX].replace('"', '""') for word in self.words)

    def long_words(self, every=False):
        """``(sql, params)`` for the words the FTS query shortened (``every``: all the words): a word of
        ``c.words`` starts with each."""
        clauses, params = [], []
        for word in self.words:
            if every or len(word) > FTS_PREFIX:
                escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                clauses.append("(' ' || c.words) LIKE ? ESCAPE '\\'")
                params.append("% " + escaped + "%")
        return clauses, params

    def tsquery(self, words=None):
        """The same as a PostgreSQL tsquery literal (lexemes verbatim: the index holds the words verbatim), of the
        words no other word implies (:func:`implied_words`): GIN reads every lexeme's postings, and a part such
        as ``yml`` of ``rotate_certs.yml`` starts a word of nearly every event. ``words``: only those of them."""
        return " & ".join("'%s':*" % word.replace("\\", "\\\\").replace("'", "''") for word in self.query_words()
                          if words is None or word in words)

    def query_words(self):
        """The words the tsquery asks for: those no other word implies."""
        implied = implied_words(self.words)
        return [word for word in self.words if word not in implied]


def implied_words(words):
    """The search words that another of ``words`` implies: the parts ``change_index.words`` splits a word into
    (``rotate``, ``certs``, ``yml`` of ``rotate_certs.yml``). An event word that starts with a word holding a
    separator is one of the event's own words split the same way (parts hold no separator), so it has each of
    those parts, the last perhaps longer: a word starting with each. Leaving them out changes no match."""
    implied = set()
    for word in words:
        implied.update(part for part in change_index.words(word) if part != word)
    return implied


class ReviewQueries(object):
    """Mixed into ``SqlSystemOfRecord``: needs ``_query``, ``_write_transaction`` and ``backend_name``."""

    # -- change event lists ------------------------------------------------------------------
    @staticmethod
    def _conditions(filters):
        conditions = []
        for facet in change_index.FILTER_FACETS:
            value = filters.get(facet)
            if value not in (None, ""):
                value = str(value).replace(" ", "_")
                running = (facet, value) in change_index.RUNNING
                conditions.append(_Condition("running" if running else "facet", facet, value))
        words = change_index.words(filters.get("q") or "")
        if words:
            conditions.append(_Condition("text", words=words))
        return conditions

    @staticmethod
    def _key_range(filters, before=None, after=None):
        low, high = _ALL_KEYS
        if filters.get("from"):
            low = change_index.day_key(filters["from"])
        if filters.get("to"):
            high = change_index.day_key(filters["to"], end=True)
        if before is not None:
            high = min(high, int(before) - 1)
        if after is not None:
            low = max(low, int(after) + 1)
        return change_index.clamp(low), change_index.clamp(high)

    def _sqlite(self):
        return self.backend_name == "sqlite"

    def _text_sql(self, condition, key_sql):
        """``(sql, params)``: the event keyed ``key_sql`` has the condition's words."""
        if self._sqlite():
            # checked on the event's own list row (a primary-key look-up and a LIKE per word over its few words):
            # a correlated FTS5 MATCH merges the doclists of every word with the prefix again for each row probed,
            # which for a one-letter word (no prefix index) cost milliseconds a row, seconds for a filtered page
            return self._long_words(condition, key_sql, every=True)
        return ("EXISTS (SELECT 1 FROM change_list w WHERE w.list_key = %s AND"
                " w.search @@ CAST(? AS tsquery))" % key_sql,
                [condition.tsquery()])

    def _long_words(self, condition, key_sql, every=False):
        clauses, params = condition.long_words(every)
        if not clauses:
            return "", []
        return ("EXISTS (SELECT 1 FROM change_list c WHERE c.list_key = %s AND %s)" % (key_sql, " AND ".join(clauses)),
                params)

    def _probe(self, condition, key_sql):
        if condition.kind == "text":
            return self._text_sql(condition, key_sql)
        if condition.kind == "running":
            return "EXISTS (SELECT 1 FROM change_list r WHERE r.list_key = %s AND r.outcome = 'running')" % key_sql, []
        return ("EXISTS (SELECT 1 FROM change_list_facets p WHERE p.facet = ? AND p.value = ? AND p.list_key = %s)"
                % key_sql, [condition.facet, condition.value])

    def _walks_the_list(self, driver):
        """True when walking ``driver`` reads ``change_list`` rows themselves (aliased ``d``): their columns need
        no look-up by key."""
        return driver is None or driver.kind == "running" or (driver.kind == "text" and not self._sqlite())

    def _walk_sql(self, driver, low, high, columns="d.list_key", rows="change_list"):
        """``(select, where, params, key_sql)`` walking ``driver`` (None: every event) in the key range;
        ``columns``: what a walk of the list itself (:meth:`_walks_the_list`) selects, the key by default;
        ``rows``: the list rows a PostgreSQL search reads (:meth:`_text_page_keys` bounds them)."""
        if driver is None:
            return "SELECT %s FROM change_list d" % columns, ["d.list_key BETWEEN ? AND ?"], [low, high], "d.list_key"
        if driver.kind == "running":
            # the few changes still running, from the events' status index
            return ("SELECT %s FROM change_events e JOIN change_list d ON d.run_id = e.run_id" % columns,
                    ["e.status = 'running'", "d.list_key BETWEEN ? AND ?"], [low, high], "d.list_key")
        if driver.kind == "facet":
            return ("SELECT d.list_key FROM change_list_facets d",
                    ["d.facet = ?", "d.value = ?", "d.list_key BETWEEN ? AND ?"],
                    [driver.facet, driver.value, low, high], "d.list_key")
        if self._sqlite():
            where = ["change_list_words MATCH ?", "change_list_words.rowid BETWEEN ? AND ?"]
            params = [driver.fts(), low, high]
            long_sql, long_params = self._long_words(driver, "change_list_words.rowid")
            if long_sql:
                where.append(long_sql)
                params += long_params
            return ("SELECT change_list_words.rowid AS list_key FROM change_list_words", where, params,
                    "change_list_words.rowid")
        if driver.index_words:
            # GIN reads the rare words only: a prefix's postings are read whole (a bitmap per prefix, however few
            # rows the other words leave), and those of a common word cost more than the rows they remove. The
            # other words are checked on each row; IS TRUE keeps the planner from making them an index condition
            # and still lets it estimate them as words
            rest = [word for word in driver.query_words() if word not in driver.index_words]
            where = ["d.search @@ CAST(? AS tsquery)", "d.list_key BETWEEN ? AND ?"]
            params = [driver.tsquery(driver.index_words), low, high]
            if rest:
                where.append("(d.search @@ CAST(? AS tsquery)) IS TRUE")
                params.append(driver.tsquery(rest))
            return "SELECT %s FROM %s d" % (columns, rows), where, params, "d.list_key"
        return ("SELECT %s FROM %s d" % (columns, rows),
                ["d.search @@ CAST(? AS tsquery)", "d.list_key BETWEEN ? AND ?"],
                [driver.tsquery(), low, high], "d.list_key")

    def _estimate(self, condition, low, high, cap=ESTIMATE_LIMIT):
        """Matches of ``condition`` alone in the key range, counted up to ``cap``."""
        select, where, params, _key = self._walk_sql(condition, low, high)
        rows = self._query("SELECT COUNT(*) FROM (%s WHERE %s LIMIT %d) m" % (select, " AND ".join(where), cap),
                           tuple(params))
        return int(rows[0][0])

    def _plan(self, filters, low, high):
        """``(driver, probes, estimates)``: the condition to walk (None: the list itself) and the others."""
        conditions = self._conditions(filters)
        if not conditions:
            return None, [], {}
        if len(conditions) == 1:
            return conditions[0], [], {}  # nothing to choose between
        estimates = [(self._estimate(condition, low, high), index) for index, condition in enumerate(conditions)]
        estimates.sort(key=lambda pair: pair[0])
        index = estimates[0][1]
        driver = conditions[index]
        probes = [condition for position, condition in enumerate(conditions) if position != index]
        return driver, probes, dict((position, count) for count, position in estimates)

    def _matching_sql(self, filters, driver, probes, low, high, columns="d.list_key", rows="change_list"):
        """``(sql without ORDER BY, params, key_sql)``: the keys of every matching event in the key range (or
        ``columns`` of their ``change_list`` rows, when the walk reads them: :meth:`_walks_the_list`)."""
        select, where, params, key_sql = self._walk_sql(driver, low, high, columns, rows)
        where, params = list(where), list(params)
        on_the_list = self._walks_the_list(driver)
        for probe in probes:
            if on_the_list and probe.kind == "text" and not self._sqlite():
                # the walked row's own words: a look-up of the same row by its key cost an index probe per match
                sql, probe_params = "d.search @@ CAST(? AS tsquery)", [probe.tsquery()]
            else:
                sql, probe_params = self._probe(probe, key_sql)
            where.append(sql)
            params += probe_params
        if not filters.get("all"):
            if on_the_list:
                where.append("d.listed = 1")
            else:
                where.append("EXISTS (SELECT 1 FROM change_list l WHERE l.list_key = %s AND l.listed = 1)" % key_sql)
        return "%s WHERE %s" % (select, " AND ".join(where)), params, key_sql

    def _page_sql(self, filters, sort, descending, limit, offset, before, after):
        column = SORT_COLUMNS.get(sort or "started_at")
        if column is None:
            raise ValidationError("sort: %r is not one of %s" % (sort, ", ".join(sorted(SORT_COLUMNS))))
        if offset > MAX_OFFSET:
            raise ValidationError("page: at most %d changes deep by page number (offset %d); follow Older/Newer, or "
                                  "narrow the time range" % (MAX_OFFSET, offset))
        low, high = self._key_range(filters, before if column == "list_key" else None,
                                    after if column == "list_key" else None)
        driver, probes, estimates = self._plan(filters, low, high)
        matching, params, key_sql = self._matching_sql(filters, driver, probes, low, high)
        if column == "list_key":
            # walk away from the cursor (up for newer pages, down for older ones), then show in the list's order
            walk_up = (after is not None) if descending else (before is None)
            direction = "ASC" if walk_up else "DESC"
            sql = "%s ORDER BY %s %s LIMIT %d OFFSET %d" % (matching, key_sql, direction, int(limit), int(offset))
            return sql, params, driver, probes, estimates, walk_up, (low, high)
        direction = "DESC" if descending else "ASC"
        sql = ("SELECT s.list_key FROM change_list s WHERE s.list_key IN (%s) ORDER BY s.%s %s, s.list_key %s"
               " LIMIT %d OFFSET %d" % (matching, column, direction, direction, int(limit), int(offset)))
        return sql, params, driver, probes, estimates, False, (low, high)

    def list_change_events(self, filters, sort="started_at", descending=True, limit=50, offset=0, before=None,
                           after=None, counts=False):
        """One page of change events matching ``filters`` (see the module docstring).

        ``filters``: ``from``/``to`` (UTC days, inclusive), ``host``, ``service``, ``environment``,
        ``outcome``, ``category``, ``review``, ``ack``, ``ref``, ``q`` (free text: every word must start a
        word of the event), ``all`` (include runs that changed nothing). ``before``/``after``: a list key
        (the ``cursor`` of a row) to page older/newer than, in the started_at order. Returns ``{"rows",
        "total", "total_exact", "older", "newer"}`` (the cursors of the next pages, None at an end) and
        ``counts`` (:meth:`change_event_facet_counts`) when asked; each row has the list columns, its
        ``cursor``, ``hosts``, ``outcome``, ``categories``, ``review_state`` and acknowledgement.
        """
        sql, params, driver, probes, estimates, walked_up, (low, high) = self._page_sql(
            filters, sort, descending, limit + 1, offset, before, after)
        if self._walks_text(driver, sort, offset):
            keys = self._text_page_keys(filters, driver, probes, low, high, walked_up, limit + 1)
        else:
            keys = [row[0] for row in self._query(sql, tuple(params))]
        more = len(keys) > limit
        keys = keys[:limit]
        page = {"total": None, "total_exact": None, "older": None, "newer": None}
        if SORT_COLUMNS.get(sort or "started_at") == "list_key" and keys:
            older_exists = (after is not None or offset > 0) if walked_up else more
            newer_exists = more if walked_up else (before is not None or offset > 0)
            page["older"] = min(keys) if older_exists else None
            page["newer"] = max(keys) if newer_exists else None
        if walked_up == descending and SORT_COLUMNS.get(sort or "started_at") == "list_key":
            keys.reverse()
        page["rows"] = self._list_rows(keys)
        summary = self._summary(filters)
        if "total" not in summary and counts and self._counted_by_matching(filters):
            # one pass over the matches (up to COUNT_LIMIT + 1) gives both the total and the facet counts: a search
            # walked its free-text matches twice, once to count them and once to group them
            total, exact, grouped = self._matching_summary(filters, driver, probes)
            summary.update(total=(total, exact), counts=grouped)
        if "total" not in summary:
            summary["total"] = self._total(filters, driver, probes, estimates)
        total, exact = summary["total"]
        page.update(total=total, total_exact=exact)
        if counts:
            if "counts" not in summary:
                summary["counts"] = self._facet_counts(filters, driver, probes, (total, exact))
            page["counts"] = summary["counts"]
        return page

    def _walks_text(self, driver, sort, offset):
        """True for a PostgreSQL page the search words drive, in the list's order from its start or a cursor."""
        return (not self._sqlite() and driver is not None and driver.kind == "text" and not offset
                and SORT_COLUMNS.get(sort or "started_at") == "list_key")

    def _text_page_keys(self, filters, driver, probes, low, high, walk_up, wanted):
        """Up to ``wanted`` keys of a PostgreSQL search page, walking the list away from its start and deciding
        from what the walk finds how to go on, not from the planner's estimate.

        Reading the list newest first and testing each change's stored word vector costs about a microsecond a
        change; reading the matches from GIN costs their postings and then a heap visit and a sort per match, so
        for words that match a few percent of the list (a common word and part of a host name) the walk fills a
        page after a few thousand changes where GIN reads tens of thousands of matches (about 0.2 s at a million
        changes), and for words that match a few hundred changes in all GIN answers in milliseconds where the
        walk would read the whole list. PostgreSQL's estimates for prefixes are not good enough to choose (off
        ten times either way at a million changes: a third of the bench's searches read GIN when walking was
        cheaper). So: walk :data:`TEXT_WALK_FIRST` changes; if that filled the page, done; if it found some
        matches, walk on as far as their rate says the page needs (at most :data:`TEXT_WALK_MOST` changes);
        whatever is still missing (rare words) comes from the query the planner chooses (GIN), below where the
        walks stopped. Every change of the range is read by exactly one of them, so the page is the same.
        """
        direction = "ASC" if walk_up else "DESC"
        keys, walked, walk = [], 0, TEXT_WALK_FIRST
        first_low, first_high = low, high
        while True:
            rows = ("(SELECT * FROM change_list WHERE list_key BETWEEN %d AND %d ORDER BY list_key %s LIMIT %d)"
                    % (low, high, direction, walk))
            matching, params, key_sql = self._matching_sql(filters, driver, probes, low, high, rows=rows)
            # the matches and where the walk stopped (its last change; none: it read the rest of the range) in ONE
            # statement, so from one snapshot: a change recorded or removed between two statements would move the
            # edge, and the next step would read a change again or never
            found = self._query(
                "SELECT 0, m.list_key FROM (%s ORDER BY %s %s LIMIT %d) m UNION ALL SELECT 1, e.list_key FROM"
                " (SELECT list_key FROM change_list WHERE list_key BETWEEN ? AND ? ORDER BY list_key %s LIMIT 1"
                " OFFSET %d) e" % (matching, key_sql, direction, wanted - len(keys), direction, walk - 1),
                tuple(params) + (low, high))
            keys += sorted((row[1] for row in found if row[0] == 0), reverse=not walk_up)
            edge = [row[1] for row in found if row[0] == 1]
            if len(keys) >= wanted or not edge:
                return keys
            if walk_up:
                low = edge[0] + 1
            else:
                high = edge[0] - 1
            if low > high:
                return keys
            walked += walk
            needed = (wanted - len(keys)) * walked * 3 // 2 // max(len(keys), 1)
            if not keys or walked >= TEXT_WALK_MOST or needed > TEXT_WALK_MOST:
                break
            walk = max(needed, TEXT_WALK_FIRST)
        # (a match in the first walk means every word is in it: none is rare)
        driver.index_words = None if keys else self._rare_words(driver, first_low, first_high, walk_up)
        matching, params, key_sql = self._matching_sql(filters, driver, probes, low, high)
        return keys + [row[0] for row in self._query("%s ORDER BY %s %s LIMIT %d" % (
            matching, key_sql, direction, wanted - len(keys)), tuple(params))]

    def _rare_words(self, driver, low, high, walk_up):
        """The search words GIN should read alone, or None (all of them), when the walks found none of the page.

        A word is rare when at most :data:`RARE_WORD_SEEN` of the first :data:`TEXT_WALK_FIRST` changes of the
        range have it and GIN then finds fewer than :data:`RARE_WORD_MATCHES` changes with it in all: reading only
        its postings and checking the other words on those rows costs far less than reading every word's postings
        (``chg0001 web12`` at a million changes: 40 ms with ``web12``'s 97,000 postings, 6 ms without). A word
        common in the newest changes is never asked of GIN alone. The check reads those changes once and, per word
        they hardly have, GIN for that word: its postings whole (GIN reads a prefix's postings before any limit
        applies) and at most :data:`RARE_WORD_MATCHES` rows. A word found common that way (one in the history,
        such as a retired host's name) is remembered by the process (:data:`_COMMON_WORDS`; matches only grow
        but by a redaction or an archive, after which a search is slower, never wrong), so it costs that once.
        """
        words = driver.query_words()
        if len(words) < 2:
            return None
        counted = self._query(
            "SELECT %s FROM (SELECT search FROM change_list WHERE list_key BETWEEN ? AND ? ORDER BY list_key %s"
            " LIMIT %d) s" % (", ".join("COUNT(*) FILTER (WHERE search @@ CAST(? AS tsquery))" for _word in words),
                              "ASC" if walk_up else "DESC", TEXT_WALK_FIRST),
            tuple([driver.tsquery([word]) for word in words] + [low, high]))[0]
        rare, where = [], self.describe()
        for word, count in zip(words, counted):
            if int(count) > RARE_WORD_SEEN or (where, word) in _COMMON_WORDS:
                continue
            matches = self._query("SELECT COUNT(*) FROM (SELECT 1 FROM change_list WHERE search @@ CAST(? AS"
                                  " tsquery) LIMIT %d) m" % RARE_WORD_MATCHES, (driver.tsquery([word]),))
            if int(matches[0][0]) < RARE_WORD_MATCHES:
                rare.append(word)
            else:
                with _SUMMARIES_LOCK:
                    _COMMON_WORDS[(where, word)] = True
                    while len(_COMMON_WORDS) > COMMON_WORDS_KEPT:
                        _COMMON_WORDS.popitem(last=False)
        return rare or None

    def _summary(self, filters):
        """The cached total and facet counts of a list (``{"total": (n, exact), "counts": ...}``, filled by the
        caller as it computes them) for the record as it stands: keyed by the filters and the ledger's head.

        Every query table is a projection of the ledger written in the same transaction as the entries it
        derives from, so while the head (its seq and hash) stays the same, so do a list's total and counts;
        the first request after an append computes them again. The page's rows are always read. Deep pages of
        one list share the first page's summary, and counting is what a broad list or a search costs most
        (the per-day sums of every facet, or the matches of a search counted up to :data:`COUNT_LIMIT`).
        """
        if SUMMARY_CACHE_SIZE <= 0:
            return {}
        key = (self.describe(), tuple(sorted((name, value) for name, value in filters.items()
                                             if value not in (None, "", False))))
        head = self.head()
        with _SUMMARIES_LOCK:
            cached = _SUMMARIES.get(key)
            if cached is not None and cached[0] == head:
                _SUMMARIES.move_to_end(key)
                return cached[1]
            summary = {}
            _SUMMARIES[key] = (head, summary)
            while len(_SUMMARIES) > SUMMARY_CACHE_SIZE:
                _SUMMARIES.popitem(last=False)
        return summary

    def _counted_by_matching(self, filters):
        """True when a list's total is counted over its matches (several filters, or a search), not summed from
        the per-day counts (no filter, or one counted facet) or the running changes."""
        conditions = self._conditions(filters)
        if not conditions:
            return False
        if len(conditions) == 1 and (conditions[0].kind == "running" or (
                conditions[0].kind == "facet" and conditions[0].facet in COUNTED_FACETS)):
            return False
        return True

    def _matching_summary(self, filters, driver, probes):
        """``(total, exact, counts)`` of a list counted over its matches, in one pass: the matches' value
        combinations grouped, up to ``COUNT_LIMIT + 1`` matches (beyond: ``(COUNT_LIMIT, False, None)``, as
        :meth:`_total` and :meth:`_facet_counts` say)."""
        rows = self._grouped_matches(filters, driver, probes, COUNT_LIMIT + 1)
        total = sum(int(row[-1]) for row in rows)
        if total > COUNT_LIMIT:
            return COUNT_LIMIT, False, None
        counts = dict((facet, {}) for facet in COUNTED_FACETS)
        self._tally(counts, rows)
        return total, True, counts

    @staticmethod
    def _tally(counts, rows):
        """Add grouped ``change_list`` rows (the :data:`_GROUPED` columns and a count) to ``counts``."""
        for row in rows:
            number = int(row[-1])
            values = dict(zip(_GROUPED, row[:-1]))
            for facet, column in (("outcome", "outcome"), ("review", "review"), ("ack", "ack")):
                if values[column]:
                    counts[facet][values[column]] = counts[facet].get(values[column], 0) + number
            for facet, column in (("category", "categories"), ("environment", "environments"),
                                  ("service", "services")):
                for value in (values[column] or "").split(" "):
                    if value:
                        counts[facet][value] = counts[facet].get(value, 0) + number

    def _total(self, filters, driver, probes, estimates):
        facets = list(self._conditions(filters))
        if not facets:
            # the per-day counts: every finished event has exactly one outcome, so their sum is the events
            return self._counted(filters, "outcome", None) + self._running(filters), True
        if len(facets) == 1 and facets[0].kind == "running":
            return self._running(filters), True
        if len(facets) == 1 and facets[0].kind == "facet" and facets[0].facet in COUNTED_FACETS:
            return self._counted(filters, facets[0].facet, facets[0].value), True
        low, high = self._key_range(filters)
        matching, params, _key = self._matching_sql(filters, driver, probes, low, high)
        rows = self._query("SELECT COUNT(*) FROM (%s LIMIT %d) m" % (matching, COUNT_LIMIT + 1), tuple(params))
        count = int(rows[0][0])
        return (count, True) if count <= COUNT_LIMIT else (COUNT_LIMIT, False)

    def _count_clauses(self, filters):
        clauses, params = [], []
        if filters.get("from"):
            clauses.append("c.day >= ?")
            params.append(filters["from"])
        if filters.get("to"):
            clauses.append("c.day <= ?")
            params.append(filters["to"])
        if not filters.get("all"):
            clauses.append("c.listed = 1")
        return clauses, params

    def _running(self, filters):
        """Changes still running (they have no counts until they end), in the time range."""
        clauses, params = ["status = 'running'"], []
        if filters.get("from"):
            clauses.append("started_at >= ?")
            params.append(filters["from"])
        if filters.get("to"):
            clauses.append("started_at < ?")
            params.append((datetime.date.fromisoformat(filters["to"]) + datetime.timedelta(days=1)).isoformat())
        return int(self._query("SELECT COUNT(*) FROM change_events WHERE %s" % " AND ".join(clauses),
                               tuple(params))[0][0])

    def _counted(self, filters, facet, value):
        clauses, params = self._count_clauses(filters)
        clauses.insert(0, "c.facet = ?")
        params.insert(0, facet)
        if value is not None:
            clauses.insert(1, "c.value = ?")
            params.insert(1, value)
        rows = self._query("SELECT COALESCE(SUM(c.n), 0) FROM change_list_counts c WHERE %s" % " AND ".join(clauses),
                           tuple(params))
        return int(rows[0][0] or 0)

    def _list_rows(self, keys):
        if not keys:
            return []
        marks = ", ".join("?" * len(keys))
        listed = {}
        for key, run_id, outcome, review, ack, categories, hosts in self._query(
                "SELECT list_key, run_id, outcome, review, ack, categories, hosts FROM change_list WHERE list_key IN"
                " (%s)" % marks, tuple(keys)):
            listed[key] = (run_id, outcome, review, ack, categories, hosts)
        run_ids = [listed[key][0] for key in keys if key in listed]
        events = {}
        if run_ids:
            for row in self._query("SELECT %s FROM change_events WHERE run_id IN (%s)" % (
                    ", ".join(LIST_COLUMNS), ", ".join("?" * len(run_ids))), tuple(run_ids)):
                record = dict(zip(LIST_COLUMNS, row))
                record["dry_run"] = bool(record["dry_run"])
                record["user"] = record.pop("user_name")
                events[record["run_id"]] = record
        rows = []
        for key in keys:
            if key not in listed or listed[key][0] not in events:
                continue
            run_id, outcome, review, ack, categories, hosts = listed[key]
            record = events[run_id]
            record.update(cursor=key, outcome=outcome, review_state=review, acknowledgement=ack,
                          categories=categories.split(" ") if categories else [],
                          hosts=hosts.split(" ") if hosts else [])
            rows.append(record)
        return rows

    def change_event_facet_counts(self, filters):
        """``{facet: {value: count}}`` of the events matching ``filters``, or None when more than
        :data:`COUNT_LIMIT` match several filters (counting them row by row would not scale)."""
        low, high = self._key_range(filters)
        driver, probes, estimates = self._plan(filters, low, high)
        return self._facet_counts(filters, driver, probes, self._total(filters, driver, probes, estimates))

    def _facet_counts(self, filters, driver, probes, total):
        counts = dict((facet, {}) for facet in COUNTED_FACETS)
        if not self._conditions(filters):
            clauses, params = self._count_clauses(filters)
            clauses.insert(0, "c.facet IN (%s)" % ", ".join("?" * len(COUNTED_FACETS)))
            params[:0] = list(COUNTED_FACETS)
            for facet, value, count in self._query(
                    "SELECT c.facet, c.value, SUM(c.n) FROM change_list_counts c WHERE %s GROUP BY c.facet, c.value"
                    % " AND ".join(clauses), tuple(params)):
                if int(count or 0) > 0:
                    counts[facet][value] = int(count)
            running = self._running(filters)
            if running:
                for facet, value in change_index.RUNNING:
                    counts[facet][value] = running
            return counts
        count, exact = total
        if not exact or count > COUNT_LIMIT:
            return None
        # the combinations of the matching events' values, then each value's share (a few dozen groups)
        self._tally(counts, self._grouped_matches(filters, driver, probes))
        return counts

    def _grouped_matches(self, filters, driver, probes, limit=None):
        """Rows of the matching events' :data:`_GROUPED` value combinations and how many events have each, over
        the first ``limit`` matches (None: all). A walk of the list itself groups the rows it walked; any other
        walk's keys are looked up in the list (an index probe per match)."""
        low, high = self._key_range(filters)
        grouped = ", ".join("c." + column for column in _GROUPED)
        cap = "" if limit is None else " LIMIT %d" % int(limit)
        if self._walks_the_list(driver):
            matching, params, _key = self._matching_sql(filters, driver, probes, low, high,
                                                        columns=", ".join("d." + column for column in _GROUPED))
            sql = "SELECT %s, COUNT(*) FROM (%s%s) c GROUP BY %s" % (grouped, matching, cap, grouped)
        else:
            matching, params, _key = self._matching_sql(filters, driver, probes, low, high)
            sql = "SELECT %s, COUNT(*) FROM change_list c WHERE c.list_key IN (%s%s) GROUP BY %s" % (
                grouped, matching, cap, grouped)
        return self._query(sql, tuple(params))

    def explain_change_events(self, filters, sort="started_at", descending=True, limit=50, offset=0,
                              forbid_table_scans=True, before=None):
        """The query plan of :meth:`list_change_events`' page query, as text lines (for tests and the bench). On
        PostgreSQL a search page from the list's start or a cursor walks the list first (:meth:`_text_page_keys`):
        this is the query it asks below its walks.

        On PostgreSQL ``forbid_table_scans`` turns sequential scans off for the explanation, so a small test
        database shows whether an index *can* serve the query (the planner prefers a scan of a tiny table).
        """
        sql, params = self._page_sql(filters, sort, descending, limit, offset, before, None)[:2]
        if not self._sqlite():
            if forbid_table_scans:
                self._query("SELECT set_config('enable_seqscan', 'off', false)")
            try:
                return [row[0] for row in self._query("EXPLAIN " + sql, tuple(params))]
            finally:
                self._query("SELECT set_config('enable_seqscan', 'on', false)")
        return [row[-1] for row in self._query("EXPLAIN QUERY PLAN " + sql, tuple(params))]

    def facet_values(self, facet, prefix="", limit=20):
        """Known values of a facet starting with ``prefix`` (host names for a search box), in order: one index
        probe per value, never a scan of the facet's rows."""
        found, last = [], prefix
        for _number in range(int(limit)):
            rows = self._query("SELECT value FROM change_list_facets WHERE facet = ? AND value %s ? AND value < ?"
                               " ORDER BY value LIMIT 1" % (">=" if not found else ">"),
                               (facet, last, prefix + _TOP))
            if not rows:
                break
            last = rows[0][0]
            found.append(last)
        return found

    def change_event_position(self, run_id):
        """Where a change event's entries sit in the hash chain: ``{count, first: {seq, hash, prev_hash, kind, at},
        last: {...}, predecessors: {seq: hash of the entry before it}}``, or None when it has none."""
        rows = self._query("SELECT l.seq, l.kind, l.at, l.prev_hash, l.hash, p.hash FROM ledger l LEFT JOIN ledger p"
                           " ON p.seq = l.seq - 1 WHERE l.subject = ? ORDER BY l.seq", (run_id,))
        if not rows:
            return None

        def end(row):
            return {"seq": row[0], "kind": row[1], "at": row[2], "prev_hash": row[3], "hash": row[4]}
        return {"count": len(rows), "first": end(rows[0]), "last": end(rows[-1]),
                "predecessors": dict((row[0], row[5]) for row in rows)}

    # -- acknowledgements and the service's accounts -------------------------------------------
    def find_acknowledgements(self, run_id=None):
        """Acknowledgements of unauthorised changes, newest first."""
        sql, params = "SELECT seq, doc FROM acknowledgements", ()
        if run_id:
            sql, params = sql + " WHERE run_id = ?", (run_id,)
        return [dict(json.loads(doc), seq=seq) for seq, doc in self._query(sql + " ORDER BY seq DESC", params)]

    def get_review_account(self, name):
        rows = self._query("SELECT name, display_name, roles, disabled, created_at, updated_at FROM review_accounts"
                           " WHERE name = ?", (name,))
        return self._account(rows[0]) if rows else None

    def find_review_accounts(self):
        return [self._account(row) for row in self._query(
            "SELECT name, display_name, roles, disabled, created_at, updated_at FROM review_accounts ORDER BY name")]

    @staticmethod
    def _account(row):
        return {"name": row[0], "display_name": row[1], "roles": json.loads(row[2]), "disabled": bool(row[3]),
                "created_at": row[4], "updated_at": row[5]}

    def count_review_audit(self, kind, subject=None, remote=None, since=None):
        """How many audit entries of ``kind`` for ``subject`` (an account name) or from ``remote`` since a time."""
        clauses, params = ["kind = ?"], [kind]
        for column, value in (("subject", subject), ("remote", remote)):
            if value is not None:
                clauses.append("%s = ?" % column)
                params.append(value)
        if since:
            clauses.append("at >= ?")
            params.append(since)
        return int(self._query("SELECT COUNT(*) FROM review_audit WHERE %s" % " AND ".join(clauses), tuple(params))[0][0])

    def find_review_audit(self, limit=100):
        return [dict(json.loads(doc), seq=seq, at=at, kind=kind, subject=subject) for seq, at, kind, subject, doc in
                self._query("SELECT seq, at, kind, subject, doc FROM review_audit ORDER BY seq DESC LIMIT %d" % int(limit))]

    # -- working state outside the ledger: credentials, sessions, tokens -------------------------
    def _write(self, statements):
        with self._write_transaction() as cursor:
            for sql, params in statements:
                cursor.execute(self._sql(sql), params)

    def set_review_credential(self, name, password_hash, now):
        self._write([("DELETE FROM review_credentials WHERE name = ?", (name,)),
                     ("INSERT INTO review_credentials (name, password_hash, updated_at) VALUES (?, ?, ?)",
                      (name, password_hash, now))])

    def get_review_credential(self, name):
        rows = self._query("SELECT password_hash FROM review_credentials WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def create_review_session(self, id_hash, name, csrf, via, now, expires_at, sso_roles=None, sso_groups=None):
        """``sso_roles``/``sso_groups``: what a single sign-on vouched for at sign-in (no account of that name)."""
        self._write([("INSERT INTO review_sessions (id_hash, name, csrf, via, created_at, expires_at, last_seen,"
                      " sso_roles, sso_groups) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (id_hash, name, csrf, via, now, expires_at, now,
                       None if sso_roles is None else json.dumps(sorted(sso_roles)),
                       None if sso_groups is None else json.dumps(list(sso_groups)))),
                     ("DELETE FROM review_sessions WHERE expires_at < ?", (now,))])

    def get_review_session(self, id_hash):
        rows = self._query("SELECT id_hash, name, csrf, via, created_at, expires_at, last_seen, sso_roles, sso_groups"
                           " FROM review_sessions WHERE id_hash = ?", (id_hash,))
        if not rows:
            return None
        session = dict(zip(("id_hash", "name", "csrf", "via", "created_at", "expires_at", "last_seen", "sso_roles",
                            "sso_groups"), rows[0]))
        for key in ("sso_roles", "sso_groups"):
            session[key] = json.loads(session[key]) if session[key] else None
        return session

    def touch_review_session(self, id_hash, now):
        self._write([("UPDATE review_sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash))])

    def delete_review_sessions(self, id_hash=None, name=None):
        if id_hash is not None:
            self._write([("DELETE FROM review_sessions WHERE id_hash = ?", (id_hash,))])
        if name is not None:
            self._write([("DELETE FROM review_sessions WHERE name = ?", (name,))])

    def create_review_sign_in_attempt(self, state_hash, nonce, code_verifier, next_path, now, expires_at):
        self._write([("INSERT INTO review_sign_in_attempts (state_hash, nonce, code_verifier, next_path, created_at,"
                      " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                      (state_hash, nonce, code_verifier, next_path, now, expires_at)),
                     ("DELETE FROM review_sign_in_attempts WHERE expires_at < ?", (now,))])

    def take_review_sign_in_attempt(self, state_hash, now):
        """The live sign-in attempt of ``state_hash``, deleted in the same transaction: each is used once."""
        with self._write_transaction() as cursor:
            cursor.execute(self._sql("SELECT nonce, code_verifier, next_path, expires_at FROM review_sign_in_attempts"
                                     " WHERE state_hash = ?"), (state_hash,))
            row = cursor.fetchone()
            if row is None:
                return None
            cursor.execute(self._sql("DELETE FROM review_sign_in_attempts WHERE state_hash = ?"), (state_hash,))
        if row[3] < now:
            return None
        return {"nonce": row[0], "code_verifier": row[1], "next_path": row[2]}

    def create_review_token(self, token_hash, token_id, name, label, now, expires_at=None):
        self._write([("INSERT INTO review_api_tokens (token_hash, token_id, name, label, created_at, expires_at,"
                      " revoked) VALUES (?, ?, ?, ?, ?, ?, 0)", (token_hash, token_id, name, label, now, expires_at))])

    _TOKEN_COLUMNS = ("token_id", "name", "label", "created_at", "expires_at", "last_used_at", "revoked")

    def get_review_token(self, token_hash):
        rows = self._query("SELECT %s FROM review_api_tokens WHERE token_hash = ?" % ", ".join(self._TOKEN_COLUMNS),
                           (token_hash,))
        return dict(zip(self._TOKEN_COLUMNS, rows[0])) if rows else None

    def find_review_tokens(self, name=None):
        sql, params = "SELECT %s FROM review_api_tokens" % ", ".join(self._TOKEN_COLUMNS), ()
        if name is not None:
            sql, params = sql + " WHERE name = ?", (name,)
        return [dict(zip(self._TOKEN_COLUMNS, row)) for row in self._query(sql + " ORDER BY created_at DESC", params)]

    def revoke_review_token(self, token_id):
        self._write([("UPDATE review_api_tokens SET revoked = 1 WHERE token_id = ?", (token_id,))])

    def touch_review_token(self, token_id, now):
        self._write([("UPDATE review_api_tokens SET last_used_at = ? WHERE token_id = ?", (now, token_id))])

    def note_review_write(self, name, seq, now):
        # never moved back: two actions of one person finishing out of order keep the newer position
        with self._write_transaction() as cursor:
            cursor.execute(self._sql(
                "INSERT INTO review_write_positions (name, seq, written_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, written_at = excluded.written_at"
                " WHERE review_write_positions.seq < excluded.seq"), (name, int(seq), now))

    def get_review_write_position(self, name):
        rows = self._query("SELECT seq FROM review_write_positions WHERE name = ?", (name,))
        return rows[0][0] if rows else 0
