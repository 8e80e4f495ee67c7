# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post-run hook: close the change requests that authorised the run (option close_change_requests)."""

from __future__ import annotations

import re

from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import close_change_request
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.hooks import register_post_run_hook

PREFIX = "changeops.itsm.change_recorder"
_NUMBER = re.compile(r"^CHG\d+$")


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def linked_change_requests(event):
    """Numbers of the change requests whose gate decisions allowed plays of this run."""
    numbers = []
    for gate in event.get("gates") or []:
        if gate.get("servicenow"):
            continue  # a ServiceNow CHG: the ServiceNow outbox closes it there (docs/servicenow.md)
        # a standard change request (one instance of a pre-authorised template) is closed like a
        # normal one; a standard decision without a request has a template name as reference
        if gate.get("allowed") and gate.get("type") in ("standard", "normal", "emergency"):
            reference = gate.get("reference") or ""
            if _NUMBER.match(reference) and reference not in numbers:
                numbers.append(reference)
    return numbers


# A run whose end was spooled still closes its change request, when the run
# that replays the spool writes that end.
@register_post_run_hook(replayed_runs=True)
def close_linked_change_requests(sor, run_id, options, display):
    if not _truthy(options.get("close_change_requests")):
        return
    event = sor.get_change_event(run_id)
    if event is None or event.get("dry_run"):
        return
    outcome = "successful" if event.get("status") == "successful" else "unsuccessful"
    for number in linked_change_requests(event):
        notes = "Closed by changeops run %s (playbook %s): run %s" % (run_id, event.get("playbook"), event.get("status"))
        entries, skipped = close_change_request(
            sor, number, outcome, event.get("started_at"), event.get("ended_at"), notes,
            actor="%s@%s" % (event.get("user") or "changeops", event.get("controller") or "controller"),
            run_id=run_id)
        if skipped:
            display.warning("%s: change request not closed: %s" % (PREFIX, skipped))
        else:
            display.display("%s: closed %s as %s (%d ledger entries)" % (PREFIX, number, outcome, len(entries)))
