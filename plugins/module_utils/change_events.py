# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Queries over recorded change events and chain verification, for the info modules."""

from __future__ import annotations

import datetime
import re

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.audit import authorisations
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError

#: a change event's ``status``: still running, or how the run ended
STATUSES = ["running", "successful", "failed", "interrupted"]

CHANGE_EVENT_INFO_SPEC = dict(
    backend_argument_spec(),
    run_id=dict(type="str"),
    since=dict(type="str"),
    until=dict(type="str"),
    host=dict(type="str"),
    playbook=dict(type="str"),
    # One name for the filter and the returned field (status); "outcome" was the filter's name before.
    status=dict(type="list", elements="str", choices=STATUSES, aliases=["outcome"],
                deprecated_aliases=[dict(name="outcome", version="2.0.0", collection_name="changeops.itsm")]),
    authorisation=dict(type="list", elements="str"),
    limit=dict(type="int", default=50),
    include_results=dict(type="bool", default=False),
    verify=dict(type="bool", default=False),
)

LEDGER_VERIFY_SPEC = dict(
    backend_argument_spec(),
    expected_head=dict(type="str"),
    fail_on_broken=dict(type="bool", default=True),
    check_projections=dict(type="bool", default=True),
    # signed checkpoints kept by the witnesses (checkpoints.py, witnesses/)
    check_payloads=dict(type="bool", default=True),
    check_checkpoints=dict(type="bool", default=True),
    checkpoint_public_keys=dict(type="list", elements="path"),
    checkpoint_sources=dict(type="list", elements="path"),
    checkpoint_key=dict(type="path"),
    witness_file=dict(type="str"),
    witness_syslog=dict(type="str", choices=["auto", "true", "false"]),
    witness_syslog_address=dict(type="path"),
    scan_secrets=dict(type="bool", default=False),
)

#: most findings ledger_verify lists (the count is always complete)
MAX_LISTED_SECRET_FINDINGS = 1000

_RELATIVE = re.compile(r"^\s*-?(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(option, value, now=None):
    """ISO 8601 time/date, or a duration back from now such as ``24h`` or ``7d``."""
    if value in (None, ""):
        return None
    match = _RELATIVE.match(str(value))
    if match:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        delta = datetime.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return format_time(now - delta)
    try:
        return format_time(parse_time(value))
    except ValueError:
        raise ValidationError(
            "%s: %r is neither an ISO 8601 time (2026-11-23T10:00:00Z) nor a duration such as 24h or 7d"
            % (option, value), option=option, value=value)


def query_change_events(ctx):
    params = ctx.params
    sor = ctx.sor
    if params.get("limit") is not None and params["limit"] < 1:
        raise ValidationError("limit must be at least 1, got %r" % params["limit"])
    if params.get("run_id"):
        event = sor.get_change_event(params["run_id"])
        events = [event] if event else []
    else:
        events = sor.find_change_events(
            since=parse_moment("since", params.get("since")),
            until=parse_moment("until", params.get("until")),
            host=params.get("host"),
            playbook=params.get("playbook"),
            status=params.get("status"),
            authorisation=params.get("authorisation"),
            limit=params.get("limit"),
        )
    for event in events:
        # the run.finished entry's "outcome" is the same value as "status": return it under one name
        event.pop("outcome", None)
        # for every decision: the policy version it was made under and the people involved
        event["authorisations"] = authorisations(event)
    if params.get("include_results"):
        for event in events:
            event["results"] = sor.get_task_results(event["run_id"], host=params.get("host"))
            event["evidence"] = sor.find_evidence(run_id=event["run_id"])
    result = {"changed": False, "change_events": events}
    if params.get("verify"):
        result["verification"] = sor.verify(projections=True).to_dict()
    return result


def verify_ledger(ctx):
    from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints

    anchors, checkpoint_info = [], None
    if ctx.params.get("check_checkpoints", True):
        anchors, checkpoint_info = checkpoints.witness_anchors(ctx.sor, checkpoints.settings_for(ctx))
        for problem in checkpoint_info["problems"]:
            ctx.warn(problem)
    report = ctx.sor.verify(expected_head=ctx.params.get("expected_head"),
                            projections=ctx.params.get("check_projections", True),
                            payloads=ctx.params.get("check_payloads", True), anchors=anchors)
    report.checkpoints = checkpoint_info
    result = {"changed": False, "verification": report.to_dict(), "backend": ctx.sor.describe()}
    if not report.valid and ctx.params.get("fail_on_broken", True):
        result["failed"] = True
        result["msg"] = report.summary()
    else:
        result["msg"] = report.summary()
    if ctx.params.get("scan_secrets"):
        result["secret_scan"] = scan_ledger_for_secrets(ctx.sor)
        result["msg"] += "; %s" % result["secret_scan"]["summary"]
    return result


def ledger_secret_findings(sor, redactor=None):
    """Yield ``(entry, [(path, detector)])`` for every stored entry in which the redaction catalogue finds
    secret-shaped content; ``path`` starts at the entry's field (``data``, ``actor``, ``subject``).

    A field ``ledger_redact`` already replaced by a tombstone is not a finding, even under a secret-looking
    key: what is stored there is the tombstone, so a redacted ledger scans clean.
    """
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import already_redacted, finding_field
    from ansible_collections.changeops.itsm.plugins.module_utils.redaction import Redactor

    redactor = redactor or Redactor()
    for entry in sor.iter_entries():
        findings = []
        for path, detector in redactor.find_secrets(entry.data, path=("data",)):
            field, _why_not = finding_field(entry, path)
            if field is None or not already_redacted(entry, field):
                findings.append((path, detector))
        for field in ("actor", "subject"):
            value = getattr(entry, field, None)
            if isinstance(value, str):
                findings.extend(redactor.find_secrets(value, path=(field,)))
        if findings:
            yield entry, findings


def scan_ledger_for_secrets(sor, redactor=None, limit=MAX_LISTED_SECRET_FINDINGS):
    """The ``secret_scan`` report of ``ledger_verify``: each entry (seq, id, kind) and field that holds
    secret-shaped content and the detector that found it; never the content itself. Each finding also names
    the ``field`` ``ledger_redact`` removes to clear it (``secret_findings``), or null and ``not_redactable``."""
    from ansible_collections.changeops.itsm.plugins.module_utils.commitments import path_text
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import finding_field
    from ansible_collections.changeops.itsm.plugins.module_utils.redaction import format_path

    findings, entries, total = [], set(), 0
    for entry, found in ledger_secret_findings(sor, redactor):
        entries.add(entry.seq)
        for path, detector in found:
            total += 1
            if len(findings) < limit:
                field, why_not = finding_field(entry, path)
                finding = {"seq": entry.seq, "id": entry.id, "kind": entry.kind, "path": format_path(path),
                           "detector": detector, "field": path_text(field) if field else None}
                if why_not:
                    finding["not_redactable"] = why_not
                findings.append(finding)
    summary = ("no stored entry holds secret-shaped content" if not total else
               "%d stored entries hold secret-shaped content (%d findings%s)" % (
                   len(entries), total, ", %d listed" % len(findings) if total > len(findings) else ""))
    return {"entries_with_secrets": len(entries), "findings_total": total, "findings": findings,
            "truncated": total > len(findings), "summary": summary}
