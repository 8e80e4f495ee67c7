# -*- coding: utf-8 -*-
"""The daily metric rollups (system_of_record/metric_rollups.py, intelligence/metrics_rollup.py) on every backend:
the figures read from them are exactly those of the raw computation (``metrics.compute(use_rollups=False)``) on a
seeded history full of edge cases - periods that start and end inside a day and in other time zones, runs over
midnight, failures that changed nothing, emergency changes, incident and remediation links, a CI whose services
and team change and a CI deleted after its changes, runs still running, dry runs and denied runs - and an existing
ledger's backfill gives the rows a replay gives (the suite's fixture compares the tables with a replay after every
test: ``tests/conftest.py``)."""

from __future__ import annotations

import datetime
import json
import random
import sqlite3

import pytest

from support import schema_history
from support.history import run_entries, t

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import metrics
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import metric_rollups, schema

UTC = datetime.timezone.utc
HOSTS = ["web01", "web02", "db01", "db02", "batch01", "lonely01"]  # lonely01 has no CI


def ci(ci_id, name, **attributes):
    return Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": dict(attributes, name=name), "identities": {}})


def history(sor, seed=18, runs=160):
    """CIs of several services, teams and environments, then ``runs`` random runs over 12 days (2026-01-05 on)."""
    sor.append([
        ci("ci-web01", "web01", **{"class": "server", "services": ["shop"], "support_group": "web",
                                   "environment": "production"}),
        ci("ci-web02", "web02", **{"class": "server", "services": ["shop", "blog"], "support_group": "web",
                                   "environment": "production"}),
        ci("ci-db01", "db01", **{"class": "server", "services": ["shop"], "owner": "dba", "environment": "staging"}),
        ci("ci-db02", "db02", **{"class": "server", "owner": "dba"}),
        ci("ci-batch01", "batch01", **{"class": "server"}),
        ci("ci-app", "checkout", **{"class": "application", "services": ["payments"]}),
    ])
    ci_ids = {"web01": "ci-web01", "web02": "ci-web02", "db01": "ci-db01", "db02": "ci-db02",
              "batch01": "ci-batch01", "checkout": "ci-app"}
    rng = random.Random(seed)
    origin = t("2026-01-05 00:00")
    made = []
    for number in range(runs):
        start = origin + datetime.timedelta(minutes=rng.randrange(12 * 24 * 60))
        # some runs cross midnight, most take minutes
        end = start + datetime.timedelta(minutes=rng.choice([1, 5, 20, 90, 600]), microseconds=rng.randrange(10 ** 6))
        status = rng.choice(["successful"] * 6 + ["failed", "interrupted"])
        gate = rng.choice(["standard", "standard", "normal", "emergency", "emergency", None, "denied"])
        changed = rng.sample(sorted(ci_ids), rng.choice([0, 1, 1, 1, 2]))
        hosts = list(changed) or rng.sample(HOSTS, rng.choice([1, 2]))
        if gate == "denied":
            changed = []
        commit = start - datetime.timedelta(minutes=rng.randrange(-30, 3000)) if rng.random() < 0.7 else None
        run = dict(run_id="r%03d" % number, start=start, end=end, status=status, gate=gate, commit=commit,
                   changed=changed, hosts=hosts, check_mode=rng.random() < 0.05)
        entries = run_entries(run, ci_ids)
        if number % 40 == 7:
            # still running: no end (and so not a change yet)
            entries = [entry for entry in entries if entry.kind not in ("run.finished", "run.interrupted")]
        sor.append(entries)
        made.append(run)
    links = []
    for run in rng.sample(made, 20):
        links.append(Entry("run.linked", run["run_id"], {
            "run_id": run["run_id"], "link": "incident", "target": "INC%d" % rng.randrange(100),
            "linked_at": format_time(run["end"] + datetime.timedelta(hours=rng.choice([-1, 2, 20, 30, 80])))}))
    for run, fix in zip(rng.sample(made, 15), rng.sample(made, 15)):
        links.append(Entry("run.linked", run["run_id"], {
            "run_id": run["run_id"], "link": "remediated_by", "target": fix["run_id"], "linked_at": None}))
    links.append(Entry("run.linked", made[3]["run_id"], {
        "run_id": made[3]["run_id"], "link": "remediated_by", "target": "no-such-run", "linked_at": None}))
    sor.append(links)
    return made


