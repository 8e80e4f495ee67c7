# -*- coding: utf-8 -*-
"""A staging play that delegates a task to a production host is not covered by a staging-only template.

Also: the gate reads each host's own CI (a host class first), never an application CI that shares
the host's name, for the play's hosts and for the hosts tasks delegate to.
"""

from __future__ import annotations

import os
import re
import sys

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

from support.change_requests import gate_entries

pytestmark = pytest.mark.integration

POLICY = """
templates:
  - name: staging-deploy
    conditions:
      - "contains(tags, 'deploy')"
    environments: [staging]
"""

PLAYBOOK = """
- name: Deploy the release to staging
  hosts: staging
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
      tags: [always]

    - name: Write the release file
      ansible.builtin.copy:
        content: "release 42\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
      tags: [deploy]
%s"""

DELEGATED = """
    - name: Migrate the database schema
      ansible.builtin.copy:
        content: "schema 42\\n"
        dest: "{{ playbook_dir }}/out/db-{{ inventory_hostname }}.txt"
        mode: "0644"
      delegate_to: %s
      tags: [deploy]
"""


def add_ci(sor, ci_id, name, ci_class, environment):
    identities = {"name": "%s/%s" % ("host" if ci_class == "server" else ci_class, name)}
    sor.append([Entry("ci.created", ci_id, {"ci_id": ci_id, "identities": identities, "attributes": {
        "name": name, "class": ci_class, "status": "operational", "environment": environment}})])


def setup(project, sor, delegate_to=None):
    local = "ansible_connection=local ansible_python_interpreter=%s" % sys.executable
    project.write("inventory.ini", "[staging]\nstg-web01 %s\n[production]\nprod-db01 %s\n" % (local, local))
    project.write("policy.yml", POLICY)
    project.write("pb.yml", PLAYBOOK % (DELEGATED % delegate_to if delegate_to else ""))
    os.makedirs(project.path("out"), exist_ok=True)
    # the application CI sorts first: a lookup by name alone would take it for the host's CI
    add_ci(sor, "0-app", "stg-web01", "application", "production")
    add_ci(sor, "1-stg-web01", "stg-web01", "server", "staging")
    add_ci(sor, "1-prod-db01", "prod-db01", "server", "production")


def flat(output):
    return re.sub(r"\s+", " ", output)


def written(project):
    return sorted(os.listdir(project.path("out")))


def test_the_staging_play_alone_is_a_standard_change_on_the_hosts_own_ci(project, sor):
    setup(project, sor)
    run = project.run("pb.yml")
    assert "authorised as a standard change (staging-deploy)" in flat(run.stdout)
    assert written(project) == ["stg-web01.txt"]
    [decision] = gate_entries(sor)
    assert decision["context"]["environments"] == ["staging"]
    [event] = sor.find_change_events(limit=1)
    assert (event["authorisation"], event["environments"]) == ("standard", ["staging"])


def test_a_task_delegated_to_a_production_host_is_outside_a_staging_only_template(project, sor):
    setup(project, sor, delegate_to="prod-db01")
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0, run.stdout[-3000:]
    assert "standard change 'staging-deploy' is allowed in environment staging only; prod-db01 (a task delegates to " \
           "it) is in production" in flat(run.stdout), run.stdout[-3000:]
    assert written(project) == [], "the play went on after the gate denied it"
    [decision] = gate_entries(sor)
    context = decision["context"]
    assert (context["delegated_hosts"], context["environments"]) == (["prod-db01"], ["production", "staging"])
    assert [(ci["name"], ci["ci_id"]) for ci in context["delegated_cis"]] == [("prod-db01", "1-prod-db01")]


def test_a_delegation_the_gate_cannot_resolve_is_a_blind_spot_of_the_template(project, sor):
    setup(project, sor, delegate_to="\"{{ item }}\"\n      loop: [prod-db01]")
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0, run.stdout[-3000:]
    assert re.search(r"the gate cannot tell which host pb\.yml:\d+ delegate_to \{\{ item \}\} is before the play runs; "
                     r"standard change 'staging-deploy' covers that only with allow_unresolved_delegations: true",
                     flat(run.stdout)), run.stdout[-3000:]
    assert written(project) == []
