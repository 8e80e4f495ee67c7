# -*- coding: utf-8 -*-
"""The one definition of a change (module_utils/change_scope.py) that every count uses."""

from __future__ import annotations

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils import change_scope


def result(status="changed", action="ansible.builtin.copy", host="web01", item=None, uuid="t1", check_mode=False):
    task = {"uuid": uuid, "action": action}
    if check_mode is not None:
        task["check_mode"] = check_mode
    return {"status": status, "changed": status == "changed", "host": host, "item": item, "task": task}


@pytest.mark.parametrize("record, dry_run, scope", [
    (result(), False, "host"),
    (result(status="ok"), False, None),
    (dict(result(), status="failed"), False, None),             # changed, but the task failed
    (dict(result(), status="unreachable"), False, None),
    (result(check_mode=True), False, "predicted"),               # check_mode: true in a real run
    (result(check_mode=False), True, "host"),                    # check_mode: false under --check
    (result(check_mode=None), True, "predicted"),                # older records follow the run
    (result(action="changeops.itsm.register_host"), False, "record"),
    (result(action="changeops.itsm.checklist_evidence", check_mode=True), False, "predicted"),
    (result(action="changeops.itsm.change_register"), False, None),   # renders the record, changes nothing
])
def test_what_a_result_changed(record, dry_run, scope):
    assert change_scope.change_scope(record, dry_run) == scope


def test_a_loop_is_its_items_not_one_more():
    items = [result(item={"index": n, "label": str(n)}) for n in range(6)]
    summary = result()   # the loop's own result, recorded after its items
    other_task = result(uuid="t2")
    counted = change_scope.counted_results(items + [summary, other_task])
    assert counted == items + [other_task]
    assert len(change_scope.changes_by_scope(items + [summary], False)["host"]) == 6
    # a loop whose items are not among the results (only the changed ones are read) keeps its summary
    assert change_scope.counted_results([summary]) == [summary]
    # the same task on another host is another loop
    assert change_scope.counted_results(items + [dict(summary, host="web02")]) == items + [dict(summary, host="web02")]


def test_the_run_category_a_host_change_always_decides():
    def gates():
        return "standard", "std-a"
    assert change_scope.classify(False, True, True, True, gates) == ("standard", "std-a")
    assert change_scope.classify(True, True, False, False, gates) == ("standard", "std-a")
    assert change_scope.classify(True, False, True, True, gates) == ("dry-run", None)
    assert change_scope.classify(False, False, True, True, gates) == ("denied", None)
    assert change_scope.classify(False, False, False, True, gates) == ("record-only", None)
    assert change_scope.classify(False, False, False, False, gates) == ("no-change", None)