PERIODS = [
    ("2026-01-05 00:00", "2026-01-19 00:00"),          # whole days only
    ("2026-01-05 13:17", "2026-01-15 06:45"),          # edge days at both ends
    ("2026-01-07 23:59", "2026-01-08 00:01"),          # two minutes over midnight: no whole day
    ("2026-01-09 03:00", "2026-01-09 22:00"),          # inside one day
    ("2026-01-01 00:00", "2026-02-01 00:00"),          # beyond the history at both ends
]
ZONES = [UTC, datetime.timezone(datetime.timedelta(hours=5, minutes=30)), datetime.timezone(-datetime.timedelta(hours=8))]


def _period(since, until, zone):
    # the same wall-clock times in another zone: the UTC day boundaries fall inside the period elsewhere
    return (t(since).replace(tzinfo=zone), t(until).replace(tzinfo=zone))


def _both(sor, since, until, **options):
    raw = metrics.compute(sor, since, until, use_rollups=False, **options)
    rolled = metrics.compute(sor, since, until, use_rollups=True, **options)
    return raw, rolled


def test_the_rollups_give_the_raw_figures_exactly(open_sor):
    sor = open_sor()
    history(sor)
    assert sor.has_metric_rollups
    compared = 0
    for since_text, until_text in PERIODS:
        for zone in ZONES:
            since, until = _period(since_text, until_text, zone)
            for bucket, group_by in (("week", "service"), ("day", "team"), ("month", "environment"), ("day", None)):
                raw, rolled = _both(sor, since, until, bucket=bucket, group_by=group_by)
                assert rolled == raw, (since, until, bucket, group_by)
                compared += 1
    # the comparison is not vacuous: the history has what every rule counts
    raw = metrics.compute(sor, t("2026-01-05 00:00"), t("2026-01-19 00:00"), use_rollups=False)["overall"]
    assert raw["deployments"] > 20 and raw["lead_time"]["count"] > 10 and raw["time_to_restore"]["count"] > 3
    assert {"failed", "interrupted", "incident", "remediated_by", "emergency change"} <= set(raw["failure_reasons"])
    assert compared == len(PERIODS) * len(ZONES) * 4


@pytest.mark.backends("sqlite")
def test_the_failure_rules_read_metric_ci_next_through_its_indexes(open_sor, backend_env, monkeypatch):
    """At 1,000,000 change events the deployments of a few hundred CIs over 90 days and the changes an emergency
    change followed within a day are a few thousand rows of metric_ci_next: migration 19's indexes give them, where
    the reads joined ci_changes to metric_changes or went through the period's every row (PostgreSQL scanned the
    table). A window longer than the index's day does not use it (it would miss rows). SQLite keeps no statistics
    and follows the statement; PostgreSQL's planner weighs its statistics, which on a test's few rows favour any
    index (its plans at 1,000,000 change events: bench/intelligence_queries, docs/metrics.md "Speed")."""
    sor = open_sor()
    history(sor)
    statements = []
    query = sor._query
    monkeypatch.setattr(sor, "_query", lambda sql, params=(): statements.append((sql, tuple(params))) or query(
        sql, params))
    since, until = "2026-01-05T00:00:00.000000Z", "2026-01-19T00:00:00.000000Z"
    assert sor.find_deployment_ends(["ci-web01", "ci-db01"], since, until)
    assert sor.find_emergency_marked(since, until, schema.NEAR_EMERGENCY_US)
    # (a shorter window too: SQLite matches a partial index's condition to a bound value only when they are equal)
    sor.find_emergency_marked(since, until, schema.NEAR_EMERGENCY_US // 24)
    sor.find_emergency_marked(since, until, 3 * schema.NEAR_EMERGENCY_US)
    connection = sqlite3.connect(backend_env["CHANGEOPS_SQLITE_PATH"])
    deployments, near, nearer, far = [
        " ".join(str(row[-1]) for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params))
        for sql, params in statements]
    connection.close()
    assert "metric_ci_next_deployment_starts" in deployments, deployments
    assert "metric_ci_next_near_emergencies" in near and "metric_ci_next_near_emergencies" in nearer, (near, nearer)
    assert "metric_ci_next_near_emergencies" not in far, far


