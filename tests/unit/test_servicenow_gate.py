# -*- coding: utf-8 -*-
"""The change gate with ServiceNow as its authority, against the loopback simulator and a real system of
record: every CHG state, the approval, the window, the affected CIs, conflicts, standard changes from a
template, fail-closed causes, the local fallback and waiting for approval within the request budget."""

from __future__ import annotations

import uuid

import pytest

from support.servicenow import SN
from support.servicenow_sim import Control, Simulator
from test_cmdb import ci_item

from ansible_collections.changeops.itsm.plugins.module_utils import change_gate, change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import Identity
from ansible_collections.changeops.itsm.plugins.module_utils.errors import BackendUnavailable, ConfigurationError
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.authority import authority_for
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import (
    ServiceNowAuthError,
    ServiceNowRateLimited,
    ServiceNowUnavailable,
)
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.outbox import Outbox

pytestmark = pytest.mark.backends("sqlite")

POLICY = """
templates:
  - name: patching
    servicenow_template: Patch Linux servers
    conditions:
      - "contains(tags, 'patching')"
servicenow:
  local_fallback: %s
  fallback_max_age: 30
"""
HOSTS = ["web01", "web02"]


@pytest.fixture
def policy(tmp_path):
    def load(local_fallback=False):
        path = tmp_path / ("policy-%s.yml" % local_fallback)
        path.write_text(POLICY % ("true" if local_fallback else "false"))
        return change_policy.load_policy(str(path))
    return load


@pytest.fixture
def cmdb(sor, sn):
    """web01 and web02 registered here and pushed to ServiceNow (their sys_ids in the ledger)."""
    for host in HOSTS:
        ci_item(sor, name=host, ci_class="server", attributes={"os_family": "Debian"})
    Outbox(sor, sn.settings()).drain(30)
    return dict((host, sn.ci(host)["sys_id"]) for host in HOSTS)


def gate(sor, sn, policy, number=None, run_id="run-1", check_mode=False, tags=(), settings=None, identity=None,
         **params):
    full = dict((name, option.get("default")) for name, option in change_gate.CHANGE_GATE_SPEC.items())
    instance = {"host": sn.url, "username": "changeops.integration", "password": "integration-simulator-password",
                "retries": 1, "backoff": 0.01, "rate_limit_wait": 1}
    instance.update(settings or {})
    # the whole decision is in the result of a gate that does not fail the play (main's change_gate returns only
    # the message and decision id when it does: the decision is in the ledger)
    full.update(change_request=number, instance=instance, fail_on_deny=False)
    full.update(params)
    ctx = OperationContext(sor, full, check_mode=check_mode, run_id=run_id, actor="alice@controller",
                           identity=identity)
    play = {"name": "patch", "tags": list(tags), "playbook_name": "site.yml"}
    return change_gate.run_gate(ctx, policy, play, HOSTS, {}, "play-1", uuid.uuid4().hex,
                                progress=lambda message: None)["decision"]


@pytest.mark.parametrize("state,allowed", [("new", False), ("assess", False), ("authorise", False),
                                           ("scheduled", True), ("implement", True), ("review", False),
                                           ("closed", False), ("cancelled", False)])
def test_every_state(sor, sn, cmdb, policy, state, allowed):
    change = sn.new_change(state=state, cis=HOSTS)
    decision = gate(sor, sn, policy(), change["number"])
    assert decision["allowed"] is allowed, decision["reasons"]
    if allowed:
        assert decision["type"] == "normal" and decision["reference"] == change["number"]
        assert decision["servicenow"]["sys_id"] == change["sys_id"]
    else:
        assert "%s is in state %s, not scheduled or implement" % (change["number"], state) in decision["reasons"]


@pytest.mark.parametrize("approval,reason", [("requested", "is not approved (approval: requested)"),
                                             ("not requested", "is not approved (approval: not requested)"),
                                             ("rejected", "was rejected")])
def test_approval(sor, sn, cmdb, policy, approval, reason):
    change = sn.new_change(approval=approval, cis=HOSTS)
    decision = gate(sor, sn, policy(), change["number"])
    assert not decision["allowed"] and any(reason in text for text in decision["reasons"])


@pytest.mark.parametrize("start,end,reason", [(2, 4, "before the window starts"), (-4, -2, "after the window ends")])
def test_window(sor, sn, cmdb, policy, start, end, reason):
    change = sn.new_change(start=start, end=end, cis=HOSTS)
    decision = gate(sor, sn, policy(), change["number"])
    assert not decision["allowed"] and any(reason in text for text in decision["reasons"])


