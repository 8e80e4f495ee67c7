# -*- coding: utf-8 -*-
"""Tamper with a real ledger behind the collection's back and check verify names the first broken entry.

This is what an administrator with write access to ``ledger.sqlite`` (through
sqlite3) or to the shared PostgreSQL database (through psycopg) could do: edit
a row, delete rows, move rows, slip one in. Each test runs on both backends.
"""

from __future__ import annotations

import json
import os

import pytest

from support.raw_ledger import raw_ledger_connection

from ansible_collections.changeops.itsm.plugins.module_utils import commitments
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

ENTRIES = 12


def populate(sor):
    """A realistic ledger: one run with a play, task results on several hosts, a finish; three batches."""
    run_id = "run-tamper"
    started = {"run_id": run_id, "started_at": "2026-11-23T10:00:00.000000Z", "user": "ops", "controller": "ctl",
               "playbooks": ["site.yml"]}
    sor.append([Entry("run.started", run_id, started),
                Entry("run.play", run_id, {"run_id": run_id, "play_id": "p1", "name": "web"})])
    sor.append([Entry("run.result", run_id, {"run_id": run_id, "play_id": "p1", "host": "web%02d" % n, "item": None,
                                             "task": {"name": "t%d" % n, "action": "ansible.builtin.copy"},
                                             "status": "changed", "changed": True})
                for n in range(1, ENTRIES - 2)])
    finished = {"run_id": run_id, "ended_at": "2026-11-23T10:05:00.000000Z", "outcome": "successful"}
    sor.append([Entry("run.finished", run_id, finished)])
    seq, head = sor.head()
    assert seq == ENTRIES
    assert sor.verify().valid
    return head


def row(conn, seq):
    return conn.execute("SELECT seq, entry_id, at, kind, subject, actor, data, prev_hash, hash, entry_format, salt,"
                        " payload_root, redactions FROM ledger WHERE seq = ?", (seq,)).fetchone()


def verify_fresh(sor, expected_head=None, projections=False):
    """Verify through a new connection, as a later ledger_verify run would."""
    fresh = open_system_of_record(dict(sor.config))
    try:
        return fresh.verify(expected_head=expected_head, projections=projections)
    finally:
        fresh.close()


def move(conn, seq, to):
    conn.execute("UPDATE ledger SET seq = ? WHERE seq = ?", (to, seq))


def edit_data(conn):
    data = json.loads(row(conn, 5)[6])
    data["status"] = "ok"
    data["changed"] = False
    conn.execute("UPDATE ledger SET data = ? WHERE seq = 5", (canonical_json(data),))
    return 5, "edited"


def edit_actor(conn):
    conn.execute("UPDATE ledger SET actor = 'someone-else@ctl' WHERE seq = 7")
    return 7, "edited"


def edit_and_rehash(conn):
    """Someone who knows the format edits entry 6, commits its payload anew and recomputes its hash."""
    entry = Entry.from_row(row(conn, 6))
    entry.data = dict(entry.data, host="innocent")
    entry.seal(entry.seq, entry.prev_hash)
    conn.execute("UPDATE ledger SET data = ?, hash = ?, salt = ?, payload_root = ? WHERE seq = 6",
                 (entry.data_json(), entry.hash, entry.salt, entry.payload_root))
    return 6, "edited"


def edit_commitment(conn):
    """The payload and its root edited together, the hash left: the hash covers the root."""
    entry = Entry.from_row(row(conn, 4))
    entry.data = dict(entry.data, status="ok")
    entry.prepare()
    conn.execute("UPDATE ledger SET data = ?, salt = ?, payload_root = ? WHERE seq = 4",
                 (entry.data_json(), entry.salt, entry.payload_root))
    return 4, "edited"


def fake_redaction(conn):
    """A field removed as ledger_redact would, but without its ledger.redacted entry."""
    entry = Entry.from_row(row(conn, 8))
    digests = commitments.field_commitments(entry.data, entry.salt, cut=entry.cut())
    salts = commitments.salts_from_seed(entry.salt, len(digests))
    index = [path for path, _digest, _redacted in digests].index(("host",))
    data = commitments.with_field_replaced(entry.data, ("host",), commitments.tombstone(99))
    redactions = {"salts": [salt.hex() if number != index else None for number, salt in enumerate(salts)],
                  "tombstones": {'["host"]': digests[index][1].hex()}}
    conn.execute("UPDATE ledger SET data = ?, salt = NULL, redactions = ? WHERE seq = 8",
                 (canonical_json(data), canonical_json(redactions)))
    return 8, "edited"


