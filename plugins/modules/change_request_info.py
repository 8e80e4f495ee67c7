#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: change_request_info
short_description: Query change requests
version_added: 0.1.0
description:
  - Lists change requests from the system of record, newest first, by number, state, type or
    affected configuration item.
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
  number:
    description: Return only this change request.
    type: str
  state:
    description: Only requests in one of these states.
    type: list
    elements: str
    choices: [new, assess, authorise, scheduled, implement, review, closed, cancelled, authorize, canceled]
  type:
    description: Only requests of these types.
    type: list
    elements: str
    choices: [standard, normal, emergency]
  ci:
    description: Only requests that list this configuration item (by name) as affected.
    type: str
  limit:
    description: At most this many requests.
    type: int
    default: 50
  collisions:
    description:
      - Also report, for each request with a planned window, what that window meets before the CAB does -
        other approved change requests on its affected CIs or on the CIs that depend on them, occurrences of the
        policy's maintenance windows, runs in progress (when the window includes now), and separately the freezes
        in force during it - each with the action the policy in force would take for the request's type
        (RV(change_requests[].collisions)). See C(docs/change-gate.md) in the collection.
    type: bool
    default: false
seealso:
  - module: changeops.itsm.change_request
"""

EXAMPLES = r"""
- name: Changes scheduled or implementing on web01
  changeops.itsm.change_request_info:
    ci: web01
    state: [scheduled, implement]
  register: open_changes

- name: One request
  changeops.itsm.change_request_info:
    number: CHG0000042
  register: chg

- name: What its planned window collides with, before the CAB meets
  changeops.itsm.change_request_info:
    number: CHG0000042
    collisions: true
  register: chg
"""

RETURN = r"""
change_requests:
  description: Matching change requests, newest first (see RV(changeops.itsm.change_request#module:change_request)).
  returned: always
  type: list
  elements: dict
  contains:
    number:
      description: Change request number.
      type: str
    state:
      description: Current state.
      type: str
    type:
      description: Change model.
      type: str
    approval:
      description: Approval status.
      type: str
    version:
      description: Stored version, incremented on every change.
      type: int
    next_states:
      description: States the request may move to next.
      type: list
      elements: str
    collisions:
      description:
        - With O(collisions=true) - C(window), C(items) (each C(kind), C(reference), C(name), C(owner), C(window),
          C(cis) and the C(action) the policy would take), C(would_deny) and C(warnings) (what the gate would say),
          C(freezes) in force during the window (with C(blocks)), and the C(blast_radius) of its affected CIs.
          Null for a request without a planned window.
      type: dict
      returned: when O(collisions=true)
  sample:
    - number: CHG0000042
      state: scheduled
      type: normal
      approval: approved
      version: 4
      next_states: [implement, new, cancelled]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import (
    CHANGE_REQUEST_INFO_SPEC,
    query_change_requests,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHANGE_REQUEST_INFO_SPEC, supports_check_mode=True)
    run_module(module, query_change_requests)


if __name__ == "__main__":
    main()
