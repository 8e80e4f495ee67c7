#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: servicenow_sync_info
short_description: What waits in the ledger's outbox for ServiceNow, and the last error
version_added: 0.2.0
description:
  - Shows the ServiceNow outbox of the system of record without sending anything to ServiceNow (the
    cursor, how many entries wait and since when, the last error and the time a 429 asked to wait
    until, and the entries ServiceNow refused, set aside, with their reasons).
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
  - changeops.itsm.servicenow
attributes:
  check_mode:
    description: Reads only; runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
seealso:
  - module: changeops.itsm.servicenow_sync
"""

EXAMPLES = r"""
- name: How far behind is ServiceNow?
  changeops.itsm.servicenow_sync_info:
  register: outbox

- name: Warn when it lags more than an hour
  ansible.builtin.debug:
    msg: "ServiceNow is {{ outbox.servicenow.lag_seconds }} s behind: {{ outbox.servicenow.last_error }}"
  when: (outbox.servicenow.lag_seconds or 0) > 3600
"""

RETURN = r"""
servicenow:
  description: The outbox of the configured instance.
  returned: always
  type: dict
  contains:
    target:
      description: The outbox's name (one per instance).
      type: str
      sample: servicenow:example.service-now.com
    cursor_seq:
      description: Ledger entries up to this sequence number have been delivered (or set aside).
      type: int
    head_seq:
      description: The ledger's newest sequence number.
      type: int
    pending:
      description: Entries that wait.
      type: int
    oldest_pending:
      description: The oldest waiting entry (seq, kind, subject, at), or null.
      type: dict
    lag_seconds:
      description: Age of the oldest waiting entry, or null.
      type: float
    delivered:
      description: Entries delivered since the outbox began.
      type: int
    last_success_at:
      description: When the cursor last moved.
      type: str
    last_error:
      description: Why the last delivery stopped (no secret is ever part of it), or null.
      type: str
    retry_after:
      description: The time a 429 asked to wait until, or null.
      type: str
    draining:
      description: Whether a delivery is running now.
      type: bool
    set_aside:
      description: Entries ServiceNow refused, with the reason (failed), or queued again (retry).
      type: list
      elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.operations import (
    SERVICENOW_SYNC_INFO_SPEC,
    servicenow_sync_info,
)


def main():
    module = AnsibleModule(argument_spec=SERVICENOW_SYNC_INFO_SPEC, supports_check_mode=True)
    run_module(module, servicenow_sync_info)


if __name__ == "__main__":
    main()