@pytest.mark.parametrize("window", [datetime.timedelta(hours=1), datetime.timedelta(hours=24),
                                    datetime.timedelta(days=3), datetime.timedelta(0)])
def test_every_failure_window_and_filter_gives_the_raw_figures(open_sor, window):
    sor = open_sor()
    history(sor, seed=7)
    since, until = t("2026-01-06 08:30"), t("2026-01-14 17:10")
    for filters in ({}, {"services": ["shop"]}, {"services": ["blog", "payments"]}, {"teams": ["dba"]},
                    {"environments": ["production"], "teams": ["web"]}, {"services": ["nothing"]}):
        for group_by in (None, "service", "team"):
            raw, rolled = _both(sor, since, until, bucket="day", group_by=group_by, failure_window=window, **filters)
            assert rolled == raw, (window, filters, group_by)


def test_the_rollups_follow_the_cmdb(open_sor):
    sor = open_sor()
    history(sor, seed=3)
    since, until = t("2026-01-05 06:00"), t("2026-01-17 00:00")
    # web01 moves to another service and team, the application is renamed, db02 is deleted
    sor.append([Entry("ci.updated", "ci-web01", {"ci_id": "ci-web01", "changes": {
        "services": {"from": ["shop"], "to": ["storefront"]}, "support_group": {"from": "web", "to": "sre"}}}),
        Entry("ci.updated", "ci-app", {"ci_id": "ci-app", "changes": {"name": {"from": "checkout", "to": "pay"}}}),
        Entry("ci.deleted", "ci-db02", {"ci_id": "ci-db02"})])
    for group_by in ("service", "team"):
        raw, rolled = _both(sor, since, until, bucket="week", group_by=group_by)
        assert rolled == raw
    keys = [group["key"] for group in metrics.compute(sor, since, until, group_by="service")["groups"]]
    assert "storefront" in keys and "pay" in keys and "checkout" not in keys


def test_whole_days_are_read_from_the_rollups(open_sor, monkeypatch):
    sor = open_sor()
    made = history(sor)
    read = []
    original = type(sor).find_metric_day_sums

    def counting(store, day_ranges):
        rows = original(store, day_ranges)
        read.append((day_ranges, len(rows), store is sor))
        return rows

    # (on the class: the day sums are read aside, by a store of their own)
    monkeypatch.setattr(type(sor), "find_metric_day_sums", counting)
    metrics.compute(sor, t("2026-01-05 12:00"), t("2026-01-15 12:00"), group_by="service")
    # the whole days, cut at the weeks' bounds (Monday 2026-01-12)
    assert read and read[0][0] == [("2026-01-06", "2026-01-12"), ("2026-01-12", "2026-01-15")]
    # a row per week and label key, fewer than the changes they count
    assert 0 < read[0][1] < len(made)
    # by a store of their own, in a thread, where the backend reads aside
    assert read[0][2] is not sor.reads_aside


