# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one walk of CMDB relationships, and the blast radius built on it.

A relationship ``A --runs_on--> B`` says A depends on B. Walking **inbound** from B finds what
depends on B (``configuration_item_info``'s ``related_to``, the gate's blast radius); walking
**outbound** from A finds what A depends on (triage: "anything it depends on"). The walk is
breadth-first, one bulk query per level (``SystemOfRecord.find_relationships``), never visits a CI
twice (cycles are safe), and stops at ``max_depth`` levels or ``max_items`` CIs, saying so
(``truncated``), so a densely related CMDB cannot make the gate slow.
"""

from __future__ import annotations

import itertools
import operator
import re

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import HOST_CLASSES, name_list
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError

DIRECTIONS = ("inbound", "outbound", "both")
_SOURCE = operator.itemgetter(0)


class Walk(object):
    """What a walk reached: ``reached`` maps each CI id (not the starting ones) to
    ``{"depth", "from", "type", "root"}`` (the CI it was reached from, by which relationship type, and
    the starting CI of that path), in the order found."""

    def __init__(self):
        self.reached = {}
        self.truncated = False
        self.depth = 0

    def ids(self):
        return list(self.reached)

    def reach(self, here, other, rel_type, depth, roots, max_items):
        """Record ``other``, reached from ``here`` at ``depth``; False (and ``truncated``) when ``max_items`` CIs
        are reached already. ``roots`` maps each CI to the starting CI of its path."""
        if max_items is not None and len(self.reached) >= max_items:
            self.truncated = True
            return False
        root = roots[here]
        roots[other] = root
        self.reached[other] = {"depth": depth, "from": here, "type": rel_type, "root": root}
        self.depth = depth
        return True


def walk(sor, start_ids, direction="inbound", types=None, max_depth=None, max_items=None):
    """Breadth-first over relationships from ``start_ids`` (see the module docstring).

    ``direction``: ``inbound`` (what depends on the start), ``outbound`` (what it depends on) or
    ``both``; ``types``: only these relationship types; ``max_depth``: levels (None: until nothing new);
    ``max_items``: CIs reached at most.
    """
    result = Walk()
    start = list(dict.fromkeys(start_ids))
    seen = set(start)
    roots = dict(zip(start, start))
    frontier = start
    depth = 0
    wanted = list(types) if types else None
    inbound = direction in ("inbound", "both")
    outbound = direction in ("outbound", "both")
    while frontier and (max_depth is None or depth < max_depth):
        depth += 1
        rows = sor.find_relationships(targets=frontier if inbound else None, sources=frontier if outbound else None,
                                      types=wanted, as_rows=True)
        rows.sort()  # the same walk whatever order a backend returns rows in
        in_frontier = set(frontier)
        following = []
        if inbound and not outbound:
            # inbound (the blast radius): the far end (the source) leads the rows' order, so a source's rows are
            # together and only its first row whose target is in the frontier can reach it, the rest being skipped
            # as seen: the steps of the loop below, one source at a time (the first level of a 10,000-host play
            # reads 10,000 rows that reach some 1,000 CIs)
            for other, group in itertools.groupby(rows, _SOURCE):
                if other in seen:
                    continue
                for row in group:
                    if row[2] in in_frontier:
                        break
                else:
                    continue
                if not result.reach(row[2], other, row[1], depth, roots, max_items):
                    return result
                seen.add(other)
                following.append(other)
            frontier = following
            continue
        if inbound != outbound:
            # outbound (triage): the same steps as the loop below without its per-row list of ends
            for row in rows:
                other = row[2]
                if other in seen or row[0] not in in_frontier:
                    continue
                if not result.reach(row[0], other, row[1], depth, roots, max_items):
                    return result
                seen.add(other)
                following.append(other)
            frontier = following
            continue
        for source, rel_type, target in rows:
            ends = []
            if inbound and target in in_frontier and source not in seen:
                ends.append((target, source))
            if outbound and source in in_frontier and target not in seen:
                ends.append((source, target))
            for here, other in ends:
                if other in seen:
                    continue
                if not result.reach(here, other, rel_type, depth, roots, max_items):
                    return result
                seen.add(other)
                following.append(other)
        frontier = following
    if frontier and max_depth is not None and depth >= max_depth:
        # CIs at the last level may have relationships of their own that were not followed
        in_frontier = set(frontier)
        rows = sor.find_relationships(targets=frontier if inbound else None, sources=frontier if outbound else None,
                                      types=wanted, as_rows=True)
        result.truncated = any((inbound and target in in_frontier and source not in seen) or
                               (outbound and source in in_frontier and target not in seen)
                               for source, _type, target in rows)
    return result


# --------------------------------------------------------------------------
# blast radius: what depends on the hosts a play changes
# --------------------------------------------------------------------------
_CRITICALITY_WORDS = {"critical": 1, "very_high": 1, "high": 2, "medium": 3, "moderate": 3, "low": 4, "planning": 5}
_LEADING_NUMBER = re.compile(r"^\s*(\d+)")


def criticality_rank(value):
    """A CI's criticality as a number, 1 the most critical: ``1``, ``"1 - most critical"`` (ServiceNow's
    ``busines_criticality``), ``"high"``; None when it says nothing."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    match = _LEADING_NUMBER.match(text)
    if match:
        return int(match.group(1))
    return _CRITICALITY_WORDS.get(text.lower().replace(" ", "_").replace("-", "_"))