def test_every_host_must_be_an_affected_ci(sor, sn, cmdb, policy):
    change = sn.new_change(cis=["web01"])
    decision = gate(sor, sn, policy(), change["number"])
    assert decision["reasons"] == ["web02 is not an affected CI of %s" % change["number"]]


def test_an_affected_ci_renamed_in_servicenow_still_covers_its_host_by_sys_id(sor, sn, cmdb, policy):
    change = sn.new_change(cis=HOSTS)
    sn.control.update("cmdb_ci_linux_server", cmdb["web02"], {"name": "web02.renamed"})
    assert gate(sor, sn, policy(), change["number"])["allowed"]


def test_no_conflicts_even_though_the_status_reads_conflict(sor, sn, cmdb, policy):
    change = sn.new_change(cis=HOSTS)
    decision = gate(sor, sn, policy(), change["number"])
    assert decision["allowed"] and decision["change_request"]["conflicts"] == []
    assert sn.chg(change["number"])["conflict_status"] == "No Conflict"
    statuses = [entry for entry in sn.requests() if entry["path"].endswith("/conflict")]
    assert statuses  # the check ran (started because it had never run, then polled)


def test_conflicts_deny_naming_them(sor, sn, cmdb, policy):
    other = sn.new_change(state="implement", cis=["web01"])
    change = sn.new_change(cis=HOSTS)
    sn.control.call("POST", "blackouts", [{"name": "year end", "start": "2000-01-01 00:00:00",
                                           "end": "2100-01-01 00:00:00", "ci": cmdb["web02"]}])
    decision = gate(sor, sn, policy(), change["number"])
    assert not decision["allowed"]
    assert "%s has a scheduling conflict in ServiceNow: Configuration Item Already Scheduled (web01) with %s" % (
        change["number"], other["number"]) in decision["reasons"]
    assert "%s has a scheduling conflict in ServiceNow: Blackout (web02)" % change["number"] in decision["reasons"]


def test_a_chg_that_does_not_exist(sor, sn, cmdb, policy):
    decision = gate(sor, sn, policy(), "CHG9999999")
    assert decision["reasons"] == ["CHG9999999 does not exist in the system of record"]


# -- separation of duties on a ServiceNow CHG -----------------------------------------------------------
# ServiceNow's approval rules chose its approvers; the policy's rules that refuse still apply to the people
# ServiceNow reports: its approval records (sysapproval_approver) and who opened or requested the CHG.
def sod_policy(tmp_path, approvals):
    path = tmp_path / "sod-policy.yml"
    path.write_text("approver_groups:\n  cab: {accounts: [carol]}\napprovals:\n%s" % approvals)
    return change_policy.load_policy(str(path))


def test_the_people_servicenow_reports_are_recorded_as_its_identities(sor, sn, cmdb, policy):
    change = sn.new_change(cis=HOSTS, approved_by=("cab.manager",), requested_by="changeops.integration")
    decision = gate(sor, sn, policy(), change["number"], identity=Identity("alice"))
    assert decision["allowed"], decision["reasons"]
    people = decision["identities"]
    assert people["requester"] == {"name": "changeops.integration", "source": "servicenow"}
    assert [(who["name"], who["source"]) for who in people["approvers"]] == [("cab.manager", "servicenow")]
    assert people["runner"] == {"name": "alice", "source": "os"}


def test_the_requester_approving_their_own_chg_does_not_count(sor, sn, cmdb, tmp_path):
    change = sn.new_change(cis=HOSTS, approved_by=("cab.manager",), requested_by="cab.manager")
    decision = gate(sor, sn, sod_policy(tmp_path, "  allow_self_approval: false\n"), change["number"],
                    identity=Identity("alice"))
    assert not decision["allowed"]
    assert decision["reasons"] == ["no approval of %s counts under the policy in force (cab.manager (servicenow): "
                                   "cab.manager requested it (rule approvals.allow_self_approval: false))"
                                   % change["number"]]
    # a policy that allows self-approval lets it count; under the strict one, another approver's approval counts
    decision = gate(sor, sn, sod_policy(tmp_path, "  allow_self_approval: true\n"), change["number"],
                    identity=Identity("alice"))
    assert decision["allowed"], decision["reasons"]
    sn.approve(change, "carol")
    assert gate(sor, sn, sod_policy(tmp_path, "  allow_self_approval: false\n"), change["number"],
                identity=Identity("alice"))["allowed"]


