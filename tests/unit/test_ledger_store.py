# -*- coding: utf-8 -*-
"""Appending to a real system of record (every backend): sealing, idempotency, atomicity, concurrency."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.config import resolve_backend_config
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from support.project import COLLECTIONS_PATH


def evidence(n, run_id="run-1"):
    return Entry("evidence.recorded", run_id, {"run_id": run_id, "host": "h%d" % n, "checklist": "cis",
                                               "status": "pass", "n": n})


def ci_created(ci_id, name, identities=None):
    return Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": name, "class": "server"},
                                       "identities": identities or {}})


def test_append_seals_entries_into_one_chain(sor):
    first = sor.append([evidence(1), evidence(2)])
    second = sor.append([evidence(3)])
    assert [e.seq for e in first + second] == [1, 2, 3]
    assert first[1].prev_hash == first[0].hash and second[0].prev_hash == first[1].hash
    assert sor.head() == (3, second[0].hash)
    stored = list(sor.iter_entries())
    assert [e.to_dict() for e in stored] == [e.to_dict() for e in first + second]
    assert sor.verify().valid


def test_empty_ledger(sor):
    assert sor.head() == (0, None)
    assert sor.append([]) == []
    report = sor.verify()
    assert report.valid and report.entries_checked == 0


def test_iter_entries_filters(sor):
    sor.append([evidence(1, "a"), evidence(2, "b"), ci_created("ci-1", "web01"), evidence(3, "a")])
    assert [e.seq for e in sor.iter_entries(subject="a")] == [1, 4]
    assert [e.seq for e in sor.iter_entries(kinds=["ci.created"])] == [3]
    assert [e.seq for e in sor.iter_entries(after_seq=2)] == [3, 4]
    assert [e.seq for e in sor.iter_entries(limit=2)] == [1, 2]
    assert [e.seq for e in sor.iter_entries(kinds=["evidence.recorded"], after_seq=1, limit=1)] == [2]


def test_verify_walks_ledgers_larger_than_one_read_batch(sor):
    sor.append([evidence(n) for n in range(2500)])
    report = sor.verify()
    assert report.valid and report.entries_checked == 2500 and report.head_seq == 2500


def test_look_ups_by_seq_read_more_than_one_list_in_order(sor):
    """entries_at / hashes_at (the chain walk's reads of redacted entries before its base, the anchors' hashes): every
    entry asked for that the ledger holds, in order, however many lists of seqs the look-up takes."""
    appended = sor.append([evidence(n) for n in range(1200)])
    wanted = list(range(2, 1200, 1)) + [5000]  # (5000: not in the ledger)
    assert [entry.to_dict() for entry in sor.entries_at(wanted)] == [entry.to_dict() for entry in appended[1:1199]]
    assert sor.hashes_at(wanted) == dict((entry.seq, entry.hash) for entry in appended[1:1199])
    assert sor.entries_at([]) == [] and sor.hashes_at([]) == {}


def test_reappending_known_entry_ids_is_a_no_op(sor):
    originals = sor.append([evidence(1), evidence(2)])
    head = sor.head()
    replayed = [Entry.from_dict(e.to_dict()) for e in originals]
    assert sor.append(replayed) == []
    assert sor.head() == head
    assert len(sor.find_evidence()) == 2  # projections were not applied twice either


def test_a_batch_mixing_known_and_new_entries_appends_only_the_new(sor):
    known = sor.append([evidence(1)])[0]
    fresh = evidence(2)
    appended = sor.append([Entry.from_dict(known.to_dict()), fresh, Entry.from_dict(fresh.to_dict())])
    assert [e.id for e in appended] == [fresh.id]
    assert sor.head()[0] == 2
    assert sor.has_entry(known.id) and sor.has_entry(fresh.id) and not sor.has_entry("nope")
    assert sor.verify().valid


def test_projection_conflict_rolls_back_the_whole_batch(sor):
    sor.append([ci_created("ci-1", "web01", {"serial": "S1"})])
    head = sor.head()
    batch = [evidence(1), ci_created("ci-2", "web02"), ci_created("ci-3", "web03", {"serial": "S1"}), evidence(2)]
    with pytest.raises(ConflictError) as caught:
        sor.append(batch)
    assert "serial" in str(caught.value) and "ci-1" in str(caught.value)
    assert sor.head() == head
    assert sor.get_ci("ci-2") is None and sor.get_ci("ci-3") is None
    assert sor.find_evidence() == []
    assert not any(sor.has_entry(e.id) for e in batch)
    # the connection is usable afterwards and the chain continues from the old head
    appended = sor.append([evidence(3)])
    assert appended[0].seq == head[0] + 1 and appended[0].prev_hash == head[1]
    assert sor.verify().valid


def test_unknown_entry_kind_rolls_back(sor):
    with pytest.raises(ValidationError) as caught:
        sor.append([evidence(1), Entry("run.teleported", "r", {})])
    assert "run.teleported" in str(caught.value)
    assert sor.head() == (0, None)


def test_a_batch_the_database_refuses_is_a_refusal_not_an_outage(sor):
    """A constraint the batch breaks fails the same way on every retry: the spool must set it aside,
    so each backend reports it as ConflictError, never as BackendUnavailable."""
    sor.append([evidence(1)])
    head = sor.head()
    breaks_not_null = Entry("evidence.recorded", "run-1", {"run_id": "run-1", "host": "h2", "checklist": None})
    with pytest.raises(ConflictError) as caught:
        sor.append([evidence(2), breaks_not_null])
    assert "refused the batch" in str(caught.value)
    assert sor.head() == head
    assert sor.append([evidence(3)])[0].seq == head[0] + 1


def test_a_conflict_is_reported_by_a_second_connection_too(open_sor):
    """Conflicts are decided inside the write lock, against what another writer committed."""
    writer, other = open_sor(), open_sor()
    writer.append([ci_created("ci-1", "web01", {"serial": "S1"})])
    with pytest.raises(ConflictError):
        other.append([ci_created("ci-2", "web02", {"serial": "S1"})])
    assert other.get_ci("ci-2") is None


def test_concurrent_threads_keep_one_chain(backend_env, open_sor):
    """One connection per thread, as the recorder's writer thread has its own (sqlite3 connections are per thread)."""
    threads_count, batches, per_batch = 4, 25, 3
    errors = []
    start = threading.Barrier(threads_count)

    def work(index):
        try:
            sor = open_system_of_record(resolve_backend_config({}, backend_env))
            try:
                start.wait()
                for batch in range(batches):
                    sor.append([evidence(index * 1000 + batch * per_batch + k, run_id="t%d" % index)
                                for k in range(per_batch)])
            finally:
                sor.close()
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(repr(exc))

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    assert errors == []
    check = open_sor()
    report = check.verify()
    total = threads_count * batches * per_batch
    assert report.valid and report.entries_checked == total
    entries = list(check.iter_entries())
    assert [e.seq for e in entries] == list(range(1, total + 1))
    for index in range(threads_count):
        assert len([e for e in entries if e.subject == "t%d" % index]) == batches * per_batch


