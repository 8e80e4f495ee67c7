# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post-run hook: deliver the ledger's outbox to ServiceNow at the end of every run.

Runs only when ServiceNow is enabled (``enabled`` in ``[changeops_servicenow]`` of
ansible.cfg, or ``CHANGEOPS_SERVICENOW=true``; see docs/servicenow.md). It delivers
everything pending, this run's entries and any an earlier run left, for at most
``sync_timeout`` seconds and never more than half the recorder's ``flush_timeout``:
the playbook waits for its end no longer than that, and 429s are waited for only
within ``rate_limit_wait``. What is left stays in the outbox for the next run or
``changeops.itsm.servicenow_sync``; an unreachable ServiceNow is one warning, never
a failed playbook. Another run delivering at the same time (the drain lease) is
left to do it.
"""

from __future__ import annotations

from ansible import constants as C

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.outbox import Outbox
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import (
    ansible_config_file,
    controller_settings,
    register_config_file_finder,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.hooks import register_post_run_hook

register_config_file_finder(lambda: getattr(C.config, "_config_file", None))

PREFIX = "changeops.itsm.change_recorder"
#: share of flush_timeout the delivery may use (the final flush, links and other hooks need the rest)
FLUSH_TIMEOUT_SHARE = 0.5


def delivery_budget(settings, options):
    budget = float(settings.get("sync_timeout") or 0.0)
    try:
        flush_timeout = float(options.get("flush_timeout"))
    except (TypeError, ValueError):
        flush_timeout = None
    if flush_timeout and flush_timeout > 0:
        budget = min(budget, flush_timeout * FLUSH_TIMEOUT_SHARE)
    return budget


@register_post_run_hook
def deliver_to_servicenow(sor, run_id, options, display):
    try:
        settings = controller_settings(None, ansible_config_file())
    except ChangeopsError as exc:
        display.warning("%s: ServiceNow not fed after run %s: %s" % (PREFIX, run_id, exc.message))
        return
    if not settings.get("enabled"):
        return
    budget = delivery_budget(settings, options)
    if budget <= 0:
        return
    try:
        settings.check_complete("[changeops_servicenow] of ansible.cfg / SN_* variables")
        report = Outbox(sor, settings).drain(budget)
    except ChangeopsError as exc:
        display.warning("%s: ServiceNow not fed after run %s (the entries wait in the outbox): %s"
                        % (PREFIX, run_id, exc.message))
        return
    for warning in report.warnings:
        display.warning("%s: %s" % (PREFIX, warning))
    for item in report.set_aside:
        display.warning("%s: ServiceNow refused ledger entry %s (%s): %s"
                        % (PREFIX, item["seq"], item["kind"], item["error"]))
    if report.stopped and not report.busy:
        display.warning("%s: ServiceNow fed %d entries after run %s in %.1f s (waited %.1f s for rate limits, "
                        "rate_limit_wait %.0f s; delivery budget %.0f s), then stopped (the rest waits in the "
                        "outbox; changeops.itsm.servicenow_sync delivers it): %s"
                        % (PREFIX, report.delivered, run_id, report.elapsed, report.rate_limit_waited,
                           float(settings.get("rate_limit_wait") or 0), budget, report.stopped))
    else:
        display.vv("%s: ServiceNow fed %d entries in %d requests (%.1f s)" % (
            PREFIX, report.delivered, report.requests, report.elapsed))
