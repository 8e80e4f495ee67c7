# -*- coding: utf-8 -*-
"""The hash chain and its verification, on in-memory entries (no storage)."""

from __future__ import annotations

import copy
import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.changeops.itsm.plugins.module_utils import commitments
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import GENESIS_HASH, chain_hash
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry, verify_rows


def build_chain(count):
    entries = []
    prev_hash = GENESIS_HASH
    for index in range(1, count + 1):
        entry = Entry("run.result", "run-%d" % (index % 3), {"n": index, "host": "h%d" % index}, actor="ops@ctl")
        entry.seal(index, prev_hash)
        prev_hash = entry.hash
        entries.append(entry)
    return entries


def renumber(entries):
    """Storage positions after rows were moved/inserted/removed and the seq column rewritten."""
    for position, entry in enumerate(entries, start=1):
        entry.seq = position
    return entries


def test_intact_chain_verifies_and_reports_its_head():
    entries = build_chain(5)
    report = verify_rows(entries)
    assert report.valid
    assert report.entries_checked == 5
    assert (report.head_seq, report.head_hash) == (5, entries[-1].hash)
    assert report.to_dict()["first_broken"] is None
    assert "5 entries" in report.summary()


def test_empty_ledger_is_valid():
    report = verify_rows([])
    assert report.valid and report.entries_checked == 0 and report.head_seq == 0 and report.head_hash is None


def test_first_entry_chains_to_genesis():
    entry = build_chain(1)[0]
    assert entry.prev_hash == GENESIS_HASH
    assert entry.format == 3
    header = '[3,"%s","%s","run.result","run-1","ops@ctl","%s"]' % (entry.id, entry.at, entry.payload_root)
    assert entry.hash == hashlib.sha256((GENESIS_HASH + header).encode()).hexdigest()
    assert entry.payload_root == commitments.payload_root(entry.data, entry.salt, cut=entry.cut())


def test_seq_is_not_part_of_the_hash_but_every_other_field_is():
    entry = build_chain(1)[0]
    moved = copy.copy(entry)
    moved.seq = 99
    assert moved.compute_hash(GENESIS_HASH) == entry.hash
    for field, value in (("id", "other"), ("at", "2000-01-01T00:00:00.000000Z"), ("kind", "run.play"),
                         ("subject", "x"), ("actor", "mallory@ctl"), ("data", {"n": 0})):
        changed = Entry.from_dict(entry.to_dict())
        setattr(changed, field, value)
        assert changed.seal(1, GENESIS_HASH).hash != entry.hash, field


def test_a_format_1_entry_keeps_the_old_hash_rule():
    """Entries written before schema 6 are verified as they were sealed: over their whole canonical JSON."""
    entry = Entry("run.result", "run-1", {"n": 1}, actor="ops@ctl", format=1).seal(1, GENESIS_HASH)
    assert entry.hash == chain_hash(GENESIS_HASH, entry.canonical())
    assert entry.salt is None and entry.payload_root is None
    assert verify_rows([entry]).valid
    entry.data = {"n": 2}
    assert verify_rows([entry]).first_broken["problem"] == "edited"


def test_entry_round_trips_through_dict_and_row():
    entry = build_chain(2)[1]
    again = Entry.from_dict(entry.to_dict())
    assert again.to_dict() == entry.to_dict()
    row = (entry.seq, entry.id, entry.at, entry.kind, entry.subject, entry.actor, entry.data_json(),
           entry.prev_hash, entry.hash, entry.format, entry.salt, entry.payload_root, None)
    assert Entry.from_row(row).to_dict() == entry.to_dict()
    # a row from before schema 6 (nine columns) is a format-1 entry
    assert Entry.from_row(row[:9]).format == 1


def test_entry_data_is_reduced_to_plain_json():
    entry = Entry("ci.created", "ci-1", {"tags": {"b", "a"}})
    assert entry.data == {"tags": ["a", "b"]}
    assert Entry("x", None, None).data == {}
    assert Entry("x", None, {}).id != Entry("x", None, {}).id


