#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ledger_migrate
short_description: Copy an SQLite change ledger into PostgreSQL, hash chain intact
version_added: 0.1.0
description:
  - Copies every entry of an existing SQLite ledger into the configured system of record
    (normally O(backend=postgresql)), keeping each entry's id, time, sequence number and hash,
    and rebuilds the change events, CMDB, change requests and evidence from them there.
  - Verifies the source chain before copying (a broken source is refused, nothing is written),
    and verifies the destination against the source head afterwards.
  - The destination must be empty or hold a copy of the same source made earlier. Each batch is
    its own transaction, so an interrupted copy resumes where it stopped, and a second run when
    everything is copied reports no change. A destination holding other entries is refused
    before anything is written.
  - Named counters (such as change request numbers) are raised in the destination to at least
    their value in the source, so numbers are never handed out twice.
  - The delivery bookkeeping moves too, once every entry is copied - the outbox cursor of each
    sync target (ServiceNow), its set-aside entries and a 429's retry time, and each witness's
    cursor - so after the move nothing is delivered to ServiceNow or a witness twice and nothing
    is skipped. A cursor only moves forward.
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Verifies both ledgers and reports how many entries would be copied, writing nothing.
    support: full
  diff_mode:
    description: Shows the destination head, counters and cursors before and after the copy.
    support: full
options:
  source_path:
    description:
      - Path of the SQLite ledger to copy (on the controller). It is opened like any ledger,
        read and verified; its entries are never changed.
    type: path
    required: true
  batch_size:
    description:
      - Entries per destination transaction. Smaller batches hold the destination's write lock
        for shorter moments while other controllers record into it.
    type: int
    default: 500
notes:
  - If the P(changeops.itsm.change_recorder#callback) callback of the migrating run already
    records into the destination, the destination is no longer empty and the copy is refused.
    Run the migration with the recorder still on the SQLite ledger and give the destination as
    module arguments (as in the examples); the migration run itself is recorded in the SQLite
    ledger and copied by the next run.
  - To switch over, stop recording into the SQLite ledger, run this module until it reports no
    change, then point every controller at PostgreSQL.
seealso:
  - module: changeops.itsm.ledger_verify
"""

EXAMPLES = r"""
- name: Copy the controller's SQLite ledger into the team's PostgreSQL system of record
  changeops.itsm.ledger_migrate:
    source_path: ~/.ansible/changeops/ledger.sqlite
    backend: postgresql
    postgresql_dsn: "host=db.example.org dbname=changeops user=changeops sslmode=verify-full"
  register: migration

- name: Show what would be copied, without writing
  changeops.itsm.ledger_migrate:
    source_path: /srv/ansible/ledger.sqlite
    backend: postgresql
    postgresql_dsn: "{{ lookup('ansible.builtin.env', 'TEAM_LEDGER_DSN') }}"
  check_mode: true
  diff: true
"""

RETURN = r"""
entries_copied:
  description: Entries copied by this run (in check mode, the entries that would be copied).
  returned: always
  type: int
  sample: 18342
counters_advanced:
  description: Named counters raised in the destination to their value in the source.
  returned: always
  type: list
  elements: str
  sample: [change_request]
cursors_copied:
  description:
    - Outbox cursors (C(sync_cursor)), set-aside outbox entries (C(set_aside_entry)) and witness cursors
      (C(witness_cursor)) copied into the destination (in check mode, those that would be).
  returned: always
  type: list
  elements: dict
  sample:
    - {what: sync_cursor, name: "servicenow:example.service-now.com", from: 0, to: 18211}
    - {what: witness_cursor, name: "file:/var/lib/changeops/witness.jsonl", from: null, to: 18300}
source:
  description: The source chain as verified before copying.
  returned: always
  type: dict
  contains:
    path:
      description: Absolute path of the SQLite ledger.
      type: str
    entries:
      description: Entries in the source chain.
      type: int
    head_seq:
      description: Sequence number of the newest source entry.
      type: int
    head_hash:
      description: Hash of the newest source entry.
      type: str
    valid:
      description: Whether the source chain verified.
      type: bool
    summary:
      description: One line for people.
      type: str
destination:
  description: The destination chain, verified after copying (before, in check mode or when nothing changed).
  returned: always
  type: dict
  contains:
    backend:
      description: Where the destination is (no secrets).
      type: str
    entries:
      description: Entries in the destination chain.
      type: int
    head_seq:
      description: Sequence number of the newest destination entry.
      type: int
    head_hash:
      description: Hash of the newest destination entry; equal to the source's after a complete copy.
      type: str
    valid:
      description: Whether the destination chain verified.
      type: bool
    summary:
      description: One line for people.
      type: str
diff:
  description: Destination head and counters before and after, in diff mode (C(--diff)).
  returned: when diff mode is on
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.ledger_migrate import LEDGER_MIGRATE_SPEC, migrate_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=LEDGER_MIGRATE_SPEC, supports_check_mode=True)
    run_module(module, migrate_ledger)


if __name__ == "__main__":
    main()
