# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Identification and reconciliation of host CIs (a small IRE).

PRIVATE to the collection. A host is matched to an existing CI by the first
of its identities (in ``identify_by`` order) that an existing CI holds. The
match is then checked before anything is written:

* every other identity the host claims must be free, held by the same CI, or
  held by a *retired* CI (which then yields it);
* the matched CI must not carry a different hardware identity (product UUID,
  serial number) than the host reports: that is another machine;
* the matched CI must not be named after another host of the inventory:
  two hosts claiming one identity (cloned VMs sharing a machine id) is an
  error, not a rename, whether they run in one play or in separate runs.
"""

from __future__ import annotations

import collections
import itertools

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import HOST_CLASSES, is_placeholder
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError

#: identification order for hosts; ``name`` is the CI name (the inventory host name by default)
IDENTITY_ORDER = ("product_uuid", "machine_id", "serial_number", "fqdn", "name")
#: identities of the hardware itself: a different value means a different machine
HARDWARE_IDENTITIES = ("product_uuid", "serial_number")
#: identities compared without regard to case
_CASELESS = frozenset(("product_uuid", "fqdn", "name", "machine_id"))
#: first labels and domains of FQDNs that mean "no DNS name configured" (kept as the attribute, never an identity)
_LOCAL_HOST_LABELS = frozenset(("localhost", "localhost4", "localhost6", "ip6-localhost", "ip6-loopback"))
_LOCAL_DOMAINS = frozenset(("localdomain", "localdomain4", "localdomain6", "localhost"))


def name_identity(ci_class, name):
    """Value of the ``name`` identity: host classes share one namespace, others are per class."""
    namespace = "host" if (ci_class or "server") in HOST_CLASSES else ci_class
    return "%s/%s" % (namespace, str(name).strip().lower())


def _local_fqdn(text):
    # What an unconfigured resolver reports (ansible_fqdn of a fresh image, a
    # container, a laptop): thousands of machines share it, so it names none.
    labels = text.rstrip(".").split(".")
    return labels[0] in _LOCAL_HOST_LABELS or labels[-1] in _LOCAL_DOMAINS


def identity_value(kind, value):
    """Normalised identity value, or None when it does not identify anything."""
    if isinstance(value, (list, dict)) or is_placeholder(value):
        return None
    text = str(value).strip()
    if kind in _CASELESS:
        text = text.lower()
    if kind == "fqdn" and _local_fqdn(text):
        return None
    return text


def _describe(ci):
    return "CI %s (%s, %s, status %s)" % (ci["ci_id"], ci.get("name"), ci.get("class"), ci.get("status"))


def host_identities(attributes, kinds=IDENTITY_ORDER):
    """``{kind: value}`` of a host CI's attributes, for the kinds in use, placeholders dropped."""
    identities = {}
    for kind in kinds:
        if kind == "name":
            if attributes.get("name"):
                identities["name"] = name_identity(attributes.get("class"), attributes["name"])
            continue
        value = identity_value(kind, attributes.get(kind))
        if value is not None:
            identities[kind] = value
    return identities


def ci_identities(attributes, stored=None, changes=None):
    """Identities a CI holds after ``configuration_item`` wrote ``attributes``.

    ``changes`` is the write's ``{attr: {from, to}}`` (every attribute from None for a new CI).
    Host CIs recompute them with the same rules as register_host, for the
    kinds the CI already holds (register_host's ``identify_by`` chose them, and
    a retired CI may have given some up) plus the kinds this write touches: so
    correcting ``product_uuid`` after a motherboard swap moves the identity
    too. A CI entering a host class is identified from then on by every kind its
    attributes give, as register_host would. Other classes only have their name
    identity: a CI leaving the host classes gives up the host identities, or
    register_host would match the application it became by the old server's
    product UUID and overwrite it with a host's facts.
    """
    stored = dict(stored or {})
    changes = changes or {}
    touched = set(changes)
    if "class" in touched:
        touched.add("name")
    ci_class = attributes.get("class")
    was_class = changes["class"].get("from") if "class" in changes else ci_class
    if ci_class in HOST_CLASSES:
        if was_class in HOST_CLASSES:
            kinds = [kind for kind in IDENTITY_ORDER if kind in stored or kind in touched]
        else:
            kinds = IDENTITY_ORDER
        return host_identities(attributes, kinds)
    if was_class in HOST_CLASSES:
        for kind in IDENTITY_ORDER:
            stored.pop(kind, None)
    if "name" in touched or "name" not in stored:
        stored["name"] = name_identity(ci_class, attributes.get("name"))
    return stored


