# -*- coding: utf-8 -*-
"""change_gate.decide() for change requests: what a request of each type authorises."""

from __future__ import annotations

import datetime

from ansible_collections.changeops.itsm.plugins.module_utils import change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.change_gate import build_change_context, decide

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

POLICY = {
    "templates": [
        {"name": "patching", "conditions": ["contains(tags, 'patching')"], "max_hosts": 5},
        {"name": "web-content", "conditions": ["contains(groups, 'web')", "length(modules) == `1`"]},
    ],
}


def policy(document=None):
    return change_policy.parse_policy(document or POLICY, "policy.yml")


def context(tags=("patching",), roles=(), modules=("ansible.builtin.apt",), paths=(), hosts=("web01", "web02"),
            **play_extra):
    play = {"name": "Patch", "tags": list(tags), "roles": list(roles), "modules": list(modules), "paths": list(paths)}
    play.update(play_extra)
    cis = [{"name": host, "environment": "test", "class": "server", "attributes": {}} for host in hosts]
    return build_change_context(play, list(hosts), {host: ["web"] for host in hosts}, cis, "alice", False, NOW)


def request(change_type="standard", template="patching", state="scheduled", approval=None, **extra):
    record = {"number": "CHG0000007", "type": change_type, "state": state, "template": template,
              "approval": approval or ("pre-approved" if change_type == "standard" else "approved"),
              "approvals": [], "affected_cis": ["web01", "web02"],
              "planned_start": format_time(NOW - datetime.timedelta(hours=1)),
              "planned_end": format_time(NOW + datetime.timedelta(hours=1)), "timezone": "UTC"}
    record.update(extra)
    return record


def decide_with(record, play_context=None, the_policy=None, **kwargs):
    return decide(the_policy or policy(), play_context or context(), NOW, change_request=record["number"],
                  record=record, user="alice", **kwargs)


def test_a_standard_request_authorises_what_its_template_covers():
    decision = decide_with(request())
    assert (decision["allowed"], decision["type"], decision["reference"]) == (True, "standard", "CHG0000007")
    assert decision["standard"]["covered_by"] == ["patching"]
    assert decision["change_request"]["template"] == "patching"


def test_a_standard_request_without_a_template_authorises_nothing():
    decision = decide_with(request(template=None))
    assert (decision["allowed"], decision["type"]) == (False, "denied")
    assert decision["reasons"] == [
        "CHG0000007 is a standard change request but names no standard change template; set its template to the "
        "policy template that covers this work (patching, web-content), or raise a normal change request"]


def test_a_standard_request_does_not_cover_a_play_its_template_does_not_match():
    decision = decide_with(request(), play_context=context(tags=("deploy",), modules=("ansible.builtin.copy",)))
    assert decision["allowed"] is False
    assert decision["reasons"] == [
        "CHG0000007: standard change 'patching': condition contains(tags, 'patching') is false for this play"]
    # another template that would match is not a way round the request's own template
    other = decide_with(request(template="web-content"),
                        play_context=context(modules=("ansible.builtin.apt", "ansible.builtin.user")))
    assert other["allowed"] is False
    assert any("condition length(modules) == `1` is false" in reason for reason in other["reasons"])


def test_a_standard_request_keeps_its_template_limits_and_protected_areas():
    many = ["web%02d" % n for n in range(8)]
    decision = decide_with(request(affected_cis=many), play_context=context(hosts=many))
    assert "CHG0000007: standard change 'patching' allows at most 5 hosts; the play targets 8" in decision["reasons"]
    touching = decide_with(request(), play_context=context(roles=("ssh_hardening",)))
    assert ("play touches protected area sshd (role ssh_hardening), which standard change request CHG0000007 "
            "cannot cover") in touching["reasons"]


def test_a_standard_request_naming_a_template_the_policy_lacks_is_denied():
    decision = decide_with(request(template="gone"))
    assert decision["reasons"] == ["CHG0000007: standard change template 'gone' does not exist in policy.yml"]


def test_the_gate_standard_template_must_agree_with_the_request():
    decision = decide_with(request(), standard_template="web-content")
    assert "standard_template 'web-content' is not the template of CHG0000007 ('patching')" in decision["reasons"]


def test_a_rejected_or_unapproved_standard_request_is_denied():
    assert "CHG0000007 is not approved (approval: requested)" in decide_with(request(approval="requested"))["reasons"]
    rejected = request(approval="rejected", approvals=[{"approver": "cab", "decision": "rejected", "comment": "no"}])
    assert "CHG0000007 was rejected by cab: no" in decide_with(rejected)["reasons"]


def test_a_normal_request_is_still_a_normal_change():
    decision = decide_with(request(change_type="normal", template=None),
                           play_context=context(tags=("deploy",), roles=("ssh_hardening",)))
    assert (decision["allowed"], decision["type"], decision["reference"]) == (True, "normal", "CHG0000007")


def test_ci_services_are_read_as_the_cmdb_stores_them():
    cis = [{"name": "a", "attributes": {"services": ["shop", "search"]}},
           {"name": "b", "attributes": {"services": "billing"}},
           {"name": "c", "attributes": {"services": [7, None]}},
           {"name": "d", "attributes": {}}]
    built = build_change_context({"name": "p"}, ["a", "b", "c", "d"], {}, cis, "alice", False, NOW)
    assert built["services"] == ["7", "billing", "search", "shop"]
    assert [ci["services"] for ci in built["cis"]] == [["shop", "search"], ["billing"], ["7"], []]
