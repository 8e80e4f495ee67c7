#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: servicenow_change
short_description: Raise a standard change in ServiceNow from a standard change template
version_added: 0.2.0
description:
  - Creates a standard change request (CHG) in ServiceNow from a template of its Standard Change
    Catalog, through the Change Management API (C(POST /api/sn_chg_rest/change/standard/{template})),
    so the template's fields and ServiceNow's business rules apply as when a person raises it from
    the catalog (a Table API insert does not apply them, servicenow.itsm issue 310).
  - The hosts' configuration items become its affected CIs, and the CHG is walked forward to
    O(state) along the standard change's state model, the state read back after every step.
  - Name the CHG to M(changeops.itsm.change_gate) (O(changeops.itsm.change_gate#module:change_request))
    and it authorises the play like any CHG, provided a template of the change policy names the same
    ServiceNow template (C(servicenow_template)) and covers the play; the run is then recorded on the
    CHG (work notes, attachment, actual times, closure).
  - Idempotent - the CHG is found again by O(correlation_id) (by default one per recorded run and
    template); a second task adds only missing affected CIs and never moves the CHG backwards.
  - A normal or emergency change is raised and approved in ServiceNow by its own process; the gate
    reads it live. Without this module, the gate can also raise the standard change itself (a policy
    template with C(servicenow_template) and no O(changeops.itsm.change_gate#module:change_request)).
  - Runs on the controller; no C(delegate_to) is needed. See
    U(https://github.com/changeops/changeops.itsm/blob/main/docs/servicenow.md#standard-changes).
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
  - changeops.itsm.servicenow
attributes:
  check_mode:
    description: Reads ServiceNow only (the template, an existing CHG, its affected CIs) and reports what would be done.
    support: full
  diff_mode:
    description: Shows the CHG's number, state and affected CIs before and after.
    support: full
options:
  template:
    description:
      - The standard change template (C(std_change_record_producer)), by name or sys_id. An unknown,
        inactive or ambiguous name fails the task naming it.
    type: str
    required: true
  state:
    description:
      - The state the CHG should at least be in. V(scheduled) and V(implement) are the ones the gate
        authorises; review and closure follow the run (the recorder's C(close_change_requests)).
      - A CHG already further along (review, closed, cancelled) is left as it is, with a warning.
    type: str
    choices: [new, scheduled, implement]
    default: scheduled
  hosts:
    description:
      - Hosts whose configuration items become the CHG's affected CIs. Each must already be in
        ServiceNow's CMDB (registered by M(changeops.itsm.register_host) and delivered; the task
        fails naming a host that is not).
    type: list
    elements: str
    default: []
  correlation_id:
    description:
      - Finds the CHG again, so the task creates one CHG however often it runs (ServiceNow's
        C(correlation_id), at most 100 characters).
      - Default - C(changeops-<run id>-std-<template>), one per run recorded by the
        P(changeops.itsm.change_recorder#callback) callback; required when the run is not recorded.
    type: str
  short_description:
    description: The CHG's short description (default from the template name). Used when the CHG is created.
    type: str
  planned_start:
    description:
      - Start of the planned window, an ISO 8601 time with a time zone (default now). Used when the CHG is created.
    type: str
  planned_duration:
    description: Length of the planned window in minutes. Used when the CHG is created.
    type: int
    default: 240
seealso:
  - module: changeops.itsm.change_gate
  - module: changeops.itsm.servicenow_sync
"""

EXAMPLES = r"""
# In pre_tasks of a play tagged for the policy template that names the ServiceNow template (tags: [patching])
- name: Raise the standard change from ServiceNow's catalog
  changeops.itsm.servicenow_change:
    template: Patch Linux servers
    hosts: "{{ ansible_play_hosts }}"
    state: implement
  run_once: true
  register: chg
  tags: [always]

- name: Change gate (reads the CHG live from ServiceNow)
  changeops.itsm.change_gate:
    change_request: "{{ chg.number }}"
  tags: [always]

- name: A standard change named by a schedule of its own (one per month, however often the play runs)
  changeops.itsm.servicenow_change:
    template: a1b2c3d4e5f60718293a4b5c6d7e8f90
    correlation_id: "tls-rotation-{{ now(utc=true, fmt='%Y-%m') }}"
    planned_start: "2026-12-12T22:00:00Z"
    planned_duration: 120
    instance:
      host: https://example.service-now.com
      client_id: "{{ sn_client_id }}"
      client_secret: "{{ sn_client_secret }}"
      grant_type: client_credentials
"""

RETURN = r"""
number:
  description: The CHG's number (null in check mode when it would be created).
  returned: always
  type: str
  sample: CHG0030012
sys_id:
  description: The CHG's sys_id (null in check mode when it would be created).
  returned: always
  type: str
  sample: 5f1c0e2a9b8d4c7e8f6a5b4c3d2e1f00
state:
  description: The CHG's state after the task (in check mode, the state it would be in).
  returned: always
  type: str
  sample: scheduled
created:
  description: Whether the CHG was (in check mode, would be) created by this task.
  returned: always
  type: bool
cis_added:
  description: Hosts whose CIs this task made affected CIs (in check mode, would make).
  returned: always
  type: list
  elements: str
  sample: [web01, web02]
change_request:
  description: The CHG - number, sys_id, state, type, template, template_sys_id, correlation_id, instance.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.standard_change import (
    SERVICENOW_CHANGE_SPEC,
    servicenow_change,
)


def main():
    module = AnsibleModule(argument_spec=SERVICENOW_CHANGE_SPEC, supports_check_mode=True)
    run_module(module, servicenow_change)


if __name__ == "__main__":
    main()
