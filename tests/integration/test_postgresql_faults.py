# -*- coding: utf-8 -*-
"""Real ansible-playbook runs against a real PostgreSQL server that is shared, stopped and killed under them.

These are the issue's fault scenarios, seen from the outside: the recorder
callback and the change gate talk to PostgreSQL exactly as in production, and
the test only looks at what ends up in the database (and in the spool).
"""

from __future__ import annotations

import json
import os
import time

import psycopg
import pytest

from support import postgresql_server
from support.project import Project

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

pytestmark = [pytest.mark.integration, pytest.mark.postgresql, pytest.mark.slow]

HOSTS = ["node%d" % index for index in range(1, 5)]

#: four tasks per host: changed, ok, changed (loopless), ok
WORK = """
    - name: Change something
      ansible.builtin.command: "true"
      changed_when: true

    - name: Look at something
      ansible.builtin.debug:
        msg: "{{ inventory_hostname }} is fine"

    - name: Change something else
      ansible.builtin.set_fact:
        touched: true
      changed_when: true

    - name: Look again
      ansible.builtin.command: "true"
      changed_when: false
"""

PLAYBOOK = """
- name: Routine work
  hosts: all_hosts
  gather_facts: false
  tasks:
""" + WORK

#: WORK, then a task that waits for ``release`` (a file) so the test can act mid-run, then WORK again
PAUSING_PLAYBOOK = """
- name: Work that pauses in the middle
  hosts: all_hosts
  gather_facts: false
  tasks:
""" + WORK + """
    - name: Wait for the test
      ansible.builtin.wait_for:
        path: "{{ release }}"
        timeout: 300
      delegate_to: localhost
      run_once: true
""" + WORK.replace("name: ", "name: Second ")

GATED_PLAYBOOK = """
- name: Gated change
  hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:

    - name: The change the gate protects
      ansible.builtin.file:
        path: "{{ marker }}"
        state: touch
        mode: "0600"
"""


@pytest.fixture(scope="module")
def server():
    """A cluster of this module's own: these tests stop and restart it."""
    local = postgresql_server.LocalServer(max_connections=300).start()
    yield local
    local.remove()


@pytest.fixture
def dsn(server):
    yield from postgresql_server.database_on_stoppable_server(server, "changeops_faults")


def make_project(root, dsn, **cfg):
    project = Project(root, {"CHANGEOPS_BACKEND": "postgresql", "CHANGEOPS_POSTGRESQL_DSN": dsn})
    project.write_inventory(HOSTS)
    project.write_playbook("work.yml", PLAYBOOK)
    project.write_playbook("pausing.yml", PAUSING_PLAYBOOK)
    project.write_playbook("gated.yml", GATED_PLAYBOOK)
    return project


def open_dsn(dsn):
    return open_system_of_record({"backend": "postgresql", "postgresql_dsn": dsn, "busy_timeout": 60})


def result_count(dsn):
    """Task results recorded so far (0 before the first run has created the schema)."""
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM task_results").fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return 0


def spooled_files(project):
    found = []
    for directory, _dirs, files in os.walk(project.spool_dir):
        found.extend(os.path.join(directory, name) for name in files if name.endswith(".jsonl"))
    return found


def test_eight_concurrent_runs_on_one_database_record_every_result_in_one_chain(tmp_path, dsn, server):
    projects = [make_project(tmp_path / ("controller%d" % index), dsn) for index in range(8)]
    processes = [project.start("work.yml", "--forks", "4") for project in projects]
    outputs = []
    try:
        for process in processes:
            output = Project.wait_ended(process, 900)
            outputs.append(output)
            assert process.returncode == 0, output[-5000:]
    finally:
        for process in processes:
            if process.poll() is None:
                Project.kill(process)
    for output in outputs:
        assert "cannot write to the system of record" not in output, output[-3000:]

    sor = open_dsn(dsn)
    try:
        events = sor.find_change_events()
        assert len(events) == 8
        for event in events:
            assert event["status"] == "successful"
            assert event["host_count"] == len(HOSTS)
            assert event["changed_host_count"] == len(HOSTS)
            results = sor.get_task_results(event["run_id"])
            assert len(results) == 4 * len(HOSTS)
            assert sorted(r["status"] for r in results).count("changed") == 2 * len(HOSTS)
        report = sor.verify()
        assert report.valid, report.summary()
        started = list(sor.iter_entries(kinds=["run.started"]))
        finished = list(sor.iter_entries(kinds=["run.finished"]))
        assert len(started) == len(finished) == 8
        assert len(list(sor.iter_entries(kinds=["run.result"]))) == 8 * 4 * len(HOSTS)
    finally:
        sor.close()
    assert all(spooled_files(project) == [] for project in projects)
    assert server.password not in "".join(outputs)


