#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: change_policy_info
short_description: Read the published change policy in force and its history
version_added: 0.2.0
description:
  - Returns the change policy version in force (the newest published one), the history of published versions,
    newest first, and one version on request, from the system of record.
  - Each version says who published it (an authenticated identity), when, its sha256, the previous version,
    what it changed and what authorised the publication.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Reads only; the same information in check mode.
    support: full
  diff_mode:
    description: Reads only, so there is nothing to diff.
    support: none
options:
  version:
    description: Also return this version as RV(policy).
    type: int
  include_text:
    description: Include the policy file's text and validated document in RV(active) and RV(policy).
    type: bool
    default: false
  limit:
    description: At most this many versions in RV(history).
    type: int
    default: 20
seealso:
  - module: changeops.itsm.change_policy
"""

EXAMPLES = r"""
- name: Which change policy is in force?
  changeops.itsm.change_policy_info:
  register: policy

- name: Show it
  ansible.builtin.debug:
    msg: "version {{ policy.active.version }} by {{ policy.active.publisher.name }}: {{ policy.active.summary }}"
  when: policy.state == 'published'

- name: The text of version 2
  changeops.itsm.change_policy_info:
    version: 2
    include_text: true
  register: v2
"""

RETURN = r"""
state:
  description: V(published) when a policy is published, else V(unpublished) (the gate uses the configured file).
  returned: always
  type: str
active:
  description: The version in force (null when none is published).
  returned: always
  type: dict
  contains:
    version:
      description: Version number, from 1.
      type: int
    sha256:
      description: sha256 of the policy file's bytes.
      type: str
    previous_version:
      description: The version it replaced (null for the first).
      type: int
    published_at:
      description: When (ISO 8601 UTC).
      type: str
    publisher:
      description: Who published it, C({name, source}) (source V(os) is the account that ran the module).
      type: dict
    summary:
      description: What it changed (see RV(changeops.itsm.change_policy#module:summary)).
      type: dict
    authorised_by:
      description: The rules that authorised the publication and the change request, if any.
      type: dict
    comment:
      description: The publisher's comment.
      type: str
history:
  description: Published versions, newest first, as RV(active) without the text.
  returned: always
  type: list
  elements: dict
policy:
  description: The version asked for with O(version).
  returned: when O(version) is set
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.policy_store import (
    CHANGE_POLICY_INFO_SPEC,
    query_policies,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHANGE_POLICY_INFO_SPEC, supports_check_mode=True)
    run_module(module, query_policies)


if __name__ == "__main__":
    main()
