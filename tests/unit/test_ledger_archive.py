# -*- coding: utf-8 -*-
"""ledger_archive and archive verification on both backends: round trips, what stays in the query tables,
never a run split, nothing deleted without an archive that verifies, archives checked offline and against the
ledger, tampering with an archive or with the state it leaves behind found, and the live ledger verifying (in
full, incrementally, with replays of its query tables) from the archive's last hash."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3

import pytest

from support.raw_ledger import raw_ledger_connection

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
from ansible_collections.changeops.itsm.plugins.module_utils.archives import LEDGER_ARCHIVE_SPEC, archive_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json
from ansible_collections.changeops.itsm.plugins.module_utils.change_events import LEDGER_VERIFY_SPEC, verify_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError, NotFound
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import KIND_ARCHIVED, Entry
from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import LEDGER_REDACT_SPEC, redact_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import metric_rollups, projection_check
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

OLD = "2024-03-0%dT10:00:00.000000Z"
NEW = "2026-11-2%dT10:00:00.000000Z"
CUTOFF = "2025-01-01T00:00:00Z"


def record_run(sor, run_id, at, results=4, finished_at=None):
    entries = [Entry("run.started", run_id, {"run_id": run_id, "started_at": at, "user": "ops", "controller": "ctl",
                                             "playbooks": ["site.yml"]}, at=at),
               Entry("run.play", run_id, {"run_id": run_id, "play_id": "p1", "name": "web"}, at=at)]
    entries += [Entry("run.result", run_id, {"run_id": run_id, "play_id": "p1", "host": "web%02d" % number,
                                             "item": None, "status": "changed", "changed": True, "started_at": at,
                                             "task": {"name": "deploy %d" % number, "action": "ansible.builtin.copy"},
                                             "result": {"dest": "/etc/app.conf", "diff_lines": number}}, at=at)
                for number in range(results)]
    if finished_at is not False:
        entries.append(Entry("run.finished", run_id, {"run_id": run_id, "outcome": "successful"},
                             at=finished_at or at))
    return sor.append(entries)


def history(sor):
    """Two old runs and a CI made back then, then two recent runs."""
    old = record_run(sor, "run-old-1", OLD % 1) + record_run(sor, "run-old-2", OLD % 2)
    old += sor.append([Entry("ci.created", "ci-1", {"ci_id": "ci-1", "attributes": {"name": "web01"},
                                                    "identities": {"fqdn": "web01.example"}}, at=OLD % 3)])
    new = record_run(sor, "run-new-1", NEW % 1) + record_run(sor, "run-new-2", NEW % 2)
    return old, new


@pytest.fixture
def settings(tmp_path):
    key = str(tmp_path / "keys" / "checkpoint.key")
    checkpoints.generate_key(key)
    return {"checkpoint_key": key, "witness_file": str(tmp_path / "witness.jsonl"), "witness_syslog": "false"}


def operation(function, spec, sor, settings, check_mode=False, **params):
    values = {name: option.get("default") for name, option in spec.items()}
    values.update(settings)
    values.update(params)
    warnings = []
    with (open_system_of_record(dict(sor.config)) if sor is not None else _Nothing()) as other:
        result = function(OperationContext(other, values, check_mode=check_mode, diff=True, warn=warnings.append,
                                           actor="archivist@ctl"))
    result["warnings"] = warnings
    return result


class _Nothing(object):
    def __enter__(self):
        return None

    def __exit__(self, *exc_info):
        return False


def archive(sor, settings, archive_dir, check_mode=False, **params):
    return operation(archive_ledger, LEDGER_ARCHIVE_SPEC, sor, settings, check_mode=check_mode,
                     archive_dir=str(archive_dir), **dict({"older_than": CUTOFF}, **params))


def ledger_verify(sor, settings, **params):
    return operation(verify_ledger, LEDGER_VERIFY_SPEC, sor, settings, **params)


def test_an_archive_round_trip(sor, settings, tmp_path):
    old, new = history(sor)
    archived = archive(sor, settings, tmp_path / "archives")
    assert archived["changed"], archived
    [made] = archived["archives"]
    assert (made["first_seq"], made["last_seq"], made["entries"]) == (1, old[-1].seq, len(old))
    assert made["checkpoint"]["signed"] and made["last_hash"] == old[-1].hash
    assert "archive %s verified" % made["file"] in made["verified"]
    assert os.path.isfile(made["path"]) and oct(os.stat(made["path"]).st_mode & 0o777) == "0o600"
    assert archived["diff"]["before"].startswith("live ledger from entry 1;")
    assert archived["diff"]["after"].startswith("live ledger from entry %d;" % (old[-1].seq + 1))

    # the live ledger: starts after the archive, holds the archiving itself, verifies (queries tables too)
    assert sor.get_entry("1") is None and sor.get_entry(str(new[0].seq)) is not None
    record = sor.latest_entry([KIND_ARCHIVED])
    assert record.data["sha256"] == made["sha256"] and record.actor == "archivist@ctl"
    report = sor.verify(projections=True)
    assert report.valid and report.archived_through == old[-1].seq and report.projections_checked, report.summary()
    assert "after the %d archived" % old[-1].seq in report.summary()

    # the query tables keep the summaries, the archive holds the task results
    assert sor.get_change_event("run-old-1")["status"] == "successful"
    assert sor.get_change_event("run-old-1")["hosts"] and sor.get_task_results("run-old-1") == []
    assert len(sor.get_task_results("run-new-1")) == 4 and sor.get_ci("ci-1")["name"] == "web01"
    assert [item["file"] for item in sor.archives()] == [made["file"]]

    # the archive, with and without the ledger
    checked = ledger_verify(sor, settings, archives=[str(tmp_path / "archives")])
    assert checked["archives"]["valid"] and checked["verification"]["valid"], checked["archives"]
    assert "linked to the live ledger" in checked["msg"]
    offline = ledger_verify(None, settings, ledger=False, archives=[made["path"]])
    assert offline["archives"]["valid"] and offline["backend"] is None, offline["archives"]
    assert offline["archives"]["reports"][0]["checkpoint"]["verified"]
    with gzip.open(made["path"], "rt") as handle:
        lines = [json.loads(line) for line in handle]
    assert lines[0]["type"] == "changeops.ledger.archive" and lines[-1]["type"] == "changeops.ledger.archive.end"
    assert lines[0]["v"] == 3 and "state" not in lines[-1]
    entries = lines[1:1 + len(old)]
    assert [line["seq"] for line in entries] == list(range(1, old[-1].seq + 1))
    # the query tables' state after the entries, a row per line, sorted; the end record counts and digests it
    state = [(line["table"], line["row"]) for line in lines[1 + len(old):-1]]
    assert all(line["type"] == "changeops.ledger.archive.state" for line in lines[1 + len(old):-1])
    assert state and state == sorted(state) and {table for table, _row in state} >= {"change_events", "run_hosts"}
    assert lines[-1]["state_rows"] == len(state) == made["state_rows"]
    assert lines[-1]["state_digest"] == projection_check.state_digest(state) == made["state_digest"]


def test_archiving_is_idempotent_and_check_mode_writes_nothing(sor, settings, tmp_path):
    old, _new = history(sor)
    predicted = archive(sor, settings, tmp_path / "archives", check_mode=True)
    assert predicted["changed"] and predicted["archives"][0]["last_seq"] == old[-1].seq
    assert not (tmp_path / "archives").exists() and sor.get_entry("1") is not None
    assert archive(sor, settings, tmp_path / "archives")["changed"]
    again = archive(sor, settings, tmp_path / "archives")
    assert not again["changed"] and "nothing to archive" in again["msg"]
    assert len(os.listdir(tmp_path / "archives")) == 1


def test_an_archive_never_splits_a_run(sor, settings, tmp_path):
    record_run(sor, "run-old-1", OLD % 1)
    # started long ago, ended after the cutoff (its end is projected from its results)
    spanning = record_run(sor, "run-long", OLD % 2, finished_at=False)
    sor.append([Entry("run.finished", "run-long", {"run_id": "run-long", "outcome": "successful"}, at=NEW % 1)])
    archived = archive(sor, settings, tmp_path / "archives")
    assert archived["archives"][0]["last_seq"] == spanning[0].seq - 1
    assert len(sor.get_task_results("run-long")) == 4
    assert sor.verify(projections=True).valid


def test_several_archives_link_and_the_newest_ends_where_the_ledger_starts(sor, settings, tmp_path):
    record_run(sor, "run-2023", "2023-05-01T10:00:00.000000Z")
    record_run(sor, "run-2024", OLD % 1)
    record_run(sor, "run-2026", NEW % 1)
    first = archive(sor, settings, tmp_path / "archives", older_than="2024-01-01T00:00:00Z")["archives"]
    second = archive(sor, settings, tmp_path / "archives")["archives"]
    assert second[0]["first_seq"] == first[0]["last_seq"] + 1
    checked = ledger_verify(sor, settings, archives=[str(tmp_path / "archives")], mode="full")
    assert checked["archives"]["valid"] and checked["archives"]["checked"] == 2, checked["archives"]["problems"]
    # the first archive's record was itself archived in the second: ledger_archives still lists both
    assert [item["file"] for item in sor.archives()] == [first[0]["file"], second[0]["file"]]
    assert sor.verify(projections=True).valid


def test_a_large_backlog_goes_into_several_archives_in_one_task(sor, settings, tmp_path):
    for number in range(1, 5):
        record_run(sor, "run-old-%d" % number, OLD % number, results=2)
    record_run(sor, "run-new", NEW % 1)
    archived = archive(sor, settings, tmp_path / "archives", max_entries=12)
    assert len(archived["archives"]) >= 2 and all(item["entries"] <= 12 for item in archived["archives"])
    assert ledger_verify(sor, settings, archives=[str(tmp_path / "archives")])["archives"]["valid"]


@pytest.mark.tampers_query_tables
def test_nothing_is_deleted_when_the_archive_would_not_verify(sor, backend_env, settings, tmp_path):
    old, _new = history(sor)
    conn = raw_ledger_connection(sor, backend_env)
    try:
        data = json.loads(conn.execute("SELECT data FROM ledger WHERE seq = 3").fetchone()[0])
        data["host"] = "elsewhere"
        conn.execute("UPDATE ledger SET data = ? WHERE seq = 3", (canonical_json(data),))
    finally:
        conn.close()
    with pytest.raises(ConflictError) as raised:
        archive(sor, settings, tmp_path / "archives")
    assert "does not verify, so nothing was deleted" in str(raised.value) and "entry 3" in str(raised.value)
    assert sor.get_entry("1") is not None and sor.head()[0] == _new[-1].seq
    assert [name for name in os.listdir(tmp_path / "archives") if not name.startswith(".")] == []


def rewrite_archive(path, change):
    with gzip.open(path, "rt") as handle:
        lines = [json.loads(line) for line in handle]
    change(lines)
    with gzip.open(path, "wt") as handle:
        for line in lines:
            handle.write(canonical_json(line) + "\n")


def test_an_edited_archive_is_found_offline_and_against_the_ledger(sor, settings, tmp_path):
    history(sor)
    [made] = archive(sor, settings, tmp_path / "archives")["archives"]

    def edit(lines):
        lines[3]["data"]["host"] = "elsewhere"

    rewrite_archive(made["path"], edit)
    offline = ledger_verify(None, settings, ledger=False, archives=[made["path"]], fail_on_broken=False)
    [report] = offline["archives"]["reports"]
    assert not report["valid"] and "entry 3" in report["problems"][0], report["problems"]
    against = ledger_verify(sor, settings, archives=[made["path"]], fail_on_broken=False)
    assert not against["archives"]["valid"] and against["verification"]["valid"]
    assert any("sha256" in problem for problem in against["archives"]["problems"]), against["archives"]["problems"]


def _offline_problems(settings, path):
    offline = ledger_verify(None, settings, ledger=False, archives=[str(path)], fail_on_broken=False)
    [report] = offline["archives"]["reports"]
    return report["problems"]


def _state_lines(lines):
    return [index for index, line in enumerate(lines) if line.get("type") == "changeops.ledger.archive.state"]


@pytest.mark.backends("sqlite")
def test_the_state_is_checked_row_by_row_offline(sor, settings, tmp_path):
    """The state follows the entries a row per line, sorted, and is digested as it is read: an edited row, rows
    out of order, a dropped row and an entry after the state are each found; so is a state record in a version 1
    archive. The archive as written verifies."""
    history(sor)
    [made] = archive(sor, settings, tmp_path / "archives")["archives"]
    original = tmp_path / "original.jsonl.gz"
    with open(made["path"], "rb") as source, open(str(original), "wb") as copy:
        copy.write(source.read())
    assert _offline_problems(settings, original) == []

    def edited(change):
        path = tmp_path / ("%s.jsonl.gz" % change.__name__)
        with open(str(original), "rb") as source, open(str(path), "wb") as copy:
            copy.write(source.read())
        rewrite_archive(str(path), change)
        return _offline_problems(settings, path)

    def edit_a_row(lines):
        index = _state_lines(lines)[3]
        lines[index]["row"] = lines[index]["row"].replace("successful", "failed").replace("1", "2")

    def swap_two_rows(lines):
        first, second = _state_lines(lines)[:2]
        lines[first], lines[second] = lines[second], lines[first]

    def drop_a_row(lines):
        del lines[_state_lines(lines)[-1]]

    def entry_after_the_state(lines):
        lines.insert(len(lines) - 1, lines[1])

    def state_in_version_1(lines):
        lines[0]["v"] = 1

    assert edited(edit_a_row) == ["the query-table state it carries does not match its digest"]
    assert "is not in order" in edited(swap_two_rows)[0]
    assert edited(drop_a_row) == ["the query-table state it carries does not match its digest"]
    assert "is an entry after the archive's state" in edited(entry_after_the_state)[0]
    assert "which a version 1 archive does not hold" in edited(state_in_version_1)[0]


@pytest.mark.backends("sqlite")
def test_a_version_1_archive_with_the_state_in_its_end_record_still_verifies(sor, settings, tmp_path):
    """Archives written before 2026-12-07 (format 1) carry the state inside the end record, unsorted as far as the
    reader knows: they verify offline as before, and an edited state row is found."""
    history(sor)
    [made] = archive(sor, settings, tmp_path / "archives")["archives"]

    def as_version_1(lines):
        rows = [[lines[index]["table"], lines[index]["row"]] for index in _state_lines(lines)]
        end = dict(lines[-1], state=list(reversed(rows)))
        del end["state_rows"]
        lines[:] = [dict(lines[0], v=1)] + [line for line in lines[1:-1] if "seq" in line] + [end]

    rewrite_archive(made["path"], as_version_1)
    assert _offline_problems(settings, made["path"]) == []

    def edit_a_row(lines):
        lines[-1]["state"][0][1] = lines[-1]["state"][0][1].replace("1", "2")

    rewrite_archive(made["path"], edit_a_row)
    assert _offline_problems(settings, made["path"]) == ["the query-table state it carries does not match its digest"]


def test_an_archive_changed_between_its_proof_and_the_commit_deletes_nothing(sor, settings, tmp_path, monkeypatch):
    """The commit reads the state back from the verified file a row at a time, digesting it again: a file changed
    after its proof fails the commit's transaction, and the ledger and its archived state are as they were."""
    from ansible_collections.changeops.itsm.plugins.module_utils.archives import archiving

    old, new = history(sor)
    proven = archiving.verify_archive

    def proven_then_changed(path, *args, **kwargs):
        report = proven(path, *args, **kwargs)

        def edit(lines):
            index = _state_lines(lines)[0]
            lines[index]["row"] = lines[index]["row"].replace("1", "2")

        rewrite_archive(path, edit)
        return report

    monkeypatch.setattr(archiving, "verify_archive", proven_then_changed)
    with pytest.raises(ConflictError) as raised:
        archive(sor, settings, tmp_path / "archives")
    assert "changed after it was verified, so nothing was deleted" in str(raised.value)
    assert sor.get_entry("1") is not None and sor.head()[0] == new[-1].seq and sor.archive_point() is None
    assert list(sor.archive_state()) == []


