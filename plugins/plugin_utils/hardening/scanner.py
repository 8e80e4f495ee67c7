# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Agreement with an independent scanner: OpenSCAP with Debian's SCAP Security Guide content (ssg-debian).

The mapping (roles/hardening/vars/ssg_mapping.yml) ties catalogue controls to SSG rule ids. For every mapped
rule the scanner evaluated, the control's own check result (``check_status``: a waiver does not change what
was found) must say the same: pass and pass, or fail and fail. A rule the scanner could not judge here
(notapplicable, notchecked, error, unknown) or a control that did not run is "not comparable" and listed.
A mapping entry may carry ``when``, a JMESPath expression over the control's evidence plus ``target`` (the
evidence's target facts): rules that judge one implementation of a control (package_chrony_installed for the
time daemon chrony) or one release (apt_sources_list_official names bullseye) apply only where it holds.

The newest data stream ssg-debian 0.1.65 ships is Debian 11's, whose benchmark applies only where
/etc/debian_version starts with 11: every rule is "notapplicable" on Debian 12 and 13.
``adapted_datastream`` widens that one platform check (11 -> 11, 12 or 13) and changes nothing else, so
the rules run unchanged on the newer releases; the docs say so wherever the figures are quoted.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from ._common import HardeningError, as_list

try:
    import jmespath
    from jmespath.exceptions import JMESPathError
except ImportError:  # pragma: no cover - jmespath is a requirement of the collection
    jmespath = None
    JMESPathError = Exception

XCCDF = "http://checklists.nist.gov/xccdf/1.2"
DEBIAN_PLATFORM = ">^11.[0-9]+$<"
TAILORING_PROFILE = "xccdf_changeops.itsm_profile_hardening_mapped"
COMPARABLE = ("pass", "fail")


_DEBIAN_11 = re.compile(r'(id="oval:ssg-obj_debian_11:obj:1"[^>]*>\s*<ind:filepath>/etc/debian_version</ind:filepath>'
                        r'\s*<ind:pattern operation="pattern match">)\^11\.\[0-9\]\+\$(</ind:pattern>)')


def adapted_datastream(text, releases=("11", "12", "13")):
    """The Debian 11 data stream with its platform check (the OVAL object obj_debian_11: ``/etc/debian_version``
    matches ``^11.[0-9]+$``, in the checks and in the CPE component) accepting the given releases; nothing else
    changes. An error when the check is not there (other content than this adapter knows)."""
    adapted, count = _DEBIAN_11.subn(lambda m: m.group(1) + "^(%s)\\.[0-9]+$" % "|".join(releases) + m.group(2),
                                     text)
    if not count:
        raise HardeningError("the data stream has no Debian 11 platform check (OVAL object obj_debian_11 matching "
                             "%s): not the ssg-debian Debian 11 content this adapter knows" % DEBIAN_PLATFORM)
    return adapted


def _search(expression, data, where):
    if jmespath is None:
        raise HardeningError("the jmespath Python package is required (%s)" % where)
    try:
        return jmespath.search(expression, data)
    except JMESPathError as exc:
        raise HardeningError("%s: JMESPath %r: %s" % (where, expression, exc))


def control_mapping(mapping, control_id):
    """{'relation': 'equivalent'|'implies', 'rules': [{'rule', 'when'}]} of one control (empty rules: unmapped)."""
    entry = (mapping.get("controls") or {}).get(control_id)
    if isinstance(entry, dict):
        relation, rules = entry.get("relation", "equivalent"), entry.get("rules") or []
    else:
        relation, rules = "equivalent", as_list(entry)
    if relation not in ("equivalent", "implies"):
        raise HardeningError("ssg mapping controls.%s: relation %r is not equivalent or implies" % (control_id, relation))
    return {"relation": relation,
            "rules": [dict({"when": None, "needs": None}, **r) if isinstance(r, dict)
                      else {"rule": r, "when": None, "needs": None} for r in rules]}


def mapped_rules(mapping):
    """[(control id, rule id without prefix, when)] in mapping order."""
    rules = []
    for control_id in (mapping.get("controls") or {}):
        for entry in control_mapping(mapping, control_id)["rules"]:
            rules.append((control_id, entry["rule"], entry.get("when")))
    return rules


