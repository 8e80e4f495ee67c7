# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CMDB operations: register_host, configuration_item, configuration_item_info, the inventory.

PRIVATE to the collection. Every write is a batch of ``ci.*`` ledger entries
appended atomically (see docs/architecture.md); check mode computes the same
entries and the predicted CI without appending them.
"""

from __future__ import annotations

import math
import re
import uuid

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import parse_time, to_plain, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import (
    IDENTITY_ORDER,
    ci_identities,
    host_identities,
    identify_host,
    name_identity,
    refuse_held_identities,
    release_entries_data,
)
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import (
    compile_attribute_map,
    compile_expression,
    map_facts,
    NAME_LIST_ATTRIBUTES,
    name_list,
    normalise_attributes,
    search,
    validate_attribute_name,
)
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.durations import parse_duration
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError, NotFound, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import graph
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.cmdb_push import (
    after_ci_write,
    cmdb_push_argument_spec,
)

STATUSES = ["planned", "operational", "maintenance", "non_operational", "retired"]
DEFAULT_RELATIONSHIP_TYPES = ["runs_on", "depends_on", "hosted_on", "member_of"]
#: columns the projection indexes; everything else is a free attribute
CORE_ATTRIBUTES = ("name", "class", "status", "environment")
DEFAULT_CLASS = "cmdb_ci"
#: how many times a write is recomputed when another writer got there first
WRITE_ATTEMPTS = 3

REGISTER_HOST_SPEC = dict(
    backend_argument_spec(),
    name=dict(type="str"),
    attributes=dict(type="dict", default={}),
    attribute_map=dict(type="dict", default={}),
    default_mapping=dict(type="bool", default=True),
    environment=dict(type="str"),
    owner=dict(type="str"),
    support_group=dict(type="str"),
    services=dict(type="list", elements="str"),
    tags=dict(type="list", elements="str"),
    status=dict(type="str", choices=STATUSES),
    identify_by=dict(type="list", elements="str", choices=list(IDENTITY_ORDER), default=list(IDENTITY_ORDER)),
    last_seen_refresh=dict(type="str", default="24h"),
    **cmdb_push_argument_spec()
)

CONFIGURATION_ITEM_SPEC = dict(
    backend_argument_spec(),
    name=dict(type="str"),
    ci_id=dict(type="str"),
    ci_class=dict(type="str", aliases=["class"]),
    state=dict(type="str", choices=["present", "retired", "absent"], default="present"),
    attributes=dict(type="dict", default={}),
    relationships=dict(type="list", elements="dict", default=[], options=dict(
        type=dict(type="str", required=True),
        target=dict(type="str", required=True),
        target_class=dict(type="str"),
    )),
    purge_relationships=dict(type="bool", default=False),
    relationship_types=dict(type="list", elements="str", default=list(DEFAULT_RELATIONSHIP_TYPES)),
    force=dict(type="bool", default=False),
    reason=dict(type="str"),
    **cmdb_push_argument_spec()
)
CONFIGURATION_ITEM_REQUIRED_ONE_OF = [["name", "ci_id"]]

CONFIGURATION_ITEM_INFO_SPEC = dict(
    backend_argument_spec(),
    ci_id=dict(type="str"),
    name=dict(type="list", elements="str"),
    ci_class=dict(type="list", elements="str", aliases=["class"]),
    environment=dict(type="list", elements="str"),
    status=dict(type="list", elements="str", choices=STATUSES),
    service=dict(type="str"),
    filter=dict(type="str"),
    related_to=dict(type="dict", options=dict(
        ci=dict(type="str", required=True),
        ci_class=dict(type="str"),
        types=dict(type="list", elements="str"),
        direction=dict(type="str", choices=["inbound", "outbound", "both"], default="inbound"),
        transitive=dict(type="bool", default=False),
        max_depth=dict(type="int"),
    )),
    include_history=dict(type="bool", default=False),
    history_limit=dict(type="int", default=100),
    limit=dict(type="int"),
)


def new_ci_id():
    return "ci-" + uuid.uuid4().hex[:20]


def parse_refresh(value, field="last_seen_refresh"):
    """``24h``/``7d``/``0`` (and a bare number of seconds) -> timedelta; ``never`` -> None."""
    text = str(value).strip().lower()
    if text == "never":
        return None
    delta = parse_duration(text, allow_zero=True, bare_seconds=True)
    if delta is None:
        raise ValidationError("%s: %r is neither a duration (30m, 24h, 7d, 0) nor 'never'" % (field, value),
                              field=field, value=value)
    return delta


def require_finite(value, field):
    """Refuse NaN and infinities anywhere in ``value``, naming where (``attributes.metrics.load[2]``).

    The system of record stores canonical JSON, which has no NaN or infinity; without this check the
    write failed with Python's "Out of range float values are not JSON compliant", naming no field.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError("%s: %r is not a finite number; the system of record stores JSON, which has no NaN or"
                              " infinity (store it as a string, or leave it out)" % (field, value),
                              field=field, value=repr(value))
    if isinstance(value, dict):
        for key, item in value.items():
            require_finite(key, "%s (a key)" % field)
            require_finite(item, "%s.%s" % (field, key))
    elif isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            require_finite(item, "%s[%d]" % (field, index))