def duplicate_key(conn):
    """A key given twice: a JSON parser keeps the last value (the hashed one), SQL's json functions the first."""
    text = row(conn, 5)[6]
    assert text.startswith("{") and '"host":"web03"' in text
    conn.execute("UPDATE ledger SET data = ? WHERE seq = 5", ('{"host":"mallory",' + text[1:],))
    return 5, "edited"


def reformat_data(conn):
    """Same content, other bytes: what the ledger holds must be exactly what was sealed."""
    conn.execute("UPDATE ledger SET data = ? WHERE seq = 3", (json.dumps(json.loads(row(conn, 3)[6]), indent=1),))
    return 3, "edited"


def delete_middle(conn):
    conn.execute("DELETE FROM ledger WHERE seq = 4")
    return 4, "deleted"


def delete_first(conn):
    conn.execute("DELETE FROM ledger WHERE seq = 1")
    return 1, "deleted"


def delete_and_renumber(conn):
    conn.execute("DELETE FROM ledger WHERE seq = 8")
    for seq in range(9, ENTRIES + 1):
        move(conn, seq, seq - 1)
    # structurally identical to entry 7 being rewritten: the earliest entry that may be altered
    return 7, "edited"


def swap(conn):
    move(conn, 3, -1)
    move(conn, 9, 3)
    move(conn, -1, 9)
    return 3, "reordered"


def insert_forged(conn):
    for seq in range(ENTRIES, 5, -1):
        move(conn, seq, seq + 1)
    forged = Entry("run.result", "run-tamper", {"run_id": "run-tamper", "host": "web99", "status": "ok"})
    forged.seal(6, row(conn, 5)[8])
    conn.execute("INSERT INTO ledger (seq, entry_id, at, kind, subject, actor, data, prev_hash, hash, entry_format,"
                 " salt, payload_root) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (6, forged.id, forged.at, forged.kind, forged.subject, forged.actor, forged.data_json(),
                  forged.prev_hash, forged.hash, forged.format, forged.salt, forged.payload_root))
    return 6, "inserted"


@pytest.mark.parametrize("tamper", [edit_data, edit_actor, edit_and_rehash, edit_commitment, fake_redaction,
                                    duplicate_key, reformat_data, delete_middle, delete_first, delete_and_renumber,
                                    swap, insert_forged], ids=lambda f: f.__name__)
def test_verify_names_the_first_broken_entry(sor, backend_env, tamper):
    populate(sor)
    conn = raw_ledger_connection(sor, backend_env)
    try:
        expected_seq, expected_problem = tamper(conn)
    finally:
        conn.close()
    report = verify_fresh(sor)
    assert not report.valid
    broken = report.first_broken
    assert (broken["seq"], broken["problem"]) == (expected_seq, expected_problem), broken
    assert str(expected_seq) in report.summary()


def test_a_duplicated_key_is_reported_although_projections_agree(sor, backend_env):
    """The projections were made from the sealed value, so only the stored text shows the forgery."""
    populate(sor)
    conn = raw_ledger_connection(sor, backend_env)
    try:
        duplicate_key(conn)
    finally:
        conn.close()
    report = verify_fresh(sor, projections=True)
    assert not report.valid
    assert (report.first_broken["seq"], report.first_broken["problem"]) == (5, "edited")
    assert "canonical" in report.summary()


def test_each_new_tampering_moves_the_report_to_the_first_break(sor, backend_env):
    populate(sor)
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("UPDATE ledger SET kind = 'run.play' WHERE seq = 10")
        assert verify_fresh(sor).first_broken["seq"] == 10
        conn.execute("DELETE FROM ledger WHERE seq = 6")
        broken = verify_fresh(sor).first_broken
        assert (broken["seq"], broken["problem"]) == (6, "deleted")
        move(conn, 2, 0)
        move(conn, 3, 2)
        move(conn, 0, 3)
        broken = verify_fresh(sor).first_broken
        assert (broken["seq"], broken["problem"]) == (2, "reordered")
    finally:
        conn.close()


