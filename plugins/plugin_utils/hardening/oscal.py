# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evidence document as an OSCAL Assessment Results document (JSON, OSCAL 1.1.2).

Why OSCAL and not SARIF: auditors' compliance tooling (GRC platforms, FedRAMP's automation, NIST's and
IBM's compliance-trestle, Lula) reads OSCAL assessment results, which speak in controls, observations
and findings with a satisfied / not-satisfied state, and tie each to NIST SP 800-53 controls the way an
assessment does. SARIF is the format of static-analysis tools (code scanning, per source-location
results) and has no notion of a control, a waiver or a host.

One result per run; per catalogue control one observation (what was tested on the host, how, and what
was seen) and, for every scored or waived control, one finding whose target is the catalogue control
with state satisfied (pass, fixed) or not-satisfied (fail, error, waived: a waiver is an accepted risk,
not compliance, and its justification, approver, ticket and expiry are stated). UUIDs are name-based
(version 5) on the host, the run time and the control, so the same evidence always gives the same file.
"""

from __future__ import annotations

import re
import uuid

from ._common import as_list

OSCAL_VERSION = "1.1.2"
NS = "https://changeops.example/ns/oscal/hardening"
_NAMESPACE = uuid.UUID("5b0c8d39-9c4e-5a53-9a3c-64b2f4f1a9d7")


def _uuid(*parts):
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def nist_control_id(ref):
    """``AC-6(2)`` -> ``ac-6.2`` (the control ids of NIST's OSCAL SP 800-53 catalog)."""
    match = re.match(r"^([A-Za-z]{2})-(\d+)(?:\((\d+)\))?$", str(ref).strip())
    if not match:
        return None
    family, number, enhancement = match.groups()
    return "%s-%s%s" % (family.lower(), number, ".%s" % enhancement if enhancement else "")


def _prop(name, value, ns=True):
    text = " ".join(str(value).split())
    if not text:
        return None
    prop = {"name": name, "value": text}
    if ns:
        prop["ns"] = NS
    return prop


def _props(*items):
    return [p for p in items if p]


STATE = {"pass": ("satisfied", "pass"), "fixed": ("satisfied", "pass"), "fail": ("not-satisfied", "fail"),
         "error": ("not-satisfied", "other"), "waived": ("not-satisfied", "other")}


def assessment_results(document):
    """OSCAL assessment-results for one evidence document (docs/evidence.schema.json)."""
    host = document["host"]
    when = document["generated_at"]
    catalogue = document.get("catalogue") or {}
    target = document.get("target") or {}
    inventory_uuid = _uuid("inventory-item", host)
    observations, findings, nist = [], [], []
    for control in document["controls"]:
        refs = control.get("refs") or {}
        cis = refs.get("cis") or {}
        ssg = refs.get("ssg") or {}
        for ref in as_list(refs.get("nist")):
            control_id = nist_control_id(ref)
            if control_id and control_id not in nist:
                nist.append(control_id)
        observation_uuid = _uuid("observation", host, when, control["id"])
        description = control.get("message") or ("%s: %s" % (control["status"], control["title"]))
        observations.append({
            "uuid": observation_uuid,
            "title": "%s %s" % (control["id"], control["title"]),
            "description": description,
            "props": _props(_prop("control-id", control["id"]), _prop("status", control["status"]),
                            _prop("check-status", control.get("check_status") or "not-run"),
                            _prop("severity", control["severity"]),
                            _prop("cis-benchmark", cis.get("benchmark", "")),
                            _prop("cis-recommendations", " ".join(cis.get("ids") or [])),
                            _prop("ssg-rules", " ".join(r["id"] for r in ssg.get("rules") or []))),
            "methods": ["TEST"],
            "types": ["finding"] if control["status"] in ("fail", "error") else ["control-objective"],
            "subjects": [{"subject-uuid": inventory_uuid, "type": "inventory-item"}],
            "relevant-evidence": [{"description": "observed: %s; expected: %s" % (
                _compact(control.get("observed")), _compact(control.get("expected")))}],
            "collected": when,
        })
        if control["status"] not in STATE:
            continue
        state, reason = STATE[control["status"]]
        waiver = control.get("waiver") or {}
        finding = {
            "uuid": _uuid("finding", host, when, control["id"]),
            "title": "%s %s" % (control["id"], control["title"]),
            "description": description,
            "props": _props(_prop("severity", control["severity"]),
                            *[_prop("nist-sp800-53", c) for c in as_list(refs.get("nist"))]),
            "target": {"type": "objective-id", "target-id": control["id"],
                       "status": {"state": state, "reason": reason}},
            "related-observations": [{"observation-uuid": observation_uuid}],
        }
        if control["status"] == "waived" and waiver:
            finding["remarks"] = ("Accepted risk until %s: %s (approved by %s, %s)" % (
                waiver.get("expires"), waiver.get("justification"), waiver.get("approver"), waiver.get("ticket")))
        findings.append(finding)
    summary = document.get("summary") or {}
    result = {
        "uuid": _uuid("result", host, when),
        "title": "Hardening %s of %s" % (document["mode"], host),
        "description": "changeops.itsm.hardening %s run%s against catalogue %s %s: status %s, score %s" % (
            document["mode"], " (--check)" if document.get("check_mode") else "", catalogue.get("name"),
            catalogue.get("version"), summary.get("status"), summary.get("score")),
        "start": when,
        "end": when,
        "local-definitions": {"inventory-items": [{
            "uuid": inventory_uuid, "description": "the managed host %s" % host,
            "props": _props(_prop("fqdn", host, ns=False), _prop("os-family", target.get("os_family") or "unknown"),
                            _prop("os-version", "%s %s" % (target.get("distribution") or "",
                                                           target.get("distribution_version") or ""))),
        }]},
        "reviewed-controls": {"control-selections": [{
            "description": "NIST SP 800-53 controls the catalogue's controls implement",
            "include-controls": [{"control-id": c} for c in nist] or [{"control-id": "cm-6"}]}]},
        "observations": observations,
    }
    if findings:
        result["findings"] = findings
    return {"assessment-results": {
        "uuid": _uuid("assessment-results", host, when),
        "metadata": {"title": "changeops.itsm hardening evidence: %s" % host, "last-modified": when,
                     "version": str(catalogue.get("version") or "0"), "oscal-version": OSCAL_VERSION,
                     "props": _props(_prop("checklist", document.get("checklist", "hardening")),
                                     _prop("catalogue", catalogue.get("name") or "unknown"))},
        "import-ap": {"href": "urn:changeops:hardening:%s:%s" % (catalogue.get("name"), catalogue.get("version"))},
        "results": [result],
    }}


def _compact(value):
    text = " ".join(str(value).split())
    return text if len(text) <= 500 else text[:497] + "..."