def validate_attributes(attributes, field="attributes"):
    if not isinstance(attributes, dict):
        raise ValidationError("%s must be a dictionary, got %s" % (field, type(attributes).__name__), field=field)
    require_finite(attributes, field)
    for key, value in attributes.items():
        validate_attribute_name(field, key)
        if key in ("name", "class") and value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValidationError("%s.%s must be a non-empty string, got %r" % (field, key, value),
                                  field="%s.%s" % (field, key), value=value)
        if key == "name" and value is None:
            raise ValidationError("%s.name cannot be removed: every CI has a name" % field, field=field)
        if key == "status" and value is not None and value not in STATUSES:
            raise ValidationError("%s.status must be one of %s, got %r" % (field, ", ".join(STATUSES), value),
                                  field="%s.status" % field, value=value)
        if key == "environment" and value is not None and not isinstance(value, str):
            raise ValidationError("%s.environment must be a string, got %r" % (field, value),
                                  field="%s.environment" % field, value=value)
    attributes = dict(attributes)
    for key in NAME_LIST_ATTRIBUTES:
        if attributes.get(key) is not None:
            attributes[key] = name_list(attributes[key], "%s.%s" % (field, key))
    return to_plain(attributes)


def attribute_changes(current, desired):
    """``{attr: {from, to}}`` turning ``current`` into ``desired`` (None in desired removes)."""
    changes = {}
    for key in sorted(desired):
        new = desired[key]
        old = current.get(key)
        if new is None:
            if key in current:
                changes[key] = {"from": old, "to": None}
        elif key not in current or old != new:
            changes[key] = {"from": old, "to": new}
    return changes


def apply_changes(attributes, changes):
    result = dict(attributes)
    for key, change in changes.items():
        if change["to"] is None:
            result.pop(key, None)
        else:
            result[key] = change["to"]
    return result


def ci_view(ci):
    """The CI as modules return it (attributes plus metadata)."""
    if ci is None:
        return None
    keys = ("ci_id", "name", "class", "status", "environment", "version", "created_at", "updated_at",
            "last_change_run_id")
    view = dict((key, ci.get(key)) for key in keys)
    view["attributes"] = dict(ci.get("attributes") or {})
    if "identities" in ci:
        view["identities"] = dict(ci["identities"])
    if "relationships" in ci:
        view["relationships"] = list(ci["relationships"])
    return view


def predicted_ci(ci, attributes, identities, run_id, now, ci_id=None):
    """What the CI will look like after the write (for check mode and the result)."""
    base = dict(ci or {})
    predicted = {
        "ci_id": base.get("ci_id") or ci_id,
        "attributes": attributes,
        "identities": identities if identities is not None else base.get("identities", {}),
        "version": (base.get("version") or 0) + 1,
        "created_at": base.get("created_at") or now,
        "updated_at": now,
        "last_change_run_id": run_id or base.get("last_change_run_id"),
    }
    if "relationships" in base:
        predicted["relationships"] = base["relationships"]
    for key in CORE_ATTRIBUTES:
        predicted[key] = attributes.get(key)
    return predicted


