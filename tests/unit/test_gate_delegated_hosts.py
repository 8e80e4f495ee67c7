# -*- coding: utf-8 -*-
"""Hosts tasks delegate to are changed by the play too: environment limits, freezes and max_hosts see them."""

from __future__ import annotations

import datetime

from ansible_collections.changeops.itsm.plugins.module_utils import change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.change_gate import build_change_context, decide

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

POLICY = {
    "templates": [{"name": "staging-deploy", "conditions": ["contains(tags, 'deploy')"], "environments": ["staging"],
                   "max_hosts": 3}],
    "freezes": [{"name": "prod-freeze", "start": "2026-11-20", "end": "2026-11-30", "timezone": "UTC",
                 "environments": ["production"], "allowed_change_types": ["emergency"]}],
}

CMDB = {
    "stg-web01": "staging", "stg-web02": "staging", "stg-web03": "staging", "stg-web04": "staging",
    "prod-db01": "production", "lb01": None,
}


def context(hosts=("stg-web01",), delegated=(), unresolved=(), **play_extra):
    play = {"name": "Deploy", "tags": ["deploy"], "modules": ["ansible.builtin.copy"],
            "delegated_hosts": list(delegated), "unresolved_delegations": list(unresolved)}
    play.update(play_extra)
    cis = [{"name": name, "ci_id": "ci-" + name, "environment": environment, "class": "server", "attributes": {}}
           for name, environment in CMDB.items() if name in hosts or name in delegated]
    return build_change_context(play, list(hosts), {}, cis, "alice", False, NOW)


def standard(play_context, document=None):
    return decide(change_policy.parse_policy(document or POLICY, "policy.yml"), play_context, NOW, user="alice")


def test_a_staging_template_does_not_cover_a_task_delegated_to_a_production_host():
    built = context(delegated=["prod-db01"])
    assert built["environments"] == ["production", "staging"]
    assert [doc["name"] for doc in built["delegated_cis"]] == ["prod-db01"]
    decision = standard(built)
    assert (decision["allowed"], decision["type"]) == (False, "denied")
    assert "standard change 'staging-deploy' is allowed in environment staging only; prod-db01 (a task delegates to " \
           "it) is in production" in decision["reasons"]
    assert [freeze["name"] for freeze in decision["freezes"]] == ["prod-freeze"]
    assert any(reason.startswith("freeze 'prod-freeze' in force") for reason in decision["reasons"])


def test_the_same_play_without_the_delegation_is_covered():
    decision = standard(context())
    assert (decision["allowed"], decision["type"], decision["reference"]) == (True, "standard", "staging-deploy")


def test_a_freeze_of_the_delegated_hosts_environment_stops_a_normal_change_too():
    record = {"number": "CHG0000009", "type": "normal", "state": "scheduled", "approval": "approved", "approvals": [],
              "affected_cis": ["stg-web01", "prod-db01"], "planned_start": "2026-11-23T11:00:00Z",
              "planned_end": "2026-11-23T13:00:00Z", "timezone": "UTC"}
    decision = decide(change_policy.parse_policy(POLICY, "policy.yml"), context(delegated=["prod-db01"]), NOW,
                      change_request="CHG0000009", record=record, user="alice")
    assert (decision["allowed"], decision["type"]) == (False, "denied")
    assert [reason.split(" until ")[0] for reason in decision["reasons"]] == ["freeze 'prod-freeze' in force"]


def test_a_delegated_host_without_an_environment_is_not_assumed_to_be_in_staging():
    built = context(delegated=["lb01", "unknown01"])
    assert built["hosts_without_environment"] == ["lb01", "unknown01"]
    decision = standard(built)
    assert "standard change 'staging-deploy' is limited to environments staging, but lb01, unknown01 have no CI " \
           "environment" in decision["reasons"]


def test_max_hosts_counts_the_hosts_tasks_delegate_to_outside_the_play():
    decision = standard(context(hosts=("stg-web01", "stg-web02"), delegated=["stg-web03", "stg-web04"]))
    assert decision["reasons"] == ["standard change 'staging-deploy' allows at most 3 hosts; the play targets 2 and "
                                   "tasks delegate to 2 more"]
    # with serial, a delegated host of another batch is still one of the play's hosts: not counted twice
    batch = context(hosts=("stg-web01",), delegated=["stg-web02"], play_host_count=3, delegated_outside_play=[])
    assert batch["delegated_host_count"] == 0
    assert standard(batch)["allowed"] is True


def test_a_delegation_known_only_at_run_time_is_a_blind_spot_of_standard_templates():
    built = context(unresolved=["deploy.yml:12 delegate_to {{ item }}"])
    decision = standard(built)
    assert decision["reasons"] == [
        "the gate cannot tell which host deploy.yml:12 delegate_to {{ item }} is before the play runs; standard change "
        "'staging-deploy' covers that only with allow_unresolved_delegations: true, else delegate to a name or a "
        "variable known before the play or raise a normal change request"]
    accepting = dict(POLICY, templates=[dict(POLICY["templates"][0], allow_unresolved_delegations=True)])
    assert standard(built, accepting)["allowed"] is True


def test_services_are_read_as_the_cmdb_reads_them():
    cis = [{"name": "a", "attributes": {"services": ["shop", "  ", None]}},
           {"name": "b", "attributes": {"services": "search"}},
           {"name": "c", "attributes": {"services": {"not": "names"}}}]
    built = build_change_context({"name": "p"}, ["a", "b", "c"], {}, cis, "alice", False, NOW)
    assert built["services"] == ["search", "shop"]
    assert [doc["services"] for doc in built["cis"]] == [["shop"], ["search"], []]
