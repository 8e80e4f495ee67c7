# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change gate's decision: may this play change the hosts it targets?

:func:`decide` is pure: policy, change context, the change request record (if
any), who asks and when. It always returns a complete decision document with
*every* reason it was not allowed, so the person reading a denial can fix all
of it at once. :func:`run_gate` is the operation around it: it reads the
change request (polling while it awaits approval when asked to), decides and
appends the ``run.gate`` ledger entry that the change event's authorisation is
computed from. Anything that stops the gate from reading the system of record
is a denial (fail closed), never an error that lets the play go on.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import time
import uuid

from ansible_collections.changeops.itsm.plugins.module_utils import change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import duties
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import Identity, claimed_user
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import authorising_approvals
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import find_host_ci_columns, find_host_cis
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import name_list
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.durations import describe_roughly
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import gate as intelligence
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import graph
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.authority import authority_for
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import instance_argument_spec

DECISION_TYPES = ("standard", "normal", "emergency", "dry-run", "denied")
#: reasons listed one by one before the rest is summarised (a 10,000-host play
#: missing from a change request should not produce a 10,000-line message)
MAX_HOST_REASONS = 20

CHANGE_GATE_SPEC = dict(
    backend_argument_spec(),
    policy=dict(type="path"),
    change_request=dict(type="str"),
    standard_template=dict(type="str"),
    emergency=dict(type="bool", default=False),
    justification=dict(type="str"),
    fail_on_deny=dict(type="bool", default=True),
    wait_for_approval=dict(type="bool", default=False),
    approval_timeout=dict(type="int", default=3600),
    poll_interval=dict(type="int", default=60),
    **instance_argument_spec()
)


#: the change request (number) or emergency (its justification) the operator names for what they run:
#: read by the gate when its task names neither, and by the change_recorder for ad-hoc commands
CHANGE_REQUEST_ENV = "CHANGEOPS_CHANGE_REQUEST"
EMERGENCY_ENV = "CHANGEOPS_EMERGENCY"


def named_in_environment(params, environ):
    """``params`` with the change request or emergency that ``environ`` names, when the task names neither.

    ``CHANGEOPS_CHANGE_REQUEST=CHG0000042`` names a change request; ``CHANGEOPS_EMERGENCY=<justification>``
    declares an emergency with that justification. A task's own ``change_request``, ``emergency`` or
    ``standard_template`` always wins: the environment never changes a decision the play spells out.
    """
    params = dict(params)
    if params.get("change_request") or params.get("emergency") or params.get("standard_template"):
        return params
    number = (environ.get(CHANGE_REQUEST_ENV) or "").strip()
    justification = (environ.get(EMERGENCY_ENV) or "").strip()
    if justification:
        params.update(emergency=True, justification=params.get("justification") or justification)
    if number:
        params["change_request"] = number
    return params


# --------------------------------------------------------------------------
# the change context
# --------------------------------------------------------------------------
_NO_ATTRIBUTES = {}


def ci_service_names(ci):
    """The business services of a CI, read as the CMDB reads them (``cmdb_mapping.name_list``)."""
    return name_list((ci.get("attributes") or _NO_ATTRIBUTES).get("services"))


def _ci_doc(name, ci, services):
    return {"name": name, "ci_id": ci.get("ci_id"), "environment": ci.get("environment"), "class": ci.get("class"),
            "services": services, "status": ci.get("status")}


def groups_holding(hosts, host_groups):
    """The set of groups holding at least one of ``hosts``: ``host_groups`` is ``{host: [group, ...]}``, or an
    object answering ``groups_holding(hosts)`` per group (the action plugin's ``InventoryGroups``)."""
    per_group = getattr(host_groups, "groups_holding", None)
    if per_group is not None:
        return set(per_group(hosts))
    groups = set()
    for host in hosts:
        groups.update(host_groups.get(host, ()))
    return groups


def build_change_context(play, hosts, host_groups, cis, user, check_mode, now, ci_documents=True):
    """The document that template conditions (JMESPath) are evaluated against.

    ``play`` is what the action plugin found in the play (see
    ``plugin_utils/play_inspection.py``); ``cis`` the CMDB records of the
    targeted hosts and of the hosts tasks delegate to (one per name: each
    host's own CI). Aggregates (``environments``, ``groups``...) are computed
    here once so that conditions stay cheap for plays of many hosts.
    ``environments`` and ``hosts_without_environment`` cover the hosts tasks
    delegate to as well: the play changes them too, so environment limits and
    freezes must see them.

    ``ci_documents``: whether to build ``cis``, one document per targeted host (True), or a function of the
    play's environments that says whether anything will read them (``ci_documents_read``): for a play of
    10,000 hosts they are most of the context's cost, and only a template condition that reads ``cis`` or an
    environment limit's reason (which names the hosts outside it) does. Without them the context has no ``cis``
    key, and the aggregates are the same.
    """
    by_name = {ci["name"]: ci for ci in reversed(cis) if ci.get("name")}
    documents = ci_documents is True
    found = _host_records(hosts, by_name, documents)
    if not documents and (found is None or ci_documents(sorted(found[4]))):
        # deciding reads the documents (or a CI lists odd services, which only the documents normalise)
        found = _host_records(hosts, by_name, True)
    ci_docs, hosts_without_ci, hosts_without_environment, classes, environments, services = found
    return _context(play, hosts, host_groups, by_name, ci_docs, hosts_without_ci, hosts_without_environment,
                    classes, environments, services, user, check_mode, now)