def _append(ctx, entries):
    if entries and not ctx.check_mode:
        ctx.sor.append(entries)


class _StaleWrite(Exception):
    """A projection refused the batch: usually a concurrent writer got there first."""

    def __init__(self, conflict):
        super(_StaleWrite, self).__init__(conflict.message)
        self.conflict = conflict


def _with_retries(attempt):
    """Run ``attempt()``, recomputing it from fresh reads when a concurrent write invalidated it.

    A conflict that survives every attempt is not a race but a real clash; its
    own message is the error.
    """
    for remaining in range(WRITE_ATTEMPTS - 1, -1, -1):
        try:
            return attempt()
        except _StaleWrite as stale:
            if remaining == 0:
                raise stale.conflict
    return None  # pragma: no cover


def _append_or_stale(ctx, entries):
    """Append; a projection conflict means someone wrote first: let the caller recompute once more."""
    try:
        _append(ctx, entries)
    except ConflictError as exc:
        raise _StaleWrite(exc)


# --------------------------------------------------------------------------
# register_host
# --------------------------------------------------------------------------
def desired_host_attributes(params, facts, host):
    """Attributes the host should have: mapped facts < dedicated options < explicit ``attributes``."""
    user_map = compile_attribute_map(params.get("attribute_map") or {})
    explicit = validate_attributes(params.get("attributes") or {})
    desired = map_facts(facts or {}, user_map, use_defaults=params.get("default_mapping", True))
    for key in NAME_LIST_ATTRIBUTES:
        if key in desired:
            desired[key] = name_list(desired[key], "attribute_map.%s" % key)
    for option in ("environment", "owner", "support_group", "services", "tags", "status"):
        if params.get(option) is not None:
            desired[option] = params[option]
    desired.update(explicit)
    name = params.get("name") or explicit.get("name") or host or desired.get("hostname")
    if not name:
        raise ValidationError("name: cannot tell the host's name; set name (or run through a play)", field="name")
    desired["name"] = str(name)
    return normalise_attributes(to_plain(desired))


def _last_seen_due(current, refresh, now):
    if refresh is None:
        return False
    seen = current.get("last_seen")
    if not seen:
        return True
    try:
        return parse_time(now) - parse_time(seen) >= refresh
    except (TypeError, ValueError):
        return True


def _stored_identities(ci):
    return dict((ci or {}).get("identities") or {})


def register_host(ctx):
    """Register (create or update) the current host as a CI; idempotent."""
    params = ctx.params
    refresh = parse_refresh(params.get("last_seen_refresh", "24h"))
    # The user's order is the rule set, as in a CMDB's identification rules:
    # the first identity listed that an existing CI holds picks the CI.
    order = []
    for kind in params.get("identify_by") or IDENTITY_ORDER:
        if kind not in order:
            order.append(kind)
    desired = desired_host_attributes(params, getattr(ctx, "facts", None), ctx.host)
    host = ctx.host or desired["name"]
    known = {
        "play_hosts": ctx.task_vars.get("ansible_play_hosts_all") or (),
        # groups.all is the whole inventory whatever --limit says: a clone run
        # on its own must still meet the host whose identity it copied.
        "inventory_hosts": (ctx.task_vars.get("groups") or {}).get("all") or (),
    }

    def attempt():
        return _register_once(ctx, desired, order, refresh, host, known)

    # with ServiceNow configured: IRE's query variant in check mode, the outbox otherwise
    return after_ci_write(ctx, _with_retries(attempt), host)