def refuse_held_identities(sor, ci_id, identities, stored, fields):
    """Before writing: every identity the CI newly claims must be free (``fields``: kind -> option named)."""
    for kind, value in sorted(identities.items()):
        if (stored or {}).get(kind) == value:
            continue
        holder = sor.find_ci_by_identity(kind, value)
        if holder is None or holder == ci_id:
            continue
        other = sor.get_ci(holder) or {"ci_id": holder}
        field, shown = fields.get(kind, ("attributes.%s" % kind, value))
        if kind == "name":
            raise ConflictError(
                "%s: %r is already the name of %s; %s. Update that CI (by its ci_id, or with ci_class: %s) or "
                "choose another name" % (
                    field, shown, _describe(other),
                    "servers, virtual machines and containers share one namespace of names"
                    if value.startswith("host/") else "names are unique per class",
                    other.get("class")),
                field=field, value=shown, ci_id=holder)
        raise ConflictError(
            "%s: %r already identifies %s; two CIs cannot claim one identity. Correct or retire that CI first"
            % (field, shown, _describe(other)), field=field, value=shown, identity=kind, ci_id=holder)


class Match(object):
    """Outcome of identification: the CI to update (or None: create) and what to release."""

    def __init__(self, ci=None, matched_by=None, released=None):
        self.ci = ci
        self.matched_by = matched_by
        #: ``{ci_id: [kinds]}`` identities retired CIs must give up for this host
        self.released = released or {}


def identify_host(sor, host, identities, order=IDENTITY_ORDER, play_hosts=(), inventory_hosts=()):
    """Find the CI for ``identities``; raise ``ConflictError`` on contradictions.

    ``host`` is the inventory host registering. A CI named after another host
    of ``play_hosts`` or ``inventory_hosts`` (the whole inventory, not just
    this run's ``--limit``) is that host's.
    """
    holders = {}
    cache = {}

    def load(ci_id):
        if ci_id not in cache:
            cache[ci_id] = sor.get_ci(ci_id)
        return cache[ci_id]

    for kind in order:
        if kind in identities:
            holder = sor.find_ci_by_identity(kind, identities[kind])
            if holder is not None:
                holders[kind] = holder

    matched, matched_by = None, None
    released = {}
    for kind in order:
        ci_id = holders.get(kind)
        if ci_id is None:
            continue
        candidate = load(ci_id)
        if candidate is None:
            continue
        if _other_machine(candidate, identities):
            if candidate.get("status") == "retired":
                # A retired machine's identity passes to the new one that claims it.
                released.setdefault(ci_id, []).append(kind)
                continue
            raise ConflictError(
                "host %s: its %s %r is held by %s, which is a different machine (%s); two hosts claim one "
                "identity. Retire that CI, correct its identities, or drop %s from identify_by"
                % (host, kind, identities[kind], _describe(candidate), _hardware_difference(candidate, identities),
                   kind), host=host, identity=kind, value=identities[kind], ci_id=ci_id)
        matched, matched_by = candidate, kind
        break

    if matched is not None:
        _refuse_other_host(host, matched, matched_by, identities, play_hosts, inventory_hosts)

    for kind, ci_id in holders.items():
        if matched is not None and ci_id == matched["ci_id"]:
            continue
        if ci_id in released and kind in released[ci_id]:
            continue
        holder = load(ci_id)
        if holder is None:
            continue
        if holder.get("status") == "retired":
            released.setdefault(ci_id, []).append(kind)
            continue
        if matched is None:
            # unreachable in practice: the first holder found is matched above
            continue
        raise ConflictError(
            "host %s: identified as %s by %s, but its %s %r belongs to %s; two CIs claim this host. "
            "Merge or retire one of them, or drop %s from identify_by"
            % (host, _describe(matched), matched_by, kind, identities[kind], _describe(holder), kind),
            host=host, identity=kind, value=identities[kind], ci_id=ci_id)
    return Match(matched, matched_by, released)


