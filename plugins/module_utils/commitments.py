# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Salted per-field commitments to a ledger entry's payload (entry formats 2 and 3): part of the on-disk contract.

An entry's ``data`` is cut into **fields**: every top-level member, except that a non-empty
object or array is cut one level deeper, each of its members (``result.stdout``,
``diff[0]``, ``attributes.owner``) being a field of its own. Deeper values belong to their
enclosing field whole. Fields are ordered by path (keys sorted as in canonical JSON,
array members by index).

**Format 3** (every entry written since) cuts the same way except for the lists of :data:`WHOLE_NAME_LISTS`:
the ``hosts`` of ``run.gate`` and ``run.play``, when every member is a string and none a tombstone, are one
field, committed whole. They hold the 10,000 hosts of a large play, a commitment per name was a tenth of the
gate task's time (bench/gate_task), and they buy nothing there: both lists are protected from redaction
(``protected_fields.PROTECTED_FIELDS``), so no member is ever opened or hidden on its own. Every other array
is cut as in format 2, so a redaction never turns a list into a tombstone string under a reader's feet.
Format 2 entries keep their cut; the format and the kind are stored with the entry (and hashed), so a
verifier always knows which cut its root was computed over. And format 3's root covers the cut itself, the
paths of the fields in order (:func:`root_hex`)::

    root = SHA-256("changeops.itsm payload v2\\n" || SHA-256(paths_json) || c_1 || ... || c_n)

where ``paths_json`` is the canonical JSON array of the fields' ``path_json``. A tombstone keeps its field's
commitment but not its value, so a format-2 root cannot tell a payload re-cut around tombstones (a list
grown by a tombstone carrying the commitment of the field after it, whose key is then deleted) from the one
sealed. A redaction never changes the cut (a tombstone takes its field's place, and a list of strings
holding one is cut member by member), so a format-3 root still opens after any.

Each field ``i`` gets a 16-byte salt; the salts are the SHAKE-256 stream of a 16-byte random
seed kept with the entry (``salts = shake_256(seed).digest(16 * n)``), so one stored value
serves every field. The field's commitment is::

    c_i = SHA-256(salt_i || path_json_i || 0x00 || value_json_i)

where ``path_json`` is the canonical JSON of the path as an array (``["result","stdout"]``,
``["diff",0]``, ``["host"]``) and ``value_json`` the canonical JSON of the value. The payload
root is ``SHA-256("changeops.itsm payload v1\\n" || c_1 || ... || c_n)`` (hex); the entry's
chain hash covers the root, not the data (see ``ledger.py``).

**Redaction** replaces a field's value by a tombstone string and keeps its commitment: the
seed is dropped and the salts of the other fields are kept one by one (``salts``, null for a
redacted field), so the redacted value's salt is gone with it and a short secret cannot be
found by trying candidates against the commitment. The root, and so every hash of the chain,
stays the same.

Everything here is linear in the size of the payload and does no I/O.
"""

from __future__ import annotations

import binascii
import collections
import hashlib
import json
import os
import re
import types

from json.encoder import encode_basestring as _encode_string

FORMAT_LEGACY = 1
FORMAT_COMMITTED = 2
#: format 3: the root covers the cut (the fields' paths), and a play's hosts are one field (module docstring)
FORMAT_CUT_COMMITTED = 3
#: the formats whose hash covers the payload's root (the salted field commitments) rather than the payload
COMMITTED_FORMATS = (FORMAT_COMMITTED, FORMAT_CUT_COMMITTED)
#: what a new entry is sealed as
FORMAT_CURRENT = FORMAT_CUT_COMMITTED
KNOWN_FORMATS = (FORMAT_LEGACY,) + COMMITTED_FORMATS
#: format 3's one difference from format 2, per entry kind: the top-level lists of names committed whole. Fixed with
#: the format (a verifier derives an entry's cut from its stored format and kind): another list needs a format 4.
WHOLE_NAME_LISTS = types.MappingProxyType({"run.gate": frozenset(("hosts",)), "run.play": frozenset(("hosts",))})
NO_WHOLE_LISTS = frozenset()


class Cut(collections.namedtuple("Cut", "whole binds_paths")):
    """How an entry's payload is cut into fields and rooted: ``whole``, the top-level keys whose list of names is one
    field; ``binds_paths``, whether the root covers the fields' paths (format 3)."""

    __slots__ = ()


#: formats 1 (once committed by a redaction) and 2
CUT_FORMAT_2 = Cut(NO_WHOLE_LISTS, False)

