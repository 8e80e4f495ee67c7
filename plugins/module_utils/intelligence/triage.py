# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Triage: what changed before this incident?

Given a CI or a service and a moment (the incident's start), :func:`triage` lists the changes of the
preceding window that touched it, its hosts, or anything it depends on, most suspicious first, with
what each changed.

* **What it depends on** is the outbound walk of CMDB relationships from the anchor
  (``graph.walk``): ``billing --runs_on--> web01`` makes web01 a dependency of billing at depth 1,
  ``web01 --hosted_on--> hv01`` makes hv01 one at depth 2. A service known only by name (the
  ``services`` attribute of its hosts) has those hosts at depth 1.
* **Touched** means the recorder linked the run to the CI: it made a change of a host to it
  (``ci.changed_by_run``, see ``module_utils/change_scope.py``).
* **Rank**: ``score = 0.5 * recency + 0.5 * proximity``, where ``recency = 1 - age / window``
  (a change just before the incident scores 1, one at the start of the window 0) and
  ``proximity = 1 / (1 + depth)`` (the anchor itself 1, a direct dependency 0.5, ...); ties by
  time, newest first. Failed changes are listed like the others (their status says so).
* **What each changed**: its tasks with a change of a host (or a failure) on the touched hosts,
  the files named by their diffs and results (``dest``, ``path``, diff headers), and the packages
  of package-manager tasks (loop items and ``name``).

Reads: one walk (a query per level), one indexed range read of ``ci_changes``, the narrow
``change_facts`` of the runs found, and the task results of the ``limit`` best only.
"""

from __future__ import annotations

import datetime

from ansible_collections.changeops.itsm.plugins.module_utils import change_scope
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb import resolve_ci
from ansible_collections.changeops.itsm.plugins.module_utils.errors import NotFound, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import graph

DEFAULT_WINDOW = datetime.timedelta(hours=24)
DEFAULT_DEPTH = 3
DEFAULT_LIMIT = 20
#: package managers whose loop items and ``name`` are packages
PACKAGE_MODULES = ("apt", "dnf", "dnf5", "yum", "package", "pip", "apk", "zypper", "pacman", "homebrew", "snap",
                   "pkgng", "openbsd_pkg", "portage", "win_package", "win_chocolatey", "gem", "npm", "yarn",
                   "flatpak", "rpm_key", "apt_repository")
FILE_KEYS = ("dest", "path")
MAX_LISTED = 50


def _anchor(sor, ci, service):
    """``({ci_id: depth}, anchor document)`` to start the walk from."""
    if bool(ci) == bool(service):
        raise ValidationError("triage: give exactly one of ci or service", field="triage")
    if ci:
        found = resolve_ci(sor, ci, field="triage.ci")
        if found is None:
            raise NotFound("triage.ci: no CI %r exists" % ci, field="triage.ci", value=ci)
        return {found["ci_id"]: 0}, {"ci": found["name"], "ci_id": found["ci_id"], "class": found.get("class")}
    start = {}
    named = [item for item in sor.find_cis(name=service) if item.get("class") not in graph.HOST_CLASSES]
    for item in named:
        start[item["ci_id"]] = 0
    for row in sor.find_ci_facets(facet="service", values=[service]):
        start.setdefault(row["ci_id"], 1)
    if not start:
        raise NotFound("triage.service: no CI is named %r or lists it among its services" % service,
                       field="triage.service", value=service)
    return start, {"service": service, "ci_ids": sorted(start)}


def _paths(reached, names, starts):
    """``ci_id -> "billing runs_on web01 hosted_on hv01"``: how the anchor depends on each CI."""
    paths = {ci_id: names.get(ci_id, ci_id) for ci_id in starts}
    for ci_id, info in reached.items():  # in walk order: a CI's predecessor comes first
        paths[ci_id] = "%s %s %s" % (paths.get(info["from"], names.get(info["from"])), info["type"],
                                     names.get(ci_id, ci_id))
    return paths


def triage(sor, at, ci=None, service=None, window=DEFAULT_WINDOW, max_depth=DEFAULT_DEPTH, limit=DEFAULT_LIMIT):
    """The ranked changes before ``at`` (aware datetime) that touched ``ci``/``service`` or what it depends on."""
    if limit < 1 or max_depth < 0:
        raise ValidationError("triage: limit must be at least 1 and max_depth at least 0")
    starts, anchor = _anchor(sor, ci, service)
    found = graph.walk(sor, list(starts), "outbound", max_depth=max_depth or None, max_items=5000) \
        if max_depth else graph.Walk()
    depths = dict(starts)
    for ci_id, info in found.reached.items():
        depths.setdefault(ci_id, starts.get(info["root"], 0) + info["depth"])
    cis = sor.get_cis(list(depths))
    names = {ci_id: item.get("name") for ci_id, item in cis.items()}
    paths = _paths(found.reached, names, starts)
    since = at - window
    links = sor.find_ci_changes(ci_ids=list(depths), since=format_time(since), until=format_time(at))
    runs = {}
    for link in links:
        run = runs.setdefault(link["run_id"], {"run_id": link["run_id"], "started_at": link["started_at"],
                                               "depth": depths[link["ci_id"]], "touched": []})
        run["depth"] = min(run["depth"], depths[link["ci_id"]])
        ci_doc = cis.get(link["ci_id"]) or {}
        run["touched"].append({"ci": names.get(link["ci_id"]), "ci_id": link["ci_id"], "class": ci_doc.get("class"),
                               "host": link.get("host"), "depth": depths[link["ci_id"]],
                               "path": paths.get(link["ci_id"])})
    span = window.total_seconds() or 1.0
    for run in runs.values():
        age = (at - parse_time(run["started_at"])).total_seconds()
        recency = max(0.0, min(1.0, 1.0 - age / span))
        proximity = 1.0 / (1.0 + run["depth"])
        run["score"] = round(0.5 * recency + 0.5 * proximity, 4)
        run["minutes_before"] = int(age // 60)
        run["touched"].sort(key=lambda item: (item["depth"], item["ci"] or ""))
    ranked = sorted(runs.values(), key=lambda run: (-run["score"], _descending(run["started_at"]), run["run_id"]))
    shown = ranked[:limit]
    facts = {fact["run_id"]: fact for fact in sor.find_change_facts(run_ids=[run["run_id"] for run in shown])}
    changed = _what_changed(sor, shown)
    for run in shown:
        fact = facts.get(run["run_id"]) or {}
        for key in ("ended_at", "status", "playbook", "user", "authorisation", "authorisation_ref", "environment"):
            run[key] = fact.get(key)
        run["changed"] = changed.get(run["run_id"], {"tasks": [], "files": [], "packages": []})
    return {"anchor": anchor, "at": format_time(at), "since": format_time(since),
            "window_hours": round(span / 3600.0, 3), "max_depth": max_depth,
            "dependencies": [{"ci": names.get(ci_id), "ci_id": ci_id, "class": (cis.get(ci_id) or {}).get("class"),
                              "depth": depth, "path": paths.get(ci_id)}
                             for ci_id, depth in sorted(depths.items(),
                                                        key=lambda item: (item[1], names.get(item[0]) or ""))][:MAX_LISTED],
            "dependency_count": len(depths), "walk_truncated": found.truncated,
            "change_count": len(ranked), "changes": shown}


def _descending(text):
    return [-ord(character) for character in (text or "")]


def _what_changed(sor, runs):
    """``run_id -> {tasks, files, packages}`` from the recorded results on the hosts each run touched."""
    hosts = {run["run_id"]: set(item["host"] for item in run["touched"] if item.get("host")) for run in runs}
    found = {run_id: {"tasks": [], "files": [], "packages": []} for run_id in hosts}
    if not hosts:
        return found
    results = sor.find_task_results(run_ids=list(hosts), statuses=["changed", "failed", "unreachable"])
    for result in change_scope.counted_results(results):
        run_id = result.get("run_id")
        if run_id not in hosts or (hosts[run_id] and result.get("host") not in hosts[run_id]):
            continue
        failed = result.get("status") in ("failed", "unreachable")
        if not failed and not change_scope.changes_host(result):
            continue
        task = result.get("task") or {}
        item = result.get("item")
        what = found[run_id]
        if len(what["tasks"]) < MAX_LISTED:
            what["tasks"].append({"host": result.get("host"), "task": task.get("name") or task.get("action"),
                                  "action": task.get("action"), "status": result.get("status"),
                                  "item": item.get("label") if isinstance(item, dict) else None})
        if failed:
            continue
        for name in _files(result):
            if name not in what["files"] and len(what["files"]) < MAX_LISTED:
                what["files"].append(name)
        for name in _packages(result):
            if name not in what["packages"] and len(what["packages"]) < MAX_LISTED:
                what["packages"].append(name)
    return found


def _files(result):
    names = []
    summary = result.get("result") or {}
    for key in FILE_KEYS:
        value = summary.get(key) if isinstance(summary, dict) else None
        if isinstance(value, str) and value.startswith("/"):
            names.append(value)
    diffs = result.get("diff") or []
    for diff in diffs if isinstance(diffs, list) else [diffs]:
        if not isinstance(diff, dict):
            continue
        for key in ("after_header", "before_header"):
            header = diff.get(key)
            if isinstance(header, str) and header.startswith("/") and header not in names:
                names.append(header)
    return names


def _packages(result):
    action = str((result.get("task") or {}).get("action") or "")
    if action.rsplit(".", 1)[-1] not in PACKAGE_MODULES:
        return []
    names = []
    item = result.get("item")
    if isinstance(item, dict) and item.get("label"):
        names.append(str(item["label"]))
    summary = result.get("result") or {}
    value = summary.get("name") if isinstance(summary, dict) else None
    for name in value if isinstance(value, list) else [value]:
        if isinstance(name, str) and name and name not in names:
            names.append(name)
    return names
