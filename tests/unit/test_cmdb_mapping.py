# -*- coding: utf-8 -*-
"""Facts -> CI attributes: the default mapping, JMESPath overrides, placeholders."""

from __future__ import annotations

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import host_identities, identity_value
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import (
    collect_facts,
    compile_attribute_map,
    host_class,
    is_placeholder,
    map_facts,
    name_list,
)
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError

FACTS = {
    "hostname": "web01",
    "fqdn": "web01.example.com",
    "distribution": "Debian",
    "distribution_version": "12.5",
    "os_family": "Debian",
    "kernel": "6.1.0-18-amd64",
    "architecture": "x86_64",
    "processor_vcpus": 4,
    "processor_count": 1,
    "memtotal_mb": 7953,
    "product_serial": "VMware-42 1a 2b",
    "machine_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "product_uuid": "421A2B3C-0000-1111-2222-333344445555",
    "default_ipv4": {"address": "10.0.0.11", "macaddress": "00:50:56:aa:bb:cc"},
    "default_ipv6": {"address": "fd00::11"},
    "all_ipv4_addresses": ["10.0.0.11", "172.17.0.1"],
    "all_ipv6_addresses": ["fd00::11"],
    "virtualization_role": "guest",
    "virtualization_type": "VMware",
    "ansible_local": {"dc": {"rack": "R12", "row": 3}},
}


def test_default_mapping_covers_the_documented_attributes():
    attributes = map_facts(FACTS)
    assert attributes == {
        "hostname": "web01", "fqdn": "web01.example.com", "os": "Debian", "os_version": "12.5",
        "os_family": "Debian", "kernel": "6.1.0-18-amd64", "architecture": "x86_64", "cpu_count": 4,
        "memory_mb": 7953, "serial_number": "VMware-42 1a 2b",
        "machine_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "product_uuid": "421A2B3C-0000-1111-2222-333344445555", "primary_ipv4": "10.0.0.11",
        "primary_ipv6": "fd00::11", "mac_address": "00:50:56:aa:bb:cc",
        "ip_addresses": ["10.0.0.11", "172.17.0.1", "fd00::11"], "virtualization_role": "guest",
        "virtualization_type": "VMware", "class": "virtual_machine",
    }


def test_ip_addresses_in_another_order_map_to_the_same_value():
    reordered = dict(FACTS, all_ipv4_addresses=["172.17.0.1", "10.0.0.11"])
    assert map_facts(reordered)["ip_addresses"] == map_facts(FACTS)["ip_addresses"]


@pytest.mark.parametrize("role, kind, expected", [
    ("guest", "kvm", "virtual_machine"),
    ("guest", "VMware", "virtual_machine"),
    ("guest", "docker", "container"),
    ("guest", "lxc", "container"),
    ("guest", "systemd-nspawn", "container"),
    ("host", "kvm", "server"),
    ("", "", "server"),
])
def test_class_follows_the_virtualization_facts(role, kind, expected):
    assert host_class({"virtualization_role": role, "virtualization_type": kind}) == expected


def test_without_virtualization_facts_the_class_is_left_alone():
    assert "class" not in map_facts({"hostname": "x"})


def test_attribute_map_extends_and_overrides_the_defaults():
    user_map = compile_attribute_map({"rack": "ansible_local.dc.rack", "os": "os_family", "nothing": "no.such"})
    attributes = map_facts(FACTS, user_map)
    assert attributes["rack"] == "R12"
    assert attributes["os"] == "Debian"
    assert "nothing" not in attributes


def test_attribute_map_alone_without_defaults():
    attributes = map_facts(FACTS, compile_attribute_map({"row": "ansible_local.dc.row"}), use_defaults=False)
    assert attributes == {"row": 3}


def test_malformed_expression_names_the_attribute_and_the_expression():
    with pytest.raises(ValidationError) as error:
        compile_attribute_map({"rack": "ansible_local.dc.[rack"})
    assert "attribute_map.rack" in error.value.message
    assert "ansible_local.dc.[rack" in error.value.message


def test_expression_failing_at_evaluation_names_the_attribute():
    user_map = compile_attribute_map({"disks": "length(memtotal_mb)"})
    with pytest.raises(ValidationError) as error:
        map_facts(FACTS, user_map)
    assert "attribute_map.disks" in error.value.message and "length(memtotal_mb)" in error.value.message


