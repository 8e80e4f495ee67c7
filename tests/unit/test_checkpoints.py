# -*- coding: utf-8 -*-
"""Signed checkpoints and witnesses on both backends: a history rewritten consistently (with the collection's
own code: payload committed anew, every later hash recomputed, query tables rebuilt) or cut short verifies
on its own, and is reported from the witnesses' checkpoints alone."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from support.raw_ledger import raw_ledger_connection

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints, witnesses
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError, ConflictError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

RUN = "run-cp"


def record_run(sor, run_id=RUN, hosts=("web01", "web02", "web03")):
    entries = [Entry("run.started", run_id, {"run_id": run_id, "started_at": "2026-11-23T10:00:00.000000Z",
                                             "user": "ops", "controller": "ctl", "playbooks": ["site.yml"]}),
               Entry("run.play", run_id, {"run_id": run_id, "play_id": "p1", "name": "web", "hosts": list(hosts)})]
    for host in hosts:
        entries.append(Entry("run.result", run_id, {
            "run_id": run_id, "play_id": "p1", "host": host, "item": None, "status": "changed", "changed": True,
            "task": {"name": "deploy", "action": "ansible.builtin.copy", "uuid": "t1"}, "result": {"dest": "/x"}}))
    entries.append(Entry("run.finished", run_id, {"run_id": run_id, "outcome": "successful"}))
    sor.append(entries)


@pytest.fixture
def settings(tmp_path):
    key = str(tmp_path / "keys" / "checkpoint.key")
    checkpoints.generate_key(key)
    return checkpoints.resolve_settings({"checkpoint_key": key, "witness_file": str(tmp_path / "witness.jsonl"),
                                         "witness_syslog": "false"}, environ={})


def checkpoint(sor, settings):
    entry = checkpoints.make_checkpoint(sor, settings, "ops@ctl")
    fed = witnesses.feed_witnesses(sor, settings)
    assert all(item["error"] is None for item in fed), fed
    return entry


def verify(sor, settings, projections=True):
    fresh = open_system_of_record(dict(sor.config))
    try:
        anchors, info = checkpoints.witness_anchors(fresh, settings)
        report = fresh.verify(projections=projections, anchors=anchors)
        report.checkpoints = info
        return report
    finally:
        fresh.close()


def rows(sor):
    return list(sor.iter_entries())


def write_back(sor, backend_env, entries):
    """Store rewritten entries over the old rows (what someone with write access to the database can do)."""
    conn = raw_ledger_connection(sor, backend_env)
    try:
        for entry in entries:
            conn.execute("UPDATE ledger SET data = ?, prev_hash = ?, hash = ?, salt = ?, payload_root = ? WHERE seq = ?",
                         (entry.data_json(), entry.prev_hash, entry.hash, entry.salt, entry.payload_root, entry.seq))
    finally:
        conn.close()


def rebuild_query_tables(sor):
    """The collection's own replay of the ledger into its query tables (what a schema migration runs)."""
    with sor._write_transaction() as cursor:
        sor._replay_ledger(cursor)


def rewrite_history(sor, backend_env, seq, change):
    """Edit entry ``seq`` with ``change(data)`` and recompute it and every later hash, as the collection seals."""
    entries = rows(sor)
    target = entries[seq - 1]
    data = json.loads(json.dumps(target.data))
    change(data)
    target.data = data
    prev_hash = entries[seq - 2].hash if seq > 1 else "0" * 64
    for entry in entries[seq - 1:]:
        entry.seal(entry.seq, prev_hash)
        prev_hash = entry.hash
    write_back(sor, backend_env, entries[seq - 1:])
    rebuild_query_tables(sor)


def hide_web02(data):
    data["status"] = "ok"
    data["changed"] = False


@pytest.mark.tampers_query_tables
def test_a_consistently_rewritten_history_is_reported_from_the_checkpoints_alone(sor, backend_env, settings):
    record_run(sor)
    cp = checkpoint(sor, settings)
    assert cp.data["signature"] and cp.data["seq"] == cp.seq - 1
    record_run(sor, "run-later")
    report = verify(sor, settings)
    assert report.valid and "signed checkpoint of entry %d" % cp.data["seq"] in report.summary(), report.summary()

    target = [entry.seq for entry in rows(sor) if entry.kind == "run.result" and entry.data["host"] == "web02"][0]
    rewrite_history(sor, backend_env, target, hide_web02)

    # without the checkpoints, the forgery is perfect
    with open_system_of_record(dict(sor.config)) as fresh:
        alone = fresh.verify(projections=True)
    assert alone.valid and alone.projections_checked, alone.summary()
    assert sor.get_change_event(RUN)["changed_host_count"] == 2
    # the witness knows better
    report = verify(sor, settings)
    assert not report.valid
    mismatch = report.history_mismatch
    assert (mismatch["problem"], mismatch["seq"], mismatch["signed"]) == ("rewritten", cp.data["seq"], True)
    assert "history rewritten" in report.summary() and "signed by key" in report.summary()


