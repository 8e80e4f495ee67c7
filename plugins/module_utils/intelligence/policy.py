# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change policy's ``collisions``, ``blast_radius`` and ``maintenance_windows`` sections.

Validated with the policy's own checker (``change_policy._Checker``): every error names the file,
the line, the key path and the value. See ``docs/policy-schema.md``.
"""

from __future__ import annotations

import datetime

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.rules import CHANGE_TYPES
from ansible_collections.changeops.itsm.plugins.module_utils.durations import parse_duration
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.schedules import Schedule

TOP_KEYS = ("collisions", "blast_radius", "maintenance_windows")
ACTIONS = ("deny", "warn", "allow")
#: collision kinds and the policy key of each
COLLISION_KINDS = ("running_runs", "change_requests", "maintenance_windows")
#: what a collision does when the policy does not say: recorded as a warning, never a surprise denial
DEFAULT_ACTION = "warn"
DEFAULT_STALE_AFTER = datetime.timedelta(hours=6)
DEFAULT_MAX_DEPTH = 5
DEFAULT_MAX_ITEMS = 1000
COLLISION_KEYS = COLLISION_KINDS + ("stale_after",)
BLAST_KEYS = ("max_depth", "max_items", "relationship_types")
WINDOW_KEYS = ("name", "description", "owner", "rrule", "cron", "start", "timezone", "duration", "cis", "services",
               "groups", "environments", "actions")
WINDOW_TARGETS = ("cis", "services", "groups", "environments")


class MaintenanceWindow(object):
    """Recurring work declared in the policy (backups, batch jobs, other teams' patch windows)."""

    def __init__(self, name, description, owner, schedule, targets, actions):
        self.name = name
        self.description = description
        self.owner = owner
        self.schedule = schedule
        #: {"cis": [...], "services": [...], "groups": [...], "environments": [...]}
        self.targets = targets
        #: change type -> action, overriding collisions.maintenance_windows for this window
        self.actions = actions

    def describe(self):
        return {"name": self.name, "description": self.description, "owner": self.owner,
                "schedule": self.schedule.text, "kind": self.schedule.kind, "timezone": self.schedule.timezone,
                "duration": self.schedule.describe().rsplit(" for ", 1)[-1],
                "targets": {key: list(value) for key, value in self.targets.items() if value}}


class IntelligencePolicy(object):
    def __init__(self, actions=None, stale_after=DEFAULT_STALE_AFTER, max_depth=DEFAULT_MAX_DEPTH,
                 max_items=DEFAULT_MAX_ITEMS, relationship_types=None, maintenance_windows=()):
        #: collision kind -> change type -> deny / warn / allow
        self.actions = actions or {kind: dict.fromkeys(CHANGE_TYPES, DEFAULT_ACTION) for kind in COLLISION_KINDS}
        self.stale_after = stale_after
        self.max_depth = max_depth
        self.max_items = max_items
        self.relationship_types = relationship_types
        self.maintenance_windows = list(maintenance_windows)

    def action(self, kind, change_type, window=None):
        if window is not None and change_type in window.actions:
            return window.actions[change_type]
        return self.actions.get(kind, {}).get(change_type, DEFAULT_ACTION)


def _actions(check, raw, path, line):
    """``{standard: deny, ...}`` or one action for every type."""
    if isinstance(raw, str):
        if raw not in ACTIONS:
            check.fail(path, "must be one of %s (or a mapping of change type to one of them)" % ", ".join(ACTIONS),
                       raw, line)
        return dict.fromkeys(CHANGE_TYPES, raw)
    check.mapping(raw, path, CHANGE_TYPES, line=line)
    actions = {}
    for change_type, action in raw.items():
        item_line = check.line_of(raw, change_type) or line
        if action not in ACTIONS:
            check.fail("%s.%s" % (path, change_type), "must be one of %s" % ", ".join(ACTIONS), action, item_line)
        actions[change_type] = action
    return actions


def parse_intelligence(check, document, mapping_type):
    """The sections of ``document`` this package reads (absent: the defaults)."""
    line = check.line_of
    policy = IntelligencePolicy()

    raw = document.get("collisions")
    if raw is not None:
        check.mapping(raw, "collisions", COLLISION_KEYS, line=line(document, "collisions"))
        for kind in COLLISION_KINDS:
            if kind in raw:
                given = _actions(check, raw[kind], "collisions.%s" % kind, line(raw, kind))
                policy.actions[kind] = dict(policy.actions[kind], **given)
        if "stale_after" in raw:
            stale = parse_duration(raw["stale_after"])
            if stale is None:
                check.fail("collisions.stale_after", "must be a duration such as 6h, 90m or 1d", raw["stale_after"],
                           line(raw, "stale_after"))
            policy.stale_after = stale

    raw = document.get("blast_radius")
    if raw is not None:
        check.mapping(raw, "blast_radius", BLAST_KEYS, line=line(document, "blast_radius"))
        if "max_depth" in raw:
            policy.max_depth = check.integer(raw["max_depth"], "blast_radius.max_depth", line(raw, "max_depth"),
                                             minimum=1)
        if "max_items" in raw:
            policy.max_items = check.integer(raw["max_items"], "blast_radius.max_items", line(raw, "max_items"),
                                             minimum=1)
        if raw.get("relationship_types") is not None:
            policy.relationship_types = check.string_list(raw["relationship_types"], "blast_radius.relationship_types",
                                                          line(raw, "relationship_types"))

    raw_windows = document.get("maintenance_windows")
    if raw_windows is not None:
        if not isinstance(raw_windows, list):
            check.fail("maintenance_windows", "must be a list of recurring windows", raw_windows,
                       line(document, "maintenance_windows"))
        names = set()
        for index, raw_window in enumerate(raw_windows):
            policy.maintenance_windows.append(_window(check, raw_window, "maintenance_windows[%d]" % index,
                                                      line(document, "maintenance_windows"), names))
    return policy


def _window(check, raw, path, default_line, names):
    check.mapping(raw, path, WINDOW_KEYS, required=("name", "timezone", "duration"), line=default_line)
    line = check.line_of

    def where(key):
        return line(raw, key) or default_line

    name = check.string(raw["name"], path + ".name", where("name"))
    if name in names:
        check.fail(path + ".name", "another maintenance window already has this name", name, where("name"))
    names.add(name)
    for key in ("description", "owner"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            check.fail("%s.%s" % (path, key), "must be a string", raw[key], where(key))
    given = [key for key in ("rrule", "cron") if raw.get(key) is not None]
    if len(given) != 1:
        check.fail(path, "needs exactly one of rrule (an RFC 5545 recurrence rule such as "
                         "FREQ=WEEKLY;BYDAY=SU;BYHOUR=1;BYMINUTE=0) or cron (such as 0 1 * * 0)",
                   {key: raw.get(key) for key in given} or None, default_line)
    kind = given[0]
    text = check.string(raw[kind], "%s.%s" % (path, kind), where(kind)).strip()
    if kind == "rrule" and text.upper().startswith("RRULE:"):
        text = text[6:]
    tz = check.timezone(raw["timezone"], path + ".timezone", where("timezone"))
    duration = parse_duration(raw["duration"])
    if duration is None:
        check.fail(path + ".duration", "must be a duration such as 3h, 90m or 1d12h", raw["duration"],
                   where("duration"))
    start = None
    if raw.get("start") is not None:
        if kind != "rrule":
            check.fail(path + ".start", "only an rrule has a start (its DTSTART); cron has none", raw["start"],
                       where("start"))
        start = check.moment(raw["start"], path + ".start", where("start"), tz).replace(tzinfo=None)
    schedule = Schedule(kind, text, tz, raw["timezone"], duration, start=start)
    try:
        schedule.validate()
    except (ValueError, TypeError, KeyError) as exc:
        check.fail("%s.%s" % (path, kind), "is not a valid %s: %s" % (
            "RFC 5545 recurrence rule" if kind == "rrule" else "cron expression", exc), raw[kind], where(kind))
    targets = {}
    for key in WINDOW_TARGETS:
        targets[key] = check.string_list(raw.get(key) or [], "%s.%s" % (path, key), where(key))
    if not any(targets.values()):
        check.fail(path, "must name what it occupies: at least one of %s" % ", ".join(WINDOW_TARGETS), None,
                   default_line, show_value=False)
    actions = {}
    if raw.get("actions") is not None:
        actions = _actions(check, raw["actions"], path + ".actions", where("actions"))
    return MaintenanceWindow(name, raw.get("description") or "", raw.get("owner") or "", schedule, targets, actions)
