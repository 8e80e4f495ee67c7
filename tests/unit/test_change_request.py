# -*- coding: utf-8 -*-
"""change_request / change_request_info operations against every real backend."""

from __future__ import annotations

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import (
    CHANGE_REQUEST_INFO_SPEC,
    query_change_requests,
)
from ansible_collections.changeops.itsm.plugins.module_utils.errors import NotFound, Refused, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

from support.change_requests import add_ci, approved_change, change_request


def info(sor, **params):
    full = {name: spec.get("default") for name, spec in CHANGE_REQUEST_INFO_SPEC.items()}
    full.update(params)
    return query_change_requests(OperationContext(sor, full))["change_requests"]


def ledger_kinds(sor, number):
    return [entry.kind for entry in sor.iter_entries(subject=number)]


def test_create_allocates_numbers_and_records_the_creation(sor):
    first = change_request(sor, short_description="one", planned_start="2026-11-23T22:00",
                           planned_end="2026-11-24T01:00", timezone="Europe/Paris", validate_cis=False)
    second = change_request(sor, short_description="two")
    assert first["changed"] and first["number"] == "CHG0000001" and second["number"] == "CHG0000002"
    record = first["change_request"]
    assert (record["state"], record["type"], record["approval"]) == ("new", "normal", "not requested")
    # the window is read in its time zone and stored in UTC
    assert record["planned_start"] == "2026-11-23T21:00:00.000000Z"
    assert record["planned_end"] == "2026-11-24T00:00:00.000000Z"
    assert first["diff"] == {"before": {}, "after": record}
    assert ledger_kinds(sor, "CHG0000001") == ["change_request.created"]


def test_check_mode_predicts_without_writing(sor):
    result = change_request(sor, check_mode=True, short_description="predict")
    assert result["changed"] and result["number"] is None
    assert result["change_request"]["state"] == "new"
    assert info(sor) == []
    number = change_request(sor, short_description="real")["number"]
    assert number == "CHG0000001", "check mode must not consume a number"
    predicted = change_request(sor, check_mode=True, number=number, state="assess")
    assert predicted["changed"] and predicted["change_request"]["state"] == "assess"
    assert sor.get_change_request(number)["state"] == "new"


def test_same_desired_state_appends_nothing(sor):
    number = change_request(sor, short_description="idem", risk="low")["number"]
    head = sor.head()
    again = change_request(sor, number=number, short_description="idem", risk="low", state="new")
    assert again["changed"] is False
    assert sor.head() == head
    assert change_request(sor, number=number, state="assess")["changed"] is True
    assert change_request(sor, number=number, state="assess")["changed"] is False
    assert ledger_kinds(sor, number) == ["change_request.created", "change_request.transitioned"]


def test_correlation_id_makes_creation_idempotent(sor):
    first = change_request(sor, correlation_id="pipeline-42", short_description="deploy")
    second = change_request(sor, correlation_id="pipeline-42", short_description="deploy")
    assert first["changed"] and not second["changed"]
    assert second["number"] == first["number"]
    assert len(info(sor)) == 1


def test_no_jumping_between_states(sor):
    number = change_request(sor, short_description="jump")["number"]
    with pytest.raises(ValidationError) as error:
        change_request(sor, number=number, state="closed")
    assert error.value.message == (
        "%s cannot move from new to closed; from new a normal change may go to assess, cancelled" % number)
    assert ledger_kinds(sor, number) == ["change_request.created"]


def test_normal_change_needs_approval_before_scheduling(sor):
    number = change_request(sor, short_description="cab")["number"]
    change_request(sor, number=number, state="assess")
    authorised = change_request(sor, number=number, state="authorise")
    assert authorised["change_request"]["approval"] == "requested"
    with pytest.raises(ValidationError, match="cannot be scheduled before it is approved"):
        change_request(sor, number=number, state="scheduled")
    approved = change_request(sor, number=number, approval={"approver": "carol", "comment": "ok"})
    assert approved["change_request"]["approval"] == "approved"
    assert approved["change_request"]["approvals"][0]["approver"] == "carol"
    assert change_request(sor, number=number, approval={"approver": "carol"})["changed"] is False
    change_request(sor, number=number, state="scheduled")
    assert ledger_kinds(sor, number) == [
        "change_request.created", "change_request.transitioned", "change_request.transitioned",
        "change_request.approved", "change_request.transitioned"]