def _register_once(ctx, desired, order, refresh, host, known):
    now = utc_now()
    desired = dict(desired)
    claimed = host_identities(dict(desired, **{"class": desired.get("class") or "server"}), order)
    match = identify_host(ctx.sor, host, claimed, order, **known)
    ci = match.ci
    entries = []
    for update in release_entries_data(ctx.sor, match.released, ctx.run_id):
        entries.append(Entry("ci.updated", update["ci_id"], update, actor=ctx.actor))

    if ci is None:
        desired.setdefault("class", "server")
        desired.setdefault("status", "operational")
        attributes = dict((key, value) for key, value in desired.items() if value is not None)
        attributes["last_seen"] = now
        identities = host_identities(attributes, order)
        ci_id = new_ci_id()
        entries.append(Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": attributes,
                                                   "identities": identities, "run_id": ctx.run_id},
                             actor=ctx.actor))
        after = predicted_ci(None, attributes, identities, ctx.run_id, now, ci_id=ci_id)
        _append_or_stale(ctx, entries)
        result = {"changed": True, "created": True, "ci_id": ci_id, "matched_by": None,
                  "changes": attribute_changes({}, attributes), "ci": ci_view(after)}
        if ctx.diff:
            result["diff"] = {"before": {}, "after": attributes,
                              "before_header": "CI (none)", "after_header": "CI %s (%s)" % (ci_id, attributes["name"])}
        return result

    current = dict(ci.get("attributes") or {})
    if current.get("status") == "retired" and ctx.params.get("status") is None and "status" not in (
            ctx.params.get("attributes") or {}):
        ctx.warn("CI %s (%s) is retired; register_host leaves it retired. Set status: operational to bring it "
                 "back into service" % (ci["ci_id"], current.get("name")))
    changes = attribute_changes(current, desired)
    # last_seen moves with every real change, and on its own only once it is
    # older than last_seen_refresh: a re-run minutes later writes nothing.
    if changes or _last_seen_due(current, refresh, now):
        changes["last_seen"] = {"from": current.get("last_seen"), "to": now}
    attributes = apply_changes(current, changes)
    identities = host_identities(attributes, order)
    identities_changed = identities != _stored_identities(ci)
    if not changes and not identities_changed and not entries:
        return {"changed": False, "created": False, "ci_id": ci["ci_id"], "matched_by": match.matched_by,
                "changes": {}, "ci": ci_view(ci)}
    data = {"ci_id": ci["ci_id"], "base_version": ci["version"], "changes": changes, "run_id": ctx.run_id}
    if identities_changed:
        data["identities"] = identities
    entries.append(Entry("ci.updated", ci["ci_id"], data, actor=ctx.actor))
    _append_or_stale(ctx, entries)
    after = predicted_ci(ci, attributes, identities, ctx.run_id, now)
    result = {"changed": True, "created": False, "ci_id": ci["ci_id"], "matched_by": match.matched_by,
              "changes": changes, "ci": ci_view(after)}
    if identities_changed:
        result["identities"] = {"from": _stored_identities(ci), "to": identities}
    if ctx.diff:
        result["diff"] = {"before": current, "after": attributes,
                          "before_header": "CI %s (%s)" % (ci["ci_id"], current.get("name")),
                          "after_header": "CI %s (%s)" % (ci["ci_id"], attributes.get("name"))}
    return result


# --------------------------------------------------------------------------
# finding CIs by reference (configuration_item, relationships, info)
# --------------------------------------------------------------------------
def resolve_ci(sor, reference, ci_class=None, field="ci"):
    """A CI by ``ci_id`` or by name (and class when names are shared); None when there is none."""
    if reference is None or str(reference).strip() == "":
        raise ValidationError("%s: a CI name or ci_id is required" % field, field=field)
    reference = str(reference).strip()
    if reference.startswith("ci-"):
        ci = sor.get_ci(reference)
        if ci is not None:
            return ci
    if ci_class:
        holder = sor.find_ci_by_identity("name", name_identity(ci_class, reference))
        if holder is not None:
            ci = sor.get_ci(holder)
            if ci is not None and ci.get("class") == ci_class:
                return ci
        candidates = sor.find_cis(name=reference, ci_class=ci_class)
    else:
        candidates = sor.find_cis(name=reference)
    if not candidates:
        return None
    if len(candidates) > 1:
        raise ValidationError(
            "%s: %d CIs are named %r (%s); say which with its class or ci_id"
            % (field, len(candidates), reference,
               ", ".join("%s %s" % (ci["class"], ci["ci_id"]) for ci in candidates)),
            field=field, value=reference)
    return sor.get_ci(candidates[0]["ci_id"])


