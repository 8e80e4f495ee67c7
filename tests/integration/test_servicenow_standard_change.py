# -*- coding: utf-8 -*-
"""changeops.itsm.servicenow_change: a standard change raised from a ServiceNow template in a play, then named to
the gate. Real ansible-playbook runs, the recorder on, the loopback ServiceNow simulator (a simulator of the
documented API, not a real instance)."""

from __future__ import annotations

import json
import os

import pytest

from support.project import Project
from test_servicenow import gated_project, writes

pytestmark = pytest.mark.integration

TEMPLATE = "Patch Linux servers"
TEMPLATE_SYS_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"  # the simulator's fixture (fixtures.STANDARD_TEMPLATES)

RAISED = """
- name: Patch the web servers under a standard change raised in the play
  hosts: web
  gather_facts: false
  tags: [patching]
  pre_tasks:
    - name: Raise the standard change from the ServiceNow template
      changeops.itsm.servicenow_change:
        template: "{{ template }}"
        hosts: "{{ ansible_play_hosts }}"
        state: implement
      run_once: true
      register: chg
      tags: [always]

    - name: Ask for it again (the same CHG, nothing to do)
      changeops.itsm.servicenow_change:
        template: "{{ template }}"
        hosts: "{{ ansible_play_hosts }}"
        state: implement
      run_once: true
      register: again
      tags: [always]

    - name: Keep both answers for the test
      ansible.builtin.copy:
        content: "{{ {'chg': chg, 'again': again} | to_json }}"
        dest: "{{ playbook_dir }}/answers.json"
        mode: "0600"
      run_once: true
      delegate_to: localhost
      check_mode: false
      changed_when: false  # the test's own plumbing, not a change the gate should authorise
      tags: [always]

    - name: Change gate
      changeops.itsm.change_gate:
        change_request: "{{ chg.number }}"
        policy: policy.yml
      tags: [always]
  tasks:
    - name: Write the marker file
      ansible.builtin.copy:
        content: "{{ inventory_hostname }}\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
"""

CHECKED = """
- name: What would the standard change be
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Raise it (check mode)
      changeops.itsm.servicenow_change:
        template: "{{ template }}"
        hosts: [web01, web02]
        correlation_id: patching-2026-12
      register: chg

    - name: Keep the answer for the test
      ansible.builtin.copy:
        content: "{{ chg | to_json }}"
        dest: "{{ playbook_dir }}/checked.json"
        mode: "0600"
      check_mode: false
"""


def _answers(project, name):
    with open(project.path(name)) as handle:
        return json.load(handle)


def test_a_standard_change_raised_in_the_play_authorises_it_and_is_made_once(sqlite_project, sqlite_sor, sn):
    names = gated_project(sqlite_project, sqlite_sor, sn)
    sqlite_project.write("raised.yml", RAISED)
    since = len(sn.requests())
    run = sqlite_project.run("raised.yml", "-e", "template='%s'" % TEMPLATE, env=sn.env())
    [record] = sn.control.records("change_request", "type=standard")
    answers = _answers(sqlite_project, "answers.json")
    chg, again = answers["chg"], answers["again"]
    assert chg["changed"] is True and chg["created"] is True and chg["number"] == record["number"]
    assert sorted(chg["cis_added"]) == names
    assert again["changed"] is False and again["created"] is False and again["number"] == record["number"]
    # made from the template through the Change API (not the Table API), walked to implement, read back
    posts = [entry["path"] for entry in writes(sn.requests(since)) if entry["method"] == "POST"]
    assert "/api/sn_chg_rest/change/standard/%s" % TEMPLATE_SYS_ID in posts
    assert record["state"] == "-1" and record["std_change_producer_version"]
    assert record["correlation_id"].startswith("changeops-") and record["correlation_id"].endswith(TEMPLATE)
    affected = sn.control.records("task_ci", "task=%s" % record["sys_id"])
    assert sorted(sn.control.records("cmdb_ci", "sys_id=%s" % row["ci_item"])[0]["name"] for row in affected) == names
    # the gate read it live and authorised the play as the standard change the policy template covers
    assert "authorised as a standard change (%s)" % record["number"] in run.stdout
    assert sorted(os.listdir(sqlite_project.path("out"))) == ["web01.txt", "web02.txt"]
    [event] = sqlite_sor.find_change_events(limit=1)
    assert event["authorisation"] == "standard" and event["authorisation_ref"] == record["number"]
    notes = [row["value"] for row in sn.control.records("sys_journal_field", "element_id=%s" % record["sys_id"])]
    assert any("run %s ended: successful" % event["run_id"] in note for note in notes)


def test_check_mode_reads_only_and_says_what_it_would_create(sqlite_project, sqlite_sor, sn):
    gated_project(sqlite_project, sqlite_sor, sn)
    sqlite_project.write("checked.yml", CHECKED)
    since = len(sn.requests())
    run = sqlite_project.run("checked.yml", "--check", "--diff", "-e", "template='%s'" % TEMPLATE, env=sn.env())
    checked = _answers(sqlite_project, "checked.json")
    assert checked["changed"] is True and checked["created"] is True and checked["number"] is None
    assert sorted(checked["cis_added"]) == ["web01", "web02"]
    assert checked["change_request"]["template_sys_id"] == TEMPLATE_SYS_ID
    assert writes(sn.requests(since)) == [] and sn.control.records("change_request", "type=standard") == []
    assert "correlation_id patching-2026-12" in run.stdout  # the diff's header


@pytest.mark.parametrize("arguments,message", [
    ("template='No such template'", "no active standard change template named 'No such template'"),
    ("template='Retired template'", "no active standard change template named 'Retired template'"),
])
def test_an_unknown_or_inactive_template_fails_naming_it(sqlite_project, sqlite_sor, sn, arguments, message):
    gated_project(sqlite_project, sqlite_sor, sn)
    sqlite_project.write("checked.yml", CHECKED)
    run = sqlite_project.run("checked.yml", "-e", arguments, env=sn.env(), check=False)
    assert run.returncode != 0 and message in run.stdout
    assert sn.control.records("change_request", "type=standard") == []


def test_a_host_not_yet_in_servicenow_fails_naming_it(sqlite_project, sqlite_sor, sn):
    gated_project(sqlite_project, sqlite_sor, sn)
    sqlite_project.write("checked.yml", CHECKED.replace("[web01, web02]", "[web01, web09]"))
    run = sqlite_project.run("checked.yml", "-e", "template='%s'" % TEMPLATE, env=sn.env(), check=False)
    assert run.returncode != 0
    assert "hosts: web09 has no configuration item in the system of record" in run.stdout
    assert sn.control.records("change_request", "type=standard") == []


def test_without_a_recorded_run_a_correlation_id_is_required(tmp_path, sqlite_env, sqlite_project, sqlite_sor, sn):
    gated_project(sqlite_project, sqlite_sor, sn)
    bare = Project(tmp_path / "bare", sqlite_env, callbacks=())  # no recorder: no run id to derive one from
    bare.write("checked.yml", CHECKED.replace("        correlation_id: patching-2026-12\n", ""))
    run = bare.run("checked.yml", "-e", "template='%s'" % TEMPLATE, env=sn.env(), check=False)
    assert run.returncode != 0 and "correlation_id is required when the run is not recorded" in run.stdout
    assert sn.control.records("change_request", "type=standard") == []