def test_database_stopped_mid_run_loses_nothing_once_the_next_run_replays_the_spool(tmp_path, dsn, server):
    project = make_project(tmp_path / "project", dsn)
    release = str(tmp_path / "release")
    run = project.start("pausing.yml", "-e", "release=%s" % release,
                        env={"CHANGEOPS_RECORDER_SPOOL_RETRY_INTERVAL": "1"})
    try:
        # the first half is recorded as the run goes, before the database goes away
        Project.wait_for(lambda: result_count(dsn) >= 4 * len(HOSTS), timeout=180,
                         what="the first tasks' results in PostgreSQL")
        server.stop("fast")
        with open(release, "w"):
            pass
        output = Project.wait_ended(run, 600)
    finally:
        if run.poll() is None:
            Project.kill(run)
    # the playbook itself never fails because its recorder could not write
    assert run.returncode == 0, output[-5000:]
    assert "cannot write to the system of record" in output
    assert "PostgreSQL system of record" in output
    assert server.password not in output
    assert spooled_files(project), "the second half should be waiting in the spool"

    server.start()
    project.run("work.yml")
    assert spooled_files(project) == []

    sor = open_dsn(dsn)
    try:
        events = {event["playbook"].rsplit("/", 1)[-1]: event for event in sor.find_change_events()}
        paused = events["pausing.yml"]
        assert paused["status"] == "successful"
        # 4 tasks per host before the pause, the pause once, 4 per host after
        assert len(sor.get_task_results(paused["run_id"])) == 8 * len(HOSTS) + 1
        assert events["work.yml"]["status"] == "successful"
        report = sor.verify()
        assert report.valid, report.summary()
    finally:
        sor.close()


def test_kill_9_of_a_run_keeps_its_finished_tasks_and_the_next_run_marks_it_interrupted(tmp_path, dsn):
    project = make_project(tmp_path / "project", dsn)
    run = project.start("pausing.yml", "-e", "release=%s" % (tmp_path / "never"))
    try:
        Project.wait_for(lambda: result_count(dsn) >= 4 * len(HOSTS), timeout=180,
                         what="the first tasks' results in PostgreSQL")
        # let the pause task start, so nothing is half-finished on the hosts
        time.sleep(1)
    finally:
        Project.kill(run)
        run.stdout.close()

    sor = open_dsn(dsn)
    try:
        (event,) = sor.find_change_events()
        assert event["status"] == "running"
        assert len(sor.get_task_results(event["run_id"])) == 4 * len(HOSTS)

        project.run("work.yml")
        killed = sor.get_change_event(event["run_id"])
        assert killed["status"] == "interrupted"
        assert len(sor.get_task_results(event["run_id"])) == 4 * len(HOSTS)
        assert sor.verify().valid
    finally:
        sor.close()


def test_gate_with_the_database_down_denies_with_the_reason(tmp_path, dsn, server):
    project = make_project(tmp_path / "project", dsn)
    marker = tmp_path / "changed-by-the-play"
    server.stop("fast")
    run = project.start("gated.yml", "-e", "marker=%s" % marker)
    try:
        output = Project.wait_ended(run, 300)
    finally:
        if run.poll() is None:
            Project.kill(run)
    assert run.returncode != 0
    # the decision itself: denied, with the reason
    assert "change gate denied play 'Gated change': cannot connect to the PostgreSQL system of record" in output
    # the failing result is the short form (message, decision_id, recorded): the decision could not be recorded
    assert '"allowed": false' in output and '"recorded": false' in output and '"decision_id": "' in output
    assert server.password not in output
    assert not marker.exists(), "the play ran although the gate could not read the system of record"
    server.start()


