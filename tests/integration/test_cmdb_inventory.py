# -*- coding: utf-8 -*-
"""The changeops.itsm.cmdb inventory plugin through real ansible-inventory runs."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils import cmdb
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

pytestmark = pytest.mark.integration


def _ctx(sor, spec, params, host=None, facts=None):
    full = dict((name, option.get("default")) for name, option in spec.items())
    full.update(params)
    ctx = OperationContext(sor, full, host=host, task_vars={"ansible_play_hosts_all": [host]}, run_id="seed")
    ctx.facts = facts or {}
    return ctx


def seed(sor):
    """Registered hosts of several classes, environments and services, one retired, plus a non-host CI."""
    hosts = [
        ("web01", "production", ["shop"], {"virtualization_role": "guest", "virtualization_type": "kvm"}),
        ("web02", "production", ["shop", "api"], {"virtualization_role": "guest", "virtualization_type": "kvm"}),
        ("db01", "production", ["shop"], {}),
        ("ci-runner", "staging", [], {"virtualization_role": "guest", "virtualization_type": "docker"}),
        ("old01", "production", ["shop"], {}),
    ]
    for number, (name, environment, services, virt) in enumerate(hosts, start=1):
        facts = dict(virt, hostname=name, fqdn=name + ".example.com", machine_id="m-" + name,
                     distribution="Debian", memtotal_mb=2048 * number,
                     default_ipv4={"address": "10.0.0.%d" % number})
        cmdb.register_host(_ctx(sor, cmdb.REGISTER_HOST_SPEC, {"environment": environment, "services": services},
                                host=name, facts=facts))
    cmdb.configuration_item(_ctx(sor, cmdb.CONFIGURATION_ITEM_SPEC, {"name": "old01", "state": "retired"}))
    cmdb.configuration_item(_ctx(sor, cmdb.CONFIGURATION_ITEM_SPEC, {"name": "shop", "ci_class": "application",
                                                                     "attributes": {"environment": "production"}}))


def ansible_inventory(project, config_name, config):
    project.write(config_name, config)
    completed = subprocess.run(
        [os.path.join(os.path.dirname(project.command("x")[0]), "ansible-inventory"), "-i", config_name, "--list"],
        cwd=project.root, env=project.env({"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300, check=False)
    return completed


def plain(value):
    """ansible-inventory marks strings from inventory plugins as unsafe: ``{"__ansible_unsafe": text}``."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return dict((key, plain(item)) for key, item in value.items())
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def hosts_of(listing, group):
    return sorted(listing.get(group, {}).get("hosts", []))


def test_inventory_lists_exactly_the_operational_hosts_with_groups_and_vars(project, open_sor):
    seed(open_sor())
    result = ansible_inventory(project, "estate.cmdb.yml", """
        plugin: changeops.itsm.cmdb
        ansible_host_from: primary_ipv4
        compose:
          big_machine: cmdb_memory_mb >= 6000
        groups:
          shop_hosts: "'shop' in cmdb_services"
        keyed_groups:
          - key: cmdb_os | lower
            prefix: os
        """)
    assert result.returncode == 0, result.stderr
    listing = plain(json.loads(result.stdout))
    hostvars = listing["_meta"]["hostvars"]
    assert sorted(hostvars) == ["ci-runner", "db01", "web01", "web02"]
    assert hosts_of(listing, "environment_production") == ["db01", "web01", "web02"]
    assert hosts_of(listing, "environment_staging") == ["ci-runner"]
    assert hosts_of(listing, "class_virtual_machine") == ["web01", "web02"]
    assert hosts_of(listing, "class_container") == ["ci-runner"]
    assert hosts_of(listing, "class_server") == ["db01"]
    assert hosts_of(listing, "service_shop") == ["db01", "web01", "web02"]
    assert hosts_of(listing, "service_api") == ["web02"]
    assert hosts_of(listing, "shop_hosts") == ["db01", "web01", "web02"]
    assert hosts_of(listing, "os_debian") == ["ci-runner", "db01", "web01", "web02"]
    web02 = hostvars["web02"]
    assert web02["ansible_host"] == "10.0.0.2"
    assert web02["cmdb_memory_mb"] == 4096 and web02["big_machine"] is False
    assert hostvars["db01"]["big_machine"] is True
    assert web02["cmdb_ci_id"].startswith("ci-") and web02["cmdb_last_change_run_id"] == "seed"
    assert web02["cmdb_fqdn"] == "web02.example.com" and web02["cmdb_services"] == ["api", "shop"]


def test_attribute_keys_that_are_not_identifiers_become_valid_variable_names(project, open_sor):
    """Checklists store compliance under dotted keys; ansible-core deprecates such variable names."""
    sor = open_sor()
    seed(sor)
    cmdb.configuration_item(_ctx(sor, cmdb.CONFIGURATION_ITEM_SPEC, {
        "name": "web01", "attributes": {"compliance.hardening": {"status": "pass", "score": 100.0}}}))
    project.write("estate.cmdb.yml", "plugin: changeops.itsm.cmdb\n")
    completed = subprocess.run(
        [os.path.join(os.path.dirname(project.command("x")[0]), "ansible-inventory"), "-i", "estate.cmdb.yml",
         "--host", "web01"],
        cwd=project.root, env=project.env({"ANSIBLE_DEPRECATION_WARNINGS": "True"}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr
    web01 = plain(json.loads(completed.stdout))
    assert web01["cmdb_compliance_hardening"] == {"status": "pass", "score": 100.0}
    assert not [name for name in web01 if "." in name]
    assert "invalid name" not in completed.stderr, completed.stderr


def test_inventory_filters(project, open_sor):
    seed(open_sor())
    result = ansible_inventory(project, "filtered.cmdb.yml", """
        plugin: changeops.itsm.cmdb
        environments: [production]
        services: [api, shop]
        statuses: [operational, retired]
        filter: "memory_mb >= `4000`"
        hostvar_prefix: ci_
        default_groups: [class]
        """)
    assert result.returncode == 0, result.stderr
    listing = plain(json.loads(result.stdout))
    assert sorted(listing["_meta"]["hostvars"]) == ["db01", "old01", "web02"]
    assert "environment_production" not in listing
    assert hosts_of(listing, "class_server") == ["db01", "old01"]
    assert listing["_meta"]["hostvars"]["old01"]["ci_status"] == "retired"


def test_inventory_bad_filter_is_a_clear_error(project, open_sor):
    seed(open_sor())
    result = ansible_inventory(project, "broken.cmdb.yml", """
        plugin: changeops.itsm.cmdb
        filter: "memory_mb >="
        """)
    assert result.returncode != 0
    assert "broken.cmdb.yml" in result.stderr and "memory_mb >=" in result.stderr


def test_inventory_drives_a_play(project, open_sor):
    seed(open_sor())
    project.write("hosts.cmdb.yml", """
        plugin: changeops.itsm.cmdb
        environments: [production]
        compose:
          ansible_connection: "'local'"
        """)
    project.write_playbook("pb.yml", """
        - name: Use the CMDB as inventory
          hosts: service_shop
          gather_facts: false
          tasks:
            - name: Say where
              ansible.builtin.debug:
                msg: "HOST={{ inventory_hostname }} OS={{ cmdb_os }}"
        """)
    result = project.run("pb.yml", "-i", "hosts.cmdb.yml")
    assert sorted(line.split("HOST=")[1].split()[0] for line in result.stdout.splitlines()
                  if '"msg": "HOST=' in line) == ["db01", "web01", "web02"]
