# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The review service's reads and working state, for the SQL backends (mixed into ``SqlSystemOfRecord``).

Lists of change events at scale (see ``change_index.py`` for the index they read):

* every filter is a *condition* on the facets table: a value (``host = web01``) or, for a search
  word, a prefix of a value in several facets;
* the page walks the condition that matches the fewest events (estimated from the per-day counts)
  newest first along the primary key, and probes every other condition per event through the
  ``(run_id, facet, value)`` index, stopping as soon as the page is full: a deep page skips
  index entries, never table rows;
* the total is exact from the counts when one value is filtered (time ranges are whole UTC days),
  otherwise counted up to :data:`COUNT_LIMIT` matches; facet counts likewise, or left out for
  filters broader than that (the page says so).

The service's working state that is not a record (password hashes, sessions, API token hashes)
lives in tables outside the ledger, like the counters; the accounts and the audit of sign-in
failures and tokens are ledger entries (``change_index.py`` projects them).
"""

from __future__ import annotations

import datetime
import json

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import change_index

#: past this many matches a multi-filter total is reported as "more than" and facets are not counted
COUNT_LIMIT = 10000
#: facets whose counts the list shows beside its filters
COUNTED_FACETS = ("outcome", "category", "review", "environment", "ack", "service")
#: columns a list may be sorted by (the API's names -> ``change_events`` columns)
SORT_COLUMNS = {
    "started_at": "started_at", "ended_at": "ended_at", "playbook": "playbook", "user": "user_name",
    "controller": "controller", "outcome": "status", "authorisation": "authorisation",
    "host_count": "host_count", "changed_host_count": "changed_host_count",
}
LIST_COLUMNS = ("run_id", "started_at", "ended_at", "status", "dry_run", "user_name", "controller", "playbook",
                "environment", "authorisation", "authorisation_ref", "review_status", "host_count",
                "changed_host_count", "failed_host_count")
#: above any character of a value: ``word`` to ``word + _TOP`` is every value starting with ``word``
_TOP = "\U0010ffff"


def _next_day(day):
    return (datetime.date.fromisoformat(day) + datetime.timedelta(days=1)).isoformat()


class _Condition(object):
    """A filter on the facets: ``facets`` one of whose values equals ``value`` (or starts with it)."""

    def __init__(self, facets, value, prefix=False):
        self.facets = tuple(facets)
        self.value = value
        self.prefix = prefix

    def sql(self, alias):
        """``(sql, params)`` restricting ``alias`` (a facets row) to this condition."""
        facet_sql = ("%s.facet = ?" % alias) if len(self.facets) == 1 else (
            "%s.facet IN (%s)" % (alias, ", ".join("?" * len(self.facets))))
        if self.prefix:
            return ("%s AND %s.value >= ? AND %s.value < ?" % (facet_sql, alias, alias),
                    self.facets + (self.value, self.value + _TOP))
        return "%s AND %s.value = ?" % (facet_sql, alias), self.facets + (self.value,)

    @property
    def unique_per_event(self):
        """One facets row per matching event (no DISTINCT needed, and ordered along the key)."""
        return not self.prefix and len(self.facets) == 1


class ReviewQueries(object):
    """Mixed into ``SqlSystemOfRecord``: needs ``_query``, ``_write_transaction`` and ``_Statements``-style SQL."""

    # -- change event lists ------------------------------------------------------------------
    @staticmethod
    def _conditions(filters):
        conditions = []
        for facet in change_index.FILTER_FACETS:
            value = filters.get(facet)
            if value not in (None, ""):
                conditions.append(_Condition((facet,), str(value)))
        for word in change_index.words(filters.get("q") or ""):
            conditions.append(_Condition(change_index.SEARCH_FACETS, word, prefix=True))
        if not filters.get("all"):
            conditions.append(_Condition(("listed",), "yes"))
        return conditions

    @staticmethod
    def _days(filters):
        return filters.get("from") or None, filters.get("to") or None

    def _estimate(self, condition, filters):
        """Events matching ``condition`` alone in the time range (exact for a single value)."""
        sql, params = condition.sql("c")
        clauses, extra = [sql], list(params)
        first, last = self._days(filters)
        if first:
            clauses.append("c.day >= ?")
            extra.append(first)
        if last:
            clauses.append("c.day <= ?")
            extra.append(last)
        if not filters.get("all"):
            clauses.append("c.listed = 1")
        rows = self._query("SELECT COALESCE(SUM(c.n), 0) FROM change_event_facet_counts c WHERE %s"
                           % " AND ".join(clauses), tuple(extra))
        return int(rows[0][0] or 0)

    def _time_sql(self, alias, filters):
        first, last = self._days(filters)
        clauses, params = [], []
        if first:
            clauses.append("%s.started_at >= ?" % alias)
            params.append(first)
        if last:
            clauses.append("%s.started_at < ?" % alias)
            params.append(_next_day(last))
        return clauses, params

    def _plan(self, filters):
        """``(driver, probes, estimates)``: the condition to walk and the ones to probe."""
        conditions = self._conditions(filters)
        if not conditions:
            return None, [], {}
        estimates = [(self._estimate(condition, filters), index) for index, condition in enumerate(conditions)]
        estimates.sort()
        driver = conditions[estimates[0][1]]
        probes = [condition for index, condition in enumerate(conditions) if index != estimates[0][1]]
        return driver, probes, dict((index, count) for count, index in estimates)

    def _matching_sql(self, filters, driver, probes):
        """``(select, params)``: ``started_at, run_id`` of every matching event (unordered)."""
        if driver is None:
            clauses, params = self._time_sql("f", filters)
            sql = "SELECT f.started_at, f.run_id FROM change_events f"
            return sql + (" WHERE " + " AND ".join(clauses) if clauses else ""), params
        where, params = driver.sql("f")
        clauses, params = [where], list(params)
        time_clauses, time_params = self._time_sql("f", filters)
        clauses += time_clauses
        params += time_params
        for probe in probes:
            sql, probe_params = probe.sql("g")
            clauses.append("EXISTS (SELECT 1 FROM change_event_facets g WHERE g.run_id = f.run_id AND %s)" % sql)
            params += list(probe_params)
        distinct = "" if driver.unique_per_event else "DISTINCT "
        return ("SELECT %sf.started_at, f.run_id FROM change_event_facets f WHERE %s" % (distinct, " AND ".join(clauses)),
                params)

    def _page_sql(self, filters, sort, descending, limit, offset):
        driver, probes, estimates = self._plan(filters)
        direction = "DESC" if descending else "ASC"
        column = SORT_COLUMNS.get(sort or "started_at")
        if column is None:
            raise ValueError("sort: %r is not one of %s" % (sort, ", ".join(sorted(SORT_COLUMNS))))
        if column == "started_at":
            matching, params = self._matching_sql(filters, driver, probes)
            sql = "%s ORDER BY f.started_at %s, f.run_id %s LIMIT %d OFFSET %d" % (
                matching, direction, direction, int(limit), int(offset))
            return sql, params, driver, probes, estimates
        # another order: over change_events, every condition a probe
        clauses, params = self._time_sql("e", filters)
        for condition in ([driver] if driver else []) + probes:
            sql, probe_params = condition.sql("g")
            clauses.append("EXISTS (SELECT 1 FROM change_event_facets g WHERE g.run_id = e.run_id AND %s)" % sql)
            params += list(probe_params)
        sql = "SELECT e.started_at, e.run_id FROM change_events e%s ORDER BY e.%s %s, e.started_at DESC, e.run_id DESC" \
              " LIMIT %d OFFSET %d" % (" WHERE " + " AND ".join(clauses) if clauses else "", column, direction,
                                       int(limit), int(offset))
        return sql, params, driver, probes, estimates

    def list_change_events(self, filters, sort="started_at", descending=True, limit=50, offset=0):
        """One page of change events matching ``filters`` (see the module docstring).

        ``filters``: ``from``/``to`` (UTC days, inclusive), ``host``, ``service``, ``environment``,
        ``outcome``, ``category``, ``review``, ``ack``, ``q`` (free text: every word must start a
        value), ``all`` (include runs that changed nothing). Returns ``{"rows": [...], "total": n,
        "total_exact": bool}``; each row has the list columns, its ``hosts`` and its acknowledgement.
        """
        sql, params, driver, probes, estimates = self._page_sql(filters, sort, descending, limit, offset)
        page = self._query(sql, tuple(params))
        run_ids = [run_id for _started, run_id in page]
        rows = self._list_rows(run_ids)
        total, exact = self._total(filters, driver, probes, estimates)
        return {"rows": rows, "total": total, "total_exact": exact}

    def _total(self, filters, driver, probes, estimates):
        if driver is not None and not probes and driver.unique_per_event:
            return min(estimates.values()), True
        if driver is None:
            # every event has exactly one outcome: their counts are the events
            return self._estimate(_Condition(("outcome",), "", prefix=True), filters), True
        matching, params = self._matching_sql(filters, driver, probes)
        rows = self._query("SELECT COUNT(*) FROM (%s LIMIT %d) m" % (matching, COUNT_LIMIT + 1), tuple(params))
        count = int(rows[0][0])
        return (count, True) if count <= COUNT_LIMIT else (COUNT_LIMIT, False)

    def _list_rows(self, run_ids):
        if not run_ids:
            return []
        marks = ", ".join("?" * len(run_ids))
        found = {}
        for row in self._query("SELECT %s FROM change_events WHERE run_id IN (%s)" % (", ".join(LIST_COLUMNS), marks),
                               tuple(run_ids)):
            record = dict(zip(LIST_COLUMNS, row))
            record["dry_run"] = bool(record["dry_run"])
            record["user"] = record.pop("user_name")
            record.update(hosts=[], acknowledgement=None, review_state=None, outcome=None, categories=[])
            found[record["run_id"]] = record
        for run_id, facet, value in self._query(
                "SELECT run_id, facet, value FROM change_event_facets WHERE run_id IN (%s)"
                " AND facet IN ('host', 'ack', 'review', 'outcome', 'category') ORDER BY run_id, facet, value" % marks,
                tuple(run_ids)):
            record = found.get(run_id)
            if record is None:
                continue
            if facet == "host":
                record["hosts"].append(value)
            elif facet == "ack":
                record["acknowledgement"] = value
            elif facet == "review":
                record["review_state"] = value
            elif facet == "outcome":
                record["outcome"] = value
            else:
                record["categories"].append(value)
        return [found[run_id] for run_id in run_ids if run_id in found]

    def change_event_facet_counts(self, filters):
        """``{facet: {value: count}}`` of the events matching ``filters``, or None when more than
        :data:`COUNT_LIMIT` match several filters (counting them row by row would not scale)."""
        conditions = self._conditions(filters)
        only_default = all(condition.facets == ("listed",) for condition in conditions)
        counts = dict((facet, {}) for facet in COUNTED_FACETS)
        marks = ", ".join("?" * len(COUNTED_FACETS))
        if only_default:
            clauses, params = ["c.facet IN (%s)" % marks], list(COUNTED_FACETS)
            first, last = self._days(filters)
            if first:
                clauses.append("c.day >= ?")
                params.append(first)
            if last:
                clauses.append("c.day <= ?")
                params.append(last)
            if not filters.get("all"):
                clauses.append("c.listed = 1")
            rows = self._query("SELECT c.facet, c.value, SUM(c.n) FROM change_event_facet_counts c WHERE %s"
                               " GROUP BY c.facet, c.value" % " AND ".join(clauses), tuple(params))
        else:
            driver, probes, estimates = self._plan(filters)
            total, exact = self._total(filters, driver, probes, estimates)
            if not exact:
                return None
            matching, params = self._matching_sql(filters, driver, probes)
            # from each matching event to its facets (the run index), not from every facet row to the matches
            rows = self._query(
                "SELECT g.facet, g.value, COUNT(*) FROM (%s) m JOIN change_event_facets g ON g.run_id = m.run_id"
                " AND g.facet IN (%s) GROUP BY g.facet, g.value" % (matching, marks),
                tuple(params) + tuple(COUNTED_FACETS))
        for facet, value, count in rows:
            if int(count or 0) > 0:
                counts[facet][value] = int(count)
        return counts

    def explain_change_events(self, filters, sort="started_at", descending=True, limit=50, offset=0,
                              forbid_table_scans=True):
        """The query plan of :meth:`list_change_events`' page query, as text lines (for tests and the bench).

        On PostgreSQL ``forbid_table_scans`` turns sequential scans off for the explanation, so a small test
        database shows whether an index *can* serve the query (the planner prefers a scan of a tiny table).
        """
        sql, params, _driver, _probes, _estimates = self._page_sql(filters, sort, descending, limit, offset)
        if self.backend_name == "postgresql":
            if forbid_table_scans:
                self._query("SELECT set_config('enable_seqscan', 'off', false)")
            try:
                return [row[0] for row in self._query("EXPLAIN " + sql, tuple(params))]
            finally:
                self._query("SELECT set_config('enable_seqscan', 'on', false)")
        return [row[-1] for row in self._query("EXPLAIN QUERY PLAN " + sql, tuple(params))]

    def facet_values(self, facet, prefix="", limit=20):
        """Known values of a facet starting with ``prefix`` (host names for a search box), most frequent first."""
        rows = self._query(
            "SELECT value, SUM(n) FROM change_event_facet_counts WHERE facet = ? AND value >= ? AND value < ?"
            " GROUP BY value ORDER BY SUM(n) DESC, value LIMIT %d" % int(limit), (facet, prefix, prefix + _TOP))
        return [value for value, _count in rows]

    def change_event_position(self, run_id):
        """Where a change event's entries sit in the hash chain: ``{count, first: {seq, hash, prev_hash, kind, at},
        last: {...}}``, or None when it has none."""
        rows = self._query("SELECT MIN(seq), MAX(seq), COUNT(*) FROM ledger WHERE subject = ?", (run_id,))
        if not rows or not rows[0][2]:
            return None
        first, last, count = rows[0]
        ends = {}
        for seq, kind, at, prev_hash, hash_ in self._query(
                "SELECT seq, kind, at, prev_hash, hash FROM ledger WHERE seq IN (?, ?)", (first, last)):
            ends[seq] = {"seq": seq, "kind": kind, "at": at, "prev_hash": prev_hash, "hash": hash_}
        return {"count": int(count), "first": ends.get(first), "last": ends.get(last)}

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

    def create_review_session(self, id_hash, name, csrf, via, now, expires_at):
        self._write([("INSERT INTO review_sessions (id_hash, name, csrf, via, created_at, expires_at, last_seen)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?)", (id_hash, name, csrf, via, now, expires_at, now)),
                     ("DELETE FROM review_sessions WHERE expires_at < ?", (now,))])

    def get_review_session(self, id_hash):
        rows = self._query("SELECT id_hash, name, csrf, via, created_at, expires_at, last_seen FROM review_sessions"
                           " WHERE id_hash = ?", (id_hash,))
        if not rows:
            return None
        return dict(zip(("id_hash", "name", "csrf", "via", "created_at", "expires_at", "last_seen"), rows[0]))

    def touch_review_session(self, id_hash, now):
        self._write([("UPDATE review_sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash))])

    def delete_review_sessions(self, id_hash=None, name=None):
        if id_hash is not None:
            self._write([("DELETE FROM review_sessions WHERE id_hash = ?", (id_hash,))])
        if name is not None:
            self._write([("DELETE FROM review_sessions WHERE name = ?", (name,))])

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
