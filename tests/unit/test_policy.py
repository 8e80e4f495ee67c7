# -*- coding: utf-8 -*-
"""Change policy: validation errors name file, key path, line and value; matching and windows."""

from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils import change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.change_gate import build_change_context, decide
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError

UTC = datetime.timezone.utc


def load(tmp_path, text):
    path = tmp_path / "policy.yml"
    path.write_text(text)
    return change_policy.load_policy(str(path))


def error_of(tmp_path, text):
    with pytest.raises(ValidationError) as error:
        load(tmp_path, text)
    return error.value.message.replace(str(tmp_path) + "/", "")


@pytest.mark.parametrize("text,message", [
    ("colour: red\n", "policy.yml line 1: colour: unknown key; expected one of approvals, approver_groups, "
                      "default_protected_areas, disabled_protected_areas, emergency, freezes, normal, "
                      "protected_areas, publishing, reviews, servicenow, templates, version (got 'red')"),
    ("templates: {}\n", "policy.yml line 1: templates: must be a list of templates (got {})"),
    ("templates:\n  - name: a\n", "policy.yml line 1: templates[0]: missing required key 'conditions'"),
    ("templates:\n  - name: a\n    conditions: []\n",
     "policy.yml line 3: templates[0].conditions: must be a non-empty list of JMESPath expressions (got [])"),
    ("templates:\n  - name: a\n    conditions: ['length(hosts) >']\n",
     "policy.yml line 3: templates[0].conditions[0]: invalid JMESPath expression"),
    ("templates:\n  - {name: a, conditions: ['`true`']}\n  - {name: a, conditions: ['`true`']}\n",
     "policy.yml line 3: templates[1].name: another template already has this name (got 'a')"),
    ("templates:\n  - name: a\n    conditions: ['`true`']\n    max_hosts: 0\n",
     "policy.yml line 4: templates[0].max_hosts: must be at least 1 (got 0)"),
    ("templates:\n  - name: a\n    conditions: ['`true`']\n    allow_opaque_actions: sometimes\n",
     "policy.yml line 4: templates[0].allow_opaque_actions: must be true or false (got 'sometimes')"),
    ("templates:\n  - name: a\n    conditions: ['`true`']\n    windows:\n      - {start: '25:00', end: '18:00', "
     "timezone: UTC}\n",
     "policy.yml line 5: templates[0].windows[0].start: must be a time of day HH:MM between 00:00 and 24:00"),
    ("templates:\n  - name: a\n    conditions: ['`true`']\n    windows:\n      - {days: [monday], start: '08:00', "
     "end: '18:00', timezone: UTC}\n",
     "policy.yml line 5: templates[0].windows[0].days[0]: must be one of mon, tue, wed, thu, fri, sat, sun "
     "(got 'monday')"),
    ("freezes:\n  - name: f\n    start: 2027-01-03\n    end: 2026-12-20\n    timezone: UTC\n",
     "policy.yml line 4: freezes[0].end: must be after start (2027-01-03) (got '2026-12-20')"),
    ("freezes:\n  - name: f\n    start: 2026-12-20\n    end: 2027-01-03\n    timezone: Europe/Pariss\n",
     "policy.yml line 5: freezes[0].timezone: unknown time zone; use an IANA name such as Europe/Paris or UTC "
     "(got 'Europe/Pariss')"),
    ("freezes:\n  - name: f\n    start: 2026-12-20\n    end: 2027-01-03\n    timezone: UTC\n"
     "    allowed_change_types: [urgent]\n",
     "policy.yml line 6: freezes[0].allowed_change_types[0]: must be one of standard, normal, emergency "
     "(got 'urgent')"),
    ("protected_areas:\n  database: {}\n",
     "policy.yml line 2: protected_areas.database: must list at least one of modules, roles, tags, paths, services, commands"),
    ("protected_areas:\n  database:\n    module: [x]\n",
     "policy.yml line 3: protected_areas.database.module: unknown key"),
    ("emergency:\n  require_justification: 'yes please'\n",
     "policy.yml line 2: emergency.require_justification: must be true or false (got 'yes please')"),
    ("version: 2\n", "policy.yml line 1: version: only policy version 1 exists (got 2)"),
    ("templates: [\n", "policy.yml line 2: not valid YAML"),
    ("emergency:\n  allowed: true\n  allowed: false\n", "policy.yml line 3: key 'allowed' appears twice"),
])
def test_malformed_policies_give_one_clear_error(tmp_path, text, message):
    assert message in error_of(tmp_path, text)


def test_error_details_carry_file_path_and_value(tmp_path):
    with pytest.raises(ValidationError) as error:
        load(tmp_path, "templates:\n  - name: a\n    conditions: ['`true`']\n    max_hosts: ten\n")
    details = error.value.details
    assert details["file"].endswith("policy.yml")
    assert (details["path"], details["line"], details["value"]) == ("templates[0].max_hosts", 4, "ten")


