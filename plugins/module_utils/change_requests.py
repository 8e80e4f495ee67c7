# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Change requests: the state machine, the module specs and their operations.

A change request moves through ``new -> assess -> authorise -> scheduled ->
implement -> review -> closed`` (or ``cancelled`` from any open state), one
step at a time; standard changes are pre-authorised and go ``new ->
scheduled``, emergency changes skip assessment (``new -> authorise``).
Every change is a ``change_request.*`` ledger entry carrying the full new
record and the version it was based on, so two writers racing on one
request cannot silently overwrite each other.
"""

from __future__ import annotations

import datetime

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import duties, policy_store
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import os_identity
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.rules import CHANGE_TYPES as TYPES, RISKS
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError, NotFound, Refused, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

try:
    import zoneinfo
except ImportError:  # Python < 3.9; these modules run on the controller through their action plugins
    zoneinfo = None

NUMBER_COUNTER = "change_request"
NUMBER_FORMAT = "CHG%07d"

STATES = ("new", "assess", "authorise", "scheduled", "implement", "review", "closed", "cancelled")
OPEN_STATES = STATES[:6]
TERMINAL_STATES = ("closed", "cancelled")
#: ServiceNow spells these the American way; accept both, store one.
STATE_ALIASES = {"authorize": "authorise", "canceled": "cancelled"}
CLOSE_CODES = ("successful", "successful_issues", "unsuccessful")
APPROVAL_DECISIONS = ("approved", "rejected")

_FORWARD = {
    "new": ("assess",),
    "assess": ("authorise",),
    "authorise": ("scheduled",),
    "scheduled": ("implement",),
    "implement": ("review",),
    "review": ("closed",),
}
#: going back for rework: assessment or authorisation sends it back to new
_BACK = {"assess": ("new",), "authorise": ("new",), "scheduled": ("new",)}
_SHORTCUTS = {"standard": {"new": ("scheduled",)}, "emergency": {"new": ("authorise",)}}


def authorising_approvals(change_type):
    """The approvals under which a request may be scheduled and implemented: a standard change is
    pre-approved by its template, every other type needs an approval."""
    return ("pre-approved", "approved") if change_type == "standard" else ("approved",)


def allowed_transitions(change_type, state):
    """The states a request of ``change_type`` may move to from ``state``, in a stable order."""
    if state in TERMINAL_STATES:
        return ()
    targets = list(_FORWARD.get(state, ()))
    targets.extend(_SHORTCUTS.get(change_type, {}).get(state, ()))
    targets.extend(_BACK.get(state, ()))
    if state in ("new", "assess", "authorise", "scheduled", "implement"):
        targets.append("cancelled")
    return tuple(targets)


def transition_problem(record, target):
    """Why ``record`` may not move to ``target``, or None when it may."""
    state = record["state"]
    if target == state:
        return None
    allowed = allowed_transitions(record["type"], state)
    if target not in allowed:
        if not allowed:
            return "%s is %s; a %s change request cannot change state any more" % (record["number"], state, state)
        return ("%s cannot move from %s to %s; from %s a %s change may go to %s"
                % (record["number"], state, target, state, record["type"], ", ".join(allowed)))
    if target == "scheduled" and record.get("approval") not in authorising_approvals(record["type"]):
        return ("%s cannot be scheduled before it is approved (approval: %s)"
                % (record["number"], record.get("approval") or "not requested"))
    if target == "closed" and not record.get("close_code"):
        return "%s cannot be closed without close_code (%s)" % (record["number"], ", ".join(CLOSE_CODES))
    return None


def path_to(record, target):
    """The forward steps from the record's state to ``target`` (used to close from any open state)."""
    steps = []
    state = record["state"]
    while state != target:
        forward = _FORWARD.get(state)
        if not forward:
            return None
        state = forward[0]
        steps.append(state)
    return steps


def normalise_state(value):
    if value is None:
        return None
    return STATE_ALIASES.get(value, value)


def format_number(value):
    return NUMBER_FORMAT % value


# --------------------------------------------------------------------------
# planned window
# --------------------------------------------------------------------------
def _zone(name, option="timezone"):
    if zoneinfo is None:
        raise ValidationError("time zones need Python 3.9 or later (zoneinfo)")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationError("%s: unknown time zone %r; use an IANA name such as Europe/Paris or UTC"
                              % (option, name), option=option, value=name)


