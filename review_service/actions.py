# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a signed-in person can do: each action one ledger entry with their identity, or a refusal saying why.

* :func:`sign_off` - a post-implementation review (``run.reviewed``: accepted, or follow-up with a comment);
* :func:`decide_change_request` - a CAB approval or rejection (``change_request.approved/rejected``, through
  the same planning code as the ``change_request`` module);
* :func:`acknowledge` - an unauthorised change acknowledged with a disposition (``run.acknowledged``):
  retrospective approval, incident raised (with its reference), reverted.

Each entry records ``identity: {"name", "source": "review-service"}`` and how the person signed in.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils import change_requests
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.change_register import REVIEW_OUTCOMES
from ansible_collections.changeops.itsm.plugins.module_utils.errors import (
    ChangeopsError,
    ConflictError,
    NotFound,
    ValidationError,
)
from ansible_collections.changeops.itsm.plugins.module_utils.errors import Refused as PolicyRefused
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.change_index import (
    DISPOSITIONS,
    categories,
)

from ansible_collections.changeops.itsm.review_service import duties

MAX_COMMENT = 4000


class Refused(ChangeopsError):
    """The role or the policy does not let this person do this; ``details["refusals"]`` says which rules."""


def _refuse(refusals, label):
    reasons = "; ".join(refusal["reason"] for refusal in refusals)
    raise Refused("%s under %s" % (reasons, label) if label else reasons, refusals=refusals)


def _check(sor, principal, action, record, policy_path):
    """The role, then the policy in force; returns that policy (``PolicyInForce``) for the entry to name."""
    refused = duties.role_refusals(principal, action)
    if refused:
        _refuse(refused, None)
    policy = duties.in_force(sor, policy_path)
    refused = duties.policy_refusals(policy, principal, action, record)
    if refused:
        _refuse(refused, "the " + policy.label())
    return policy


def _policy_reference(policy):
    """What an action records of the policy it passed (as change_requests records it on an approval)."""
    return change_requests._policy_reference(policy)  # pylint: disable=protected-access


def _comment(text, required, what):
    text = (text or "").strip()
    if len(text) > MAX_COMMENT:
        raise ValidationError("comment: at most %d characters (got %d)" % (MAX_COMMENT, len(text)))
    if required and not text:
        raise ValidationError("comment: %s" % what)
    return text


def _event(sor, run_id):
    event = sor.get_change_event(run_id or "")
    if event is None:
        raise NotFound("no change event %r" % run_id)
    return event


def _actor(principal):
    return "%s (review-service)" % principal.name


def sign_off(sor, principal, run_id, outcome, comment, policy_path=None):
    """A post-implementation review of a finished change; returns the review."""
    if outcome not in REVIEW_OUTCOMES:
        raise ValidationError("outcome: %r is not one of %s" % (outcome, ", ".join(REVIEW_OUTCOMES)))
    event = _event(sor, run_id)
    if event.get("status") == "running":
        raise ValidationError("change %s is still running; review it after it has finished" % run_id)
    comment = _comment(comment, outcome == "follow-up", "say what needs following up")
    policy = _check(sor, principal, "review", event, policy_path)
    review = {"run_id": run_id, "reviewer": principal.name, "reviewer_identity": principal.identity(),
              "outcome": outcome, "comment": comment, "reviewed_at": utc_now(), "via": principal.via,
              "policy": _policy_reference(policy)}
    sor.append([Entry("run.reviewed", run_id, review, actor=_actor(principal))])
    return review


def acknowledge(sor, principal, run_id, disposition, comment, reference=None, policy_path=None):
    """Acknowledge an unauthorised change with a disposition; returns the acknowledgement."""
    if disposition not in DISPOSITIONS:
        raise ValidationError("disposition: %r is not one of %s" % (disposition, ", ".join(DISPOSITIONS)))
    event = _event(sor, run_id)
    if "unauthorised" not in categories(event.get("authorisation")):
        raise ValidationError("change %s is not unauthorised (%s): only unauthorised changes are acknowledged"
                              % (run_id, event.get("authorisation") or "still running"))
    reference = (reference or "").strip()[:200] or None
    if disposition == "incident-raised" and not reference:
        raise ValidationError("reference: name the incident raised (for example INC0012345)")
    comment = _comment(comment, True, "say why (what was found, what was decided)")
    policy = _check(sor, principal, "retrospective-approval" if disposition == "retrospective-approval"
                    else "acknowledge", event, policy_path)
    acknowledgement = {"run_id": run_id, "disposition": disposition, "reference": reference, "comment": comment,
                       "acknowledged_by": principal.identity(), "acknowledged_at": utc_now(), "via": principal.via,
                       "policy": _policy_reference(policy)}
    sor.append([Entry("run.acknowledged", run_id, acknowledgement, actor=_actor(principal))])
    return acknowledgement


