# -*- coding: utf-8 -*-
"""change_recorder with an SQLite ledger that stops taking writes mid-run.

Tests run as root, so file permissions cannot make the ledger unwritable; instead the test process
holds SQLite's write lock (``BEGIN EXCLUSIVE``) for longer than the recorder's busy timeout, which
is exactly what a stuck writer or a long maintenance transaction does to a real controller.
"""

from __future__ import annotations

import glob
import json
import os
import sqlite3
import time
import uuid

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from support.change_requests import approved_change, iso

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOCK_ENV = {
    "CHANGEOPS_BUSY_TIMEOUT": "1",
    "CHANGEOPS_RECORDER_FLUSH_INTERVAL": "0.2",
    "CHANGEOPS_RECORDER_SPOOL_RETRY_INTERVAL": "1",
}


def steps_playbook(count, pause="0.3"):
    tasks = "".join("""
    - name: Step {n}
      ansible.builtin.command: sleep {pause}
""".format(n=n, pause=pause) for n in range(1, count + 1))
    return """
- hosts: all_hosts
  gather_facts: false
  tasks:
""" + tasks


def spooled_files(project):
    return glob.glob(os.path.join(project.spool_dir, "*", "*.jsonl"))


def recorder_warnings(output):
    return [line for line in output.splitlines() if "[WARNING]" in line and "change_recorder" in line]


class WriteLock(object):
    """Hold the ledger's write lock from another connection, as a stuck writer would."""

    def __init__(self, path):
        self.connection = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.connection.execute("BEGIN EXCLUSIVE")

    def release(self):
        self.connection.execute("ROLLBACK")
        self.connection.close()


def first_run_id(sor):
    return project_events(sor)[0]["run_id"]


def project_events(sor):
    return sorted(sor.find_change_events(), key=lambda event: event["started_at"])


def wait_for_results(project, sqlite_sor, count, process):
    def recorded():
        running = sqlite_sor.find_change_events(status="running")
        return running and len(sqlite_sor.get_task_results(running[0]["run_id"])) >= count and running[0]["run_id"]
    return project.wait_for(recorded, timeout=120, what="%d recorded results" % count, process=process)


def run_with_the_end_spooled(project, sqlite_sor, sqlite_env, playbook, env):
    """Run ``playbook`` and lock the ledger once two results are in, until the run ends: its end is spooled.
    Returns (run id, output)."""
    process = project.start(playbook, env=dict(env, CHANGEOPS_RECORDER_FLUSH_TIMEOUT="2"))
    run_id = wait_for_results(project, sqlite_sor, 2, process)
    lock = WriteLock(sqlite_env["CHANGEOPS_SQLITE_PATH"])
    try:
        output = project.wait_ended(process, 600)
        assert process.returncode == 0, output
    finally:
        lock.release()
    assert spooled_files(project), "nothing was spooled although the ledger was locked"
    return run_id, output


def test_ledger_locked_mid_run_then_released_loses_nothing(sqlite_project, sqlite_sor, sqlite_env):
    project = sqlite_project
    project.write_inventory(["l1", "l2"])
    steps = 24
    project.write_playbook("steps.yml", steps_playbook(steps))
    process = project.start("steps.yml", env=LOCK_ENV)
    run_id = wait_for_results(project, sqlite_sor, 2, process)

    lock = WriteLock(sqlite_env["CHANGEOPS_SQLITE_PATH"])
    try:
        project.wait_for(lambda: spooled_files(project), timeout=60, what="entries in the spool", process=process)
        # the first files are safety copies of a waiting append; hold the lock past the busy timeout (1 s)
        # so the append really fails and the run carries on through the spool
        time.sleep(3)
        recorded_while_locked = len(sqlite_sor.get_task_results(run_id))
    finally:
        lock.release()
    output = project.wait_ended(process, 600)
    assert process.returncode == 0, output

    assert recorded_while_locked < steps * 2
    assert len(recorder_warnings(output)) == 1, output
    assert "spool" in recorder_warnings(output)[0]
    results = sqlite_sor.get_task_results(run_id)
    assert sorted((r["task"]["name"], r["host"]) for r in results) == sorted(
        ("Step %d" % n, host) for n in range(1, steps + 1) for host in ("l1", "l2"))
    assert [r["task"]["name"] for r in results if r["host"] == "l1"] == ["Step %d" % n for n in range(1, steps + 1)], \
        "replay changed the order of the run's results"
    assert sqlite_sor.get_change_event(run_id)["status"] == "successful"
    assert spooled_files(project) == []
    assert sqlite_sor.verify().valid


