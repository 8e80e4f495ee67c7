# -*- coding: utf-8 -*-
"""The change intelligence tables (system_of_record/intelligence.py) on every backend: what the projectors keep,
that an existing ledger's backfill gives exactly what a replay gives, and the queries."""

from __future__ import annotations

import datetime

import pytest

from support import schema_history
from support.history import run_entries, seed, t

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema

RUNS = [
    dict(run_id="a", start=t("2026-01-05 10:00"), end=t("2026-01-05 10:10"), status="successful", gate="standard",
         commit=t("2026-01-05 08:00"), changed=["web01", "db01"]),
    dict(run_id="b", start=t("2026-01-06 10:00"), end=t("2026-01-06 10:10"), status="failed", gate="normal",
         changed=["db01"]),
    dict(run_id="c", start=t("2026-01-07 10:00"), end=t("2026-01-07 10:10"), status="successful", gate=None,
         changed=["web01"], check_mode=True),
]


def ci(ci_id, name, **attributes):
    return Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": dict(attributes, name=name), "identities": {}})


def fill(sor):
    sor.append([ci("ci-w", "web01", **{"class": "server", "services": ["shop", "blog"], "support_group": "web"}),
                ci("ci-d", "db01", **{"class": "server", "criticality": 1, "owner": "dba"}),
                ci("ci-a", "shop", **{"class": "application"}),
                Entry("ci.relationship_added", "ci-a", {"source": "ci-a", "type": "runs_on", "target": "ci-w"}),
                Entry("ci.relationship_added", "ci-a", {"source": "ci-a", "type": "depends_on", "target": "ci-d"})])
    seed(sor, RUNS, {"web01": "ci-w", "db01": "ci-d"})
    sor.append([Entry("run.linked", "b", {"run_id": "b", "link": "incident", "target": "INC1",
                                          "linked_at": "2026-01-06T11:00:00.000000Z"})])
    sor.append([Entry("change_request.created", "CHG1", {"record": {
        "number": "CHG1", "state": "new", "type": "normal", "planned_start": "2026-01-10T00:00:00.000000Z",
        "planned_end": "2026-01-10T02:00:00.000000Z"}})])


def test_the_projectors_keep_what_the_queries_read(open_sor):
    sor = open_sor()
    fill(sor)
    assert [(c["ci_id"], c["run_id"]) for c in sor.find_ci_changes()] == [("ci-d", "b"), ("ci-d", "a"), ("ci-w", "a")]
    assert [c["run_id"] for c in sor.find_ci_changes(ci_ids=["ci-d"], since="2026-01-06T00:00:00Z")] == ["b"]
    facets = {(row["ci_id"], row["facet"], row["value"]) for row in sor.find_ci_facets()}
    assert facets == {("ci-w", "service", "shop"), ("ci-w", "service", "blog"), ("ci-w", "support_group", "web"),
                      ("ci-d", "criticality", "1"), ("ci-d", "owner", "dba")}
    facts = {fact["run_id"]: fact for fact in sor.find_change_facts()}
    assert facts["a"]["commit_at"] == "2026-01-05T08:00:00.000000Z" and facts["a"]["authorisation"] == "standard"
    assert facts["b"]["status"] == "failed" and facts["c"]["dry_run"] is True
    assert [(link["run_id"], link["target"]) for link in sor.find_change_links()] == [("b", "INC1")]
    assert [r["number"] for r in sor.find_change_requests_in_window("2026-01-10T01:00:00Z", "2026-01-10T01:30:00Z")] \
        == ["CHG1"]
    assert sor.find_change_requests_in_window("2026-01-10T02:00:00Z", "2026-01-10T03:00:00Z") == []
    assert {(r["source"], r["target"]) for r in sor.find_relationships(targets=["ci-w", "ci-d"])} == {
        ("ci-a", "ci-w"), ("ci-a", "ci-d")}
    assert sor.find_run_hosts(["a"]) == {"a": ["db01", "web01"]}
    report = sor.verify(projections=True)
    assert report.valid and report.projections_checked and not report.projection_problems


