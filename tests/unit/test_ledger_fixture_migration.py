# -*- coding: utf-8 -*-
"""A ledger written by the collection before entry format 2 (tests/fixtures/ledger_v3, made by db415c6 with
real recorded runs) migrates to the latest schema on both backends, keeps every hash and verifying, takes new
entries, and can then be redacted: the planted values leave every row (and SQLite's file and WAL)."""

from __future__ import annotations

import json
import os

import pytest

from support.ledger_fixture import DIFF_LEAK, FIXTURE, MANIFEST, STDOUT_LEAK, load_fixture
from support.raw_ledger import raw_ledger_connection

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema


def stored_text(sor, backend_env):
    conn = raw_ledger_connection(sor, backend_env)
    try:
        texts = []
        for table in ("ledger", "change_events", "run_hosts", "task_results", "configuration_items",
                      "change_requests", "evidence", "reviews", "policies"):
            for row in conn.execute("SELECT * FROM %s" % table).fetchall():
                texts.extend(str(value) for value in row)
        return "\n".join(texts)
    finally:
        conn.close()


def find_leaks(sor):
    """``{seq: [field, ...]}`` of the fixture's entries that hold a planted value."""
    leaks = {}
    for entry in sor.iter_entries(kinds=["run.result"]):
        result = entry.data.get("result") or {}
        for field in ("stdout", "cmd"):
            if STDOUT_LEAK in str(result.get(field)):
                leaks.setdefault(entry.seq, []).append("result.%s" % field)
        for index, diff in enumerate(entry.data.get("diff") or []):
            if DIFF_LEAK in json.dumps(diff):
                leaks.setdefault(entry.seq, []).append("diff[%d]" % index)
    return leaks


def test_the_fixture_was_written_by_the_old_schema():
    import sqlite3

    conn = sqlite3.connect("file:%s?mode=ro" % os.path.join(FIXTURE, "ledger.sqlite"), uri=True)
    try:
        assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == 3
        columns = [row[1] for row in conn.execute("PRAGMA table_info(ledger)")]
        assert "payload_root" not in columns
    finally:
        conn.close()


def test_a_ledger_of_the_old_format_migrates_verifies_and_can_be_redacted(backend_env, open_sor):
    load_fixture(backend_env)
    sor = open_sor()

    # migrated to the latest schema (4..8: policies, commitments, change event kinds, the query tables replayed
    # once after the last replaying migration), every old entry kept as format 1 with its hash
    assert sor.schema_version() == schema.LATEST_VERSION
    entries = list(sor.iter_entries())
    assert len(entries) == MANIFEST["head_seq"]
    assert sor.head() == (MANIFEST["head_seq"], MANIFEST["head_hash"])
    assert {entry.format for entry in entries} == {1}
    report = sor.verify(projections=True)
    assert report.valid and report.projections_checked, report.summary()
    assert report.head_hash == MANIFEST["head_hash"]
    # through every migration in one upgrade: the replay rebuilt the query tables (the review run, a record-only
    # change that schema 3 called no-change with one changed host), 5 made an empty policies table
    conn = raw_ledger_connection(sor, backend_env)
    try:
        applied = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        conn.close()
    assert applied == [version for version, _description, _steps in schema.MIGRATIONS]
    [review] = [event for event in sor.find_change_events(limit=100) if event["playbook"].endswith("review.yml")]
    assert (review["authorisation"], review["changed_host_count"]) == ("record-only", 0), review
    assert sor.find_policies() == [] and sor.get_policy() is None
    # 7 added the change events' kind column, which the replay filled: every run of the fixture was a playbook
    conn = raw_ledger_connection(sor, backend_env)
    try:
        assert conn.execute("SELECT DISTINCT kind FROM change_events").fetchall() == [("playbook",)]
    finally:
        conn.close()
    assert [event["kind"] for event in sor.find_change_events(kind="adhoc", limit=100)] == []

    # it takes new entries (format 2) on top of the old chain
    sor.append([Entry("ci.created", "ci-new", {"ci_id": "ci-new", "attributes": {"name": "new", "class": "server"},
                                               "identities": {}})])
    assert sor.get_entry(MANIFEST["head_seq"] + 1).format == 3
    assert sor.verify().valid

    # the planted values, found where the old recorder put them, are redacted
    leaks = find_leaks(sor)
    found = sorted(field for fields in leaks.values() for field in fields)
    assert found == ["diff[0]", "result.cmd", "result.stdout"], leaks
    assert STDOUT_LEAK in stored_text(sor, backend_env) and DIFF_LEAK in stored_text(sor, backend_env)
    for seq, fields in sorted(leaks.items()):
        assert sor.redact_entry(seq, fields, "planted by the fixture", "auditor", "auditor@ctl") is not None
    sor.scrub_storage()

    text = stored_text(sor, backend_env)
    assert STDOUT_LEAK not in text and DIFF_LEAK not in text
    assert "fixture-web01" in text, "the rest of the record is still there"
    report = open_sor().verify(projections=True)
    assert report.valid and report.projections_checked, report.summary()
    assert sorted((item["seq"], item["field"]) for item in report.redactions) == sorted(
        (seq, field) for seq, fields in leaks.items() for field in fields)
    # the old hashes did not move
    assert [entry.hash for entry in sor.iter_entries(limit=MANIFEST["head_seq"])] == [entry.hash for entry in entries]
    if backend_env["CHANGEOPS_BACKEND"] == "sqlite":
        for suffix in ("", "-wal"):
            path = backend_env["CHANGEOPS_SQLITE_PATH"] + suffix
            if os.path.exists(path):
                with open(path, "rb") as handle:
                    content = handle.read()
                assert STDOUT_LEAK.encode() not in content and DIFF_LEAK.encode() not in content, path


