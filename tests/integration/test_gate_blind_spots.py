# -*- coding: utf-8 -*-
"""What the gate cannot see before a play runs is denied for standard changes unless a template accepts it.

Dynamic includes, paths only known at run time, commands that do not say what they change, and
hosts tasks delegate to used to be invisible to the protected-area and affected-CI checks, so a
play could reach /etc/ssh through them under a standard change.
"""

from __future__ import annotations

import os
import re
import sys

import pytest

from support.change_requests import add_ci, approved_change, gate_entries, iso

pytestmark = pytest.mark.integration

POLICY = """
templates:
  - name: patching
    conditions:
      - "contains(tags, 'patching')"
%s"""

PLAYBOOK = """
- name: Patch the web servers
  hosts: web
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
%s      tags: [always]
%s"""


def setup(project, sor, tasks, allow="", gate_args="", hosts=("web01", "web02")):
    project.write_inventory(list(hosts), group="web")
    project.write("policy.yml", POLICY % allow)
    project.write("pb.yml", PLAYBOOK % ("".join("        %s\n" % line for line in gate_args.splitlines()), tasks))
    os.makedirs(project.path("out"), exist_ok=True)
    for host in hosts:
        add_ci(sor, host, environment="test")


def flat(output):
    return re.sub(r"\s+", " ", output)


def written(project):
    return sorted(os.listdir(project.path("out")))


INCLUDE = """
    - name: Pull in more tasks
      ansible.builtin.include_tasks: %s
      tags: [patching]
"""

MORE = """
- name: Write the marker file
  ansible.builtin.copy:
    content: "x"
    dest: "%s"
    mode: "0644"
"""


def test_a_dynamic_include_the_gate_cannot_read_needs_a_template_that_allows_it(project, sor):
    setup(project, sor, INCLUDE % '"{{ more_tasks }}"\n      vars:\n        more_tasks: more.yml')
    project.write("more.yml", MORE % "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt")
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert re.search(r"the gate cannot see what pb\.yml:\d+ include_tasks \{\{ more_tasks \}\} will run; standard change "
                     r"'patching' covers that only with allow_dynamic_includes: true, else use "
                     r"import_tasks/import_role or raise a normal change request", flat(run.stdout)), run.stdout[-3000:]
    assert written(project) == []
    [decision] = gate_entries(sor)
    assert re.match(r"pb\.yml:\d+ include_tasks \{\{ more_tasks \}\}$", decision["context"]["dynamic_includes"][0])

    project.write("policy.yml", POLICY % "    allow_dynamic_includes: true\n")
    project.run("pb.yml")
    assert written(project) == ["web01.txt", "web02.txt"]


def test_a_literal_include_is_read_like_the_play_itself(project, sor):
    """Its tasks count as the play's: no blind spot to allow, and a protected area inside is still one."""
    setup(project, sor, INCLUDE % "more.yml")
    project.write("more.yml", MORE % "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt")
    run = project.run("pb.yml")
    assert "authorised as a standard change (patching)" in flat(run.stdout)
    assert written(project) == ["web01.txt", "web02.txt"]
    [decision] = gate_entries(sor)
    assert decision["context"]["dynamic_includes"] == []
    assert [re.sub(r":\d+ ", " ", text) for text in decision["context"]["read_includes"]] == ["pb.yml include_tasks more.yml"]

    project.write("policy.yml", POLICY % "    allow_dynamic_includes: true\n")
    project.write("more.yml", MORE % "/etc/ssh/sshd_config.d/50-patching.conf")
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert re.search(r"play touches protected area sshd \(path /etc/ssh/sshd_config\.d/50-patching\.conf at more\.yml:\d+\), "
                     r"which standard change 'patching' cannot cover", flat(run.stdout)), run.stdout[-3000:]


LOOP_WRITE = """
    - name: Write files named by loop items
      ansible.builtin.copy:
        content: "x"
        dest: "{{ item }}"
        mode: "0644"
      loop: ["{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"]
      tags: [patching]
"""


def test_a_path_known_only_at_run_time_needs_a_template_that_allows_it(project, sor):
    setup(project, sor, LOOP_WRITE)
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert re.search(r"the gate cannot tell which file pb\.yml:\d+ ansible\.builtin\.copy dest=\{\{ item \}\} writes "
                     r"before the play runs; standard change 'patching' covers that only with "
                     r"allow_unresolved_paths: true", flat(run.stdout)), run.stdout[-3000:]
    [decision] = gate_entries(sor)
    assert decision["context"]["paths"] == [], "raw template text is not a path"
    project.write("policy.yml", POLICY % "    allow_unresolved_paths: true\n")
    project.run("pb.yml")
    assert written(project) == ["web01.txt", "web02.txt"]


COMMAND = """
    - name: Run a command
      ansible.builtin.command: touch {{ playbook_dir }}/out/{{ inventory_hostname }}.txt
      tags: [patching]
"""


def test_a_command_needs_a_template_that_allows_it(project, sor):
    setup(project, sor, COMMAND)
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert re.search(r"the gate cannot see what pb\.yml:\d+ ansible\.builtin\.command changes; standard change "
                     r"'patching' covers that only with allow_opaque_actions: true, else use a module that names "
                     r"what it changes or raise a normal change request", flat(run.stdout)), run.stdout[-3000:]
    assert written(project) == []
    project.write("policy.yml", POLICY % "    allow_opaque_actions: true\n")
    project.run("pb.yml")
    assert written(project) == ["web01.txt", "web02.txt"]


DELEGATED = """
    - name: Tell the load balancer (delegated)
      ansible.builtin.copy:
        content: "x"
        dest: "{{ playbook_dir }}/out/lb-{{ inventory_hostname }}.txt"
        mode: "0644"
      delegate_to: %s
"""


def test_hosts_tasks_delegate_to_must_be_affected_cis_of_a_normal_change(project, sor):
    setup(project, sor, "")
    with open(project.path("inventory.ini"), "a") as handle:
        handle.write("[lb]\nlb01 ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    number = approved_change(sor, ["web01", "web02"], iso(hours=-1), iso(hours=2))
    project.write("pb.yml", PLAYBOOK % ("        change_request: %s\n" % number, DELEGATED % "lb01"))
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert "lb01 (a task delegates to it) is not an affected CI of %s" % number in flat(run.stdout)
    assert written(project) == []
    [decision] = gate_entries(sor)
    assert decision["context"]["delegated_hosts"] == ["lb01"]

    project.write("pb.yml", PLAYBOOK % ("        change_request: %s\n" % number,
                                        DELEGATED % "\"{{ item }}\"\n      loop: [lb01]"))
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert re.search(r"the gate cannot tell which host pb\.yml:\d+ delegate_to \{\{ item \}\} is before the play "
                     r"runs, so it cannot check it is an affected CI of %s" % number, flat(run.stdout))

    # delegating to the controller is not a change to another managed host
    project.write("pb.yml", PLAYBOOK % ("        change_request: %s\n" % number, DELEGATED % "localhost"))
    project.run("pb.yml")
    assert written(project) == ["lb-web01.txt", "lb-web02.txt"]
