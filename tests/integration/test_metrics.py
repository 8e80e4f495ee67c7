# -*- coding: utf-8 -*-
"""change_metrics_info on a seeded history, against figures computed by hand (both backends).

The history (two weeks, Monday 2026-01-05 to Monday 2026-01-19, UTC) is written through the public append
path as the recorder and the gate write it; the incident link is made by a real change_link task, the
metrics are read by a real change_metrics_info task. Every expected value below is worked out in the
comments from the definitions in docs/metrics.md.
"""

from __future__ import annotations

import json

import pytest

from support.change_requests import add_ci
from support.history import seed, t

pytestmark = pytest.mark.integration

# run: start-end, status, gate, commit (lead), CIs changed          -> what it counts as
RUNS = [
    # week 1 (2026-01-05)
    dict(run_id="r01", start=t("2026-01-05 10:00"), end=t("2026-01-05 10:10"), status="successful", gate="standard",
         commit=t("2026-01-05 08:00"), changed=["web01"]),                    # deployment, lead 2 h
    dict(run_id="r02", start=t("2026-01-06 10:00"), end=t("2026-01-06 10:20"), status="failed", gate="normal",
         commit=t("2026-01-06 09:00"), changed=["db01"]),                     # failed; restored by r03 (4 h 10)
    dict(run_id="r03", start=t("2026-01-06 14:00"), end=t("2026-01-06 14:30"), status="successful", gate="emergency",
         changed=["db01"]),                                                   # deployment (no commit)
    dict(run_id="r04", start=t("2026-01-07 09:00"), end=t("2026-01-07 09:30"), status="successful", gate="normal",
         commit=t("2026-01-06 21:00"), changed=["app01"]),                    # deployment, lead 12 h; incident -> failed
    dict(run_id="r05", start=t("2026-01-08 09:30"), end=t("2026-01-08 10:00"), status="successful", gate="standard",
         commit=t("2026-01-08 09:00"), changed=["app01"]),                    # deployment, lead 0.5 h; restores r04 (24.5 h)
    dict(run_id="r06", start=t("2026-01-09 08:00"), end=t("2026-01-09 08:05"), status="successful", gate=None,
         changed=["web01"]),                                                  # unauthorised: a change, no deployment
    dict(run_id="r07", start=t("2026-01-09 09:00"), end=t("2026-01-09 09:01"), status="successful", gate=None,
         changed=["web01"], check_mode=True),                                 # dry run: not a change
    dict(run_id="r08", start=t("2026-01-10 10:00"), end=t("2026-01-10 10:01"), status="failed", gate="denied",
         hosts=["web01"]),                                                    # denied by a gate: not a change
    # week 2 (2026-01-12)
    dict(run_id="r09", start=t("2026-01-12 10:00"), end=t("2026-01-12 10:10"), status="successful", gate="standard",
         commit=t("2026-01-11 10:00"), changed=["web01"]),                    # deployment, lead 24 h; r10 -> failed
    dict(run_id="r10", start=t("2026-01-12 20:00"), end=t("2026-01-12 20:15"), status="successful", gate="emergency",
         changed=["web01"]),                                                  # emergency fix: restores r09 (10 h 05)
    dict(run_id="r11", start=t("2026-01-14 10:00"), end=t("2026-01-14 10:30"), status="interrupted", gate="normal",
         hosts=["db01"]),                                                     # failed, changed nothing; db01 by its host
    dict(run_id="r12", start=t("2026-01-15 10:00"), end=t("2026-01-15 10:20"), status="successful", gate="normal",
         commit=t("2026-01-15 06:00"), changed=["db01"]),                     # deployment, lead 4 h; restores r11 (23 h 50)
    dict(run_id="r13", start=t("2026-01-16 10:00"), end=t("2026-01-16 10:05"), status="successful", gate="standard",
         changed=["app01"]),                                                  # deployment; remediated by r14 -> failed
    dict(run_id="r14", start=t("2026-01-16 12:00"), end=t("2026-01-16 12:10"), status="successful", gate="normal",
         commit=t("2026-01-16 11:00"), changed=["app01"]),                    # deployment, lead 1 h; restores r13 (2 h 05)
    # after the period: never counted
    dict(run_id="r15", start=t("2026-01-19 02:00"), end=t("2026-01-19 02:10"), status="failed", gate="emergency",
         changed=["web01"]),
]

