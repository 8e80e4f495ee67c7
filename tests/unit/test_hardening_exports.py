# -*- coding: utf-8 -*-
"""What the hardening role gives auditors: the OSCAL export, the SCAP Security Guide mapping and agreement logic,
and the generated CIS coverage table (plugin_utils/hardening/oscal.py, scanner.py, roles/hardening/tools/)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.changeops.itsm.plugins.plugin_utils import hardening
from ansible_collections.changeops.itsm.plugins.plugin_utils.hardening import oscal, scanner

# catalogue and ssg_mapping are pytest fixtures, used by parameter name
from test_hardening_logic import ROLE, WAIVER, _plan, _raw, catalogue, ssg_mapping  # noqa: F401 pylint: disable=unused-import

CONTENT = "/usr/share/xml/scap/ssg/content"
XCCDF = "{http://checklists.nist.gov/xccdf/1.2}"


def _document(catalogue, ssg_mapping, **raw):
    plan = _plan(catalogue, waivers=[dict(WAIVER, expires="2099-01-01")])
    results = hardening.evaluate(plan, _raw(**raw))
    return hardening.evidence("web01", catalogue, "audit", results, hardening.summarise(results),
                              "2026-06-01T10:00:00Z",
                              facts={"os_family": "Debian", "distribution": "Debian", "distribution_version": "12.8",
                                     "distribution_major_version": "12"},
                              settings={"level": 1}, ssg=ssg_mapping)


# --------------------------------------------------------------------------- OSCAL
def test_the_oscal_export_is_valid_oscal_assessment_results(catalogue, ssg_mapping):
    from trestle.oscal.assessment_results import Model
    document = _document(catalogue, ssg_mapping, sshd="permitrootlogin no\nmaxauthtries 6\n",
                         files="/etc/ssh/sshd_config:PermitRootLogin no", packages=["telnet"])
    exported = oscal.assessment_results(document)
    Model.model_validate(exported)  # compliance-trestle's OSCAL models: an independent reading of the schema
    result = exported["assessment-results"]["results"][0]
    assert len(result["observations"]) == len(document["controls"])
    findings = {f["target"]["target-id"]: f for f in result["findings"]}
    assert findings["SSH-01"]["target"]["status"] == {"state": "satisfied", "reason": "pass"}
    assert findings["SVC-01"]["target"]["status"] == {"state": "not-satisfied", "reason": "fail"}
    assert findings["SSH-06"]["target"]["status"]["state"] == "not-satisfied"  # waived: an accepted risk
    assert "RISK-42" in findings["SSH-06"]["remarks"]
    assert "SSH-09" not in findings  # not selected: observed, not a finding
    reviewed = result["reviewed-controls"]["control-selections"][0]["include-controls"]
    assert {"control-id": "ac-6.2"} in reviewed and {"control-id": "ia-5.1"} in reviewed
    props = {p["name"]: p["value"] for p in findings and result["observations"][0]["props"]}
    assert props["control-id"] == "SSH-01" and props["cis-recommendations"] == "5.1.20"
    assert props["ssg-rules"] == "xccdf_org.ssgproject.content_rule_sshd_disable_root_login"
    # the same evidence, the same file: auditors can compare digests
    assert json.dumps(oscal.assessment_results(copy.deepcopy(document))) == json.dumps(exported)


@pytest.mark.parametrize("ref, control_id", [("AC-6(2)", "ac-6.2"), ("SI-7", "si-7"), ("IA-5(1)", "ia-5.1"),
                                             ("not a control", None)])
def test_nist_references_become_oscal_catalog_ids(ref, control_id):
    assert oscal.nist_control_id(ref) == control_id


# --------------------------------------------------------------------------- SSG mapping and agreement
def _rule_ids(path):
    root = ET.parse(path).getroot()
    rules = {r.get("id") for r in root.iter(XCCDF + "Rule")}
    values = {v.get("id") for v in root.iter(XCCDF + "Value")}
    profiles = {p.get("id"): {s.get("idref") for s in p.findall(XCCDF + "select") if s.get("selected") == "true"}
                for p in root.iter(XCCDF + "Profile")}
    return rules, values, profiles


def test_the_mapping_names_real_rules_and_accounts_for_every_profile_rule(catalogue, ssg_mapping):
    rules, values, profiles = _rule_ids(os.path.join(CONTENT, "ssg-debian11-xccdf.xml"))
    prefix = ssg_mapping["rule_prefix"]
    mapped = {prefix + rule for _control, rule, _when in scanner.mapped_rules(ssg_mapping)}
    assert mapped <= rules, sorted(mapped - rules)
    assert {prefix + r for r in ssg_mapping["also_select"]} <= rules
    assert {ssg_mapping["value_prefix"] + v for v in ssg_mapping["values"]} <= values
    assert {c["id"] for c in catalogue["controls"]} >= set(ssg_mapping["controls"])
    unmapped = {prefix + rule for rule in ssg_mapping["unmapped"]}
    assert unmapped <= rules and not unmapped & mapped
    for name in ssg_mapping["content"]["profiles"]:
        selected = profiles[ssg_mapping["profile_prefix"] + name]
        # every rule an auditor's profile runs is compared with a control, or the mapping says why not
        assert selected <= mapped | unmapped, (name, sorted(selected - mapped - unmapped))


def test_the_tailoring_selects_the_mapped_rules_with_the_policy_s_values(ssg_mapping, catalogue):
    document = _document(catalogue, ssg_mapping)
    text = scanner.tailoring(ssg_mapping, document["ssg"]["values"], "/x/ds.xml", document["generated_at"])
    root = ET.fromstring(text)
    profile = root.find(XCCDF + "Profile")
    selected = {s.get("idref") for s in profile.findall(XCCDF + "select")}
    assert "xccdf_org.ssgproject.content_rule_sshd_set_keepalive_0" in selected  # required by sshd_set_idle_timeout
    values = {v.get("idref"): v.text for v in profile.findall(XCCDF + "set-value")}
    assert values["xccdf_org.ssgproject.content_value_var_sshd_set_keepalive"] == "3"
    assert values["xccdf_org.ssgproject.content_value_var_accounts_maximum_age_login_defs"] == "365"


def test_the_debian_11_data_stream_is_widened_to_debian_12_and_13_and_nothing_else(tmp_path):
    with open(os.path.join(CONTENT, "ssg-debian11-ds.xml")) as handle:
        text = handle.read()
    adapted = scanner.adapted_datastream(text)
    assert adapted.count(">^(11|12|13)\\.[0-9]+$<") == 2  # the checks' and the CPE component's copy
    # only those two patterns changed: every other line is the original's
    changed = [(a, b) for a, b in zip(text.splitlines(), adapted.splitlines()) if a != b]
    assert len(changed) == 2 and all("obj" not in a and "^11.[0-9]+$" in a for a, _b in changed)
    with pytest.raises(hardening.HardeningError, match="no Debian 11 platform check"):
        scanner.adapted_datastream(adapted.replace("obj_debian_11", "obj_debian_10"))


MAPPING = {"rule_prefix": "r_", "controls": {
    "A-1": ["one", "two"],
    "B-1": {"relation": "implies", "rules": ["three"]},
    "C-1": [{"rule": "four", "when": "observed.in_use == 'chrony'"}],
    "D-1": ["five", {"rule": "six", "needs": "running"}],
    "E-1": ["seven"]}}


def _controls(**statuses):
    return {"target": {}, "controls": [{"id": cid.replace("_", "-"), "check_status": st, "observed": {"in_use": "ntp"}}
                                       for cid, st in statuses.items()]}


@pytest.mark.parametrize("statuses, results, agree, disagree", [
    ({"A_1": "pass"}, {"r_one": "pass", "r_two": "pass"}, ["A-1"], []),
    ({"A_1": "pass"}, {"r_one": "pass", "r_two": "fail"}, [], ["A-1"]),  # our pass, a rule fails
    ({"A_1": "fail"}, {"r_one": "pass", "r_two": "pass"}, [], ["A-1"]),  # the reverse
    ({"A_1": "fail"}, {"r_one": "fail", "r_two": "pass"}, ["A-1"], []),  # together: some rule fails
    ({"B_1": "fail"}, {"r_three": "pass"}, [], []),  # implies: the control judges more
    ({"B_1": "pass"}, {"r_three": "fail"}, [], ["B-1"]),
    ({"C_1": "pass"}, {"r_four": "fail"}, [], []),  # when: this host uses ntp, not chrony
    ({"D_1": "fail"}, {"r_five": "pass", "r_six": "fail"}, [], []),  # six needs the running system: D-1 is
    ({"D_1": "pass"}, {"r_five": "fail", "r_six": "pass"}, [], ["D-1"]),  # compared on five, as 'implies'
    ({"E_1": "not_applicable"}, {"r_seven": "fail"}, [], []),
    ({"E_1": "pass"}, {"r_seven": "notapplicable"}, [], []),
])
def test_agreement_compares_a_control_with_its_rules_together(statuses, results, agree, disagree):
    document = _controls(**statuses)
    mapping = dict(MAPPING, controls={k: v for k, v in MAPPING["controls"].items()
                                      if k in {c["id"] for c in document["controls"]}})
    report = scanner.agreement(document, results, mapping)
    assert [e["control"] for e in report["agree"]] == agree
    assert [e["control"] for e in report["disagree"]] == disagree
    assert len(report["agree"]) + len(report["disagree"]) + len(report["not_comparable"]) == 1


def test_xccdf_results_are_read_and_counted():
    text = ('<TestResult xmlns="http://checklists.nist.gov/xccdf/1.2">'
            '<rule-result idref="a"><result>pass</result></rule-result>'
            '<rule-result idref="b"><result>fail</result></rule-result>'
            '<rule-result idref="c"><result>notselected</result></rule-result>'
            '<rule-result idref="d"><result>unknown</result></rule-result></TestResult>')
    results = scanner.parse_results(text)
    assert results == {"a": "pass", "b": "fail", "d": "unknown"}
    assert scanner.counts(results) == {"pass": 1, "fail": 1, "other": 1}


# --------------------------------------------------------------------------- the coverage table
def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", os.path.join(ROLE, "tools", "gen_docs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_coverage_table_is_generated_and_refuses_a_stale_join():
    gen = _gen_docs()
    rows, figures = gen.coverage()
    level1 = [r for r in rows if r["level"] == 1 and r["assessment"] == "automated"]
    assert figures["automated"] == len(level1) == 232  # CIS Debian Linux 12 v1.1.0, Level 1 - Server
    assert figures["covered"] + figures["out_of_scope"] == figures["automated"]
    assert figures["percent"] >= 80
    assert all(r["controls"] or r["reason"] for r in rows if r["level"] == 1)
    benchmark = gen.load_benchmark()
    catalogue = gen.load_catalogue()
    # a recommendation a control covers must not also claim to be out of scope
    stale = copy.deepcopy(benchmark)
    next(r for r in stale["recommendations"] if r["id"] == "5.1.20")["out_of_scope"] = "gdm"
    with pytest.raises(SystemExit, match="CIS 5.1.20 is covered by SSH-01 but still says out_of_scope"):
        gen.coverage(catalogue, stale)
    # a Level 1 recommendation no control covers needs a reason
    uncovered = copy.deepcopy(catalogue)
    uncovered["controls"] = [c for c in uncovered["controls"] if c["id"] != "SSH-01"]
    with pytest.raises(SystemExit, match=r"CIS 5\.1\.20 \(level 1\) has no control and no out_of_scope reason"):
        gen.coverage(uncovered, benchmark)
    wrong = copy.deepcopy(catalogue)
    wrong["controls"][0]["refs"]["cis"] = ["9.9.9"]
    with pytest.raises(SystemExit, match="cites CIS 9.9.9"):
        gen.coverage(wrong, benchmark)
    with open(os.path.join(os.path.dirname(os.path.dirname(ROLE)), "docs", "hardening-coverage.md")) as handle:
        table = handle.read()
    assert "| 5.1.20 | 1 | automated | Ensure sshd PermitRootLogin is disabled | SSH-01 | enforced |" in table
    assert "| 1.7.2 | 1 | automated | Ensure GDM login banner is configured | - | out of scope: GDM" in table
