# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-control results (status, waiver, 'fixed') and the summary the build gate reads."""

from __future__ import annotations

from ._common import SEVERITIES, STATUSES, HardeningError, as_list, norm
from .checks import evaluate_check, expected_of
from .observe import normalise_observations


def evaluate(planned, raw_observations, before=None):
    """Per-control results. ``before``: results of the pre-remediation check (enforce) for ``fixed``."""
    obs = normalise_observations(raw_observations)
    installed = set(obs.get("packages") or [])
    previous = {r["id"]: r for r in (before or [])}
    results = []
    for control in planned:
        check = control["check"]
        result = {
            "id": control["id"], "title": control["title"], "severity": control["severity"],
            "level": control["level"], "disruptive": bool(control.get("disruptive")),
            "refs": control.get("refs") or {}, "remediation": control.get("remediation"),
            "expected": expected_of(check), "observed": None, "message": "", "waiver": control.get("waiver"),
        }
        if not control["selected"]:
            result.update(status="not_applicable", check_status=None, message=control["reason"])
            results.append(result)
            continue
        needs = as_list(control.get("applies_if_installed"))
        try:
            if needs and not installed & set(needs):
                status, observed, message = "not_applicable", {"installed": []}, \
                    "applies where %s is installed" % " or ".join(needs)
            else:
                status, observed, message = evaluate_check(check, obs)
        except (KeyError, TypeError, ValueError) as exc:
            status, observed, message = "error", None, "could not evaluate: %s: %s" % (type(exc).__name__, exc)
        result.update(check_status=status, observed=observed, message=message)
        waiver = control.get("waiver")
        if waiver and not waiver["expired"]:
            result["status"] = "waived"
            result["message"] = ("waived until %s by %s (%s): %s%s" % (
                waiver["expires"], waiver["approver"], waiver["ticket"], waiver["justification"],
                ("; check: " + message) if message else ""))
        else:
            if waiver:
                result["message"] = norm("waiver expired on %s (%s); %s" % (waiver["expires"], waiver["ticket"], message))
            result["status"] = status
            if status == "pass" and previous.get(control["id"], {}).get("status") in ("fail", "error"):
                result["status"] = "fixed"
                result["message"] = "fixed in this run (was: %s)" % previous[control["id"]].get("message")
        if result["status"] in ("fail", "error") and not control["remediate"] and control.get("remediate_reason"):
            result["message"] = norm("%s [not remediated: %s]" % (result["message"], control["remediate_reason"]))
        results.append(result)
    return results


def summarise(results, fail_severity="high"):
    if fail_severity not in SEVERITIES:
        raise HardeningError("hardening_fail_severity value %r is not one of %s" % (fail_severity, ", ".join(SEVERITIES)))
    counts = {status: 0 for status in STATUSES}
    for result in results:
        counts[result["status"]] += 1
    threshold = SEVERITIES.index(fail_severity)
    failing = [r for r in results if r["status"] in ("fail", "error")]
    blocking = [r["id"] for r in failing if SEVERITIES.index(r["severity"]) >= threshold]
    scored = counts["pass"] + counts["fixed"] + counts["fail"] + counts["error"]
    score = round(100.0 * (counts["pass"] + counts["fixed"]) / scored, 1) if scored else 100.0
    status = "fail" if blocking else ("warn" if failing else "pass")
    return {
        "status": status, "score": score, "counts": counts, "total": len(results),
        "fail_severity": fail_severity, "blocking_failures": blocking,
        "failures": [r["id"] for r in failing],
        "waived": [r["id"] for r in results if r["status"] == "waived"],
        "expired_waivers": [r["id"] for r in results if r.get("waiver") and r["waiver"]["expired"]],
    }
