# -*- coding: utf-8 -*-
"""Ledger entries -> query tables (every backend): change events, their authorisation, CMDB, change requests."""

from __future__ import annotations

import itertools

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

_RUN_NUMBERS = itertools.count(1)


class Run(object):
    """Writes the entries the change_recorder callback writes for one playbook run."""

    def __init__(self, sor, check_mode=False, started_at="2026-11-23T10:00:00.000000Z", playbook="site.yml",
                 user="ops", controller="ctl01"):
        self.sor = sor
        self.run_id = "run-%04d" % next(_RUN_NUMBERS)
        self.check_mode = check_mode
        self.started_at = started_at
        self.playbook = playbook
        self.user = user
        self.controller = controller

    def entry(self, kind, **data):
        data["run_id"] = self.run_id
        return Entry(kind, self.run_id, data)

    def started(self):
        return self.entry("run.started", started_at=self.started_at, user=self.user, controller=self.controller,
                          playbooks=[self.playbook, "other.yml"], check_mode=self.check_mode, diff_mode=False,
                          extra_var_names=["version"])

    def start(self):
        self.sor.append([self.started()])
        return self

    def play(self, play_id, name="play"):
        self.sor.append([self.entry("run.play", play_id=play_id, name=name, pattern="all", hosts=[])])
        return self

    def result_entry(self, play_id, host, status, action="ansible.builtin.copy", item=None, task="task",
                     started_at=None, **task_fields):
        return self.entry("run.result", play_id=play_id, host=host, status=status, changed=status == "changed",
                          item=item, task=dict({"uuid": "u-" + task, "name": task, "action": action}, **task_fields),
                          started_at=started_at or self.started_at, duration_ms=5, result={"msg": "x"})

    def result(self, play_id, host, status, **kwargs):
        self.sor.append([self.result_entry(play_id, host, status, **kwargs)])
        return self

    def gate(self, play_id, allowed=True, gate_type="standard", reference=None, hosts=("web01", "web02"),
             checked_at=None):
        """A run.gate decision as the gate records it: the hosts it covers and when it was taken."""
        decision_id = "d-%s-%s-%s" % (play_id, gate_type, "-".join(hosts))
        self.sor.append([self.entry("run.gate", play_id=play_id, decision_id=decision_id, allowed=allowed,
                                    type=gate_type, reference=reference, reasons=[], hosts=list(hosts),
                                    checked_at=checked_at or self.started_at)])
        return self

    def finish(self, outcome="successful"):
        self.sor.append([self.entry("run.finished", ended_at="2026-11-23T10:05:00.000000Z", outcome=outcome)])
        return self.event()

    def interrupt(self):
        self.sor.append([self.entry("run.interrupted", ended_at="2026-11-23T10:03:00.000000Z", reason="SIGKILL")])
        return self.event()

    def event(self):
        return self.sor.get_change_event(self.run_id)


def test_a_finished_run_becomes_a_change_event(sor):
    run = Run(sor).start().play("p1")
    run.result("p1", "web01", "changed").result("p1", "web01", "ok", task="t2").result("p1", "web02", "ok")
    run.result("p1", "db01", "failed").result("p1", "db02", "unreachable").result("p1", "web02", "skipped", task="t2")
    event = run.finish("failed")
    assert event["run_id"] == run.run_id
    assert (event["status"], event["outcome"]) == ("failed", "failed")
    assert (event["started_at"], event["ended_at"]) == ("2026-11-23T10:00:00.000000Z", "2026-11-23T10:05:00.000000Z")
    assert (event["user"], event["controller"], event["playbook"]) == ("ops", "ctl01", "site.yml")
    assert event["dry_run"] is False
    assert (event["host_count"], event["changed_host_count"], event["failed_host_count"]) == (4, 1, 2)
    hosts = {h["host"]: h for h in event["hosts"]}
    assert hosts["web01"] == {"host": "web01", "ok": 1, "changed": 1, "failed": 0, "skipped": 0, "unreachable": 0}
    assert hosts["web02"]["skipped"] == 1 and hosts["db02"]["unreachable"] == 1
    assert [p["play_id"] for p in event["plays"]] == ["p1"]
    assert event["extra_var_names"] == ["version"]


