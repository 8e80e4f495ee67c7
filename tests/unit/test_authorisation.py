# -*- coding: utf-8 -*-
"""Separation of duties, the policy's people sections, what a new policy version changes, and the areas' docs."""

from __future__ import annotations

import os
import re

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils import change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import duties, policy_diff
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import Identity, os_identity, os_user
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.protected_areas import DEFAULT_PROTECTED_AREAS
from ansible_collections.changeops.itsm.plugins.plugin_utils.play_inspection import _command_programs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RULES = """
approver_groups:
  cab: {accounts: [carol, dave]}
  ecab: {accounts: [erin]}
  managers: {accounts: [frank]}
approvals:
  approvers: [cab]
  by_type: {emergency: [ecab]}
  by_risk: {very_high: [managers]}
publishing:
  publishers: [managers]
reviews:
  reviewers: [cab]
  allow_self_review: false
"""


def policy(text=RULES):
    return change_policy.parse_policy(change_policy.yaml.load(text, Loader=change_policy._PolicyLoader), "p.yml")


def person(name):
    return Identity(name, "test")


def request(**fields):
    record = {"number": "CHG0000001", "state": "authorise", "type": "normal", "risk": "moderate",
              "opened_by_identity": {"name": "alice", "source": "test"}, "approval": "requested", "approvals": []}
    record.update(fields)
    return record


def rules_of(found):
    return [refusal["rule"] for refusal in found]


@pytest.mark.parametrize("who, record, expected", [
    ("carol", request(), []),
    ("alice", request(), ["approvals.approvers", "approvals.allow_self_approval"]),
    ("bob", request(), ["approvals.approvers"]),
    ("carol", request(state="new"), ["approvals.states"]),
    ("carol", request(state="review"), ["approvals.states"]),
    ("carol", request(type="emergency"), ["approvals.by_type.emergency"]),
    ("erin", request(type="emergency"), []),
    ("carol", request(risk="very_high"), ["approvals.by_risk.very_high"]),
    ("frank", request(risk="very_high"), ["approvals.approvers"]),
    # a free-text requested_by only ever refuses
    ("dave", request(requested_by="dave"), ["approvals.allow_self_approval"]),
    # records opened before identities: opened_by is user@controller
    ("carol", request(opened_by_identity=None, opened_by="carol@ctl"), ["approvals.allow_self_approval"]),
], ids=["member", "requester-and-not-member", "not-member", "in-new", "in-review", "emergency-needs-ecab",
        "ecab-member", "very-high-needs-managers", "manager-not-in-cab", "requested-by", "legacy-opened-by"])
def test_who_may_approve(who, record, expected):
    found = duties.refusals("approve", person(who), policy().authorisation, record=record)
    assert rules_of(found) == expected
    for refusal in found:
        assert "(rule %s" % refusal["rule"] in refusal["reason"]


def test_the_requester_may_reject_and_defaults_let_anyone_but_the_requester_approve():
    rules = policy().authorisation
    assert duties.refusals("reject", person("carol"), rules, record=request()) == []
    defaults = change_policy.load_policy(None).authorisation
    assert duties.refusals("approve", person("bob"), defaults, record=request()) == []
    assert rules_of(duties.refusals("approve", person("alice"), defaults, record=request())) == [
        "approvals.allow_self_approval"]
    assert rules_of(duties.refusals("approve", Identity("bob", "unverified"), defaults, record=request())) == [
        "identity"]


def approved(*approvers, **fields):
    values = dict(state="scheduled", approval="approved", approvals=[
        {"approver": name, "identity": {"name": name, "source": "test"}, "decision": "approved"} for name in approvers])
    values.update(fields)
    return request(**values)


@pytest.mark.parametrize("runner, record, expected", [
    ("alice", approved("carol"), []),
    ("carol", approved("carol"), ["approvals.allow_runner_as_sole_approver"]),
    ("carol", approved("carol", "dave"), []),
    ("alice", approved("bob"), ["approvals.approvers"]),  # bob is no CAB member (any more)
    ("carol", approved("alice"), ["approvals.approvers"]),  # the requester's approval never counts
    ("carol", request(state="scheduled", approval="approved",
                      approvals=[{"approver": "dave", "decision": "approved"}]), ["identity"]),  # legacy, unverified
    ("carol", approved("carol", type="standard", approval="pre-approved"), []),
], ids=["another-approver", "runner-alone", "runner-and-another", "non-member", "requester", "unverified",
        "standard"])
