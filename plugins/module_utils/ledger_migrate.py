# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copy an SQLite ledger into another system of record (normally PostgreSQL), chain intact.

Every entry keeps its id, time, kind, subject, actor, data, sequence number
and hash: the copy is appended in source order onto a destination that is
empty or already holds a prefix of the same chain, so sealing recomputes
exactly the source's hashes (``hash = sha256(prev_hash || entry)``), and the
projections (change events, CMDB, change requests, evidence) are rebuilt by
the same code that built them in the source.

Safe to repeat and to resume: each batch is its own transaction, guarded by
the destination head it was prepared for, so an interrupted copy continues
where it stopped, a finished one reports no change, and a destination that
already holds something else is refused before anything is written.

The delivery bookkeeping moves with the chain (:func:`_delivery_bookkeeping`): each sync target's
outbox cursor (ServiceNow), its set-aside entries and the time a 429 asked to wait until, and each
witness's cursor. Sequence numbers are kept by the copy, so a cursor means the same entry on both
sides: after the move nothing is delivered again and nothing is skipped. A cursor only moves forward
(one the destination already passed, because something delivered from it, stays).
"""

from __future__ import annotations

import os

from ansible_collections.changeops.itsm.plugins.module_utils.config import backend_argument_spec
from ansible_collections.changeops.itsm.plugins.module_utils.errors import (
    ConfigurationError,
    ConflictError,
    ValidationError,
)
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

LEDGER_MIGRATE_SPEC = dict(
    backend_argument_spec(),
    source_path=dict(type="path", required=True),
    batch_size=dict(type="int", default=500),
)

_ADVICE = ("ledger_migrate copies into an empty destination or resumes a copy of the same source; if the"
           " change_recorder already records into the destination, keep the recorder on the SQLite ledger while"
           " migrating (pass backend and postgresql_dsn as module arguments, not environment variables)")


def _chain_state(report):
    return {"entries": report.entries_checked, "head_seq": report.head_seq, "head_hash": report.head_hash,
            "valid": report.valid, "summary": report.summary()}


def _open_source(path, busy_timeout):
    if not os.path.isfile(path):
        raise ValidationError("source_path: %s does not exist or is not a file" % path, source_path=path)
    return open_system_of_record({"backend": "sqlite", "sqlite_path": path, "busy_timeout": busy_timeout})


def _check_destination_is_a_prefix(source, destination, source_report, destination_report):
    """Refuse (before writing) unless the destination holds nothing or the first N entries of the source."""
    if not destination_report.valid:
        raise ConflictError("the destination ledger %s is itself broken (%s): nothing was copied"
                            % (destination.describe(), destination_report.summary()))
    seq = destination_report.head_seq
    if seq == 0:
        return
    if seq > source_report.head_seq:
        raise ConflictError("the destination %s already holds %d entries, more than the source's %d: it is not a"
                            " copy of this source; %s" % (destination.describe(), seq, source_report.head_seq, _ADVICE))
    counterpart = next(iter(source.iter_entries(after_seq=seq - 1, limit=1)))
    # both chains verified: equal hashes at the same position mean equal prefixes
    if counterpart.hash != destination_report.head_hash:
        raise ConflictError("the destination %s holds a different ledger: its entry %d (%s) is not the source's"
                            " entry %d (%s); %s" % (destination.describe(), seq, destination_report.head_hash[:16],
                                                    seq, counterpart.hash[:16], _ADVICE))


def _copy(source, destination, head, until_seq, batch_size):
    """Append the source entries after the destination's verified ``head`` ``(seq, hash)`` up to
    ``until_seq``, in batches; returns how many were copied."""
    after_seq = head[0]
    copied = 0
    batch = []

    def flush(head):
        expected = [(entry.seq, entry.hash) for entry in batch]
        clones = [Entry.from_dict(entry.to_dict()) for entry in batch]
        appended = destination.append(clones, expected_head=head)
        if [(entry.seq, entry.hash) for entry in appended] != expected:
            raise ConflictError("copying entries %d to %d into %s produced different hashes: the destination"
                                " changed during the copy; run ledger_migrate again to check it"
                                % (expected[0][0], expected[-1][0], destination.describe()))
        return expected[-1]

    for entry in source.iter_entries(after_seq=after_seq, limit=until_seq - after_seq):
        batch.append(entry)
        if len(batch) >= batch_size:
            head = flush(head)
            copied += len(batch)
            batch = []
    if batch:
        flush(head)
        copied += len(batch)
    return copied


def _delivery_bookkeeping(source, destination):
    """What of the source's outbox and witness bookkeeping the destination lacks: a list of steps
    ``{"what", "name", "from", "to", ...}``, each applied by :func:`_apply_bookkeeping`."""
    steps = []
    for state in source.list_sync_states():
        target = state["target"]
        mine = destination.get_sync_state(target) or {"cursor_seq": 0, "delivered": 0}
        if (state.get("cursor_seq") or 0) > (mine.get("cursor_seq") or 0):
            steps.append({"what": "sync_cursor", "name": target, "from": mine.get("cursor_seq") or 0,
                          "to": state["cursor_seq"],
                          "delivered": max(0, (state.get("delivered") or 0) - (mine.get("delivered") or 0)),
                          "last_error": state.get("last_error"), "retry_after": state.get("retry_after")})
        theirs = dict((item["seq"], item) for item in destination.find_sync_items(target))
        for item in source.find_sync_items(target):
            if item["status"] == "delivered" or (theirs.get(item["seq"]) or {}).get("status") == item["status"]:
                continue
            steps.append({"what": "sync_item", "name": target, "seq": item["seq"], "item": item})
    mine = destination.list_witness_cursors()
    for witness, seq in sorted(source.list_witness_cursors().items()):
        if seq is not None and (mine.get(witness) is None or mine[witness] < seq):
            steps.append({"what": "witness_cursor", "name": witness, "from": mine.get(witness), "to": seq})
    return steps


def _apply_bookkeeping(destination, steps):
    for step in steps:
        if step["what"] == "sync_cursor":
            destination.advance_sync_cursor(step["name"], step["from"], step["to"], delivered=step["delivered"])
            if step.get("last_error") or step.get("retry_after"):
                destination.note_sync_error(step["name"], step.get("last_error") or "rate limited",
                                            retry_after=step.get("retry_after"))
        elif step["what"] == "sync_item":
            item = step["item"]
            destination.set_sync_item(step["name"], item["seq"], item["entry_id"], item["kind"], item["subject"],
                                      item["status"], error=item.get("error"), details=item.get("details"))
        else:
            destination.advance_witness_cursor(step["name"], step["to"])


def _describe_steps(steps):
    """The result's ``cursors_copied``: what moved (never the set-aside entries' details)."""
    described = []
    for step in steps:
        if step["what"] == "sync_item":
            described.append({"what": "set_aside_entry", "name": step["name"], "seq": step["seq"],
                              "status": step["item"]["status"]})
        else:
            described.append({"what": step["what"], "name": step["name"], "from": step["from"], "to": step["to"]})
    return described


def migrate_ledger(ctx):
    params = ctx.params
    destination = ctx.sor
    batch_size = params.get("batch_size") or 500
    if batch_size < 1:
        raise ValidationError("batch_size must be at least 1, got %r" % batch_size)
    source_path = os.path.abspath(params["source_path"])
    if not hasattr(destination, "advance_counters"):
        raise ConfigurationError("the destination backend %s cannot hold a copy of a hash-chained ledger;"
                                 " choose backend postgresql" % destination.describe())
    destination_path = getattr(destination, "path", None)
    if destination_path and os.path.realpath(destination_path) == os.path.realpath(source_path):
        raise ValidationError("source_path %s is the destination ledger itself: set backend: postgresql and"
                              " postgresql_dsn for the destination" % source_path, source_path=source_path)

    source = _open_source(source_path, getattr(destination, "busy_timeout", 60))
    try:
        archived = source.archive_point()
        if archived is not None:
            raise ConflictError("the source ledger %s has archived entries (1 to %d, ledger_archive): ledger_migrate"
                                " copies whole chains only; migrate before archiving, or keep the archived SQLite"
                                " ledger and its archives and start the shared ledger afresh" % (
                                    source_path, archived["last_seq"]))
        source_report = source.verify()
        if not source_report.valid:
            raise ConflictError("the source ledger %s is broken (%s): nothing was copied; investigate it with"
                                " changeops.itsm.ledger_verify first" % (source_path, source_report.summary()),
                                first_broken=source_report.first_broken)
        destination_report = destination.verify()
        _check_destination_is_a_prefix(source, destination, source_report, destination_report)
        source_counters = source.counters()
        destination_counters = destination.counters()
        counters_to_advance = {name: value for name, value in source_counters.items()
                               if destination_counters.get(name, 0) < value}
        pending = source_report.head_seq - destination_report.head_seq
        bookkeeping = _delivery_bookkeeping(source, destination)
        changed = bool(pending or counters_to_advance or bookkeeping)

        before = {"head_seq": destination_report.head_seq, "head_hash": destination_report.head_hash,
                  "counters": destination_counters,
                  "cursors": dict(("%s %s" % (step["what"], step["name"]), step["from"])
                                  for step in bookkeeping if step["what"] != "sync_item")}
        after = {"head_seq": source_report.head_seq, "head_hash": source_report.head_hash,
                 "counters": dict(destination_counters, **counters_to_advance),
                 "cursors": dict(("%s %s" % (step["what"], step["name"]), step["to"])
                                 for step in bookkeeping if step["what"] != "sync_item")}
        copied = 0
        final_report = destination_report
        if changed and not ctx.check_mode:
            copied = _copy(source, destination, (destination_report.head_seq, destination_report.head_hash),
                           source_report.head_seq, batch_size)
            destination.advance_counters(counters_to_advance)
            final_report = destination.verify(expected_head=source_report.head_hash)
            if not final_report.valid or final_report.head_hash != source_report.head_hash:
                raise ConflictError("after copying, the destination %s does not verify against the source (%s)"
                                    % (destination.describe(), final_report.summary()))
            # only now that the destination holds every entry a cursor counts: the outbox and the witnesses
            # go on from where they were, delivering nothing twice and skipping nothing
            _apply_bookkeeping(destination, bookkeeping)
        result = {
            "changed": changed,
            "entries_copied": pending if ctx.check_mode else copied,
            "counters_advanced": sorted(counters_to_advance),
            "cursors_copied": _describe_steps(bookkeeping),
            "source": dict(_chain_state(source_report), path=source_path),
            "destination": dict(_chain_state(final_report), backend=destination.describe()),
        }
        if not changed:
            result["msg"] = "the destination already holds all %d entries of %s" % (source_report.head_seq,
                                                                                    source_path)
        elif ctx.check_mode:
            result["msg"] = "would copy %d entries from %s into %s" % (pending, source_path, destination.describe())
        else:
            result["msg"] = "copied %d entries from %s into %s; chain verified, head %s" % (
                copied, source_path, destination.describe(), (source_report.head_hash or "")[:16])
            if bookkeeping:
                result["msg"] += "; %d outbox/witness cursor%s and set-aside entr%s copied" % (
                    len(bookkeeping), "" if len(bookkeeping) == 1 else "s", "y" if len(bookkeeping) == 1 else "ies")
        if ctx.diff:
            result["diff"] = {"before": before, "after": after}
        return result
    finally:
        source.close()