def parse_local_time(option, value, tz_name):
    """ISO 8601 time; without an offset it is read in ``tz_name``. Returns the UTC string."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError("%s: %r is not an ISO 8601 time such as 2026-11-23T22:00 or 2026-11-23T21:00:00Z"
                              % (option, value), option=option, value=value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_zone(tz_name or "UTC"))
    return format_time(moment)


# --------------------------------------------------------------------------
# module specs
# --------------------------------------------------------------------------
APPROVAL_SPEC = dict(
    # who approves is the identity running the module; a name given here must be that identity's
    approver=dict(type="str"),
    decision=dict(type="str", choices=list(APPROVAL_DECISIONS), default="approved"),
    comment=dict(type="str"),
    at=dict(type="str"),
)

CHANGE_REQUEST_SPEC = dict(
    backend_argument_spec(),
    number=dict(type="str"),
    correlation_id=dict(type="str"),
    state=dict(type="str", choices=list(STATES) + sorted(STATE_ALIASES)),
    type=dict(type="str", choices=list(TYPES)),
    short_description=dict(type="str"),
    description=dict(type="str"),
    justification=dict(type="str"),
    risk=dict(type="str", choices=list(RISKS)),
    template=dict(type="str"),
    requested_by=dict(type="str"),
    assignment_group=dict(type="str"),
    planned_start=dict(type="str"),
    planned_end=dict(type="str"),
    timezone=dict(type="str"),
    affected_cis=dict(type="list", elements="str"),
    validate_cis=dict(type="bool", default=True),
    approval=dict(type="dict", options=APPROVAL_SPEC),
    close_code=dict(type="str", choices=list(CLOSE_CODES)),
    close_notes=dict(type="str"),
    actual_start=dict(type="str"),
    actual_end=dict(type="str"),
)

CHANGE_REQUEST_INFO_SPEC = dict(
    backend_argument_spec(),
    number=dict(type="str"),
    state=dict(type="list", elements="str", choices=list(STATES) + sorted(STATE_ALIASES)),
    type=dict(type="list", elements="str", choices=list(TYPES)),
    ci=dict(type="str"),
    limit=dict(type="int", default=50),
    collisions=dict(type="bool", default=False),
)

#: plain fields copied from the arguments when given
_TEXT_FIELDS = ("short_description", "description", "justification", "risk", "template", "requested_by",
                "assignment_group", "close_code", "close_notes", "correlation_id")


def _public(record):
    """The record as stored (without the projection's version counter)."""
    if record is None:
        return None
    return {key: value for key, value in record.items() if key != "version"}


def _desired_fields(params, record):
    """The field values the arguments ask for, normalised; only fields that were given."""
    desired = {}
    for field in _TEXT_FIELDS:
        if params.get(field) is not None:
            desired[field] = params[field]
    if params.get("type") is not None:
        desired["type"] = params["type"]
    tz_name = params.get("timezone") or (record or {}).get("timezone") or "UTC"
    if params.get("timezone") is not None:
        _zone(params["timezone"])
        desired["timezone"] = params["timezone"]
    for field in ("planned_start", "planned_end", "actual_start", "actual_end"):
        if params.get(field) is not None:
            desired[field] = parse_local_time(field, params[field], tz_name)
    if params.get("affected_cis") is not None:
        names = []
        for name in params["affected_cis"]:
            if name not in names:
                names.append(name)
        desired["affected_cis"] = sorted(names)
    return desired


def _check_window(record):
    start, end = record.get("planned_start"), record.get("planned_end")
    if start and end and parse_time(end) <= parse_time(start):
        raise ValidationError("%s: planned_end (%s) must be after planned_start (%s)"
                              % (record.get("number") or "change request", end, start))


def _check_cis(sor, names):
    if not names:
        return
    found = set(ci["name"] for ci in sor.find_cis(names=list(names)))
    missing = [name for name in names if name not in found]
    if missing:
        raise ValidationError(
            "affected_cis: %s %s not a configuration item in the CMDB (register %s first, or set validate_cis: false)"
            % (", ".join(missing), "is" if len(missing) == 1 else "are", "it" if len(missing) == 1 else "them"),
            option="affected_cis", value=missing)


#: what an approval approves: changing any of these after approval needs a new one
SCOPE_FIELDS = ("type", "template", "affected_cis", "planned_start", "planned_end")


def _check_template(record):
    if record.get("type") == "standard" and not record.get("template"):
        raise ValidationError(
            "%s: a standard change request must name the policy template that pre-authorises it (template); "
            "without one, raise a normal change request" % (record.get("number") or "change request"),
            option="template")


def _reset_approval(record, now, because):
    """Withdraw the approval of ``record`` (in place); returns the change for the entry, or None.

    The approvals stop counting but are kept under ``superseded_approvals`` with why: the
    ledger keeps them anyway, and the record should say who approved what before.
    """
    if record.get("type") == "standard":
        fresh = "pre-approved"
    else:
        fresh = "not requested" if record["state"] == "new" else "requested"
    stale = list(record.get("approvals") or [])
    if record.get("approval") == fresh and not stale:
        return None
    before = record.get("approval")
    record["superseded_approvals"] = list(record.get("superseded_approvals") or []) + [
        dict(approval, superseded_at=now, superseded_because=because) for approval in stale]
    record["approvals"] = []
    record["approval"] = fresh
    return {"from": before, "to": fresh, "because": because}


def _find_by_correlation(sor, correlation_id):
    for record in sor.find_change_requests():
        if record.get("correlation_id") == correlation_id:
            return record
    return None


def _decision_time(value, record, now):
    """When an approval or rejection was decided: now, or a stated earlier time (a decision taken in a CAB
    meeting and recorded afterwards). A stated time may not lie in the future nor before the request was
    opened: an approval dated back before the request existed, or ahead of its recording, would make the
    record say something that did not happen (the ledger entry's own time stays the recording time)."""
    if not value:
        return now
    at = parse_local_time("approval.at", value, "UTC")
    if parse_time(at) > parse_time(now):
        raise ValidationError("approval.at: %r is in the future (now %s); a decision is recorded when or after it "
                              "is taken" % (value, now), field="approval.at", value=value)
    opened = record.get("opened_at")
    if opened and parse_time(at) < parse_time(opened):
        raise ValidationError("approval.at: %r is before %s was opened (%s); a request cannot be decided before "
                              "it exists" % (value, record.get("number"), opened), field="approval.at", value=value)
    return at


def plan_change_request(sor, params, actor, now=None, identity=None, in_force=None):
    """Work out the entries that bring the stored record to what ``params`` ask.

    Returns ``(before, after, steps)`` where ``steps`` is a list of
    ``(kind, record, extra)``; an empty list means nothing to do. Nothing is
    written here. ``after["number"]`` is None for a request still to be created.
    ``identity`` is who acts (authenticated: it opens requests and records approvals); ``in_force``
    the policy whose separation-of-duties rules an approval must pass (``policy_store.PolicyInForce``).
    """
    now = now or utc_now()
    identity = identity or os_identity()
    number = params.get("number")
    before = None
    if number:
        before = sor.get_change_request(number)
        if before is None:
            raise NotFound("change request %s does not exist" % number, number=number)
    elif params.get("correlation_id"):
        before = _find_by_correlation(sor, params["correlation_id"])
    version = before["version"] if before else 0
    before = _public(before)

    desired = _desired_fields(params, before)
    target_state = normalise_state(params.get("state"))
    steps = []

    if before is None:
        record = {
            "number": None,
            "state": "new",
            "type": desired.get("type", "normal"),
            "approval": "not requested",
            "approvals": [],
            "affected_cis": [],
            "timezone": "UTC",
            "opened_by": actor,
            # the requester, authenticated: separation of duties reads this, never a typed name
            "opened_by_identity": identity.to_dict(),
            "opened_at": now,
        }
        if desired.get("type") == "standard":
            record["approval"] = "pre-approved"
        record.update(desired)
        if not record.get("short_description"):
            raise ValidationError("short_description is required to create a change request")
        _check_window(record)
        _check_template(record)
        steps.append(("change_request.created", dict(record), {}))
    else:
        record = dict(before)
        changes = {key: {"from": record.get(key), "to": value} for key, value in desired.items()
                   if record.get(key) != value}
        if changes and record["state"] in TERMINAL_STATES:
            raise ValidationError("%s is %s; its fields can no longer be edited (asked to change %s)"
                                  % (record["number"], record["state"], ", ".join(sorted(changes))),
                                  number=record["number"], state=record["state"])
        if "type" in changes and record["state"] != "new":
            raise ValidationError("%s: the type can change only while the request is new (it is %s)"
                                  % (record["number"], record["state"]))
        if changes:
            record.update({key: change["to"] for key, change in changes.items()})
            _check_window(record)
            if "type" in changes or "template" in changes:
                _check_template(record)
            extra = {"changes": changes}
            scope = sorted(key for key in changes if key in SCOPE_FIELDS)
            # An approval covers the scope and window it was given for; a new type has its own
            # approval path (a standard change is pre-approved by its template, the others are not).
            if scope and (record.get("approval") == "approved" or "type" in changes):
                reset = _reset_approval(record, now, "%s changed after approval" % ", ".join(scope)
                                        if "type" not in changes else "type changed to %s" % record["type"])
                if reset:
                    extra["approval_reset"] = reset
            steps.append(("change_request.updated", dict(record), extra))

    if params.get("validate_cis", True) and desired.get("affected_cis") and (
            before is None or desired["affected_cis"] != before.get("affected_cis")):
        _check_cis(sor, desired["affected_cis"])

    approval = params.get("approval")
    if approval:
        if record["state"] in TERMINAL_STATES:
            raise ValidationError("%s is %s; approvals can no longer be recorded"
                                  % (record.get("number"), record["state"]))
        decision = approval.get("decision") or "approved"
        if approval.get("approver") and approval["approver"] != identity.name:
            raise Refused("approval.approver: %r is not who records this decision (%s, the %s): approvals and "
                          "rejections are recorded as the authenticated identity that makes them; leave approver "
                          "out, or let %s run the task" % (approval["approver"], identity.name,
                                                           _source_label(identity), approval["approver"]),
                          refusals=[{"rule": "identity", "reason": "approver is not the authenticated identity"}])
        by_approver = [a for a in record.get("approvals") or [] if duties.approval_identity(a) == identity]
        # the same approver repeating their latest decision is the idempotent case
        if not (by_approver and by_approver[-1].get("decision") == decision and record.get("approval") == decision):
            if in_force is not None:
                refused = duties.refusals("approve" if decision == "approved" else "reject", identity,
                                          in_force.policy.authorisation, record=record,
                                          number=record.get("number"))
                if refused:
                    raise Refused("%s under the %s" % (duties.describe(refused), in_force.label()),
                                  number=record.get("number"), refusals=refused)
            at = _decision_time(approval.get("at"), record, now)
            entry = {"approver": identity.name, "identity": identity.to_dict(), "decision": decision, "at": at,
                     "comment": approval.get("comment"), "recorded_by": actor}
            if in_force is not None:
                entry["policy"] = _policy_reference(in_force)
            record = dict(record)
            record["approvals"] = list(record.get("approvals") or []) + [entry]
            record["approval"] = decision
            steps.append(("change_request.%s" % decision, dict(record), {"approval": entry}))

    if target_state and target_state != record["state"]:
        problem = transition_problem(record, target_state)
        if problem:
            raise ValidationError(problem, number=record.get("number"), state=record["state"], target=target_state)
        previous = record["state"]
        record = dict(record)
        record["state"] = target_state
        extra = {"transition": {"from": previous, "to": target_state}}
        if target_state == "new":
            # Sent back for rework: whatever comes back must be decided again.
            reset = _reset_approval(record, now, "sent back to new from %s" % previous)
            if reset:
                extra["approval_reset"] = reset
        if target_state == "authorise" and record.get("approval") == "not requested":
            record["approval"] = "requested"
        if target_state == "implement" and not record.get("actual_start"):
            record["actual_start"] = now
        if target_state in ("review", "closed") and record.get("actual_start") and not record.get("actual_end"):
            record["actual_end"] = now
        if target_state in TERMINAL_STATES:
            record["closed_at"] = now
            record["closed_by"] = actor
        kind = "change_request.closed" if target_state in TERMINAL_STATES else "change_request.transitioned"
        steps.append((kind, dict(record), extra))

    return before, record, steps, version


def _source_label(identity):
    return "OS account running the module" if identity.source == "os" else "%s sign-in" % identity.source


def _policy_reference(in_force):
    """What an approval records of the policy it passed: the published version, or that none was."""
    reference = {"state": in_force.state, "sha256": in_force.policy.digest}
    if in_force.version is not None:
        reference["version"] = in_force.version
    return reference


def apply_steps(sor, steps, base_version, actor, run_id=None, number=None):
    """Turn planned steps into ledger entries (allocating the number for a new request) and append them."""
    if not steps:
        return []
    if number is None:
        number = steps[0][1].get("number") or format_number(sor.next_number(NUMBER_COUNTER))
    entries = []
    version = base_version
    for kind, record, extra in steps:
        record = dict(record, number=number)
        data = dict(extra, record=record, base_version=version)
        if run_id:
            data["run_id"] = run_id
        entries.append(Entry(kind, number, data, actor=actor))
        version += 1
    sor.append(entries)
    return entries


def ensure_change_request(ctx):
    params = ctx.params
    in_force = None
    if params.get("approval"):
        # only approvals and rejections are judged by the policy's separation-of-duties rules
        in_force = policy_store.in_force_for(ctx)
    before, after, steps, version = plan_change_request(ctx.sor, params, ctx.actor, identity=ctx.identity,
                                                        in_force=in_force)
    result = {"changed": bool(steps)}
    if steps and not ctx.check_mode:
        try:
            entries = apply_steps(ctx.sor, steps, version, ctx.actor, run_id=ctx.run_id)
        except ConflictError as exc:
            raise ConflictError("%s; read it again and retry" % exc.message, **exc.details)
        number = entries[0].subject
        stored = ctx.sor.get_change_request(number)
        after = _public(stored)
        result["entries"] = [entry.kind for entry in entries]
    result["number"] = after.get("number")
    result["change_request"] = after
    result["next_states"] = list(allowed_transitions(after["type"], after["state"]))
    if ctx.diff:
        result["diff"] = {"before": before or {}, "after": after}
    return result


def query_change_requests(ctx):
    params = ctx.params
    if params.get("limit") is not None and params["limit"] < 1:
        raise ValidationError("limit must be at least 1, got %r" % params["limit"])
    if params.get("number"):
        record = ctx.sor.get_change_request(params["number"])
        records = [record] if record else []
    else:
        states = [normalise_state(s) for s in params.get("state") or []] or None
        records = ctx.sor.find_change_requests(state=states, change_type=params.get("type") or None,
                                               ci_id=params.get("ci"), limit=params.get("limit"))
    # imported here: collisions reads change requests through this module's approval rules
    from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import collisions
    in_force = policy_store.in_force_for(ctx) if params.get("collisions") else None
    now = datetime.datetime.now(datetime.timezone.utc)
    for record in records:
        record["next_states"] = list(allowed_transitions(record["type"], record["state"]))
        if in_force is not None:
            # what the request's planned window meets, before the CAB meets (intelligence/collisions.py)
            record["collisions"] = collisions.ahead_of_time(ctx.sor, record, in_force.policy, now)
    return {"changed": False, "change_requests": records}


def close_change_request(sor, number, outcome, actual_start, actual_end, notes, actor, run_id=None):
    """Walk an open request forward to closed with the run's outcome (used by the recorder hook).

    Returns the entries appended, or a message explaining why it was left alone.
    """
    record = sor.get_change_request(number)
    if record is None:
        return [], "%s does not exist" % number
    if record["state"] in TERMINAL_STATES:
        return [], "%s is already %s" % (number, record["state"])
    if record["state"] not in ("scheduled", "implement", "review"):
        return [], "%s is in state %s; only scheduled or implementing requests are closed by a run" % (
            number, record["state"])
    version = record.pop("version")
    close_code = "successful" if outcome == "successful" else "unsuccessful"
    steps = []
    current = dict(record)
    for state in path_to(current, "closed"):
        current = dict(current, state=state)
        if state == "implement":
            current["actual_start"] = actual_start or current.get("actual_start")
        if state == "review":
            current["actual_start"] = current.get("actual_start") or actual_start
            current["actual_end"] = actual_end
        if state == "closed":
            current.update(close_code=close_code, close_notes=notes, closed_at=actual_end or utc_now(),
                           closed_by=actor)
            steps.append(("change_request.closed", dict(current), {"transition": {"to": "closed"},
                                                                   "outcome": outcome}))
        else:
            steps.append(("change_request.transitioned", dict(current), {"transition": {"to": state}}))
    return apply_steps(sor, steps, version, actor, run_id=run_id, number=number), None
