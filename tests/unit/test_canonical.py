# -*- coding: utf-8 -*-
"""Canonical JSON and time helpers: the byte layout every ledger hash depends on."""

from __future__ import annotations

import datetime
import hashlib
import json
import math

import pytest
from hypothesis import given, strategies as st

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import (
    GENESIS_HASH,
    canonical_json,
    chain_hash,
    format_time,
    parse_time,
    to_plain,
    utc_now,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 53), max_value=2 ** 53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def test_layout_is_sorted_compact_utf8():
    # A frozen example: if this changes, every existing ledger stops verifying.
    value = {"b": [1, 2.5, None, True], "a": {"z": "é", "y": "\u2603"}, "c": ""}
    assert canonical_json(value) == '{"a":{"y":"\u2603","z":"é"},"b":[1,2.5,null,true],"c":""}'


def test_frozen_chain_hash():
    entry = canonical_json({"id": "1", "at": "2026-01-01T00:00:00.000000Z", "kind": "run.started",
                            "subject": "r", "actor": None, "data": {}})
    expected = hashlib.sha256((GENESIS_HASH + entry).encode("utf-8")).hexdigest()
    assert chain_hash(GENESIS_HASH, entry) == expected
    assert len(GENESIS_HASH) == 64 and set(GENESIS_HASH) == {"0"}


@given(json_values)
def test_key_order_never_changes_the_bytes(value):
    text = canonical_json(value)
    assert canonical_json(json.loads(text)) == text
    if isinstance(value, dict):
        reversed_dict = dict(reversed(list(value.items())))
        assert canonical_json(reversed_dict) == text


@given(json_values, json_values)
def test_different_values_hash_differently(left, right):
    if canonical_json(left) != canonical_json(right):
        assert chain_hash(GENESIS_HASH, canonical_json(left)) != chain_hash(GENESIS_HASH, canonical_json(right))


def test_chain_hash_depends_on_previous_hash():
    body = canonical_json({"x": 1})
    assert chain_hash(GENESIS_HASH, body) != chain_hash("1" * 64, body)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(bad):
    with pytest.raises(ValueError):
        canonical_json({"value": bad})


def test_non_json_types_reduce_deterministically():
    moment = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=datetime.timezone.utc)
    plain = to_plain({"set": {"b", "a", "c"}, "when": moment, "raw": b"caf\xc3\xa9", "other": object})
    assert plain["set"] == ["a", "b", "c"]
    assert plain["when"] == "2026-11-23T10:00:00+00:00"
    assert plain["raw"] == "café"
    assert isinstance(plain["other"], str)
    assert canonical_json({"s": frozenset([3, 1, 2])}) == '{"s":[1,2,3]}'


def test_str_subclasses_serialise_as_plain_strings():
    class Tagged(str):
        pass

    assert canonical_json({"k": Tagged("v")}) == canonical_json({"k": "v"})


def test_format_time_is_utc_with_microseconds_and_z():
    offset = datetime.timezone(datetime.timedelta(hours=2))
    assert format_time(datetime.datetime(2026, 11, 23, 12, 0, 0, 5, tzinfo=offset)) == "2026-11-23T10:00:00.000005Z"
    # naive means UTC
    assert format_time(datetime.datetime(2026, 11, 23, 12, 0)) == "2026-11-23T12:00:00.000000Z"


def test_utc_now_round_trips_and_sorts_as_text():
    first = utc_now()
    second = utc_now()
    assert first.endswith("Z") and len(first) == len("2026-11-23T10:00:00.000000Z")
    assert first <= second
    assert format_time(parse_time(first)) == first


@pytest.mark.parametrize("text, expected", [
    ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00.000000Z"),
    ("2026-11-23T10:00:00+02:00", "2026-11-23T08:00:00.000000Z"),
    ("2026-11-23T10:00:00", "2026-11-23T10:00:00.000000Z"),
    ("2026-11-23", "2026-11-23T00:00:00.000000Z"),
    (" 2026-11-23T10:00:00.123456Z ", "2026-11-23T10:00:00.123456Z"),
])
def test_parse_time_accepts_iso_forms(text, expected):
    assert format_time(parse_time(text)) == expected


def test_parse_time_rejects_garbage():
    with pytest.raises(ValueError):
        parse_time("yesterday")


def _round_trip(value):
    return json.loads(json.dumps(value, allow_nan=False, default=str))


@pytest.mark.parametrize("value", [
    {"a": 1, "b": [1, 2.5, None, True, {"c": "d", "e": []}], "f": {}},
    {"nested": [[[{"deep": [1, {"x": -0.0}]}]]], "text": "caf\u00e9 \ud83d\ude00", "big": 2 ** 70},
    {1: "int key", "s": "x"},                      # a non-str key: the round trip makes it "1"
    {"t": (1, 2), "l": [(3,)]},                    # tuples become lists
    # lists of names (run.gate's hosts): all ASCII (copied at C level), mixed, lone surrogates, empty
    {"hosts": ["web%03d" % number for number in range(50)], "mixed": ["a", "caf\u00e9", "\ud800"], "none": [],
     "pair": ["a", "\ud83d\ude00"]},  # a surrogate pair: the round trip makes it one character
])
def test_to_plain_matches_the_json_round_trip_and_shares_nothing_mutable(value):
    plain = to_plain(value)
    assert plain == _round_trip(value)
    assert canonical_json(plain) == canonical_json(_round_trip(value))

    def containers(item):
        if isinstance(item, dict):
            yield item
            for member in item.values():
                yield from containers(member)
        elif isinstance(item, (list, tuple)):
            yield item
            for member in item:
                yield from containers(member)

    originals = set(id(item) for item in containers(value))
    assert not any(id(item) in originals for item in containers(plain))


def test_to_plain_reduces_subclasses_and_refuses_what_json_refuses():
    class Tagged(str):
        pass

    class Counted(int):
        pass

    plain = to_plain({Tagged("k"): Tagged("v"), "n": Counted(3), "l": [Tagged("w")], "m": ["a", Tagged("b")]})
    assert plain == {"k": "v", "n": 3, "l": ["w"], "m": ["a", "b"]}
    # exact types, not subclasses: pylint: disable=unidiomatic-typecheck
    assert type(plain["m"][1]) is str  # noqa: E721 (a list of ASCII names with a subclass among them)
    assert type(plain["l"][0]) is str and type(plain["n"]) is int  # noqa: E721
    assert all(type(key) is str for key in plain)  # noqa: E721
    with pytest.raises(ValueError):
        to_plain({"value": [math.nan]})
    looped = {"a": []}
    looped["a"].append(looped)
    with pytest.raises(ValueError):
        to_plain(looped)
