# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Our CIs through ServiceNow's Identification and Reconciliation Engine (IRE).

A CI of the ledger becomes one IRE item: its ServiceNow class (:data:`DEFAULT_CLASS_MAP`,
refined by the operating system for hosts), its fields (:data:`DEFAULT_FIELD_MAP`),
the hardware identities as ``lookup`` entries (serial numbers, the primary network
adapter), and ``sys_object_source_info`` naming our data source with the CI's id as
the native key, so ServiceNow's own identification rules (and every other discovery
source) reconcile with ours. Many items travel in one request; relations between
them travel with them (``relations`` refer to items by position).

Which CI ServiceNow matched is ServiceNow's decision: the identity rules of
``cmdb_identity`` decide which of *our* CIs a host is; IRE decides which of
*its* records that CI is. ``MULTI_MATCH`` and item errors come back as
:class:`ItemResult` errors naming the CI, the rule and the attributes it searched.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import ServiceNowRequestError

#: our CI class -> ServiceNow class (hosts are refined by operating system, see :func:`sn_class`)
DEFAULT_CLASS_MAP = {
    "server": "cmdb_ci_server",
    "virtual_machine": "cmdb_ci_server",
    "container": "cmdb_ci_oslv_container",
    "vm_instance": "cmdb_ci_vm_instance",
    "application": "cmdb_ci_appl",
    "database": "cmdb_ci_database",
    "service": "cmdb_ci_service",
    "cmdb_ci": "cmdb_ci",
}
#: ``os_family`` values of Linux distributions (Ansible's ``ansible_os_family``)
LINUX_FAMILIES = frozenset(("Debian", "RedHat", "Suse", "Archlinux", "Gentoo", "Alpine", "Altlinux", "Mandrake",
                            "Slackware", "ClearLinux", "Flatcar", "Mariner", "Linux"))
#: host classes whose ServiceNow class follows the operating system
_HOST_CLASSES = ("server", "virtual_machine")
#: our attribute -> ServiceNow field (values are sent as strings)
DEFAULT_FIELD_MAP = {
    "name": "name",
    "fqdn": "fqdn",
    "hostname": "host_name",
    "primary_ipv4": "ip_address",
    "mac_address": "mac_address",
    "os": "os",
    "os_version": "os_version",
    "serial_number": "serial_number",
    "cpu_count": "cpu_count",
    "memory_mb": "ram",
    "environment": "environment",
    "description": "short_description",
    "version": "version",
}
#: our status -> (install_status, operational_status)
STATUS_MAP = {
    "planned": ("4", "5"),
    "operational": ("1", "1"),
    "maintenance": ("3", "3"),
    "non_operational": ("1", "2"),
    "retired": ("7", "6"),
}
#: our relationship type -> (cmdb_rel_type name, whether our source is ServiceNow's parent)
RELATION_TYPES = {
    "runs_on": ("Runs on::Runs", True),
    "depends_on": ("Depends on::Used by", True),
    "hosted_on": ("Hosted on::Hosts", True),
    "member_of": ("Members::Member of", False),
}
#: IRE operations that wrote something
WRITES = frozenset(("INSERT", "UPDATE", "UPDATE_WITH_UPGRADE", "UPDATE_WITH_DOWNGRADE", "UPDATE_WITH_SWITCH",
                    "DELETE"))


