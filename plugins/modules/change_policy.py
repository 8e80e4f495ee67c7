#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: change_policy
short_description: Publish a version of the change policy into the system of record
version_added: 0.2.0
description:
  - Publishes the change policy file O(src) as the next version of the policy in force. The
    P(changeops.itsm.change_gate#module) then decides every play under it, whatever policy file the
    person running a play points at; a runner's file is used only when it is the published version.
  - A version is a C(policy.published) ledger entry holding the file's text and its sha256, the previous
    version, the publisher (the operating-system account that runs the module, never a name typed in),
    the time, what changed (templates added, removed or widened, protected areas added, removed or
    weakened, freezes, rules) and what authorised the publication.
  - Publishing is itself a change that needs authorisation. The rules of the policy in force decide
    (C(publishing) in the policy - who may publish, whether an approved change request is needed;
    for the very first version, the rules of the version being published). A refusal names each rule.
  - The file is validated completely first; an invalid policy is never published.
  - Idempotent. Publishing the file that is already the version in force changes nothing.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Validates the file, checks the publisher may publish it, and reports the version and summary it would publish.
    support: full
  diff_mode:
    description: Shows a summary of what the new version changes, then the text of the version in force and of the file.
    support: full
options:
  src:
    description:
      - The change policy file (YAML; see C(docs/policy-schema.md)). A relative path is looked up next to the playbook first.
    type: path
    required: true
  change_request:
    description:
      - Number of the approved change request this publication implements, for example V(CHG0000042).
      - Required when the policy in force sets C(publishing.require_change_request); the request must be approved,
        V(scheduled) or V(implement), inside its planned window, and the publisher must not be its only approver.
    type: str
  comment:
    description: Why this version is published (recorded with it, shown by P(changeops.itsm.change_policy_info#module)).
    type: str
notes:
  - Until a policy is published, the gate decides under the configured policy file (or the built-in default) and
    marks its decisions C(policy.state=unpublished).
seealso:
  - module: changeops.itsm.change_policy_info
  - module: changeops.itsm.change_gate
"""

EXAMPLES = r"""
- name: Publish the change policy reviewed by the CAB
  changeops.itsm.change_policy:
    src: policies/change-policy.yml
    change_request: CHG0000042
    comment: "CAB 2026-11-23: standard change 'patching' extended to staging"
  register: published

- name: What would the new version change? (check mode and diff)
  changeops.itsm.change_policy:
    src: policies/change-policy.yml
  check_mode: true
  diff: true
"""

RETURN = r"""
version:
  description: The version published (or, in check mode, that would be), or the version in force when nothing changed.
  returned: always
  type: int
  sample: 3
sha256:
  description: sha256 of the policy file's bytes.
  returned: always
  type: str
summary:
  description:
    - What the new version changes against the version in force.
    - C(templates) (C(added), C(removed), C(widened), C(changed) with each change), C(protected_areas) (C(added),
      C(removed), C(weakened), C(changed)), C(freezes) (C(added), C(removed), C(changed)), C(rules) (changed rules of
      emergencies, normal changes, approvals, publishing and reviews) and C(first_version).
  returned: when a version is (or would be) published
  type: dict
policy:
  description: The published version as recorded (without its text), with C(publisher), C(published_at), C(summary),
    C(authorised_by), C(previous_version).
  returned: when not in check mode
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.policy_store import (
    CHANGE_POLICY_SPEC,
    publish_policy,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHANGE_POLICY_SPEC, supports_check_mode=True)
    run_module(module, publish_policy)


if __name__ == "__main__":
    main()
