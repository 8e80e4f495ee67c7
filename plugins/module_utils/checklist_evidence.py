# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attach a checklist evidence document (hardening, release readiness, ...) to the system of record.

One ``evidence.recorded`` ledger entry per (run, host, checklist, document): it shows on the run's
change event (``find_evidence(run_id=...)``). When the host has a CI (``ci_id``, ``ci_name``, or the
host's own CI as ``cmdb_identity.find_host_cis`` finds it), a
``ci.updated`` entry in the same batch sets ``compliance.<checklist>`` to the latest status, score
and audit time, so the CMDB answers "is this server compliant?" without reading the ledger.
In check mode only the evidence entry is written, and only within a recorded run: the CI is not
changed (its change is reported as the diff).
"""

from __future__ import annotations

import hashlib
import uuid

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import find_host_cis
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import HOST_CLASSES
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

STATUSES = ["pass", "warn", "fail", "error"]
_NAMESPACE = uuid.UUID("6b0f3f5e-8f4c-4b7e-9a55-2f3c1d0e7a11")

CHECKLIST_EVIDENCE_SPEC = dict(
    backend_argument_spec(),
    checklist=dict(type="str", required=True),
    host=dict(type="str"),
    status=dict(type="str", required=True, choices=STATUSES),
    score=dict(type="float"),
    summary=dict(type="dict", default={}),
    document=dict(type="dict", required=True),
    ci_name=dict(type="str"),
    ci_id=dict(type="str"),
    update_ci=dict(type="bool", default=True),
    run_id=dict(type="str"),
)


def _checklist_name(value):
    value = (value or "").strip()
    if not value or any(c in value for c in " ./"):
        raise ValidationError("checklist: %r must be a non-empty name without spaces, dots or slashes "
                              "(it becomes the CI attribute compliance.<checklist>)" % value, option="checklist")
    return value


def _find_ci(ctx, params, host):
    sor = ctx.sor
    if params.get("ci_id"):
        ci = sor.get_ci(params["ci_id"])
        if ci is None:
            raise ValidationError("ci_id: CI %r does not exist" % params["ci_id"], option="ci_id")
        return ci
    name = params.get("ci_name")
    if name:
        # a CI named explicitly may be of any class (an application's release readiness)
        matches = sor.find_cis(names=[name])
        if len(matches) > 1:
            raise ValidationError("ci_name: %d CIs are named %r (%s); pass ci_id to choose one"
                                  % (len(matches), name, ", ".join(ci["ci_id"] for ci in matches)), option="ci_name")
        return matches[0] if matches else None
    # the host's own CI, as the gate and the recorder find it: never an application named like the host
    ci = find_host_cis(sor, [host]).get(host)
    if ci is None:
        others = sor.find_cis(names=[host])
        if others:
            ctx.warn("host %s: no %s CI is named %r, and %d CIs of other classes are (%s); the evidence is "
                     "recorded without a CI. Pass ci_id or ci_name to choose one"
                     % (host, "/".join(HOST_CLASSES), host, len(others),
                        ", ".join("%s %s" % (other.get("class"), other["ci_id"]) for other in others)))
    return ci


def record_evidence(ctx):
    params = ctx.params
    checklist = _checklist_name(params["checklist"])
    host = params.get("host") or ctx.host
    if not host:
        raise ValidationError("host: not given and not known from the play (inventory_hostname)", option="host")
    run_id = params.get("run_id") or ctx.run_id
    summary = dict(params.get("summary") or {})
    score = params.get("score")
    if score is None and isinstance(summary.get("score"), (int, float)):
        score = float(summary["score"])
    if score is not None and not 0 <= score <= 100:
        raise ValidationError("score: %r is outside 0..100" % score, option="score")
    document = params["document"]
    digest = hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()
    # the same document for the same run, host and checklist is one entry (re-running the task is a no-op)
    entry_id = uuid.uuid5(_NAMESPACE, "|".join([run_id or "-", host, checklist, digest])).hex

    ci = _find_ci(ctx, params, host) if params.get("update_ci", True) else None
    data = {"run_id": run_id, "host": host, "ci_id": ci["ci_id"] if ci else None, "checklist": checklist,
            "status": params["status"], "score": score, "summary": summary, "document": document,
            "document_sha256": digest}
    entries = [Entry("evidence.recorded", run_id or (ci["ci_id"] if ci else host), data, actor=ctx.actor,
                     entry_id=entry_id)]
    attribute = "compliance.%s" % checklist
    before_ci = ci["attributes"].get(attribute) if ci else None
    after_ci = None
    if ci:
        after_ci = {"status": params["status"], "score": score, "last_audit": document.get("generated_at") or utc_now(),
                    "run_id": run_id, "evidence_sha256": digest}
        if before_ci != after_ci:
            entries.append(Entry("ci.updated", ci["ci_id"], {
                "ci_id": ci["ci_id"], "base_version": ci["version"], "run_id": run_id,
                "changes": {attribute: {"from": before_ci, "to": after_ci}}}, actor=ctx.actor,
                entry_id=uuid.uuid5(_NAMESPACE, entry_id + "|ci").hex))

    try:
        already = ctx.sor.has_entry(entry_id)
    except NotImplementedError:
        already = False  # the backend dedupes on append anyway
    result = {"changed": not already, "evidence": {k: v for k, v in data.items() if k != "document"},
              "ci_id": data["ci_id"], "run_id": run_id}
    if ctx.diff:
        result["diff"] = {"before": {attribute: before_ci} if ci else {},
                          "after": {attribute: after_ci} if ci else {}}
    if already:
        return result
    if ctx.check_mode:
        # a dry run must not change the CMDB, but what it found is the record of that dry run, kept on its
        # (dry-run) change event like the recorder keeps the run itself; without a run there is no such event
        if run_id is None:
            return result
        entries = entries[:1]
    elif run_id is None:
        ctx.warn("no change_recorder run id (CHANGEOPS_RUN_ID): the evidence is recorded without a change event")
    appended = ctx.sor.append(entries)
    result["changed"] = bool(appended)
    return result
