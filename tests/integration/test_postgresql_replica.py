# -*- coding: utf-8 -*-
"""Readers on a PostgreSQL streaming replica (``postgresql_read_dsn``), with a real primary and a hot standby.

Two clusters started here on loopback (the standby made with ``pg_basebackup -R``). A reader (an instance opened
with ``reader``, as the ``_info`` modules and the ``cmdb`` inventory open theirs) reads from the standby while it
is caught up; when replay is paused and the lag exceeds ``postgresql_read_max_lag`` it reads from the primary and
says why; when the standby is down it falls back and says so; writes always go to the primary. The warnings
never carry the replica's password.
"""

from __future__ import annotations

import json

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

from support.replica import primary_and_standby, standby_sql, wait_until_replayed

pytestmark = pytest.mark.backends("postgresql")


@pytest.fixture(scope="module")
def clusters():
    with primary_and_standby() as (primary, standby, name):
        yield primary, standby, name


def record_run(sor, run_id):
    return sor.append([
        Entry("run.started", run_id, {"run_id": run_id, "started_at": "2026-12-05T10:00:00.000000Z", "user": "ops",
                                      "controller": "ctl", "playbooks": ["site.yml"]}),
        Entry("run.finished", run_id, {"run_id": run_id, "outcome": "successful"}),
    ])


def reader(primary, standby, name, **overrides):
    config = {"backend": "postgresql", "postgresql_dsn": primary.dsn(name), "postgresql_read_dsn": standby.dsn(name),
              "postgresql_read_max_lag": 30, "reader": True}
    config.update(overrides)
    return open_system_of_record(config)


def run_ids(sor):
    return {event["run_id"] for event in sor.find_change_events(limit=1000)}


def test_a_reader_reads_from_the_caught_up_replica_and_from_the_primary_when_it_lags(clusters):
    primary, standby, name = clusters
    with open_system_of_record({"backend": "postgresql", "postgresql_dsn": primary.dsn(name)}) as writer:
        head = record_run(writer, "before-pause")[-1].seq
        wait_until_replayed(standby, name, head)
        with reader(primary, standby, name) as sor:
            assert "before-pause" in run_ids(sor)
            source = sor.read_source()
            assert source["server"] == "replica" and source["reason"] is None, source

        standby_sql(standby, "SELECT pg_wal_replay_pause()")
        try:
            record_run(writer, "during-pause")
            # a generous lag limit: the paused replica is still read, so the new run is not seen yet
            with reader(primary, standby, name, postgresql_read_max_lag=3600) as sor:
                assert "during-pause" not in run_ids(sor), "the reader must have read the replica"
                assert sor.read_source()["server"] == "replica"
            # no lag allowed: a replica that has not replayed what it received is behind; the primary is read
            with reader(primary, standby, name, postgresql_read_max_lag=0) as sor:
                assert "during-pause" in run_ids(sor)
                source = sor.read_source()
                assert source["server"] == "primary" and "lags" in source["reason"], source
                assert "postgresql_read_max_lag: 0 s" in source["reason"]
                assert standby.password not in source["reason"]
        finally:
            standby_sql(standby, "SELECT pg_wal_replay_resume()")
        wait_until_replayed(standby, name, writer.head()[0])
        with reader(primary, standby, name, postgresql_read_max_lag=0) as sor:
            assert "during-pause" in run_ids(sor) and sor.read_source()["server"] == "replica"


def test_a_reader_falls_back_to_the_primary_when_the_replica_is_down_and_writes_go_to_the_primary(clusters):
    primary, standby, name = clusters
    standby.stop()
    try:
        with reader(primary, standby, name) as sor:
            # a reader that writes (as an info module may record what it found) writes to the primary
            record_run(sor, "while-replica-down")
            assert "while-replica-down" in run_ids(sor)
            source = sor.read_source()
            assert source["server"] == "primary" and "is unreachable" in source["reason"], source
            assert standby.password not in source["reason"]
    finally:
        standby.start()
    with open_system_of_record({"backend": "postgresql", "postgresql_dsn": primary.dsn(name)}) as writer:
        wait_until_replayed(standby, name, writer.head()[0])


def test_a_writer_never_reads_the_replica_even_when_one_is_configured(clusters):
    primary, standby, name = clusters
    standby_sql(standby, "SELECT pg_wal_replay_pause()")
    try:
        config = {"backend": "postgresql", "postgresql_dsn": primary.dsn(name),
                  "postgresql_read_dsn": standby.dsn(name), "postgresql_read_max_lag": 3600}
        with open_system_of_record(config) as sor:  # no "reader": a module that writes
            record_run(sor, "written-and-read-back")
            assert "written-and-read-back" in run_ids(sor)
            assert sor.read_source() is None
    finally:
        standby_sql(standby, "SELECT pg_wal_replay_resume()")