def test_the_runner_may_not_be_the_only_approver_by_their_servicenow_user_name(sor, sn, cmdb, tmp_path):
    strict = sod_policy(tmp_path, "  allow_runner_as_sole_approver: false\n")
    change = sn.new_change(cis=HOSTS, approved_by=("alice",))
    decision = gate(sor, sn, strict, change["number"], identity=Identity("alice"))
    assert not decision["allowed"]
    assert decision["reasons"] == ["alice runs this play and is the only approver of %s; another approver must "
                                   "approve it too, or someone else must do it (rule "
                                   "approvals.allow_runner_as_sole_approver: false)" % change["number"]]
    # someone else runs it, or a second approver approves too
    assert gate(sor, sn, strict, change["number"], identity=Identity("bob"))["allowed"]
    sn.approve(change, "cab.manager")
    assert gate(sor, sn, strict, change["number"], identity=Identity("alice"))["allowed"]


def test_an_approved_chg_whose_approvers_servicenow_does_not_name_is_refused(sor, sn, cmdb, policy):
    change = sn.new_change(cis=HOSTS, approved_by=())
    decision = gate(sor, sn, policy(), change["number"], identity=Identity("alice"))
    assert not decision["allowed"]
    [reason] = decision["reasons"]
    assert reason.startswith("no approval of %s counts under the policy in force (ServiceNow %s (its Approvals "
                             "table) calls it approved but names no approver" % (change["number"], sn.url)), reason
    # a rejected or pending approval record is no approval
    sn.approve(change, "cab.manager", state="rejected")
    sn.approve(change, "carol", state="requested")
    assert not gate(sor, sn, policy(), change["number"], identity=Identity("alice"))["allowed"]


def test_the_policys_approver_groups_are_servicenows_to_decide(sor, sn, cmdb, tmp_path):
    """approvals.approvers names who may approve the collection's own requests; a ServiceNow CHG's approvers
    were chosen by ServiceNow's approval rules (its groups, its CAB), so cab.manager's approval counts even
    though the policy's cab group lists only carol."""
    change = sn.new_change(cis=HOSTS, approved_by=("cab.manager",))
    assert gate(sor, sn, sod_policy(tmp_path, "  approvers: [cab]\n"), change["number"],
                identity=Identity("alice"))["allowed"]


def test_an_emergency_chg_is_flagged_for_review(sor, sn, cmdb, policy):
    change = sn.new_change(kind="emergency", cis=HOSTS)
    decision = gate(sor, sn, policy(), change["number"])
    assert decision["allowed"] and decision["type"] == "emergency" and decision["review_required"]


def test_a_servicenow_standard_change_is_covered_by_the_policy_template_naming_its_template(sor, sn, cmdb, policy):
    version = sn.control.records("std_change_producer_version", "name=Patch Linux servers - 1")[0]
    change = sn.new_change(kind="standard", approval="not requested", cis=HOSTS,
                           std_change_producer_version=version["sys_id"])
    assert gate(sor, sn, policy(), change["number"], tags=["patching"])["allowed"]
    decision = gate(sor, sn, policy(), change["number"], tags=["other"])
    assert not decision["allowed"] and any("patching" in text for text in decision["reasons"])
    other = sn.control.records("std_change_producer_version", "name=Rotate TLS certificate - 1")[0]
    unmapped = sn.new_change(kind="standard", cis=HOSTS, std_change_producer_version=other["sys_id"])
    decision = gate(sor, sn, policy(), unmapped["number"], tags=["patching"])
    assert not decision["allowed"] and any("names no standard change template" in text for text in decision["reasons"])


def test_a_policy_template_creates_its_standard_chg_once_per_run(sor, sn, cmdb, policy):
    decision = gate(sor, sn, policy(), tags=["patching"], run_id="run-std")
    assert decision["allowed"] and decision["type"] == "standard"
    number = decision["reference"]
    record = sn.chg(number)
    assert (record["type"], record["state"], record["correlation_id"]) == ("standard", "-1", "changeops-run-std-patching")
    assert record["std_change_producer_version"]
    assert sorted(row["ci_item"] for row in sn.control.records("task_ci", "task=%s" % record["sys_id"])) == \
        sorted(cmdb.values())
    again = gate(sor, sn, policy(), tags=["patching"], run_id="run-std")
    assert again["reference"] == number
    assert len(sn.control.records("change_request", "type=standard")) == 1
    dry = gate(sor, sn, policy(), tags=["patching"], run_id="run-dry", check_mode=True)
    assert dry["type"] == "dry-run" and len(sn.control.records("change_request", "type=standard")) == 1


def test_an_unreachable_servicenow_fails_closed_naming_the_cause(sor, sn, cmdb, policy):
    change = sn.new_change(cis=HOSTS)
    sn.simulator.stop()
    with pytest.raises(ServiceNowUnavailable, match="%s cannot be read from ServiceNow .* \\(fail closed; the policy "
                                                    "allows no local fallback\\): .*cannot connect"
                                                    % change["number"]):
        gate(sor, sn, policy(), change["number"])


