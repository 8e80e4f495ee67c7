# -*- coding: utf-8 -*-
"""Who may declare an emergency is decided on the account the play runs as, not on LOGNAME/USER."""

from __future__ import annotations

import os
import pwd
import re

import pytest

from support.change_requests import add_ci, gate_entries

pytestmark = pytest.mark.integration

REAL_USER = pwd.getpwuid(os.getuid()).pw_name
SPOOFED = {"LOGNAME": "oncall-mallory", "USER": "oncall-mallory", "LNAME": "oncall-mallory",
           "USERNAME": "oncall-mallory"}

PLAYBOOK = """
- name: Fix the outage
  hosts: web
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
        emergency: true
        justification: "INC0099999: the web tier is down for every customer"

    - name: The fix
      ansible.builtin.copy:
        content: fixed
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
"""


def setup(project, sor, declarers):
    project.write_inventory(["web01"], group="web")
    project.write("policy.yml", "emergency:\n  declarers: %s\n" % declarers)
    project.write("pb.yml", PLAYBOOK)
    os.makedirs(project.path("out"), exist_ok=True)
    add_ci(sor, "web01", environment="production")


def test_setting_logname_does_not_make_you_a_declarer(project, sor):
    setup(project, sor, '["oncall-*"]')
    run = project.run("pb.yml", env=SPOOFED, check=False)
    assert run.returncode != 0
    assert "%s may not declare an emergency change (allowed: oncall-*)" % REAL_USER in re.sub(r"\s+", " ", run.stdout)
    assert os.listdir(project.path("out")) == []
    [decision] = gate_entries(sor)
    assert decision["emergency"]["declared_by"] == REAL_USER
    assert decision["emergency"]["claimed_by"] == "oncall-mallory"


def test_the_real_account_declares_and_the_claimed_name_is_kept(project, sor):
    setup(project, sor, '["%s"]' % REAL_USER)
    project.run("pb.yml", env=SPOOFED)
    [decision] = gate_entries(sor)
    assert (decision["allowed"], decision["type"]) == (True, "emergency")
    assert (decision["emergency"]["declared_by"], decision["emergency"]["claimed_by"]) == (REAL_USER, "oncall-mallory")
    assert decision["context"]["claimed_user"] == "oncall-mallory"