def test_an_existing_ledger_is_backfilled_as_a_replay_would_fill_it(open_sor):
    sor = open_sor()
    fill(sor)
    version = schema.version_of(schema.INTELLIGENCE_MIGRATION)
    # as a collection before the change intelligence tables left it
    with sor._write_transaction() as cursor:
        # (and every migration after them: the metric rollups, ...)
        schema_history.roll_back(cursor, version - 1)
        cursor.execute("DELETE FROM ledger WHERE kind = 'run.linked'")  # the kind did not exist then
    sor.close()
    upgraded = open_sor()
    assert upgraded.schema_version() == schema.LATEST_VERSION
    assert len(upgraded.find_ci_changes()) == 3 and len(upgraded.find_ci_facets()) == 5
    facts = {fact["run_id"]: fact for fact in upgraded.find_change_facts()}
    # a run.started written before the recorder recorded commit times has none; the rest is the same
    assert set(facts) == {"a", "b", "c"} and facts["b"]["status"] == "failed"
    assert [r["number"] for r in upgraded.find_change_requests_in_window("2026-01-10T01:00:00Z",
                                                                         "2026-01-10T01:30:00Z")] == ["CHG1"]


@pytest.mark.tampers_query_tables
def test_the_tables_are_compared_with_the_ledger(open_sor):
    sor = open_sor()
    fill(sor)
    with sor._write_transaction() as cursor:
        cursor.execute("DELETE FROM ci_changes WHERE run_id = 'b'")
        cursor.execute("UPDATE change_facts SET status = 'successful' WHERE run_id = 'b'")
    problems = sor.verify(projections=True).projection_problems
    assert {(p["table"], p["problem"]) for p in problems} == {("ci_changes", "missing"), ("change_facts", "altered")}


def test_a_start_replayed_after_the_links_moves_their_start(open_sor):
    sor = open_sor()
    sor.append([ci("ci-w", "web01", **{"class": "server"})])
    sor.append([Entry("ci.changed_by_run", "ci-w", {"ci_id": "ci-w", "run_id": "late", "host": "web01"},
                      at="2026-01-05T12:00:00.000000Z")])
    sor.append([Entry("run.started", "late", {"run_id": "late", "started_at": "2026-01-05T10:00:00.000000Z"})])
    assert sor.find_ci_changes()[0]["started_at"] == "2026-01-05T10:00:00.000000Z"


def test_the_task_results_of_given_runs_are_read_through_the_run_index(open_sor, monkeypatch):
    # SQLite keeps no statistics: with a status filter beside the run ids it walked the status index over every
    # changed result of the ledger (triage at 1,000,000 change events: 390 ms a query, bench/intelligence_queries)
    sor = open_sor()
    fill(sor)
    statements = []
    query = sor._query
    monkeypatch.setattr(sor, "_query", lambda sql, params=(): statements.append((sql, params)) or query(sql, params))
    run_ids = ["run-%d" % number for number in range(8)]
    found = list(sor.find_task_results(run_ids=run_ids, statuses=["changed", "failed", "unreachable"]))
    assert [result["seq"] for result in found] == sorted(result["seq"] for result in found)
    (sql, params), = statements
    if sor.backend_name != "sqlite":
        return  # PostgreSQL's planner has statistics (the statement names no index)
    plan = " ".join(str(row[-1]) for row in query("EXPLAIN QUERY PLAN " + sql, params))
    assert "task_results_run" in plan and "task_results_status" not in plan


def test_a_read_of_more_ids_than_one_in_list_holds_finds_each_once(open_sor, monkeypatch):
    # 1,201 CIs: three IN lists of 500 on SQLite, one bound array on PostgreSQL (``_select_in``); either way each
    # asked-for CI's facets once, whatever the duplicates and unknown ids asked with them
    sor = open_sor()
    sor.append([ci("ci-%04d" % number, "host%04d" % number, **{"class": "server", "owner": "team%d" % (number % 7)})
                for number in range(1201)])
    wanted = ["ci-%04d" % number for number in range(1201) if number != 600] + ["ci-0001", "no-such-ci"]
    statements = []
    query = sor._query
    monkeypatch.setattr(sor, "_query", lambda sql, params=(): statements.append(sql) or query(sql, params))
    rows = [(row["ci_id"], row["facet"], row["value"]) for row in sor.find_ci_facets(ci_ids=wanted, facet="owner")]
    assert sorted(rows) == [("ci-%04d" % number, "owner", "team%d" % (number % 7))
                            for number in range(1201) if number != 600]
    assert len(statements) == (3 if sor.set_parameter != "any" else 1)
    if len(statements) == 1:
        assert rows == sorted(rows)  # one statement: its ORDER BY holds for all of them


