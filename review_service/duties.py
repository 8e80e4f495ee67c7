# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""May this signed-in person do this? Two checks, both must pass, and each refusal names its rule.

1. **The service's role**: reading needs any role; a review sign-off and an acknowledgement need
   ``reviewer`` (a retrospective approval ``cab``); approving or rejecting a change request ``cab``;
   accounts ``admin``.
2. **The published policy's separation of duties**: the one place that decides is
   ``module_utils/authorisation/duties.py`` (``duties.refusals(action, identity, rules, record=...)``),
   with the rules of the policy in force (``policy_store.policy_in_force``: the published version, else
   the configured file, else the defaults) and the signed-in identity ``{"name", "source":
   "review-service"}`` carrying the groups the service vouches for (a single sign-on group claim or the
   trusted proxy's groups header), which approver groups match through ``review_service_groups``.

The service's actions map onto the policy's as follows (docs/review-service.md):

==============================  ===================================================================
service action                  policy action (``duties.refusals``)
==============================  ===================================================================
review sign-off                 ``review`` (``reviews.reviewers``, ``reviews.allow_self_review``)
approve / reject a request      ``approve`` / ``reject`` (approver groups, states, not the requester)
acknowledge (incident/revert)   ``acknowledge`` (the review rules)
retrospective approval          ``approve-retrospectively`` (review rules, emergency approver groups,
                                not whoever ran the change)
==============================  ===================================================================
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import duties as policy_duties
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import policy_store
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import Identity

#: the role each action needs (besides the policy's rules)
ACTION_ROLES = {
    "review": "reviewer",
    "acknowledge": "reviewer",
    "retrospective-approval": "cab",
    "approve": "cab",
    "reject": "cab",
    "admin": "admin",
}
#: the service's actions -> the policy's (``authorisation.duties.ACTIONS``)
POLICY_ACTIONS = {
    "review": "review",
    "acknowledge": "acknowledge",
    "retrospective-approval": "approve-retrospectively",
    "approve": "approve",
    "reject": "reject",
}


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


def identity_of(principal):
    """The authorisation identity of a signed-in person, with the groups the service vouches for."""
    return Identity(principal.name, principal.SOURCE, groups=principal.groups)


def in_force(sor, policy_path=None):
    """The policy whose rules apply now (``policy_store.PolicyInForce``)."""
    return policy_store.policy_in_force(sor, policy_path)


def policy_refusals(policy, principal, action, record):
    """Refusals (``[{rule, reason}]``) of the policy ``policy`` (a ``PolicyInForce``) for ``action`` on ``record``.

    ``record``: the change request (approve, reject) or the change event (review, acknowledge,
    retrospective-approval), as the system of record returns it.
    """
    found = policy_duties.refusals(POLICY_ACTIONS[action], identity_of(principal), policy.policy.authorisation,
                                   record=record, number=(record or {}).get("number"))
    return [dict(refusal) for refusal in found]


def account_refusals(by, name, existing, roles):
    """Refusals of ``by`` (the identity dict of whoever saves the account) setting account ``name``'s roles.

    Rule ``role.self_grant``: nobody changes their own roles, so no one grants themselves authority (an
    administrator making themselves a CAB approver or reviewer) or quietly sheds and regains it; another
    administrator must do it, and the ``review.account`` entry names them. Saving one's own account with the
    roles unchanged (a display name) is allowed.
    """
    who = by.get("name") if isinstance(by, dict) else by
    if who != name:
        return []
    before = sorted((existing or {}).get("roles") or [])
    if existing is not None and before == sorted(set(roles)):
        return []
    return [{"rule": "role.self_grant", "reason": "%s may not change their own roles (%s -> %s): another administrator "
             "must (rule role.self_grant)" % (name, ", ".join(before) or "none", ", ".join(sorted(set(roles))) or "none")}]