# --------------------------------------------------------------------------
# configuration_item
# --------------------------------------------------------------------------
def _relationship_types(params):
    types = [str(kind).strip() for kind in params.get("relationship_types") or DEFAULT_RELATIONSHIP_TYPES]
    for kind in types:
        if not re.match(r"^[a-z][a-z0-9_]*$", kind):
            raise ValidationError("relationship_types: %r is not a valid type name (lower case, digits, _)" % kind,
                                  field="relationship_types", value=kind)
    return types


def _desired_relationships(sor, params, self_ci_id, self_name):
    """Validate ``relationships`` and resolve their targets: ``[(type, target_ci)]``."""
    types = _relationship_types(params)
    resolved = []
    for index, item in enumerate(params.get("relationships") or []):
        field = "relationships[%d]" % index
        if not isinstance(item, dict):
            raise ValidationError("%s must be a dictionary with type and target, got %r" % (field, item), field=field)
        kind = item.get("type")
        if kind not in types:
            raise ValidationError("%s.type: unknown relationship type %r; known types: %s (extend them with "
                                  "relationship_types)" % (field, kind, ", ".join(types)),
                                  field=field + ".type", value=kind)
        target = resolve_ci(sor, item.get("target"), item.get("target_class"), field=field + ".target")
        if target is None:
            raise ValidationError("%s.target: no CI %r%s exists; create it first" % (
                field, item.get("target"),
                " of class %s" % item["target_class"] if item.get("target_class") else ""),
                field=field + ".target", value=item.get("target"))
        if target["ci_id"] == self_ci_id or (self_ci_id is None and target.get("name") == self_name
                                             and target.get("class") == params.get("ci_class")):
            raise ValidationError("%s.target: a CI cannot have a relationship with itself" % field,
                                  field=field + ".target", value=item.get("target"))
        resolved.append((kind, target))
    return resolved


def _relationship_view(rel, names):
    return {"source": rel["source"], "type": rel["type"], "target": rel["target"],
            "source_name": names.get(rel["source"]), "target_name": names.get(rel["target"])}


def _ci_names(sor, ci_ids):
    names = {}
    for ci_id in ci_ids:
        if ci_id not in names:
            ci = sor.get_ci(ci_id)
            names[ci_id] = ci.get("name") if ci else None
    return names


def _dependents(sor, ci_id):
    return [rel for rel in sor.get_relationships(ci_id, direction="inbound") if rel["source"] != ci_id]


def configuration_item(ctx):
    return after_ci_write(ctx, _with_retries(lambda: _configuration_item_once(ctx)))


def _configuration_item_once(ctx):
    params = ctx.params
    state = params.get("state") or "present"
    if state not in ("present", "retired", "absent"):
        raise ValidationError("state must be present, retired or absent, got %r" % (state,), field="state", value=state)
    for field in ("name", "ci_id", "ci_class", "reason"):
        value = params.get(field)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValidationError("%s must be a non-empty string, got %r" % (field, value), field=field,
                                  value=repr(value))
    attributes = validate_attributes(params.get("attributes") or {})
    ci_class = params.get("ci_class")
    if params.get("ci_id"):
        ci = ctx.sor.get_ci(params["ci_id"])
        if ci is None and state != "absent":
            raise NotFound("ci_id: no CI %r exists (omit ci_id to create one by name)" % params["ci_id"],
                           field="ci_id", value=params["ci_id"])
    else:
        ci = resolve_ci(ctx.sor, params.get("name"), ci_class, field="name")
    if state == "absent":
        return _remove_ci(ctx, ci)
    if ci is None and state == "retired":
        raise NotFound("cannot retire CI %r: it does not exist" % params.get("name"), field="name",
                       value=params.get("name"))
    return _ensure_ci(ctx, ci, attributes, state)


