# -*- coding: utf-8 -*-
"""Property-based tests (hypothesis) of change requests as a whole: edits, approvals and transitions.

Random sequences of what people do to a change request - edit its scope, window or text, approve
or reject it, retype it, move it - go through the real change_request operation into a real
SQLite ledger. Whatever the order, an approval only ever stands for the scope and window it was
given for, nothing is scheduled unapproved, closed requests stay as they were, and a refused
step writes nothing.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import (
    SCOPE_FIELDS,
    STATES,
    TERMINAL_STATES,
    allowed_transitions,
)
from ansible_collections.changeops.itsm.plugins.module_utils.errors import Refused, ValidationError

from support.change_requests import change_request

EDITS = st.one_of(
    st.fixed_dictionaries({"affected_cis": st.sampled_from([["web01"], ["web01", "web02"], ["db01"]])}),
    st.fixed_dictionaries({"planned_start": st.sampled_from(["2026-11-23T09:00Z", "2026-11-23T10:00Z"])}),
    st.fixed_dictionaries({"planned_end": st.sampled_from(["2026-11-23T12:00Z", "2026-11-23T18:00Z"])}),
    st.fixed_dictionaries({"description": st.sampled_from(["first", "second"])}),
    st.fixed_dictionaries({"risk": st.sampled_from(["low", "high"])}),
    st.fixed_dictionaries({"template": st.sampled_from(["patching", "web-content"])}),
)
OPERATIONS = st.one_of(
    st.tuples(st.just("edit"), EDITS),
    st.tuples(st.just("approval"), st.fixed_dictionaries({
        "approver": st.sampled_from(["carol", "dave"]), "decision": st.sampled_from(["approved", "approved", "rejected"])})),
    # moves: mostly the next step forward (random targets alone rarely get past assess), some
    # returns to new for rework, and arbitrary targets that are usually refused
    st.tuples(st.just("forward"), st.just(None)),
    st.tuples(st.just("forward"), st.just(None)),
    st.tuples(st.just("forward"), st.just(None)),
    st.tuples(st.just("state"), st.just("new")),
    st.tuples(st.just("state"), st.sampled_from(STATES)),
    st.tuples(st.just("type"), st.sampled_from([{"type": "normal"}, {"type": "emergency"},
                                                {"type": "standard", "template": "patching"}])),
)


def scope(record):
    return {field: record.get(field) for field in SCOPE_FIELDS}


def params_for(record, operation):
    number = record["number"]
    kind, value = operation
    if kind == "approval":
        return {"number": number, "approval": value}
    if kind == "forward":
        kind, value = "state", (allowed_transitions(record["type"], record["state"]) or ("closed",))[0]
    if kind == "state":
        return {"number": number, "state": value, "close_code": "successful" if value == "closed" else None}
    return dict(value, number=number, validate_cis=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(change_type=st.sampled_from(["standard", "normal", "emergency"]),
       operations=st.lists(OPERATIONS, min_size=1, max_size=30))
def test_an_approval_always_stands_for_what_was_approved(sqlite_sor, change_type, operations):
    sor = sqlite_sor
    created = change_request(sor, short_description="property", type=change_type, affected_cis=["web01"],
                             planned_start="2026-11-23T10:00Z", planned_end="2026-11-23T12:00Z", timezone="UTC",
                             template="patching" if change_type == "standard" else None,
                             validate_cis=False)["change_request"]
    number = created["number"]
    record = sor.get_change_request(number)
    approved_scope = None
    for operation in operations:
        before = record
        head = sor.head()
        try:
            change_request(sor, **params_for(record, operation))
        except (ValidationError, Refused):  # refused by the state machine or by separation of duties
            assert sor.head() == head, "a refused step wrote something"
            continue
        finally:
            record = sor.get_change_request(number)
        if before["state"] in TERMINAL_STATES:
            assert record == before, "a %s request changed: %s" % (before["state"], operation)
        # approved is entered only by an approval, and only holds while the scope stays the approved one
        if record["approval"] == "approved":
            if before["approval"] != "approved":
                assert operation[0] == "approval", "approved without an approval: %s" % (operation,)
                approved_scope = scope(record)
            assert scope(record) == approved_scope, "the approved scope changed and stayed approved: %s" % (operation,)
            assert record["approvals"][-1]["decision"] == "approved"
        if record["type"] == "standard":
            assert record.get("template"), "a standard request without its template"
            assert record["approval"] in ("pre-approved", "approved", "rejected")
        else:
            assert record["approval"] != "pre-approved", "a %s request kept a standard pre-approval" % record["type"]
        if record["state"] == "new" and before["state"] != "new":
            assert record["approval"] in ("not requested", "pre-approved") and record["approvals"] == [], \
                "sent back for rework but still decided: %s" % record
        if record["state"] == "scheduled" and before["state"] != "scheduled":
            assert record["approval"] in (("pre-approved", "approved") if record["type"] == "standard"
                                          else ("approved",)), "scheduled without approval: %s" % record
        if scope(record) != scope(before) and before["approval"] == "approved":
            assert record["approvals"] == [] and record["approval"] != "approved"
            assert record["superseded_approvals"][-len(before["approvals"]):] == [
                dict(approval, superseded_at=record["superseded_approvals"][-1]["superseded_at"],
                     superseded_because=record["superseded_approvals"][-1]["superseded_because"])
                for approval in before["approvals"]]
