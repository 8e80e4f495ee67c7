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

LEDGER_VERIFY_SPEC = dict(
    backend_argument_spec(),
    expected_head=dict(type="str"),
    fail_on_broken=dict(type="bool", default=True),
    check_projections=dict(type="bool", default=True),
)

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


def triage_query(ctx, options):
    """``change_event_info``'s ``triage``: the ranked changes before an incident (see ``intelligence/triage.py``)."""
    # imported here: triage reads the CMDB module, which this module's other callers do not need
    from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import triage
    from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.schedules import parse_duration
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


def query_change_events(ctx):
    params = ctx.params
    sor = ctx.sor
    if params.get("triage"):
        return {"changed": False, "triage": triage_query(ctx, params["triage"])}
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
    report = ctx.sor.verify(expected_head=ctx.params.get("expected_head"),
                            projections=ctx.params.get("check_projections", True))
    result = {"changed": False, "verification": report.to_dict(), "backend": ctx.sor.describe()}
    if not report.valid and ctx.params.get("fail_on_broken", True):
        result["failed"] = True
        result["msg"] = report.summary()
    else:
        result["msg"] = report.summary()
    return result