def test_a_running_event_is_visible_before_it_finishes(sor):
    run = Run(sor).start().play("p1").result("p1", "web01", "ok")
    event = run.event()
    assert event["status"] == "running" and event["ended_at"] is None and event["authorisation"] is None
    assert [r["host"] for r in sor.get_task_results(run.run_id)] == ["web01"]


def test_check_mode_is_a_dry_run_not_a_change(sor):
    run = Run(sor, check_mode=True).start().play("p1").result("p1", "web01", "changed")
    event = run.finish()
    assert event["dry_run"] is True
    assert event["authorisation"] == "dry-run" and event["authorisation_ref"] is None


def test_no_changed_host_needs_no_authorisation(sor):
    run = Run(sor).start().play("p1").result("p1", "web01", "ok").result("p1", "web01", "skipped", task="t2")
    assert run.finish()["authorisation"] == "no-change"


def test_a_change_without_a_gate_is_unauthorised(sor):
    run = Run(sor).start().play("p1").result("p1", "web01", "changed")
    event = run.finish()
    assert event["authorisation"] == "unauthorised" and event["authorisation_ref"] is None


def test_an_allowing_gate_authorises_its_play(sor):
    run = Run(sor).start().play("p1").gate("p1", gate_type="standard", reference="std-restart-nginx")
    run.result("p1", "web01", "changed")
    event = run.finish()
    assert (event["authorisation"], event["authorisation_ref"]) == ("standard", "std-restart-nginx")


def test_a_denying_gate_does_not_authorise(sor):
    run = Run(sor).start().play("p1").gate("p1", allowed=False, gate_type="denied").result("p1", "web01", "changed")
    assert run.finish()["authorisation"] == "unauthorised"


def test_a_gate_authorises_only_its_own_play(sor):
    run = Run(sor).start().play("p1").play("p2").gate("p1", reference="std-a")
    run.result("p1", "web01", "changed").result("p2", "web01", "changed")
    assert run.finish()["authorisation"] == "unauthorised"


def test_a_gated_play_without_changes_does_not_matter(sor):
    run = Run(sor).start().play("p1").play("p2").gate("p2", gate_type="normal", reference="CHG0000002")
    run.result("p1", "web01", "ok").result("p2", "web01", "changed")
    event = run.finish()
    assert (event["authorisation"], event["authorisation_ref"]) == ("normal", "CHG0000002")


def test_several_gate_types_are_joined(sor):
    run = Run(sor).start().play("p1").play("p2").play("p3")
    run.gate("p1", gate_type="standard", reference="std-a").gate("p2", gate_type="normal", reference="CHG0000001")
    run.gate("p3", gate_type="standard", reference="std-a")
    for play_id in ("p1", "p2", "p3"):
        run.result(play_id, "web01", "changed")
    event = run.finish()
    assert event["authorisation"] == "standard+normal"
    assert event["authorisation_ref"] == "std-a, CHG0000001"


def test_changes_by_changeops_record_only_actions_need_no_authorisation(sor):
    run = Run(sor).start().play("p1")
    run.result("p1", "web01", "changed", action="changeops.itsm.checklist_evidence")
    run.result("p1", "web01", "changed", action="changeops.itsm.configuration_item", task="t2")
    event = run.finish()
    # the record changed, no host did: no authorisation needed, and not "no change" either
    assert event["authorisation"] == "record-only" and event["changed_host_count"] == 0
    other = Run(sor).start().play("p1")
    other.result("p1", "web01", "changed", action="changeops.itsm.checklist_evidence")
    other.result("p1", "web01", "changed", action="community.general.ini_file", task="t2")
    assert other.finish()["authorisation"] == "unauthorised"


