# -*- coding: utf-8 -*-
"""What a change event says ran: every batch of a serial play, ad-hoc commands as their own kind (every backend)."""

from __future__ import annotations

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils import change_gate
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.redact import Redactor
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import adhoc


def started(run_id, **data):
    return Entry("run.started", run_id, dict({"run_id": run_id, "started_at": "2026-03-01T10:00:00.000000Z",
                                              "playbooks": ["/srv/site.yml"]}, **data))


def play(run_id, hosts, batch=None, play_id="p1", started_at="2026-03-01T10:00:01.000000Z"):
    data = {"run_id": run_id, "play_id": play_id, "name": "Rolling update", "pattern": "web", "hosts": hosts,
            "started_at": started_at}
    if batch is not None:
        data["batch"] = batch
    return Entry("run.play", run_id, data)


def test_a_serial_play_lists_the_hosts_of_every_batch(sor):
    sor.append([started("r"), play("r", ["w1", "w2"], 1), play("r", ["w3", "w4"], 2, started_at="later"),
                play("r", ["w5"], 3, started_at="later still"), play("r", ["db1"], 1, play_id="p2")])
    first, second = sor.get_change_event("r")["plays"]
    assert first["hosts"] == ["w1", "w2", "w3", "w4", "w5"]
    assert first["batches"] == [["w1", "w2"], ["w3", "w4"], ["w5"]]
    assert first["started_at"] == "2026-03-01T10:00:01.000000Z" and "batch" not in first
    assert second["hosts"] == ["db1"] and "batches" not in second, "a play of one batch has no batches list"


def test_entries_of_a_recorder_that_did_not_number_batches_merge_as_well(sor):
    """Ledgers written before this change hold one run.play per batch too: the replay migration fixes them."""
    sor.append([started("old"), play("old", ["a", "b"]), play("old", ["c"])])
    [merged] = sor.get_change_event("old")["plays"]
    assert merged["hosts"] == ["a", "b", "c"] and merged["batches"] == [["a", "b"], ["c"]]


def test_an_adhoc_command_is_a_change_event_of_its_own_kind(sor):
    command = {"module": "shell", "pattern": "web*", "args": "systemctl restart nginx"}
    sor.append([started("cmd", kind="adhoc", adhoc=command, playbooks=[]), started("pb", kind="playbook"),
                Entry("run.started", "legacy", {"run_id": "legacy", "started_at": "2026-03-01T09:00:00.000000Z"})])
    event = sor.get_change_event("cmd")
    assert (event["kind"], event["adhoc"], event["playbook"]) == ("adhoc", command, None)
    assert sor.get_change_event("legacy")["kind"] == "playbook", "events recorded before kinds are playbook runs"
    assert [e["run_id"] for e in sor.find_change_events(kind="adhoc")] == ["cmd"]
    assert sorted(e["run_id"] for e in sor.find_change_events(kind="playbook")) == ["legacy", "pb"]
    assert len(sor.find_change_events(kind=["adhoc", "playbook"])) == 3


# -- the environment variables the gate and the recorder read ----------------------------------------
BARE = {"change_request": None, "emergency": False, "justification": None, "standard_template": None}


@pytest.mark.parametrize("environ, expected", [
    ({}, BARE),
    ({"CHANGEOPS_CHANGE_REQUEST": " CHG0000042 "}, dict(BARE, change_request="CHG0000042")),
    ({"CHANGEOPS_EMERGENCY": "INC0012: checkout down"},
     dict(BARE, emergency=True, justification="INC0012: checkout down")),
    ({"CHANGEOPS_EMERGENCY": "INC1", "CHANGEOPS_CHANGE_REQUEST": "CHG7"},
     dict(BARE, emergency=True, justification="INC1", change_request="CHG7")),
    ({"CHANGEOPS_EMERGENCY": "   "}, BARE),
])
def test_the_environment_names_a_change_request_or_an_emergency(environ, expected):
    assert change_gate.named_in_environment(BARE, environ) == expected


@pytest.mark.parametrize("task", [
    dict(BARE, change_request="CHG1"), dict(BARE, emergency=True, justification="x"),
    dict(BARE, standard_template="patching")])
def test_what_the_task_names_wins_over_the_environment(task):
    environ = {"CHANGEOPS_CHANGE_REQUEST": "CHG9", "CHANGEOPS_EMERGENCY": "because"}
    assert change_gate.named_in_environment(task, environ) == task


def test_adhoc_arguments_are_redacted_like_every_recorded_string():
    redactor = Redactor()
    redactor.add_known_secret("s3cr3t-extra-var")
    cli = {"module_name": "user", "args": "db*", "module_args": "name=app password=hunter22 note=s3cr3t-extra-var"}
    described = adhoc.describe(cli, redactor)
    assert described == {"module": "user", "pattern": "db*", "args": "name=app password=******** note=********"}
    as_json = adhoc.describe(dict(cli, module_args='{"name": "app", "api_token": "abc123"}'), redactor)
    assert as_json["args"] == '{"api_token": "********", "name": "app"}'
