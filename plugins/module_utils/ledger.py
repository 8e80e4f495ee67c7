# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tamper-evident ledger: entries, their hashes, and chain verification.

An entry is ``{id, at, kind, subject, actor, data}``. Its hash is
``sha256(prev_hash || canonical_json(entry))``; the first entry's
``prev_hash`` is 64 zeros. The storage position (``seq``) is *not* hashed: the
chain of hashes alone defines the order, which is what lets verification tell
an edited entry from a deleted, inserted or reordered one.

Backends store rows ``(seq, id, at, kind, subject, actor, data, prev_hash,
hash)`` and call :func:`verify_rows` to walk them; nothing here does I/O.
"""

from __future__ import annotations

import json
import uuid

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import (
    GENESIS_HASH,
    canonical_json,
    chain_hash,
    to_plain,
    utc_now,
)

HASHED_FIELDS = ("id", "at", "kind", "subject", "actor", "data")


class Entry(object):
    """One ledger entry before (``seq``/``hash`` None) or after it is committed."""

    __slots__ = ("id", "at", "kind", "subject", "actor", "data", "seq", "prev_hash", "hash", "stored_data")

    def __init__(self, kind, subject, data, actor=None, entry_id=None, at=None,
                 seq=None, prev_hash=None, hash=None):  # pylint: disable=redefined-builtin
        self.id = entry_id or uuid.uuid4().hex
        self.at = at or utc_now()
        self.kind = kind
        self.subject = subject
        self.actor = actor
        self.data = to_plain(data if data is not None else {})
        self.seq = seq
        self.prev_hash = prev_hash
        self.hash = hash
        #: the ``data`` text exactly as storage holds it (None for entries not read from storage)
        self.stored_data = None

    def hashed_document(self):
        return {
            "id": self.id,
            "at": self.at,
            "kind": self.kind,
            "subject": self.subject,
            "actor": self.actor,
            "data": self.data,
        }

    def canonical(self):
        return canonical_json(self.hashed_document())

    def seal(self, seq, prev_hash):
        """Give the entry its position and hash; returns self."""
        self.seq = seq
        self.prev_hash = prev_hash
        self.hash = chain_hash(prev_hash, self.canonical())
        return self

    def data_json(self):
        return canonical_json(self.data)

    def to_dict(self):
        document = self.hashed_document()
        document.update(seq=self.seq, prev_hash=self.prev_hash, hash=self.hash)
        return document

    @classmethod
    def from_dict(cls, document):
        return cls(
            kind=document["kind"],
            subject=document.get("subject"),
            data=document.get("data"),
            actor=document.get("actor"),
            entry_id=document["id"],
            at=document["at"],
            seq=document.get("seq"),
            prev_hash=document.get("prev_hash"),
            hash=document.get("hash"),
        )

    @classmethod
    def from_row(cls, row):
        """Build from a stored row ``(seq, id, at, kind, subject, actor, data_json, prev_hash, hash)``."""
        seq, entry_id, at, kind, subject, actor, data, prev_hash, entry_hash = row
        entry = cls.__new__(cls)
        entry.seq = seq
        entry.id = entry_id
        entry.at = at
        entry.kind = kind
        entry.subject = subject
        entry.actor = actor
        entry.data = json.loads(data) if isinstance(data, str) else data
        entry.stored_data = data if isinstance(data, str) else None
        entry.prev_hash = prev_hash
        entry.hash = entry_hash
        return entry


class VerifyReport(object):
    """Result of walking the chain; ``first_broken`` is None when it is intact."""

    def __init__(self, entries_checked, head_hash, head_seq, first_broken=None, anchor_mismatch=None):
        self.entries_checked = entries_checked
        self.head_hash = head_hash
        self.head_seq = head_seq
        self.first_broken = first_broken
        self.anchor_mismatch = anchor_mismatch
        #: None: not asked for; True: compared; False: asked for but the ledger kept changing
        self.projections_checked = None
        self.projection_problems = []

    @property
    def valid(self):
        return self.first_broken is None and self.anchor_mismatch is None and not self.projection_problems

    def to_dict(self):
        return {
            "valid": self.valid,
            "entries_checked": self.entries_checked,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "first_broken": self.first_broken,
            "anchor_mismatch": self.anchor_mismatch,
            "projections_checked": self.projections_checked,
            "projection_problems": list(self.projection_problems),
            "summary": self.summary(),
        }

    def summary(self):
        if self.first_broken:
            return "ledger chain broken at entry %s: %s" % (
                self.first_broken["seq"], self.first_broken["detail"])
        if self.anchor_mismatch:
            return self.anchor_mismatch
        if self.projection_problems:
            first = self.projection_problems[0]
            return "ledger chain intact, but the query tables disagree with it (%d problem%s, first: %s)" % (
                len(self.projection_problems), "" if len(self.projection_problems) == 1 else "s", first["detail"])
        summary = "ledger chain verified: %d entries, head %s" % (
            self.entries_checked, (self.head_hash or GENESIS_HASH)[:16])
        if self.projections_checked:
            summary += "; query tables match the ledger"
        elif self.projections_checked is False:
            summary += "; query tables not compared: the ledger kept changing during the check"
        return summary


def _broken(entry, problem, detail):
    return {
        "seq": entry.seq,
        "entry_id": entry.id,
        "kind": entry.kind,
        "problem": problem,
        "detail": detail,
    }


def verify_rows(rows, expected_head=None):
    """Walk ``rows`` (iterable of :class:`Entry` in ascending ``seq``) and report the first break.

    Problems, in the order they are checked for each entry:

    ``edited``      the entry's content no longer matches its own hash, or its
                    stored ``data`` text is not the canonical JSON of what it
                    parses to (a duplicated key: the hash covers the value a
                    JSON parser keeps, a query may read the other one);
    ``deleted``     its ``prev_hash`` names no entry still in the ledger, or
                    the sequence numbers skip;
    ``inserted``    it sits between two entries that were chained directly;
    ``reordered``   its ``prev_hash`` names an entry elsewhere in the ledger.

    ``expected_head`` (a hash recorded elsewhere, e.g. printed by an earlier
    verify) must be the hash of some entry in the chain: if the tail was
    truncated or rewritten it no longer is.
    """
    by_hash = {}
    positions = []
    for entry in rows:
        positions.append(entry)
        by_hash.setdefault(entry.hash, entry)

    previous = None
    previous_previous = None
    for entry in positions:
        recomputed = chain_hash(entry.prev_hash or "", entry.canonical())
        if recomputed != entry.hash:
            return VerifyReport(len(positions), None, None, _broken(
                entry, "edited",
                "entry %s (%s %s) was edited: its content does not match its hash" % (
                    entry.seq, entry.kind, entry.subject)))
        if entry.stored_data is not None and entry.stored_data != canonical_json(entry.data):
            return VerifyReport(len(positions), None, None, _broken(
                entry, "edited",
                "entry %s (%s %s) was edited: its stored data is not in canonical form (for example a key given"
                " twice), so what a query reads from it can differ from what its hash covers" % (
                    entry.seq, entry.kind, entry.subject)))
        expected_prev = previous.hash if previous else GENESIS_HASH
        if entry.prev_hash != expected_prev:
            # an entry forged in front of the first one sits between entry 1 and the genesis hash
            skipped_hash = previous_previous.hash if previous_previous is not None else GENESIS_HASH
            if previous is not None and entry.prev_hash == skipped_hash:
                return VerifyReport(len(positions), None, None, _broken(
                    previous, "inserted",
                    "entry %s (%s %s) was inserted: entry %s is chained directly to %s" % (
                        previous.seq, previous.kind, previous.subject, entry.seq,
                        "entry %s" % previous_previous.seq if previous_previous is not None
                        else "the start of the chain")))
            linked = by_hash.get(entry.prev_hash)
            if linked is not None:
                return VerifyReport(len(positions), None, None, _broken(
                    entry, "reordered",
                    "entry %s (%s %s) was moved: it follows entry %s in the chain, not entry %s" % (
                        entry.seq, entry.kind, entry.subject, linked.seq,
                        previous.seq if previous else "(start)")))
            if previous is not None and entry.seq == previous.seq + 1:
                # Adjacent positions, unknown link: the predecessor was edited and its hash
                # recomputed (or the rows after a deletion were renumbered). The earliest
                # entry that can have been altered is the predecessor: name it.
                broken = _broken(
                    previous, "edited",
                    "entry %s (%s %s) was rewritten: its hash was recomputed, but entry %s still names the "
                    "original (%s); or entries after entry %s were deleted and the rest renumbered" % (
                        previous.seq, previous.kind, previous.subject, entry.seq, entry.prev_hash[:16],
                        previous.seq))
                broken["next_seq"] = entry.seq
                return VerifyReport(len(positions), None, None, broken)
            missing_from = previous.seq + 1 if previous else 1
            broken = _broken(
                entry, "deleted",
                "entry %s was deleted: entry %s (%s %s) names a predecessor (%s) that is no longer in the ledger"
                % ("%s to %s" % (missing_from, entry.seq - 1) if entry.seq - 1 > missing_from else missing_from,
                   entry.seq, entry.kind, entry.subject, entry.prev_hash[:16]))
            broken["seq"] = missing_from
            broken["next_seq"] = entry.seq
            return VerifyReport(len(positions), None, None, broken)
        if previous is not None and entry.seq != previous.seq + 1:
            broken = _broken(entry, "deleted", "entries %s to %s before entry %s are missing" % (
                previous.seq + 1, entry.seq - 1, entry.seq))
            broken["seq"] = previous.seq + 1
            broken["next_seq"] = entry.seq
            return VerifyReport(len(positions), None, None, broken)
        previous_previous, previous = previous, entry

    head_hash = previous.hash if previous else None
    head_seq = previous.seq if previous else 0
    report = VerifyReport(len(positions), head_hash, head_seq)
    if expected_head and expected_head not in by_hash:
        report.anchor_mismatch = (
            "the anchored head %s is not in the ledger: entries after it were removed or the chain was rewritten"
            % expected_head[:16])
    return report


def new_entry(kind, subject, data, actor=None):
    return Entry(kind=kind, subject=subject, data=data, actor=actor)
