# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an auditor reads of a change's authorisation: the policy version and the people involved.

Every gate decision records the policy it was made under (``policy``: state, version, sha256) and
the identities that took part (``identities``: the runner, and for a change request its requester
and approvers). ``change_event_info`` and the change register show them through these helpers, so
that both say the same thing.
"""

from __future__ import annotations


def _who(identity):
    if not isinstance(identity, dict) or not identity.get("name"):
        return None
    source = identity.get("source") or "unverified"
    return identity["name"] if source == "os" else "%s (%s)" % (identity["name"], source)


def policy_label(policy):
    """``published version 3 (sha256 1f2e...)``, ``unpublished /etc/changeops/policy.yml (sha256 ...)``..."""
    if not isinstance(policy, dict):
        return policy
    digest = (policy.get("sha256") or "")[:12]
    state = policy.get("state")
    if state == "published":
        return "published version %s (sha256 %s)" % (policy.get("version"), digest)
    label = "%s %s" % (state or "unpublished", policy.get("source") or "")
    return "%s (sha256 %s)" % (label.strip(), digest) if digest else label.strip()


def identities_label(identities):
    """``requester alice; approvers bob, carol; runner alice`` (sources other than the OS account named)."""
    if not isinstance(identities, dict):
        return None
    parts = []
    if identities.get("requester") or identities.get("requested_by"):
        requester = _who(identities.get("requester")) or "?"
        if identities.get("requested_by") and identities["requested_by"] != requester:
            requester += " (for %s)" % identities["requested_by"]
        parts.append("requester %s" % requester)
    approvers = [_who(approver) for approver in identities.get("approvers") or () if _who(approver)]
    if "approvers" in identities:
        parts.append("approvers %s" % (", ".join(approvers) or "none"))
    if identities.get("declared_by"):
        parts.append("emergency declared by %s" % _who(identities["declared_by"]))
    if identities.get("runner"):
        parts.append("runner %s" % _who(identities["runner"]))
    return "; ".join(parts) or None


def authorisations(event):
    """Per gate decision of a change event: how it decided, under which policy version, with whom."""
    found = []
    for gate in (event or {}).get("gates") or ():
        policy = gate.get("policy") if isinstance(gate.get("policy"), dict) else {}
        found.append({
            "decision_id": gate.get("decision_id"),
            "play": gate.get("play"),
            "allowed": gate.get("allowed"),
            "type": gate.get("type"),
            "reference": gate.get("reference"),
            "policy": {key: policy.get(key) for key in ("state", "version", "sha256", "source") if key in policy},
            "identities": gate.get("identities") or {},
        })
    return found
