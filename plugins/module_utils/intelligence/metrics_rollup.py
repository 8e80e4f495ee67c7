# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DevOps metrics from the daily rollups: the same figures as ``metrics.compute``'s raw computation, read
from a few rows per day (docs/metrics.md, "Daily rollups"; the tables: ``system_of_record/metric_rollups.py``).

What adds up is read from the rollups: for the period's whole UTC days, per day and label key (services,
environments, teams), the changes that did not end failed, their deployments and every lead time; for the
partial days at the edges, the same from one narrow row per change. Medians and percentiles are computed from
the merged lead times, never from per-day figures.

What depends on the question (the failure window, the period's end) or on the CMDB as it is now is computed
here, change by change, for the few changes it concerns, with the raw computation's own rules:

* every change that ended failed (its CIs, for one that changed nothing, are those of its hosts now);
* the changes a failure rule may mark: those with an incident or remediation link, and those an emergency
  change followed on one of their CIs within the window (found by one query over the CI change log);
* for each failed change of the period, its time to restore: the next deployment of one of its CIs that is not
  itself failed, among the changes the raw computation loads (started before the period's end plus the window).
"""

from __future__ import annotations

import datetime

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import metric_rules
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.metric_rollups import (
    label_key,
    labels_of_key,
    micros,
    unpack_leads,
)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_DAY = datetime.timedelta(days=1)
_DAY_US = 86400 * 1000000


class _Sum(object):
    """What a bucket (or a period) of a group adds up: counts, lead times, and of its failed changes their count,
    ``{reason: count}`` and hours to restore. Each failed change is added once, to its own cell; buckets and groups
    add cells up (a failed change counts in its bucket, each of its groups' buckets and their periods)."""

    __slots__ = ("changes", "deployments", "lead_chunks", "lead", "failed", "reasons", "restored")

    def __init__(self):
        self.changes = 0
        self.deployments = 0
        self.lead_chunks = []
        self.lead = []
        self.failed = 0
        self.reasons = {}
        self.restored = []

    def add(self, other):
        self.changes += other.changes
        self.deployments += other.deployments
        self.lead.extend(other.lead)
        if other.failed:
            self.failed += other.failed
            reasons = self.reasons
            for reason, count in other.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + count
            self.restored.extend(other.restored)

    def add_failed(self, change):
        """``change`` (``_Failure``), failed."""
        self.failed += 1
        reasons = self.reasons
        for reason in change.why:
            reasons[reason] = reasons.get(reason, 0) + 1
        if change.restore_hours is not None:
            self.restored.append(change.restore_hours)

    def parse_leads(self):
        """The lead times of the rollup rows read into this cell, decoded once (binary64: each float exactly)."""
        if self.lead_chunks:
            self.lead.extend(unpack_leads("".join(self.lead_chunks)))
            self.lead_chunks = []

    def figures(self, days):
        """The figures, this sum's lead times being sorted."""
        return metric_rules.counted_figures(self.changes, self.deployments, self.lead, self.failed, self.reasons,
                                            self.restored, days)


def _utc_midnight(moment):
    return moment.astimezone(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def compute(sor, since, until, bucket="week", group_by=None, services=None, environments=None, teams=None,
            failure_window=metric_rules.DEFAULT_FAILURE_WINDOW):
    """``metrics.compute`` (arguments already checked there) from the rollups."""
    horizon = until + failure_window
    since_text, until_text, horizon_text = format_time(since), format_time(until), format_time(horizon)
    since_us, until_us = micros(since), micros(until)
    # the whole UTC days of the period, read from metric_days; the rest from metric_changes
    first = _utc_midnight(since)
    if first < since:
        first += _DAY
    end = _utc_midnight(until)
    if first >= end:
        first = end = None
    # (bucket start, label key) -> _Sum; labels of the failed changes are computed, the rest come with their key
    sums = {}

    def cell(start, key):
        found = sums.get((start, key))
        if found is None:
            found = sums[(start, key)] = _Sum()
        return found

    day_sums, range_starts = None, []
    if first is not None:
        # per bucket, its whole days added up by the database: a row per label key, one parse of its lead times.
        # The largest read of a long period (13 statements for 90 days, 40 ms on PostgreSQL at 1,000,000 change
        # events), so it runs aside (SystemOfRecord.read_aside: a connection of its own, in a thread) while this
        # thread reads the period's edges and works out its failed changes; it is added up first, as before.
        ranges = []
        for start, _span in metric_rules.bucket_starts(first, end, bucket):
            low, high = max(start, first), min(metric_rules.next_bucket(start, bucket), end)
            ranges.append((low.strftime("%Y-%m-%d"), high.strftime("%Y-%m-%d")))
            range_starts.append(start)
        day_sums = sor.read_aside(lambda store: store.find_metric_day_sums(ranges))
        edges = [(since_text, format_time(first)), (format_time(end), until_text)]
    else:
        edges = [(since_text, until_text)]
    try:
        edge_rows = [sor.find_metric_changes(low, high) for low, high in edges if low < high]
        # the failed changes of the period, with the raw computation's rules
        failed = [change for change in _failures(sor, since_text, horizon_text, failure_window).values()
                  if change.failed and since_us <= change.start_us < until_us]
        key_of = _labels(sor, [change for change in failed if change.status is not None])
    except BaseException:
        if day_sums is not None:
            _settle(day_sums)  # (the read aside done before this error goes on)
        raise

    if day_sums is not None:
        for index, key, changes, deployments, lead in day_sums():
            target = cell(range_starts[index], key)
            target.changes += changes
            target.deployments += deployments
            if lead:
                target.lead_chunks.append(lead)
    for rows in edge_rows:
        for row in rows:
            if row["status_failed"] or not since_us <= row["start_us"] < until_us:
                continue
            moment = _EPOCH + datetime.timedelta(microseconds=row["start_us"])
            target = cell(metric_rules.bucket_start(moment, bucket), row["label_key"])
            target.changes += 1
            target.deployments += row["deployment"]
            if row["lead_seconds"] is not None:
                target.lead.append(row["lead_seconds"])
    bucket_of_day_number = {}
    for change in failed:
        number = change.start_us // _DAY_US
        start = bucket_of_day_number.get(number)
        if start is None:
            start = bucket_of_day_number[number] = metric_rules.bucket_start(
                _EPOCH + datetime.timedelta(days=number), bucket)
        if change.status is not None:
            target = cell(start, key_of(change))
            target.changes += 1  # (the rollups leave out the changes that ended failed)
        else:
            # (a change that ended well counts in metric_days under its label key: the same labels by the same rules)
            target = cell(start, change.key)
        target.add_failed(change)

    wanted = {"service": set(services or ()), "environment": set(environments or ()), "team": set(teams or ())}
    for value in sums.values():
        value.parse_leads()
    # every cell goes to its bucket and its groups' buckets; a period's figures are its buckets added up (each
    # bucket's lead times sorted once: the period merges a few sorted runs instead of every cell's)
    buckets, groups = {}, {}
    # per label key, worked out once: None when the filters leave its changes out, else the groups it counts in
    routes = {}
    for (start, key), value in sums.items():
        route = routes.get(key, False)
        if route is False:
            keys = labels_of_key(key)
            if all(not values or keys[name] & values for name, values in wanted.items()):
                route = tuple(keys[group_by] or ("(none)",)) if group_by else ()
            else:
                route = None
            routes[key] = route
        if route is None:
            continue
        _sum_of(buckets, start).add(value)
        for group in route:
            members = groups.get(group)
            if members is None:
                members = groups[group] = {}
            _sum_of(members, start).add(value)

    days = metric_rules.period_days(since, until)
    starts = [(start, span, format_time(start)) for start, span in metric_rules.bucket_starts(since, until, bucket)]
    rows = _bucket_rows(buckets, starts)
    result = dict(metric_rules.header(since, until, bucket, group_by, failure_window), **{
        "overall": _total(buckets).figures(days),
        "buckets": rows,
    })
    if group_by:
        result["groups"] = []
        for group, members in sorted(groups.items()):
            rows = _bucket_rows(members, starts)
            result["groups"].append({"key": group, "overall": _total(members).figures(days), "buckets": rows})
    return result


def _settle(wait):
    """Wait for a read aside whose result is no longer wanted; its own error, if any, is not the one to report."""
    try:
        wait()
    except Exception:  # pylint: disable=broad-except
        pass


def _sum_of(sums, start):
    """``sums[start]``, a new ``_Sum`` there first if none (not made on every call, as ``setdefault`` would)."""
    found = sums.get(start)
    if found is None:
        found = sums[start] = _Sum()
    return found


def _total(buckets):
    """The buckets' sums added up, lead times sorted (after ``_bucket_rows``: a few sorted runs to merge)."""
    total = _Sum()
    for start in sorted(buckets):
        total.add(buckets[start])
    total.lead.sort()
    return total


def _labels(sor, changes):
    """The label key of each change that ended failed (``metrics._labels``' rules) from ``metric_ci_labels`` (what each
    CI gives, kept from the CMDB as it is by the same rules): one narrow read instead of the CIs' facets and
    summaries; changes with the same labels share one key."""
    given = sor.find_metric_ci_labels(sorted(set(ci_id for change in changes for ci_id in change.cis)))
    keys = {}

    def key_of(change):
        services, teams = set(), set()
        for ci_id in change.cis:
            ci_services, team = given.get(ci_id, ((), None))
            services.update(ci_services)
            if team:
                teams.add(team)
        known = (frozenset(services), change.environment, frozenset(teams))
        key = keys.get(known)
        if key is None:
            environments = set(part for part in (change.environment or "").split(",") if part)
            key = keys[known] = label_key(services, environments, teams)
        return key

    return key_of


def _bucket_rows(buckets, starts):
    """The rows of ``starts`` (``(start, span, start as text)``); sorts each bucket's lead times in place."""
    rows = []
    for start, span, text in starts:
        value = buckets.get(start)
        if value is None:
            value = _Sum()
        value.lead.sort()
        row = value.figures(span)
        row["start"] = text
        rows.append(row)
    return rows


# --------------------------------------------------------------------------
# the failure rules, for the changes they concern
# --------------------------------------------------------------------------
class _Failure(object):
    """A change a failure rule concerns, from its ``metric_changes`` row and, when it ended failed, the status and
    environments ``change_facts`` has for it: what the rules and ``metrics.figures`` read of a ``metric_rules.Change``
    (``failed``, ``why``, ``restore_hours``, ``cis``), with its times in microseconds since the epoch (exact, like the
    datetimes they stand for). ``status`` is None for a change that ended well: its ``key`` is its label key."""

    __slots__ = ("run_id", "start_us", "end_us", "emergency", "key", "status", "environment", "cis", "failed", "why",
                 "restore_hours", "next_deployment")

    def __init__(self, row):
        (self.run_id, self.start_us, self.end_us, ended_failed, self.emergency, self.key, status,
         self.environment) = row[:8]
        self.status = status if ended_failed else None
        self.cis = set()
        self.failed = bool(ended_failed)
        self.why = [status] if ended_failed else []
        self.restore_hours = None
        # (end_us, run_id, start_us) of the deployment with the earliest end after this change's over its CIs
        # (``metric_ci_next``; the lowest run id among equal ends), None when none of its CIs has one
        self.next_deployment = None


def _load(rows):
    """``run_id -> _Failure`` of ``rows`` (``find_metric_failure_rows``: a row per CI) with the CIs each changed and
    the earliest of their next deployments (kept as the rows come, not listed per change and compared later)."""
    changes = {}
    for row in rows:
        run_id = row[0]
        change = changes.get(run_id)
        if change is None:
            change = changes[run_id] = _Failure(row)
        if row[8] is not None:
            change.cis.add(row[8])
            if row[10] is not None:
                following = (row[9], row[10], row[11])
                if change.next_deployment is None or following < change.next_deployment:
                    change.next_deployment = following
    return changes


def _failures(sor, since_text, horizon_text, window):
    """The changes started in ``[since, horizon)`` that ended failed or that a failure rule may mark, as
    ``_Failure`` with ``failed``, ``why`` and (for the failed ones) ``restore_hours`` as ``metrics.compute`` sets
    them over every change of that range."""
    window_us = window // datetime.timedelta(microseconds=1)
    marked = set(sor.find_emergency_marked(since_text, horizon_text, window_us))
    changes = _load(sor.find_metric_failure_rows(since_text, horizon_text, failed_only=True))
    linked = set(sor.find_linked_runs(since_text, horizon_text))
    others = (linked | marked) - set(changes)
    if others:
        # (new changes: their run ids are not among those loaded before)
        changes.update(_load(sor.find_metric_failure_rows(None, None, run_ids=sorted(others))))
    # a failed change that changed nothing belongs to the CIs of the hosts it ran on (as metrics.compute)
    idle = metric_rules.attach_idle_hosts(sor, changes)
    if idle:
        marked |= _emergency_marks_via_hosts(sor, changes, idle, since_text, horizon_text, window_us)
        more = marked - set(changes)
        if more:
            changes.update(_load(sor.find_metric_failure_rows(None, None, run_ids=sorted(more))))

    # incident and remediation links, in ledger order, then the emergency changes (as metrics._mark_failures)
    # (every change loaded started in [since, horizon), so those with links are the linked ones loaded: a few
    # hundred run ids to look up instead of every failed or marked change's)
    links = sor.find_change_links(run_ids=sorted(run_id for run_id in linked if run_id in changes))
    targets = [link["target"] for link in links if link["link"] == "remediated_by"]
    fix_starts = {row["run_id"]: row["start_us"]
                  for row in (sor.find_metric_changes(since_text, horizon_text, run_ids=targets) if targets else ())}
    for link in links:
        change = changes[link["run_id"]]
        when = fix_starts.get(link["target"]) if link["link"] == "remediated_by" else None
        if when is None:
            when = micros(parse_time(link["linked_at"])) if link.get("linked_at") else change.end_us
        if when <= change.end_us + window_us and link["link"] not in change.why:
            change.failed = True
            change.why.append(link["link"])
    for run_id in marked:
        change = changes[run_id]
        change.failed = True
        if "emergency change" not in change.why:
            change.why.append("emergency change")
    _restore_times(sor, changes, since_text, horizon_text, idle)
    return changes


def _emergency_marks_via_hosts(sor, changes, idle, since_text, horizon_text, window_us):
    """The emergency rule over the CIs that failed changes which changed nothing have through their hosts (the
    query of ``find_emergency_marked`` sees only the CI change log): an emergency change that changed nothing
    marks the changes of its hosts' CIs, and any emergency change of such a CI marks the idle change."""
    by_ci = {}
    for run_id in idle:
        change = changes[run_id]
        for ci_id in change.cis:
            by_ci.setdefault(ci_id, {})[run_id] = (change.start_us, change.end_us, bool(change.emergency))
    for ci_id, row in sor.find_metric_changes_of_cis(sorted(by_ci), since_text, horizon_text):
        by_ci[ci_id][row["run_id"]] = (row["start_us"], row["end_us"], bool(row["emergency"]))
    idle_set = set(idle)
    marked = set()
    for members in by_ci.values():
        for fix_id, (fix_start, _fix_end, emergency) in members.items():
            if not emergency:
                continue
            for run_id, (start, end, _emergency) in members.items():
                if run_id == fix_id or start >= fix_start or not fix_start - window_us <= end <= fix_start:
                    continue
                if fix_id in idle_set or run_id in idle_set:
                    marked.add(run_id)
    return marked


def _restore_times(sor, changes, since_text, horizon_text, idle):
    """Each failed change's hours to the end of the next deployment of one of its CIs that is not failed itself
    (``metrics._restore_times``: deployments never end failed, so a failed one is one a rule marked, and every
    change a rule marks is in ``changes``).

    ``metric_ci_next`` keeps, per change and CI, the deployment with the earliest end after the change's: when the
    earliest over the change's CIs is one the raw computation counts (started in ``[since, horizon)``, not failed)
    it is the answer. The other failed changes (that deployment does not count, or the change changed nothing and
    has its hosts' CIs, ``idle``) read their CIs' deployments (:func:`_restore_from_deployments`)."""
    failed = [change for change in changes.values() if change.failed]
    idle = set(idle)
    since_us, horizon_us = micros(parse_time(since_text)), micros(parse_time(horizon_text))
    slow = []
    for change in failed:
        run_id = change.run_id
        if run_id in idle:
            slow.append(change)
            continue
        if change.next_deployment is None:
            continue  # (no deployment of its CIs ended after it: unrestored)
        end_us, deployment_id, start_us = change.next_deployment
        counted = changes.get(deployment_id)
        if since_us <= start_us < horizon_us and not (counted is not None and counted.failed):
            change.restore_hours = metric_rules.hours((end_us - change.end_us) / 1000000.0)
        else:
            slow.append(change)
    _restore_from_deployments(sor, changes, slow, since_text, horizon_text)


def _restore_from_deployments(sor, changes, failed, since_text, horizon_text):
    """The times to restore of ``failed`` from every deployment of their CIs in ``[since, horizon)``."""
    ci_ids = sorted(set(ci_id for change in failed for ci_id in change.cis))
    if not ci_ids:
        return
    ends = {}
    for ci_id, run_id, end_us in sor.find_deployment_ends(ci_ids, since_text, horizon_text):
        known = changes.get(run_id)
        if known is not None and known.failed:
            continue
        ends.setdefault(ci_id, []).append(end_us)
    for change in failed:
        end = change.end_us
        best = None
        for ci_id in change.cis:
            later = [value for value in ends.get(ci_id, ()) if value > end]
            if later and (best is None or min(later) < best):
                best = min(later)
        if best is not None:
            # (integer microseconds over a float: the quotient timedelta.total_seconds() gives)
            change.restore_hours = metric_rules.hours((best - end) / 1000000.0)