def tailoring(mapping, values, benchmark_href, version_time=""):
    """An XCCDF 1.2 tailoring file selecting every mapped rule, with the rules' values set to ``values`` (the
    policy the run enforced, as the evidence records it: ``ssg.values``), as an auditor tailors SSG to the
    organisation's policy."""
    prefix = mapping.get("rule_prefix", "")
    value_prefix = mapping.get("value_prefix", "")
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<xccdf:Tailoring xmlns:xccdf="%s" id="xccdf_changeops.itsm_tailoring_hardening">' % XCCDF,
             '  <xccdf:benchmark href=%s/>' % quoteattr(benchmark_href),
             '  <xccdf:version time=%s>1</xccdf:version>' % quoteattr(version_time or "2025-01-01T00:00:00Z"),
             '  <xccdf:Profile id="%s">' % TAILORING_PROFILE,
             '    <xccdf:title>changeops.itsm hardening: the SSG rules mapped to catalogue controls</xccdf:title>']
    seen = set()
    for rule in [r for _control, r, _when in mapped_rules(mapping)] + list(mapping.get("also_select") or []):
        if rule not in seen:
            seen.add(rule)
            lines.append('    <xccdf:select idref=%s selected="true"/>' % quoteattr(prefix + rule))
    for value_id, value in sorted((values or {}).items()):
        lines.append('    <xccdf:set-value idref=%s>%s</xccdf:set-value>'
                     % (quoteattr(value_prefix + value_id), escape(str(value))))
    lines += ['  </xccdf:Profile>', '</xccdf:Tailoring>', '']
    return "\n".join(lines)


def parse_results(text):
    """XCCDF results (``oscap xccdf eval --results``) -> {rule id: result} for the rules that were selected."""
    root = ET.fromstring(text)
    results = {}
    for rule_result in root.iter("{%s}rule-result" % XCCDF):
        outcome = rule_result.find("{%s}result" % XCCDF).text
        if outcome != "notselected":
            results[rule_result.get("idref")] = outcome
    return results


def counts(results):
    out = {"pass": 0, "fail": 0, "other": 0}
    for outcome in results.values():
        out[outcome if outcome in ("pass", "fail") else "other"] += 1
    return out


def agreement(document, results, mapping, chroot=True):
    """Compare each mapped control's own result (``check_status``) with its rules' results.

    A control is compared with its rules together: "equivalent" controls must pass exactly when every applicable
    rule passes; "implies" controls judge more than their rules, so only "control passes, a rule fails" is a
    disagreement. Returns {"agree": [...], "disagree": [...], "not_comparable": [...]}, each entry
    {control, relation, ours, scanner: {rule: result}, why?}. ``chroot``: the scanner read the target's files
    from outside (oscap-chroot), so rules that need the running system are not comparable.
    """
    prefix = mapping.get("rule_prefix", "")
    controls = {c["id"]: c for c in document["controls"]}
    report = {"agree": [], "disagree": [], "not_comparable": []}
    for control_id in mapping.get("controls") or {}:
        control = controls.get(control_id)
        if control is None:
            raise HardeningError("ssg mapping names control %s, which the catalogue does not have" % control_id)
        spec = control_mapping(mapping, control_id)
        context = dict(control, target=document.get("target") or {})
        rules = [r for r in spec["rules"] if not r.get("when") or
                 _search(r["when"], context, "ssg mapping %s %s when" % (control_id, r["rule"]))]
        relation = spec["relation"]
        running = [r["rule"] for r in rules if r.get("needs") == "running"]
        if chroot and running:
            # judged from the files alone the rest of the rules cover part of the control at most
            rules = [r for r in rules if r.get("needs") != "running"]
            relation = "implies"
        entry = {"control": control_id, "relation": relation, "ours": control.get("check_status"),
                 "scanner": {r["rule"]: results.get(prefix + r["rule"], "notselected") for r in rules}}
        if running and chroot:
            entry["left_out"] = running
        outcomes = list(entry["scanner"].values())
        if not rules:
            entry["why"] = ("%s read%s the running system, which oscap-chroot cannot see from outside the target"
                            % (", ".join(running), "s" if len(running) == 1 else "")) if running else \
                "no rule applies here (%s)" % "; ".join("%s when %s" % (r["rule"], r["when"]) for r in spec["rules"])
            report["not_comparable"].append(entry)
            continue
        if entry["ours"] not in COMPARABLE or any(o not in COMPARABLE for o in outcomes):
            entry["why"] = "not judged by both (ours %s, scanner %s)" % (
                entry["ours"], ", ".join("%s %s" % kv for kv in entry["scanner"].items()))
            report["not_comparable"].append(entry)
            continue
        scanner_pass = all(o == "pass" for o in outcomes)
        ours_pass = entry["ours"] == "pass"
        if ours_pass == scanner_pass:
            report["agree"].append(entry)
        elif relation == "implies" and not ours_pass:
            entry["why"] = "the control judges more than its rules and fails on that"
            report["not_comparable"].append(entry)
        else:
            report["disagree"].append(entry)
    return report
