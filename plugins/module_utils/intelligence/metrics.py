# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DevOps metrics from the record: the four DORA keys (definitions in ``docs/metrics.md``).

Over a period, per ``day``/``week``/``month`` bucket, overall or per service, environment or team:

* **change** - a recorded run, not a dry run, that changed a managed host (any authorisation) or
  ended ``failed``/``interrupted`` without a gate denying it; a run a gate denied is an attempt
  stopped before it changed anything, not a change;
* **deployment frequency** - successful authorised changes (``standard``, ``normal``, ``emergency``
  and their combinations; never ``unauthorised``) per bucket, and per day over the period;
* **lead time for changes** - for deployments whose run recorded the git commit of the playbook tree
  (``run.started`` ``git.commit_time``), the change's start minus the commit time: median and 90th
  percentile in hours;
* **change failure rate** - failed changes / changes, where a change *failed* when it ended failed or
  interrupted, or within ``failure_window`` after it ended an incident was linked to it, it was declared
  remediated (``change_link``), or an emergency change touched one of its CIs (a fix under pressure);
* **time to restore** - for each failed change, from its end to the end of the next deployment that
  touched one of its CIs: median in hours; failures with none yet are ``unrestored``.

A change belongs to the services (CI ``services``, and application/service CIs it changed), the team
(CI ``support_group``, else ``owner``) and the environments of the CIs it changed - or, for a failed
change that changed nothing, of the CIs of the hosts it ran on. A change of several services counts in
each. Buckets are UTC: days, ISO weeks (Monday), calendar months.

Reads: ``change_facts`` of the period (and ``failure_window`` after it), ``ci_changes`` of the same
range, every CI facet, ``change_links`` and the hosts of failed changes only.
"""

from __future__ import annotations

import bisect
import collections
import datetime

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.change_events import parse_moment
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import HOST_CLASSES
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.durations import parse_duration
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import metrics_rollup
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.metric_rules import (
    BUCKETS,
    DEFAULT_FAILURE_WINDOW,
    Change,
    attach_idle_hosts,
    bucket_start,
    counted_figures,
    header,
    hours,
    is_change,
    next_bucket,
    period_days,
)

GROUP_BY = ("service", "environment", "team")


def compute(sor, since, until, bucket="week", group_by=None, services=None, environments=None, teams=None,
            failure_window=DEFAULT_FAILURE_WINDOW, use_rollups=None):
    """The four keys over ``[since, until)`` (aware datetimes); see the module docstring.

    ``use_rollups``: read whole days from the daily rollups (``metrics_rollup.py``; the default where the backend
    keeps them) or compute everything from the change facts (False: the raw computation, which the rollups
    reproduce exactly - tests/unit/test_metric_rollups.py compares them)."""
    if bucket not in BUCKETS:
        raise ValidationError("bucket must be one of %s, got %r" % (", ".join(BUCKETS), bucket), option="bucket")
    if group_by not in (None,) + GROUP_BY:
        raise ValidationError("group_by must be one of %s, got %r" % (", ".join(GROUP_BY), group_by),
                              option="group_by")
    if until <= since:
        raise ValidationError("until (%s) must be after since (%s)" % (format_time(until), format_time(since)))
    if use_rollups is None:
        use_rollups = getattr(sor, "has_metric_rollups", False)
    if use_rollups:
        return metrics_rollup.compute(sor, since, until, bucket=bucket, group_by=group_by, services=services,
                                      environments=environments, teams=teams, failure_window=failure_window)
    horizon = until + failure_window
    facts = sor.find_change_facts(since=format_time(since), until=format_time(horizon))
    changes = {fact["run_id"]: Change(fact) for fact in facts if is_change(fact)}
    for link in sor.find_ci_changes(since=format_time(since), until=format_time(horizon)):
        if link["run_id"] in changes:
            changes[link["run_id"]].cis.add(link["ci_id"])
    attach_idle_hosts(sor, changes)
    _mark_failures(sor, changes, failure_window)
    _restore_times(changes)

    in_period = [change for change in changes.values() if since <= change.start < until]
    labels = _labels(sor, in_period)
    wanted = {"service": set(services or ()), "environment": set(environments or ()), "team": set(teams or ())}
    selected = []
    for change in in_period:
        keys = labels(change)
        if all(not values or keys[name] & values for name, values in wanted.items()):
            selected.append((change, keys))
    days = period_days(since, until)
    result = dict(header(since, until, bucket, group_by, failure_window), **{
        "overall": _summary([change for change, _keys in selected], days),
        "buckets": _buckets([change for change, _keys in selected], since, until, bucket),
    })
    if group_by:
        groups = {}
        for change, keys in selected:
            for key in keys[group_by] or ("(none)",):
                groups.setdefault(key, []).append(change)
        result["groups"] = [{"key": key, "overall": _summary(members, days),
                             "buckets": _buckets(members, since, until, bucket)}
                            for key, members in sorted(groups.items())]
    return result


def _by_ci(changes):
    """``ci_id -> ([end, ...], [change, ...])`` sorted by end: bisect finds a CI's changes in a time range."""
    index = {}
    for change in sorted(changes, key=lambda change: (change.end, change.fact["run_id"])):
        for ci_id in change.cis:
            ends, members = index.setdefault(ci_id, ([], []))
            ends.append(change.end)
            members.append(change)
    return index


