# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The archive file: gzip-compressed JSON Lines, readable with ``zcat`` and ``jq`` alone.

::

    {"type": "changeops.ledger.archive", "v": 3, "ledger": ..., "location": ..., "first_seq": F, "last_seq": L,
     "prev_hash": <hash of entry F-1, or 64 zeros>, "cutoff": ..., "created_at": ..., "created_by": ...,
     "witnessed": [<the witnesses' checkpoints of entries F..L>],
     "later_redactions": [<ledger.redacted entries after L that redact entries F..L>]}
    {"seq": F, "id": ..., "at": ..., "kind": ..., "subject": ..., "actor": ..., "data": {...}, "prev_hash": ...,
     "hash": ..., "format": 3, "salt": ..., "payload_root": ..., "redactions": null}
    ...                                              (every entry F..L, as the ledger stored it)
    {"type": "changeops.ledger.archive.state", "table": T, "row": <row_json>}
    ...                                              (every row of the query tables' state at entry L, one per line,
                                                      sorted by table, then row text)
    {"type": "changeops.ledger.archive.end", "entries": N, "last_hash": <hash of entry L>,
     "checkpoint": {<the checkpoint of entry L, signed when a key is configured>},
     "state_rows": M, "state_digest": ...}

The state is written, read and digested a row at a time, so no step holds it whole: it keeps a row per archived
run and host, and grows with everything ever archived. Version 1 archives (before 2026-12-07) carried it inside
the end record (``"state": [[table, row_json], ...]``); they are still read and verified.

The entries carry their hashes, salts and commitments: the file proves itself (``verify.py``) with the
collection's own verification, and the checkpoint (and the witnesses' copies of it) ties it to the ledger
it came from; the live ledger records the file's SHA-256 in its ``ledger.archived`` entry.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.projection_check import StateDigest

HEADER_TYPE = "changeops.ledger.archive"
STATE_TYPE = "changeops.ledger.archive.state"
TRAILER_TYPE = "changeops.ledger.archive.end"
#: the format this collection writes; it reads :data:`READABLE_VERSIONS`
VERSION = 3
#: version 1 carried the state inside the end record; version 3 is version 2's layout, its entries of any entry format
#: (a collection from before entry format 3 refuses it by its version rather than calling those entries edited)
READABLE_VERSIONS = (1, 2, 3)
#: text every state and end record holds (in its type), and an entry's line only inside its payload: lines without
#: it are entries, skipped unparsed when only the state is read
_RECORD_MARK = b"changeops.ledger.archive."
SUFFIX = ".jsonl.gz"


def archive_name(ledger_id, first_seq, last_seq):
    """``changeops-ledger-<first 12 hex digits of the ledger id>-<first seq>-<last seq>.jsonl.gz``: sorts in order."""
    return "changeops-ledger-%s-%012d-%012d%s" % ((ledger_id or "empty")[:12], first_seq, last_seq, SUFFIX)


def file_sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                return digest.hexdigest()
            digest.update(block)


class ArchiveWriter(object):
    """Writes one archive to ``path`` + ``.tmp``; :meth:`finish` fsyncs it and returns the temporary path (the
    caller verifies it, then moves it into place with :func:`publish`)."""

    def __init__(self, path, header, level=6):
        self.path = path
        self.temporary = path + ".tmp"
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        descriptor = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._raw = os.fdopen(descriptor, "wb")
        # mtime 0: the same entries give the same bytes
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=level, mtime=0)
        self.entries = 0
        #: the state rows' digest, taken as they are written (they must come sorted: ``StateDigest``)
        self.state = StateDigest()
        self._line(dict(header, type=HEADER_TYPE, v=VERSION))

    def _line(self, document):
        self._gzip.write((canonical_json(document) + "\n").encode("utf-8"))

    def entry(self, entry):
        self._line(entry.to_dict())
        self.entries += 1

    def state_row(self, table, row_json):
        """One row of the query tables' state, after every entry; rows in sorted order."""
        self.state.update(table, row_json)
        self._line({"type": STATE_TYPE, "table": table, "row": row_json})

    def finish(self, trailer):
        """Write the end record (``trailer``, with the entry and state counts and the state digest added)."""
        self._line(dict(trailer, type=TRAILER_TYPE, entries=self.entries, state_rows=self.state.rows,
                        state_digest=self.state.hexdigest()))
        self._gzip.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        return self.temporary

    def abort(self):
        for closer in (self._gzip.close, self._raw.close):
            try:
                closer()
            except (OSError, ValueError):
                pass
        if os.path.exists(self.temporary):
            os.unlink(self.temporary)


def publish(temporary, path):
    """Move a verified archive into place and make the move durable."""
    os.replace(temporary, path)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class _Hashing(object):
    """A file read through, its bytes fed to ``digest`` (what ``gzip`` reads of the compressed file)."""

    def __init__(self, raw, digest):
        self._raw = raw
        self._digest = digest

    def read(self, size=-1):
        data = self._raw.read(size)
        self._digest.update(data)
        return data


