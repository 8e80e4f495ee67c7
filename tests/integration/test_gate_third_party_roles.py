# -*- coding: utf-8 -*-
"""The gate on real third-party roles: the protected areas they touch are named.

The roles come from the PyPI package ``ansible`` (12.3.0), extracted into a test cache
(``support/third_party.py``): Ansible Galaxy, where devsec.hardening lives, is not reachable, and
the ``ansible`` package does not ship it. The roles below are the ones of that package whose
tasks touch the new built-in areas (found by reading every role's tasks for SELinux, sysctl, CA
certificates, audit and login settings); none of the package's roles touches audit logging or
login policy, which the adversarial catalogue covers with plays of its own.

Each row lists the areas a reading of the role's tasks finds, with where; the gate must name
every one of them (it may name more: what it cannot rule out before the play runs counts). The
plays end right after the gate: the roles are inspected, never run.
"""

from __future__ import annotations

import os

import pytest

from support.change_requests import add_ci, gate_entries
from support.project import ensure_collection_tree
from support.third_party import third_party_collections

pytestmark = [pytest.mark.integration, pytest.mark.backends("sqlite")]

COLLECTIONS = ["community.mongodb", "community.zabbix", "ravendb.ravendb", "ansible.posix", "community.general",
               "ansible.windows", "community.windows", "community.docker", "ansible.utils"]

POLICY = """
templates:
  - name: anything
    conditions: ["`true`"]
    allow_dynamic_includes: true
    allow_unresolved_paths: true
    allow_opaque_actions: true
    allow_unresolved_delegations: true
    allow_unresolved_services: true
"""

PLAY = """
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
      tags: [always]
    - name: Stop before the role runs (the gate has judged the play)
      ansible.builtin.meta: end_play
      tags: [always]
"""

ROLES = [
    # role, {area: where a reading of its tasks finds it}
    ("community.mongodb.mongodb_selinux", {
        "mandatory_access_control": "the role's name, and tasks/main.yml compiles and installs an SELinux policy module",
    }),
    ("community.mongodb.mongodb_linux", {
        "kernel_security": "tasks/main.yml sets vm.swappiness and other sysctls with ansible.posix.sysctl",
        "pam": "tasks/main.yml sets nproc/nofile/memlock with community.general.pam_limits (/etc/security/limits.conf)",
    }),
    ("ravendb.ravendb.ravendb_node", {
        "kernel_security": "tasks/install.yml sets vm.swappiness with sysctl",
        "users_keys": "tasks/install.yml creates the ravendb user and group",
        "trust_store": "tasks/ravendb_secure_self_sign_setup.yml copies a CA into /usr/local/share/ca-certificates/ "
                       "and runs update-ca-certificates",
    }),
    ("community.zabbix.zabbix_agent", {
        "mandatory_access_control": "tasks/selinux.yml (included from configure.yml) sets SELinux booleans",
        "users_keys": "tasks/configure-Docker.yml creates the zabbix user and group",
        "firewall": "tasks/configure-Windows.yml opens the Windows firewall with community.windows.win_firewall_rule",
    }),
]


@pytest.fixture(scope="module")
def collections_path():
    return os.pathsep.join([ensure_collection_tree(), third_party_collections(COLLECTIONS)])


@pytest.mark.parametrize("role, areas", ROLES, ids=[role for role, _areas in ROLES])
def test_the_gate_names_every_area_a_third_party_role_touches(project, sor, collections_path, role, areas):
    project.write_inventory(["web01"], group="web")
    project.write("policy.yml", POLICY)
    project.write("site.yml", PLAY.format(role=role))
    add_ci(sor, "web01", environment="test")
    run = project.run("site.yml", env={"ANSIBLE_COLLECTIONS_PATH": collections_path})
    [decision] = gate_entries(sor)
    named = {touch["area"]: touch["matched_by"] for touch in decision["protected_areas"]}
    missing = {area: where for area, where in areas.items() if area not in named}
    assert not missing, "the gate did not name %s; it named %s\n%s" % (missing, named, run.stdout[-3000:])
    assert decision["type"] == "denied"