def _mark_failures(sor, changes, window):
    """Changes followed within ``window`` by an incident link, a remediation or an emergency change of one of
    their CIs count as failed."""
    for link in sor.find_change_links(run_ids=list(changes)):
        change = changes[link["run_id"]]
        # an incident counts from when it started; a remediation from when the remediating change started
        fix = changes.get(link["target"]) if link["link"] == "remediated_by" else None
        when = fix.start if fix is not None else (
            parse_time(link["linked_at"]) if link.get("linked_at") else change.end)
        if when <= change.end + window and link["link"] not in change.why:
            change.failed = True
            change.why.append(link["link"])
    index = _by_ci(changes.values())
    for fix in changes.values():
        if "emergency" not in (fix.fact.get("authorisation") or "").split("+"):
            continue
        for ci_id in fix.cis:
            ends, members = index.get(ci_id, ((), ()))
            # changes of the CI that ended in [fix start - window, fix start]
            for position in range(bisect.bisect_left(ends, fix.start - window), bisect.bisect_right(ends, fix.start)):
                change = members[position]
                if change is fix or change.start >= fix.start:
                    continue
                change.failed = True
                if "emergency change" not in change.why:
                    change.why.append("emergency change")


def _restore_times(changes):
    """For each failed change, the hours from its end to the end of the next deployment of one of its CIs."""
    index = _by_ci(change for change in changes.values() if change.deployment and not change.failed)
    for change in changes.values():
        if not change.failed:
            continue
        best = None
        for ci_id in change.cis:
            ends, members = index.get(ci_id, ((), ()))
            position = bisect.bisect_right(ends, change.end)
            if position < len(ends) and (best is None or ends[position] < best):
                best = ends[position]
        if best is not None:
            change.restore_hours = hours((best - change.end).total_seconds())


def _labels(sor, changes):
    """``change -> {"service": set, "environment": set, "team": set}`` from the CIs each change touched."""
    ci_ids = set()
    for change in changes:
        ci_ids.update(change.cis)
    facets = {}
    for row in sor.find_ci_facets(ci_ids=sorted(ci_ids)) if ci_ids else ():
        facets.setdefault(row["ci_id"], {}).setdefault(row["facet"], []).append(row["value"])
    named_services = {ci["ci_id"]: ci["name"] for ci in sor.find_ci_summaries(ci_ids=sorted(ci_ids))
                      if ci.get("class") not in HOST_CLASSES} if ci_ids else {}

    def labels(change):
        services, teams = set(), set()
        for ci_id in change.cis:
            own = facets.get(ci_id, {})
            services.update(own.get("service", ()))
            if ci_id in named_services:
                services.add(named_services[ci_id])
            team = (own.get("support_group") or own.get("owner") or [None])[0]
            if team:
                teams.add(team)
        environments = set(part for part in (change.fact.get("environment") or "").split(",") if part)
        return {"service": services, "environment": environments, "team": teams}

    return labels


def _summary(changes, days):
    deployments = [change for change in changes if change.deployment]
    lead = [change.lead for change in deployments if change.lead is not None]
    failed = [change for change in changes if change.failed]
    return figures(len(changes), len(deployments), lead, failed, days)


def figures(changes, deployments, lead, failed, days):
    """The figures of a bucket or a period from its counts of changes and deployments, the lead times (seconds) of
    its deployments and its failed changes (``metric_rules.Change``)."""
    restored = [change.restore_hours for change in failed if change.restore_hours is not None]
    return counted_figures(changes, deployments, sorted(lead), len(failed),
                           _count(reason for change in failed for reason in change.why), restored, days)


def _count(values):
    # (Counter counts in C, keeping the order of first appearance, as a loop over a dict would)
    return dict(collections.Counter(values))


def _buckets(changes, since, until, bucket):
    grouped = {}
    for change in changes:
        grouped.setdefault(bucket_start(change.start, bucket), []).append(change)
    rows = []
    start = bucket_start(since, bucket)
    while start < until:
        following = next_bucket(start, bucket)
        span = (min(following, until) - max(start, since)).total_seconds() / 86400.0
        row = _summary(grouped.get(start, []), max(span, 1e-9))
        row["start"] = format_time(start)
        rows.append(row)
        start = following
    return rows


# --------------------------------------------------------------------------
# change_metrics_info
# --------------------------------------------------------------------------
CHANGE_METRICS_INFO_SPEC = dict(
    backend_argument_spec(),
    since=dict(type="str", default="30d"),
    until=dict(type="str"),
    bucket=dict(type="str", choices=list(BUCKETS), default="week"),
    group_by=dict(type="str", choices=list(GROUP_BY)),
    service=dict(type="list", elements="str"),
    environment=dict(type="list", elements="str"),
    team=dict(type="list", elements="str"),
    failure_window=dict(type="str", default="24h"),
)


def metrics_info(ctx):
    """``change_metrics_info`` operation."""
    params = ctx.params
    now = datetime.datetime.now(datetime.timezone.utc)
    since = parse_time(parse_moment("since", params.get("since") or "30d", now=now))
    until = parse_time(parse_moment("until", params["until"], now=now)) if params.get("until") else now
    window = parse_duration(params.get("failure_window") or "24h")
    if window is None:
        raise ValidationError("failure_window: %r is not a duration such as 24h, 90m or 7d"
                              % params.get("failure_window"), option="failure_window")
    metrics = compute(ctx.sor, since, until, bucket=params.get("bucket") or "week", group_by=params.get("group_by"),
                      services=params.get("service"), environments=params.get("environment"), teams=params.get("team"),
                      failure_window=window)
    return {"changed": False, "metrics": metrics}