def spooled_results(project, run_id):
    """``(task name, host)`` of the run's results in the spool files."""
    found = set()
    for path in spooled_files(project):
        try:
            with open(path) as handle:
                documents = [json.loads(line) for line in handle if line.strip()]
        except (OSError, ValueError):
            continue  # replayed and removed meanwhile
        found.update((d["data"]["task"]["name"], d["data"]["host"]) for d in documents
                     if d["kind"] == "run.result" and d["subject"] == run_id)
    return found


def test_a_lock_held_for_long_with_the_default_busy_timeout_loses_nothing_to_kill_9(sqlite_project, sqlite_sor, sqlite_env):
    """busy_timeout 60 s, the default: the writer waits for the lock that long, but the playbook goes on and
    what finishes meanwhile reaches the spool within a few flush intervals, so SIGKILL loses none of it."""
    project = sqlite_project
    project.write_inventory(["w1", "w2"])
    project.write_playbook("steps.yml", steps_playbook(60, pause="0.2"))
    env = {"CHANGEOPS_BUSY_TIMEOUT": "60", "CHANGEOPS_RECORDER_FLUSH_INTERVAL": "0.2"}
    process = project.start("steps.yml", env=env)
    try:
        run_id = wait_for_results(project, sqlite_sor, 2, process)
        lock = WriteLock(sqlite_env["CHANGEOPS_SQLITE_PATH"])
        try:
            in_ledger = set((r["task"]["name"], r["host"]) for r in sqlite_sor.get_task_results(run_id))
            # far less than one busy timeout: results keep coming (workers still fork) and reach the disk
            spooled = project.wait_for(lambda: len(spooled_results(project, run_id) - in_ledger) >= 8 and
                                       spooled_results(project, run_id), timeout=40, what="results in the spool")
        finally:
            project.kill(process)
            lock.release()
    finally:
        project.kill(process)
        process.communicate(timeout=60)
    assert sqlite_sor.get_change_event(run_id)["status"] == "running"

    project.write_playbook("next.yml", steps_playbook(1, pause="0"))
    project.run("next.yml", env=env)
    recorded = set((r["task"]["name"], r["host"]) for r in sqlite_sor.get_task_results(run_id))
    assert spooled <= recorded, "lost: %s" % sorted(spooled - recorded)
    assert in_ledger <= recorded
    assert sqlite_sor.get_change_event(run_id)["status"] == "interrupted"
    assert spooled_files(project) == []
    assert sqlite_sor.verify().valid


