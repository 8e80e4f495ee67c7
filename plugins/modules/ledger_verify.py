#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ledger_verify
short_description: Verify the hash chain of the change ledger
version_added: 0.1.0
description:
  - Walks every entry of the ledger, recomputes each entry's SHA-256 over its canonical JSON
    and its predecessor's hash, and reports the first entry that was edited, deleted,
    inserted or reordered.
  - Opens every entry's payload against its salted per-field commitments (O(check_payloads)), and lists
    the fields removed by M(changeops.itsm.ledger_redact) with who, when and why; a field removed any other
    way is reported as an edit.
  - Checks the chain against the newest signed checkpoints the witnesses hold (O(check_checkpoints)), with
    the public keys only. A history rewritten consistently (an entry edited and every later hash recomputed)
    or cut short is reported as such, although the chain itself is intact.
  - With O(scan_secrets=true), also runs the secret detector catalogue over every stored entry and reports in
    RV(secret_scan) where secret-shaped content is, and which field M(changeops.itsm.ledger_redact) removes
    to clear it (its O(changeops.itsm.ledger_redact#module:secret_findings) takes the findings as they are).
  - With O(mode=incremental), walks only the entries after the newest trusted verified-up-to marker (a signed
    attestation that an earlier verification found every entry up to it intact), after checking that its entry
    still has the hash it recorded; its cost is in proportion to the new entries. A full verification stays
    the default (O(mode=full)) and is what finds an old entry edited in place (docs/ledger.md, "Incremental
    verification"; docs/operations.md says how often to run each).
  - After a verification that found the ledger valid, records a new signed marker (O(record_marker)) when a
    O(checkpoint_key) is configured, and hands it to the witnesses.
  - Fails the task when the chain is broken, unless O(fail_on_broken=false).
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Verifies in check mode too, and reports whether it would record a marker without recording it.
    support: full
  diff_mode:
    description: Shows the verified-up-to marker before and after when one is recorded.
    support: full
options:
  expected_head:
    description:
      - A head hash recorded earlier (for example printed by a previous verification and kept
        outside the ledger). Verification also fails when that hash is no longer part of the
        chain, which detects entries removed from the end.
    type: str
  fail_on_broken:
    description: Fail the task when the chain is broken or the query tables disagree with it.
    type: bool
    default: true
  check_projections:
    description:
      - Also replay the chain into fresh query tables and compare them, row by row, with the live
        query tables that the register, the info modules, the gate and the inventory read. This finds
        rows edited, deleted or added directly in the database while the chain itself is intact.
      - Costs several times the chain walk (about 2 s for 13,000 entries on 2 CPUs). It is done only
        when the chain is intact, and skipped (RV(verification.projections_checked=false)) when entries
        keep being appended during the comparison.
    type: bool
    default: true
  check_payloads:
    description:
      - Open every payload against the commitments its hash covers. V(false) walks only the chain of hashes,
        which needs no parsing and is several times faster; entries with redacted fields are opened either way.
    type: bool
    default: true
  check_checkpoints:
    description:
      - Compare the chain with the newest checkpoints the witnesses hold (the file witness, the system journal,
        O(checkpoint_sources)). See docs/ledger.md.
    type: bool
    default: true
  checkpoint_public_keys:
    description:
      - Ed25519 public keys (PEM) whose signatures are trusted; keep old keys here after a rotation so their
        checkpoints still count. Only checkpoints signed by one of them are used.
      - If not set, E(CHANGEOPS_CHECKPOINT_PUBLIC_KEYS), C(checkpoint_public_keys) in C([changeops]), then
        C(<checkpoint_key>.pub). With no key at all, checkpoints are compared by hash only and the result
        says so.
    type: list
    elements: path
  checkpoint_sources:
    description:
      - More files to read checkpoints from, for example C(/var/log/syslog) or an export of the central log
        server (lines with C(CHANGEOPS-CHECKPOINT), or the witness file's JSON lines).
    type: list
    elements: path
  checkpoint_key:
    description: The signing key, whose C(.pub) is trusted when O(checkpoint_public_keys) is not set.
    type: path
  witness_file:
    description: The file witness to read (default as for M(changeops.itsm.ledger_checkpoint)); V(none) skips it.
    type: str
  witness_syslog:
    description: Read the system journal's checkpoints (V(auto) when the syslog socket exists).
    type: str
    choices: [auto, "true", "false"]
  witness_syslog_address:
    description: The syslog socket whose presence V(auto) looks for.
    type: path
  scan_secrets:
    description:
      - Also run the collection's secret detector catalogue (the table in C(docs/recorder.md)) over every
        stored entry and report each entry and field that holds secret-shaped content (a private key, a cloud
        credential, a password on a command line or under a secret-looking key...) in RV(secret_scan).
        Use it to find what ledgers written by older versions (or leaks of a shape the recorder did not know)
        hold, before cleaning them.
      - Findings never include the content itself, and do not fail the task.
      - Values known only to a run (vault plaintexts, extra vars) cannot be recognised afterwards, only shapes can.
    type: bool
    default: false
  mode:
    description:
      - V(full) walks every entry of the live ledger (from the last archived entry when entries were archived with
        M(changeops.itsm.ledger_archive)).
      - V(incremental) starts from the newest trusted verified-up-to marker (read from the ledger's own checkpoint
        entries and from the witnesses; with O(checkpoint_public_keys) only one whose attestation is signed by one
        of them), checks that its entry still has its hash, then walks the entries after it and checks every
        witness checkpoint by looking up its entry. Without a trusted marker it verifies every entry, and says so.
      - An incremental verification does not compare the query tables (O(check_projections)); that needs a replay
        of the whole chain.
    type: str
    choices: [full, incremental]
    default: full
  record_marker:
    description:
      - After a verification that found the ledger valid, sign a verified-up-to marker of its newest entry with
        O(checkpoint_key), record it as a C(ledger.checkpoint) entry and hand it to the witnesses, so that the next
        incremental verification starts there (RV(verification.recorded_marker); the task reports C(changed)).
      - Nothing is recorded when the newest entry is already such a marker by the same key, nor without a
        O(checkpoint_key) (a warning says why; an unsigned marker in the database proves nothing).
      - Defaults to V(true) with O(mode=incremental) and V(false) with O(mode=full).
    type: bool
  archives:
    description:
      - Archive files of M(changeops.itsm.ledger_archive), or directories holding them, to verify too, each on its
        own (its chain and every payload from its first entry's predecessor to its last entry, its redactions,
        its checkpoint, with O(checkpoint_public_keys) its signature, the witness checkpoints of its range, its
        query-table state), against the C(ledger.archived) entry that recorded it (SHA-256, range, last hash),
        and together (consecutive archives link; the newest ends where the live ledger starts). Every archive
        the ledger recorded must be among them. See RV(archives).
    type: list
    elements: path
  ledger:
    description:
      - V(false) checks only the O(archives), offline; no system of record is opened (or created). Use it where
        only the archive files and the public keys are, for example on an auditor's machine.
    type: bool
    default: true
seealso:
  - module: changeops.itsm.ledger_archive
  - module: changeops.itsm.change_event_info
  - module: changeops.itsm.ledger_checkpoint
  - module: changeops.itsm.ledger_redact
"""

EXAMPLES = r"""
- name: Verify the ledger before the CAB meeting
  changeops.itsm.ledger_verify:
  register: ledger

- name: Find entries that hold secret-shaped content (ledgers written before the detector catalogue)
  changeops.itsm.ledger_verify:
    scan_secrets: true
  register: scanned

- name: Remove them without breaking the chain (the next verification lists the redactions)
  changeops.itsm.ledger_redact:
    secret_findings: "{{ scanned.secret_scan.findings }}"
    reason: "SEC-77: secrets found by the ledger scan"
  when: scanned.secret_scan.findings_total > 0

- name: After each run, verify only what was appended since the last verification (signs a new marker)
  changeops.itsm.ledger_verify:
    mode: incremental
    checkpoint_key: /etc/changeops/checkpoint.key

- name: Every week, verify every entry, payloads and query tables, and mark where it got to
  changeops.itsm.ledger_verify:
    mode: full
    record_marker: true
    checkpoint_key: /etc/changeops/checkpoint.key

- name: Keep the head somewhere the ledger's writers cannot reach
  ansible.builtin.copy:
    content: "{{ ledger.verification.head_hash }}\n"
    dest: /srv/audit/ledger-head.txt
    mode: "0644"
"""

RETURN = r"""
verification:
  description: The verification report.
  returned: unless O(ledger=false)
  type: dict
  contains:
    valid:
      description: True when every entry checked out.
      type: bool
    entries_checked:
      description: Number of entries walked.
      type: int
    head_seq:
      description: Sequence number of the newest entry.
      type: int
    head_hash:
      description: Hash of the newest entry; null when the chain is broken.
      type: str
    first_broken:
      description: The first broken entry (V(seq), V(entry_id), V(problem) one of V(edited),
        V(deleted), V(inserted), V(reordered), and V(detail)); null when valid.
      type: dict
    anchor_mismatch:
      description: Why O(expected_head) is no longer part of the chain; null when it is or was not given.
      type: str
    history_mismatch:
      description: The checkpoint the ledger contradicts (V(problem) V(rewritten) or V(truncated), V(seq),
        V(hash), V(witness), V(at), V(signed), V(key_id), V(detail)); null when it agrees with every one read.
      type: dict
    checkpoints:
      description: What the witnesses held (V(read), V(anchors) the newest trusted checkpoint of each witness,
        V(signed), V(public_keys), V(problems) such as forged or unknown-key checkpoints, V(summary)); null with
        O(check_checkpoints=false).
      type: dict
    payloads_checked:
      description: Whether every payload was opened against its commitments (O(check_payloads)).
      type: bool
    base_seq:
      description: The walk started after this entry (a verified-up-to marker, or the last archived entry); 0 when
        it started at the first entry.
      type: int
    archived_through:
      description: Entries up to this one are in archives (0 when none are); the walk starts after it.
      type: int
    mode:
      description: V(incremental) when the walk started from a marker, else V(full).
      type: str
    marker:
      description: The verified-up-to marker an incremental verification started from (V(seq), V(head), V(at),
        V(signed), V(key_id), V(source), V(mode), V(payloads), V(from_seq)); null when none was used.
      type: dict
    recorded_marker:
      description: The marker this task recorded (the same keys, and V(entry_seq), the C(ledger.checkpoint) entry
        holding it); null when none was recorded.
      type: dict
    redactions:
      description: Fields removed by M(changeops.itsm.ledger_redact), each with V(seq), V(entry_id), V(kind),
        V(field), V(redacted_by) (the C(ledger.redacted) entry), V(at), V(by) and V(reason).
      type: list
      elements: dict
    projections_checked:
      description: V(true) when the query tables were compared with the chain, V(false) when the
        ledger kept changing during the comparison, null when O(check_projections=false) or the
        chain is broken.
      type: bool
    projection_problems:
      description: Query table rows that disagree with the chain (at most 20), each with V(table),
        V(key), V(problem) one of V(altered), V(missing), V(unexpected), and V(detail).
      type: list
      elements: dict
    summary:
      description: One line for people.
      type: str
  sample:
    valid: false
    first_broken:
      seq: 42
      problem: edited
      detail: "entry 42 (run.result 6f1c...) was edited: its content does not match its hash"
secret_scan:
  description: What O(scan_secrets=true) found.
  returned: when O(scan_secrets=true)
  type: dict
  contains:
    entries_with_secrets:
      description: Number of entries holding secret-shaped content.
      type: int
    findings_total:
      description: Number of findings (an entry may have several, one per field and detector).
      type: int
    findings:
      description: The findings (at most 1000), each with V(seq), V(id) and V(kind) of the entry, V(path) of the
        place inside it (for example V(data.result.stdout) or V(data.diff[0].after)), the V(detector) that
        found it, and V(field), the field M(changeops.itsm.ledger_redact) redacts to remove it (for example
        V(result.stdout) or V(diff[0])). V(field) is null, and V(not_redactable) says why, when no redaction can
        remove it (the entry's actor or subject, a key's name, a field the record's meaning depends on).
        A field already redacted is not a finding.
      type: list
      elements: dict
    truncated:
      description: V(true) when there were more findings than listed.
      type: bool
    summary:
      description: One line for people.
      type: str
  sample:
    entries_with_secrets: 1
    findings_total: 1
    findings:
      - seq: 1042
        id: 6f1c0a9e2b7d4c1e8a3f5b6d7c8e9f01
        kind: run.result
        path: data.result.stdout
        detector: command_line_password
        field: result.stdout
    truncated: false
    summary: 1 stored entries hold secret-shaped content (1 findings)
archives:
  description: What O(archives) found.
  returned: when O(archives) is given
  type: dict
  contains:
    valid:
      description: True when every archive verified, they link, and every archive the ledger recorded was given.
      type: bool
    checked:
      description: Number of archive files verified.
      type: int
    entries:
      description: Entries they hold.
      type: int
    reports:
      description: One per archive file (V(path), V(valid), V(first_seq), V(last_seq), V(entries), V(last_hash),
        V(sha256), V(checkpoint), V(witnessed), V(redactions), V(problems), V(summary)).
      type: list
      elements: dict
    problems:
      description: Every problem found, one line each.
      type: list
      elements: str
    summary:
      description: One line for people.
      type: str
backend:
  description: Which system of record was verified (no secrets); null with O(ledger=false).
  returned: always
  type: str
  sample: sqlite:/home/ops/.ansible/changeops/ledger.sqlite
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.change_events import LEDGER_VERIFY_SPEC, verify_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=LEDGER_VERIFY_SPEC, supports_check_mode=True)
    run_module(module, verify_ledger, opens_system_of_record=lambda params: params.get("ledger", True))


if __name__ == "__main__":
    main()
