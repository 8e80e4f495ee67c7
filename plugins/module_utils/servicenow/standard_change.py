# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Standard changes from ServiceNow templates: the one way the collection creates them.

Two callers share :func:`ensure_standard_change`:

* the ``servicenow_change`` module (:func:`servicenow_change`): a play asks for a standard CHG
  from a template, then names it to the gate (``change_gate: change_request: "{{ chg.number }}"``)
  like any CHG the CAB approved;
* the gate (``authority.py``): a policy template naming ``servicenow_template`` authorises a
  run that named no CHG.

Either way the CHG is found again by its ``correlation_id`` (so asking twice creates one),
created through the Change API from the template (``POST /sn_chg_rest/change/standard/{id}``;
servicenow.itsm #310: a Table API insert does not apply the template), given the hosts' CIs as
affected CIs (only those missing), and walked forward to the wanted state with the state read back
after every step (a 200 that changed nothing is an error quoting ``nextstates``). Never backwards:
a CHG already further along is left as it is.
"""

from __future__ import annotations

import datetime

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import find_host_cis
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.change import (
    STATE_NAMES,
    STATE_PATHS,
    ChangeAPI,
    to_sn_time,
)
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.client import Client
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import ServiceNowConflict
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import (
    ansible_config_file,
    controller_settings,
    instance_argument_spec,
)
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.table import value_of

#: a standard change's path through the legacy state model (new, scheduled, implement, review, closed)
STANDARD_PATH = STATE_PATHS["standard"]
#: the states the module walks a standard change to (review and closing belong to the recorder, after the run)
TARGET_STATES = ("new", "scheduled", "implement")
#: ServiceNow's correlation_id is a 100-character string
CORRELATION_LENGTH = 100

SERVICENOW_CHANGE_SPEC = dict(
    backend_argument_spec(),
    template=dict(type="str", required=True),
    state=dict(type="str", choices=list(TARGET_STATES), default="scheduled"),
    hosts=dict(type="list", elements="str", default=[]),
    correlation_id=dict(type="str"),
    short_description=dict(type="str"),
    planned_start=dict(type="str"),
    planned_duration=dict(type="int", default=240),
    **instance_argument_spec()
)


def ensure_standard_change(change, template, correlation_id, values, ci_sys_ids, state, check_mode=False):
    """The standard CHG with ``correlation_id``, made from ``template`` (name or sys_id) when there is none,
    with ``ci_sys_ids`` among its affected CIs and at least in ``state``.

    Returns ``{changed, created, sys_id, number, state, template_sys_id, cis_added, before, warnings}``;
    ``before`` is None when the CHG did not exist. In ``check_mode`` only reads are sent and the answer says
    what would be done (``sys_id``/``number`` None for a CHG that would be created)."""
    outcome = {"changed": False, "created": False, "cis_added": [], "warnings": [],
               "template_sys_id": change.find_template(template)}
    existing = change.find_by_correlation(correlation_id)
    if existing is None:
        outcome.update(changed=True, created=True, before=None, cis_added=sorted(set(ci_sys_ids)))
        if check_mode:
            outcome.update(sys_id=None, number=None, state=state)
            return outcome
        created = change.create("standard", dict(values, correlation_id=correlation_id,
                                                 correlation_display="changeops"), template=outcome["template_sys_id"])
        sys_id, number = created["sys_id"], created.get("number")
        current = STATE_NAMES.get(created.get("state"), created.get("state")) or "new"
    else:
        sys_id, number = value_of(existing["sys_id"]), value_of(existing.get("number"))
        record = change.read(sys_id) or {}
        if (record.get("type") or "standard") != "standard":
            raise ServiceNowConflict("%s carries correlation_id %s but is a %s change, not a standard one; use "
                                     "another correlation_id" % (number, correlation_id, record.get("type")),
                                     kind="item_error")
        current = STATE_NAMES.get(record.get("state"), record.get("state"))
        present = change.affected_ci_sys_ids(sys_id)
        outcome["before"] = {"number": number, "state": current, "affected_ci_sys_ids": sorted(present)}
        outcome["cis_added"] = sorted(set(ci for ci in ci_sys_ids if ci not in present))
    outcome.update(sys_id=sys_id, number=number)
    behind = current in STANDARD_PATH and STANDARD_PATH.index(current) < STANDARD_PATH.index(state)
    if outcome["cis_added"] or behind:
        outcome["changed"] = True
    if current not in STANDARD_PATH or (current in STANDARD_PATH and STANDARD_PATH.index(current) >
                                        STANDARD_PATH.index(state)):
        outcome["warnings"].append("%s is %s already, past %s: left as it is (a new correlation_id makes a new "
                                   "standard change)" % (number, current, state))
    if check_mode:
        outcome["state"] = state if behind else current
        return outcome
    if outcome["cis_added"]:
        change.associate_cis(sys_id, outcome["cis_added"])
    if behind:
        record = change.move_to(sys_id, number, state)
        current = STATE_NAMES.get(record.get("state"), record.get("state"))
        if current != state:
            raise ServiceNowConflict("%s is %s, not %s" % (number, current, state), kind="state_unchanged")
    outcome["state"] = current
    return outcome


# --------------------------------------------------------------------------------------------------
# the servicenow_change module
# --------------------------------------------------------------------------------------------------
def _correlation_id(ctx, template):
    if ctx.params.get("correlation_id"):
        return ctx.params["correlation_id"]
    if not ctx.run_id:
        raise ValidationError("correlation_id is required when the run is not recorded by the change_recorder "
                              "callback (no run id to derive it from); name this standard change, for example "
                              "correlation_id: patching-2026-12", field="correlation_id")
    return ("changeops-%s-std-%s" % (ctx.run_id, template))[:CORRELATION_LENGTH]


def _window(params):
    duration = params.get("planned_duration")
    if duration is None or duration < 1:
        raise ValidationError("planned_duration must be at least 1 minute, got %r" % duration,
                              field="planned_duration", value=duration)
    if params.get("planned_start"):
        try:
            start = parse_time(params["planned_start"])
        except (TypeError, ValueError):
            raise ValidationError("planned_start must be an ISO 8601 time with a time zone (2026-12-05T14:00:00Z), "
                                  "got %r" % params["planned_start"], field="planned_start",
                                  value=params["planned_start"])
        if start.tzinfo is None:
            raise ValidationError("planned_start %r has no time zone; add Z or an offset" % params["planned_start"],
                                  field="planned_start", value=params["planned_start"])
    else:
        start = datetime.datetime.now(datetime.timezone.utc)
    start = start.astimezone(datetime.timezone.utc)
    return start, start + datetime.timedelta(minutes=duration)


def _ci_sys_ids(sor, hosts):
    """``{host: ServiceNow sys_id}`` of the hosts' CIs; a host without one is an error naming it."""
    found = find_host_cis(sor, hosts) if hosts else {}
    sys_ids = {}
    for host in hosts:
        ci = found.get(host)
        if ci is None:
            raise ValidationError("hosts: %s has no configuration item in the system of record; register it first "
                                  "(changeops.itsm.register_host)" % host, field="hosts", value=host)
        sys_id = (ci.get("attributes") or {}).get("servicenow_sys_id")
        if not sys_id:
            raise ValidationError("hosts: %s (CI %s) is not in ServiceNow's CMDB yet: register it with "
                                  "servicenow_push: now, or run changeops.itsm.servicenow_sync first"
                                  % (host, ci.get("ci_id")), field="hosts", value=host)
        sys_ids[host] = sys_id
    return sys_ids


def servicenow_change(ctx):
    params = ctx.params
    template = params["template"]
    if not str(template).strip():
        raise ValidationError("template must name a standard change template (its name or sys_id)", field="template",
                              value=template)
    settings = controller_settings(params.get("instance"), ansible_config_file())
    settings.check_complete("servicenow_change instance")
    correlation_id = _correlation_id(ctx, template)
    start, end = _window(params)
    hosts = list(dict.fromkeys(params.get("hosts") or []))
    sys_ids = _ci_sys_ids(ctx.sor, hosts)
    values = {"short_description": params.get("short_description") or "changeops: standard change '%s'" % template,
              "start_date": to_sn_time(format_time(start)), "end_date": to_sn_time(format_time(end))}
    if settings.get("assignment_group"):
        values["assignment_group"] = settings["assignment_group"]
    client = Client(settings)
    try:
        outcome = ensure_standard_change(ChangeAPI(client), template, correlation_id, values,
                                         [sys_ids[host] for host in hosts], params["state"],
                                         check_mode=ctx.check_mode)
    finally:
        client.close()
    for warning in outcome["warnings"]:
        ctx.warn(warning)
    by_sys_id = dict((sys_id, host) for host, sys_id in sys_ids.items())
    record = {"number": outcome["number"], "sys_id": outcome["sys_id"], "state": outcome["state"], "type": "standard",
              "template": template, "template_sys_id": outcome["template_sys_id"], "correlation_id": correlation_id,
              "instance": settings.base_url}
    result = {"changed": outcome["changed"], "created": outcome["created"], "number": outcome["number"],
              "sys_id": outcome["sys_id"], "state": outcome["state"], "change_request": record,
              "cis_added": [by_sys_id.get(ci, ci) for ci in outcome["cis_added"]]}
    if outcome["created"]:
        verb = "would create" if ctx.check_mode else "created"
        result["msg"] = "%s standard change %s from template %r (%s), %s, %d affected CI%s" % (
            verb, outcome["number"] or "(a new CHG)", template, settings.describe(), outcome["state"],
            len(outcome["cis_added"]), "" if len(outcome["cis_added"]) == 1 else "s")
    elif outcome["changed"]:
        result["msg"] = "%s %s: %d affected CI%s added, %s" % (
            "would update" if ctx.check_mode else "updated", outcome["number"], len(outcome["cis_added"]),
            "" if len(outcome["cis_added"]) == 1 else "s", outcome["state"])
    else:
        result["msg"] = "%s is in place (%s)" % (outcome["number"], outcome["state"])
    if ctx.diff:
        before = outcome.get("before")
        after = {"number": outcome["number"] or "(new)", "state": outcome["state"],
                 "affected_ci_sys_ids": sorted(set((before or {}).get("affected_ci_sys_ids", [])) |
                                               set(outcome["cis_added"]))}
        result["diff"] = {"before": before or {}, "after": after,
                          "before_header": "%s (correlation_id %s)" % (
                              (before or {}).get("number") or "no standard change", correlation_id),
                          "after_header": "%s (correlation_id %s)" % (after["number"], correlation_id)}
    return result


__all__ = ["ensure_standard_change", "servicenow_change", "SERVICENOW_CHANGE_SPEC", "ChangeopsError"]
