# -*- coding: utf-8 -*-
"""A record auditors can trust, with real ansible-playbook runs on both backends.

* A value that reached the ledger (a deploy marker a command printed and a config file's diff held)
  is removed by ``changeops.itsm.ledger_redact`` from every byte the collection keeps: the ledger
  (SQLite's file, WAL and shared memory; PostgreSQL's rows, a ``pg_dump`` and the table files after
  the compaction), the spool, the HTML register and its JSON, and the scratch database ``ledger_verify``'s
  projection check replays the ledger into in the temporary directory (copied before the module removes it:
  ``support/scratch_capture``; the same check before the redaction finds the value there, so the scan can
  fail). ``ledger_verify`` still passes and lists the redaction; the module is idempotent and honours check
  mode.
* A secret an older recorder let through (the committed schema-3 ledger's planted password) is found by
  ``ledger_verify scan_secrets: true``, removed by ``ledger_redact`` fed with the scan's findings as they
  are, and is then in no stored byte while the ledger verifies and lists the redaction, nor in the scratch
  database of the projection check after the redaction (the scan's own check, before it, holds it).
* The recorder signs a checkpoint after every run and hands it to the file witness. A history
  rewritten consistently with the collection's own code, or cut short, is reported by
  ``ledger_verify`` from that witness alone.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess

import pytest

from support.ledger_fixture import STDOUT_LEAK, load_fixture
from support.raw_ledger import raw_ledger_connection
from support.scratch_capture import capture_env, captured_scratch_dirs

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool import target_key

pytestmark = [pytest.mark.integration]

PLANTED = "Kx93-planted-4d1e0c"

LEAK_PLAYBOOK = """
- hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Print the deploy marker
      ansible.builtin.command: echo "deploy marker %(planted)s ready"
      changed_when: true

    - name: Write the config that holds it
      ansible.builtin.copy:
        dest: "{{ workdir }}/app.conf"
        content: "listen 8080\\nmarker %(planted)s\\n"
        mode: "0600"
""" % {"planted": PLANTED}

REDACT_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Redact what the review found
      changeops.itsm.ledger_redact:
        redactions: "{{ findings }}"
        reason: "INC-4711: deploy marker is a credential"
      register: redaction

    - name: Verify the ledger
      changeops.itsm.ledger_verify:
        fail_on_broken: false
      register: verification

    - name: Keep the answers
      ansible.builtin.copy:
        content: "{{ {'redaction': redaction, 'verification': verification} | to_json }}"
        dest: "{{ playbook_dir }}/answers.json"
        mode: "0600"
      check_mode: false
"""

VERIFY_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Verify the ledger
      changeops.itsm.ledger_verify:
        fail_on_broken: false
      register: verification

    - name: Keep the answer
      ansible.builtin.copy:
        content: "{{ verification | to_json }}"
        dest: "{{ playbook_dir }}/verification.json"
        mode: "0600"
