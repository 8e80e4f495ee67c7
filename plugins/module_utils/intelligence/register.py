# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the change register shows of change intelligence (``change_register.build_register`` calls it).

* each gate decision's blast radius and collisions, as the change page lists them;
* the **Insights** page: the DORA metrics of the register's period (``metrics.compute``, per bucket and per
  service, for its trend charts) and the data its triage form walks in the browser - the CMDB's outbound
  relationships, the CIs of each service, and which run changed which CI when. The page ranks with
  ``triage.py``'s rule (``score = 0.5 * recency + 0.5 / (1 + depth)``), so the static register and
  ``change_event_info``'s triage agree.

Everything is plain JSON; the period ends at the newest change shown, so a register generated twice from
the same ledger is the same register (its fingerprint does not move with the clock).
"""

from __future__ import annotations

import datetime

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import collisions, metrics

#: services of a blast radius a change page lists
MAX_SERVICES = 50


def gate_blast_radius(radius):
    if not radius:
        return None
    return {"service_count": radius.get("service_count"), "highest_criticality": radius.get("highest_criticality"),
            "truncated": radius.get("truncated"),
            "services": [{key: item.get(key) for key in ("name", "class", "environment", "criticality", "owner",
                                                         "depth", "via")}
                         for item in (radius.get("services") or [])[:MAX_SERVICES]]}


def gate_collisions(items):
    shown = []
    for item in items or ():
        try:
            text = collisions.describe(item)
        except (KeyError, TypeError):
            text = str(item.get("reference"))
        shown.append({"kind": item.get("kind"), "reference": item.get("reference"), "owner": item.get("owner"),
                      "action": item.get("action"), "ignored": item.get("ignored"), "text": text})
    return shown


def _bucket(span):
    if span <= datetime.timedelta(days=45):
        return "day"
    return "week" if span <= datetime.timedelta(days=400) else "month"


def build(sor, since, until, rows, now=None):
    """The Insights page's data for the register's ``rows`` (and its ``since``/``until`` scope)."""
    starts = sorted(row["started_at"] for row in rows if row.get("started_at"))
    if not starts:
        return {"metrics": None, "triage": None}
    first = parse_time(since) if since else parse_time(starts[0])
    last = parse_time(until) if until else parse_time(starts[-1]) + datetime.timedelta(seconds=1)
    if last <= first:
        last = first + datetime.timedelta(seconds=1)
    bucket = _bucket(last - first)
    found = metrics.compute(sor, first, last, bucket=bucket, group_by="service")
    shown = set(row["run_id"] for row in rows)
    links = {}
    for link in sor.find_ci_changes(since=format_time(first), until=format_time(last)):
        if link["run_id"] in shown:
            links.setdefault(link["ci_id"], []).append([link["run_id"], link.get("host"), link["started_at"]])
    outbound = {}
    for rel in sor.find_relationships():
        outbound.setdefault(rel["source"], []).append([rel["target"], rel["type"]])
    services = {}
    for row in sor.find_ci_facets(facet="service"):
        services.setdefault(row["value"], []).append(row["ci_id"])
    return {"metrics": found,
            "triage": {"outbound": outbound, "services": services, "links": links,
                       "default_at": format_time(last), "rule": "score = 0.5 * recency + 0.5 / (1 + depth)"}}
