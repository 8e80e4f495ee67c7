# -*- coding: utf-8 -*-
"""Check mode and the gate: only the run's --check makes a dry run, and only when nothing runs for real."""

from __future__ import annotations

import os
import re

import pytest

from support.change_requests import add_ci, gate_entries

pytestmark = pytest.mark.integration

POLICY = """
templates:
  - name: patching
    conditions:
      - "contains(tags, 'patching')"
"""

PLAYBOOK = """
- name: Patch the web servers
  hosts: web
  gather_facts: false
%(roles)s  pre_tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
%(gate_extra)s      tags: [always]
  tasks:
    - name: Write the marker file
      ansible.builtin.copy:
        content: "{{ inventory_hostname }}\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
%(task_extra)s      tags: [patching]
"""


def setup(project, sor, roles="", gate_extra="", task_extra=""):
    project.write_inventory(["web01", "web02"], group="web")
    project.write("policy.yml", POLICY)
    project.write("roles/ssh_hardening/tasks/main.yml", """
        - name: Harden sshd (a no-op in the test)
          ansible.builtin.debug:
            msg: hardening
        """)
    project.write("pb.yml", PLAYBOOK % {"roles": roles, "gate_extra": gate_extra, "task_extra": task_extra})
    os.makedirs(project.path("out"), exist_ok=True)
    for host in ("web01", "web02"):
        add_ci(sor, host, environment="test")


def written(project):
    return sorted(os.listdir(project.path("out")))


def flat(output):
    return re.sub(r"\s+", " ", output)


def test_check_mode_on_the_gate_task_alone_does_not_bypass_the_gate(project, sor):
    setup(project, sor, roles="  roles:\n    - ssh_hardening\n", gate_extra="      check_mode: true\n")
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0, run.stdout
    assert "play touches protected area sshd (role ssh_hardening)" in flat(run.stdout)
    assert written(project) == [], "the play went on after a gate that only ran in check mode"
    [decision] = gate_entries(sor)
    assert (decision["allowed"], decision["type"]) == (False, "denied")


def test_a_check_run_with_a_task_forced_to_run_for_real_is_judged_as_a_real_run(project, sor):
    setup(project, sor, roles="  roles:\n    - ssh_hardening\n", task_extra="      check_mode: false\n")
    run = project.run("pb.yml", "--check", check=False)
    assert run.returncode != 0, run.stdout
    output = flat(run.stdout)
    assert re.search(r"change gate denied play 'Patch the web servers' \(check mode, but 1 task runs for real with "
                     r"check_mode: false, e\.g\. pb\.yml:\d+ \(Write the marker file\): judged as a real run\): "
                     r"play touches protected area sshd", output), output[-3000:]
    assert written(project) == []
    [decision] = gate_entries(sor)
    assert decision["type"] == "denied"
    assert decision["context"]["real_in_check_mode"][0].endswith("(Write the marker file)")


def test_a_check_run_with_a_real_task_covered_by_a_template_is_a_standard_change(project, sor):
    setup(project, sor, task_extra="      check_mode: false\n")
    run = project.run("pb.yml", "--check")
    assert "authorised as a standard change (patching) (check mode, but 1 task runs for real" in flat(run.stdout)
    assert written(project) == ["web01.txt", "web02.txt"]
    [decision] = gate_entries(sor)
    assert (decision["allowed"], decision["type"], decision["reference"]) == (True, "standard", "patching")


def test_a_plain_check_run_is_still_a_dry_run(project, sor):
    setup(project, sor, roles="  roles:\n    - ssh_hardening\n", gate_extra="      check_mode: false\n")
    run = project.run("pb.yml", "--check")
    assert "check mode: play 'Patch the web servers' allowed; a real run would be denied" in flat(run.stdout)
    assert written(project) == []
    [decision] = gate_entries(sor)
    assert decision["type"] == "dry-run"


# --------------------------------------------------------------------------
# what ITSM staff see afterwards (needs the recorder's task.check_mode in run.result entries)
# --------------------------------------------------------------------------
def last_event(sor):
    [event] = sor.find_change_events(limit=1)
    return event


UNGATED = """
- name: Quick fix during a dry run
  hosts: web
  gather_facts: false
  tasks:
    - name: Predicted only
      ansible.builtin.copy:
        content: "predicted\\n"
        dest: "{{ playbook_dir }}/out/predicted-{{ inventory_hostname }}.txt"
        mode: "0644"

    - name: Really written, --check or not
      ansible.builtin.copy:
        content: "{{ inventory_hostname }}\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
%s"""


def test_a_real_change_in_a_check_run_without_a_gate_is_unauthorised(project, sor):
    setup(project, sor)
    project.write("ungated.yml", UNGATED % "      check_mode: false\n")
    project.run("ungated.yml", "--check")
    assert written(project) == ["web01.txt", "web02.txt"]
    [result] = [r for r in sor.get_task_results(last_event(sor)["run_id"], host="web01")
                if r["task"]["name"] == "Really written, --check or not"]
    assert result["task"]["check_mode"] is False, "the recorder does not record task.check_mode yet"
    event = last_event(sor)
    assert (event["dry_run"], event["authorisation"]) == (True, "unauthorised")


def test_a_check_run_that_only_predicts_changes_stays_a_dry_run(project, sor):
    setup(project, sor)
    project.write("ungated.yml", UNGATED % "")
    project.run("ungated.yml", "--check")
    assert written(project) == []
    assert last_event(sor)["authorisation"] == "dry-run"


def test_a_real_change_in_a_check_run_is_authorised_by_the_gate_decision(project, sor):
    setup(project, sor, task_extra="      check_mode: false\n")
    project.run("pb.yml", "--check")
    event = last_event(sor)
    assert (event["dry_run"], event["authorisation"], event["authorisation_ref"]) == (True, "standard", "patching")
