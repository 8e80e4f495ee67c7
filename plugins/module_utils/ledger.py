# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tamper-evident ledger: entries, their hashes, and chain verification.

An entry is ``{id, at, kind, subject, actor, data}``. Three formats are on disk:

**Formats 2 and 3** (every entry written since schema 6): the payload ``data`` is committed field
by field with salted hashes (``commitments.py``), and the entry's hash covers the payload's root,
not the data itself::

    hash = sha256(prev_hash || canonical_json([format, id, at, kind, subject, actor, payload_root]))

so a field can be redacted (replaced by a tombstone, its commitment kept) without changing any
hash, and the chain can be walked without parsing payloads. The two differ in how the payload is
cut into fields and rooted (format 3 commits a play's hosts as one field, and its root covers the
fields' paths: ``commitments.py``); the format leads the hashed header, so an entry's format cannot be
changed either.

**Format 1** (entries written before schema 6, kept as they are)::

    hash = sha256(prev_hash || canonical_json({id, at, kind, subject, actor, data}))

A format-1 entry has no commitments until it is first redacted: ``ledger_redact`` then checks
its content against its hash, commits its fields with fresh salts, and records the payload root
in the ``ledger.redacted`` entry, which the chain covers from then on.

The first entry's ``prev_hash`` is 64 zeros. The storage position (``seq``) is *not* hashed:
the chain of hashes alone defines the order, which is what lets verification tell an edited
entry from a deleted, inserted or reordered one.

Backends store rows ``(seq, id, at, kind, subject, actor, data, prev_hash, hash, format, salt,
payload_root, redactions)`` and call :func:`verify_rows` to walk them; nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid

from json.encoder import encode_basestring as _encode_string

from ansible_collections.changeops.itsm.plugins.module_utils import commitments, protected_fields
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import (
    GENESIS_HASH,
    canonical_json,
    chain_hash,
    find_oversized_int,
    replace_oversized_ints,
    to_plain,
    utc_now,
)
from ansible_collections.changeops.itsm.plugins.module_utils.commitments import (
    COMMITTED_FORMATS,
    FORMAT_COMMITTED,
    FORMAT_CURRENT,
    FORMAT_LEGACY,
    KNOWN_FORMATS,
    encode_value,
)

HASHED_FIELDS = ("id", "at", "kind", "subject", "actor", "data")

#: bookkeeping kinds of the ledger itself (see docs/ledger.md)
KIND_REDACTED = "ledger.redacted"
KIND_CHECKPOINT = "ledger.checkpoint"
KIND_ARCHIVED = "ledger.archived"
#: the entry kinds that end a run (its change event is then final)
RUN_END_KINDS = ("run.finished", "run.interrupted")

_sha256 = hashlib.sha256


def header_json(entry_format, entry_id, at, kind, subject, actor, payload_root):
    """What a format-2 or format-3 hash covers after ``prev_hash``: canonical JSON of the header array."""
    return "[%d,%s,%s,%s,%s,%s,%s]" % (entry_format, encode_value(entry_id), encode_value(at), encode_value(kind),
                                       encode_value(subject), encode_value(actor), encode_value(payload_root))


def legacy_document_json(entry_id, at, kind, subject, actor, data_json):
    """``canonical_json({id, at, kind, subject, actor, data})`` from the stored data text, without parsing it."""
    return '{"actor":%s,"at":%s,"data":%s,"id":%s,"kind":%s,"subject":%s}' % (
        encode_value(actor), encode_value(at), data_json, encode_value(entry_id), encode_value(kind),
        encode_value(subject))


class Entry(object):
    """One ledger entry before (``seq``/``hash`` None) or after it is committed.

    ``data`` is parsed from storage only when it is read, so walking the chain does not parse payloads.
    Treat a sealed entry as a value: assigning ``data`` marks it for new commitments on the next
    :meth:`seal` (what an attacker rewriting the entry would do).
    """

    __slots__ = ("id", "at", "kind", "subject", "actor", "_data", "_data_text", "_data_json", "_dirty", "seq",
                 "prev_hash", "hash", "stored_data", "format", "salt", "payload_root", "redactions")

    def __init__(self, kind, subject, data, actor=None, entry_id=None, at=None,
                 seq=None, prev_hash=None, hash=None,  # pylint: disable=redefined-builtin
                 format=FORMAT_CURRENT, salt=None, payload_root=None, redactions=None):  # pylint: disable=redefined-builtin
        self.id = entry_id or uuid.uuid4().hex
        self.at = at or utc_now()
        self.kind = kind
        self.subject = subject
        self.actor = actor
        self._data = to_plain(data if data is not None else {})
        self._data_text = None
        self._data_json = None
        self._dirty = False
        self.seq = seq
        self.prev_hash = prev_hash
        self.hash = hash
        #: the ``data`` text exactly as storage holds it (None for entries not read from storage)
        self.stored_data = None
        self.format = format or FORMAT_LEGACY
        #: hex seed of the field salts (formats 2 and 3, and format 1 once committed); None once redacted
        self.salt = salt
        self.payload_root = payload_root
        #: ``{"salts": [...], "tombstones": {path_json: commitment}}`` once a field was redacted
        self.redactions = redactions

    # -- payload ------------------------------------------------------------------------
    @property
    def data(self):
        if self._data is None:
            self._data = json.loads(self._data_text)
        return self._data

    @data.setter
    def data(self, value):
        self._data = to_plain(value if value is not None else {})
        self._data_text = None
        self._data_json = None
        self._dirty = True

    def prepare(self):
        """Commit the payload (salts, root) and serialise it: the costly part of sealing, done before the
        append takes the ledger's lock. Returns self."""
        if self.format in COMMITTED_FORMATS and (self.payload_root is None or self._dirty):
            try:
                sealed = commitments.seal_payload(self.data, cut=self.cut())
            except ValueError:
                if find_oversized_int(self.data) is None:
                    raise
                # an integer Python cannot write as JSON: recorded as its digits after a marker, never refused
                # (it would fail the whole batch: docs/ledger.md, "Integers too long for JSON")
                self._data = replace_oversized_ints(self._data)
                self._data_text = None
                sealed = commitments.seal_payload(self._data, cut=self.cut())
            self._data_json, self.payload_root, self.salt = sealed
            self._dirty = False
        return self

    def cut(self):
        """How the payload is cut into fields and rooted (``commitments.cut_of`` its format and kind)."""
        return commitments.cut_of(self.format, self.kind)

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
        """Canonical JSON of the whole entry, payload included (what a format-1 hash covers)."""
        return canonical_json(self.hashed_document())

    def header(self):
        return header_json(self.format, self.id, self.at, self.kind, self.subject, self.actor, self.payload_root)

    def compute_hash(self, prev_hash):
        """The hash this entry's stored content gives after ``prev_hash`` (not for redacted format-1 entries)."""
        if self.format in COMMITTED_FORMATS:
            return _sha256((prev_hash + self.header()).encode("utf-8")).hexdigest()
        data_json = self.stored_data if self.stored_data is not None and not self._dirty else self.data_json()
        return chain_hash(prev_hash, legacy_document_json(self.id, self.at, self.kind, self.subject, self.actor,
                                                          data_json))

    def seal(self, seq, prev_hash, header=None):
        """Give the entry its position and hash; returns self. ``header``: :meth:`header` of a format-2 or -3 entry,
        computed by the caller before it took the ledger's lock (the entry unchanged since). It is not used when
        the payload was set again since it was committed (the header's payload root would be the old one)."""
        if self._dirty or self.payload_root is None:
            header = None
        self.prepare()
        self.seq = seq
        self.prev_hash = prev_hash
        if self.format == FORMAT_LEGACY and self.redactions:
            # a redacted format-1 entry no longer holds what its hash covers: a copy keeps the hash it has
            if not self.hash:
                raise ValueError("entry %s: a redacted format-1 entry cannot be sealed again" % self.id)
            return self
        if header is not None and self.format in COMMITTED_FORMATS:
            self.hash = _sha256((prev_hash + header).encode("utf-8")).hexdigest()
            return self
        self.hash = self.compute_hash(prev_hash)
        return self

    def data_json(self):
        if self._data_json is None:
            if self._data_text is not None and not self._dirty:
                self._data_json = self._data_text
            else:
                self._data_json = canonical_json(self.data)
        return self._data_json

    def to_dict(self):
        document = self.hashed_document()
        document.update(seq=self.seq, prev_hash=self.prev_hash, hash=self.hash, format=self.format,
                        salt=self.salt, payload_root=self.payload_root, redactions=self.redactions)
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
            # documents without a format: a sealed one (an older copy) is format 2, an unsealed one (the spool's) is
            # a new entry
            format=document.get("format") or (FORMAT_COMMITTED if document.get("payload_root") else FORMAT_CURRENT),
            salt=document.get("salt"),
            payload_root=document.get("payload_root"),
            redactions=document.get("redactions"),
        )

    @classmethod
    def from_row(cls, row):
        """Build from a stored row ``(seq, id, at, kind, subject, actor, data_json, prev_hash, hash[, format, salt,
        payload_root, redactions_json])``; ``data`` is parsed when first read."""
        seq, entry_id, at, kind, subject, actor, data, prev_hash, entry_hash = row[:9]
        entry = cls.__new__(cls)
        entry.seq = seq
        entry.id = entry_id
        entry.at = at
        entry.kind = kind
        entry.subject = subject
        entry.actor = actor
        if isinstance(data, str):
            entry._data, entry._data_text, entry.stored_data = None, data, data
        else:
            entry._data, entry._data_text, entry.stored_data = data, None, None
        entry._data_json = None
        entry._dirty = False
        entry.prev_hash = prev_hash
        entry.hash = entry_hash
        if len(row) > 9:
            entry.format, entry.salt, entry.payload_root, redactions = row[9:13]
            entry.format = entry.format or FORMAT_LEGACY
            entry.redactions = json.loads(redactions) if isinstance(redactions, str) else redactions
        else:
            entry.format, entry.salt, entry.payload_root, entry.redactions = FORMAT_LEGACY, None, None, None
        return entry

    def check_payload(self):
        """None when the stored payload opens its commitments (and, for format 1, its hash), else why not."""
        root = None
        if self.format in COMMITTED_FORMATS and not self.redactions and self.salt:
            # one pass gives both the canonical text and the root (the same code that sealed it)
            try:
                canonical, root, _seed = commitments.seal_payload(self.data, self.salt, cut=self.cut())
            except (ValueError, TypeError):
                return "its salt seed %r is not hexadecimal" % (self.salt,)
        else:
            canonical = canonical_json(self.data) if self.stored_data is not None else None
        if self.stored_data is not None and self.stored_data != canonical:
            return ("its stored data is not in canonical form (for example a key given twice), so what a query"
                    " reads from it can differ from what its hash covers")
        if self.format == FORMAT_LEGACY and not self.redactions:
            return None  # the hash itself covers the data
        if root is None:
            try:
                root = commitments.payload_root(self.data, self.salt, self.redactions, cut=self.cut())
            except commitments.PayloadMismatch as exc:
                return "its payload does not open its commitments: %s" % exc
            except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
                # a redaction state of another shape than a redaction writes (salts not hex, not a list...)
                return "its payload does not open its commitments: its redaction state is malformed (%s)" % exc
        if root != self.payload_root:
            return "its content does not match its commitments"
        return None


