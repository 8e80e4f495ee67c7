# -*- coding: utf-8 -*-
"""The chain-only walk's fast path (``ledger.walk_chain`` over raw rows) against its general path
(``ledger.verify_rows`` over ``Entry`` objects), on both backends.

One ledger holds every shape of entry a walk meets: format 1 and format 2, null and odd subjects and actors, a
redacted format-2 entry and a redacted format-1 entry with their ``ledger.redacted`` records, and a signed
checkpoint. Then every column of one row of each shape is changed in turn (and put back), rows are removed and
pairs swapped: for each, the backend's chain-only verification must report exactly what the general walk
reports, and the fast walk alone must refuse (return None, so the general walk reports) whatever the general
walk finds broken. A fast path that skipped a column, or a check, passes a tampering the general walk catches:
that is what this test exists to see.
"""

from __future__ import annotations

import pytest

from support.raw_ledger import raw_ledger_connection

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import (
    KIND_CHECKPOINT,
    KIND_REDACTED,
    Entry,
    verify_rows,
    walk_chain,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

COLUMNS = ("entry_id", "at", "kind", "subject", "actor", "data", "prev_hash", "hash", "entry_format", "salt",
           "payload_root", "redactions")
#: what each entry's hash commits to (with its place in the chain): changing one is always a break
COMMITTED = ("entry_id", "at", "kind", "subject", "actor", "prev_hash", "hash")
#: ... except these, which no walk checks today: a redacted format-1 entry no longer matches its hash, and its
#: ledger.redacted record binds its id, hash and payload root but not its other header fields (both walks agree)
NOT_BOUND = {("format 1, redacted", column) for column in ("at", "kind", "subject", "actor")}


def mixed_ledger(sor, tmp_path):
    """``{shape: seq}`` of a ledger with every kind of row a chain-only walk treats differently."""
    run = "run-mixed"
    old = sor.append([
        Entry("run.started", run, {"run_id": run, "check_mode": False, "playbooks": ["site.yml"]}, actor="ops@ctl",
              format=1),
        Entry("run.result", run, {"run_id": run, "host": "web01", "item": None, "status": "changed",
                                  "result": {"stdout": "legacy secret"}}, format=1),
        Entry("run.finished", run, {"run_id": run, "outcome": "successful"}, actor="ops@ctl", format=1),
    ])
    run = "run-new"
    new = sor.append([
        Entry("run.started", run, {"run_id": run, "check_mode": False, "playbooks": ["site.yml"]}, actor="ops@ctl"),
        Entry("run.result", run, {"run_id": run, "host": "web02", "item": None, "status": "ok",
                                  "task": {"name": "t1", "action": "ansible.builtin.copy"}}),
        Entry("run.result", run, {"run_id": run, "host": "web03", "item": None, "status": "changed",
                                  "result": {"stdout": "new secret"}}, actor='d\u00e9ploy "bot"\\ops'),
        Entry("run.finished", run, {"run_id": run, "outcome": "successful"}, actor="ops@ctl"),
    ])
    # a bookkeeping entry with neither subject nor actor (a checkpoint that a later one supersedes)
    sor.append([Entry(KIND_CHECKPOINT, None, {"note": "no subject, no actor"})])
    redacted_new = sor.redact_entry(new[2].seq, ["result.stdout"], "test", "auditor", "auditor@ctl")
    redacted_old = sor.redact_entry(old[1].seq, ["result.stdout"], "test", "auditor", "auditor@ctl")
    key = str(tmp_path / "checkpoint.key")
    checkpoints.generate_key(key)
    checkpoint = checkpoints.make_checkpoint(sor, {"checkpoint_key": key}, "auditor@ctl")
    sor.append([Entry("run.started", "run-last", {"run_id": "run-last", "check_mode": False}, actor="ops@ctl")])
    assert checkpoint is not None and checkpoint.kind == KIND_CHECKPOINT
    assert redacted_new.kind == redacted_old.kind == KIND_REDACTED
    return {
        "format 1": old[0].seq, "format 1, redacted": old[1].seq, "format 2, no actor": new[1].seq,
        "format 2, odd actor, redacted": new[2].seq, "format 2": new[3].seq, "no subject": new[3].seq + 1,
        "ledger.redacted": redacted_new.seq, "checkpoint": checkpoint.seq,
    }


def reports(sor, base_seq=0, **kwargs):
    """``(backend, general, fast)``: the backend's chain-only walk, the general walk, and the fast walk alone (None
    when it refused) of the ledger as stored, read through a new connection; ``base_seq``: start after that entry."""
    with open_system_of_record(dict(sor.config)) as other:
        base = (base_seq, other.hashes_at([base_seq])[base_seq]) if base_seq else None
        backend = other._walk(payloads=False, base=base, **kwargs).to_dict()
        general = verify_rows(lambda: other.iter_entries(after_seq=base_seq), payloads=False, base=base,
                              load_entries=other.entries_at, **kwargs).to_dict()
        fast = walk_chain(other._chain_rows(base_seq), base=base, load_entries=other.entries_at, **kwargs)
    return backend, general, fast.to_dict() if fast is not None else None


def differences(label, sor, **kwargs):
    """What is wrong with the fast path on the ledger as it stands: a list of sentences (empty: nothing)."""
    backend, general, fast = reports(sor, **kwargs)
    found = []
    if backend != general:
        found.append("%s: the backend reports %r, the general walk %r" % (label, backend["summary"], general["summary"]))
    if general["first_broken"] is None and fast != general:
        # an intact chain (a head or a checkpoint missing is reported, but by the same walk)
        found.append("%s: the fast walk %s where the general walk reports %r" % (
            label, "refused" if fast is None else "reported %r" % fast["summary"], general["summary"]))
    if general["first_broken"] is not None and fast is not None:
        # a break is always reported by the general walk: the fast one must not have passed it
        found.append("%s: the fast walk passed what the general walk reports: %s" % (label, general["summary"]))
    return found


def changed(value, column):
    if column == "entry_format":
        return 3 - value
    if column == "redactions":
        return None if value else '{"salts":[],"tombstones":{}}'
    if column == "salt":
        return "ab" * 16 if value is None else None
    if column == "data" and value.startswith("{"):
        return '{"tampered":true,' + value[1:]
    return "x" if value is None else value[:-1] + ("x" if value[-1:] != "x" else "y")


@pytest.mark.tampers_query_tables
def test_the_fast_and_the_general_walk_report_the_same_for_every_row_shape_and_tampering(sor, backend_env, tmp_path):
    shapes = mixed_ledger(sor, tmp_path)
    head_seq, head = sor.head()
    anchors = [{"seq": shapes["format 2"], "hash": sor.hashes_at([shapes["format 2"]])[shapes["format 2"]],
                "detail_rewritten": "rewritten", "detail_truncated": "truncated", "witness": "test"}]
    kwargs = {"expected_head": head, "anchors": anchors}

    # intact: the fast walk takes every row (no fallback) and says what the general walk says, from any base
    backend, general, fast = reports(sor, **kwargs)
    assert general["valid"] and len(general["redactions"]) == 2, general["summary"]
    assert fast == general == backend
    for base_seq in (shapes["format 1, redacted"], shapes["format 2"], shapes["ledger.redacted"]):
        backend, general, fast = reports(sor, base_seq=base_seq, **kwargs)
        assert general["valid"] and fast == general == backend, (base_seq, general["summary"])

    problems = []
    conn = raw_ledger_connection(sor, backend_env)
    try:
        select = "SELECT %s FROM ledger WHERE seq = ?" % ", ".join(COLUMNS)
        for shape, seq in sorted(shapes.items(), key=lambda item: item[1]):
            original = dict(zip(COLUMNS, conn.execute(select, (seq,)).fetchone()))
            for column in COLUMNS:
                conn.execute("UPDATE ledger SET %s = ? WHERE seq = ?" % column, (changed(original[column], column), seq))
                try:
                    label = "%s (entry %d): %s changed" % (shape, seq, column)
                    problems += differences(label, sor, **kwargs)
                    if column in COMMITTED and (shape, column) not in NOT_BOUND and reports(sor, **kwargs)[1]["valid"]:
                        problems.append("%s: the general walk did not notice" % label)
                finally:
                    conn.execute("UPDATE ledger SET %s = ? WHERE seq = ?" % column, (original[column], seq))
            # removed, then put back
            row = conn.execute("SELECT seq, %s FROM ledger WHERE seq = ?" % ", ".join(COLUMNS), (seq,)).fetchone()
            conn.execute("DELETE FROM ledger WHERE seq = ?", (seq,))
            try:
                problems += differences("%s (entry %d) removed" % (shape, seq), sor, **kwargs)
            finally:
                conn.execute("INSERT INTO ledger (seq, %s) VALUES (?%s)" % (", ".join(COLUMNS), ", ?" * len(COLUMNS)),
                             tuple(row))
            # renumbered from here on, the links intact: a gap in the positions (the seq column)
            for statement in ("UPDATE ledger SET seq = -seq WHERE seq >= ?", "UPDATE ledger SET seq = 10 - seq WHERE seq < 0"):
                conn.execute(statement, (seq,) if "?" in statement else ())
            try:
                problems += differences("%s (entry %d) and the rest renumbered" % (shape, seq), sor, **kwargs)
            finally:
                for statement in ("UPDATE ledger SET seq = 10 - seq WHERE seq >= ?", "UPDATE ledger SET seq = -seq WHERE seq < 0"):
                    conn.execute(statement, (seq + 10,) if "?" in statement else ())
            # swapped with its neighbour, and with an entry further on
            for other in (seq + 1, seq + 3):
                if other > head_seq:
                    continue
                swap = [(seq, -1), (other, seq), (-1, other)]
                for old, new in swap:
                    conn.execute("UPDATE ledger SET seq = ? WHERE seq = ?", (new, old))
                try:
                    problems += differences("%s (entry %d) swapped with entry %d" % (shape, seq, other), sor,
                                            **kwargs)
                finally:
                    for old, new in swap:
                        conn.execute("UPDATE ledger SET seq = ? WHERE seq = ?", (new, old))
        # the last entry cut off: only the expected head can tell
        row = conn.execute("SELECT seq, %s FROM ledger WHERE seq = ?" % ", ".join(COLUMNS), (head_seq,)).fetchone()
        conn.execute("DELETE FROM ledger WHERE seq = ?", (head_seq,))
        try:
            problems += differences("the head removed", sor, **kwargs)
        finally:
            conn.execute("INSERT INTO ledger (seq, %s) VALUES (?%s)" % (", ".join(COLUMNS), ", ?" * len(COLUMNS)),
                         tuple(row))
    finally:
        conn.close()
    assert not problems, "\n".join(problems)
    assert reports(sor, **kwargs)[2] == reports(sor, **kwargs)[1]  # everything was put back
