# -*- coding: utf-8 -*-
"""A CI's change history read back through configuration_item_info, after real recorded runs."""

from __future__ import annotations

import json

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from test_cmdb_register import REGISTER_PLAY, host_facts, run, write_inventory

pytestmark = pytest.mark.integration

CHANGE_PLAY = """
- name: Change the host
  hosts: db01
  gather_facts: false
  tasks:
    - name: A task that changes the host
      ansible.builtin.command: "true"
"""

HISTORY_PLAY = """
- name: Read the CI's history
  hosts: localhost
  gather_facts: false
  tasks:
    - name: History of db01
      changeops.itsm.configuration_item_info:
        name: [db01]
        include_history: true
      register: found
    - name: Keep it for the test
      ansible.builtin.copy:
        content: "{{ found.configuration_items | to_json }}"
        dest: "{{ playbook_dir }}/history.json"
        mode: "0600"
"""


def test_history_names_the_change_events_that_touched_the_ci(project, open_sor):
    # the project's runs go through the change_recorder (tests/support/project.py enables it)
    write_inventory(project, {"db01": host_facts("db01"), "localhost": {"ansible_connection": "local"}})
    project.write_playbook("register.yml", REGISTER_PLAY.replace("hosts: all", "hosts: db01"))
    project.write_playbook("change.yml", CHANGE_PLAY)
    project.write_playbook("history.yml", HISTORY_PLAY)
    run(project, "register.yml")
    run(project, "change.yml")
    run(project, "change.yml", "--check")
    sor = open_sor()
    registered = sor.find_change_events(playbook="register.yml")[0]["run_id"]
    changes = dict((event["dry_run"], event["run_id"]) for event in sor.find_change_events(playbook="change.yml"))
    changed, dry = changes[False], changes[True]
    ci_id = sor.find_cis(name="db01")[0]["ci_id"]
    # ledgers written before the recorder stopped linking check-mode results to CIs hold links like this one
    if not [entry for entry in sor.iter_entries(subject=ci_id) if entry.data.get("run_id") == dry]:
        sor.append([Entry("ci.changed_by_run", ci_id, {"ci_id": ci_id, "run_id": dry, "host": "db01"})])

    run(project, "history.yml")
    with open(project.path("history.json"), encoding="utf-8") as handle:
        found = json.load(handle)
    assert [item["ci_id"] for item in found] == [ci_id]
    history = found[0]["history"]
    by_run = {}
    for item in history:
        by_run.setdefault(item["data"].get("run_id"), []).append(item)

    created = by_run[registered]
    assert [item["kind"] for item in created] == ["ci.created"]
    assert created[0]["change_event"]["run_id"] == registered
    assert created[0]["change_event"]["playbook"].endswith("register.yml")
    assert created[0]["change_event"]["dry_run"] is False
    # registering the CI changed the record, no managed host
    assert created[0]["change_event"]["authorisation"] == "record-only"

    linked = by_run[changed]
    assert [item["kind"] for item in linked] == ["ci.changed_by_run"]
    event = linked[0]["change_event"]
    assert event["playbook"].endswith("change.yml") and event["status"] == "successful"
    assert event["dry_run"] is False and event["authorisation"] == "unauthorised"
    assert event["started_at"] <= event["ended_at"]

    assert [item["change_event"]["dry_run"] for item in by_run[dry]] == [True] * len(by_run[dry])
    assert by_run[dry][0]["change_event"]["authorisation"] == "dry-run"
