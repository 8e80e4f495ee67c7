# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find vault-protected values so their plaintext never reaches the ledger.

ansible-core 2.19 represents an inline ``!vault`` value as an
``EncryptedString`` until it is used, and tags every plaintext decrypted from
one with ``VaultedValue``; data parsed from a wholly encrypted file carries
``SourceWasEncrypted`` on its container, and each of its values an ``Origin``
naming the file. ``include_vars`` parses in a worker and hands the controller
only the values (the container and its tag stay behind), so for those the
``Origin`` file itself is checked for a vault header. A module output never carries those
tags (``command: echo {{ secret }}`` returns plain text), so the recorder
collects the plaintexts up front and feeds them to the ``Redactor`` as known
secrets; the tags are also honoured wherever a result still carries them.

Decryption happens here on the callback thread (vault secrets are loaded
there); it is CPU work only, done once per value.
"""

from __future__ import annotations

try:  # ansible-core >= 2.19
    from ansible.parsing.vault import EncryptedString, VaultHelper
    from ansible._internal._datatag._tags import Origin, SourceWasEncrypted
except ImportError:  # pragma: no cover - older cores
    EncryptedString = None
    VaultHelper = None
    Origin = None
    SourceWasEncrypted = None

from ansible.parsing.vault import is_encrypted_file

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import int_text

try:  # ansible-core < 2.19 kept vaulted values in this class
    from ansible.parsing.yaml.objects import AnsibleVaultEncryptedUnicode
except ImportError:  # pragma: no cover
    AnsibleVaultEncryptedUnicode = None

_MAX_DEPTH = 64
_UNTAGGED_TYPES = frozenset((str, int, float, bool, type(None), dict, list, tuple, bytes))


def _number_text(value):
    # an int of any length (``str`` refuses ints of more than 4,300 digits)
    return int_text(value) if isinstance(value, int) and not isinstance(value, bool) else str(value)


def is_vaulted(value):
    """True for an encrypted value or a plaintext that came from one."""
    if type(value) in _UNTAGGED_TYPES:  # pylint: disable=unidiomatic-typecheck
        return False  # the common case, decided without a tag lookup: plain builtins carry no tags
    if EncryptedString is not None and type(value) is EncryptedString:  # pylint: disable=unidiomatic-typecheck
        return True
    if AnsibleVaultEncryptedUnicode is not None and isinstance(value, AnsibleVaultEncryptedUnicode):
        return True
    if VaultHelper is not None and isinstance(value, str):
        try:
            return VaultHelper.get_ciphertext(value, with_tags=False) is not None
        except Exception:  # pylint: disable=broad-except
            return False
    return False


def source_was_encrypted(value):
    if SourceWasEncrypted is None:
        return False
    try:
        return SourceWasEncrypted.is_tagged_on(value)
    except Exception:  # pylint: disable=broad-except
        return False


_ENCRYPTED_FILES = {}


def from_encrypted_file(value):
    """True for a value whose ``Origin`` names a wholly vault-encrypted file (checked once per file)."""
    if Origin is None or type(value) in _UNTAGGED_TYPES:  # pylint: disable=unidiomatic-typecheck
        return False
    try:
        path = getattr(Origin.get_tag(value), "path", None)
    except Exception:  # pylint: disable=broad-except
        return False
    if not path:
        return False
    if path not in _ENCRYPTED_FILES:
        try:
            with open(path, "rb") as handle:
                _ENCRYPTED_FILES[path] = is_encrypted_file(handle)
        except (OSError, ValueError):
            _ENCRYPTED_FILES[path] = False
    return _ENCRYPTED_FILES[path]


def plaintext_of(value):
    """The plaintext of a vaulted value, or None when it cannot be decrypted here."""
    try:
        return str(value) + ""  # ``+ ""`` drops data tags: a plain str comes back
    except Exception:  # pylint: disable=broad-except
        return None


def collect_vault_secrets(value, add_secret, seen=None, inside_encrypted=False, depth=0):
    """Walk ``value`` and call ``add_secret(plaintext)`` for every vault-protected scalar.

    Everything below a container parsed from a wholly encrypted file counts as
    vaulted. ``seen`` (a set of ``id()``) avoids re-walking shared structures.
    """
    if depth > _MAX_DEPTH or value is None:
        return
    if is_vaulted(value):
        plaintext = plaintext_of(value)
        if plaintext is not None:
            add_secret(plaintext)
        return
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        if seen is not None:
            if id(value) in seen:
                return
            seen.add(id(value))
        inside_encrypted = inside_encrypted or source_was_encrypted(value)
        items = value.values() if isinstance(value, dict) else value
        for item in list(items):
            collect_vault_secrets(item, add_secret, seen, inside_encrypted, depth + 1)
        return
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and (
            inside_encrypted or from_encrypted_file(value)):
        add_secret(str(value) + "" if isinstance(value, str) else _number_text(value))


def collect_plain_values(value, add_secret, depth=0):
    """Every scalar under ``value`` is a secret (extra vars: their values are never recorded)."""
    if depth > _MAX_DEPTH or value is None or isinstance(value, bool):
        return
    if isinstance(value, dict):
        for item in list(value.values()):
            collect_plain_values(item, add_secret, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in list(value):
            collect_plain_values(item, add_secret, depth + 1)
    elif is_vaulted(value):
        plaintext = plaintext_of(value)
        if plaintext is not None:
            add_secret(plaintext)
    elif isinstance(value, (str, int, float)):
        add_secret(str(value) + "" if isinstance(value, str) else _number_text(value))
