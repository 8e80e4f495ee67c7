# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The archive file: gzip-compressed JSON Lines, readable with ``zcat`` and ``jq`` alone.

::

    {"type": "changeops.ledger.archive", "v": 1, "ledger": ..., "location": ..., "first_seq": F, "last_seq": L,
     "prev_hash": <hash of entry F-1, or 64 zeros>, "cutoff": ..., "created_at": ..., "created_by": ...,
     "witnessed": [<the witnesses' checkpoints of entries F..L>],
     "later_redactions": [<ledger.redacted entries after L that redact entries F..L>]}
    {"seq": F, "id": ..., "at": ..., "kind": ..., "subject": ..., "actor": ..., "data": {...}, "prev_hash": ...,
     "hash": ..., "format": 2, "salt": ..., "payload_root": ..., "redactions": null}
    ...                                              (every entry F..L, as the ledger stored it)
    {"type": "changeops.ledger.archive.end", "entries": N, "last_hash": <hash of entry L>,
     "checkpoint": {<the checkpoint of entry L, signed when a key is configured>},
     "state": [[table, row_json], ...], "state_digest": ...}

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

HEADER_TYPE = "changeops.ledger.archive"
TRAILER_TYPE = "changeops.ledger.archive.end"
VERSION = 1
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
        self._line(dict(header, type=HEADER_TYPE, v=VERSION))

    def _line(self, document):
        self._gzip.write((canonical_json(document) + "\n").encode("utf-8"))

    def entry(self, entry):
        self._line(entry.to_dict())
        self.entries += 1

    def finish(self, trailer):
        self._line(dict(trailer, type=TRAILER_TYPE, entries=self.entries))
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


class ArchiveReader(object):
    """Reads an archive: :attr:`header` at once, the entries as :meth:`entries` yields them, then :attr:`trailer`.

    A malformed file raises ``ValidationError`` naming the file and the line."""

    def __init__(self, path):
        self.path = path
        self.trailer = None
        self._lines = self._read()
        self.header = self._next_document(1)
        if self.header.get("type") != HEADER_TYPE:
            raise ValidationError("%s: line 1 is not a changeops ledger archive header (type %r)"
                                  % (path, self.header.get("type")), path=path)
        if self.header.get("v") != VERSION:
            raise ValidationError("%s: archive format version %r is not one this collection reads (%d)"
                                  % (path, self.header.get("v"), VERSION), path=path)

    def _read(self):
        try:
            with gzip.open(self.path, "rb") as handle:
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
        except ValueError as exc:
            raise ValidationError("%s: line %d is not JSON: %s" % (self.path, number, exc), path=self.path, line=number)
        if not isinstance(document, dict):
            raise ValidationError("%s: line %d is not a JSON object" % (self.path, number), path=self.path, line=number)
        return document

    def entries(self):
        """Yield every archived entry (``ledger.Entry``, as stored); sets :attr:`trailer` at the end."""
        for number, line in self._lines:
            document = self._parse(number, line)
            if document.get("type") == TRAILER_TYPE:
                self.trailer = document
                for extra_number, _extra in self._lines:
                    raise ValidationError("%s: line %d follows the archive's end record" % (self.path, extra_number),
                                          path=self.path, line=extra_number)
                return
            try:
                entry = Entry.from_dict(document)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValidationError("%s: line %d is not a ledger entry: %s" % (self.path, number, exc),
                                      path=self.path, line=number)
            yield entry
        raise ValidationError("%s: the archive has no end record (it was cut short)" % self.path, path=self.path)
