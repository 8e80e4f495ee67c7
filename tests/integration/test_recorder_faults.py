# -*- coding: utf-8 -*-
"""Nothing is lost silently: real ansible-playbook runs whose ledger and spool sit on a broken file system.

The ledger's directory (and the spool inside it, the default layout) is on a small file system of
the test's own (``support.faultfs``) that the test makes read-only, fills up or makes immutable.
PostgreSQL's ledger is the database itself: there the server is stopped, and the spool locations
are on the broken file system. For each fault and each ``on_record_failure`` value:

* the fallback spool (the state directory) keeps the run, and the next run replays it whole;
* when no spool location takes the entries either: with ``warn`` the run goes on and says at its
  end how many entries of which run were lost, and the next run records the marker it left; with
  ``fail`` no host starts the next task, the run exits 1, and the next run records it as interrupted.

The record is compared with what Ansible itself reported (PLAY RECAP).
"""

from __future__ import annotations

import glob
import json
import os

import pytest

from support import postgresql_server
from support.faultfs import fault_fs
from support.project import Project
from support.recorder import play_recap, recorded_stats, recorder_warnings

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAULTS = ["read-only", "full", "immutable"]
MODES = ["warn", "fail"]
HOSTS = ["f1", "f2", "f3"]
TASKS = ["Write the first file", "Write the second file", "Write the third file"]

WORK = """
- name: Work on every host
  hosts: all_hosts
  gather_facts: false
  tasks:
""" + "".join("""
    - name: {name}
      ansible.builtin.file:
        path: "{{{{ out }}}}/{{{{ inventory_hostname }}}}-{number}"
        state: touch
        mode: "0600"
""".format(name=name, number=number) for number, name in enumerate(TASKS, 1))

#: the fault is applied while the run waits after its first task
PAUSING = """
- name: Work that pauses
  hosts: all_hosts
  gather_facts: false
  tasks:
    - name: {first}
      ansible.builtin.file:
        path: "{{{{ out }}}}/{{{{ inventory_hostname }}}}-1"
        state: touch
        mode: "0600"

    - name: Wait for the test
      ansible.builtin.wait_for:
        path: "{{{{ release }}}}"
        timeout: 300
      delegate_to: localhost
      run_once: true

    - name: {second}
      ansible.builtin.file:
        path: "{{{{ out }}}}/{{{{ inventory_hostname }}}}-2"
        state: touch
        mode: "0600"
""".format(first=TASKS[0], second=TASKS[1])

FAST = {"CHANGEOPS_RECORDER_FLUSH_INTERVAL": "0.2", "CHANGEOPS_RECORDER_SPOOL_RETRY_INTERVAL": "1",
        "CHANGEOPS_RECORDER_FLUSH_TIMEOUT": "10", "CHANGEOPS_BUSY_TIMEOUT": "2"}


@pytest.fixture
def faulty(tmp_path):
    fs = fault_fs(tmp_path)
    yield fs
    fs.unmount()


def lost_warnings(output):
    return [warning for warning in recorder_warnings(output) if "are LOST" in warning]


def spooled(*roots):
    return [path for root in roots for path in glob.glob(os.path.join(root, "*", "*.jsonl"))]


def outputs(project, out="broken"):
    """The files the tasks of the run with output directory ``out`` wrote: one per host and task."""
    directory = project.path("out", out)
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


