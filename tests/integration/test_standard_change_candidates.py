# -*- coding: utf-8 -*-
"""Standard changes earned from the record (both backends): real normal changes under an approved change
request, the candidates module proposing the tightest template, a CAB member publishing it, and the next
run authorised as a standard change by it; then the template's changes failing puts it on the review list."""

from __future__ import annotations

import json
import os

import pytest

from support.change_requests import add_ci, approved_change, iso

pytestmark = pytest.mark.integration

POLICY = """
templates:
  - name: unrelated
    conditions: ["contains(tags, 'never-used')"]
"""

PLAY = """
- name: Deploy the web front end
  hosts: web
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
%s      tags: [always]
    - name: Write the front page
      ansible.builtin.copy:
        content: "release {{ release | default(1) }}\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.html"
        mode: "0644"
        # a release that does not validate fails the change (-e validator=/bin/false)
        validate: "{{ validator | default('/bin/true') }} %%s"
"""

PUBLISH = """
- name: Publish
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Publish the policy
      changeops.itsm.change_policy:
        src: "{{ src }}"
        comment: "{{ comment }}"
"""

CANDIDATES = """
- name: Candidates
  hosts: localhost
  gather_facts: false
  tasks:
    - name: What has earned pre-authorisation?
      changeops.itsm.standard_change_candidates_info:
        window: 1d
        min_successes: 3
      register: earned
    - name: Keep the answer
      ansible.builtin.copy:
        content: "{{ earned | to_json }}"
        dest: "{{ playbook_dir }}/earned.json"
        mode: "0644"
"""


def read_json(project, name):
    with open(project.path(name)) as handle:
        return json.load(handle)


def test_a_template_earned_from_three_normal_changes_authorises_the_next_run_once_published(project, open_sor):
    sor = open_sor()
    project.write_inventory(["web01", "web02"], group="web")
    for host in ("web01", "web02"):
        add_ci(sor, host, environment="staging", ci_class="server")
    os.makedirs(project.path("out"))
    project.write("policy.yml", POLICY)
    project.write("publish.yml", PUBLISH)
    project.run("publish.yml", "-e", "src=policy.yml", "-e", "comment=first")
    number = approved_change(sor, ["web01", "web02"], iso(hours=-1), iso(hours=3), timezone="UTC")
    project.write("deploy.yml", PLAY % ("        change_request: %s\n" % number))
    for release in (1, 2, 3):
        project.run("deploy.yml", "-e", "release=%d" % release)
    project.write("candidates.yml", CANDIDATES)
    project.run("candidates.yml")
    earned = read_json(project, "earned.json")
    [candidate] = earned["candidates"]
    assert candidate["successes"] == 3 and candidate["checks"] == []
    assert candidate["signature"] == {"playbook_name": "deploy.yml", "roles": [], "protected_areas": [],
                                      "modules": ["ansible.builtin.copy", "changeops.itsm.change_gate"],
                                      "environments": ["staging"], "ci_classes": ["server"]}
    template = candidate["template"]
    assert template["name"] == "earned-deploy-staging"
    assert template["environments"] == ["staging"] and template["max_hosts"] == 2
    assert "playbook_name == 'deploy.yml'" in template["conditions"]
    assert [run["change_request"] for run in candidate["evidence"]] == [number] * 3
    assert earned["failing_templates"] == []

    # nothing is pre-authorised until someone publishes it: without the change request the play is denied
    project.write("deploy.yml", PLAY % "")
    denied = project.run("deploy.yml", "-e", "release=4", check=False)
    assert denied.returncode != 0 and "no standard change template matches this play" in denied.stdout

    project.write("proposed.yml", candidate["proposed_policy"])
    project.run("publish.yml", "-e", "src=proposed.yml", "-e", "comment=CAB: earned standard change")
    allowed = project.run("deploy.yml", "-e", "release=5")
    assert "authorised as a standard change (earned-deploy-staging)" in allowed.stdout
    event = open_sor().find_change_events(limit=1)[0]
    assert (event["authorisation"], event["authorisation_ref"]) == ("standard", "earned-deploy-staging")

    # the reverse: its changes start failing, and the template is reported for review
    project.run("deploy.yml", "-e", "release=6", "-e", "validator=/bin/false", check=False)
    project.run("candidates.yml")
    [failing] = read_json(project, "earned.json")["failing_templates"]
    assert (failing["template"], failing["changes"], failing["failed"]) == ("earned-deploy-staging", 2, 1)
    assert failing["failures"][0]["why"] == ["failed"]
