# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: cmdb
short_description: Hosts from the changeops.itsm CMDB
version_added: 0.1.0
description:
  - Builds the inventory from the configuration items (CIs) in the changeops.itsm system of
    record, the same CMDB that P(changeops.itsm.register_host#module) fills, so there is one repository of truth.
  - By default lists operational CIs of the host classes V(server), V(virtual_machine) and
    V(container); retired CIs are left out.
  - Hosts are named after their CI; every CI attribute becomes a host variable under
    O(hostvar_prefix) (for example C(cmdb_os), C(cmdb_primary_ipv4)), plus C(cmdb_ci_id),
    C(cmdb_last_change_run_id) and C(cmdb_updated_at). A character of an attribute key that cannot be
    in a variable name becomes C(_), so C(compliance.hardening) is C(cmdb_compliance_hardening).
  - Default groups by environment (C(environment_production)), class (C(class_server)) and
    service (C(service_billing)); O(compose), O(groups) and O(keyed_groups) work as in the
    P(ansible.builtin.constructed#inventory) plugin.
  - The configuration file must be named C(*.cmdb.yml), C(*.cmdb.yaml), C(cmdb.yml) or C(cmdb.yaml).
  - With O(source=servicenow) the hosts come from ServiceNow's CMDB instead (O(servicenow_table), by
    default C(cmdb_ci_server) and the classes under it), so the CMDB in ServiceNow drives the play; host
    variables carry the changeops attribute names mapped back from ServiceNow's fields, plus
    C(cmdb_servicenow_sys_id), C(cmdb_servicenow_class) and C(cmdb_support_group), and the default groups
    are by environment, class (ServiceNow's, C(class_cmdb_ci_linux_server)) and support group
    (C(support_group_linux_ops)).
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend.PLUGINS
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks the file as this plugin's configuration.
    type: str
    required: true
    choices: [changeops.itsm.cmdb]
  source:
    description:
      - Which CMDB to read, the changeops system of record (V(changeops)) or ServiceNow's (V(servicenow),
        configured with O(instance), the E(SN_HOST)... variables or the C([changeops_servicenow]) section
        of C(ansible.cfg); see U(https://github.com/changeops/changeops.itsm/blob/main/docs/servicenow.md)).
    type: str
    choices: [changeops, servicenow]
    default: changeops
  instance:
    description:
      - For O(source=servicenow), the ServiceNow instance, with the options of the P(changeops.itsm.servicenow_sync#module)
        module's O(changeops.itsm.servicenow_sync#module:instance) (servicenow.itsm's names, C(host),
        C(username), C(password), C(client_id), C(client_secret), C(grant_type), C(api_key)...). What is not
        set here comes from the E(SN_HOST), E(SN_USERNAME)... variables and C([changeops_servicenow]) in
        C(ansible.cfg).
    type: dict
    default: {}
  servicenow_table:
    description: For O(source=servicenow), the CMDB table to read (its child classes included).
    type: str
    default: cmdb_ci_server
  servicenow_classes:
    description: For O(source=servicenow), only CIs of these ServiceNow classes (C(sys_class_name)), for example V(cmdb_ci_linux_server).
    type: list
    elements: str
    default: []
  servicenow_query:
    description:
      - For O(source=servicenow), an extra encoded query (V(os=Linux^ip_addressSTARTSWITH10.)). Its field
        names are checked against the table's dictionary first, since ServiceNow would ignore a condition
        on a misspelt field and return more hosts.
    type: str
  classes:
    description: CI classes to list.
    type: list
    elements: str
    default: [server, virtual_machine, container]
  statuses:
    description: CI statuses to list.
    type: list
    elements: str
    default: [operational]
  environments:
    description: Only CIs in these environments (default all).
    type: list
    elements: str
    default: []
  services:
    description: Only CIs that belong to at least one of these services (default all).
    type: list
    elements: str
    default: []
  filter:
    description:
      - A JMESPath expression over each CI's attributes (plus C(ci_id)); only CIs for which it is
        true are listed, for example V(os_family == 'Debian').
    type: str
  hostvar_prefix:
    description: Prefix of the host variables that carry CI attributes.
    type: str
    default: cmdb_
  default_groups:
    description:
      - Which default groups to build.
      - When not set, V([environment, class, service]) for O(source=changeops) and
        V([environment, class, support_group]) for O(source=servicenow).
    type: list
    elements: str
    choices: [environment, class, service, support_group]
  ansible_host_from:
    description:
      - Set C(ansible_host) from this CI attribute when the CI has it (V(primary_ipv4),
        V(primary_ipv6) or V(fqdn)); V(none) leaves C(ansible_host) unset.
    type: str
    choices: [none, primary_ipv4, primary_ipv6, fqdn]
    default: none
requirements:
  - jmespath (on the controller)
  - requests (on the controller, for O(source=servicenow))
"""

EXAMPLES = r"""
# production.cmdb.yml
plugin: changeops.itsm.cmdb
environments: [production]
ansible_host_from: primary_ipv4
keyed_groups:
  - key: cmdb_os | lower
    prefix: os
compose:
  needs_reboot: cmdb_kernel != '6.1.0-18-amd64'
groups:
  big_iron: cmdb_memory_mb | int >= 65536

---
# everything.cmdb.yml, from a PostgreSQL system of record, cached for an hour
plugin: changeops.itsm.cmdb
backend: postgresql
statuses: [operational, maintenance]
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/changeops-inventory
cache_timeout: 3600

---
# servicenow.cmdb.yml: Linux servers of production, from ServiceNow's CMDB (SN_HOST, SN_USERNAME... set)
plugin: changeops.itsm.cmdb
source: servicenow
servicenow_classes: [cmdb_ci_linux_server]
environments: [production]
ansible_host_from: primary_ipv4
"""

import os
import re

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb import find_configuration_items
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import name_list
from ansible_collections.changeops.itsm.plugins.module_utils.config import BACKEND_OPTIONS, resolve_backend_config
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.plugin_utils.ledger_location import warn_if_new_ledger

_CONFIG_NAMES = ("cmdb.yml", "cmdb.yaml")
_METADATA = ("ci_id", "last_change_run_id", "updated_at")
# Ansible variable names are identifiers; CI attribute keys need not be (compliance.hardening).
_NOT_IN_A_VARIABLE_NAME = re.compile(r"[^A-Za-z0-9_]")


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "changeops.itsm.cmdb"

    def verify_file(self, path):
        if not super(InventoryModule, self).verify_file(path):
            return False
        return path.endswith(_CONFIG_NAMES)

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache")
        records = None
        update_cache = False
        if use_cache and cache:
            try:
                records = self._cache[cache_key]
            except KeyError:
                update_cache = True
        elif use_cache:
            update_cache = True
        if records is None:
            records = self._fetch(path)
        if update_cache:
            self._cache[cache_key] = records
        self._populate(records)

    def _fetch(self, path):
        if self.get_option("source") == "servicenow":
            return self._fetch_servicenow(path)
        # Ansible has already applied env/ini precedence to the options (a relative path of ansible.cfg
        # is relative to its folder); one set in this file is relative to this file's folder.
        params = dict((name, self.get_option(name)) for name in BACKEND_OPTIONS)
        first = None
        raw_path = self._raw_option(path, "sqlite_path")
        if raw_path is not None:
            params["sqlite_path"] = raw_path
            first = ("%s sqlite_path" % path, None)
        try:
            config = resolve_backend_config(params, environ={}, ini={}, ini_origin=path)
            if raw_path is not None and not os.path.isabs(config["sqlite_path"]):
                config["sqlite_path"] = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)),
                                                                      config["sqlite_path"]))
            if first is not None:
                first = (first[0], config["sqlite_path"])
            warn_if_new_ledger(config, self.display.warning, first=first)
            config["reader"] = True  # reads from postgresql_read_dsn when one is configured
            sor = open_system_of_record(config)
            try:
                cis = find_configuration_items(
                    sor, classes=self.get_option("classes") or None, statuses=self.get_option("statuses") or None,
                    environments=self.get_option("environments") or None, expression=self.get_option("filter"))
                read_from = sor.read_source()
                if read_from is not None and read_from["reason"]:
                    self.display.warning("%s: %s" % (path, read_from["reason"]))
            finally:
                sor.close()
        except ChangeopsError as exc:
            raise AnsibleParserError("%s: %s" % (path, exc.message))
        services = set(self.get_option("services") or ())
        records = []
        for ci in cis:
            attributes = ci.get("attributes") or {}
            if services and not services.intersection(name_list(attributes.get("services"))):
                continue
            record = {"attributes": attributes}
            for key in _METADATA:
                record[key] = ci.get(key)
            records.append(record)
        return records

    def _raw_option(self, path, name):
        """``name`` as written in the inventory file (Ansible has made a relative path absolute
        against the current directory by the time get_option returns it), or None when not set there."""
        try:
            data = self.loader.load_from_file(path, cache="none")
        except Exception:  # pylint: disable=broad-except
            return None
        value = data.get(name) if isinstance(data, dict) else None
        return str(value) if value not in (None, "") else None

    def _fetch_servicenow(self, path):
        from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.inventory import fetch_hosts
        from ansible import constants as C

        from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import controller_settings

        if self.get_option("services"):
            raise AnsibleParserError("%s: services filters the changeops CMDB only; with source: servicenow use "
                                     "servicenow_query" % path)
        try:
            settings = controller_settings(self.get_option("instance") or None,
                                           getattr(C.config, "_config_file", None))
            settings.check_complete("%s instance" % path)
            records = fetch_hosts(settings, table=self.get_option("servicenow_table"),
                                  statuses=self.get_option("statuses") or None,
                                  environments=self.get_option("environments") or None,
                                  classes=self.get_option("servicenow_classes") or None,
                                  query=self.get_option("servicenow_query"), origin=path)
        except ChangeopsError as exc:
            raise AnsibleParserError("%s: %s" % (path, exc.message))
        if self.get_option("filter"):
            from ansible_collections.changeops.itsm.plugins.module_utils.cmdb import compiled_filter, matches_filter

            compiled = compiled_filter(self.get_option("filter"))
            records = [record for record in records if matches_filter(record, compiled)]
        return records

    def _populate(self, records):
        prefix = self.get_option("hostvar_prefix") or ""
        default_groups = self.get_option("default_groups")
        if default_groups is None:
            default_groups = (["environment", "class", "support_group"] if self.get_option("source") == "servicenow"
                              else ["environment", "class", "service"])
        default_groups = set(default_groups)
        address_from = self.get_option("ansible_host_from")
        strict = self.get_option("strict")
        for record in records:
            attributes = record["attributes"]
            host = attributes.get("name")
            if not host:
                continue
            self.inventory.add_host(host)
            for key, value in sorted(attributes.items()):
                self.inventory.set_variable(host, _NOT_IN_A_VARIABLE_NAME.sub("_", prefix + key), value)
            for key in _METADATA:
                self.inventory.set_variable(host, prefix + key, record.get(key))
            if address_from and address_from != "none" and attributes.get(address_from):
                self.inventory.set_variable(host, "ansible_host", attributes[address_from])
            if "environment" in default_groups and attributes.get("environment"):
                self._add_to_group(host, "environment_%s" % attributes["environment"])
            if "class" in default_groups and attributes.get("class"):
                self._add_to_group(host, "class_%s" % attributes["class"])
            if "service" in default_groups:
                for service in name_list(attributes.get("services")):
                    self._add_to_group(host, "service_%s" % service)
            if "support_group" in default_groups and attributes.get("support_group"):
                self._add_to_group(host, "support_group_%s" % attributes["support_group"])
            hostvars = self.inventory.get_host(host).get_vars()
            self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
            hostvars = self.inventory.get_host(host).get_vars()
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)

    def _add_to_group(self, host, name):
        group = self.inventory.add_group(self._sanitize_group_name(name))
        self.inventory.add_child(group, host)
