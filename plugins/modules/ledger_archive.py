#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ledger_archive
short_description: Move ledger entries older than a retention period into compressed, self-verifying archives
version_added: 0.2.0
description:
  - Moves the entries made before O(older_than) out of the live ledger into gzip-compressed JSON Lines files in
    O(archive_dir), each holding its entries exactly as stored (hashes, salts, commitments), a checkpoint of its
    last entry (signed with O(checkpoint_key) when one is configured), the witnesses' checkpoints of its range
    and the query tables' state at its end. M(changeops.itsm.ledger_verify) checks an archive offline
    (its O(changeops.itsm.ledger_verify#module:archives) option), and the live ledger keeps verifying from the
    archive's last hash.
  - The query tables' state grows with everything ever archived (a row per archived run and host), so it is
    written, verified and committed a row at a time, never held in memory whole; sorting it spills to the
    temporary directory (E(TMPDIR)), which needs room for about the state's size. Archives written before
    format 2 (the state inside the end record) are still read and verified. Archive format 3 is format 2's
    layout whose entries may be of entry format 3; a collection from before it refuses it by its version.
  - Nothing is deleted unless the written archive verifies on its own first, and the entries it holds are still
    the ledger's (checked under the ledger's write lock). The archiving is itself recorded, as a
    C(ledger.archived) entry naming the file, its SHA-256, its range and who archived it, and the checkpoint is
    handed to the witnesses.
  - The query tables keep what the change register, the info modules, the gate and the inventory need, namely
    change events with their plays, gate decisions, authorisation and per-host counts, CIs, change requests,
    evidence, reviews and published policies. The archive holds the detail, the task results (their output and
    diffs); an archived run is listed with its summary, without its task results.
  - An archive never splits a playbook run, and the newest entry stays live, so an archive may end somewhat
    before the cutoff.
  - Idempotent. Entries already archived are not considered again. With O(max_entries), a large backlog is
    written into several archives in one task.
  - The ledger's write lock is held while the archived entries are deleted (seconds for a million entries);
    recorders wait or spool meanwhile. See docs/operations.md for retention periods and a seven-year rule.
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Reports which entries would be archived into which files, writing nothing.
    support: full
  diff_mode:
    description: Shows where the live ledger starts and the archives, before and after.
    support: full
options:
  older_than:
    description:
      - Archive entries made before this moment. A duration back from now (V(400d), V(56w), V(9000h)) or an
        ISO 8601 time (V(2025-01-01T00:00:00Z)).
    type: str
    required: true
  archive_dir:
    description:
      - Directory the archive files are written to (created with mode C(0700)). Files are named
        C(changeops-ledger-<ledger id>-<first entry>-<last entry>.jsonl.gz) and never overwritten by another
        range. A scratch database is made here while an archive is written (about the size of the archived task
        results) and removed afterwards.
      - Keep it on storage the ledger's database writers cannot rewrite, and back it up (docs/operations.md).
    type: path
    required: true
  max_entries:
    description: Most entries per archive file; more due entries go into further files in the same task.
    type: int
    default: 1000000
  compress_level:
    description: gzip compression level, 1 (fastest) to 9 (smallest).
    type: int
    default: 6
  checkpoint_key:
    description:
      - Ed25519 private key that signs each archive's checkpoint (as M(changeops.itsm.ledger_checkpoint)); without
        one the checkpoint is unsigned and a warning says so.
      - If not set, E(CHANGEOPS_CHECKPOINT_KEY), then C(checkpoint_key) in C([changeops]) of C(ansible.cfg).
    type: path
  checkpoint_public_keys:
    description: Public keys trusted when the written archive is verified (default C(<checkpoint_key>.pub)).
    type: list
    elements: path
  checkpoint_sources:
    description: More files to read witness checkpoints from, copied into the archive when they fall in its range.
    type: list
    elements: path
  witness_file:
    description: The file witness to read and feed (as M(changeops.itsm.ledger_checkpoint)); V(none) turns it off.
    type: str
  witness_syslog:
    description: Feed the system journal (V(auto) when the syslog socket exists).
    type: str
    choices: [auto, "true", "false"]
  witness_syslog_address:
    description: The syslog socket.
    type: path
  witness_command:
    description: A program started with each checkpoint's JSON on standard input.
    type: str
seealso:
  - module: changeops.itsm.ledger_verify
  - module: changeops.itsm.ledger_checkpoint
  - module: changeops.itsm.ledger_backup
"""

EXAMPLES = r"""
- name: Keep thirteen months live; older entries go to the archive volume
  changeops.itsm.ledger_archive:
    older_than: 400d
    archive_dir: /srv/changeops/archives
    checkpoint_key: /etc/changeops/checkpoint.key
  register: archived

- name: See what a yearly archive would take, without writing anything
  changeops.itsm.ledger_archive:
    older_than: "2025-01-01T00:00:00Z"
    archive_dir: /srv/changeops/archives
  check_mode: true

- name: Check every archive offline, and that they link to the live ledger
  changeops.itsm.ledger_verify:
    archives: [/srv/changeops/archives]
"""

RETURN = r"""
archives:
  description: The archives written (in check mode, those that would be), oldest first, each with V(file),
    V(path), V(first_seq), V(last_seq), V(entries), V(sha256), V(bytes), V(last_hash), V(checkpoint)
    (V(seq), V(head), V(key_id), V(signed)), V(state_digest), V(state_rows), V(witnessed) (witness checkpoints
    copied in),
    V(entry_seq) (the C(ledger.archived) entry recording it) and V(verified) (the archive's own verification).
  returned: always
  type: list
  elements: dict
cutoff:
  description: The moment O(older_than) resolved to (UTC).
  returned: always
  type: str
archive_dir:
  description: The absolute archive directory.
  returned: always
  type: str
witnesses:
  description: Each configured witness with V(delivered) and V(error), after the archives' checkpoints.
  returned: when something was archived
  type: list
  elements: dict
backend:
  description: Which system of record was archived (no secrets).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.archives import LEDGER_ARCHIVE_SPEC, archive_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=LEDGER_ARCHIVE_SPEC, supports_check_mode=True)
    run_module(module, archive_ledger)


if __name__ == "__main__":
    main()
