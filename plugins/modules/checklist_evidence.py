#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: checklist_evidence
short_description: Attach checklist evidence (hardening, release readiness) to the change record and the CI
version_added: 0.1.0
description:
  - Records one checklist result for one host as an C(evidence.recorded) ledger entry tied to the
    current run, so it shows on the run's change event
    (M(changeops.itsm.change_event_info) with O(changeops.itsm.change_event_info#module:include_results=true)).
  - When the host has a configuration item, also sets the CI attribute C(compliance.<checklist>) to the
    latest status, score and audit time. The CI is O(ci_id), else the CI named O(ci_name) (any class),
    else the host's own CI, found as the change gate and the change recorder find it - the server,
    virtual machine or container named O(host) (the one M(changeops.itsm.register_host) registered when
    several are), or the one CI of another class with that name when there is no such CI.
  - The same document for the same run, host and checklist is recorded once; repeating the task
    reports no change.
  - In check mode the CI is never changed; its change is only reported (changed, diff). The evidence is
    still attached to the run's change event, which the P(changeops.itsm.change_recorder#callback)
    callback marks C(dry-run), as the record of what the dry run found, just as the recorder records
    the dry run itself. Outside a recorded run (no run id) check mode records nothing.
  - Runs on the controller; no C(delegate_to) is needed. The run id comes from the
    P(changeops.itsm.change_recorder#callback) callback (E(CHANGEOPS_RUN_ID)).
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Does not change the CI; reports its C(compliance.<checklist>) change (changed, diff).
    support: partial
    details: The evidence is still attached to the run's change event (a C(dry-run) event) as the record of the dry run.
  diff_mode:
    description: Shows the CI's C(compliance.<checklist>) attribute before and after.
    support: full
options:
  checklist:
    description: Checklist name, for example V(hardening) or V(release_readiness); no spaces, dots or slashes.
    type: str
    required: true
  host:
    description: The host the evidence is about. Defaults to the task's C(inventory_hostname).
    type: str
  status:
    description: Overall result of the checklist for this host.
    type: str
    required: true
    choices: [pass, warn, fail, error]
  score:
    description: Compliance score 0 to 100; taken from O(summary) key C(score) when not given.
    type: float
  summary:
    description: Short summary (counts, score, blocking failures) shown with the change event.
    type: dict
    default: {}
  document:
    description:
      - The full evidence document, for example the hardening role's per-control results
        (schema C(docs/evidence.schema.json)).
    type: dict
    required: true
  ci_name:
    description:
      - Name of the CI to update, of any class; an error when several CIs have this name (use O(ci_id)).
      - Without it (and O(ci_id)) the host's own CI is updated, see the description.
    type: str
  ci_id:
    description: Id of the CI to update, when names are ambiguous.
    type: str
  update_ci:
    description: Set C(compliance.<checklist>) on the host's CI when there is one.
    type: bool
    default: true
  run_id:
    description: Run (change event) to attach to; defaults to the current run.
    type: str
seealso:
  - module: changeops.itsm.change_event_info
"""

EXAMPLES = r"""
- name: Record the release-readiness checklist of this host
  changeops.itsm.checklist_evidence:
    checklist: release_readiness
    status: "{{ 'pass' if readiness_failures | length == 0 else 'fail' }}"
    summary:
      failures: "{{ readiness_failures }}"
    document: "{{ readiness_document }}"
"""

RETURN = r"""
evidence:
  description: What was recorded (without the document).
  returned: always
  type: dict
  sample:
    run_id: 6f1c0c3e2b7f4bd0a1c6f0b3f7a2d9e1
    host: web01
    checklist: hardening
    status: pass
    score: 100.0
ci_id:
  description: The CI whose compliance attribute was set, or null.
  returned: always
  type: str
run_id:
  description: The run the evidence is attached to, or null outside a recorded run.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.checklist_evidence import (
    CHECKLIST_EVIDENCE_SPEC,
    record_evidence,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHECKLIST_EVIDENCE_SPEC, supports_check_mode=True)
    run_module(module, record_evidence)


if __name__ == "__main__":
    main()
