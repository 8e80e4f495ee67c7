# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``ledger_backup``: a consistent copy of the system of record, taken while playbooks go on recording.

The backend makes the copy (``SystemOfRecord.backup``): SQLite's online backup API from one read snapshot,
PostgreSQL's ``pg_dump`` in custom format from a snapshot whose head it reads. Either way the result names
the newest entry the copy holds (``head``), which is what a restore brings the ledger back to: a restore to
an older point than the witnesses' checkpoints is then reported by ``ledger_verify`` as a truncation or a
rewrite (docs/operations.md, "Backup and restore"), never accepted silently.

A SQLite copy is verified where it lies (``verify``: opened as a ledger, every entry's chain link and payload
checked) before the task reports success; a PostgreSQL dump can only be verified once restored, and says so.
Idempotent in the way ``copy`` with ``force: false`` is: an existing ``dest`` is kept unless ``force``.
"""

from __future__ import annotations

import hashlib
import os

from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record


def ledger_backup_spec():
    spec = dict(backend_argument_spec())
    spec.update(
        dest=dict(type="path", required=True),
        force=dict(type="bool", default=False),
        verify=dict(type="bool", default=True),
        pg_dump_path=dict(type="path"),
    )
    return spec


LEDGER_BACKUP_SPEC = ledger_backup_spec()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sqlite_copy(path):
    """Open the copy at ``path`` as a ledger and walk it whole (chain and payloads): what a restore would find."""
    copy = open_system_of_record({"backend": "sqlite", "sqlite_path": path})
    try:
        return copy.verify(payloads=True)
    finally:
        copy.close()


def backup_ledger(ctx):
    """The ``ledger_backup`` operation."""
    params = ctx.params
    sor = ctx.sor
    dest = os.path.abspath(os.path.expanduser(params["dest"]))
    result = {"dest": dest, "backend": sor.describe(), "changed": False}
    if os.path.isdir(dest):
        raise ValidationError("dest: %s is a directory; give the backup file's path" % dest, option="dest")
    directory = os.path.dirname(dest)
    if not os.path.isdir(directory):
        raise ValidationError("dest: the directory of %s does not exist (%s)" % (dest, directory), option="dest")
    if os.path.exists(dest) and not params.get("force"):
        result["msg"] = "%s exists: kept (force: true replaces it)" % dest
        return result
    result["changed"] = True
    if ctx.check_mode:
        result["msg"] = "would write a backup of %s to %s" % (sor.describe(), dest)
        return result
    made = sor.backup(dest, tool=params.get("pg_dump_path"))
    result.update(format=made["format"], head={"seq": made["head_seq"], "hash": made["head_hash"]})
    result["verified"] = None
    if params.get("verify", True) and made["format"] == "sqlite":
        report = verify_sqlite_copy(dest)
        result["verify"] = {"valid": report.valid, "entries_checked": report.entries_checked,
                            "head_seq": report.head_seq, "first_broken": report.first_broken}
        result["verified"] = report.valid and report.head_hash == made["head_hash"]
        if not result["verified"]:
            result["failed"] = True
            result["msg"] = ("the backup %s does not verify (%s): keep the previous backup and run ledger_verify on"
                             " the live ledger" % (dest, report.first_broken or "its head is not the ledger's head"))
    result["sha256"] = file_sha256(dest)
    result["bytes"] = os.path.getsize(dest)
    if "msg" not in result:
        result["msg"] = "backed up %s up to entry %d into %s%s" % (
            sor.describe(), made["head_seq"], dest,
            "" if made["format"] == "sqlite" else " (verify it after pg_restore with ledger_verify)")
    return result
