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
from ansible_collections.changeops.itsm.plugins.module_utils.durations import parse_duration
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError

#: a change event's ``status``: still running, or how the run ended
STATUSES = ["running", "successful", "failed", "interrupted"]

CHANGE_EVENT_INFO_SPEC = dict(
    backend_argument_spec(),
    run_id=dict(type="str"),
    # one gate decision by the id a failed change_gate task returns (rescue: ansible_failed_result.decision_id)
    decision_id=dict(type="str"),
    since=dict(type="str"),
    until=dict(type="str"),
    host=dict(type="str"),
    playbook=dict(type="str"),
    # One name for the filter and the returned field (status); "outcome" was the filter's name before.
    status=dict(type="list", elements="str", choices=STATUSES, aliases=["outcome"],
                deprecated_aliases=[dict(name="outcome", version="2.0.0", collection_name="changeops.itsm")]),
    authorisation=dict(type="list", elements="str"),
    kind=dict(type="list", elements="str", choices=["playbook", "adhoc"]),
    limit=dict(type="int", default=50),
    include_results=dict(type="bool", default=False),
    verify=dict(type="bool", default=False),
    # "what changed before this incident?" (intelligence/triage.py)
    triage=dict(type="dict", options=dict(
        ci=dict(type="str"),
        service=dict(type="str"),
        at=dict(type="str"),
        window=dict(type="str", default="24h"),
        max_depth=dict(type="int", default=3),
        limit=dict(type="int", default=20),
    )),
)

#: decision_id names one decision: no other way of choosing events goes with it
CHANGE_EVENT_INFO_MUTUALLY_EXCLUSIVE = [("decision_id", "run_id"), ("decision_id", "triage")]

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
    # incremental verification from the newest trusted verified-up-to marker (verify_markers.py)
    mode=dict(type="str", choices=["full", "incremental"], default="full"),
    record_marker=dict(type="bool"),
    # archive files of ledger_archive, checked offline and against the ledger (archives/verify.py)
    archives=dict(type="list", elements="path"),
    ledger=dict(type="bool", default=True),
)

#: most findings ledger_verify lists (the count is always complete)
MAX_LISTED_SECRET_FINDINGS = 1000


def parse_moment(option, value, now=None):
    """ISO 8601 time/date, or a duration back from now such as ``24h`` or ``7d``."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    delta = parse_duration(text[1:] if text.startswith("-") else text, allow_zero=True)
    if delta is not None:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return format_time(now - delta)
    try:
        return format_time(parse_time(value))
    except ValueError:
        raise ValidationError(
            "%s: %r is neither an ISO 8601 time (2026-11-23T10:00:00Z) nor a duration such as 24h or 7d"
            % (option, value), option=option, value=value)


def triage_query(ctx, options):
    """``change_event_info``'s ``triage``: the ranked changes before an incident (see ``intelligence/triage.py``)."""
    # imported here: triage reads the CMDB module, which this module's other callers do not need
    from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import triage
    window = parse_duration(options.get("window") or "24h")
    if window is None:
        raise ValidationError("triage.window: %r is not a duration such as 24h, 90m or 7d" % options.get("window"),
                              option="triage.window", value=options.get("window"))
    at = parse_time(parse_moment("triage.at", options.get("at"))) if options.get("at") else \
        datetime.datetime.now(datetime.timezone.utc)
    for key in ("max_depth", "limit"):
        if options.get(key) is not None and options[key] < (0 if key == "max_depth" else 1):
            minimum = 0 if key == "max_depth" else 1
            raise ValidationError("triage.%s must be at least %d, got %r" % (key, minimum, options[key]),
                                  option="triage." + key)
    return triage.triage(ctx.sor, at, ci=options.get("ci"), service=options.get("service"), window=window,
                         max_depth=options.get("max_depth", 3), limit=options.get("limit") or 20)


#: what change_gate's decision ids look like (32 lowercase hex digits)
_DECISION_ID = re.compile(r"^[0-9a-f]{32}$")