def _upgraded_from_before(open_sor, sor, migration):
    """``sor`` put back to the schema before ``migration`` (and closed), opened again: upgraded, its backfill run."""
    with sor._write_transaction() as cursor:
        schema_history.roll_back(cursor, schema.version_of(migration) - 1)
    sor.close()
    upgraded = open_sor()
    assert upgraded.schema_version() == schema.LATEST_VERSION
    return upgraded


def _rollup_rows(sor):
    """``metric_changes`` and ``metric_days``, sorted."""
    return (sorted(tuple(row.values()) for row in sor.find_metric_changes(None, None)),
            sorted(sor.find_metric_days("0000", "9999")))


def _next_rows(sor):
    return sorted(tuple(row) for row in sor._query("SELECT * FROM metric_ci_next"))


def _next_parts(sor):
    """``metric_ci_next`` sorted, and its rows that name a next emergency change / a next deployment."""
    rows = _next_rows(sor)
    return rows, [row for row in rows if row[4] is not None], [row for row in rows if row[5] is not None]


def _migration_18_parts(sor):
    """The changes that ended failed with the status and environment their rows keep, those with an environment,
    and each day's lead times packed (those with any)."""
    rows = sorted((row["run_id"], row["failed_status"], row["failed_environment"])
                  for row in sor.find_metric_changes(None, None, failed_only=True))
    packed = sorted(tuple(row) for row in sor._query("SELECT day, label_key, lead_seconds, lead_packed FROM metric_days"))
    assert all(list(metric_rollups.unpack_leads(row[3])) == json.loads(row[2]) for row in packed)
    return rows, [row for row in rows if row[1] in ("failed", "interrupted") and row[2]], packed, [
        row for row in packed if row[3]]


@pytest.mark.parametrize("migration, reader", [
    # as a collection before the rollups left it
    (schema.METRIC_ROLLUPS_MIGRATION, _rollup_rows),
    # with the rollups, but the failed changes' status and environment only in change_facts, lead times as JSON only
    (schema.METRIC_FAILURE_ROWS_MIGRATION, _migration_18_parts),
    # with the daily rollups but not metric_ci_next
    (schema.METRIC_NEXT_MIGRATION, _next_parts),
    # with metric_ci_next as migration 14 made it, filled by a full refresh per link
    (schema.METRIC_NEXT_INCREMENTAL_MIGRATION, _next_parts),
], ids=["metric_changes+metric_days", "failed-facts-packed-leads", "metric_ci_next", "metric_ci_next-incremental"])
def test_an_existing_ledger_is_backfilled_as_a_replay_would_fill_it(open_sor, migration, reader, monkeypatch):
    # a few CIs per page, so the backfill's paging over CIs is exercised (a large estate reads millions of links)
    monkeypatch.setattr(metric_rollups, "_BACKFILL_CIS", 3)
    sor = open_sor()
    history(sor, runs=80)
    before = reader(sor)
    # every part has something to say (emergency changes and deployments after other changes of their CIs)
    assert all(before)
    upgraded = _upgraded_from_before(open_sor, sor, migration)
    assert reader(upgraded) == before