def ci_documents_read(policies):
    """For ``build_change_context``: True, or a function of the play's environments saying whether deciding under
    ``policies`` (the policy in force, a draft beside it; None skipped) reads the per-host documents ``cis``:
    a template condition that can read them (``Policy.conditions_may_read``), or a template's environment
    limit that one of the play's environments is outside of (its reason lists the hosts there:
    ``change_policy.template_mismatches``)."""
    policies = [policy for policy in policies if policy is not None]
    if any(policy.conditions_may_read("cis") for policy in policies):
        return True  # whatever the environments (and the column-by-column read is not worth starting)
    limits = [frozenset(template.environments) for policy in policies for template in policy.templates
              if template.environments is not None]

    def read(environments):
        return any(not limit.issuperset(environments) for limit in limits)
    return read


def _host_records(hosts, by_name, documents):
    """``(ci_docs, hosts_without_ci, hosts_without_environment, classes, environments, services)`` of the targeted
    hosts, in ONE pass over them with as little work per host as possible (for a play of thousands of hosts this
    loop is most of the context's cost). ``documents``: also build ``ci_docs``, one document per host with a CI
    (else None). Without documents, None when a CI's list of services holds something other than names: the
    documents normalise those lists (ask again with ``documents``)."""
    ci_docs = [] if documents else None
    add_doc = ci_docs.append if documents else None
    hosts_without_ci = []
    hosts_without_environment = []
    environments = set()
    classes = set()
    service_lists = []
    add_environment = environments.add
    add_class = classes.add
    add_services = service_lists.append
    find = by_name.get
    for host in hosts:
        ci = find(host)
        if ci is None:
            hosts_without_ci.append(host)
            hosts_without_environment.append(host)
            continue
        get = ci.get
        # the list as stored, not a normalised copy: normalising per host doubled the cost of
        # this loop; odd values (one string, numbers, nulls) are normalised below
        ci_services = (get("attributes") or _NO_ATTRIBUTES).get("services")
        if ci_services.__class__ is not list:
            ci_services = ci_service_names(ci)
        add_services(ci_services)
        ci_class = get("class")
        add_class(ci_class)
        environment = get("environment")
        if documents:
            add_doc({"name": host, "ci_id": get("ci_id"), "environment": environment, "class": ci_class,
                     "services": ci_services, "status": get("status")})
        if environment:
            add_environment(environment)
        else:
            hosts_without_environment.append(host)
    classes.discard(None)
    try:
        services = set(itertools.chain.from_iterable(service_lists))
    except TypeError:  # an unhashable item: normalise those CIs' lists, one by one as they come
        if not documents:
            return None
        services = set()
        for doc in ci_docs:
            try:
                services.update(doc["services"])
            except TypeError:
                doc["services"] = ci_service_names(by_name[doc["name"]])
                services.update(doc["services"])
    if any(name.__class__ is not str or not name.strip() for name in services):
        if not documents:
            return None
        # rare: some CI lists a number or a null; redo the (few) documents with normalised names
        services = set()
        for doc in ci_docs:
            doc["services"] = ci_service_names(by_name[doc["name"]])
            services.update(doc["services"])
    return ci_docs, hosts_without_ci, hosts_without_environment, classes, environments, services


def lean_change_context(sor, play, hosts, host_groups, user, check_mode, now, documents_read):
    """``(context, {host CI id: name})``, as ``build_change_context`` over ``find_host_cis`` gives them, when deciding
    reads no per-host CI document (``documents_read``: ``ci_documents_read``); else None (build them that way).

    The play's host CIs are read column by column (``cmdb_identity.find_host_ci_columns``) and the context's
    aggregates taken per column, with no record per CI or per host: at 10,000 hosts this path builds some 60,000
    fewer objects than the one through CI records (which the gate takes when deciding reads the documents, and which
    the hosts tasks delegate to outside the play, usually none, still take)."""
    if documents_read is True or getattr(sor, "find_ci_columns", None) is None:
        return None
    columns = find_host_ci_columns(sor, hosts)
    names, environments_of = columns["name"], columns["environment"]
    environment_of = dict(zip(names, environments_of))
    services = set(columns["facet_value"])
    if any(name.__class__ is not str or not name.strip() for name in services):
        return None  # a service name the CI records normalise (no facet holds one): the records' way
    environments = set(environments_of)
    environments.discard(None)
    environments.discard("")
    if documents_read(sorted(environments)):
        return None
    classes = set(columns["class"])
    classes.discard(None)
    targeted = set(hosts)
    # (a set test, not a count of the names read: a backend matching names loosely must not hide a host without CI)
    hosts_without_ci = [host for host in hosts if host not in environment_of] \
        if not targeted.issubset(environment_of) else []
    hosts_without_environment = [host for host in hosts if not environment_of.get(host)] \
        if hosts_without_ci or not all(environments_of) else []
    host_ci_ids = dict(zip(columns["ci_id"], names))
    outside = [host for host in play.get("delegated_hosts") or () if host not in targeted]
    by_name = find_host_cis(intelligence.CiSummaries(sor), outside) if outside else {}
    host_ci_ids.update(graph.ci_ids_of(by_name))
    context = _context(play, hosts, host_groups, by_name, None, hosts_without_ci, hosts_without_environment, classes,
                       environments, services, user, check_mode, now)
    return context, host_ci_ids