def test_closing_needs_a_close_code_and_is_final(sor):
    number = approved_change(sor, ["web01"], "2026-11-23T10:00Z", "2026-11-23T12:00Z", state="implement")
    change_request(sor, number=number, state="review")
    with pytest.raises(ValidationError, match="without close_code"):
        change_request(sor, number=number, state="closed")
    closed = change_request(sor, number=number, state="closed", close_code="successful", close_notes="done")
    record = closed["change_request"]
    assert record["state"] == "closed" and record["actual_start"] and record["actual_end"]
    assert ledger_kinds(sor, number)[-1] == "change_request.closed"
    with pytest.raises(ValidationError, match="cannot change state any more"):
        change_request(sor, number=number, state="new")


def test_standard_and_emergency_shortcuts(sor):
    standard = change_request(sor, short_description="std", type="standard", template="patching")["number"]
    assert change_request(sor, number=standard, state="scheduled")["change_request"]["state"] == "scheduled"
    emergency = change_request(sor, short_description="fire", type="emergency")["number"]
    assert change_request(sor, number=emergency, state="authorise")["changed"]


def test_affected_cis_must_exist_unless_told_otherwise(sor):
    add_ci(sor, "web01", environment="production")
    with pytest.raises(ValidationError) as error:
        change_request(sor, short_description="cis", affected_cis=["web01", "web09"])
    assert "affected_cis: web09 is not a configuration item in the CMDB" in error.value.message
    assert info(sor) == [], "nothing is half-written"
    number = change_request(sor, short_description="cis", affected_cis=["web09", "web01"],
                            validate_cis=False)["number"]
    assert sor.get_change_request(number)["affected_cis"] == ["web01", "web09"]


def test_bad_window_and_time_zone_are_refused(sor):
    with pytest.raises(ValidationError, match="planned_end .* must be after planned_start"):
        change_request(sor, short_description="w", planned_start="2026-11-23T22:00", planned_end="2026-11-23T21:00")
    with pytest.raises(ValidationError, match="timezone: unknown time zone 'Mars/Olympus'"):
        change_request(sor, short_description="w", timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="planned_start: 'tomorrow' is not an ISO 8601 time"):
        change_request(sor, short_description="w", planned_start="tomorrow")


def test_unknown_number_is_not_found(sor):
    with pytest.raises(NotFound, match="CHG0009999 does not exist"):
        change_request(sor, number="CHG0009999", state="assess")


def test_info_filters(sor):
    add_ci(sor, "db01")
    first = change_request(sor, short_description="a", affected_cis=["db01"])["number"]
    second = change_request(sor, short_description="b", type="emergency")["number"]
    change_request(sor, number=first, state="assess")
    assert [r["number"] for r in info(sor, state=["assess"])] == [first]
    assert [r["number"] for r in info(sor, type=["emergency"])] == [second]
    assert [r["number"] for r in info(sor, ci="db01")] == [first]
    assert info(sor, number=second)[0]["next_states"] == ["assess", "authorise", "cancelled"]
    assert [r["number"] for r in info(sor, state=["authorize", "new"])] == [second]


# ----------------------------------------------------------------------------- approvals stay tied to what was approved
def approved_now(sor, **fields):
    params = dict(affected_cis=["web01"], planned_start="2026-11-23T10:00Z", planned_end="2026-11-23T12:00Z",
                  timezone="UTC")
    params.update(fields)
    return approved_change(sor, params.pop("affected_cis"), params.pop("planned_start"), params.pop("planned_end"),
                           **params)


@pytest.mark.parametrize("edit", [{"affected_cis": ["web01", "web02"]}, {"planned_end": "2026-11-23T18:00Z"},
                                  {"planned_start": "2026-11-23T09:00Z"}],
                         ids=["affected_cis", "planned_end", "planned_start"])
def test_changing_the_scope_or_window_after_approval_withdraws_it(sor, edit):
    number = approved_now(sor)
    edited = change_request(sor, number=number, validate_cis=False, **edit)["change_request"]
    assert (edited["state"], edited["approval"], edited["approvals"]) == ("scheduled", "requested", [])
    [superseded] = edited["superseded_approvals"]
    assert (superseded["approver"], superseded["decision"]) == ("carol", "approved")
    assert superseded["superseded_because"] == "%s changed after approval" % ", ".join(sorted(edit))
    entry = list(sor.iter_entries(subject=number))[-1]
    assert entry.kind == "change_request.updated"
    assert entry.data["approval_reset"] == {"from": "approved", "to": "requested",
                                            "because": superseded["superseded_because"]}
    # approving the new scope makes it count again
    again = change_request(sor, number=number, approval={"approver": "carol"})["change_request"]
    assert again["approval"] == "approved" and len(again["approvals"]) == 1


