# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Queries over recorded change events and chain verification, for the info modules."""

from __future__ import annotations

import datetime
import re

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError

OUTCOMES = ["running", "successful", "failed", "interrupted"]

CHANGE_EVENT_INFO_SPEC = dict(
    backend_argument_spec(),
    run_id=dict(type="str"),
    since=dict(type="str"),
    until=dict(type="str"),
    host=dict(type="str"),
    playbook=dict(type="str"),
    outcome=dict(type="list", elements="str", choices=OUTCOMES),
    authorisation=dict(type="list", elements="str"),
    kind=dict(type="list", elements="str", choices=["playbook", "adhoc"]),
    limit=dict(type="int", default=50),
    include_results=dict(type="bool", default=False),
    verify=dict(type="bool", default=False),
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
            outcome=params.get("outcome"),
            authorisation=params.get("authorisation"),
            limit=params.get("limit"),
            kind=params.get("kind"),
        )
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