def _context(play, hosts, host_groups, by_name, ci_docs, hosts_without_ci, hosts_without_environment, classes,
             environments, services, user, check_mode, now):
    targeted = set(hosts)
    delegated_docs = []
    for host in play.get("delegated_hosts") or ():
        if host in targeted:
            continue
        ci = by_name.get(host)
        if ci is None:
            hosts_without_environment.append(host)
            continue
        delegated_docs.append(_ci_doc(host, ci, ci_service_names(ci)))
        if ci.get("environment"):
            environments.add(ci["environment"])
        else:
            hosts_without_environment.append(host)
    outside_play = play.get("delegated_outside_play")
    if outside_play is None:
        outside_play = [host for host in play.get("delegated_hosts") or () if host not in targeted]
    groups = groups_holding(hosts, host_groups)
    groups.discard("all")
    groups.discard("ungrouped")
    local_now = now.astimezone(datetime.timezone.utc)
    context = {
        "playbook": play.get("playbook"),
        "playbook_name": play.get("playbook_name"),
        "play": play.get("name") or "",
        "pattern": play.get("pattern"),
        "hosts": list(hosts),
        "host_count": len(hosts),
        # with serial, hosts is one batch; limits are about the whole play
        "play_host_count": max(int(play.get("play_host_count") or 0), len(hosts)),
        "groups": sorted(groups),
        "roles": list(play.get("roles") or []),
        "tags": list(play.get("tags") or []),
        "run_tags": list(play.get("run_tags") or []),
        "skip_tags": list(play.get("skip_tags") or []),
        "modules": list(play.get("modules") or []),
        "paths": list(play.get("paths") or []),
        "dynamic_includes": list(play.get("dynamic_includes") or []),
        # what the gate read in advance, and what it ruled out (a when false for every host of the batch)
        "read_includes": list(play.get("read_includes") or []),
        "skipped_includes": list(play.get("skipped_includes") or []),
        "skipped_tasks": list(play.get("skipped_tasks") or []),
        # "module X" / "path P" -> the file:line of the first task that calls or writes it
        "touched_at": dict(play.get("touched_at") or {}),
        "unresolved_paths": list(play.get("unresolved_paths") or []),
        # services the tasks start, stop, enable or mask (service modules, systemctl/service commands), and
        # the programs command/shell/raw tasks run: protected areas name theirs
        "system_services": list(play.get("system_services") or []),
        "unresolved_services": list(play.get("unresolved_services") or []),
        "commands": list(play.get("commands") or []),
        # conditions the gate cannot judge before the play runs, counted as true: "path P" -> "when: ... (why)"
        # for what only such tasks touch, and every such task
        "conditions_at": dict(play.get("conditions_at") or {}),
        "uncertain_conditions": list(play.get("uncertain_conditions") or []),
        "opaque_actions": list(play.get("opaque_actions") or []),
        "delegated_hosts": list(play.get("delegated_hosts") or []),
        # hosts tasks delegate to that the play does not target: they count towards max_hosts
        "delegated_host_count": len(outside_play),
        "delegated_cis": delegated_docs,
        "unresolved_delegations": list(play.get("unresolved_delegations") or []),
        "real_in_check_mode": list(play.get("real_in_check_mode") or []),
        "uninspectable_includes": list(play.get("uninspectable_includes") or []),
        "hosts_without_ci": hosts_without_ci,
        "hosts_without_environment": hosts_without_environment,
        "environments": sorted(environments),
        "ci_classes": sorted(classes),
        "services": sorted(services),
        "check_mode": bool(check_mode),
        "user": user,
        "now": format_time(local_now),
        "weekday": change_policy.WEEKDAYS[local_now.weekday()],
        "hour": local_now.hour,
    }
    if ci_docs is not None:
        context["cis"] = ci_docs
    return context


def context_summary(context):
    """What the ledger keeps of the context: everything but the per-host lists (the decision has ``hosts``)
    and the blast radius (the decision has its summary)."""
    return {key: value for key, value in context.items() if key not in ("cis", "hosts", "blast_radius")}