def test_the_archived_state_is_read_a_page_at_a_time_in_order(sor, backend_env, settings, tmp_path, monkeypatch):
    """The live copy of the state (archive_base) is read in parts, in sorted order, on both backends: SQLite a page
    of rows at a time, PostgreSQL as one streamed COPY. A second archive starts from it, and a replay (a
    redaction's rebuild) loads it a page at a time inside its transaction."""
    record_run(sor, "run-2023", "2023-05-01T10:00:00.000000Z")
    record_run(sor, "run-2024", OLD % 1)
    record_run(sor, "run-2026", NEW % 1)
    [first] = archive(sor, settings, tmp_path / "archives", older_than="2024-01-01T00:00:00Z")["archives"]
    monkeypatch.setattr(type(sor), "_STATE_PAGE", 3)
    state = list(sor.archive_state())
    assert len(state) == first["state_rows"] > 3 and state == sorted(state)
    assert projection_check.state_digest(state) == first["state_digest"]
    [second] = archive(sor, settings, tmp_path / "archives")["archives"]
    assert second["state_rows"] > first["state_rows"]
    with open_system_of_record(dict(sor.config)) as other:
        assert other.verify(projections=True).valid
        target = [entry for entry in other.iter_entries() if entry.kind == "run.result"][-1]
        other.redact_entry(target.seq, ["task.name"], "INC-9", "ops", "ops@ctl")  # rebuilds from archive_base
        assert other.get_change_event("run-2023")["status"] == "successful"
        assert other.get_change_event("run-2024")["hosts"] and other.verify(projections=True).valid