def gate_decision(sor, decision_id):
    """``(decision, change_event)`` of the gate decision ``decision_id`` (``(None, None)`` when none was recorded).

    The decision is the ``run.gate`` ledger entry of that id as the change event holds it (with its ledger
    ``seq``), the ledger entry itself when no event holds it. A decision that could not be recorded (the
    failed gate's ``recorded: false``, a fail-closed denial) is in no ledger: its result says everything known.
    """
    value = str(decision_id).strip()
    if not _DECISION_ID.match(value):
        raise ValidationError("decision_id: %r is not a change gate decision id (32 hexadecimal digits, as a gate "
                              "task returns in decision_id)" % decision_id, option="decision_id", value=decision_id)
    entry = sor.get_entry("gate-%s" % value)
    if entry is None or entry.kind != "run.gate":
        return None, None
    event = sor.get_change_event(entry.data.get("run_id")) if entry.data.get("run_id") else None
    held = [gate for gate in (event or {}).get("gates") or () if gate.get("decision_id") == value]
    return (held[-1] if held else dict(entry.data, seq=entry.seq)), event


def query_change_events(ctx):
    params = ctx.params
    sor = ctx.sor
    if params.get("triage"):
        return {"changed": False, "triage": triage_query(ctx, params["triage"])}
    if params.get("limit") is not None and params["limit"] < 1:
        raise ValidationError("limit must be at least 1, got %r" % params["limit"])
    decision = None
    if params.get("decision_id") is not None:
        decision, event = gate_decision(sor, params["decision_id"])
        events = [event] if event else []
    elif params.get("run_id"):
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
            kind=params.get("kind"),
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
    if params.get("decision_id") is not None:
        result["decision"] = decision
    if params.get("verify"):
        result["verification"] = sor.verify(projections=True).to_dict()
    return result


def verify_ledger(ctx):
    """``ledger_verify``: the whole chain (``mode: full``) or the entries after the newest trusted verified-up-to
    marker (``mode: incremental``, see verify_markers.py), against the witnesses' checkpoints; then, when the
    ledger is valid and a signing key is configured, a new marker (``record_marker``)."""
    from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints, verify_markers

    params = ctx.params
    if ctx.sor is None:
        return verify_archive_files(ctx)
    mode = params.get("mode") or "full"
    payloads = params.get("check_payloads", True)
    record = params.get("record_marker")
    record = (mode == "incremental") if record is None else record
    settings = checkpoints.settings_for(ctx)
    anchors, checkpoint_info, witness_records = [], None, []
    if params.get("check_checkpoints", True):
        anchors, checkpoint_info, witness_records = checkpoints.witness_anchors(ctx.sor, settings, with_records=True)
        for problem in checkpoint_info["problems"]:
            ctx.warn(problem)
    marker = None
    if mode == "incremental":
        marker, problems = verify_markers.newest_marker(ctx.sor, settings, witness_records)
        for problem in problems:
            ctx.warn(problem)
    since = (marker["seq"], marker["head"]) if marker else None
    report = ctx.sor.verify(expected_head=params.get("expected_head"),
                            projections=params.get("check_projections", True) and since is None,
                            payloads=payloads, anchors=anchors, since=since)
    report.checkpoints = checkpoint_info
    verification = report.to_dict()
    verification.update(mode=mode if since else "full", marker=verify_markers.marker_view(marker),
                        recorded_marker=None)
    if mode == "incremental" and since is None:
        verification["summary"] += "; no trusted verified-up-to marker, so every entry was verified"
    elif since is not None:
        verification["summary"] += "; incremental from the verified-up-to marker of entry %d (%s, %s)" % (
            marker["seq"], marker.get("at"), marker.get("source"))
    result = {"changed": False, "verification": verification, "backend": ctx.sor.describe()}
    if report.valid and record:
        if not settings.get("checkpoint_key"):
            ctx.warn("no verified-up-to marker recorded: that needs checkpoint_key (a marker nobody signed cannot be"
                     " trusted in the database it vouches for); the next incremental verification starts from the"
                     " newest marker signed elsewhere, or verifies every entry")
        else:
            strength = payloads and (since is None or bool((marker.get(verify_markers.ATTESTATION) or {}).get(
                "payloads")))
            before = verify_markers.marker_view(marker)
            if ctx.check_mode:
                result["changed"] = not verify_markers.already_marked(
                    ctx.sor, report.head_seq, checkpoints.key_id(checkpoints.load_private_key(
                        settings["checkpoint_key"]).public_key()), strength) and bool(report.head_seq)
            else:
                entry = verify_markers.record_marker(ctx.sor, settings, report, mode if since else "full",
                                                     since[0] if since else report.base_seq, strength, ctx.actor)
                if entry is not None:
                    from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import feed_witnesses

                    feed_witnesses(ctx.sor, settings, warn=ctx.warn)
                    result["changed"] = True
                    verification["recorded_marker"] = dict(verify_markers.marker_view(
                        dict(entry.data, source="ledger entry %s" % entry.seq, signed=True)), entry_seq=entry.seq)
            if result["changed"] and ctx.diff:
                result["diff"] = {
                    "before": "verified up to entry %s\n" % before["seq"] if before else "no verified-up-to marker\n",
                    "after": "verified up to entry %s (%s)\n" % (
                        report.head_seq, "payloads opened" if strength else "chain only")}
    result["msg"] = verification["summary"]
    if params.get("archives"):
        checked = _check_archives(ctx, settings, witness_records)
        result["archives"] = checked
        result["msg"] += "; %s" % checked["summary"]
    if (not report.valid or not result.get("archives", {}).get("valid", True)) and params.get("fail_on_broken", True):
        result["failed"] = True
    if params.get("scan_secrets"):
        result["secret_scan"] = scan_ledger_for_secrets(ctx.sor)
        result["msg"] += "; %s" % result["secret_scan"]["summary"]
    return result