def test_edited_entry_is_named():
    entries = build_chain(6)
    entries[3].data = {"n": 4, "host": "evil"}
    broken = verify_rows(entries).first_broken
    assert (broken["seq"], broken["problem"], broken["entry_id"]) == (4, "edited", entries[3].id)


def test_edited_hash_is_named():
    entries = build_chain(6)
    entries[2].hash = "f" * 64
    broken = verify_rows(entries).first_broken
    assert (broken["seq"], broken["problem"]) == (3, "edited")


def test_rewritten_entry_with_recomputed_hash_is_named():
    """Someone who knows the format edits entry 3 and recomputes its hash: entry 3 is still named."""
    entries = build_chain(6)
    entries[2].data = {"n": 3, "host": "evil"}
    entries[2].seal(3, entries[1].hash)
    broken = verify_rows(entries).first_broken
    assert broken["seq"] == 3
    assert broken["entry_id"] == entries[2].id
    assert broken["problem"] == "edited"


def test_deleted_entry_is_named():
    entries = build_chain(6)
    del entries[2]
    broken = verify_rows(entries).first_broken
    assert (broken["seq"], broken["problem"], broken["next_seq"]) == (3, "deleted", 4)


def test_deleted_first_entry_is_named():
    entries = build_chain(4)
    del entries[0]
    broken = verify_rows(entries).first_broken
    assert (broken["seq"], broken["problem"]) == (1, "deleted")


def test_deleted_run_of_entries_is_named_from_its_start():
    entries = build_chain(8)
    del entries[2:5]
    broken = verify_rows(entries).first_broken
    assert (broken["seq"], broken["problem"], broken["next_seq"]) == (3, "deleted", 6)
    assert "3 to 5" in broken["detail"]


def test_deleted_and_renumbered_entries_are_detected():
    entries = renumber([e for i, e in enumerate(build_chain(6)) if i != 2])
    broken = verify_rows(entries).first_broken
    # Structurally the same as entry 2 being rewritten: the report names the earliest entry
    # that may have been altered and says both.
    assert (broken["seq"], broken["problem"], broken["next_seq"]) == (2, "edited", 3)
    assert "rewritten" in broken["detail"] and "deleted" in broken["detail"]


def test_reordered_entries_are_named():
    entries = build_chain(6)
    entries[2], entries[3] = entries[3], entries[2]
    renumber(entries)
    broken = verify_rows(entries).first_broken
    assert (broken["seq"], broken["problem"]) == (3, "reordered")


def test_inserted_entry_is_named():
    entries = build_chain(6)
    forged = Entry("run.result", "run-x", {"n": 99}).seal(None, entries[2].hash)
    entries.insert(3, forged)
    renumber(entries)
    broken = verify_rows(entries).first_broken
    assert (broken["seq"], broken["problem"], broken["entry_id"]) == (4, "inserted", forged.id)


def test_entry_inserted_before_the_first_is_named():
    entries = build_chain(3)
    forged = Entry("run.result", "run-x", {"n": 0}).seal(None, GENESIS_HASH)
    entries.insert(0, forged)
    renumber(entries)
    broken = verify_rows(entries).first_broken
    assert (broken["seq"], broken["problem"], broken["entry_id"]) == (1, "inserted", forged.id)
    assert "start of the chain" in broken["detail"]


def test_truncated_tail_is_caught_by_the_anchored_head():
    entries = build_chain(6)
    anchored = entries[-1].hash
    report = verify_rows(entries[:4], expected_head=anchored)
    assert not report.valid
    assert report.first_broken is None
    assert anchored[:16] in report.anchor_mismatch
    assert report.summary() == report.anchor_mismatch
    # an older anchor is still part of a longer chain
    assert verify_rows(entries, expected_head=entries[2].hash).valid


def test_fully_rewritten_chain_is_caught_only_by_an_anchor():
    entries = build_chain(5)
    anchored = entries[-1].hash
    forged = build_chain(5)  # a consistent chain with other ids: indistinguishable without an anchor
    assert verify_rows(forged).valid
    assert not verify_rows(forged, expected_head=anchored).valid