def _ensure_ci(ctx, ci, attributes, state):
    params = ctx.params
    now = utc_now()
    desired = dict(attributes)
    if params.get("name"):
        desired["name"] = params["name"]
    if params.get("ci_class"):
        desired["class"] = params["ci_class"]
    if state == "retired":
        desired["status"] = "retired"
    elif ci is not None and ci.get("status") == "retired" and "status" not in attributes:
        desired["status"] = "operational"

    entries = []
    if ci is None:
        desired.setdefault("status", "operational")
        if not desired.get("class"):
            raise ValidationError("ci_class: required to create CI %r" % desired.get("name"), field="ci_class")
        new_attributes = dict((key, value) for key, value in desired.items() if value is not None)
        ci_id = new_ci_id()
        identities = ci_identities(new_attributes, changes=attribute_changes({}, new_attributes))
        refuse_held_identities(ctx.sor, ci_id, identities, {}, _identity_fields(params, new_attributes))
        relationships = _desired_relationships(ctx.sor, params, None, new_attributes["name"])
        entries.append(Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": new_attributes,
                                                   "identities": identities, "run_id": ctx.run_id},
                             actor=ctx.actor))
        before_rels = []
        changes = attribute_changes({}, new_attributes)
        before, after_attributes = {}, new_attributes
    else:
        ci_id = ci["ci_id"]
        current = dict(ci.get("attributes") or {})
        changes = attribute_changes(current, desired)
        after_attributes = apply_changes(current, changes)
        stored = dict(ci.get("identities") or {})
        identities = ci_identities(after_attributes, stored, changes)
        refuse_held_identities(ctx.sor, ci_id, identities, stored, _identity_fields(params, after_attributes))
        relationships = _desired_relationships(ctx.sor, params, ci_id, after_attributes.get("name"))
        before_rels = [rel for rel in ci.get("relationships") or [] if rel["source"] == ci_id]
        if changes or identities != stored:
            data = {"ci_id": ci_id, "base_version": ci["version"], "changes": changes, "run_id": ctx.run_id}
            if identities != stored:
                data["identities"] = identities
            entries.append(Entry("ci.updated", ci_id, data, actor=ctx.actor))
        before = current

    wanted = set((kind, target["ci_id"]) for kind, target in relationships)
    existing = set((rel["type"], rel["target"]) for rel in before_rels)
    added = sorted(wanted - existing)
    removed = sorted(existing - wanted) if params.get("purge_relationships") else []
    for kind, target in added:
        entries.append(Entry("ci.relationship_added", ci_id, {"source": ci_id, "type": kind, "target": target},
                             actor=ctx.actor))
    for kind, target in removed:
        entries.append(Entry("ci.relationship_removed", ci_id, {"source": ci_id, "type": kind, "target": target},
                             actor=ctx.actor))
    _append_or_stale(ctx, entries)

    after_rels = sorted((existing | wanted) - set(removed))
    inbound = [rel for rel in (ci or {}).get("relationships") or [] if rel["target"] == ci_id and rel["source"] != ci_id]
    names = _ci_names(ctx.sor, [target for _kind, target in after_rels + sorted(existing)]
                      + [rel["source"] for rel in inbound])
    names[ci_id] = after_attributes.get("name")
    after = predicted_ci(ci, after_attributes, identities, ctx.run_id if changes else None, now, ci_id=ci_id) \
        if entries else dict(ci)
    after = dict(after)
    after["relationships"] = [_relationship_view(rel, names) for rel in
                              [{"source": ci_id, "type": kind, "target": target} for kind, target in after_rels]
                              + inbound]
    result = {"changed": bool(entries), "created": ci is None, "ci_id": ci_id, "changes": changes,
              "relationships_added": [{"type": kind, "target": target, "target_name": names.get(target)}
                                      for kind, target in added],
              "relationships_removed": [{"type": kind, "target": target, "target_name": names.get(target)}
                                        for kind, target in removed],
              "ci": ci_view(after)}
    before_identities = dict((ci or {}).get("identities") or {})
    if ci is not None and identities != before_identities:
        result["identities"] = {"from": before_identities, "to": identities}
    if ctx.diff and entries:
        result["diff"] = {
            "before": dict(before, relationships=["%s %s" % (kind, names.get(target) or target)
                                                  for kind, target in sorted(existing)]) if ci else {},
            "after": dict(after_attributes, relationships=["%s %s" % (kind, names.get(target) or target)
                                                           for kind, target in after_rels]),
            "before_header": "CI %s" % (ci_id if ci else "(none)"),
            "after_header": "CI %s (%s)" % (ci_id, after_attributes.get("name")),
        }
        if "identities" in result:
            # the identities decide which host register_host matches: a change to them is shown
            result["diff"]["before"]["identities"] = before_identities
            result["diff"]["after"]["identities"] = identities
    return result


