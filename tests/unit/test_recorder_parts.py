# -*- coding: utf-8 -*-
"""Unit tests of the recorder's parts: spool, result summaries, vault detection, process identity, hooks, writer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.errors import BackendUnavailable
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.redaction import Redactor
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import hooks, processes, summary, vault
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool import Spool, target_key
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.writer import RecorderWriter, entry_document
from support.recorder import RecordingDisplay


def documents(run_id, count, start=0):
    return [entry_document("run.result", run_id, {"run_id": run_id, "host": "h%d" % n, "status": "ok",
                                                  "task": {"uuid": "t", "name": "n"}, "item": None})
            for n in range(start, start + count)]


def appending_to(sor):
    """``Spool.replay``'s append: appends, refuses nothing."""
    def append(entries):
        sor.append(entries)
        return []
    return append


# -- spool -------------------------------------------------------------------------------------
def test_spool_writes_complete_files_in_order_and_replays_them_in_order(tmp_path, sqlite_sor):
    spool = Spool(str(tmp_path / "spool"), "sqlite-test", "sqlite:/x")
    batches = [documents("r1", 3, start) for start in (0, 3, 6)]
    paths = [spool.write(batch) for batch in batches]
    assert spool.pending() == paths
    assert oct(os.stat(paths[0]).st_mode & 0o777) == "0o600"
    assert [d["id"] for d in Spool.read(paths[1])] == [d["id"] for d in batches[1]]
    assert not [name for name in os.listdir(spool.directory) if name.startswith(".tmp-")]

    replayed, entries, problems = spool.replay(appending_to(sqlite_sor), Entry.from_dict)
    assert (replayed, entries, problems) == (3, 9, [])
    assert spool.pending() == []
    assert [e.data["host"] for e in sqlite_sor.iter_entries()] == ["h%d" % n for n in range(9)]

    # a second copy of an already replayed batch is skipped by entry id
    spool.write(batches[0])
    assert spool.replay(appending_to(sqlite_sor), Entry.from_dict)[:2] == (1, 3)
    assert sqlite_sor.head()[0] == 9
    assert sqlite_sor.verify().valid


def test_spool_sets_aside_an_unreadable_file_and_goes_on(tmp_path, sqlite_sor):
    spool = Spool(str(tmp_path / "spool"), "k")
    good = spool.write(documents("r", 2))
    bad = os.path.join(spool.directory, "00000000000000000000-1-1.jsonl")
    with open(bad, "w") as handle:
        handle.write("{not json\n")
    replayed, entries, problems = spool.replay(appending_to(sqlite_sor), Entry.from_dict)
    assert (replayed, entries) == (1, 2)
    assert len(problems) == 1 and bad in problems[0] and "line 1" in problems[0]
    assert os.path.exists(bad + ".bad") and not os.path.exists(good)


def test_spool_directories_are_per_ledger_and_hide_the_dsn():
    first = target_key({"backend": "sqlite", "sqlite_path": "/a/ledger.sqlite"})
    assert first != target_key({"backend": "sqlite", "sqlite_path": "/b/ledger.sqlite"})
    dsn_key = target_key({"backend": "postgresql", "postgresql_dsn": "postgresql://u:hunter22@db/x"})
    assert dsn_key.startswith("postgresql-") and "hunter22" not in dsn_key


# -- summaries -----------------------------------------------------------------------------------
def test_summary_keeps_outcome_keys_only_redacts_and_truncates():
    redactor = Redactor()
    redactor.add_known_secret("s3cr3t-value")
    result = {
        "changed": True, "rc": 0, "stdout": "x" * 50 + " token=abc123", "stderr": "using s3cr3t-value",
        "invocation": {"module_args": {"password": "hunter2"}}, "ansible_facts": {"a": 1},
        "cmd": ["deploy", "--api-key", "k-123"], "results": [{"item": 1}, {"item": 2}],
        "nested_password_holder": "not kept",
    }
    recorded = summary.summarise_result(result, redactor, max_chars=30)
    assert set(recorded) == {"rc", "stdout", "stderr", "cmd", "item_count"}
    assert recorded["stdout"] == "x" * 30 + "... [%d more characters not recorded]" % (len("x" * 50 + " token=********") - 30)
    assert recorded["stderr"] == "using ********"
    assert recorded["cmd"] == "deploy --api-key ********"
    assert recorded["item_count"] == 2


