# -*- coding: utf-8 -*-
"""The change_recorder callback end to end: real ansible-playbook runs, asserted on the system of record.

Every test here runs once per backend (the ``project`` fixture is parametrised).
SQLite-only behaviour (file bytes, lock contention) is in test_recorder_sqlite.py.
"""

from __future__ import annotations

import collections
import datetime
import os
import pwd
import signal
import subprocess
import time
import uuid

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

pytestmark = [pytest.mark.integration]

HOSTS = ["node%02d" % number for number in range(1, 31)]

MANY_HOSTS_PLAYBOOK = """
- name: Configure the fleet
  hosts: all_hosts
  gather_facts: false
  tags: [fleet]
  tasks:
    - name: Read the hostname
      ansible.builtin.command: echo hello {{ inventory_hostname }}
      changed_when: false

    - name: Write a marker file
      ansible.builtin.copy:
        content: "marker of {{ inventory_hostname }}\\n"
        dest: "{{ workdir }}/{{ inventory_hostname }}.txt"
        mode: "0600"
      notify: Announce the marker

    - name: Loop over three items
      ansible.builtin.debug:
        msg: "item {{ item }}"
      loop: [alpha, beta, gamma]

    - name: Fail but carry on
      ansible.builtin.command: /bin/false
      ignore_errors: true

    - name: Never runs
      ansible.builtin.debug:
        msg: never
      when: false

  handlers:
    - name: Announce the marker
      ansible.builtin.debug:
        msg: "marker written"
"""

# (task name, item label or None) -> expected status, for every host
EXPECTED_PER_HOST = {
    ("Read the hostname", None): "ok",
    ("Write a marker file", None): "changed",
    ("Loop over three items", "alpha"): "ok",
    ("Loop over three items", "beta"): "ok",
    ("Loop over three items", "gamma"): "ok",
    ("Loop over three items", None): "ok",
    ("Fail but carry on", None): "failed",
    ("Never runs", None): "skipped",
    ("Announce the marker", None): "ok",
}


def run_entries(sor, run_id, kind=None):
    return [entry for entry in sor.iter_entries(subject=run_id) if kind is None or entry.kind == kind]


def only_run_id(sor):
    events = sor.find_change_events()
    assert len(events) == 1, [event["run_id"] for event in events]
    return events[0]["run_id"]


