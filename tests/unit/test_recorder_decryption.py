# -*- coding: utf-8 -*-
"""The recorder learns vault plaintexts decrypted in forked workers before it records their results.

Real forks and real vault decryption: a child process (as an Ansible worker is) decrypts with ansible-core's
own ``VaultLib``; the parent, after the child has ended (its result would be queued by then), calls
``sync`` and must know the plaintext, whole and as values of a YAML vars file, also when it is larger
than one socket message.
"""

from __future__ import annotations

import os

import pytest

from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.changeops.itsm.plugins.module_utils.redaction import REDACTED, Redactor
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.decryption import CHUNK, DecryptionWatch


@pytest.fixture
def vault():
    return VaultLib([("default", VaultSecret(b"correct horse battery staple"))])


@pytest.fixture
def watch():
    redactor = Redactor()
    watch = DecryptionWatch(redactor.add_known_secret).start()
    watch.redactor = redactor
    yield watch
    watch.close()


def decrypt_in_a_child(vault, ciphertexts):
    pid = os.fork()
    if pid == 0:  # the worker
        try:
            for ciphertext in ciphertexts:
                vault.decrypt(ciphertext)
        finally:
            os._exit(0)
    _pid, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_plaintexts_decrypted_in_a_worker_are_known_after_sync(vault, watch):
    file_text = "listen 8080\nshared_key_line Zq-file-secret-0042\n"
    vars_file = "db_user: admin\ndb_password: Zq-vars-secret-0042\nport: 5432\n"
    decrypt_in_a_child(vault, [vault.encrypt(file_text), vault.encrypt(vars_file)])
    watch.sync()
    redact = watch.redactor.redact_string
    assert redact("echo shared_key_line Zq-file-secret-0042") == "echo %s" % REDACTED
    assert "Zq-vars-secret-0042" not in redact("password is Zq-vars-secret-0042 ok")
    assert "Zq-vars-secret-0042" not in redact("psql -W Zq-vars-secret-0042")  # a YAML value alone
    assert redact("an unrelated line") == "an unrelated line"
    assert watch.learnt == 2


def test_a_plaintext_larger_than_one_message_arrives_whole(vault, watch):
    big = "".join("line %05d of a large vaulted file Zq%05d\n" % (n, n) for n in range(3 * CHUNK // 40))
    assert len(big) > 2 * CHUNK
    decrypt_in_a_child(vault, [vault.encrypt(big)])
    watch.sync()
    assert "Zq01200" not in watch.redactor.redact_string("tail: line 01200 of a large vaulted file Zq01200")


def test_binary_plaintexts_are_ignored_and_repeats_are_learnt_once(vault, watch):
    decrypt_in_a_child(vault, [vault.encrypt(b"\x00\x01binary-blob"), vault.encrypt("Zq-twice-0042"),
                               vault.encrypt("Zq-twice-0042")])
    watch.sync()
    assert watch.learnt == 1
    assert watch.redactor.redact_string("Zq-twice-0042") == REDACTED


def test_decryptions_in_the_controller_are_learnt_directly(vault, watch):
    vault.decrypt(vault.encrypt("Zq-controller-0042"))
    assert watch.redactor.redact_string("x Zq-controller-0042") == "x %s" % REDACTED


def test_close_restores_vault_decryption(vault):
    original = VaultLib.decrypt_and_get_vault_id
    watch = DecryptionWatch(lambda value: None).start()
    assert VaultLib.decrypt_and_get_vault_id is not original
    watch.close()
    assert VaultLib.decrypt_and_get_vault_id is original
    assert vault.decrypt(vault.encrypt("still works")) == b"still works"
