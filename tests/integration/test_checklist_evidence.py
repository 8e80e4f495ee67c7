# -*- coding: utf-8 -*-
"""changeops.itsm.checklist_evidence in real ansible-playbook runs with the change recorder enabled."""

from __future__ import annotations

import json
import uuid

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

pytestmark = pytest.mark.integration

PLAYBOOK = """
- name: Attach checklist evidence
  hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Attach
      changeops.itsm.checklist_evidence:
        checklist: hardening
        status: fail
        summary: {score: 87.5, blocking_failures: [SSH-01]}
        document: {generated_at: "2026-06-01T10:00:00Z", controls: [{id: SSH-01, status: fail}]}
      register: first

    - name: Attach the same document again in the same run
      changeops.itsm.checklist_evidence:
        checklist: hardening
        status: fail
        summary: {score: 87.5, blocking_failures: [SSH-01]}
        document: {generated_at: "2026-06-01T10:00:00Z", controls: [{id: SSH-01, status: fail}]}
      register: second

    - name: Show what happened
      ansible.builtin.copy:
        dest: "{{ playbook_dir }}/result-{{ inventory_hostname }}.json"
        content: "{{ {'first': first, 'second': second} | to_json }}"
        mode: "0644"
      delegate_to: localhost
"""


def _ci(sor, name):
    ci_id = uuid.uuid5(uuid.NAMESPACE_DNS, name).hex
    data = {"ci_id": ci_id, "attributes": {"name": name, "class": "cmdb_ci_linux_server"},
            "identities": {"fqdn": name}, "run_id": None}
    sor.append([Entry("ci.created", ci_id, data)])
    return ci_id


def test_evidence_shows_on_the_change_event_and_the_ci(project, open_sor):
    sor = open_sor()
    ci_id = _ci(sor, "localhost")
    project.write_playbook("pb.yml", PLAYBOOK)
    project.run("pb.yml")
    (event,) = sor.find_change_events()
    evidence = sor.find_evidence(run_id=event["run_id"])
    assert len(evidence) == 1, evidence  # the repeated task was a no-op
    assert evidence[0]["host"] == "localhost" and evidence[0]["ci_id"] == ci_id
    assert evidence[0]["summary"]["blocking_failures"] == ["SSH-01"] and evidence[0]["score"] == 87.5
    ci = sor.get_ci(ci_id)
    compliance = ci["attributes"]["compliance.hardening"]
    assert compliance == {"status": "fail", "score": 87.5, "last_audit": "2026-06-01T10:00:00Z",
                          "run_id": event["run_id"], "evidence_sha256": evidence[0]["document_sha256"]}
    with open(project.path("result-localhost.json")) as handle:
        result = json.load(handle)
    assert result["first"]["changed"] is True and result["second"]["changed"] is False

    project.write_playbook("info.yml", """
        - name: Read the change event back
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Query
              changeops.itsm.change_event_info:
                run_id: %s
                include_results: true
              register: info
            - name: Save
              ansible.builtin.copy:
                dest: "{{ playbook_dir }}/info.json"
                content: "{{ info | to_json }}"
                mode: "0644"
        """ % event["run_id"])
    project.run("info.yml")
    with open(project.path("info.json")) as handle:
        info = json.load(handle)
    (shown,) = info["change_events"][0]["evidence"]
    assert shown["checklist"] == "hardening" and shown["summary"]["score"] == 87.5


def test_check_mode_records_the_dry_run_but_leaves_the_ci_alone(project, open_sor):
    sor = open_sor()
    ci_id = _ci(sor, "localhost")
    project.write_playbook("pb.yml", PLAYBOOK)
    out = project.run("pb.yml", "--check", "--diff").stdout
    (event,) = sor.find_change_events()
    assert event["authorisation"] == "dry-run", event
    # the dry run's findings are its record, on its change event ...
    (evidence,) = sor.find_evidence(run_id=event["run_id"])
    assert evidence["ci_id"] == ci_id and evidence["status"] == "fail"
    # ... but the CMDB does not change: the diff only shows what a real run would set
    ci = sor.get_ci(ci_id)
    assert "compliance.hardening" not in ci["attributes"] and ci["version"] == 1, ci
    assert "compliance.hardening" in out
    # outside a recorded run there is no dry-run change event to attach to: nothing is recorded
    project.callbacks = []
    project.run("pb.yml", "--check")
    assert len(sor.find_evidence()) == 1


def _classed_ci(sor, ci_id, name, ci_class):
    sor.append([Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": name, "class": ci_class},
                                            "identities": {}, "run_id": None})])


def test_the_hosts_own_ci_gets_the_compliance_not_an_application_named_like_it(project, open_sor):
    sor = open_sor()
    # the lower ci_id: a plain name lookup meets the application first
    _classed_ci(sor, "ci-0-app", "localhost", "application")
    _classed_ci(sor, "ci-9-host", "localhost", "server")
    project.write_playbook("pb.yml", PLAYBOOK)
    project.run("pb.yml")
    (evidence,) = sor.find_evidence()
    assert evidence["ci_id"] == "ci-9-host"
    assert sor.get_ci("ci-9-host")["attributes"]["compliance.hardening"]["status"] == "fail"
    assert "compliance.hardening" not in sor.get_ci("ci-0-app")["attributes"]
    # named explicitly, a CI of any class is updated
    project.write_playbook("app.yml", PLAYBOOK.replace("checklist: hardening\n", "checklist: hardening\n"
                                                       "        ci_name: localhost-app\n"))
    _classed_ci(sor, "ci-5-app", "localhost-app", "application")
    project.run("app.yml")
    assert sor.get_ci("ci-5-app")["attributes"]["compliance.hardening"]["status"] == "fail"


def test_a_host_without_a_host_ci_but_several_named_like_it_is_warned_about(project, open_sor):
    sor = open_sor()
    _classed_ci(sor, "ci-1", "localhost", "application")
    _classed_ci(sor, "ci-2", "localhost", "database")
    project.write_playbook("pb.yml", PLAYBOOK)
    out = project.run("pb.yml").stdout
    (evidence,) = sor.find_evidence()
    assert evidence["ci_id"] is None
    assert "host localhost: no server/virtual_machine/container CI is named 'localhost', and 2 CIs of other " \
           "classes are (application ci-1, database ci-2)" in " ".join(out.split())
    assert all(sor.get_ci(ci_id)["version"] == 1 for ci_id in ("ci-1", "ci-2"))


def test_ambiguous_ci_name_and_bad_checklist_are_clear_errors(project, open_sor):
    sor = open_sor()
    for _copy in range(2):
        ci_id = uuid.uuid4().hex
        sor.append([Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": "db01"}, "run_id": None})])
    project.write_playbook("pb.yml", PLAYBOOK.replace("checklist: hardening\n", "checklist: hardening\n"
                                                      "        ci_name: db01\n", 1))
    completed = project.run("pb.yml", check=False)
    assert completed.returncode != 0
    assert "ci_name: 2 CIs are named 'db01'" in completed.stdout
    assert sor.find_evidence() == []  # nothing half-written
    project.write_playbook("bad.yml", PLAYBOOK.replace("checklist: hardening", "checklist: os.hardening", 1))
    completed = project.run("bad.yml", "-e", "unused=1", check=False)
    assert "checklist: 'os.hardening' must be a non-empty name without spaces, dots or slashes" in completed.stdout
