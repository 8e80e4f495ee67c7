# -*- coding: utf-8 -*-
"""Writing the register file: no temporary file outlives a generation, and a given-up refresh never writes."""

from __future__ import annotations

import os
import threading
import time

from ansible_collections.changeops.itsm.plugins.module_utils.change_register import (
    STALE_TEMPORARY_SECONDS,
    remove_stale_temporaries,
    write_atomically,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.post_run.refresh_register import (
    Refresh,
    RefreshAbandoned,
    refresh_budget,
)


def _touch(path, age):
    with open(str(path), "w") as stream:
        stream.write("partial")
    moment = time.time() - age
    os.utime(str(path), (moment, moment))


def test_a_temporary_file_left_by_a_killed_generation_is_removed_by_the_next_one(tmp_path):
    target = tmp_path / "register.html"
    stale = tmp_path / ".register.html.k3j_9xQa"
    young = tmp_path / ".register.html.Zz81abcd"   # another controller may be writing it right now
    other = tmp_path / ".register.html.bak"
    unrelated = tmp_path / ".other.html.k3j_9xQa"
    _touch(stale, STALE_TEMPORARY_SECONDS + 60)
    _touch(young, 5)
    _touch(other, STALE_TEMPORARY_SECONDS + 60)
    _touch(unrelated, STALE_TEMPORARY_SECONDS + 60)

    write_atomically(str(target), "<html></html>")
    assert target.read_text() == "<html></html>"
    assert sorted(os.listdir(str(tmp_path))) == sorted([
        "register.html", young.name, other.name, unrelated.name])
    assert remove_stale_temporaries(str(target), now=time.time() + STALE_TEMPORARY_SECONDS) == [str(young)]


def test_a_refresh_given_up_on_does_not_write_when_it_finishes_later(tmp_path):
    config = {"backend": "sqlite", "sqlite_path": str(tmp_path / "ledger.sqlite")}
    open_system_of_record(config).close()
    release = threading.Event()

    def slow_opener(cfg):
        release.wait(30)
        return open_system_of_record(cfg)

    target = tmp_path / "register.html"
    refresh = Refresh(config, {"path": str(target), "verify_chain": True}, opener=slow_opener)
    refresh.start()
    assert not refresh.done.wait(0.2)
    assert refresh.abandon() is True
    release.set()
    assert refresh.done.wait(30)
    assert isinstance(refresh.error, RefreshAbandoned) and refresh.result is None
    assert os.listdir(str(tmp_path)) == ["ledger.sqlite"], "nothing written, no temporary file"


def test_a_refresh_that_finished_is_not_given_up(tmp_path):
    config = {"backend": "sqlite", "sqlite_path": str(tmp_path / "ledger.sqlite")}
    refresh = Refresh(config, {"path": str(tmp_path / "register.html"), "verify_chain": True})
    refresh.start()
    assert refresh.done.wait(60)
    assert refresh.abandon() is False
    assert refresh.error is None and refresh.result["changed"] is True
    assert (tmp_path / "register.html").exists()


def test_the_refresh_budget_stays_inside_the_writers_flush_timeout():
    assert refresh_budget({}) == 30.0
    assert refresh_budget({"register_refresh_timeout": "5", "flush_timeout": 60.0}) == 5.0
    assert refresh_budget({"register_refresh_timeout": 120, "flush_timeout": 60.0}) == 45.0
    assert refresh_budget({"register_refresh_timeout": "nonsense", "flush_timeout": 20}) == 15.0