def test_censored_results_keep_only_status_fields():
    recorded = summary.summarise_result({"censored": "hidden", "changed": True, "stdout": "secret"}, Redactor(),
                                        100, censored=True)
    assert recorded == {"censored": summary.CENSORED, "changed": True}
    assert summary.item_label({"_ansible_no_log": True, "item": "secret"}, Redactor(), censored=True) == "(censored)"


def test_truncation_never_leaves_part_of_a_secret():
    redactor = Redactor()
    redactor.add_known_secret("ABCDEFGHIJKLMNOP")
    recorded = summary.summarise_result({"stdout": "0123456789ABCDEFGHIJKLMNOP"}, redactor, max_chars=14)
    assert recorded["stdout"].startswith("0123456789****")
    assert "ABCD" not in recorded["stdout"]


def test_diffs_are_redacted_and_truncated():
    diff = {"before": "password: old-one\n", "after": "password: new-one\n" + "y" * 100,
            "before_header": "/etc/app.conf", "after_header": "/etc/app.conf"}
    diffs = summary.summarise_diff({"diff": diff}, Redactor(), max_chars=40)
    assert diffs and len(diffs) == 1
    recorded = diffs[0]
    assert recorded["before"] == "password: ********\n"
    assert "new-one" not in recorded["after"] and "more characters not recorded" in recorded["after"]
    assert recorded["before_header"] == "/etc/app.conf"
    assert summary.summarise_diff({"changed": True}, Redactor(), 10) is None


def test_item_label_prefers_loop_control_label_and_redacts():
    redactor = Redactor()
    redactor.add_known_secret("topsecret")
    assert summary.item_label({"_ansible_item_label": "web", "item": {"x": 1}}, redactor, False) == "web"
    assert summary.item_label({"item": {"user": "bob", "pw": "topsecret"}}, redactor, False) == \
        '{"pw":"********","user":"bob"}'
    assert summary.status_of("ok", {"changed": True}) == "changed"
    assert summary.status_of("failed", {"changed": True}) == "failed"


def test_vaulted_values_are_detected_and_their_plaintext_collected():
    from ansible.parsing.vault import VaultLib, VaultSecret, VaultSecretsContext, EncryptedString

    secret = VaultSecret(b"pw")
    ciphertext = VaultLib([("default", secret)]).encrypt("plain-vault-text").decode()
    if VaultSecretsContext.current(optional=True) is None:
        VaultSecretsContext.initialize(VaultSecretsContext([("default", secret)]))
    encrypted = EncryptedString(ciphertext=ciphertext)
    found = []
    vault.collect_vault_secrets({"a": [1, {"b": encrypted}], "c": "plain"}, found.append)
    assert found == ["plain-vault-text"] and not vault.is_vaulted(found[0]), "the collected secret keeps no tag"
    assert summary.plain({"k": encrypted}, 100) == {"k": "********"}
    decrypted = str(encrypted)
    assert vault.is_vaulted(decrypted), "a decrypted plaintext keeps its VaultedValue tag"
    extra = []
    vault.collect_plain_values({"n": 8080, "flag": True, "l": ["abc"]}, extra.append)
    assert sorted(extra) == ["8080", "abc"]


