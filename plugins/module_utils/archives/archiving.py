# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``ledger_archive``: move entries older than a retention period into archive files, proven before deleted.

For each archive (at most ``max_entries`` entries; several in one task when more are due):

1. **Where it ends.** The last entry made before the cutoff such that no playbook run has entries on both
   sides of it (``SystemOfRecord.archive_boundary``): a run's end is projected from its results, and the
   archive takes the results out of the query tables.
2. **Write.** One pass over the entries writes the archive (``archive_file``) and replays them, from the
   state the previous archive left, into a scratch database beside it: the query tables' state at the
   archive's last entry, which replays start from afterwards (``archive_base``). The header carries the
   witnesses' checkpoints of the range and the redaction records made after it; the state follows the entries,
   a row per line in sorted order (the scratch database sorts it, so it is never held whole), and the end record
   carries a checkpoint of the last entry (signed with ``checkpoint_key`` when configured) and the state's digest.
3. **Prove.** The written file is verified on its own (``verify.py``: chain, every payload, redactions,
   checkpoints, state digest). A file that does not verify is removed and nothing else happens.
4. **Commit.** In one transaction under the ledger's write lock, and only if entry ``last`` still has the hash
   the archive ends with: the archive's checkpoint and a ``ledger.archived`` entry (file, SHA-256, range, last
   hash, state digest, who) are appended (the archiving is itself a recorded change; its projector takes the
   archived task results out of ``task_results``), ``archive_base`` is replaced by the state read back from the
   verified file a row at a time, entries up to ``last`` are deleted. Then the witnesses are fed the checkpoint.

