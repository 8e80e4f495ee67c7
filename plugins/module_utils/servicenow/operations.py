# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""servicenow_sync and servicenow_sync_info: drain the outbox on demand, and show what waits in it."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.outbox import Outbox
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import (
    ansible_config_file,
    controller_settings,
    instance_argument_spec,
)

SERVICENOW_SYNC_SPEC = dict(
    backend_argument_spec(),
    timeout=dict(type="float", default=300.0),
    retry_failed=dict(type="bool", default=False),
    skip_failed=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
    max_entries=dict(type="int"),
    fail_on_set_aside=dict(type="bool", default=True),
    **instance_argument_spec()
)
#: retry_failed and skip_failed are both booleans with a default, so "mutually exclusive" is checked on their values
SERVICENOW_SYNC_MUTUALLY_EXCLUSIVE = None

SERVICENOW_SYNC_INFO_SPEC = dict(
    backend_argument_spec(),
    **instance_argument_spec()
)


def _settings(ctx):
    settings = controller_settings(ctx.params.get("instance"), ansible_config_file())
    settings.check_complete("instance")
    return settings


def servicenow_sync(ctx):
    params = ctx.params
    if params.get("timeout") is not None and params["timeout"] <= 0:
        raise ValidationError("timeout must be more than 0 seconds, got %r" % params["timeout"], field="timeout",
                              value=params["timeout"])
    if params.get("max_entries") is not None and params["max_entries"] < 1:
        raise ValidationError("max_entries must be at least 1, got %r" % params["max_entries"], field="max_entries",
                              value=params["max_entries"])
    if params.get("retry_failed") and params.get("skip_failed"):
        raise ValidationError("retry_failed and skip_failed: choose one (retry the set-aside entries, or give them up)",
                              field="retry_failed")
    settings = _settings(ctx)
    outbox = Outbox(ctx.sor, settings, actor=ctx.actor)
    before = outbox.status()
    if ctx.check_mode:
        return {"changed": False, "delivered": 0, "would_deliver": before["pending"],
                "would_retry": len(before["set_aside"]) if params.get("retry_failed") else 0,
                "status": before, "msg": "check mode: %d entr%s would be delivered to %s" % (
                    before["pending"], "y" if before["pending"] == 1 else "ies", settings.describe())}
    report = outbox.drain(float(params.get("timeout") or 300.0), force=params.get("force"),
                          retry_failed=params.get("retry_failed"), skip_failed=params.get("skip_failed"),
                          max_entries=params.get("max_entries"), wait_for_lease=float(params.get("timeout") or 300.0))
    after = outbox.status()
    result = report.to_dict()
    result.update(changed=report.delivered > 0 or bool(report.retried), status=after,
                  pending=after["pending"], lag_seconds=after["lag_seconds"])
    for warning in report.warnings:
        ctx.warn(warning)
    summary = "delivered %d entr%s to %s; %d pending" % (
        report.delivered, "y" if report.delivered == 1 else "ies", settings.describe(), after["pending"])
    if report.set_aside:
        summary += "; %d set aside: %s" % (len(report.set_aside), "; ".join(
            "entry %s (%s): %s" % (item["seq"], item["kind"], item["error"]) for item in report.set_aside[:5]))
    if report.stopped:
        summary += "; stopped: %s" % report.stopped
    result["msg"] = summary
    if report.stopped and not report.busy:
        result["failed"] = True
    if report.set_aside and params.get("fail_on_set_aside", True):
        result["failed"] = True
    return result


def servicenow_sync_info(ctx):
    settings = _settings(ctx)
    outbox = Outbox(ctx.sor, settings, actor=ctx.actor)
    return {"changed": False, "servicenow": outbox.status()}


__all__ = ["servicenow_sync", "servicenow_sync_info", "SERVICENOW_SYNC_SPEC", "SERVICENOW_SYNC_INFO_SPEC",
           "ChangeopsError"]