def test_other_edits_and_repeats_keep_the_approval(sor):
    number = approved_now(sor)
    head = sor.head()
    assert change_request(sor, number=number, affected_cis=["web01"], planned_end="2026-11-23T12:00Z",
                          validate_cis=False)["changed"] is False
    assert sor.head() == head
    edited = change_request(sor, number=number, description="more detail", risk="low")["change_request"]
    assert edited["approval"] == "approved" and len(edited["approvals"]) == 1


def test_sending_an_approved_request_back_to_new_withdraws_the_approval(sor):
    number = approved_now(sor)
    back = change_request(sor, number=number, state="new")["change_request"]
    assert (back["approval"], back["approvals"]) == ("not requested", [])
    for step in ("assess", "authorise"):
        change_request(sor, number=number, state=step)
    with pytest.raises(ValidationError, match="cannot be scheduled before it is approved"):
        change_request(sor, number=number, state="scheduled")


def test_the_type_decides_the_approval(sor):
    number = change_request(sor, short_description="retype")["number"]
    # nothing is approved while new (approvals.states): it is assessed, approved, then sent back for rework
    with pytest.raises(Refused, match=r"is in state new; the policy accepts approvals and rejections only in "
                                      r"assess, authorise, scheduled \(rule approvals.states\)"):
        change_request(sor, number=number, approval={"approver": "carol"})
    change_request(sor, number=number, state="assess")
    change_request(sor, number=number, approval={"approver": "carol"})
    change_request(sor, number=number, state="new")
    standard = change_request(sor, number=number, type="standard", template="patching")["change_request"]
    assert (standard["approval"], standard["approvals"]) == ("pre-approved", [])
    assert standard["superseded_approvals"][0]["superseded_because"] == "sent back to new from assess"
    normal = change_request(sor, number=number, type="normal")["change_request"]
    assert normal["approval"] == "not requested"
    with pytest.raises(ValidationError, match="cannot move from new to scheduled"):
        change_request(sor, number=number, state="scheduled")


def test_a_standard_request_must_name_its_template(sor):
    with pytest.raises(ValidationError) as error:
        change_request(sor, short_description="std", type="standard")
    assert error.value.message == ("change request: a standard change request must name the policy template that "
                                   "pre-authorises it (template); without one, raise a normal change request")
    number = change_request(sor, short_description="normal")["number"]
    with pytest.raises(ValidationError, match="%s: a standard change request must name" % number):
        change_request(sor, number=number, type="standard")


@pytest.mark.parametrize("final", ["closed", "cancelled"])
def test_closed_and_cancelled_requests_cannot_be_edited(sor, final):
    number = approved_now(sor, state="implement")
    if final == "closed":
        change_request(sor, number=number, state="review")
        change_request(sor, number=number, state="closed", close_code="successful")
    else:
        change_request(sor, number=number, state="cancelled")
    head = sor.head()
    with pytest.raises(ValidationError) as error:
        change_request(sor, number=number, affected_cis=["web01", "web09"], description="x", validate_cis=False)
    assert error.value.message == "%s is %s; its fields can no longer be edited (asked to change affected_cis, " \
        "description)" % (number, final)
    assert sor.head() == head
    # asking for what is stored is still fine (a re-run of the closing task)
    assert change_request(sor, number=number, state=final)["changed"] is False


@pytest.mark.parametrize("stated, problem", [
    ("2099-01-01T00:00:00Z", "is in the future"),                 # dated ahead of its recording
    ("2000-01-01T00:00:00Z", "is before CHG"),                    # dated back before the request existed
])
def test_an_approval_cannot_be_dated_outside_the_requests_life(sor, stated, problem):
    """The stated time of a decision (a CAB meeting recorded afterwards) is bounded: not in the future,
    not before the request was opened; nothing is written when it is refused."""
    number = change_request(sor, short_description="x")["number"]
    change_request(sor, number=number, state="assess")
    change_request(sor, number=number, state="authorise")
    before = ledger_kinds(sor, number)
    with pytest.raises(ValidationError, match=problem):
        change_request(sor, number=number, approval={"approver": "carol", "at": stated})
    assert ledger_kinds(sor, number) == before


def test_an_approval_may_state_an_earlier_time_within_the_requests_life(sor):
    number = change_request(sor, short_description="x")["number"]
    change_request(sor, number=number, state="assess")
    change_request(sor, number=number, state="authorise")
    opened = info(sor, number=number)[0]["opened_at"]
    approved = change_request(sor, number=number, approval={"approver": "carol", "at": opened})["change_request"]
    assert approved["approvals"][0]["at"] == opened
