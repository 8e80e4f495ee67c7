#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: register_host
short_description: Register the current host as a configuration item (CI) in the CMDB
version_added: 0.1.0
description:
  - Creates or updates the CI of the current inventory host from its facts, like a CMDB's
    identification and reconciliation engine. Run it once per host, typically as the last task
    of a provisioning play; a second run changes nothing and writes nothing.
  - "Runs on the controller (no C(delegate_to) needed) and reads the host's facts from the play:
    gathered facts, cached facts, or C(ansible_*) host variables when the play runs with
    C(gather_facts: false). Explicit O(attributes) work without any facts."
  - "Attributes come from, in increasing precedence: the default fact mapping (see O(default_mapping)),
    O(attribute_map), the dedicated options (O(environment), O(owner), O(support_group), O(services),
    O(tags), O(status)) and O(attributes)."
  - "Identification: the host is matched to an existing CI by the first identity in O(identify_by)
    that an existing CI holds (product UUID, machine id, serial number, FQDN, name). Re-imaging,
    renaming or re-addressing a machine updates the same CI. Placeholder values that firmware
    puts in unset fields (V(None), V(0), V(To Be Filled By O.E.M.), all-zero UUIDs, ...) never
    identify anything, nor do FQDNs like V(localhost.localdomain) (kept as the C(fqdn) attribute)."
  - "Two hosts claiming one identity is an error, never a silent merge: a CI matched by one
    identity that holds a different product UUID or serial number, an identity held by a second
    CI, or a CI named after another host of the inventory, in this run or not (for example cloned
    VMs sharing C(/etc/machine-id)). A retired CI gives up an identity that a different machine
    now claims."
  - Every write is one ledger entry (C(ci.created) or C(ci.updated)) carrying the current
    change event's run id, so the CI records which change last touched it.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
  - changeops.itsm.servicenow
  - changeops.itsm.servicenow.PUSH
attributes:
  check_mode:
    description: Computes the predicted CI and changes without writing to the ledger.
    support: full
  diff_mode:
    description: Shows the CI's attributes (and relationships) before and after.
    support: full
options:
  name:
    description:
      - Name of the CI.
      - Defaults to the inventory host name.
    type: str
  attributes:
    description:
      - Attributes to set, overriding the mapped facts. A V(null) value removes the attribute.
      - C(class), C(status), C(environment) and C(name) are indexed; C(status) must be one of
        V(planned), V(operational), V(maintenance), V(non_operational), V(retired).
      - C(services) and C(tags) are lists of names; one name given as a string becomes a list of one
        (also when it comes from O(attribute_map)).
    type: dict
    default: {}
  attribute_map:
    description:
      - Extra or overriding attributes as JMESPath expressions over the host's facts, named as in
        C(ansible_facts) (without the C(ansible_) prefix; local facts under C(ansible_local)).
      - An expression that finds nothing leaves the attribute as it is.
      - A malformed expression fails the task, naming the attribute and the expression, and
        nothing is written.
    type: dict
    default: {}
  default_mapping:
    description:
      - Map the standard facts to attributes - C(fqdn), C(hostname), C(os), C(os_version),
        C(os_family), C(kernel), C(architecture), C(cpu_count), C(memory_mb), C(serial_number),
        C(machine_id), C(product_uuid), C(primary_ipv4), C(primary_ipv6), C(mac_address),
        C(ip_addresses) (sorted), C(virtualization_type), C(virtualization_role), and C(class)
        (V(server), V(virtual_machine) or V(container), from the virtualization facts).
      - Set V(false) to use only O(attribute_map) and O(attributes).
    type: bool
    default: true
  environment:
    description: Environment of the host, for example V(production).
    type: str
  owner:
    description: Who owns the host (a person or team).
    type: str
  support_group:
    description: The group that supports the host.
    type: str
  services:
    description: Business services the host belongs to (kept sorted).
    type: list
    elements: str
  tags:
    description: Free tags (kept sorted).
    type: list
    elements: str
  status:
    description:
      - Operational status to set. New CIs are V(operational); an existing CI keeps its status
        unless this is set (a retired CI stays retired, with a warning).
    type: str
    choices: [planned, operational, maintenance, non_operational, retired]
  identify_by:
    description:
      - Identities used to match the host to an existing CI, tried in the order given (the first
        one an existing CI holds picks it). Drop one that your estate does not keep unique (for
        example V(serial_number) on white-box hardware); a kind left out is not compared at all.
    type: list
    elements: str
    choices: [product_uuid, machine_id, serial_number, fqdn, name]
    default: [product_uuid, machine_id, serial_number, fqdn, name]
  last_seen_refresh:
    description:
      - C(last_seen) records when registration last confirmed the host. It is updated with every
        real change and, on its own, only when the stored value is older than this, so that
        re-running a play is not a change.
      - A duration (V(30m), V(24h), V(7d); V(0) updates it on every run, which makes every run
        report a change) or V(never) (only with real changes).
    type: str
    default: 24h