SALT_BYTES = 16
ROOT_DOMAIN = b"changeops.itsm payload v1\n"
#: format 3's root, which covers the paths of the fields too
ROOT_DOMAIN_CUT = b"changeops.itsm payload v2\n"
TOMBSTONE_PREFIX = "[redacted by ledger entry "
#: how a member that is a tombstone starts in a list's canonical JSON (the prefix holds nothing JSON escapes)
_QUOTED_TOMBSTONE = '"' + TOMBSTONE_PREFIX


def cut_of(entry_format, kind):
    """The :class:`Cut` of an entry of ``entry_format`` and ``kind``."""
    if entry_format == FORMAT_CUT_COMMITTED:
        return Cut(WHOLE_NAME_LISTS.get(kind, NO_WHOLE_LISTS), True)
    return CUT_FORMAT_2


def root_hex(digests, paths_json_text, cut):
    """The payload root of the commitments ``digests`` (bytes, in field order) of the fields whose paths'
    canonical JSON array is ``paths_json_text`` (read only when ``cut.binds_paths``)."""
    if cut.binds_paths:
        return _sha256(ROOT_DOMAIN_CUT + _sha256(paths_json_text.encode("utf-8")).digest() + digests).hexdigest()
    return _sha256(ROOT_DOMAIN + digests).hexdigest()


def _default(value):
    # the same reductions canonical.canonical_json applies (entries hold plain JSON types already)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


_encode_nested = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                                  default=_default).encode
#: canonical JSON of a whole payload (the text ``seal_payload`` builds piece by piece)
canonical_json_of = _encode_nested
_sha256 = hashlib.sha256


def encode_value(value):
    """Canonical JSON of ``value`` (the same text as ``canonical.canonical_json``), fast for scalars."""
    kind = type(value)
    if kind is str:
        return _encode_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    return _encode_nested(value)


def _is_name_list(value):
    """Every member a string, none a tombstone: a tombstone in a list of strings can only be a member redacted
    on its own (a list committed whole is redacted whole), so such a list keeps the cut it was sealed with."""
    for item in value:
        if not isinstance(item, str) or item.startswith(TOMBSTONE_PREFIX):
            return False
    return True


def _splits(key, value, cut):
    """Whether the top-level member ``key`` is cut into fields; ``cut``: :func:`cut_of` the entry."""
    if isinstance(value, dict):
        return bool(value)
    if isinstance(value, list) and value:
        return key not in cut.whole or not _is_name_list(value)
    return False


def field_count(data, *, cut):
    return sum(len(value) if _splits(key, value, cut) else 1 for key, value in data.items())


def iter_fields(data, *, cut):
    """``(path, value)`` of every field of ``data`` in commitment order; ``path`` is a tuple. ``cut``:
    :func:`cut_of` the entry's format and kind."""
    for key in sorted(data):
        value = data[key]
        if isinstance(value, dict) and value:
            for member in sorted(value):
                yield (key, member), value[member]
        elif _splits(key, value, cut):
            for index, item in enumerate(value):
                yield (key, index), item
        else:
            yield (key,), value


def path_json(path):
    return "[" + ",".join(_encode_string(part) if isinstance(part, str) else str(part) for part in path) + "]"


def path_text(path):
    """How people write a field: ``limit``, ``result.stdout``, ``diff[0]``."""
    if len(path) == 1:
        return path[0]
    if isinstance(path[1], int):
        return "%s[%d]" % path
    return "%s.%s" % path


def new_seed():
    return binascii.hexlify(os.urandom(SALT_BYTES)).decode("ascii")


def salts_from_seed(seed_hex, count):
    stream = hashlib.shake_256(binascii.unhexlify(seed_hex)).digest(SALT_BYTES * count)
    return [stream[index:index + SALT_BYTES] for index in range(0, SALT_BYTES * count, SALT_BYTES)]


def commitment(salt, path, value_json):
    """``c_i`` (bytes) of one field."""
    return _sha256(salt + (path_json(path) + "\0" + value_json).encode("utf-8")).digest()


#: the field encoder the sealing loop calls (one name for :func:`encode_value`, kept by callers)
_scalar_json = encode_value


