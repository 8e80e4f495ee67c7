# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which hosts a run changed, and which configuration item each of them is (``ci.changed_by_run``).

A result changed its host (:func:`changes_host`) by the one definition of a change
(``module_utils/change_scope.py``), which the change event's authorisation and the change register
apply too: it reports ``changed``, did not fail, is not one of the collection's record-only actions,
and did not run in check mode (``task.check_mode``; results recorded before that field follow the
run). A loop item counts like its loop: one of its items may have changed the host although the
loop as a whole failed.

A changed host's CI is found as ``register_host`` finds it, with its checks, in a few bulk queries
for the whole run (:func:`resolve_host_cis`):

1. the CI ``register_host`` returned for the host in this run;
2. else the host's identities from its facts, mapped and identified as ``register_host`` does
   (``cmdb_mapping`` and ``cmdb_identity.identify_host``): a CI holds only the identity kinds its
   own ``identify_by`` chose, a contradiction (another machine's hardware, two CIs claiming the
   host) identifies nothing, and a CI still named after another inventory host is that host's
   (a clone sharing its ``/etc/machine-id``), not this one's;
3. else its name (``cmdb_identity.find_host_cis``).

Every link of a run to a CI has one id (:func:`link_id`), so a link made twice, by the run and
by a run replaying its spooled end, is one entry: the ledger skips ids it holds.
"""

from __future__ import annotations

import uuid

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import (
    IDENTITY_ORDER,
    find_host_cis,
    host_identities,
    identify_host,
)
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import (
    DEFAULT_FACT_MAP,
    compile_attribute_map,
    map_facts,
)
# changes_host and ran_in_check_mode are re-exported: the callback and the writer use them from here
from ansible_collections.changeops.itsm.plugins.module_utils.change_scope import (  # noqa: F401 pylint: disable=unused-import
    changes_host,
    is_record_only_action,
    ran_in_check_mode,
)
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError, ConflictError

#: namespace of the ids of derived entries (a link is one entry per run and CI, whoever makes it)
_LINK_NAMESPACE = uuid.UUID("5d0b8f3e-7c1a-4d2e-9b6f-2a4c8e1d7f30")
#: identity kinds found in facts (the name is the inventory host's)
FACT_IDENTITIES = tuple(kind for kind in IDENTITY_ORDER if kind != "name")


def link_id(run_id, ci_id):
    """The entry id of ``ci.changed_by_run`` for ``run_id`` and ``ci_id``: the same for every writer."""
    return uuid.uuid5(_LINK_NAMESPACE, "ci.changed_by_run\0%s\0%s" % (run_id, ci_id)).hex


def is_register_host(action):
    return bool(action) and str(action).rsplit(".", 1)[-1] == "register_host" and (
        "." not in str(action) or is_record_only_action(action))


class IdentificationRules(object):
    """How this run's register_host tasks identify hosts, as far as their arguments say it literally.

    ``identify_by`` gives the kinds and their order; ``attribute_map`` may map an identity from
    another fact, ``default_mapping: false`` drops the default ones. When the arguments are
    templated (or come from ``module_defaults``), or tasks disagree, the defaults apply, which
    every CI's stored identities narrow anyway: a CI holds only the kinds its own identify_by chose.
    """

    def __init__(self):
        self._seen = {}

    def note_task(self, task_uuid, args):
        """Called on the playbook's thread for each register_host result: dictionary look-ups only."""
        if task_uuid in self._seen:
            return
        try:
            rules = _literal_rules(args) if isinstance(args, dict) else None
            hash(rules)
        except Exception:  # pylint: disable=broad-except
            rules = None  # arguments of an odd shape: unknown, like templated ones
        self._seen[task_uuid] = rules

    def resolved(self):
        """``(order, {kind: expression})`` for the identities to read from facts."""
        distinct = list(dict.fromkeys(self._seen.values()))
        if len(distinct) == 1 and distinct[0] is not None:
            order, expressions = distinct[0]
            return list(order), dict(expressions)
        return list(IDENTITY_ORDER), dict((kind, DEFAULT_FACT_MAP[kind]) for kind in FACT_IDENTITIES)


def _literal_rules(args):
    """``(order, ((kind, expression), ...))`` hashable, or None when an argument is templated or odd."""
    order = args.get("identify_by", IDENTITY_ORDER)
    if not isinstance(order, (list, tuple)) or not all(kind in IDENTITY_ORDER for kind in order):
        return None
    order = tuple(dict.fromkeys(order))
    defaults = args.get("default_mapping", True)
    if not isinstance(defaults, bool):
        return None
    user_map = args.get("attribute_map") or {}
    if not isinstance(user_map, dict):
        return None
    expressions = []
    for kind in order:
        if kind == "name":
            continue
        expression = user_map.get(kind, DEFAULT_FACT_MAP[kind] if defaults else None)
        if expression is None:
            continue
        if not isinstance(expression, str) or "{{" in expression or "{%" in expression:
            return None
        expressions.append((kind, expression))
    return order, tuple(expressions)


def compile_identity_map(expressions):
    """The compiled ``{kind: expression}`` of :meth:`IdentificationRules.resolved`, or None when one is not
    valid JMESPath (register_host refuses it too) or jmespath is missing: then only the name identifies."""
    try:
        return compile_attribute_map(expressions, option="identity mapping")
    except ChangeopsError:
        return None


