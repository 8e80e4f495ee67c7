# -*- coding: utf-8 -*-
"""Entry format 3: a top-level list of names is one committed field (commitments.py, docs/ledger.md).

Format 2 committed every member of a top-level array on its own; a gate decision over 10,000 hosts paid
10,000 salted hashes for a list that may not be redacted anyway. These rows pin the cut, that the two
formats stay apart (an entry's format is hashed), and that redaction cannot move an entry from one cut to
the other.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.changeops.itsm.plugins.module_utils import commitments
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import GENESIS_HASH
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import (
    Entry,
    entry_problem,
    verify_rows,
    walk_chain,
)
from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import plan_redaction

HOSTS = ["web%02d" % number for number in range(5)]


def sealed(data, entry_format=commitments.FORMAT_CURRENT, kind="run.gate", seq=1, prev_hash=GENESIS_HASH):
    return Entry(kind, "run-1", data, actor="ops@ctl", format=entry_format).seal(seq, prev_hash)


def row_of(entry, entry_format=None, data_json=None, redactions=None):
    """The stored row ``Entry.from_row`` and ``walk_chain`` read."""
    return (entry.seq, entry.id, entry.at, entry.kind, entry.subject, entry.actor,
            entry.data_json() if data_json is None else data_json, entry.prev_hash, entry.hash,
            entry.format if entry_format is None else entry_format, entry.salt, entry.payload_root,
            None if redactions is None else json.dumps(redactions))


def fields(entry):
    return [path for path, _value in commitments.iter_fields(entry.data, cut=entry.cut())]


@pytest.mark.parametrize("kind", ["run.gate", "run.play"])
def test_new_entries_commit_the_hosts_whole_and_format_2_host_by_host(kind):
    data = {"run_id": "run-1", "hosts": HOSTS, "reasons": ["a", "b"], "limit": "web*"}
    new = sealed(data, kind=kind)
    assert new.format == 3
    assert fields(new) == [("hosts",), ("limit",), ("reasons", 0), ("reasons", 1), ("run_id",)]
    old = sealed(data, entry_format=2, kind=kind)
    assert fields(old)[:5] == [("hosts", number) for number in range(5)]
    # the same payload under the two cuts: two different roots, each entry opening its own
    assert new.payload_root != old.payload_root
    assert new.check_payload() is None and old.check_payload() is None
    assert new.payload_root == commitments.payload_root(new.data, new.salt, cut=commitments.Cut({"hosts"}, True))
    assert new.payload_root != commitments.payload_root(new.data, new.salt, cut=commitments.Cut(frozenset(), True))


def test_every_other_list_of_names_keeps_a_commitment_per_member():
    """Only the lists format 3 names are whole: any other may be redacted member by member, and a list that a
    redaction turned into a tombstone string would surprise every reader of it."""
    entry = sealed({"run_id": "run-1", "playbooks": ["secret-token.yml", "site.yml"], "hosts": HOSTS},
                   kind="run.started")
    assert fields(entry)[:2] == [("hosts", 0), ("hosts", 1)]
    plan = plan_redaction(entry, ["playbooks[0]"])
    assert [path for path, _digest, _value in plan.new] == [("playbooks", 0)]
    data_json, redactions = plan.stored_state(2)
    assert "secret-token" not in data_json
    stored = Entry.from_row(row_of(entry, data_json=data_json, redactions=redactions))
    assert stored.data["playbooks"] == [commitments.tombstone(2), "site.yml"]
    record = Entry("ledger.redacted", entry.id, plan.record_data("why", "alice", "now")).seal(2, entry.hash)
    assert verify_rows([stored, record]).valid


def test_the_fast_seal_and_the_generic_cut_agree_on_every_kind_of_list():
    """``seal_payload`` builds the cut in one pass; ``field_commitments`` (verification, redaction) walks
    ``iter_fields``: they must give the same root for the lists the fast path treats specially."""
    lookalike = commitments.tombstone(7)
    payloads = [
        {"hosts": HOSTS},
        # a tombstone among names can only be a member redacted on its own: cut member by member
        {"hosts": ["web01", lookalike]},
        {"hosts": ['x"' + lookalike, "web01"]},  # the prefix after an escaped quote: still a name, whole
        {"hosts": ["web01", None]},
        {"hosts": []},
        {"hosts": ["web01"], "facts": {"a": ["b"]}},
    ]
    for payload in payloads:
        for entry_format in commitments.COMMITTED_FORMATS:
            entry = sealed(payload, entry_format=entry_format)
            assert entry.payload_root == commitments.payload_root(entry.data, entry.salt,
                                                                  cut=entry.cut()), (payload, entry_format)
            assert entry_problem(Entry.from_row(row_of(entry))) is None, (payload, entry_format)
    assert fields(sealed({"hosts": ["web01", lookalike]})) == [("hosts", 0), ("hosts", 1)]
    assert fields(sealed({"hosts": ["web01", None]})) == [("hosts", 0), ("hosts", 1)]
    assert fields(sealed({"hosts": ['x"' + lookalike, "web01"]})) == [("hosts",)]


def test_a_list_a_redaction_turned_into_strings_keeps_the_cut_it_was_sealed_with():
    """``[None, "a"]`` is cut member by member; with ``None`` redacted it is a list of strings, one a tombstone:
    it must not then read as a list of names committed whole."""
    cut = commitments.cut_of(3, "run.gate")
    redacted = {"hosts": [commitments.tombstone(2), "a"]}
    assert [path for path, _value in commitments.iter_fields(redacted, cut=cut)] == [("hosts", 0), ("hosts", 1)]


@pytest.mark.parametrize("stored_format", [2, 1, 4])
def test_an_entry_whose_stored_format_was_changed_no_longer_verifies(stored_format):
    first = sealed({"run_id": "run-1", "hosts": HOSTS})
    second = sealed({"run_id": "run-1", "n": 2}, seq=2, prev_hash=first.hash)
    rows = [row_of(first, entry_format=stored_format), row_of(second)]
    assert walk_chain(iter(rows)) is None, "the chain-only walk must not pass it"
    report = verify_rows([Entry.from_row(row) for row in rows])
    assert report.first_broken["seq"] == 1, report.first_broken
    intact = verify_rows([Entry.from_row(row_of(first)), Entry.from_row(row_of(second))])
    assert intact.valid and walk_chain(iter([row_of(first), row_of(second)])) is not None


def test_an_entry_whose_kind_was_changed_no_longer_verifies():
    """The kind picks the cut too; it is in the hashed header."""
    first = sealed({"run_id": "run-1", "hosts": HOSTS})
    moved = list(row_of(first))
    moved[3] = "run.started"
    assert walk_chain(iter([tuple(moved)])) is None
    assert not verify_rows([Entry.from_row(tuple(moved))]).valid


def test_a_hosts_member_cannot_be_redacted_in_either_format():
    for entry_format in commitments.COMMITTED_FORMATS:
        entry = sealed({"run_id": "run-1", "hosts": HOSTS, "allowed": True}, entry_format=entry_format)
        with pytest.raises(Exception, match="cannot be redacted"):
            plan_redaction(entry, ["hosts[1]"])


def test_a_spooled_document_without_a_format_is_sealed_as_a_new_entry_and_a_sealed_one_as_format_2():
    unsealed = {"id": "e1", "at": "2026-12-07T10:00:00.000000Z", "kind": "run.gate", "subject": "run-1",
                "actor": "ops", "data": {"hosts": HOSTS}}
    assert Entry.from_dict(unsealed).format == commitments.FORMAT_CURRENT
    old = sealed({"hosts": HOSTS}, entry_format=2).to_dict()
    old.pop("format")
    copy = Entry.from_dict(old)
    assert copy.format == 2 and copy.check_payload() is None


_LOOKALIKES = [commitments.tombstone(3), 'x"' + commitments.tombstone(3), commitments.TOMBSTONE_PREFIX, '"', "\\"]
_names = st.one_of(st.text(max_size=8), st.sampled_from(_LOOKALIKES))
_members = st.one_of(_names, st.none(), st.integers(-5, 5), st.lists(_names, max_size=2))


@settings(max_examples=150, deadline=None)
@given(hosts=st.lists(_members, max_size=6), kind=st.sampled_from(["run.gate", "run.play", "run.started"]),
       entry_format=st.sampled_from(commitments.COMMITTED_FORMATS))
def test_any_hosts_list_seals_and_opens_under_one_cut(hosts, kind, entry_format):
    entry = sealed({"run_id": "run-1", "hosts": hosts}, entry_format=entry_format, kind=kind)
    assert entry.check_payload() is None
    assert entry.payload_root == commitments.payload_root(entry.data, entry.salt, cut=entry.cut())
    assert entry_problem(Entry.from_row(row_of(entry))) is None
    whole = (entry_format == 3 and kind != "run.started" and bool(hosts)
             and all(isinstance(item, str) and not item.startswith(commitments.TOMBSTONE_PREFIX) for item in hosts))
    assert (("hosts",) in fields(entry)) is (whole or not hosts)