def test_values_whose_origin_is_an_encrypted_file_are_secrets(tmp_path):
    """include_vars hands the controller bare values: only their Origin tag says they came from a vault file."""
    from ansible._internal._datatag._tags import Origin
    from ansible.parsing.vault import VaultLib, VaultSecret

    encrypted_file = tmp_path / "secret.yml"
    encrypted_file.write_bytes(VaultLib([("default", VaultSecret(b"pw"))]).encrypt("db_password: s3cret\n"))
    plain_file = tmp_path / "plain.yml"
    plain_file.write_text("region: eu-west-1\n")
    from_vault = Origin(path=str(encrypted_file), line_num=1, col_num=14).tag("s3cret")
    from_plain = Origin(path=str(plain_file), line_num=1, col_num=9).tag("eu-west-1")
    found = []
    vault.collect_vault_secrets({"db_password": from_vault, "region": from_plain, "untagged": "x"}, found.append)
    assert found == ["s3cret"]
    assert not vault.from_encrypted_file(Origin(path=str(tmp_path / "gone.yml")).tag("v")), "a missing file is no vault"


# -- processes -------------------------------------------------------------------------------------
def test_process_identity_tells_live_dead_and_reused_pids():
    me = os.getpid()
    identity = processes.process_identity(me)
    assert identity and processes.process_identity(me) == identity
    assert processes.run_process_is_gone(me, identity) is False
    assert processes.run_process_is_gone(me, identity + "-other-start") is True, "a reused pid counts as gone"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert processes.run_process_is_gone(child.pid, None) is True
    assert processes.run_process_is_gone(None, None) is True


# -- hooks and writer ----------------------------------------------------------------------------------


def test_writer_batches_links_cis_and_runs_hooks(tmp_path, sqlite_env):
    config = {"backend": "sqlite", "sqlite_path": sqlite_env["CHANGEOPS_SQLITE_PATH"], "busy_timeout": 5}
    with open_system_of_record(config) as sor:
        sor.append([Entry("ci.created", "ci-1", {"ci_id": "ci-1", "attributes": {"name": "h1", "class": "server"},
                                                 "identities": {"name": "host/h1"}})])
    calls = []

    def good_hook(sor, run_id, options, display):
        calls.append((run_id, options["marker"], sor.get_change_event(run_id)["status"]))

    def bad_hook(sor, run_id, options, display):
        raise RuntimeError("hook exploded")

    display = RecordingDisplay()
    hooks.register_post_run_hook(bad_hook)
    hooks.register_post_run_hook(good_hook)
    try:
        writer = RecorderWriter(config, Spool(str(tmp_path / "spool"), target_key(config)), display,
                                options={"marker": 42}, batch_size=2, flush_interval=30)
        writer.start()
        writer.put_run_started(entry_document("run.started", "run-1", {"run_id": "run-1", "pid": os.getpid(),
                                                                       "playbooks": [str(tmp_path)]}))
        for document in documents("run-1", 3):
            writer.put(document)
        writer.put(entry_document("run.finished", "run-1", {"run_id": "run-1", "outcome": "successful"}))
        assert writer.finish("run-1", ["h1", "h2"], timeout=60)
    finally:
        hooks.unregister_post_run_hook(bad_hook)
        hooks.unregister_post_run_hook(good_hook)
    assert calls == [("run-1", 42, "successful")]
    assert len(display.warnings) == 1 and "hook exploded" in display.warnings[0]
    with open_system_of_record(config) as sor:
        kinds = [entry.kind for entry in sor.iter_entries()]
        # the post-run hook sign_checkpoint ends the run with a checkpoint of the head
        assert kinds == ["ci.created", "run.started"] + ["run.result"] * 3 + ["run.finished", "ci.changed_by_run",
                                                                              "ledger.checkpoint"]
        started = next(sor.iter_entries(kinds=["run.started"])).data
        assert started["user"] and started["controller"] and started["pid_identity"]
        assert sor.verify().valid
    assert writer.reached_ledger and writer.spooled == 0


