# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Standard changes earned from the record, and standard templates whose changes started failing.

:func:`find_candidates` groups the recorded **normal** changes (plays a gate authorised under an
approved change request) of a window by their *signature* - the playbook, its roles and modules, the
protected areas it touched, the target environments and CI classes, as the gate's change context
recorded them - and proposes a standard change template for each group that:

* succeeded at least ``min_successes`` times,
* never failed or was interrupted,
* has no incident linked and was never remediated (``change_link``; an emergency change of the same
  CIs soon after also counts, as in the metrics' change failure rate),
* touches no protected area (no standard template can ever cover one: those stay normal changes).

The proposal is the **tightest** template that covers every observed run: the playbook by name,
exactly its roles, only the modules, files and CI classes seen, the environments seen, at most the
largest number of hosts seen, and an ``allow_*`` switch only for what the gate could not see in every
run that succeeded. It comes as policy YAML with its evidence (the change events, their change
requests and reviews). Nothing is pre-authorised here: a CAB member reviews it and publishes it with
``changeops.itsm.change_policy``, under the publishing rules of the policy in force.

:func:`failing_templates` is the reverse: standard templates of the policy in force whose changes in
the window failed (or were remediated, or had an incident), for review.
"""

from __future__ import annotations

import datetime
import json
import re

try:
    import yaml
except ImportError:  # pragma: no cover - ansible-core ships PyYAML
    yaml = None

from ansible_collections.changeops.itsm.plugins.module_utils import change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import policy_store
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.durations import parse_duration

SIGNATURE_FIELDS = ("playbook_name", "roles", "modules", "protected_areas", "environments", "ci_classes")
#: blind spots a template accepts only with its allow_* switch (change_policy.BLIND_SPOTS)
BLIND_SPOTS = [(field, key) for field, key, _text, _avoid in change_policy.BLIND_SPOTS]


def _normal_gate(event):
    """The first allowing, non-dry-run normal decision of a change event, or None."""
    for gate in event.get("gates") or ():
        if gate.get("allowed") and gate.get("type") == "normal":
            return gate
    return None


def signature(gate):
    context = gate.get("context") or {}
    return {
        "playbook_name": context.get("playbook_name"),
        "roles": sorted(set(context.get("roles") or ())),
        "modules": sorted(set(context.get("modules") or ())),
        "protected_areas": sorted(set(touch.get("area") for touch in gate.get("protected_areas") or ())),
        "environments": sorted(set(context.get("environments") or ())),
        "ci_classes": sorted(set(context.get("ci_classes") or ())),
    }


def _literal(values):
    return "`%s`" % json.dumps(sorted(values), separators=(",", ":"))


def _only(field, values):
    """JMESPath: every item of ``field`` is one of ``values``."""
    return "length(%s[?!contains(%s, @)]) == `0`" % (field, _literal(values))


def _quote(text):
    return "'%s'" % str(text).replace("\\", "\\\\").replace("'", "\\'")


def _template_name(sig, taken):
    stem = re.sub(r"\.ya?ml$", "", sig["playbook_name"] or "play")
    base = re.sub(r"[^a-z0-9]+", "-", ("earned-%s-%s" % (stem, "-".join(sig["environments"]) or "any")).lower()).strip("-")
    name, number = base, 2
    while name in taken:
        name = "%s-%d" % (base, number)
        number += 1
    taken.add(name)
    return name


def propose_template(sig, contexts, runs, name):
    """The tightest standard template covering ``contexts`` (the recorded change contexts of the runs)."""
    conditions = ["playbook_name == %s" % _quote(sig["playbook_name"])]
    conditions.append("length(roles) == `%d`" % len(sig["roles"]))
    conditions.extend("contains(roles, %s)" % _quote(role) for role in sig["roles"])
    conditions.append(_only("modules", sig["modules"]))
    paths = sorted(set(path for context in contexts for path in context.get("paths") or ()))
    conditions.append(_only("paths", paths))
    if sig["ci_classes"]:
        conditions.append(_only("ci_classes", sig["ci_classes"]))
    template = {
        "name": name,
        "description": "Earned from the record: %d successful normal changes of %s between %s and %s (%s), no "
                       "failure, remediation or incident. Proposed by standard_change_candidates_info; publish only "
                       "after CAB review." % (len(runs), sig["playbook_name"], runs[0]["started_at"][:10],
                                              runs[-1]["started_at"][:10],
                                              ", ".join(sorted(set(run["change_request"] for run in runs
                                                                   if run.get("change_request")))) or "no CHG"),
        "conditions": conditions,
        "max_hosts": max(max(int(context.get("play_host_count") or 0), 1) + int(context.get("delegated_host_count")
                                                                                or 0) for context in contexts),
    }
    if sig["environments"]:
        template["environments"] = list(sig["environments"])
    for field, key in BLIND_SPOTS:
        if any(context.get(field) for context in contexts):
            template[key] = True
    return template


def _check(template, contexts, now):
    """The proposed template parsed as a policy would be, and every observed run it would not cover."""
    policy = change_policy.parse_policy({"templates": [template]}, "proposed template %s" % template["name"])
    problems = []
    for context in contexts:
        full = dict(context)
        full.setdefault("hosts", [])
        full.setdefault("cis", [])
        found = change_policy.evaluate_standard(policy, full, now, only_template=template["name"])
        if not found["covered_by"]:
            problems.extend(found["reasons"])
    return sorted(set(problems))


def _failures(sor, run_ids, facts):
    """run_id -> reasons it counts as failed (status, incident, remediation)."""
    reasons = {}
    for run_id in run_ids:
        status = (facts.get(run_id) or {}).get("status")
        if status in ("failed", "interrupted"):
            reasons.setdefault(run_id, []).append(status)
    for link in sor.find_change_links(run_ids=list(run_ids)):
        reasons.setdefault(link["run_id"], []).append(link["link"])
    return reasons


def find_candidates(sor, since, now, min_successes=5, in_force=None, environments=None):
    """Signatures of normal changes since ``since`` and, for those that earned it, a proposed template."""
    events = [event for event in sor.find_change_events(since=format_time(since))
              if not event.get("dry_run") and event.get("status") != "running" and _normal_gate(event)]
    facts = {event["run_id"]: event for event in events}
    failures = _failures(sor, list(facts), facts)
    groups = {}
    for event in sorted(events, key=lambda event: (event.get("started_at") or "", event["run_id"])):
        gate = _normal_gate(event)
        sig = signature(gate)
        if environments and not set(sig["environments"]) & set(environments):
            continue
        key = json.dumps(sig, sort_keys=True)
        group = groups.setdefault(key, {"signature": sig, "runs": [], "contexts": []})
        group["runs"].append({
            "run_id": event["run_id"], "started_at": event.get("started_at"), "ended_at": event.get("ended_at"),
            "status": event.get("status"), "user": event.get("user"),
            "change_request": (gate.get("change_request") or {}).get("number") if isinstance(
                gate.get("change_request"), dict) else gate.get("reference"),
            "failure": failures.get(event["run_id"]),
            "reviews": [{key: review.get(key) for key in ("reviewer", "outcome", "comment", "reviewed_at")}
                        for review in sor.find_reviews(event["run_id"])]})
        group["contexts"].append(gate.get("context") or {})
    taken = set(template.name for template in (in_force.policy.templates if in_force is not None else ()))
    candidates, not_eligible = [], []
    for group in groups.values():
        sig, runs = group["signature"], group["runs"]
        failed = [run for run in runs if run["failure"]]
        successes = [run for run in runs if run["status"] == "successful" and not run["failure"]]
        why = []
        if sig["protected_areas"]:
            why.append("it touches protected area%s %s, which no standard template can cover" % (
                "s" if len(sig["protected_areas"]) > 1 else "", ", ".join(sig["protected_areas"])))
        if failed:
            why.append("%d of its changes failed or needed remediation (%s)" % (
                len(failed), ", ".join("%s: %s" % (run["run_id"], "+".join(run["failure"])) for run in failed[:5])))
        if len(successes) < min_successes:
            plural = "" if len(successes) == 1 else "s"
            why.append("%d successful change%s, %d needed" % (len(successes), plural, min_successes))
        entry = {"signature": sig, "successes": len(successes), "failures": len(failed), "evidence": runs}
        covered = _already_covered(in_force, group["contexts"][-1], now)
        if covered:
            entry["already_covered_by"] = covered
        if why:
            entry["not_eligible"] = why
            not_eligible.append(entry)
            continue
        name = _template_name(sig, taken)
        template = propose_template(sig, group["contexts"], runs, name)
        entry.update(template=template, checks=_check(template, group["contexts"], now),
                     template_yaml=_dump({"templates": [template]}))
        if in_force is not None:
            document = dict(in_force.policy.document or {})
            document["templates"] = list(document.get("templates") or []) + [template]
            entry["proposed_policy"] = _dump(document)
        candidates.append(entry)
    candidates.sort(key=lambda entry: (-entry["successes"], entry["template"]["name"]))
    return candidates, not_eligible


def _already_covered(in_force, context, now):
    if in_force is None or not in_force.policy.templates:
        return None
    full = dict(context)
    full.setdefault("hosts", [])
    full.setdefault("cis", [])
    covered = change_policy.evaluate_standard(in_force.policy, full, now)["covered_by"]
    return covered[0] if covered else None


def failing_templates(sor, since, in_force, threshold=1):
    """Standard templates of the policy in force with at least ``threshold`` failed changes since ``since``."""
    if in_force is None:
        return []
    names = [template.name for template in in_force.policy.templates]
    if not names:
        return []
    events = [event for event in sor.find_change_events(since=format_time(since), authorisation=None)
              if not event.get("dry_run")]
    by_template = {}
    for event in events:
        for gate in event.get("gates") or ():
            if gate.get("allowed") and gate.get("type") == "standard" and gate.get("reference") in names:
                by_template.setdefault(gate["reference"], {})[event["run_id"]] = event
    reported = []
    for name, runs in sorted(by_template.items()):
        failures = _failures(sor, list(runs), runs)
        if len(failures) < threshold:
            continue
        ordered = sorted(runs.values(), key=lambda event: event.get("started_at") or "")
        reported.append({
            "template": name, "changes": len(runs), "failed": len(failures),
            "failure_rate": round(len(failures) / float(len(runs)), 4),
            "first_failure_at": min(runs[run_id].get("started_at") for run_id in failures),
            "failures": [{"run_id": run_id, "started_at": runs[run_id].get("started_at"), "why": reasons}
                         for run_id, reasons in sorted(failures.items(), key=lambda item: runs[item[0]].get(
                             "started_at") or "")],
            "last_change_at": ordered[-1].get("started_at"),
            "recommendation": "review template '%s': %d of its %d changes since %s failed or needed remediation; "
                              "narrow or withdraw it by publishing a new policy version" % (
                                  name, len(failures), len(runs), format_time(since)[:10])})
    return reported


def _dump(document):
    if yaml is None:  # pragma: no cover
        return json.dumps(document, indent=2, sort_keys=False)
    return yaml.safe_dump(change_policy.plain_document(document), sort_keys=False, default_flow_style=False,
                          allow_unicode=True, width=120)


# --------------------------------------------------------------------------
# standard_change_candidates_info
# --------------------------------------------------------------------------
STANDARD_CHANGE_CANDIDATES_INFO_SPEC = dict(
    backend_argument_spec(),
    window=dict(type="str", default="90d"),
    min_successes=dict(type="int", default=5),
    environment=dict(type="list", elements="str"),
    failure_threshold=dict(type="int", default=1),
)


def candidates_info(ctx):
    """``standard_change_candidates_info`` operation: proposes, never publishes."""
    params = ctx.params
    for key in ("min_successes", "failure_threshold"):
        if params.get(key) is not None and params[key] < 1:
            raise ValidationError("%s must be at least 1, got %r" % (key, params[key]), option=key)
    window = parse_duration(params.get("window") or "90d")
    if window is None:
        raise ValidationError("window: %r is not a duration such as 90d, 12w or 720h" % params.get("window"),
                              option="window", value=params.get("window"))
    now = datetime.datetime.now(datetime.timezone.utc)
    since = now - window
    in_force = policy_store.in_force_for(ctx)
    candidates, not_eligible = find_candidates(ctx.sor, since, now, min_successes=params.get("min_successes") or 5,
                                               in_force=in_force, environments=params.get("environment"))
    failing = failing_templates(ctx.sor, since, in_force, threshold=params.get("failure_threshold") or 1)
    return {"changed": False, "since": format_time(since), "policy": in_force.describe(), "candidates": candidates,
            "not_eligible": not_eligible, "failing_templates": failing,
            "msg": "%d standard change candidate%s, %d template%s to review since %s; nothing is published: a CAB member "
                   "publishes a proposed_policy with changeops.itsm.change_policy" % (
                       len(candidates), "" if len(candidates) == 1 else "s", len(failing),
                       "" if len(failing) == 1 else "s", format_time(since)[:10])}
