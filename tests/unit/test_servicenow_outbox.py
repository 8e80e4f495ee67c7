# -*- coding: utf-8 -*-
"""The ledger as ServiceNow's outbox, against a real system of record (SQLite and PostgreSQL) and the
loopback simulator: IRE batches, read-back, sys_ids into the ledger, exactly-once notes and attachments,
closure, unauthorised runs, set-aside entries, outages and 429s."""

from __future__ import annotations

import uuid

import pytest

from support.servicenow import SN
from support.servicenow_sim import Control, Simulator
from test_cmdb import ci_item, facts_for, register

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.outbox import Outbox


def drain(sor, sn, timeout=30, **options):
    settings = dict(options.pop("settings", {}))
    return Outbox(sor, sn.settings(**settings)).drain(timeout, **options)


def register_hosts(sor, names, **facts):
    for index, name in enumerate(names):
        register(sor, name, facts_for(name, "machine-%s" % name, os_family="Debian", product_serial="SER-%s" % name,
                                      **facts), play_hosts=names)


def ire_posts(sn, since=0):
    return [entry for entry in sn.requests(since) if entry["method"] == "POST" and "identifyreconcile" in entry["path"]]


def test_cis_go_through_ire_in_batches_and_their_sys_ids_come_back_into_the_ledger(sor, sn):
    names = ["web%02d" % number for number in range(12)]
    register_hosts(sor, names)
    ci_item(sor, name="shop", ci_class="application", relationships=[{"type": "runs_on", "target": "web00"}])
    report = drain(sor, sn, settings={"batch_size": 5})
    assert report.stopped is None and report.set_aside == []
    assert report.delivered == len(sor.find_cis()) + 1  # every CI and the relationship
    # 13 CIs, 5 per request: 3 IRE requests, each read back
    assert len(ire_posts(sn)) == 3
    servers = sn.control.records("cmdb_ci_linux_server")
    assert sorted(row["name"] for row in servers) == names
    shop = sn.ci("shop")
    assert shop["sys_class_name"] == "cmdb_ci_appl"
    relations = sn.control.records("cmdb_rel_ci", "parent=%s" % shop["sys_id"])
    assert [row["child"] for row in relations] == [sn.ci("web00")["sys_id"]]
    sources = sn.control.records("sys_object_source", "name=ChangeOps")
    assert sorted(row["id"] for row in sources) == sorted(ci["ci_id"] for ci in sor.find_cis())
    assert all(row["source_feed"].startswith("changeops ledger seq ") for row in sources)
    for ci in sor.find_cis():
        assert ci["attributes"]["servicenow_sys_id"] == sn.ci(ci["name"])["sys_id"]
        assert ci["attributes"]["servicenow_class"] in ("cmdb_ci_linux_server", "cmdb_ci_appl")
    assert Outbox(sor, sn.settings()).status()["pending"] == 0
    # nothing new: a second drain sends nothing at all
    before = len(sn.requests())
    assert drain(sor, sn).requests == 0 and len(sn.requests()) == before


def test_a_drain_repeated_from_an_old_cursor_writes_nothing_twice(sor, sn, backend_env):
    register_hosts(sor, ["app01", "app02"])
    drain(sor, sn)
    target = sn.settings().target_key()
    cursor = sor.get_sync_state(target)["cursor_seq"]
    # a drain killed after its writes and before the cursor moved: the same entries go again
    sor.advance_sync_cursor(target, cursor, 0)
    since = len(sn.requests())
    report = drain(sor, sn)
    assert report.delivered >= 2
    assert len(sn.control.records("cmdb_ci_linux_server")) == 2
    assert all(entry["method"] == "GET" or "identifyreconcile" in entry["path"] for entry in sn.requests(since))


def test_multi_match_is_set_aside_naming_the_host_and_rule_and_the_rest_goes_on(sor, sn):
    for _attempt in range(2):
        sn.control.insert("cmdb_ci_linux_server", {"name": "dup01"})
    ci_item(sor, name="dup01", ci_class="server", attributes={"os_family": "Debian"})
    register_hosts(sor, ["ok01"])
    report = drain(sor, sn)
    assert len(report.set_aside) == 1
    error = report.set_aside[0]["error"]
    assert "host dup01" in error and "identifier rule 'Hardware Rule'" in error and "cmdb_ci_hardware on name" in error
    assert sn.ci("ok01") is not None
    status = Outbox(sor, sn.settings()).status()
    assert status["pending"] == 0 and [item["subject"] for item in status["set_aside"]] == [report.set_aside[0]["subject"]]
    # someone merges the duplicates in ServiceNow; the entry is retried and delivered once
    sn.control.call("DELETE", "records/cmdb_ci_linux_server/%s" % sn.ci("dup01")[0]["sys_id"])
    report = drain(sor, sn, retry_failed=True)
    assert report.retried == [{"seq": status["set_aside"][0]["seq"], "status": "delivered"}]
    assert Outbox(sor, sn.settings()).status()["set_aside"] == []
    assert sor.find_cis(names=["dup01"])[0]["attributes"]["servicenow_sys_id"] == sn.ci("dup01")["sys_id"]


