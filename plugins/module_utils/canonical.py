# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canonical JSON and time helpers.

Every ledger entry is hashed over its canonical JSON form, so the exact byte
layout is part of the on-disk contract: keys sorted, no insignificant
whitespace, UTF-8, no NaN/Infinity. Changing this function breaks every
existing chain: don't.

An integer with more than :data:`MAX_INT_DIGITS` decimal digits never reaches
the canonical form as a number: Python refuses to write (and to read back)
such a JSON number, so an entry holding one is recorded with the integer
replaced by the string :func:`oversized_int_text` gives - its every digit,
after a marker (docs/ledger.md, "Integers too long for JSON"). The canonical
form itself is unchanged: the entry holds a string.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re

GENESIS_HASH = "0" * 64

#: integers with more decimal digits than this are recorded as text (:func:`oversized_int_text`): CPython's
#: default ``sys.int_info.default_max_str_digits``, fixed here so the recorded form never depends on a process's
#: ``sys.set_int_max_str_digits``
MAX_INT_DIGITS = 4300
_INT_LIMIT = 10 ** MAX_INT_DIGITS
#: what an oversized integer's text starts with; the number of digits follows, then the digits
OVERSIZED_INT_MARKER = "[integer of %d digits] "
#: digits per piece when an integer is written out a piece at a time (well under any str conversion limit)
_PIECE_DIGITS = 1000
_PIECE = 10 ** _PIECE_DIGITS


def is_oversized_int(value):
    """True for an int (not a bool) with more than :data:`MAX_INT_DIGITS` decimal digits."""
    return isinstance(value, int) and not isinstance(value, bool) and not -_INT_LIMIT < value < _INT_LIMIT


def int_text(value):
    """The decimal text of any int, however long: written a piece of :data:`_PIECE_DIGITS` digits at a time, so
    Python's limit on int-to-str conversion (``sys.get_int_max_str_digits``) is never met."""
    value = int(value)
    if -_PIECE < value < _PIECE:
        return int.__repr__(value)
    sign, value = ("-", -value) if value < 0 else ("", value)
    pieces = []
    while value >= _PIECE:
        value, piece = divmod(value, _PIECE)
        pieces.append(int.__repr__(piece).rjust(_PIECE_DIGITS, "0"))
    pieces.append(int.__repr__(value))
    return sign + "".join(reversed(pieces))


def oversized_int_text(value):
    """What an oversized integer is recorded as: ``[integer of N digits] `` and its N digits (lossless; a
    minus sign before the digits of a negative one)."""
    digits = int_text(value)
    return (OVERSIZED_INT_MARKER % len(digits.lstrip("-"))) + digits


def find_oversized_int(value, path=()):
    """The path (a tuple of keys and indexes) of the first oversized integer in ``value``, or None."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = find_oversized_int(item, path + (key,))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_oversized_int(item, path + (index,))
            if found is not None:
                return found
    elif is_oversized_int(value):
        return path
    return None


def replace_oversized_ints(value):
    """``value`` with every oversized integer replaced by :func:`oversized_int_text` (lists and dicts copied)."""
    if isinstance(value, dict):
        return {key: replace_oversized_ints(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [replace_oversized_ints(item) for item in value]
    if is_oversized_int(value):
        return oversized_int_text(value)
    return value


def field_name(path):
    """``a.b[2].c`` for the path ``("a", "b", 2, "c")``."""
    text = ""
    for part in path:
        text += "[%d]" % part if isinstance(part, int) else ("." if text else "") + str(part)
    return text


def _default(value):
    # Ansible hands us tagged str/dict subclasses and occasionally sets or
    # datetimes; reduce them to plain JSON types deterministically.
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class _NotPlain(Exception):
    """A value :func:`_plain_copy` leaves to the JSON round trip."""


#: exact types a plain copy shares instead of converting (subclasses, such as Ansible's tagged strings, are not)
_PLAIN_SCALARS = frozenset((int, bool, type(None)))
#: the JSON round trip joins an escaped surrogate pair into one character: strings holding surrogates take it
_SURROGATE = re.compile("[\ud800-\udfff]")


def _ascii_strings(items):
    """Whether every member of the list ``items`` is an exact ``str`` (not a subclass, such as Ansible's tagged
    strings) of ASCII only: C-level passes, no Python call per member."""
    return _EXACT_STR.issuperset(map(type, items)) and all(map(str.isascii, items))


_EXACT_STR = frozenset((str,))


def _plain_copy(value):
    """A copy of ``value`` made of new dicts and lists when it holds nothing but exact JSON types (str keys, finite
    floats, strings without surrogates); raises ``_NotPlain`` otherwise. The same result as the JSON round trip,
    without serialising."""
    kind = type(value)
    if kind is str:
        if value.isascii() or not _SURROGATE.search(value):
            return value
        raise _NotPlain()
    if kind is dict:
        copy = {}
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or not _SURROGATE.search(key)):  # pylint: disable=unidiomatic-typecheck
                raise _NotPlain()
            copy[key] = item if type(item) in _PLAIN_SCALARS else _plain_copy(item)
        return copy
    if kind is list:
        if _ascii_strings(value):
            return list(value)  # a list of plain ASCII strings (run.gate's 10,000 hosts): copied at C level
        return [item if type(item) in _PLAIN_SCALARS else _plain_copy(item) for item in value]
    if kind in _PLAIN_SCALARS or (kind is float and math.isfinite(value)):
        return value
    raise _NotPlain()


def to_plain(value):
    """Return ``value`` as plain JSON types (dict/list/str/int/float/bool/None): a copy that shares nothing mutable.

    Entries built from documents that are plain already (the recorder's spool and queue, every append) are copied
    directly, about 2.4 times faster (17 -> 7 us per task result in ``Entry.from_dict``) than the round trip
    through JSON text that reduces anything else (bench/ledger_scale).
    """
    try:
        return _plain_copy(value)
    except (_NotPlain, RecursionError):
        pass
    try:
        return json.loads(json.dumps(value, default=_default, allow_nan=False))
    except ValueError as exc:
        # (not a circular reference, NaN...: Python's own words for the int limit, since 3.11)
        if "integer string conversion" not in str(exc):
            raise
        # (in a tuple or an int subclass, which the plain copy leaves to the round trip: see the module docstring)
        return json.loads(json.dumps(replace_oversized_ints(value), default=_default, allow_nan=False))


def canonical_json(value):
    """Serialise ``value`` canonically; returns ``str``."""
    return json.dumps(
        value,
        default=_default,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def chain_hash(prev_hash, canonical_entry):
    """SHA-256 over the previous entry's hash followed by this entry's canonical JSON."""
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(canonical_entry.encode("utf-8"))
    return digest.hexdigest()


def utc_now():
    """Current time as an ISO 8601 UTC string with microseconds and a ``Z``."""
    return format_time(datetime.datetime.now(datetime.timezone.utc))


def format_time(moment):
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text):
    """Parse an ISO 8601 time (``Z`` or offset; naive means UTC) into an aware datetime."""
    if isinstance(text, datetime.datetime):
        moment = text
    else:
        value = str(text).strip()
        if value.endswith("Z"):
            value = value[:-1] + "+00:00"
        moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment
