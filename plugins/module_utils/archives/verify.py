# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verifying an archive file on its own (offline), and against the ledger that made it.

Alone, an archive must: chain from its header's ``prev_hash`` through every entry (each payload opened
against its commitments, each redaction accounted for) to its trailer's ``last_hash``; hold the entries
its header names, no more, no fewer; carry a checkpoint of its last entry (signature checked with the
public keys given); agree with every witness checkpoint it carries or that is given for its range; and
carry the query-table state whose digest it names. Against the ledger, its SHA-256, range, last hash and
state digest must be what the ``ledger.archived`` entry recorded, consecutive archives must link, and the
last must end where the live ledger starts.
"""

from __future__ import annotations

import os

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
from ansible_collections.changeops.itsm.plugins.module_utils.archives.archive_file import (
    SUFFIX,
    ArchiveReader,
    file_sha256,
)
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import GENESIS_HASH
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry, verify_rows
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.projection_check import (
    StateDigest,
    StateOutOfOrder,
    StateRowRefused,
    digested,
    state_digest,
)


def archive_paths(paths):
    """Archive files named by ``paths`` (files, or directories whose archives are taken), sorted by name: by
    ledger, then range."""
    found = []
    for path in paths or ():
        path = os.path.expanduser(str(path))
        if os.path.isdir(path):
            found.extend(os.path.join(path, name) for name in os.listdir(path) if name.endswith(SUFFIX))
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise ValidationError("archives: %s is neither an archive file nor a directory" % path, path=path)
    return sorted(set(found), key=os.path.basename)


def _anchor(record, where):
    return {"seq": record["seq"], "hash": record["head"], "witness": where, "at": record.get("at"),
            "signed": bool(record.get("signature")), "key_id": record.get("key_id"),
            "detail_rewritten": "the archive's entry %s is not what %s recorded (%s)" % (
                record["seq"], where, str(record["head"])[:16]),
            "detail_truncated": "the archive ends before entry %s, which %s covers" % (record["seq"], where)}


def verify_archive(path, keys=None, anchors=(), expected=None, name=None):
    """The verification report of one archive file (a dict: ``valid``, ``problems``, ``summary``...).

    ``keys``: ``{key_id: public key}`` trusted for the checkpoint; ``anchors``: witness checkpoint records of
    the ledger (those in the archive's range are compared); ``expected``: the ``ledger.archived`` entry's data."""
    problems = []
    report = {"path": path, "valid": False, "problems": problems}
    try:
        report["sha256"] = file_sha256(path)
        report["bytes"] = os.path.getsize(path)
        readers = []

        def rows():
            reader = ArchiveReader(path)
            readers.append(reader)
            return reader.entries()

        header = ArchiveReader(path).header
        first_seq, last_seq = header.get("first_seq"), header.get("last_seq")
        if not isinstance(first_seq, int) or not isinstance(last_seq, int) or first_seq < 1 or last_seq < first_seq:
            raise ValidationError("%s: header names no valid range (first_seq %r, last_seq %r)" % (
                path, first_seq, last_seq), path=path)
        report.update(first_seq=first_seq, last_seq=last_seq, ledger=header.get("ledger"),
                      cutoff=header.get("cutoff"), created_at=header.get("created_at"))
        prev_hash = header.get("prev_hash") or GENESIS_HASH
        base = (first_seq - 1, prev_hash) if first_seq > 1 else None
        if first_seq == 1 and prev_hash != GENESIS_HASH:
            problems.append("the archive starts at entry 1 but its header names a predecessor")
        try:
            later = [Entry.from_dict(document) for document in _header_records(header, "later_redactions", path)]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError("%s: the header's later_redactions hold a record that is not a ledger entry: %s"
                                  % (path, exc), path=path)
        witnessed = [record for record in _header_records(header, "witnessed", path) + list(anchors or ())
                     if isinstance(record.get("seq"), int) and record.get("head") and first_seq <= record["seq"] <= last_seq
                     and record.get("ledger") in (None, header.get("ledger"))]
        walk = verify_rows(rows, payloads=True, base=base, extra_records=later,
                           anchors=[_anchor(record, "checkpoint of %s" % (record.get("witness") or "the archive"))
                                    for record in witnessed])
        reader = readers[0] if readers else ArchiveReader(path)
        try:
            state_problem = _check_state(reader)
        except ValidationError as exc:  # (a malformed state or end record: the walk's findings still count)
            state_problem = str(exc)
        trailer = reader.trailer or {}
        report.update(entries=walk.entries_checked, last_hash=walk.head_hash, redactions=walk.redactions,
                      witnessed=len(witnessed))
        if walk.first_broken:
            problems.append(walk.summary())
        elif walk.history_mismatch:
            problems.append(walk.history_mismatch["detail"])
        else:
            if walk.head_seq != last_seq or walk.entries_checked != last_seq - first_seq + 1:
                problems.append("the archive holds entries %s to %s (%d), not %d to %d as its header says" % (
                    first_seq, walk.head_seq, walk.entries_checked, first_seq, last_seq))
            if reader.trailer is not None and (trailer.get("last_hash") != walk.head_hash
                                               or trailer.get("entries") != walk.entries_checked):
                problems.append("the archive's end record names another last hash or count than its entries give")
        if reader.trailer is not None:  # (else the state could not be read to it: that problem says why)
            problems.extend(_check_checkpoint(trailer.get("checkpoint"), header, last_seq, walk.head_hash, keys,
                                              report))
        if state_problem:
            problems.append(state_problem)
        report["state_digest"] = trailer.get("state_digest")
        report["prev_hash"] = prev_hash
        if expected:
            problems.extend(_against_ledger(report, expected))
    except ValidationError as exc:
        problems.append(str(exc))
    report["valid"] = not problems
    name = name or os.path.basename(path)
    report["summary"] = ("archive %s verified: entries %s to %s, last hash %s%s" % (
        name, report.get("first_seq"), report.get("last_seq"), (report.get("last_hash") or "")[:16],
        "; checkpoint signed by key %s" % report["checkpoint"]["key_id"] if (report.get("checkpoint") or {}).get(
            "verified") else "; checkpoint not signature-checked") if not problems else
        "archive %s does not verify: %s" % (name, problems[0]))
    return report


def _header_records(header, name, path):
    """The header's list of records ``name`` (JSON objects), or a ``ValidationError`` naming it."""
    records = header.get(name) or []
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise ValidationError("%s: the header's %s is not a list of JSON objects" % (path, name), path=path)
    return records


def _check_state(reader):
    """What is wrong with the query-table state ``reader`` holds (None: nothing), read a row at a time after the
    entries; sets ``reader.trailer``. Version 2 holds the rows sorted, digested as they come; version 1 in its end
    record, sorted here."""
    if reader.version == 1:
        try:
            rows = list(reader.state_rows())
            found, count = state_digest(rows), len(rows)
        except (TypeError, ValueError) as exc:
            return "the query-table state it carries is not a list of query tables' row texts (%s)" % exc
    else:
        digest = StateDigest()
        rows = reader.state_rows()
        try:
            for _row in digested(rows, digest):
                pass
        except StateRowRefused as exc:
            for _row in rows:
                pass  # (to the end record, which the other checks read)
            return "the query-table state it carries %s (%s)" % (
                "is not in order" if isinstance(exc, StateOutOfOrder) else "holds a row no query table has", exc)
        found, count = digest.hexdigest(), digest.rows
    trailer = reader.trailer or {}
    if found != trailer.get("state_digest") or trailer.get("state_rows", count) != count:
        return "the query-table state it carries does not match its digest"
    return None


def _check_checkpoint(checkpoint, header, last_seq, last_hash, keys, report):
    problems = []
    if not isinstance(checkpoint, dict):
        return ["the archive carries no checkpoint of its last entry"]
    report["checkpoint"] = {"seq": checkpoint.get("seq"), "head": checkpoint.get("head"), "at": checkpoint.get("at"),
                            "key_id": checkpoint.get("key_id"), "signed": bool(checkpoint.get("signature")),
                            "verified": False}
    if checkpoint.get("seq") != last_seq or checkpoint.get("head") != last_hash or checkpoint.get(
            "ledger") != header.get("ledger"):
        problems.append("its checkpoint covers entry %s (%s) of ledger %s, not its last entry" % (
            checkpoint.get("seq"), str(checkpoint.get("head"))[:16], str(checkpoint.get("ledger"))[:16]))
    if keys:
        trusted, verified, problem = checkpoints.trust(dict(checkpoint, witness="archive"), keys)
        if not (trusted and verified):
            problems.append(problem or "its checkpoint is not signed by a key in checkpoint_public_keys")
        report["checkpoint"]["verified"] = bool(trusted and verified)
    return problems


def _against_ledger(report, expected):
    problems = []
    for name in ("sha256", "first_seq", "last_seq", "last_hash", "state_digest"):
        if expected.get(name) != report.get(name):
            problems.append("its %s is %s, but the ledger recorded %s when it archived these entries (ledger entry %s)"
                            % (name, str(report.get(name))[:16], str(expected.get(name))[:16], expected.get("seq")))
    return problems


def verify_archives(paths, keys=None, anchors=(), recorded=None, live_base=None):
    """Reports of every archive in ``paths`` plus their links: ``(reports, problems)``.

    ``recorded``: ``{file name: ledger.archived data}`` from the live ledger; ``live_base``: ``(seq, hash)`` where
    the live ledger starts. Consecutive archives of one ledger must link (the next one's ``prev_hash`` is the last
    one's ``last_hash``), and the newest must end at ``live_base``."""
    recorded = recorded or {}
    reports = []
    for path in archive_paths(paths):
        reports.append(verify_archive(path, keys, anchors, recorded.get(os.path.basename(path))))
    problems = ["%s: %s" % (os.path.basename(report["path"]), problem) for report in reports
                for problem in report["problems"]]
    by_ledger = {}
    for report in reports:
        by_ledger.setdefault(report.get("ledger"), []).append(report)
    for ledger_reports in by_ledger.values():
        ledger_reports.sort(key=lambda report: report.get("first_seq") or 0)
        for earlier, later in zip(ledger_reports, ledger_reports[1:]):
            if later.get("first_seq") != (earlier.get("last_seq") or 0) + 1 or later.get("prev_hash") != earlier.get(
                    "last_hash"):
                problems.append("archives %s and %s do not link: entries %s to %s are missing, or one of them was"
                                " rewritten" % (os.path.basename(earlier["path"]), os.path.basename(later["path"]),
                                                (earlier.get("last_seq") or 0) + 1, (later.get("first_seq") or 1) - 1))
    if live_base and reports:
        newest = max(reports, key=lambda report: report.get("last_seq") or 0)
        if newest["valid"] and (newest.get("last_seq"), newest.get("last_hash")) != tuple(live_base):
            problems.append("the newest archive given (%s) ends at entry %s, but the live ledger starts after entry %s"
                            " (%s)" % (os.path.basename(newest["path"]), newest.get("last_seq"), live_base[0],
                                       live_base[1][:16]))
    return reports, problems
