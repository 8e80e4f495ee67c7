# -*- coding: utf-8 -*-
"""The chain-only fast walk and incremental verification from signed verified-up-to markers, on both backends.

* The fast walk (``ledger.walk_chain``, raw rows, no payload parsed) gives exactly the report the general walk
  gives, on an intact ledger, a redacted one and every tampering of test_ledger_tampering.
* ``ledger_verify mode: incremental`` starts from the newest trusted marker: an edit after it is found; an
  edit before it, made in place, is found only by a full verification (the documented price); a history
  rewritten before it with every hash recomputed, or cut short below it, is reported from the marker itself;
  a forged or unsigned marker in the database is not used.
"""

from __future__ import annotations

import json

import pytest

from support.raw_ledger import raw_ledger_connection
from test_ledger_tampering import (  # the tamperings, reused as they are
    delete_and_renumber,
    delete_first,
    delete_middle,
    duplicate_key,
    edit_actor,
    edit_and_rehash,
    edit_commitment,
    edit_data,
    fake_redaction,
    insert_forged,
    populate,
    reformat_data,
    swap,
)

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints, verify_markers
from ansible_collections.changeops.itsm.plugins.module_utils.change_events import LEDGER_VERIFY_SPEC, verify_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import (
    KIND_CHECKPOINT,
    Entry,
    verify_rows,
    walk_chain,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from support.history import record_run

TAMPERINGS = [edit_data, edit_actor, edit_and_rehash, edit_commitment, fake_redaction, duplicate_key, reformat_data,
              delete_middle, delete_first, delete_and_renumber, swap, insert_forged]


def fresh(sor):
    return open_system_of_record(dict(sor.config))


def both_walks(sor, **kwargs):
    """``(fast, general)`` chain-only reports of the ledger as stored, through a new connection."""
    with fresh(sor) as other:
        fast = other.verify(payloads=False, **kwargs).to_dict()
        general = verify_rows(other.iter_entries, payloads=False, **kwargs).to_dict()
    return fast, general


def test_the_fast_walk_takes_an_intact_ledger_without_falling_back(sor):
    populate(sor)
    report = walk_chain(sor._chain_rows())
    assert report is not None and report.valid and report.entries_checked == 12
    assert both_walks(sor)[0] == both_walks(sor)[1]


def test_the_fast_walk_checks_redactions_like_the_general_walk(sor):
    populate(sor)
    target = list(sor.iter_entries(kinds=["run.result"]))[2]
    sor.redact_entry(target.seq, ["task.name"], "test", "ops", "ops@ctl")
    report = walk_chain(sor._chain_rows())
    assert report is not None and report.valid and [item["field"] for item in report.redactions] == ["task.name"]
    fast, general = both_walks(sor)
    assert fast == general


@pytest.mark.tampers_query_tables
@pytest.mark.parametrize("tamper", TAMPERINGS, ids=lambda f: f.__name__)
def test_the_fast_walk_reports_every_tampering_as_the_general_walk(sor, backend_env, tamper):
    head = populate(sor)
    conn = raw_ledger_connection(sor, backend_env)
    try:
        tamper(conn)
    finally:
        conn.close()
    fast, general = both_walks(sor, expected_head=head)
    assert fast == general


# ------------------------------------------------------------------------------------------------
# incremental verification
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path):
    key = str(tmp_path / "keys" / "checkpoint.key")
    checkpoints.generate_key(key)
    return {"checkpoint_key": key, "witness_file": str(tmp_path / "witness.jsonl"), "witness_syslog": "false"}


def ledger_verify(sor, settings, check_mode=False, **params):
    """The module's operation, as its action plugin runs it."""
    values = {name: spec.get("default") for name, spec in LEDGER_VERIFY_SPEC.items()}
    values.update(settings)
    values.update(params)
    warnings = []
    with fresh(sor) as other:
        ctx = OperationContext(other, values, check_mode=check_mode, diff=True, warn=warnings.append,
                               actor="auditor@ctl")
        result = verify_ledger(ctx)
    result["warnings"] = warnings
    return result


def seqs_of(appended, kind="run.result"):
    return [entry.seq for entry in appended if entry.kind == kind]


def test_a_full_verification_marks_where_it_got_to_and_the_next_one_starts_there(sor, settings):
    first = record_run(sor, "run-1")
    full = ledger_verify(sor, settings, mode="full", record_marker=True)
    assert full["changed"] and full["verification"]["valid"], full
    marker = full["verification"]["recorded_marker"]
    assert marker["seq"] == first[-1].seq and marker["payloads"] and marker["mode"] == "full"
    assert "before" in full["diff"] and "verified up to entry %d" % first[-1].seq in full["diff"]["after"]

    later = record_run(sor, "run-2")
    incremental = ledger_verify(sor, settings, mode="incremental")
    verification = incremental["verification"]
    assert verification["valid"] and verification["mode"] == "incremental", verification["summary"]
    assert verification["base_seq"] == marker["seq"]
    # the marker entry itself and the new run: nothing before the marker is walked again
    assert verification["entries_checked"] == len(later) + 1
    assert verification["marker"]["seq"] == marker["seq"] and verification["marker"]["signed"]
    assert verification["projections_checked"] is None
    assert "incremental from the verified-up-to marker of entry %d" % marker["seq"] in verification["summary"]
    assert incremental["changed"] and verification["recorded_marker"]["seq"] == later[-1].seq