def test_one_definition_of_a_change_counts_hosts_and_classifies_the_run(sor):
    """A run that changed a host is never 'no-change'; what Ansible calls changed but is a check-mode
    prediction or the collection's own record write changes no host (changed_host_count)."""
    run = Run(sor).start().play("p1").gate("p1", reference="std-a", hosts=("web01", "web02", "web03"))
    run.result("p1", "web01", "changed")                                              # a change of web01
    run.result("p1", "web02", "changed", task="probe", check_mode=True)              # predicted only
    run.result("p1", "web03", "changed", action="changeops.itsm.register_host", task="cmdb")  # the record
    run.result("p1", "web03", "ok", task="t3")
    event = run.finish()
    assert (event["authorisation"], event["changed_host_count"], event["host_count"]) == ("standard", 1, 3)
    # Ansible's own per-host counts (the PLAY RECAP) stay as Ansible counts them
    assert {h["host"]: h["changed"] for h in event["hosts"]} == {"web01": 1, "web02": 1, "web03": 1}


def test_a_run_a_gate_stopped_is_denied_not_no_change(sor):
    run = Run(sor).start().play("p1").gate("p1", allowed=False, gate_type="denied")
    run.result("p1", "web01", "failed", action="changeops.itsm.change_gate", task="gate")
    assert run.finish("failed")["authorisation"] == "denied"
    # a gate that failed closed records no decision: its failed task says it all the same
    closed = Run(sor).start().play("p1").result("p1", "web01", "failed", action="changeops.itsm.change_gate")
    assert closed.finish("failed")["authorisation"] == "denied"
    # denied, then the play went on (fail_on_deny: false) and changed a host: that change is unauthorised
    went_on = Run(sor).start().play("p1").gate("p1", allowed=False, gate_type="denied")
    went_on.result("p1", "web01", "changed")
    assert went_on.finish()["authorisation"] == "unauthorised"
    # a denial under --check is a dry run's business
    dry = Run(sor, check_mode=True).start().play("p1").result("p1", "web01", "failed", action="changeops.itsm.change_gate")
    assert dry.finish("failed")["authorisation"] == "dry-run"


def test_an_interrupted_run_is_marked_and_still_judged(sor):
    run = Run(sor).start().play("p1").result("p1", "web01", "changed")
    event = run.interrupt()
    assert event["status"] == "interrupted" and event["outcome"] == "interrupted"
    assert event["ended_at"] == "2026-11-23T10:03:00.000000Z"
    assert event["authorisation"] == "unauthorised"
    assert event["reason"] == "SIGKILL"


def test_loop_items_are_recorded_but_hosts_are_counted_once_per_task(sor):
    run = Run(sor).start().play("p1")
    run.result("p1", "web01", "changed", item={"index": 0, "label": "nginx"})
    run.result("p1", "web01", "ok", item={"index": 1, "label": "curl"})
    run.result("p1", "web01", "changed")  # the loop's aggregate result
    event = run.finish()
    assert event["hosts"] == [{"host": "web01", "ok": 0, "changed": 1, "failed": 0, "skipped": 0, "unreachable": 0}]
    results = sor.get_task_results(run.run_id)
    assert [(r["item"] or {}).get("label") for r in results] == ["nginx", "curl", None]
    assert [r["seq"] for r in results] == sorted(r["seq"] for r in results)


def test_task_results_filter_by_host_and_changed(sor):
    run = Run(sor).start().play("p1")
    run.result("p1", "web01", "changed").result("p1", "web02", "ok").result("p1", "web02", "changed", task="t2")
    assert [r["host"] for r in sor.get_task_results(run.run_id, host="web02")] == ["web02", "web02"]
    assert [(r["host"], r["task"]["name"]) for r in sor.get_task_results(run.run_id, changed_only=True)] == [
        ("web01", "task"), ("web02", "t2")]
    assert sor.get_task_results("no-such-run") == []


def test_results_replayed_before_their_start_still_form_one_event(sor):
    """A spool replay can deliver a run's results before the start was ever written."""
    run = Run(sor)
    sor.append([run.result_entry("p1", "web01", "changed")])
    partial = run.event()
    assert partial["status"] == "running" and partial["incomplete"] is True
    sor.append([run.started()])
    event = run.event()
    assert "incomplete" not in event
    assert (event["user"], event["playbook"]) == ("ops", "site.yml")
    assert run.finish()["authorisation"] == "unauthorised"


