#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: change_register
short_description: Generate the change register, a static HTML page for ITSM reviewers
version_added: 0.1.0
description:
  - Writes one self-contained HTML file listing every change event (playbook run) recorded in
    the system of record, for people who review changes but do not run Ansible. It opens from
    disk or any static web server, works offline and loads nothing from the network.
  - "The list view shows when, who, playbook, environment, hosts, outcome, authorisation (standard
    template, change request number, emergency or B(unauthorised)) and review status, with dry runs
    set apart; it filters by date, host or CI, outcome, authorisation, environment and review status,
    searches free text, sorts by any column, pages through tens of thousands of changes and exports
    the filtered list as CSV or JSON."
  - "Each change has a page: plays, changed tasks per host with their redacted diffs, failures, the
    gate decisions and their reasons, checklist evidence with per-control status, the CIs touched
    (with their ledger history), the post-implementation reviews, and the ledger chain's
    verification status at generation time."
  - Only rewrites the file when its content would change (the generation time alone does not count),
    so the task is idempotent; the file is replaced atomically.
  - Runs on the controller; O(path) is a path on the controller.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Builds the register and reports whether the files would change, writing nothing.
    support: full
  diff_mode:
    description: The diff names the files that would be rewritten and the register's counts, not the HTML.
    support: partial
    details: The HTML itself is not diffed.
options:
  path:
    description:
      - Where to write the HTML register on the controller. Its directory must exist.
    type: path
    required: true
  json_path:
    description:
      - Also write the complete register data (every row and every change's details) as JSON here,
        for audit tooling. The HTML does not need it.
    type: path
  title:
    description: Title shown at the top of the page.
    type: str
    default: Change register
  since:
    description:
      - Only changes started at or after this time. An ISO 8601 time or date (V(2026-11-01)) or a
        duration back from now (V(24h), V(30d), V(12w)). Default is every recorded change.
    type: str
  until:
    description: Only changes started at or before this time; same formats as O(since).
    type: str
  verify_chain:
    description:
      - Verify the ledger's hash chain and show the result (verified, or broken at entry N) on every
        page of the register. Walks the whole ledger, so it costs time on very large ledgers.
    type: bool
    default: true
  check_projections:
    description:
      - With O(verify_chain), also replay the ledger into fresh tables and compare them row by row with
        the records the register shows (change events, task results, CIs, change requests), as
        M(changeops.itsm.ledger_verify) does. A record edited in the database rather than through the
        ledger then marks the register as not matching its ledger, naming the table and row.
      - About three times the cost of the chain check alone (10 s instead of 3.5 s for 10,000 recorded
        changes on a 2-core machine). Turn off only on very large ledgers, and run
        M(changeops.itsm.ledger_verify) before a review instead.
    type: bool
    default: true
  mode:
    description:
      - File mode of the written files, as an octal string such as V('0640').
      - When not set, an existing file keeps its mode and a new one gets the default for the
        controller's umask.
    type: raw
notes:
  - The register holds operational detail (host names, task names, redacted diffs); publish it where
    only people allowed to review changes can read it, or set O(mode).
  - With a PostgreSQL read replica configured (O(postgresql_read_dsn)) the register is read from it, as the
    C(_info) modules read, falling back to the primary (with a warning saying why) when the replica is
    unreachable, not a standby, or lags more than O(postgresql_read_max_lag); the page says which server it was
    read from and the replica's lag.
seealso:
  - module: changeops.itsm.change_review
  - module: changeops.itsm.change_event_info
  - module: changeops.itsm.ledger_verify
"""

EXAMPLES = r"""
- name: Publish the change register for the CAB
  changeops.itsm.change_register:
    path: /srv/www/changes/index.html
    mode: "0640"

- name: Last quarter only, with the data for the auditors
  changeops.itsm.change_register:
    path: "{{ playbook_dir }}/cab/register.html"
    json_path: "{{ playbook_dir }}/cab/register.json"
    since: 13w
    title: Changes, last quarter
"""

RETURN = r"""
path:
  description: The HTML file written (or that would be written in check mode).
  returned: always
  type: str
  sample: /srv/www/changes/index.html
json_path:
  description: The JSON file written, when O(json_path) was given.
  returned: always
  type: str
fingerprint:
  description: SHA-256 over the register's content and templates, excluding the generation time.
  returned: always
  type: str
counts:
  description:
    - How many change events the register holds, by what needs attention.
    - C(denied) counts runs a change gate stopped (their outcome is shown as V(denied), not V(failed)),
      C(record_only) runs that changed only the system of record (CMDB, evidence, change requests),
      C(changed_hosts) and C(host_changes) the hosts changed and the changes made to them, by the
      definition in C(docs/change-register.md) (not Ansible's PLAY RECAP).
  returned: always
  type: dict
  sample:
    changes: 1204
    unauthorised: 2
    failed: 7
    denied: 4
    interrupted: 1
    emergency: 3
    dry_runs: 40
    record_only: 120
    no_change: 311
    changed_hosts: 2210
    host_changes: 9120
    awaiting_review: 12
    follow_up: 1
verification:
  description:
    - The ledger verification report shown in the register (null when O(verify_chain=false)).
    - RV(verification.projections_checked) is true when the records shown were compared with a replay of the
      ledger, and RV(verification.projection_problems) lists each row that differs.
  returned: always
  type: dict
  contains:
    valid:
      description: True when the chain and the records shown check out.
      type: bool
    entries_checked:
      description: Number of ledger entries walked.
      type: int
    projections_checked:
      description: V(true) when the records shown were compared with a replay of the ledger, V(false) when the
        ledger kept changing during the comparison, null when the chain is broken.
      type: bool
    projection_problems:
      description: Rows that disagree with the replay (at most 20), each with V(table), V(key), V(problem) and
        V(detail).
      type: list
      elements: dict
    summary:
      description: One line for people.
      type: str
  sample:
    valid: true
    entries_checked: 48211
    projections_checked: true
    projection_problems: []
    summary: "ledger chain verified: 48211 entries, head 3f9a0c5d1e2b4a67; query tables match the ledger"
read_from:
  description: Where the register was read from, when a read replica is configured (O(postgresql_read_dsn)).
  returned: when O(postgresql_read_dsn) is set
  type: dict
  contains:
    server:
      description: V(replica) or V(primary).
      type: str
    lag_seconds:
      description: The replica's lag when it was read (V(0) when it had replayed all it received), else null.
      type: float
    replica:
      description: The replica's host, port and database (no password).
      type: str
    reason:
      description: Why the primary was read instead of the replica; null when the replica was read.
      type: str
  sample:
    server: replica
    lag_seconds: 0.0
    replica: "postgresql:host=db-standby dbname=changeops user=changeops_reader"
    reason: null
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.change_register import (
    CHANGE_REGISTER_SPEC,
    generate_register_operation,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHANGE_REGISTER_SPEC, supports_check_mode=True)
    run_module(module, generate_register_operation)


if __name__ == "__main__":
    main()
