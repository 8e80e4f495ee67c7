# -*- coding: utf-8 -*-
"""The change gate's reads and change context as main had them before the gate-speed work (0a7bdfd), kept
as the reference the faster paths must agree with (tests/unit/test_gate_equivalence.py): host CIs grouped
per name, groups per host, and the per-host context loop. Pure Python over the SystemOfRecord interface;
the reference reads themselves are the interface's generic implementations (``base.SystemOfRecord``:
whole CI documents, one relationship look-up per CI), not the SQL backends' set-based ones."""

from __future__ import annotations

import datetime

from ansible_collections.changeops.itsm.plugins.module_utils import change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.change_gate import _ci_doc, ci_service_names
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import name_identity
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import HOST_CLASSES

_NO_ATTRIBUTES = {}


def host_groups(hosts, task_vars):
    """The action plugin's map of main: ``{host: [group, ...]}``."""
    wanted = set(hosts)
    groups = {}
    for group, members in (task_vars.get("groups") or {}).items():
        for host in members or ():
            if host in wanted:
                groups.setdefault(host, []).append(group)
    return groups


def find_host_cis(sor, names):
    """``cmdb_identity.find_host_cis`` of main."""
    wanted = sorted(set(name for name in names if name))
    if not wanted:
        return {}
    candidates = {}
    for ci in sor.find_cis(names=wanted):
        candidates.setdefault(ci["name"], []).append(ci)
    found = {}
    for name, cis in candidates.items():
        hosts = [ci for ci in cis if ci.get("class") in HOST_CLASSES]
        if len(hosts) == 1 or (not hosts and len(cis) == 1):
            found[name] = (hosts or cis)[0]
        elif len(hosts) > 1:
            owner = sor.find_ci_by_identity("name", name_identity("server", name))
            found[name] = next((ci for ci in hosts if ci["ci_id"] == owner), hosts[0])
    return found