@pytest.mark.backends("sqlite")
@pytest.mark.tampers_query_tables
def test_archived_state_rows_moved_in_the_live_table_read_as_an_edit(sor, backend_env, settings, tmp_path):
    """SQLite reads archive_base in the order its rows were written (sorted): a row deleted and written again
    (same text, now last) is out of order, and the projection check reports the state edited."""
    history(sor)
    archive(sor, settings, tmp_path / "archives")
    conn = raw_ledger_connection(sor, backend_env)
    try:
        table, row_json = conn.execute("SELECT tbl, row_json FROM archive_base ORDER BY rowid LIMIT 1").fetchone()
        conn.execute("DELETE FROM archive_base WHERE rowid = (SELECT MIN(rowid) FROM archive_base)")
        conn.execute("INSERT INTO archive_base (tbl, row_json) VALUES (?, ?)", (table, row_json))
    finally:
        conn.close()
    problems = sor.verify(projections=True).projection_problems
    assert problems[0]["table"] == "archive_base" and "sorts before the row before it" in problems[0]["detail"]


def test_an_archive_whose_entries_changed_after_its_proof_deletes_nothing(sor, settings, tmp_path, monkeypatch):
    """The commit reads the published file again and checks its bytes against what the proof read: an entry
    rewritten after the proof fails the commit, as a changed state row does."""
    from ansible_collections.changeops.itsm.plugins.module_utils.archives import archiving

    _old, new = history(sor)
    published = archiving.publish

    def publish_then_rewrite(temporary, path):
        published(temporary, path)

        def edit(lines):
            lines[3]["data"]["host"] = "elsewhere"

        rewrite_archive(path, edit)

    monkeypatch.setattr(archiving, "publish", publish_then_rewrite)
    with pytest.raises(ConflictError) as raised:
        archive(sor, settings, tmp_path / "archives")
    assert "changed after it was verified, so nothing was deleted" in str(raised.value)
    assert sor.get_entry("1") is not None and sor.head()[0] == new[-1].seq and sor.archive_point() is None


