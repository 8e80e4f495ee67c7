# -*- coding: utf-8 -*-
"""The change_event_info and ledger_verify operations, run against a real system of record."""

from __future__ import annotations

import datetime
import sqlite3

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.change_events import (
    CHANGE_EVENT_INFO_SPEC,
    LEDGER_VERIFY_SPEC,
    parse_moment,
    query_change_events,
    verify_ledger,
)
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

NOW = datetime.datetime.now(datetime.timezone.utc)


def params_for(spec, **given):
    params = {name: option.get("default") for name, option in spec.items()}
    params.update(given)
    return params


def info(sor, **given):
    return query_change_events(OperationContext(sor, params_for(CHANGE_EVENT_INFO_SPEC, **given)))


def verify(sor, **given):
    return verify_ledger(OperationContext(sor, params_for(LEDGER_VERIFY_SPEC, **given)))


def record_run(sor, run_id, hours_ago, hosts=("web01",), playbook="site.yml", outcome="successful",
               changed=False, check_mode=False):
    started = format_time(NOW - datetime.timedelta(hours=hours_ago))
    entries = [Entry("run.started", run_id, {"run_id": run_id, "started_at": started, "user": "ops",
                                             "controller": "ctl", "playbooks": ["/srv/ansible/" + playbook],
                                             "check_mode": check_mode})]
    for host in hosts:
        entries.append(Entry("run.result", run_id, {
            "run_id": run_id, "play_id": "p1", "host": host, "status": "changed" if changed else "ok",
            "changed": changed, "item": None, "task": {"name": "t", "action": "ansible.builtin.copy"}}))
    entries.append(Entry("evidence.recorded", run_id, {"run_id": run_id, "host": hosts[0], "checklist": "smoke",
                                                       "status": "pass"}))
    if outcome == "interrupted":
        entries.append(Entry("run.interrupted", run_id, {"run_id": run_id, "reason": "killed"}))
    elif outcome != "running":
        entries.append(Entry("run.finished", run_id, {"run_id": run_id, "outcome": outcome}))
    sor.append(entries)


@pytest.fixture
def history(sor):
    record_run(sor, "r-old", 24 * 10, hosts=("db01",), playbook="db.yml")
    record_run(sor, "r-week", 24 * 3, hosts=("web01", "web02"), outcome="failed", changed=True)
    record_run(sor, "r-dry", 5, hosts=("web02",), check_mode=True, changed=True)
    record_run(sor, "r-recent", 1, hosts=("web01",), playbook="deploy.yml", outcome="interrupted")
    record_run(sor, "r-now", 0.1, hosts=("db01",), playbook="deploy.yml", outcome="running")
    return sor


def ids(result):
    return [event["run_id"] for event in result["change_events"]]


def test_all_events_newest_first(history):
    result = info(history)
    assert result["changed"] is False
    assert ids(result) == ["r-now", "r-recent", "r-dry", "r-week", "r-old"]
    assert "verification" not in result
    assert "results" not in result["change_events"][0]


@pytest.mark.parametrize("filters, expected", [
    ({"since": "2d"}, ["r-now", "r-recent", "r-dry"]),
    ({"since": "90m"}, ["r-now", "r-recent"]),
    ({"since": "1w"}, ["r-now", "r-recent", "r-dry", "r-week"]),
    ({"until": "4d"}, ["r-old"]),
    ({"since": "4d", "until": "2h"}, ["r-dry", "r-week"]),
    ({"host": "web02"}, ["r-dry", "r-week"]),
    ({"host": "nowhere"}, []),
    ({"playbook": "deploy"}, ["r-now", "r-recent"]),
    ({"playbook": "/srv/ansible/db.yml"}, ["r-old"]),
    ({"status": ["failed", "interrupted"]}, ["r-recent", "r-week"]),
    ({"status": ["running"]}, ["r-now"]),
    ({"authorisation": ["unauthorised"]}, ["r-week"]),
    ({"authorisation": ["dry-run", "no-change"]}, ["r-recent", "r-dry", "r-old"]),
    ({"host": "web01", "status": ["failed"], "since": "7d"}, ["r-week"]),
    ({"limit": 2}, ["r-now", "r-recent"]),
    ({"run_id": "r-week"}, ["r-week"]),
    ({"run_id": "r-missing"}, []),
])
def test_filters(history, filters, expected):
    assert ids(info(history, **filters)) == expected


def test_iso_times_and_dates(history):
    since = format_time(NOW - datetime.timedelta(hours=6))
    assert ids(info(history, since=since)) == ["r-now", "r-recent", "r-dry"]
    today = NOW.strftime("%Y-%m-%d")
    yesterday = (NOW - datetime.timedelta(days=1)).strftime("%Y-%m-%d")
    assert set(ids(info(history, since=yesterday))) >= {"r-now", "r-recent"}
    assert "r-week" not in ids(info(history, since=today))
    offset = (NOW - datetime.timedelta(hours=2)).astimezone(datetime.timezone(datetime.timedelta(hours=5)))
    assert ids(info(history, since=offset.isoformat())) == ["r-now", "r-recent"]


def test_run_id_returns_the_full_event(history):
    event = info(history, run_id="r-week")["change_events"][0]
    assert event["status"] == "failed" and event["authorisation"] == "unauthorised"
    assert sorted(h["host"] for h in event["hosts"]) == ["web01", "web02"]