def test_first_of_several_breaks_is_reported():
    entries = build_chain(8)
    entries[5].data = {"n": "late edit"}
    entries[1].data = {"n": "early edit"}
    assert verify_rows(entries).first_broken["seq"] == 2


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_single_tampering_is_detected_at_or_before_the_tampered_position(data):
    size = data.draw(st.integers(min_value=2, max_value=12), label="size")
    entries = build_chain(size)
    action = data.draw(st.sampled_from(["edit", "rewrite", "delete", "swap", "insert"]), label="action")
    index = data.draw(st.integers(min_value=0, max_value=size - 2), label="index")
    if action == "edit":
        entries[index].data = {"tampered": True}
        expected = index + 1
    elif action == "rewrite":
        entries[index].data = {"tampered": True}
        entries[index].seal(index + 1, entries[index - 1].hash if index else GENESIS_HASH)
        expected = index + 1
    elif action == "delete":
        del entries[index]
        expected = index + 1
    elif action == "swap":
        entries[index], entries[index + 1] = entries[index + 1], entries[index]
        renumber(entries)
        expected = index + 1
    else:
        prev_hash = entries[index - 1].hash if index else GENESIS_HASH
        entries.insert(index, Entry("x", None, {"forged": True}).seal(None, prev_hash))
        renumber(entries)
        expected = index + 1
    report = verify_rows(entries)
    assert not report.valid
    assert report.first_broken["seq"] == expected, report.first_broken


@pytest.mark.parametrize("size", [1, 50])
def test_report_dict_has_the_documented_keys(size):
    report = verify_rows(build_chain(size)).to_dict()
    assert set(report) == {"valid", "entries_checked", "head_seq", "head_hash", "first_broken",
                           "anchor_mismatch", "history_mismatch", "checkpoints", "payloads_checked", "base_seq",
                           "archived_through", "redactions",
                           "projections_checked", "projection_problems", "summary"}


class _Walked(object):
    """What a walk notes of an entry for the redaction checks: its seq, no redactions."""

    __slots__ = ("seq", "redactions")

    def __init__(self, seq):
        self.seq, self.redactions = seq, None


def test_the_seqs_a_walk_remembers_take_memory_that_does_not_grow_with_the_ledger():
    """A full payload verification (``verify_rows``) notes every entry it walks; at 1,000,000 entries a set of
    every seq held ~60 MB (issue 21's scale): the consecutive seqs of a walk are one range now."""
    import tracemalloc

    from ansible_collections.changeops.itsm.plugins.module_utils.ledger import _Redactions

    redactions = _Redactions()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for seq in range(1, 300001):
            redactions.note_entry(_Walked(seq))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100000, "noting 300,000 walked entries kept %d bytes" % grown
    assert redactions.loaded(1) and redactions.loaded(150000) and redactions.loaded(300000)
    assert not redactions.loaded(0) and not redactions.loaded(300001)


def test_entries_loaded_out_of_the_walks_order_are_remembered_exactly():
    """Entries loaded from before a base (``load_entries``) and a fast walk's sparse general-path entries."""
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger import _Redactions

    redactions = _Redactions()
    for seq in [10, 11, 12, 3, 7, 13, 14, 40, 12, 15]:
        redactions.note_entry(_Walked(seq))
    assert [seq for seq in range(0, 45) if redactions.loaded(seq)] == [3, 7, 10, 11, 12, 13, 14, 15, 40]


def test_a_header_computed_before_the_payload_was_set_again_is_not_what_gets_hashed():
    """The append computes each format-2 entry's header before it takes the lock and hands it to ``seal``; an entry
    whose payload is set again in between must be hashed over its new payload root, or verify reports it edited."""
    entry = Entry("run.started", "run-1", {"run_id": "run-1", "user": "ops"}).prepare()
    early_header = entry.header()
    entry.data = {"run_id": "run-1", "user": "someone else"}
    entry.seal(1, "0" * 64, early_header)
    assert entry.hash == Entry.from_dict(entry.to_dict()).compute_hash("0" * 64)