def _item(ci, info, names):
    attributes = ci.get("attributes") or {}
    return {
        "name": ci.get("name"),
        "ci_id": ci["ci_id"],
        "class": ci.get("class"),
        "environment": ci.get("environment"),
        "status": ci.get("status"),
        "criticality": criticality_rank(attributes.get("criticality")),
        "criticality_label": attributes.get("criticality"),
        "owner": attributes.get("owner"),
        "support_group": attributes.get("support_group"),
        "depth": info["depth"],
        # how it depends on the play's hosts: "billing-api runs_on web01"
        "via": "%s %s %s" % (ci.get("name"), info["type"], names.get(info["from"], info["from"])),
        "host": names.get(info["root"], info["root"]),
    }


def ci_ids_of(host_cis):
    """``{CI id: host name}`` of ``{host name: CI}`` (``cmdb_identity.find_host_cis``), hosts without a CI left out."""
    return {ci["ci_id"]: name for name, ci in host_cis.items() if ci.get("ci_id")}


def blast_radius(sor, host_ci_ids, types=None, max_depth=5, max_items=1000):
    """The CIs that depend on the hosts a play changes, and a summary policy conditions can test.

    ``host_ci_ids``: ``{CI id: host name}`` of the targeted (and delegated) hosts (:func:`ci_ids_of`). Returns
    ``{"items": [...], "services": [...], "service_count", "names", "criticalities",
    "highest_criticality", "environments", "owners", "host_count", "depth", "max_depth", "truncated"}``:
    ``items`` is every CI reached (nearest first), ``services`` those not of a host class
    (applications, services, databases...), ``hosts`` the host CIs reached (VMs of a hypervisor the
    play changes).
    """
    names = dict(host_ci_ids)  # (a copy: the names of the CIs reached join it)
    found = walk(sor, list(names), "inbound", types=types, max_depth=max_depth, max_items=max_items)
    cis = {ci["ci_id"]: ci for ci in sor.find_ci_summaries(ci_ids=found.ids())} if found.reached else {}
    for ci_id, ci in cis.items():
        names.setdefault(ci_id, ci.get("name"))
    items = [_item(cis[ci_id], info, names) for ci_id, info in found.reached.items() if ci_id in cis]
    items.sort(key=lambda item: (item["depth"], item["name"] or "", item["ci_id"]))
    services = [item for item in items if item["class"] not in HOST_CLASSES]
    ranks = sorted(set(item["criticality"] for item in services if item["criticality"] is not None))
    return {
        "items": items,
        "services": services,
        "service_count": len(services),
        "names": [item["name"] for item in services],
        "hosts": [item["name"] for item in items if item["class"] in HOST_CLASSES],
        "host_count": sum(1 for item in items if item["class"] in HOST_CLASSES),
        "criticalities": ranks,
        "highest_criticality": ranks[0] if ranks else None,
        "environments": sorted(set(item["environment"] for item in services if item["environment"])),
        "owners": sorted(set(str(item["owner"] or item["support_group"]) for item in services
                             if item["owner"] or item["support_group"])),
        "depth": found.depth,
        "max_depth": max_depth,
        "truncated": found.truncated,
    }


def service_names(ci):
    """The business services a CI names in its ``services`` attribute."""
    try:
        return name_list((ci.get("attributes") or {}).get("services"))
    except ValidationError:
        return []


def summary(radius, limit=50):
    """What a decision records at its top level (the register and the review service show it)."""
    if radius is None:
        return None
    shown = dict(radius)
    shown.pop("items", None)
    services = radius.get("services") or []
    shown["services"] = [{key: item.get(key) for key in ("name", "class", "environment", "criticality", "owner",
                                                         "support_group", "depth", "via")}
                         for item in services[:limit]]
    if len(services) > limit:
        shown["services_not_listed"] = len(services) - limit
    return shown
