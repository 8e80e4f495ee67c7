# -*- coding: utf-8 -*-
"""policy_diff over the change intelligence sections: what a CAB must notice before it publishes (issue 18).

A collision that no longer denies, a run that stops blocking sooner, a blast radius that sees less (so a
template condition on it passes more plays) and a maintenance window that no longer protects the backups
are all loosenings: the summary marks them in capitals, as it marks a widened template.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils import change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import policy_diff

BASE = """
templates:
  - name: patching
    conditions: ["contains(tags, 'patching')"]
"""

OLD = BASE + """
collisions:
  running_runs: deny
  change_requests: {standard: deny, normal: warn}
  stale_after: 6h
blast_radius:
  max_depth: 4
  relationship_types: [runs_on, depends_on]
maintenance_windows:
  - name: nightly-backup
    owner: backup-team
    cron: "0 1 * * *"
    timezone: UTC
    duration: 3h
    services: [billing, crm]
    actions: {standard: deny}
  - name: batch
    cron: "0 22 * * 1-5"
    timezone: Europe/Paris
    duration: 1h
    groups: [batch]
"""


def policy(text):
    return change_policy.parse_policy(change_policy.yaml.load(text, Loader=change_policy._PolicyLoader), "p.yml")


def lines_of(old_text, new_text):
    old, new = policy(old_text), policy(new_text)
    summary = policy_diff.summarise(old, new)
    return summary, policy_diff.summary_lines(summary, new)


def test_loosened_collisions_blast_radius_and_windows_are_called_out():
    new = BASE + """
collisions:
  running_runs: {standard: warn, normal: deny, emergency: deny}
  change_requests: {standard: deny, normal: warn}
  stale_after: 1h
blast_radius:
  max_depth: 2
  relationship_types: [runs_on]
maintenance_windows:
  - name: nightly-backup
    owner: backup-team
    cron: "0 1 * * *"
    timezone: UTC
    duration: 3h
    services: [billing]
    actions: {standard: allow}
  - name: month-end
    cron: "0 0 1 * *"
    timezone: UTC
    duration: 1d
    environments: [production]
"""
    summary, lines = lines_of(OLD, new)
    assert summary["collisions"] == {"relaxed": True, "changes": [
        "running_runs for standard changes: deny -> warn", "stale_after 6 h -> 1 h"]}
    assert summary["blast_radius"] == {"narrowed": True, "changes": [
        "max_depth 4 -> 2", "relationship_types removed: depends_on"]}
    windows = summary["maintenance_windows"]
    assert (windows["added"], windows["removed"], windows["relaxed"]) == (["month-end"], ["batch"], ["nightly-backup"])
    assert windows["changed"] == [{"name": "nightly-backup", "relaxed": True, "changes": [
        "services removed: crm", "action for standard changes: deny -> allow"]}]
    assert lines == [
        "collisions RELAXED: running_runs for standard changes: deny -> warn; stale_after 6 h -> 1 h",
        "blast radius NARROWED: max_depth 4 -> 2; relationship_types removed: depends_on",
        "maintenance windows added: month-end",
        "maintenance windows REMOVED: batch",
        "maintenance window nightly-backup RELAXED: services removed: crm; action for standard changes: deny -> allow",
    ]


def test_tightening_is_reported_without_alarm():
    new = OLD.replace("change_requests: {standard: deny, normal: warn}", "change_requests: deny").replace(
        "stale_after: 6h", "stale_after: 12h").replace("max_depth: 4", "max_depth: 8").replace(
        "duration: 3h", "duration: 4h").replace("groups: [batch]", "groups: [batch, reports]")
    summary, lines = lines_of(OLD, new)
    assert summary["collisions"]["relaxed"] is False and summary["blast_radius"]["narrowed"] is False
    assert summary["maintenance_windows"]["relaxed"] == []
    assert lines == [
        "collisions changed: change_requests for normal changes: warn -> deny; change_requests for emergency "
        "changes: warn -> deny; stale_after 6 h -> 12 h",
        "blast radius changed: max_depth 4 -> 8",
        "maintenance window nightly-backup changed: duration 3 h -> 4 h",
        "maintenance window batch changed: groups added: reports",
    ]


def test_a_moved_schedule_or_a_dropped_section_counts_as_a_loosening():
    moved = OLD.replace('cron: "0 1 * * *"', 'cron: "0 3 * * *"')
    summary, lines = lines_of(OLD, moved)
    assert summary["maintenance_windows"]["relaxed"] == ["nightly-backup"]
    assert lines == ["maintenance window nightly-backup RELAXED: schedule 0 1 * * * (UTC) for 3 h -> 0 3 * * * (UTC)"
                     " for 3 h"]
    # no sections at all: the defaults (warn, 6 h, 5 levels over every relationship type, no windows)
    summary, lines = lines_of(OLD, BASE)
    assert summary["collisions"]["relaxed"] is True
    assert summary["collisions"]["changes"] == [
        "running_runs for standard changes: deny -> warn", "running_runs for normal changes: deny -> warn",
        "running_runs for emergency changes: deny -> warn", "change_requests for standard changes: deny -> warn"]
    assert summary["blast_radius"] == {"narrowed": False, "changes": [
        "max_depth 4 -> 5", "relationship_types: every type (was runs_on, depends_on)"]}
    assert summary["maintenance_windows"]["removed"] == ["nightly-backup", "batch"]
    assert lines[-1] == "maintenance windows REMOVED: nightly-backup, batch"


def test_no_change_and_the_first_version():
    summary, lines = lines_of(OLD, OLD)
    assert lines == ["no change in meaning (text only)"]
    first = policy_diff.summarise(None, policy(OLD))
    assert first["maintenance_windows"]["added"] == [] and first["collisions"]["changes"] == []
    [line] = policy_diff.summary_lines(first, policy(OLD))
    assert line.startswith("first published version: 1 templates, protected areas audit_logging, ")
    assert line.endswith(", 0 freezes, 2 maintenance windows")


def test_a_summary_recorded_before_these_sections_existed_still_reads():
    old_summary = policy_diff.summarise(policy(BASE), policy(BASE))
    for key in ("collisions", "blast_radius", "maintenance_windows"):
        del old_summary[key]
    assert policy_diff.summary_lines(old_summary) == ["no change in meaning (text only)"]
