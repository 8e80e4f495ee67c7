# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durable local spool for ledger entries that could not be appended.

One file per batch, JSON lines of entry documents (``id, at, kind, subject,
actor, data``), written to a temporary name, fsynced, atomically renamed and
the directory fsynced: a file is either complete or absent, even after a
crash or power loss. Names sort in write order
(``<time_ns>-<pid>-<counter>-<process>.jsonl``) so a replay keeps entry order.

``<process>`` is a hash of the writing process's identity (pid and start
time): a replay skips the files of another process that still runs, whose
recorder may still be appending them itself (a safety copy written while its
append waits for the ledger's lock). Replaying them meanwhile would run that
run's post-run hooks twice. Files named without it (older recorders) are
replayed by anyone.

Each system of record gets its own sub-directory (a hash of its location),
so entries spooled for one ledger are never replayed into another. Replay is
idempotent because entry ids are: ``SystemOfRecord.append`` skips ids it
already holds, so a file replayed twice (a crash between append and unlink)
does no harm.

Entries the system of record refuses for good (a projector's conflict, an
unknown kind) are set aside in ``<batch>.rejected`` (same format; never
replayed, never deleted: rename it back to ``.jsonl`` once the cause is
fixed) and replay goes on with the next file. A file that cannot be parsed
becomes ``<batch>.bad``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import itertools
import json
import os
import threading
import time

from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import processes

SPOOL_SUFFIX = ".jsonl"
_TEMP_PREFIX = ".tmp-"
_BAD_SUFFIX = ".bad"
REJECTED_SUFFIX = ".rejected"
_counter = itertools.count(1)
_counter_lock = threading.Lock()


def target_key(config):
    """Directory name for one system of record: backend + hash of its location (no secret in clear)."""
    backend = config.get("backend") or "sqlite"
    if backend == "sqlite":
        location = os.path.realpath(os.path.expanduser(config.get("sqlite_path") or ""))
    else:
        location = config.get("postgresql_dsn") or config.get("instance") or ""
    digest = hashlib.sha256(("%s\0%s" % (backend, location)).encode("utf-8")).hexdigest()[:16]
    return "%s-%s" % (backend, digest)


class SpoolError(Exception):
    """The spool itself cannot be written (disk full, permissions)."""


def _identity_tag(identity):
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12] if identity else None


def written_by(path):
    """``(pid, identity tag)`` of the process that wrote a spool file, from its name (tag None: not named)."""
    parts = os.path.basename(path)[:-len(SPOOL_SUFFIX)].split("-")
    try:
        pid = int(parts[1])
    except (IndexError, ValueError):
        return None, None
    return pid, parts[3] if len(parts) > 3 else None