def sn_class(ci, class_map=None):
    """The ServiceNow class of one of our CIs: ``class_map`` first, then a ``cmdb_*`` class as it is, then the
    defaults (a Linux or Windows host becomes ``cmdb_ci_linux_server`` or ``cmdb_ci_win_server``)."""
    ours = ci.get("class") or "cmdb_ci"
    if class_map and ours in class_map:
        return class_map[ours]
    if ours.startswith("cmdb_"):
        return ours
    attributes = ci.get("attributes") or {}
    if ours in _HOST_CLASSES:
        family = str(attributes.get("os_family") or "")
        if family in LINUX_FAMILIES or "linux" in str(attributes.get("kernel") or "").lower() and family != "Windows":
            return "cmdb_ci_linux_server"
        if family == "Windows":
            return "cmdb_ci_win_server"
    if ours not in DEFAULT_CLASS_MAP:
        raise ValidationError("class_map: CI %s (%s) has class %r, which has no ServiceNow class; add it to the "
                              "ServiceNow class_map (for example %s: cmdb_ci_appl)" % (
                                  ci.get("name"), ci.get("ci_id"), ours, ours), field="class_map", value=ours)
    return DEFAULT_CLASS_MAP[ours]


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def sn_values(ci, field_map=None):
    """The ServiceNow field values of one of our CIs (strings, as ServiceNow stores them)."""
    mapping = dict(DEFAULT_FIELD_MAP)
    mapping.update(field_map or {})
    attributes = dict(ci.get("attributes") or {})
    attributes.setdefault("name", ci.get("name"))
    values = {}
    for attribute, field in sorted(mapping.items()):
        if not field:
            continue  # mapped to nothing: not sent
        value = attributes.get(attribute)
        if value in (None, "", [], {}):
            continue
        values[field] = _text(value)
    status = attributes.get("status") or ci.get("status")
    if status in STATUS_MAP:
        values["install_status"], values["operational_status"] = STATUS_MAP[status]
    if (ci.get("class") or "") == "virtual_machine":
        values["virtual"] = "true"
    return values


def lookups(ci):
    """The identification entries IRE's hardware rule reads from related tables."""
    attributes = ci.get("attributes") or {}
    entries = []
    if attributes.get("product_uuid"):
        entries.append({"className": "cmdb_serial_number", "values": {
            "serial_number": str(attributes["product_uuid"]), "serial_number_type": "uuid", "valid": "true"}})
    if attributes.get("serial_number"):
        entries.append({"className": "cmdb_serial_number", "values": {
            "serial_number": str(attributes["serial_number"]), "serial_number_type": "system", "valid": "true"}})
    if attributes.get("mac_address"):
        adapter = {"name": "primary", "mac_address": str(attributes["mac_address"])}
        if attributes.get("primary_ipv4"):
            adapter["ip_address"] = str(attributes["primary_ipv4"])
        entries.append({"className": "cmdb_ci_network_adapter", "values": adapter})
    return entries


def sn_timestamp(iso):
    return parse_time(iso).strftime("%Y-%m-%d %H:%M:%S") if iso else None


class Mapper(object):
    """Class and field mapping of one configuration (``class_map`` / ``field_map`` override the defaults)."""

    def __init__(self, settings):
        self.class_map = dict(settings.get("class_map") or {})
        self.field_map = dict(settings.get("field_map") or {})
        self.data_source = settings.get("data_source") or "ChangeOps"

    def item(self, ci, source_feed=None):
        item = {
            "className": sn_class(ci, self.class_map),
            "values": sn_values(ci, self.field_map),
            "internal_id": ci["ci_id"],
            "sys_object_source_info": {
                "source_name": self.data_source,
                "source_native_key": ci["ci_id"],
                "source_recency_timestamp": sn_timestamp(ci.get("updated_at")),
            },
        }
        if source_feed:
            item["sys_object_source_info"]["source_feed"] = source_feed
        found = lookups(ci)
        if found:
            item["lookup"] = found
        return item


