# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Feed ServiceNow from the ledger's outbox while the run goes on, and finish at its end.

Runs only when ServiceNow is enabled (``enabled`` in ``[changeops_servicenow]`` of
ansible.cfg, or ``CHANGEOPS_SERVICENOW=true``; see docs/servicenow.md).

*During the run* an append hook starts, at the run's first append, an
:class:`~..outbox_feed.OutboxFeeder`: a daemon thread that delivers what reaches the ledger
(work notes as the run starts, CIs in full IRE batches) in the background; the playbook never
waits for it and its failures are never the playbook's.

*At the end* the post-run hook gives ServiceNow at most ``sync_timeout`` seconds, never more than
half the recorder's ``flush_timeout``: the feeder's drain in progress is cut to that deadline (a
429's wait included), and one last drain delivers what is left, the run's end included. What is
not delivered by then stays in the outbox for the next run or ``changeops.itsm.servicenow_sync``;
an unreachable ServiceNow is one warning, never a failed playbook. Another process delivering at
the same time (the drain lease) is left to do it.
"""

from __future__ import annotations

# What a first request imports lazily (the idna codec for host names, requests' netrc and cookie helpers), imported
# here, on the callback's main thread when the writer is made: the feeder thread must not be inside an import
# when Ansible forks a worker, which would inherit the import's lock held for ever
import encodings.idna  # noqa: F401 pylint: disable=unused-import
import http.cookiejar  # noqa: F401 pylint: disable=unused-import
import netrc  # noqa: F401 pylint: disable=unused-import
import threading
import time

from ansible import constants as C

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.client import Client
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.outbox import Outbox
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import (
    ansible_config_file,
    controller_settings,
    register_config_file_finder,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.hooks import (
    register_append_hook,
    register_post_run_hook,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.outbox_feed import OutboxFeeder

register_config_file_finder(lambda: getattr(C.config, "_config_file", None))

PREFIX = "changeops.itsm.change_recorder"
#: share of flush_timeout the delivery may use (the final flush, links and other hooks need the rest)
FLUSH_TIMEOUT_SHARE = 0.5
#: seconds a background drain has besides rate_limit_wait (its lease outlives it by the outbox's LEASE_MARGIN)
IN_RUN_DRAIN_MARGIN = 30.0

#: run id -> its feeder (None: ServiceNow is not enabled, or not configured, for that run)
_FEEDERS = {}
_FEEDERS_LOCK = threading.Lock()


def delivery_budget(settings, options):
    budget = float(settings.get("sync_timeout") or 0.0)
    try:
        flush_timeout = float(options.get("flush_timeout"))
    except (TypeError, ValueError):
        flush_timeout = None
    if flush_timeout and flush_timeout > 0:
        budget = min(budget, flush_timeout * FLUSH_TIMEOUT_SHARE)
    return budget


def _settings():
    settings = controller_settings(None, ansible_config_file())
    if settings.get("enabled"):
        settings.check_complete("[changeops_servicenow] of ansible.cfg / SN_* variables")
    return settings


@register_append_hook
def feed_servicenow_during_run(writer, entries):
    """Start the run's feeder at its first append, nudge it after every other one."""
    run_id = writer.run_id
    if not run_id:
        return
    with _FEEDERS_LOCK:
        if run_id in _FEEDERS:
            feeder = _FEEDERS[run_id]
        else:
            feeder = _FEEDERS[run_id] = _start_feeder(writer)
    if feeder is not None:
        feeder.nudge()


def _start_feeder(writer):
    try:
        settings = _settings()
    except ChangeopsError:
        return None  # said once at the end of the run, by the post-run hook
    if not settings.get("enabled") or delivery_budget(settings, writer.options) <= 0:
        return None
    config = dict(writer.config)
    # in the background a drain may wait out 429s within rate_limit_wait: finish() cuts it at the run's end
    drain_timeout = max(float(settings.get("sync_timeout") or 0.0), float(settings.get("rate_limit_wait") or 0.0)
                        + IN_RUN_DRAIN_MARGIN)
    feeder = OutboxFeeder(lambda: open_system_of_record(config),
                          lambda sor, client_factory: Outbox(sor, settings, client_factory=client_factory),
                          Client, drain_timeout=drain_timeout)
    feeder.start()
    return feeder


@register_post_run_hook
def deliver_to_servicenow(sor, run_id, options, display):
    with _FEEDERS_LOCK:
        feeder = _FEEDERS.pop(run_id, None)
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
    started = time.monotonic()
    try:
        settings.check_complete("[changeops_servicenow] of ansible.cfg / SN_* variables")
        report = None
        if feeder is not None:
            in_time = feeder.finish(budget)
            report = feeder.final_report
            if not in_time:
                display.warning("%s: the background delivery to ServiceNow did not stop within the end-of-run "
                                "budget of %.0f s; the run goes on without it (what it did not deliver waits in "
                                "the outbox)" % (PREFIX, budget))
            if feeder.error is not None:
                # the last drain below delivers what it left
                display.warning("%s: the background delivery to ServiceNow stopped during run %s: %s"
                                % (PREFIX, run_id, feeder.error))
        if report is None and (feeder is None or feeder.done.is_set()):
            # no feeder (ServiceNow enabled after the run's first append) or it had no time left: one drain here
            report = Outbox(sor, settings).drain(max(0.0, budget - (time.monotonic() - started)))
    except ChangeopsError as exc:
        display.warning("%s: ServiceNow not fed after run %s (the entries wait in the outbox): %s"
                        % (PREFIX, run_id, exc.message))
        return
    waited_at_end = time.monotonic() - started
    during = feeder.reports if feeder is not None else []
    fed_during = sum(item.delivered for item in during)
    warnings = [warning for item in during for warning in item.warnings]
    set_aside = [entry for item in during for entry in item.set_aside]
    if report is not None:
        warnings.extend(report.warnings)
        set_aside.extend(report.set_aside)
    for warning in dict.fromkeys(warnings):
        display.warning("%s: %s" % (PREFIX, warning))
    for item in set_aside:
        display.warning("%s: ServiceNow refused ledger entry %s (%s): %s"
                        % (PREFIX, item["seq"], item["kind"], item["error"]))
    fed_at_end = report.delivered if report is not None else 0
    summary = ("ServiceNow fed %d entries during and after run %s: %d during the run in the background (%d drains, "
               "waited %.1f s for rate limits), %d at its end in %.1f s (waited %.1f s for rate limits, "
               "rate_limit_wait %.0f s; end-of-run budget %.0f s)" % (
                   fed_during + fed_at_end, run_id, fed_during, len(during),
                   sum(item.rate_limit_waited for item in during), fed_at_end, waited_at_end,
                   report.rate_limit_waited if report is not None else 0.0,
                   float(settings.get("rate_limit_wait") or 0), budget))
    if report is not None and report.stopped and not report.busy:
        display.warning("%s: %s, then stopped (the rest waits in the outbox; changeops.itsm.servicenow_sync "
                        "delivers it): %s" % (PREFIX, summary, report.stopped))
    elif report is None:
        display.warning("%s: %s; the last delivery did not finish in time (the rest waits in the outbox)"
                        % (PREFIX, summary))
    else:
        display.vv("%s: %s, %d requests at the end" % (PREFIX, summary, report.requests))
