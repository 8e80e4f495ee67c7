# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a new version of the change policy changes, as the CAB reads it.

:func:`summarise` compares two validated policies and says, per part: standard change templates
added, removed, **widened** (they may now cover more: a condition removed, a limit raised or
dropped, an ``allow_*`` switched on, windows changed) or narrowed; protected areas added, removed
or **weakened** (something they matched no longer matches); freezes added, removed or changed;
and every changed rule of emergencies, normal changes, approvals, publishing, reviews and ServiceNow; and
the change intelligence sections: a collision action made more permissive (deny -> warn -> allow) or a
shorter ``collisions.stale_after`` is **relaxed**, a blast radius that follows fewer relationship
types, fewer levels or fewer items is **narrowed** (conditions on it see less), and a maintenance
window removed, occupying fewer CIs/services/groups/environments or acting more permissively is
**relaxed**. A JMESPath condition or a recurrence rule cannot be compared by meaning: a changed one
counts as a possible widening (or relaxation), so that a person looks at it.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.policy import (
    ACTIONS,
    CHANGE_TYPES,
    COLLISION_KINDS,
    WINDOW_TARGETS,
)
from ansible_collections.changeops.itsm.plugins.module_utils.durations import describe_duration

TEMPLATE_LIMITS = ("max_hosts", "environments", "windows")


def _templates(policy):
    if policy is None:
        return {}
    raw = (policy.document or {}).get("templates") or []
    return {item["name"]: item for item in raw if isinstance(item, dict) and item.get("name")}


def _conditions(raw):
    conditions = raw.get("conditions") or []
    return [conditions] if isinstance(conditions, str) else list(conditions)


def _template_changes(old, new, allow_keys):
    """``(widened, changes)`` between two versions of one template."""
    changes, widened = [], False
    before, after = _conditions(old), _conditions(new)
    for text in before:
        if text not in after:
            changes.append("condition removed: %s" % text)
            widened = True
    for text in after:
        if text not in before:
            changes.append("condition added: %s" % text)
    old_max, new_max = old.get("max_hosts"), new.get("max_hosts")
    if old_max != new_max:
        changes.append("max_hosts %s -> %s" % (old_max if old_max is not None else "none",
                                               new_max if new_max is not None else "none"))
        widened = widened or new_max is None or (old_max is not None and new_max > old_max)
    old_env, new_env = old.get("environments"), new.get("environments")
    if old_env != new_env:
        old_set, new_set = set(old_env or ()), set(new_env or ())
        if new_env is None:
            changes.append("environments limit removed (was %s)" % ", ".join(sorted(old_set)))
            widened = True
        elif old_env is None:
            changes.append("environments limited to %s" % ", ".join(sorted(new_set)))
        else:
            if new_set - old_set:
                changes.append("environments added: %s" % ", ".join(sorted(new_set - old_set)))
                widened = True
            if old_set - new_set:
                changes.append("environments removed: %s" % ", ".join(sorted(old_set - new_set)))
    if (old.get("windows") or []) != (new.get("windows") or []):
        if not new.get("windows"):
            changes.append("time windows removed")
        else:
            changes.append("time windows changed")
        widened = True
    for key in allow_keys:
        if bool(old.get(key)) != bool(new.get(key)):
            changes.append("%s %s -> %s" % (key, str(bool(old.get(key))).lower(), str(bool(new.get(key))).lower()))
            widened = widened or bool(new.get(key))
    if old.get("servicenow_template") != new.get("servicenow_template"):
        # the ServiceNow standard changes the template covers (creates, and accepts as its own) change
        changes.append("servicenow_template %s -> %s" % (old.get("servicenow_template") or "none",
                                                         new.get("servicenow_template") or "none"))
        widened = widened or bool(new.get("servicenow_template"))
    if (old.get("description") or "") != (new.get("description") or ""):
        changes.append("description changed")
    return widened, changes


def _areas(policy):
    if policy is None:
        return {}
    return {area.name: area for area in policy.protected_areas}


def _freezes(policy):
    if policy is None:
        return {}
    raw = (policy.document or {}).get("freezes") or []
    return {item["name"]: item for item in raw if isinstance(item, dict) and item.get("name")}


def _flatten(prefix, value, out):
    if isinstance(value, dict):
        for key in sorted(value):
            _flatten("%s.%s" % (prefix, key) if prefix else key, value[key], out)
    else:
        out[prefix] = value


def _rules(policy):
    flat = {}
    if policy is None:
        return flat
    emergency = policy.emergency
    _flatten("emergency", {"allowed": emergency.allowed, "declarers": emergency.declarers,
                           "require_justification": emergency.require_justification,
                           "min_justification_length": emergency.min_justification_length}, flat)
    _flatten("normal", {"allowed_states": policy.normal_states}, flat)
    _flatten("", policy.authorisation.describe(), flat)
    # ServiceNow as the change authority: a local fallback lets the gate decide without reading the CHG live
    _flatten("servicenow", dict(policy.servicenow), flat)
    return flat


