# -*- coding: utf-8 -*-
"""Collisions and blast radius in the change gate, in real ansible-playbook runs on both backends (issue 18).

Each test plays the post-mortem sentence it prevents: a run already in progress on the host, another
team's approved change request on the same CIs, the backups running at the same time, and "it was
supposed to be totally unrelated" (a service of criticality 1 depending on the host).
"""

from __future__ import annotations

import datetime
import os
import re
import uuid

import pytest

from support.change_requests import add_ci, approved_change, change_request, gate_entries, iso

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

pytestmark = pytest.mark.integration

TEMPLATE = """
templates:
  - name: patching
    description: Routine patching
    conditions:
      - "contains(tags, 'patching')"
%s
"""

PLAYBOOK = """
- name: Patch the web servers
  hosts: web
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
%s      tags: [always]
    - name: Write the marker file
      ansible.builtin.copy:
        content: "{{ inventory_hostname }}\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
      tags: [patching]
"""

LONG_RUN = """
- name: A long-running job on web01 (no gate, the run in progress)
  hosts: web01
  gather_facts: false
  tasks:
    - name: Wait
      ansible.builtin.pause:
        seconds: 300
"""


def setup(project, sor, policy_extra="", template_extra="", hosts=("web01",), gate_args=""):
    project.write_inventory(list(hosts), group="web")
    project.write("policy.yml", TEMPLATE % template_extra + policy_extra)
    project.write("pb.yml", PLAYBOOK % "".join("        %s\n" % line for line in gate_args.splitlines() if line))
    os.makedirs(project.path("out"), exist_ok=True)
    return {host: add_ci(sor, host, environment="test", ci_class="server") for host in hosts}


def flat(text):
    return re.sub(r"\s+", " ", text)


def written(project):
    return sorted(os.listdir(project.path("out")))


def last_decision(sor):
    return gate_entries(sor)[-1]


def running_on(sor, host):
    for event in sor.find_change_events(status="running"):
        if any(host in (play.get("hosts") or ()) for play in event.get("plays") or ()):
            return event
    return None


def test_a_run_in_progress_on_the_host_denies_and_a_killed_one_no_longer_does(project, open_sor):
    sor = open_sor()
    setup(project, sor, policy_extra="collisions:\n  running_runs: {standard: deny}\n")
    project.write("long.yml", LONG_RUN)
    long_run = project.start("long.yml")
    try:
        busy = project.wait_for(lambda: running_on(open_sor(), "web01"), timeout=180, what="the long run's play",
                                process=long_run)
        denied = project.run("pb.yml", check=False)
        assert denied.returncode != 0
        text = flat(denied.stdout)
        assert re.search(r"collision: run %s \(\S*/long\.yml\) by " % busy["run_id"], text), text
        assert "on web01 (the policy denies standard changes that collide: collisions.running_runs)" in text
        assert written(project) == []
        decision = last_decision(open_sor())
        [item] = decision["collisions"]
        assert (item["kind"], item["reference"], item["action"], item["cis"]) == (
            "running_run", busy["run_id"], "deny", ["web01"])
        assert item["owner"].endswith("@%s" % busy["controller"]) and item["window"]["start"] == busy["started_at"]
    finally:
        project.kill(long_run)
    # killed: the recorder's own dead-run check says its process is gone, so it no longer blocks
    allowed = project.run("pb.yml")
    assert written(project) == ["web01.txt"], allowed.stdout
    decision = last_decision(open_sor())
    assert decision["allowed"] and decision["type"] == "standard"
    assert all(item["action"] == "ignored" for item in decision["collisions"]), decision["collisions"]


def test_a_stale_run_of_another_controller_stops_blocking_after_stale_after(project, open_sor):
    sor = open_sor()
    setup(project, sor, policy_extra="collisions:\n  running_runs: deny\n  stale_after: 1h\n")
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    sor.append([Entry("run.started", "remote-run", {"run_id": "remote-run", "controller": "other-controller",
                                                    "user": "dave", "pid": 1, "playbooks": ["nightly.yml"],
                                                    "started_at": iso(datetime.timedelta(hours=-2))},
                      at=iso(datetime.timedelta(hours=-2))),
                Entry("run.play", "remote-run", {"run_id": "remote-run", "play_id": "p", "hosts": ["web01"]},
                      at=started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))])
    allowed = project.run("pb.yml")
    [item] = last_decision(open_sor())["collisions"]
    assert item["action"] == "ignored" and "collisions.stale_after: 1 h" in item["ignored"], allowed.stdout
    # fresh activity: the same run counts again
    sor.append([Entry("run.play", "remote-run", {"run_id": "remote-run", "play_id": "p2", "hosts": ["web01"]})])
    denied = project.run("pb.yml", check=False)
    assert denied.returncode != 0 and "collision: run remote-run (nightly.yml) by dave@other-controller" in flat(
        denied.stdout)