class Scene(object):
    """A project whose ledger directory (or spool) is on ``faulty``; ``broken_fallback`` puts the
    fallback spool there too, so that no spool location survives the fault."""

    def __init__(self, tmp_path, faulty, backend_env, broken_fallback=False):
        self.faulty = faulty
        self.ledger_dir = faulty.path("changeops")
        os.makedirs(self.ledger_dir, exist_ok=True)
        env = dict(backend_env)
        if env["CHANGEOPS_BACKEND"] == "sqlite":
            env["CHANGEOPS_SQLITE_PATH"] = os.path.join(self.ledger_dir, "ledger.sqlite")
        self.project = Project(tmp_path / "project", env)
        self.project.write_inventory(HOSTS)
        self.project.write_playbook("work.yml", WORK)
        self.project.write_playbook("pausing.yml", PAUSING)
        self.temp_dir = self.project.path("tmp")
        os.makedirs(self.temp_dir, exist_ok=True)
        self.spool_dir = os.path.join(self.ledger_dir, "spool")
        self.fallback_dir = os.path.join(self.ledger_dir, "state") if broken_fallback else self.project.fallback_spool_dir
        self.marker_dir = os.path.join(self.temp_dir, "changeops-%d" % os.getuid(), "spool")
        self.release = self.project.path("release")

    def env(self, mode="warn", **extra):
        env = dict(FAST, CHANGEOPS_ON_RECORD_FAILURE=mode, CHANGEOPS_SPOOL_DIR=self.spool_dir, TMPDIR=self.temp_dir,
                   CHANGEOPS_SPOOL_FALLBACK_DIR=self.fallback_dir)
        env.update(extra)
        return env

    def _args(self, out):
        directory = self.project.path("out", out)
        os.makedirs(directory, exist_ok=True)
        return ["-e", "out=%s" % directory, "-e", "release=%s" % self.release]

    def run(self, playbook="work.yml", mode="warn", check=True, out="healthy"):
        return self.project.run(playbook, *self._args(out), env=self.env(mode), check=check)

    def start(self, playbook="pausing.yml", mode="warn", out="broken"):
        return self.project.start(playbook, *self._args(out), env=self.env(mode))


def witnessed(project):
    """``(seq, head)`` of the checkpoints the default file witness holds, in delivery order."""
    if not os.path.exists(project.witness_file):
        return []
    with open(project.witness_file, encoding="utf-8") as handle:
        return [(record["seq"], record["head"]) for record in map(json.loads, handle)]


def checkpointed(sor):
    """``(seq, head)`` of every ledger.checkpoint entry of the ledger."""
    return [(entry.data["seq"], entry.data["head"]) for entry in sor.iter_entries(kinds=["ledger.checkpoint"])]


def assert_the_head_is_checkpointed_after(sor, project, marker_kind="run.incomplete"):
    """The ledger ends with a checkpoint of everything before it, the lost run's marker included, and the
    witness got it: a checkpoint is of what IS in the ledger, at the first run that could write one."""
    entries = list(sor.iter_entries())
    last = entries[-1]
    assert last.kind == "ledger.checkpoint" and last.data["seq"] == last.seq - 1, last
    assert last.data["head"] == entries[-2].hash
    assert [entry.seq for entry in entries if entry.kind == marker_kind][-1] < last.seq
    assert witnessed(project)[-1] == (last.data["seq"], last.data["head"])


def new_events(sor, before):
    return [event for event in sor.find_change_events() if event["run_id"] not in before]


def assert_recorded_like_ansible(sor, run_id, output):
    """The change event holds every result Ansible reported, per host, and the same stats."""
    recap = play_recap(output)
    event = sor.get_change_event(run_id)
    assert recorded_stats(event) == recap
    results = sor.get_task_results(run_id)
    assert sorted((r["host"], r["task"]["name"]) for r in results) == sorted(
        (host, name) for host in HOSTS for name in TASKS)
    for host, counts in recap.items():
        assert len([r for r in results if r["host"] == host]) == counts["ok"] + counts["failed"] + counts["skipped"]


# -- SQLite: the ledger's directory breaks -----------------------------------------------------------
def sqlite_env(tmp_path):
    return {"CHANGEOPS_BACKEND": "sqlite", "CHANGEOPS_SQLITE_PATH": str(tmp_path / "unused.sqlite")}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", FAULTS)