def test_next_emergency_and_deployment_follow_runs_recorded_out_of_order(open_sor):
    """The projector keeps every change's row exact whatever order the runs arrive in (a spool replayed late):
    an emergency change recorded after a later change of its CI moves the earlier change's next emergency."""
    sor = open_sor()
    sor.append([ci("ci-web01", "web01", **{"class": "server", "services": ["shop"]})])
    ci_ids = {"web01": "ci-web01"}

    def run(run_id, start, minutes, gate, status="successful"):
        sor.append(run_entries(dict(run_id=run_id, start=t(start), end=t(start) + datetime.timedelta(minutes=minutes),
                                    status=status, gate=gate, commit=None, changed=["web01"], hosts=["web01"],
                                    check_mode=False), ci_ids))

    run("a", "2026-01-05 10:00", 5, "standard", status="failed")
    run("c", "2026-01-05 14:00", 5, "emergency")

    def micros(moment):
        return int((t(moment) - datetime.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1000000

    rows = {row[1]: row for row in _next_rows(sor)}
    assert (rows["a"][4], rows["a"][5]) == (micros("2026-01-05 14:00"), "c")
    run("b", "2026-01-05 12:00", 5, "emergency")  # recorded late, between the two
    rows = {row[1]: row for row in _next_rows(sor)}
    assert (rows["a"][4], rows["a"][5]) == (micros("2026-01-05 12:00"), "b")
    assert (rows["b"][4], rows["b"][5]) == (micros("2026-01-05 14:00"), "c")
    assert (rows["c"][4], rows["c"][5]) == (None, None)
    # b is itself failed (the emergency change c follows it within the window), so a's next deployment does not
    # restore it: a (ended 10:05) is restored by c (ended 14:05), b by c too (2 h); the rollups fall back to the
    # CI's deployments
    raw, rolled = _both(sor, t("2026-01-05 00:00"), t("2026-01-06 00:00"), bucket="day")
    assert rolled == raw
    assert raw["overall"]["time_to_restore"]["median_hours"] == 3.0


def _next_rows_from_scratch(sor):
    """What :func:`metric_rollups.next_rows` gives over each CI's whole history: the rows before the upkeep was
    incremental, and what the backfill writes."""
    members = {}
    for row in sor._query("SELECT c.ci_id, m.run_id, m.started_at, m.start_us, m.end_us, m.emergency, m.deployment"
                          " FROM ci_changes c JOIN metric_changes m ON m.run_id = c.run_id"):
        members.setdefault(row[0], []).append(tuple(row[1:]))
    return sorted(row for ci_id, rows in members.items() for row in metric_rollups.next_rows(ci_id, rows))


def _late_end(run, rng):
    """A second end of ``run``, recorded after its CI links (a spool flushed late, an interrupted run's end
    recorded again): another outcome and end time, so its kind (a deployment or not) and its end change after the
    CIs it changed were linked - the rows follow through ``metric_rollups._refresh_next``."""
    end = run["start"] + datetime.timedelta(minutes=rng.choice([0, 10, 30, 60]))
    closing = {"run_id": run["run_id"], "ended_at": format_time(end)}
    status = rng.choice(["successful", "failed", "interrupted"])
    if status == "interrupted":
        return Entry("run.interrupted", run["run_id"], dict(closing, reason="killed"), at=format_time(end))
    return Entry("run.finished", run["run_id"], dict(closing, outcome=status), at=format_time(end))


def _duplicate_links(run, ci_ids):
    """The CI links of ``run`` again, under another host name (two hosts of a run that are one CI, or a link
    recorded twice): ``ci_changes`` keeps one row per change and CI, and so must ``metric_ci_next``."""
    return [Entry("ci.changed_by_run", ci_ids[host], {"ci_id": ci_ids[host], "run_id": run["run_id"],
                                                      "host": host + "-alias"}, at=format_time(run["end"]))
            for host in run["changed"]]


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_the_incremental_upkeep_gives_every_row_exactly_whatever_order_runs_arrive_in(open_sor, seed):
    """A new CI link updates only the rows its change displaces (``metric_rollups._link_next``): after each run,
    recorded in a random order (a spool flushed after later runs), the rows equal a computation over the CIs' whole
    histories. Starts and ends on a ten-minute grid give equal ends (the lowest run id wins), runs that end as they
    start and emergency changes that start as others end; run ids are not in time order. Some runs link a CI twice
    (in the same append or a later one), some are ended again later with another outcome and end (their kind,
    emergency or deployment, and their end change after their CIs were linked), some link their CIs before their
    end arrives (not yet a change when linked), and the CIs change class between runs (a host becomes an
    application and back: its changes' labels move, their next rows must not)."""
    sor = open_sor()
    sor.append([ci("ci-web01", "web01", **{"class": "server"}), ci("ci-web02", "web02", **{"class": "server"})])
    ci_ids = {"web01": "ci-web01", "web02": "ci-web02"}
    rng = random.Random(seed)
    runs = []
    for number in range(36):
        start = t("2026-01-05 10:00") + datetime.timedelta(minutes=10 * rng.randrange(20))
        runs.append(dict(run_id="r%02d-%d" % (rng.randrange(100), number), start=start,
                         end=start + datetime.timedelta(minutes=rng.choice([0, 0, 10, 20, 60])),
                         status=rng.choice(["successful"] * 4 + ["failed", "interrupted"]),
                         gate=rng.choice(["standard", "normal", "emergency", "emergency", None]), commit=None,
                         changed=rng.sample(sorted(ci_ids), rng.choice([1, 1, 2])), check_mode=False))
    rng.shuffle(runs)
    kinds = set()
    cases = {"duplicate": 0, "late duplicate": 0, "ended again": 0, "linked before its end": 0, "class": 0}
    recorded = []

    def check(what):
        rows = _next_rows(sor)
        assert rows == _next_rows_from_scratch(sor), what
        kinds.update((row[4] is None, row[5] is None) for row in rows)

    for run in runs:
        entries = run_entries(run, ci_ids)
        choice = rng.random()
        if choice < 0.15:
            entries += _duplicate_links(run, ci_ids)
            cases["duplicate"] += 1
        elif choice < 0.25:
            # the links before the end: the run is still running when its CIs are linked
            links = [entry for entry in entries if entry.kind == "ci.changed_by_run"]
            ends = [entry for entry in entries if entry.kind in ("run.finished", "run.interrupted")]
            sor.append([entry for entry in entries if entry not in links and entry not in ends] + links)
            check((run["run_id"], "linked before its end"))
            entries = ends
            cases["linked before its end"] += 1
        sor.append(entries)
        recorded.append(run)
        check(run["run_id"])
        if rng.random() < 0.2:
            earlier = rng.choice(recorded)
            sor.append([_late_end(earlier, rng)])
            check((earlier["run_id"], "ended again"))
            cases["ended again"] += 1
        if rng.random() < 0.15:
            earlier = rng.choice(recorded)
            sor.append(_duplicate_links(earlier, ci_ids))
            check((earlier["run_id"], "late duplicate"))
            cases["late duplicate"] += 1
        if rng.random() < 0.15:
            ci_id = rng.choice(sorted(ci_ids.values()))
            current = sor._query("SELECT ci_class FROM configuration_items WHERE ci_id = ?", (ci_id,))[0][0]
            other = "application" if current == "server" else "server"
            sor.append([Entry("ci.updated", ci_id, {"ci_id": ci_id, "changes": {
                "class": {"from": current, "to": other}}})])
            assert sor._query("SELECT ci_class FROM configuration_items WHERE ci_id = ?", (ci_id,))[0][0] == other
            check((ci_id, "class"))
            cases["class"] += 1
    # every combination of a next emergency change and a next deployment, present and missing, was kept
    assert kinds == {(True, True), (True, False), (False, True), (False, False)}
    # and every case above happened
    assert all(cases.values()), cases


@pytest.mark.tampers_query_tables
def test_ledger_verify_finds_a_next_emergency_change_rewritten_behind_its_back(open_sor):
    """``metric_ci_next`` decides which changes an emergency change marks failed: like every query table it is
    compared with a replay, so a row rewritten outside the ledger shows (and is rebuilt by a replay)."""
    sor = open_sor()
    history(sor, runs=60)
    assert sor.verify(projections=True).projection_problems == []
    with sor._write_transaction() as cursor:
        cursor.execute("UPDATE metric_ci_next SET next_emergency_us = NULL WHERE next_emergency_us IS NOT NULL")
    problems = sor.verify(projections=True).projection_problems
    assert problems and {(p["table"], p["problem"]) for p in problems} == {("metric_ci_next", "altered")}
