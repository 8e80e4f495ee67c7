# -*- coding: utf-8 -*-
"""changeops.itsm.ledger_migrate through real ansible-playbook runs: SQLite ledger -> real PostgreSQL."""

from __future__ import annotations

import json
import sqlite3

import psycopg
import pytest

from support.project import Project

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

pytestmark = [pytest.mark.integration, pytest.mark.postgresql, pytest.mark.backends("postgresql")]

PLAYBOOK = """
- name: Migrate the ledger
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Copy the SQLite ledger into the configured system of record
      changeops.itsm.ledger_migrate:
        source_path: "{{ source }}"
        batch_size: "{{ batch | default(500) | int }}"
      register: migration

    - name: Keep the result for the test
      ansible.builtin.copy:
        content: "{{ migration | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      check_mode: false
"""


def realistic_history(sor, runs=12):
    """Runs with results and gates, CIs with relationships, change requests, evidence, reviews, counters."""
    for index in range(runs):
        run_id = "run-%02d" % index
        host = "web%d" % (index % 3)
        sor.append([
            Entry("run.started", run_id, {"run_id": run_id, "started_at": "2026-11-%02dT10:00:00Z" % (index + 1),
                                          "playbooks": ["site.yml"], "controller": "laptop-%d" % (index % 2),
                                          "user": "ops"}),
            Entry("run.play", run_id, {"run_id": run_id, "play_id": "p1", "name": "web", "hosts": [host]}),
            Entry("run.gate", run_id, {"run_id": run_id, "play_id": "p1", "decision_id": "d%d" % index,
                                       "allowed": True, "type": "standard", "reference": "patching"}),
            Entry("run.result", run_id, {"run_id": run_id, "play_id": "p1", "host": host, "status": "changed",
                                         "changed": True, "item": None,
                                         "task": {"uuid": "t1", "name": "patch", "action": "ansible.builtin.package"}}),
            Entry("run.finished", run_id, {"run_id": run_id, "outcome": "successful",
                                           "ended_at": "2026-11-%02dT10:05:00Z" % (index + 1)}),
        ])
    sor.append([
        Entry("ci.created", "ci-web0", {"ci_id": "ci-web0", "attributes": {"name": "web0", "class": "linux_server",
                                                                           "environment": "prod"},
                                        "identities": {"fqdn": "web0.example.org"}}),
        Entry("ci.created", "ci-db", {"ci_id": "ci-db", "attributes": {"name": "db", "class": "linux_server"}}),
        Entry("ci.relationship_added", "ci-web0", {"source": "ci-web0", "type": "depends_on", "target": "ci-db"}),
        Entry("ci.updated", "ci-db", {"ci_id": "ci-db", "base_version": 1,
                                      "changes": {"status": {"from": None, "to": "maintenance"}}}),
        Entry("evidence.recorded", "run-00", {"run_id": "run-00", "host": "web0", "checklist": "hardening",
                                              "status": "passed", "summary": {"passed": 10}}),
        Entry("run.reviewed", "run-01", {"run_id": "run-01", "reviewer": "cab", "outcome": "accepted"}),
    ])
    for _request in range(3):
        number = "CHG%07d" % sor.next_number("change_request")
        sor.append([Entry("change_request.created", number, {
            "record": {"number": number, "state": "new", "type": "normal", "affected_cis": ["ci-db"]},
            "base_version": 0})])


@pytest.fixture
def source(tmp_path):
    path = str(tmp_path / "source" / "ledger.sqlite")
    sor = open_system_of_record({"backend": "sqlite", "sqlite_path": path, "busy_timeout": 60})
    realistic_history(sor)
    sor.close()
    return path


@pytest.fixture
def migrate(tmp_path, backend_env):
    # no recorder here: the destination must receive nothing but the copy
    project = Project(tmp_path / "project", backend_env, callbacks=())
    project.write_playbook("migrate.yml", PLAYBOOK)
    out = str(tmp_path / "migration.json")

    def _run(source_path, *args, batch=500, check=True):
        completed = project.run("migrate.yml", "-e", "source=%s out=%s batch=%d" % (source_path, out, batch),
                                *args, check=check)
        if not check and completed.returncode != 0:
            return completed, None
        with open(out) as handle:
            return completed, json.load(handle)

    return _run


def sqlite_sor(path):
    return open_system_of_record({"backend": "sqlite", "sqlite_path": path, "busy_timeout": 60})


def entries_of(sor):
    return [entry.to_dict() for entry in sor.iter_entries()]