def test_sqlite_the_fallback_spool_keeps_a_run_whose_ledger_directory_breaks(tmp_path, faulty, fault, mode):
    scene = Scene(tmp_path, faulty, sqlite_env(tmp_path))
    scene.run()  # the ledger exists, healthy
    config = {"backend": "sqlite", "sqlite_path": scene.project.backend_env["CHANGEOPS_SQLITE_PATH"]}
    with open_system_of_record(config) as sor:
        before = set(event["run_id"] for event in sor.find_change_events())
    faulty.break_it(fault, scene.ledger_dir)
    try:
        broken = scene.run(mode=mode, check=False, out="broken")
    finally:
        faulty.repair()
    assert broken.returncode == 0, broken.stdout
    [warning] = recorder_warnings(broken.stdout)
    assert scene.fallback_dir in warning and "replayed automatically" in warning, warning
    assert spooled(scene.fallback_dir) and not spooled(scene.spool_dir)
    assert len(outputs(scene.project)) == len(HOSTS) * len(TASKS)

    scene.run()
    assert spooled(scene.fallback_dir, scene.spool_dir, scene.marker_dir) == []
    with open_system_of_record(config) as sor:
        events = sorted(new_events(sor, before), key=lambda event: event["started_at"])
        assert [event["status"] for event in events] == ["successful", "successful"]
        assert_recorded_like_ansible(sor, events[0]["run_id"], broken.stdout)
        assert sor.verify(projections=True).valid


@pytest.mark.parametrize("fault", FAULTS)
def test_sqlite_warn_says_what_was_lost_and_the_next_run_records_the_marker(tmp_path, faulty, fault):
    scene = Scene(tmp_path, faulty, sqlite_env(tmp_path), broken_fallback=True)
    scene.run()
    config = {"backend": "sqlite", "sqlite_path": scene.project.backend_env["CHANGEOPS_SQLITE_PATH"]}
    with open_system_of_record(config) as sor:
        before = set(event["run_id"] for event in sor.find_change_events())
        head, checkpoints = sor.head(), checkpointed(sor)
    assert checkpoints and witnessed(scene.project) == checkpoints
    faulty.break_it(fault, scene.ledger_dir)
    try:
        broken = scene.run(mode="warn", check=False, out="broken")
    finally:
        faulty.repair()
    assert broken.returncode == 0, broken.stdout
    assert len(outputs(scene.project)) == len(HOSTS) * len(TASKS), "warn does not stop the run"
    # nothing of the run reached the ledger: no checkpoint was signed for it, none vouches for lost entries
    with open_system_of_record(config) as sor:
        assert sor.head() == head
    assert witnessed(scene.project) == checkpoints
    [lost] = lost_warnings(broken.stdout)
    entries = 1 + 1 + len(HOSTS) * len(TASKS) + 1  # run.started, run.play, the results, run.finished
    assert "%d entries of run " % entries in lost and scene.marker_dir in lost, lost
    assert broken.stdout.rindex("are LOST") > broken.stdout.index("PLAY RECAP"), "said at the end of the run"

    scene.run()
    assert spooled(scene.marker_dir) == []
    with open_system_of_record(config) as sor:
        [event, _next] = sorted(new_events(sor, before), key=lambda event: event["started_at"])
        assert lost.split("entries of run ")[1].split()[0] == event["run_id"]
        assert event["record_lost"]["entries"] == entries
        assert event["status"] == "successful" and event["authorisation"] == "incomplete"
        # the marker carried Ansible's own stats of the run it lost
        assert recorded_stats(event) == play_recap(broken.stdout)
        assert event["playbook"] == scene.project.path("work.yml")
        assert sor.get_task_results(event["run_id"]) == []
        assert sor.verify(projections=True).valid
        assert_the_head_is_checkpointed_after(sor, scene.project)


