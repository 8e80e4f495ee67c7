# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Learn the plaintext of every vault-encrypted file or value decrypted during the run, on the controller.

``lookup('file')``/``lookup('unvault')`` of an encrypted file, ``copy: src:`` of one (its diff shows
the plaintext), ``include_vars`` of one: all decrypt in the *worker* process that runs the task, and
the plaintext reaches the controller only inside the task's result, untagged. Every decryption in
ansible-core goes through ``VaultLib.decrypt_and_get_vault_id``, so the recorder wraps that method
when the run starts, before any worker is forked. In a worker the wrapper sends the plaintext to the
controller over an anonymous ``AF_UNIX``/``SOCK_SEQPACKET`` socket pair the workers inherit (nothing
is written to disk; no other process holds it); in the controller itself it hands it over directly.

Ordering: the worker sends before it returns from the decryption, so before its task's result is
queued. The controller drains the socket (``sync``) before it summarises any result, under the lock
the reader thread holds while it handles a message: a result is never redacted before the plaintexts
decrypted for it are known. The reader thread only exists so that a worker sending a large file never
waits for the next result (it sleeps in ``poll`` otherwise: no CPU while nothing is decrypted).

What is learnt from a plaintext (``learn``): the text whole, each of its lines of 8 or more characters
(a line of a key file or a ``.env`` file echoed alone), and, when it parses as a YAML mapping or list
(a vars file), every scalar in it. Binary plaintexts (a NUL byte) are ignored: they are never shown as
text. Plaintexts over 1 MiB are learnt up to 1 MiB. Each distinct plaintext is handled once.
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import struct
import threading

try:
    from ansible.parsing.vault import VaultLib
except ImportError:  # pragma: no cover
    VaultLib = None

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.vault import collect_plain_values

_HEADER = struct.Struct("!IB")  # sender pid, 1 on the last chunk of a plaintext
CHUNK = 16 * 1024
MAX_PLAINTEXT = 1024 * 1024
_BINARY_PROBE = 8192


def is_binary(data):
    return b"\0" in data[:_BINARY_PROBE]


class DecryptionWatch(object):
    """Wraps vault decryption for the run; each plaintext (bytes) is learnt once, on the controller."""

    def __init__(self, add_secret):
        self._add_secret = add_secret
        self._owner = os.getpid()
        self._lock = threading.Lock()
        self._seen = set()
        self._partial = {}
        self._receiver = None
        self._sender = None
        self._original = None
        self._thread = None
        self._closed = False
        self.learnt = 0

    # -- set-up and tear-down (controller) ------------------------------------------------------------
    def start(self):
        if VaultLib is None or self._original is not None:
            return self
        try:
            self._receiver, self._sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError:
            self._receiver = self._sender = None  # no socket: decryptions in this process are still learnt
        else:
            self._receiver.setblocking(False)
        original = VaultLib.decrypt_and_get_vault_id
        watch = self

        def decrypt_and_get_vault_id(vault, vaulttext, *args, **kwargs):
            answer = original(vault, vaulttext, *args, **kwargs)
            try:
                watch.decrypted(answer[0])
            except Exception:  # pylint: disable=broad-except
                pass  # never break a decryption
            return answer

        decrypt_and_get_vault_id.changeops_original = original
        self._original = original
        VaultLib.decrypt_and_get_vault_id = decrypt_and_get_vault_id
        if self._receiver is not None:
            self._thread = threading.Thread(target=self._read_forever, name="changeops-recorder-decryptions",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self):
        """Stop watching (the run is over): restore the method, close the socket."""
        if os.getpid() != self._owner:
            return
        self._closed = True
        if self._original is not None and VaultLib is not None:
            current = VaultLib.decrypt_and_get_vault_id
            if getattr(current, "changeops_original", None) is self._original:
                VaultLib.decrypt_and_get_vault_id = self._original
        for end in (self._sender, self._receiver):
            if end is not None:
                try:
                    end.close()
                except OSError:
                    pass

    # -- the wrapper (any process) ---------------------------------------------------------------------
    def decrypted(self, plaintext):
        if self._closed or plaintext is None:
            return
        data = plaintext if isinstance(plaintext, bytes) else str(plaintext).encode("utf-8", "surrogatepass")
        if not data or is_binary(data):
            return
        data = data[:MAX_PLAINTEXT]
        if os.getpid() == self._owner:
            with self._lock:
                self._learn(data)
            return
        if self._sender is None:
            return
        pid = os.getpid() & 0xFFFFFFFF
        for start in range(0, len(data), CHUNK):
            last = start + CHUNK >= len(data)
            # blocking: a full socket waits for the controller's reader thread, never drops a plaintext
            self._sender.send(_HEADER.pack(pid, 1 if last else 0) + data[start:start + CHUNK])

    # -- the controller's side -----------------------------------------------------------------------------
    def sync(self):
        """Learn every plaintext a worker sent so far (call before summarising a result)."""
        if self._receiver is None or self._closed:
            return
        with self._lock:
            self._drain()

    def _read_forever(self):
        poller = select.poll()
        try:
            poller.register(self._receiver.fileno(), select.POLLIN)
        except (OSError, ValueError):
            return
        while not self._closed:
            try:
                events = poller.poll(1000)
            except (OSError, ValueError):
                return
            if events and not self._closed:
                with self._lock:
                    if self._closed:
                        return
                    self._drain()

    def _drain(self):
        while True:
            try:
                message = self._receiver.recv(_HEADER.size + CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(message) < _HEADER.size:
                return
            pid, last = _HEADER.unpack_from(message)
            chunks = self._partial.setdefault(pid, [])
            chunks.append(message[_HEADER.size:])
            if last:
                del self._partial[pid]
                self._learn(b"".join(chunks))

    def _learn(self, data):
        digest = hashlib.sha256(data).digest()
        if digest in self._seen:
            return
        self._seen.add(digest)
        self.learnt += 1
        learn(data.decode("utf-8", "replace"), self._add_secret)


def learn(text, add_secret):
    """Teach ``add_secret`` the plaintext ``text``: whole (its lines are forms of it), and every scalar of it
    when it is a YAML mapping or list (a vars file whose values are echoed one by one)."""
    add_secret(text)
    if yaml is None or ("\n" not in text.strip() and ":" not in text):
        return
    try:
        document = yaml.safe_load(text)
    except Exception:  # pylint: disable=broad-except
        return
    if isinstance(document, (dict, list)):
        collect_plain_values(document, add_secret)
