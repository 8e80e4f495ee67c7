# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""change_recorder options of the signed checkpoint made after every run (post_run/sign_checkpoint.py).

The same settings (environment variables, ``[changeops]`` of ansible.cfg) are read by
M(changeops.itsm.ledger_checkpoint) and M(changeops.itsm.ledger_verify); see module_utils/checkpoints.py.
"""

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  checkpoint_after_run:
    description:
      - After every recorded run, sign a checkpoint of the ledger's head (its sequence number, hash and the
        time) and hand it to the witnesses, so that a later rewrite or truncation of the history is found
        by M(changeops.itsm.ledger_verify) from the witnesses alone. See docs/ledger.md.
      - Never fails or holds up the playbook; a problem is a warning.
    type: bool
    default: true
    env:
      - name: CHANGEOPS_CHECKPOINT_AFTER_RUN
    ini:
      - section: callback_change_recorder
        key: checkpoint_after_run
  checkpoint_key:
    description:
      - Ed25519 private key (PEM, readable by its owner only) that signs the checkpoints. Without one the
        checkpoints are unsigned head hashes.
    type: path
    env:
      - name: CHANGEOPS_CHECKPOINT_KEY
    ini:
      - section: changeops
        key: checkpoint_key
      - section: callback_change_recorder
        key: checkpoint_key
  witness_file:
    description:
      - Append-only file witness, one JSON line per checkpoint. Keep it on another file system or host than
        the ledger. V(none) turns it off.
      - Default C($XDG_STATE_HOME/changeops/checkpoints.jsonl), i.e. C(~/.local/state/changeops/checkpoints.jsonl).
    type: str
    env:
      - name: CHANGEOPS_WITNESS_FILE
    ini:
      - section: changeops
        key: witness_file
      - section: callback_change_recorder
        key: witness_file
  witness_syslog:
    description:
      - Send each checkpoint to the system log (tag C(changeops-ledger)). V(auto) when the socket in
        O(witness_syslog_address) exists.
    type: str
    choices: [auto, "true", "false"]
    env:
      - name: CHANGEOPS_WITNESS_SYSLOG
    ini:
      - section: changeops
        key: witness_syslog
      - section: callback_change_recorder
        key: witness_syslog
  witness_syslog_address:
    description: The local syslog socket (default C(/dev/log)).
    type: path
    env:
      - name: CHANGEOPS_WITNESS_SYSLOG_ADDRESS
    ini:
      - section: changeops
        key: witness_syslog_address
      - section: callback_change_recorder
        key: witness_syslog_address
  witness_command:
    description:
      - A program that ships each checkpoint elsewhere, started with the checkpoint's JSON on standard input;
        exit status 0 means taken (see docs/ledger.md).
    type: str
    env:
      - name: CHANGEOPS_WITNESS_COMMAND
    ini:
      - section: changeops
        key: witness_command
      - section: callback_change_recorder
        key: witness_command
"""