def git(directory, *args):
    subprocess.run(["git", "-C", directory] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL,
                   env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
                            GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com"))


@pytest.mark.slow
def test_every_result_of_many_hosts_is_recorded(project, sor):
    project.write_inventory(HOSTS)
    project.write_playbook("site.yml", MANY_HOSTS_PLAYBOOK)
    workdir = project.path("out")
    os.makedirs(workdir)
    git(project.root, "init", "-q")
    git(project.root, "add", "site.yml", "inventory.ini")
    git(project.root, "commit", "-q", "-m", "initial")
    with open(project.path("site.yml"), "a") as handle:
        handle.write("# local edit\n")  # tracked file modified: the run is from a dirty tree

    # who ran it is the process's account, not what LOGNAME/USER claim
    completed = project.run("site.yml", "-e", "workdir=%s" % workdir, "--limit", "all_hosts",
                            "--skip-tags", "nothing", "--forks", "10", env={"LOGNAME": "mallory", "USER": "mallory"})

    run_id = only_run_id(sor)
    started = run_entries(sor, run_id, "run.started")
    assert len(started) == 1
    meta = started[0].data
    assert meta["playbooks"] == [project.path("site.yml")]
    assert meta["check_mode"] is False and meta["diff_mode"] is False
    assert meta["limit"] == "all_hosts"
    assert meta["skip_tags"] == ["nothing"]
    assert meta["extra_var_names"] == ["workdir"]
    assert meta["forks"] == 10
    assert meta["inventory"] == [project.path("inventory.ini")]
    assert meta["pid"] > 0 and meta["pid_identity"]
    assert meta["controller"] and meta["user"] == pwd.getpwuid(os.getuid()).pw_name
    assert meta["ansible_version"].startswith("2.")
    head = subprocess.run(["git", "-C", project.root, "rev-parse", "HEAD"], stdout=subprocess.PIPE,
                          universal_newlines=True, check=True).stdout.strip()
    assert meta["git"]["commit"] == head
    assert meta["git"]["dirty"] is True
    # the committer time of HEAD, in the ledger's UTC form: lead time for changes runs from it (docs/metrics.md)
    committed = subprocess.run(["git", "-C", project.root, "log", "-1", "--format=%ct", "HEAD"], stdout=subprocess.PIPE,
                               universal_newlines=True, check=True).stdout.strip()
    assert meta["git"]["commit_time"].endswith("Z")
    assert int(datetime.datetime.strptime(meta["git"]["commit_time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()) == int(committed)
    assert sor.find_change_facts(run_ids=[run_id])[0]["commit_at"] == meta["git"]["commit_time"]
    assert os.path.realpath(meta["git"]["root"]) == os.path.realpath(project.root)
    assert workdir not in started[0].canonical(), "an extra-var value was recorded"

    plays = run_entries(sor, run_id, "run.play")
    assert len(plays) == 1
    assert plays[0].data["name"] == "Configure the fleet"
    assert sorted(plays[0].data["hosts"]) == HOSTS
    assert plays[0].data["tags"] == ["fleet"]

    results = sor.get_task_results(run_id)
    seen = collections.Counter()
    for result in results:
        label = result["item"]["label"] if result["item"] else None
        key = (result["task"]["name"], label)
        assert key in EXPECTED_PER_HOST, key
        assert result["status"] == EXPECTED_PER_HOST[key], (result["host"], key, result["status"])
        assert result["duration_ms"] >= 0 and result["started_at"] <= result["ended_at"]
        seen[(result["host"],) + key] += 1
    assert len(results) == len(HOSTS) * len(EXPECTED_PER_HOST)
    assert set(seen.values()) == {1}, "a result was recorded twice"

    by_name = {result["task"]["name"]: result for result in results if result["host"] == "node07"}
    assert by_name["Announce the marker"]["task"]["handler"] is True
    assert by_name["Read the hostname"]["task"]["handler"] is False
    assert by_name["Read the hostname"]["task"]["action"] == "ansible.builtin.command"
    assert by_name["Read the hostname"]["task"]["path"] == project.path("site.yml") + ":6"
    assert by_name["Read the hostname"]["result"]["stdout"] == "hello node07"
    assert by_name["Fail but carry on"]["ignored"] is True
    assert by_name["Fail but carry on"]["result"]["rc"] == 1
    assert "invocation" not in by_name["Write a marker file"]["result"]
    # workdir came in as an extra var: its value is treated as a secret wherever it appears
    assert by_name["Write a marker file"]["result"]["dest"] == "********/node07.txt"

    event = sor.get_change_event(run_id)
    assert event["status"] == "successful"
    assert event["dry_run"] is False
    assert event["host_count"] == len(HOSTS)
    assert event["changed_host_count"] == len(HOSTS)
    finished = run_entries(sor, run_id, "run.finished")
    assert len(finished) == 1 and finished[0].data["outcome"] == "successful"
    assert finished[0].data["stats"]["node07"]["ignored"] == 1
    assert sor.verify().valid
    assert "change_recorder" not in completed.stdout, completed.stdout


def test_failed_run_is_recorded_as_failed(project, sor):
    project.write_inventory(["web1", "web2"])
    project.write_playbook("fail.yml", """
        - hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Break on web2
              ansible.builtin.command: "{{ '/bin/false' if inventory_hostname == 'web2' else '/bin/true' }}"
            - name: Afterwards
              ansible.builtin.debug:
                msg: still here
        """)
    completed = project.run("fail.yml", check=False)
    assert completed.returncode == 2
    run_id = only_run_id(sor)
    event = sor.get_change_event(run_id)
    assert event["status"] == "failed"
    statuses = {(r["host"], r["task"]["name"]): r["status"] for r in sor.get_task_results(run_id)}
    assert statuses == {("web1", "Break on web2"): "changed", ("web2", "Break on web2"): "failed",
                        ("web1", "Afterwards"): "ok"}


def test_check_mode_is_a_dry_run_and_diff_mode_records_redacted_diffs(project, sor):
    target = project.path("app.conf")
    with open(target, "w") as handle:
        handle.write("listen = 80\napi_token = OldTokenValue123\n")
    project.write_playbook("conf.yml", """
        - hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Configure the app
              ansible.builtin.copy:
                dest: "{{ conf }}"
                content: "listen = 8080\\napi_token = NewTokenValue456\\n"
                mode: "0600"
        """)
    project.run("conf.yml", "--check", "--diff", "-e", "conf=%s" % target)
    dry_run_id = only_run_id(sor)
    event = sor.get_change_event(dry_run_id)
    assert event["dry_run"] is True
    assert event["authorisation"] == "dry-run"
    assert run_entries(sor, dry_run_id, "run.started")[0].data["check_mode"] is True
    with open(target) as handle:
        assert "listen = 80\n" in handle.read(), "check mode changed the file"

    [result] = sor.get_task_results(dry_run_id)
    assert result["status"] == "changed"
    [diff] = result["diff"]
    assert "listen = 80\n" in diff["before"] and "listen = 8080\n" in diff["after"]
    assert "OldTokenValue123" not in diff["before"] and "NewTokenValue456" not in diff["after"]
    assert "api_token = ********" in diff["after"]

    project.run("conf.yml", "-e", "conf=%s" % target)
    real_run = [e for e in sor.find_change_events() if e["run_id"] != dry_run_id][0]
    assert real_run["dry_run"] is False
    [result] = sor.get_task_results(real_run["run_id"])
    assert "diff" not in result, "diffs are recorded only in diff mode"
    assert sor.verify().valid


def test_changed_hosts_are_linked_to_their_configuration_items(project, sor):
    project.write_inventory(["db1", "db2"])
    ci_id = uuid.uuid4().hex
    sor.append([Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": "db1", "class": "server"},
                                            "identities": {}})])
    project.write_playbook("touch.yml", """
        - hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Change something
              ansible.builtin.command: echo changed
        """)
    project.run("touch.yml")
    run_id = [e["run_id"] for e in sor.find_change_events()][0]
    links = [entry.data for entry in sor.iter_entries(kinds=["ci.changed_by_run"])]
    assert links == [{"ci_id": ci_id, "run_id": run_id, "host": "db1"}]
    assert sor.get_ci(ci_id)["last_change_run_id"] == run_id


@pytest.mark.slow
def test_four_concurrent_playbooks_keep_one_valid_chain(project, sor):
    hosts = ["c%02d" % number for number in range(1, 7)]
    project.write_inventory(hosts)
    project.write_playbook("busy.yml", """
        - hosts: all_hosts
          gather_facts: false
          tasks:
            - name: First
              ansible.builtin.command: echo one
            - name: Second
              ansible.builtin.debug:
                msg: "{{ item }}"
              loop: [x, y]
            - name: Third
              ansible.builtin.command: echo three
              changed_when: false
        """)
    fast_flush = {"CHANGEOPS_RECORDER_FLUSH_INTERVAL": "0.05", "CHANGEOPS_RECORDER_BATCH_SIZE": "5"}
    processes = [project.start("busy.yml", env=fast_flush) for run in range(4)]
    outputs = [project.wait_ended(process, 600) for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
        assert "locked" not in output.lower(), output
        assert "change_recorder" not in output, output

    events = sor.find_change_events()
    assert len(events) == 4
    per_run = len(hosts) * (1 + 3 + 1)  # First, Second (2 items + aggregate), Third
    for event in events:
        assert event["status"] == "successful"
        assert len(sor.get_task_results(event["run_id"])) == per_run
    report = sor.verify()
    assert report.valid, report.summary()
    # + run.started, run.play, run.finished; and the checkpoints signed at the end of the runs
    checkpoint_entries = len(list(sor.iter_entries(kinds=["ledger.checkpoint"])))
    assert 1 <= checkpoint_entries <= 4
    assert report.entries_checked == 4 * (per_run + 3) + checkpoint_entries


def wait_for_results(project, sor_factory, count, process, timeout=120):
    def recorded():
        sor = sor_factory()
        try:
            running = sor.find_change_events(status="running")
            if running and len(sor.get_task_results(running[0]["run_id"])) >= count:
                return running[0]["run_id"]
            return None
        finally:
            sor.close()
    return project.wait_for(recorded, timeout=timeout, what="%d recorded results" % count, process=process)


SLOW_PLAYBOOK = """
- hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Quick one
      ansible.builtin.command: echo one
    - name: Quick two
      ansible.builtin.command: echo two
    - name: Quick three
      ansible.builtin.command: echo three
    - name: Slow
      ansible.builtin.command: sleep 300
"""


@pytest.mark.slow
def test_sigkill_keeps_finished_tasks_and_next_run_marks_it_interrupted(project, open_sor):
    project.write_inventory(["k1", "k2", "k3"])
    project.write_playbook("slow.yml", SLOW_PLAYBOOK)
    ci_id = uuid.uuid4().hex
    open_sor().append([Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": "k2", "class": "server"},
                                                   "identities": {}})])
    process = project.start("slow.yml")
    run_id = wait_for_results(project, open_sor, 9, process)
    time.sleep(0.5)  # the slow task has started on every host
    project.kill(process, signal.SIGKILL)
    process.stdout.close()

    sor = open_sor()
    results = sor.get_task_results(run_id)
    assert sorted((r["task"]["name"], r["host"]) for r in results) == sorted(
        (name, host) for name in ("Quick one", "Quick two", "Quick three") for host in ("k1", "k2", "k3"))
    assert sor.get_change_event(run_id)["status"] == "running"

    project.write_playbook("other.yml", """
        - hosts: k1
          gather_facts: false
          tasks:
            - ansible.builtin.debug:
                msg: next run
        """)
    project.run("other.yml")
    event = sor.get_change_event(run_id)
    assert event["status"] == "interrupted"
    [interrupted] = run_entries(sor, run_id, "run.interrupted")
    assert "ended without finishing" in interrupted.data["reason"]
    assert len(sor.get_task_results(run_id)) == 9
    next_run = [e for e in sor.find_change_events() if e["run_id"] != run_id][0]
    assert next_run["status"] == "successful"
    assert interrupted.data["detected_by_run"] == next_run["run_id"]
    # the killed run changed k2 (its quick tasks finished): the run that found it dead links the CI
    links = [entry.data for entry in sor.iter_entries(kinds=["ci.changed_by_run"])]
    assert links == [{"ci_id": ci_id, "run_id": run_id, "host": "k2"}]
    assert sor.verify().valid


def test_sigterm_marks_the_run_interrupted_at_once(project, open_sor):
    project.write_inventory(["t1", "t2"])
    project.write_playbook("slow.yml", SLOW_PLAYBOOK)
    process = project.start("slow.yml")
    run_id = wait_for_results(project, open_sor, 6, process)
    time.sleep(0.5)
    os.kill(process.pid, signal.SIGTERM)
    project.wait_ended(process, 120)
    sor = open_sor()
    event = sor.get_change_event(run_id)
    assert event["status"] == "interrupted"
    [interrupted] = run_entries(sor, run_id, "run.interrupted")
    assert "SIGTERM" in interrupted.data["reason"]
    assert len(sor.get_task_results(run_id)) >= 6
    assert sor.verify().valid


def test_run_id_is_exported_to_workers(project, sor):
    project.write_playbook("env.yml", """
        - hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Show the run id a worker sees
              ansible.builtin.debug:
                msg: "run={{ lookup('ansible.builtin.env', 'CHANGEOPS_RUN_ID') }}"
        """)
    project.run("env.yml")
    run_id = only_run_id(sor)
    [result] = sor.get_task_results(run_id)
    assert result["result"]["msg"] == "run=%s" % run_id


def test_multiple_playbooks_are_one_run(project, sor):
    for name in ("one.yml", "two.yml"):
        project.write_playbook(name, """
            - hosts: all_hosts
              gather_facts: false
              tasks:
                - name: Task of %s
                  ansible.builtin.debug:
                    msg: hi
            """ % name)
    project.run("one.yml", "two.yml")
    run_id = only_run_id(sor)
    event = sor.get_change_event(run_id)
    assert event["status"] == "successful"
    assert run_entries(sor, run_id, "run.started")[0].data["playbooks"] == [
        project.path("one.yml"), project.path("two.yml")]
    assert [r["task"]["name"] for r in sor.get_task_results(run_id)] == ["Task of one.yml", "Task of two.yml"]
    assert len(run_entries(sor, run_id, "run.finished")) == 1