# --------------------------------------------------------------------------
# wording
# --------------------------------------------------------------------------
def _local(moment_text, tz_name):
    moment = parse_time(moment_text)
    try:
        tz = change_policy.load_timezone(tz_name or "UTC", _raise_bad_zone)
    except ValidationError:
        tz, tz_name = datetime.timezone.utc, "UTC"
    return "%s %s" % (moment.astimezone(tz).strftime("%Y-%m-%d %H:%M"), tz_name or "UTC")


def _raise_bad_zone(message):
    raise ValidationError(message)


def _host_reasons(missing, number):
    reasons = ["%s is not an affected CI of %s" % (host, number) for host in missing[:MAX_HOST_REASONS]]
    if len(missing) > MAX_HOST_REASONS:
        reasons.append("%d more hosts are not affected CIs of %s" % (len(missing) - MAX_HOST_REASONS, number))
    return reasons


def _matched_by(touch):
    matched = touch["matched_by"]
    more = " and %d more" % (len(matched) - 3) if len(matched) > 3 else ""
    return ", ".join(matched[:3]) + more


def _freeze_reasons(freezes, change_type):
    reasons = []
    for freeze in freezes:
        if change_type in freeze.allowed_change_types:
            continue
        text = "freeze '%s' in force until %s" % (
            freeze.name, change_policy.describe_local(freeze.end, freeze.timezone, freeze.tz))
        if freeze.environments:
            text += " for %s" % ", ".join(freeze.environments)
        if freeze.allowed_change_types:
            text += " (only %s changes allowed)" % " or ".join(freeze.allowed_change_types)
        else:
            text += " (no changes allowed)"
        if freeze.reason:
            text += ": %s" % freeze.reason
        reasons.append(text)
    return reasons


# --------------------------------------------------------------------------
# the decision
# --------------------------------------------------------------------------
def awaiting_approval(record):
    """A request that may still become implementable without anyone editing the play."""
    if record is None:
        return False
    return record.get("state") in ("new", "assess", "authorise") and record.get("approval") != "rejected"


def check_change_request(policy, context, record, number, now):
    """Every reason ``record`` does not authorise this play now (empty: it does)."""
    if record is None:
        return ["%s does not exist in the system of record" % number]
    reasons = []
    state = record.get("state")
    if state not in policy.normal_states:
        reasons.append("%s is in state %s, not %s" % (number, state, " or ".join(policy.normal_states)))
    # A standard request is pre-approved by its template (checked against the play by decide()).
    authorising = authorising_approvals(record.get("type"))
    approval = record.get("approval") or "not requested"
    if approval == "rejected":
        last = [a for a in record.get("approvals") or [] if a.get("decision") == "rejected"]
        who = (" by %s" % last[-1].get("approver")) if last else ""
        comment = (": %s" % last[-1]["comment"]) if last and last[-1].get("comment") else ""
        reasons.append("%s was rejected%s%s" % (number, who, comment))
    elif approval not in authorising:
        reasons.append("%s is not approved (approval: %s)" % (number, approval))
    start, end = record.get("planned_start"), record.get("planned_end")
    tz_name = record.get("timezone") or "UTC"
    if not start or not end:
        reasons.append("%s has no planned window (planned_start and planned_end)" % number)
    else:
        if now < parse_time(start):
            reasons.append("now is %s before the window starts (%s)"
                           % (describe_roughly(parse_time(start) - now), _local(start, tz_name)))
        if now >= parse_time(end):
            reasons.append("now is %s after the window ends (%s)"
                           % (describe_roughly(now - parse_time(end)), _local(end, tz_name)))
    # what an external authority (ServiceNow) says against it: scheduling conflicts, a change on hold
    reasons.extend(record.get("authority_reasons") or ())
    affected = set(record.get("affected_cis") or ())
    missing = [host for host in context["hosts"] if host not in affected]
    reasons.extend(_host_reasons(missing, number))
    # a task delegated elsewhere changes that host too
    targeted = set(context["hosts"])
    delegated = [host for host in context.get("delegated_hosts") or () if host not in affected and host not in targeted]
    reasons.extend("%s (a task delegates to it) is not an affected CI of %s" % (host, number)
                   for host in delegated[:MAX_HOST_REASONS])
    if len(delegated) > MAX_HOST_REASONS:
        reasons.append("%d more hosts tasks delegate to are not affected CIs of %s"
                       % (len(delegated) - MAX_HOST_REASONS, number))
    for where in context.get("unresolved_delegations") or ():
        reasons.append("the gate cannot tell which host %s is before the play runs, so it cannot check it is an "
                       "affected CI of %s; delegate to a name or a variable known before the play" % (where, number))
    return reasons


