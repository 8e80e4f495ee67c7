# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Separation of duties: may this identity approve, reject, review, publish or run this?

:func:`refusals` is the one entry point. Every face over the system of record asks it with the
identity it authenticated: ``change_request`` and ``change_review`` with the OS account running
the module, the change gate with the account running the play, ``change_policy`` with the
publisher, and the review service with the person signed in to it. It returns every rule that
refuses, each naming the policy key that says so, so that whoever is refused can see why:

```
carol may not approve CHG0000042: carol requested it (rule approvals.allow_self_approval: false)
```

Nothing here writes: the caller refuses (a module fails, the gate denies). The rules come from
the policy in force (``rules.AuthorisationRules``); a record written before identities were
recorded (an approval's free-text ``approver``) gives an *unverified* identity, which is a member
of no approver group and so counts only where the policy names none.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import Identity
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import parse_time

ACTIONS = ("approve", "reject", "review", "publish", "run")
#: identity sources of an external change authority whose own approval rules chose the approvers of its
#: change requests (ServiceNow: its approval rules and groups, servicenow/authority.py). The policy's approver
#: groups are not applied to their approvals; the rules that refuse (the requester approving, the runner as the
#: only approver) are, comparing names, since the authority's user name is all that is known of the person.
EXTERNAL_AUTHORITY_SOURCES = ("servicenow",)
#: the approvals under which a request may be implemented (a standard change is pre-approved by its template)
_AUTHORISING = {"standard": ("pre-approved", "approved")}


class Refusal(dict):
    """``{"rule": "approvals.allow_self_approval", "reason": "..."}``."""

    def __init__(self, rule, reason):
        super(Refusal, self).__init__(rule=rule, reason=reason)

    @property
    def rule(self):
        return self["rule"]

    @property
    def reason(self):
        return self["reason"]


def refusals(action, identity, rules, record=None, number=None, change_request=None, now=None):
    """Every rule refusing ``identity`` ``action``; an empty list means the policy allows it.

    * ``approve``/``reject``: ``record`` is the change request, before the decision;
    * ``review``: ``record`` is the change event being signed off;
    * ``publish``: ``change_request`` is the request the publication names (or None), ``now`` the time;
    * ``run``: the change gate; ``record`` is the change request the play runs under and ``identity``
      the account running the play (see :func:`counted_approvals` for what counts).
    """
    if action not in ACTIONS:
        raise ValueError("unknown action %r" % action)
    found = []
    if identity is None or not identity.authenticated:
        who = identity.name if identity is not None else "nobody"
        return [Refusal("identity", "%s is not an authenticated identity: an %s is recorded as the account or person "
                        "who makes it" % (who, action))]
    if action in ("approve", "reject"):
        found.extend(_decision_refusals(action, identity, rules, record, number))
    elif action == "review":
        found.extend(_review_refusals(identity, rules, record))
    elif action == "publish":
        found.extend(_publish_refusals(identity, rules, change_request, now))
    else:
        found.extend(_run_refusals(identity, rules, record, number))
    return found


def _label(record, number):
    return number or (record or {}).get("number") or "the change request"


def requesters(record):
    """The names of who asked for ``record``: the identity that opened it (what is authenticated) and its
    ``requested_by`` (free text: it can only refuse, never grant)."""
    names = []
    opened = Identity.from_dict((record or {}).get("opened_by_identity"))
    if opened is not None:
        names.append(opened.name)
    elif (record or {}).get("opened_by"):
        # opened before identities were recorded: "user@controller"
        names.append(str(record["opened_by"]).split("@", 1)[0])
    requested_by = (record or {}).get("requested_by")
    if requested_by and str(requested_by) not in names:
        names.append(str(requested_by))
    return names


def _membership(identity, rules, change_type, risk, verb):
    found = []
    for rule, groups in rules.approvals.required(change_type, risk):
        if not rules.member_of_any(identity, groups):
            found.append(Refusal(rule, "%s is not in %s %s (rule %s: %s)" % (
                identity, "approver group" if len(groups) == 1 else "any of the approver groups",
                ", ".join(groups), rule, rules.describe_groups(groups))))
    return found


def _decision_refusals(action, identity, rules, record, number):
    record = record or {}
    label = _label(record, number)
    verb = "approve" if action == "approve" else "reject"
    found = []
    state = record.get("state")
    if state not in rules.approvals.states:
        found.append(Refusal("approvals.states", "%s is in state %s; the policy accepts approvals and rejections "
                             "only in %s (rule approvals.states)" % (label, state, ", ".join(rules.approvals.states))))
    for refusal in _membership(identity, rules, record.get("type") or "normal", record.get("risk"), verb):
        found.append(Refusal(refusal.rule, "%s may not %s %s: %s" % (identity, verb, label, refusal.reason)))
    if action == "approve" and not rules.approvals.allow_self_approval and identity.name in requesters(record):
        found.append(Refusal("approvals.allow_self_approval", "%s may not approve %s: %s requested it (rule "
                             "approvals.allow_self_approval: false)" % (identity, label, identity.name)))
    return found


def approval_identity(approval):
    """The identity an approval entry was recorded with (unverified for entries older than identities)."""
    return Identity.from_dict(approval.get("identity"), approval.get("approver"))


def counted_approvals(rules, record):
    """``(counted, not_counted)``: the identities whose current approvals of ``record`` count under ``rules``,
    and ``[(identity, [Refusal])]`` for those that do not (an approver outside the approver groups the
    policy in force names, the requester). Withdrawn approvals (``superseded_approvals``) never count."""
    counted, not_counted = [], []
    requested = requesters(record)
    for approval in (record or {}).get("approvals") or ():
        if approval.get("decision") != "approved":
            continue
        identity = approval_identity(approval)
        if identity is None:
            continue
        problems = []
        required = rules.approvals.required(record.get("type") or "normal", record.get("risk"))
        if identity.source in EXTERNAL_AUTHORITY_SOURCES:
            pass  # the authority's approval rules chose this approver: no approver group applies
        elif required and not identity.authenticated:
            problems.append(Refusal("identity", "the approval by %s was recorded without an authenticated identity"
                                    % identity.name))
        else:
            problems.extend(_membership(identity, rules, record.get("type") or "normal", record.get("risk"),
                                        "approve"))
        if not rules.approvals.allow_self_approval and identity.name in requested:
            problems.append(Refusal("approvals.allow_self_approval", "%s requested it (rule "
                                    "approvals.allow_self_approval: false)" % identity.name))
        if problems:
            not_counted.append((identity, problems))
        elif identity not in counted:
            counted.append(identity)
    return counted, not_counted


def _run_refusals(identity, rules, record, number, doing="runs this play"):
    """At the gate: the request's approval must rest on approvals that count now, and not on the runner alone."""
    record = record or {}
    change_type = record.get("type") or "normal"
    if record.get("approval") not in ("approved",) or change_type == "standard":
        return []  # not approved (the gate says so itself) or pre-approved by its template
    label = _label(record, number)
    counted, not_counted = counted_approvals(rules, record)
    found = []
    if not counted:
        none = "it has none"
        if record.get("approvals_from"):
            # an external authority calls it approved without saying who approved: no rule can be checked
            none = ("%s calls it approved but names no approver, so who approved it cannot be checked against "
                    "the separation-of-duties rules" % record["approvals_from"])
        why = "; ".join("%s: %s" % (who, "; ".join(problem.reason for problem in problems))
                        for who, problems in not_counted[:5]) or none
        rule = not_counted[0][1][0].rule if not_counted else "approvals"
        found.append(Refusal(rule, "no approval of %s counts under the policy in force (%s)" % (label, why)))
    elif not rules.approvals.allow_runner_as_sole_approver and all(_same_person(who, identity) for who in counted):
        found.append(Refusal("approvals.allow_runner_as_sole_approver",
                             "%s %s and is the only approver of %s; another approver must approve it too, or "
                             "someone else must do it (rule approvals.allow_runner_as_sole_approver: false)"
                             % (identity, doing, label)))
    return found


def _same_person(approver, runner):
    """For the runner rule: the same identity, or an external authority's user with the runner's name (a rule
    that refuses compares names, as the requester rule does)."""
    if approver.same_as(runner):
        return True
    return approver.source in EXTERNAL_AUTHORITY_SOURCES and runner is not None and approver.name == runner.name


def _review_refusals(identity, rules, event):
    event = event or {}
    found = []
    run = event.get("run_id") or "the change"
    reviewers = rules.reviews.reviewers
    if reviewers is not None and not rules.member_of_any(identity, reviewers):
        found.append(Refusal("reviews.reviewers", "%s may not sign off %s: not in %s (rule reviews.reviewers: %s)"
                             % (identity, run, ", ".join(reviewers), rules.describe_groups(reviewers))))
    runner = event.get("user")
    if not rules.reviews.allow_self_review and runner and identity.name == runner:
        found.append(Refusal("reviews.allow_self_review", "%s may not sign off %s: %s ran it (rule "
                             "reviews.allow_self_review: false)" % (identity, run, runner)))
    return found


def _publish_refusals(identity, rules, record, now):
    found = []
    publishers = rules.publishing.publishers
    if publishers is not None and not rules.member_of_any(identity, publishers):
        found.append(Refusal("publishing.publishers", "%s may not publish the change policy: not in %s (rule "
                             "publishing.publishers: %s)" % (identity, ", ".join(publishers),
                                                             rules.describe_groups(publishers))))
    if not rules.publishing.require_change_request:
        return found
    if record is None:
        found.append(Refusal("publishing.require_change_request", "publishing the change policy needs an approved "
                             "change request (rule publishing.require_change_request: true): set change_request"))
        return found
    label = record.get("number") or "the change request"
    rule = "publishing.require_change_request"
    if record.get("approval") not in _AUTHORISING.get(record.get("type"), ("approved",)):
        found.append(Refusal(rule, "%s is not approved (approval: %s)" % (label, record.get("approval") or
                                                                          "not requested")))
    if record.get("state") not in ("scheduled", "implement"):
        found.append(Refusal(rule, "%s is in state %s, not scheduled or implement" % (label, record.get("state"))))
    start, end = record.get("planned_start"), record.get("planned_end")
    if not start or not end:
        found.append(Refusal(rule, "%s has no planned window" % label))
    elif now is not None and not parse_time(start) <= now < parse_time(end):
        found.append(Refusal(rule, "now is outside the planned window of %s (%s to %s)" % (label, start, end)))
    # the publisher stands where a play's runner stands: not the only approver of the change
    found.extend(_run_refusals(identity, rules, record, label, doing="publishes the policy under it"))
    return found


def describe(found):
    """One line for an error message: every refusal, in order."""
    return "; ".join(refusal["reason"] for refusal in found)
