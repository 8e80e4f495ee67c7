# -*- coding: utf-8 -*-
"""Backup and restore of the system of record, on both backends (docs/operations.md, "Backup and restore").

* A backup taken while writers append (SQLite's online backup API; pg_dump from an exported snapshot) restores
  to a ledger that verifies, ends at the head the backup reported, and is a prefix of the live ledger.
* ``ledger_backup`` inside a recorded playbook run (the recorder writing meanwhile) through its action plugin.
* A restore to a point older than a witness's checkpoint is reported by ``ledger_verify`` as a truncation, and
  once new entries are appended to it as a rewrite: a rollback is never accepted silently.
* pg_dump gets the password in its environment, never on its command line, and its errors are scrubbed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
from ansible_collections.changeops.itsm.plugins.module_utils.change_events import LEDGER_VERIFY_SPEC, verify_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.errors import BackendUnavailable
from ansible_collections.changeops.itsm.plugins.module_utils.ledger_backup import LEDGER_BACKUP_SPEC, backup_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from support.history import record_run


def operation(function, spec, sor, check_mode=False, **params):
    values = {name: option.get("default") for name, option in spec.items()}
    values.update(params)
    with open_system_of_record(dict(sor.config)) as other:
        return function(OperationContext(other, values, check_mode=check_mode, diff=True, actor="ops@ctl"))


def restore(backup, sor, request, tmp_path):
    """Restore ``backup`` the documented way into a new place; the config that opens the restored ledger."""
    if sor.backend_name == "sqlite":
        # SQLite: the backup file is a complete ledger; copy it to where the ledger is to live
        target = str(tmp_path / ("restored-%s.sqlite" % os.path.basename(backup)))
        shutil.copyfile(backup, target)
        return {"backend": "sqlite", "sqlite_path": target}
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from support import postgresql_server

    server = postgresql_server.session_server(request)
    name = postgresql_server.create_database(server, prefix="changeops_restore")
    request.addfinalizer(lambda: postgresql_server.drop_database(server, name))
    dsn = server.dsn(name)
    params = conninfo_to_dict(dsn)
    environment = dict(os.environ, PGPASSWORD=str(params.pop("password", "")))
    subprocess.run([shutil.which("pg_restore"), "--no-owner", "--exit-on-error", "--dbname=%s" % make_conninfo(
        "", **params), backup], env=environment, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return {"backend": "postgresql", "postgresql_dsn": dsn}


def verified(config, **kwargs):
    with open_system_of_record(config) as restored:
        return restored.verify(**kwargs)


def test_a_backup_taken_while_writers_append_restores_to_a_ledger_that_verifies(sor, request, tmp_path):
    record_run(sor, "run-0")
    stop = threading.Event()
    failures = []

    def writer():
        with open_system_of_record(dict(sor.config)) as own:
            number = 0
            while not stop.is_set():
                number += 1
                try:
                    record_run(own, "busy-%d" % number, results=20)
                except Exception as exc:  # pylint: disable=broad-except
                    failures.append(exc)
                    return

    thread = threading.Thread(target=writer)
    thread.start()
    backups = []
    try:
        for number in range(2):
            dest = str(tmp_path / ("backup-%d" % number))
            result = operation(backup_ledger, LEDGER_BACKUP_SPEC, sor, dest=dest)
            assert result["changed"] and result["head"]["seq"] > 0, result
            backups.append(result)
    finally:
        stop.set()
        thread.join(timeout=300)
    assert not failures, failures
    assert not thread.is_alive()
    for result in backups:
        assert oct(os.stat(result["dest"]).st_mode & 0o777) == oct(0o600)
        if sor.backend_name == "sqlite":
            assert result["verified"] is True and result["verify"]["head_seq"] == result["head"]["seq"], result
        else:
            assert result["verified"] is None and "pg_restore" in result["msg"], result
        report = verified(restore(result["dest"], sor, request, tmp_path), projections=True)
        assert report.valid, report.to_dict()
        assert (report.head_seq, report.head_hash) == (result["head"]["seq"], result["head"]["hash"])
        # a prefix of the live ledger: the live one still has that entry with that hash
        assert sor.hashes_at([result["head"]["seq"]]) == {result["head"]["seq"]: result["head"]["hash"]}
    assert sor.head()[0] > backups[0]["head"]["seq"], "the writer went on while the backups were taken"


def test_an_existing_backup_is_kept_unless_forced_and_check_mode_writes_nothing(sor, tmp_path):
    record_run(sor, "run-1")
    dest = str(tmp_path / "ledger.backup")
    predicted = operation(backup_ledger, LEDGER_BACKUP_SPEC, sor, check_mode=True, dest=dest)
    assert predicted["changed"] and not os.path.exists(dest) and "would write" in predicted["msg"]
    first = operation(backup_ledger, LEDGER_BACKUP_SPEC, sor, dest=dest)
    assert first["changed"] and os.path.exists(dest) and not os.path.exists(dest + ".partial")
    record_run(sor, "run-2")
    again = operation(backup_ledger, LEDGER_BACKUP_SPEC, sor, dest=dest)
    assert not again["changed"] and "kept" in again["msg"]
    forced = operation(backup_ledger, LEDGER_BACKUP_SPEC, sor, dest=dest, force=True)
    assert forced["changed"] and forced["head"]["seq"] > first["head"]["seq"]
    assert forced["sha256"] != first["sha256"]


def test_a_backup_into_a_missing_directory_names_it(sor, tmp_path):
    from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError

    dest = str(tmp_path / "nowhere" / "ledger.backup")
    with pytest.raises(ValidationError, match="dest: the directory of %s does not exist" % dest):
        operation(backup_ledger, LEDGER_BACKUP_SPEC, sor, dest=dest)


@pytest.fixture
def settings(tmp_path):
    key = str(tmp_path / "keys" / "checkpoint.key")
    checkpoints.generate_key(key)
    return {"checkpoint_key": key, "witness_file": str(tmp_path / "witness.jsonl"), "witness_syslog": "false"}


def ledger_verify(config, settings, **params):
    values = {name: option.get("default") for name, option in LEDGER_VERIFY_SPEC.items()}
    values.update(settings, fail_on_broken=False, **params)
    with open_system_of_record(config) as restored:
        return verify_ledger(OperationContext(restored, values, actor="auditor@ctl"))["verification"]


def test_a_restore_to_an_older_point_is_reported_as_a_rollback_against_the_witness(sor, request, tmp_path, settings):
    record_run(sor, "run-1")
    backup = operation(backup_ledger, LEDGER_BACKUP_SPEC, sor, dest=str(tmp_path / "before-run-2"))
    record_run(sor, "run-2")
    signed = operation(checkpoints.checkpoint_ledger, checkpoints.LEDGER_CHECKPOINT_SPEC, sor, **settings)
    assert signed["changed"], signed
    assert ledger_verify(dict(sor.config), settings)["valid"]

    restored = restore(backup["dest"], sor, request, tmp_path)
    # the restored ledger is intact as a chain...
    assert verified(restored).valid
    # ...but the witness holds a checkpoint of an entry it no longer has: a rollback, reported
    verification = ledger_verify(restored, settings)
    assert not verification["valid"]
    assert verification["history_mismatch"]["problem"] == "truncated", verification
    assert verification["history_mismatch"]["seq"] > backup["head"]["seq"]

    # writing on after the restore does not hide it: the witness's entry now has another hash
    with open_system_of_record(restored) as writable:
        record_run(writable, "run-3", results=10)
    verification = ledger_verify(restored, settings)
    assert not verification["valid"]
    assert verification["history_mismatch"]["problem"] == "rewritten", verification


@pytest.mark.backends("postgresql")
def test_pg_dump_gets_the_password_in_its_environment_and_its_errors_are_scrubbed(sor, tmp_path):
    from psycopg.conninfo import conninfo_to_dict

    password = conninfo_to_dict(sor.config["postgresql_dsn"]).get("password")
    assert password, "the test server's DSN carries a password"
    seen = tmp_path / "seen"
    fake = tmp_path / "pg_dump"
    fake.write_text("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s\nenv > %s.env\necho \"connection to $PGPASSWORD failed\" >&2"
                    "\nexit 2\n" % (seen, seen))
    fake.chmod(0o700)
    with pytest.raises(BackendUnavailable) as raised:
        operation(backup_ledger, LEDGER_BACKUP_SPEC, sor, dest=str(tmp_path / "dump"), pg_dump_path=str(fake))
    assert "pg_dump of" in str(raised.value) and "exit 2" in str(raised.value)
    assert password not in str(raised.value)
    assert password not in seen.read_text(), "the password must not be on pg_dump's command line"
    assert "PGPASSWORD=%s" % password in (tmp_path / "seen.env").read_text()
    assert not os.path.exists(str(tmp_path / "dump")) and not os.path.exists(str(tmp_path / "dump.partial"))


BACKUP_PLAYBOOK = """
- name: Work recorded while the ledger is backed up
  hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Work before the backup
      ansible.builtin.command: "true"
      changed_when: true
      loop: "{{ range(20) | list }}"
    - name: Back up the system of record in the middle of the run
      changeops.itsm.ledger_backup:
        dest: "{{ backup_dest }}"
      register: backup
    - name: Work after the backup
      ansible.builtin.command: "true"
      changed_when: true
      loop: "{{ range(20) | list }}"
    - name: Keep what the backup reported
      ansible.builtin.copy:
        content: "{{ backup | to_json }}"
        dest: "{{ backup_dest }}.json"
        mode: "0600"
"""


def test_a_backup_during_a_recorded_run_restores_to_a_ledger_that_verifies(project, open_sor, request, tmp_path):
    import json

    project.write_playbook("backup.yml", BACKUP_PLAYBOOK)
    dest = str(tmp_path / "during-run.backup")
    project.run("backup.yml", "-e", "backup_dest=%s" % dest)
    with open(dest + ".json") as handle:
        result = json.load(handle)
    assert result["changed"] and result["head"]["seq"] >= 1, result
    sor = open_sor()
    live = sor.verify()
    assert live.valid and live.head_seq > result["head"]["seq"], "the run's later tasks were recorded after it"
    report = verified(restore(dest, sor, request, tmp_path))
    assert report.valid and report.head_hash == result["head"]["hash"], report.to_dict()
