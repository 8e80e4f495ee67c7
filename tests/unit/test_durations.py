# -*- coding: utf-8 -*-
"""The one duration parser and the two printers (module_utils/durations.py), and the options that read through
them keeping what their documentation promises: ``last_seen_refresh`` (``0``, a bare number of seconds, ``never``),
``since``/``until`` (a duration back from now), a policy's ``duration``/``stale_after`` (no zero), the gate's
messages (rounded) and policy diffs (exact)."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.change_events import parse_moment
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb import parse_refresh
from ansible_collections.changeops.itsm.plugins.module_utils.durations import (
    describe_duration,
    describe_roughly,
    parse_duration,
)
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError

D = datetime.timedelta


@pytest.mark.parametrize("text, expected", [
    ("30m", D(minutes=30)), ("24h", D(hours=24)), ("7d", D(days=7)), ("2w", D(weeks=2)), ("45s", D(seconds=45)),
    ("1d12h", D(days=1, hours=12)), ("2h 30m", D(hours=2, minutes=30)), (" 6H ", D(hours=6)), (3600, D(hours=1)),
    ("", None), ("h", None), ("6 hours", None), ("6h!", None), ("-6h", None), ("90", None), ("1.5h", None),
    (None, None), (True, None), ([], None), ("0", None), ("0h", None), (0, None), (-5, None),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


def test_zero_and_bare_seconds_only_where_asked():
    assert parse_duration("0", allow_zero=True) is None, "a bare 0 is a number of seconds: bare_seconds"
    assert parse_duration("0h", allow_zero=True) == D(0)
    assert parse_duration("0", allow_zero=True, bare_seconds=True) == D(0)
    assert parse_duration("90", bare_seconds=True) == D(seconds=90)
    assert parse_duration("0", bare_seconds=True) is None, "zero needs allow_zero too"


@pytest.mark.parametrize("value, expected", [
    ("24h", D(hours=24)), ("0", D(0)), ("90", D(seconds=90)), ("7d", D(days=7)), ("never", None), ("NEVER", None),
    ("1d12h", D(days=1, hours=12)),
])
def test_last_seen_refresh_keeps_its_documented_forms(value, expected):
    assert parse_refresh(value) == expected


@pytest.mark.parametrize("value", ["sometimes", "-1h", "", "1.5h"])
def test_last_seen_refresh_refuses_what_is_no_duration(value):
    with pytest.raises(ValidationError) as raised:
        parse_refresh(value)
    assert "last_seen_refresh: %r is neither a duration (30m, 24h, 7d, 0) nor 'never'" % value in raised.value.message


def test_since_reads_a_duration_back_from_now_through_the_same_parser():
    now = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.timezone.utc)
    assert parse_moment("since", "-24h", now=now) == "2026-11-22T12:00:00.000000Z"
    assert parse_moment("since", "1d12h", now=now) == "2026-11-22T00:00:00.000000Z"
    assert parse_moment("since", "0h", now=now) == "2026-11-23T12:00:00.000000Z"
    assert parse_moment("since", "2026-11-20", now=now) == "2026-11-20T00:00:00.000000Z"
    with pytest.raises(ValidationError):
        parse_moment("since", "yesterday", now=now)


@pytest.mark.parametrize("delta, exact, rough", [
    (D(0), "0 s", "0 s"),
    (D(seconds=59), "59 s", "59 s"),
    (D(minutes=1, seconds=3), "1 min 3 s", "1 min"),
    (D(minutes=90), "1 h 30 min", "1 h 30 min"),
    (D(hours=2), "2 h", "2 h"),
    (D(hours=12, minutes=5), "12 h 5 min", "12 h"),
    (D(hours=30), "1 d 6 h", "30 h"),
    (D(days=3, hours=4, minutes=5), "3 d 4 h 5 min", "3 d 4 h"),
    (D(days=7), "7 d", "7 d"),
])
def test_the_exact_and_the_rounded_printer(delta, exact, rough):
    assert describe_duration(delta) == exact
    assert describe_roughly(delta) == rough
    assert describe_roughly(-delta) == rough, "a time before or after reads the same"