def _identity_fields(params, attributes):
    """Which option each identity of a configuration_item write comes from, and the value shown."""
    fields = dict((kind, ("attributes.%s" % kind, attributes.get(kind))) for kind in IDENTITY_ORDER)
    fields["name"] = ("name" if params.get("name") else "attributes.name", attributes.get("name"))
    return fields


def _remove_ci(ctx, ci):
    if ci is None:
        return {"changed": False, "created": False, "ci_id": ctx.params.get("ci_id"), "ci": None,
                "changes": {}, "relationships_added": [], "relationships_removed": []}
    ci_id = ci["ci_id"]
    dependents = _dependents(ctx.sor, ci_id)
    names = _ci_names(ctx.sor, [rel["source"] for rel in dependents] + [rel["target"] for rel in ci["relationships"]])
    names[ci_id] = ci.get("name")
    if dependents and not ctx.params.get("force"):
        listed = ", ".join("%s (%s %s)" % (names.get(rel["source"]) or rel["source"], rel["type"], ci.get("name"))
                           for rel in dependents)
        raise ConflictError(
            "CI %s (%s) cannot be removed: %d CI(s) still depend on it: %s. Remove those relationships, retire it "
            "with state: retired, or use force: true" % (ci.get("name"), ci_id, len(dependents), listed),
            ci_id=ci_id, dependents=[_relationship_view(rel, names) for rel in dependents])
    entries = []
    for rel in ci["relationships"]:
        entries.append(Entry("ci.relationship_removed", rel["source"], dict(rel), actor=ctx.actor))
    entries.append(Entry("ci.deleted", ci_id, {"ci_id": ci_id, "reason": ctx.params.get("reason") or (
        "removed with force despite %d dependent(s)" % len(dependents) if dependents else "removed"),
        "run_id": ctx.run_id}, actor=ctx.actor))
    _append_or_stale(ctx, entries)
    result = {"changed": True, "created": False, "ci_id": ci_id, "ci": None, "changes": {},
              "relationships_added": [],
              "relationships_removed": [_relationship_view(rel, names) for rel in ci["relationships"]]}
    if ctx.diff:
        result["diff"] = {"before": dict(ci.get("attributes") or {}), "after": {},
                          "before_header": "CI %s (%s)" % (ci_id, ci.get("name")), "after_header": "CI (removed)"}
    return result


# --------------------------------------------------------------------------
# configuration_item_info and the inventory
# --------------------------------------------------------------------------
def filter_document(ci):
    """What JMESPath filters see: the attributes, plus ci_id and bookkeeping fields."""
    document = dict(ci.get("attributes") or {})
    for key in ("ci_id", "version", "created_at", "updated_at", "last_change_run_id"):
        document[key] = ci.get(key)
    return document


def compiled_filter(expression, field="filter"):
    if expression in (None, ""):
        return None
    return expression, compile_expression(field, expression)


def matches_filter(ci, compiled, field="filter"):
    if compiled is None:
        return True
    value = search(field, compiled[1], compiled[0], filter_document(ci))
    return value not in (None, False, [], {}, "", 0)


def in_service(ci, service):
    if not service:
        return True
    return service in name_list((ci.get("attributes") or {}).get("services"))


def related_ci_ids(sor, start_id, types=None, direction="inbound", transitive=False, max_depth=None):
    """CI ids related to ``start_id`` (not including it), following ``direction``, nearest first.

    The one walk of relationships (``intelligence/graph.py``), which the change gate's blast radius uses too:
    cycle-safe, one query per level; ``transitive`` follows until nothing new (or ``max_depth`` levels).
    """
    depth = (max_depth or None) if transitive else 1
    return graph.walk(sor, [start_id], direction, types=types, max_depth=depth).ids()


