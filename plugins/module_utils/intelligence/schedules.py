# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Recurring windows: when does a schedule with a duration occupy a moment or a period?

A schedule is an RFC 5545 recurrence rule (``FREQ=WEEKLY;BYDAY=SU;BYHOUR=1;BYMINUTE=0``, evaluated by
python-dateutil's ``rrule``, the reference implementation of iCalendar recurrences in Python) or a
five-field cron expression (``0 1 * * 0``, evaluated by ``croniter``), read in wall-clock time of an
IANA time zone, plus a duration. Both libraries are maintained and widely used; writing a recurrence
engine here would only add bugs (cron's day-of-month OR day-of-week rule, RRULE's BYSETPOS...).

Speed: ``rrule`` iterates from its DTSTART, so a daily rule anchored in 2000 takes ~50 ms to reach
today. For rules whose period has a fixed length in wall-clock time (MINUTELY, HOURLY, DAILY, WEEKLY,
without COUNT), the DTSTART is moved forward by whole periods before evaluating: the same
occurrences, found in microseconds. Other rules iterate from their start (a monthly rule since 2000
is ~300 steps).
"""

from __future__ import annotations

import datetime

try:
    from dateutil import rrule as _rrule
except ImportError:  # pragma: no cover - declared in requirements.txt
    _rrule = None
try:
    import croniter as _croniter_module
    from croniter import croniter as _croniter
except ImportError:  # pragma: no cover - declared in requirements.txt
    _croniter_module = None
    _croniter = None

from ansible_collections.changeops.itsm.plugins.module_utils.durations import describe_duration
from ansible_collections.changeops.itsm.plugins.module_utils.errors import MissingDependency

_FIXED_PERIODS = {"MINUTELY": "minutes", "HOURLY": "hours", "DAILY": "days", "WEEKLY": "weeks"}
#: the DTSTART of a rule that names none (its times of day should be in BYHOUR/BYMINUTE)
DEFAULT_START = datetime.datetime(2000, 1, 3)  # a Monday at midnight
#: occurrences listed for one period at most (a minutely cron over a week-long change window)
MAX_OCCURRENCES = 200


def _require_rrule():
    if _rrule is None:
        raise MissingDependency("recurring windows with rrule need the Python library python-dateutil on the "
                                "controller (pip install python-dateutil)")


def _require_croniter():
    if _croniter is None:
        raise MissingDependency("recurring windows with cron need the Python library croniter on the controller "
                                "(pip install croniter)")


class Schedule(object):
    """A recurrence (``rrule`` or ``cron``) in ``tz``'s wall-clock time, with a duration."""

    def __init__(self, kind, text, tz, timezone, duration, start=None):
        self.kind = kind
        self.text = text
        self.tz = tz
        self.timezone = timezone
        self.duration = duration
        self.start = start or DEFAULT_START
        if kind == "rrule":
            parts = dict(part.split("=", 1) for part in text.upper().split(";") if "=" in part)
            self._freq = parts.get("FREQ")
            self._interval = int(parts.get("INTERVAL") or 1)
            self._counted = "COUNT" in parts

    def validate(self):
        """Raise ``ValueError`` with the library's reason when the expression is not valid."""
        if self.kind == "rrule":
            _require_rrule()
            if self._freq == "SECONDLY":
                raise ValueError("FREQ=SECONDLY is not a maintenance schedule")
            _rrule.rrulestr(self.text, dtstart=self.start)
        else:
            _require_croniter()
            if not _croniter.is_valid(self.text) or len(self.text.split()) not in (5,) and not self.text.startswith("@"):
                raise ValueError("not a five-field cron expression (minute hour day-of-month month day-of-week)")

    def describe(self):
        return "%s (%s) for %s" % (self.text, self.timezone, describe_duration(self.duration))

    # -- occurrences ---------------------------------------------------------
    def occurrences(self, start, end):
        """Occurrences ``(begin, finish)`` (aware, UTC) whose span overlaps ``[start, end)``, oldest first."""
        local_from = (start - self.duration).astimezone(self.tz).replace(tzinfo=None)
        local_to = end.astimezone(self.tz).replace(tzinfo=None)
        found = []
        for moment in self._local_starts(local_from, local_to):
            begin = moment.replace(tzinfo=self.tz).astimezone(datetime.timezone.utc)
            finish = begin + self.duration
            if begin < end and finish > start:
                found.append((begin, finish))
                if len(found) >= MAX_OCCURRENCES:
                    break
        return found

    def _local_starts(self, after, before):
        if self.kind == "cron":
            _require_croniter()
            iterator = _croniter(self.text, after - datetime.timedelta(microseconds=1))
            for _index in range(MAX_OCCURRENCES * 5):
                moment = iterator.get_next(datetime.datetime)
                if moment > before:
                    return
                yield moment
            return
        _require_rrule()
        rule = _rrule.rrulestr(self.text, dtstart=self._rebased_start(after))
        for moment in rule.xafter(after, count=MAX_OCCURRENCES * 5, inc=True):
            if moment > before:
                return
            yield moment

    def _rebased_start(self, after):
        """DTSTART moved forward by whole periods to just before ``after`` (same occurrences, fewer steps)."""
        unit = _FIXED_PERIODS.get(self._freq)
        if unit is None or self._counted or after <= self.start:
            return self.start
        period = datetime.timedelta(**{unit: self._interval})
        periods = int((after - self.start) / period) - 1
        if periods <= 0:
            return self.start
        return self.start + periods * period