def test_an_incremental_verification_with_nothing_new_records_nothing(sor, settings):
    record_run(sor, "run-1")
    assert ledger_verify(sor, settings, mode="incremental")["changed"]
    again = ledger_verify(sor, settings, mode="incremental")
    assert not again["changed"] and again["verification"]["valid"]
    assert again["verification"]["recorded_marker"] is None
    assert again["verification"]["entries_checked"] == 1  # the marker entry


def test_check_mode_verifies_and_records_no_marker(sor, settings):
    record_run(sor, "run-1")
    predicted = ledger_verify(sor, settings, check_mode=True, mode="incremental")
    assert predicted["changed"] and predicted["verification"]["valid"]
    assert predicted["verification"]["recorded_marker"] is None
    assert sor.latest_entry([KIND_CHECKPOINT]) is None


def test_without_a_key_no_marker_is_recorded_and_the_warning_says_why(sor, settings):
    record_run(sor, "run-1")
    result = ledger_verify(sor, dict(settings, checkpoint_key=None), mode="incremental")
    assert not result["changed"] and result["verification"]["valid"]
    assert any("needs checkpoint_key" in warning for warning in result["warnings"]), result["warnings"]
    assert "no trusted verified-up-to marker" in result["verification"]["summary"]


@pytest.mark.tampers_query_tables
def test_an_edit_after_the_marker_is_found_by_the_incremental_verification(sor, backend_env, settings):
    record_run(sor, "run-1")
    assert ledger_verify(sor, settings, mode="incremental")["changed"]
    later = record_run(sor, "run-2")
    target = seqs_of(later)[2]
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("UPDATE ledger SET actor = 'mallory@ctl' WHERE seq = ?", (target,))
    finally:
        conn.close()
    result = ledger_verify(sor, settings, mode="incremental", fail_on_broken=False)
    broken = result["verification"]["first_broken"]
    assert (broken["seq"], broken["problem"]) == (target, "edited"), broken
    assert not result["changed"], "no marker is recorded over a broken ledger"


@pytest.mark.tampers_query_tables
def test_an_edit_before_the_marker_is_found_by_a_full_verification(sor, backend_env, settings):
    earlier = record_run(sor, "run-1")
    assert ledger_verify(sor, settings, mode="full", record_marker=True)["changed"]
    record_run(sor, "run-2")
    target = seqs_of(earlier)[1]
    conn = raw_ledger_connection(sor, backend_env)
    try:
        data = json.loads(conn.execute("SELECT data FROM ledger WHERE seq = ?", (target,)).fetchone()[0])
        data["host"] = "somewhere-else"
        conn.execute("UPDATE ledger SET actor = 'mallory@ctl' WHERE seq = ?", (target,))
    finally:
        conn.close()
    # in place, its stored hash left as it was: the incremental verification does not read it (documented)
    incremental = ledger_verify(sor, settings, mode="incremental", fail_on_broken=False, record_marker=False)
    assert incremental["verification"]["valid"], incremental["verification"]["summary"]
    full = ledger_verify(sor, settings, mode="full", fail_on_broken=False)
    broken = full["verification"]["first_broken"]
    assert (broken["seq"], broken["problem"]) == (target, "edited"), broken


@pytest.mark.tampers_query_tables
def test_a_history_rewritten_before_the_marker_is_reported_by_the_incremental_verification(
        sor, backend_env, settings):
    earlier = record_run(sor, "run-1")
    marker = ledger_verify(sor, settings, mode="incremental")["verification"]["recorded_marker"]
    record_run(sor, "run-2")
    # edit an early result and recompute its hash and every later one, as the collection seals
    entries = list(sor.iter_entries())
    start = seqs_of(earlier)[0]
    entries[start - 1].data = dict(entries[start - 1].data, status="ok", changed=False)
    prev_hash = entries[start - 2].hash
    for entry in entries[start - 1:]:
        entry.seal(entry.seq, prev_hash)
        prev_hash = entry.hash
    conn = raw_ledger_connection(sor, backend_env)
    try:
        for entry in entries[start - 1:]:
            conn.execute("UPDATE ledger SET data = ?, prev_hash = ?, hash = ?, salt = ?, payload_root = ? WHERE seq = ?",
                         (entry.data_json(), entry.prev_hash, entry.hash, entry.salt, entry.payload_root, entry.seq))
    finally:
        conn.close()
    result = ledger_verify(sor, dict(settings, witness_file="none"), mode="incremental", fail_on_broken=False)
    mismatch = result["verification"]["history_mismatch"]
    assert mismatch and mismatch["problem"] == "rewritten" and mismatch["seq"] == marker["seq"], result["verification"]
    assert not result["verification"]["valid"] and not result["changed"]


