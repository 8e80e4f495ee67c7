# -*- coding: utf-8 -*-
"""The register's per-control rows from the evidence documents the roles really write.

The documents are built with the roles' own builders (plugin_utils/release_readiness.py,
plugin_utils/hardening.py), so a change of their shape shows here; the browser test
(test_register_evidence_browser.py) checks the same rows on the page after real role runs.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.change_register import evidence_controls
from ansible_collections.changeops.itsm.plugins.plugin_utils import hardening, release_readiness

NOW = "2026-03-02T10:00:00Z"


def gate(gate_id, status, message, observed=None, expected=None, blocking=True):
    """One gate result with the keys release_readiness.evaluate() gives it."""
    return {"id": gate_id, "title": "title of %s" % gate_id, "tier": "A", "blocking": blocking, "owner": "sre",
            "category": "health", "type": "http", "status": status, "observed": observed, "expected": expected,
            "message": message, "checked_at": NOW, "skip": None, "remediation": None}


def host_document(host, results):
    summary = release_readiness.summarise(results)
    return release_readiness.host_evidence(host, results, summary, "shop", "A", NOW)


def test_service_scope_readiness_evidence_gives_one_row_per_host_and_gate():
    web01 = host_document("web01", [gate("GATE-HTTP-01", "pass", "200 in 0.01 s", {"status": 200}, "GET / -> 200"),
                                    gate("GATE-DISK-01", "fail", "/ has 3% free", expected=">= 15% free")])
    web02 = host_document("web02", [gate("GATE-HTTP-01", "fail", "returned 503", {"status": 503}, "GET / -> 200")])
    service = release_readiness.service_evidence("shop", "A", [web01, web02], ["web03"], NOW)
    assert isinstance(service["gates"], dict), "the service document keeps every host's gates under its name"

    controls = evidence_controls(service)
    assert [(c["host"], c["id"], c["status"]) for c in controls] == [
        ("web01", "GATE-HTTP-01", "pass"), ("web01", "GATE-DISK-01", "fail"), ("web02", "GATE-HTTP-01", "fail")]
    assert controls[2]["detail"] == "returned 503"
    assert controls[2]["observed"] == '{\n  "status": 503\n}'
    assert all(isinstance(c["status"], str) for c in controls)

    # a host's own document: the same gates, no host column
    assert [(c["host"], c["id"], c["status"]) for c in evidence_controls(web02)] == [(None, "GATE-HTTP-01", "fail")]


def test_hardening_evidence_rows_keep_status_and_message():
    results = [
        {"id": "SSH-01", "title": "No root login", "severity": "high", "level": 1, "status": "fail",
         "check_status": "fail", "observed": {"permitrootlogin": "yes"}, "expected": {"permitrootlogin": "no"},
         "message": "permitrootlogin is yes", "refs": {}, "waiver": None},
        {"id": "FS-02", "title": "/tmp noexec", "severity": "medium", "level": 1, "status": "pass",
         "check_status": "pass", "observed": "noexec", "expected": "noexec", "message": "", "refs": {}, "waiver": None},
    ]
    document = hardening.evidence("web01", {"name": "baseline", "version": 3}, "audit", results,
                                  hardening.summarise(results), NOW)
    controls = evidence_controls(document)
    assert [(c["host"], c["id"], c["status"], c["detail"]) for c in controls] == [
        (None, "SSH-01", "fail", "permitrootlogin is yes"), (None, "FS-02", "pass", None)]


def test_structured_status_is_text_and_unknown_shapes_fall_back_to_the_document():
    assert evidence_controls({"checks": {"ntp": {"status": {"state": "degraded"}}}})[0]["status"] == \
        '{\n  "state": "degraded"\n}'
    assert evidence_controls({"results": {"web01": ["pass", "fail"]}}) == []
    assert evidence_controls({"summary": {"status": "pass"}}) == []