@pytest.mark.parametrize("action", ["deny", "allow"])
def test_another_approved_change_request_on_the_host_now(project, open_sor, action):
    sor = open_sor()
    setup(project, sor, policy_extra="collisions:\n  change_requests: {standard: %s}\n" % action)
    number = approved_change(sor, ["web01"], iso(hours=-1), iso(hours=2), timezone="UTC")
    change_request(sor, number=number, requested_by="db-team")
    run = project.run("pb.yml", check=False)
    decision = last_decision(open_sor())
    [item] = decision["collisions"]
    assert (item["kind"], item["reference"], item["owner"], item["action"]) == (
        "change_request", number, "db-team", action)
    assert item["window"]["timezone"] == "UTC" and item["cis"] == ["web01"]
    if action == "deny":
        assert run.returncode != 0 and written(project) == []
        assert ("collision: approved change request %s (test change) of db-team, window " % number) in flat(run.stdout)
    else:
        assert run.returncode == 0 and written(project) == ["web01.txt"], run.stdout
        assert decision["allowed"] and not decision.get("warnings")


def test_a_declared_backup_window_denies_a_standard_change_and_lets_an_emergency_through(project, open_sor):
    sor = open_sor()
    start = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)).astimezone(
        datetime.timezone(datetime.timedelta(hours=1)))
    policy = """
maintenance_windows:
  - name: nightly-backup
    description: Database backups
    owner: backup-team
    rrule: "FREQ=DAILY"
    start: "%s"
    timezone: Etc/GMT-1
    duration: 2h
    groups: [web]
    actions: {standard: deny, emergency: warn}
""" % start.strftime("%Y-%m-%dT%H:%M")
    setup(project, sor, policy_extra=policy)
    denied = project.run("pb.yml", check=False)
    assert denied.returncode != 0 and written(project) == []
    assert "collision: maintenance window 'nightly-backup' (Database backups) of backup-team, " in flat(denied.stdout)
    [item] = last_decision(open_sor())["collisions"]
    assert item["cis"] == ["group web"] and item["window"]["timezone"] == "Etc/GMT-1"
    project.write("pb.yml", PLAYBOOK % "        emergency: true\n        justification: INC0001234 site down\n")
    allowed = project.run("pb.yml")
    assert written(project) == ["web01.txt"]
    decision = last_decision(open_sor())
    assert decision["type"] == "emergency" and decision["warnings"][0].startswith(
        "collision: maintenance window 'nightly-backup'")
    assert "1 warning: collision: maintenance window 'nightly-backup'" in flat(allowed.stdout)


def relate(sor, source_id, rel_type, target_id):
    sor.append([Entry("ci.relationship_added", source_id, {"source": source_id, "type": rel_type,
                                                           "target": target_id})])


def service(sor, name, criticality, owner):
    ci_id = uuid.uuid4().hex
    sor.append([Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {
        "name": name, "class": "application", "environment": "production", "criticality": criticality,
        "owner": owner}, "identities": {}})])
    return ci_id


def test_a_template_condition_on_the_blast_radius_decides(project, open_sor):
    sor = open_sor()
    hosts = setup(project, sor, template_extra='      - "blast_radius.highest_criticality != `1`"\n'
                                               "      - \"blast_radius.truncated == `false`\"\n", hosts=("web01", "web02"))
    billing = service(sor, "billing", "1 - most critical", "payments-team")
    reports = service(sor, "reports", 3, "bi-team")
    relate(sor, billing, "runs_on", hosts["web01"])
    relate(sor, reports, "depends_on", billing)   # transitively on web01 too
    relate(sor, billing, "depends_on", reports)   # a cycle: walked once
    denied = project.run("pb.yml", check=False)
    assert denied.returncode != 0 and written(project) == []
    assert "standard change 'patching': condition blast_radius.highest_criticality != `1` is false" in flat(
        denied.stdout)
    decision = last_decision(open_sor())
    radius = decision["blast_radius"]
    assert [(s["name"], s["depth"], s["criticality"], s["owner"], s["via"]) for s in radius["services"]] == [
        ("billing", 1, 1, "payments-team", "billing runs_on web01"),
        ("reports", 2, 3, "bi-team", "reports depends_on billing")]
    assert radius["service_count"] == 2 and radius["truncated"] is False
    # the change event keeps it with the decision, for the register and the review service
    event = open_sor().find_change_events(limit=1)[0]
    assert event["gates"][-1]["blast_radius"]["names"] == ["billing", "reports"]

    project.write_inventory(["web02"], group="web")
    project.run("pb.yml")
    assert written(project) == ["web02.txt"]
    decision = last_decision(open_sor())
    assert decision["allowed"] and decision["blast_radius"]["service_count"] == 0