def test_an_outage_stops_the_drain_where_it_is_and_a_later_one_resumes(sor, tmp_path):
    state = str(tmp_path / "sim.json")
    first = Simulator(state_path=state).start()
    handle = SN(first.url, Control(first.url))
    register_hosts(sor, ["a01"])
    drain(sor, handle)
    port = first.port
    first.stop()
    register_hosts(sor, ["a02", "a03"])
    report = drain(sor, handle)
    assert report.stopped and "cannot connect" in report.stopped and report.delivered == 0
    status = Outbox(sor, handle.settings()).status()
    assert status["pending"] == 2 and "cannot connect" in status["last_error"]
    second = Simulator(port=port, state_path=state).start()
    try:
        report = drain(sor, handle)
        assert report.stopped is None and report.delivered == 2
        assert sorted(row["name"] for row in handle.control.records("cmdb_ci_linux_server")) == ["a01", "a02", "a03"]
        assert Outbox(sor, handle.settings()).status()["last_error"] is None
    finally:
        second.stop()


def test_a_429_is_honoured_across_drains_until_its_time(sor, sn):
    register_hosts(sor, ["r01"])
    sn.control.fault(kind="429", retry_after=3600, times=1)
    report = drain(sor, sn)
    assert report.stop_kind == "rate_limited" and report.waiting_until
    before = len(sn.requests())
    again = drain(sor, sn)
    assert again.requests == 0 and len(sn.requests()) == before and "asked to wait until" in again.stopped
    forced = drain(sor, sn, force=True)
    assert forced.delivered == 1 and sn.ci("r01") is not None


# -- runs on the change record ------------------------------------------------------------------------------
def record_run(sor, run_id, change=None, changed_hosts=("web01",), outcome="successful", allowed=True):
    """The entries the recorder and the gate write for one run (a gate decision under ``change``)."""
    now = utc_now()
    entries = [Entry("run.started", run_id, {"run_id": run_id, "started_at": now, "user": "alice",
                                             "controller": "ctl01", "playbooks": ["/srv/site.yml"],
                                             "check_mode": False})]
    if change is not None:
        decision = {"run_id": run_id, "play_id": "play-1", "decision_id": uuid.uuid4().hex, "allowed": allowed,
                    "type": "normal" if allowed else "denied", "reference": change["number"] if allowed else None,
                    "reasons": [], "hosts": list(changed_hosts), "checked_at": now, "play": "site"}
        decision["servicenow"] = {"sys_id": change["sys_id"], "number": change["number"]}
        entries.append(Entry("run.gate", run_id, decision))
    for host in changed_hosts:
        entries.append(Entry("run.result", run_id, {
            "run_id": run_id, "play_id": "play-1", "host": host, "status": "changed", "changed": True,
            "started_at": utc_now(), "task": {"uuid": "t1", "name": "change it", "action": "ansible.builtin.copy",
                                              "check_mode": False}, "item": None}))
    entries.append(Entry("run.finished", run_id,
                         {"run_id": run_id, "ended_at": utc_now(), "outcome": outcome, "stats": {}}))
    sor.append(entries)


def notes(sn, sys_id):
    return [row["value"] for row in sn.control.records("sys_journal_field", "element_id=%s^element=work_notes"
                                                       % sys_id)]