def test_a_run_replayed_from_the_spool_gets_the_hooks_meant_for_replayed_runs(tmp_path, sqlite_env):
    config = {"backend": "sqlite", "sqlite_path": sqlite_env["CHANGEOPS_SQLITE_PATH"], "busy_timeout": 5}
    spool = Spool(str(tmp_path / "spool"), target_key(config))
    spool.write([entry_document("run.started", "spooled-run", {"run_id": "spooled-run", "pid": os.getpid(),
                                                               "playbooks": [str(tmp_path)]})]
                + documents("spooled-run", 2)
                + [entry_document("run.finished", "spooled-run", {"run_id": "spooled-run", "outcome": "failed"})])
    every_run, replayed_too = [], []

    def own_runs_only(sor, run_id, options, display):
        every_run.append(run_id)

    def for_replayed_runs_too(sor, run_id, options, display):
        replayed_too.append((run_id, sor.get_change_event(run_id)["status"]))

    hooks.register_post_run_hook(own_runs_only)
    hooks.register_post_run_hook(replayed_runs=True)(for_replayed_runs_too)
    try:
        writer = RecorderWriter(config, spool, RecordingDisplay(), options={}, batch_size=2, flush_interval=30)
        writer.start()
        writer.put_run_started(entry_document("run.started", "next-run", {"run_id": "next-run", "pid": os.getpid(),
                                                                          "playbooks": [str(tmp_path)]}))
        writer.put(entry_document("run.finished", "next-run", {"run_id": "next-run", "outcome": "successful"}))
        assert writer.finish("next-run", [], timeout=60)
    finally:
        hooks.unregister_post_run_hook(own_runs_only)
        hooks.unregister_post_run_hook(for_replayed_runs_too)
    assert replayed_too == [("spooled-run", "failed"), ("next-run", "successful")]
    assert every_run == ["next-run"]
    assert spool.pending() == []
    assert hooks.post_run_hooks(replayed=True) == [
        hook for hook in hooks.post_run_hooks() if getattr(hook, "__name__", "") == "close_linked_change_requests"]


def test_writer_spools_when_the_ledger_cannot_be_opened_and_warns_once(tmp_path):
    def unavailable(config):
        raise BackendUnavailable("ledger is on fire")

    display = RecordingDisplay()
    spool = Spool(str(tmp_path / "spool"), "k")
    writer = RecorderWriter({"backend": "sqlite"}, spool, display, batch_size=1, flush_interval=0.05,
                            opener=unavailable)
    writer.start()
    for document in documents("run-2", 4):
        writer.put(document)
    assert writer.finish("run-2", [], timeout=30)
    assert sum(len(Spool.read(path)) for path in spool.pending()) == 4
    assert len(display.warnings) == 1 and "ledger is on fire" in display.warnings[0]
    assert not writer.reached_ledger


# -- refused entries, waiting appends, what emergency_spool sees ----------------------------------
def ci_created(ci_id, name, ci_class="server"):
    return entry_document("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": name, "class": ci_class},
                                                "identities": {"name": "%s/%s" % (
                                                    "host" if ci_class == "server" else ci_class, name)}})


def link(ci_id, run_id):
    return entry_document("ci.changed_by_run", ci_id, {"ci_id": ci_id, "run_id": run_id, "host": "h"})


def writer_for(config, spool, display=None, **kwargs):
    kwargs.setdefault("batch_size", 50)
    kwargs.setdefault("flush_interval", 0.05)
    return RecorderWriter(config, spool, display or RecordingDisplay(), **kwargs)