def test_a_replayed_play_entry_replaces_itself(sor):
    run = Run(sor).start().play("p1", name="first").play("p1", name="renamed").play("p2")
    assert [(p["play_id"], p["name"]) for p in run.event()["plays"]] == [("p1", "renamed"), ("p2", "play")]


def test_environment_comes_from_the_cmdb(sor):
    sor.append([Entry("ci.created", "ci-1", {"ci_id": "ci-1", "attributes": {"name": "web01", "environment": "prod"}}),
                Entry("ci.created", "ci-2", {"ci_id": "ci-2", "attributes": {"name": "web02", "environment": "stage"}})])
    run = Run(sor).start().play("p1").result("p1", "web01", "ok").result("p1", "web02", "ok")
    event = run.finish()
    assert event["environment"] == "prod,stage"
    assert event["environments"] == ["prod", "stage"]


def test_environment_comes_from_each_hosts_own_ci(sor):
    """An application CI named like a host is not the host's CI; among host CIs the registered one is."""
    sor.append([
        # ci_ids sort before the host CIs': taking the first CI of the name would pick these
        Entry("ci.created", "a-app", {"ci_id": "a-app", "attributes": {
            "name": "web01", "class": "application", "environment": "production"},
            "identities": {"name": "application/web01"}}),
        Entry("ci.created", "b-srv", {"ci_id": "b-srv", "attributes": {
            "name": "web01", "class": "server", "environment": "staging"}, "identities": {"name": "host/web01"}}),
        Entry("ci.created", "a-vm", {"ci_id": "a-vm", "attributes": {
            "name": "web02", "class": "virtual_machine", "environment": "production"}}),
        Entry("ci.created", "b-vm", {"ci_id": "b-vm", "attributes": {
            "name": "web02", "class": "virtual_machine", "environment": "test"}, "identities": {"name": "host/web02"}}),
        # another tool's class counts when it is the only CI of the name
        Entry("ci.created", "c-linux", {"ci_id": "c-linux", "attributes": {
            "name": "db01", "class": "cmdb_ci_linux_server", "environment": "dev"}}),
    ])
    run = Run(sor).start().play("p1").result("p1", "web01", "ok").result("p1", "web02", "ok").result("p1", "db01", "ok")
    event = run.finish()
    assert event["environments"] == ["dev", "staging", "test"]
    assert event["environment"] == "dev,staging,test"


def test_reviews_attach_to_existing_events_only(sor):
    run = Run(sor).start().play("p1").result("p1", "web01", "changed")
    run.finish()
    sor.append([Entry("run.reviewed", run.run_id, {"run_id": run.run_id, "reviewer": "cab", "outcome": "accepted"})])
    assert run.event()["review_status"] == "accepted"
    assert [r["reviewer"] for r in sor.find_reviews(run_id=run.run_id)] == ["cab"]
    with pytest.raises(ConflictError) as caught:
        sor.append([Entry("run.reviewed", "run-missing", {"run_id": "run-missing", "reviewer": "cab",
                                                          "outcome": "accepted"})])
    assert "run-missing" in str(caught.value)


# ----------------------------------------------------------------------------- CMDB
def created(ci_id, name, identities=None, **attributes):
    attributes.update(name=name)
    return Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": attributes, "identities": identities or {}})