def test_a_read_of_more_run_ids_than_one_in_list_holds_keeps_one_order(open_sor):
    # 1,001 changes read back by run id: three lists on SQLite, each ordered on its own, sorted into one order
    # (``_select_in``'s sort_key); one statement on PostgreSQL. Run ids do not follow the starts, and pairs of
    # changes start at the same moment, so both keys of the order count.
    sor = open_sor()
    runs = [dict(run_id="r%04d" % ((number * 7919) % 1001), start=t("2026-01-05 10:00") + datetime.timedelta(
        minutes=number // 2), end=t("2026-01-05 10:00") + datetime.timedelta(minutes=number // 2, seconds=30),
        status="successful", gate=None, changed=[]) for number in range(1001)]
    sor.append([entry for run in runs for entry in run_entries(run, {})])
    wanted = [run["run_id"] for run in reversed(runs)]
    facts = [(fact["started_at"], fact["run_id"]) for fact in sor.find_change_facts(run_ids=wanted + ["no-such-run"])]
    assert len(facts) == 1001 and facts == sorted(facts)


def test_changes_of_more_cis_than_one_in_list_holds_keep_the_statements_order_and_limit(open_sor):
    # 1,200 CIs changed by 120 runs (ten each), pairs of runs starting at the same moment and run ids that do not
    # follow the starts: read back newest first, ties by run then CI, whether in three lists (SQLite, merged here)
    # or one statement (PostgreSQL), with and without a limit
    sor = open_sor()
    hosts = ["h%04d" % number for number in range(1200)]
    ci_ids = {host: "ci-%04d" % number for number, host in enumerate(hosts)}
    sor.append([ci(ci_ids[host], host, **{"class": "server"}) for host in hosts])
    runs = [dict(run_id="r%03d" % ((number * 37) % 120), start=t("2026-01-05 10:00") + datetime.timedelta(
        minutes=number // 2), end=t("2026-01-05 10:00") + datetime.timedelta(minutes=number // 2, seconds=30),
        status="successful", gate=None, changed=hosts[number * 10:number * 10 + 10]) for number in range(120)]
    sor.append([entry for run in runs for entry in run_entries(run, ci_ids)])
    wanted = list(reversed(list(ci_ids.values()))) + ["no-such-ci"]
    expected = sorted(((ci_ids[host], run["run_id"], format_time(run["start"])) for run in runs
                       for host in run["changed"]), key=lambda row: (row[1], row[0]))
    expected.sort(key=lambda row: row[2], reverse=True)
    for limit in (None, 25):
        changes = sor.find_ci_changes(ci_ids=wanted, limit=limit)
        found = [(row["ci_id"], row["run_id"], row["started_at"]) for row in changes]
        assert found == expected[:limit]
    assert sor.find_ci_changes(ci_ids=[]) == []


def test_links_and_hosts_of_more_runs_than_one_in_list_holds_come_back_whole_and_in_order(open_sor):
    # 1,001 runs each on two hosts and with one incident link, linked in an order their run ids do not follow: the
    # links come back in ledger order and each run's hosts by name, whether read in three lists (SQLite) or one
    # statement (PostgreSQL)
    sor = open_sor()
    runs = [dict(run_id="r%04d" % number, start=t("2026-01-05 10:00") + datetime.timedelta(minutes=number),
                 end=t("2026-01-05 10:00") + datetime.timedelta(minutes=number, seconds=30), status="successful",
                 gate=None, hosts=["web%d" % (number % 5), "db%d" % (number % 7)]) for number in range(1001)]
    sor.append([entry for run in runs for entry in run_entries(run, {})])
    linked = ["r%04d" % ((number * 7919) % 1001) for number in range(1001)]
    sor.append([Entry("run.linked", run_id, {"run_id": run_id, "link": "incident", "target": "INC%04d" % index,
                                             "linked_at": "2026-01-06T11:00:00.000000Z"})
                for index, run_id in enumerate(linked)])
    wanted = [run["run_id"] for run in reversed(runs)] + ["no-such-run"]
    links = sor.find_change_links(run_ids=wanted)
    assert [link["run_id"] for link in links] == linked
    assert [link["seq"] for link in links] == sorted(link["seq"] for link in links)
    assert [link["run_id"] for link in sor.find_change_links(run_ids=wanted[:3], link="incident")] == [
        run_id for run_id in linked if run_id in wanted[:3]]
    hosts = sor.find_run_hosts(wanted)
    assert hosts == {run["run_id"]: sorted(run["hosts"]) for run in runs}
    assert sor.find_run_hosts([]) == {} and sor.find_change_links(run_ids=[]) == []