@pytest.mark.tampers_query_tables
def test_a_ledger_cut_short_below_the_marker_is_reported_as_truncated(sor, backend_env, settings):
    record_run(sor, "run-1")
    marker = ledger_verify(sor, settings, mode="incremental")["verification"]["recorded_marker"]
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("DELETE FROM ledger WHERE seq >= ?", (marker["seq"],))
    finally:
        conn.close()
    # the marker entry went with them: only the witness, outside the database, still holds the marker
    result = ledger_verify(sor, settings, mode="incremental", fail_on_broken=False)
    verification = result["verification"]
    assert verification["history_mismatch"]["problem"] == "truncated", verification
    assert verification["marker"]["source"].startswith("witness file:"), verification["marker"]


def forge_marker(sor, seq, head, sign_with=None, tamper=False):
    document = verify_markers.marker_document(
        sor, seq, head, {"by": "changeops.itsm.ledger_verify", "mode": "full", "from_seq": 0, "payloads": True,
                         "entries": seq}, sign_with)
    if tamper:
        document["seq"] = seq + 1
    return sor.append([Entry(KIND_CHECKPOINT, "ledger", document, actor="mallory@ctl")])[0]


@pytest.mark.tampers_query_tables
def test_a_marker_nobody_signed_or_whose_signature_fails_is_not_used(sor, backend_env, settings):
    earlier = record_run(sor, "run-1")
    # someone who can write the database hides an edit behind a marker of their own
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("UPDATE ledger SET actor = 'mallory@ctl' WHERE seq = ?", (seqs_of(earlier)[0],))
    finally:
        conn.close()
    with fresh(sor) as other:
        head_seq, head = other.head()
        forge_marker(other, head_seq, head)  # unsigned
        other_key = checkpoints.generate_key(str(settings["checkpoint_key"]) + ".other") and None
        forged_key = checkpoints.load_private_key(str(settings["checkpoint_key"]) + ".other")
        forge_marker(other, head_seq, head, sign_with=forged_key)  # a key the verifier does not trust
        genuine = checkpoints.load_private_key(settings["checkpoint_key"])
        forge_marker(other, head_seq - 1, head, sign_with=genuine, tamper=True)  # signed, then moved
    del other_key
    trusting = dict(settings, checkpoint_public_keys=[settings["checkpoint_key"] + ".pub"])
    result = ledger_verify(sor, trusting, mode="incremental", fail_on_broken=False)
    verification = result["verification"]
    assert verification["marker"] is None and verification["base_seq"] == 0, verification["marker"]
    assert verification["first_broken"]["seq"] == seqs_of(earlier)[0]
    assert any("not among checkpoint_public_keys" in warning for warning in result["warnings"]), result["warnings"]
    assert any("does not verify" in warning for warning in result["warnings"]), result["warnings"]


def test_a_redaction_after_the_marker_of_an_entry_before_it_verifies_incrementally(sor, settings):
    earlier = record_run(sor, "run-1")
    assert ledger_verify(sor, settings, mode="incremental")["changed"]
    sor.redact_entry(seqs_of(earlier)[0], ["task.name"], "INC-1", "ops", "ops@ctl")
    result = ledger_verify(sor, settings, mode="incremental")
    verification = result["verification"]
    assert verification["valid"] and verification["mode"] == "incremental", verification["summary"]
    assert [(item["seq"], item["field"]) for item in verification["redactions"]] == [(seqs_of(earlier)[0],
                                                                                      "task.name")]


@pytest.mark.tampers_query_tables
def test_a_tombstone_whose_commitment_was_changed_after_the_marker_is_found(sor, backend_env, settings):
    earlier = record_run(sor, "run-1")
    assert ledger_verify(sor, settings, mode="incremental")["changed"]
    target = seqs_of(earlier)[0]
    sor.redact_entry(target, ["task.name"], "INC-1", "ops", "ops@ctl")
    conn = raw_ledger_connection(sor, backend_env)
    try:
        marks = json.loads(conn.execute("SELECT redactions FROM ledger WHERE seq = ?", (target,)).fetchone()[0])
        marks["tombstones"] = {path: "0" * 64 for path in marks["tombstones"]}
        conn.execute("UPDATE ledger SET redactions = ? WHERE seq = ?", (json.dumps(marks), target))
    finally:
        conn.close()
    result = ledger_verify(sor, settings, mode="incremental", fail_on_broken=False)
    assert result["verification"]["first_broken"]["seq"] == target, result["verification"]
