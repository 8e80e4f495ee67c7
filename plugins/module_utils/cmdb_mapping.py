# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts -> CI attributes, and JMESPath expressions over facts and CIs.

PRIVATE to the collection. The default mapping is itself a table of JMESPath
expressions, so a user's ``attribute_map`` overrides or extends it with the
same language and the same error reporting.
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.changeops.itsm.plugins.module_utils.errors import MissingDependency, ValidationError

try:
    import jmespath
    from jmespath.exceptions import JMESPathError
except ImportError:
    HAS_JMESPATH = False
    JMESPATH_IMPORT_ERROR = traceback.format_exc()
    JMESPathError = Exception
else:
    HAS_JMESPATH = True
    JMESPATH_IMPORT_ERROR = None

#: CI classes of hosts (what register_host writes and the inventory lists by default)
HOST_CLASSES = ("server", "virtual_machine", "container")

#: ``ansible_virtualization_type`` values of a container rather than a virtual machine
CONTAINER_TYPES = frozenset((
    "container", "docker", "podman", "lxc", "lxd", "openvz", "containerd", "systemd-nspawn", "wsl", "jail",
    "zone", "RKT", "rkt", "container=podman",
))

#: attribute -> JMESPath over ``ansible_facts`` (keys without the ``ansible_`` prefix)
DEFAULT_FACT_MAP = {
    "fqdn": "fqdn",
    "hostname": "hostname",
    "os": "distribution",
    "os_version": "distribution_version",
    "os_family": "os_family",
    "kernel": "kernel",
    "architecture": "architecture",
    "cpu_count": "processor_vcpus || processor_count",
    "memory_mb": "memtotal_mb",
    "serial_number": "product_serial",
    "machine_id": "machine_id",
    "product_uuid": "product_uuid",
    "primary_ipv4": "default_ipv4.address",
    "primary_ipv6": "default_ipv6.address",
    "mac_address": "default_ipv4.macaddress || default_ipv6.macaddress",
    "ip_addresses": "[all_ipv4_addresses, all_ipv6_addresses][]",
    "virtualization_type": "virtualization_type",
    "virtualization_role": "virtualization_role",
}

#: mapped facts that firmware fills with placeholders when unknown ("NA", "0", ...):
#: a placeholder is no information, so it neither sets nor overwrites the attribute
PLACEHOLDER_PRONE = frozenset(("serial_number", "product_uuid", "machine_id"))

#: list attributes whose order carries no meaning: sorted, so a reordered fact is no change
UNORDERED_LIST_ATTRIBUTES = frozenset(("ip_addresses", "services", "tags"))

#: attributes holding a list of names (the business services a CI belongs to, its tags)
NAME_LIST_ATTRIBUTES = ("services", "tags")

# Firmware and hypervisors fill unset DMI fields with these; identifying by
# them would merge unrelated machines into one CI.
_PLACEHOLDERS = frozenset(value.lower() for value in (
    "", "none", "null", "na", "n/a", "0", "00", "000000", "0000000000", "0123456789", "1234567890",
    "123456789", "12345678", "default string", "to be filled by o.e.m.", "to be filled by oem",
    "o.e.m.", "oem", "not specified", "not applicable", "not available", "not present", "unknown",
    "system serial number", "system product uuid", "chassis serial number", "serial number", "invalid",
    "default", "base board serial number", "xxxxxxxxxxxx", "none specified", "empty",
    # well-known bogus SMBIOS UUID shipped by several board vendors
    "03000200-0400-0500-0006-000700080009",
))


def require_jmespath():
    if not HAS_JMESPATH:
        raise MissingDependency(missing_required_lib("jmespath"), exception=JMESPATH_IMPORT_ERROR)


def is_placeholder(value):
    """True for values that do not identify anything (unset DMI fields, all-zero UUIDs...)."""
    if value is None or isinstance(value, bool):
        return True
    text = str(value).strip().lower()
    if text in _PLACEHOLDERS:
        return True
    compact = text.replace("-", "").replace(" ", "").replace(":", "")
    # 00000000-0000-..., ffffffff-ffff-..., "xxxx": one repeated character is never an identity
    return len(set(compact)) <= 1


def compile_expression(field, expression):
    """Compile a JMESPath expression; a bad one is an error naming ``field`` and the text."""
    require_jmespath()
    if not isinstance(expression, str) or not expression.strip():
        raise ValidationError("%s: a JMESPath expression (non-empty string) is required, got %r"
                              % (field, expression), field=field, value=expression)
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValidationError("%s: invalid JMESPath expression %r: %s" % (field, expression, _one_line(exc)),
                              field=field, value=expression)


def search(field, compiled, expression, data):
    try:
        return compiled.search(data)
    except JMESPathError as exc:
        raise ValidationError("%s: JMESPath expression %r failed: %s" % (field, expression, _one_line(exc)),
                              field=field, value=expression)