def _other_machine(ci, identities):
    stored = ci.get("identities") or {}
    for kind in HARDWARE_IDENTITIES:
        if kind in identities and kind in stored and stored[kind] != identities[kind]:
            return True
    return False


def _hardware_difference(ci, identities):
    stored = ci.get("identities") or {}
    return ", ".join("%s %r there, %r here" % (kind, stored[kind], identities[kind])
                     for kind in HARDWARE_IDENTITIES
                     if kind in identities and kind in stored and stored[kind] != identities[kind])


def _inventory_host_named(name, hosts):
    # Linear, and only reached when the matched CI carries another name than
    # the host (a rename or a clone), so a 5,000-host inventory costs nothing
    # per host in the usual case.
    for other in hosts or ():
        if str(other).lower() == name:
            return other
    return None


def _refuse_other_host(host, ci, matched_by, identities, play_hosts, inventory_hosts):
    """A CI still named after another inventory host is that host's: this one is a clone, not a rename.

    Also when this host asks for that name with the ``name`` option: two
    inventory hosts writing one CI would overwrite each other's facts.
    """
    name = ci.get("name")
    if not name or str(name).lower() == str(host).lower():
        return
    name = str(name).lower()
    value = identities[matched_by]
    sibling = _inventory_host_named(name, play_hosts)
    if sibling is not None:
        # Hosts of one play register in parallel, so which of the two gets the
        # CI is a race: name them in a fixed order so the message is the same
        # on every run.
        first, second = sorted((str(sibling), str(host)))
        raise ConflictError(
            "hosts %s and %s both claim %s %r (%s): give each host its own identity (for example regenerate "
            "/etc/machine-id on cloned machines) or drop %s from identify_by"
            % (first, second, matched_by, value, _describe(ci), matched_by),
            host=host, other_host=sibling, identity=matched_by, value=value, ci_id=ci["ci_id"])
    other = _inventory_host_named(name, inventory_hosts)
    if other is not None:
        raise ConflictError(
            "host %s claims %s %r, which identifies %s registered for inventory host %s, still in the "
            "inventory: two hosts claim one identity. If %s replaces %s (a rename), remove %s from the inventory "
            "and run again: the CI is then renamed. If both are live machines (a clone), give %s its own "
            "identity (for example regenerate /etc/machine-id) or drop %s from identify_by"
            % (host, matched_by, value, _describe(ci), other, host, other, other, host, matched_by),
            host=host, other_host=other, identity=matched_by, value=value, ci_id=ci["ci_id"])


def release_entries_data(sor, released, run_id):
    """``ci.updated`` data that takes released identities away from retired CIs."""
    updates = []
    for ci_id, kinds in sorted(released.items()):
        ci = sor.get_ci(ci_id)
        if ci is None:
            continue
        remaining = dict((kind, value) for kind, value in (ci.get("identities") or {}).items() if kind not in kinds)
        updates.append({"ci_id": ci_id, "base_version": ci["version"], "changes": {}, "identities": remaining,
                        "run_id": run_id, "reason": "identities %s taken over by a new machine" % ", ".join(sorted(kinds))})
    return updates


