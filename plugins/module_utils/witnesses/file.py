# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The append-only file witness: one JSON line per checkpoint (option ``witness_file``).

Opened with ``O_APPEND`` and written with one ``write`` per line, then fsynced, so several
processes can append at once. Make it append-only for real with ``chattr +a`` (root), on
another file system or host than the ledger; see docs/ledger.md.
"""

from __future__ import annotations

import json
import os

from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import (
    Witness,
    WitnessError,
    register_witness_type,
)

#: the newest checkpoints sit at the end: read at most this much of a long file
TAIL_BYTES = 4 * 1024 * 1024
MARKER = "CHANGEOPS-CHECKPOINT "


def parse_checkpoint_line(line):
    """A checkpoint record from a witness line (a JSON line, or a syslog line with the marker), or None."""
    from ansible_collections.changeops.itsm.plugins.module_utils.checkpoints import RECORD_TYPE

    text = line.strip()
    if MARKER in text:
        text = text.split(MARKER, 1)[1]
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if isinstance(record, dict) and record.get("type") == RECORD_TYPE:
        return record
    return None


def read_checkpoint_lines(path, tail_bytes=TAIL_BYTES):
    """Checkpoint records in the last ``tail_bytes`` of ``path`` (the newest ones)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        start = max(0, size - tail_bytes)
        handle.seek(start)
        data = handle.read()
    lines = data.decode("utf-8", "replace").splitlines()
    if start:
        lines = lines[1:]  # the first is cut
    records = []
    for line in lines:
        record = parse_checkpoint_line(line)
        if record is not None:
            records.append(record)
    return records


@register_witness_type
def _configured(settings):
    path = settings.get("witness_file")
    return FileWitness(settings, path) if path else None


class FileWitness(Witness):
    kind = "file"

    def __init__(self, settings, path):
        super(FileWitness, self).__init__(settings)
        self.path = path

    @property
    def name(self):
        return "file:%s" % self.path

    def deliver(self, record):
        line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            directory = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                written = os.write(descriptor, line)
                if written != len(line):
                    raise WitnessError("short write to %s (%d of %d bytes)" % (self.path, written, len(line)))
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as exc:
            raise WitnessError("cannot append to %s: %s" % (self.path, exc.strerror or exc))

    def read(self):
        if not os.path.exists(self.path):
            return []
        return read_checkpoint_lines(self.path)
