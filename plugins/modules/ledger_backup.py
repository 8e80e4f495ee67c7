#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ledger_backup
short_description: Take a consistent backup of the system of record while playbooks go on recording
version_added: 0.2.0
description:
  - Writes a consistent copy of the whole system of record (the ledger, its query tables, the witnesses' cursors)
    to O(dest), without stopping the recorders.
  - For the SQLite backend, SQLite's online backup API copies every page under one read snapshot (writers in WAL
    mode go on), into a file beside O(dest) that is synced and renamed over it once complete. With O(verify) the
    copy is then opened as a ledger and every entry's chain link and payload is checked before the task succeeds.
  - For the PostgreSQL backend, C(pg_dump --format=custom) dumps the database from a snapshot this module exports,
    so RV(head) is exactly the newest entry in the dump. The password reaches C(pg_dump) in its environment, never
    on its command line. Restore it with C(pg_restore) and verify the restored ledger with
    M(changeops.itsm.ledger_verify); point-in-time recovery needs the server's WAL archiving (docs/operations.md).
  - A restore brings the ledger back to RV(head). When the witnesses hold a checkpoint of a later entry,
    M(changeops.itsm.ledger_verify) reports the restored ledger as truncated (or, once new entries were appended,
    as rewritten); a rollback is detected, not accepted silently.
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
options:
  dest:
    description:
      - The backup file to write. Its directory must exist. The file is created readable by its owner only.
    type: path
    required: true
  force:
    description:
      - Replace O(dest) when it exists. Without it an existing O(dest) is kept and nothing is written (idempotent).
    type: bool
    default: false
  verify:
    description:
      - For a SQLite backup, open the copy as a ledger and verify every entry before reporting success. A PostgreSQL
        dump is verified after it is restored.
    type: bool
    default: true
  pg_dump_path:
    description:
      - The C(pg_dump) program for a PostgreSQL backup (the server's major version or newer). Default, the one on
        E(PATH).
    type: path
attributes:
  check_mode:
    description: Reports whether a backup would be written, writing nothing.
    support: full
  diff_mode:
    description: Nothing to compare; a backup is a new file.
    support: none
"""

EXAMPLES = r"""
- name: Nightly backup of the SQLite ledger, kept per day
  changeops.itsm.ledger_backup:
    dest: "/srv/backup/changeops/ledger-{{ now(utc=true, fmt='%Y-%m-%d') }}.sqlite"

- name: Dump the shared PostgreSQL system of record
  changeops.itsm.ledger_backup:
    backend: postgresql
    postgresql_dsn: "host=db.example.com dbname=changeops user=changeops_backup"
    dest: /srv/backup/changeops/changeops.pgdump
    force: true
"""

RETURN = r"""
dest:
  description: The absolute path of the backup.
  returned: always
  type: str
format:
  description: V(sqlite) (a SQLite database file) or V(pg_dump custom) (for C(pg_restore)).
  returned: when a backup was written
  type: str
head:
  description: The newest entry the backup holds (V(seq), V(hash)), what a restore brings the ledger back to.
  returned: when a backup was written
  type: dict
verified:
  description: True when the SQLite copy verified; null when not checked (a PostgreSQL dump, O(verify=false)).
  returned: when a backup was written
  type: bool
verify:
  description: The copy's verification (V(valid), V(entries_checked), V(head_seq), V(first_broken)).
  returned: when a SQLite copy was verified
  type: dict
sha256:
  description: SHA-256 of the backup file, to check it after it is moved or stored.
  returned: when a backup was written
  type: str
bytes:
  description: Size of the backup file.
  returned: when a backup was written
  type: int
backend:
  description: Which system of record was backed up (no secrets).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.ledger_backup import LEDGER_BACKUP_SPEC, backup_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=LEDGER_BACKUP_SPEC, supports_check_mode=True)
    run_module(module, backup_ledger)


if __name__ == "__main__":
    main()