def test_copies_every_entry_with_its_seq_and_hash_and_rebuilds_the_records(source, migrate, sor, backend_env):
    completed, result = migrate(source, "-v", batch=7)
    src = sqlite_sor(source)
    try:
        source_entries = entries_of(src)
        assert result["changed"] is True
        assert result["entries_copied"] == len(source_entries) == result["source"]["entries"]
        assert result["counters_advanced"] == ["change_request"]
        assert result["destination"]["valid"] is True
        assert result["destination"]["head_hash"] == result["source"]["head_hash"] == source_entries[-1]["hash"]
        assert result["destination"]["backend"].startswith("postgresql:")
        # identical chain, entry for entry, and it verifies on its own
        assert entries_of(sor) == source_entries
        assert sor.verify(expected_head=source_entries[-1]["hash"]).valid
        # the query tables were rebuilt from the copied entries
        for run in src.find_change_events():
            assert sor.get_change_event(run["run_id"]) == src.get_change_event(run["run_id"])
        assert sor.get_ci("ci-web0") == src.get_ci("ci-web0")
        assert sor.get_ci("ci-db")["status"] == "maintenance"
        assert sor.find_change_requests() == src.find_change_requests()
        assert sor.find_evidence(run_id="run-00") == src.find_evidence(run_id="run-00")
        assert sor.find_reviews() == src.find_reviews()
        # numbers continue after the source's, never handed out twice
        assert sor.next_number("change_request") == src.counters()["change_request"] + 1
    finally:
        src.close()
    # the password in the DSN never reaches the output, even at -v where the result is printed
    password = psycopg.conninfo.conninfo_to_dict(backend_env["CHANGEOPS_POSTGRESQL_DSN"])["password"]
    assert "entries_copied" in completed.stdout
    assert password not in completed.stdout and password not in json.dumps(result)
    assert "********" in result["destination"]["backend"]


def test_a_second_run_changes_nothing(source, migrate, sor):
    migrate(source)
    head = sor.head()
    _completed, again = migrate(source)
    assert again["changed"] is False
    assert again["entries_copied"] == 0
    assert "already holds all" in again["msg"]
    assert sor.head() == head


def test_check_mode_reports_the_copy_and_writes_nothing(source, migrate, sor):
    _completed, result = migrate(source, "--check", "--diff")
    assert result["changed"] is True
    assert result["entries_copied"] == result["source"]["entries"] > 0
    assert result["diff"]["before"]["head_seq"] == 0
    assert result["diff"]["after"]["head_hash"] == result["source"]["head_hash"]
    assert sor.head() == (0, None)
    assert sor.counters() == {}


def test_an_interrupted_copy_resumes_where_it_stopped(source, migrate, sor):
    src = sqlite_sor(source)
    try:
        # what a copy killed after its first committed batches leaves behind
        first = list(src.iter_entries(limit=20))
        sor.append([Entry.from_dict(entry.to_dict()) for entry in first])
        total = src.head()[0]
    finally:
        src.close()
    _completed, result = migrate(source, batch=9)
    assert result["entries_copied"] == total - 20
    assert result["destination"]["entries"] == total
    assert sor.verify().valid and sor.head()[0] == total


def test_a_destination_holding_other_entries_is_refused_before_writing(source, migrate, sor):
    sor.append([Entry("run.started", "elsewhere", {"run_id": "elsewhere", "started_at": "2026-11-30T00:00:00Z"})])
    head = sor.head()
    completed, _result = migrate(source, check=False)
    assert completed.returncode != 0
    assert "holds a different ledger" in completed.stdout
    assert "keep the recorder on the SQLite ledger" in completed.stdout
    assert sor.head() == head
    assert sor.counters() == {}


def test_a_broken_source_is_refused_and_nothing_is_copied(source, migrate, sor):
    with sqlite3.connect(source) as conn:
        conn.execute("UPDATE ledger SET data = replace(data, 'web1', 'evil') WHERE seq = 7")
    completed, _result = migrate(source, check=False)
    assert completed.returncode != 0
    assert "is broken" in completed.stdout and "entry 7" in completed.stdout
    assert sor.head() == (0, None)


def test_a_missing_source_is_named(tmp_path, migrate, sor):
    missing = str(tmp_path / "nowhere" / "ledger.sqlite")
    completed, _result = migrate(missing, check=False)
    assert completed.returncode != 0
    assert "source_path: %s does not exist" % missing in completed.stdout
    assert sor.head() == (0, None)