def _standard_request_reasons(policy, context, now, decision, record, number, standard_template):
    """A standard change request authorises only what its template covers: the template is the
    pre-authorisation, the request merely schedules one instance of it."""
    template = record.get("template")
    if not template:
        return ["%s is a standard change request but names no standard change template; set its template "
                "to the policy template that covers this work (%s), or raise a normal change request"
                % (number, ", ".join(t.name for t in policy.templates[:5]) or "the policy has none")]
    reasons = []
    if standard_template and standard_template != template:
        reasons.append("standard_template '%s' is not the template of %s ('%s')" % (standard_template, number, template))
    standard = change_policy.evaluate_standard(policy, context, now, only_template=template)
    decision["standard"] = {key: standard[key] for key in ("covered_by", "candidates", "closest")}
    if not standard["covered_by"]:
        reasons.extend("%s: %s" % (number, reason) for reason in standard["reasons"])
    return reasons


def decide(policy, context, now, change_request=None, record=None, emergency=False, justification=None,
           standard_template=None, user=None, runner=None):
    """The decision document (without ids); see module RETURN for its fields.

    ``runner``: the identity running the play; a change request's approvals must count under the policy
    and not rest on the runner alone (separation of duties, ``authorisation/duties.py``).
    """
    touched = change_policy.protected_areas_touched(policy, context)
    freezes = change_policy.freezes_in_force(policy, context, now)
    decision = {
        "allowed": False,
        "type": "denied",
        "reference": None,
        "reasons": [],
        "review_required": False,
        "protected_areas": touched,
        "freezes": [{"name": f.name, "until": format_time(f.end), "timezone": f.timezone,
                     "allowed_change_types": f.allowed_change_types} for f in freezes],
        "standard": None,
        "change_request": None,
        "emergency": None,
        "checked_at": format_time(now),
    }
    reasons = decision["reasons"]
    if emergency:
        rules = policy.emergency
        text = (justification or "").strip()
        decision["emergency"] = {"declared_by": user, "justification": text or None,
                                 "change_request": change_request}
        if not rules.allowed:
            reasons.append("emergency changes are disabled by %s" % policy.origin)
        if not rules.may_declare(user or ""):
            reasons.append("%s may not declare an emergency change (allowed: %s)"
                           % (user, ", ".join(rules.declarers) or "nobody"))
        if rules.require_justification and len(text) < max(rules.min_justification_length, 1):
            reasons.append("an emergency change needs a justification of at least %d characters%s"
                           % (max(rules.min_justification_length, 1), " (got %d)" % len(text) if text else ""))
        if change_request and record is None:
            reasons.append("%s does not exist in the system of record" % change_request)
        elif record is not None and record.get("state") in ("closed", "cancelled"):
            reasons.append("%s is %s: an emergency cannot be declared under it; declare it without change_request "
                           "or under an open emergency change request" % (change_request, record.get("state")))
        reasons.extend(_freeze_reasons(freezes, "emergency"))
        if not reasons:
            decision.update(allowed=True, type="emergency", reference=change_request or "emergency",
                            review_required=True)
        return decision

    if change_request:
        change_reasons = check_change_request(policy, context, record, change_request, now)
        reasons.extend(change_reasons)
        if runner is not None and record is not None:
            reasons.extend(refusal.reason for refusal in duties.refusals(
                "run", runner, policy.authorisation, record=record, number=change_request))
        change_type = (record or {}).get("type") or "normal"
        if record is not None:
            decision["change_request"] = {
                "number": change_request, "state": record.get("state"), "type": change_type,
                "approval": record.get("approval"), "planned_start": record.get("planned_start"),
                "planned_end": record.get("planned_end"), "timezone": record.get("timezone"),
                "template": record.get("template")}
        if change_type == "standard":
            gate_type = "standard"
            reasons.extend(_standard_request_reasons(policy, context, now, decision, record, change_request,
                                                     standard_template))
            for touch in touched:
                reasons.append("play touches protected area %s (%s), which standard change request %s cannot cover"
                               % (touch["area"], _matched_by(touch), change_request))
        else:
            gate_type = "emergency" if change_type == "emergency" else "normal"
        reasons.extend(_freeze_reasons(freezes, gate_type))
        if not reasons:
            decision.update(allowed=True, type=gate_type, reference=change_request,
                            review_required=gate_type == "emergency")
        return decision

    standard = change_policy.evaluate_standard(policy, context, now, only_template=standard_template)
    decision["standard"] = {key: standard[key] for key in ("covered_by", "candidates", "closest")}
    names = standard["covered_by"] or standard["candidates"]
    for touch in touched:
        if names:
            reasons.append("play touches protected area %s (%s), which standard change '%s' cannot cover"
                           % (touch["area"], _matched_by(touch), names[0]))
        else:
            reasons.append("play touches protected area %s (%s): it needs an approved normal change request"
                           % (touch["area"], _matched_by(touch)))
    if not standard["covered_by"]:
        reasons.extend(standard["reasons"])
    reasons.extend(_freeze_reasons(freezes, "standard"))
    if not reasons:
        decision.update(allowed=True, type="standard", reference=standard["covered_by"][0])
    return decision


def dry_run_decision(would_be):
    """Check mode changes nothing, so it is always allowed; keep what a real run would get."""
    decision = dict(would_be)
    decision.update(allowed=True, type="dry-run", reference=None, reasons=[], review_required=False,
                    would_be={"allowed": would_be["allowed"], "type": would_be["type"],
                              "reference": would_be["reference"], "reasons": would_be["reasons"]})
    return decision


