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

A :class:`SpoolChain` is the list of spool locations the recorder tries in
order (see ``spool_locations``): a batch goes to the first that takes it, and
a replay merges the files of every location by name, so a run whose batches
landed in two places is replayed in write order.
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
        # files this process replayed but could not delete (an unwritable directory): not replayed again
        self._replayed_here = set()

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
        """Spooled batch files, oldest first (without those this process replayed but could not remove)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        paths = [os.path.join(self.directory, name) for name in sorted(names)
                 if name.endswith(SPOOL_SUFFIX) and not name.startswith(_TEMP_PREFIX)]
        return [path for path in paths if path not in self._replayed_here] if self._replayed_here else paths

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
        """Non-blocking exclusive lock on the spool; None when another process is replaying it.

        In a directory that cannot be written (read-only, immutable, full) an existing lock file is
        locked read-only; without one, no other process can have created it either, and :data:`UNLOCKED`
        is returned (a replay needs no lock to be correct, only to avoid double work: entry ids make it
        idempotent).
        """
        lock_path = os.path.join(self.directory, ".lock")
        try:
            self._ensure_directory()
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            try:
                descriptor = os.open(lock_path, os.O_RDONLY)
            except OSError:
                return UNLOCKED
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
        return replay_spools([self], append, build_entry)


#: what ``Spool._lock`` returns for a directory where no lock file can be opened
UNLOCKED = -1


def replay_spools(spools, append, build_entry):
    """``Spool.replay`` over several spool locations of one system of record, files merged by name.

    Names start with the write time, so a run whose batches went to two locations (the first one
    failed half-way) is replayed in the order it was written.
    """
    spools = [spool for spool in spools if spool.pending()]
    if not spools:
        return 0, 0, []
    locks = []
    batches = entries = 0
    problems = []
    alive = {}
    try:
        for spool in spools:
            descriptor = spool._lock()
            if descriptor is None:
                return 0, 0, []  # another process replays these files already
            locks.append(descriptor)
        files = sorted((os.path.basename(path), index, path)
                       for index, spool in enumerate(spools) for path in spool.pending())
        touched = set()
        for _name, index, path in files:
            spool = spools[index]
            if spool.held_by_live_process(path, alive):
                continue
            try:
                documents = spool.read(path)
                built = [build_entry(document) for document in documents]
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problems.append("set aside unreadable spool file %s: %s" % (path, exc))
                try:
                    os.rename(path, path + _BAD_SUFFIX)
                except OSError:
                    spool._replayed_here.add(path)
                continue
            refused = append(built) or []
            if refused:
                refused_ids = set(entry.id for entry, _error in refused)
                error = refused[0][1]
                try:
                    target = spool.set_aside([document for document in documents if document.get("id") in refused_ids],
                                             path)
                except SpoolError as exc:
                    target = "nowhere (%s)" % exc
                problems.append(
                    "the system of record refused %d of the %d entries of spool file %s (first: %s %s: %s: %s);"
                    " they were set aside in %s, the others were recorded" % (
                        len(refused), len(documents), path, refused[0][0].kind, refused[0][0].subject,
                        type(error).__name__, error, target))
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:
                # an unwritable directory: its entries are in the ledger now; never replay it again here
                spool._replayed_here.add(path)
            touched.add(index)
            batches += 1
            entries += len(documents) - len(refused)
        for index in touched:
            spools[index]._fsync_directory()
    finally:
        for descriptor in locks:
            if descriptor == UNLOCKED:
                continue
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)
    return batches, entries, problems


class SpoolChain(object):
    """The spool locations of one system of record, in the order they are tried (see ``spool_locations``).

    A batch goes to the first location that takes it; only when none does is it not durable. Replays
    read every location, files merged by name (write order). ``marker_spool(create)`` returns a last
    resort (or None) for the small marker that says entries were lost (``write_marker``), never for
    entries themselves: it lives in the temporary directory, which the system may empty at boot.
    """

    def __init__(self, spools, marker_spool=None):
        self.spools = list(spools)
        self._marker_spool = marker_spool or (lambda create: None)
        #: where the last batch went (for messages); the first location until then
        self.directory = self.spools[0].directory
        self._marker = None

    @property
    def directories(self):
        return [spool.directory for spool in self.spools]

    def _all(self, create_marker=False):
        if self._marker is None:
            self._marker = self._marker_spool(create_marker)
        return self.spools + ([self._marker] if self._marker is not None else [])

    def write(self, documents):
        """Durably store one batch in the first location that takes it; returns its path.

        Raises ``SpoolError`` naming every location and why it refused."""
        return self._write_first(self.spools, documents)

    def write_marker(self, documents):
        """Like ``write``, with the temporary directory as a last resort."""
        return self._write_first(self._all(create_marker=True), documents)

    def _write_first(self, spools, documents):
        errors = []
        for spool in spools:
            try:
                path = spool.write(documents)
            except SpoolError as exc:
                errors.append(str(exc))
                continue
            self.directory = spool.directory
            return path
        raise SpoolError("; ".join(errors) or "no spool location")

    def set_aside(self, documents, path=None):
        if path is not None:
            for spool in self._all():
                if os.path.dirname(path) == spool.directory:
                    return spool.set_aside(documents, path)
        errors = []
        for spool in self.spools:
            try:
                return spool.set_aside(documents)
            except SpoolError as exc:
                errors.append(str(exc))
        raise SpoolError("; ".join(errors))

    def rejected(self):
        return [path for spool in self._all() for path in spool.rejected()]

    def pending(self):
        """Spooled batch files of every location, in write order."""
        paths = [path for spool in self._all() for path in spool.pending()]
        return sorted(paths, key=os.path.basename)

    def replay(self, append, build_entry):
        """See ``Spool.replay``: every location, in write order."""
        return replay_spools(self._all(), append, build_entry)