class VerifyReport(object):
    """Result of walking the chain; ``first_broken`` is None when it is intact."""

    def __init__(self, entries_checked, head_hash, head_seq, first_broken=None, anchor_mismatch=None):
        self.entries_checked = entries_checked
        self.head_hash = head_hash
        self.head_seq = head_seq
        self.first_broken = first_broken
        self.anchor_mismatch = anchor_mismatch
        #: True when every payload was opened against its commitments, False for a chain-only walk
        self.payloads_checked = True
        #: fields removed by ``ledger_redact``, each with the ``ledger.redacted`` entry that did it
        self.redactions = []
        #: the first disagreement with a checkpoint kept outside the database (``checkpoints.py``)
        self.history_mismatch = None
        #: what the comparison with checkpoints found (filled by ``checkpoints.check_report``)
        self.checkpoints = None
        #: the walk started after this entry (0: the whole ledger); see ``verify_rows``'s ``base``
        self.base_seq = 0
        #: entries up to this one are in archives (0: none); witness checkpoints among them not compared here
        self.archived_through = 0
        self.archived_anchors = 0
        #: None: not asked for; True: compared; False: asked for but the ledger kept changing
        self.projections_checked = None
        self.projection_problems = []

    @property
    def valid(self):
        return (self.first_broken is None and self.anchor_mismatch is None and self.history_mismatch is None
                and not self.projection_problems)

    def to_dict(self):
        return {
            "valid": self.valid,
            "entries_checked": self.entries_checked,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "first_broken": self.first_broken,
            "anchor_mismatch": self.anchor_mismatch,
            "history_mismatch": self.history_mismatch,
            "checkpoints": self.checkpoints,
            "payloads_checked": self.payloads_checked,
            "base_seq": self.base_seq,
            "archived_through": self.archived_through,
            "redactions": list(self.redactions),
            "projections_checked": self.projections_checked,
            "projection_problems": list(self.projection_problems),
            "summary": self.summary(),
        }

    def summary(self):
        if self.first_broken:
            return "ledger chain broken at entry %s: %s" % (
                self.first_broken["seq"], self.first_broken["detail"])
        if self.history_mismatch:
            return self.history_mismatch["detail"]
        if self.anchor_mismatch:
            return self.anchor_mismatch
        if self.projection_problems:
            first = self.projection_problems[0]
            return "ledger chain intact, but the query tables disagree with it (%d problem%s, first: %s)" % (
                len(self.projection_problems), "" if len(self.projection_problems) == 1 else "s", first["detail"])
        summary = "ledger chain verified: %d entries, head %s" % (
            self.entries_checked, (self.head_hash or GENESIS_HASH)[:16])
        if self.archived_through:
            summary += " after the %d archived" % self.archived_through
        if not self.payloads_checked:
            summary += " (chain only: payloads not opened)"
        if self.redactions:
            summary += "; %d field%s redacted (%s)" % (
                len(self.redactions), "" if len(self.redactions) == 1 else "s",
                ", ".join("entry %s %s" % (item["seq"], item["field"]) for item in self.redactions[:5])
                + (", ..." if len(self.redactions) > 5 else ""))
        if self.checkpoints and self.checkpoints.get("summary"):
            summary += "; " + self.checkpoints["summary"]
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