WRITER = textwrap.dedent("""
    import os, sys, time
    from ansible_collections.changeops.itsm.plugins.module_utils.config import resolve_backend_config
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
    from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

    name, batches, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    while not os.path.exists(go):
        time.sleep(0.01)
    sor = open_system_of_record(resolve_backend_config({}, os.environ))
    try:
        for batch in range(batches):
            sor.append([Entry("evidence.recorded", name, {"run_id": name, "checklist": "c", "n": batch, "k": k})
                        for k in range(2)])
    finally:
        sor.close()
    print("done", name)
""")


def test_concurrent_processes_keep_one_chain(backend_env, open_sor, tmp_path):
    """Several processes start together on a ledger nobody opened yet (so they also race the migration)."""
    processes_count, batches = 4, 30
    go = tmp_path / "go"
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHANGEOPS_")}
    env.update(backend_env, PYTHONPATH=COLLECTIONS_PATH)
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, "p%d" % i, str(batches), str(go)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
                 for i in range(processes_count)]
    go.write_text("")
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
        assert "locked" not in (stdout + stderr).lower()
    sor = open_sor()
    report = sor.verify()
    assert report.valid, report.summary()
    assert report.entries_checked == processes_count * batches * 2
    for index in range(processes_count):
        assert len(list(sor.iter_entries(subject="p%d" % index))) == batches * 2


def test_bulk_ci_lookups_answer_as_the_single_ones_in_a_few_queries(sor):
    """find_cis_by_identities / get_cis: what find_ci_by_identity / get_ci say, in one query per list of 500 values
    on SQLite and one query whatever their number on PostgreSQL (the values bound as one array)."""
    count = 1100
    sor.append([ci_created("ci-%04d" % n, "host-%04d" % n, {"machine_id": "m-%04d" % n, "name": "host/host-%04d" % n})
                for n in range(count)])
    wanted = ["m-%04d" % n for n in range(0, count, 1)] + ["m-missing", "m-0003"]
    queries = []
    real_query = sor._query

    def counting_query(sql, params=()):
        queries.append(sql)
        return real_query(sql, params)

    sor._query = counting_query
    try:
        holders = sor.find_cis_by_identities("machine_id", wanted)
        lists = sor.set_parameter != "any"
        assert len(queries) == (3 if lists else 1), "one query per 500 distinct values (SQLite), else one"
        del queries[:]
        cis = sor.get_cis(["ci-%04d" % n for n in range(0, count, 2)] + ["ci-gone"])
        assert len(queries) == (2 * 2 if lists else 2), "the CIs, then their identities (per list of 500 on SQLite)"
    finally:
        sor._query = real_query
    assert holders == dict(("m-%04d" % n, "ci-%04d" % n) for n in range(count))
    assert all(sor.find_ci_by_identity("machine_id", value) == ci_id for value, ci_id in list(holders.items())[:20])
    assert sorted(cis) == ["ci-%04d" % n for n in range(0, count, 2)]
    single = sor.get_ci("ci-0002")
    single.pop("relationships")
    assert cis["ci-0002"] == single
    assert sor.find_cis_by_identities("machine_id", []) == {} and sor.get_cis([]) == {}
