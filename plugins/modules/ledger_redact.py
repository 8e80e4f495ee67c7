#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ledger_redact
short_description: Remove a leaked value from the change ledger without breaking its hash chain
version_added: 0.2.0
description:
  - Replaces fields of a ledger entry (a task result's C(result.stdout), one diff, a change request's
    description...) by a tombstone. Each entry commits to every field of its payload with a salted hash,
    and the chain covers those commitments, so the tombstone keeps the field's commitment and every hash
    of the chain stays what it was; the field's salt is deleted with its value, so a short secret cannot
    be found by trying candidates against the commitment.
  - Appends a C(ledger.redacted) entry that says who (the operating-system account running the task),
    when, why (O(reason)), and which entry and field. M(changeops.itsm.ledger_verify) keeps passing and
    lists the redactions; a field removed any other way is reported as an edit.
  - Then removes the other copies the collection keeps - the query tables (the entry's rows are rebuilt),
    SQLite's free pages and write-ahead log (O(compact)), PostgreSQL's old row versions (O(compact)),
    the change recorder's spool, and the HTML register (generated again when one is configured) - see
    docs/ledger.md for what no tool of the collection can reach (backups, PostgreSQL's WAL archive).
  - Entries written before the collection committed per field (format 1) can be redacted too. Their
    content is first checked against their hash, then committed with fresh salts.
  - Fields the query tables are keyed on or that decide a change's authorisation (run and play ids,
    host, status, a gate's decision...) cannot be redacted. Nor can a published change policy's version,
    sha256, publisher or document (what the gate enforced); its text and comment can.
  - Idempotent. Fields already redacted are reported in RV(already_redacted) and change nothing.
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Checks the entries and reports what would be redacted without writing anything.
    support: full
  diff_mode:
    description: Shows each field before (its length only, never the value) and after (the tombstone).
    support: full
options:
  entry:
    description:
      - The entry to redact, by sequence number (as RV(changeops.itsm.ledger_verify#module:verification.redactions)
        and the register show it) or by entry id. Use with O(fields).
    type: str
  fields:
    description:
      - Fields of O(entry) to redact, for example V(result.stdout), V(result.cmd), V(diff[0]), V(limit),
        V(record.description).
      - Naming a top-level object (V(result)) redacts each of its members; naming a place inside a field
        (V(diff[0].after), V(document.controls[3].output)) redacts the whole field that holds it, the
        smallest unit the ledger commits to (top-level members, and members of top-level objects and arrays).
    type: list
    elements: str
  redactions:
    description:
      - Several entries at once, each a dict with the entry (V(entry), V(seq) or V(entry_id)) and its
        fields (V(fields), or one V(field) or V(path)).
    type: list
    elements: dict
  secret_findings:
    description:
      - The findings of M(changeops.itsm.ledger_verify) with O(changeops.itsm.ledger_verify#module:scan_secrets=true),
        as they are (RV(changeops.itsm.ledger_verify#module:secret_scan.findings)). The field each finding names
        (V(field)) is redacted in its entry (V(seq)).
      - A finding that no redaction can remove (V(field) null - a secret in an entry's actor or subject, in a
        key's name, in a field the record's meaning depends on, or in the ledger's own entries) is listed in
        RV(not_redactable) with the reason and warned about; the others are still redacted.
      - An empty list (a scan that found nothing) redacts nothing. Can be combined with O(redactions).
    type: list
    elements: dict
  reason:
    description:
      - Why the fields are redacted (an incident or ticket number, for example); recorded in the ledger.
      - Never put the secret itself here.
    type: str
    required: true
  compact:
    description:
      - Rewrite the database's storage after the redaction so that old copies of the pages and rows
        are gone too. SQLite - C(VACUUM), then a C(TRUNCATE) checkpoint of the write-ahead log.
        PostgreSQL - C(VACUUM FULL) of the ledger and the query tables that copy entry data, which
        locks each of them while it is rewritten.
      - With V(false) only the rows are rewritten; old page contents or row versions can survive until
        the database reuses the space.
    type: bool
    default: true
  spool_dirs:
    description:
      - The change recorder's spool directories to scrub.
      - If not set, both locations the recorder writes entries to, as it resolves them - its C(spool_dir)
        (E(CHANGEOPS_SPOOL_DIR), then C(spool_dir) in C([changeops]) or C([callback_change_recorder]) of
        C(ansible.cfg), then C(~/.ansible/changeops/spool)) and its C(spool_fallback_dir)
        (E(CHANGEOPS_SPOOL_FALLBACK_DIR), then C(spool_fallback_dir) in C(ansible.cfg), then the platform's
        state directory - C($XDG_STATE_HOME/changeops/spool), else C(/var/lib/changeops/spool) for root and
        C(~/.local/state/changeops/spool) for other users).
    type: list
    elements: path
  register_path:
    description:
      - The HTML change register to generate again. If not set, the recorder's C(register_path)
        (E(CHANGEOPS_REGISTER_PATH) or C(ansible.cfg)); when none is configured nothing is generated.
    type: path
  register_json_path:
    description: The register's JSON data to generate again with it (default the recorder's C(register_json_path)).
    type: path
notes:
  - A redaction cannot be undone. The value is gone from the ledger for good.
  - PostgreSQL keeps the old values in its write-ahead log, WAL archive, base backups and replicas until
    they are recycled or rebuilt; SQLite backups and file-system snapshots are copies of their own.
    docs/ledger.md lists what to do about each.
seealso:
  - module: changeops.itsm.ledger_verify
"""

EXAMPLES = r"""
- name: Remove a password a command printed
  changeops.itsm.ledger_redact:
    entry: 1842
    fields: [result.stdout, result.cmd]
    reason: "INC0012345: database password echoed by the migration script"

- name: Find the secrets that ledgers written before the detector catalogue hold
  changeops.itsm.ledger_verify:
    scan_secrets: true
  register: scan

- name: Remove what the scan found
  changeops.itsm.ledger_redact:
    secret_findings: "{{ scan.secret_scan.findings }}"
    reason: "Secrets found by the quarterly scan (SEC-77)"
  when: scan.secret_scan.findings_total > 0
"""

RETURN = r"""
redacted:
  description: The fields redacted now (in check mode, that would be), each with V(seq), V(entry_id),
    V(kind), V(field) and V(redacted_by), the sequence number of the C(ledger.redacted) entry.
  returned: always
  type: list
  elements: dict
  sample:
    - {seq: 1842, entry_id: 6f1c0c3e2b7f4bd0a1c6f0b3f7a2d9e1, kind: run.result, field: result.stdout,
       redacted_by: 1907}
already_redacted:
  description: Fields named that were redacted before (nothing done for them).
  returned: always
  type: list
  elements: dict
not_redactable:
  description: The O(secret_findings) no redaction can remove, each with V(seq), V(id), V(kind), V(path),
    V(detector) and V(reason).
  returned: always
  type: list
  elements: dict
storage:
  description: What was done to the database's own files (V(compacted), for SQLite V(wal_checkpointed))
    and V(warnings) about copies that remain.
  returned: when something was redacted
  type: dict
spool_files_scrubbed:
  description: Spool files that held a copy of a redacted entry and were rewritten.
  returned: when something was redacted
  type: list
  elements: str
external_copies:
  description:
    - Redacted entries that a sync target (ServiceNow) had already been sent, each with V(seq), V(kind), V(target)
      and the target's V(cursor_seq). The copy there (a work note or the run's attachment on its change request,
      a CI's fields, an evidence attachment) is outside the collection's reach; a warning says so. Entries not
      yet delivered are sent with the tombstones.
  returned: when something was redacted
  type: list
  elements: dict
register:
  description: Whether the configured register was generated again (V(regenerated), V(path)).
  returned: when something was redacted
  type: dict
backend:
  description: Which system of record was changed (no secrets).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import (
    LEDGER_REDACT_MUTUALLY_EXCLUSIVE,
    LEDGER_REDACT_REQUIRED_ONE_OF,
    LEDGER_REDACT_REQUIRED_TOGETHER,
    LEDGER_REDACT_SPEC,
    redact_ledger,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=LEDGER_REDACT_SPEC, supports_check_mode=True,
                           mutually_exclusive=LEDGER_REDACT_MUTUALLY_EXCLUSIVE,
                           required_one_of=LEDGER_REDACT_REQUIRED_ONE_OF,
                           required_together=LEDGER_REDACT_REQUIRED_TOGETHER)
    run_module(module, redact_ledger)


if __name__ == "__main__":
    main()