def _rows_factory(rows):
    """A function returning a fresh iterator over ``rows`` (a callable or a re-iterable collection)."""
    if callable(rows):
        return rows
    if iter(rows) is rows:  # a one-shot iterator: keep what it yields for a second look
        rows = list(rows)
    return lambda: iter(rows)


class _Summary(object):
    __slots__ = ("seq", "kind", "subject")

    def __init__(self, entry):
        self.seq, self.kind, self.subject = entry.seq, entry.kind, entry.subject


def _link_problem(rows, entry, previous, previous_previous, base=(0, GENESIS_HASH)):
    """Why ``entry`` does not follow ``previous``: inserted, reordered, rewritten or deleted.

    Only reached on a break, so it may walk the ledger once more to find where ``prev_hash`` points.
    ``base``: ``(seq, hash)`` the walk started after (``(0, GENESIS_HASH)`` for the whole ledger).
    """
    skipped_hash = previous_previous.hash if previous_previous is not None else base[1]
    if previous is not None and entry.prev_hash == skipped_hash:
        # an entry forged in front of the first one sits between entry 1 and the genesis hash
        return _broken(
            previous, "inserted",
            "entry %s (%s %s) was inserted: entry %s is chained directly to %s" % (
                previous.seq, previous.kind, previous.subject, entry.seq,
                "entry %s" % previous_previous.seq if previous_previous is not None else (
                    "entry %s" % base[0] if base[0] else "the start of the chain")))
    linked = None
    for other in rows():
        if other.hash == entry.prev_hash:
            linked = _Summary(other)
            break
    if linked is not None:
        return _broken(
            entry, "reordered",
            "entry %s (%s %s) was moved: it follows entry %s in the chain, not entry %s" % (
                entry.seq, entry.kind, entry.subject, linked.seq, previous.seq if previous else (
                    base[0] if base[0] else "(start)")))
    if previous is not None and entry.seq == previous.seq + 1:
        # Adjacent positions, unknown link: the predecessor was edited and its hash
        # recomputed (or the rows after a deletion were renumbered). The earliest
        # entry that can have been altered is the predecessor: name it.
        broken = _broken(
            previous, "edited",
            "entry %s (%s %s) was rewritten: its hash was recomputed, but entry %s still names the "
            "original (%s); or entries after entry %s were deleted and the rest renumbered" % (
                previous.seq, previous.kind, previous.subject, entry.seq, (entry.prev_hash or "")[:16], previous.seq))
        broken["next_seq"] = entry.seq
        return broken
    missing_from = previous.seq + 1 if previous else base[0] + 1
    broken = _broken(
        entry, "deleted",
        "entry %s was deleted: entry %s (%s %s) names a predecessor (%s) that is no longer in the ledger"
        % ("%s to %s" % (missing_from, entry.seq - 1) if entry.seq - 1 > missing_from else missing_from,
           entry.seq, entry.kind, entry.subject, (entry.prev_hash or "")[:16]))
    broken["seq"] = missing_from
    broken["next_seq"] = entry.seq
    return broken