def _check_archives(ctx, settings, witness_records):
    """The ``archives`` report: each archive verified alone, against the ``ledger.archived`` entry that recorded it
    (when the ledger is open), their links, the newest against the live ledger's start, and every recorded archive
    present."""
    import os

    from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
    from ansible_collections.changeops.itsm.plugins.module_utils.archives import verify_archives

    keys = checkpoints.load_public_keys(checkpoints.public_key_paths(settings))
    # only witness checkpoints that are trusted count against an archive's entries
    trusted = [record for record in witness_records if checkpoints.trust(record, keys)[0]]
    recorded = {item["file"]: item for item in ctx.sor.archives()} if ctx.sor is not None else {}
    point = ctx.sor.archive_point() if ctx.sor is not None else None
    reports, problems = verify_archives(ctx.params["archives"], keys, anchors=trusted, recorded=recorded,
                                        live_base=(point["last_seq"], point["last_hash"]) if point else None)
    given = set(os.path.basename(report["path"]) for report in reports)
    for name, item in sorted(recorded.items(), key=lambda pair: pair[1]["last_seq"]):
        if name not in given:
            problems.append("archive %s (entries %d to %d, recorded by ledger entry %s) is not among the archives"
                            " given: it was moved or deleted" % (name, item["first_seq"], item["last_seq"], item["seq"]))
    entries = sum(report.get("entries") or 0 for report in reports)
    summary = ("%d archive%s verified (%d entries)%s" % (
        len(reports), "" if len(reports) == 1 else "s", entries,
        ", linked to the live ledger" if point and reports else "") if not problems else
        "archives do not verify: %s" % problems[0])
    return {"valid": not problems, "checked": len(reports), "entries": entries, "reports": reports,
            "problems": problems, "summary": summary}


def verify_archive_files(ctx):
    """``ledger_verify`` with ``ledger: false``: archive files checked on their own, no ledger opened."""
    from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
    from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import read_witnessed

    if not ctx.params.get("archives"):
        raise ValidationError("ledger: false checks archive files only: give them in archives")
    settings = checkpoints.settings_for(ctx)
    records, problems = read_witnessed(settings) if ctx.params.get("check_checkpoints", True) else ([], [])
    for problem in problems:
        ctx.warn(problem)
    checked = _check_archives(ctx, settings, records)
    result = {"changed": False, "archives": checked, "msg": checked["summary"], "backend": None}
    if not checked["valid"] and ctx.params.get("fail_on_broken", True):
        result["failed"] = True
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
