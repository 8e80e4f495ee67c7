# -*- coding: utf-8 -*-
"""The change gate on plays that use the collection's own roles, as shipped.

The gate judges a play from its tasks before any of them runs, so these plays end right after the
gate (``meta: end_play``): the roles are inspected, never run against this machine. A ``--check``
run of the hardening or release-readiness role changes nothing on a host (their probes are
``check_mode: false`` with ``changed_when: false``; their evidence files are written on the
controller), so it must stay a dry run that needs no change request; a real run of the hardening
role touches sshd, a protected area, so no standard template may cover it.
"""

from __future__ import annotations

import pytest

from support.change_requests import add_ci, gate_entries

pytestmark = pytest.mark.integration

POLICY = """
templates:
  - name: baseline
    description: the security baseline, as a standard change (it can never cover sshd)
    conditions:
      - "contains(roles, 'hardening') || contains(roles, 'release_readiness')"
    allow_opaque_actions: true
    allow_dynamic_includes: true
"""


def playbook(role):
    return """
- name: Apply {role}
  hosts: web
  gather_facts: false
  roles:
    - {role}
  pre_tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
        fail_on_deny: false
      register: gate
      tags: [always]
    - name: Show the decision
      ansible.builtin.debug:
        msg: "{{{{ gate.decision.type }}}}: {{{{ gate.decision.reasons | default([]) }}}}"
    - name: Stop before the role runs (the gate has judged the play)
      ansible.builtin.meta: end_play
""".format(role=role)


@pytest.mark.parametrize("role", ["changeops.itsm.hardening", "changeops.itsm.release_readiness"])
def test_a_check_run_of_a_collection_role_is_a_dry_run(project, sor, role):
    project.write_inventory(["web01"], group="web")
    project.write("policy.yml", POLICY)
    add_ci(sor, "web01", environment="test")
    project.write("site.yml", playbook(role))
    run = project.run("site.yml", "--check")
    [decision] = gate_entries(sor)
    assert (decision["allowed"], decision["type"]) == (True, "dry-run"), run.stdout


@pytest.mark.parametrize("mode, expected", [("enforce", (False, "denied")), ("audit", (True, "standard"))])
def test_a_real_run_of_the_hardening_role_needs_a_normal_change_only_to_enforce(project, sor, mode, expected):
    """enforce.yml (included when hardening_mode is enforce) writes sshd's configuration: a protected area
    no standard template can cover, even one that accepts dynamic includes; an audit changes nothing."""
    project.write_inventory(["web01"], group="web")
    project.write("policy.yml", POLICY)
    add_ci(sor, "web01", environment="test")
    project.write("site.yml", playbook("changeops.itsm.hardening"))
    run = project.run("site.yml", "-e", "hardening_mode=%s" % mode)
    [decision] = gate_entries(sor)
    assert (decision["allowed"], decision["type"]) == expected, run.stdout
    touches_sshd = any("protected area sshd" in reason for reason in decision["reasons"])
    assert touches_sshd is (mode == "enforce"), decision["reasons"]