@pytest.mark.tampers_query_tables
def test_an_edited_archived_state_is_not_carried_into_the_next_archive(sor, backend_env, settings, tmp_path):
    """The next archive starts from archive_base and checks it against the digest the last archive recorded as it
    reads it: a state edited together with the live rows is refused, not archived again under a new digest."""
    record_run(sor, "run-2023", "2023-05-01T10:00:00.000000Z")
    record_run(sor, "run-2024", OLD % 1)
    record_run(sor, "run-2026", NEW % 1)
    archive(sor, settings, tmp_path / "archives", older_than="2024-01-01T00:00:00Z")
    point = sor.archive_point()
    conn = raw_ledger_connection(sor, backend_env)
    try:
        row_json = conn.execute("SELECT row_json FROM archive_base WHERE tbl = 'run_hosts' ORDER BY row_json"
                                " LIMIT 1").fetchone()[0]
        row = json.loads(row_json)
        conn.execute("DELETE FROM archive_base WHERE tbl = 'run_hosts' AND row_json = ?", (row_json,))
        conn.execute("DELETE FROM run_hosts WHERE run_id = ? AND host = ?", (row["run_id"], row["host"]))
    finally:
        conn.close()
    with pytest.raises(ConflictError) as raised:
        archive(sor, settings, tmp_path / "archives")
    assert "is not the one its ledger.archived entry recorded" in str(raised.value)
    assert sor.archive_point() == point
    assert sor.verify(projections=True).projection_problems[0]["table"] == "archive_base"