def test_what_counts_when_a_play_runs(runner, record, expected):
    assert rules_of(duties.refusals("run", person(runner), policy().authorisation, record=record)) == expected


def test_reviews_and_publications():
    rules = policy().authorisation
    event = {"run_id": "r1", "user": "dave"}
    assert duties.refusals("review", person("carol"), rules, record=event) == []
    assert rules_of(duties.refusals("review", person("dave"), rules, record=event)) == ["reviews.allow_self_review"]
    assert rules_of(duties.refusals("review", person("bob"), rules, record=event)) == ["reviews.reviewers"]
    assert duties.refusals("publish", person("frank"), rules) == []
    assert rules_of(duties.refusals("publish", person("carol"), rules)) == ["publishing.publishers"]


def test_os_groups_make_members(monkeypatch):
    rules = policy(RULES.replace("cab: {accounts: [carol, dave]}", "cab: {os_groups: [cab]}")).authorisation
    assert rules_of(duties.refusals("approve", Identity("zoe", "os", groups=["cab"]), rules, record=request())) == []
    assert rules_of(duties.refusals("approve", Identity("zoe", "os", groups=["web"]), rules, record=request())) == [
        "approvals.approvers"]
    # groups another source vouches for are not OS groups
    assert rules_of(duties.refusals("approve", Identity("zoe", "review", groups=["cab"]), rules,
                                    record=request())) == ["approvals.approvers"]


def test_the_os_identity_is_the_account_of_the_uid_whatever_the_environment_claims(monkeypatch):
    monkeypatch.setenv("LOGNAME", "somebody-else")
    monkeypatch.setenv("USER", "somebody-else")
    assert os_identity() == Identity(os_user(), "os") and os_identity().name != "somebody-else"


@pytest.mark.parametrize("text, message", [
    ("approvals:\n  approvers: [cab]\n", "p.yml line 2: approvals.approvers[0]: no such approver group; define it "
                                         "under approver_groups (defined: none) (got 'cab')"),
    ("approver_groups:\n  cab: {}\n",
     "p.yml line 2: approver_groups.cab: must list at least one of accounts or os_groups"),
    ("approvals:\n  states: [new, assess]\n",
     "p.yml line 2: approvals.states: an approval is never accepted while a request is new"),
    ("approvals:\n  by_type: {urgent: []}\n", "p.yml line 2: approvals.by_type.urgent: unknown key"),
    ("approver_groups:\n  cab: {accounts: [c]}\napprovals:\n  approvers: []\n",
     "approvals.approvers: must name at least one approver group (omit the key to let anyone do it)"),
    ("disabled_protected_areas: [audit]\n", "p.yml line 1: disabled_protected_areas[0]: must be one of"),
])
def test_bad_people_sections_give_one_clear_error(text, message):
    with pytest.raises(ValidationError) as error:
        policy(text)
    assert message in error.value.message


def test_a_policy_switches_a_built_in_area_off_by_name():
    names = [area.name for area in policy("disabled_protected_areas: [kernel_security, trust_store]\n").protected_areas]
    assert "kernel_security" not in names and "trust_store" not in names and "audit_logging" in names