def test_an_authorised_run_leaves_notes_an_attachment_times_and_closure_on_its_chg(sor, sn):
    change = sn.new_change(state="implement", approval="approved")
    run_id = uuid.uuid4().hex
    record_run(sor, run_id, change)
    report = drain(sor, sn, settings={"close_change_requests": "closed", "register_url": "https://cab/register.html"})
    assert report.stopped is None and report.set_aside == []
    texts = notes(sn, change["sys_id"])
    assert len(texts) == 2
    start, end = sorted(texts, key=lambda text: "ended" in text)
    assert "run %s started" % run_id in start and "authorised by the change gate as a normal change" in start
    assert "ended: successful" in end and "Hosts changed (1): web01" in end
    assert "https://cab/register.html#run-%s" % run_id in end
    head_seq, head_hash = sor.head()
    assert "chain head seq %d, hash %s" % (head_seq, head_hash) in end
    attachments = sn.control.records("sys_attachment", "table_sys_id=%s" % change["sys_id"])
    assert [row["file_name"] for row in attachments] == ["changeops-run-%s.json" % run_id]
    body = sn.control.attachment(attachments[0]["sys_id"])
    assert body["run_id"] == run_id and body["ledger"]["head_seq"] >= 1 and body["ledger"]["entry_hash"]
    closed = sn.chg(change["number"])
    assert (closed["state"], closed["close_code"]) == ("3", "successful")
    assert closed["work_start"] and closed["work_end"]
    # the same entries delivered again (a drain that died before its cursor moved): nothing new
    target = sn.settings().target_key()
    sor.advance_sync_cursor(target, sor.get_sync_state(target)["cursor_seq"], 0)
    drain(sor, sn, settings={"close_change_requests": "closed"})
    assert len(notes(sn, change["sys_id"])) == 2
    assert len(sn.control.records("sys_attachment", "table_sys_id=%s" % change["sys_id"])) == 1


def test_a_run_whose_record_is_incomplete_is_said_so_on_its_chg_and_left_open(sor, sn):
    """recorder-faults' run.incomplete marker (entries neither the ledger nor a spool took): the CHG gets a note
    saying so; when the marker carried the run's lost end, the run ends there (note, attachment, times) but the CHG
    is not closed: an incomplete record is for a person to review."""
    # a run that ended in the ledger, delivered (and its CHG closed) at its end
    change = sn.new_change(state="implement", approval="approved")
    run_id = uuid.uuid4().hex
    record_run(sor, run_id, change)
    assert drain(sor, sn, settings={"close_change_requests": "closed"}).set_aside == []
    assert sn.chg(change["number"])["state"] == "3"
    # its marker that the end and one result were lost carries the end Ansible reported
    lost = {"run_id": run_id, "lost_entries": 2, "lost_kinds": {"run.finished": 1, "run.result": 1},
            "reason": "disk full", "noted_at": utc_now(), "lost_from": utc_now(), "run_ended": True,
            "end": {"kind": "run.finished", "outcome": "successful", "ended_at": utc_now(), "stats": {}}}
    # a run whose end never reached the ledger: its start, gate and result only, then the marker
    lost_run = uuid.uuid4().hex
    lost_change = sn.new_change(state="implement", approval="approved", start=-2, end=3, short_description="lost")
    now = utc_now()
    sor.append([Entry("run.started", lost_run, {"run_id": lost_run, "started_at": now, "user": "alice",
                                                "controller": "ctl01", "playbooks": ["/srv/site.yml"],
                                                "check_mode": False}),
                Entry("run.gate", lost_run, {"run_id": lost_run, "play_id": "play-1", "decision_id": uuid.uuid4().hex,
                                             "allowed": True, "type": "normal", "reference": lost_change["number"],
                                             "reasons": [], "hosts": ["web03"], "checked_at": now, "play": "site",
                                             "servicenow": {"sys_id": lost_change["sys_id"],
                                                            "number": lost_change["number"]}}),
                Entry("run.incomplete", lost_run, dict(lost, run_id=lost_run))])
    # and a marker for a run that ended in the ledger: only its results were lost
    sor.append([Entry("run.incomplete", run_id, dict(lost, lost_entries=1, lost_kinds={"run.result": 1},
                                                     run_ended=False, end=None))])
    report = drain(sor, sn, settings={"close_change_requests": "closed"})
    assert report.stopped is None and report.set_aside == [], report.to_dict()

    lost_notes = notes(sn, lost_change["sys_id"])
    assert len(lost_notes) == 3, lost_notes  # started, incomplete, ended
    [incomplete] = [text for text in lost_notes if "INCOMPLETE" in text]
    assert "lost 2 entries (1 run.finished, 1 run.result)" in incomplete and "disk full" in incomplete
    assert any("run %s ended: successful" % lost_run in text for text in lost_notes)
    assert [row["file_name"] for row in sn.control.records("sys_attachment", "table_sys_id=%s"
                                                           % lost_change["sys_id"])] == ["changeops-run-%s.json" % lost_run]
    assert sn.chg(lost_change["number"])["state"] == "-1", "an incomplete run's CHG was closed"
    assert any(lost_change["number"] in warning and "incomplete" in warning for warning in report.warnings)
    # for the run that ended in the ledger, the later marker adds its note only
    texts = notes(sn, change["sys_id"])
    assert len(texts) == 3 and len([text for text in texts if "INCOMPLETE" in text]) == 1, texts


