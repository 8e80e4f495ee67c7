#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: servicenow_sync
short_description: Deliver the ledger's outbox to ServiceNow now, and report the lag
version_added: 0.2.0
description:
  - ServiceNow is fed from the ledger as an outbox, in ledger order, from a cursor kept in the system
    of record. The P(changeops.itsm.change_recorder#callback) delivers it in the background while a run
    goes on and at its end (waiting at most O(instance.sync_timeout) seconds); this module delivers
    whatever is left, on demand (after an outage, a 429 storm, or on a schedule).
  - CIs go through IRE (many per request), runs authorised by a ServiceNow CHG become work notes, a JSON
    attachment, actual start and end and, if configured, the CHG's move to Review or Closed;
    unauthorised runs become a CHG flagged unauthorised or an incident; checklist evidence is attached
    to the CHG and the CI. See U(https://github.com/changeops/changeops.itsm/blob/main/docs/servicenow.md).
  - Each entry is delivered once, whatever was interrupted where. An entry ServiceNow refuses for its
    content (an IRE C(MULTI_MATCH), a transition its state model refuses) is set aside with the reason
    and the others go on; O(retry_failed) tries set-aside entries again, O(skip_failed) gives them up.
  - Waits for a delivery another process is running (it delivers the same entries).
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
  - changeops.itsm.servicenow
attributes:
  check_mode:
    description: Reports how many entries would be delivered, and sends nothing.
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
options:
  timeout:
    description: Most seconds this delivery may take (including waiting for 429s within O(instance.rate_limit_wait)).
    type: float
    default: 300
  retry_failed:
    description: Try the set-aside entries again first (after fixing what ServiceNow refused them for).
    type: bool
    default: false
  skip_failed:
    description: Give up the set-aside entries (they stay listed as skipped in M(changeops.itsm.servicenow_sync_info)).
    type: bool
    default: false
  force:
    description: Send even before the time a 429 asked to wait until.
    type: bool
    default: false
  max_entries:
    description: Deliver at most this many entries.
    type: int
  fail_on_set_aside:
    description: Fail when this delivery set entries aside (the task still delivers everything else).
    type: bool
    default: true
notes:
  - The task fails when the delivery stopped early (ServiceNow unreachable, credentials or roles refused,
    rate limited beyond the budget), with the cause; the entries stay in the outbox. That is the only
    place an undeliverable ServiceNow fails anything; playbooks never wait for it.
seealso:
  - module: changeops.itsm.servicenow_sync_info
"""

EXAMPLES = r"""
- name: Deliver everything that waits for ServiceNow
  changeops.itsm.servicenow_sync:
    timeout: 600
  register: sync

- name: After merging the duplicate CIs that IRE reported, try the refused entries again
  changeops.itsm.servicenow_sync:
    retry_failed: true
    instance:
      host: https://example.service-now.com
      client_id: "{{ sn_client_id }}"
      client_secret: "{{ sn_client_secret }}"
      grant_type: client_credentials
"""

RETURN = r"""
delivered:
  description: Entries delivered by this task.
  returned: always
  type: int
  sample: 212
pending:
  description: Entries still waiting after this task.
  returned: always
  type: int
  sample: 0
lag_seconds:
  description: Age in seconds of the oldest entry still waiting (null when none waits).
  returned: always
  type: float
  sample: null
set_aside:
  description: Entries ServiceNow refused during this delivery, with the reason (host and identifier rule for CIs).
  returned: always
  type: list
  elements: dict
  sample:
    - seq: 1204
      kind: ci.created
      subject: ci-3f9a0c5d1e2b4a6789ab
      error: >-
        host web07 (CI ci-3f9a..., class server): ServiceNow IRE found several CIs matching identifier
        rule 'Hardware Rule' (searched cmdb_ci_hardware on name)...
requests:
  description: HTTP requests sent (retries and token requests included).
  returned: always
  type: int
  sample: 9
stopped:
  description: Why the delivery stopped before the end of the outbox (null when it reached it).
  returned: always
  type: str
  sample: null
status:
  description: The outbox after this task, as M(changeops.itsm.servicenow_sync_info) returns it.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.operations import (
    SERVICENOW_SYNC_MUTUALLY_EXCLUSIVE,
    SERVICENOW_SYNC_SPEC,
    servicenow_sync,
)


def main():
    module = AnsibleModule(argument_spec=SERVICENOW_SYNC_SPEC, mutually_exclusive=SERVICENOW_SYNC_MUTUALLY_EXCLUSIVE,
                           supports_check_mode=True)
    run_module(module, servicenow_sync)


if __name__ == "__main__":
    main()