def test_a_refused_spool_batch_is_set_aside_and_the_rest_still_lands(tmp_path, sqlite_env):
    """A link to a CI deleted meanwhile is refused for good: it must not hold back that run or later runs."""
    config = {"backend": "sqlite", "sqlite_path": sqlite_env["CHANGEOPS_SQLITE_PATH"], "busy_timeout": 5}
    spool = Spool(str(tmp_path / "spool"), target_key(config))
    first = spool.write(documents("spooled", 2) + [link("ci-gone", "spooled"),
                                                   entry_document("bogus.kind", "x", {})] + documents("spooled", 1, 2))
    second = spool.write(documents("later", 2))
    display = RecordingDisplay()
    writer = writer_for(config, spool, display)
    writer.start()
    assert writer.finish("own-run", [], timeout=60)
    with open_system_of_record(config) as sor:
        hosts = [(entry.subject, entry.data["host"]) for entry in sor.iter_entries(kinds=["run.result"])]
        assert hosts == [("spooled", "h0"), ("spooled", "h1"), ("spooled", "h2"), ("later", "h0"), ("later", "h1")]
        assert not list(sor.iter_entries(kinds=["ci.changed_by_run"]))
        assert sor.verify().valid
    assert spool.pending() == [] and not os.path.exists(first) and not os.path.exists(second)
    [rejected] = spool.rejected()
    assert rejected == first + ".rejected"
    assert [document["kind"] for document in Spool.read(rejected)] == ["ci.changed_by_run", "bogus.kind"]
    [warning] = display.warnings
    assert rejected in warning and "refused 2 of the 5 entries" in warning and "ci-gone" in warning


def test_an_unavailable_ledger_keeps_the_spool_in_order_and_says_so(tmp_path):
    spool = Spool(str(tmp_path / "spool"), "k")
    paths = [spool.write(documents("r", 1, n)) for n in range(3)]
    appended = []

    def flaky_append(entries):
        if len(appended) == 1:
            raise BackendUnavailable("ledger locked")
        appended.append(entries)
        return []

    with pytest.raises(BackendUnavailable):
        spool.replay(flaky_append, Entry.from_dict)
    assert spool.pending() == paths[1:] and spool.rejected() == []

    display = RecordingDisplay()

    def unavailable(config):
        raise BackendUnavailable("ledger is on fire")

    writer = writer_for({"backend": "sqlite"}, spool, display, opener=unavailable)
    writer.start()
    own = documents("run-x", 1)
    writer.put(own[0])
    assert writer.finish("run-x", [], timeout=30)
    assert spool.pending()[:2] == paths[1:], "an unavailable ledger never costs a spooled entry"
    assert [Spool.read(path)[0]["id"] for path in spool.pending()[2:]] == [own[0]["id"]]
    assert len(display.warnings) == 1 and "ledger is on fire" in display.warnings[0]


def test_a_live_batch_with_a_refused_entry_records_the_others(tmp_path, sqlite_env):
    config = {"backend": "sqlite", "sqlite_path": sqlite_env["CHANGEOPS_SQLITE_PATH"], "busy_timeout": 5}
    spool = Spool(str(tmp_path / "spool"), target_key(config))
    display = RecordingDisplay()
    writer = writer_for(config, spool, display, flush_interval=30)
    writer.start()
    writer.put_run_started(entry_document("run.started", "run-r", {"run_id": "run-r", "pid": os.getpid(),
                                                                   "playbooks": [str(tmp_path)]}))
    for document in documents("run-r", 2) + [link("ci-missing", "run-r")] + documents("run-r", 2, 2):
        writer.put(document)
    writer.put(entry_document("run.finished", "run-r", {"run_id": "run-r", "outcome": "successful"}))
    assert writer.finish("run-r", [], timeout=60)
    with open_system_of_record(config) as sor:
        assert [entry.kind for entry in sor.iter_entries()] == ["run.started"] + ["run.result"] * 4 + [
            "run.finished", "ledger.checkpoint"]
        assert sor.get_change_event("run-r")["status"] == "successful"
    assert spool.pending() == [], "a refused entry does not send the run's later entries to the spool"
    [rejected] = spool.rejected()
    assert [document["subject"] for document in Spool.read(rejected)] == ["ci-missing"]
    [warning] = display.warnings
    assert "1 ci.changed_by_run" in warning and rejected in warning


class GatedOpener(object):
    """Opens the real ledger; its appends wait until ``release`` is set (a stuck lock holder, a slow network)."""

    def __init__(self):
        self.waiting = threading.Event()
        self.release = threading.Event()

    def __call__(self, config):
        sor = open_system_of_record(config)
        real_append = sor.append

        def gated_append(entries, **kwargs):
            if any(entry.kind == "run.result" for entry in entries):
                self.waiting.set()
                assert self.release.wait(60)
            return real_append(entries, **kwargs)

        sor.append = gated_append
        return sor


