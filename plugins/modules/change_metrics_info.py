#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: change_metrics_info
short_description: DevOps metrics (the four DORA keys) from the recorded changes
version_added: 0.2.0
description:
  - Computes deployment frequency, lead time for changes, change failure rate and time to restore from the
    change events the P(changeops.itsm.change_recorder#callback) callback recorded and the CMDB, over a period,
    per day, week or month, overall or per service, environment or team.
  - The definitions follow the four DORA keys and are returned with the figures (RV(metrics.definitions)); the
    collection's C(docs/metrics.md) explains each one and what the record counts.
  - A B(change) is a recorded run that is not a dry run and changed a managed host, or failed without a gate
    denying it. A B(deployment) is a successful change authorised by a gate (standard, normal or emergency).
  - A change B(failed) when it ended failed or interrupted, or within O(failure_window) an incident was linked
    to it or its remediation declared (M(changeops.itsm.change_link)), or an emergency change touched one of
    its configuration items.
  - B(Lead time) runs from the git commit time of the playbook tree that the recorder saw when the run started
    to the change's start; runs outside a git work tree have none.
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
  since:
    description:
      - Start of the period, an ISO 8601 time or date or a duration back from now (V(30d), V(12w)).
    type: str
    default: 30d
  until:
    description: End of the period (excluded); same formats as O(since). Default now.
    type: str
  bucket:
    description: Length of each point of the trend (UTC days, ISO weeks from Monday, calendar months).
    type: str
    choices: [day, week, month]
    default: week
  group_by:
    description:
      - Also compute the keys per V(service) (the CI C(services) attribute, and application or service CIs a
        change touched), per V(environment), or per V(team) (the CI C(support_group), else C(owner)).
    type: str
    choices: [service, environment, team]
  service:
    description: Only changes of these services.
    type: list
    elements: str
  environment:
    description: Only changes in these environments.
    type: list
    elements: str
  team:
    description: Only changes of CIs of these teams.
    type: list
    elements: str
  failure_window:
    description:
      - How long after a change an incident link, a remediation link or an emergency change of one of its CIs
        still counts it as failed (V(24h), V(90m), V(3d)).
    type: str
    default: 24h
seealso:
  - module: changeops.itsm.change_link
  - module: changeops.itsm.change_event_info
"""

EXAMPLES = r"""
- name: DORA metrics of the last quarter, per week and service
  changeops.itsm.change_metrics_info:
    since: 13w
    bucket: week
    group_by: service
  register: dora

- name: Change failure rate of the billing service
  ansible.builtin.debug:
    msg: "{{ (dora.metrics.groups | selectattr('key', 'equalto', 'billing') | first).overall.change_failure_rate }}"
"""

RETURN = r"""
metrics:
  description: The four keys over the period, per bucket and per group.
  returned: always
  type: dict
  contains:
    since:
      description: Start of the period (ISO 8601 UTC).
      type: str
    until:
      description: End of the period (excluded).
      type: str
    definitions:
      description: How each key is computed, in one sentence each.
      type: dict
    overall:
      description:
        - C(changes), C(deployments), C(deployments_per_day), C(lead_time) (C(count), C(median_hours),
          C(p90_hours)), C(failed_changes), C(change_failure_rate), C(failure_reasons) (count per reason),
          C(time_to_restore) (C(count), C(median_hours), C(unrestored)).
      type: dict
    buckets:
      description: The same figures per bucket, each with its C(start), oldest first.
      type: list
      elements: dict
    groups:
      description: Per O(group_by) value, C(key) with its C(overall) and C(buckets).
      returned: when O(group_by) is set
      type: list
      elements: dict
  sample:
    overall:
      changes: 12
      deployments: 9
      deployments_per_day: 0.6429
      lead_time: {count: 6, median_hours: 3.0, p90_hours: 24.0}
      failed_changes: 5
      change_failure_rate: 0.4167
      time_to_restore: {count: 5, median_hours: 10.083, unrestored: 0}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.metrics import (
    CHANGE_METRICS_INFO_SPEC,
    metrics_info,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHANGE_METRICS_INFO_SPEC, supports_check_mode=True)
    run_module(module, metrics_info)


if __name__ == "__main__":
    main()