@pytest.mark.tampers_query_tables
def test_an_old_entry_edited_after_its_redaction_is_caught(backend_env, open_sor):
    """A format-1 entry no longer matches its hash once redacted: the root its redaction recorded binds it."""
    load_fixture(backend_env)
    sor = open_sor()
    [(seq, fields)] = [(seq, fields) for seq, fields in find_leaks(sor).items() if "result.stdout" in fields]
    sor.redact_entry(seq, ["result.stdout"], "planted", "auditor", "auditor@ctl")
    conn = raw_ledger_connection(sor, backend_env)
    try:
        text = conn.execute("SELECT data FROM ledger WHERE seq = ?", (seq,)).fetchone()[0]
        assert '"rc":0' in text
        conn.execute("UPDATE ledger SET data = ? WHERE seq = ?", (text.replace('"rc":0', '"rc":3'), seq))
    finally:
        conn.close()
    report = open_sor().verify()
    assert (report.first_broken["seq"], report.first_broken["problem"]) == (seq, "edited"), report.first_broken


@pytest.mark.backends("postgresql")
def test_a_migrated_and_redacted_ledger_copies_to_postgresql_with_every_hash(backend_env, open_sor, tmp_path):
    """ledger_migrate re-seals each entry in the destination: format 1, format 2 and redacted entries alike
    must come out with the source's hashes."""
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger_migrate import migrate_ledger
    from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (
        open_system_of_record,
    )

    source_path = str(tmp_path / "source.sqlite")
    load_fixture({"CHANGEOPS_BACKEND": "sqlite", "CHANGEOPS_SQLITE_PATH": source_path})
    with open_system_of_record({"backend": "sqlite", "sqlite_path": source_path, "busy_timeout": 10}) as source:
        source.append([Entry("ci.created", "ci-new", {"ci_id": "ci-new", "identities": {},
                                                      "attributes": {"name": "new", "class": "server"}})])
        for seq, fields in sorted(find_leaks(source).items()):
            source.redact_entry(seq, fields, "planted", "auditor", "auditor@ctl")
        source_hashes = [(entry.seq, entry.hash) for entry in source.iter_entries()]
    destination = open_sor()
    result = migrate_ledger(OperationContext(destination, {"source_path": source_path, "batch_size": 7}))
    assert result["changed"] and result["entries_copied"] == len(source_hashes)
    assert [(entry.seq, entry.hash) for entry in destination.iter_entries()] == source_hashes
    report = destination.verify(projections=True)
    assert report.valid and report.projections_checked, report.summary()
    assert len(report.redactions) == 3


@pytest.mark.tampers_query_tables
def test_an_old_entry_cannot_be_edited_by_marking_it_redacted(backend_env, open_sor):
    """Giving a format-1 entry a redaction state of one's own (salts, a root, no tombstone) skips its hash
    check: only a ledger.redacted entry may vouch for such a state."""
    from ansible_collections.changeops.itsm.plugins.module_utils import commitments
    from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json

    load_fixture(backend_env)
    sor = open_sor()
    [(seq, _fields)] = [(seq, fields) for seq, fields in find_leaks(sor).items() if "result.stdout" in fields]
    entry = sor.get_entry(str(seq))
    data = dict(entry.data, status="ok", changed=False)
    seed = commitments.new_seed()
    salts = [salt.hex() for salt in commitments.salts_from_seed(
        seed, commitments.field_count(data, cut=entry.cut()))]
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("UPDATE ledger SET data = ?, payload_root = ?, redactions = ? WHERE seq = ?",
                     (canonical_json(data), commitments.payload_root(data, seed, cut=entry.cut()),
                      canonical_json({"salts": salts, "tombstones": {}}), seq))
    finally:
        conn.close()
    report = open_sor().verify()
    assert (report.first_broken["seq"], report.first_broken["problem"]) == (seq, "edited"), report.first_broken
    assert "no ledger.redacted entry vouches for it" in report.first_broken["detail"]