@pytest.mark.tampers_query_tables
def test_truncating_the_tail_is_caught_against_an_anchored_head(sor, backend_env):
    anchored = populate(sor)
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("DELETE FROM ledger WHERE seq > 9")
    finally:
        conn.close()
    # the remaining chain is internally consistent...
    assert verify_fresh(sor).valid
    # ...but the head kept elsewhere is gone
    report = verify_fresh(sor, expected_head=anchored)
    assert not report.valid
    assert anchored[:16] in report.summary()
    # ...and the query tables still hold what the removed entries projected
    report = verify_fresh(sor, projections=True)
    assert not report.valid
    assert {(p["table"], p["key"], p["problem"]) for p in report.projection_problems} >= {
        ("task_results", "seq=10", "unexpected"), ("task_results", "seq=11", "unexpected"),
        ("change_events", "run_id=run-tamper", "altered")}


def test_appending_after_tampering_does_not_launder_the_break(sor, backend_env):
    populate(sor)
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute("UPDATE ledger SET subject = 'other' WHERE seq = 2")
    finally:
        conn.close()
    sor.append([Entry("run.started", "run-2", {"run_id": "run-2"})])
    report = verify_fresh(sor)
    assert report.first_broken["seq"] == 2
    assert report.entries_checked == ENTRIES + 1


QUERY_TABLE_TAMPERINGS = [
    ("UPDATE task_results SET status = 'ok', changed = 0 WHERE seq = 5",
     "task_results", "seq=5", "altered", "columns status, changed differ"),
    ("DELETE FROM task_results WHERE seq = 7", "task_results", "seq=7", "missing", None),
    ("INSERT INTO task_results (seq, run_id, host, status, changed, doc)"
     " VALUES (99, 'run-tamper', 'web99', 'changed', 1, '{}')", "task_results", "seq=99", "unexpected", None),
    ("UPDATE change_events SET status = 'failed' WHERE run_id = 'run-tamper'",
     "change_events", "run_id=run-tamper", "altered", "columns status differ"),
]


@pytest.mark.tampers_query_tables
@pytest.mark.parametrize("statement,table,key,problem,columns", QUERY_TABLE_TAMPERINGS,
                         ids=["edit-result", "delete-result", "insert-result", "edit-event"])
def test_verify_with_projections_names_the_edited_query_table_row(sor, backend_env, statement, table, key,
                                                                  problem, columns):
    """The chain is untouched, so only comparing the query tables with a replay of it finds these."""
    populate(sor)
    assert verify_fresh(sor, projections=True).projections_checked is True
    conn = raw_ledger_connection(sor, backend_env)
    try:
        conn.execute(statement)
    finally:
        conn.close()
    assert verify_fresh(sor).valid, "the chain itself is intact"
    report = verify_fresh(sor, projections=True)
    assert not report.valid
    [found] = report.projection_problems
    assert (found["table"], found["key"], found["problem"]) == (table, key, problem), found
    if columns:
        assert columns in found["detail"]
    assert "query tables disagree" in report.summary() and key in report.summary()


