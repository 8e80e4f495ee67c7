#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: change_review
short_description: Record the post-implementation review of a recorded change
version_added: 0.1.0
description:
  - Signs off a change event (a playbook run the recorder captured) after it was implemented, as
    V(accepted), or V(follow-up) when something needs doing. The sign-off is itself an entry in the
    tamper-evident ledger, with the reviewer, the outcome, a comment and the time.
  - The change register shows the latest review of each change and lists the changes still
    awaiting one, unauthorised and emergency changes first.
  - The change policy in force may say who may sign off (C(reviews.reviewers)) and whether the account
    that ran the change may sign it off (C(reviews.allow_self_review)); a refusal names the rule.
  - Idempotent. Recording the same reviewer, outcome and comment as the latest review changes
    nothing. A different outcome or comment adds a new review; earlier ones stay in the ledger.
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Reports the review that would be recorded without appending it to the ledger.
    support: full
  diff_mode:
    description: Shows the latest review before and the review after.
    support: full
options:
  run_id:
    description: The change event to sign off, as shown on its page in the register.
    type: str
    required: true
  outcome:
    description:
      - V(accepted) when the change did what it should; V(follow-up) when something needs doing
        (say what in O(comment), which is then required).
    type: str
    required: true
    choices: [accepted, follow-up]
  comment:
    description: What the reviewer checked or what needs following up.
    type: str
    default: ""
  reviewer:
    description:
      - Who reviews is the operating-system account running the task (an authenticated identity); it is
        recorded as the review's C(reviewer), with C(reviewer_identity) C({name, source}), never as a typed name.
      - If set, it must be that account's name; any other name is refused.
    type: str
seealso:
  - module: changeops.itsm.change_register
  - module: changeops.itsm.change_event_info
"""

EXAMPLES = r"""
- name: Accept an emergency change after the CAB looked at it
  changeops.itsm.change_review:
    run_id: 6f1c0c3e2b7f4bd0a1c6f0b3f7a2d9e1
    outcome: accepted
    comment: Emergency patch matches INC0012345; verified on all hosts.

- name: Ask for follow-up
  changeops.itsm.change_review:
    run_id: "{{ run_id }}"
    outcome: follow-up
    comment: Unauthorised change to web01; raise a retrospective change request.
"""

RETURN = r"""
run_id:
  description: The change event reviewed.
  returned: always
  type: str
review:
  description: The review now in force (the new one, or the unchanged latest one).
  returned: always
  type: dict
  sample:
    reviewer: dana
    outcome: accepted
    comment: Verified on all hosts.
    reviewed_at: "2026-11-24T09:12:03.114512Z"
entry_seq:
  description: Ledger position of the new review entry.
  returned: when a review was recorded (not in check mode)
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.change_register import CHANGE_REVIEW_SPEC, record_review
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHANGE_REVIEW_SPEC, supports_check_mode=True)
    run_module(module, record_review)


if __name__ == "__main__":
    main()
