# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incidents and remediations linked to change events: the ``change_link`` module.

A link is a ``run.linked`` ledger entry on the change event it is about (subject: its run id):

* ``incident``: the change caused (or is suspected of causing) an incident (``target``: its number,
  ``linked_at``: when the incident started);
* ``remediated_by``: another change (``target``: its run id) remediated it (a rollback, a hotfix).

Metrics count a change followed by either within ``failure_window`` as failed (``metrics.py``), and a
change with either cannot earn a standard template (``candidates.py``). Links are recorded with the
identity that made them; the same link twice is one (idempotent).
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import NotFound, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.intelligence import (
    LINK_ENTRY,
    link_document,
)

CHANGE_LINK_SPEC = dict(
    backend_argument_spec(),
    run_id=dict(type="str"),
    incident=dict(type="str"),
    remediates=dict(type="str"),
    at=dict(type="str"),
    comment=dict(type="str"),
)


def change_link(ctx):
    """Link an incident to a change event, or declare this run (``run_id``) the remediation of another."""
    params = ctx.params
    if bool(params.get("incident")) == bool(params.get("remediates")):
        raise ValidationError("give exactly one of incident (the incident a change caused) or remediates (the run id "
                              "of the change this run remediates)")
    run_id = params.get("run_id") or ctx.run_id
    if not run_id:
        raise ValidationError("run_id is required outside a recorded run (no CHANGEOPS_RUN_ID: enable the "
                              "changeops.itsm.change_recorder callback or name the change event)", option="run_id")
    if params.get("incident"):
        subject, link, target = run_id, "incident", params["incident"].strip()
    else:
        subject, link, target = params["remediates"].strip(), "remediated_by", run_id
    for needed in (subject,) if link == "incident" else (subject, target):
        if ctx.sor.get_change_event(needed) is None and needed != ctx.run_id:
            raise NotFound("%s: change event %s does not exist" % ("run_id" if needed == run_id else "remediates",
                                                                   needed), run_id=needed)
    try:
        at = format_time(parse_time(params["at"])) if params.get("at") else utc_now()
    except ValueError:
        raise ValidationError("at: %r is not an ISO 8601 time such as 2026-11-23T21:00:00Z" % params["at"],
                              option="at", value=params["at"])
    existing = list(ctx.sor.find_change_links(run_ids=[subject], link=link, target=target))
    result = {"changed": not existing, "link": {"run_id": subject, "link": link, "target": target}}
    if existing:
        result["link"] = existing[-1]
        return result
    data = link_document(subject, link, target, at, ctx.identity.to_dict(), params.get("comment"))
    if ctx.diff:
        result["diff"] = {"before": {}, "after": data}
    if not ctx.check_mode:
        ctx.sor.append([Entry(LINK_ENTRY, subject, data, actor=ctx.actor)])
    result["link"] = data
    return result