def identities_from_facts(host, facts, order, compiled):
    """``{kind: value}`` register_host would claim for ``host`` from these facts (its name included)."""
    attributes = {}
    if facts and compiled:
        try:
            attributes = map_facts(facts, compiled, use_defaults=False)
        except ChangeopsError:
            attributes = {}  # an expression failing on odd facts: the name still identifies
    attributes.update(name=str(host), **{"class": "server"})  # every host class shares the name namespace
    return host_identities(attributes, order)


class _Prefetched(object):
    """What ``identify_host`` asks the system of record, answered from bulk queries made beforehand."""

    def __init__(self, holders, cis):
        self._holders = holders
        self._cis = cis

    def find_ci_by_identity(self, kind, value):
        return self._holders.get(kind, {}).get(value)

    def get_ci(self, ci_id):
        return self._cis.get(ci_id)


def resolve_host_cis(sor, hosts, facts_of=None, inventory_names=(), rules=None):
    """``{host: ci_id}`` for the changed ``hosts`` that are configuration items.

    ``hosts``: ``{host: {"ci_id": ...}}`` (register_host's answer, when it ran for the host);
    ``facts_of(host)``: the host's facts, or None; ``inventory_names``: every inventory host (any
    case); ``rules``: an :class:`IdentificationRules`. At most ten queries per 500 hosts (the CIs
    register_host named, one per identity kind, the CIs holding them, the names), plus one per name
    that several host CIs share.
    """
    found = {}
    answered = dict((host, hint["ci_id"]) for host, hint in hosts.items() if (hint or {}).get("ci_id"))
    existing = sor.get_cis(sorted(set(answered.values()))) if answered else {}
    for host, ci_id in answered.items():
        if ci_id in existing:
            found[host] = ci_id
    rest = sorted(host for host in hosts if host not in found)
    if rest and facts_of is not None:
        order, expressions = (rules or IdentificationRules()).resolved()
        compiled = compile_identity_map(expressions)
        claims = dict((host, identities_from_facts(host, facts_of(host), order, compiled)) for host in rest)
        found.update(_identified(sor, claims, order, inventory_names))
    rest = [host for host in rest if host not in found]
    for host, ci in find_host_cis(sor, rest).items():
        found[host] = ci["ci_id"]
    return found


def _identified(sor, claims, order, inventory_names):
    holders = {}
    for kind in order:
        values = set(identities[kind] for identities in claims.values() if kind in identities)
        if values:
            holders[kind] = sor.find_cis_by_identities(kind, sorted(values))
    candidates = set(ci_id for by_value in holders.values() for ci_id in by_value.values())
    view = _Prefetched(holders, sor.get_cis(sorted(candidates)) if candidates else {})
    others = frozenset(str(name).lower() for name in inventory_names)
    found = {}
    for host, identities in claims.items():
        try:
            match = identify_host(view, host, identities, order)
        except ConflictError:
            continue  # register_host refuses this host: no CI is its own by identity
        ci = match.ci
        if ci is None:
            continue
        name = str(ci.get("name") or "").lower()
        if name != str(host).lower() and name in others:
            # identify_host's own check with a set instead of a list scan per host: a CI still named
            # after another inventory host belongs to that host (a clone), never to this one
            continue
        found[host] = ci["ci_id"]
    return found


def host_facts(variable_manager, host):
    """A host's facts for identification, keyed as ``ansible_facts`` shows them: ``ansible_*`` inventory
    variables (untemplated ones), then the fact cache (gathered or cached facts) over them. Called in
    the writer thread: the fact cache may be a file or a network cache."""
    facts = {}
    inventory = getattr(variable_manager, "_inventory", None)
    inventory_host = inventory.get_host(host) if inventory is not None else None
    for key, value in dict(getattr(inventory_host, "vars", None) or {}).items():
        if str(key).startswith("ansible_") and not (isinstance(value, str) and "{" in value):
            facts[str(key)[8:]] = value
    fact_cache = getattr(variable_manager, "_fact_cache", None)
    if fact_cache is not None:
        try:
            cached = fact_cache.get(host) or {}
        except KeyError:
            cached = {}
        for key, value in dict(cached).items():
            key = str(key)
            facts[key[8:] if key.startswith("ansible_") else key] = value
    return facts


def inventory_host_names(variable_manager):
    """Every host of the inventory, whatever ``--limit`` says (a clone meets the host it copied)."""
    inventory = getattr(variable_manager, "_inventory", None)
    return list(getattr(inventory, "hosts", None) or ()) if inventory is not None else []


class RunContext(object):
    """The callback's Ansible objects, for the writer to read hosts' facts and the inventory at the end of
    the run: in the writer thread, while the playbook's thread waits for it anyway."""

    def __init__(self, variable_manager, rules=None):
        self._variable_manager = variable_manager
        self.rules = rules

    def facts(self, host):
        try:
            return host_facts(self._variable_manager, host)
        except Exception:  # pylint: disable=broad-except
            return None  # a fact cache that cannot be read: the host is still found by name

    def inventory_host_names(self):
        try:
            return inventory_host_names(self._variable_manager)
        except Exception:  # pylint: disable=broad-except
            return []
