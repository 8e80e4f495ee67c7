# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change register's data, and the change_register / change_review operations.

:func:`build_register` reads the system of record with a handful of bulk
queries (never one query per change event, so 10,000 events stay fast) and
returns plain data: one *row* per change event for the list view, one
*detail* per change event for the change view, CI histories, facets for the
filters and the chain verification at generation time. Turning that data into
HTML is the renderer's job (``plugins/plugin_utils/register_render.py`` and its
Jinja2 templates); nothing here builds markup.

Details are grouped into *chunks* of :data:`CHUNK_SIZE` events: the page parses
a chunk only when a reviewer opens one of its changes, which is what keeps a
register of 10,000 changes interactive within a second or two.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import tempfile
import time

from ansible_collections.changeops.itsm.plugins.module_utils import change_scope
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import duties, policy_store
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.audit import identities_label, policy_label
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.change_events import parse_moment
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import (
    ChangeopsError,
    ConfigurationError,
    NotFound,
    Refused,
    ValidationError,
)
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import register as insights
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

#: bump when the shape of the register data changes (the page checks it)
REGISTER_FORMAT = 2
#: change events per lazily parsed detail chunk
CHUNK_SIZE = 200
#: task results worth showing a reviewer: the ones that changed or broke something
NOTABLE_STATUSES = ("changed", "failed", "unreachable")
#: cap on any one text (diff, result) so one huge file diff cannot bloat the page
MAX_TEXT_CHARS = 20000
#: newest entries kept per CI history
MAX_CI_HISTORY = 200
CI_HISTORY_KINDS = ("ci.created", "ci.updated", "ci.deleted", "ci.relationship_added", "ci.relationship_removed",
                    "ci.changed_by_run")
#: how a gate type maps to the register's authorisation categories
AUTHORISATION_CATEGORIES = {
    "standard": "standard",
    "normal": "change-request",
    "emergency": "emergency",
    "unauthorised": "unauthorised",
    "dry-run": "dry-run",
    "denied": "denied",
    "record-only": "record-only",
    "no-change": "no-change",
    # the recorder lost task results of the run (run.incomplete): how it was authorised cannot be told
    "incomplete": "incomplete",
}
#: categories of runs that changed no managed host and need no post-implementation review
NO_REVIEW_CATEGORIES = (["no-change"], ["record-only"], ["pending"], ["dry-run"])
#: awaiting-review order: the riskiest first; a blocked attempt (denied) is reviewed too
REVIEW_PRIORITY = {"unauthorised": 0, "emergency": 1, "denied": 2, "failed": 3, "other": 4}
#: CI fields the CI page shows on their own, so not again among its attributes
CI_SUMMARY_FIELDS = ("name", "class", "status", "environment")
#: change request fields a reviewer needs: who asked, who approved, for which window
CHANGE_REQUEST_FIELDS = ("number", "state", "type", "short_description", "template", "requested_by", "opened_by",
                         "opened_at", "planned_start", "planned_end", "timezone", "approval", "affected_cis",
                         "actual_start", "actual_end", "close_code")
REVIEW_OUTCOMES = ["accepted", "follow-up"]

CHANGE_REGISTER_SPEC = dict(
    backend_argument_spec(),
    path=dict(type="path", required=True),
    json_path=dict(type="path"),
    title=dict(type="str", default="Change register"),
    since=dict(type="str"),
    until=dict(type="str"),
    verify_chain=dict(type="bool", default=True),
    check_projections=dict(type="bool", default=True),
    mode=dict(type="raw"),
)

CHANGE_REVIEW_SPEC = dict(
    backend_argument_spec(),
    run_id=dict(type="str", required=True),
    outcome=dict(type="str", required=True, choices=REVIEW_OUTCOMES),
    comment=dict(type="str", default=""),
    reviewer=dict(type="str"),
)


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------
def _clip(text, limit=MAX_TEXT_CHARS):
    if text is None:
        return None
    text = str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + "\n... [%d more characters not shown]" % (len(text) - limit)


def _as_text(value):
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return str(value)


def diff_text(diffs):
    """Unified diff text of a task's recorded ``diff`` list (Ansible's before/after or prepared forms)."""
    if not diffs:
        return None
    if isinstance(diffs, dict):
        diffs = [diffs]
    parts = []
    for diff in diffs:
        if not isinstance(diff, dict):
            parts.append(_as_text(diff))
            continue
        if diff.get("prepared"):
            parts.append(str(diff["prepared"]).rstrip("\n"))
            continue
        if "before" not in diff and "after" not in diff:
            continue
        before = _as_text(diff.get("before")).splitlines()
        after = _as_text(diff.get("after")).splitlines()
        lines = list(difflib.unified_diff(
            before, after, fromfile=str(diff.get("before_header") or "before"),
            tofile=str(diff.get("after_header") or "after"), lineterm=""))
        if lines:
            parts.append("\n".join(lines))
    text = "\n".join(part for part in parts if part)
    return _clip(text) if text else None