def test_missing_policy_file_is_named(tmp_path):
    with pytest.raises(ValidationError, match="cannot read the change policy .*nope.yml"):
        change_policy.load_policy(str(tmp_path / "nope.yml"))


def test_times_of_day_are_not_read_as_base_60_numbers(tmp_path):
    policy = load(tmp_path, "templates:\n  - name: a\n    conditions: ['`true`']\n    windows:\n"
                            "      - {days: [mon], start: 08:00, end: 18:00, timezone: Europe/Paris}\n")
    window = policy.templates[0].windows[0]
    assert (window.start, window.end) == (8 * 60, 18 * 60)
    monday_noon_paris = datetime.datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert window.contains(monday_noon_paris)
    assert not window.contains(monday_noon_paris + datetime.timedelta(hours=7))
    assert not window.contains(monday_noon_paris + datetime.timedelta(days=1))


def test_overnight_window_belongs_to_the_day_it_starts():
    window = change_policy.TimeWindow(["fri"], 22 * 60, 4 * 60, UTC, "UTC")
    friday = datetime.datetime(2026, 11, 27, tzinfo=UTC)
    assert window.contains(friday.replace(hour=23))
    assert window.contains(friday.replace(hour=3) + datetime.timedelta(days=1))
    assert not window.contains(friday.replace(hour=3))


def test_default_policy_protects_authentication_and_access():
    policy = change_policy.load_policy(None)
    assert [area.name for area in policy.protected_areas] == [
        "audit_logging", "firewall", "kernel_security", "login_policy", "mandatory_access_control", "pam", "sshd",
        "sudoers", "trust_store", "users_keys"]
    play = {"modules": ["community.general.ufw", "ansible.builtin.copy"], "roles": ["ssh_hardening"],
            "tags": ["sudoers"], "paths": ["/etc/pam.d/sshd", "/home/bob/.ssh/authorized_keys", "/srv/app.conf"]}
    touched = {t["area"]: t["matched_by"] for t in change_policy.protected_areas_touched(policy, play)}
    assert touched == {
        "firewall": ["module community.general.ufw"],
        "pam": ["path /etc/pam.d/sshd"],
        "sshd": ["role ssh_hardening"],
        "sudoers": ["tag sudoers"],
        "users_keys": ["path /home/bob/.ssh/authorized_keys"],
    }


def test_defaults_can_be_replaced_and_extended(tmp_path):
    policy = load(tmp_path, "default_protected_areas: false\nprotected_areas:\n  database:\n"
                            "    modules: [postgresql_*]\n    paths: [/etc/postgresql/]\n")
    assert [area.name for area in policy.protected_areas] == ["database"]
    touched = change_policy.protected_areas_touched(
        policy, {"modules": ["community.postgresql.postgresql_user"], "paths": ["/etc/postgresql/15/main/pg_hba.conf"]})
    assert touched == [{"area": "database", "matched_by": ["module community.postgresql.postgresql_user",
                                                           "path /etc/postgresql/15/main/pg_hba.conf"]}]


def _context(hosts, environment="test", **play):
    cis = [{"name": host, "environment": environment, "class": "cmdb_ci_linux_server", "attributes": {}}
           for host in hosts]
    return build_change_context(dict({"name": "p", "tags": ["patching"]}, **play), hosts, {}, cis, "alice",
                                False, datetime.datetime(2026, 11, 23, 12, tzinfo=UTC))


def test_template_limits_are_each_reported(tmp_path):
    policy = load(tmp_path, """
templates:
  - name: patching
    conditions: ["contains(tags, 'patching')"]
    max_hosts: 2
    environments: [test]
    windows: [{days: [sat, sun], start: '02:00', end: '06:00', timezone: Europe/Paris}]
""")
    now = datetime.datetime(2026, 11, 23, 12, tzinfo=UTC)
    decision = decide(policy, _context(["a", "b", "c"], environment="production"), now, user="alice")
    assert decision["reasons"] == [
        "standard change 'patching' allows at most 2 hosts; the play targets 3",
        "standard change 'patching' is allowed in environment test only; a, b, c are in production",
        "standard change 'patching' is allowed Sat,Sun 02:00-06:00 Europe/Paris only; now is Mon 13:00 Europe/Paris",
    ]


