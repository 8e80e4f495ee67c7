# -*- coding: utf-8 -*-
"""ServiceNow as a witness of the chain's head, through the witnesses package's interface, against the
loopback simulator (a simulator of ServiceNow's documented API, not an instance) and a real system of record:
the checkpoints land as attachments on the ledger's own CI, once each, are read back by ledger_verify's
witness reading, and catch a rewritten history when no file witness is left to ask."""

from __future__ import annotations

import json

import pytest

from support.raw_ledger import raw_ledger_connection
from test_checkpoints import record_run, rewrite_history, verify

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints, witnesses
from ansible_collections.changeops.itsm.plugins.module_utils.witnesses.servicenow import (
    FILE_PREFIX,
    LEDGER_CLASS,
    ServiceNowWitness,
)


@pytest.fixture
def sn_witness_env(monkeypatch, sn):
    """The controller's ServiceNow settings (the environment: no ansible.cfg) with the witness switched on."""
    monkeypatch.delenv("ANSIBLE_CONFIG", raising=False)
    for name, value in dict(sn.env(), CHANGEOPS_SERVICENOW_WITNESS="true").items():
        monkeypatch.setenv(name, value)
    return sn


@pytest.fixture
def settings(tmp_path):
    """Signed checkpoints, and ServiceNow as the only witness (no file, no syslog)."""
    key = str(tmp_path / "keys" / "checkpoint.key")
    checkpoints.generate_key(key)
    return checkpoints.resolve_settings({"checkpoint_key": key, "witness_file": "none", "witness_syslog": "false"},
                                        environ={})


def servicenow_witnesses(settings):
    return [witness for witness in witnesses.configured_witnesses(settings) if witness.kind == "servicenow"]


def kept(sn):
    """``{file name: record}`` of the checkpoints attached to ledger CIs in the simulator."""
    found = {}
    for row in sn.control.records("sys_attachment", "table_name=%s" % LEDGER_CLASS):
        if row["file_name"].startswith(FILE_PREFIX):
            found[row["file_name"]] = sn.control.attachment(row["sys_id"])
    return found


def test_off_unless_switched_on(sor, sn, settings, monkeypatch):
    monkeypatch.delenv("ANSIBLE_CONFIG", raising=False)
    for name, value in sn.env().items():
        monkeypatch.setenv(name, value)
    assert servicenow_witnesses(settings) == []


@pytest.mark.tampers_query_tables
def test_checkpoints_land_on_the_ledgers_ci_once_and_catch_a_rewrite(sor, backend_env, sn_witness_env, settings):
    sn = sn_witness_env
    [witness] = servicenow_witnesses(settings)
    assert isinstance(witness, ServiceNowWitness) and witness.name == sn.settings().target_key()
    record_run(sor)
    first = checkpoints.make_checkpoint(sor, settings, "ops@ctl")
    assert [item["error"] for item in witnesses.feed_witnesses(sor, settings)] == [None]

    [ci] = sn.control.records(LEDGER_CLASS)
    ledger_id = first.data["ledger"]
    assert ci["correlation_id"] == "changeops-ledger-%s" % ledger_id and ci["name"] == "changeops ledger %s" % (
        ledger_id[:12])
    stored = kept(sn)
    assert list(stored) == ["%s%012d-%s.json" % (FILE_PREFIX, first.data["seq"], first.data["head"][:16])]
    record = list(stored.values())[0]
    assert (record["seq"], record["head"], record["signature"]) == (first.data["seq"], first.data["head"],
                                                                    first.data["signature"])
    assert record["entry_seq"] == first.seq and record["type"] == checkpoints.RECORD_TYPE

    # delivered again (the cursor put back: at-least-once delivery), nothing is stored twice
    cursor = witnesses.cursor_name(witness)
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("DELETE FROM witness_cursors WHERE witness = ?" if backend_env["CHANGEOPS_BACKEND"] == "sqlite"
                     else "DELETE FROM witness_cursors WHERE witness = %s", (cursor,))
    finally:
        conn.close()
    assert [item["delivered"] for item in witnesses.feed_witnesses(sor, settings)] == [1]
    assert len(kept(sn)) == 1 and len(sn.control.records(LEDGER_CLASS)) == 1

    record_run(sor, "run-later")
    checkpoints.make_checkpoint(sor, settings, "ops@ctl")
    witnesses.feed_witnesses(sor, settings)
    assert len(kept(sn)) == 2
    report = verify(sor, settings)
    assert report.valid, report.summary()
    # both checkpoints read back from ServiceNow, signature-checked, the newest named with its witness
    info = report.checkpoints
    assert (info["read"], info["checked"], info["signed"], info["problems"]) == (2, 2, True, [])
    assert [anchor["witness"] for anchor in info["anchors"]] == [witness.name]
    assert info["summary"].startswith("history matches the signed checkpoint of entry")

    # a consistent rewrite of the first run: only the witness can tell, and ServiceNow is the only one here
    target = [entry.seq for entry in sor.iter_entries(kinds=["run.result"]) if entry.data["host"] == "web02"][0]
    rewrite_history(sor, backend_env, target, lambda data: data.update(status="ok", changed=False))
    report = verify(sor, settings)
    assert not report.valid
    assert report.history_mismatch["problem"] == "rewritten" and report.history_mismatch["signed"]


def test_servicenow_failing_is_a_witness_failure_and_the_checkpoint_is_offered_again(
        sor, sn_witness_env, settings, monkeypatch):
    sn = sn_witness_env
    monkeypatch.setenv("CHANGEOPS_SERVICENOW_RETRIES", "0")
    record_run(sor)
    checkpoints.make_checkpoint(sor, settings, "ops@ctl")
    sn.control.fault(kind="503", method="POST", path="/api/now/attachment/file")
    warnings = []
    [outcome] = witnesses.feed_witnesses(sor, settings, warn=warnings.append)
    assert outcome["delivered"] == 0 and "503" in outcome["error"], outcome
    assert warnings and "offered again next time" in warnings[0]
    assert "integration-simulator-password" not in json.dumps(outcome) + "".join(warnings)
    assert kept(sn) == {}
    sn.control.clear_faults()
    [outcome] = witnesses.feed_witnesses(sor, settings)
    assert (outcome["delivered"], outcome["error"]) == (1, None) and len(kept(sn)) == 1


def test_a_broken_servicenow_configuration_is_said_at_delivery(sor, sn_witness_env, settings, monkeypatch):
    monkeypatch.setenv("CHANGEOPS_SERVICENOW_MAX_REQUESTS", "none")
    record_run(sor)
    checkpoints.make_checkpoint(sor, settings, "ops@ctl")
    [outcome] = witnesses.feed_witnesses(sor, settings, warn=[].append)
    assert outcome["witness"] == "servicenow" and "CHANGEOPS_SERVICENOW_MAX_REQUESTS" in outcome["error"], outcome