SEED_PLAYBOOK = """
- name: What the fault run will try to change
  hosts: localhost
  gather_facts: false
  tasks:
    - name: A CI
      changeops.itsm.configuration_item:
        name: web01
        ci_class: cmdb_ci_linux_server
        attributes: {environment: production}

    - name: A change request
      changeops.itsm.change_request:
        type: normal
        short_description: Rotate the certificates
        affected_cis: [web01]
      register: created

    - name: Remember its number
      ansible.builtin.copy:
        content: "{{ created.number }}"
        dest: "{{ out }}/number"
        mode: "0644"
"""

#: every module that writes to the system of record, each as its own task that may fail; the results
#: are written to a file on the controller for the test to read
MODULES_PLAYBOOK = """
- name: Every module with the database down
  hosts: localhost
  gather_facts: false
  tasks:
    - name: configuration_item
      changeops.itsm.configuration_item:
        name: web01
        ci_class: cmdb_ci_linux_server
        attributes: {environment: staging}
      register: configuration_item
      ignore_errors: true

    - name: change_request
      changeops.itsm.change_request:
        number: "{{ number }}"
        state: assess
      register: change_request
      ignore_errors: true

    - name: change_review
      changeops.itsm.change_review:
        run_id: "{{ run_id }}"
        outcome: accepted
        comment: checked
      register: change_review
      ignore_errors: true

    - name: change_register
      changeops.itsm.change_register:
        path: "{{ out }}/register/register.html"
        json_path: "{{ out }}/register/register.json"
      register: change_register
      ignore_errors: true

    - name: register_host
      changeops.itsm.register_host:
        attributes: {environment: production}
      register: register_host
      ignore_errors: true

    - name: Keep the results for the test
      ansible.builtin.copy:
        content: "{{ {'configuration_item': configuration_item, 'change_request': change_request,
                      'change_review': change_review, 'change_register': change_register,
                      'register_host': register_host} | to_json }}"
        dest: "{{ out }}/results.json"
        mode: "0644"
"""


def test_modules_with_the_database_down_fail_clearly_and_change_nothing(tmp_path, dsn, server):
    project = make_project(tmp_path / "project", dsn)
    project.write_inventory(["localhost"])
    out = tmp_path / "out"
    (out / "register").mkdir(parents=True)
    project.write_playbook("seed.yml", SEED_PLAYBOOK)
    project.write_playbook("modules.yml", MODULES_PLAYBOOK)
    project.run("seed.yml", "-e", "out=%s" % out)
    number = (out / "number").read_text()
    sor = open_dsn(dsn)
    try:
        (seed_run,) = sor.find_change_events()
        head = sor.head()
    finally:
        sor.close()

    server.stop("fast")
    try:
        run = project.run("modules.yml", "-e", "out=%s" % out, "-e", "number=%s" % number,
                          "-e", "run_id=%s" % seed_run["run_id"])
    finally:
        server.start()
    output = run.stdout
    with open(str(out / "results.json")) as stream:
        results = json.load(stream)
    assert sorted(results) == ["change_register", "change_request", "change_review", "configuration_item",
                               "register_host"]
    for module, result in results.items():
        assert result.get("failed") is True, (module, result)
        assert result.get("changed") is False, (module, result)
        assert result["msg"].startswith("cannot connect to the PostgreSQL system of record postgresql:"), (module, result)
        assert "refused" in result["msg"].lower(), (module, result["msg"])
        assert server.password not in json.dumps(result)
    assert server.password not in output
    assert os.listdir(str(out / "register")) == [], "change_register wrote something with the database down"

    sor = open_dsn(dsn)
    try:
        assert sor.head() == head, "the ledger changed although every module failed"
        report = sor.verify(projections=True)
        assert report.valid, report.summary()
        assert sor.get_change_request(number)["state"] == "new"
        assert sor.find_cis(names=["web01"])[0]["environment"] == "production"
        assert sor.find_reviews(run_id=seed_run["run_id"]) == []
    finally:
        sor.close()