def seal_payload(data, seed_hex=None, *, cut):
    """``(data_json, root_hex, seed_hex)`` for a new entry, in one pass over ``data``; ``cut``:
    :func:`cut_of` its format and kind.

    ``data_json`` is the canonical JSON of ``data`` (what the ledger stores), built from the same
    per-field encodings the commitments use, so nothing is serialised twice. The field texts are
    collected first and hashed in one comprehension with the salts sliced from one SHAKE-256 output
    (the per-field cost is what bounds a single writer: bench/ledger_scale).
    """
    seed_hex = seed_hex or new_seed()
    texts = []
    top = []
    for key in sorted(data):
        value = data[key]
        key_json = _encode_string(key)
        kind = type(value)
        if kind is dict and value:
            prefix = "[" + key_json + ","
            pieces = []
            for member in sorted(value):
                member_json = _encode_string(member)
                value_json = _scalar_json(value[member])
                texts.append(prefix + member_json + "]\0" + value_json)
                pieces.append(member_json + ":" + value_json)
            top.append(key_json + ":{" + ",".join(pieces) + "}")
        elif kind is list and value:
            try:
                # a list of names (run.gate's 10,000 hosts): each member's text in C, the same text encode_value gives
                pieces = list(map(_encode_string, value))
                names = True
            except TypeError:  # a member that is not a string
                pieces = [_scalar_json(item) for item in value]
                names = False
            value_json = "[" + ",".join(pieces) + "]"
            names = names and key in cut.whole
            if names and _QUOTED_TOMBSTONE in value_json:
                names = _is_name_list(value)  # (the text is also found after an escaped quote inside a name)
            if names:
                texts.append("[" + key_json + "]\0" + value_json)
            else:
                prefix = "[" + key_json + ","
                texts.extend([prefix + str(index) + "]\0" + member_json for index, member_json in enumerate(pieces)])
            top.append(key_json + ":" + value_json)
        elif isinstance(value, (dict, list)) and value:
            # a dict or list subclass: sorted and split the same way
            return _seal_payload_generic(data, seed_hex, cut)
        else:
            value_json = _scalar_json(value)
            texts.append("[" + key_json + "]\0" + value_json)
            top.append(key_json + ":" + value_json)
    salts = hashlib.shake_256(binascii.unhexlify(seed_hex)).digest(SALT_BYTES * len(texts))
    digests = [_sha256(salts[offset:offset + SALT_BYTES] + text.encode("utf-8")).digest()
               for offset, text in zip(range(0, SALT_BYTES * len(texts), SALT_BYTES), texts)]
    # each text is path_json NUL value_json, and a path's JSON holds no raw NUL (JSON escapes it)
    paths = "[" + ",".join(text[:text.index("\0")] for text in texts) + "]" if cut.binds_paths else None
    return "{" + ",".join(top) + "}", root_hex(b"".join(digests), paths, cut), seed_hex


def _seal_payload_generic(data, seed_hex, cut):
    """:func:`seal_payload` through :func:`iter_fields` (any mapping and sequence types)."""
    fields = list(iter_fields(data, cut=cut))
    salts = salts_from_seed(seed_hex, len(fields))
    digests = b"".join(commitment(salt, path, encode_value(value)) for salt, (path, value) in zip(salts, fields))
    return canonical_json_of(data), root_hex(digests, _paths_json([path for path, _value in fields], cut), cut), seed_hex


def _paths_json(paths, cut):
    """What :func:`root_hex` reads of the fields' ``paths``: their JSON array, only when the root covers them."""
    return "[" + ",".join(map(path_json, paths)) + "]" if cut.binds_paths else None


class PayloadMismatch(ValueError):
    """The stored payload does not open its commitments; ``args[0]`` says how."""


def field_commitments(data, seed_hex=None, redactions=None, *, cut):
    """``[(path, commitment_bytes, redacted)]`` of every field, from the seed or the explicit salts.

    ``redactions`` is the stored redaction state ``{"salts": [hex or null, ...], "tombstones":
    {path_json: commitment_hex}}``. Raises :class:`PayloadMismatch` when the stored state cannot
    open the payload (a salt missing, a tombstone whose field holds a value again).
    """
    fields = list(iter_fields(data, cut=cut))
    if redactions:
        salts = redactions.get("salts") or []
        tombstones = redactions.get("tombstones") or {}
        if len(salts) != len(fields):
            raise PayloadMismatch("it has %d fields but %d salts are kept" % (len(fields), len(salts)))
    else:
        if not seed_hex:
            raise PayloadMismatch("it has neither a salt seed nor kept salts")
        try:
            salts = salts_from_seed(seed_hex, len(fields))
        except (binascii.Error, ValueError):
            raise PayloadMismatch("its salt seed %r is not hexadecimal" % (seed_hex,))
        tombstones = {}
    result = []
    seen_tombstones = 0
    for index, (path, value) in enumerate(fields):
        key = path_json(path)
        if key in tombstones:
            seen_tombstones += 1
            if not is_tombstone(value):
                raise PayloadMismatch("field %s was redacted, but holds a value again" % path_text(path))
            result.append((path, binascii.unhexlify(tombstones[key]), True))
            continue
        salt = salts[index]
        if salt is None:
            raise PayloadMismatch("field %s has no salt and no tombstone" % path_text(path))
        if isinstance(salt, str):
            salt = binascii.unhexlify(salt)
        result.append((path, commitment(salt, path, encode_value(value)), False))
    if seen_tombstones != len(tombstones):
        raise PayloadMismatch("a redacted field is no longer in its payload")
    return result