def test_a_transition_answered_200_that_did_not_happen_is_set_aside_with_the_reason(sor, sn):
    change = sn.new_change(state="implement", approval="approved")
    record_run(sor, uuid.uuid4().hex, change, outcome="failed")
    sn.control.fault(kind="state_unchanged", method="PATCH", path="/api/sn_chg_rest/change/")
    report = drain(sor, sn, settings={"close_change_requests": "review"})
    assert len(report.set_aside) == 1
    assert "answered 200 to moving it from implement to review, but it is still implement" in \
        report.set_aside[0]["error"]
    assert sn.chg(change["number"])["state"] == "-1"


@pytest.mark.parametrize("kind", ["change", "incident"])
def test_an_unauthorised_run_is_recorded_never_nothing(sor, sn, kind):
    register_hosts(sor, ["web01"])
    drain(sor, sn)
    run_id = uuid.uuid4().hex
    record_run(sor, run_id, change=None)
    report = drain(sor, sn, settings={"unauthorised_runs": kind})
    assert report.set_aside == [] and report.stopped is None
    table = "incident" if kind == "incident" else "change_request"
    rows = sn.control.records(table, "correlation_id=changeops-unauthorised-%s" % run_id)
    assert len(rows) == 1
    record = rows[0]
    assert record["cmdb_ci"] == sn.ci("web01")["sys_id"]
    if kind == "change":
        assert (record["unauthorized"], record["state"]) == ("true", "0")
        affected = sn.control.records("task_ci", "task=%s" % record["sys_id"])
        assert [row["ci_item"] for row in affected] == [sn.ci("web01")["sys_id"]]
    assert [row["file_name"] for row in sn.control.records("sys_attachment", "table_sys_id=%s" % record["sys_id"])] \
        == ["changeops-run-%s.json" % run_id]
    # delivered again: found by its correlation id, not created twice
    target = sn.settings().target_key()
    sor.advance_sync_cursor(target, sor.get_sync_state(target)["cursor_seq"], 0)
    drain(sor, sn, settings={"unauthorised_runs": kind})
    assert len(sn.control.records(table, "correlation_id=changeops-unauthorised-%s" % run_id)) == 1


def test_checklist_evidence_is_attached_to_the_chg_and_the_ci(sor, sn):
    register_hosts(sor, ["web01"])
    change = sn.new_change(state="implement")
    run_id = uuid.uuid4().hex
    record_run(sor, run_id, change)
    ci = sor.find_cis(names=["web01"])[0]
    sor.append([Entry("evidence.recorded", run_id, {"run_id": run_id, "host": "web01", "ci_id": ci["ci_id"],
                                                    "checklist": "hardening", "status": "passed",
                                                    "summary": {"passed": 10}, "document": {"rules": []}})])
    report = drain(sor, sn)
    assert report.set_aside == []
    for table_sys_id in (change["sys_id"], sn.ci("web01")["sys_id"]):
        names = [row["file_name"] for row in sn.control.records("sys_attachment", "table_sys_id=%s" % table_sys_id)]
        assert any(name.startswith("changeops-evidence-hardening-web01-") for name in names)


def test_a_deleted_ci_is_retired_in_servicenow_not_deleted(sor, sn):
    register_hosts(sor, ["old01"])
    drain(sor, sn)
    ci_item(sor, name="old01", ci_class="server", state="absent")
    assert drain(sor, sn).set_aside == []
    assert sn.ci("old01")["install_status"] == "7"


def test_a_class_with_no_servicenow_class_is_set_aside_naming_class_map(sor, sn):
    ci_item(sor, name="lb01", ci_class="load_balancer")
    report = drain(sor, sn)
    assert "class 'load_balancer', which has no ServiceNow class; add it to the ServiceNow class_map" in \
        report.set_aside[0]["error"]
    report = drain(sor, sn, retry_failed=True, settings={"class_map": {"load_balancer": "cmdb_ci_appl"}})
    assert report.retried and sn.ci("lb01")["sys_class_name"] == "cmdb_ci_appl"


def test_the_lease_keeps_a_second_drain_out(sor, sn):
    register_hosts(sor, ["l01"])
    target = sn.settings().target_key()
    assert sor.acquire_sync_lease(target, "someone-else", 60)
    report = drain(sor, sn)
    assert report.busy and report.requests == 0
    sor.release_sync_lease(target, "someone-else")
    assert drain(sor, sn).delivered == 1