def find_configuration_items(sor, names=None, classes=None, environments=None, statuses=None, service=None,
                             expression=None, ci_ids=None, limit=None):
    """CIs matching every filter given (the shared query of the info module and the inventory)."""
    compiled = compiled_filter(expression)
    if ci_ids is not None:
        candidates = [sor.get_ci(ci_id) for ci_id in ci_ids]
        candidates = [ci for ci in candidates if ci is not None and
                      (not names or ci["name"] in names) and (not classes or ci["class"] in classes) and
                      (not environments or ci["environment"] in environments) and
                      (not statuses or ci["status"] in statuses)]
        candidates.sort(key=lambda ci: (ci.get("name") or "", ci["ci_id"]))
    else:
        candidates = sor.find_cis(names=names or None, ci_class=classes or None, environment=environments or None,
                                  status=statuses or None)
    selected = []
    for ci in candidates:
        if not in_service(ci, service) or not matches_filter(ci, compiled):
            continue
        selected.append(ci)
        if limit and len(selected) >= limit:
            break
    return selected


def ci_history(sor, ci_id, limit=None):
    """Ledger entries about one CI, oldest first, each linked to its change event when there is one."""
    history = []
    events = {}
    entries = list(sor.iter_entries(subject=ci_id))
    if limit:
        entries = entries[-limit:]
    for entry in entries:
        item = {"seq": entry.seq, "entry_id": entry.id, "at": entry.at, "kind": entry.kind, "actor": entry.actor,
                "data": entry.data}
        run_id = (entry.data or {}).get("run_id")
        if run_id:
            if run_id not in events:
                event = sor.get_change_event(run_id)
                # dry_run: a check-mode run changed nothing, though ledgers from before the recorder
                # stopped linking check-mode results to CIs hold such links
                keys = ("run_id", "playbook", "status", "dry_run", "started_at", "ended_at", "user", "authorisation",
                        "authorisation_ref")
                events[run_id] = None if event is None else dict((key, event.get(key)) for key in keys)
            item["change_event"] = events[run_id]
        history.append(item)
    return history


def configuration_item_info(ctx):
    params = ctx.params
    sor = ctx.sor
    if params.get("limit") is not None and params["limit"] < 1:
        raise ValidationError("limit must be at least 1, got %r" % params["limit"], field="limit")
    if params.get("history_limit") is not None and params["history_limit"] < 1:
        raise ValidationError("history_limit must be at least 1, got %r" % params["history_limit"],
                              field="history_limit")
    ci_ids = None
    if params.get("ci_id"):
        ci_ids = [params["ci_id"]]
    related = params.get("related_to")
    anchor = None
    if related:
        anchor = resolve_ci(sor, related.get("ci"), related.get("ci_class"), field="related_to.ci")
        if anchor is None:
            raise NotFound("related_to.ci: no CI %r exists" % related.get("ci"), field="related_to.ci",
                           value=related.get("ci"))
        if related.get("max_depth") is not None and related["max_depth"] < 1:
            raise ValidationError("related_to.max_depth must be at least 1, got %r" % related["max_depth"],
                                  field="related_to.max_depth")
        reachable = related_ci_ids(sor, anchor["ci_id"], related.get("types"), related.get("direction") or "inbound",
                                   related.get("transitive"), related.get("max_depth"))
        ci_ids = reachable if ci_ids is None else [ci_id for ci_id in ci_ids if ci_id in reachable]
    found = find_configuration_items(
        sor, names=params.get("name"), classes=params.get("ci_class"), environments=params.get("environment"),
        statuses=params.get("status"), service=params.get("service"), expression=params.get("filter"),
        ci_ids=ci_ids, limit=params.get("limit"))
    items = []
    names = {}
    for ci in found:
        full = sor.get_ci(ci["ci_id"]) or ci
        names[full["ci_id"]] = full.get("name")
        missing = [rel["source"] if rel["target"] == full["ci_id"] else rel["target"]
                   for rel in full.get("relationships") or []]
        names.update(_ci_names(sor, [ci_id for ci_id in missing if ci_id not in names]))
        view = ci_view(full)
        view["relationships"] = [_relationship_view(rel, names) for rel in full.get("relationships") or []]
        if params.get("include_history"):
            view["history"] = ci_history(sor, full["ci_id"], params.get("history_limit"))
        items.append(view)
    result = {"changed": False, "configuration_items": items}
    if anchor is not None:
        result["related_to"] = ci_view(anchor)
    return result
