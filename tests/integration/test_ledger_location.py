# -*- coding: utf-8 -*-
"""Where the ledger is: one file, whatever directory ansible-playbook runs from.

A relative ``sqlite_path`` in ansible.cfg's ``[changeops]`` section is relative to the folder of
that ansible.cfg, for every part of the collection: the recorder (configured by Ansible), the
modules (their action plugins read the section themselves) and the ``cmdb`` inventory plugin. It
was resolved against the current directory by the modules, so running from another folder split
the audit trail into a second, empty ledger. A run that is about to create a new ledger while
another one is configured or exists says so.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from support.project import VENV_BIN, Project

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

pytestmark = [pytest.mark.integration, pytest.mark.backends("sqlite")]

PLAYBOOK = """
- name: Use the system of record from a task
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Register this machine as a CI
      changeops.itsm.configuration_item:
        name: app01
        ci_class: server
        attributes:
          environment: test

    - name: Where the modules find the ledger
      changeops.itsm.ledger_verify:
      register: verified

    - name: Say it
      ansible.builtin.debug:
        msg: "modules use {{ verified.backend }}"
"""

CMDB_INVENTORY = """
plugin: changeops.itsm.cmdb
"""


def run_from(project, cwd, *args, env=None, command=None):
    """ansible-playbook (or ``command``) with the project's ansible.cfg (ANSIBLE_CONFIG), started in ``cwd``."""
    argv = [os.path.join(VENV_BIN, command)] + list(args) if command else project.command(*args)
    completed = subprocess.run(argv, cwd=str(cwd), env=project.env(env), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                               timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout[-10000:]
    return completed.stdout


def ledgers_under(*roots):
    found = []
    for root in roots:
        for folder, _dirs, files in os.walk(str(root)):
            found.extend(os.path.join(folder, name) for name in files if name.endswith(".sqlite"))
    return sorted(found)


def test_a_relative_sqlite_path_is_relative_to_ansible_cfg_for_every_plugin(tmp_path):
    project = Project(tmp_path / "project", {})
    project.write_cfg("\n[changeops]\nsqlite_path = state/ledger.sqlite\n")
    os.makedirs(project.path("state"))
    project.write_playbook("pb.yml", PLAYBOOK)
    project.write("inventory/ci.cmdb.yml", CMDB_INVENTORY)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "state").mkdir(parents=True)
    expected = project.path("state", "ledger.sqlite")

    output = run_from(project, elsewhere, project.path("pb.yml"))
    assert "modules use sqlite:%s" % expected in output, output
    # the inventory plugin reads the same ledger: the CI the modules registered is a host
    inventory = run_from(project, elsewhere, "-i", project.path("inventory", "ci.cmdb.yml"), "--graph",
                         command="ansible-inventory")
    assert "|--app01" in inventory, inventory
    assert ledgers_under(tmp_path) == [expected], "one ledger, next to ansible.cfg"
    with open_system_of_record({"backend": "sqlite", "sqlite_path": expected, "busy_timeout": 60}) as sor:
        # the recorder wrote its change event to that ledger too
        assert [event["playbook"] for event in sor.find_change_events()] == [project.path("pb.yml")]
        assert sor.find_cis(name="app01")
    assert "creating a new, empty ledger" not in output + inventory


def test_a_run_that_would_start_a_second_ledger_says_so(tmp_path):
    project = Project(tmp_path / "project", {})
    project.write_cfg("\n[changeops]\nsqlite_path = ledger.sqlite\n")
    project.write_playbook("pb.yml", PLAYBOOK)
    first = project.run("pb.yml").stdout
    assert "creating a new, empty ledger" not in first, "the first ledger of a project is no surprise"
    assert "creating a new, empty ledger" not in project.run("pb.yml").stdout

    stray = str(tmp_path / "stray" / "ledger.sqlite")
    os.makedirs(os.path.dirname(stray))
    output = " ".join(project.run("pb.yml", env={"CHANGEOPS_SQLITE_PATH": stray}).stdout.split())
    assert ("creating a new, empty ledger %s (environment variable CHANGEOPS_SQLITE_PATH) while another ledger is "
            "configured or present: %s (%s [changeops] sqlite_path, exists)"
            % (stray, project.path("ledger.sqlite"), project.path("ansible.cfg"))) in output, output
    assert output.count("creating a new, empty ledger") == 1, "said once, by whoever opens the ledger first"