def test_a_cmdb_task_never_fails_because_servicenow_is_misconfigured_or_down(sor, monkeypatch):
    monkeypatch.setenv("CHANGEOPS_SERVICENOW", "true")
    monkeypatch.delenv("SN_HOST", raising=False)
    result = register(sor, "cfg01", facts_for("cfg01", "machine-cfg01"))
    assert result["changed"] and result["servicenow"]["status"] == "queued"
    for mode in ("check", "now"):
        monkeypatch.setenv("SN_HOST", "http://127.0.0.1:1")
        monkeypatch.setenv("SN_USERNAME", "someone")
        monkeypatch.setenv("SN_PASSWORD", "something")
        monkeypatch.setenv("CHANGEOPS_SERVICENOW_RETRIES", "0")
        if mode == "check":
            outcome = register(sor, "cfg02", facts_for("cfg02", "machine-cfg02"), check_mode=True)
            assert outcome["servicenow"]["status"] == "not checked" and "cannot connect" in outcome["servicenow"]["error"]
        else:
            outcome = register(sor, "cfg03", facts_for("cfg03", "machine-cfg03"), servicenow_push="now")
            assert outcome["changed"] and outcome["servicenow"]["status"] == "queued"


# -- delivery during the run (the recorder's background feeder) ---------------------------------------------
def test_during_the_run_cis_wait_for_a_full_ire_batch(sor, sn):
    register_hosts(sor, ["web01", "web02", "web03"])
    outbox = Outbox(sor, sn.settings(batch_size=5))
    assert outbox.ready(partial_batches=True) is True
    assert outbox.ready(partial_batches=False) is False  # three CIs, and more of the run may follow
    report = outbox.drain(30, partial_batches=False)
    assert report.delivered == 0 and report.stopped is None and sn.requests() == []
    register_hosts(sor, ["web04", "web05"])
    assert outbox.ready(partial_batches=False) is True
    report = outbox.drain(30, partial_batches=False)
    assert report.delivered == len(sor.find_cis()) and len(ire_posts(sn)) == 1


def test_the_change_policy_decides_what_records_an_unauthorised_run_over_the_deprecated_setting(sor, sn):
    from ansible_collections.changeops.itsm.plugins.module_utils.change_policy import parse_policy_text

    register_hosts(sor, ["web01"])
    drain(sor, sn)
    run_id = uuid.uuid4().hex
    record_run(sor, run_id, change=None)
    policy = parse_policy_text(b"servicenow:\n  unauthorised_runs: incident\n", "policy.yml")
    report = Outbox(sor, sn.settings(unauthorised_runs="change"), policy=lambda: policy).drain(30)
    assert report.set_aside == [] and report.stopped is None
    assert len(sn.control.records("incident", "correlation_id=changeops-unauthorised-%s" % run_id)) == 1
    assert sn.control.records("change_request", "correlation_id=changeops-unauthorised-%s" % run_id) == []
    assert any("deprecated and ignored" in warning and "policy.yml says servicenow.unauthorised_runs: incident"
               in warning for warning in report.warnings)


class _FakeClient(object):
    def __init__(self, settings, deadline=None, cooldown=None, sleep=None, clock=None):
        self.deadline = deadline
        self.sleep = sleep


class _FakeOutbox(object):
    """A drain that waits out a long Retry-After, as the real client does on a 429 within rate_limit_wait."""

    def __init__(self, client_factory, waiting):
        self.client_factory = client_factory
        self.waiting = waiting
        self.drains = []

    def ready(self, partial_batches=True):
        return not self.drains

    def drain(self, timeout, partial_batches=True):
        import time

        from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.outbox import DrainReport

        client = self.client_factory(None, deadline=time.monotonic() + timeout)
        self.drains.append(partial_batches)
        if not partial_batches:
            self.waiting.set()
            client.sleep(3600)
        return DrainReport("servicenow:test")


def test_the_end_of_the_run_cuts_a_background_drain_waiting_out_a_429():
    import threading

    from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.outbox_feed import OutboxFeeder

    class _Sor(object):
        def close(self):
            pass

    waiting = threading.Event()
    made = []

    def make_outbox(sor, client_factory):
        made.append(_FakeOutbox(client_factory, waiting))
        return made[0]

    feeder = OutboxFeeder(_Sor, make_outbox, _FakeClient, drain_timeout=7200, interval=0.05)
    feeder.start()
    feeder.nudge()
    assert waiting.wait(60), "the background drain never started"
    # the drain sleeps through a one-hour Retry-After; the end of the run gives it 2 s and then one last drain
    assert feeder.finish(2.0) is True
    assert feeder.done.is_set() and feeder.error is None
    assert made[0].drains == [False, True] and feeder.final_report is not None and len(feeder.reports) == 1