def test_a_primary_given_as_the_replica_is_not_read_as_one(clusters):
    primary, _standby, name = clusters
    with reader(primary, primary, name) as sor:
        run_ids(sor)
        source = sor.read_source()
        assert source["server"] == "primary" and "is not a standby" in source["reason"], source


INFO_PLAYBOOK = """
- name: Read the record as ITSM staff do
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The recorded runs
      changeops.itsm.change_event_info:
      register: events
    - name: Keep what the module reported
      ansible.builtin.copy:
        content: "{{ events | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def test_an_info_module_reads_from_the_replica_and_says_when_it_falls_back(clusters, tmp_path):
    import json

    from support.project import Project

    primary, standby, name = clusters
    with open_system_of_record({"backend": "postgresql", "postgresql_dsn": primary.dsn(name)}) as writer:
        record_run(writer, "seen-by-the-info-module")
        wait_until_replayed(standby, name, writer.head()[0])
    project = Project(tmp_path / "project", {"CHANGEOPS_BACKEND": "postgresql",
                                             "CHANGEOPS_POSTGRESQL_DSN": primary.dsn(name),
                                             "CHANGEOPS_POSTGRESQL_READ_DSN": standby.dsn(name)}, callbacks=())
    project.write_playbook("info.yml", INFO_PLAYBOOK)
    out = tmp_path / "events.json"
    project.run("info.yml", "-e", "out=%s" % out)
    result = json.loads(out.read_text())
    assert result["read_from"]["server"] == "replica", result["read_from"]
    assert "seen-by-the-info-module" in {event["run_id"] for event in result["change_events"]}

    standby.stop()
    try:
        completed = project.run("info.yml", "-e", "out=%s" % out)
    finally:
        standby.start()
    result = json.loads(out.read_text())
    assert result["read_from"]["server"] == "primary" and "is unreachable" in result["read_from"]["reason"]
    assert "reading from the primary: the read replica" in completed.stdout
    assert standby.password not in completed.stdout and standby.password not in out.read_text()


# -- the change register (issue 21 (c)): generated from the replica, and it says so --------------------------------
REGISTER_PLAYBOOK = """
- name: Publish the change register as the CAB's job does
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The register
      changeops.itsm.change_register:
        path: "{{ html }}"
        json_path: "{{ data }}"
      register: published
    - name: Keep what the module reported
      ansible.builtin.copy:
        content: "{{ published | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def _publish(project, tmp_path, label, env=None):
    paths = {name: tmp_path / ("%s-%s" % (label, name)) for name in ("register.html", "register.json", "result.json")}
    completed = project.run("register.yml", "-e", "html=%s" % paths["register.html"], "-e",
                            "data=%s" % paths["register.json"], "-e", "out=%s" % paths["result.json"], env=env)
    return (completed, json.loads(paths["result.json"].read_text()), json.loads(paths["register.json"].read_text()),
            paths["register.html"].read_text())


def test_the_change_register_is_read_from_the_replica_and_says_which_server_it_read(clusters, tmp_path):
    from support.project import Project

    primary, standby, name = clusters
    with open_system_of_record({"backend": "postgresql", "postgresql_dsn": primary.dsn(name)}) as writer:
        record_run(writer, "in-the-replica-register")
        wait_until_replayed(standby, name, writer.head()[0])
    project = Project(tmp_path / "project", {"CHANGEOPS_BACKEND": "postgresql",
                                             "CHANGEOPS_POSTGRESQL_DSN": primary.dsn(name),
                                             "CHANGEOPS_POSTGRESQL_READ_DSN": standby.dsn(name)}, callbacks=())
    project.write_playbook("register.yml", REGISTER_PLAYBOOK)

    _completed, result, data, html = _publish(project, tmp_path, "caught-up")
    assert result["read_from"]["server"] == "replica", result["read_from"]
    assert data["read_from"]["server"] == "replica" and data["read_from"]["lag_seconds"] is not None
    assert "in-the-replica-register" in {row["run_id"] for row in data["rows"]}
    assert 'data-server="replica"' in html and "read from the read replica" in html and ", lag " in html
    assert data["verification"]["valid"], data["verification"]

    # the replica behind by more than allowed: read from the primary, which has the new run, and the page says why
    standby_sql(standby, "SELECT pg_wal_replay_pause()")
    try:
        with open_system_of_record({"backend": "postgresql", "postgresql_dsn": primary.dsn(name)}) as writer:
            record_run(writer, "only-on-the-primary")
        completed, result, data, html = _publish(project, tmp_path, "lagging",
                                                 env={"CHANGEOPS_POSTGRESQL_READ_MAX_LAG": "0"})
    finally:
        standby_sql(standby, "SELECT pg_wal_replay_resume()")
    assert result["read_from"]["server"] == "primary" and "lags" in result["read_from"]["reason"], result
    assert "only-on-the-primary" in {row["run_id"] for row in data["rows"]}
    assert 'data-server="primary"' in html and "reading from the primary: the read replica" in html
    assert "reading from the primary: the read replica" in completed.stdout

    # the replica down: read from the primary, said in the warning, the result and the page, never its password
    standby.stop()
    try:
        completed, result, data, html = _publish(project, tmp_path, "down")
    finally:
        standby.start()
    assert result["read_from"]["server"] == "primary" and "is unreachable" in result["read_from"]["reason"]
    assert "is unreachable" in html
    for text in (completed.stdout, html, json.dumps(data), json.dumps(result)):
        assert standby.password not in text
    with open_system_of_record({"backend": "postgresql", "postgresql_dsn": primary.dsn(name)}) as writer:
        wait_until_replayed(standby, name, writer.head()[0])


