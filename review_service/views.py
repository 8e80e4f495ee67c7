# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data behind each page and API answer, read through the system-of-record interface only.

The change view is the change register's (``change_register._change``): the same plays, gate decisions
and reasons, per-host changes with their redacted diffs, evidence, CIs and reviews, so the static
register and the service never disagree about a change; here it is read for one change at a time.
"""

from __future__ import annotations

import datetime
import re

import markupsafe

from ansible_collections.changeops.itsm.plugins.module_utils import change_register, change_requests, commitments
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import GENESIS_HASH
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import entry_problem
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.change_index import DISPOSITIONS
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.review_queries import (
    MAX_OFFSET,
    SORT_COLUMNS,
)

PAGE_SIZES = (25, 50, 100, 250)
MAX_PAGE = 1000000
#: list filters and what they accept
OUTCOMES = ("running", "successful", "failed", "interrupted", "denied")
CATEGORIES = ("standard", "change-request", "emergency", "unauthorised", "denied", "dry-run", "record-only",
              "no-change", "pending")
REVIEW_STATES = ("awaiting", "accepted", "follow-up", "not-required", "pending")
ACK_STATES = ("unacknowledged",) + DISPOSITIONS
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FREE = re.compile(r"^[^\x00-\x1f]{0,200}$")


def _day(name, value):
    if not value:
        return None
    value = value.strip()
    if not _DAY.match(value):
        raise ValidationError("%s: %r is not a date (YYYY-MM-DD, UTC)" % (name, value))
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        raise ValidationError("%s: %r is not a date (YYYY-MM-DD, UTC)" % (name, value))
    return value


def _choice(name, value, choices):
    if not value:
        return None
    if value not in choices:
        raise ValidationError("%s: %r is not one of %s" % (name, value, ", ".join(choices)))
    return value


def _free(name, value):
    if not value:
        return None
    value = value.strip()
    if not _FREE.match(value):
        raise ValidationError("%s: at most 200 printable characters" % name)
    return value or None


def _int(name, value, default, minimum, maximum):
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError("%s: %r is not a whole number" % (name, value))
    if not minimum <= number <= maximum:
        raise ValidationError("%s: %d is not between %d and %d" % (name, number, minimum, maximum))
    return number


class ListQuery(object):
    """A change list request (its filters, sort and page) parsed from query parameters: bad input is a
    ``ValidationError`` naming the parameter and value."""

    FILTERS = ("from", "to", "host", "service", "environment", "outcome", "category", "review", "ack", "ref", "q",
               "all")

    def __init__(self, params):
        self.filters = {
            "from": _day("from", params.get("from")),
            "to": _day("to", params.get("to")),
            "host": _free("host", params.get("host")),
            "service": _free("service", params.get("service")),
            "environment": _free("environment", params.get("environment")),
            "outcome": _choice("outcome", params.get("outcome"), OUTCOMES),
            "category": _choice("category", params.get("category"), CATEGORIES),
            "review": _choice("review", params.get("review"), REVIEW_STATES),
            "ack": _choice("ack", params.get("ack"), ACK_STATES),
            "ref": _free("ref", params.get("ref")),
            "q": _free("q", params.get("q")),
            "all": str(params.get("all") or "").lower() in ("1", "true", "yes", "on"),
        }
        if self.filters["from"] and self.filters["to"] and self.filters["to"] < self.filters["from"]:
            raise ValidationError("to: %s is before from (%s)" % (self.filters["to"], self.filters["from"]))
        self.sort = _choice("sort", params.get("sort"), tuple(SORT_COLUMNS)) or "started_at"
        self.descending = (params.get("dir") or "desc") != "asc"
        self.per_page = _int("per_page", params.get("per_page"), 50, 1, 250)
        self.page = _int("page", params.get("page"), 1, 1, MAX_PAGE)
        # keyset cursors (the list key of the last/first row shown): deep pages cost what the first does
        self.before = _int("before", params.get("before"), None, -(2 ** 62), 2 ** 62)
        self.after = _int("after", params.get("after"), None, -(2 ** 62), 2 ** 62)
        if self.before is not None and self.after is not None:
            raise ValidationError("before, after: give one cursor, not both")
        if (self.before is not None or self.after is not None) and self.sort != "started_at":
            raise ValidationError("before/after: cursors page the list in time order (sort=started_at)")

    @property
    def offset(self):
        return (self.page - 1) * self.per_page

    def params(self, **changes):
        """Query parameters of this list with ``changes`` (a permalink); default values left out."""
        values = dict((key, value) for key, value in self.filters.items() if value)
        values["all"] = "1" if self.filters["all"] else None
        values.update(sort=self.sort if self.sort != "started_at" else None, dir=None if self.descending else "asc",
                      per_page=self.per_page if self.per_page != 50 else None, page=self.page if self.page != 1 else None,
                      before=self.before, after=self.after)
        if {"page", "before", "after", "sort", "dir"} & set(changes):
            # a new position replaces the old one
            values.update(page=None, before=None, after=None)
        values.update(changes)
        return dict((key, value) for key, value in values.items() if value not in (None, "", False))


def change_list(sor, query, with_counts=True):
    page = sor.list_change_events(query.filters, sort=query.sort, descending=query.descending,
                                  limit=query.per_page, offset=query.offset, before=query.before, after=query.after,
                                  counts=with_counts)
    pages = max(1, -(-page["total"] // query.per_page))
    by_cursor = query.before is not None or query.after is not None
    return {"rows": page["rows"], "total": page["total"], "total_exact": page["total_exact"],
            "counts": page.get("counts"), "page": None if by_cursor else query.page, "per_page": query.per_page,
            "pages": pages, "filters": query.filters, "sort": query.sort, "descending": query.descending,
            "older": page.get("older"), "newer": page.get("newer"),
            "max_page": MAX_OFFSET // query.per_page + 1}


class _LazyRequests(dict):
    """Change requests fetched when ``change_register._change`` asks for them (one change at a time)."""

    def __init__(self, sor):
        super(_LazyRequests, self).__init__()
        self._sor = sor

    def __contains__(self, number):
        if not dict.__contains__(self, number):
            record = self._sor.get_change_request(number) if number else None
            if record is None:
                return False
            self[number] = record
        return True


def change_view(sor, run_id):
    """Everything the change page shows, or None for an unknown run id."""
    event = sor.get_change_event(run_id)
    if event is None:
        return None
    results = list(sor.get_task_results(run_id))
    hosts = sorted(set(result.get("host") for result in results if result.get("host")) |
                   set(host["host"] for host in event.get("hosts") or []))
    cis = dict((ci["ci_id"], ci) for ci in sor.find_cis(names=hosts)) if hosts else {}
    ci_by_name = dict((ci["name"], ci_id) for ci_id, ci in cis.items())
    notable = [result for result in results if result.get("status") in change_register.NOTABLE_STATUSES]
    row, detail = change_register._change(  # pylint: disable=protected-access
        sor, event, 0, notable, sor.find_evidence(run_id=run_id), sor.find_reviews(run_id=run_id), cis, ci_by_name,
        set(), _LazyRequests(sor))
    row.pop("chunk", None)
    by_host = {}
    for result in change_register_counted(results):
        by_host.setdefault(result.get("host"), []).append({
            "task": (result.get("task") or {}).get("name") or (result.get("task") or {}).get("action"),
            "action": (result.get("task") or {}).get("action"), "status": result.get("status"),
            "item": (result.get("item") or {}).get("label") if isinstance(result.get("item"), dict) else None,
            "duration_ms": result.get("duration_ms"), "seq": result.get("seq")})
    position = sor.change_event_position(run_id)
    return {"row": row, "detail": detail, "results_by_host": sorted(by_host.items(), key=lambda item: str(item[0])),
            "acknowledgements": sor.find_acknowledgements(run_id=run_id), "chain": position,
            "chain_check": verify_entries(sor, run_id, position)}


def change_register_counted(results):
    from ansible_collections.changeops.itsm.plugins.module_utils import change_scope
    return change_scope.counted_results(results)


def verify_entries(sor, run_id, position):
    """Check this change's own entries with the ledger's own verification (``ledger.entry_problem``: each
    entry's hash, or its salted per-field commitments, and its redactions), and that each links to the
    entry before it in the chain; list the redactions of its fields (tombstones) with their records.

    A whole-chain verification belongs to ``ledger_verify`` (it reads every entry and the checkpoints);
    this is what one page can afford, and the page says so.
    """
    if not position:
        return None
    predecessors = position.get("predecessors") or {}
    broken, unlinked, redactions = [], [], []
    count = 0
    for entry in sor.iter_entries(subject=run_id):
        count += 1
        problem = entry_problem(entry)
        if problem is not None:
            broken.append({"seq": entry.seq, "kind": entry.kind, "problem": problem})
        expected = GENESIS_HASH if entry.seq == 1 else predecessors.get(entry.seq)
        if entry.prev_hash != expected:
            unlinked.append(entry.seq)
        if entry.redactions:
            redactions.extend(_redactions_of(sor, entry))
    return {"entries": count, "hashes_recompute": not broken, "broken": broken[:10], "linked": not unlinked,
            "unlinked": unlinked[:10], "redactions": redactions}


def _redactions_of(sor, entry):
    """The ``ledger.redacted`` records of ``entry``'s tombstoned fields: which field, why, who, when."""
    found = []
    for record in sor.iter_entries(subject=entry.id, kinds=["ledger.redacted"]):
        data = record.data or {}
        for field in data.get("fields") or []:
            found.append({"entry_seq": entry.seq, "entry_kind": entry.kind, "field": field.get("field"),
                          "redaction_seq": record.seq, "reason": data.get("reason"),
                          "redacted_by": data.get("redacted_by"), "redacted_at": data.get("redacted_at")})
    return found


_TOMBSTONE = re.compile(re.escape(commitments.TOMBSTONE_PREFIX) + r"(\d+)\]")


def render_redacted(value):
    """A value for a page, its redaction tombstones (``[redacted by ledger entry N]``) marked as such: a field
    ``ledger_redact`` removed shows where it was and which ledger entry records why (escaped otherwise)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if commitments.TOMBSTONE_PREFIX not in text:
        return text
    parts, last = [], 0
    for match in _TOMBSTONE.finditer(text):
        parts.append(markupsafe.escape(text[last:match.start()]))
        parts.append(markupsafe.Markup('<span class="tombstone" title="removed from the ledger; ledger entry %s '
                                       'records who, when and why">redacted (ledger entry %s)</span>')
                     % (match.group(1), match.group(1)))
        last = match.end()
    parts.append(markupsafe.escape(text[last:]))
    return markupsafe.Markup("").join(parts)


def ci_view(sor, ci_id):
    ci = sor.get_ci(ci_id)
    history = [change_register._ci_history_item(entry)  # pylint: disable=protected-access
               for entry in sor.iter_entries(subject=ci_id, kinds=list(change_register.CI_HISTORY_KINDS))]
    if ci is None and not history:
        return None
    name = (ci or {}).get("name")
    changes = sor.list_change_events({"host": name.replace(" ", "_"), "all": True}, limit=100)["rows"] if name else []
    return {"ci": ci, "history": history[::-1], "changes": changes}


def change_request_view(sor, number):
    record = sor.get_change_request(number)
    if record is None:
        return None
    history = [{"seq": entry.seq, "at": entry.at, "kind": entry.kind, "actor": entry.actor,
                "transition": (entry.data or {}).get("transition"), "approval": (entry.data or {}).get("approval"),
                "changes": sorted(((entry.data or {}).get("changes") or {}).keys())}
               for entry in sor.iter_entries(subject=number)]
    runs = sor.list_change_events({"ref": number, "all": True}, limit=100)["rows"]
    return {"record": record, "summary": change_register.change_request_summary(record),
            "next_states": list(change_requests.allowed_transitions(record["type"], record["state"])),
            "history": history[::-1], "runs": runs}


def read_from_notice(read_from):
    """What a page says about where its change data came from, with a read replica configured: ``{"level",
    "server", "text"}`` (level ``info`` for a replica that is caught up or a person's own action still on its way,
    ``warn`` for a lagging replica or one the page could not use), or None without a replica."""
    if not read_from:
        return None
    lag = read_from.get("lag_seconds")
    replayed = read_from.get("replayed_seq")
    if read_from["server"] == "replica":
        if lag:
            return {"level": "warn", "server": "replica",
                    "text": "Data from the read replica, %.1f s behind the primary (replayed up to entry %s): changes "
                            "recorded since then do not show yet." % (lag, replayed)}
        return {"level": "info", "server": "replica",
                "text": "Data from the read replica (up to date, entry %s)." % replayed}
    if read_from.get("cause") == "position":
        return {"level": "info", "server": "primary",
                "text": "Data from the primary: your latest action (entry %s) is not on the read replica yet (it has "
                        "replayed up to entry %s)." % (read_from.get("own_write_seq"), replayed)}
    return {"level": "warn", "server": "primary",
            "text": "Data from the primary, not the read replica: %s." % (
                (read_from.get("reason") or "it could not be used").replace("reading from the primary: ", "", 1))}
