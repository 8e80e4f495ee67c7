# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change gate's one entry point into change intelligence.

``change_gate.run_gate`` builds a :class:`GateIntelligence` once per play (batch), after the change
context and before deciding:

1. :meth:`GateIntelligence.__init__` computes the **blast radius** of the targeted and delegated hosts
   (``graph.blast_radius``, bounded by the policy's ``blast_radius`` section) and puts it in the change
   context as ``blast_radius``, so template conditions can test it (``blast_radius.service_count``,
   ``blast_radius.highest_criticality``...); it also reads the runs in progress and the approved change
   requests of this moment, once;
2. :meth:`GateIntelligence.apply` adds the **collisions** to a decision under a policy (the policy in
   force, or a draft beside it): each colliding item with its owner, window and the action the policy
   takes for the change type; ``deny`` items become reasons, ``warn`` items ``warnings``.
"""

from __future__ import annotations


from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import collisions, graph
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.collisions import instant


class CiSummaries(object):
    """The two CMDB reads ``cmdb_identity.find_host_cis`` makes, answered from the CIs' indexed columns and
    facets (``SystemOfRecord.find_ci_summaries``) instead of their whole attribute documents: what the change
    context needs of each host's CI (name, class, environment, status, services), for a play of 10,000
    hosts in a few milliseconds rather than a JSON parse per host. Only the ``service`` facet: nothing the
    gate does with a host's own CI reads its owner, support group or criticality (the blast radius reads
    those of the CIs it reaches, with their own read)."""

    #: the facets of a host's CI the change context reads (``change_gate.build_change_context``)
    FACETS = ("service",)
    #: ``find_cis`` answers sorted by name whatever the order of ``names`` (``cmdb_identity.find_host_cis`` then
    #: skips sorting the 10,000 names of a large play: ``find_ci_summaries`` takes them as a set)
    names_in_any_order = True

    def __init__(self, sor):
        self._sor = sor

    def find_cis(self, names=None, **_filters):
        return self._sor.find_ci_summaries(names=names, facets=self.FACETS)

    def find_ci_by_identity(self, kind, value):
        return self._sor.find_ci_by_identity(kind, value)


def intended_type(params, record):
    """The change type a play asks for, whatever the decision: what the collision policy is looked up by."""
    if params.get("emergency"):
        return "emergency"
    if params.get("change_request"):
        return (record or {}).get("type") or "normal"
    return "standard"


class GateIntelligence(object):
    def __init__(self, sor, policy, context, host_ci_ids, now, run_id=None, change_request=None, process_check=None,
                 local=None):
        """``host_ci_ids``: ``{CI id: host name}`` of the CIs of the targeted and delegated hosts."""
        self.context = context
        self.now = now
        self.local = local
        rules = policy.intelligence
        radius = graph.blast_radius(sor, host_ci_ids, types=rules.relationship_types, max_depth=rules.max_depth,
                                    max_items=rules.max_items)
        context["blast_radius"] = radius
        self.scope = collisions.scope_of(context, radius)
        start, end = instant(now)
        targeted = set(context.get("hosts") or ()) | set(context.get("delegated_hosts") or ())
        self.items = collisions.running_runs(sor, targeted, run_id, process_check, rules.stale_after, now)
        self.items.extend(collisions.change_requests(sor, start, end, self.scope["cis"], change_request))

    def apply(self, decision, policy, change_type):
        """Add the blast radius summary and the collisions to ``decision`` (in place) under ``policy``."""
        start, end = instant(self.now)
        # each item anew (decide sets its action and drops its window); what the items hold is never changed, so a
        # second policy (a --check draft) decides on the same collisions; a deep copy was 2-3 ms of the gate
        items = [dict(item) for item in self.items]
        items.extend(collisions.maintenance_windows(policy.intelligence.maintenance_windows, start, end, self.scope))
        reasons, warnings = collisions.decide(items, policy.intelligence, change_type, self.local)
        decision["blast_radius"] = graph.summary(self.context.get("blast_radius"))
        decision["collisions"] = items
        if warnings:
            decision["warnings"] = list(decision.get("warnings") or []) + warnings
        if reasons:
            decision["reasons"].extend(reasons)
            decision.update(allowed=False, type="denied", reference=None, review_required=False)
        return decision


def now_text(now):
    return format_time(now)
