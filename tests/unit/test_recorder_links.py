# -*- coding: utf-8 -*-
"""The recorder's CMDB links: which results changed a host, which CI a changed host is, and that a run
gets its links and its post-run hooks once, whoever writes its end and whenever the deadline passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import name_identity
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projections
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.sql import _Statements
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import links
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool import Spool, target_key
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.writer import RecorderWriter, entry_document
from support.change_requests import approved_change, iso
from support.project import COLLECTIONS_PATH
from support.recorder import RecordingDisplay


def server_ci(ci_id, name, **identities):
    identities.setdefault("name", name_identity("server", name))
    return Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": dict({"name": name, "class": "server"}, **{
        kind: value for kind, value in identities.items() if kind != "name"}), "identities": identities})


def changed_result(run_id, host, started_at=None, **task):
    task = dict({"uuid": "t-%s" % host, "name": "change", "action": "ansible.builtin.command", "check_mode": False},
                **task)
    return entry_document("run.result", run_id, {"run_id": run_id, "play_id": "p", "task": task, "host": host,
                                                 "item": None, "status": "changed", "changed": True,
                                                 "started_at": started_at or iso(), "result": {}})


def links_in_ledger(sor, run_id=None):
    return sorted((entry.data["run_id"], entry.data["host"], entry.data["ci_id"])
                  for entry in sor.iter_entries(kinds=["ci.changed_by_run"])
                  if run_id is None or entry.data["run_id"] == run_id)


def spooled(spool):
    return [document for path in spool.pending() for document in Spool.read(path)]


def wait_until(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.02)


# -- which results changed a host ------------------------------------------------------------------
result_shapes = st.fixed_dictionaries({
    "host": st.sampled_from(["h1", "h2", "h3"]),
    "status": st.sampled_from(["ok", "changed", "failed", "skipped", "unreachable"]),
    "changed": st.booleans(),
    "action": st.sampled_from(["ansible.builtin.copy", "command", "changeops.itsm.register_host",
                               "changeops.itsm.change_gate", None]),
    "check_mode": st.sampled_from([True, False, "absent"]),
    "item": st.sampled_from([None, {"index": 0, "label": "a"}]),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=st.lists(result_shapes, min_size=1, max_size=8), dry_run=st.booleans())
def test_the_recorder_and_the_authorisation_agree_on_which_results_changed_a_host(sqlite_sor, shapes, dry_run):
    """links.changes_host (the recorder's links) and projections._changes (the change event's
    authorisation, reading the query tables) are one rule: the same results count, whatever they report."""
    run_id = uuid.uuid4().hex
    entries = [Entry("run.started", run_id, {"run_id": run_id, "check_mode": dry_run})]
    for shape in shapes:
        task = {"uuid": uuid.uuid4().hex, "name": "t", "action": shape["action"]}
        if shape["check_mode"] != "absent":
            task["check_mode"] = shape["check_mode"]
        entries.append(Entry("run.result", run_id, {"run_id": run_id, "play_id": "p", "task": task,
                                                    "host": shape["host"], "item": shape["item"],
                                                    "status": shape["status"], "changed": shape["changed"],
                                                    "result": {}}))
    sqlite_sor.append(entries)
    cursor = sqlite_sor._connection().cursor()
    try:
        in_sql = set(row[0] for row in projections._changes(_Statements(cursor, "?"), run_id, dry_run)[0])
    finally:
        cursor.close()
    in_python = set(result["seq"] for result in sqlite_sor.get_task_results(run_id)
                    if links.changes_host(result, dry_run))
    assert in_python == in_sql


def test_a_changed_loop_item_counts_although_its_loop_failed():
    item = {"task": {"action": "ansible.builtin.user", "check_mode": False}, "item": {"index": 0},
            "status": "changed", "changed": True}
    loop = dict(item, item=None, status="failed")
    assert links.changes_host(item) and not links.changes_host(loop)
    assert not links.changes_host(dict(item, task={"action": "changeops.itsm.register_host", "check_mode": False}))
    assert not links.changes_host(dict(item, task={"action": "copy"}), run_check_mode=True)


# -- which CI a changed host is ---------------------------------------------------------------------
def test_a_host_is_found_as_register_host_finds_it(sor):
    sor.append([
        server_ci("ci-a", "vm-a", machine_id="m-shared"),
        server_ci("ci-web", "web.example.com", machine_id="m-web"),
        server_ci("ci-hw", "db1", product_uuid="uuid-db1", machine_id="m-db1"),
        server_ci("ci-named", "plain"),
        Entry("ci.created", "ci-app", {"ci_id": "ci-app", "attributes": {"name": "app1", "class": "application"},
                                       "identities": {"name": "application/app1"}}),
    ])
    facts = {
        "vm-a": {"machine_id": "m-shared"},
        # a clone of vm-a: register_host refuses it, so vm-a's CI is not its CI
        "vm-b": {"machine_id": "M-SHARED"},
        # registered under its DNS name: found by the identity that CI holds
        "web": {"machine_id": "m-web", "product_serial": "0"},
        # the machine id of db1, on other hardware: another machine
        "db1-new": {"machine_id": "m-db1", "product_uuid": "uuid-other"},
        "plain": {},
        "app1": {},
        "fresh": {"machine_id": "m-fresh"},
    }
    hints = dict((host, {}) for host in facts)
    hints["fresh"] = {"ci_id": "ci-named"}  # register_host's answer in this run wins
    hints["plain"] = {"ci_id": "ci-deleted-meanwhile"}  # gone: found by name instead
    found = links.resolve_host_cis(sor, hints, facts_of=facts.get, inventory_names=["VM-A", "vm-b", "web", "db1-new"])
    assert found == {"vm-a": "ci-a", "web": "ci-web", "fresh": "ci-named", "plain": "ci-named",
                     "app1": "ci-app"}, found


def test_the_identification_rules_of_the_runs_register_host_tasks_are_honoured(sor):
    sor.append([server_ci("ci-1", "old-name", machine_id="m-1", serial_number="sn-1")])
    facts = {"renamed": {"machine_id": "m-1", "product_serial": "sn-1", "custom": {"serial": "sn-1"}}}
    by_default = links.resolve_host_cis(sor, {"renamed": {}}, facts_of=facts.get)
    assert by_default == {"renamed": "ci-1"}

    by_name_only = links.IdentificationRules()
    by_name_only.note_task("register-task", {"identify_by": ["name"]})
    assert links.resolve_host_cis(sor, {"renamed": {}}, facts_of=facts.get, rules=by_name_only) == {}

    serial_from_another_fact = links.IdentificationRules()
    serial_from_another_fact.note_task("t", {"identify_by": ["serial_number", "name"], "default_mapping": False,
                                             "attribute_map": {"serial_number": "custom.serial"}})
    assert serial_from_another_fact.resolved() == (["serial_number", "name"], {"serial_number": "custom.serial"})
    assert links.resolve_host_cis(sor, {"renamed": {}}, facts_of=facts.get, rules=serial_from_another_fact) == {
        "renamed": "ci-1"}

    templated = links.IdentificationRules()
    templated.note_task("t1", {"identify_by": "{{ my_order }}"})
    assert templated.resolved()[0] == list(links.IDENTITY_ORDER), "unknown rules: register_host's defaults"
    disagreeing = links.IdentificationRules()
    disagreeing.note_task("t1", {"identify_by": ["name"]})
    disagreeing.note_task("t2", {"identify_by": ["machine_id", "name"]})
    assert disagreeing.resolved()[0] == list(links.IDENTITY_ORDER)


class CountingSoR(object):
    """The real system of record, counting the queries it is asked."""

    def __init__(self, sor):
        self._sor = sor
        self.queries = 0
        real = sor._query

        def counting(sql, params=()):
            self.queries += 1
            return real(sql, params)

        sor._query = counting

    def __getattr__(self, name):
        return getattr(self._sor, name)


def test_linking_many_hosts_takes_a_few_queries_per_batch_not_several_per_host(sor):
    """10,000 changed hosts were ~50,000 round trips (five per host) inside flush_timeout."""
    hosts = 1200
    sor.append([server_ci("ci-%05d" % n, "host-%05d" % n, machine_id="m-%05d" % n) for n in range(hosts)])
    facts = dict(("host-%05d" % n, {"machine_id": "m-%05d" % n, "fqdn": "host-%05d.example.com" % n})
                 for n in range(hosts))
    hints = dict((host, {}) for host in facts)
    for n in range(0, hosts, 3):
        hints["host-%05d" % n]["ci_id"] = "ci-%05d" % n  # register_host ran for a third of them
    counting = CountingSoR(sor)
    found = links.resolve_host_cis(counting, hints, facts_of=facts.get, inventory_names=list(facts))
    assert found == dict(("host-%05d" % n, "ci-%05d" % n) for n in range(hosts))
    batches = -(-hosts // 500)
    assert counting.queries <= 10 * batches, counting.queries


# -- the end of a run: links and hooks once, nothing lost at the deadline -------------------------------
class SlowOpener(object):
    """Opens the real ledger; the named methods wait until ``release`` is set (a slow network, a stuck lock)."""

    def __init__(self, methods, when=None):
        self.methods = methods
        self.when = when or (lambda *args: True)
        self.waiting = threading.Event()
        self.release = threading.Event()

    def __call__(self, config):
        sor = open_system_of_record(config)
        for name in self.methods:
            real = getattr(sor, name)

            def slow(*args, _real=real, **kwargs):
                if self.when(*args):
                    self.waiting.set()
                    assert self.release.wait(60)
                return _real(*args, **kwargs)

            setattr(sor, name, slow)
        return sor


def sqlite_config(sqlite_env, busy_timeout=60):
    return {"backend": "sqlite", "sqlite_path": sqlite_env["CHANGEOPS_SQLITE_PATH"], "busy_timeout": busy_timeout}


def start_run(writer, run_id, hosts, tmp_path):
    writer.put_run_started(entry_document("run.started", run_id, {"run_id": run_id, "pid": os.getpid(),
                                                                  "playbooks": [str(tmp_path)]}))
    for host in hosts:
        writer.put(changed_result(run_id, host))
    return entry_document("run.finished", run_id, {"run_id": run_id, "outcome": "successful"})


def test_links_are_not_lost_when_the_deadline_passes_while_they_are_looked_up(tmp_path, sqlite_env):
    config = sqlite_config(sqlite_env)
    with open_system_of_record(config) as sor:
        sor.append([server_ci("ci-1", "h1"), server_ci("ci-2", "h2")])
    spool = Spool(str(tmp_path / "spool"), target_key(config))
    slow = SlowOpener(["find_cis", "get_cis", "find_cis_by_identities"])
    first = RecorderWriter(config, spool, RecordingDisplay(), flush_interval=0.1, opener=slow)
    first.start()
    end = start_run(first, "run-slow", ["h1", "h2"], tmp_path)
    try:
        assert not first.finish("run-slow", ["h1", "h2"], timeout=1, end=end), "the lookups were meant to outlast it"
        assert slow.waiting.is_set()
        # the process may exit now: its end is in the spool, not (yet) in the ledger without its links
        assert end["id"] in set(document["id"] for document in spooled(spool))
        with open_system_of_record(config) as sor:
            assert links_in_ledger(sor) == []

        # the next run replays the end and makes the links
        second = RecorderWriter(config, spool, RecordingDisplay(), flush_interval=0.1)
        second.start()
        assert second.finish("run-next", [], timeout=60, end=start_run(second, "run-next", [], tmp_path))
        with open_system_of_record(config) as sor:
            assert links_in_ledger(sor) == [("run-slow", "h1", "ci-1"), ("run-slow", "h2", "ci-2")]
    finally:
        slow.release.set()
        first.done.wait(60)
    with open_system_of_record(config) as sor:
        assert links_in_ledger(sor) == [("run-slow", "h1", "ci-1"), ("run-slow", "h2", "ci-2")], \
            "the first writer's own links, made late, are the same entries"
        assert sor.get_change_event("run-slow")["status"] == "successful"
        assert sor.verify().valid


def test_links_reach_the_spool_with_the_end_when_the_final_append_outlasts_the_deadline(tmp_path, sqlite_env):
    config = sqlite_config(sqlite_env)
    with open_system_of_record(config) as sor:
        sor.append([server_ci("ci-1", "h1")])
    spool = Spool(str(tmp_path / "spool"), target_key(config))
    stuck = SlowOpener(["append"], when=lambda entries, *rest: any(entry.kind == "run.finished" for entry in entries))
    writer = RecorderWriter(config, spool, RecordingDisplay(), flush_interval=0.1, opener=stuck)
    writer.start()
    end = start_run(writer, "run-stuck", ["h1"], tmp_path)
    try:
        assert not writer.finish("run-stuck", ["h1"], timeout=1, end=end)
        kept = [(document["kind"], document["subject"]) for document in spooled(spool)]
        assert ("run.finished", "run-stuck") in kept and ("ci.changed_by_run", "ci-1") in kept, kept
    finally:
        stuck.release.set()
        writer.done.wait(60)


def test_a_live_runs_safety_copy_replayed_by_another_run_gives_one_link_per_ci_and_one_closing(tmp_path, sqlite_env):
    """Run A's final append waits for the lock; its watchdog spools a copy holding its end. Run C replays
    that copy (here: the same process, so nothing tells them apart), links A's hosts and closes A's
    change request. A's own append then finds everything there: no second link, no second closing."""
    config = sqlite_config(sqlite_env)
    with open_system_of_record(config) as sor:
        sor.append([server_ci("ci-1", "h1"), server_ci("ci-2", "h2")])
        number = approved_change(sor, ["h1", "h2"], iso(hours=-1), iso(hours=2))
    options = {"close_change_requests": True}
    spool = Spool(str(tmp_path / "spool"), target_key(config))
    gated = SlowOpener(["append"], when=lambda entries, *rest: any(entry.kind == "run.result" for entry in entries))
    display_a, display_c = RecordingDisplay(), RecordingDisplay()
    run_a = RecorderWriter(config, spool, display_a, options=options, flush_interval=0.1, opener=gated)
    run_a.start()
    end = start_run(run_a, "run-a", ["h1", "h2"], tmp_path)
    run_a.put(entry_document("run.gate", "run-a", {
        "run_id": "run-a", "play_id": "p", "decision_id": "d-1", "allowed": True, "type": "normal",
        "reference": number, "reasons": [], "hosts": ["h1", "h2"], "checked_at": iso(minutes=-1)}))
    finished = {}
    finishing = threading.Thread(target=lambda: finished.setdefault("in_time", run_a.finish(
        "run-a", ["h1", "h2"], timeout=60, end=end)))
    finishing.start()
    try:
        assert gated.waiting.wait(30)
        wait_until(lambda: end["id"] in set(document["id"] for document in spooled(spool)), "A's end in a safety copy")

        run_c = RecorderWriter(config, spool, display_c, options=options, flush_interval=0.1)
        run_c.start()
        assert run_c.finish("run-c", [], timeout=60, end=start_run(run_c, "run-c", [], tmp_path))
    finally:
        gated.release.set()
        finishing.join(60)
    assert finished == {"in_time": True}
    with open_system_of_record(config) as sor:
        assert links_in_ledger(sor, "run-a") == [("run-a", "h1", "ci-1"), ("run-a", "h2", "ci-2")]
        closing = list(sor.iter_entries(subject=number, kinds=["change_request.closed"]))
        assert [entry.data.get("run_id") for entry in closing] == ["run-a"]
        assert sor.get_change_request(number)["state"] == "closed"
        assert sor.verify().valid
    messages = display_a.messages + display_c.messages
    assert len([message for message in messages if "closed %s" % number in message]) == 1, messages
    assert not [warning for warning in display_a.warnings + display_c.warnings if number in warning]
    assert spool.pending() == []


CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool import Spool
spool = Spool(sys.argv[2], sys.argv[3])
print(spool.write(json.loads(sys.stdin.readline())), flush=True)
sys.stdin.readline()
"""


def test_another_live_process_s_spool_files_wait_until_it_has_exited(tmp_path, sqlite_sor):
    spool = Spool(str(tmp_path / "spool"), "k")
    data = {"run_id": "run-live", "host": "h", "status": "ok", "task": {"uuid": "t"}, "item": None}
    documents = [entry_document("run.result", "run-live", data)]
    child = subprocess.Popen([sys.executable, "-c", CHILD, COLLECTIONS_PATH, spool.root, "k"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, universal_newlines=True)
    try:
        child.stdin.write(json.dumps(documents) + "\n")
        child.stdin.flush()
        path = child.stdout.readline().strip()
        assert os.path.exists(path) and spool.held_by_live_process(path)

        def append(entries):
            sqlite_sor.append(entries)
            return []

        assert spool.replay(append, Entry.from_dict) == (0, 0, [])
        assert spool.pending() == [path], "the writing process still runs: its file is left to it"
    finally:
        child.stdin.write("exit\n")
        child.stdin.close()
        child.wait(30)
        child.stdout.close()
    assert not spool.held_by_live_process(path)
    assert spool.replay(append, Entry.from_dict)[:2] == (1, 1)
    assert [entry.subject for entry in sqlite_sor.iter_entries()] == ["run-live"]
    own = spool.write(documents)
    assert not spool.held_by_live_process(own), "a process replays its own files"
    old_style = os.path.join(spool.directory, "00000000000000000001-%08d-000001.jsonl" % os.getppid())
    assert not spool.held_by_live_process(old_style), "files of older recorders are replayed as before"


def test_a_detected_interruption_replayed_from_the_spool_gets_links_but_no_hooks(tmp_path, sqlite_env):
    """A run found dead never recorded its end: its hosts are linked, its change request is left to a person."""
    from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import hooks

    config = sqlite_config(sqlite_env)
    with open_system_of_record(config) as sor:
        sor.append([server_ci("ci-1", "h1"), Entry("run.started", "run-killed", {"run_id": "run-killed", "pid": 1}),
                    Entry.from_dict(changed_result("run-killed", "h1"))])
    spool = Spool(str(tmp_path / "spool"), target_key(config))
    spool.write([entry_document("run.interrupted", "run-killed", {"run_id": "run-killed", "reason": "gone",
                                                                  "detected_by_run": "run-d"})])
    called = []

    def replayed_hook(sor, run_id, options, display):
        called.append(run_id)

    hooks.register_post_run_hook(replayed_runs=True)(replayed_hook)
    try:
        writer = RecorderWriter(config, spool, RecordingDisplay(), flush_interval=0.1)
        writer.start()
        assert writer.finish("run-next", [], timeout=60, end=start_run(writer, "run-next", [], tmp_path))
    finally:
        hooks.unregister_post_run_hook(replayed_hook)
    assert called == ["run-next"]
    with open_system_of_record(config) as sor:
        assert sor.get_change_event("run-killed")["status"] == "interrupted"
        assert links_in_ledger(sor) == [("run-killed", "h1", "ci-1")]


def test_links_are_made_when_the_ledger_is_back_for_the_end_after_a_failed_look_up(tmp_path, sqlite_env):
    from ansible_collections.changeops.itsm.plugins.module_utils.errors import BackendUnavailable

    config = sqlite_config(sqlite_env)
    with open_system_of_record(config) as sor:
        sor.append([server_ci("ci-1", "h1")])
    failures = []

    def flaky_lookups(config):
        sor = open_system_of_record(config)
        real = sor.find_cis

        def find_cis(*args, **kwargs):
            if not failures:
                failures.append(True)
                raise BackendUnavailable("the network dropped the look-up")
            return real(*args, **kwargs)

        sor.find_cis = find_cis
        return sor

    display = RecordingDisplay()
    writer = RecorderWriter(config, Spool(str(tmp_path / "spool"), target_key(config)), display, flush_interval=0.1,
                            opener=flaky_lookups)
    writer.start()
    end = start_run(writer, "run-flaky", ["h1"], tmp_path)
    assert writer.finish("run-flaky", ["h1"], timeout=60, end=end)
    assert failures and display.warnings == []
    with open_system_of_record(config) as sor:
        assert links_in_ledger(sor) == [("run-flaky", "h1", "ci-1")]