def test_the_local_fallback_uses_a_recent_reading_and_flags_it(sor, tmp_path, policy):
    sim = Simulator(state_path=str(tmp_path / "state.json")).start()
    handle = SN(sim.url, Control(sim.url), sim)
    for host in HOSTS:
        ci_item(sor, name=host, ci_class="server", attributes={"os_family": "Debian"})
    Outbox(sor, handle.settings()).drain(30)
    change = handle.new_change(cis=HOSTS)
    first = gate(sor, handle, policy(local_fallback=True), change["number"], run_id="run-a")
    assert first["allowed"] and "fallback" not in first["change_request"]
    sim.stop()
    second = gate(sor, handle, policy(local_fallback=True), change["number"], run_id="run-b")
    assert second["allowed"] and second["review_required"]
    assert "cannot connect" in second["change_request"]["fallback"]["because"]
    with pytest.raises(BackendUnavailable, match="fail closed"):
        gate(sor, handle, policy(local_fallback=False), change["number"], run_id="run-c")


def test_credentials_refused_never_fall_back(sor, sn, cmdb, policy):
    change = sn.new_change(cis=HOSTS)
    gate(sor, sn, policy(local_fallback=True), change["number"], run_id="run-a")
    with pytest.raises(ServiceNowAuthError, match="401"):
        gate(sor, sn, policy(local_fallback=True), change["number"], run_id="run-b",
             settings={"password": "wrong-password-value"})
    with pytest.raises(ConfigurationError, match="no credentials"):
        gate(sor, sn, policy(), change["number"], settings={"username": None, "password": None})


def test_a_429_beyond_the_budget_denies(sor, sn, cmdb, policy):
    change = sn.new_change(cis=HOSTS)
    sn.control.fault(kind="429", retry_after=600)
    with pytest.raises(ServiceNowRateLimited, match="429 rate limited"):
        gate(sor, sn, policy(), change["number"])


def test_waiting_for_approval_polls_within_the_request_budget(sor, sn, cmdb, policy):
    change = sn.new_change(state="authorise", approval="requested", cis=HOSTS)
    full = dict((name, option.get("default")) for name, option in change_gate.CHANGE_GATE_SPEC.items())
    full.update(change_request=change["number"], wait_for_approval=True, approval_timeout=3600, poll_interval=5,
                instance={"host": sn.url, "username": "changeops.integration",
                          "password": "integration-simulator-password", "max_requests": 60})
    ctx = OperationContext(sor, full, run_id="run-wait", actor="alice@controller")
    sleeps = []
    polls = []

    def progress(message):
        polls.append(message)
        if len(polls) == 3:  # the CAB approves while the gate waits
            sn.control.update("change_request", change["sys_id"], {"approval": "approved", "state": "-2"})

    authority = authority_for(ctx, policy(), HOSTS)
    before = len(sn.requests())
    record, timeout_reason = change_gate.wait_and_read(ctx, change["number"], progress, sleep=sleeps.append,
                                                       authority=authority)
    assert timeout_reason is None and record["state"] == "scheduled" and record["approval"] == "approved"
    assert len(polls) == 3
    # each poll re-reads only the CHG record; the budget of 60 requests stretches the 5 s interval so that
    # polling could last the whole hour. Once approved, the reading also asks who approved and who asked
    # (separation of duties), once each.
    made = sn.requests(before)
    people = [request for request in made if request["path"].endswith(("/sysapproval_approver", "/sys_user"))]
    assert sorted(request["path"].rsplit("/", 1)[1] for request in people) == ["sys_user", "sysapproval_approver"]
    assert min(sleeps) > 5 and len(made) - len(people) <= 12


@pytest.mark.parametrize("text,message", [
    ("servicenow:\n  local_fallback: 'yes'\n", "servicenow.local_fallback: must be true or false"),
    ("servicenow:\n  fallback_max_age: 0\n", "servicenow.fallback_max_age: must be at least 1"),
    ("servicenow:\n  fallback: true\n", "line 2: servicenow.fallback: unknown key; expected one of fallback_max_age, local_fallback"),
    ("templates:\n  - name: t\n    conditions: ['true']\n    servicenow_template: 5\n",
     "templates[0].servicenow_template"),
])
def test_the_policy_s_servicenow_keys_are_validated(tmp_path, text, message):
    from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError

    path = tmp_path / "policy.yml"
    path.write_text(text)
    with pytest.raises(ValidationError, match=message.replace("[", "\\[").replace("]", "\\]").replace(".", "\\.")):
        change_policy.load_policy(str(path))