def _one_line(exc):
    return " ".join(str(exc).split())


def compile_attribute_map(attribute_map, option="attribute_map"):
    """``{attr: expression}`` -> ``[(attr, expression, compiled)]``, validating every entry first."""
    if attribute_map is None:
        return []
    if not isinstance(attribute_map, dict):
        raise ValidationError("%s must be a dictionary of attribute: JMESPath expression, got %s"
                              % (option, type(attribute_map).__name__), field=option)
    compiled = []
    for attribute, expression in sorted(attribute_map.items()):
        validate_attribute_name("%s key" % option, attribute)
        compiled.append((attribute, expression, compile_expression("%s.%s" % (option, attribute), expression)))
    return compiled


_DEFAULT_COMPILED = []


def default_fact_map():
    """The compiled default mapping (compiled once per process)."""
    if not _DEFAULT_COMPILED:
        _DEFAULT_COMPILED.extend(compile_attribute_map(DEFAULT_FACT_MAP, option="default mapping"))
    return _DEFAULT_COMPILED


def validate_attribute_name(field, name):
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValidationError("%s: attribute names must be non-empty strings without surrounding spaces, got %r"
                              % (field, name), field=field, value=name)


def collect_facts(task_vars, template=None):
    """The host's facts as ``ansible_facts`` shows them (no ``ansible_`` prefix).

    Facts come from the fact cache (gathered or cached facts); facts supplied
    as ``ansible_*`` host or group variables fill in what the cache lacks, so
    a play with ``gather_facts: false`` can still provide them.
    """
    facts = dict(task_vars.get("ansible_facts") or {})
    for key, value in task_vars.items():
        if not key.startswith("ansible_") or key == "ansible_facts":
            continue
        name = key if key == "ansible_local" else key[8:]
        if name in facts:
            continue
        if template is not None and isinstance(value, str) and "{" in value:
            value = template(value)
        facts[name] = value
    return facts


def host_class(facts):
    """server, virtual_machine or container, from the virtualization facts."""
    role = str(facts.get("virtualization_role") or "").lower()
    kind = str(facts.get("virtualization_type") or "")
    if role == "guest":
        if kind in CONTAINER_TYPES or kind.lower() in CONTAINER_TYPES:
            return "container"
        return "virtual_machine"
    return "server"


def _meaningful(value):
    return value not in (None, "", [], {})


def map_facts(facts, user_map=(), use_defaults=True):
    """Attributes from facts: the default mapping (when wanted) overridden by ``user_map``.

    Expressions that find nothing contribute nothing: an attribute is never
    removed because a fact is missing this run.
    """
    attributes = {}
    mapping = list(default_fact_map()) if use_defaults else []
    overridden = set(attribute for attribute, _expression, _compiled in user_map)
    for attribute, expression, compiled in mapping:
        if attribute in overridden:
            continue
        value = search("default mapping of %s" % attribute, compiled, expression, facts)
        if attribute in PLACEHOLDER_PRONE and is_placeholder(value):
            continue
        if _meaningful(value):
            attributes[attribute] = value
    # Without virtualization facts (gather_facts: false) the class is left
    # alone rather than reset to "server"; a new CI gets "server" later.
    if use_defaults and (facts.get("virtualization_role") or facts.get("virtualization_type")):
        attributes["class"] = host_class(facts)
    for attribute, expression, compiled in user_map:
        value = search("attribute_map.%s" % attribute, compiled, expression, facts)
        if _meaningful(value):
            attributes[attribute] = value
    return normalise_attributes(attributes)


def name_list(value, field=None):
    """A ``services``/``tags`` value as the list of names everything reads (the gate, the inventory's
    ``service_*`` groups, service filters).

    One name written as a plain string is what people type for a single service, so it is a list
    of one. With ``field`` (a value about to be written) anything else but a list of non-blank
    strings is an error naming the field and the value. Without it (a stored CI, which another tool
    or a hand-written entry may have filled oddly) reading never fails: nulls and blank items are
    dropped, other scalars become their text, a mapping holds no names.
    """
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    elif value is None or isinstance(value, dict):
        items = None if field is not None else []
    else:
        items = None if field is not None else [value]
    if field is not None:
        if items is None or not all(isinstance(item, str) and item.strip() for item in items):
            raise ValidationError("%s must be a list of names (or one name as a string), got %r" % (field, value),
                                  field=field, value=value)
        return items
    return [str(item) for item in items if item is not None and str(item).strip()]


def normalise_attributes(attributes):
    """Stable forms, so the same facts in a different order are no change."""
    for key in UNORDERED_LIST_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            attributes[key] = sorted(set(value))
    return attributes
