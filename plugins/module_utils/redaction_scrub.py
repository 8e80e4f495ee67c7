# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""After ``ledger_redact``: the copies of a redacted value outside the database.

The change_recorder's spool (JSON lines of entry documents, see
``plugin_utils/recorder/spool.py``) may still hold an entry that already reached the ledger:
a safety copy, a batch whose replay was interrupted, a ``.rejected`` or ``.bad`` file. Each
such copy of a redacted entry gets the same tombstones; a line that cannot be parsed has the
value's text replaced. Files are rewritten whole (temporary file, fsync, rename, directory
fsync), under the spool's replay lock, so a replay never sees half a file.

The HTML register (and its JSON) is generated again when one is configured.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import time

from ansible_collections.changeops.itsm.plugins.module_utils import commitments

LOCK_NAME = ".lock"
LOCK_WAIT_SECONDS = 30.0
#: the spool writes a batch to ``.tmp-*`` and renames it; an older one was left by a process that died
TEMP_PREFIX = ".tmp-"
TEMP_SETTLE_SECONDS = 60.0
#: what a redacted field holds in a spool copy (the entry in the ledger names its ledger.redacted entry)
SPOOL_TOMBSTONE = "[redacted]"


def _needles(value_json):
    """Texts of a value as a spool line may hold it (strings: their escaped content)."""
    needles = []
    if value_json.startswith('"') and len(value_json) > 2:
        needles.append(value_json[1:-1])
        try:
            needles.append(json.dumps(json.loads(value_json))[1:-1])  # as json.dumps' ASCII escapes write it
        except ValueError:
            pass
    elif len(value_json) > 2:
        needles.append(value_json)
    return [needle for index, needle in enumerate(needles) if needle and needle not in needles[:index]]


def _scrub_line(line, targets):
    """``line`` with the targets' fields tombstoned (or their text replaced); None when unchanged."""
    stripped = line.rstrip("\n")
    try:
        document = json.loads(stripped)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("data"), dict) and document.get("id") in targets:
        data = document["data"]
        changed = False
        for path, _value_json in targets[document["id"]]:
            try:
                current = commitments.field_value(data, path)
            except (KeyError, IndexError, TypeError):
                continue
            if current == SPOOL_TOMBSTONE:
                continue
            data = commitments.with_field_replaced(data, path, SPOOL_TOMBSTONE)
            changed = True
        if changed:
            document["data"] = data
            return json.dumps(document, sort_keys=True, ensure_ascii=False) + "\n"
        return None
    if document is None:
        text = stripped
        for fields in targets.values():
            for _path, value_json in fields:
                for needle in _needles(value_json):
                    text = text.replace(needle, SPOOL_TOMBSTONE)
        if text != stripped:
            return text + "\n"
    return None


def _rewrite(path, lines):
    directory = os.path.dirname(path)
    mode = os.stat(path).st_mode & 0o7777
    descriptor, temporary = tempfile.mkstemp(prefix=".tmp-scrub-", dir=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def _locked(directory):
    """The spool directory's replay lock (the recorder's ``flock`` on ``.lock``), waited for; None if not got."""
    try:
        descriptor = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return descriptor
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK) or time.monotonic() > deadline:
                os.close(descriptor)
                return None
            time.sleep(0.1)


def scrub_spools(spool_dirs, targets):
    """Tombstone the redacted fields in every spool file under ``spool_dirs``.

    ``targets``: ``[(entry_id, [(path, value_json), ...])]``. Returns the files rewritten; raises
    ``OSError`` for a file that could not be rewritten (the caller reports it).
    """
    by_id = {}
    for entry_id, fields in targets:
        by_id.setdefault(entry_id, []).extend(fields)
    rewritten = []
    for root in spool_dirs:
        if not os.path.isdir(root):
            continue
        for directory, _subdirs, names in os.walk(root):
            candidates = [name for name in sorted(names) if name != LOCK_NAME]
            if not candidates:
                continue
            descriptor = _locked(directory)
            try:
                for name in candidates:
                    path = os.path.join(directory, name)
                    if not os.path.isfile(path) or os.path.islink(path):
                        continue
                    if name.startswith(TEMP_PREFIX) and time.time() - os.path.getmtime(path) < TEMP_SETTLE_SECONDS:
                        continue  # a batch a recorder is writing right now (renamed once complete)
                    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                        lines = handle.readlines()
                    changed = False
                    for index, line in enumerate(lines):
                        scrubbed = _scrub_line(line, by_id)
                        if scrubbed is not None:
                            lines[index] = scrubbed
                            changed = True
                    if changed:
                        _rewrite(path, lines)
                        rewritten.append(path)
            finally:
                if descriptor is not None:
                    fcntl.flock(descriptor, fcntl.LOCK_UN)
                    os.close(descriptor)
    return rewritten


def regenerate_register(ctx, settings):
    """Generate the configured register again; ``settings`` is ``(path, json_path, title)`` or None."""
    if not settings:
        return {"regenerated": False, "reason": "no register_path configured"}
    renderer = getattr(ctx, "register_renderer", None)
    if renderer is None:
        message = ("the register %s was not regenerated (the module ran outside its action plugin): run "
                   "changeops.itsm.change_register now, it may still show the redacted values" % settings[0])
        ctx.warn(message)
        return {"regenerated": False, "reason": message}
    from ansible_collections.changeops.itsm.plugins.module_utils.change_register import generate_register

    from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError

    path, json_path, title = settings
    try:
        outcome = generate_register(ctx.sor, {"path": path, "json_path": json_path, "title": title,
                                              "verify_chain": True, "check_projections": False}, renderer)
    except (ChangeopsError, OSError) as exc:
        # the redaction itself is done and recorded: say what is left to do rather than fail
        message = ("the register %s was not regenerated and may still show the redacted values: %s; run "
                   "changeops.itsm.change_register" % (path, getattr(exc, "message", None) or exc))
        ctx.warn(message)
        return {"regenerated": False, "path": path, "reason": message}
    return {"regenerated": True, "path": path, "json_path": json_path, "changed": outcome.get("changed")}