def _tombstone_path(key):
    """The path tuple of a stored tombstone's ``path_json`` key, or None when it is not one."""
    try:
        path = json.loads(key)
    except (TypeError, ValueError):
        return None
    if not isinstance(path, list) or not 1 <= len(path) <= 2 or not isinstance(path[0], str):
        return None
    return tuple(path)


def _path_label(key):
    path = _tombstone_path(key)
    return commitments.path_text(path) if path else key


def _stored_value(entry, key):
    """The value an entry holds at the tombstone key ``key`` (a path's JSON), or None."""
    path = _tombstone_path(key)
    try:
        return commitments.field_value(entry.data, path) if path else None
    except (KeyError, IndexError, TypeError):
        return None


class _Redactions(object):
    """Tombstones met in the walk and the ``ledger.redacted`` entries that account for them."""

    def __init__(self):
        self.tombstones = {}  # (seq, path_json) -> (entry summary, commitment)
        self.targets = {}  # seq -> (entry id, hash, format, payload_root, kind)
        self.records = []  # (redaction entry, field dict)
        self.malformed = []  # ledger.redacted entries whose list of fields is not one a redaction writes
        # the seqs of the entries walked or loaded: a walk notes consecutive seqs, kept as one range so that its
        # memory does not grow with the ledger (a set of every seq was ~60 MB per 1,000,000 entries walked);
        # any seq that does not extend the range (entries loaded from before a base, a fast walk's sparse ones)
        # goes to the set
        self._first = self._last = None
        self._other_seqs = set()

    def loaded(self, seq):
        return (self._first is not None and self._first <= seq <= self._last) or seq in self._other_seqs

    def _note_seq(self, seq):
        if self._first is None:
            self._first = self._last = seq
        elif seq == self._last + 1:
            self._last = seq
        elif not self._first <= seq <= self._last:
            self._other_seqs.add(seq)

    def note_entry(self, entry):
        self._note_seq(entry.seq)
        if entry.redactions:
            self.targets[entry.seq] = (entry.id, entry.hash, entry.format, entry.payload_root, entry.kind)
            for path, digest in (entry.redactions.get("tombstones") or {}).items():
                self.tombstones[(entry.seq, path)] = (entry, digest)

    def note_record(self, entry):
        data = entry.data
        fields = data.get("fields") if isinstance(data, dict) else None
        if (fields is not None and not isinstance(fields, list)) or any(
                not isinstance(field, dict) for field in fields or ()):
            # not what redaction_entry writes: an edit to name, not a walk to crash
            self.malformed.append(entry)
            return
        for field in fields or []:
            self.records.append((entry, data, field))

    def problem(self, accounted_until=0):
        """The first unaccounted tombstone or unkept redaction, as a ``first_broken`` dict, or None.

        ``accounted_until``: the walk started after this entry (a verified marker, an archive): redactions of
        earlier entries recorded before it were checked then, so only those recorded in this walk count.
        """
        problems = [(entry.seq, _broken(entry, "edited", "entry %s (%s) was edited: its list of redacted fields is not"
                                                         " one ledger_redact writes" % (entry.seq, entry.kind)))
                    for entry in self.malformed]
        accounted = set()
        for (seq, key), (entry, _digest) in self.tombstones.items():
            # ledger_redact refuses these fields, so a tombstone there was written by someone else (a forged
            # ledger.redacted entry vouching for it would still be in the chain: it must not make it pass). Formats 1
            # and 2 predate this check and the table's present shape: held to it, an old legitimate redaction of a
            # field protected only since could read as an edit
            path = _tombstone_path(key)
            table = protected_fields.VERIFIED_TABLES.get(entry.format)
            if table is not None and (path is None or protected_fields.protected_path(entry.kind, path, table)
                                      is not None):
                problems.append((seq, _broken(
                    entry, "edited",
                    "entry %s (%s %s) was edited: its field %s holds a tombstone, but that field may not be redacted "
                    "(the query tables or the change event's authorisation are derived from it)"
                    % (seq, entry.kind, entry.subject, _path_label(key)))))
        for record, data, field in self.records:
            key = (data.get("entry_seq"), field.get("path_json"))
            target = self.targets.get(data.get("entry_seq"))
            if target is None and isinstance(data.get("entry_seq"), int) and data["entry_seq"] <= accounted_until \
                    and not self.loaded(data["entry_seq"]):
                # its entry lies before this walk and is not in the ledger: archived (the archive carries this
                # record and checks its tombstone), or removed before the base, which only a full walk can tell
                continue
            if key not in self.tombstones or target is None or target[0] != data.get("entry_id"):
                problems.append((data.get("entry_seq") or record.seq, {
                    "seq": data.get("entry_seq"), "entry_id": data.get("entry_id"), "kind": data.get("entry_kind"),
                    "problem": "edited",
                    "detail": "entry %s (%s) holds field %s again, although ledger entry %s redacted it" % (
                        data.get("entry_seq"), data.get("entry_kind"), field.get("field"), record.seq)}))
                continue
            entry, digest = self.tombstones[key]
            if _stored_value(entry, key[1]) != commitments.tombstone(record.seq):
                # a tombstone is a fixed text: anything written after its prefix would read as part of the record
                problems.append((entry.seq, _broken(
                    entry, "edited",
                    "entry %s (%s %s) was edited: field %s does not hold the tombstone ledger entry %s wrote" % (
                        entry.seq, entry.kind, entry.subject, field.get("field"), record.seq))))
                continue
            if digest != field.get("commitment") or target[1] != data.get("entry_hash") or (
                    target[2] == FORMAT_LEGACY and target[3] != data.get("payload_root")):
                problems.append((entry.seq, _broken(
                    entry, "edited",
                    "entry %s (%s %s) was edited: field %s does not hold the commitment that ledger entry %s"
                    " recorded when it redacted it" % (
                        entry.seq, entry.kind, entry.subject, field.get("field"), record.seq))))
                continue
            if record.seq <= entry.seq:
                problems.append((entry.seq, _broken(
                    entry, "edited",
                    "entry %s (%s %s) was edited: its field %s is redacted by ledger entry %s, which comes before it"
                    % (entry.seq, entry.kind, entry.subject, field.get("field"), record.seq))))
                continue
            accounted.add(key)
        vouched = set(data.get("entry_seq") for _record, data, _field in self.records)
        for seq, target in self.targets.items():
            # a format-1 entry's hash no longer covers a redacted payload: only a ledger.redacted entry, whose
            # recorded root the checks above compared, binds what it holds now
            if target[2] == FORMAT_LEGACY and seq not in vouched and seq > accounted_until:
                problems.append((seq, {
                    "seq": seq, "entry_id": target[0], "kind": target[4], "problem": "edited",
                    "detail": "entry %s (%s) was edited: it is marked as redacted, but no ledger.redacted entry"
                              " vouches for it" % (seq, target[4])}))
        for key, (entry, _digest) in self.tombstones.items():
            if key not in accounted and entry.seq > accounted_until:
                problems.append((entry.seq, _broken(
                    entry, "edited",
                    "entry %s (%s %s) was edited: field %s was removed without a ledger.redacted entry" % (
                        entry.seq, entry.kind, entry.subject, _path_label(key[1])))))
        if not problems:
            return None
        return sorted(problems, key=lambda item: item[0] or 0)[0][1]

    def listing(self):
        items = []
        for record, data, field in self.records:
            items.append({
                "seq": data.get("entry_seq"), "entry_id": data.get("entry_id"), "kind": data.get("entry_kind"),
                "field": field.get("field"), "redacted_by": record.seq, "redacted_by_id": record.id,
                "at": record.at, "by": data.get("redacted_by"), "reason": data.get("reason"),
            })
        return items