def test_ledger_locked_until_the_end_is_replayed_by_the_next_run(sqlite_project, sqlite_sor, sqlite_env):
    project = sqlite_project
    project.write_inventory(["m1", "m2"])
    ci_id = uuid.uuid4().hex
    sqlite_sor.append([Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": "m2", "class": "server"},
                                                   "identities": {}})])
    project.write_playbook("steps.yml", steps_playbook(6))
    run_id, output = run_with_the_end_spooled(project, sqlite_sor, sqlite_env, "steps.yml", LOCK_ENV)
    assert len(recorder_warnings(output)) == 1, output
    assert sqlite_sor.get_change_event(run_id)["status"] == "running"
    assert len(sqlite_sor.get_task_results(run_id)) < 12

    project.write_playbook("next.yml", """
        - hosts: m1
          gather_facts: false
          tasks:
            - ansible.builtin.debug:
                msg: the next run
        """)
    second = project.run("next.yml", env=LOCK_ENV)
    assert recorder_warnings(second.stdout) == []
    assert spooled_files(project) == []
    assert len(sqlite_sor.get_task_results(run_id)) == 12
    assert sqlite_sor.get_change_event(run_id)["status"] == "successful"
    assert [event["status"] for event in project_events(sqlite_sor)] == ["successful", "successful"]
    # the spooled run's writer could not link the CI of the host it changed; the run that replayed it did
    links = [entry.data for entry in sqlite_sor.iter_entries(kinds=["ci.changed_by_run"])]
    assert links == [{"ci_id": ci_id, "run_id": run_id, "host": "m2"}]
    report = sqlite_sor.verify()
    assert report.valid, report.summary()
    # replaying twice is harmless: entry ids are idempotency keys
    assert report.entries_checked == len(set(entry.id for entry in sqlite_sor.iter_entries()))


def test_ledger_locked_for_a_whole_run(sqlite_project, sqlite_sor, sqlite_env):
    project = sqlite_project
    project.write_playbook("short.yml", steps_playbook(2, pause="0"))
    project.run("short.yml")  # creates the ledger
    lock = WriteLock(sqlite_env["CHANGEOPS_SQLITE_PATH"])
    try:
        locked = project.run("short.yml", env=dict(LOCK_ENV, CHANGEOPS_RECORDER_FLUSH_TIMEOUT="3"))
    finally:
        lock.release()
    assert len(recorder_warnings(locked.stdout)) == 1, locked.stdout
    assert len(project_events(sqlite_sor)) == 1

    project.run("short.yml")
    events = project_events(sqlite_sor)
    assert [event["status"] for event in events] == ["successful"] * 3
    assert all(len(sqlite_sor.get_task_results(event["run_id"])) == 2 for event in events)
    assert spooled_files(project) == []
    assert sqlite_sor.verify().valid


def test_a_spooled_run_closes_its_change_request_when_the_next_run_replays_it(sqlite_project, sqlite_sor, sqlite_env):
    project = sqlite_project
    project.write_inventory(["m1", "m2"])
    project.write("policy.yml", "templates: []\n")
    number = approved_change(sqlite_sor, ["m1", "m2"], iso(hours=-1), iso(hours=2))
    project.write_playbook("gated.yml", """
        - hosts: all_hosts
          gather_facts: false
          pre_tasks:
            - name: Change gate
              changeops.itsm.change_gate:
                policy: policy.yml
                change_request: %s
          tasks:
        """ % number + "".join("""
            - name: Step {n}
              ansible.builtin.command: sleep 0.3
        """.format(n=n) for n in range(1, 7)))
    env = dict(LOCK_ENV, CHANGEOPS_CLOSE_CHANGE_REQUESTS="true")
    run_id = run_with_the_end_spooled(project, sqlite_sor, sqlite_env, "gated.yml", env)[0]
    assert sqlite_sor.get_change_request(number)["state"] == "scheduled", "closed before its run was recorded"

    project.write_playbook("next.yml", steps_playbook(1, pause="0"))
    second = project.run("next.yml", env=env)
    assert "closed %s as successful" % number in second.stdout, second.stdout
    event = sqlite_sor.get_change_event(run_id)
    assert (event["status"], event["authorisation_ref"]) == ("successful", number)
    record = sqlite_sor.get_change_request(number)
    assert (record["state"], record["close_code"]) == ("closed", "successful")
    assert (record["actual_start"], record["actual_end"]) == (event["started_at"], event["ended_at"])
    closing = list(sqlite_sor.iter_entries(subject=number, kinds=["change_request.closed"]))
    assert [entry.data.get("run_id") for entry in closing] == [run_id]
    assert sqlite_sor.verify().valid