PLAYBOOK = """
- name: Metrics
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The incident r04 caused
      changeops.itsm.change_link:
        run_id: r04
        incident: INC0000042
        at: "2026-01-07T12:00:00Z"
    - name: r14 was the remediation of r13
      changeops.itsm.change_link:
        run_id: r14
        remediates: r13
    - name: DORA metrics
      changeops.itsm.change_metrics_info:
        since: "2026-01-05T00:00:00Z"
        until: "2026-01-19T00:00:00Z"
        bucket: week
        group_by: "{{ item }}"
      loop: [service, team]
      register: dora
    - name: Keep them
      ansible.builtin.copy:
        content: "{{ dora.results | map(attribute='metrics') | list | to_json }}"
        dest: "{{ playbook_dir }}/metrics.json"
        mode: "0644"
"""


def test_the_four_keys_on_a_seeded_history(project, open_sor):
    sor = open_sor()
    ci_ids = {"web01": add_ci(sor, "web01", environment="production", ci_class="server", service="shop"),
              "db01": add_ci(sor, "db01", environment="production", ci_class="server", service="shop"),
              "app01": add_ci(sor, "app01", environment="production", ci_class="server", service="blog")}
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
    for name, team in (("web01", {"support_group": "web-team"}), ("db01", {"support_group": "dba-team"}),
                       ("app01", {"owner": "blog-team"})):
        key, value = next(iter(team.items()))
        changes = {key: {"from": None, "to": value}}
        sor.append([Entry("ci.updated", ci_ids[name], {"ci_id": ci_ids[name], "changes": changes})])
    seed(sor, RUNS, ci_ids)
    project.write("metrics.yml", PLAYBOOK)
    project.run("metrics.yml")
    with open(project.path("metrics.json")) as handle:
        by_service, by_team = json.load(handle)

    overall = by_service["overall"]
    # changes: r01-r06, r09-r14 (12); deployments: r01 r03 r04 r05 r09 r10 r12 r13 r14 (9) over 14 days
    assert (overall["changes"], overall["deployments"], overall["deployments_per_day"]) == (12, 9, round(9 / 14, 4))
    # lead times 0.5 1 2 4 12 24 h: median (2 + 4) / 2, p90 the 6th of 6 (nearest rank)
    assert overall["lead_time"] == {"count": 6, "median_hours": 3.0, "p90_hours": 24.0}
    # failed: r02 (failed, and r03 an emergency change after it), r04 (incident), r09 (emergency change after
    # it), r11 (interrupted), r13 (remediated by r14, which started 2 h after it ended)
    assert overall["failed_changes"] == 5 and overall["change_failure_rate"] == round(5 / 12, 4)
    assert overall["failure_reasons"] == {"failed": 1, "incident": 1, "emergency change": 2, "interrupted": 1,
                                          "remediated_by": 1}
    # restore: 2.083 (r13), 4.167 (r02), 10.083 (r09), 23.833 (r11), 24.5 (r04) h
    assert overall["time_to_restore"] == {"count": 5, "median_hours": 10.083, "unrestored": 0}

    week1, week2 = by_service["buckets"]
    assert (week1["start"], week2["start"]) == ("2026-01-05T00:00:00.000000Z", "2026-01-12T00:00:00.000000Z")
    assert (week1["changes"], week1["deployments"], week1["failed_changes"]) == (6, 4, 2)
    assert week1["lead_time"] == {"count": 3, "median_hours": 2.0, "p90_hours": 12.0}
    assert week1["time_to_restore"]["median_hours"] == round((4.167 + 24.5) / 2, 4)
    assert (week2["changes"], week2["deployments"], week2["failed_changes"]) == (6, 5, 3)
    assert week2["change_failure_rate"] == 0.5 and week2["deployments_per_day"] == round(5 / 7, 4)

    services = {group["key"]: group["overall"] for group in by_service["groups"]}
    # shop (web01, db01): r01 r02 r03 r06 r09 r10 r11 r12; blog (app01): r04 r05 r13 r14
    assert (services["shop"]["changes"], services["shop"]["deployments"], services["shop"]["failed_changes"]) == (
        8, 5, 3)
    assert services["shop"]["change_failure_rate"] == 0.375
    assert (services["blog"]["changes"], services["blog"]["failed_changes"]) == (4, 2)
    teams = {group["key"]: group["overall"]["changes"] for group in by_team["groups"]}
    assert teams == {"web-team": 4, "dba-team": 4, "blog-team": 4}
