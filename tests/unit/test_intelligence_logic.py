# -*- coding: utf-8 -*-
"""Recurring windows, the policy's intelligence sections and the relationship walk, without a playbook."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils import change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import graph
from ansible_collections.changeops.itsm.plugins.module_utils.durations import parse_duration
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.schedules import Schedule

UTC = datetime.timezone.utc
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def utc(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule(kind, text, duration="2h", start=None, tz=PARIS):
    return Schedule(kind, text, tz, str(tz), parse_duration(duration), start=start)


@pytest.mark.parametrize("kind,text", [("rrule", "FREQ=WEEKLY;BYDAY=SU;BYHOUR=1;BYMINUTE=0"), ("cron", "0 1 * * 0")])
def test_a_weekly_window_in_local_time_across_daylight_saving(kind, text):
    window = schedule(kind, text)
    # Sunday 01:00 Paris is 00:00 UTC in winter and 23:00 UTC the day before in summer
    assert window.occurrences(utc("2026-01-04T00:30:00"), utc("2026-01-04T00:31:00")) == [
        (utc("2026-01-04T00:00:00"), utc("2026-01-04T02:00:00"))]
    assert window.occurrences(utc("2026-07-04T23:30:00"), utc("2026-07-04T23:31:00"))[0][0] == utc("2026-07-04T23:00:00")
    assert window.occurrences(utc("2026-01-04T02:00:00"), utc("2026-01-04T02:01:00")) == []
    # a change window of a week meets one occurrence
    assert len(window.occurrences(utc("2026-01-05T00:00:00"), utc("2026-01-12T00:00:00"))) == 1


def test_an_rrule_with_an_interval_keeps_its_phase_after_its_start_is_moved_forward():
    every_other_day = schedule("rrule", "FREQ=DAILY;INTERVAL=2;BYHOUR=3;BYMINUTE=0", duration="1h",
                               start=datetime.datetime(2000, 1, 1, 3, 0), tz=UTC)
    found = every_other_day.occurrences(utc("2026-03-01T00:00:00"), utc("2026-03-06T00:00:00"))
    days = [begin.date().isoformat() for begin, _end in found]
    # 2000-01-01 + 2n days: 2026-03-02 is day 9557 (odd), so the even ones are the 1st, 3rd, 5th
    expected = [day.isoformat() for day in (datetime.date(2026, 3, 1), datetime.date(2026, 3, 3),
                                            datetime.date(2026, 3, 5))
                if (day - datetime.date(2000, 1, 1)).days % 2 == 0]
    assert days == expected and len(days) >= 2


def test_cron_day_of_month_or_day_of_week():
    # cron's rule: both restricted means either (the 1st of the month, or a Monday)
    window = schedule("cron", "0 2 1 * 1", duration="1h", tz=UTC)
    found = window.occurrences(utc("2026-06-01T00:00:00"), utc("2026-06-16T00:00:00"))
    starts = [begin.date().isoformat() for begin, _end in found]
    assert starts == ["2026-06-01", "2026-06-08", "2026-06-15"]


@pytest.mark.parametrize("text,message", [
    ("maintenance_windows:\n  - {name: b, timezone: UTC, duration: 1h, rrule: 'FREQ=SOMETIMES', cis: [db01]}\n",
     "maintenance_windows[0].rrule: is not a valid RFC 5545 recurrence rule"),
    ("maintenance_windows:\n  - {name: b, timezone: UTC, duration: 1h, cron: '61 * * * *', cis: [db01]}\n",
     "maintenance_windows[0].cron: is not a valid cron expression"),
    ("maintenance_windows:\n  - {name: b, timezone: UTC, duration: soon, cron: '0 1 * * *', cis: [db01]}\n",
     "maintenance_windows[0].duration: must be a duration such as 3h, 90m or 1d12h (got 'soon')"),
    ("maintenance_windows:\n  - {name: b, timezone: UTC, duration: 1h, cron: '0 1 * * *'}\n",
     "maintenance_windows[0]: must name what it occupies"),
    ("maintenance_windows:\n  - {name: b, timezone: Mars/Base, duration: 1h, cron: '0 1 * * *', cis: [x]}\n",
     "maintenance_windows[0].timezone: unknown time zone"),
    ("collisions:\n  running_runs: {standard: block}\n",
     "collisions.running_runs.standard: must be one of deny, warn, allow (got 'block')"),
    ("collisions:\n  stale_after: never\n", "collisions.stale_after: must be a duration"),
    ("blast_radius:\n  max_depth: 0\n", "blast_radius.max_depth: must be at least 1"),
])
def test_bad_intelligence_sections_name_the_file_line_key_and_value(tmp_path, text, message):
    path = tmp_path / "policy.yml"
    path.write_text(text)
    with pytest.raises(ValidationError) as caught:
        change_policy.load_policy(str(path))
    assert str(path) in caught.value.message and message in caught.value.message
    assert " line " in caught.value.message


def test_collision_actions_per_kind_type_and_window(tmp_path):
    path = tmp_path / "policy.yml"
    path.write_text("collisions:\n  running_runs: deny\n  change_requests: {emergency: allow}\n"
                    "maintenance_windows:\n  - {name: b, timezone: UTC, duration: 1h, cron: '0 1 * * *', "
                    "groups: [db], actions: {normal: deny}}\n")
    rules = change_policy.load_policy(str(path)).intelligence
    window = rules.maintenance_windows[0]
    assert [rules.action("running_runs", kind) for kind in ("standard", "normal", "emergency")] == ["deny"] * 3
    assert [rules.action("change_requests", kind) for kind in ("standard", "emergency")] == ["warn", "allow"]
    assert rules.action("maintenance_windows", "normal", window) == "deny"
    assert rules.action("maintenance_windows", "standard", window) == "warn"


class Graph(object):
    """The one method the walk reads, over a list of relationships."""

    def __init__(self, relationships):
        self.relationships = [{"source": s, "type": k, "target": t} for s, k, t in relationships]
        self.queries = 0

    def find_relationships(self, sources=None, targets=None, types=None, as_rows=False):
        self.queries += 1
        found = [rel for rel in self.relationships if (not types or rel["type"] in types) and (
            (targets is not None and rel["target"] in targets) or (sources is not None and rel["source"] in sources))]
        return [(rel["source"], rel["type"], rel["target"]) for rel in found] if as_rows else found


def test_the_walk_is_breadth_first_cycle_safe_bounded_and_one_query_per_level():
    cmdb = Graph([("app", "runs_on", "host"), ("svc", "depends_on", "app"), ("app", "depends_on", "svc"),
                  ("report", "depends_on", "svc"), ("vm", "hosted_on", "host")])
    found = graph.walk(cmdb, ["host"], "inbound")
    assert [(ci_id, info["depth"]) for ci_id, info in found.reached.items()] == [
        ("app", 1), ("vm", 1), ("svc", 2), ("report", 3)]
    assert found.truncated is False and cmdb.queries == 4
    bounded = graph.walk(Graph(cmdb.relationships and [("app", "runs_on", "host"), ("svc", "depends_on", "app")]),
                         ["host"], "inbound", max_depth=1)
    assert bounded.ids() == ["app"] and bounded.truncated is True
    assert graph.walk(cmdb, ["host"], "inbound", max_items=2).truncated is True
    assert graph.walk(cmdb, ["report"], "outbound").ids() == ["svc", "app", "host"]
    assert graph.walk(cmdb, ["host"], "inbound", types=["hosted_on"]).ids() == ["vm"]


@pytest.mark.parametrize("value,rank", [(1, 1), ("1 - most critical", 1), ("3 - less critical", 3), ("high", 2),
                                        ("Critical", 1), ("unknown", None), (None, None), (True, None)])
def test_criticality_is_read_as_servicenow_and_people_write_it(value, rank):
    assert graph.criticality_rank(value) == rank