notes:
  - Run through a play, facts come from the controller's view of the host; executed directly
    (C(ansible -m) with a local connection) the module sees no facts and registers O(attributes) only.
requirements:
  - jmespath (on the controller)
seealso:
  - module: changeops.itsm.configuration_item
  - module: changeops.itsm.configuration_item_info
  - plugin: changeops.itsm.cmdb
    plugin_type: inventory
"""

EXAMPLES = r"""
- name: Register every provisioned host
  changeops.itsm.register_host:
    environment: production
    owner: platform-team
    support_group: linux-ops
    services: [billing]
    attribute_map:
      rack: ansible_local.dc.rack
      disks: "keys(devices)"

- name: Register without facts (gather_facts false)
  changeops.itsm.register_host:
    attributes:
      class: virtual_machine
      serial_number: "{{ vm_serial }}"
      machine_id: "{{ vm_machine_id }}"
    environment: staging

- name: Hardware whose serial numbers are not unique
  changeops.itsm.register_host:
    identify_by: [product_uuid, machine_id, fqdn, name]
"""

RETURN = r"""
servicenow:
  description:
    - With ServiceNow configured, what became of the CI there. C(status) is V(queued) (in the outbox, delivered
      at the end of the run), V(linked) (in ServiceNow; C(sys_id), C(class)), V(would insert) / V(would update) /
      V(would no change) (check mode, IRE's query variant; C(identified_by) names the rule that matched), or
      V(not checked) (ServiceNow could not be asked; C(error) says why).
  returned: when ServiceNow is configured
  type: dict
  sample: {"status": "linked", "sys_id": "5cc599d98f8b4e28b3f0c30f4bf716d1", "class": "cmdb_ci_linux_server"}
ci_id:
  description: Id of the CI registered.
  returned: always
  type: str
  sample: ci-3f9a0c5d1e2b4a67b8c9
created:
  description: Whether the CI was (or, in check mode, would be) created.
  returned: always
  type: bool
matched_by:
  description: The identity that matched an existing CI; null when the CI is new.
  returned: always
  type: str
  sample: machine_id
changes:
  description: "Attribute changes written (or, in check mode, that would be), C({attr: {from, to}})."
  returned: always
  type: dict
  sample: {"memory_mb": {"from": 4096, "to": 8192}}
identities:
  description: The CI's identities before and after, when they changed.
  returned: when identities changed
  type: dict
ci:
  description: The CI after the task (predicted in check mode).
  returned: always
  type: dict
  contains:
    ci_id:
      description: Id of the CI.
      type: str
    name:
      description: Name.
      type: str
    class:
      description: CI class.
      type: str
    status:
      description: Operational status.
      type: str
    environment:
      description: Environment.
      type: str
    attributes:
      description: Every attribute.
      type: dict
    identities:
      description: "Identities the CI holds, C({kind: value})."
      type: dict
    last_change_run_id:
      description: Run id of the change event that last changed the CI.
      type: str
    version:
      description: Version number, incremented by every write.
      type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb import REGISTER_HOST_SPEC, register_host
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=REGISTER_HOST_SPEC, supports_check_mode=True)
    run_module(module, register_host)


if __name__ == "__main__":
    main()