@pytest.mark.tampers_query_tables
def test_signing_after_a_rewrite_neither_launders_it_nor_hides_it(sor, backend_env, settings):
    """The recorder signs the head it finds after every run: a rewrite must not become trusted that way."""
    record_run(sor)
    cp = checkpoint(sor, settings)
    rewrite_history(sor, backend_env, 3, hide_web02)
    record_run(sor, "run-after")
    with pytest.raises(ConflictError) as caught:
        checkpoints.make_checkpoint(sor, settings, "ops@ctl")
    assert "not signing" in caught.value.message and "entry %d" % cp.data["seq"] in caught.value.message
    # the forger also drops the ledger's own checkpoint entry, so the next run signs the forged head...
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("UPDATE ledger SET kind = 'run.reviewed', data = ? WHERE seq = ?",
                     (json.dumps({"run_id": RUN, "reviewer": "x", "outcome": "accepted"}), cp.seq))
    finally:
        conn.close()
    rewrite_history(sor, backend_env, cp.seq, lambda data: None)
    rebuild_query_tables(sor)
    later = checkpoint(sor, settings)
    assert later is not None and later.data["signature"]
    # ...but the witness still holds the checkpoint from before the rewrite
    report = verify(sor, settings)
    assert not report.valid
    assert (report.history_mismatch["problem"], report.history_mismatch["seq"]) == ("rewritten", cp.data["seq"])


@pytest.mark.tampers_query_tables
def test_a_cleanly_cut_tail_is_reported_from_the_checkpoints_alone(sor, backend_env, settings):
    record_run(sor)
    record_run(sor, "run-2")
    cp = checkpoint(sor, settings)
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("DELETE FROM ledger WHERE seq > 6")
    finally:
        conn.close()
    rebuild_query_tables(sor)
    with open_system_of_record(dict(sor.config)) as fresh:
        alone = fresh.verify(projections=True)
    assert alone.valid and alone.projections_checked and alone.head_seq == 6
    report = verify(sor, settings)
    assert not report.valid
    assert (report.history_mismatch["problem"], report.history_mismatch["seq"]) == ("truncated", cp.data["seq"])
    assert "ledger truncated" in report.summary()


@pytest.mark.tampers_query_tables
def test_a_history_rewritten_from_its_first_entry_is_reported(sor, backend_env, settings):
    record_run(sor)
    checkpoint(sor, settings)
    rewrite_history(sor, backend_env, 1, lambda data: data.update(user="someone-else"))
    report = verify(sor, settings)
    assert not report.valid
    assert report.history_mismatch["seq"] == 1 and "from the start" in report.summary()


def test_unsigned_checkpoints_still_catch_a_rewrite_and_say_what_they_are(sor, backend_env, tmp_path):
    settings = checkpoints.resolve_settings({"witness_file": str(tmp_path / "w.jsonl"), "witness_syslog": "false"},
                                            environ={})
    record_run(sor)
    cp = checkpoint(sor, settings)
    assert cp.data["signature"] is None
    report = verify(sor, settings)
    assert report.valid and "anyone who can write a witness can forge" in report.summary()
    rewrite_history(sor, backend_env, 3, hide_web02)
    assert verify(sor, settings, projections=False).history_mismatch["problem"] == "rewritten"


def test_forged_and_foreign_checkpoints_in_a_witness_are_not_trusted(sor, settings, tmp_path):
    record_run(sor)
    cp = checkpoint(sor, settings)
    with open(settings["witness_file"]) as handle:
        genuine = json.loads(handle.readline())
    other_key = str(tmp_path / "other.key")
    checkpoints.generate_key(other_key)
    foreign = checkpoints.checkpoint_document(sor, checkpoints.load_private_key(other_key))
    forged = dict(genuine, seq=genuine["seq"] + 100, head="f" * 64)  # claims a longer history, old signature
    unsigned = dict(genuine, seq=genuine["seq"] + 50, head="e" * 64, signature=None, key_id=None)
    other_ledger = dict(genuine, ledger="a" * 64, location="sqlite:/elsewhere", seq=999, signature=None)
    with open(settings["witness_file"], "a") as handle:
        for record in (dict(foreign, type=checkpoints.RECORD_TYPE, seq=cp.data["seq"] + 7, head="d" * 64),
                       forged, unsigned, other_ledger):
            handle.write(json.dumps(record) + "\n")
    report = verify(sor, settings)
    assert report.valid, report.summary()
    info = report.checkpoints
    assert info["other_ledgers"] == 1
    assert [anchor["seq"] for anchor in info["anchors"]] == [cp.data["seq"]]
    assert any("does not verify" in problem for problem in info["problems"])
    assert any("not among checkpoint_public_keys" in problem for problem in info["problems"])


