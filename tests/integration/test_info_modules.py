# -*- coding: utf-8 -*-
"""change_event_info and ledger_verify in real ansible-playbook runs.

The recorder is disabled here (``callbacks=()``) so the only change events are
the ones the test seeds; what the recorder writes is tested with the recorder.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from support.project import VENV_BIN, Project
from support.raw_ledger import raw_ledger_connection

pytestmark = pytest.mark.integration

NOW = datetime.datetime.now(datetime.timezone.utc)

QUERY_PLAYBOOK = """
- name: Ask the system of record
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Failed or interrupted runs of the last two days
      changeops.itsm.change_event_info:
        since: 2d
        status: [failed, interrupted]
      register: recent

    - name: One run with everything it did, and the chain
      changeops.itsm.change_event_info:
        run_id: r-week
        include_results: true
        verify: true
      register: one

    - name: Runs that touched web02
      changeops.itsm.change_event_info:
        host: web02
      register: web02

    - name: Verify the ledger
      changeops.itsm.ledger_verify:
      register: verified

    - name: Keep the answers for the test
      ansible.builtin.copy:
        content: "{{ {'recent': recent, 'one': one, 'web02': web02, 'verified': verified} | to_json }}"
        dest: "{{ playbook_dir }}/answers.json"
        mode: "0600"
      check_mode: false
"""


def record_run(sor, run_id, hours_ago, hosts, outcome="successful", changed=False):
    started = format_time(NOW - datetime.timedelta(hours=hours_ago))
    entries = [Entry("run.started", run_id, {"run_id": run_id, "started_at": started, "user": "ops",
                                             "controller": "ctl", "playbooks": ["site.yml"]})]
    entries += [Entry("run.result", run_id, {"run_id": run_id, "play_id": "p1", "host": host, "item": None,
                                             "status": "changed" if changed else "ok", "changed": changed,
                                             "task": {"name": "t", "action": "ansible.builtin.copy"}})
                for host in hosts]
    if outcome == "interrupted":
        entries.append(Entry("run.interrupted", run_id, {"run_id": run_id, "reason": "killed"}))
    else:
        entries.append(Entry("run.finished", run_id, {"run_id": run_id, "outcome": outcome}))
    sor.append(entries)


def seed(sor):
    record_run(sor, "r-old", 24 * 10, ["db01"])
    record_run(sor, "r-week", 30, ["web01", "web02"], outcome="failed", changed=True)
    record_run(sor, "r-recent", 1, ["web01"], outcome="interrupted")
    return sor.head()


def answers(project):
    with open(project.path("answers.json")) as handle:
        return json.load(handle)


def run_ids(result):
    return [event["run_id"] for event in result["change_events"]]


@pytest.fixture
def quiet_project(tmp_path, backend_env):
    """A project on the test's backend with no callback: the ledger holds only what the test seeds."""
    return Project(tmp_path / "project", backend_env, callbacks=())


@pytest.mark.parametrize("mode", [[], ["--check", "--diff"]], ids=["normal", "check-mode"])
def test_query_and_verify_from_a_playbook(quiet_project, sor, mode):
    head_seq, head_hash = seed(sor)
    quiet_project.write_playbook("query.yml", QUERY_PLAYBOOK)
    output = quiet_project.run("query.yml", *mode).stdout
    result = answers(quiet_project)
    assert run_ids(result["recent"]) == ["r-recent", "r-week"]
    assert run_ids(result["web02"]) == ["r-week"]
    one = result["one"]["change_events"][0]
    assert one["status"] == "failed" and one["authorisation"] == "unauthorised"
    assert [r["host"] for r in one["results"]] == ["web01", "web02"]
    assert result["one"]["verification"]["valid"] is True
    verified = result["verified"]
    assert verified["verification"]["valid"] is True
    assert (verified["verification"]["head_seq"], verified["verification"]["head_hash"]) == (head_seq, head_hash)
    assert verified["backend"] == sor.describe()
    for name in ("recent", "one", "web02", "verified"):
        assert result[name]["changed"] is False
    # reading never writes
    assert sor.head() == (head_seq, head_hash)
    assert "changed=1" in output  # only the answers file


def test_bad_filter_fails_the_task_with_a_clear_message(quiet_project, sor):
    seed(sor)
    quiet_project.write_playbook("bad.yml", """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: A since nobody can parse
              changeops.itsm.change_event_info:
                since: last tuesday
        """)
    completed = quiet_project.run("bad.yml", check=False)
    assert completed.returncode == 2
    assert "since: 'last tuesday' is neither an ISO 8601 time" in completed.stdout