@pytest.mark.backends("sqlite")
@pytest.mark.tampers_query_tables
def test_the_projection_check_replays_from_the_state_it_digested(sor, backend_env, settings, tmp_path, monkeypatch):
    """The projection check digests the archived state on the read its replay loads: an edit of archive_base and
    the live rows landing after that read is found by the comparison, not passed by a second, edited read."""
    history(sor)
    archive(sor, settings, tmp_path / "archives")
    conn = raw_ledger_connection(sor, backend_env)
    rowid, row_json = conn.execute("SELECT rowid, row_json FROM archive_base WHERE tbl = 'run_hosts'"
                                   " ORDER BY rowid LIMIT 1").fetchone()
    row = json.loads(row_json)
    read = type(sor).archive_state

    def read_then_edit(self):
        yield from read(self)
        conn.execute("DELETE FROM archive_base WHERE rowid = ?", (rowid,))
        conn.execute("DELETE FROM run_hosts WHERE run_id = ? AND host = ?", (row["run_id"], row["host"]))

    monkeypatch.setattr(type(sor), "archive_state", read_then_edit)
    try:
        report = sor.verify(projections=True)
    finally:
        conn.close()
    assert not report.valid and report.projection_problems[0]["table"] == "run_hosts", report.projection_problems


@pytest.mark.backends("sqlite")
def test_malformed_archive_headers_and_lines_are_reported_not_crashed_on(sor, settings, tmp_path):
    """Header fields of the wrong shape, a line nested deeper than the parser goes and state rows framed to read as
    others are each a reported problem of that archive, never an exception that loses the other reports."""
    history(sor)
    [made] = archive(sor, settings, tmp_path / "archives")["archives"]
    original = tmp_path / "original.jsonl.gz"
    with open(made["path"], "rb") as source, open(str(original), "wb") as copy:
        copy.write(source.read())

    def problems_after(change, raw_line=None):
        path = tmp_path / ("%s.jsonl.gz" % change.__name__)
        with open(str(original), "rb") as source, open(str(path), "wb") as copy:
            copy.write(source.read())
        rewrite_archive(str(path), change)
        if raw_line is not None:
            with gzip.open(str(path), "rb") as handle:
                lines = handle.read().split(b"\n")[:-1]
            lines.insert(1, raw_line)
            with gzip.open(str(path), "wb") as handle:
                handle.write(b"\n".join(lines) + b"\n")
        return _offline_problems(settings, path)

    def witnessed_not_a_list(lines):
        lines[0]["witnessed"] = 5

    def witnessed_not_records(lines):
        lines[0]["witnessed"] = [5]

    def later_redaction_not_an_entry(lines):
        lines[0]["later_redactions"] = [{}]

    def nothing(lines):
        pass

    def two_rows_framed_as_one(lines):
        first, second = _state_lines(lines)[:2]
        merged = "%s\n%s\t%s" % (lines[first]["row"], lines[second]["table"], lines[second]["row"])
        lines[first]["row"] = merged
        del lines[second]

    assert "witnessed is not a list of JSON objects" in problems_after(witnessed_not_a_list)[0]
    assert "witnessed is not a list of JSON objects" in problems_after(witnessed_not_records)[0]
    assert "later_redactions hold a record that is not a ledger entry" in problems_after(
        later_redaction_not_an_entry)[0]
    assert "line 2 is not JSON" in problems_after(nothing, raw_line=b"[" * 100000 + b"]" * 100000)[0]
    assert "holds a row no query table has" in problems_after(two_rows_framed_as_one)[0]


