# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""register_host and configuration_item with ServiceNow configured: what each task does with IRE.

* **Check mode** asks IRE's query variant (``/identifyreconcile/query``, nothing is
  committed) what it would do with the predicted CI, and reports it; a
  ``MULTI_MATCH`` or an item error fails the task naming the host and the
  identifier rule. A CI that would not change and already has its sys_id costs no
  request.
* **A real run** writes the ledger as always; the CI reaches ServiceNow through the
  outbox. With ``servicenow_push: deferred`` (the default) the recorder delivers it
  at the end of the run, with every other CI of the run, a hundred per IRE request.
  With ``servicenow_push: now`` the task drains the outbox itself (waiting for a
  drain another host's task holds, which delivers its CI too) and fails when
  ServiceNow refused its CI, naming the host and the identifier rule.

Never does an unreachable or rate-limited ServiceNow fail the task: it warns, and
the CI waits in the outbox.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.errors import BackendUnavailable, ConfigurationError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.client import Client
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import (
    ServiceNowConflict,
    ServiceNowError,
)
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.ire import IRE, Mapper, host_label
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.outbox import Outbox, SorCooldown
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import (
    ansible_config_file,
    controller_settings,
    instance_argument_spec,
)

PUSH_MODES = ("deferred", "now")


def cmdb_push_argument_spec():
    spec = dict(instance_argument_spec())
    spec["servicenow_push"] = dict(type="str", choices=list(PUSH_MODES), default="deferred")
    return spec


def after_ci_write(ctx, result, host=None):
    """Add ``result["servicenow"]`` (and fail on a refused CI) when ServiceNow is configured; else nothing."""
    settings = controller_settings(ctx.params.get("instance"), ansible_config_file())
    if not settings.wanted or not result.get("ci"):
        return result
    # incomplete settings are not checked here: a deferred CI needs no request, and the query or the
    # delivery below turns them into a warning (the gate is where they deny)
    ci = result["ci"]
    label = host_label(dict(ci, name=host or ci.get("name")))
    attributes = ci.get("attributes") or {}
    known = {"sys_id": attributes.get("servicenow_sys_id"), "class": attributes.get("servicenow_class")}
    if ctx.check_mode:
        result["servicenow"] = _query(ctx, settings, ci, label, known, changed=result.get("changed"))
        return result
    if (ctx.params.get("servicenow_push") or "deferred") == "now" and (result.get("changed") or not known["sys_id"]):
        result["servicenow"] = _push_now(ctx, settings, ci, label)
        return result
    result["servicenow"] = dict(known, status="queued" if result.get("changed") or not known["sys_id"] else "linked")
    return result


def _warn(ctx, label, exc):
    ctx.warn("%s: not checked against ServiceNow (the CI waits in the outbox; nothing failed): %s"
             % (label, exc.message))


def _query(ctx, settings, ci, label, known, changed):
    if known["sys_id"] and not changed:
        return dict(known, status="linked", operation="NO_CHANGE", requests=0)
    client = None
    try:
        client = Client(settings, cooldown=SorCooldown(ctx.sor, settings.target_key()))
        result = IRE(client, Mapper(settings)).submit([dict(ci)], query_only=True)[0]
    except (BackendUnavailable, ConfigurationError) as exc:
        _warn(ctx, label, exc)
        return dict(known, status="not checked", error=exc.message)
    finally:
        if client is not None:
            client.close()
    message = result.error_message(label)
    if message:
        raise ServiceNowConflict(message, kind="multi_match" if result.multi_match else "item_error",
                                 host=ci.get("name"), rule=result.rule, identification=result.attempts)
    return {"status": "would %s" % result.operation.lower().replace("_", " "), "operation": result.operation,
            "sys_id": result.sys_id or known["sys_id"], "class": result.class_name, "identified_by": result.rule,
            "requests": client.requests_made}


def _push_now(ctx, settings, ci, label):
    outbox = Outbox(ctx.sor, settings, actor=ctx.actor)
    timeout = float(settings.get("sync_timeout") or 30.0)
    report = outbox.drain(timeout, wait_for_lease=timeout)
    if report.stopped and not report.busy:
        ctx.warn("%s: queued for ServiceNow, not delivered yet (nothing failed): %s" % (label, report.stopped))
    failed = [item for item in ctx.sor.find_sync_items(settings.target_key(), statuses=["failed"])
              if item["subject"] == ci["ci_id"] or ci["ci_id"] in (item.get("error") or "")]
    if failed:
        raise ServiceNowConflict(failed[-1]["error"], kind="item_error", host=ci.get("name"), ci_id=ci["ci_id"],
                                 ledger_seq=failed[-1]["seq"])
    stored = ctx.sor.get_ci(ci["ci_id"]) or {}
    attributes = stored.get("attributes") or {}
    status = "linked" if attributes.get("servicenow_sys_id") and not report.stopped else "queued"
    return {"status": status, "sys_id": attributes.get("servicenow_sys_id"),
            "class": attributes.get("servicenow_class"), "requests": report.requests,
            "delivered_by_this_task": report.delivered}


__all__ = ["after_ci_write", "cmdb_push_argument_spec", "PUSH_MODES", "ServiceNowError"]
