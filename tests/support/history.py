# -*- coding: utf-8 -*-
"""Seed a recorded change history through the public append path (the entries the recorder and the gate write).

A run is described by a dict: ``run_id``, ``start``/``end`` (aware datetimes), ``status`` (successful, failed,
interrupted), ``gate`` (standard/normal/emergency/denied or None for an ungated run), ``reference``,
``commit`` (git commit time or None), ``changed`` (hosts it changed), ``hosts`` (hosts it ran on, default the
changed ones), ``check_mode``, ``context`` (extra gate context: roles, modules...), ``playbook``.
"""

from __future__ import annotations

import datetime

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry


def record_run(sor, run_id, results=5):
    """A successful run of ``results`` changed task results on web00.. through ``sor.append``; its entries."""
    entries = [Entry("run.started", run_id, {"run_id": run_id, "started_at": "2026-12-05T10:00:00.000000Z",
                                             "user": "ops", "controller": "ctl", "playbooks": ["site.yml"]})]
    entries += [Entry("run.result", run_id, {"run_id": run_id, "play_id": "p1", "host": "web%02d" % number,
                                             "item": None, "status": "changed", "changed": True,
                                             "task": {"name": "deploy", "action": "ansible.builtin.copy"}})
                for number in range(results)]
    entries.append(Entry("run.finished", run_id, {"run_id": run_id, "outcome": "successful"}))
    return sor.append(entries)


def t(text):
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=datetime.timezone.utc)


def run_entries(run, ci_ids):
    run_id = run["run_id"]
    start, end = run["start"], run["end"]
    at = format_time(start)
    changed = list(run.get("changed") or ())
    hosts = list(run.get("hosts") or changed)
    git = {"commit": "%040x" % abs(hash(run_id)), "dirty": False}
    if run.get("commit"):
        git["commit_time"] = format_time(run["commit"])
    playbook = run.get("playbook", "site.yml")
    entries = [Entry("run.started", run_id, {
        "run_id": run_id, "started_at": at, "user": run.get("user", "ops"), "controller": "ctl", "pid": 1,
        "playbooks": [playbook], "git": git, "check_mode": bool(run.get("check_mode"))}, at=at),
        Entry("run.play", run_id, {"run_id": run_id, "play_id": "play", "name": "Play", "hosts": hosts,
                                   "started_at": at}, at=at)]
    if run.get("gate"):
        allowed = run["gate"] != "denied"
        context = dict({"playbook": playbook, "playbook_name": playbook.rsplit("/", 1)[-1], "roles": [],
                        "modules": ["ansible.builtin.copy"], "environments": ["production"]}, **run.get("context", {}))
        entries.append(Entry("run.gate", run_id, dict({
            "run_id": run_id, "play_id": "play", "decision_id": "d-" + run_id, "allowed": allowed,
            "type": run["gate"], "reference": run.get("reference") or (run["gate"] if allowed else None),
            "reasons": [] if allowed else ["denied"], "hosts": hosts, "checked_at": at,
            "protected_areas": run.get("protected_areas", []), "context": context}, **run.get("decision", {})), at=at))
    step = format_time(start + datetime.timedelta(seconds=1))
    for host in hosts:
        entries.append(Entry("run.result", run_id, {
            "run_id": run_id, "play_id": "play", "host": host, "item": None,
            "status": "changed" if host in changed else ("failed" if run.get("gate") == "denied" else "ok"),
            "changed": host in changed, "started_at": step, "ended_at": step,
            "task": {"uuid": "task", "name": "Change", "action": "ansible.builtin.copy" if run.get("gate") != "denied"
                     else "changeops.itsm.change_gate", "check_mode": bool(run.get("check_mode"))},
            "result": {"dest": "/etc/app.conf"}}, at=step))
    closing = {"run_id": run_id, "ended_at": format_time(end)}
    if run["status"] == "interrupted":
        entries.append(Entry("run.interrupted", run_id, dict(closing, reason="killed"), at=format_time(end)))
    else:
        entries.append(Entry("run.finished", run_id, dict(closing, outcome=run["status"]), at=format_time(end)))
    if not run.get("check_mode"):
        for host in changed:
            link = {"ci_id": ci_ids[host], "run_id": run_id, "host": host}
            entries.append(Entry("ci.changed_by_run", ci_ids[host], link, at=format_time(end)))
    return entries


def seed(sor, runs, ci_ids):
    for run in runs:
        sor.append(run_entries(run, ci_ids))
