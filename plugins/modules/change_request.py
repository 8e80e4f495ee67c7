#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: change_request
short_description: Create, update, approve and move change requests through their states
version_added: 0.1.0
description:
  - Manages change requests in the system of record (the local ledger or a shared database).
  - Creates a request (its number, such as V(CHG0000042), is allocated on creation), updates its
    fields, records approvals and rejections, and moves it through the change states
    V(new) -> V(assess) -> V(authorise) -> V(scheduled) -> V(implement) -> V(review) -> V(closed),
    or to V(cancelled) from any open state before review.
  - Transitions are validated one step at a time; no jumping from V(new) to V(closed).
    Standard changes are pre-authorised and may go V(new) -> V(scheduled); emergency changes may
    skip assessment (V(new) -> V(authorise)); V(assess), V(authorise) and V(scheduled) may go back
    to V(new) for rework. A normal or emergency change cannot be V(scheduled) before it is approved,
    and nothing is V(closed) without O(close_code).
  - An approval stands for what was approved. Changing O(affected_cis), O(planned_start),
    O(planned_end), O(type) or O(template) of an approved request, or sending it back to V(new),
    withdraws it - C(approval) goes back to V(requested) (V(not requested) in V(new), V(pre-approved)
    for a standard change) and the earlier decisions move to C(superseded_approvals) - so it must be
    approved again before the change gate lets a play run under it.
  - Closed and cancelled requests can no longer be edited.
  - Every change is a C(change_request.*) ledger entry (C(created), C(updated), C(approved),
    C(rejected), C(transitioned), C(closed)) carrying the full new record. A task that asks for
    what is already stored appends nothing and reports C(changed=false).
  - The P(changeops.itsm.change_gate#module) allows a play under a normal change only when the
    request is approved, V(scheduled) or V(implement), inside its planned window and lists every
    targeted host as an affected CI.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Predicts the record without writing; the number of a request to be created is not allocated (RV(number) is null).
    support: full
  diff_mode:
    description: Returns the record before and after.
    support: full
options:
  number:
    description:
      - Number of an existing change request to update, for example V(CHG0000042).
      - Omit it (and O(correlation_id)) to create a new request.
    type: str
  correlation_id:
    description:
      - Your own identifier for the request (a pipeline run, a ticket in another tool).
      - Without O(number), the request carrying this correlation id is updated, or created when none
        does; this makes creation idempotent.
    type: str
  state:
    description:
      - The change state the request should be in. One step from the current state (see above).
      - The American spellings V(authorize) and V(canceled) are accepted and stored as
        V(authorise) and V(cancelled).
    type: str
    choices: [new, assess, authorise, scheduled, implement, review, closed, cancelled, authorize, canceled]
  type:
    description:
      - Change model. Defaults to V(normal) on creation; can change only while the request is V(new).
      - A V(standard) request is pre-approved (V(pre-approved)) through its O(template), which it must name;
        changing the type recomputes the approval.
    type: str
    choices: [standard, normal, emergency]
  short_description:
    description: One-line summary; required to create a request.
    type: str
  description:
    description: What will be done and how.
    type: str
  justification:
    description: Why the change is needed (required by most CABs for normal and emergency changes).
    type: str
  risk:
    description: Assessed risk.
    type: str
    choices: [low, moderate, high, very_high]
  template:
    description:
      - Name of the change policy's standard change template this request instantiates; required for
        O(type=standard).
      - The change gate allows a play under a standard request only when this template covers the play.
    type: str
  requested_by:
    description: Who asked for the change.
    type: str
  assignment_group:
    description: Team that implements the change.
    type: str
  planned_start:
    description:
      - Start of the planned implementation window, ISO 8601 (V(2026-11-23T22:00)).
      - Without an offset, the time is read in O(timezone). Stored in UTC.
    type: str
  planned_end:
    description: End of the planned window; same format as O(planned_start); must be after it.
    type: str
  timezone:
    description:
      - IANA time zone of the planned window (V(Europe/Paris)), used to read times without an offset
        and to show the window to people. Defaults to V(UTC) on creation.
    type: str
  affected_cis:
    description:
      - Names of the configuration items the change touches (for hosts, the inventory host name).
      - The full list; it replaces the stored one. The change gate requires every targeted host here.
    type: list
    elements: str
  validate_cis:
    description:
      - Refuse O(affected_cis) names that are not configuration items in the CMDB.
      - Set to V(false) when the CMDB is not populated (yet).
    type: bool
    default: true
  approval:
    description:
      - Record an approval decision. The request's C(approval) becomes the decision.
      - The approver is the operating-system account running the task (an authenticated identity, recorded as
        C(approver) and C(identity) C({name, source}) on the decision, with the policy version it passed), never a
        name typed in.
      - The change policy in force decides who may approve or reject (separation of duties; see
        C(docs/policy-schema.md)) - by default the requester cannot approve their own request and nothing is
        approved or rejected while the request is V(new); the policy may name approver groups per change type or
        risk. A refusal fails the task and names each rule.
      - Recording the same decision by the same approver again changes nothing.
    type: dict
    suboptions:
      approver:
        description:
          - If set, it must be the name of the account running the task; any other name is refused.
        type: str
      decision:
        description: The decision.
        type: str
        choices: [approved, rejected]
        default: approved
      comment:
        description: Why.
        type: str
      at:
        description: When the decision was taken (ISO 8601); defaults to now. A stated time may not lie in the future nor before the request was opened.
        type: str
  close_code:
    description: Outcome, required to close.
    type: str
    choices: [successful, successful_issues, unsuccessful]
  close_notes:
    description: Closing notes.
    type: str
  actual_start:
    description: When work actually started (set automatically on entering V(implement)).
    type: str
  actual_end:
    description: When work actually ended (set automatically on entering V(review) or V(closed)).
    type: str
notes:
  - Numbers come from a counter in the system of record; a failed write can leave a gap in the
    numbering, never a duplicate.
seealso:
  - module: changeops.itsm.change_request_info
  - module: changeops.itsm.change_gate
"""

EXAMPLES = r"""
- name: Raise a normal change for tonight's database upgrade
  changeops.itsm.change_request:
    correlation_id: db-upgrade-2026-11-23
    type: normal
    short_description: Upgrade PostgreSQL 15 to 16 on db01/db02
    justification: Version 15 leaves support next quarter
    risk: moderate
    planned_start: "2026-11-23T22:00"
    planned_end: "2026-11-24T01:00"
    timezone: Europe/Paris
    affected_cis: [db01, db02]
  register: chg

- name: Assess it
  changeops.itsm.change_request:
    number: "{{ chg.number }}"
    state: assess

- name: Send it to the CAB
  changeops.itsm.change_request:
    number: "{{ chg.number }}"
    state: authorise

- name: CAB approval (run by a CAB member, the approver is the account running it)
  changeops.itsm.change_request:
    number: "{{ chg.number }}"
    approval:
      comment: Rollback plan reviewed

- name: Schedule it
  changeops.itsm.change_request:
    number: "{{ chg.number }}"
    state: scheduled

- name: Close it after the post-implementation review
  changeops.itsm.change_request:
    number: "{{ chg.number }}"
    state: closed
    close_code: successful
    close_notes: Upgrade done, replication verified
"""

RETURN = r"""
number:
  description: Number of the change request; null for a request that check mode would create.
  returned: always
  type: str
  sample: CHG0000042
change_request:
  description: The change request as stored after the task (or as it would be, in check mode).
  returned: always
  type: dict
  contains:
    number:
      description: Change request number.
      type: str
    state:
      description: Current state.
      type: str
    type:
      description: V(standard), V(normal) or V(emergency).
      type: str
    approval:
      description: V(not requested), V(requested), V(approved), V(rejected) or V(pre-approved) (standard).
      type: str
    approvals:
      description:
        - The decisions that count, oldest first, each with C(approver), C(identity) (C({name, source})), C(decision),
          C(at), C(comment) and C(policy) (the policy version whose rules it passed).
      type: list
      elements: dict
    superseded_approvals:
      description:
        - Decisions withdrawn because the scope or window changed or the request went back to V(new),
          each with C(superseded_at) and C(superseded_because).
      type: list
      elements: dict
      returned: when an approval was withdrawn
    template:
      description: Standard change template of a standard request.
      type: str
    planned_start:
      description: Planned window start, ISO 8601 UTC.
      type: str
    planned_end:
      description: Planned window end, ISO 8601 UTC.
      type: str
    timezone:
      description: Time zone the window is shown in.
      type: str
    affected_cis:
      description: Names of the affected configuration items.
      type: list
      elements: str
  sample:
    number: CHG0000042
    state: scheduled
    type: normal
    approval: approved
    planned_start: "2026-11-23T21:00:00.000000Z"
    planned_end: "2026-11-24T00:00:00.000000Z"
    timezone: Europe/Paris
    affected_cis: [db01, db02]
next_states:
  description: States the request may move to next.
  returned: always
  type: list
  elements: str
  sample: [implement, new, cancelled]
entries:
  description: Kinds of the ledger entries appended by this task.
  returned: when changed and not in check mode
  type: list
  elements: str
  sample: [change_request.approved]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import (
    CHANGE_REQUEST_SPEC,
    ensure_change_request,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHANGE_REQUEST_SPEC, supports_check_mode=True)
    run_module(module, ensure_change_request)


if __name__ == "__main__":
    main()
