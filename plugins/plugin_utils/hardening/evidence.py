# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evidence document (docs/evidence.schema.json) and its JUnit rendering."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from ._common import as_list

EVIDENCE_SCHEMA = "https://changeops.example/schemas/checklist-evidence/v1"


def ssg_rules(mapping, control_id):
    """The SSG rule references of one control: [{'id': full XCCDF rule id, 'when': JMESPath or None}]."""
    if not mapping:
        return []
    from .scanner import control_mapping
    prefix = mapping.get("rule_prefix", "")
    return [{"id": prefix + entry["rule"], "when": entry.get("when")}
            for entry in control_mapping(mapping, control_id)["rules"]]


def control_refs(catalogue, refs, control_id, ssg=None):
    """A control's references as the evidence states them: CIS (benchmark and recommendation numbers), NIST SP
    800-53 controls, and the SCAP Security Guide rules an independent scanner judges the same thing with."""
    refs = refs or {}
    benchmark = ((catalogue or {}).get("benchmarks") or {}).get("cis", "")
    out = {"cis": {"benchmark": benchmark, "ids": [str(i) for i in as_list(refs.get("cis"))]},
           "nist": list(as_list(refs.get("nist")))}
    if refs.get("cis_note"):
        out["cis"]["note"] = refs["cis_note"]
    if ssg:
        content = ssg.get("content") or {}
        from .scanner import control_mapping
        out["ssg"] = {"content": "%s %s (%s)" % (content.get("package", "ssg"), content.get("version", ""),
                                                 content.get("datastream", "")),
                      "relation": control_mapping(ssg, control_id)["relation"],
                      "rules": ssg_rules(ssg, control_id)}
    return out


def evidence(host, catalogue, mode, results, summary, generated_at, check_mode=False, facts=None, settings=None,
             ssg=None):
    facts = facts or {}
    controls = []
    for result in results:
        control = {k: result.get(k) for k in ("id", "title", "severity", "level", "status", "check_status", "observed",
                                              "expected", "message", "waiver")}
        control["refs"] = control_refs(catalogue, result.get("refs"), result["id"], ssg)
        controls.append(control)
    document = {
        "$schema": EVIDENCE_SCHEMA,
        "checklist": "hardening",
        "host": host,
        "catalogue": {"name": catalogue.get("name"), "version": str(catalogue.get("version"))},
        "mode": mode,
        "check_mode": bool(check_mode),
        "generated_at": generated_at,
        "target": {k: facts.get(k) for k in ("os_family", "distribution", "distribution_version",
                                             "distribution_major_version", "openssh_version", "container")},
        "settings": settings or {},
        "summary": summary,
        "controls": controls,
    }
    if ssg:
        # what an auditor needs to scan with the same policy: the SSG content and the values of the tailoring
        content = ssg.get("content") or {}
        document["ssg"] = {"content": {k: content.get(k) for k in ("package", "version", "datastream")},
                           "values": {k: str(v) for k, v in sorted((ssg.get("values") or {}).items())}}
    return document


def junit(document):
    """JUnit XML: one testsuite per host, one testcase per control."""
    summary = document["summary"]["counts"]
    host = document["host"]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<testsuites name=%s>' % quoteattr("hardening %s" % document["catalogue"]["version"]),
             '  <testsuite name=%s tests="%d" failures="%d" errors="%d" skipped="%d" timestamp=%s>' % (
                 quoteattr("hardening.%s" % host), len(document["controls"]), summary["fail"], summary["error"],
                 summary["waived"] + summary["not_applicable"], quoteattr(document["generated_at"])),
             '    <properties>',
             '      <property name="mode" value=%s/>' % quoteattr(document["mode"]),
             '      <property name="score" value=%s/>' % quoteattr(str(document["summary"]["score"])),
             '    </properties>']
    for control in document["controls"]:
        name = quoteattr("%s %s" % (control["id"], control["title"]))
        classname = quoteattr("hardening.%s.%s" % (host, control["id"].split("-")[0]))
        message = quoteattr(control.get("message") or "")
        body = escape("observed: %s\nexpected: %s" % (control.get("observed"), control.get("expected")))
        status = control["status"]
        if status == "fail":
            inner = '<failure message=%s type="%s">%s</failure>' % (message, control["severity"], body)
        elif status == "error":
            inner = '<error message=%s>%s</error>' % (message, body)
        elif status in ("waived", "not_applicable"):
            inner = '<skipped message=%s/>' % quoteattr("%s: %s" % (status, control.get("message") or ""))
        else:
            inner = '<system-out>%s</system-out>' % escape("%s: %s" % (status, control.get("message") or ""))
        lines.append('    <testcase name=%s classname=%s>%s</testcase>' % (name, classname, inner))
    lines += ['  </testsuite>', '</testsuites>', '']
    return "\n".join(lines)
