#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: configuration_item_info
short_description: Query configuration items (CIs), their relationships and change history
version_added: 0.1.0
description:
  - Lists CIs matching every filter given, ordered by name, each with its attributes,
    identities and relationships (both directions, with the names of the other ends).
  - Follows relationships, for example everything that depends on C(db01), directly or
    transitively.
  - With O(include_history=true), returns each CI's ledger history, including the change events
    (playbook runs) that changed the host (C(ci.changed_by_run) entries written by the
    P(changeops.itsm.change_recorder#callback) callback).
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Can run in check mode and return the same information.
    support: full
  diff_mode:
    description: Reads only, so there is nothing to diff.
    support: none
options:
  ci_id:
    description: Only this CI.
    type: str
  name:
    description: Only CIs with one of these names.
    type: list
    elements: str
  ci_class:
    description: Only CIs of one of these classes.
    type: list
    elements: str
    aliases: [class]
  environment:
    description: Only CIs in one of these environments.
    type: list
    elements: str
  status:
    description: Only CIs with one of these statuses.
    type: list
    elements: str
    choices: [planned, operational, maintenance, non_operational, retired]
  service:
    description: Only CIs whose C(services) attribute lists this service.
    type: str
  filter:
    description:
      - A JMESPath expression evaluated on each CI's attributes (plus C(ci_id), C(version),
        C(created_at), C(updated_at), C(last_change_run_id)); CIs for which it is true (not
        null, false, empty or zero) are returned.
      - "For example V(memory_mb < `4096`) or V(contains(tags, 'pci'))."
    type: str
  related_to:
    description: Only CIs related to this CI.
    type: dict
    suboptions:
      ci:
        description: Name or ci_id of the CI to start from.
        type: str
        required: true
      ci_class:
        description: Its class, when several CIs share the name.
        type: str
      types:
        description: Follow only these relationship types (default all).
        type: list
        elements: str
      direction:
        description:
          - V(inbound) returns CIs whose relationships point at O(related_to.ci) (everything that
            depends on, runs on or is a member of it); V(outbound) the CIs it points at (what it
            depends on); V(both) either.
        type: str
        choices: [inbound, outbound, both]
        default: inbound
      transitive:
        description:
          - Keep following relationships (in the same direction and types) from each CI found, breadth-first and
            never visiting a CI twice (cycles are safe); the same walk as the change gate's blast radius.
        type: bool
        default: false
      max_depth:
        description: With O(related_to.transitive=true), follow at most this many levels.
        type: int
  include_history:
    description: Add each CI's ledger history (oldest first) as RV(configuration_items[].history).
    type: bool
    default: false
  history_limit:
    description: At most this many (most recent) history entries per CI.
    type: int
    default: 100
  limit:
    description: At most this many CIs.
    type: int
requirements:
  - jmespath (on the controller)
seealso:
  - module: changeops.itsm.configuration_item
  - module: changeops.itsm.register_host
  - plugin: changeops.itsm.cmdb
    plugin_type: inventory
"""

EXAMPLES = r"""
- name: Production servers of the billing service
  changeops.itsm.configuration_item_info:
    ci_class: [server, virtual_machine]
    environment: [production]
    service: billing
  register: billing_hosts

- name: Everything that depends on db01, directly or not
  changeops.itsm.configuration_item_info:
    related_to:
      ci: db01
      types: [depends_on, runs_on]
      direction: inbound
      transitive: true
  register: impact

- name: Small Debian machines
  changeops.itsm.configuration_item_info:
    filter: "os == 'Debian' && memory_mb < `4096`"

- name: Which changes touched web01
  changeops.itsm.configuration_item_info:
    name: [web01]
    include_history: true
  register: web01
"""

RETURN = r"""
configuration_items:
  description: Matching CIs, ordered by name.
  returned: always
  type: list
  elements: dict
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
    environment:
      description: Environment.
      type: str
    attributes:
      description: Every attribute.
      type: dict
    identities:
      description: Identities the CI holds.
      type: dict
    relationships:
      description: "Relationships C({source, type, target, source_name, target_name}), both directions."
      type: list
      elements: dict
    last_change_run_id:
      description: Run id of the change event that last changed the CI.
      type: str
    history:
      description:
        - Ledger entries about the CI C({seq, entry_id, at, kind, actor, data}), with
          C(change_event) (run id, playbook, status, C(dry_run), start and end, user, authorisation)
          when the entry names a run; null when that run is not in the ledger.
        - C(dry_run) marks a check-mode run, which changed nothing; older ledgers link such runs to
          the hosts they would have changed.
      returned: when O(include_history=true)
      type: list
      elements: dict
  sample:
    - ci_id: ci-3f9a0c5d1e2b4a67b8c9
      name: db01
      class: server
      status: operational
      environment: production
      attributes: {name: db01, class: server, os: Debian, memory_mb: 8192}
      relationships:
        - {source: ci-1a2b3c, type: runs_on, target: ci-3f9a0c5d1e2b4a67b8c9, source_name: billing-db, target_name: db01}
related_to:
  description: The CI O(related_to.ci) resolved to.
  returned: when O(related_to) is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb import (
    CONFIGURATION_ITEM_INFO_SPEC,
    configuration_item_info,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CONFIGURATION_ITEM_INFO_SPEC, supports_check_mode=True)
    run_module(module, configuration_item_info)


if __name__ == "__main__":
    main()