"""


def answers(project, name="answers.json"):
    with open(project.path(name)) as handle:
        return json.load(handle)


def findings_of(sor):
    """What a reviewer (or a secret scan) would hand ledger_redact: entry and field, never the value."""
    findings = []
    for entry in sor.iter_entries(kinds=["run.result"]):
        for field, value in sorted((entry.data.get("result") or {}).items()):
            if PLANTED in json.dumps(value):
                findings.append({"seq": entry.seq, "field": "result.%s" % field})
        for index, diff in enumerate(entry.data.get("diff") or []):
            if PLANTED in json.dumps(diff):
                findings.append({"seq": entry.seq, "path": "diff[%d].after" % index})
    return findings


def files_holding(paths, needle):
    holding = []
    for path in paths:
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                if needle.encode() in handle.read():
                    holding.append(path)
    return holding


def all_files(root):
    return [path for path in glob.glob(os.path.join(root, "**"), recursive=True) + glob.glob(
        os.path.join(root, "**", ".*"), recursive=True) if os.path.isfile(path)]


def postgresql_bytes(sor, backend_env):
    """The database as pg_dump writes it, and the table files of the session's own server (when it is ours)."""
    from support import postgresql_server

    dump = subprocess.run(["pg_dump", "--no-owner", "--dbname", backend_env["CHANGEOPS_POSTGRESQL_DSN"]],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout
    server = postgresql_server._SESSION_SERVER
    table_files = []
    if getattr(server, "data_dir", None):
        conn = raw_ledger_connection(sor, backend_env)
        try:
            conn.execute("CHECKPOINT")
            for table in ("ledger", "task_results", "change_events"):
                relative = conn.execute("SELECT pg_relation_filepath(?)", (table,)).fetchone()[0]
                table_files.extend(glob.glob(os.path.join(server.data_dir, relative + "*")))
        finally:
            conn.close()
    return dump, table_files


def test_a_redacted_value_leaves_every_stored_byte_and_the_ledger_still_verifies(
        project, backend_env, open_sor, tmp_path):
    register = tmp_path / "register" / "index.html"
    register_json = tmp_path / "register" / "register.json"
    register.parent.mkdir()
    project.write_cfg("""
        [callback_change_recorder]
        register_path = %s
        register_json_path = %s
        """ % (register, register_json))
    workdir = tmp_path / "work"
    workdir.mkdir()
    project.write_playbook("leak.yml", LEAK_PLAYBOOK)
    project.write_playbook("redact.yml", REDACT_PLAYBOOK)
    project.write_playbook("verify.yml", VERIFY_PLAYBOOK)
    project.run("leak.yml", "--diff", "-e", "workdir=%s" % workdir)
    sor = open_sor()
    findings = findings_of(sor)
    assert sorted(item.get("field") or item.get("path") for item in findings) == [
        "diff[0].after", "result.cmd", "result.stdout"], findings

    # a copy of the leaking entry left in the spool (a batch the ledger once refused, set aside for a person)
    leaking = sor.get_entry(str(findings[0]["seq"]))
    spool = os.path.join(project.spool_dir, target_key(sor.config))
    os.makedirs(spool, exist_ok=True)
    with open(os.path.join(spool, "00000000000000000001-00000001-000001.jsonl.rejected"), "w") as handle:
        handle.write(json.dumps({"id": leaking.id, "at": leaking.at, "kind": leaking.kind, "subject": leaking.subject,
                                 "actor": leaking.actor, "data": leaking.data}, sort_keys=True) + "\n")

    ledger_files = []
    if backend_env["CHANGEOPS_BACKEND"] == "sqlite":
        ledger_files = [backend_env["CHANGEOPS_SQLITE_PATH"] + suffix for suffix in ("", "-wal", "-shm")]
    elsewhere = [str(register), str(register_json)] + all_files(project.spool_dir)
    assert files_holding(elsewhere, PLANTED) and (
        files_holding(ledger_files, PLANTED) if ledger_files else PLANTED in postgresql_bytes(sor, backend_env)[0].decode())

    # the projection check's scratch database, in a temporary directory the test reads: before the redaction
    # the replayed query tables hold the value (the control: the scan below can fail)
    scratch_env = capture_env(tmp_path / "tmp", tmp_path / "scratch-before")
    project.run("verify.yml", env=scratch_env)
    assert answers(project, "verification.json")["verification"]["projections_checked"] is True
    captured = captured_scratch_dirs(scratch_env["SCRATCH_CAPTURE_DIR"])
    assert captured and files_holding(all_files(captured[0]), PLANTED), captured

    # check mode: reported, nothing written
    before = sor.get_entry(str(findings[0]["seq"])).data
    project.run("redact.yml", "--check", "--diff", "-e", json.dumps({"findings": findings}))
    dry = answers(project)["redaction"]
    assert dry["changed"] is True and len(dry["redacted"]) == 3 and dry["redacted"][0]["redacted_by"] is None
    assert PLANTED not in json.dumps(dry)
    assert sor.get_entry(str(findings[0]["seq"])).data == before

    scratch_env = capture_env(tmp_path / "tmp", tmp_path / "scratch-after")
    output = project.run("redact.yml", "--diff", "-e", json.dumps({"findings": findings}), env=scratch_env).stdout
    assert PLANTED not in output
    result = answers(project)
    redaction, verification = result["redaction"], result["verification"]["verification"]
    assert redaction["changed"] is True and redaction["spool_files_scrubbed"], redaction
    assert redaction["register"]["regenerated"] is True
    assert sorted(item["field"] for item in redaction["redacted"]) == ["diff[0]", "result.cmd", "result.stdout"]
    assert verification["valid"] is True, verification["summary"]
    assert sorted(item["field"] for item in verification["redactions"]) == ["diff[0]", "result.cmd", "result.stdout"]
    assert {item["reason"] for item in verification["redactions"]} == {"INC-4711: deploy marker is a credential"}
    assert "3 fields redacted" in verification["summary"]

    # gone from every byte the collection keeps
    sor.close()
    assert files_holding(elsewhere + all_files(project.spool_dir), PLANTED) == []
    if ledger_files:
        assert files_holding(ledger_files, PLANTED) == []
    else:
        dump, table_files = postgresql_bytes(sor, backend_env)
        assert PLANTED.encode() not in dump
        assert files_holding(table_files, PLANTED) == []
        assert files_holding(table_files, leaking.id), "the table files were read"
    assert PLANTED not in register.read_text() and "redacted by ledger entry" in register_json.read_text()
    # and from the bytes the projection check wrote to the temporary directory (its replay of the redacted
    # ledger), which it removed again
    assert verification["projections_checked"] is True
    captured = captured_scratch_dirs(scratch_env["SCRATCH_CAPTURE_DIR"])
    assert captured and all(all_files(path) for path in captured), captured
    assert files_holding([path for directory in captured for path in all_files(directory)], PLANTED) == []
    assert all_files(scratch_env["TMPDIR"]) == []

    # idempotent
    project.run("redact.yml", "-e", json.dumps({"findings": findings}))
    again = answers(project)["redaction"]
    assert again["changed"] is False and len(again["already_redacted"]) == 3


SCAN_AND_REDACT_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Find the secrets older versions let through
      changeops.itsm.ledger_verify:
        scan_secrets: true
      register: scan

    - name: Remove what the scan found
      changeops.itsm.ledger_redact:
        secret_findings: "{{ scan.secret_scan.findings }}"
        reason: "SEC-77: secrets found by the ledger scan"
      register: redaction

    - name: Verify and scan again
      changeops.itsm.ledger_verify:
        scan_secrets: true
      register: after

    - name: Keep the answers
      ansible.builtin.copy:
        content: "{{ {'scan': scan, 'redaction': redaction, 'after': after} | to_json }}"
        dest: "{{ playbook_dir }}/answers.json"
        mode: "0600"
      check_mode: false
"""


def test_a_secret_an_old_recorder_let_through_is_found_by_the_scan_and_removed_by_its_findings(
        project, backend_env, open_sor, tmp_path):
    load_fixture(backend_env)
    sor = open_sor()  # schema 3 upgraded through the replay (4), policies (5) and entry format 2 (6)
    [planted] = [entry for entry in sor.iter_entries(kinds=["run.result"])
                 if STDOUT_LEAK in json.dumps(entry.data.get("result"))]
    assert planted.format == 1, "an entry as the old recorder sealed it"
    project.write_playbook("clean.yml", SCAN_AND_REDACT_PLAYBOOK)

    scratch_env = capture_env(tmp_path / "tmp", tmp_path / "scratch")
    output = project.run("clean.yml", env=scratch_env).stdout
    assert STDOUT_LEAK not in output
    result = answers(project)
    scan, redaction, after = result["scan"], result["redaction"], result["after"]
    assert sorted((item["seq"], item["field"]) for item in scan["secret_scan"]["findings"]) == [
        (planted.seq, "result.cmd"), (planted.seq, "result.stdout")], scan["secret_scan"]
    assert redaction["changed"] is True and redaction["not_redactable"] == []
    assert sorted((item["seq"], item["field"]) for item in redaction["redacted"]) == [
        (planted.seq, "result.cmd"), (planted.seq, "result.stdout")]
    verification = after["verification"]
    assert verification["valid"] is True and verification["projections_checked"], verification["summary"]
    assert sorted((item["seq"], item["field"], item["reason"]) for item in verification["redactions"]) == [
        (planted.seq, "result.cmd", "SEC-77: secrets found by the ledger scan"),
        (planted.seq, "result.stdout", "SEC-77: secrets found by the ledger scan")]
    assert after["secret_scan"]["findings_total"] == 0, after["secret_scan"]
    assert STDOUT_LEAK not in json.dumps(result), "no report repeats the secret"

    # in no stored byte: the ledger's rows, SQLite's file, WAL and shared memory, or PostgreSQL's dump
    # and table files (the recorder wrote this run's entries meanwhile, none holding it either)
    sor.close()
    if backend_env["CHANGEOPS_BACKEND"] == "sqlite":
        ledger_files = [backend_env["CHANGEOPS_SQLITE_PATH"] + suffix for suffix in ("", "-wal", "-shm")]
        assert files_holding(ledger_files, planted.id), "the ledger files were read"
        assert files_holding(ledger_files, STDOUT_LEAK) == []
    else:
        dump, table_files = postgresql_bytes(sor, backend_env)
        assert planted.id.encode() in dump and STDOUT_LEAK.encode() not in dump
        assert files_holding(table_files, STDOUT_LEAK) == []
    assert files_holding(all_files(project.spool_dir), STDOUT_LEAK) == []
    # nor in what the projection checks wrote to the temporary directory: the scan's, before the redaction,
    # replayed the secret (the control), the one after it did not
    captured = captured_scratch_dirs(scratch_env["SCRATCH_CAPTURE_DIR"])
    assert len(captured) == 2, captured
    assert files_holding(all_files(captured[0]), STDOUT_LEAK)
    assert all_files(captured[1]) and files_holding(all_files(captured[1]), STDOUT_LEAK) == []
    assert all_files(scratch_env["TMPDIR"]) == []

    # again: nothing left to find, nothing to do
    project.run("clean.yml")
    again = answers(project)
    assert again["scan"]["secret_scan"]["findings"] == [] and again["redaction"]["changed"] is False


def _key(project, tmp_path):
    key = str(tmp_path / "keys" / "checkpoint.key")
    checkpoints.generate_key(key)
    project.write_cfg("""
        [changeops]
        checkpoint_key = %s
        """ % key)
    return key


def _rewrite_from(sor, backend_env, seq, change):
    """Edit entry ``seq``, commit and hash it and every later entry again, and rebuild the query tables,
    all with the collection's own code: what a forger with write access to the database does."""
    entries = list(sor.iter_entries())
    target = entries[seq - 1]
    data = json.loads(json.dumps(target.data))
    change(data)
    target.data = data
    prev_hash = entries[seq - 2].hash
    conn = raw_ledger_connection(sor, backend_env)
    try:
        for entry in entries[seq - 1:]:
            entry.seal(entry.seq, prev_hash)
            prev_hash = entry.hash
            conn.execute("UPDATE ledger SET data = ?, prev_hash = ?, hash = ?, salt = ?, payload_root = ? WHERE seq = ?",
                         (entry.data_json(), entry.prev_hash, entry.hash, entry.salt, entry.payload_root, entry.seq))
    finally:
        conn.close()
    with sor._write_transaction() as cursor:
        sor._replay_ledger(cursor)


@pytest.mark.tampers_query_tables
@pytest.mark.parametrize("attack", ["rewrite", "truncate"])
def test_ledger_verify_reports_a_forged_history_from_the_recorders_checkpoints(
        project, backend_env, open_sor, tmp_path, attack):
    _key(project, tmp_path)
    workdir = tmp_path / "work"
    workdir.mkdir()
    project.write_inventory(["web01", "web02"])
    project.write_playbook("leak.yml", LEAK_PLAYBOOK)
    project.write_playbook("verify.yml", VERIFY_PLAYBOOK)
    project.run("leak.yml", "-e", "workdir=%s" % workdir)
    project.run("leak.yml", "-e", "workdir=%s" % workdir)
    witness = project.witness_file
    with open(witness) as handle:
        witnessed = [json.loads(line) for line in handle]
    assert len(witnessed) == 2 and all(record["signature"] for record in witnessed)

    project.run("verify.yml")
    verification = answers(project, "verification.json")["verification"]
    assert verification["valid"] is True and "signed checkpoint" in verification["summary"], verification["summary"]

    sor = open_sor()
    with open(witness) as handle:
        newest = [json.loads(line) for line in handle][-1]  # the verify run was checkpointed too
    if attack == "rewrite":
        # the first run's change to web02 becomes a no-op, and the whole chain after it is recomputed
        (target,) = [entry for entry in sor.iter_entries(kinds=["run.result"])
                     if entry.data["host"] == "web02" and entry.data["changed"]][:1]
        _rewrite_from(sor, backend_env, target.seq, lambda data: data.update(status="ok", changed=False))
    else:
        conn = raw_ledger_connection(sor, backend_env)
        try:
            conn.execute("DELETE FROM ledger WHERE seq > ?", (witnessed[0]["entry_seq"],))
        finally:
            conn.close()
        with sor._write_transaction() as cursor:
            sor._replay_ledger(cursor)
    alone = sor.verify(projections=True)
    assert alone.valid and alone.projections_checked, "the forgery is consistent on its own: %s" % alone.summary()

    project.run("verify.yml")
    verification = answers(project, "verification.json")["verification"]
    assert verification["valid"] is False
    mismatch = verification["history_mismatch"]
    if attack == "rewrite":
        assert mismatch["problem"] == "rewritten" and mismatch["seq"] == witnessed[0]["seq"]
        assert "history rewritten" in verification["summary"]
    else:
        assert mismatch["problem"] == "truncated" and mismatch["seq"] == newest["seq"]
        assert "ledger truncated" in verification["summary"]
    assert mismatch["signed"] is True


CHECKPOINT_PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Checkpoint the ledger
      changeops.itsm.ledger_checkpoint:
        checkpoint_key: "{{ key }}"
        generate_key: true
      register: checkpoint

    - name: Keep the answer
      ansible.builtin.copy:
        content: "{{ checkpoint | to_json }}"
        dest: "{{ playbook_dir }}/checkpoint-{{ name }}.json"
        mode: "0600"
      check_mode: false
"""


@pytest.mark.backends("sqlite")
def test_ledger_checkpoint_makes_its_key_honours_check_mode_and_is_idempotent(project, open_sor, tmp_path):
    # the module alone, without the recorder's own checkpoints in between
    project.callbacks = []
    key = str(tmp_path / "keys" / "checkpoint.key")
    sor = open_sor()
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

    sor.append([Entry("ci.created", "ci-1", {"ci_id": "ci-1", "identities": {},
                                             "attributes": {"name": "web01", "class": "server"}})])
    project.write_playbook("checkpoint.yml", CHECKPOINT_PLAYBOOK)

    project.run("checkpoint.yml", "--check", "--diff", "-e", "key=%s" % key, "-e", "name=dry")
    dry = answers(project, "checkpoint-dry.json")
    assert dry["changed"] is True and dry["would_checkpoint"]["seq"] == 1 and dry["key"]["generated"] is True
    assert not os.path.exists(key) and sor.head()[0] == 1

    project.run("checkpoint.yml", "--diff", "-e", "key=%s" % key, "-e", "name=first")
    first = answers(project, "checkpoint-first.json")
    assert first["changed"] is True and first["key"]["generated"] is True
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    assert first["checkpoint"]["signed"] is True and first["checkpoint"]["seq"] == 1
    assert [item["delivered"] for item in first["witnesses"]] == [1]
    assert "signed by key %s" % first["key"]["key_id"] in first["diff"]["after"]

    project.run("checkpoint.yml", "-e", "key=%s" % key, "-e", "name=again")
    again = answers(project, "checkpoint-again.json")
    assert again["changed"] is False and again["key"]["generated"] is False
    assert again["checkpoint"] == first["checkpoint"] and sor.head()[0] == 2


@pytest.mark.backends("sqlite")
def test_witnesses_never_fail_or_hold_up_a_playbook(project, open_sor, tmp_path):
    blocked = tmp_path / "readonly"
    blocked.mkdir()
    (blocked / "checkpoints.jsonl").mkdir()  # a directory where the witness file should be: it cannot append
    project.write_cfg("""
        [changeops]
        witness_file = %s
        witness_command = /bin/false
        witness_syslog = true
        witness_syslog_address = %s
        """ % (blocked / "checkpoints.jsonl", tmp_path / "no-such-socket"))
    project.write_playbook("pb.yml", "- hosts: all_hosts\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
    completed = project.run("pb.yml")
    output = completed.stdout
    assert completed.returncode == 0
    for witness in ("file:%s" % (blocked / "checkpoints.jsonl"), "command:/bin/false", "syslog:"):
        assert "witness %s" % witness in output, output[-3000:]
    assert "offered again next time" in output
    sor = open_sor()
    assert sor.find_change_events()[0]["status"] == "successful"
    assert len(list(sor.iter_entries(kinds=["ledger.checkpoint"]))) == 1