def denied(reason, now, **extra):
    decision = {"allowed": False, "type": "denied", "reference": None, "reasons": [reason],
                "review_required": False, "checked_at": format_time(now)}
    decision.update(extra)
    return decision


def decision_message(decision, play_name):
    label = "play '%s'" % play_name if play_name else "this play"
    if decision["type"] == "dry-run":
        would = decision.get("would_be") or {}
        if would.get("allowed"):
            return "check mode: %s allowed; a real run would be a %s change (%s)" % (
                label, would.get("type"), would.get("reference"))
        return "check mode: %s allowed; a real run would be denied: %s" % (
            label, "; ".join(would.get("reasons") or []))
    context = decision.get("context") or {}
    real = context.get("real_in_check_mode") or []
    unread = context.get("uninspectable_includes") or []
    note = ""
    if real:
        note = " (check mode, but %d task%s run%s for real with check_mode: false, e.g. %s: judged as a real run)" % (
            len(real), "" if len(real) == 1 else "s", "s" if len(real) == 1 else "", real[0])
    elif unread:
        note = (" (check mode, but the gate cannot read the tasks of %d dynamic include%s, which may run for real "
                "with check_mode: false, e.g. %s: judged as a real run)"
                % (len(unread), "" if len(unread) == 1 else "s", unread[0]))
    if decision["allowed"]:
        text = "%s authorised as a %s change (%s)%s" % (label, decision["type"], decision["reference"], note)
        if decision.get("review_required"):
            text += "; flagged for retrospective review"
        warnings = decision.get("warnings") or []
        if warnings:
            # collisions the policy lets through with a warning (intelligence/collisions.py): recorded and said
            text += "; %d warning%s: %s" % (len(warnings), "" if len(warnings) == 1 else "s", "; ".join(warnings))
        return text
    return "change gate denied %s%s: %s" % (label, note, "; ".join(decision["reasons"]))


# --------------------------------------------------------------------------
# the operation
# --------------------------------------------------------------------------
def new_decision_id(run_id, play_id, hosts, task_uuid):
    """Stable per (run, play, batch, task): a replayed or repeated evaluation records once."""
    digest = hashlib.sha256()
    for part in (run_id or "", play_id or "", task_uuid or "", "\n".join(hosts)):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def read_change_request(sor, number):
    return sor.get_change_request(number) if number else None


def wait_and_read(ctx, number, progress, sleep=time.sleep, clock=time.monotonic, authority=None):
    """Read the change request from its authority (the system of record, or ServiceNow: see
    ``servicenow/authority.py``), polling while it awaits approval (``wait_for_approval``) within the
    authority's request budget."""
    params = ctx.params
    read = authority.read if authority is not None else (lambda wanted: read_change_request(ctx.sor, wanted))
    record = read(number)
    if not (params.get("wait_for_approval") and number and not ctx.check_mode):
        return record, None
    timeout = max(int(params.get("approval_timeout") or 0), 0)
    interval = max(int(params.get("poll_interval") or 1), 1)
    started = clock()
    polls = 0
    while awaiting_approval(record):
        elapsed = clock() - started
        left = timeout - elapsed
        if left <= 0:
            return record, ("%s still awaits approval after %s (state %s, approval %s): approval_timeout reached"
                            % (number, describe_roughly(datetime.timedelta(seconds=elapsed)), record.get("state"),
                               record.get("approval")))
        polls += 1
        progress("change_gate: waiting for approval of %s (state %s, approval %s): poll %d, %s elapsed, %s left"
                 % (number, record.get("state"), record.get("approval") or "not requested", polls,
                    describe_roughly(datetime.timedelta(seconds=elapsed)),
                    describe_roughly(datetime.timedelta(seconds=left))))
        wait = authority.poll_interval(interval, left) if authority is not None else interval
        sleep(min(wait, max(left, 0.0)))
        record = read(number)
    return record, None


def identities(runner, record, emergency=None):
    """Who took part in a decision: the runner, and for a change request its requester and approvers
    (each approval with whether it counts under the policy in force)."""
    found = {"runner": runner.to_dict() if runner is not None else None}
    if emergency:
        found["declared_by"] = found["runner"]
    if record is not None:
        requester = Identity.from_dict(record.get("opened_by_identity"),
                                       str(record.get("opened_by") or "").split("@", 1)[0] or None)
        found["requester"] = requester.to_dict() if requester is not None else None
        if record.get("requested_by"):
            found["requested_by"] = record["requested_by"]
        found["approvers"] = [dict(duties.approval_identity(approval).to_dict(), at=approval.get("at"))
                              for approval in record.get("approvals") or ()
                              if approval.get("decision") == "approved" and duties.approval_identity(approval)]
    return found