def find_host_cis(sor, names):
    """The CI of each inventory host: ``{name: ci}`` for the names that have one.

    A host's CI is the CI of a host class (server, virtual machine, container) with its name, the
    one register_host made for it (its ``host/<name>`` identity) when several are; only when no host
    CI has the name does the one CI of another class with that name count (CIs another tool wrote
    under its own class names). So an application or service CI that shares a host's name is never
    taken for the host's own CI: by the gate (environment, freezes), by checklist evidence
    (compliance) or by the recorder (last change). One query for all names, plus one per host
    whose name several host CIs share.
    """
    wanted = set(names)
    wanted.discard("")
    wanted.discard(None)
    if not wanted:
        return {}
    if not getattr(sor, "names_in_any_order", False):
        # a reader that batches the names answers in an order that follows theirs: sorted, so that it is the same
        # in every process (set order is not); the gate's reader takes them as a set and sorts what it finds
        wanted = sorted(wanted)
    # a name with one CI (nearly every name) is that CI's, whatever its class: only names several CIs share
    # are grouped and decided below (a play of 10,000 hosts makes no list per name)
    found = {}
    shared = {}
    for ci in sor.find_cis(names=wanted):
        name = ci["name"]
        first = found.setdefault(name, ci)
        if first is not ci:
            shared.setdefault(name, [first]).append(ci)
    for name, cis in shared.items():
        hosts = [ci for ci in cis if ci.get("class") in HOST_CLASSES]
        if len(hosts) == 1:
            found[name] = hosts[0]
        elif len(hosts) > 1:
            owner = sor.find_ci_by_identity("name", name_identity("server", name))
            found[name] = next((ci for ci in hosts if ci["ci_id"] == owner), hosts[0])
        else:
            del found[name]  # several CIs of other classes share the name: none is the host's
    return found


def find_host_ci_columns(sor, names):
    """:func:`find_host_cis` column by column: ``sor.find_ci_columns`` of the names (``SystemOfRecord``), keeping
    each name's host CI only, as :func:`find_host_cis` chooses it (a name with one CI: that CI; several: the one of
    a host class, or the one holding the ``host/<name>`` identity when several are, else the first by CI id; none
    of a host class: none). The gate's read of the 10,000 host CIs of a play, which it aggregates column by column
    without a record per CI. Returns the columns (one row per name that has a host CI, in no promised order)."""
    wanted = set(names)
    wanted.discard("")
    wanted.discard(None)
    found = sor.find_ci_columns(wanted, facet="service")
    ci_names = found["name"]
    if len(set(ci_names)) == len(ci_names):
        return found
    # names several CIs share (rare): grouped and decided as find_host_cis does, each group by CI id (its order)
    counts = collections.Counter(ci_names)
    groups = {}
    for index, name in enumerate(ci_names):
        if counts[name] > 1:
            groups.setdefault(name, []).append(index)
    ci_ids, classes = found["ci_id"], found["class"]
    dropped = set()
    for name, indexes in groups.items():
        indexes.sort(key=ci_ids.__getitem__)
        hosts = [index for index in indexes if classes[index] in HOST_CLASSES]
        kept = None
        if len(hosts) == 1:
            kept = hosts[0]
        elif len(hosts) > 1:
            owner = sor.find_ci_by_identity("name", name_identity("server", name))
            kept = next((index for index in hosts if ci_ids[index] == owner), hosts[0])
        dropped.update(index for index in indexes if index != kept)
    keep = [index not in dropped for index in range(len(ci_ids))]
    chosen = {key: list(itertools.compress(found[key], keep)) for key in ("ci_id", "name", "class", "environment")}
    kept_ids = set(chosen["ci_id"])
    facet_keep = list(map(kept_ids.__contains__, found["facet_ci_id"]))
    chosen["facet_ci_id"] = list(itertools.compress(found["facet_ci_id"], facet_keep))
    chosen["facet_value"] = list(itertools.compress(found["facet_value"], facet_keep))
    return chosen
