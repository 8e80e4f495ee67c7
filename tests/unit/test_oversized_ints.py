# -*- coding: utf-8 -*-
"""Integers too long for JSON (docs/ledger.md, "Integers too long for JSON").

Python refuses to convert an int of more than 4,300 decimal digits to text (``sys.int_info``,
``sys.set_int_max_str_digits``), so such an int in a task result or in an entry's data once failed the whole
batch at ``Entry.prepare``. On every backend an entry holding one is now recorded, the int replaced by its every
digit after a marker; the batch around it is recorded whole, the chain verifies and the query tables match a
replay. The recorder's sanitising step gives the same text before the redactor and the spool meet the int; a
module's own input holding one is refused with an error naming the field.
"""

from __future__ import annotations

import random
import sys

import pytest

from support.history import record_run

from ansible_collections.changeops.itsm.plugins.module_utils import canonical
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import (
    MAX_INT_DIGITS,
    canonical_json,
    find_oversized_int,
    int_text,
    is_oversized_int,
    oversized_int_text,
)
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.operation import check_int_sizes
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.redactor import Redactor
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.summary import plain

BIG = 7 * 10 ** 5000 + 12345


def _unlimited(convert, value):
    """``convert(value)`` (``str`` or ``int``) with the interpreter's limit on int/str conversion lifted for the
    call: the reference int_text is checked against, and the way back from recorded digits."""
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return convert(value)
    finally:
        sys.set_int_max_str_digits(old)


def test_the_interpreter_refuses_them():
    # what the ledger met: the reason for all of the below (the limit is the interpreter's default)
    assert sys.get_int_max_str_digits() == MAX_INT_DIGITS
    with pytest.raises(ValueError):
        str(BIG)


def test_int_text_writes_any_int_without_meeting_the_limit():
    rng = random.Random(4300)
    values = [0, 1, -1, 10 ** 999, 10 ** 1000, -(10 ** 1000), 10 ** 4300 - 1, 10 ** 4300, BIG, -BIG]
    values += [rng.getrandbits(rng.randrange(1, 60000)) * rng.choice((1, -1)) for _draw in range(40)]
    for value in values:
        assert int_text(value) == _unlimited(str, value)


def test_only_ints_of_more_than_4300_digits_are_oversized():
    assert not is_oversized_int(10 ** MAX_INT_DIGITS - 1) and not is_oversized_int(-(10 ** MAX_INT_DIGITS - 1))
    assert is_oversized_int(10 ** MAX_INT_DIGITS) and is_oversized_int(-(10 ** MAX_INT_DIGITS))
    assert not is_oversized_int(True) and not is_oversized_int("9" * 5000) and not is_oversized_int(1e300)
    text = oversized_int_text(-BIG)
    assert text.startswith("[integer of 5001 digits] -7000")
    assert _unlimited(int, text.split("] ", 1)[1]) == -BIG  # lossless
    assert find_oversized_int({"a": [1, {"b": BIG}]}) == ("a", 1, "b")
    assert find_oversized_int({"a": [1, {"b": 2}]}) is None


def test_an_entry_holding_one_is_recorded_with_its_digits_and_the_batch_whole(open_sor):
    sor = open_sor()
    record_run(sor, "r-before", results=2)
    started = Entry("run.started", "r-big", {"run_id": "r-big", "started_at": "2026-12-05T11:00:00.000000Z",
                                             "user": "ops", "controller": "ctl", "playbooks": ["site.yml"]})
    result = Entry("run.result", "r-big", {
        "run_id": "r-big", "play_id": "p1", "host": "web00", "item": None, "status": "changed", "changed": True,
        "task": {"name": "compute", "action": "ansible.builtin.set_fact"},
        "result": {"factorial": BIG, "pair": [1, -BIG], "small": 10 ** 4299}})
    finished = Entry("run.finished", "r-big", {"run_id": "r-big", "outcome": "successful"})
    sor.append([started, result, finished])
    # the whole batch is there
    assert [entry.kind for entry in sor.iter_entries() if entry.subject == "r-big"] == [
        "run.started", "run.result", "run.finished"]
    stored = sor.get_entry(result.id).data["result"]
    assert stored["factorial"] == oversized_int_text(BIG) and stored["pair"] == [1, oversized_int_text(-BIG)]
    assert stored["small"] == 10 ** 4299  # under the limit: a number, as before
    assert _unlimited(int, stored["factorial"].split("] ", 1)[1]) == BIG
    # what the entry holds in memory is what storage holds, and its canonical form is that of plain JSON
    assert result.data["result"] == stored
    assert canonical_json(stored)
    report = sor.verify(projections=True)
    assert report.valid and report.projections_checked and report.projection_problems == [], report.summary()
    # in a tuple (not plain: copied through JSON text when the entry is made) too
    assert Entry("run.note", "r-big", {"pair": (1, BIG)}).data == {"pair": [1, oversized_int_text(BIG)]}
    # later appends chain on from it
    record_run(sor, "r-after", results=1)
    assert sor.verify().valid


def test_the_recorders_sanitising_step_gives_the_same_text():
    redactor = Redactor()
    redactor.add_known_secret(10 ** 4400 + 1)  # a known secret of that size (a vaulted number) is text too
    summary = plain({"stdout": "ok", "value": BIG, "items": [BIG, 3]}, 10 ** 6)
    assert summary == {"stdout": "ok", "value": oversized_int_text(BIG), "items": [oversized_int_text(BIG), 3]}
    assert redactor.redact(summary) == summary
    redactor.redact({"n": 10 ** 4400 + 1})  # (once str() raised in here)
    # cut like any long text when the recorder's limit is shorter
    assert plain(BIG, 100).startswith(oversized_int_text(BIG)[:100]) and "more characters not recorded" in plain(
        BIG, 100)


def test_a_modules_own_input_holding_one_is_refused_naming_the_field():
    check_int_sizes({"attributes": {"disks": [1, 2 ** 64]}, "name": "web01"})
    with pytest.raises(ValidationError) as raised:
        check_int_sizes({"name": "web01", "attributes": {"disks": [1, BIG]}})
    assert "attributes.disks[1]" in raised.value.message and "4300 digits" in raised.value.message
    assert raised.value.details == {"option": "attributes"}
    assert int_text(BIG)[:30] not in raised.value.message  # (the value itself is not echoed)
    assert canonical.field_name(("a", 0, "b")) == "a[0].b"
