# -*- coding: utf-8 -*-
"""An existing ledger keeps working after the upgrade, and its first published policy is a recorded change.

The ledger is left as a version before published policies left it: schema 3 (no ``policies``
table, no entry format 2), a change request approved with a free-text ``approver`` and no
identities, a gate decision without a policy state. Opening it applies schema migrations 4 to 6; the ledger still verifies; the
gate keeps deciding from the configured file (``policy: unpublished``) and the old approval still
authorises its play; publishing the first policy is a ledger entry like any change, after which the
gate decides under it, and a policy that names approver groups no longer counts an approval that
no authenticated identity made (fail closed).
"""

from __future__ import annotations

import os

import pytest

from support.change_requests import add_ci, gate_entries, iso
from support.schema_history import roll_back

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema

pytestmark = pytest.mark.integration

POLICY = """
templates:
  - name: anything-in-test
    conditions: ["contains(environments, 'test')"]
"""

GATED = """
- name: Implement the change
  hosts: web
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        change_request: CHG0000001
        fail_on_deny: false
      register: gate
    - name: The change, when allowed
      ansible.builtin.copy:
        content: "x"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}-{{ run }}.txt"
        mode: "0644"
      when: gate.allowed
"""

PUBLISH = """
- name: Publish the change policy
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Publish
      changeops.itsm.change_policy:
        src: "{{ src }}"
"""


def legacy_request():
    """A change request as the collection recorded it before identities: free-text approver, ``opened_by`` only."""
    return {"number": "CHG0000001", "state": "scheduled", "type": "normal", "approval": "approved",
            "approvals": [{"approver": "cab-chair", "decision": "approved", "at": iso(hours=-2), "comment": "CAB ok",
                           "recorded_by": "ops@controller"}],
            "affected_cis": ["web01"], "timezone": "UTC", "opened_by": "ops@controller", "opened_at": iso(hours=-3),
            "planned_start": iso(hours=-1), "planned_end": iso(hours=3), "short_description": "legacy change"}


def as_schema_3(sor):
    """The store as schema 3 left it: no policies table, no entry format 2, migrations 4 to 6 not applied."""
    with sor._write_transaction() as cursor:
        roll_back(cursor, 3)
    sor.close()


def test_an_existing_ledger_keeps_working_and_its_first_published_policy_is_a_recorded_change(project, open_sor):
    sor = open_sor()
    # sealed as schema 3 sealed them (entry format 1)
    add_ci(sor, "web01", environment="test", entry_format=1)
    sor.append([Entry("change_request.created", "CHG0000001", {"record": legacy_request(), "base_version": 0},
                      actor="ops@controller", format=1)])
    as_schema_3(sor)

    project.write_inventory(["web01"], group="web")
    with open(project.path("inventory.ini"), "a") as handle:
        handle.write("[control]\nlocalhost ansible_connection=local\n")
    project.write("gated.yml", GATED)
    project.write("publish.yml", PUBLISH)
    project.write("policy.yml", POLICY)
    os.makedirs(project.path("out"), exist_ok=True)

    upgraded = open_sor()
    assert upgraded._query("SELECT MAX(version) FROM schema_migrations")[0][0] == schema.LATEST_VERSION
    assert upgraded.get_policy() is None
    report = upgraded.verify(projections=True)
    assert report.valid and report.projections_checked and not report.projection_problems, report.summary()

    # the configured file decides, as before; the old approval (another person than the requester) still counts
    project.run("gated.yml", "-e", "run=1", env={"CHANGEOPS_GATE_POLICY": project.path("policy.yml")})
    [decision] = gate_entries(upgraded)
    assert (decision["allowed"], decision["type"]) == (True, "normal"), decision["reasons"]
    assert decision["policy"]["state"] == "unpublished"
    assert decision["identities"]["requester"] == {"name": "ops", "source": "unverified"}
    assert decision["identities"]["approvers"][0]["name"] == "cab-chair"

    # the first publication: a ledger entry after everything the ledger held, version 1 of nothing before
    head_before = upgraded.head()[0]
    project.run("publish.yml", "-e", "src=policy.yml")
    [entry] = list(upgraded.iter_entries(kinds=["policy.published"]))
    assert entry.seq == head_before + 1 and entry.subject == "change-policy"
    assert (entry.data["version"], entry.data["previous_version"]) == (1, None)
    assert entry.data["summary"]["first_version"] is True and entry.data["publisher"]["source"] == "os"
    assert upgraded.verify(projections=True).valid

    project.run("gated.yml", "-e", "run=2")
    decision = gate_entries(upgraded)[-1]
    assert (decision["allowed"], decision["policy"]["state"], decision["policy"]["version"]) == (True, "published", 1)

    # a policy naming approver groups counts only approvals an authenticated identity made
    project.write("policy.yml", POLICY + "approver_groups:\n  cab: {accounts: [cab-chair]}\n"
                                         "approvals:\n  approvers: [cab]\n")
    project.run("publish.yml", "-e", "src=policy.yml")
    project.run("gated.yml", "-e", "run=3")
    decision = gate_entries(upgraded)[-1]
    assert decision["allowed"] is False
    assert ("no approval of CHG0000001 counts under the policy in force (cab-chair (unverified): the approval by "
            "cab-chair was recorded without an authenticated identity)") in decision["reasons"], decision["reasons"]
    assert sorted(os.listdir(project.path("out"))) == ["web01-1.txt", "web01-2.txt"]