def test_a_rehashed_archive_is_found_by_its_signed_checkpoint(sor, settings, tmp_path):
    history(sor)
    [made] = archive(sor, settings, tmp_path / "archives")["archives"]

    def rehash(lines):
        positions = [index for index, line in enumerate(lines) if "seq" in line]
        entries = [Entry.from_dict(lines[index]) for index in positions]
        entries[2].data = dict(entries[2].data, host="elsewhere")
        previous = lines[0]["prev_hash"]
        for entry in entries:
            entry.seal(entry.seq, previous)
            previous = entry.hash
        for index, entry in zip(positions, entries):
            lines[index] = entry.to_dict()
        lines[-1]["last_hash"] = previous

    rewrite_archive(made["path"], rehash)
    trusting = dict(settings, checkpoint_public_keys=[settings["checkpoint_key"] + ".pub"])
    offline = ledger_verify(None, trusting, ledger=False, archives=[made["path"]], fail_on_broken=False)
    problems = offline["archives"]["reports"][0]["problems"]
    assert any("checkpoint" in problem for problem in problems), problems


def test_a_missing_archive_is_reported(sor, settings, tmp_path):
    record_run(sor, "run-2023", "2023-05-01T10:00:00.000000Z")
    record_run(sor, "run-2024", OLD % 1)
    record_run(sor, "run-2026", NEW % 1)
    [first] = archive(sor, settings, tmp_path / "archives", older_than="2024-01-01T00:00:00Z")["archives"]
    archive(sor, settings, tmp_path / "archives")
    os.unlink(first["path"])
    checked = ledger_verify(sor, settings, archives=[str(tmp_path / "archives")], fail_on_broken=False)
    problems = checked["archives"]["problems"]
    assert not checked["archives"]["valid"]
    assert any("is not among the archives given" in problem for problem in problems), problems


@pytest.mark.tampers_query_tables
def test_the_query_tables_state_an_archive_leaves_is_protected(sor, backend_env, settings, tmp_path):
    history(sor)
    archive(sor, settings, tmp_path / "archives")
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("UPDATE archive_base SET row_json = replace(row_json, 'successful', 'failed')"
                     " WHERE tbl = 'change_events'")
    finally:
        conn.close()
    report = sor.verify(projections=True)
    assert not report.valid and report.projection_problems[0]["table"] == "archive_base", report.projection_problems