Idempotent: entries already archived are not considered again, so a second run with the same cutoff finds
nothing due. Check mode reports what would be archived.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
from ansible_collections.changeops.itsm.plugins.module_utils.archives.archive_file import (
    ArchiveReader,
    ArchiveWriter,
    archive_name,
    publish,
)
from ansible_collections.changeops.itsm.plugins.module_utils.archives.verify import verify_archive
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import GENESIS_HASH, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import (
    KIND_ARCHIVED,
    KIND_CHECKPOINT,
    KIND_REDACTED,
    Entry,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import projection_check

#: entries per archive file when ``max_entries`` is not given: one transaction deletes them
DEFAULT_MAX_ENTRIES = 1000000


def ledger_archive_spec():
    spec = dict(backend_argument_spec())
    spec.update(
        older_than=dict(type="str", required=True),
        archive_dir=dict(type="path", required=True),
        max_entries=dict(type="int", default=DEFAULT_MAX_ENTRIES),
        compress_level=dict(type="int", default=6),
    )
    for name in ("checkpoint_key", "checkpoint_public_keys", "checkpoint_sources", "witness_file", "witness_syslog",
                 "witness_syslog_address", "witness_command"):
        spec[name] = dict(checkpoints.CHECKPOINT_ARGUMENT_SPEC[name])
    return spec


LEDGER_ARCHIVE_SPEC = ledger_archive_spec()


def _cutoff(params):
    from ansible_collections.changeops.itsm.plugins.module_utils.change_events import parse_moment

    cutoff = parse_moment("older_than", params.get("older_than"))
    if cutoff is None:
        raise ValidationError("older_than: give a duration back from now (400d, 56w) or an ISO 8601 time",
                              option="older_than")
    return cutoff


def plan(sor, cutoff, max_entries):
    """The archives due now: ``[(first_seq, last_seq)]`` in order, and the live ledger's start."""
    point = sor.archive_point()
    after = point["last_seq"] if point else 0
    ranges = []
    while True:
        last = sor.archive_boundary(cutoff, after, until_seq=after + max_entries)
        if last <= after:
            return ranges, point
        ranges.append((after + 1, last))
        after = last


def _witnessed(sor, settings, first_seq, last_seq):
    """The trusted witness checkpoints of this ledger that fall in the range (checked again in the archive)."""
    from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import read_witnessed

    records, _problems = read_witnessed(settings)
    keys = checkpoints.load_public_keys(checkpoints.public_key_paths(settings))
    ledger_id = checkpoints.ledger_identity(sor)
    kept, seen = [], set()
    for record in records:
        if record.get("ledger") != ledger_id or not isinstance(record.get("seq"), int):
            continue
        if not first_seq <= record["seq"] <= last_seq:
            continue
        trusted, _verified, _problem = checkpoints.trust(record, keys)
        key = (record["seq"], record.get("head"), record.get("signature"))
        if trusted and key not in seen:
            seen.add(key)
            kept.append({name: record.get(name) for name in ("v", "ledger", "location", "seq", "head", "at", "key_id",
                                                             "signature", "witness")})
    return sorted(kept, key=lambda record: (record["seq"], str(record.get("at"))))


def _later_redactions(sor, first_seq, last_seq):
    return [entry.to_dict() for entry in sor.iter_entries(after_seq=last_seq, kinds=[KIND_REDACTED])
            if isinstance(entry.data.get("entry_seq"), int) and first_seq <= entry.data["entry_seq"] <= last_seq]


def _proven_state(path, digest, sha256):
    """The state rows of the archive at ``path`` read a row at a time for the commit, checked as they go against
    the state ``digest`` and, once read to the end, the file's bytes against the ``sha256`` its proof read: a file
    that changed after its proof (its entries or its state) fails the commit's transaction at its end."""
    check = projection_check.StateDigest()
    reader = ArchiveReader(path, sha256=hashlib.sha256())
    changed = ConflictError("the archive %s changed after it was verified, so nothing was deleted" % path)
    try:
        yield from projection_check.digested(reader.state_rows(), check)
    except projection_check.StateRowRefused:
        raise changed
    if check.hexdigest() != digest or reader.sha256.hexdigest() != sha256:
        raise changed


def archive_range(ctx, settings, first_seq, last_seq, prev_hash, cutoff, archive_dir, level=6, base_digest=None):
    """Write, prove and commit one archive; returns what ``ledger_archive`` reports of it. ``base_digest``: the
    state digest the last archive recorded, which the state this one starts from (``archive_base``) must have."""
    sor = ctx.sor
    ledger_id = checkpoints.ledger_identity(sor)
    name = archive_name(ledger_id, first_seq, last_seq)
    path = os.path.join(archive_dir, name)
    key = checkpoints.load_private_key(settings["checkpoint_key"]) if settings.get("checkpoint_key") else None
    keys = checkpoints.load_public_keys(checkpoints.public_key_paths(settings))
    header = {"ledger": ledger_id, "location": checkpoints.location_of(sor), "first_seq": first_seq,
              "last_seq": last_seq, "prev_hash": prev_hash, "cutoff": cutoff, "created_at": utc_now(),
              "created_by": ctx.identity.name if ctx.identity is not None else None,
              "witnessed": _witnessed(sor, settings, first_seq, last_seq),
              "later_redactions": _later_redactions(sor, first_seq, last_seq)}
    base_check = projection_check.StateDigest()
    base_rows = projection_check.digested(sor.archive_state(), base_check) if first_seq > 1 else []
    scratch_dir = tempfile.mkdtemp(prefix=".changeops-archive-", dir=archive_dir)
    writer = ArchiveWriter(path, header, level=level)
    try:
        last = [None]

        def written(entries):
            for entry in entries:
                writer.entry(entry)
                last[0] = entry
                yield entry

        try:
            scratch = projection_check.rebuild(written(sor.iter_entries(after_seq=first_seq - 1,
                                                                        limit=last_seq - first_seq + 1)),
                                               base_rows=base_rows, path=os.path.join(scratch_dir, "state.sqlite"),
                                               with_ledger=False)
        except projection_check.StateRowRefused as exc:
            raise ConflictError("archive_base, the state the last archive left, was edited (%s), so nothing was"
                                " archived: ledger_verify with projections reports it" % exc)
        try:
            if first_seq > 1 and base_check.hexdigest() != base_digest:
                raise ConflictError("archive_base, the state the last archive left, is not the one its ledger.archived"
                                    " entry recorded (it was edited), so nothing was archived: ledger_verify with"
                                    " projections reports it")
            if last[0] is None or last[0].seq != last_seq or writer.entries != last_seq - first_seq + 1:
                raise ConflictError("the ledger no longer holds entries %d to %d as planned (another archive ran?)"
                                    % (first_seq, last_seq))
            for table, row_json in projection_check.state_after_archive(scratch, last_seq):
                writer.state_row(table, row_json)
        finally:
            scratch.close()
        last_hash = last[0].hash
        document = checkpoints.checkpoint_document(sor, key, entry=(last_seq, last_hash))
        temporary = writer.finish({"last_hash": last_hash, "checkpoint": document})
        digest, state_rows = writer.state.hexdigest(), writer.state.rows
    except BaseException:
        writer.abort()
        raise
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
    proof = verify_archive(temporary, keys, name=name)
    if not proof["valid"]:
        os.unlink(temporary)
        raise ConflictError("the archive of entries %d to %d does not verify, so nothing was deleted: %s"
                            % (first_seq, last_seq, proof["summary"]), problems=proof["problems"])
    publish(temporary, path)
    sha256 = proof["sha256"]  # (what the proof read; the commit reads the file again and checks it)
    record = {"file": name, "path": os.path.abspath(path), "sha256": sha256, "bytes": os.path.getsize(path),
              "first_seq": first_seq, "last_seq": last_seq, "prev_hash": prev_hash, "last_hash": last_hash,
              "entries": last_seq - first_seq + 1, "cutoff": cutoff, "archived_at": utc_now(),
              "archived_by": header["created_by"], "ledger": ledger_id, "location": header["location"],
              "checkpoint": {"seq": last_seq, "head": last_hash, "key_id": document.get("key_id"),
                             "signed": bool(document.get("signature"))},
              "state_digest": digest, "state_rows": state_rows, "witnessed": len(header["witnessed"]),
              "pruned": ["task_results"]}
    appended = sor.commit_archive(first_seq, last_seq, last_hash, [
        Entry(KIND_CHECKPOINT, "ledger", document, actor=ctx.actor),
        Entry(KIND_ARCHIVED, "ledger", record, actor=ctx.actor)], _proven_state(path, digest, sha256))
    return dict(record, entry_seq=appended[-1].seq if appended else None, verified=proof["summary"])


def archive_ledger(ctx):
    """The ``ledger_archive`` operation."""
    from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import feed_witnesses

    params = ctx.params
    sor = ctx.sor
    cutoff = _cutoff(params)
    max_entries = DEFAULT_MAX_ENTRIES if params.get("max_entries") is None else params["max_entries"]
    if max_entries < 1:
        raise ValidationError("max_entries must be at least 1, got %r" % max_entries, option="max_entries")
    level = params.get("compress_level", 6)
    if not 1 <= level <= 9:
        raise ValidationError("compress_level must be 1 to 9, got %r" % level, option="compress_level")
    archive_dir = os.path.abspath(os.path.expanduser(params["archive_dir"]))
    settings = checkpoints.settings_for(ctx)
    ranges, point = plan(sor, cutoff, max_entries)
    before = {"live_from_seq": (point["last_seq"] + 1) if point else 1,
              "archives": [item["file"] for item in sor.archives()]}
    result = {"changed": bool(ranges), "cutoff": cutoff, "archive_dir": archive_dir, "backend": sor.describe(),
              "archives": []}
    if not ranges:
        result["msg"] = "nothing to archive: no entry before %s is still in the live ledger%s" % (
            cutoff, " (entries up to %d are archived)" % point["last_seq"] if point else "")
        return result
    if ctx.check_mode:
        result["archives"] = [{"file": archive_name(checkpoints.ledger_identity(sor), first, last), "first_seq": first,
                               "last_seq": last, "entries": last - first + 1} for first, last in ranges]
        result["msg"] = "would archive entries %d to %d into %d file%s in %s" % (
            ranges[0][0], ranges[-1][1], len(ranges), "" if len(ranges) == 1 else "s", archive_dir)
    else:
        if not os.path.isdir(archive_dir):
            os.makedirs(archive_dir, mode=0o700)
        prev_hash = point["last_hash"] if point else GENESIS_HASH
        base_digest = point.get("state_digest") if point else None
        for first, last in ranges:
            made = archive_range(ctx, settings, first, last, prev_hash, cutoff, archive_dir, level, base_digest)
            result["archives"].append(made)
            prev_hash, base_digest = made["last_hash"], made["state_digest"]
        fed = feed_witnesses(sor, settings, warn=ctx.warn)
        result["witnesses"] = fed
        if not settings.get("checkpoint_key"):
            ctx.warn("the archives' checkpoints are unsigned (no checkpoint_key): anyone who can write a witness could"
                     " forge one; see docs/ledger.md, 'Keys'")
        result["msg"] = "archived entries %d to %d into %s; the live ledger starts at entry %d" % (
            ranges[0][0], ranges[-1][1], ", ".join(item["file"] for item in result["archives"]), ranges[-1][1] + 1)
    if ctx.diff:
        after_files = before["archives"] + [item["file"] for item in result["archives"]]
        result["diff"] = {
            "before": "live ledger from entry %d; archives: %s\n" % (
                before["live_from_seq"], ", ".join(before["archives"]) or "none"),
            "after": "live ledger from entry %d; archives: %s\n" % (ranges[-1][1] + 1, ", ".join(after_files))}
    return result