def summarise(old, new, allow_keys=()):
    """The changes from policy ``old`` (None: nothing published yet) to ``new``, as a JSON-ready dict."""
    summary = {"first_version": old is None}
    old_templates, new_templates = _templates(old), _templates(new)
    widened, changed = [], []
    for name in new_templates:
        if name in old_templates:
            is_wider, changes = _template_changes(old_templates[name], new_templates[name], allow_keys)
            if changes:
                changed.append({"name": name, "widened": is_wider, "changes": changes})
                if is_wider:
                    widened.append(name)
    summary["templates"] = {
        "added": [name for name in new_templates if name not in old_templates],
        "removed": [name for name in old_templates if name not in new_templates],
        "widened": widened,
        "changed": changed,
    }
    old_areas, new_areas = _areas(old), _areas(new)
    area_changes, weakened = [], []
    for name, area in new_areas.items():
        previous = old_areas.get(name)
        if previous is None:
            continue
        changes, weaker = [], False
        for key in ("modules", "roles", "tags", "paths", "services", "commands"):
            before, after = getattr(previous, key), getattr(area, key)
            if [item for item in before if item not in after]:
                changes.append("%s removed: %s" % (key, ", ".join(item for item in before if item not in after)))
                weaker = True
            if [item for item in after if item not in before]:
                changes.append("%s added: %s" % (key, ", ".join(item for item in after if item not in before)))
        if changes:
            area_changes.append({"name": name, "weakened": weaker, "changes": changes})
            if weaker:
                weakened.append(name)
    summary["protected_areas"] = {
        "added": sorted(name for name in new_areas if name not in old_areas),
        "removed": sorted(name for name in old_areas if name not in new_areas),
        "weakened": weakened,
        "changed": area_changes,
    }
    old_freezes, new_freezes = _freezes(old), _freezes(new)
    summary["freezes"] = {
        "added": [name for name in new_freezes if name not in old_freezes],
        "removed": [name for name in old_freezes if name not in new_freezes],
        "changed": [name for name in new_freezes if name in old_freezes and new_freezes[name] != old_freezes[name]],
    }
    summary.update(_intelligence(old, new))
    old_rules, new_rules = _rules(old), _rules(new)
    summary["rules"] = ["%s: %s -> %s" % (key, _show(old_rules.get(key)), _show(new_rules.get(key)))
                        for key in sorted(set(old_rules) | set(new_rules))
                        if old is not None and old_rules.get(key) != new_rules.get(key)]
    return summary


def _more_permissive(before, after):
    """True when collision action ``after`` lets more through than ``before`` (deny < warn < allow)."""
    return ACTIONS.index(after) > ACTIONS.index(before)


def _intelligence(old, new):
    """The ``collisions``, ``blast_radius`` and ``maintenance_windows`` parts of :func:`summarise`."""
    if old is None:
        return {"collisions": {"relaxed": False, "changes": []}, "blast_radius": {"narrowed": False, "changes": []},
                "maintenance_windows": {"added": [], "removed": [], "relaxed": [], "changed": []}}
    before, after = old.intelligence, new.intelligence
    changes, relaxed = [], False
    for kind in COLLISION_KINDS:
        for change_type in CHANGE_TYPES:
            was, now = before.action(kind, change_type), after.action(kind, change_type)
            if was != now:
                changes.append("%s for %s changes: %s -> %s" % (kind, change_type, was, now))
                relaxed = relaxed or _more_permissive(was, now)
    if before.stale_after != after.stale_after:
        changes.append("stale_after %s -> %s" % (describe_duration(before.stale_after),
                                                 describe_duration(after.stale_after)))
        relaxed = relaxed or after.stale_after < before.stale_after
    collisions = {"relaxed": relaxed, "changes": changes}

    changes, narrowed = [], False
    for key in ("max_depth", "max_items"):
        was, now = getattr(before, key), getattr(after, key)
        if was != now:
            changes.append("%s %d -> %d" % (key, was, now))
            narrowed = narrowed or now < was
    was, now = before.relationship_types, after.relationship_types
    if was != now:
        if now is None:
            changes.append("relationship_types: every type (was %s)" % ", ".join(was))
        elif was is None:
            changes.append("relationship_types limited to %s (was every type)" % ", ".join(now))
            narrowed = True
        else:
            if set(was) - set(now):
                changes.append("relationship_types removed: %s" % ", ".join(item for item in was if item not in now))
                narrowed = True
            if set(now) - set(was):
                changes.append("relationship_types added: %s" % ", ".join(item for item in now if item not in was))
    blast_radius = {"narrowed": narrowed, "changes": changes}

    old_windows = {window.name: window for window in before.maintenance_windows}
    new_windows = {window.name: window for window in after.maintenance_windows}
    windows = {"added": [name for name in new_windows if name not in old_windows],
               "removed": [name for name in old_windows if name not in new_windows], "relaxed": [], "changed": []}
    for name, window in new_windows.items():
        previous = old_windows.get(name)
        if previous is None:
            continue
        is_relaxed, window_changes = _window_changes(before, previous, after, window)
        if window_changes:
            windows["changed"].append({"name": name, "relaxed": is_relaxed, "changes": window_changes})
            if is_relaxed:
                windows["relaxed"].append(name)
    return {"collisions": collisions, "blast_radius": blast_radius, "maintenance_windows": windows}