@pytest.mark.tampers_query_tables
def test_the_live_ledger_verifies_from_the_archive_and_a_cut_is_found(sor, backend_env, settings, tmp_path):
    old, new = history(sor)
    archive(sor, settings, tmp_path / "archives")
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("DELETE FROM ledger WHERE seq = ?", (new[0].seq,))
    finally:
        conn.close()
    broken = sor.verify().first_broken
    assert (broken["seq"], broken["problem"]) == (new[0].seq, "deleted"), broken


def test_witness_checkpoints_of_archived_entries_do_not_read_as_truncation(sor, settings, tmp_path):
    from ansible_collections.changeops.itsm.plugins.module_utils import witnesses

    record_run(sor, "run-old-1", OLD % 1)
    resolved = checkpoints.resolve_settings(settings, environ={})
    checkpoints.make_checkpoint(sor, resolved, "ops@ctl")
    witnesses.feed_witnesses(sor, resolved)
    record_run(sor, "run-old-2", OLD % 2)
    record_run(sor, "run-new", NEW % 1)
    [made] = archive(sor, settings, tmp_path / "archives")["archives"]
    assert made["witnessed"] >= 1
    result = ledger_verify(sor, settings)
    verification = result["verification"]
    assert verification["valid"] and verification["history_mismatch"] is None, verification["summary"]
    # the recorder's next checkpoint finds the history continuous across the archive
    assert checkpoints.make_checkpoint(sor, resolved, "ops@ctl") is not None


def test_incremental_verification_after_an_archive(sor, settings, tmp_path):
    history(sor)
    assert ledger_verify(sor, settings, mode="incremental")["changed"]  # a marker older than the archive
    archive(sor, settings, tmp_path / "archives")
    record_run(sor, "run-new-3", NEW % 3)
    result = ledger_verify(sor, settings, mode="incremental")
    verification = result["verification"]
    assert verification["valid"], verification["summary"]
    assert verification["archived_through"] > 0 and verification["base_seq"] >= verification["archived_through"]


def test_a_redaction_that_rebuilds_the_query_tables_starts_from_the_archived_state(sor, settings, tmp_path):
    _old, new = history(sor)
    archive(sor, settings, tmp_path / "archives")
    target = [entry for entry in new if entry.kind == "run.result"][0]
    # task.name is copied into columns: the query tables are rebuilt from the ledger (from the archived state)
    sor.redact_entry(target.seq, ["task.name"], "INC-9", "ops", "ops@ctl")
    assert sor.get_ci("ci-1") is not None and sor.get_change_event("run-old-2")["status"] == "successful"
    assert sor.verify(projections=True).valid


def test_redacting_an_archived_entry_says_where_it_is(sor, settings, tmp_path):
    history(sor)
    [made] = archive(sor, settings, tmp_path / "archives")["archives"]
    with pytest.raises(NotFound) as raised:
        operation(redact_ledger, LEDGER_REDACT_SPEC, sor, {}, entry="3", fields=["result.dest"], reason="x",
                  compact=False)
    assert made["file"] in str(raised.value) and "Redacting an archived entry" in str(raised.value)


def test_bad_options_are_named(sor, settings, tmp_path):
    from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError

    with pytest.raises(ValidationError, match="older_than"):
        archive(sor, settings, tmp_path / "archives", older_than="last spring")
    with pytest.raises(ValidationError, match="max_entries"):
        archive(sor, settings, tmp_path / "archives", max_entries=0)
    with pytest.raises(ValidationError, match="archives: .* is neither"):
        ledger_verify(None, settings, ledger=False, archives=[str(tmp_path / "nowhere")])


def test_a_rebuild_from_the_archived_state_keeps_the_review_list_searchable(sor, settings, tmp_path):
    """The review service's list rows of archived runs come back from the archived state; SQLite's free-text
    index of them (external content) must be rebuilt with them, or a search no longer finds those runs."""
    _old, new = history(sor)
    archive(sor, settings, tmp_path / "archives")
    searched = sorted(row["run_id"] for row in sor.list_change_events({"all": True, "q": "site.yml"})["rows"])
    assert searched == ["run-new-1", "run-new-2", "run-old-1", "run-old-2"]
    target = [entry for entry in new if entry.kind == "run.result"][0]
    sor.redact_entry(target.seq, ["task.name"], "INC-9", "ops", "ops@ctl")  # rebuilds from the archived state
    assert sorted(row["run_id"] for row in sor.list_change_events({"all": True, "q": "site.yml"})["rows"]) == searched
    assert sor.verify(projections=True).valid