def decide_change_request(sor, principal, number, decision, comment, policy_path=None):
    """A CAB approval (``approved``) or rejection (``rejected``) of a change request; returns the record."""
    if decision not in change_requests.APPROVAL_DECISIONS:
        raise ValidationError("decision: %r is not one of %s" % (decision, ", ".join(change_requests.APPROVAL_DECISIONS)))
    record = sor.get_change_request(number or "")
    if record is None:
        raise NotFound("no change request %r" % number)
    comment = _comment(comment, decision == "rejected", "say why the request is rejected")
    policy = _check(sor, principal, "approve" if decision == "approved" else "reject", record, policy_path)
    params = {"number": number, "approval": {"decision": decision, "comment": comment or None}}
    actor = _actor(principal)
    # the planning records the identity on the approval and checks the same policy again (one definition)
    try:
        _before, _after, steps, version = change_requests.plan_change_request(
            sor, params, actor, identity=duties.identity_of(principal), in_force=policy)
    except PolicyRefused as exc:
        raise Refused(exc.message, refusals=exc.details.get("refusals") or [])
    if not steps:
        return sor.get_change_request(number), False
    for _kind, step_record, extra in steps:
        approval = extra.get("approval")
        if approval is not None:  # who decided, authenticated by the service, and how they signed in
            approval.setdefault("identity", principal.identity())
            approval["via"] = principal.via
            for entry in step_record.get("approvals") or []:
                if entry.get("at") == approval.get("at") and entry.get("approver") == principal.name:
                    entry.setdefault("identity", principal.identity())
                    entry["via"] = principal.via
    try:
        change_requests.apply_steps(sor, steps, version, actor, number=number)
    except ConflictError as exc:
        raise ConflictError("%s: someone changed %s meanwhile; reload the page and decide again" % (exc.message, number))
    return sor.get_change_request(number), True


# -- accounts (administrators) -------------------------------------------------------------------
def save_account(sor, by, name, roles, display_name=None, disabled=False):
    """Create or change an account (a ``review.account`` ledger entry: who granted which roles is on record)."""
    from ansible_collections.changeops.itsm.review_service.config import ROLES
    name = (name or "").strip()
    if not name or len(name) > 100 or any(character.isspace() or character in "/\\<>\"'" for character in name):
        raise ValidationError("name: %r is not an account name (no spaces, quotes or slashes, at most 100)" % name)
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValidationError("roles: %s not among %s" % (", ".join(unknown), ", ".join(ROLES)))
    existing = sor.get_review_account(name)
    refused = duties.account_refusals(by, name, existing, roles)
    if refused:
        _refuse(refused, None)
    wanted = {"roles": sorted(set(roles)), "display_name": display_name or (existing or {}).get("display_name"),
              "disabled": bool(disabled)}
    if existing and all(existing.get(key) == value for key, value in wanted.items()):
        return existing, False
    data = dict(wanted, name=name, by=by, before=({key: existing.get(key) for key in wanted} if existing else None))
    sor.append([Entry("review.account", name, data, actor=by.get("name") if isinstance(by, dict) else str(by))])
    if disabled:
        sor.delete_review_sessions(name=name)
    return sor.get_review_account(name), True


def set_password(sor, by, name, password):
    from ansible_collections.changeops.itsm.review_service.security import hash_password
    if sor.get_review_account(name) is None:
        raise NotFound("no account %r" % name)
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise ValidationError("password: %s" % exc)
    now = utc_now()
    sor.set_review_credential(name, hashed, now)
    sor.delete_review_sessions(name=name)
    sor.append([Entry("review.password_set", name, {"account": name, "by": by, "at": now},
                      actor=by.get("name") if isinstance(by, dict) else str(by))])