def test_no_template_matching_says_what_the_closest_templates_lack(tmp_path):
    policy = load(tmp_path, """
templates:
  - {name: a, conditions: ["contains(roles, 'x')"]}
  - {name: far, conditions: ["contains(roles, 'y')", "host_count > `5`", "contains(tags, 'z')"]}
  - {name: b, conditions: ["contains(tags, 'patching')", "contains(roles, 'nginx')"]}
  - {name: c, conditions: ["contains(roles, 'app')", "contains(tags, 'patching')"]}
""")
    decision = decide(policy, _context(["a"]), datetime.datetime(2026, 11, 23, tzinfo=UTC), user="alice")
    assert decision["reasons"] == [
        "no standard change template matches this play (4 checked in %s): give the gate change_request: <number> "
        "of an approved change request (raise one with changeops.itsm.change_request), or change the play so that "
        "a template covers it (what the closest ones lack is listed)" % policy.origin,
        "closest: standard change 'a': condition contains(roles, 'x') is false for this play",
        "closest: standard change 'b': condition contains(roles, 'nginx') is false for this play",
        "closest: standard change 'c': condition contains(roles, 'app') is false for this play",
    ]
    # no reason is an empty heading: joined into the message, they read as sentences ("; the closest:;" did not)
    assert all(not reason.rstrip().endswith(":") for reason in decision["reasons"])
    empty = decide(load(tmp_path, "templates: []\n"), _context(["a"]), datetime.datetime(2026, 11, 23, tzinfo=UTC),
                   user="alice")
    assert empty["reasons"] == [
        "%s has no standard change template: give the gate change_request: <number> of an approved change request "
        "(raise one with changeops.itsm.change_request)" % empty["reasons"][0].split(" has no ")[0]]
    named = decide(load(tmp_path, "templates:\n  - {name: a, conditions: [\"contains(roles, 'x')\"]}\n"),
                   _context(["a"]), datetime.datetime(2026, 11, 23, tzinfo=UTC), user="alice", standard_template="a")
    assert named["reasons"] == ["standard change 'a': condition contains(roles, 'x') is false for this play"]


def test_emergency_declarers_and_justification(tmp_path):
    policy = load(tmp_path, "emergency:\n  declarers: [oncall-*]\n  min_justification_length: 20\n")
    now = datetime.datetime(2026, 11, 23, tzinfo=UTC)
    refused = decide(policy, _context(["a"]), now, emergency=True, justification="short", user="alice")
    assert refused["reasons"] == ["alice may not declare an emergency change (allowed: oncall-*)",
                                  "an emergency change needs a justification of at least 20 characters (got 5)"]
    allowed = decide(policy, _context(["a"]), now, emergency=True, user="oncall-bob",
                     justification="INC0001: database down for every customer")
    assert (allowed["allowed"], allowed["type"], allowed["review_required"]) == (True, "emergency", True)


def test_the_sample_policy_is_valid():
    sample = os.path.join(os.path.dirname(__file__), "..", "..", "playbooks", "policies",
                          "change-policy.example.yml")
    policy = change_policy.load_policy(sample)
    assert [t.name for t in policy.templates] == ["patching", "web-content", "certificate-renewal"]
    assert {"sshd", "database_access"} <= set(a.name for a in policy.protected_areas)


def test_a_bad_condition_is_reported_on_its_own_line(tmp_path):
    message = error_of(tmp_path, "templates:\n  - name: a\n    conditions:\n      - \"`true`\"\n"
                                 "      - \"contains(tags, 'x'\"\n")
    assert message.startswith("policy.yml line 5: templates[0].conditions[1]: invalid JMESPath expression")


def test_max_hosts_counts_the_whole_play_not_one_serial_batch(tmp_path):
    policy = load(tmp_path, "templates:\n  - name: patching\n    conditions: [\"contains(tags, 'patching')\"]\n"
                            "    max_hosts: 2\n")
    now = datetime.datetime(2026, 11, 23, 12, tzinfo=UTC)
    batch = _context(["a"], play_host_count=3)
    assert batch["host_count"] == 1 and batch["play_host_count"] == 3
    decision = decide(policy, batch, now, user="alice")
    assert decision["reasons"] == ["standard change 'patching' allows at most 2 hosts; the play targets 3 "
                                   "(1 in this batch)"]
    assert decide(policy, _context(["a"], play_host_count=2), now, user="alice")["allowed"] is True


@pytest.mark.parametrize("state", ["closed", "cancelled"])
def test_an_emergency_under_a_finished_change_request_is_denied(state):
    policy = change_policy.load_policy(None)
    decision = decide(policy, _context(["a"]), datetime.datetime(2026, 11, 23, tzinfo=UTC), emergency=True,
                      user="alice", justification="INC0001: database down for every customer",
                      change_request="CHG0000004", record={"number": "CHG0000004", "state": state,
                                                           "type": "emergency"})
    assert decision["allowed"] is False
    assert decision["reasons"] == ["CHG0000004 is %s: an emergency cannot be declared under it; declare it without "
                                   "change_request or under an open emergency change request" % state]
