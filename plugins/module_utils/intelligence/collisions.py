# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Collisions: other work on the same configuration items at the same time.

Three kinds, each item with what collides, its owner and its window:

``running_run``
    a run still in progress on a targeted host (a ``running`` change event whose plays or gate
    decisions name it). A run whose process is gone is not in progress: the caller says so
    (``run_is_live``: the recorder's own dead-run check for runs of this controller; for runs of
    other controllers, no ledger entry for ``collisions.stale_after``), so a killed run never blocks
    for ever;
``change_request``
    an approved change request (not the one the play runs under) whose planned window overlaps the
    period and whose affected CIs include a targeted host or a CI in the blast radius;
``maintenance_window``
    an occurrence of a recurring window declared in the policy (``maintenance_windows``) that
    overlaps the period and names a targeted host, a service or CI in the blast radius, an inventory
    group or an environment of the play.

Freezes are not collisions: they stay the policy's ``freezes`` (``change_gate.decide``).

The policy decides, per kind and change type, what a collision does (``collisions``): ``deny``
(a reason), ``warn`` (allowed, the warning recorded on the decision and shown), ``allow``
(allowed, still listed). See ``docs/change-gate.md``.
"""

from __future__ import annotations

import datetime

try:
    import zoneinfo
except ImportError:  # pragma: no cover - Python < 3.9; the gate runs on the controller
    zoneinfo = None

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import authorising_approvals
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import graph
from ansible_collections.changeops.itsm.plugins.module_utils.durations import describe_duration

#: change request states in which an approved request's work may happen
ACTIVE_REQUEST_STATES = ("assess", "authorise", "scheduled", "implement")
KIND_POLICY_KEYS = {"running_run": "running_runs", "change_request": "change_requests",
                    "maintenance_window": "maintenance_windows"}
#: items listed one by one in a reason before the rest is counted
MAX_LISTED = 10


def change_requests_overlapping(sor, start, end):
    """The change requests whose planned window overlaps ``[start, end)``: the ONE source of other change
    requests for collisions (the gate's ``read_change_request`` is the source of the play's own), so an
    external change authority can answer both."""
    return sor.find_change_requests_in_window(format_time(start), format_time(end), states=list(ACTIVE_REQUEST_STATES))


def _hosts_of_run(event):
    hosts = set()
    for play in event.get("plays") or ():
        hosts.update(play.get("hosts") or ())
    for gate in event.get("gates") or ():
        hosts.update(gate.get("hosts") or ())
    for row in event.get("hosts") or ():
        if isinstance(row, dict) and row.get("host"):
            hosts.add(row["host"])
    return hosts


def _last_activity(sor, event):
    """When the run last wrote to the ledger (its newest entry)."""
    last_seq = event.get("last_seq")
    if last_seq:
        for entry in sor.iter_entries(after_seq=int(last_seq) - 1, limit=1):
            return parse_time(entry.at)
    return parse_time(event["started_at"]) if event.get("started_at") else None


def liveness(sor, event, process_check, stale_after, now):
    """``(live, why not)`` of a ``running`` change event.

    ``process_check(event)`` (the controller's, from the recorder: ``plugin_utils/recorder/processes.py``)
    says True or False for a run of this controller, None for one of another controller; then the run
    counts while it wrote to the ledger within ``stale_after``.
    """
    verdict = process_check(event) if process_check is not None else None
    if verdict is True:
        return True, None
    if verdict is False:
        return False, "its process %s on %s is gone (killed or crashed)" % (event.get("pid"), event.get("controller"))
    last = _last_activity(sor, event)
    if last is not None and now - last > stale_after:
        return False, "no ledger entry from it since %s (collisions.stale_after: %s)" % (
            format_time(last), _duration(stale_after))
    return True, None


def _duration(delta):
    return describe_duration(delta)


def running_runs(sor, hosts, own_run_id, process_check, stale_after, now):
    """Runs in progress on any of ``hosts``; a run found dead is listed with ``ignored`` (why it does not count)."""
    wanted = set(hosts)
    found = []
    for event in sor.find_change_events(status="running"):
        if event.get("run_id") == own_run_id:
            continue
        overlap = sorted(_hosts_of_run(event) & wanted)
        if not overlap:
            continue
        live, why = liveness(sor, event, process_check, stale_after, now)
        owner = "%s@%s" % (event.get("user") or "?", event.get("controller") or "?")
        item = {"kind": "running_run", "reference": event["run_id"], "name": event.get("playbook"),
                "owner": owner, "window": {"start": event.get("started_at"), "end": None, "timezone": "UTC"},
                "cis": overlap[:MAX_LISTED], "ci_count": len(overlap)}
        if not live:
            item["ignored"] = why or "its process is gone"
        found.append(item)
    return found


def change_requests(sor, start, end, names, own_number):
    """Approved change requests (not ``own_number``) in ``[start, end)`` whose affected CIs meet ``names``."""
    found = []
    for record in change_requests_overlapping(sor, start, end):
        number = record.get("number")
        if number == own_number or record.get("approval") not in authorising_approvals(record.get("type")):
            continue
        overlap = sorted(set(record.get("affected_cis") or ()) & names)
        if not overlap:
            continue
        owner = record.get("requested_by") or record.get("assignment_group") or \
            str(record.get("opened_by") or "").split("@", 1)[0] or None
        found.append({"kind": "change_request", "reference": number, "name": record.get("short_description"),
                      "owner": owner, "type": record.get("type"), "state": record.get("state"),
                      "window": {"start": record.get("planned_start"), "end": record.get("planned_end"),
                                 "timezone": record.get("timezone") or "UTC"},
                      "cis": overlap[:MAX_LISTED], "ci_count": len(overlap)})
    return found


def maintenance_windows(windows, start, end, scope):
    """Occurrences of the policy's recurring windows in ``[start, end)`` that name something in ``scope``
    (``{"cis", "services", "groups", "environments"}``: sets of names)."""
    found = []
    for window in windows:
        matched = []
        for key in ("cis", "services", "groups", "environments"):
            matched.extend("%s %s" % (key[:-1] if key != "cis" else "ci", name)
                           for name in window.targets.get(key) or () if name in scope.get(key, ()))
        if not matched:
            continue
        occurrences = window.schedule.occurrences(start, end)
        if not occurrences:
            continue
        begin, finish = occurrences[0]
        found.append({"kind": "maintenance_window", "reference": window.name, "name": window.description or None,
                      "owner": window.owner or None, "schedule": window.schedule.describe(),
                      "window": {"start": format_time(begin), "end": format_time(finish),
                                 "timezone": window.schedule.timezone},
                      "cis": matched[:MAX_LISTED], "ci_count": len(matched), "_window": window})
    return found


def scope_of(context, radius):
    """What a play touches, as maintenance windows and change requests name it."""
    radius = radius or {}
    items = radius.get("items") or ()
    cis = set(context.get("hosts") or ()) | set(context.get("delegated_hosts") or ())
    cis.update(item["name"] for item in items if item.get("name"))
    services = set(context.get("services") or ())
    services.update(item["name"] for item in radius.get("services") or () if item.get("name"))
    return {"cis": cis, "services": services, "groups": set(context.get("groups") or ()),
            "environments": set(context.get("environments") or ())}


def describe(item, local=None):
    """One line for a collision: what, whose, when."""
    window = item.get("window") or {}
    if item["kind"] == "running_run":
        since = _when(window.get("start"), "UTC", local)
        what = "run %s (%s) by %s, running since %s" % (
            item["reference"], item.get("name") or "?", item.get("owner"), since)
    elif item["kind"] == "change_request":
        begin = _when(window.get("start"), window.get("timezone"), local)
        end = _when(window.get("end"), window.get("timezone"), local)
        what = "approved change request %s (%s) of %s, window %s - %s" % (
            item["reference"], item.get("name") or "no description", item.get("owner") or "owner unknown", begin, end)
    else:
        what = "maintenance window '%s'%s of %s, %s - %s" % (
            item["reference"], " (%s)" % item["name"] if item.get("name") else "",
            item.get("owner") or "owner unknown", _when(window.get("start"), window.get("timezone"), local),
            _when(window.get("end"), window.get("timezone"), local))
    more = " and %d more" % (item["ci_count"] - len(item["cis"])) if item.get("ci_count", 0) > len(item["cis"]) else ""
    return "%s on %s%s" % (what, ", ".join(item["cis"]), more)


def _when(text, tz_name, local):
    if not text:
        return "?"
    return (local or local_time)(text, tz_name)


def local_time(text, tz_name):
    """``2026-11-23 22:00 Europe/Paris``: a recorded UTC time as the people of that window read it."""
    try:
        moment = parse_time(text)
        zone = zoneinfo.ZoneInfo(tz_name or "UTC") if zoneinfo is not None else datetime.timezone.utc
    except (ValueError, TypeError, KeyError, zoneinfo.ZoneInfoNotFoundError if zoneinfo else ValueError):
        return str(text)
    return "%s %s" % (moment.astimezone(zone).strftime("%Y-%m-%d %H:%M"), tz_name or "UTC")


def decide(items, intelligence, change_type, local=None):
    """Give each item its ``action`` under the policy; returns ``(deny reasons, warnings)``."""
    reasons, warnings = [], []
    for item in items:
        window = item.pop("_window", None)
        if item.get("ignored"):
            item["action"] = "ignored"
            continue
        action = intelligence.action(KIND_POLICY_KEYS[item["kind"]], change_type, window)
        item["action"] = action
        text = "collision: %s" % describe(item, local)
        if action == "deny":
            reasons.append("%s (the policy denies %s changes that collide: collisions.%s)"
                           % (text, change_type, KIND_POLICY_KEYS[item["kind"]]))
        elif action == "warn":
            warnings.append(text)
    return reasons, warnings


def instant(now):
    """The period a gate checks: the moment it decides."""
    return now, now + datetime.timedelta(seconds=1)


def window_of(record):
    """A change request's planned window as aware datetimes, or None."""
    if not record.get("planned_start") or not record.get("planned_end"):
        return None
    return parse_time(record["planned_start"]), parse_time(record["planned_end"])


def ahead_of_time(sor, record, policy, now, process_check=None):
    """A change request's collisions over its own planned window, before the CAB meets.

    What its affected CIs (and the CIs that depend on them) meet in ``[planned_start, planned_end)``: other
    approved change requests, occurrences of the policy's maintenance windows (those naming inventory groups
    cannot be matched before a play names its hosts), runs in progress when the window includes now; and,
    separately, the freezes in force during the window. Each item carries the action the policy would take
    for the request's type. Returns None for a request without a planned window.
    """
    period = window_of(record)
    if period is None:
        return None
    start, end = period
    names = sorted(set(record.get("affected_cis") or ()))
    cis = sor.find_cis(names=names) if names else []
    by_name = {}
    for ci in cis:
        by_name.setdefault(ci["name"], ci)
    rules = policy.intelligence
    radius = graph.blast_radius(sor, graph.ci_ids_of(by_name), types=rules.relationship_types,
                                max_depth=rules.max_depth, max_items=rules.max_items)
    services = set()
    for ci in by_name.values():
        services.update(graph.service_names(ci))
    context = {"hosts": names, "services": sorted(services),
               "environments": sorted(set(ci.get("environment") for ci in by_name.values() if ci.get("environment")))}
    scope = scope_of(context, radius)
    items = []
    if start <= now < end:
        items.extend(running_runs(sor, scope["cis"], None, process_check, rules.stale_after, now))
    items.extend(change_requests(sor, start, end, scope["cis"], record.get("number")))
    items.extend(maintenance_windows(rules.maintenance_windows, start, end, scope))
    change_type = record.get("type") or "normal"
    reasons, warnings = decide(items, rules, change_type)
    freezes = [{"name": freeze.name, "start": format_time(freeze.start), "end": format_time(freeze.end),
                "timezone": freeze.timezone, "environments": list(freeze.environments),
                "allowed_change_types": list(freeze.allowed_change_types), "reason": freeze.reason or None,
                "blocks": change_type not in freeze.allowed_change_types}
               for freeze in policy.freezes
               if freeze.start < end and freeze.end > start and freeze.applies_to(context["environments"], [])]
    return {"window": {"start": record.get("planned_start"), "end": record.get("planned_end"),
                       "timezone": record.get("timezone") or "UTC"},
            "items": items, "would_deny": reasons, "warnings": warnings, "freezes": freezes,
            "blast_radius": graph.summary(radius)}