def entry_problem(entry, payloads=True):
    """Why one stored entry no longer matches its hash or its commitments, or None when it does.

    The per-entry half of :func:`verify_rows` (which adds the links between entries and the redaction
    records): a reader that shows a few entries (the review service's change page) checks them with it.
    ``payloads``: open the payload against its commitments too (redacted entries always are, and
    ``ledger.redacted`` entries: what one vouches for is read from its payload, so an edit there must not pass a
    chain-only walk).
    """
    problem = None
    if payloads or entry.redactions or entry.kind == KIND_REDACTED:
        problem = entry.check_payload()
    if problem is None and not (entry.format == FORMAT_LEGACY and entry.redactions):
        if entry.format not in KNOWN_FORMATS:
            problem = "its format %r is unknown" % (entry.format,)
        elif entry.compute_hash(entry.prev_hash or "") != entry.hash:
            problem = "its content does not match its hash"
    return problem


def _anchor_index(anchors):
    wanted = {}
    for anchor in anchors or ():
        wanted.setdefault(anchor["seq"], []).append(anchor)
    return wanted


def verify_rows(rows, expected_head=None, payloads=True, anchors=None, base=None, load_entries=None,
                extra_records=()):
    """Walk ``rows`` (:class:`Entry` in ascending ``seq``: a list, or a function returning a fresh
    iterator) and report the first break.

    Problems, in the order they are checked for each entry:

    ``edited``      the entry's content no longer matches its hash or its commitments, or its
                    stored ``data`` text is not the canonical JSON of what it parses to (a
                    duplicated key: the hash covers the value a JSON parser keeps, a query may
                    read the other one), or a field was removed without a ``ledger.redacted``
                    entry (or holds a value again after one);
    ``deleted``     its ``prev_hash`` names no entry still in the ledger, or
                    the sequence numbers skip;
    ``inserted``    it sits between two entries that were chained directly;
    ``reordered``   its ``prev_hash`` names an entry elsewhere in the ledger.

    ``payloads``: open every payload against its commitments (False: the chain of hashes only,
    which needs no parsing; entries holding redactions are opened either way).

    ``expected_head`` (a hash recorded elsewhere, e.g. printed by an earlier
    verify) must be the hash of some entry in the chain: if the tail was
    truncated or rewritten it no longer is.

    ``anchors``: ``[{"seq", "hash", "detail_rewritten", "detail_truncated"}]``, heads kept outside the
    database (checkpoints): the entry at ``seq`` must have ``hash``, and the ledger must reach ``seq``.
    The first that fails becomes ``history_mismatch``.

    ``base``: ``(seq, hash)`` of an entry something else vouches for (a verified-up-to marker, the last
    entry of an archive): ``rows`` are the entries after it, the first must chain onto ``hash``, and
    anchors at or before ``seq`` are left to the caller. ``load_entries(seqs)`` gives the entries at or
    before ``base`` that ``ledger.redacted`` entries in ``rows`` redact (their tombstones are checked
    against those records; older redactions were accounted for when the base was verified).
    ``extra_records``: ``ledger.redacted`` entries from after ``rows`` that redact entries in them (an
    archive carries those made after its last entry, before it was archived).
    """
    rows = _rows_factory(rows)
    base = tuple(base) if base else (0, GENESIS_HASH)
    wanted = _anchor_index(anchors)
    anchor_failures = []
    redactions = _Redactions()
    anchor_found = False
    count = 0
    previous = None
    previous_previous = None
    broken = None
    iterator = rows()
    for entry in iterator:
        count += 1
        problem = entry_problem(entry, payloads)
        if problem is not None:
            broken = _broken(entry, "edited", "entry %s (%s %s) was edited: %s" % (
                entry.seq, entry.kind, entry.subject, problem))
            break
        expected_prev = previous.hash if previous else base[1]
        if entry.prev_hash != expected_prev:
            broken = _link_problem(rows, entry, previous, previous_previous, base)
            break
        expected_seq = previous.seq + 1 if previous is not None else base[0] + 1
        if entry.seq != expected_seq and (previous is not None or base[0]):
            broken = _broken(entry, "deleted", "entries %s to %s before entry %s are missing" % (
                expected_seq, entry.seq - 1, entry.seq))
            broken["seq"] = expected_seq
            broken["next_seq"] = entry.seq
            break
        redactions.note_entry(entry)
        if entry.kind == KIND_REDACTED:
            redactions.note_record(entry)
        if entry.seq in wanted:
            for anchor in wanted[entry.seq]:
                if anchor["hash"] != entry.hash:
                    anchor_failures.append(dict(anchor, problem="rewritten", detail=anchor["detail_rewritten"]))
        if expected_head and entry.hash == expected_head:
            anchor_found = True
        # keep only what the next entry's checks need (not the payload)
        previous_previous, previous = previous, _Link(entry)

    if broken is not None:
        for _entry in iterator:
            count += 1
        return VerifyReport(count, None, None, broken)
    head = (previous.seq, previous.hash) if previous else (base[0], base[1] if base[0] else None)
    for record in extra_records:
        redactions.note_record(record)
    return _finish_walk(count, head, payloads, redactions, base, load_entries, wanted, anchor_failures,
                        expected_head, anchor_found)


