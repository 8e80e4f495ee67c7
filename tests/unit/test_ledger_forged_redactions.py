# -*- coding: utf-8 -*-
"""Redactions no ``ledger_redact`` wrote: someone with write access to the database tombstones fields by hand and
edits or appends a ``ledger.redacted`` entry to vouch for them. Each row is a bypass an adversarial review of entry
format 3 found (2026-12-07); verification must name the entry.

- an edited ``ledger.redacted`` record widened to cover more fields: the chain-only walk read what it vouches for
  from its payload without opening it against its commitments;
- a tombstone in a protected field (a gate's ``hosts``, ``allowed``): ``ledger_redact`` refuses them, verification
  did not;
- a payload re-cut around tombstones: a tombstone keeps a commitment but not its path, so a list of tombstones could
  take the commitments of the fields after it and those fields' keys be deleted, with the root unchanged (format 3's
  root covers the paths of the fields).
"""

from __future__ import annotations

import binascii
import json

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils import commitments
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import GENESIS_HASH, canonical_json
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import (
    KIND_REDACTED,
    Entry,
    verify_rows,
    walk_chain,
)
from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import plan_redaction, redaction_entry

GATE = {"run_id": "run-1", "allowed": True, "hosts": ["web01", "web02"], "note": "token s3cret", "reasons": ["a"]}


def row(entry, data_json=None, redactions=None):
    return (entry.seq, entry.id, entry.at, entry.kind, entry.subject, entry.actor,
            entry.data_json() if data_json is None else data_json, entry.prev_hash, entry.hash, entry.format,
            entry.salt if redactions is None else None, entry.payload_root,
            None if redactions is None else json.dumps(redactions))


def chain_only_valid(rows):
    walked = walk_chain(iter(rows))
    listed = verify_rows([Entry.from_row(one) for one in rows], payloads=False)
    assert (walked is not None and walked.valid) == listed.valid, "the two chain-only walks must agree"
    return listed.valid


def tombstoned(gate, data, redactions, path):
    """``data`` and ``redactions`` with the field at ``path`` tombstoned by hand, as ``ledger_redact`` would have
    done it (its commitment from the salt the row keeps); returns the commitment (hex)."""
    order = [field for field, _value in commitments.iter_fields(data, cut=gate.cut())]
    index = order.index(path)
    digest = commitments.commitment(binascii.unhexlify(redactions["salts"][index]), path,
                                    commitments.encode_value(commitments.field_value(data, path))).hex()
    redactions["salts"][index] = None
    redactions["tombstones"][commitments.path_json(path)] = digest
    return digest


def test_an_edited_redaction_record_fails_the_chain_only_walk_too():
    gate = Entry("run.gate", "run-1", GATE, actor="ops").seal(1, GENESIS_HASH)
    plan = plan_redaction(gate, ["note"])  # a legitimate redaction of a free-text field
    record = redaction_entry(plan, "INC-1", "alice", "alice").seal(2, gate.hash)
    data_json, redactions = plan.stored_state(2)
    legitimate = [row(gate, data_json, redactions), row(record)]
    assert chain_only_valid(legitimate) and verify_rows([Entry.from_row(one) for one in legitimate]).valid

    data, forged_state, forged_record = json.loads(data_json), json.loads(json.dumps(redactions)), record.data
    forged_record = json.loads(json.dumps(forged_record))
    for path in (("hosts",), ("allowed",)):
        digest = tombstoned(gate, data, forged_state, path)
        forged_record["fields"].append({"field": path[0], "path_json": commitments.path_json(path),
                                        "commitment": digest})
        data = commitments.with_field_replaced(data, path, commitments.tombstone(2))
    forged = [row(gate, canonical_json(data), forged_state), row(record, canonical_json(forged_record))]
    assert not chain_only_valid(forged)
    report = verify_rows([Entry.from_row(one) for one in forged])
    assert report.first_broken["seq"] == 2 and report.first_broken["problem"] == "edited", report.first_broken