def test_rotated_keys_keep_old_checkpoints_trusted(sor, settings, tmp_path):
    record_run(sor)
    checkpoint(sor, settings)
    new_key = str(tmp_path / "keys" / "checkpoint-2.key")
    checkpoints.generate_key(new_key)
    rotated = dict(settings, checkpoint_key=new_key,
                   checkpoint_public_keys=[settings["checkpoint_key"] + ".pub", new_key + ".pub"])
    record_run(sor, "run-2")
    cp = checkpoint(sor, rotated)
    assert cp.data["key_id"] == checkpoints.key_id(checkpoints.load_private_key(new_key).public_key())
    report = verify(sor, rotated)
    assert report.valid and report.checkpoints["anchors"][0]["seq"] == cp.data["seq"]
    # the old key alone still vouches for the older checkpoint
    old_only = dict(settings, checkpoint_public_keys=[settings["checkpoint_key"] + ".pub"])
    assert verify(sor, old_only).checkpoints["anchors"][0]["seq"] < cp.data["seq"]


def test_checkpointing_twice_adds_nothing(sor, settings):
    record_run(sor)
    assert checkpoint(sor, settings) is not None
    head = sor.head()
    assert checkpoints.make_checkpoint(sor, settings, "ops@ctl") is None
    assert witnesses.feed_witnesses(sor, settings)[0]["delivered"] == 0
    assert sor.head() == head


def test_a_failing_witness_keeps_its_cursor_and_is_fed_later(sor, settings, tmp_path):
    script = tmp_path / "ship"
    script.write_text("#!/bin/sh\ncat >> %s\nexit ${SHIP_EXIT:-0}\n" % (tmp_path / "shipped"))
    script.chmod(0o755)
    failing = checkpoints.resolve_settings(dict(settings, witness_file="none", witness_command="env SHIP_EXIT=3 %s"
                                                % script), environ={})
    record_run(sor)
    checkpoints.make_checkpoint(sor, failing, "ops@ctl")
    warnings = []
    [outcome] = witnesses.feed_witnesses(sor, failing, warn=warnings.append)
    assert outcome["delivered"] == 0 and "exited 3" in outcome["error"] and "offered again" in warnings[0]
    record_run(sor, "run-2")
    checkpoints.make_checkpoint(sor, failing, "ops@ctl")
    working = dict(failing, witness_command=str(script))
    # a new cursor name would start from the newest: the same command keeps its cursor (none yet: newest only)
    [outcome] = witnesses.feed_witnesses(sor, working)
    assert outcome["error"] is None and outcome["delivered"] == 1
    record_run(sor, "run-3")
    checkpoints.make_checkpoint(sor, working, "ops@ctl")
    record_run(sor, "run-4")
    checkpoints.make_checkpoint(sor, working, "ops@ctl")
    [outcome] = witnesses.feed_witnesses(sor, working)
    assert outcome["delivered"] == 2, "everything after the cursor, in order"
    shipped = [json.loads(line) for line in (tmp_path / "shipped").read_text().splitlines()]
    assert [record["seq"] for record in shipped] == sorted(record["seq"] for record in shipped)


def test_the_syslog_witness_sends_a_line_ledger_verify_can_read_back(sor, settings, tmp_path):
    address = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    try:
        server.settimeout(30)
        syslog_settings = checkpoints.resolve_settings(dict(settings, witness_file="none", witness_syslog="auto",
                                                            witness_syslog_address=address), environ={})
        record_run(sor)
        cp = checkpoint(sor, syslog_settings)
        message = server.recv(65536).decode()
    finally:
        server.close()
    assert message.startswith("<13>changeops-ledger[") and "CHANGEOPS-CHECKPOINT {" in message
    exported = tmp_path / "syslog"
    exported.write_text("Nov 23 10:00:00 ctl %s\n" % message[len("<13>"):])
    reading = dict(syslog_settings, checkpoint_sources=[str(exported)], witness_syslog="false")
    report = verify(sor, reading)
    assert report.valid and report.checkpoints["anchors"][0]["seq"] == cp.data["seq"]
    # no socket, auto: silently no syslog witness; true: configured, and its failure is a warning
    assert witnesses.configured_witnesses(dict(syslog_settings, witness_syslog_address=address + ".gone")) == []
    [outcome] = witnesses.feed_witnesses(sor, dict(syslog_settings, witness_syslog="true",
                                                   witness_syslog_address=address + ".gone"))
    assert outcome["delivered"] == 0 and "cannot send to the syslog socket" in outcome["error"]