_RESULT_NOISE = ("invocation", "_ansible_no_log", "_ansible_verbose_always", "changed", "failed", "diff")


def _clip_values(value, limit):
    if isinstance(value, str):
        return _clip(value, limit)
    if isinstance(value, dict):
        return {key: _clip_values(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_clip_values(item, limit) for item in value[:200]]
    return value


def result_summary(result):
    """A reviewer-sized (redacted) task result: noise dropped, long texts clipped; the page pretty-prints it."""
    if result in (None, {}, []):
        return None
    if not isinstance(result, dict):
        return _clip(_as_text(result), 4000)
    shown = {key: value for key, value in result.items() if key not in _RESULT_NOISE and value not in (None, "", [], {})}
    return _clip_values(shown, 4000) if shown else None


def failure_message(result):
    if isinstance(result, dict):
        for key in ("msg", "stderr", "module_stderr", "exception", "stdout"):
            if result.get(key):
                return _clip(_as_text(result[key]), 2000)
    return "failed" if result in (None, {}) else _clip(_as_text(result), 2000)


def authorisation_categories(authorisation):
    """``normal+emergency`` -> ``["change-request", "emergency"]``; a running event is ``pending``."""
    if not authorisation:
        return ["pending"]
    return [AUTHORISATION_CATEGORIES.get(part, part) for part in str(authorisation).split("+") if part]


_CONTROL_LISTS = ("controls", "results", "gates", "checks", "items")


def _control_items(items):
    """``(host, item)`` pairs of one control list, or None when ``items`` is not one.

    Accepted shapes: a list of result dicts (hardening ``controls``, a host's
    readiness ``gates``); a ``{control id: result or status}`` dict; and the
    service-scope readiness document's ``{host: [gate, ...]}``, flattened to
    one pair per host and gate so each gate keeps its own status.
    """
    if isinstance(items, dict) and items and all(isinstance(value, list) for value in items.values()):
        pairs = [(str(host), item) for host, gates in sorted(items.items()) for item in gates]
        return pairs if pairs and all(isinstance(item, dict) for _host, item in pairs) else None
    if isinstance(items, dict):
        items = [dict(value, id=name) if isinstance(value, dict) else {"id": name, "status": value}
                 for name, value in sorted(items.items())]
    if isinstance(items, list) and items and all(isinstance(item, dict) for item in items):
        return [(None, item) for item in items]
    return None


def _scalar_text(value, limit=200):
    """A status or title as text: structured values are shown as JSON, never as a JavaScript object."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return _clip(_as_text(value), limit)


def evidence_controls(document):
    """Per-control rows ``{host, id, title, status, observed, expected, detail}`` from an evidence document.

    Hardening evidence lists ``controls``, readiness evidence ``gates`` (per
    host in a service-scope document: ``host`` says whose gate a row is, and is
    None in single-host documents); other checklists may use
    ``results``/``checks``/``items``. Anything else is shown as the raw
    document instead.
    """
    if not isinstance(document, dict):
        return []
    for key in _CONTROL_LISTS:
        pairs = _control_items(document.get(key))
        if pairs is None:
            continue
        controls = []
        for host, item in pairs:
            detail = item.get("reason") or item.get("waiver") or item.get("message")
            controls.append({
                "host": host,
                "id": str(item.get("id") or item.get("control") or item.get("gate") or item.get("name") or ""),
                "title": _scalar_text(item.get("title") or item.get("description") or item.get("name")),
                "status": _scalar_text(item.get("status")),
                "observed": _clip(_as_text(item.get("observed")), 500) if "observed" in item else None,
                "expected": _clip(_as_text(item.get("expected")), 500) if "expected" in item else None,
                "detail": _clip(_as_text(detail), 500) if detail else None,
            })
        return controls
    return []


def _group(records, key):
    grouped = {}
    for record in records:
        grouped.setdefault(record.get(key), []).append(record)
    return grouped


def _ci_history_item(entry):
    data = entry.data or {}
    if entry.kind == "ci.created":
        attributes = sorted((data.get("attributes") or {}).items())
        text = "created (%s)" % ", ".join("%s=%s" % (k, v) for k, v in attributes if not isinstance(v, (dict, list)))
    elif entry.kind == "ci.updated":
        text = "updated: %s" % ", ".join("%s %s -> %s" % (k, (c or {}).get("from"), (c or {}).get("to"))
                                         for k, c in sorted((data.get("changes") or {}).items()))
    elif entry.kind == "ci.deleted":
        text = "deleted: %s" % (data.get("reason") or "no reason given")
    elif entry.kind == "ci.relationship_added":
        text = "relationship added: %s %s" % (data.get("type"), data.get("target"))
    elif entry.kind == "ci.relationship_removed":
        text = "relationship removed: %s %s" % (data.get("type"), data.get("target"))
    elif entry.kind == "ci.changed_by_run":
        text = "changed by a run on host %s" % data.get("host")
    else:
        text = entry.kind
    return {"seq": entry.seq, "at": entry.at, "kind": entry.kind, "text": _clip(text, 1000),
            "run_id": data.get("run_id"), "actor": entry.actor}


# --------------------------------------------------------------------------
# the register
# --------------------------------------------------------------------------
def build_register(sor, since=None, until=None, verify_chain=True, title="Change register", now=None,
                   exclude_run_ids=(), check_projections=True):
    """Everything the register page shows, as plain JSON-able data.

    ``exclude_run_ids``: runs left out, namely the run generating the register,
    which has not finished and would otherwise make every generation differ.
    """
    excluded = set(exclude_run_ids or ())
    events = [event for event in sor.find_change_events(since=since, until=until) if event["run_id"] not in excluded]
    run_ids = [event["run_id"] for event in events]
    selected = set(run_ids)
    whole_ledger = since is None and until is None

    results_by_run = _group(
        sor.find_task_results(run_ids=None if whole_ledger else run_ids, statuses=list(NOTABLE_STATUSES)), "run_id")
    evidence_by_run = _group((record for record in sor.find_evidence() if record.get("run_id") in selected), "run_id")
    reviews_by_run = _group(sor.find_reviews(), "run_id")
    cis = {ci["ci_id"]: ci for ci in sor.find_cis()}
    ci_by_name = {}
    for ci in cis.values():
        ci_by_name.setdefault(ci.get("name"), ci["ci_id"])
    change_requests = {record.get("number"): record for record in sor.find_change_requests()}

    cis_changed_by_run = {}
    ci_history = {}
    for entry in sor.iter_entries(kinds=list(CI_HISTORY_KINDS)):
        ci_id = (entry.data or {}).get("ci_id") or entry.subject
        ci_history.setdefault(ci_id, []).append(_ci_history_item(entry))
        if entry.kind == "ci.changed_by_run":
            cis_changed_by_run.setdefault(entry.data.get("run_id"), set()).add(ci_id)

    rows, details = [], []
    ci_runs = {}
    for position, event in enumerate(events):
        chunk = position // CHUNK_SIZE
        results = results_by_run.get(event["run_id"], [])
        row, detail = _change(sor, event, chunk, results, evidence_by_run.get(event["run_id"], []),
                              reviews_by_run.get(event["run_id"], []), cis, ci_by_name,
                              cis_changed_by_run.get(event["run_id"], set()), change_requests)
        for ci in detail["cis"]:
            ci_runs.setdefault(ci["ci_id"], []).append(event["run_id"])
        rows.append(row)
        details.append(detail)

    chunks = [{run["run_id"]: run for run in details[start:start + CHUNK_SIZE]}
              for start in range(0, len(details), CHUNK_SIZE)]
    # the Insights page: DORA metrics with trends, and the data its triage form walks
    page_insights = insights.build(sor, since, until, rows, now=now)
    # The page shows query-table rows, not ledger entries: only comparing the
    # two proves that what reviewers read is what the chain says.
    verification = sor.verify(projections=check_projections).to_dict() if verify_chain else None
    register = {
        "format": REGISTER_FORMAT,
        "title": title,
        "generated_at": utc_now() if now is None else now,
        "backend": sor.describe(),
        "scope": {"since": since, "until": until},
        "verification": verification,
        "head": dict(zip(("seq", "hash"), sor.head())),
        "counts": _counts(rows),
        "facets": _facets(rows),
        "rows": rows,
        "awaiting_review": [row["run_id"] for row in sorted(
            (row for row in rows if row["awaiting_review"]),
            key=lambda row: (_review_priority(row), _descending(row["started_at"])))],
        "cis": _ci_summaries(cis, ci_history, ci_runs),
        "chunks": chunks,
        "insights": page_insights,
    }
    # with a read replica configured (postgresql_read_dsn), which server the page was read from, and its lag
    read_from = sor.read_source()
    if read_from is not None:
        register["read_from"] = read_from
    return register


def _descending(text):
    # newest first inside a priority band, without parsing times
    return [-ord(character) for character in (text or "")]


def _review_priority(row):
    # an incomplete record is reviewed as urgently as an unauthorised change: it may hide one
    if "incomplete" in row["authorisation_types"]:
        return REVIEW_PRIORITY["unauthorised"]
    for category in ("unauthorised", "emergency", "denied"):
        if category in row["authorisation_types"]:
            return REVIEW_PRIORITY[category]
    if row["outcome"] in ("failed", "interrupted"):
        return REVIEW_PRIORITY["failed"]
    return REVIEW_PRIORITY["other"]


def _hosts(sor, event):
    stats = event.get("stats") or {}
    if stats:
        return {host: dict(counts or {}) for host, counts in stats.items()}
    # unfinished runs have no stats yet: their per-host counts (one query, only for them)
    full = sor.get_change_event(event["run_id"]) or {}
    return {row["host"]: {"ok": row.get("ok"), "changed": row.get("changed"), "failures": row.get("failed"),
                          "unreachable": row.get("unreachable"), "skipped": row.get("skipped")}
            for row in full.get("hosts") or []}


def _task_record(result, plays):
    task = result.get("task") or {}
    play = plays.get(result.get("play_id")) or {}
    item = result.get("item")
    return {
        "task": task.get("name") or task.get("action"),
        "action": task.get("action"),
        "role": task.get("role"),
        "handler": bool(task.get("handler")),
        "play": play.get("name"),
        "item": item.get("label") if isinstance(item, dict) else None,
        "status": result.get("status"),
        "started_at": result.get("started_at"),
        "duration_ms": result.get("duration_ms"),
        "diff": diff_text(result.get("diff")),
        "result": result_summary(result.get("result")),
    }


def _by_host(results, plays):
    grouped = {}
    for result in results:
        grouped.setdefault(result.get("host"), []).append(_task_record(result, plays))
    return [{"host": host, "tasks": tasks} for host, tasks in sorted(grouped.items(), key=lambda i: str(i[0]))]


def _change_request_number(value):
    """A gate's change request as its number: decisions record a snapshot dict, emergencies a number."""
    if isinstance(value, dict):
        value = value.get("number")
    return str(value) if value not in (None, "") else None


def _approval(approval):
    return {key: approval.get(key) for key in ("approver", "decision", "at", "comment", "superseded_at",
                                               "superseded_because")}


def change_request_summary(record):
    """What a reviewer needs of a change request: state, who asked, who approved it, when, and for which window."""
    summary = {key: record.get(key) for key in CHANGE_REQUEST_FIELDS}
    summary["affected_cis"] = list(record.get("affected_cis") or [])
    summary["approvals"] = [_approval(approval) for approval in record.get("approvals") or []]
    summary["superseded_approvals"] = [_approval(approval) for approval in record.get("superseded_approvals") or []]
    return summary


def _gate(gate, plays):
    emergency = gate.get("emergency") if isinstance(gate.get("emergency"), dict) else {}
    snapshot = gate.get("change_request") if isinstance(gate.get("change_request"), dict) else {}
    return {
        "play": (plays.get(gate.get("play_id")) or {}).get("name"),
        "decision_id": gate.get("decision_id"),
        "allowed": gate.get("allowed"),
        "type": gate.get("type"),
        "reference": gate.get("reference"),
        "reasons": [_as_text(reason) for reason in gate.get("reasons") or []],
        "justification": emergency.get("justification"),
        "declared_by": emergency.get("declared_by"),
        "change_request": _change_request_number(gate.get("change_request")) or _change_request_number(
            emergency.get("change_request")),
        # the request as the gate read it when it decided (it may have moved on since)
        "change_request_at_decision": {key: snapshot.get(key) for key in (
            "state", "approval", "planned_start", "planned_end", "timezone")} if snapshot else None,
        "checked_at": gate.get("checked_at"),
        "policy": policy_label(gate.get("policy")),
        "identities": identities_label(gate.get("identities")),
        "protected_areas": gate.get("protected_areas") or [],
        "freezes": [_as_text(freeze) for freeze in gate.get("freezes") or []],
        "review_required": gate.get("review_required"),
        # change intelligence: what depends on the hosts, and other work at the same time (issue 18)
        "blast_radius": insights.gate_blast_radius(gate.get("blast_radius")),
        "collisions": insights.gate_collisions(gate.get("collisions")),
        "warnings": [_as_text(warning) for warning in gate.get("warnings") or []],
    }


def _change(sor, event, chunk, results, evidence, reviews, cis, ci_by_name, changed_ci_ids, change_requests):
    run_id = event["run_id"]
    hosts = _hosts(sor, event)
    dry_run = bool(event.get("dry_run"))
    # What counts as a change is change_scope's, as for the change event's authorisation: a loop's
    # summary result is not one more change, a check-mode prediction and a write to the record are
    # no change to a host (Ansible's own per-host counts, the PLAY RECAP, stay in "hosts").
    counted = change_scope.counted_results(results)
    scopes = change_scope.changes_by_scope(counted, dry_run)
    host_changes = scopes[change_scope.HOST]
    changed_hosts = sorted(set(result.get("host") for result in host_changes))
    predicted_hosts = sorted(set(result.get("host") for result in scopes[change_scope.PREDICTED]))
    failed_hosts = sorted(host for host, counts in hosts.items()
                          if (counts.get("failures") or 0) > 0 or (counts.get("unreachable") or 0) > 0)
    categories = authorisation_categories(event.get("authorisation"))
    environments = event.get("environments") or [part for part in (event.get("environment") or "").split(",") if part]
    latest_review = reviews[0] if reviews else None
    outcome = event.get("status")
    if categories == ["denied"] and outcome == "failed":
        # a gate stopped it: a blocked attempt, not an ordinary failure
        outcome = "denied"
    awaiting = (not dry_run and latest_review is None and outcome not in ("running",)
                and categories not in NO_REVIEW_CATEGORIES)

    plays = {}
    for play in event.get("plays") or []:
        plays[play.get("play_id")] = play

    touched = {}
    for ci_id in changed_ci_ids:
        if ci_id in cis:
            touched[ci_id] = "changed by this run"
    for host in hosts:
        ci_id = ci_by_name.get(host)
        if ci_id and ci_id not in touched:
            touched[ci_id] = "changed by this run" if host in changed_hosts else "a host of this run"
    touched_cis = [{"ci_id": ci_id, "name": cis[ci_id].get("name"), "class": cis[ci_id].get("class"),
                    "environment": cis[ci_id].get("environment"), "status": cis[ci_id].get("status"), "via": via}
                   for ci_id, via in sorted(touched.items(), key=lambda item: (cis[item[0]].get("name") or "", item[0]))]

    failures = [dict(_task_record(result, plays), host=result.get("host"),
                     message=failure_message(result.get("result")))
                for result in counted if result.get("status") in ("failed", "unreachable")]

    gates = [_gate(gate, plays) for gate in event.get("gates") or []]

    references = [ref.strip() for ref in (event.get("authorisation_ref") or "").split(",") if ref.strip()]
    numbers = []
    for number in references + [gate["change_request"] for gate in gates]:
        if number and number not in numbers:
            numbers.append(number)
    requests = [change_request_summary(change_requests[number]) for number in numbers if number in change_requests]

    host_change_counts = {}
    for result in host_changes:
        host_change_counts[result.get("host")] = host_change_counts.get(result.get("host"), 0) + 1

    row = {
        "run_id": run_id,
        "started_at": event.get("started_at"),
        "ended_at": event.get("ended_at"),
        "outcome": outcome,
        "dry_run": dry_run,
        "user": event.get("user"),
        "controller": event.get("controller"),
        "playbook": event.get("playbook"),
        # an ad-hoc command (``ansible -m``): its module and host pattern; its arguments are in the detail
        "kind": event.get("kind") or "playbook",
        "adhoc": {key: (event.get("adhoc") or {}).get(key) for key in ("module", "pattern")} if event.get("adhoc") else None,
        "environments": environments,
        "hosts": sorted(hosts),
        "changed_hosts": changed_hosts,
        "predicted_hosts": predicted_hosts,
        "failed_hosts": failed_hosts,
        "host_changes": len(host_changes),
        "record_changes": len(scopes[change_scope.RECORD]),
        "authorisation": event.get("authorisation") or "pending",
        "authorisation_types": categories,
        "authorisation_ref": event.get("authorisation_ref"),
        "review_status": latest_review.get("outcome") if latest_review else None,
        "awaiting_review": awaiting,
        # CI names that differ from the host names (usually none), for the host/CI filter
        "ci_names": [ci["name"] for ci in touched_cis if ci.get("name") and ci["name"] not in hosts],
        "chunk": chunk,
    }
    detail = {
        "run_id": run_id,
        "run": {key: event.get(key) for key in (
            "started_at", "ended_at", "user", "controller", "pid", "playbooks", "git", "ansible_version",
            "check_mode", "diff_mode", "limit", "tags", "skip_tags", "extra_var_names", "inventory", "forks",
            "reason", "adhoc", "record_lost")},
        "plays": [{key: play.get(key) for key in ("play_id", "name", "pattern", "hosts", "roles", "tags", "started_at")}
                  for play in event.get("plays") or []],
        "gates": gates,
        # per host: the changes made to it (change_scope), then Ansible's own counts (its PLAY RECAP)
        "hosts": [dict({"host": host, "changes": host_change_counts.get(host, 0)}, **{key: counts.get(key) for key in (
            "ok", "changed", "failures", "unreachable", "skipped", "rescued", "ignored")})
            for host, counts in sorted(hosts.items())],
        "changes": _by_host(host_changes, plays),
        "predicted_changes": _by_host(scopes[change_scope.PREDICTED], plays),
        "record_changes": [dict(_task_record(result, plays), host=result.get("host"))
                           for result in scopes[change_scope.RECORD]],
        "failures": failures,
        "evidence": [_evidence(record) for record in evidence],
        "cis": touched_cis,
        "change_requests": requests,
        "reviews": [{key: review.get(key) for key in ("reviewer", "outcome", "comment", "reviewed_at")}
                    for review in reviews],
    }
    return row, detail


def _evidence(record):
    controls = evidence_controls(record.get("document"))
    return {
        "checklist": record.get("checklist"),
        "host": record.get("host"),
        "ci_id": record.get("ci_id"),
        "status": record.get("status"),
        "summary": record.get("summary"),
        "controls": controls,
        "document": None if controls else _clip(_as_text(record.get("document")), 4000),
    }


def _counts(rows):
    return {
        "changes": len(rows),
        "unauthorised": sum(1 for row in rows if "unauthorised" in row["authorisation_types"]),
        "failed": sum(1 for row in rows if row["outcome"] == "failed"),
        "denied": sum(1 for row in rows if "denied" in row["authorisation_types"]),
        "interrupted": sum(1 for row in rows if row["outcome"] == "interrupted"),
        "emergency": sum(1 for row in rows if "emergency" in row["authorisation_types"]),
        "dry_runs": sum(1 for row in rows if row["dry_run"]),
        "record_only": sum(1 for row in rows if row["authorisation_types"] == ["record-only"]),
        "no_change": sum(1 for row in rows if row["authorisation_types"] == ["no-change"]),
        "changed_hosts": sum(len(row["changed_hosts"]) for row in rows),
        "host_changes": sum(row["host_changes"] for row in rows),
        "awaiting_review": sum(1 for row in rows if row["awaiting_review"]),
        "follow_up": sum(1 for row in rows if row["review_status"] == "follow-up"),
    }


def _facets(rows):
    environments, outcomes, authorisations, hosts = set(), set(), set(), set()
    for row in rows:
        environments.update(row["environments"])
        outcomes.add(row["outcome"])
        authorisations.update(row["authorisation_types"])
        hosts.update(row["hosts"])
        hosts.update(row["ci_names"])
    return {"environments": sorted(environments), "outcomes": sorted(o for o in outcomes if o),
            "authorisation_types": sorted(authorisations), "hosts": sorted(h for h in hosts if h)}


def _ci_summaries(cis, ci_history, ci_runs):
    summaries = {}
    for ci_id in set(ci_runs) | set(cis):
        ci = cis.get(ci_id)
        history = ci_history.get(ci_id, [])
        summaries[ci_id] = {
            "ci_id": ci_id,
            "name": ci.get("name") if ci else None,
            "class": ci.get("class") if ci else None,
            "status": ci.get("status") if ci else "deleted",
            "environment": ci.get("environment") if ci else None,
            # name, class, status and environment have their own lines on the CI page
            "attributes": {k: v for k, v in sorted((ci or {}).get("attributes", {}).items())
                           if not isinstance(v, (dict, list)) and k not in CI_SUMMARY_FIELDS},
            "history": history[-MAX_CI_HISTORY:][::-1],
            "history_truncated": max(0, len(history) - MAX_CI_HISTORY),
            "runs": ci_runs.get(ci_id, []),
        }
    return summaries


def fingerprint(register, salt=""):
    """What makes two generations the same register for a reader.

    Not the generation time, and not the chain's length and head: entries a
    run appends to the ledger while it generates the register would otherwise
    make every generation differ. Whether the chain verified, where it broke,
    and whether the records shown were compared with it, and how they differ,
    does count.
    """
    stable = dict(register)
    stable.pop("generated_at", None)
    stable.pop("head", None)
    # which server was read counts (the page says it); its lag and the wording of a fallback do not
    read_from = stable.pop("read_from", None)
    if read_from:
        stable["read_from"] = read_from.get("server")
    verification = stable.get("verification")
    if verification:
        stable["verification"] = dict((key, verification.get(key)) for key in (
            "valid", "first_broken", "anchor_mismatch", "projections_checked", "projection_problems"))
    digest = hashlib.sha256(salt.encode("utf-8"))
    digest.update(canonical_json(stable).encode("utf-8"))
    return digest.hexdigest()


# --------------------------------------------------------------------------
# writing files: atomically, and only when the content would change
# --------------------------------------------------------------------------
def _parse_mode(mode):
    if mode is None:
        return None
    if isinstance(mode, int):
        return mode
    try:
        return int(str(mode), 8)
    except ValueError:
        raise ValidationError("mode: %r is not an octal file mode such as '0640'" % (mode,), option="mode", value=mode)


def _check_target(option, path):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValidationError("%s: the directory %s of %s does not exist" % (option, directory, path),
                              option=option, value=path)
    if os.path.isdir(path):
        raise ValidationError("%s: %s is a directory; give the file name of the register" % (option, path),
                              option=option, value=path)


#: a temporary file older than this is left over from a generator that died while writing
#: (a write takes well under a second, even for a 40 MB register)
STALE_TEMPORARY_SECONDS = 600
_TEMPORARY_SUFFIX = re.compile(r"^[A-Za-z0-9_]{8}$")


def temporary_prefix(path):
    return ".%s." % os.path.basename(path)


def remove_stale_temporaries(path, older_than=STALE_TEMPORARY_SECONDS, now=None):
    """Delete the temporary files (see :func:`write_atomically`) a killed generation of ``path`` left behind.

    Only names ``write_atomically`` makes for this very file, and only old ones:
    a younger one may be another controller's write in progress. Returns the
    removed paths.
    """
    directory = os.path.dirname(os.path.abspath(path))
    prefix = temporary_prefix(path)
    now = time.time() if now is None else now
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and _TEMPORARY_SUFFIX.match(name[len(prefix):])):
            continue
        candidate = os.path.join(directory, name)
        try:
            if now - os.lstat(candidate).st_mtime >= older_than:
                os.unlink(candidate)
                removed.append(candidate)
        except OSError:
            pass  # gone already, or not ours to delete
    return removed