def spooled_ids(spool):
    return set(document["id"] for path in spool.pending() for document in Spool.read(path))


def test_entries_reach_the_spool_while_an_append_waits_and_leave_it_once_it_succeeds(tmp_path, sqlite_env):
    config = {"backend": "sqlite", "sqlite_path": sqlite_env["CHANGEOPS_SQLITE_PATH"], "busy_timeout": 60}
    spool = Spool(str(tmp_path / "spool"), target_key(config))
    opener = GatedOpener()
    writer = writer_for(config, spool, opener=opener, flush_interval=0.1)
    writer.start()
    waiting = documents("run-w", 3)
    for document in waiting:
        writer.put(document)
    assert opener.waiting.wait(30)
    later = documents("run-w", 2, 3)
    for document in later:
        writer.put(document)
    # within a few flush intervals (not the 60 s busy timeout) everything held is on disk, the batch in
    # flight and what was queued behind it: a kill -9 now loses nothing
    deadline = time.monotonic() + 30
    while not spooled_ids(spool) >= set(d["id"] for d in waiting + later) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spooled_ids(spool) >= set(d["id"] for d in waiting + later)
    opener.release.set()
    assert writer.finish("run-w", [], timeout=60)
    assert spool.pending() == [], "safety copies are removed once the ledger took the entries"
    assert writer.safety_copies >= 1
    with open_system_of_record(config) as sor:
        assert [entry.data["host"] for entry in sor.iter_entries(kinds=["run.result"])] == ["h%d" % n for n in range(5)]


def test_emergency_spool_sees_the_batch_in_flight_pending_and_queued_entries(tmp_path, sqlite_env):
    config = {"backend": "sqlite", "sqlite_path": sqlite_env["CHANGEOPS_SQLITE_PATH"], "busy_timeout": 60}
    spool = Spool(str(tmp_path / "spool"), target_key(config))
    opener = GatedOpener()
    writer = writer_for(config, spool, opener=opener, flush_interval=30, batch_size=2)
    writer.start()
    held = documents("run-e", 5)
    for document in held:
        writer.put(document)
    assert opener.waiting.wait(30)
    writer.put_run_started(entry_document("run.started", "run-e", {"run_id": "run-e", "pid": os.getpid(),
                                                                   "playbooks": [str(tmp_path)]}))
    try:
        writer.emergency_spool()
        assert spooled_ids(spool) >= set(document["id"] for document in held)
        kinds = [document["kind"] for path in spool.pending() for document in Spool.read(path)]
        assert "run.started" in kinds
    finally:
        opener.release.set()
        writer.finish("run-e", [], timeout=60)


def test_an_interruption_detected_by_another_run_does_not_follow_the_runs_own_end(sqlite_sor):
    """The detecting run saw the run running; its real end was replayed from a spool before the append."""
    sqlite_sor.append([Entry("run.started", "run-d", {"run_id": "run-d", "pid": 1}),
                       Entry("run.finished", "run-d", {"run_id": "run-d", "outcome": "successful"})])
    detected = Entry("run.interrupted", "run-d", {"run_id": "run-d", "reason": "gone", "detected_by_run": "other"})
    assert sqlite_sor.append([detected]) == []
    assert [entry.kind for entry in sqlite_sor.iter_entries()] == ["run.started", "run.finished"]
    assert sqlite_sor.get_change_event("run-d")["status"] == "successful"
    # a run that is still running is interrupted as before, and so is a run reporting its own interruption
    sqlite_sor.append([Entry("run.started", "run-k", {"run_id": "run-k", "pid": 1})])
    assert len(sqlite_sor.append([Entry("run.interrupted", "run-k", {"run_id": "run-k", "reason": "gone",
                                                                     "detected_by_run": "other"})])) == 1
    assert sqlite_sor.get_change_event("run-k")["status"] == "interrupted"