@pytest.mark.parametrize("fault", FAULTS)
def test_sqlite_fail_stops_the_run_before_its_first_task_starts_on_any_host(tmp_path, faulty, fault):
    scene = Scene(tmp_path, faulty, sqlite_env(tmp_path), broken_fallback=True)
    scene.run()
    config = {"backend": "sqlite", "sqlite_path": scene.project.backend_env["CHANGEOPS_SQLITE_PATH"]}
    with open_system_of_record(config) as sor:
        before = set(event["run_id"] for event in sor.find_change_events())
        checkpoints = checkpointed(sor)
    faulty.break_it(fault, scene.ledger_dir)
    try:
        broken = scene.run(mode="fail", check=False, out="broken")
    finally:
        faulty.repair()
    assert broken.returncode == 1, broken.stdout
    assert witnessed(scene.project) == checkpoints, "a checkpoint was signed for a run that reached no ledger"
    assert "stopped before task '%s'" % TASKS[0] in broken.stdout
    assert outputs(scene.project) == [], "a host started the task although its record could not be kept"
    assert "TASK [%s]" % TASKS[1] not in broken.stdout
    assert len(lost_warnings(broken.stdout)) == 1

    scene.run()
    with open_system_of_record(config) as sor:
        [event, _next] = sorted(new_events(sor, before), key=lambda event: event["started_at"])
        assert event["status"] == "interrupted"
        assert "on_record_failure is fail" in event["reason"]
        assert sor.verify(projections=True).valid
        assert_the_head_is_checkpointed_after(sor, scene.project)


class WriteLock(object):
    """Hold the SQLite ledger's write lock from another connection, as a stuck writer would."""

    def __init__(self, path):
        import sqlite3
        self.connection = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.connection.execute("BEGIN EXCLUSIVE")

    def release(self):
        self.connection.execute("ROLLBACK")
        self.connection.close()


@pytest.mark.parametrize("mode", MODES)
def test_sqlite_a_fault_in_the_middle_of_a_run(tmp_path, faulty, mode):
    """While the run waits between two tasks, the ledger gets stuck (another writer holds its lock past
    busy_timeout) and the file system of both spool locations goes read-only. (A file system with the
    open ledger on it cannot be remounted read-only by hand; the kernel does that only after I/O errors.)"""
    scene = Scene(tmp_path, faulty, sqlite_env(tmp_path))
    spools = fault_fs(tmp_path, "spools")
    scene.spool_dir, scene.fallback_dir = spools.path("spool"), spools.path("state")
    config = {"backend": "sqlite", "sqlite_path": scene.project.backend_env["CHANGEOPS_SQLITE_PATH"]}
    lock = None
    process = scene.start(mode=mode)
    try:
        with open_system_of_record(config) as sor:
            # the first task's results are in the ledger: then the ledger gets stuck and the spools read-only
            run_id = scene.project.wait_for(
                lambda: [event["run_id"] for event in sor.find_change_events(status="running")
                         if len(sor.get_task_results(event["run_id"])) >= len(HOSTS)][:1],
                timeout=120, what="the first task's results", process=process)[0]
        lock = WriteLock(config["sqlite_path"])
        spools.read_only()
        with open(scene.release, "w"):
            pass
        output = Project.wait_ended(process, 600)
    finally:
        if process.poll() is None:
            Project.kill(process)
        if lock is not None:
            lock.release()
        spools.unmount()
    written = outputs(scene.project)
    assert len(lost_warnings(output)) == 1, output
    if mode == "fail":
        assert process.returncode == 1, output
        assert "stopped before task '%s'" % TASKS[1] in output
        assert written == sorted("%s-1" % host for host in HOSTS), "no host may start the task after the fault"
    else:
        assert process.returncode == 0, output
        assert written == sorted("%s-%d" % (host, n) for host in HOSTS for n in (1, 2))

    scene.run()
    with open_system_of_record(config) as sor:
        event = sor.get_change_event(run_id)
        assert event["record_lost"]["entries"] >= 2
        assert [r["task"]["name"] for r in sor.get_task_results(run_id)][:len(HOSTS)] == [TASKS[0]] * len(HOSTS)
        if mode == "fail":
            assert event["status"] == "interrupted" and "stopped before task" in event["reason"]
        else:
            assert event["status"] == "successful" and event["authorisation"] == "incomplete"
            assert recorded_stats(event) == play_recap(output)
        assert sor.verify(projections=True).valid


