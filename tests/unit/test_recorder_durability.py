# -*- coding: utf-8 -*-
"""Records never vanish silently: spool locations, lost entries and their marker, durability, damaged ledgers.

Unit level: the writer, the spool chain and the SQLite backend in process. The same faults with real
ansible-playbook runs and real file systems are in tests/integration/test_recorder_faults.py.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.errors import BackendUnavailable, LedgerCorrupted
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import spool_locations
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.durability import RecordGuard, RecordStopped
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool import Spool, SpoolChain, SpoolError
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.writer import RecorderWriter, entry_document
from support.recorder import RecordingDisplay


def documents(run_id, count, start=0):
    return [entry_document("run.result", run_id, {"run_id": run_id, "host": "h%d" % n, "status": "changed",
                                                  "changed": True, "task": {"uuid": "t", "name": "n"}, "item": None})
            for n in range(start, start + count)]


def started(run_id):
    return entry_document("run.started", run_id, {"run_id": run_id, "started_at": "2026-01-01T00:00:00.000000Z",
                                                  "pid": 1, "playbooks": ["/srv/site.yml"], "check_mode": False})


def appending_to(sor):
    def append(entries):
        sor.append(entries)
        return []
    return append


def broken_root(tmp_path, name):
    """A spool root that cannot be created (a regular file is in the way; root ignores permissions)."""
    path = tmp_path / name
    path.write_text("not a directory\n")
    return str(path / "spool")


def unavailable(config):
    raise BackendUnavailable("the ledger's file system is read-only")


def sqlite_config(tmp_path):
    return {"backend": "sqlite", "sqlite_path": str(tmp_path / "ledger.sqlite"), "busy_timeout": 5}


# -- where the spool lives -------------------------------------------------------------------------
def test_the_fallback_is_the_platform_state_directory():
    state = spool_locations.state_spool_dir
    assert state({"XDG_STATE_HOME": "/home/ann/.state"}, uid=1000) == "/home/ann/.state/changeops/spool"
    assert state({"XDG_STATE_HOME": "/srv/state"}, uid=0) == "/srv/state/changeops/spool"
    assert state({}, uid=0) == "/var/lib/changeops/spool"
    assert state({}, uid=1000, home="/home/ann") == "/home/ann/.local/state/changeops/spool"
    # the XDG specification ignores a relative XDG_STATE_HOME
    assert state({"XDG_STATE_HOME": "relative"}, uid=1000, home="/home/ann") == "/home/ann/.local/state/changeops/spool"


def test_spool_roots_are_tried_in_order_and_never_twice(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert spool_locations.spool_roots(str(tmp_path / "spool")) == [
        str(tmp_path / "spool"), str(tmp_path / "state" / "changeops" / "spool")]
    assert spool_locations.spool_roots(str(tmp_path / "spool"), str(tmp_path / "other")) == [
        str(tmp_path / "spool"), str(tmp_path / "other")]
    assert spool_locations.spool_roots(str(tmp_path / "spool"), str(tmp_path / "spool")) == [str(tmp_path / "spool")]


def test_the_marker_location_in_the_temporary_directory_must_be_private(tmp_path):
    assert spool_locations.marker_spool_dir(temp_dir=str(tmp_path)) is None, "created without being asked"
    private = spool_locations.marker_spool_dir(temp_dir=str(tmp_path), create=True)
    assert private == str(tmp_path / ("changeops-%d" % os.getuid()) / "spool")
    os.chmod(os.path.dirname(private), 0o777)
    assert spool_locations.marker_spool_dir(temp_dir=str(tmp_path)) is None, "a directory open to others is refused"
    shutil.rmtree(os.path.dirname(private))
    os.symlink(str(tmp_path / "elsewhere"), os.path.dirname(private))
    os.makedirs(str(tmp_path / "elsewhere"), mode=0o700)
    assert spool_locations.marker_spool_dir(temp_dir=str(tmp_path)) is None, "a symbolic link is refused"


def test_a_batch_goes_to_the_first_location_that_takes_it_and_replays_in_write_order(tmp_path, sqlite_sor):
    primary = Spool(str(tmp_path / "primary"), "k")
    fallback = Spool(str(tmp_path / "fallback"), "k")
    chain = SpoolChain([primary, fallback])
    first = chain.write(documents("r", 2))
    assert os.path.dirname(first) == primary.directory
    # the primary location breaks half-way through the run: the next batch lands in the fallback
    os.rename(str(tmp_path / "primary"), str(tmp_path / "primary-away"))
    (tmp_path / "primary").write_text("in the way\n")
    second = chain.write(documents("r", 2, 2))
    assert os.path.dirname(second) == fallback.directory and chain.directory == fallback.directory
    (tmp_path / "primary").unlink()
    os.rename(str(tmp_path / "primary-away"), str(tmp_path / "primary"))
    third = chain.write(documents("r", 1, 4))  # written last, in the first location again
    assert os.path.dirname(third) == primary.directory
    assert chain.pending() == [first, second, third]

    assert chain.replay(appending_to(sqlite_sor), Entry.from_dict) == (3, 5, [])
    assert [entry.data["host"] for entry in sqlite_sor.iter_entries()] == ["h0", "h1", "h2", "h3", "h4"]
    assert chain.pending() == []


def test_no_location_takes_the_batch_the_error_names_every_one(tmp_path):
    chain = SpoolChain([Spool(broken_root(tmp_path, "a"), "k"), Spool(broken_root(tmp_path, "b"), "k")])
    with pytest.raises(SpoolError) as raised:
        chain.write(documents("r", 1))
    assert str(tmp_path / "a") in str(raised.value) and str(tmp_path / "b") in str(raised.value)


def test_files_replayed_from_an_unwritable_directory_are_not_replayed_again(tmp_path, sqlite_sor, monkeypatch):
    spool = Spool(str(tmp_path / "spool"), "k")
    path = spool.write(documents("r", 2))

    def cannot_unlink(target):
        raise PermissionError(1, "Operation not permitted", target)

    monkeypatch.setattr(os, "unlink", cannot_unlink)
    assert spool.replay(appending_to(sqlite_sor), Entry.from_dict)[:2] == (1, 2)
    assert os.path.exists(path) and spool.pending() == []
    assert sqlite_sor.head()[0] == 2


# -- entries that no place takes -------------------------------------------------------------------
def lossy_writer(tmp_path, display, marker_root=None, **kwargs):
    marker = (lambda create: Spool(marker_root, "k")) if marker_root else None
    chain = SpoolChain([Spool(broken_root(tmp_path, "spool-a"), "k"), Spool(broken_root(tmp_path, "spool-b"), "k")],
                       marker_spool=marker)
    kwargs.setdefault("flush_interval", 0.05)
    return RecorderWriter({"backend": "sqlite"}, chain, display, opener=unavailable, **kwargs), chain


def test_entries_kept_nowhere_are_reported_at_the_end_with_their_run_and_a_marker_is_left(tmp_path):
    display = RecordingDisplay()
    writer, _chain = lossy_writer(tmp_path, display, marker_root=str(tmp_path / "tmp-marker"))
    writer.start()
    writer.put_run_started(started("run-lost"))
    for document in documents("run-lost", 3):
        writer.put(document)
    end = entry_document("run.finished", "run-lost", {"run_id": "run-lost", "outcome": "successful", "stats": {}})
    assert writer.finish("run-lost", [], timeout=30, end=end)

    assert writer.lost == {"run-lost": 5}
    [lost] = [warning for warning in display.warnings if "LOST" in warning]
    assert "5 entries of run run-lost are LOST" in lost and "3 run.result" in lost and "read-only" in lost
    assert str(tmp_path / "tmp-marker") in lost
    assert display.warnings[0] != lost, "the loss is said at the end, after the first 'cannot write' warning"

    [marker_file] = Spool(str(tmp_path / "tmp-marker"), "k").pending()
    [marker] = Spool.read(marker_file)
    assert marker["kind"] == "run.incomplete" and marker["subject"] == "run-lost"
    assert marker["data"]["lost_entries"] == 5 and marker["data"]["lost_kinds"]["run.result"] == 3
    assert marker["data"]["run"]["playbooks"] == ["/srv/site.yml"]


def test_the_loss_is_said_every_time_even_after_the_one_warning_per_run(tmp_path):
    display = RecordingDisplay()
    writer, _chain = lossy_writer(tmp_path, display)
    writer.start()
    writer.put(documents("r", 1)[0])
    assert writer.finish("r", [], timeout=30)
    warnings = display.warnings
    assert len(warnings) == 2 and "held in memory" in warnings[0] and "LOST" in warnings[1]
    assert "no marker could be left either" in warnings[1]


def test_the_next_run_records_the_marker_and_the_lost_run_ends_interrupted(tmp_path):
    config = sqlite_config(tmp_path)
    marker_spool = Spool(str(tmp_path / "tmp-marker"), "k")
    with open_system_of_record(config) as sor:
        sor.append([Entry.from_dict(started("run-half"))] + [Entry.from_dict(d) for d in documents("run-half", 2)])
    writer, _chain = lossy_writer(tmp_path, RecordingDisplay(), marker_root=marker_spool.root)
    writer.start()
    for document in documents("run-half", 2, 2):
        writer.put(document)
    writer.finish("run-half", [], timeout=30, end=entry_document(
        "run.finished", "run-half", {"run_id": "run-half", "outcome": "successful", "stats": {}}))
    assert writer.lost == {"run-half": 3}

    next_run = RecorderWriter(config, SpoolChain([Spool(str(tmp_path / "spool"), "k")],
                                                 marker_spool=lambda create: marker_spool),
                              RecordingDisplay(), flush_interval=0.05)
    next_run.start()
    assert next_run.finish("next", [], timeout=30)
    assert marker_spool.pending() == []
    with open_system_of_record(config) as sor:
        event = sor.get_change_event("run-half")
        # the end was lost, but the marker says how it ended
        assert (event["status"], event["outcome"]) == ("successful", "successful")
        assert event["record_lost"]["entries"] == 3
        assert event["record_lost"]["kinds"] == {"run.finished": 1, "run.result": 2}
        # two changes are recorded, two are not: how the run was authorised cannot be told
        assert event["authorisation"] == "incomplete"
        assert sor.verify(projections=True).valid


def test_a_marker_for_a_run_of_which_nothing_reached_the_ledger_says_who_ran_what(tmp_path, sqlite_sor):
    marker = entry_document("run.incomplete", "run-gone", {
        "run_id": "run-gone", "lost_entries": 7, "lost_kinds": {"run.started": 1, "run.result": 6},
        "reason": "disk full", "noted_at": "2026-01-01T00:10:00.000000Z", "lost_from": "2026-01-01T00:00:00.000000Z",
        "run_ended": True, "run": {"started_at": "2026-01-01T00:00:00.000000Z", "user": "ann", "controller": "ctl1",
                                   "playbooks": ["/srv/site.yml"]}}, entry_id="incomplete-x")
    sqlite_sor.append([Entry.from_dict(marker), Entry.from_dict(marker)])
    event = sqlite_sor.get_change_event("run-gone")
    assert (event["status"], event["user"], event["controller"], event["playbook"]) == (
        "interrupted", "ann", "ctl1", "/srv/site.yml")
    assert event["started_at"] == "2026-01-01T00:00:00.000000Z"
    assert event["record_lost"]["entries"] == 7, "the marker is recorded once"
    assert sqlite_sor.verify(projections=True).valid


# -- on_record_failure -----------------------------------------------------------------------------
def test_wait_durable_answers_at_once_when_the_ledger_takes_the_entries(tmp_path):
    writer = RecorderWriter(sqlite_config(tmp_path), SpoolChain([Spool(str(tmp_path / "spool"), "k")]),
                            RecordingDisplay(), flush_interval=60)
    writer.start()
    assert writer.wait_durable(30) is None, "nothing put yet"
    writer.put(documents("r", 1)[0])
    assert writer.wait_durable(30) is None
    assert writer.appended == 1, "the barrier flushed although flush_interval is a minute away"
    writer.finish("r", [], timeout=30)


def test_wait_durable_counts_the_spool_and_names_the_cause_when_nothing_takes_them(tmp_path):
    spooling = RecorderWriter({"backend": "sqlite"}, SpoolChain([Spool(str(tmp_path / "spool"), "k")]),
                              RecordingDisplay(), opener=unavailable, flush_interval=60)
    spooling.start()
    spooling.put(documents("r", 1)[0])
    assert spooling.wait_durable(30) is None
    spooling.finish("r", [], timeout=30)

    display = RecordingDisplay()
    writer, _chain = lossy_writer(tmp_path, display, flush_interval=60)
    writer.start()
    writer.put(documents("r2", 1)[0])
    failure = writer.wait_durable(30)
    assert "read-only" in failure and str(tmp_path / "spool-a") in failure and str(tmp_path / "spool-b") in failure
    guard = RecordGuard(writer, "fail", 30, display)
    writer.put(documents("r2", 1, 1)[0])
    with pytest.raises(RecordStopped) as stopped:
        guard.before_task("Restart the database")
    assert stopped.value.code == 1 and isinstance(stopped.value, SystemExit)
    assert "stopped before task 'Restart the database'" in guard.stopped
    writer.finish("r2", [], timeout=30)


def test_warn_never_waits_for_the_record(tmp_path):
    display = RecordingDisplay()
    writer, _chain = lossy_writer(tmp_path, display, flush_interval=60)
    writer.start()
    writer.put(documents("r", 1)[0])
    guard = RecordGuard(writer, "warn", 30, display)
    guard.before_task("anything")
    guard.after_run()
    assert writer.queue, "warn must not have flushed"
    writer.finish("r", [], timeout=30)


@pytest.mark.parametrize("value", ["fial", "ignore"])
def test_a_record_policy_that_cannot_be_told_stops_the_run_rather_than_leave_it_unrecorded(tmp_path, value):
    display = RecordingDisplay()
    writer = RecorderWriter(sqlite_config(tmp_path), SpoolChain([Spool(str(tmp_path / "spool"), "k")]), display)
    guard = RecordGuard(writer, value, 30, display)
    with pytest.raises(RecordStopped):
        guard.before_task("First task")
    assert ("on_record_failure is %r, which is neither warn nor fail" % value) in guard.stopped
    assert RecordGuard(writer, " Warn ", 30, display).strict is False
    assert RecordGuard(writer, "FAIL", 30, display).mode == "fail"
    assert RecordGuard(writer, "", 30, display).mode == "warn", "an empty variable is the default"


# -- a damaged ledger ------------------------------------------------------------------------------
def damage(path, seed=13):
    """Random bytes over the second half of the file (tables and indexes; the header stays)."""
    size = os.path.getsize(path)
    generator = random.Random(seed)
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(bytes(generator.getrandbits(8) for _byte in range(size - size // 2)))


def small_ledger(config, results=60):
    with open_system_of_record(config) as sor:
        sor.append([Entry.from_dict(started("old"))] + [Entry.from_dict(d) for d in documents("old", results)])


def test_a_damaged_ledger_is_found_before_the_next_append_and_the_entries_are_spooled(tmp_path):
    config = sqlite_config(tmp_path)
    small_ledger(config)
    damage(config["sqlite_path"])
    with open_system_of_record(config) as sor:
        with pytest.raises(LedgerCorrupted) as raised:
            sor.check_storage()
    assert config["sqlite_path"] in str(raised.value) and ".recover" in str(raised.value)
    assert isinstance(raised.value, BackendUnavailable)

    display = RecordingDisplay()
    spool = Spool(str(tmp_path / "spool"), "k")
    writer = RecorderWriter(config, SpoolChain([spool]), display, flush_interval=0.05, batch_size=2)
    writer.start()
    for document in documents("now", 6):
        writer.put(document)
    assert writer.finish("now", [], timeout=30)
    [warning] = display.warnings
    assert "is damaged" in warning and "What to do" in warning and spool.directory in warning
    assert sorted(d["data"]["host"] for path in spool.pending() for d in Spool.read(path)) == [
        "h%d" % n for n in range(6)]
    assert writer.appended == 0 and not writer.lost


def test_a_healthy_ledger_passes_the_storage_check(tmp_path):
    config = sqlite_config(tmp_path)
    small_ledger(config)
    with open_system_of_record(config) as sor:
        sor.check_storage()
