# -*- coding: utf-8 -*-
"""change_event_info's triage: what changed before the incident, from real recorded runs (both backends)."""

from __future__ import annotations

import datetime
import json
import os
import time
import uuid

import pytest

from support.change_requests import add_ci

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

pytestmark = pytest.mark.integration

CHANGE = """
- name: Change {host}
  hosts: {host}
  gather_facts: false
  tasks:
    - name: Write {name}
      ansible.builtin.copy:
        content: "{content}\\n"
        dest: "{{{{ playbook_dir }}}}/out/{host}/{name}"
        mode: "0644"
"""

TRIAGE = """
- name: Triage
  hosts: localhost
  gather_facts: false
  tasks:
    - name: What changed before the incident?
      changeops.itsm.change_event_info:
        triage:
          service: billing
          at: "{at}"
          window: 2h
      register: found
    - name: Keep the answer
      ansible.builtin.copy:
        content: "{{{{ found.triage | to_json }}}}"
        dest: "{{{{ playbook_dir }}}}/triage.json"
        mode: "0644"
"""


def ci(sor, name, ci_class, **attributes):
    ci_id = uuid.uuid4().hex
    sor.append([Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": dict(attributes, name=name, **{
        "class": ci_class}), "identities": {}})])
    return ci_id


def relate(sor, source, rel_type, target):
    sor.append([Entry("ci.relationship_added", source, {"source": source, "type": rel_type, "target": target})])


def change(project, host, name, content, *args):
    os.makedirs(project.path("out", host), exist_ok=True)
    project.write("change-%s.yml" % host, CHANGE.format(host=host, name=name, content=content))
    return project.run("change-%s.yml" % host, *args)


def test_triage_finds_the_change_to_the_database_host_that_broke_billing(project, open_sor):
    sor = open_sor()
    project.write_inventory(["web01", "db01", "other01"], group="estate")
    hosts = {name: add_ci(sor, name, environment="production", ci_class="server")
             for name in ("web01", "db01", "other01")}
    billing = ci(sor, "billing", "application", owner="payments-team")
    billing_db = ci(sor, "billing-db", "database")
    relate(sor, billing, "runs_on", hosts["web01"])
    relate(sor, billing, "depends_on", billing_db)
    relate(sor, billing_db, "runs_on", hosts["db01"])

    change(project, "other01", "motd", "unrelated")            # not something billing depends on
    change(project, "web01", "index.html", "new front page")
    change(project, "db01", "postgresql.conf", "max_connections = 5", "--diff")   # the culprit
    time.sleep(1.1)
    incident = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(1.1)
    change(project, "db01", "postgresql.conf", "max_connections = 500")           # the fix, after the incident

    project.write("triage.yml", TRIAGE.format(at=format_time(incident)))
    project.run("triage.yml")
    with open(project.path("triage.json")) as handle:
        found = json.load(handle)
    assert found["anchor"] == {"service": "billing", "ci_ids": [billing]}
    assert {(dep["ci"], dep["depth"]) for dep in found["dependencies"]} == {
        ("billing", 0), ("web01", 1), ("billing-db", 1), ("db01", 2)}
    changes = found["changes"]
    # ranked: web01 is a direct dependency (depth 1), db01 one step further; other01 and the fix are not listed
    assert [(item["touched"][0]["ci"], item["depth"]) for item in changes] == [("web01", 1), ("db01", 2)]
    culprit = changes[1]
    assert culprit["touched"][0]["path"] == "billing depends_on billing-db runs_on db01"
    assert culprit["status"] == "successful" and culprit["playbook"].endswith("change-db01.yml")
    assert culprit["changed"]["files"] == [project.path("out", "db01", "postgresql.conf")]
    assert [(task["host"], task["task"]) for task in culprit["changed"]["tasks"]] == [("db01", "Write postgresql.conf")]
    assert 0 < culprit["score"] < changes[0]["score"] <= 1
    assert found["change_count"] == 2