def test_a_key_others_can_read_or_of_another_type_is_refused(tmp_path):
    key = str(tmp_path / "k.key")
    checkpoints.generate_key(key)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key + ".pub").st_mode) == 0o644
    with pytest.raises(ConfigurationError):
        checkpoints.generate_key(key)  # never overwritten
    os.chmod(key, 0o640)
    with pytest.raises(ConfigurationError) as caught:
        checkpoints.load_private_key(key)
    assert key in caught.value.message and "0640" in caught.value.message and "chmod 600" in caught.value.message
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = str(tmp_path / "ec.key")
    with open(other, "wb") as handle:
        handle.write(ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(other, 0o600)
    with pytest.raises(ConfigurationError) as caught:
        checkpoints.load_private_key(other)
    assert "not Ed25519" in caught.value.message and other in caught.value.message


def test_settings_resolve_argument_then_environment_then_ansible_cfg(tmp_path):
    ini = [{"witness_file": "/from/changeops.jsonl"}, {"witness_file": "/from/callback.jsonl", "witness_syslog": "no"}]
    assert checkpoints.resolve_settings({}, {}, ini)["witness_file"] == "/from/changeops.jsonl"
    assert checkpoints.resolve_settings({}, {}, ini)["witness_syslog"] == "false"
    environ = {"CHANGEOPS_WITNESS_FILE": "/from/env.jsonl", "CHANGEOPS_CHECKPOINT_PUBLIC_KEYS": "/a.pub, /b.pub"}
    resolved = checkpoints.resolve_settings({}, environ, ini)
    assert resolved["witness_file"] == "/from/env.jsonl" and resolved["checkpoint_public_keys"] == ["/a.pub", "/b.pub"]
    assert checkpoints.resolve_settings({"witness_file": "none"}, environ, ini)["witness_file"] is None
    assert checkpoints.resolve_settings({}, {"XDG_STATE_HOME": "/state"}, ())["witness_file"] == \
        "/state/changeops/checkpoints.jsonl"
    with pytest.raises(ConfigurationError) as caught:
        checkpoints.resolve_settings({}, {"CHANGEOPS_WITNESS_SYSLOG": "sometimes"}, ())
    assert "CHANGEOPS_WITNESS_SYSLOG" in caught.value.message and "sometimes" in caught.value.message


def test_a_relative_path_from_ansible_cfg_is_relative_to_its_folder(tmp_path):
    """As Ansible reads its own paths and the backend options: a run from another folder must find the same
    key and witness file (relative to the current directory, ledger_verify found no checkpoint there)."""
    cfg = tmp_path / "project" / "ansible.cfg"
    cfg.parent.mkdir()
    cfg.write_text("[changeops]\nwitness_file = state/witness.jsonl\ncheckpoint_key = keys/ckpt.key\n"
                   "checkpoint_public_keys = keys/a.pub, /abs/b.pub\n")
    ini = [{"witness_file": "state/witness.jsonl", "checkpoint_key": "keys/ckpt.key",
            "checkpoint_public_keys": "keys/a.pub, /abs/b.pub"}, {}]
    resolved = checkpoints.resolve_settings({}, {}, ini, config_file=str(cfg))
    assert resolved["witness_file"] == str(tmp_path / "project" / "state" / "witness.jsonl")
    assert resolved["checkpoint_key"] == str(tmp_path / "project" / "keys" / "ckpt.key")
    assert resolved["checkpoint_public_keys"] == [str(tmp_path / "project" / "keys" / "a.pub"), "/abs/b.pub"]
    # off stays off; arguments and the environment are not from the file
    assert checkpoints.resolve_settings({}, {}, [{"witness_file": "none"}], config_file=str(cfg))["witness_file"] is None
    assert checkpoints.resolve_settings({"witness_file": "w.jsonl"}, {}, ini, config_file=str(cfg))["witness_file"] \
        == "w.jsonl"
    # the recorder's options: Ansible leaves a string option as written and says which file it came from
    assert checkpoints.resolve_settings({"witness_file": "state/witness.jsonl"}, {}, (),
                                        origins={"witness_file": str(cfg)})["witness_file"] == resolved["witness_file"]
