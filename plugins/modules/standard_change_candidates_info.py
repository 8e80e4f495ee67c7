#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: standard_change_candidates_info
short_description: Standard change templates earned from the record, and templates whose changes started failing
version_added: 0.2.0
description:
  - Groups the recorded normal changes (plays a change gate authorised under an approved change request) of
    O(window) by signature - playbook, roles, modules, protected areas touched, target environments and CI
    classes, as the gate recorded them - and proposes a standard change template for each group that succeeded
    at least O(min_successes) times with no failure, no remediation and no incident linked
    (M(changeops.itsm.change_link)), and that touches no protected area (no standard template can cover one).
  - Each proposal is the tightest template that covers every observed run (the playbook by name, exactly its
    roles, only the modules, files and CI classes seen, the environments seen, at most the largest number of
    hosts seen), as policy YAML, with its evidence (the change events, their change requests and reviews) and a
    check that it covers each of them.
  - It proposes only. Nothing is ever pre-authorised automatically - a CAB member reviews a proposal and
    publishes it (RV(candidates[].proposed_policy), the policy in force with the template added) with
    M(changeops.itsm.change_policy), under the publishing rules of the policy in force.
  - The reverse too - RV(failing_templates) lists the standard templates of the policy in force at least
    O(failure_threshold) of whose changes in O(window) failed, were remediated or had an incident linked.
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Reads only; the same result in check mode.
    support: full
  diff_mode:
    description: Reads only, so there is nothing to diff.
    support: none
options:
  window:
    description: How far back to look (V(90d), V(12w), V(720h)).
    type: str
    default: 90d
  min_successes:
    description: Successful normal changes a signature needs before a template is proposed for it.
    type: int
    default: 5
  environment:
    description: Only signatures that target one of these environments.
    type: list
    elements: str
  failure_threshold:
    description: Failed changes that put a standard template on the review list.
    type: int
    default: 1
seealso:
  - module: changeops.itsm.change_policy
  - module: changeops.itsm.change_link
"""

EXAMPLES = r"""
- name: What has earned pre-authorisation in the last quarter?
  changeops.itsm.standard_change_candidates_info:
    window: 90d
    min_successes: 10
  register: earned

- name: Write the first proposal for the CAB to review
  ansible.builtin.copy:
    content: "{{ earned.candidates[0].proposed_policy }}"
    dest: policies/proposed.yml
    mode: "0644"
  when: earned.candidates | length > 0

# after the CAB approved it (a recorded change: publishing needs the rights the policy in force gives)
- name: Publish it
  changeops.itsm.change_policy:
    src: policies/proposed.yml
    comment: "CAB 2026-12-01: earned standard change for the web tier"
"""

RETURN = r"""
candidates:
  description: Signatures that earned a standard template, most successes first.
  returned: always
  type: list
  elements: dict
  contains:
    signature:
      description: C(playbook_name), C(roles), C(modules), C(protected_areas), C(environments), C(ci_classes).
      type: dict
    successes:
      description: Successful changes with the signature in the window.
      type: int
    template:
      description: The proposed standard change template (see C(docs/policy-schema.md)).
      type: dict
    template_yaml:
      description: The template as policy YAML (a C(templates) list of one).
      type: str
    proposed_policy:
      description: The policy in force with the template added, ready to review and publish.
      type: str
    checks:
      description: Reasons the proposed template would not cover an observed run (empty when it covers them all).
      type: list
      elements: str
    already_covered_by:
      description: A template of the policy in force that already covers the latest run.
      type: str
      returned: when one does
    evidence:
      description: The change events (C(run_id), C(started_at), C(status), C(user), C(change_request), C(reviews)).
      type: list
      elements: dict
not_eligible:
  description: Signatures that did not earn a template, each with C(not_eligible) (why) and its evidence.
  returned: always
  type: list
  elements: dict
failing_templates:
  description:
    - Standard templates whose changes started failing - C(template), C(changes), C(failed), C(failure_rate),
      C(first_failure_at), C(failures) and a C(recommendation).
  returned: always
  type: list
  elements: dict
since:
  description: Start of the window.
  returned: always
  type: str
policy:
  description: The policy in force the proposals extend.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.candidates import (
    STANDARD_CHANGE_CANDIDATES_INFO_SPEC,
    candidates_info,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=STANDARD_CHANGE_CANDIDATES_INFO_SPEC, supports_check_mode=True)
    run_module(module, candidates_info)


if __name__ == "__main__":
    main()
