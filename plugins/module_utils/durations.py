# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durations as people write and read them: one parser, and the two ways the collection prints them.

Every duration option reads through :func:`parse_duration` (``30m``, ``24h``, ``7d``, ``2w``, ``1d12h``,
``2h 30m``); what each option accepts beyond that is one of its flags, so the documented forms of each
stay as they were: ``last_seen_refresh`` also takes ``0`` and a bare number of seconds, ``since``/``until``
``0h``, a policy's ``duration``/``stale_after`` and ``triage.window`` neither.

The printers differ on purpose: :func:`describe_duration` is exact (a policy diff must show that 90 min
became 91 min), :func:`describe_roughly` rounds to what a person needs in a message ("now is 2 h after
the window ends", "29 min left").
"""

from __future__ import annotations

import datetime
import re

_PART = re.compile(r"(\d+)\s*([wdhms])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_BARE = re.compile(r"^\d+$")


def parse_duration(value, allow_zero=False, bare_seconds=False):
    """``value`` (``3h``, ``90m``, ``1d12h``, ``2h 30m``; an integer is seconds) as a timedelta; None when it is
    not a duration.

    ``allow_zero``: a zero duration (``0``, ``0h``) is one (else None, as for a window that would be empty).
    ``bare_seconds``: a string of digits alone counts seconds (``"90"``); else it is not a duration.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        delta = datetime.timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if bare_seconds and _BARE.match(text):
            delta = datetime.timedelta(seconds=int(text))
        elif not text or _PART.sub("", text).strip():
            return None
        else:
            delta = datetime.timedelta()
            for amount, unit in _PART.findall(text):
                delta += datetime.timedelta(**{_UNITS[unit]: int(amount)})
    else:
        return None
    if delta < datetime.timedelta() or (delta == datetime.timedelta() and not allow_zero):
        return None
    return delta


def describe_duration(delta):
    """Exact: every non-zero unit, days to seconds (``1 d 2 h 3 min 4 s``; ``0 s``)."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            parts.append("%d %s" % (seconds // size, unit))
            seconds %= size
    return " ".join(parts) or "0 s"


def describe_roughly(delta):
    """Rounded down to what a message needs, of either sign: seconds under a minute, minutes under an hour, hours
    (and minutes under 10 h) under two days, then days (and hours)."""
    seconds = int(abs(delta.total_seconds()))
    if seconds < 60:
        return "%d s" % seconds
    minutes = seconds // 60
    if minutes < 60:
        return "%d min" % minutes
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return "%d h" % hours if minutes == 0 or hours >= 10 else "%d h %d min" % (hours, minutes)
    days, hours = divmod(hours, 24)
    return "%d d" % days if hours == 0 else "%d d %d h" % (days, hours)