def _finish_walk(count, head, payloads, redactions, base, load_entries, wanted, anchor_failures, expected_head,
                 anchor_found):
    """The report of a walk that found every link intact: redactions accounted, anchors, expected head."""
    if base[0] and load_entries is not None:
        # the entries at or before the base that this walk's ledger.redacted records redact
        targets = set(data.get("entry_seq") for _record, data, _field in redactions.records)
        targets = sorted(seq for seq in targets if isinstance(seq, int) and seq <= base[0])
        for entry in load_entries(targets) if targets else ():
            redactions.note_entry(entry)
    broken = redactions.problem(accounted_until=base[0])
    if broken is not None:
        return VerifyReport(count, None, None, broken)
    head_seq, head_hash = head
    report = VerifyReport(count, head_hash, head_seq)
    report.payloads_checked = bool(payloads)
    report.redactions = redactions.listing()
    report.base_seq = base[0]
    if expected_head and not anchor_found and expected_head != (base[1] if base[0] else None):
        report.anchor_mismatch = (
            "the anchored head %s is not in the ledger: entries after it were removed or the chain was rewritten"
            % expected_head[:16])
    for seq in sorted(wanted):
        if seq > head_seq:
            for anchor in wanted[seq]:
                anchor_failures.append(dict(anchor, problem="truncated", detail=anchor["detail_truncated"]))
    if anchor_failures:
        # a rewrite is reported at the oldest checkpoint it contradicts; a truncation at the newest one
        rewritten = [failure for failure in anchor_failures if failure["problem"] == "rewritten"]
        first = min(rewritten, key=lambda failure: failure["seq"]) if rewritten else max(
            anchor_failures, key=lambda failure: failure["seq"])
        report.history_mismatch = {key: value for key, value in first.items()
                                   if key not in ("detail_rewritten", "detail_truncated")}
    return report