def policy_decisions(policy_choice, decision, context, now, decide_under):
    """The gate's policy choice applied to a decision: a runner's file that is not the published policy denies
    (in a real run), a draft is evaluated side by side (in a --check run)."""
    if policy_choice is None:
        return decision
    if policy_choice.refusal:
        decision["reasons"].insert(0, policy_choice.refusal)
        decision.update(allowed=False, type="denied", reference=None, review_required=False)
    if policy_choice.draft is not None:
        draft = decide_under(policy_choice.draft.policy)
        decision["draft"] = {"policy": policy_choice.draft.describe(),
                             "would_be": {key: draft[key] for key in ("allowed", "type", "reference", "reasons")}}
    return decision


def policy_note(decision):
    """A line added to the gate's message when a draft was evaluated beside the published policy."""
    draft = decision.get("draft")
    if not draft:
        return ""
    published = decision.get("policy") or {}
    would = draft["would_be"]
    outcome = ("a %s change (%s)" % (would["type"], would["reference"]) if would["allowed"]
               else "denied: %s" % "; ".join(would["reasons"]))
    return " [under the published policy version %s; under the draft %s (sha256 %s, not published) a real run " \
           "would be %s]" % (published.get("version"), draft["policy"].get("source"),
                             (draft["policy"].get("sha256") or "")[:12], outcome)


def run_gate(ctx, policy, play, hosts, host_groups, play_id, task_uuid, now_func=None, progress=None,
             policy_choice=None, process_check=None):
    """Decide, record the ``run.gate`` entry and return the task result.

    ``ctx.sor`` must be open; reading errors propagate as ``ChangeopsError``
    for the caller to turn into a fail-closed denial. ``policy_choice``
    (``policy_store.GatePolicy``) says where ``policy`` comes from, and carries a
    refusal of the runner's policy file or a draft to evaluate beside it. ``process_check(event)`` says whether
    a run of this controller still runs (collisions with runs in progress; see ``intelligence/collisions.py``).
    """
    params = ctx.params
    now_func = now_func or (lambda: datetime.datetime.now(datetime.timezone.utc))
    progress = progress or ctx.warn
    number = params.get("change_request")
    # the system of record, or ServiceNow (the one place the gate asks an external authority)
    authority = authority_for(ctx, policy, hosts, play.get("delegated_hosts") or ())
    try:
        return _decide_and_record(ctx, policy, play, hosts, host_groups, play_id, task_uuid, now_func, progress,
                                  policy_choice, authority, number, process_check)
    finally:
        authority.close()


def _decide_and_record(ctx, policy, play, hosts, host_groups, play_id, task_uuid, now_func, progress, policy_choice,
                       authority, number, process_check=None):
    params = ctx.params
    record, timeout_reason = wait_and_read(ctx, number, progress, authority=authority)
    now = now_func()
    # the actor is the account the gate runs as (its uid), never what LOGNAME/USER claim:
    # it decides who may declare an emergency
    user = ctx.actor.split("@", 1)[0]
    # the per-host CI documents only when deciding reads them (a condition on cis, an environment limit's reason)
    draft = policy_choice.draft.policy if policy_choice is not None and policy_choice.draft is not None else None
    documents_read = ci_documents_read((policy, draft))
    found = lean_change_context(ctx.sor, play, hosts, host_groups, user, ctx.check_mode, now, documents_read)
    if found is None:
        # each host's own CI, never an application or service CI that happens to share its name
        host_cis = find_host_cis(intelligence.CiSummaries(ctx.sor),
                                 list(hosts) + list(play.get("delegated_hosts") or ()))
        context = build_change_context(play, hosts, host_groups, list(host_cis.values()), user, ctx.check_mode, now,
                                       ci_documents=documents_read)
        host_ci_ids = graph.ci_ids_of(host_cis)
    else:
        context, host_ci_ids = found
    claimed = claimed_user()
    if claimed:
        context["claimed_user"] = claimed
    runner = ctx.identity
    # blast radius into the context (template conditions test it), collisions into each decision
    insight = intelligence.GateIntelligence(ctx.sor, policy, context, host_ci_ids, now, run_id=ctx.run_id,
                                            change_request=number, process_check=process_check, local=_local)
    change_type = intelligence.intended_type(params, record)

    def decide_under(chosen):
        decision = decide(chosen, context, now, change_request=number, record=record,
                          emergency=params.get("emergency"), justification=params.get("justification"),
                          standard_template=params.get("standard_template"), user=user, runner=runner)
        return insight.apply(decision, chosen, change_type)

    decision = decide_under(policy)
    decision["identities"] = identities(runner, record, emergency=params.get("emergency"))
    if claimed and decision.get("emergency"):
        decision["emergency"] = dict(decision["emergency"], claimed_by=claimed)
    if timeout_reason:
        decision["reasons"].insert(0, timeout_reason)
        decision.update(allowed=False, type="denied", reference=None, review_required=False)
    decision = policy_decisions(policy_choice, decision, context, now, decide_under)
    # after the policy choice: a runner's file the published policy refuses creates no standard CHG
    decision = authority.after_decision(decision, context, policy, now, ctx.check_mode)
    if ctx.check_mode:
        decision = dry_run_decision(decision)
    described = policy_choice.in_force.describe() if policy_choice is not None else None
    return finish(ctx, decision, context_summary(context), policy, play, play_id, task_uuid, hosts,
                  policy_described=described)


