# -*- coding: utf-8 -*-
"""--check runs of plays whose roles probe hosts for real: read-only probes, and the tasks of dynamic includes.

The hardening role runs its probes with ``check_mode: false`` and ``changed_when: false`` (in its
main tasks file and in the files it includes), so a --check run sees the host as it is. Such probes
change nothing: the dry run must stay a dry run, allowed without a change request. A
``check_mode: false`` task that is not declared read-only makes the run real, also when it sits in
an included file, and so does an include whose tasks the gate cannot read before the play runs.
"""

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
- name: Harden the web servers
  hosts: web
  gather_facts: false
  roles:
    - ssh_hardening
  pre_tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
      tags: [always]
"""

# the pattern of roles/hardening/tasks/main.yml: probes, an included audit, the remediation, evidence
ROLE_MAIN = """
- name: Detect containers (kernel settings are the host's there)
  ansible.builtin.command: echo none
  register: virt
  check_mode: false
  changed_when: false
  failed_when: false

- name: Detect the OpenSSH version
  ansible.builtin.shell: echo OpenSSH_9.2p1 2>&1
  register: ssh_version
  check_mode: false
  changed_when: "false"
  failed_when: false

- name: Check every control before any change
  ansible.builtin.include_tasks: gather.yml

- name: Remediate (predicted only under --check)
  ansible.builtin.copy:
    content: "hardened\\n"
    dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
    mode: "0644"

- name: Write the evidence files on the controller
  delegate_to: localhost
  check_mode: false
  block:
    - name: Write the evidence document
      ansible.builtin.copy:
        content: "{{ virt.stdout }} {{ ssh_version.stdout }} {{ sshd.stdout }}\\n"
        dest: "{{ playbook_dir }}/evidence/{{ inventory_hostname }}.txt"
        mode: "0644"
      changed_when: false
"""

# the pattern of gather.yml, and of release_readiness' one include per check type over a literal loop
GATHER = """
- name: Read the effective sshd configuration
  ansible.builtin.shell: echo permitrootlogin no
  register: sshd
  check_mode: false
  changed_when: false

- name: Probe one check type at a time
  ansible.builtin.include_tasks: "check_{{ kind }}.yml"
  loop: [port, disk]
  loop_control:
    loop_var: kind
%s"""

CHECK = """
- name: Probe %s
  ansible.builtin.command: echo %s
  check_mode: false
  changed_when: false
"""


def setup(project, sor, gather_extra=""):
    project.write_inventory(["web01", "web02"], group="web")
    project.write("policy.yml", POLICY)
    project.write("pb.yml", PLAYBOOK)
    project.write("roles/ssh_hardening/tasks/main.yml", ROLE_MAIN)
    project.write("roles/ssh_hardening/tasks/gather.yml", GATHER % gather_extra)
    for kind in ("port", "disk"):
        project.write("roles/ssh_hardening/tasks/check_%s.yml" % kind, CHECK % (kind, kind))
    for directory in ("out", "evidence"):
        os.makedirs(project.path(directory), exist_ok=True)
    for host in ("web01", "web02"):
        add_ci(sor, host, environment="test")


def flat(output):
    return re.sub(r"\s+", " ", output)


def listing(project, directory):
    return sorted(os.listdir(project.path(directory)))


def test_a_check_run_whose_probes_are_read_only_is_a_dry_run_without_a_change_request(project, sor):
    setup(project, sor)
    run = project.run("pb.yml", "--check")
    output = flat(run.stdout)
    assert "check mode: play 'Harden the web servers' allowed; a real run would be denied" in output, output[-3000:]
    [decision] = gate_entries(sor)
    assert (decision["allowed"], decision["type"]) == (True, "dry-run")
    assert decision["would_be"]["type"] == "denied"
    context = decision["context"]
    assert (context["real_in_check_mode"], context["uninspectable_includes"]) == ([], [])
    assert context["opaque_actions"] == [], "read-only probes change nothing there is to see"
    # the probes really ran (the evidence holds their output); the remediation was only predicted
    assert listing(project, "evidence") == ["web01.txt", "web02.txt"]
    with open(project.path("evidence", "web01.txt")) as handle:
        assert handle.read() == "none OpenSSH_9.2p1 permitrootlogin no\n"
    assert listing(project, "out") == []
    [event] = sor.find_change_events(limit=1)
    assert (event["dry_run"], event["authorisation"]) == (True, "dry-run")


REAL_IN_INCLUDE = """
- name: Fix it while reading (really written under --check)
  ansible.builtin.copy:
    content: "fixed\\n"
    dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
    mode: "0644"
  check_mode: false
"""


def test_a_task_that_runs_for_real_inside_an_included_file_makes_the_check_run_real(project, sor):
    setup(project, sor, gather_extra=REAL_IN_INCLUDE)
    run = project.run("pb.yml", "--check", check=False)
    assert run.returncode != 0, run.stdout[-3000:]
    output = flat(run.stdout)
    assert re.search(r"change gate denied play 'Harden the web servers' \(check mode, but 1 task runs for real with "
                     r"check_mode: false, e\.g\. \S*roles/ssh_hardening/tasks/gather\.yml:\d+ \(ssh_hardening : Fix it while reading "
                     r"\(really written under --check\)\): judged as a real run\): play touches protected area sshd",
                     output), output[-3000:]
    assert listing(project, "out") == []
    [decision] = gate_entries(sor)
    assert decision["type"] == "denied"


APPLY = """
- name: Apply real mode to the fixes
  ansible.builtin.include_tasks:
    file: fix.yml
    apply:
      check_mode: false
"""


def test_an_include_that_applies_check_mode_false_to_its_tasks_makes_the_check_run_real(project, sor):
    setup(project, sor, gather_extra=APPLY)
    project.write("roles/ssh_hardening/tasks/fix.yml", REAL_IN_INCLUDE.replace("  check_mode: false\n", ""))
    run = project.run("pb.yml", "--check", check=False)
    assert run.returncode != 0, run.stdout[-3000:]
    [decision] = gate_entries(sor)
    assert decision["type"] == "denied"
    assert [re.sub(r":\d+ ", " ", task) for task in decision["context"]["real_in_check_mode"]] == [
        "roles/ssh_hardening/tasks/fix.yml (ssh_hardening : Fix it while reading (really written under --check))"]
    assert listing(project, "out") == []


def test_a_read_only_task_with_an_expression_in_changed_when_is_not_taken_for_one(project, sor):
    setup(project, sor, gather_extra=REAL_IN_INCLUDE.replace("check_mode: false",
                                                             "check_mode: false\n  changed_when: 1 == 2"))
    run = project.run("pb.yml", "--check", check=False)
    assert run.returncode != 0, run.stdout[-3000:]
    [decision] = gate_entries(sor)
    assert decision["type"] == "denied"
    assert decision["context"]["real_in_check_mode"][0].endswith(": Fix it while reading (really written under --check))")


@pytest.mark.parametrize("include", [
    "ansible.builtin.include_tasks: \"{{ audit_file }}\"\n  vars:\n    audit_file: more.yml",
    "ansible.builtin.include_role:\n    name: \"{{ extra_role }}\"\n  vars:\n    extra_role: ssh_extra",
])
def test_an_include_the_gate_cannot_read_makes_the_check_run_real(project, sor, include):
    setup(project, sor, gather_extra="\n- name: More probes\n  %s\n" % include)
    project.write("roles/ssh_hardening/tasks/more.yml", CHECK % ("more", "more"))
    project.write("roles/ssh_extra/tasks/main.yml", CHECK % ("extra", "extra"))
    run = project.run("pb.yml", "--check", check=False)
    assert run.returncode != 0, run.stdout[-3000:]
    output = flat(run.stdout)
    assert re.search(r"change gate denied play 'Harden the web servers' \(check mode, but the gate cannot read the "
                     r"tasks of 1 dynamic include, which may run for real with check_mode: false, e\.g\. "
                     r"\S*roles/ssh_hardening/tasks/gather\.yml:\d+ include_(tasks|role) .* \(not known before the "
                     r"play runs\): judged as a real run\)", output), output[-3000:]
    [decision] = gate_entries(sor)
    assert decision["type"] == "denied" and decision["context"]["real_in_check_mode"] == []


@pytest.mark.parametrize("extra, real", [(CHECK % ("extra", "extra"), False), (REAL_IN_INCLUDE, True)])
def test_an_include_role_of_a_literal_role_is_read_in_a_check_run(project, sor, extra, real):
    setup(project, sor, gather_extra="\n- name: More probes\n  ansible.builtin.include_role:\n    name: ssh_extra\n")
    project.write("roles/ssh_extra/tasks/main.yml", extra)
    run = project.run("pb.yml", "--check", check=False)
    [decision] = gate_entries(sor)
    context = decision["context"]
    assert context["uninspectable_includes"] == []
    assert [re.sub(r"\S*roles/", "roles/", re.sub(r":\d+ ", " ", text)) for text in context["real_in_check_mode"]] == (
        ["roles/ssh_extra/tasks/main.yml (ssh_extra : Fix it while reading (really written under --check))"] if real else [])
    assert (decision["type"], run.returncode != 0) == (("denied", True) if real else ("dry-run", False)), run.stdout[-3000:]


STANDARD_PLAYBOOK = """
- name: Patch the web servers
  hosts: web
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
      tags: [always]

    - name: Read the kernel version
      ansible.builtin.command: echo 6.1.0
      register: kernel
      changed_when: false
      tags: [patching]

    - name: Write the marker file
      ansible.builtin.copy:
        content: "{{ kernel.stdout }}\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
      tags: [patching]
"""


def test_a_read_only_command_needs_no_template_that_allows_opaque_actions(project, sor):
    setup(project, sor)
    project.write("pb.yml", STANDARD_PLAYBOOK)
    run = project.run("pb.yml")
    assert "authorised as a standard change (patching)" in flat(run.stdout)
    assert listing(project, "out") == ["web01.txt", "web02.txt"]
    [decision] = gate_entries(sor)
    assert decision["context"]["opaque_actions"] == []