@pytest.mark.parametrize("path", [("hosts",), ("allowed",), ("run_id",)])
def test_a_protected_field_tombstoned_with_a_forged_record_at_the_head_is_an_edit(path):
    gate = Entry("run.gate", "run-1", GATE, actor="ops").seal(1, GENESIS_HASH)
    with pytest.raises(Exception, match="cannot be redacted"):
        plan_redaction(gate, [commitments.path_text(path)])
    data = dict(gate.data)
    state = {"salts": [salt.hex() for salt in commitments.salts_from_seed(
        gate.salt, commitments.field_count(data, cut=gate.cut()))], "tombstones": {}}
    digest = tombstoned(gate, data, state, path)
    data = commitments.with_field_replaced(data, path, commitments.tombstone(2))
    record = Entry(KIND_REDACTED, gate.id, {
        "entry_seq": 1, "entry_id": gate.id, "entry_kind": gate.kind, "entry_hash": gate.hash,
        "entry_format": gate.format, "payload_root": gate.payload_root,
        "fields": [{"field": commitments.path_text(path), "path_json": commitments.path_json(path),
                    "commitment": digest}],
        "reason": "x", "redacted_by": "x", "redacted_at": "2026-12-07T00:00:00.000000Z"}).seal(2, gate.hash)
    rows = [row(gate, canonical_json(data), state), row(record)]
    # the payload still opens its root: only the protection tells this from a redaction
    assert Entry.from_row(rows[0]).check_payload() is None
    report = verify_rows([Entry.from_row(one) for one in rows])
    assert not report.valid and report.first_broken["seq"] == 1, report.first_broken
    assert "may not be redacted" in report.first_broken["detail"]
    assert not chain_only_valid(rows)


def test_a_payload_re_cut_around_tombstones_no_longer_opens_its_root():
    """``reasons`` (may be redacted) grows a tombstone that takes ``run_id``'s commitment, and ``run_id`` (the
    field after it) is deleted: the same commitments in the same order, the paths different."""
    gate = Entry("run.gate", "run-1", GATE, actor="ops").seal(1, GENESIS_HASH)
    data = dict(gate.data)
    order = [path for path, _value in commitments.iter_fields(data, cut=gate.cut())]
    assert order[order.index(("reasons", 0)) + 1] == ("run_id",)
    salts = commitments.salts_from_seed(gate.salt, len(order))
    run_id_digest = commitments.commitment(salts[order.index(("run_id",))], ("run_id",),
                                           commitments.encode_value("run-1")).hex()
    forged = dict(data, reasons=["a", commitments.tombstone(2)])
    del forged["run_id"]
    state = {"salts": [None if path == ("run_id",) else salt.hex() for path, salt in zip(order, salts)],
             "tombstones": {'["reasons",1]': run_id_digest}}
    stored = Entry.from_row(row(gate, canonical_json(forged), state))
    assert [path for path, _value in commitments.iter_fields(forged, cut=gate.cut())] == [
        path for path in order if path != ("run_id",)][:order.index(("reasons", 0)) + 1] + [("reasons", 1)]
    # the commitments are the sealed ones, in the sealed order: only the paths bound into the root differ
    assert [digest for _path, digest, _redacted in commitments.field_commitments(
        stored.data, None, stored.redactions, cut=gate.cut())] == [
        digest for _path, digest, _redacted in commitments.field_commitments(gate.data, gate.salt, cut=gate.cut())]
    assert stored.check_payload() == "its content does not match its commitments"


# -- a second review of the fixes (2026-12-07) ---------------------------------------------------------------------
def forged_record(target, path, digest, seq, prev_hash):
    return Entry(KIND_REDACTED, target.id, {
        "entry_seq": target.seq, "entry_id": target.id, "entry_kind": target.kind, "entry_hash": target.hash,
        "entry_format": target.format, "payload_root": target.payload_root,
        "fields": [{"field": commitments.path_text(path), "path_json": commitments.path_json(path),
                    "commitment": digest}],
        "reason": "x", "redacted_by": "x", "redacted_at": "2026-12-07T00:00:00.000000Z"}).seal(seq, prev_hash)