class ItemResult(object):
    """What IRE did with one item."""

    def __init__(self, ci, raw):
        self.ci = ci
        self.raw = raw or {}
        self.operation = str(self.raw.get("operation") or "")
        self.sys_id = self.raw.get("sysId") or self.raw.get("sys_id")
        self.class_name = self.raw.get("className")
        self.attempts = list(self.raw.get("identificationAttempts") or [])
        self.errors = list(self.raw.get("errors") or [])
        self.multi_match = [attempt for attempt in self.attempts if attempt.get("attemptResult") == "MULTI_MATCH"]
        self.matched = next((attempt for attempt in self.attempts if attempt.get("attemptResult") == "MATCHED"), None)

    @property
    def ok(self):
        # the query variant (check mode) answers INSERT without a sys_id: nothing was created
        return bool(self.operation) and not self.errors and not self.multi_match and \
            (bool(self.sys_id) or self.operation == "INSERT")

    @property
    def wrote(self):
        return self.operation in WRITES

    @property
    def rule(self):
        """The identifier rule that decided (or could not decide) the item."""
        for attempt in self.multi_match + ([self.matched] if self.matched else []) + self.attempts[-1:]:
            return attempt.get("identifierName")
        return None

    def describe_identification(self):
        attempts = self.multi_match or self.attempts
        return "; ".join("rule '%s' on %s by %s: %s" % (
            attempt.get("identifierName") or "?", attempt.get("searchOnTable") or "?",
            ", ".join(attempt.get("attributes") or []) or "?", attempt.get("attemptResult") or "?")
            for attempt in attempts) or "no identification attempt reported"

    def error_message(self, host_label):
        if self.ok:
            return None
        if self.multi_match:
            attempt = self.multi_match[0]
            return ("%s: ServiceNow IRE found several CIs matching identifier rule '%s' (searched %s on %s); it "
                    "cannot tell which one this is. Merge or retire the duplicates in ServiceNow's CMDB, then run "
                    "changeops.itsm.servicenow_sync with retry_failed: true" % (
                        host_label, attempt.get("identifierName") or "?", attempt.get("searchOnTable") or "?",
                        ", ".join(attempt.get("attributes") or []) or "?"))
        errors = "; ".join("%s: %s" % (error.get("error") or "ERROR", error.get("message") or "")
                           for error in self.errors) or "no sys_id and no operation in the answer"
        return "%s: ServiceNow IRE refused the item (%s; identification: %s)" % (
            host_label, errors, self.describe_identification())


def host_label(ci):
    return "host %s (CI %s, class %s)" % (ci.get("name"), ci.get("ci_id"), ci.get("class"))


class IRE(object):
    """``/api/now/identifyreconcile`` (and ``/query`` for check mode)."""

    def __init__(self, client, mapper):
        self.client = client
        self.mapper = mapper

    def submit(self, cis, relations=(), query_only=False, source_feed=None):
        """Send ``cis`` (with ``relations`` ``[(source ci_id, type, target ci_id)]`` among them) in one request.

        Returns ``[ItemResult]`` in the order of ``cis``. Relations whose ends are not both in ``cis`` or whose
        type has no ServiceNow relation are refused here (``ValidationError``).
        """
        items = [self.mapper.item(ci, source_feed) for ci in cis]
        index = dict((ci["ci_id"], position) for position, ci in enumerate(cis))
        sn_relations = []
        for source, kind, target in relations:
            if kind not in RELATION_TYPES:
                raise ValidationError("relationship %s %s %s has no ServiceNow relation type (known: %s)"
                                      % (source, kind, target, ", ".join(sorted(RELATION_TYPES))), field="type",
                                      value=kind)
            name, forward = RELATION_TYPES[kind]
            parent, child = (source, target) if forward else (target, source)
            sn_relations.append({"parent": index[parent], "child": index[child], "type": name})
        path = self.client.api("identifyreconcile", "query") if query_only else self.client.api("identifyreconcile")
        response = self.client.request(
            "POST", path, params={"sysparm_data_source": self.mapper.data_source},
            json_body={"items": items, "relations": sn_relations, "referenceItems": []},
            # IRE identifies before it writes: the same payload sent twice reconciles to the same records
            idempotent=True)
        result = response.result
        if isinstance(result, list):
            result = result[0] if result else {}
        raw_items = (result or {}).get("items") if isinstance(result, dict) else None
        if not isinstance(raw_items, list) or len(raw_items) != len(cis):
            raise ServiceNowRequestError(self.client.secrets.scrub(
                "%s: IRE answered %s items for %d sent: %s" % (
                    self.client.describe(), len(raw_items) if isinstance(raw_items, list) else "no",
                    len(cis), str(response.body)[:300])), kind="bad_request")
        by_internal = dict((raw.get("internal_id"), raw) for raw in raw_items if isinstance(raw, dict)
                           and raw.get("internal_id"))
        results = []
        for position, ci in enumerate(cis):
            raw = by_internal.get(ci["ci_id"]) or raw_items[position]
            results.append(ItemResult(ci, raw))
        return results
