#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: configuration_item
short_description: Manage any configuration item (CI) and its relationships in the CMDB
version_added: 0.1.0
description:
  - Creates, updates, retires or removes a CI of any class (application, service, database,
    load balancer, certificate, server...) and manages its outgoing relationships.
  - A CI is found by O(ci_id), or by O(name) (and O(ci_class) when several CIs share a name).
  - Relationship types are validated against O(relationship_types); both ends must exist.
  - Retiring keeps the CI, its relationships and its history; the inventory plugin leaves
    retired CIs out. O(state=absent) on a CI that other CIs depend on is refused with the list
    of dependents unless O(force=true).
  - "For a CI of a host class (V(server), V(virtual_machine), V(container)) the identities that
    M(changeops.itsm.register_host) matches hosts by (C(product_uuid), C(machine_id),
    C(serial_number), C(fqdn), C(name)) follow its attributes: setting C(product_uuid) and
    C(serial_number) after a motherboard swap moves those identities, so the host registers again."
  - "A CI moved into a host class by O(ci_class) is identified from then on by every identity its
    attributes give. A CI moved out of the host classes gives up its C(product_uuid), C(machine_id),
    C(serial_number) and C(fqdn) identities, and its name is then unique in its new class, so
    M(changeops.itsm.register_host) makes a new CI for the machine instead of overwriting the CI
    it became. Check mode and diff show the identities changing."
  - A name or identity that another CI already holds is refused before anything is written,
    naming the field, the value and that CI. Servers, virtual machines and containers share one
    namespace of names; other classes have one per class.
  - Every write is a batch of ledger entries appended atomically; nothing is half-written.
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
    description: Shows the CI's attributes (and relationships, and identities when they change) before and after.
    support: full
options:
  name:
    description:
      - Name of the CI. Required unless O(ci_id) is given; with O(ci_id) it renames the CI.
    type: str
  ci_id:
    description: Id of an existing CI.
    type: str
  ci_class:
    description:
      - CI class, for example V(application), V(database), V(service), V(server).
      - Required to create a CI; when finding one by name, it tells apart CIs sharing a name.
    type: str
    aliases: [class]
  state:
    description:
      - V(present) creates or updates the CI (and brings a retired one back to V(operational)
        unless C(status) is in O(attributes)).
      - V(retired) sets its status to V(retired), keeping it and its history.
      - V(absent) removes the CI and its relationships (its ledger history stays).
    type: str
    choices: [present, retired, absent]
    default: present
  attributes:
    description:
      - Attributes to set; other attributes are kept. A V(null) value removes the attribute.
      - C(status) must be one of V(planned), V(operational), V(maintenance), V(non_operational),
        V(retired).
      - C(services) and C(tags) are lists of names; one name given as a string becomes a list of one.
    type: dict
    default: {}
  relationships:
    description:
      - Outgoing relationships this CI must have (added when missing).
    type: list
    elements: dict
    default: []
    suboptions:
      type:
        description: Relationship type; one of O(relationship_types).
        type: str
        required: true
      target:
        description: Name or ci_id of the CI at the other end; it must exist.
        type: str
        required: true
      target_class:
        description: Class of the target, when several CIs share its name.
        type: str
  purge_relationships:
    description: Also remove outgoing relationships not listed in O(relationships).
    type: bool
    default: false
  relationship_types:
    description:
      - Relationship types accepted in O(relationships). Set it once with C(module_defaults) to
        add your own.
    type: list
    elements: str
    default: [runs_on, depends_on, hosted_on, member_of]
  force:
    description: With O(state=absent), remove the CI even when other CIs depend on it.
    type: bool
    default: false
  reason:
    description: Why the CI is removed; kept in the ledger.
    type: str
requirements:
  - jmespath (on the controller)
seealso:
  - module: changeops.itsm.configuration_item_info
  - module: changeops.itsm.register_host
"""

EXAMPLES = r"""
- name: The billing database runs on db01
  changeops.itsm.configuration_item:
    name: billing-db
    ci_class: database
    attributes:
      engine: postgresql
      version: "16"
      environment: production
      owner: dba-team
    relationships:
      - type: runs_on
        target: db01

- name: The billing application depends on its database
  changeops.itsm.configuration_item:
    name: billing
    ci_class: application
    relationships:
      - type: depends_on
        target: billing-db
      - type: member_of
        target: billing-service
        target_class: service

- name: Use a relationship type of your own
  changeops.itsm.configuration_item:
    name: www.example.com
    ci_class: certificate
    relationship_types: [runs_on, depends_on, hosted_on, member_of, secures]
    relationships:
      - type: secures
        target: lb01

- name: After a motherboard swap, give the server's CI the new board's identities
  changeops.itsm.configuration_item:
    name: db01
    attributes:
      product_uuid: 4c4c4544-0042-3510-8052-b4c04f4d4d32
      serial_number: CZ1234ABCD

- name: Retire an old server (history kept)
  changeops.itsm.configuration_item:
    name: web07
    state: retired

- name: Remove a CI even though others still depend on it
  changeops.itsm.configuration_item:
    name: legacy-cache
    state: absent
    force: true
    reason: decommissioned in CHG0001234
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
  description: Id of the CI.
  returned: always
  type: str
  sample: ci-3f9a0c5d1e2b4a67b8c9
created:
  description: Whether the CI was (or would be) created.
  returned: always
  type: bool
changes:
  description: "Attribute changes, C({attr: {from, to}})."
  returned: always
  type: dict
identities:
  description: "The CI's identities before and after, C({from, to}), when they changed (or would)."
  returned: when identities changed
  type: dict
relationships_added:
  description: Relationships added (or that would be), C(type), C(target), C(target_name).
  returned: always
  type: list
  elements: dict
relationships_removed:
  description: Relationships removed (or that would be).
  returned: always
  type: list
  elements: dict
ci:
  description: The CI after the task (predicted in check mode); null after O(state=absent).
  returned: always
  type: dict
  contains:
    ci_id:
      description: Id.
      type: str
    name:
      description: Name.
      type: str
    class:
      description: Class.
      type: str
    status:
      description: Status.
      type: str
    attributes:
      description: Every attribute.
      type: dict
    relationships:
      description: "Relationships C({source, type, target, source_name, target_name}) in both directions."
      type: list
      elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb import (
    CONFIGURATION_ITEM_REQUIRED_ONE_OF,
    CONFIGURATION_ITEM_SPEC,
    configuration_item,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CONFIGURATION_ITEM_SPEC, required_one_of=CONFIGURATION_ITEM_REQUIRED_ONE_OF,
                           supports_check_mode=True)
    run_module(module, configuration_item)


if __name__ == "__main__":
    main()