def test_ci_lifecycle(sor):
    sor.append([created("ci-1", "web01", {"serial": "S1", "mac": "aa"}, environment="prod", status="operational",
                        **{"class": "cmdb_ci_linux_server"}),
                created("ci-2", "db01")])
    ci = sor.get_ci("ci-1")
    assert (ci["name"], ci["class"], ci["status"], ci["environment"], ci["version"]) == (
        "web01", "cmdb_ci_linux_server", "operational", "prod", 1)
    assert [c["ci_id"] for c in sor.find_cis(ci_class="cmdb_ci_linux_server", environment="prod")] == ["ci-1"]
    assert ci["identities"] == {"serial": "S1", "mac": "aa"}
    assert sor.find_ci_by_identity("serial", "S1") == "ci-1"
    sor.append([Entry("ci.updated", "ci-1", {"ci_id": "ci-1", "base_version": 1,
                                             "changes": {"environment": {"from": "prod", "to": None},
                                                         "os": {"from": None, "to": "debian"}}})])
    ci = sor.get_ci("ci-1")
    assert ci["version"] == 2 and ci["environment"] is None and ci["attributes"]["os"] == "debian"
    sor.append([Entry("ci.relationship_added", "ci-1", {"source": "ci-1", "type": "depends_on", "target": "ci-2"})])
    assert sor.get_relationships("ci-2", direction="inbound") == [
        {"source": "ci-1", "type": "depends_on", "target": "ci-2"}]
    sor.append([Entry("ci.deleted", "ci-2", {"ci_id": "ci-2", "reason": "decommissioned"})])
    assert sor.get_ci("ci-2") is None and sor.get_relationships("ci-1") == []
    assert [c["ci_id"] for c in sor.find_cis()] == ["ci-1"]


def test_stale_ci_update_is_refused(sor):
    sor.append([created("ci-1", "web01")])
    sor.append([Entry("ci.updated", "ci-1", {"ci_id": "ci-1", "base_version": 1, "changes": {}})])
    with pytest.raises(ConflictError) as caught:
        sor.append([Entry("ci.updated", "ci-1", {"ci_id": "ci-1", "base_version": 1,
                                                 "changes": {"os": {"from": None, "to": "x"}}})])
    assert "ci-1" in str(caught.value)
    assert "os" not in sor.get_ci("ci-1")["attributes"]


@pytest.mark.parametrize("entry, error", [
    (created("ci-9", ""), ValidationError),
    (Entry("ci.updated", "ci-x", {"ci_id": "ci-x", "changes": {}}), ConflictError),
    (Entry("ci.relationship_added", "ci-1", {"source": "ci-1", "type": "runs_on", "target": "ci-x"}), ConflictError),
])
def test_invalid_ci_entries_are_refused(sor, entry, error):
    sor.append([created("ci-1", "web01")])
    head = sor.head()
    with pytest.raises(error):
        sor.append([entry])
    assert sor.head() == head


# ----------------------------------------------------------------------------- change requests and counters
def change_request(kind, number, state, base_version=None):
    return Entry(kind, number, {"record": {"number": number, "state": state, "type": "normal"},
                                "base_version": base_version})


def test_change_request_versions(sor):
    sor.append([change_request("change_request.created", "CHG0000001", "new")])
    sor.append([change_request("change_request.transitioned", "CHG0000001", "assess", base_version=1)])
    assert sor.get_change_request("CHG0000001")["state"] == "assess"
    assert sor.get_change_request("CHG0000001")["version"] == 2
    with pytest.raises(ConflictError):
        sor.append([change_request("change_request.approved", "CHG0000001", "scheduled", base_version=1)])
    with pytest.raises(ConflictError):
        sor.append([change_request("change_request.updated", "CHG0000404", "new", base_version=3)])
    assert [r["number"] for r in sor.find_change_requests(state="assess")] == ["CHG0000001"]


def test_counters_allocate_increasing_numbers(sor):
    assert [sor.next_number("change_request") for _attempt in range(3)] == [1, 2, 3]
    assert sor.next_number("other") == 1


# ----------------------------------------------------------------------------- what a gate decision authorises
def test_a_dry_run_decision_never_authorises_a_real_change(sor):
    run = Run(sor).start().play("p1").gate("p1", gate_type="dry-run").result("p1", "web01", "changed")
    assert run.finish()["authorisation"] == "unauthorised"


@pytest.mark.parametrize("task_check_mode, expected", [(True, "dry-run"), (None, "dry-run"),
                                                       (False, "unauthorised")])