class Spool(object):
    def __init__(self, root, key, label=None):
        self.root = os.path.expanduser(root)
        self.directory = os.path.join(self.root, key)
        self.label = label
        self._own = (None, None)

    def _own_tag(self):
        """This process's identity tag, read once per process (from /proc, by the first write)."""
        pid = os.getpid()
        if self._own[0] != pid:
            self._own = (pid, _identity_tag(processes.process_identity(pid)))
        return self._own[1]

    def _name(self):
        with _counter_lock:
            number = next(_counter)
        tag = self._own_tag()
        return "%020d-%08d-%06d%s%s" % (time.time_ns(), os.getpid(), number, "-" + tag if tag else "", SPOOL_SUFFIX)

    # -- writing --------------------------------------------------------------
    def _ensure_directory(self):
        if not os.path.isdir(self.directory):
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            if self.label:
                # a human-readable note of which ledger this spool belongs to
                self._write_atomically(os.path.join(self.directory, "TARGET"), self.label + "\n")

    def _write_atomically(self, final_path, text):
        temp_path = os.path.join(self.directory, "%s%d-%s" % (_TEMP_PREFIX, os.getpid(), os.path.basename(final_path)))
        descriptor = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(temp_path, final_path)
        except BaseException:
            try:
                os.unlink(temp_path)
            except OSError:
                pass
            raise
        self._fsync_directory()

    def _fsync_directory(self):
        try:
            descriptor = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(descriptor)
        except OSError:
            pass
        finally:
            os.close(descriptor)

    def write(self, documents):
        """Durably store one batch (list of entry dicts); returns the file path."""
        documents = list(documents)
        if not documents:
            return None
        name = self._name()
        text = "".join(json.dumps(document, sort_keys=True, ensure_ascii=False) + "\n" for document in documents)
        try:
            self._ensure_directory()
            path = os.path.join(self.directory, name)
            self._write_atomically(path, text)
        except OSError as exc:
            raise SpoolError("cannot write the spool %s: %s" % (self.directory, exc))
        return path

    def set_aside(self, documents, path=None):
        """Durably keep refused entries apart from the replayed files; returns the ``.rejected`` path.

        ``path``: the spool file they came from (its name is kept); otherwise a new name.
        """
        documents = list(documents)
        if path is None:
            path = os.path.join(self.directory, self._name())
        target = path + REJECTED_SUFFIX
        text = "".join(json.dumps(document, sort_keys=True, ensure_ascii=False) + "\n" for document in documents)
        try:
            self._ensure_directory()
            self._write_atomically(target, text)
        except OSError as exc:
            raise SpoolError("cannot write %s: %s" % (target, exc))
        return target

    def rejected(self):
        """Files of refused entries that were set aside."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return [os.path.join(self.directory, name) for name in sorted(names) if name.endswith(REJECTED_SUFFIX)]

    # -- reading ----------------------------------------------------------------
    def pending(self):
        """Spooled batch files, oldest first."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return [os.path.join(self.directory, name) for name in sorted(names)
                if name.endswith(SPOOL_SUFFIX) and not name.startswith(_TEMP_PREFIX)]

    @staticmethod
    def read(path):
        documents = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    documents.append(json.loads(line))
                except ValueError as exc:
                    raise ValueError("%s line %d: not JSON: %s" % (path, number, exc))
        return documents

    def _lock(self):
        """Non-blocking exclusive lock on the spool; None when another process is replaying it."""
        self._ensure_directory()
        descriptor = os.open(os.path.join(self.directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(descriptor)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return None
            raise
        return descriptor

    def held_by_live_process(self, path, alive=None):
        """True when another process that still runs wrote ``path`` (``alive``: a cache per pid)."""
        pid, tag = written_by(path)
        if tag is None or pid == os.getpid():
            return False
        if alive is not None and pid in alive:
            return alive[pid] == tag
        current = None
        if processes.pid_is_alive(pid):
            # alive with an unknown identity: the same process, as far as anyone can tell
            current = _identity_tag(processes.process_identity(pid)) or tag
        if alive is not None:
            alive[pid] = current
        return current == tag

    def replay(self, append, build_entry):
        """Append every spooled batch in order with ``append(list_of_entries)``.

        ``append`` returns the entries the system of record refused, as ``(entry, error)`` pairs (after
        appending the others), or raises when it cannot be written now. Replay stops at (and re-raises)
        such a failure, so later batches never overtake earlier ones. Refused entries are set aside in
        ``<file>.rejected`` and replay goes on. A file that cannot be parsed is renamed ``*.bad``. Both
        are reported in the returned ``problems``. Files another live process wrote are left to it.
        Returns ``(batches, entries, problems)``; ``(0, 0, [])`` when another process holds the spool
        (it is replaying it already).
        """
        if not self.pending():
            return 0, 0, []
        descriptor = self._lock()
        if descriptor is None:
            return 0, 0, []
        batches = entries = 0
        problems = []
        alive = {}
        try:
            for path in self.pending():
                if self.held_by_live_process(path, alive):
                    continue
                try:
                    documents = self.read(path)
                    built = [build_entry(document) for document in documents]
                except FileNotFoundError:
                    continue
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    problems.append("set aside unreadable spool file %s: %s" % (path, exc))
                    try:
                        os.rename(path, path + _BAD_SUFFIX)
                    except OSError:
                        pass
                    continue
                refused = append(built) or []
                if refused:
                    refused_ids = set(entry.id for entry, _error in refused)
                    target = self.set_aside([document for document in documents if document.get("id") in refused_ids],
                                            path)
                    error = refused[0][1]
                    problems.append(
                        "the system of record refused %d of the %d entries of spool file %s (first: %s %s: %s: %s);"
                        " they were set aside in %s, the others were recorded" % (
                            len(refused), len(documents), path, refused[0][0].kind, refused[0][0].subject,
                            type(error).__name__, error, target))
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                batches += 1
                entries += len(documents) - len(refused)
            if batches:
                self._fsync_directory()
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)
        return batches, entries, problems