def root_of(commitments, cut):
    return root_hex(b"".join(digest for _path, digest, _redacted in commitments),
                    _paths_json([path for path, _digest, _redacted in commitments], cut), cut)


def payload_root(data, seed_hex=None, redactions=None, *, cut):
    return root_of(field_commitments(data, seed_hex, redactions, cut=cut), cut)


# -- redaction ------------------------------------------------------------------------------
def tombstone(redaction_seq):
    return "%s%d]" % (TOMBSTONE_PREFIX, redaction_seq)


def is_tombstone(value):
    return isinstance(value, str) and value.startswith(TOMBSTONE_PREFIX)


_INDEX = re.compile(r"^(.*?)\[(\d+)\](.*)$")


class UnknownField(ValueError):
    """A path that names no field of the payload."""


def resolve_field(data, text, *, cut):
    """The committed fields that hold what ``text`` names, as path tuples (a tuple names itself).

    ``text`` may name a field (``result.stdout``, ``diff[0]``, ``diff.0``, ``limit``), a
    top-level object or array (every field in it), or a place deeper inside a field
    (``document.controls[3].output``: the enclosing field, ``document.controls``). Top-level
    keys are matched before splitting on dots, so member names holding dots
    (``attributes.compliance.hardening``) work.
    """
    if isinstance(text, tuple):
        # a path as ``iter_fields`` gives it
        if text not in [path for path, _value in iter_fields(data, cut=cut)]:
            raise UnknownField("no field %s in the entry" % path_text(text))
        return [text]
    text = str(text)
    if text not in data:
        text = text.strip()
    if text in data:
        value = data[text]
        if _splits(text, value, cut):
            return [path for path, _value in iter_fields({text: value}, cut=cut)]
        return [(text,)]
    key, rest = None, None
    for candidate in sorted(data, key=len, reverse=True):
        if text.startswith(candidate) and text[len(candidate):len(candidate) + 1] in (".", "["):
            key, rest = candidate, text[len(candidate):]
            break
    if key is None:
        raise UnknownField("no field %r in the entry (its fields start with: %s)" % (text, ", ".join(sorted(data))))
    value = data[key]
    if not _splits(key, value, cut):
        # a place inside a value committed whole
        return [(key,)]
    if isinstance(value, list):
        match = _INDEX.match(rest) if rest.startswith("[") else re.match(r"^\.(\d+)(.*)$", rest)
        if not match:
            raise UnknownField("%r: %s is an array; name a member as %s[N]" % (text, key, key))
        index = int(match.group(2) if rest.startswith("[") else match.group(1))
        if index >= len(value):
            raise UnknownField("%r: %s has %d members" % (text, key, len(value)))
        return [(key, index)]
    rest = rest[1:] if rest.startswith(".") else rest
    for member in sorted(value, key=len, reverse=True):
        if rest == member or (rest.startswith(member) and rest[len(member):len(member) + 1] in (".", "[")):
            return [(key, member)]
    raise UnknownField("no field %r in the entry (%s has: %s)" % (text, key, ", ".join(sorted(value))))


def field_value(data, path):
    value = data[path[0]]
    return value if len(path) == 1 else value[path[1]]


def with_field_replaced(data, path, replacement):
    """A copy of ``data`` (containers along ``path`` copied) with the field at ``path`` replaced."""
    copy = dict(data)
    if len(path) == 1:
        copy[path[0]] = replacement
        return copy
    container = copy[path[0]]
    container = dict(container) if isinstance(container, dict) else list(container)
    container[path[1]] = replacement
    copy[path[0]] = container
    return copy