class _Display(object):
    def __init__(self):
        self.warnings = []

    def warning(self, message):
        self.warnings.append(message)

    def vv(self, message):
        pass


def test_the_recorders_register_refresh_reads_the_replica_only_once_it_has_replayed_the_run(clusters, tmp_path):
    """The refresh after a run must show that run: a replica that has not replayed it (replay paused here) is
    waited for briefly, then the primary is read, with a warning."""
    from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.post_run.refresh_register import (
        refresh_change_register,
    )

    primary, standby, name = clusters
    # the recorder's writer: it has the replica in its configuration but is no reader itself
    config = {"backend": "postgresql", "postgresql_dsn": primary.dsn(name), "postgresql_read_dsn": standby.dsn(name),
              "postgresql_read_max_lag": 3600}
    options = {"register_path": str(tmp_path / "register.html"), "register_json_path": str(tmp_path / "register.json")}

    with open_system_of_record(config) as writer:
        record_run(writer, "refreshed-from-the-replica")
        display = _Display()
        refresh_change_register(writer, "refreshed-from-the-replica", options, display)
        data = json.loads((tmp_path / "register.json").read_text())
        assert data["read_from"]["server"] == "replica", (data["read_from"], display.warnings)
        assert "refreshed-from-the-replica" in {row["run_id"] for row in data["rows"]}
        assert display.warnings == []

        standby_sql(standby, "SELECT pg_wal_replay_pause()")
        try:
            record_run(writer, "not-replayed-yet")
            display = _Display()
            refresh_change_register(writer, "not-replayed-yet", options, display)
        finally:
            standby_sql(standby, "SELECT pg_wal_replay_resume()")
        data = json.loads((tmp_path / "register.json").read_text())
        assert data["read_from"]["server"] == "primary", data["read_from"]
        assert "has not replayed entry %d yet" % writer.head()[0] in data["read_from"]["reason"]
        assert "not-replayed-yet" in {row["run_id"] for row in data["rows"]}
        assert any("has not replayed entry" in warning for warning in display.warnings), display.warnings
        wait_until_replayed(standby, name, writer.head()[0])


def test_the_projection_check_on_the_replica_reads_the_archived_state_there_too(clusters, tmp_path):
    """A reader checking the query tables (the change register's check) reads the archive point, the entries and
    the tables from the replica, and so the archived state too: a replica one archive behind is not reported as an
    edited state (the state used to be read from the primary)."""
    import sys
    import os

    from support import postgresql_server
    from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "unit"))
    import test_ledger_archive as archives  # (its ledger shapes and archive helper)

    primary, standby, _shared = clusters
    name = postgresql_server.create_database(primary, prefix="changeops_replica_archive")
    key = str(tmp_path / "keys" / "checkpoint.key")
    checkpoints.generate_key(key)
    settings = {"checkpoint_key": key, "witness_file": str(tmp_path / "witness.jsonl"), "witness_syslog": "false"}
    with open_system_of_record({"backend": "postgresql", "postgresql_dsn": primary.dsn(name)}) as writer:
        archives.record_run(writer, "run-2023", "2023-05-01T10:00:00.000000Z")
        archives.record_run(writer, "run-2024", archives.OLD % 1)
        archives.record_run(writer, "run-2026", archives.NEW % 1)
        archives.archive(writer, settings, tmp_path / "archives", older_than="2024-01-01T00:00:00Z")
        wait_until_replayed(standby, name, writer.head()[0])
        with reader(primary, standby, name, postgresql_read_max_lag=3600) as sor:
            report = sor.verify(projections=True)
            assert report.valid and sor.read_source()["server"] == "replica", report.summary()
        standby_sql(standby, "SELECT pg_wal_replay_pause()")
        try:
            archives.archive(writer, settings, tmp_path / "archives")  # not replayed by the standby yet
            with reader(primary, standby, name, postgresql_read_max_lag=3600) as sor:
                report = sor.verify(projections=True)
                assert sor.read_source()["server"] == "replica"
                assert report.valid, report.projection_problems
        finally:
            standby_sql(standby, "SELECT pg_wal_replay_resume()")
