# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the DevOps metrics count, as rules (definitions in ``docs/metrics.md``): what a change is, a deployment and
its lead time, a failed change's CIs when it changed nothing, the buckets, and the figures made from the counts.

One set of rules for the three places that count: the raw computation (``metrics.py``), the figures read from the
daily rollups (``metrics_rollup.py``) and the projectors that keep those rollups (``system_of_record/metric_rollups.py``).
This module imports none of them, so each imports it at the top: no module of the metrics is imported late (an
import on a thread while Ansible forks a worker would leave the worker the import's lock held for ever).
"""

from __future__ import annotations

import datetime
import math

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import find_host_cis

BUCKETS = ("day", "week", "month")
GATE_TYPES = ("standard", "normal", "emergency")
NOT_CHANGES = ("dry-run", "denied", "no-change", "record-only")
DEFAULT_FAILURE_WINDOW = datetime.timedelta(hours=24)

DEFINITIONS = {
    "deployment_frequency": "successful authorised changes (standard, normal, emergency) per bucket and per day",
    "lead_time": "change start minus the git commit time of the playbook tree the recorder saw (deployments with a "
                 "commit only): median and p90 hours",
    "change_failure_rate": "failed changes / changes; failed = ended failed or interrupted, or followed within the "
                           "failure window by an incident link, a remediation link or an emergency change of one of "
                           "its CIs",
    "time_to_restore": "a failed change's end to the end of the next deployment of one of its CIs: median hours",
}


def bucket_start(moment, bucket):
    day = moment.astimezone(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == "day":
        return day
    if bucket == "week":
        return day - datetime.timedelta(days=day.weekday())
    return day.replace(day=1)


def _percentile(values, fraction, ordered=False):
    """``ordered``: ``values`` are sorted already (a bucket's lead times serve its median and its p90)."""
    if not values:
        return None
    ordered = values if ordered else sorted(values)
    # the median of an even count is the mean of the middle two; other percentiles are nearest-rank
    if fraction == 0.5:
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0
    index = max(0, min(len(ordered) - 1, int(math.ceil(fraction * len(ordered))) - 1))
    return ordered[index]


def hours(seconds):
    return None if seconds is None else round(seconds / 3600.0, 3)


def _authorised(authorisation):
    parts = (authorisation or "").split("+")
    return bool(authorisation) and all(part in GATE_TYPES for part in parts)


def is_change(fact):
    """Whether a change event (its ``change_facts`` row as a dict) is a change: not a dry run nor still running;
    a denied attempt, a run that changed nothing or one only recorded counts when it ended failed or interrupted
    (not a denied one: the gate stopped it before it touched anything)."""
    if fact["dry_run"] or fact["status"] == "running":
        return False
    authorisation = fact.get("authorisation") or ""
    if authorisation in NOT_CHANGES:
        return fact["status"] in ("failed", "interrupted") and authorisation != "denied"
    return True


def _moment(text):
    """The ledger's own UTC form (``2026-01-05T10:00:00.000000Z``) read fast; anything else through parse_time."""
    if text.endswith("Z") and len(text) == 27:
        return _FROM_ISO(text[:-1]).replace(tzinfo=datetime.timezone.utc)
    return parse_time(text)


_FROM_ISO = datetime.datetime.fromisoformat


class Change(object):
    """A change as the rules read it: its start and end, the CIs it changed (filled by the reader), whether it failed
    and why, whether it is a deployment, its lead time and (once computed) its hours to restore."""

    __slots__ = ("fact", "start", "end", "cis", "failed", "why", "deployment", "restore_hours", "lead")

    def __init__(self, fact):
        self.fact = fact
        self.start = _moment(fact["started_at"])
        self.end = _moment(fact["ended_at"]) if fact.get("ended_at") else self.start
        self.cis = set()
        self.failed = fact["status"] in ("failed", "interrupted")
        self.why = [fact["status"]] if self.failed else []
        self.deployment = fact["status"] == "successful" and _authorised(fact.get("authorisation"))
        self.restore_hours = None
        #: seconds from the commit to the start, for a deployment whose run recorded its commit
        self.lead = None
        if self.deployment and fact.get("commit_at"):
            seconds = (self.start - _moment(fact["commit_at"])).total_seconds()
            self.lead = seconds if seconds >= 0 else None


def period_days(since, until):
    return max((until - since).total_seconds() / 86400.0, 1e-9)


def header(since, until, bucket, group_by, failure_window):
    return {"since": format_time(since), "until": format_time(until), "bucket": bucket, "group_by": group_by,
            "failure_window_hours": hours(failure_window.total_seconds()), "definitions": dict(DEFINITIONS)}


def attach_idle_hosts(sor, changes):
    """A failed change that changed nothing belongs to the CIs of the hosts it ran on: add those CIs to each such
    change of ``changes`` (``{run_id: Change}``). Returns the run ids of those changes."""
    idle = [run_id for run_id, change in changes.items() if change.failed and not change.cis]
    if idle:
        hosts = sor.find_run_hosts(idle)
        by_name = find_host_cis(sor, sorted(set(host for names in hosts.values() for host in names)))
        for run_id, names in hosts.items():
            changes[run_id].cis.update(by_name[name]["ci_id"] for name in names if name in by_name)
    return idle


def counted_figures(changes, deployments, ordered_lead, failed, reasons, restored, days):
    """The figures from what a bucket or a period adds up: counts of changes, deployments and failed changes, the
    deployments' lead times sorted (seconds), ``{reason: failed changes}`` and the failed changes' hours to
    restore (those restored): what the raw and the rollup computations share (the rollups add these up per cell
    instead of listing every failed change in each bucket and group it counts in)."""
    return {
        "changes": changes,
        "deployments": deployments,
        "deployments_per_day": round(deployments / days, 4),
        "lead_time": {"count": len(ordered_lead), "median_hours": hours(_percentile(ordered_lead, 0.5, ordered=True)),
                      "p90_hours": hours(_percentile(ordered_lead, 0.9, ordered=True))},
        "failed_changes": failed,
        "change_failure_rate": round(failed / float(changes), 4) if changes else None,
        "failure_reasons": reasons,
        "time_to_restore": {"count": len(restored), "median_hours": _percentile(restored, 0.5),
                            "unrestored": failed - len(restored)},
    }


def bucket_starts(since, until, bucket):
    """``[(start, days in the period)]`` of the buckets ``_buckets`` lists."""
    found = []
    start = bucket_start(since, bucket)
    while start < until:
        following = next_bucket(start, bucket)
        found.append((start, max((min(following, until) - max(start, since)).total_seconds() / 86400.0, 1e-9)))
        start = following
    return found


def next_bucket(start, bucket):
    if bucket == "day":
        return start + datetime.timedelta(days=1)
    if bucket == "week":
        return start + datetime.timedelta(days=7)
    return (start.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
