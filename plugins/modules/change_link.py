#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: change_link
short_description: Link an incident to a recorded change, or declare a change the remediation of another
version_added: 0.2.0
description:
  - Records a C(run.linked) ledger entry on a change event, with the identity that made it (the account running
    the module on the controller).
  - O(incident) links an incident the change caused (or is suspected of causing).
  - O(remediates) declares this run (O(run_id), by default the run the task is part of) the remediation of an
    earlier change - a rollback, a hotfix.
  - M(changeops.itsm.change_metrics_info) counts a change followed by either within its failure window as a
    failed change, and M(changeops.itsm.standard_change_candidates_info) never proposes a standard template from
    a change that has one.
  - The same link twice is recorded once.
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Says whether the link would be recorded, and records nothing.
    support: full
  diff_mode:
    description: Shows the link that would be recorded.
    support: full
options:
  run_id:
    description:
      - The change event the O(incident) is linked to, or the run that remediates with O(remediates).
      - Default the current run (E(CHANGEOPS_RUN_ID), set by the change recorder).
    type: str
  incident:
    description: Number of the incident the change caused, for example V(INC0012345).
    type: str
  remediates:
    description: Run id of the earlier change that this run (O(run_id)) remediates.
    type: str
  at:
    description: When the incident started (ISO 8601); default now.
    type: str
  comment:
    description: Why, in a sentence.
    type: str
seealso:
  - module: changeops.itsm.change_metrics_info
"""

EXAMPLES = r"""
- name: The incident INC0012345 was caused by the change of last night
  changeops.itsm.change_link:
    run_id: 6f1c0c3e2b7f4bd0a1c6f0b3f7a2d9e1
    incident: INC0012345
    at: "2026-11-24T02:10:00Z"

- name: This play rolls back that change
  changeops.itsm.change_link:
    remediates: 6f1c0c3e2b7f4bd0a1c6f0b3f7a2d9e1
    comment: rollback of the connection pool settings
"""

RETURN = r"""
link:
  description: The link, as recorded (or already there).
  returned: always
  type: dict
  sample:
    run_id: 6f1c0c3e2b7f4bd0a1c6f0b3f7a2d9e1
    link: incident
    target: INC0012345
    linked_at: "2026-11-24T02:10:00.000000Z"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.links import CHANGE_LINK_SPEC, change_link
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHANGE_LINK_SPEC, supports_check_mode=True)
    run_module(module, change_link)


if __name__ == "__main__":
    main()
