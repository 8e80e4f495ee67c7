# -*- coding: utf-8 -*-
"""How the recorded gate decisions authorise a run's changes, in real ansible-playbook runs.

A change is authorised by the decision in force for its play and host when it started: not by
a decision for another batch of the play, and not by a decision taken after it.
"""

from __future__ import annotations

import os

import pytest

from support.change_requests import add_ci, gate_entries

pytestmark = pytest.mark.integration

POLICY = """
templates:
  - name: web01-only
    conditions:
      - "hosts == ['web01']"
"""

WRITE = """
    - name: Write the marker file
      ansible.builtin.copy:
        content: "{{ inventory_hostname }}\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
"""

GATE = """
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
        fail_on_deny: false
"""


def setup(project, sor, playbook):
    project.write_inventory(["web01", "web02"], group="web")
    project.write("policy.yml", POLICY)
    project.write("pb.yml", playbook)
    os.makedirs(project.path("out"), exist_ok=True)
    for host in ("web01", "web02"):
        add_ci(sor, host, environment="test")


def last_event(sor):
    [event] = sor.find_change_events(limit=1)
    return event


def play(tasks, serial=""):
    return """
- name: Change the web servers
  hosts: web
  gather_facts: false
%s  tasks:
%s""" % (serial, tasks)


def test_an_allowed_batch_does_not_authorise_a_denied_one(project, sor):
    setup(project, sor, play(GATE + WRITE, serial="  serial: 1\n"))
    project.run("pb.yml")
    decisions = gate_entries(sor)
    assert [(d["hosts"], d["allowed"]) for d in decisions] == [(["web01"], True), (["web02"], False)]
    assert sorted(os.listdir(project.path("out"))) == ["web01.txt", "web02.txt"]
    assert last_event(sor)["authorisation"] == "unauthorised"


def test_changes_made_before_the_gate_ran_are_not_authorised_by_it(project, sor):
    setup(project, sor, play(WRITE + GATE).replace("hosts: web", "hosts: web01"))
    project.run("pb.yml")
    [decision] = gate_entries(sor)
    assert decision["allowed"] is True
    assert last_event(sor)["authorisation"] == "unauthorised"


def test_changes_after_an_allowing_gate_are_authorised(project, sor):
    setup(project, sor, play(GATE + WRITE).replace("hosts: web", "hosts: web01"))
    project.run("pb.yml")
    event = last_event(sor)
    assert (event["authorisation"], event["authorisation_ref"]) == ("standard", "web01-only")