def write_atomically(path, text, mode=None):
    """Replace ``path`` with ``text`` so readers see the old file or the new one, never half of one."""
    directory = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(path)
    if mode is None:
        if os.path.exists(path):
            mode = os.stat(path).st_mode & 0o7777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
    handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(path), dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def existing_fingerprint(path, reader):
    """The fingerprint stored in an existing register file (via the renderer's ``reader``), or None."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as stream:
            return reader(stream)
    except OSError:
        return None


def json_fingerprint(stream):
    try:
        return json.load(stream).get("fingerprint")
    except (ValueError, AttributeError):
        return None


def generate_register(sor, params, renderer, check_mode=False, want_diff=False, current_run_id=None,
                      write_guard=None):
    """Build, render and (unless ``check_mode``) write the register; returns the module result.

    ``renderer`` is the controller-side object that knows the templates:
    ``renderer.digest`` (changes when the templates change),
    ``renderer.render_html(register, fingerprint)`` and
    ``renderer.read_fingerprint(stream)``.

    ``write_guard``: a context manager factory entered around writing both
    files; it raises to stop a generation that was given up on (the recorder's
    per-run refresh) from writing after all.
    """
    path = params["path"]
    json_path = params.get("json_path")
    _check_target("path", path)
    if json_path:
        _check_target("json_path", json_path)
        if os.path.abspath(json_path) == os.path.abspath(path):
            raise ValidationError("json_path: %s is the same file as path" % json_path, option="json_path")
    mode = _parse_mode(params.get("mode"))
    register = build_register(
        sor,
        since=parse_moment("since", params.get("since")),
        until=parse_moment("until", params.get("until")),
        verify_chain=params.get("verify_chain", True),
        check_projections=params.get("check_projections", True),
        title=params.get("title") or "Change register",
        exclude_run_ids=[current_run_id] if current_run_id else (),
    )
    print_ = fingerprint(register, renderer.digest)
    targets = [("path", path, renderer.read_fingerprint)]
    if json_path:
        targets.append(("json_path", json_path, json_fingerprint))
    stale = [option for option, target, reader in targets if existing_fingerprint(target, reader) != print_]
    summary = dict(register["counts"])
    summary["chain"] = (register["verification"] or {}).get("summary", "not verified")
    result = {
        "changed": bool(stale),
        "path": path,
        "json_path": json_path,
        "fingerprint": print_,
        "counts": register["counts"],
        "verification": register["verification"],
        "msg": "%s: %d changes, %d unauthorised, %d failed, %d awaiting review%s" % (
            path, summary["changes"], summary["unauthorised"], summary["failed"], summary["awaiting_review"],
            "" if stale else " (already up to date)"),
    }
    if register.get("read_from"):
        result["read_from"] = register["read_from"]
    if want_diff and stale:
        options = [target[0] for target in targets]
        result["diff"] = {"before": {"files": [option for option in options if option not in stale]},
                          "after": {"files": options, "counts": register["counts"]}}
    if stale and not check_mode:
        html = renderer.render_html(register, print_)
        document = None
        if json_path:
            document = json.dumps(dict(register, fingerprint=print_), sort_keys=True, ensure_ascii=False)
        try:
            with write_guard() if write_guard else _no_guard():
                if document is not None:
                    write_atomically(json_path, document, mode)
                write_atomically(path, html, mode)
        except OSError as exc:
            raise ConfigurationError("cannot write the change register %s: %s" % (exc.filename or path, exc.strerror),
                                     path=exc.filename or path)
    return result


@contextlib.contextmanager
def _no_guard():
    yield


def generate_register_operation(ctx):
    """``change_register`` operation; needs the controller-side renderer the action plugin provides."""
    renderer = getattr(ctx, "register_renderer", None)
    if renderer is None:
        raise ChangeopsError(
            "changeops.itsm.change_register renders its templates on the controller: run it as a task "
            "(through its action plugin), not as a module executed on a managed host")
    return generate_register(ctx.sor, ctx.params, renderer, check_mode=ctx.check_mode, want_diff=ctx.diff,
                             current_run_id=ctx.run_id)


# --------------------------------------------------------------------------
# review sign-off
# --------------------------------------------------------------------------
def _reviewer(ctx, event):
    """Who signs off: the authenticated identity, never a typed name; refused where the policy's review rules
    (``reviews`` in the policy: reviewers, self-review) say no."""
    identity = ctx.identity
    named = (ctx.params.get("reviewer") or "").strip()
    if named and named != identity.name:
        raise Refused("reviewer: %r is not who signs off (%s, the account running the module): a review is recorded "
                      "as the authenticated identity that makes it; leave reviewer out, or let %s run the task"
                      % (named, identity.name, named), refusals=[{"rule": "identity", "reason": "reviewer is not the "
                                                                  "authenticated identity"}])
    in_force = policy_store.in_force_for(ctx)
    refused = duties.refusals("review", identity, in_force.policy.authorisation, record=event)
    if refused:
        raise Refused("%s under the %s" % (duties.describe(refused), in_force.label()), refusals=refused)
    return identity.name


def record_review(ctx):
    """``change_review`` operation: append a ``run.reviewed`` entry unless the same sign-off is the latest."""
    params = ctx.params
    run_id = (params.get("run_id") or "").strip()
    if not run_id:
        raise ValidationError("run_id: must name a recorded change event, got %r" % params.get("run_id"),
                              option="run_id")
    event = ctx.sor.get_change_event(run_id)
    if event is None:
        raise NotFound("run_id: no change event %r in %s" % (run_id, ctx.sor.describe()), option="run_id",
                       value=run_id)
    if event.get("status") == "running":
        raise ValidationError(
            "run_id: change event %s is still running; review it after it has finished" % run_id,
            option="run_id", value=run_id)
    reviewer = _reviewer(ctx, event)
    comment = params.get("comment") or ""
    if params["outcome"] == "follow-up" and not comment.strip():
        raise ValidationError("comment: say what needs following up when outcome is follow-up", option="comment")
    reviews = ctx.sor.find_reviews(run_id=run_id)
    latest = reviews[0] if reviews else None
    wanted = {"run_id": run_id, "reviewer": reviewer, "outcome": params["outcome"], "comment": comment}
    before = {key: latest.get(key) for key in ("reviewer", "outcome", "comment", "reviewed_at")} if latest else {}
    if latest and all(latest.get(key) == value for key, value in wanted.items()):
        return {"changed": False, "review": before, "run_id": run_id,
                "msg": "change %s already reviewed by %s: %s" % (run_id, reviewer, params["outcome"])}
    review = dict(wanted, reviewed_at=utc_now(), reviewer_identity=ctx.identity.to_dict(), recorded_by=ctx.actor)
    result = {"changed": True, "run_id": run_id,
              "review": {key: review[key] for key in ("reviewer", "outcome", "comment", "reviewed_at")},
              "msg": "change %s reviewed by %s: %s" % (run_id, reviewer, params["outcome"])}
    if ctx.diff:
        result["diff"] = {"before": before, "after": result["review"]}
    if not ctx.check_mode:
        appended = ctx.sor.append([Entry("run.reviewed", run_id, review, actor=ctx.actor)])
        result["entry_seq"] = appended[0].seq if appended else None
    return result
