# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The policy's people and duties: approver groups, and who may approve, publish and review.

Four top-level sections of the change policy (see docs/policy-schema.md), parsed here with the
policy's own checker so that every error names the file, line, key path and value:

```yaml
approver_groups:            # named groups of people: accounts and OS groups
  cab: {accounts: [carol, dave], os_groups: [cab]}
approvals:
  approvers: [cab]           # every approval (default: anyone)
  by_type: {emergency: [ecab]}
  by_risk: {high: [cab]}
  states: [assess, authorise]
  allow_self_approval: false
  allow_runner_as_sole_approver: false
publishing:
  publishers: [change-managers]
  require_change_request: false
reviews:
  reviewers: [cab]
  allow_self_review: true
```

What the rules decide is in ``duties.py``; this module only reads them.
"""

from __future__ import annotations

#: change request states in which an approval may be recorded when a policy allows it; never ``new``
#: (nothing has been assessed yet) nor a closed or cancelled request
APPROVAL_STATES = ("assess", "authorise", "scheduled", "implement")
DEFAULT_APPROVAL_STATES = ("assess", "authorise", "scheduled")
CHANGE_TYPES = ("standard", "normal", "emergency")
RISKS = ("low", "moderate", "high", "very_high")

TOP_KEYS = ("approver_groups", "approvals", "publishing", "reviews")
GROUP_KEYS = ("description", "accounts", "os_groups")
APPROVAL_KEYS = ("approvers", "by_type", "by_risk", "states", "allow_self_approval", "allow_runner_as_sole_approver")
PUBLISHING_KEYS = ("publishers", "require_change_request")
REVIEW_KEYS = ("reviewers", "allow_self_review")


class PeopleGroup(object):
    """A named group of people: OS accounts (any authenticated source with that name) and OS groups."""

    __slots__ = ("name", "description", "accounts", "os_groups")

    def __init__(self, name, description="", accounts=(), os_groups=()):
        self.name = name
        self.description = description
        self.accounts = tuple(accounts)
        self.os_groups = tuple(os_groups)

    def has_member(self, identity):
        """An unverified identity (a name typed into an old record) is a member of nothing."""
        if identity is None or not identity.authenticated:
            return False
        if identity.name in self.accounts:
            return True
        return bool(self.os_groups) and identity.source == "os" and bool(set(self.os_groups) & set(identity.groups))

    def describe(self):
        parts = []
        if self.accounts:
            parts.append("accounts %s" % ", ".join(self.accounts))
        if self.os_groups:
            parts.append("OS groups %s" % ", ".join(self.os_groups))
        return "%s (%s)" % (self.name, "; ".join(parts) or "nobody")


class ApprovalRules(object):
    __slots__ = ("approvers", "by_type", "by_risk", "states", "allow_self_approval", "allow_runner_as_sole_approver")

    def __init__(self, approvers=None, by_type=None, by_risk=None, states=DEFAULT_APPROVAL_STATES,
                 allow_self_approval=False, allow_runner_as_sole_approver=False):
        #: group names any approval needs; None: anyone
        self.approvers = approvers
        self.by_type = dict(by_type or {})
        self.by_risk = dict(by_risk or {})
        self.states = tuple(states)
        self.allow_self_approval = allow_self_approval
        self.allow_runner_as_sole_approver = allow_runner_as_sole_approver

    def required(self, change_type, risk):
        """``[(rule path, [group names])]`` an approver of a request of this type and risk must satisfy, each."""
        rules = []
        if change_type in self.by_type:
            rules.append(("approvals.by_type.%s" % change_type, self.by_type[change_type]))
        elif self.approvers is not None:
            rules.append(("approvals.approvers", self.approvers))
        if risk in self.by_risk:
            rules.append(("approvals.by_risk.%s" % risk, self.by_risk[risk]))
        return rules


class PublishingRules(object):
    __slots__ = ("publishers", "require_change_request")

    def __init__(self, publishers=None, require_change_request=False):
        self.publishers = publishers
        self.require_change_request = require_change_request


class ReviewRules(object):
    __slots__ = ("reviewers", "allow_self_review")

    def __init__(self, reviewers=None, allow_self_review=True):
        self.reviewers = reviewers
        self.allow_self_review = allow_self_review


class AuthorisationRules(object):
    """Everything the separation-of-duties rules read from a policy."""

    def __init__(self, groups=None, approvals=None, publishing=None, reviews=None):
        self.groups = dict(groups or {})
        self.approvals = approvals or ApprovalRules()
        self.publishing = publishing or PublishingRules()
        self.reviews = reviews or ReviewRules()

    def group(self, name):
        return self.groups[name]

    def member_of_any(self, identity, names):
        return any(self.groups[name].has_member(identity) for name in names)

    def describe_groups(self, names):
        return ", ".join(self.groups[name].describe() for name in names)

    def describe(self):
        """A summary for decisions and ``change_policy_info``."""
        approvals = self.approvals
        return {
            "approver_groups": {name: {"accounts": list(group.accounts), "os_groups": list(group.os_groups)}
                                for name, group in sorted(self.groups.items())},
            "approvals": {"approvers": approvals.approvers, "by_type": approvals.by_type, "by_risk": approvals.by_risk,
                          "states": list(approvals.states), "allow_self_approval": approvals.allow_self_approval,
                          "allow_runner_as_sole_approver": approvals.allow_runner_as_sole_approver},
            "publishing": {"publishers": self.publishing.publishers,
                           "require_change_request": self.publishing.require_change_request},
            "reviews": {"reviewers": self.reviews.reviewers, "allow_self_review": self.reviews.allow_self_review},
        }


def parse_rules(check, document, mapping_type):
    """Read the four sections from a loaded policy ``document`` with the policy's checker ``check``
    (``change_policy._Checker``); ``mapping_type`` makes an empty mapping for absent sections."""
    line = check.line_of
    groups = {}
    raw_groups = _section(document, "approver_groups", mapping_type)
    check.mapping(raw_groups, "approver_groups", set(raw_groups) if isinstance(raw_groups, dict) else (),
                  line=line(document, "approver_groups"))
    for name, raw in raw_groups.items():
        path = "approver_groups.%s" % name
        group_line = line(raw_groups, name)
        check.mapping(raw, path, GROUP_KEYS, line=group_line)
        accounts = check.string_list(raw.get("accounts") or [], path + ".accounts", line(raw, "accounts") or group_line)
        os_groups = check.string_list(raw.get("os_groups") or [], path + ".os_groups",
                                      line(raw, "os_groups") or group_line)
        if not accounts and not os_groups:
            check.fail(path, "must list at least one of accounts or os_groups", raw, group_line)
        description = raw.get("description") or ""
        if not isinstance(description, str):
            check.fail(path + ".description", "must be a string", description, line(raw, "description"))
        groups[name] = PeopleGroup(name, description, accounts, os_groups)

    def group_names(raw, path, at):
        names = check.string_list(raw, path, at)
        if not names:
            check.fail(path, "must name at least one approver group (omit the key to let anyone do it)", raw, at)
        for index, name in enumerate(names):
            if name not in groups:
                check.fail("%s[%d]" % (path, index), "no such approver group; define it under approver_groups "
                           "(defined: %s)" % (", ".join(sorted(groups)) or "none"), name, at)
        return names

    raw = _section(document, "approvals", mapping_type)
    check.mapping(raw, "approvals", APPROVAL_KEYS, line=line(document, "approvals"))
    approvals = ApprovalRules()
    if raw.get("approvers") is not None:
        approvals.approvers = group_names(raw["approvers"], "approvals.approvers", line(raw, "approvers"))
    for key, choices in (("by_type", CHANGE_TYPES), ("by_risk", RISKS)):
        table = raw.get(key)
        if table is None:
            continue
        check.mapping(table, "approvals." + key, choices, line=line(raw, key))
        setattr(approvals, key, {name: group_names(value, "approvals.%s.%s" % (key, name),
                                                   line(table, name) or line(raw, key))
                                 for name, value in table.items()})
    if raw.get("states") is not None:
        path = "approvals.states"
        if "new" in (raw["states"] if isinstance(raw["states"], list) else [raw["states"]]):
            check.fail(path, "an approval is never accepted while a request is new: nothing has been assessed yet",
                       raw["states"], line(raw, "states"))
        approvals.states = tuple(check.string_list(raw["states"], path, line(raw, "states"), choices=APPROVAL_STATES))
        if not approvals.states:
            check.fail(path, "must list at least one state", raw["states"], line(raw, "states"))
    for key in ("allow_self_approval", "allow_runner_as_sole_approver"):
        if raw.get(key) is not None:
            setattr(approvals, key, check.boolean(raw[key], "approvals." + key, line(raw, key)))

    raw = _section(document, "publishing", mapping_type)
    check.mapping(raw, "publishing", PUBLISHING_KEYS, line=line(document, "publishing"))
    publishing = PublishingRules()
    if raw.get("publishers") is not None:
        publishing.publishers = group_names(raw["publishers"], "publishing.publishers", line(raw, "publishers"))
    if raw.get("require_change_request") is not None:
        publishing.require_change_request = check.boolean(raw["require_change_request"],
                                                          "publishing.require_change_request",
                                                          line(raw, "require_change_request"))

    raw = _section(document, "reviews", mapping_type)
    check.mapping(raw, "reviews", REVIEW_KEYS, line=line(document, "reviews"))
    reviews = ReviewRules()
    if raw.get("reviewers") is not None:
        reviews.reviewers = group_names(raw["reviewers"], "reviews.reviewers", line(raw, "reviewers"))
    if raw.get("allow_self_review") is not None:
        reviews.allow_self_review = check.boolean(raw["allow_self_review"], "reviews.allow_self_review",
                                                  line(raw, "allow_self_review"))
    return AuthorisationRules(groups, approvals, publishing, reviews)


def _section(document, key, mapping_type):
    value = document.get(key)
    return mapping_type() if value is None else value
