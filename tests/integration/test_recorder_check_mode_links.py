# -*- coding: utf-8 -*-
"""Which results really changed a host, and which configuration item a changed host is.

``data.task.check_mode`` is the check mode a result really ran in: ``check_mode: false`` changes hosts
under ``--check``, ``check_mode: true`` only predicts. Only real changes link a host to its CI
(``ci.changed_by_run``), and the CI is found as register_host finds it, never by a name shared with a
CI of another class.
"""

from __future__ import annotations

import uuid

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from support.recorder import links_of, new_run_id

pytestmark = [pytest.mark.integration]

CHECK_MODE_PLAYBOOK = """
- hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Follows the run
      ansible.builtin.copy:
        content: "{{ run_marker }}\\n"
        dest: "{{ workdir }}/follows-{{ inventory_hostname }}.txt"
        mode: "0600"

    - name: Always for real
      ansible.builtin.copy:
        content: "{{ run_marker }}\\n"
        dest: "{{ workdir }}/real-{{ inventory_hostname }}.txt"
        mode: "0600"
      check_mode: false
      when: real_change | default(true) | bool

    - name: Always a prediction
      ansible.builtin.copy:
        content: "{{ run_marker }}\\n"
        dest: "{{ workdir }}/predicted-{{ inventory_hostname }}.txt"
        mode: "0600"
      check_mode: true
"""


def server_ci(sor, name):
    ci_id = uuid.uuid4().hex
    sor.append([Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": name, "class": "server"},
                                            "identities": {"name": "host/%s" % name}})])
    return ci_id


def test_the_effective_check_mode_of_each_result_decides_what_is_a_change(project, sor, tmp_path):
    project.write_inventory(["cm1"])
    ci_id = server_ci(sor, "cm1")
    project.write_playbook("modes.yml", CHECK_MODE_PLAYBOOK)
    seen = set()

    def run(*args):
        project.run("modes.yml", "-e", "workdir=%s" % tmp_path, "-e", "run_marker=%s" % uuid.uuid4().hex, *args)
        run_id = new_run_id(sor, seen)
        return run_id, dict((r["task"]["name"], r) for r in sor.get_task_results(run_id))

    # --check with a check_mode: false task: that task really changed the host
    check_run, results = run("--check")
    assert {name: (r["status"], r["task"]["check_mode"]) for name, r in results.items()} == {
        "Follows the run": ("changed", True), "Always for real": ("changed", False),
        "Always a prediction": ("changed", True)}
    assert (tmp_path / "real-cm1.txt").exists() and not (tmp_path / "follows-cm1.txt").exists()
    assert links_of(sor, check_run) == [("cm1", ci_id)], "the real change links the host"

    # --check where every change is a prediction: a dry run that is nobody's "last change"
    dry_run, results = run("--check", "-e", "real_change=false")
    assert results["Follows the run"]["task"]["check_mode"] is True
    assert results["Always for real"]["status"] == "skipped"
    assert links_of(sor, dry_run) == []
    assert sor.get_ci(ci_id)["last_change_run_id"] == check_run

    # a normal run: check_mode: true still only predicts
    real_run, results = run()
    assert {name: r["task"]["check_mode"] for name, r in results.items()} == {
        "Follows the run": False, "Always for real": False, "Always a prediction": True}
    assert not (tmp_path / "predicted-cm1.txt").exists()
    assert links_of(sor, real_run) == [("cm1", ci_id)]
    assert sor.get_ci(ci_id)["last_change_run_id"] == real_run
    assert sor.verify().valid


def test_a_changed_host_is_linked_to_its_own_ci_only(project, sor):
    """An application CI named like a host is not that host when the host has a CI of a host class
    (cmdb_identity.find_host_cis); a host registered under another name is found by its identity."""
    hosts = {"web1": "machine-web1", "web2": "machine-web2"}
    project.write_inventory(list(hosts), host_vars=dict(
        (host, {"ansible_machine_id": machine, "ansible_hostname": host}) for host, machine in hosts.items()))
    # the application's ci_id sorts first, so a lookup by name alone would take it; the server CI was
    # written by another tool, without register_host's identities
    application, web1_ci = "0-application-web1", "z-server-web1"
    sor.append([Entry("ci.created", application, {"ci_id": application,
                                                  "attributes": {"name": "web1", "class": "application"},
                                                  "identities": {"name": "application/web1"}}),
                Entry("ci.created", web1_ci, {"ci_id": web1_ci, "attributes": {"name": "web1", "class": "server"},
                                              "identities": {}})])
    project.write_playbook("register.yml", """
        - hosts: web2
          gather_facts: false
          tasks:
            - name: Register under the DNS name
              changeops.itsm.register_host:
                name: web2.example.com
              register: registered

            - name: Change web2
              ansible.builtin.command: echo changed
        """)
    project.write_playbook("change.yml", """
        - hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Change both
              ansible.builtin.command: echo changed
        """)
    seen = set()
    project.run("register.yml")
    register_run = new_run_id(sor, seen)
    [web2_ci] = sor.find_cis(name="web2.example.com")
    assert web2_ci["class"] == "server"
    assert links_of(sor, register_run) == [("web2", web2_ci["ci_id"])], "found through register_host's answer"

    # a later run without register_host: web2 is found by the identity register_host recorded
    # (its machine id), web1 by its name among host CIs, and the application CI named web1 is not it
    project.run("change.yml")
    change_run = new_run_id(sor, seen)
    assert links_of(sor, change_run) == [("web1", web1_ci), ("web2", web2_ci["ci_id"])]
    assert sor.get_ci(application)["last_change_run_id"] is None
    assert sor.get_ci(web2_ci["ci_id"])["last_change_run_id"] == change_run
    assert sor.verify().valid