def build_change_context(play, hosts, host_groups, cis, user, check_mode, now):
    """The document that template conditions (JMESPath) are evaluated against.

    ``play`` is what the action plugin found in the play (see
    ``plugin_utils/play_inspection.py``); ``cis`` the CMDB records of the
    targeted hosts and of the hosts tasks delegate to (one per name: each
    host's own CI). Aggregates (``environments``, ``groups``...) are computed
    here once so that conditions stay cheap for plays of many hosts.
    ``environments`` and ``hosts_without_environment`` cover the hosts tasks
    delegate to as well: the play changes them too, so environment limits and
    freezes must see them.
    """
    # One pass over the hosts with as little work per host as possible: this
    # loop is the whole cost of the gate for a play of thousands of hosts.
    by_name = {ci["name"]: ci for ci in reversed(cis) if ci.get("name")}
    ci_docs = []
    hosts_without_ci = []
    hosts_without_environment = []
    environments, classes, services = set(), set(), set()
    for host in hosts:
        ci = by_name.get(host)
        if ci is None:
            hosts_without_ci.append(host)
            hosts_without_environment.append(host)
            continue
        environment = ci.get("environment")
        ci_class = ci.get("class")
        # the list as stored, not a normalised copy: normalising per host doubled the cost of
        # this loop; odd values (one string, numbers, nulls) are normalised below
        ci_services = (ci.get("attributes") or _NO_ATTRIBUTES).get("services")
        if ci_services.__class__ is not list:
            ci_services = ci_service_names(ci)
        try:
            services.update(ci_services)
        except TypeError:  # an unhashable item: normalise this CI now
            ci_services = ci_service_names(ci)
            services.update(ci_services)
        ci_docs.append(_ci_doc(host, ci, ci_services))
        if environment:
            environments.add(environment)
        else:
            hosts_without_environment.append(host)
        classes.add(ci_class)
    classes.discard(None)
    if any(name.__class__ is not str or not name.strip() for name in services):
        # rare: some CI lists a number or a null; redo the (few) documents with normalised names
        services = set()
        for doc in ci_docs:
            doc["services"] = ci_service_names(by_name[doc["name"]])
            services.update(doc["services"])
    targeted = set(hosts)
    delegated_docs = []
    for host in play.get("delegated_hosts") or ():
        if host in targeted:
            continue
        ci = by_name.get(host)
        if ci is None:
            hosts_without_environment.append(host)
            continue
        delegated_docs.append(_ci_doc(host, ci, ci_service_names(ci)))
        if ci.get("environment"):
            environments.add(ci["environment"])
        else:
            hosts_without_environment.append(host)
    outside_play = play.get("delegated_outside_play")
    if outside_play is None:
        outside_play = [host for host in play.get("delegated_hosts") or () if host not in targeted]
    groups = set()
    for host in hosts:
        groups.update(host_groups.get(host, ()))
    groups.discard("all")
    groups.discard("ungrouped")
    local_now = now.astimezone(datetime.timezone.utc)
    return {
        "playbook": play.get("playbook"),
        "playbook_name": play.get("playbook_name"),
        "play": play.get("name") or "",
        "pattern": play.get("pattern"),
        "hosts": list(hosts),
        "host_count": len(hosts),
        # with serial, hosts is one batch; limits are about the whole play
        "play_host_count": max(int(play.get("play_host_count") or 0), len(hosts)),
        "groups": sorted(groups),
        "roles": list(play.get("roles") or []),
        "tags": list(play.get("tags") or []),
        "run_tags": list(play.get("run_tags") or []),
        "skip_tags": list(play.get("skip_tags") or []),
        "modules": list(play.get("modules") or []),
        "paths": list(play.get("paths") or []),
        "dynamic_includes": list(play.get("dynamic_includes") or []),
        # what the gate read in advance, and what it ruled out (a when false for every host of the batch)
        "read_includes": list(play.get("read_includes") or []),
        "skipped_includes": list(play.get("skipped_includes") or []),
        "skipped_tasks": list(play.get("skipped_tasks") or []),
        # "module X" / "path P" -> the file:line of the first task that calls or writes it
        "touched_at": dict(play.get("touched_at") or {}),
        "unresolved_paths": list(play.get("unresolved_paths") or []),
        # services the tasks start, stop, enable or mask (service modules, systemctl/service commands), and
        # the programs command/shell/raw tasks run: protected areas name theirs
        "system_services": list(play.get("system_services") or []),
        "unresolved_services": list(play.get("unresolved_services") or []),
        "commands": list(play.get("commands") or []),
        # conditions the gate cannot judge before the play runs, counted as true: "path P" -> "when: ... (why)"
        # for what only such tasks touch, and every such task
        "conditions_at": dict(play.get("conditions_at") or {}),
        "uncertain_conditions": list(play.get("uncertain_conditions") or []),
        "opaque_actions": list(play.get("opaque_actions") or []),
        "delegated_hosts": list(play.get("delegated_hosts") or []),
        # hosts tasks delegate to that the play does not target: they count towards max_hosts
        "delegated_host_count": len(outside_play),
        "delegated_cis": delegated_docs,
        "unresolved_delegations": list(play.get("unresolved_delegations") or []),
        "real_in_check_mode": list(play.get("real_in_check_mode") or []),
        "uninspectable_includes": list(play.get("uninspectable_includes") or []),
        "cis": ci_docs,
        "hosts_without_ci": hosts_without_ci,
        "hosts_without_environment": hosts_without_environment,
        "environments": sorted(environments),
        "ci_classes": sorted(classes),
        "services": sorted(services),
        "check_mode": bool(check_mode),
        "user": user,
        "now": format_time(local_now),
        "weekday": change_policy.WEEKDAYS[local_now.weekday()],
        "hour": local_now.hour,
    }


def walk(sor, start_ids, direction="inbound", types=None, max_depth=None, max_items=None):
    """``intelligence.graph.walk`` of main (one loop for every direction, a list of ends per row): the reference
    its one-direction loop must agree with."""
    from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.graph import Walk

    result = Walk()
    start = list(dict.fromkeys(start_ids))
    seen = set(start)
    roots = {ci_id: ci_id for ci_id in start}
    frontier = start
    depth = 0
    wanted = list(types) if types else None
    inbound = direction in ("inbound", "both")
    outbound = direction in ("outbound", "both")
    while frontier and (max_depth is None or depth < max_depth):
        depth += 1
        rows = sor.find_relationships(targets=frontier if inbound else None, sources=frontier if outbound else None,
                                      types=wanted, as_rows=True)
        rows.sort()
        in_frontier = set(frontier)
        following = []
        for source, rel_type, target in rows:
            ends = []
            if inbound and target in in_frontier and source not in seen:
                ends.append((target, source))
            if outbound and source in in_frontier and target not in seen:
                ends.append((source, target))
            for here, other in ends:
                if other in seen:
                    continue
                if max_items is not None and len(result.reached) >= max_items:
                    result.truncated = True
                    return result
                seen.add(other)
                roots[other] = roots[here]
                result.reached[other] = {"depth": depth, "from": here, "type": rel_type, "root": roots[here]}
                result.depth = depth
                following.append(other)
        frontier = following
    if frontier and max_depth is not None and depth >= max_depth:
        in_frontier = set(frontier)
        rows = sor.find_relationships(targets=frontier if inbound else None, sources=frontier if outbound else None,
                                      types=wanted, as_rows=True)
        result.truncated = any((inbound and target in in_frontier and source not in seen) or
                               (outbound and source in in_frontier and target not in seen)
                               for source, _type, target in rows)
    return result
