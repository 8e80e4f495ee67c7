#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ledger_checkpoint
short_description: Sign a checkpoint of the change ledger's head and hand it to witnesses outside the database
version_added: 0.2.0
description:
  - Signs C((sequence, head hash, time)) of the ledger with an Ed25519 key, records the checkpoint as a
    C(ledger.checkpoint) entry, and feeds every configured witness the checkpoints it has not taken yet
    (an append-only file, the system log, a command). M(changeops.itsm.ledger_verify) later checks the chain
    against the newest checkpoints the witnesses hold, with the public key only, and reports a history that
    was rewritten or cut short.
  - The change recorder does the same after every run (option C(checkpoint_after_run)); this module is for
    a checkpoint on demand, for example before a backup or an audit, and to make the signing key.
  - Without a key the checkpoint is an unsigned head hash (a warning says so).
  - Idempotent. When the ledger's newest entry is already a checkpoint of the entry before it and every
    witness has taken it, nothing changes.
  - A witness that fails is a warning, never a failed task; it gets the checkpoint next time.
  - Settings not given here come, like the recorder's, from E(CHANGEOPS_CHECKPOINT_KEY) and friends, then the
    C([changeops]) section of C(ansible.cfg) (see docs/ledger.md).
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Reports whether a checkpoint would be made and which witnesses are behind, writing nothing.
    support: full
  diff_mode:
    description: Shows the newest checkpoint before and after, and what each witness took.
    support: full
options:
  checkpoint_key:
    description:
      - Ed25519 private key (PEM, mode C(0600)) that signs the checkpoint. Its public half, C(<path>.pub),
        is what verification needs.
      - If not set, E(CHANGEOPS_CHECKPOINT_KEY), then C(checkpoint_key) in C([changeops]) of C(ansible.cfg).
    type: path
  generate_key:
    description:
      - Create O(checkpoint_key) (mode C(0600), its directory C(0700) when new) and C(<path>.pub) (C(0644))
        when the key does not exist yet. An existing key is never overwritten.
    type: bool
    default: false
  witness_file:
    description:
      - Append-only file witness (V(none) turns it off). Default E(CHANGEOPS_WITNESS_FILE), C(witness_file)
        in C([changeops]), then C(~/.local/state/changeops/checkpoints.jsonl).
    type: str
  witness_syslog:
    description: Send checkpoints to the system log; V(auto) (default) when the syslog socket exists.
    type: str
    choices: [auto, "true", "false"]
  witness_syslog_address:
    description: The syslog socket (default C(/dev/log)).
    type: path
  witness_command:
    description: A program started with each checkpoint's JSON on standard input (exit status 0 means taken).
    type: str
seealso:
  - module: changeops.itsm.ledger_verify
"""

EXAMPLES = r"""
- name: Make the signing key once (keep a copy of the .pub wherever the ledger is verified)
  changeops.itsm.ledger_checkpoint:
    checkpoint_key: /etc/changeops/checkpoint.key
    generate_key: true

- name: Checkpoint before the nightly backup
  changeops.itsm.ledger_checkpoint:
  register: checkpoint
"""

RETURN = r"""
checkpoint:
  description: The newest checkpoint after the task (V(seq) and V(head) signed, V(at), V(signed), V(key_id),
    V(ledger) the hash of the first entry, V(entry_seq) where the ledger recorded it); null for an empty ledger.
  returned: always
  type: dict
would_checkpoint:
  description: In check mode, the head a checkpoint would be made of (null when none is needed).
  returned: check mode
  type: dict
witnesses:
  description: Each configured witness with V(delivered) (checkpoints handed over now) and V(error).
  returned: always
  type: list
  elements: dict
key:
  description: The signing key (V(path), V(public_key_path), V(key_id), V(generated)); null without one.
  returned: always
  type: dict
backend:
  description: Which system of record was checkpointed (no secrets).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.checkpoints import LEDGER_CHECKPOINT_SPEC, checkpoint_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=LEDGER_CHECKPOINT_SPEC, supports_check_mode=True)
    run_module(module, checkpoint_ledger)


if __name__ == "__main__":
    main()