#: :func:`walk_chain` reads ``Entry.from_row`` rows whose ``data`` is None unless this SQL condition holds (format 1,
#: an entry holding redactions, a ``ledger.redacted`` record) and whose ``salt`` is None unless
#: :data:`CHAIN_ROW_SALT_NEEDED` holds (a chain-only walk opens only redacted entries' payloads and the
#: ``ledger.redacted`` records, whose payloads say what they vouch for)
CHAIN_ROW_DATA_NEEDED = "entry_format NOT IN (%s) OR redactions IS NOT NULL OR kind = '%s'" % (
    ", ".join(str(entry_format) for entry_format in COMMITTED_FORMATS), KIND_REDACTED)
CHAIN_ROW_SALT_NEEDED = "redactions IS NOT NULL OR kind = '%s'" % KIND_REDACTED


def walk_chain(rows, expected_head=None, anchors=None, base=None, load_entries=None):
    """The chain-only verification (``verify_rows(..., payloads=False)``) at the speed of the hashing.

    ``rows`` is an iterable of raw ledger rows in ``seq`` order, in ``Entry.from_row`` order, whose ``data`` and
    ``salt`` are None except where the checks need them (:data:`CHAIN_ROW_DATA_NEEDED`,
    :data:`CHAIN_ROW_SALT_NEEDED`). A plain format-2 or -3 row (no redactions, a payload root, not a ``ledger.redacted``
    record) costs one hash and no object: ``sha256(prev_hash || header_json(...))`` built from its stored columns
    by one format string, after checking that its ``prev_hash`` is the previous row's ``hash`` and its ``seq``
    the next one. Every other row takes the general path, row by row: an ``Entry`` checked by
    :func:`entry_problem` and noted for the redaction checks, exactly as :func:`verify_rows` does.

    Returns the report when every link holds, and None as soon as anything does not: the caller then runs
    :func:`verify_rows`, whose report says exactly what broke and where (a broken ledger is the rare case,
    and its report must not depend on which walk found it).
    """
    base = tuple(base) if base else (0, GENESIS_HASH)
    wanted = _anchor_index(anchors)
    anchor_failures = []
    redactions = _Redactions()
    anchor_found = False
    quote = _encode_string
    sha256 = _sha256
    committed, redacted_kind = COMMITTED_FORMATS, KIND_REDACTED
    last_seq, last_hash = base
    rows = iter(rows)
    first = next(rows, None)
    if first is not None and not base[0]:
        # a whole-ledger walk does not check the first entry's position (as verify_rows), only its link
        last_seq = first[0] - 1
    first_seq = last_seq + 1
    for row in itertools.chain((first,), rows) if first is not None else ():
        seq, entry_id, at, kind, subject, actor, _data, prev_hash, entry_hash, entry_format, _salt, root, marks = row
        if prev_hash != last_hash or seq != last_seq + 1:
            return None
        if marks is None and entry_format in committed and root is not None and kind != redacted_kind:
            if sha256(("%s[%d,%s,%s,%s,%s,%s,%s]" % (
                    prev_hash, entry_format, quote(entry_id), quote(at), quote(kind),
                    "null" if subject is None else quote(subject) if subject.__class__ is str else encode_value(subject),
                    "null" if actor is None else quote(actor) if actor.__class__ is str else encode_value(actor),
                    quote(root))).encode("utf-8")).hexdigest() != entry_hash:
                return None
        else:
            entry = Entry.from_row(row)
            if entry_problem(entry, False) is not None:
                return None
            redactions.note_entry(entry)
            if kind == redacted_kind:
                redactions.note_record(entry)
        if seq in wanted:
            for anchor in wanted[seq]:
                if anchor["hash"] != entry_hash:
                    anchor_failures.append(dict(anchor, problem="rewritten", detail=anchor["detail_rewritten"]))
        if entry_hash == expected_head:
            anchor_found = True
        last_seq, last_hash = seq, entry_hash
    count = last_seq - first_seq + 1
    head = (last_seq, last_hash) if count else (base[0], base[1] if base[0] else None)
    report = _finish_walk(count, head, False, redactions, base, load_entries, wanted, anchor_failures, expected_head,
                          anchor_found)
    return None if report.first_broken is not None else report


class _Link(object):
    """What the walk keeps of an entry once it was checked: its position and hash."""

    __slots__ = ("seq", "id", "kind", "subject", "hash")

    def __init__(self, entry):
        self.seq, self.id, self.kind, self.subject, self.hash = entry.seq, entry.id, entry.kind, entry.subject, entry.hash


def new_entry(kind, subject, data, actor=None):
    return Entry(kind=kind, subject=subject, data=data, actor=actor)