def test_the_summary_says_what_a_new_version_widens():
    old = policy("""
templates:
  - name: patching
    conditions: ["contains(tags, 'patching')", "host_count < `50`"]
    max_hosts: 20
    environments: [dev]
  - name: gone
    conditions: ["`true`"]
freezes:
  - {name: year-end, start: "2026-12-18", end: "2027-01-04", timezone: UTC}
""")
    new = policy("""
templates:
  - name: patching
    conditions: ["contains(tags, 'patching')"]
    max_hosts: 50
    environments: [dev, production]
    allow_opaque_actions: true
  - name: fresh
    conditions: ["`true`"]
disabled_protected_areas: [audit_logging]
protected_areas:
  pam: {paths: [/etc/pam.d/]}
approvals:
  allow_self_approval: true
""")
    summary = policy_diff.summarise(old, new, ["allow_opaque_actions"])
    assert summary["templates"]["added"] == ["fresh"] and summary["templates"]["removed"] == ["gone"]
    assert summary["templates"]["widened"] == ["patching"]
    [change] = summary["templates"]["changed"]
    assert change["changes"] == ["condition removed: host_count < `50`", "max_hosts 20 -> 50",
                                 "environments added: production", "allow_opaque_actions false -> true"]
    assert summary["protected_areas"]["removed"] == ["audit_logging"]
    assert summary["protected_areas"]["weakened"] == ["pam"]
    assert summary["freezes"]["removed"] == ["year-end"]
    assert "approvals.allow_self_approval: false -> true" in summary["rules"]
    lines = policy_diff.summary_lines(summary)
    assert "protected areas REMOVED: audit_logging" in lines
    assert any(line.startswith("template patching WIDENED: condition removed") for line in lines)
    assert policy_diff.summary_lines(policy_diff.summarise(new, new)) == ["no change in meaning (text only)"]


def test_the_servicenow_keys_are_part_of_a_published_version_and_of_what_it_changes(tmp_path):
    """What a published version holds is what the gate enforces: the servicenow section and a template's
    servicenow_template travel in the stored document (the version's sha256 is over the file's bytes), and the
    summary the CAB reads says when a new version turns the local fallback on or maps a ServiceNow template."""
    from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import policy_store

    old = policy("templates:\n  - name: patching\n    conditions: ['`true`']\n")
    text = ("templates:\n  - name: patching\n    conditions: ['`true`']\n    servicenow_template: Patch Linux servers\n"
            "servicenow:\n  local_fallback: true\n  fallback_max_age: 15\n")
    new = policy(text)
    summary = policy_diff.summarise(old, new)
    assert summary["templates"]["widened"] == ["patching"]
    assert summary["templates"]["changed"][0]["changes"] == ["servicenow_template none -> Patch Linux servers"]
    assert "servicenow.local_fallback: false -> true" in summary["rules"]
    assert "servicenow.fallback_max_age: 60 -> 15" in summary["rules"]
    # the version as stored (its document) and read back by the gate keeps them; the digest is the file's
    digest = change_policy.policy_digest(text.encode("utf-8"))
    record = {"version": 1, "sha256": digest, "document": change_policy.plain_document(new.document)}
    published = policy_store.policy_from_record(record)
    assert published.servicenow == {"local_fallback": True, "fallback_max_age": 15}
    assert [template.servicenow_template for template in published.templates] == ["Patch Linux servers"]
    assert digest != change_policy.policy_digest(text.replace("local_fallback: true", "local_fallback: false")
                                                 .encode("utf-8"))


def test_the_docs_list_every_built_in_area_as_the_catalogue_has_it():
    with open(os.path.join(REPO, "docs", "policy-schema.md")) as handle:
        text = handle.read()
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([a-z_]+)` \| ([^|]+) \|(.*)\|$", line)
        if match and match.group(1) in DEFAULT_PROTECTED_AREAS:
            rows[match.group(1)] = [cell.strip() for cell in match.group(3).split("|")]
    assert sorted(rows) == sorted(DEFAULT_PROTECTED_AREAS)
    for name, cells in rows.items():
        spec = DEFAULT_PROTECTED_AREAS[name]
        for key, cell in zip(("modules", "roles", "tags", "paths", "services", "commands"), cells):
            listed = [item.strip().strip("`") for item in cell.split(",") if item.strip()]
            assert listed == list(spec.get(key) or []), (name, key)


@pytest.mark.parametrize("line, programs, services", [
    ("auditctl -e 0", ["auditctl"], []),
    ("sudo -u root systemctl stop auditd.service && echo ok", ["systemctl", "echo"], ["auditd"]),
    ("FOO=1 timeout 10 /sbin/sysctl -w kernel.x=1", ["sysctl"], []),
    ("service rsyslog stop; setenforce 0", ["service", "setenforce"], ["rsyslog"]),
    ("echo {{ x }} | tee /etc/x", ["echo", "tee"], []),
    ("systemctl status sshd", ["systemctl"], []),
    ("{{ tool }} --apply", [], []),
])
def test_what_a_command_line_runs(line, programs, services):
    assert _command_programs(line) == (programs, services)