class ArchiveReader(object):
    """Reads an archive in one pass: :attr:`header` at once, the entries as :meth:`entries` yields them, the
    query tables' state as :meth:`state_rows` yields it, and :attr:`trailer`, the end record, once read.

    A malformed file raises ``ValidationError`` naming the file and the line."""

    def __init__(self, path, sha256=None):
        self.path = path
        #: a ``hashlib`` object fed the file's bytes as they are read (complete once the end record was read)
        self.sha256 = sha256
        self.trailer = None
        #: the state or end record that ended the entries, ``(line number, document)``, not yet handed out
        self._after_entries = None
        self._lines = self._read()
        self.header = self._next_document(1)
        if self.header.get("type") != HEADER_TYPE:
            raise ValidationError("%s: line 1 is not a changeops ledger archive header (type %r)"
                                  % (path, self.header.get("type")), path=path)
        self.version = self.header.get("v")
        if self.version not in READABLE_VERSIONS:
            raise ValidationError("%s: archive format version %r is not one this collection reads (%s)"
                                  % (path, self.version, ", ".join(map(str, READABLE_VERSIONS))), path=path)

    def _read(self):
        try:
            with open(self.path, "rb") as raw:
                source = raw if self.sha256 is None else _Hashing(raw, self.sha256)
                with gzip.GzipFile(fileobj=source, mode="rb") as handle:
                    for number, line in enumerate(handle, start=1):
                        yield number, line
        except (OSError, EOFError) as exc:
            raise ValidationError("%s: cannot read the archive: %s" % (self.path, exc), path=self.path)

    def _next_document(self, expected_line):
        try:
            number, line = next(self._lines)
        except StopIteration:
            raise ValidationError("%s: the archive ends before line %d (it was cut short)" % (self.path, expected_line),
                                  path=self.path)
        return self._parse(number, line)

    def _parse(self, number, line):
        try:
            document = json.loads(line)
        except (ValueError, RecursionError) as exc:  # (RecursionError: nesting deeper than the parser goes)
            raise ValidationError("%s: line %d is not JSON: %s" % (self.path, number, exc), path=self.path, line=number)
        if not isinstance(document, dict):
            raise ValidationError("%s: line %d is not a JSON object" % (self.path, number), path=self.path, line=number)
        return document

    def _end(self, document):
        self.trailer = document
        for extra_number, _extra in self._lines:
            raise ValidationError("%s: line %d follows the archive's end record" % (self.path, extra_number),
                                  path=self.path, line=extra_number)

    def _record_type(self, number, document):
        """The type of a state or end record (None: an entry); a state record in a version 1 archive is refused."""
        kind = document.get("type")
        if kind == STATE_TYPE and self.version == 1:
            raise ValidationError("%s: line %d is a state record, which a version 1 archive does not hold"
                                  % (self.path, number), path=self.path, line=number)
        return kind if kind in (STATE_TYPE, TRAILER_TYPE) else None

    def entries(self):
        """Yield every archived entry (``ledger.Entry``, as stored), up to the state (:meth:`state_rows`)."""
        for number, line in self._lines:
            document = self._parse(number, line)
            kind = self._record_type(number, document)
            if kind is not None:
                self._after_entries = (number, document)
                return
            try:
                entry = Entry.from_dict(document)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValidationError("%s: line %d is not a ledger entry: %s" % (self.path, number, exc),
                                      path=self.path, line=number)
            yield entry
        raise self._cut_short()

    def _cut_short(self):
        return ValidationError("%s: the archive has no end record (it was cut short)" % self.path, path=self.path)

    def _skip_entries(self):
        """The record that ends the entries, reading past those :meth:`entries` did not yield, unparsed."""
        if self._after_entries is None:
            for number, line in self._lines:
                if _RECORD_MARK in line:
                    document = self._parse(number, line)
                    if self._record_type(number, document) is not None:
                        self._after_entries = (number, document)
                        break
            else:
                raise self._cut_short()
        found, self._after_entries = self._after_entries, False
        return found

    def state_rows(self):
        """Yield the query tables' state as ``(table, row_json)``, in the file's order (entries not read are
        skipped); sets :attr:`trailer` at the end. A version 1 archive's rows come from its end record."""
        if self._after_entries is False:
            raise ValueError("the state of %s was read already" % self.path)
        number, document = self._skip_entries()
        while document.get("type") == STATE_TYPE:
            table, row = document.get("table"), document.get("row")
            if not isinstance(table, str) or not isinstance(row, str):
                raise ValidationError("%s: line %d is a state record without a table and a row text"
                                      % (self.path, number), path=self.path, line=number)
            yield table, row
            try:
                number, line = next(self._lines)
            except StopIteration:
                raise self._cut_short()
            document = self._parse(number, line)
            if self._record_type(number, document) is None:
                raise ValidationError("%s: line %d is an entry after the archive's state" % (self.path, number),
                                      path=self.path, line=number)
        self._end(document)
        if self.version == 1:
            for table, row in document.get("state") or ():
                yield table, row