def fresh_state(entry):
    return {"salts": [salt.hex() for salt in commitments.salts_from_seed(
        entry.salt, commitments.field_count(entry.data, cut=entry.cut()))], "tombstones": {}}


def test_a_tombstone_in_the_ledgers_own_entry_is_an_edit():
    """``ledger_redact`` refuses the ledger's own entries whole; a format-3 one with a tombstone was not its work."""
    archived = Entry("ledger.archived", "ledger", {"file": "a.jsonl", "sha256": "ab" * 32, "first_seq": 1},
                     actor="ops").seal(1, GENESIS_HASH)
    with pytest.raises(Exception, match="bookkeeping"):
        plan_redaction(archived, ["sha256"])
    state = fresh_state(archived)
    digest = tombstoned(archived, archived.data, state, ("sha256",))
    data = commitments.with_field_replaced(archived.data, ("sha256",), commitments.tombstone(2))
    rows = [row(archived, canonical_json(data), state), row(forged_record(archived, ("sha256",), digest, 2,
                                                                          archived.hash))]
    report = verify_rows([Entry.from_row(one) for one in rows])
    assert not report.valid and "may not be redacted" in report.first_broken["detail"], report.first_broken
    assert not chain_only_valid(rows)


def test_a_tombstone_with_text_after_it_is_an_edit():
    """A tombstone is a fixed text: words written after its prefix would read as part of the record."""
    gate = Entry("run.gate", "run-1", GATE, actor="ops").seal(1, GENESIS_HASH)
    plan = plan_redaction(gate, ["note"])
    record = redaction_entry(plan, "INC-1", "alice", "alice").seal(2, gate.hash)
    data_json, redactions = plan.stored_state(2)
    data = json.loads(data_json)
    data["note"] = commitments.tombstone(2) + " approved by CAB-42"
    rows = [row(gate, canonical_json(data), redactions), row(record)]
    report = verify_rows([Entry.from_row(one) for one in rows])
    assert not report.valid and "does not hold the tombstone" in report.first_broken["detail"], report.first_broken
    assert not chain_only_valid(rows)


@pytest.mark.parametrize("fields", ["hosts", ["not a field"], [commitments.tombstone(3)]])
def test_a_redaction_record_of_another_shape_is_named_not_a_crash(fields):
    gate = Entry("run.gate", "run-1", GATE, actor="ops").seal(1, GENESIS_HASH)
    payload = {"entry_seq": 1, "entry_id": gate.id, "fields": fields, "reason": "x"}
    record = Entry(KIND_REDACTED, gate.id, payload).seal(2, gate.hash)
    rows = [row(gate), row(record)]
    report = verify_rows([Entry.from_row(one) for one in rows])
    assert not report.valid and report.first_broken["seq"] == 2, report.first_broken
    assert "list of redacted fields" in report.first_broken["detail"]
    assert not chain_only_valid(rows)


@pytest.mark.parametrize("state", [
    {"salts": "abc", "tombstones": {}},
    {"salts": ["zz"] * 5, "tombstones": {}},
    {"salts": [None] * 5, "tombstones": ["not", "a", "map"]},
    ["a", "list"],
])
def test_a_malformed_redaction_state_is_named_not_a_crash(state):
    gate = Entry("run.gate", "run-1", GATE, actor="ops").seal(1, GENESIS_HASH)
    stored = Entry.from_row(row(gate, None, state))
    assert "does not open its commitments" in stored.check_payload()
    report = verify_rows([stored])
    assert not report.valid and report.first_broken["seq"] == 1, report.first_broken


def test_what_verification_holds_format_3_to_is_what_redaction_refused_then_and_still_refuses():
    from ansible_collections.changeops.itsm.plugins.module_utils import protected_fields  # pylint: disable=import-outside-toplevel

    assert protected_fields.VERIFIED_TABLES[3] is protected_fields.PROTECTED_AT_FORMAT_3
    for prefix, paths in protected_fields.PROTECTED_AT_FORMAT_3.items():
        assert paths <= protected_fields.PROTECTED_FIELDS[prefix], prefix