def finish(ctx, decision, context, policy, play, play_id, task_uuid, hosts, record=True, policy_described=None):
    """Give the decision its ids, append it to the ledger, build the task result."""
    run_id = ctx.run_id
    recorded_run_id = run_id or "gate-%s" % uuid.uuid4().hex
    decision = dict(decision)
    decision.update(
        decision_id=new_decision_id(recorded_run_id, play_id, hosts, task_uuid),
        run_id=recorded_run_id,
        run_id_generated=not run_id,
        play_id=play_id,
        play=play.get("name") if play else None,
        hosts=list(hosts),
        host_count=len(hosts),
        policy=policy_described or (policy.describe() if policy is not None else None),
        context=context,
    )
    if record:
        ctx.sor.append([Entry("run.gate", recorded_run_id, decision, actor=ctx.actor,
                              entry_id="gate-%s" % decision["decision_id"])])
    decision["recorded"] = bool(record)
    return gate_result(ctx.params, decision, play)


#: the decision's fields a failing gate's result carries: short, and enough to read and act on a denial
DENIAL_FIELDS = ("decision_id", "run_id", "play", "allowed", "type", "reference", "reasons", "host_count",
                 "checked_at")
#: of the decision's parts, the short fields a denial's reader needs (never the per-host lists)
DENIAL_PARTS = {
    "change_request": ("number", "type", "state", "approval", "template"),
    "standard": ("covered_by", "candidates", "closest"),
    "emergency": ("declared_by", "change_request"),
    # the file and its sha256 are in the recorded decision (and a reason names the file when it matters)
    "policy": ("state", "version"),
}


def denial_summary(decision):
    """What a failing gate's result holds of ``decision``: the reasons, type, reference, the change request,
    the closest templates and the policy version, by ``decision_id``; never the context, hosts or collisions."""
    summary = {key: decision.get(key) for key in DENIAL_FIELDS if key in decision}
    for part, keys in DENIAL_PARTS.items():
        if decision.get(part):
            summary[part] = {key: decision[part].get(key) for key in keys if key in decision[part]}
    summary["recorded"] = bool(decision.get("recorded"))
    return summary


#: the most hosts a task result's decision lists once the decision is recorded: a larger batch's hosts are in the
#: recorded decision only (its ``host_count`` says how many). A play has them in ``ansible_play_batch`` already,
#: and Ansible carries a task result back from the worker and converts it for every callback: at 10,000 hosts their
#: names cost the gate task about 10 ms of its own time (bench/gate_task), and a registered result copies them to
#: every host's variables
RESULT_HOSTS_UP_TO = 1000


def gate_result(params, decision, play):
    """The task result: the whole decision, unless the gate fails the play.

    A failed task's result is what Ansible prints on its ``fatal:`` line, whole (its default
    callback leaves out only ``diff``, ``invocation`` and ``exception``), and the decision's context
    (what the gate read of the play) and host list run to kilobytes that bury the reasons. So a
    failing result carries the message, the reasons and the short fields of :func:`denial_summary`;
    the whole decision is in the ledger's ``run.gate`` entry of its ``decision_id`` (``change_event_info``
    with ``decision_id``, the change register), and in the result of a gate that does not fail
    (``fail_on_deny: false``), but for the hosts of a recorded decision on a batch of more than
    :data:`RESULT_HOSTS_UP_TO`.
    """
    message = decision_message(decision, (play or {}).get("name")) + policy_note(decision)
    if not decision["allowed"] and params.get("fail_on_deny", True):
        return dict(denial_summary(decision), changed=False, failed=True, msg=message)
    if decision.get("recorded") and len(decision.get("hosts") or ()) > RESULT_HOSTS_UP_TO:
        # (only a decision the ledger holds: a fail-closed one may be recorded from this result, or nowhere else)
        decision = {key: value for key, value in decision.items() if key != "hosts"}
    return {"changed": False, "decision": decision, "allowed": decision["allowed"], "msg": message}


def fail_closed(params, error, now, play, play_id, hosts, check_mode):
    """A decision for when the system of record or the policy could not be read."""
    reason = error.message if isinstance(error, ChangeopsError) else str(error)
    decision = denied(reason, now, decision_id=uuid.uuid4().hex[:32], play_id=play_id,
                      play=(play or {}).get("name"), hosts=list(hosts), host_count=len(hosts), recorded=False)
    if check_mode:
        decision = dry_run_decision(decision)
        decision["recorded"] = False
    return gate_result(params, decision, play)


def module_operation(ctx):
    raise ValidationError(
        "changeops.itsm.change_gate decides for a whole play and needs the play's hosts, roles and tasks: "
        "run it as a task in the play (its action plugin runs on the controller), not as a bare module")