def _as_before_migration_13(rows):
    # the metric tables did not exist
    return [(table, row) for table, row in rows if table not in ("metric_changes", "metric_days", "metric_ci_labels",
                                                                 "metric_ci_next")]


def _as_before_migration_16(rows):
    # metric_ci_next as migration 14 made it: no copy of the change's own start and kind
    return [(table, _without(row, "start_us", "emergency", "deployment") if table == "metric_ci_next" else row)
            for table, row in rows]


def _as_before_migration_18(rows):
    # metric_changes without a failed change's status and environment, metric_days without its packed lead times
    dropped = {"metric_changes": ("failed_status", "failed_environment"), "metric_days": ("lead_packed",)}
    return [(table, _without(row, *dropped[table]) if table in dropped else row) for table, row in rows]


def _without(row_json, *columns):
    row = json.loads(row_json)
    for column in columns:
        row.pop(column, None)
    return canonical_json(row)


def _no_metric_backfill(monkeypatch):
    monkeypatch.setattr(metric_rollups, "backfill", lambda db: None)


def _no_next_backfill(monkeypatch):
    monkeypatch.setattr(metric_rollups, "backfill_next", lambda db: None)


def _no_failed_fill(monkeypatch):
    monkeypatch.setattr(projection_check, "FILLED_BY_MIGRATION", {})


@pytest.mark.parametrize("older, upgrade_step", [
    (_as_before_migration_13, _no_metric_backfill),
    (_as_before_migration_16, _no_next_backfill),
    (_as_before_migration_18, _no_failed_fill),
], ids=["before-13", "before-16", "before-18"])
@pytest.mark.parametrize("upgraded", [True, False], ids=["upgraded-on-load", "as-loaded"])
def test_a_state_archived_by_an_older_collection_is_upgraded_when_loaded(
        sor, settings, tmp_path, monkeypatch, older, upgrade_step, upgraded):
    """An archive's query-table state written by an older collection lacks what later migrations gave the live
    tables from their own rows: the metric tables (13), metric_ci_next's copy of each change's start and kind
    (16), a failed change's status and environment (18). Loaded for a replay, the state gets them the same way
    (the projection check, a redaction's rebuild); as-loaded (that step turned off, as before) the check reports
    the archived changes as altered, or the load fails. The real thing, archives of the collection at schema 12,
    15 and 17 upgraded by this one, verified the same way by hand (2026-12-06)."""
    sor.append([Entry("ci.created", "ci-0", {"ci_id": "ci-0", "attributes": {
        "name": "web00", "class": "server", "environment": "production", "services": ["shop"]}}, at=OLD % 1)])
    record_run(sor, "run-old-0", OLD % 1, finished_at=False)
    sor.append([Entry("run.finished", "run-old-0", {"run_id": "run-old-0", "outcome": "failed"}, at=OLD % 1),
                Entry("ci.changed_by_run", "ci-0", {"ci_id": "ci-0", "run_id": "run-old-0", "host": "web00"},
                      at=OLD % 1)])
    history(sor)
    failed = [(row["run_id"], row["failed_status"]) for row in sor.find_metric_changes(None, None, failed_only=True)]
    assert failed == [("run-old-0", "failed")]
    made_by = projection_check.state_after_archive
    # (the rows the older collection wrote, sorted as an archive holds them)
    monkeypatch.setattr(projection_check, "state_after_archive",
                        lambda conn, last_seq: sorted(older(list(made_by(conn, last_seq)))))
    archive(sor, settings, tmp_path / "archives")
    state = list(sor.archive_state())
    assert state and state == sorted(older(state)), "the state is as the older collection wrote it"
    if not upgraded:
        upgrade_step(monkeypatch)
        try:
            report = sor.verify(projections=True)
            assert not report.valid and "metric_" in report.summary(), report.summary()
        except sqlite3.IntegrityError as failed:
            assert "metric_ci_next" in str(failed)  # (rows of migration 14's shape break its NOT NULL columns)
        monkeypatch.undo()  # (the step back on for the check every test ends with)
        return
    report = sor.verify(projections=True)
    assert report.valid, report.summary()
    # a redaction rebuilds the query tables from the archived state: the archived changes keep their rows
    before = sorted(sor.find_metric_changes(None, None), key=lambda row: row["run_id"])
    target = [entry for entry in sor.iter_entries() if entry.kind == "run.result"][-1]
    sor.redact_entry(target.seq, ["task.name"], "INC-9", "ops", "ops@ctl")
    assert sorted(sor.find_metric_changes(None, None), key=lambda row: row["run_id"]) == before
    assert sor.verify(projections=True).valid