# -- PostgreSQL: the database is down and the spool's file system breaks ----------------------------
@pytest.fixture(scope="module")
def server():
    """A cluster of this module's own: these tests stop and restart it."""
    local = postgresql_server.LocalServer(max_connections=50).start()
    yield local
    local.remove()


@pytest.fixture
def dsn(server):
    yield from postgresql_server.database_on_stoppable_server(server, "changeops_record_faults")


def pg_env(dsn):
    return {"CHANGEOPS_BACKEND": "postgresql", "CHANGEOPS_POSTGRESQL_DSN": dsn}


def pg_events(dsn):
    with open_system_of_record({"backend": "postgresql", "postgresql_dsn": dsn}) as sor:
        return sorted(sor.find_change_events(), key=lambda event: event["started_at"])


@pytest.mark.postgresql
@pytest.mark.parametrize("fault", FAULTS)
def test_postgresql_the_fallback_spool_keeps_a_run_while_the_database_is_down(tmp_path, faulty, server, dsn, fault):
    scene = Scene(tmp_path, faulty, pg_env(dsn))
    scene.run()
    server.stop("fast")
    faulty.break_it(fault, scene.ledger_dir)
    try:
        broken = scene.run(mode="fail", check=False, out="broken")
    finally:
        faulty.repair()
        server.start()
    assert broken.returncode == 0, broken.stdout
    [warning] = recorder_warnings(broken.stdout)
    assert scene.fallback_dir in warning and server.password not in broken.stdout
    scene.run()
    assert spooled(scene.fallback_dir, scene.spool_dir, scene.marker_dir) == []
    events = pg_events(dsn)
    assert [event["status"] for event in events] == ["successful"] * 3
    with open_system_of_record({"backend": "postgresql", "postgresql_dsn": dsn}) as sor:
        assert_recorded_like_ansible(sor, events[1]["run_id"], broken.stdout)
        assert sor.verify(projections=True).valid


@pytest.mark.postgresql
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", FAULTS)
def test_postgresql_nothing_durable_warn_reports_and_fail_stops(tmp_path, faulty, server, dsn, fault, mode):
    scene = Scene(tmp_path, faulty, pg_env(dsn), broken_fallback=True)
    scene.run()
    server.stop("fast")
    faulty.break_it(fault, scene.ledger_dir)
    try:
        broken = scene.run(mode=mode, check=False, out="broken")
    finally:
        faulty.repair()
        server.start()
    [lost] = lost_warnings(broken.stdout)
    assert scene.marker_dir in lost and server.password not in broken.stdout
    if mode == "fail":
        assert broken.returncode == 1, broken.stdout
        assert "stopped before task '%s'" % TASKS[0] in broken.stdout
        assert outputs(scene.project) == [], "a host started the task although its record could not be kept"
    else:
        assert broken.returncode == 0, broken.stdout
    scene.run()
    first, lost_run, _next = pg_events(dsn)
    assert lost_run["record_lost"]["entries"] > 0
    if mode == "fail":
        assert lost_run["status"] == "interrupted" and "on_record_failure is fail" in lost_run["reason"]
    else:
        assert lost_run["status"] == "successful" and lost_run["authorisation"] == "incomplete"
        assert recorded_stats(lost_run) == play_recap(broken.stdout)
    assert spooled(scene.marker_dir) == []


# -- a damaged ledger --------------------------------------------------------------------------------
def random_bytes(count, seed=7):
    import random
    generator = random.Random(seed)
    return bytes(generator.getrandbits(8) for _byte in range(count))


def damaged_warnings(output):
    return [warning for warning in recorder_warnings(output) if "is damaged" in warning]