def test_the_projection_check_holds_a_page_of_a_live_table_not_the_whole_table(sor, monkeypatch):
    """``ledger_verify``'s projection check (on by default) read every live query table whole and compared it with
    a whole in-memory replay: ~5.5 kB of memory per live entry, gigabytes at 1,000,000 entries (issue 21). It
    now reads a page at a time, holds a digest per bucket of rows and replays into a scratch file."""
    import tracemalloc

    monkeypatch.setattr(type(sor), "_PROJECTION_PAGE", 100, raising=False)
    run_id = "run-big"
    started = {"run_id": run_id, "started_at": "2026-12-05T07:00:00Z", "playbooks": ["site.yml"], "check_mode": False}
    sor.append([Entry("run.started", run_id, started)])
    for start in range(0, 6000, 500):
        sor.append([Entry("run.result", run_id, {
            "run_id": run_id, "host": "web%03d" % (index % 50), "status": "changed", "changed": True,
            "task": {"uuid": "t-%d" % (index % 20), "name": "task %d" % (index % 20), "action": "command"},
            "result": {"stdout": ("output line %d of a long task; " % index) * 40}}) for index in range(start, start + 500)])
    tracemalloc.start()
    try:
        report = verify_fresh(sor, projections=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.valid and report.projections_checked is True and not report.projection_problems
    # the whole task_results table, read twice (live and replayed), is ~25 MB here
    assert peak < 15 * 1024 * 1024, "the projection check of 6,000 task results peaked at %.1f MB" % (peak / 1048576.0)


_ROW_A = ("run-1", "web01", 3, "ok", None)
_ROW_B = ("run-1", "web02", 4, "failed", "2026-12-05T07:00:00Z")
_ROW_C = ("run-2", "web01", 1, "ok", None)


@pytest.mark.parametrize("live, rebuilt, same", [
    ([_ROW_A, _ROW_B, _ROW_C], [_ROW_C, _ROW_A, _ROW_B], True),  # any order
    ([], [], True),
    ([_ROW_A, _ROW_A, _ROW_B], [_ROW_B, _ROW_A, _ROW_A], True),  # equal rows repeated alike
    ([_ROW_A, _ROW_B], [_ROW_A, ("run-1", "web02", 4, "ok", "2026-12-05T07:00:00Z")], False),  # a value altered
    ([_ROW_A, _ROW_B], [_ROW_A, _ROW_B, _ROW_C], False),  # a row deleted from the live table
    ([_ROW_A, _ROW_B, _ROW_C], [_ROW_A, _ROW_B], False),  # a row with no ledger entry behind it
    ([_ROW_A, _ROW_A, _ROW_B], [_ROW_A, _ROW_B, _ROW_B], False),  # the same rows, other multiplicities
    ([_ROW_A, _ROW_A], [_ROW_A], False),  # a row duplicated
    ([("run-1", 1)], [("run-1", "1")], False),  # a number stored as text is another value
    ([("run-1", None)], [("run-1", "")], False),  # NULL is not empty text
    # values a backend returns typed differently from SQLite, equal all the same
    ([("run-1", 1, 0, 2, b"x")], [("run-1", True, 0.0, __import__("decimal").Decimal("2.0"), memoryview(b"x"))], True),
    ([("run-1", 1.5)], [("run-1", __import__("decimal").Decimal("1.5"))], True),
    ([("run-1", 1.5)], [("run-1", 1.25)], False),
])
def test_the_projection_check_compares_tables_as_multisets_of_rows(live, rebuilt, same):
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

    columns = ["c%d" % index for index in range(len((live or rebuilt or [_ROW_A])[0]))]
    for one, other in ((live, rebuilt), (rebuilt, live)):
        problems = projection_check.table_problems("task_results", "c0", columns, lambda: iter(one),
                                                   lambda: iter(other), 20)
        assert (problems == []) is same, problems


def test_the_projection_checks_multiset_digest_is_keyed_afresh_for_each_table(monkeypatch):
    """The digest is a sum of row hashes: unkeyed, someone who edits the live table before a check could search for
    rows whose hashes sum to the original's. The key is drawn when each table's comparison starts, and a digest
    under one key says nothing of another's."""
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

    drawn = []
    real_urandom = projection_check.os.urandom

    def recording_urandom(size):
        drawn.append(real_urandom(size))
        return drawn[-1]

    monkeypatch.setattr(projection_check.os, "urandom", recording_urandom)
    columns = ["run_id", "host", "count", "status", "at"]
    rows = [_ROW_A, _ROW_B, _ROW_C]
    assert projection_check.table_problems("run_hosts", "run_id", columns, lambda: iter(rows),
                                           lambda: iter(reversed(rows)), 20) == []
    assert projection_check.table_problems("run_hosts", "run_id", columns, lambda: iter(rows[:1]),
                                           lambda: iter(rows[:1]), 20) == []
    assert len(drawn) == 2 and all(len(key) == 32 for key in drawn) and drawn[0] != drawn[1]
    first, second = (projection_check.bucket_digests(iter(rows), key, 0) for key in drawn)
    assert sorted(first) == sorted(second) and all(first[bucket][1] == second[bucket][1] for bucket in first)
    assert sum(count for _digest, count in first.values()) == 3
    assert all(first[bucket][0] != second[bucket][0] for bucket in first)
    assert projection_check.bucket_digests(iter(reversed(rows)), drawn[0], 0) == first


def test_the_projection_check_holds_no_state_per_row_of_a_table():
    """A digest held per live row (about 110 bytes) made the projection check of a 1,000,000-change-event ledger
    hold hundreds of megabytes for its largest table (``task_results``); a comparison now holds a sum per bucket."""
    import tracemalloc

    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

    tracemalloc.start()
    try:
        problems = projection_check.table_problems("task_results", "seq", ["seq", "run_id", "host", "status"],
                                                   _results_table(60000), _results_table(60000), 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problems == []
    # a digest per row of 60,000 rows is over 6 MB
    assert peak < 512 * 1024, "comparing two tables of 60,000 rows peaked at %.2f MB" % (peak / 1048576.0)


def _results_table(count, altered=(), deleted=(), inserted=0):
    """Rows of a task_results-like table: ``(seq, run_id, host, status)``; the seqs in ``altered`` with another
    status, those in ``deleted`` left out, ``inserted`` rows added that the other side lacks."""
    def rows():
        for seq in range(count):
            if seq in deleted:
                continue
            yield (seq, "run-%05d" % (seq // 10), "web%03d" % (seq % 500), "failed" if seq in altered else "ok")
        for extra in range(inserted):
            yield (count + extra, "run-forged", "web001", "ok")
    return rows


def test_a_table_the_projection_check_finds_edited_is_read_again_for_its_edited_part_only():
    """A table that differs was read whole on both sides to name the differing rows: the check that found one edited
    row in a table of millions could exhaust the controller's memory. Now only the edited rows' buckets are held."""
    import tracemalloc

    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

    columns = ["seq", "run_id", "host", "status"]
    tracemalloc.start()
    try:
        problems = projection_check.table_problems("task_results", "seq", columns,
                                                   _results_table(60000, altered={41234}), _results_table(60000), 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(found["key"], found["problem"]) for found in problems] == [("seq=41234", "altered")]
    assert "status" in problems[0]["detail"]
    # both tables whole are over 10 MB
    assert peak < 1024 * 1024, "naming one edited row of 60,000 peaked at %.2f MB" % (peak / 1048576.0)


def test_the_projection_check_names_what_a_whole_table_comparison_names_whatever_the_buckets_held(monkeypatch):
    """Differing buckets read a few at a time (``ROWS_HELD``) give the problems the whole tables give."""
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

    columns = ["seq", "run_id", "host", "status"]
    live = _results_table(3000, altered={5, 700, 1999}, deleted={12, 2500}, inserted=2)
    rebuilt = _results_table(3000)
    whole = projection_check.compare_table("task_results", "seq", columns, list(live()), list(rebuilt()), 50)
    assert sorted((found["key"], found["problem"]) for found in whole) == [
        ("seq=12", "missing"), ("seq=1999", "altered"), ("seq=2500", "missing"), ("seq=3000", "unexpected"),
        ("seq=3001", "unexpected"), ("seq=5", "altered"), ("seq=700", "altered")]
    for held in (1, 10, projection_check.ROWS_HELD):
        monkeypatch.setattr(projection_check, "ROWS_HELD", held)
        found = projection_check.table_problems("task_results", "seq", columns, live, rebuilt, 50)
        assert sorted(found, key=repr) == sorted(whole, key=repr), held
        limited = projection_check.table_problems("task_results", "seq", columns, live, rebuilt, 3)
        assert len(limited) == 3 and all(problem in whole for problem in limited), held
    assert projection_check.table_problems("task_results", "seq", columns, rebuilt, rebuilt, 50) == []


def test_the_projection_check_reports_nothing_of_a_table_that_moved_while_it_was_read_again():
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

    columns = ["seq", "run_id", "host", "status"]
    assert projection_check.table_problems("task_results", "seq", columns, _results_table(100, altered={3}),
                                           _results_table(100), 20, unchanged=lambda: False) is None


def test_values_typed_differently_cost_the_projection_check_no_second_reading():
    """A column PostgreSQL returns typed differently from SQLite (a boolean, a numeric) must neither differ nor make
    every check read the table again bucket by bucket (hours for a table of millions)."""
    import decimal

    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

    readings = []

    def reading(rows):
        def read():
            readings.append(1)
            return iter(rows)
        return read

    sqlite_rows = [(seq, "run-%d" % seq, seq % 2, 1.5) for seq in range(3000)]
    postgresql_rows = [(decimal.Decimal(seq), "run-%d" % seq, bool(seq % 2), decimal.Decimal("1.50"))
                       for seq in range(3000)]
    assert projection_check.table_problems("task_results", "seq", ["seq", "run_id", "ok", "score"],
                                           reading(postgresql_rows), reading(sqlite_rows), 20) == []
    assert len(readings) == 2


def test_a_row_forged_under_a_nan_key_is_reported_on_every_check():
    """Python's hash of a NaN is its object's: a forged row keyed NaN (a key column altered to a float type) landed
    in another bucket when its bucket was read again, and the check said the table matched."""
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

    columns = ["seq", "run_id", "host", "status"]
    rebuilt = _results_table(2000)

    forged_keys = []  # each reading's NaN kept: a new one is another object, as a new reading of the table gives

    def live():
        yield from rebuilt()
        forged_keys.append(float("nan"))
        yield (forged_keys[-1], "run-forged", "web001", "ok")

    for _check in range(20):
        problems = projection_check.table_problems("task_results", "seq", columns, live, rebuilt, 20)
        assert [found["problem"] for found in problems] == ["unexpected"], problems


def test_a_table_written_between_the_two_readings_of_one_check_is_reported(monkeypatch):
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

    columns = ["seq", "run_id", "host", "status"]
    readings = []

    def live():
        readings.append(1)
        # the first reading has an edited row; the second the original (the edit undone between the readings)
        return _results_table(500, altered={7} if len(readings) == 1 else ())()

    problems = projection_check.table_problems("task_results", "seq", columns, live, _results_table(500), 20,
                                               unchanged=lambda: True)
    assert [(found["key"], found["problem"]) for found in problems] == [("seq=*", "altered")], problems
    assert "changed between two readings" in problems[0]["detail"]
    # an append meanwhile explains it: nothing is reported, the check is made again
    readings.clear()
    assert projection_check.table_problems("task_results", "seq", columns, live, _results_table(500), 20,
                                           unchanged=iter([True, False]).__next__) is None


def test_one_key_with_more_rows_than_a_reading_holds_is_read_whole(monkeypatch):
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

    monkeypatch.setattr(projection_check, "ROWS_HELD", 5)
    columns = ["run_id", "host", "status"]
    rebuilt = [("run-1", "web%03d" % index, "ok") for index in range(40)] + [("run-2", "web001", "ok")]
    live = [row for row in rebuilt if row[1] != "web017" and row[0] != "run-2"] + [("run-2", "web001", "failed")]
    problems = projection_check.table_problems("run_hosts", "run_id", columns, lambda: iter(live),
                                               lambda: iter(rebuilt), 20)
    assert sorted((found["key"], found["problem"]) for found in problems) == [
        ("run_id=run-1", "missing"), ("run_id=run-2", "altered")]


def test_the_projection_checks_problems_come_in_the_same_order_in_every_process():
    """The buckets are read in their order; a bucket taken from Python's hash of text (seeded per process) made the
    problems reported, and their order, change from one check to the next (and the register with them)."""
    import subprocess
    import sys

    script = (
        "from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check as p\n"
        "p.ROWS_HELD = 1\n"
        "rebuilt = [('run-%03d' % i, 'ok') for i in range(300)]\n"
        "live = [(r, 'failed' if int(r[4:]) % 37 == 0 else s) for r, s in rebuilt]\n"
        "print([f['key'] for f in p.table_problems('run_hosts', 'run_id', ['run_id', 'status'],"
        " lambda: iter(live), lambda: iter(rebuilt), 4)])\n")
    outputs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=os.pathsep.join(filter(None, sys.path)))
        outputs.add(subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                                   text=True).stdout)
    assert len(outputs) == 1, outputs
    assert len(eval(outputs.pop())) == 4  # noqa: S307 (our own script's printed list)


def test_a_projection_check_that_fails_part_way_leaves_no_scratch_copy_behind(sor, monkeypatch, tmp_path):
    """The projection check replays into a scratch file of the query tables' size; a replay that fails part-way
    (a full temporary directory, a projector error, an interrupt) must not leave that copy behind, run after run
    (the scratch was made, and the replay started, outside the cleanup)."""
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

    scratch_root = tmp_path / "tmpdir"
    scratch_root.mkdir()
    monkeypatch.setattr(projection_check.tempfile, "tempdir", str(scratch_root))
    started = {"run_id": "run-1", "started_at": "2026-12-05T07:00:00Z", "playbooks": ["site.yml"], "check_mode": False}
    sor.append([Entry("run.started", "run-1", started)])
    real_rebuild = projection_check.rebuild

    def failing_rebuild(entries, **kwargs):
        real_rebuild(entries, **kwargs).close()  # the scratch file is written, then the replay fails
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:  # undone before the fixture's own teardown verifies the ledger
        patched.setattr(projection_check, "rebuild", failing_rebuild)
        with pytest.raises(OSError):
            verify_fresh(sor, projections=True)
    assert list(scratch_root.iterdir()) == []