@pytest.mark.parametrize("bad, message", [
    (["a"], "attribute_map must be a dictionary of attribute: JMESPath expression, got list"),
    ("rack: x", "attribute_map must be a dictionary of attribute: JMESPath expression, got str"),
    (3, "attribute_map must be a dictionary of attribute: JMESPath expression, got int"),
    ({"rack": 3}, "attribute_map.rack: a JMESPath expression (non-empty string) is required, got 3"),
    ({"rack": "  "}, "attribute_map.rack: a JMESPath expression (non-empty string) is required, got '  '"),
    ({" rack": "dc.rack"}, "attribute_map key: attribute names must be non-empty strings without surrounding "
                           "spaces, got ' rack'"),
])
def test_attribute_map_must_be_a_dictionary_of_strings(bad, message):
    with pytest.raises(ValidationError) as error:
        compile_attribute_map(bad)
    assert error.value.message == message


@pytest.mark.parametrize("value", [
    None, "", "None", "0", "NA", "N/A", "To Be Filled By O.E.M.", "Default string", "Not Specified",
    "System Serial Number", "00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
    "03000200-0400-0500-0006-000700080009", "0123456789", "   ", True,
])
def test_placeholders_are_not_identities(value):
    assert is_placeholder(value)
    assert identity_value("serial_number", value) is None


@pytest.mark.parametrize("value", ["CZ1234ABCD", "VMware-42 1a 2b", "4c4c4544-0042-3510-8052-b4c04f4d4d32", "17"])
def test_real_values_are_identities(value):
    assert not is_placeholder(value)


def test_placeholder_facts_do_not_become_attributes():
    facts = dict(FACTS, product_serial="To Be Filled By O.E.M.", product_uuid="NA")
    attributes = map_facts(facts)
    assert "serial_number" not in attributes and "product_uuid" not in attributes


def test_identities_are_normalised_and_skip_placeholders():
    identities = host_identities({"name": "Web01", "class": "server", "fqdn": "WEB01.Example.com",
                                  "product_uuid": "421A2B3C-0000-1111-2222-333344445555", "serial_number": "0",
                                  "machine_id": "abc"})
    assert identities == {"name": "host/web01", "fqdn": "web01.example.com", "machine_id": "abc",
                          "product_uuid": "421a2b3c-0000-1111-2222-333344445555"}


def test_collect_facts_prefers_the_fact_cache_and_fills_in_from_host_vars():
    task_vars = {
        "ansible_facts": {"hostname": "cached", "ansible_local": {"dc": {"rack": "R1"}}},
        "ansible_hostname": "from-vars",
        "ansible_machine_id": "{{ mid }}",
        "ansible_fqdn": "web01.example.com",
        "inventory_hostname": "web01",
    }
    facts = collect_facts(task_vars, template=lambda value: value.replace("{{ mid }}", "m-1"))
    assert facts["hostname"] == "cached"
    assert facts["machine_id"] == "m-1"
    assert facts["fqdn"] == "web01.example.com"
    assert facts["ansible_local"] == {"dc": {"rack": "R1"}}
    assert "inventory_hostname" not in facts


@pytest.mark.parametrize("stored, names", [
    ("billing", ["billing"]),
    (["billing", "api"], ["billing", "api"]),
    ("", []),
    (None, []),
    ([], []),
    (["billing", None, "", "  ", 7], ["billing", "7"]),
    ({"name": "billing"}, []),
    (42, ["42"]),
])
def test_name_list_reads_what_a_stored_ci_holds_without_failing(stored, names):
    # the gate, the inventory and service filters read CIs another tool may have written
    assert name_list(stored) == names


@pytest.mark.parametrize("value", [3, None, {"name": "billing"}, ["billing", 7], [""], "  ", ["api", None]])
def test_name_list_refuses_what_is_not_names_when_writing(value):
    with pytest.raises(ValidationError) as error:
        name_list(value, "attributes.services")
    assert error.value.message == "attributes.services must be a list of names (or one name as a string), got %r" % (
        value,)


def test_name_list_keeps_written_names_as_given():
    assert name_list("billing", "services") == ["billing"]
    assert name_list(["billing", "api"], "services") == ["billing", "api"]
    assert name_list([], "services") == []