def test_the_status_filter_and_field_share_one_name_and_outcome_still_works(quiet_project, sor):
    seed(sor)
    quiet_project.write_playbook("status.yml", """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: Filter on the field the events return
              changeops.itsm.change_event_info:
                status: [failed]
              register: by_status

            - name: The former name, deprecated
              changeops.itsm.change_event_info:
                outcome: [failed]
              register: by_outcome

            - name: Both filters select by the returned status
              ansible.builtin.assert:
                that:
                  - by_status.change_events | map(attribute='run_id') | list == ['r-week']
                  - by_status.change_events | map(attribute='status') | unique | list == ['failed']
                  - by_status.change_events | selectattr('outcome', 'defined') | list == []
                  - by_outcome.change_events | map(attribute='run_id') | list == ['r-week']
        """)
    completed = quiet_project.run("status.yml", env={"ANSIBLE_DEPRECATION_WARNINGS": "True"},
                                  deprecations_expected=True)
    assert "Alias 'outcome' is deprecated" in completed.stdout, completed.stdout


def test_the_module_examples_find_what_their_names_say(quiet_project, sor):
    """Each EXAMPLES task of change_event_info, run as written against runs of every kind on web01."""
    import yaml

    from ansible_collections.changeops.itsm.plugins.modules import change_event_info

    record_run(sor, "r-failed", 30, ["web01"], outcome="failed")                      # failed, changed nothing
    record_run(sor, "r-unauthorised", 20, ["web01"], changed=True)                    # succeeded, unauthorised
    record_run(sor, "r-interrupted", 10, ["web01"], outcome="interrupted")
    record_run(sor, "r-fine", 5, ["web01"])
    # (the block example reads a denial's decision in rescue: it needs a failing gate, and
    # test_gate_denial_output.py runs that pattern)
    examples = [task for task in yaml.safe_load(change_event_info.EXAMPLES) if "block" not in task]
    tasks = []
    for number, task in enumerate(examples):
        task = dict(task, register="example_%d" % number)
        tasks.append(task)
    tasks.append({"name": "Keep the answers", "ansible.builtin.copy": {
        "content": "{{ [%s] | to_json }}" % ", ".join("example_%d" % n for n in range(len(examples))),
        "dest": "{{ playbook_dir }}/answers.json", "mode": "0600"}})
    quiet_project.write_playbook("examples.yml", yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False, "vars": {"run_id": "r-fine"}, "tasks": tasks}]))
    quiet_project.run("examples.yml")
    with open(quiet_project.path("answers.json")) as handle:
        results = json.load(handle)
    checked = 0
    for task, result in zip(examples, results):
        found = {event["run_id"]: event for event in result["change_events"]}
        name = task["name"].lower()
        if "failed" in name:
            assert set(found) == {"r-failed", "r-interrupted"} if "interrupted" in name else {"r-failed"}, task
            checked += 1
        if "unauthorised" in name:
            assert "r-unauthorised" in found, "%r misses the unauthorised change" % task["name"]
            checked += 1
        if "failed" in name and "unauthorised" in name:
            raise AssertionError("%r: one query cannot find failed OR unauthorised runs, the filters AND" % task["name"])
    assert checked >= 2


def seed_and_tamper(sor, backend_env, statement):
    """Seed the ledger, then run ``statement`` on its storage behind the collection's back."""
    seed(sor)
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute(statement)
    finally:
        conn.close()


def test_ledger_verify_fails_on_a_tampered_ledger(quiet_project, backend_env, sor):
    project = quiet_project
    seed_and_tamper(sor, backend_env, "DELETE FROM ledger WHERE seq = 4")
    project.write_playbook("verify.yml", """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: Report without failing
              changeops.itsm.ledger_verify:
                fail_on_broken: false
              register: report

            - name: The report names the deleted entry
              ansible.builtin.assert:
                that:
                  - not report.verification.valid
                  - report.verification.first_broken.seq == 4
                  - report.verification.first_broken.problem == 'deleted'

            - name: Fail the play on a broken chain
              changeops.itsm.ledger_verify:
        """)
    completed = project.run("verify.yml", check=False)
    assert completed.returncode == 2, completed.stdout
    assert "ledger chain broken at entry 4" in completed.stdout
    assert "ok=2" in completed.stdout and "failed=1" in completed.stdout


