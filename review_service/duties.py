# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""May this signed-in person do this? Two checks, both must pass, and each refusal names its rule.

1. **The service's role**: reading needs any role; a review sign-off and an acknowledgement need
   ``reviewer`` (a retrospective approval ``cab``); approving or rejecting a change request ``cab``;
   accounts ``admin``.
2. **The published policy's separation of duties** (issue 14): requester is not approver, approver
   groups, the states in which approvals are accepted, who may sign off a review. The one place
   that decides is ``module_utils/authorisation/duties.py`` (``duties.refusals(action, identity,
   rules, record=...)``) with the rules of the policy in force (``policy_store.policy_in_force``);
   the service calls it with the signed-in identity, ``{"name": ..., "source": "review-service"}``.

Until that module is on this branch, :func:`policy_refusals` applies the policy's documented
defaults itself (an approval only in ``assess``/``authorise``/``scheduled``, never by the requester;
no retrospective approval by whoever ran the change): a seam, replaced by the call above as soon
as ``authorisation`` is importable (it is tried first).
"""

from __future__ import annotations

try:  # issue 14: the published policy and its separation-of-duties rules
    from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import duties as _policy_duties
    from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import policy_store as _policy_store
    from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import Identity as _Identity
except ImportError:
    _policy_duties = _policy_store = _Identity = None

#: the role each action needs (besides the policy's rules)
ACTION_ROLES = {
    "review": "reviewer",
    "acknowledge": "reviewer",
    "retrospective-approval": "cab",
    "approve": "cab",
    "reject": "cab",
    "admin": "admin",
}
#: the policy's defaults while issue 14's module is not here (see docs/policy-schema.md there)
DEFAULT_APPROVAL_STATES = ("assess", "authorise", "scheduled")


def role_refusals(principal, action):
    role = ACTION_ROLES[action]
    if principal.has(role):
        return []
    return [{"rule": "role.%s" % role, "reason": "%s may not %s: the %s role is needed (roles: %s)" % (
        principal.name, _verb(action), role, ", ".join(sorted(principal.roles)) or "none")}]


def _verb(action):
    return {"review": "sign off a review", "acknowledge": "acknowledge an unauthorised change",
            "retrospective-approval": "approve an unauthorised change retrospectively",
            "approve": "approve a change request", "reject": "reject a change request",
            "admin": "manage accounts"}[action]


def _requesters(record):
    names = []
    opened = (record or {}).get("opened_by_identity") or {}
    if opened.get("name"):
        names.append(opened["name"])
    elif (record or {}).get("opened_by"):
        names.append(str(record["opened_by"]).split("@", 1)[0])
    if (record or {}).get("requested_by"):
        names.append(str(record["requested_by"]))
    return names


def policy_label(sor, policy_path):
    """Which policy's rules apply, for messages."""
    if _policy_store is None:
        return "the policy's default separation-of-duties rules (no published policy support on this version)"
    return _policy_store.policy_in_force(sor, policy_path).label()


def policy_refusals(sor, principal, action, record, policy_path=None):
    """Refusals (``[{rule, reason}]``) of the policy in force for ``action`` on ``record``.

    ``record``: the change request (approve, reject) or the change event (review, acknowledge,
    retrospective-approval), as the system of record returns it.
    """
    if _policy_duties is not None:
        in_force = _policy_store.policy_in_force(sor, policy_path)
        identity = _Identity(principal.name, principal.SOURCE, groups=principal.groups)
        rules = in_force.policy.authorisation
        if action in ("approve", "reject", "review"):
            return [dict(refusal) for refusal in _policy_duties.refusals(action, identity, rules, record=record)]
        refused = [dict(refusal) for refusal in _policy_duties.refusals("review", identity, rules, record=record)]
        if action == "retrospective-approval":
            for rule, groups in rules.approvals.required("normal", None):
                if not rules.member_of_any(identity, groups):
                    refused.append({"rule": rule, "reason": "%s may not approve a change retrospectively: not in %s"
                                    % (principal.name, ", ".join(groups))})
            if not rules.approvals.allow_self_approval and (record or {}).get("user") == principal.name:
                refused.append({"rule": "approvals.allow_self_approval", "reason": "%s may not approve %s "
                                "retrospectively: %s ran it (rule approvals.allow_self_approval: false)"
                                % (principal.name, record.get("run_id"), principal.name)})
        return refused
    return _default_refusals(principal, action, record)


def _default_refusals(principal, action, record):
    record = record or {}
    found = []
    if action in ("approve", "reject"):
        label = record.get("number") or "the change request"
        if record.get("state") not in DEFAULT_APPROVAL_STATES:
            found.append({"rule": "approvals.states", "reason": "%s is in state %s; approvals and rejections are "
                          "accepted only in %s (rule approvals.states)" % (label, record.get("state"),
                                                                            ", ".join(DEFAULT_APPROVAL_STATES))})
        if action == "approve" and principal.name in _requesters(record):
            found.append({"rule": "approvals.allow_self_approval", "reason": "%s may not approve %s: %s requested it "
                          "(rule approvals.allow_self_approval: false)" % (principal.name, label, principal.name)})
    elif action == "retrospective-approval" and record.get("user") == principal.name:
        found.append({"rule": "approvals.allow_self_approval", "reason": "%s may not approve %s retrospectively: "
                      "%s ran it (rule approvals.allow_self_approval: false)" % (principal.name, record.get("run_id"),
                                                                                principal.name)})
    return found