def _window_changes(old_rules, old, new_rules, new):
    """``(relaxed, changes)`` between two versions of one maintenance window."""
    changes, relaxed = [], False
    was, now = old.schedule, new.schedule
    if (was.kind, was.text, was.start, was.timezone) != (now.kind, now.text, now.start, now.timezone):
        # when a recurrence falls cannot be compared by meaning: a person looks at it
        changes.append("schedule %s -> %s" % (was.describe(), now.describe()))
        relaxed = True
    elif was.duration != now.duration:
        changes.append("duration %s -> %s" % (describe_duration(was.duration), describe_duration(now.duration)))
        relaxed = relaxed or now.duration < was.duration
    for key in WINDOW_TARGETS:
        before, after = old.targets.get(key) or [], new.targets.get(key) or []
        gone = [item for item in before if item not in after]
        if gone:
            changes.append("%s removed: %s" % (key, ", ".join(gone)))
            relaxed = True
        added = [item for item in after if item not in before]
        if added:
            changes.append("%s added: %s" % (key, ", ".join(added)))
    for change_type in CHANGE_TYPES:
        was_action = old_rules.action("maintenance_windows", change_type, old)
        now_action = new_rules.action("maintenance_windows", change_type, new)
        if old.actions.get(change_type) != new.actions.get(change_type) and was_action != now_action:
            changes.append("action for %s changes: %s -> %s" % (change_type, was_action, now_action))
            relaxed = relaxed or _more_permissive(was_action, now_action)
    for key in ("owner", "description"):
        if getattr(old, key) != getattr(new, key):
            changes.append("%s changed" % key)
    return relaxed, changes


def _show(value):
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[%s]" % ", ".join(str(item) for item in value)
    return str(value)


def summary_lines(summary, new=None):
    """The summary as lines a person reads in a diff or a message."""
    lines = []
    templates = summary["templates"]
    if summary.get("first_version") and new is not None:
        lines.append("first published version: %d templates, protected areas %s, %d freezes, %d maintenance windows"
                     % (len(new.templates), ", ".join(area.name for area in new.protected_areas) or "none",
                        len(new.freezes), len(new.intelligence.maintenance_windows)))
        return lines
    for label, key in (("templates added", "added"), ("templates removed", "removed")):
        if templates[key]:
            lines.append("%s: %s" % (label, ", ".join(templates[key])))
    for change in templates["changed"]:
        lines.append("template %s %s: %s" % (change["name"], "WIDENED" if change["widened"] else "changed",
                                             "; ".join(change["changes"])))
    areas = summary["protected_areas"]
    if areas["added"]:
        lines.append("protected areas added: %s" % ", ".join(areas["added"]))
    if areas["removed"]:
        lines.append("protected areas REMOVED: %s" % ", ".join(areas["removed"]))
    for change in areas["changed"]:
        lines.append("protected area %s %s: %s" % (change["name"], "WEAKENED" if change["weakened"] else "changed",
                                                   "; ".join(change["changes"])))
    freezes = summary["freezes"]
    for label, key in (("freezes added", "added"), ("freezes removed", "removed"), ("freezes changed", "changed")):
        if freezes[key]:
            lines.append("%s: %s" % (label, ", ".join(freezes[key])))
    lines.extend(_intelligence_lines(summary))
    lines.extend("rule %s" % rule for rule in summary["rules"])
    return lines or ["no change in meaning (text only)"]


def _intelligence_lines(summary):
    """Lines of the change intelligence parts (a summary recorded before they existed has none)."""
    lines = []
    collisions = summary.get("collisions") or {}
    if collisions.get("changes"):
        lines.append("collisions %s: %s" % ("RELAXED" if collisions["relaxed"] else "changed",
                                            "; ".join(collisions["changes"])))
    radius = summary.get("blast_radius") or {}
    if radius.get("changes"):
        lines.append("blast radius %s: %s" % ("NARROWED" if radius["narrowed"] else "changed",
                                              "; ".join(radius["changes"])))
    windows = summary.get("maintenance_windows") or {}
    if windows.get("added"):
        lines.append("maintenance windows added: %s" % ", ".join(windows["added"]))
    if windows.get("removed"):
        lines.append("maintenance windows REMOVED: %s" % ", ".join(windows["removed"]))
    for change in windows.get("changed") or ():
        lines.append("maintenance window %s %s: %s" % (change["name"], "RELAXED" if change["relaxed"] else "changed",
                                                       "; ".join(change["changes"])))
    return lines