@pytest.mark.tampers_query_tables
def test_ledger_verify_names_a_query_table_row_edited_behind_the_chain(quiet_project, backend_env, sor):
    project = quiet_project
    # make a failed change look successful where the register and the info modules read it
    seed_and_tamper(sor, backend_env, "UPDATE change_events SET status = 'successful' WHERE run_id = 'r-week'")
    project.write_playbook("verify.yml", """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: The chain alone is intact
              changeops.itsm.ledger_verify:
                check_projections: false

            - name: Compare the query tables too (the default)
              changeops.itsm.ledger_verify:
                fail_on_broken: false
              register: report

            - name: The report names the edited row
              ansible.builtin.assert:
                that:
                  - not report.verification.valid
                  - report.verification.first_broken is none
                  - report.verification.projections_checked
                  - report.verification.projection_problems | length == 1
                  - report.verification.projection_problems[0].table == 'change_events'
                  - report.verification.projection_problems[0].key == 'run_id=r-week'
                  - report.verification.projection_problems[0].problem == 'altered'

            - name: Fail the play
              changeops.itsm.ledger_verify:
        """)
    completed = project.run("verify.yml", check=False)
    assert completed.returncode == 2, completed.stdout
    assert "the query tables disagree with it (1 problem, first: change_events row run_id=r-week: columns status" \
        in completed.stdout
    assert "ok=3" in completed.stdout and "failed=1" in completed.stdout


CONFIG_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Where is the ledger?
      changeops.itsm.ledger_verify:
      register: verified

    - name: Keep the answer
      ansible.builtin.copy:
        content: "{{ verified.backend }}"
        dest: "{{ playbook_dir }}/backend.txt"
        mode: "0600"
"""


def where(project, **env):
    project.write_playbook("where.yml", CONFIG_PLAYBOOK)
    project.run("where.yml", env=env or None)
    with open(project.path("backend.txt")) as handle:
        return handle.read()


def test_controller_config_precedence(tmp_path):
    """argument (module_defaults) > CHANGEOPS_SQLITE_PATH > ansible.cfg [changeops] > ~/.ansible default."""
    project = Project(tmp_path / "project", {}, callbacks=())
    default = os.path.join(project.home, ".ansible", "changeops", "ledger.sqlite")
    assert where(project) == "sqlite:" + default
    assert os.path.exists(default)

    from_cfg = project.path("cfg-ledger.sqlite")
    project.write_cfg("\n[changeops]\nsqlite_path = %s ; set by the platform team\n" % from_cfg)
    assert where(project) == "sqlite:" + from_cfg

    from_env = project.path("env-ledger.sqlite")
    assert where(project, CHANGEOPS_SQLITE_PATH=from_env) == "sqlite:" + from_env

    from_arg = project.path("arg-ledger.sqlite")
    project.write_playbook("where.yml", CONFIG_PLAYBOOK.replace("  gather_facts: false", """  gather_facts: false
  module_defaults:
    group/changeops.itsm.itsm:
      sqlite_path: %s""" % from_arg))
    completed = project.run("where.yml", env={"CHANGEOPS_SQLITE_PATH": from_env})
    assert completed.returncode == 0
    with open(project.path("backend.txt")) as handle:
        assert handle.read() == "sqlite:" + from_arg


def test_bad_ansible_cfg_value_names_the_file_option_and_value(tmp_path):
    project = Project(tmp_path / "project", {}, callbacks=())
    project.write_cfg("\n[changeops]\nbusy_timeout = soon\n")
    project.write_playbook("where.yml", CONFIG_PLAYBOOK)
    completed = project.run("where.yml", check=False)
    assert completed.returncode == 2
    assert "%s [changeops] busy_timeout: option busy_timeout must be an integer, got 'soon'" % project.path(
        "ansible.cfg") in completed.stdout


@pytest.mark.parametrize("module", ["change_event_info", "ledger_verify"])
def test_documentation_renders(module, tmp_path):
    project = Project(tmp_path / "project", {}, callbacks=())
    completed = subprocess.run([os.path.join(VENV_BIN, "ansible-doc"), "changeops.itsm." + module],
                               env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stdout
    assert "CHANGEOPS_SQLITE_PATH" in completed.stdout and "EXAMPLES" in completed.stdout