def test_include_results_adds_results_and_evidence(history):
    result = info(history, run_id="r-week", include_results=True)
    event = result["change_events"][0]
    assert [r["host"] for r in event["results"]] == ["web01", "web02"]
    assert [e["checklist"] for e in event["evidence"]] == ["smoke"]
    narrowed = info(history, host="web02", include_results=True, status=["failed"])["change_events"][0]
    assert [r["host"] for r in narrowed["results"]] == ["web02"]


def test_verify_option_adds_the_chain_report(history):
    result = info(history, verify=True, limit=1)
    assert result["verification"]["valid"] is True
    assert result["verification"]["entries_checked"] == history.head()[0]


@pytest.mark.parametrize("option, value", [("since", "yesterday"), ("until", "24 hours"), ("since", "2026-13-45"),
                                           ("until", "7y")])
def test_bad_times_name_the_option_and_value(history, option, value):
    with pytest.raises(ValidationError) as caught:
        info(history, **{option: value})
    message = str(caught.value)
    assert message.startswith(option + ":") and repr(value) in message
    assert "24h" in message  # says what would have been accepted


@pytest.mark.parametrize("limit", [0, -3])
def test_limit_below_one_is_refused(history, limit):
    with pytest.raises(ValidationError) as caught:
        info(history, limit=limit)
    assert "limit" in str(caught.value) and str(limit) in str(caught.value)


def test_parse_moment():
    now = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.timezone.utc)
    assert parse_moment("since", "30m", now=now) == "2026-11-23T11:30:00.000000Z"
    assert parse_moment("since", "2w", now=now) == "2026-11-09T12:00:00.000000Z"
    assert parse_moment("since", " 24h ", now=now) == "2026-11-22T12:00:00.000000Z"
    assert parse_moment("since", "45s", now=now) == "2026-11-23T11:59:15.000000Z"
    assert parse_moment("since", "2026-11-23T13:00:00+01:00") == "2026-11-23T12:00:00.000000Z"
    assert parse_moment("since", None) is None and parse_moment("since", "") is None


def test_verify_ledger_on_an_intact_chain(history):
    seq, head = history.head()
    result = verify(history)
    assert result["changed"] is False and not result.get("failed")
    assert result["verification"]["valid"] is True and result["verification"]["head_hash"] == head
    assert str(seq) in result["msg"]
    assert result["backend"] == history.describe()
    assert verify(history, expected_head=head)["verification"]["valid"] is True


def test_verify_ledger_against_a_head_that_is_not_in_the_chain(history):
    result = verify(history, expected_head="ab" * 32)
    assert result["failed"] is True
    assert "abababababababab" in result["msg"]


def test_verify_ledger_on_a_broken_chain(sqlite_sor):
    record_run(sqlite_sor, "r1", 1)
    record_run(sqlite_sor, "r2", 0.5)
    conn = sqlite3.connect(sqlite_sor.path, isolation_level=None)
    conn.execute("UPDATE ledger SET actor = 'mallory' WHERE seq = 3")
    conn.close()
    result = verify(sqlite_sor)
    assert result["failed"] is True
    assert result["verification"]["first_broken"]["seq"] == 3
    assert result["msg"].startswith("ledger chain broken at entry 3")
    lenient = verify(sqlite_sor, fail_on_broken=False)
    assert not lenient.get("failed") and lenient["verification"]["valid"] is False
    assert lenient["msg"] == result["msg"]


# -- one gate decision by its id (change_event_info decision_id) -------------------------------------------------
def gate_decision_entry(run_id, decision_id, reasons):
    return Entry("run.gate", run_id, {"decision_id": decision_id, "run_id": run_id, "allowed": False, "type": "denied",
                                      "reference": None, "reasons": reasons, "hosts": ["web01"],
                                      "context": {"play": "Patch", "modules": ["ansible.builtin.copy"]}},
                 entry_id="gate-%s" % decision_id)


def test_decision_id_returns_the_whole_decision_and_its_event(sor):
    record_run(sor, "run-a", 2)
    record_run(sor, "run-b", 1)
    wanted, other = "a" * 32, "b" * 32
    sor.append([gate_decision_entry("run-a", wanted, ["CHG0000001 is not approved (approval: requested)"]),
                gate_decision_entry("run-b", other, ["another"])])
    found = info(sor, decision_id=wanted, playbook="no such playbook")
    assert found["decision"]["decision_id"] == wanted and found["decision"]["context"]["modules"]
    assert found["decision"]["reasons"] == ["CHG0000001 is not approved (approval: requested)"]
    assert [event["run_id"] for event in found["change_events"]] == ["run-a"], "the other filters are not applied"


def test_decision_id_unknown_is_null_and_a_malformed_one_names_the_option(sor):
    assert info(sor, decision_id="c" * 32) == {"changed": False, "change_events": [], "decision": None}
    with pytest.raises(ValidationError) as raised:
        info(sor, decision_id="{{ ansible_failed_result.decision_id }}")
    assert "decision_id: '{{ ansible_failed_result.decision_id }}' is not a change gate decision id" \
        in raised.value.message
    # an entry of another kind under that id is no gate decision
    record_run(sor, "run-c", 1)
    sor.append([Entry("evidence.recorded", "run-c", {"run_id": "run-c", "host": "web01", "checklist": "smoke",
                                                     "status": "pass"}, entry_id="gate-" + "d" * 32)])
    assert info(sor, decision_id="d" * 32)["decision"] is None