def test_in_a_check_run_only_tasks_forced_out_of_check_mode_change_hosts(sor, task_check_mode, expected):
    run = Run(sor, check_mode=True).start().play("p1").gate("p1", gate_type="dry-run")
    fields = {} if task_check_mode is None else {"check_mode": task_check_mode}
    run.result("p1", "web01", "changed", **fields)
    run.result("p1", "web02", "changed", task="predicted", check_mode=True)
    event = run.finish()
    assert event["dry_run"] is True
    assert event["authorisation"] == expected


def test_a_real_change_in_a_check_run_is_authorised_by_a_real_decision(sor):
    run = Run(sor, check_mode=True).start().play("p1").gate("p1", gate_type="normal", reference="CHG0000003")
    run.result("p1", "web01", "changed", check_mode=False).result("p1", "web02", "changed", task="t2", check_mode=True)
    event = run.finish()
    assert (event["authorisation"], event["authorisation_ref"]) == ("normal", "CHG0000003")


def test_a_decision_covers_only_its_own_hosts(sor):
    """serial: batch 1 allowed, batch 2 denied (fail_on_deny: false): batch 2's changes are not authorised."""
    run = Run(sor).start().play("p1").gate("p1", hosts=["web01"], reference="std-a")
    run.result("p1", "web01", "changed")
    run.gate("p1", allowed=False, gate_type="denied", hosts=["web02"]).result("p1", "web02", "changed")
    assert run.finish()["authorisation"] == "unauthorised"
    only_first = Run(sor).start().play("p1").gate("p1", hosts=["web01"], reference="std-a")
    only_first.result("p1", "web01", "changed")
    only_first.gate("p1", allowed=False, gate_type="denied", hosts=["web02"]).result("p1", "web02", "ok")
    assert only_first.finish()["authorisation"] == "standard"


def test_a_change_recorded_before_the_decision_is_not_authorised_by_it(sor):
    run = Run(sor).start().play("p1").result("p1", "web01", "changed", task="before")
    run.gate("p1", reference="std-a").result("p1", "web01", "changed", task="after")
    assert run.finish()["authorisation"] == "unauthorised"


def test_a_change_started_before_the_decision_but_written_after_it_is_not_authorised(sor):
    """The recorder writes results from a queue: ledger order alone would credit them."""
    run = Run(sor).start().play("p1").gate("p1", reference="std-a", checked_at="2026-11-23T10:00:05.000000Z")
    run.result("p1", "web01", "changed", task="queued", started_at="2026-11-23T10:00:01.000000Z")
    assert run.finish()["authorisation"] == "unauthorised"
    later = Run(sor).start().play("p1").gate("p1", reference="std-a", checked_at="2026-11-23T10:00:05.000000Z")
    later.result("p1", "web01", "changed", started_at="2026-11-23T10:00:06.000000Z")
    assert later.finish()["authorisation"] == "standard"


def test_a_later_denial_for_the_same_hosts_withdraws_the_authorisation(sor):
    run = Run(sor).start().play("p1").gate("p1", reference="std-a")
    run.gate("p1", allowed=False, gate_type="denied").result("p1", "web01", "changed")
    assert run.finish()["authorisation"] == "unauthorised"


def test_a_decision_recorded_without_hosts_covers_its_whole_play(sor):
    """Ledgers written before the gate recorded its hosts keep their authorisation on replay."""
    run = Run(sor).start().play("p1")
    sor.append([run.entry("run.gate", play_id="p1", decision_id="legacy", allowed=True, type="standard",
                          reference="std-a", reasons=[])])
    run.result("p1", "web07", "changed")
    assert run.finish()["authorisation"] == "standard"


def test_in_a_real_run_a_task_that_ran_in_check_mode_changed_nothing(sor):
    run = Run(sor).start().play("p1").result("p1", "web01", "changed", check_mode=True)
    assert run.finish()["authorisation"] == "no-change"
    other = Run(sor).start().play("p1").result("p1", "web01", "changed", check_mode=True)
    other.result("p1", "web01", "changed", task="real", check_mode=False)
    assert other.finish()["authorisation"] == "unauthorised"