@pytest.mark.parametrize("mode", MODES)
def test_sqlite_a_damaged_ledger_is_found_at_the_next_run_reported_once_and_its_entries_spooled(tmp_path, mode):
    project = Project(tmp_path / "project", sqlite_env(tmp_path))
    project.write_inventory(HOSTS)
    project.write_playbook("work.yml", WORK)
    os.makedirs(project.path("out"), exist_ok=True)
    args = ("-e", "out=%s" % project.path("out"))
    env = dict(FAST, CHANGEOPS_ON_RECORD_FAILURE=mode)
    for _run in range(3):
        project.run("work.yml", *args, env=env)
    path = project.backend_env["CHANGEOPS_SQLITE_PATH"]
    with open(path, "rb") as handle:
        intact = handle.read()
    # random bytes over one page in the middle of the file (a table or index page; the header stays)
    page = 4096
    offset = (len(intact) // page // 2) * page
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(random_bytes(page))

    witnessed_before = witnessed(project)
    damaged = project.run("work.yml", *args, env=env, check=False)
    assert damaged.returncode == 0, damaged.stdout
    assert witnessed(project) == witnessed_before, "a damaged ledger's head was vouched for"
    [warning] = recorder_warnings(damaged.stdout)
    assert warning in damaged_warnings(damaged.stdout)
    assert path in warning and "What to do" in warning and ".recover" in warning and project.spool_dir in warning
    assert len(glob.glob(os.path.join(project.spool_dir, "*", "*.jsonl"))) >= 1

    # the user restores the ledger; the next run replays the damaged-ledger run into it
    with open(path, "wb") as handle:
        handle.write(intact)
    project.run("work.yml", *args, env=env)
    assert glob.glob(os.path.join(project.spool_dir, "*", "*.jsonl")) == []
    with open_system_of_record({"backend": "sqlite", "sqlite_path": path}) as sor:
        events = sorted(sor.find_change_events(), key=lambda event: event["started_at"])
        assert [event["status"] for event in events] == ["successful"] * 5
        assert_recorded_like_ansible(sor, events[3]["run_id"], damaged.stdout)
        assert sor.verify(projections=True).valid


@pytest.mark.postgresql
def test_postgresql_a_damaged_ledger_page_is_found_at_the_next_run(tmp_path, server, dsn):
    import psycopg

    project = Project(tmp_path / "project", pg_env(dsn))
    project.write_inventory(HOSTS)
    project.write_playbook("work.yml", WORK)
    os.makedirs(project.path("out"), exist_ok=True)
    args = ("-e", "out=%s" % project.path("out"))
    for _run in range(3):
        project.run("work.yml", *args, env=FAST)
    with psycopg.connect(dsn) as conn:
        relation = conn.execute("SELECT pg_relation_filepath('ledger')").fetchone()[0]
        pages = conn.execute("SELECT pg_relation_size('ledger') / 8192").fetchone()[0]
    assert pages >= 3, "the ledger table should span a few pages"
    path = os.path.join(server.data_dir, relation)
    server.stop("fast")
    with open(path, "r+b") as handle:
        handle.seek(8192)
        intact = handle.read(8192)
        handle.seek(8192)
        handle.write(random_bytes(8192))
    server.start()

    damaged = project.run("work.yml", *args, env=FAST, check=False)
    assert damaged.returncode == 0, damaged.stdout
    [warning] = recorder_warnings(damaged.stdout)
    assert warning in damaged_warnings(damaged.stdout) and "invalid page" in warning, warning
    assert "What to do" in warning and server.password not in damaged.stdout

    server.stop("fast")
    with open(path, "r+b") as handle:
        handle.seek(8192)
        handle.write(intact)
    server.start()
    project.run("work.yml", *args, env=FAST)
    events = pg_events(dsn)
    assert [event["status"] for event in events] == ["successful"] * 5
    with open_system_of_record({"backend": "postgresql", "postgresql_dsn": dsn}) as sor:
        assert_recorded_like_ansible(sor, events[3]["run_id"], damaged.stdout)
        assert sor.verify(projections=True).valid
