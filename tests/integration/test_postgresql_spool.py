# -*- coding: utf-8 -*-
"""change_recorder with a PostgreSQL server that goes away: the spool keeps the run, the next run replays it.

The PostgreSQL counterparts of test_recorder_sqlite.py's spool scenarios. There a
held write lock makes SQLite refuse writes; here the server itself is stopped,
which is what a database failover or maintenance does to every controller
pointing at it.
"""

from __future__ import annotations

import glob
import os

import pytest

from support import postgresql_server
from support.change_requests import approved_change, iso
from support.project import Project

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

pytestmark = [pytest.mark.integration, pytest.mark.postgresql, pytest.mark.slow]

SPOOL_ENV = {
    "CHANGEOPS_RECORDER_FLUSH_INTERVAL": "0.2",
    "CHANGEOPS_RECORDER_SPOOL_RETRY_INTERVAL": "1",
    "CHANGEOPS_RECORDER_FLUSH_TIMEOUT": "5",
}


def steps(count, pause="0.3"):
    return "".join("""
    - name: Step {n}
      ansible.builtin.command: sleep {pause}
""".format(n=n, pause=pause) for n in range(1, count + 1))


@pytest.fixture(scope="module")
def server():
    """A cluster of this module's own: these tests stop and restart it."""
    local = postgresql_server.LocalServer(max_connections=50).start()
    yield local
    local.remove()


@pytest.fixture
def dsn(server):
    yield from postgresql_server.database_on_stoppable_server(server, "changeops_spool")


@pytest.fixture
def sor(dsn):
    # reconnects by itself after the server comes back (a broken session is replaced on the next call)
    store = open_system_of_record({"backend": "postgresql", "postgresql_dsn": dsn, "busy_timeout": 60})
    yield store
    store.close()


def make_project(root, dsn):
    project = Project(root, {"CHANGEOPS_BACKEND": "postgresql", "CHANGEOPS_POSTGRESQL_DSN": dsn})
    project.write_inventory(["m1", "m2"])
    return project


def spooled_files(project):
    return glob.glob(os.path.join(project.spool_dir, "*", "*.jsonl"))


def recorder_warnings(output):
    return [line for line in output.splitlines() if "[WARNING]" in line and "change_recorder" in line]


def by_start(sor):
    return sorted(sor.find_change_events(), key=lambda event: event["started_at"])


def test_a_spooled_run_closes_its_change_request_when_the_next_run_replays_it(tmp_path, server, dsn, sor):
    project = make_project(tmp_path / "project", dsn)
    project.write("policy.yml", "templates: []\n")
    number = approved_change(sor, ["m1", "m2"], iso(hours=-1), iso(hours=2))
    project.write_playbook("gated.yml", """
- hosts: all_hosts
  gather_facts: false
  pre_tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
        change_request: %s
  tasks:
%s""" % (number, steps(6)))
    project.write_playbook("next.yml", "- hosts: m1\n  gather_facts: false\n  tasks:\n" + steps(1, pause="0"))
    env = dict(SPOOL_ENV, CHANGEOPS_CLOSE_CHANGE_REQUESTS="true")

    process = project.start("gated.yml", env=env)
    try:
        # the gate's decision and the first results are in; then the server goes away until the run has ended
        run_id = project.wait_for(
            lambda: [event["run_id"] for event in sor.find_change_events(status="running")
                     if len(sor.get_task_results(event["run_id"])) >= 2][:1],
            timeout=120, what="two recorded results", process=process)[0]
        server.stop("fast")
        output = Project.wait_ended(process, 600)
    finally:
        if process.poll() is None:
            Project.kill(process)
    assert process.returncode == 0, output
    assert len(recorder_warnings(output)) == 1 and "spool" in recorder_warnings(output)[0], output
    assert server.password not in output
    assert spooled_files(project), "the end of the run should be waiting in the spool"

    server.start()
    assert sor.get_change_event(run_id)["status"] == "running"
    assert sor.get_change_request(number)["state"] == "scheduled", "closed before its run was recorded"

    second = project.run("next.yml", env=env)
    assert "closed %s as successful" % number in second.stdout, second.stdout
    assert spooled_files(project) == []
    event = sor.get_change_event(run_id)
    assert (event["status"], event["authorisation"], event["authorisation_ref"]) == ("successful", "normal", number)
    assert len(sor.get_task_results(run_id)) == 6 * 2 + 1   # six steps on both hosts, the gate once for the play
    record = sor.get_change_request(number)
    assert (record["state"], record["close_code"]) == ("closed", "successful")
    assert (record["actual_start"], record["actual_end"]) == (event["started_at"], event["ended_at"])
    closing = list(sor.iter_entries(subject=number, kinds=["change_request.closed"]))
    assert [entry.data.get("run_id") for entry in closing] == [run_id]
    report = sor.verify(projections=True)
    assert report.valid, report.summary()


def test_database_down_for_a_whole_run_then_replayed_by_the_next(tmp_path, server, dsn, sor):
    project = make_project(tmp_path / "project", dsn)
    project.write_playbook("short.yml", "- hosts: all_hosts\n  gather_facts: false\n  tasks:\n" + steps(2, pause="0"))
    project.run("short.yml")
    head = sor.head()

    server.stop("fast")
    try:
        down = project.run("short.yml", env=SPOOL_ENV)
    finally:
        server.start()
    assert len(recorder_warnings(down.stdout)) == 1, down.stdout
    assert "cannot connect to the PostgreSQL system of record" in recorder_warnings(down.stdout)[0]
    assert server.password not in down.stdout
    assert spooled_files(project)
    assert sor.head() == head and len(sor.find_change_events()) == 1

    project.run("short.yml")
    assert spooled_files(project) == []
    events = by_start(sor)
    assert [event["status"] for event in events] == ["successful"] * 3
    assert all(len(sor.get_task_results(event["run_id"])) == 2 * 2 for event in events)
    report = sor.verify(projections=True)
    assert report.valid, report.summary()
    # replaying is idempotent: every entry once
    assert report.entries_checked == len(set(entry.id for entry in sor.iter_entries()))
