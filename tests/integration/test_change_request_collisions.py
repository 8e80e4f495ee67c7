# -*- coding: utf-8 -*-
"""change_request_info's collisions in real ansible-playbook runs, on both backends (issue 18, section 1).

A change owner raises a request with the ``change_request`` module and asks ``change_request_info`` what its
planned window meets before the CAB does, under the policy a CAB member published with ``change_policy``: a
run in progress on the database host, the payments team's approved request on the service that runs on it
(reached through the blast radius), the nightly backup window declared on that service, and a freeze. Asking
changes nothing, check mode included; a request of another type gets the actions the policy sets for that type.
"""

from __future__ import annotations

import datetime
import json
import uuid

import pytest

from support.change_requests import add_ci, approved_change, change_request, iso

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

pytestmark = pytest.mark.integration

POLICY = """
templates:
  - name: unrelated
    conditions: ["contains(tags, 'never-used')"]
collisions:
  running_runs: {normal: deny, emergency: warn}
  change_requests: {normal: deny, emergency: warn}
maintenance_windows:
  - name: nightly-backup
    description: Database backups
    owner: backup-team
    rrule: "FREQ=DAILY"
    start: "%(backup_start)s"
    timezone: UTC
    duration: 2h
    services: [billing]
    actions: {normal: warn, emergency: allow}
freezes:
  - name: quarter-close
    start: "%(freeze_start)s"
    end: "%(freeze_end)s"
    timezone: UTC
    allowed_change_types: [emergency]
    reason: Finance closes the quarter
"""

PUBLISH = """
- name: Publish
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Publish the change policy
      changeops.itsm.change_policy:
        src: policy.yml
        comment: CAB - collisions and the backup window
"""

ASK = """
- name: Raise a change request and ask what its window meets
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Raise the request
      changeops.itsm.change_request:
        type: "{{ change_type }}"
        short_description: Upgrade PostgreSQL on db01
        affected_cis: [db01]
        planned_start: "{{ planned_start }}"
        planned_end: "{{ planned_end }}"
        timezone: UTC
      register: raised
      when: number is not defined
    - name: Its collisions, before the CAB meets
      changeops.itsm.change_request_info:
        number: "{{ number | default(raised.number) }}"
        collisions: true
      register: found
    - name: Keep the answer
      ansible.builtin.copy:
        content: "{{ found | to_json }}"
        dest: "{{ playbook_dir }}/found.json"
        mode: "0644"
      check_mode: false
"""

LONG_RUN = """
- name: A long-running job on db01 (the run in progress)
  hosts: db01
  gather_facts: false
  tasks:
    - name: Wait
      ansible.builtin.pause:
        seconds: 300
"""


def minutes(delta):
    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=delta)).strftime(
        "%Y-%m-%dT%H:%M")


def running_on(sor, host):
    for event in sor.find_change_events(status="running"):
        if any(host in (play.get("hosts") or ()) for play in event.get("plays") or ()):
            return event
    return None


def read_found(project):
    with open(project.path("found.json")) as handle:
        return json.load(handle)


def entry_count(sor):
    return sor.head()[0]


def test_a_request_sees_the_run_in_progress_the_other_request_the_backup_window_and_the_freeze(project, open_sor):
    sor = open_sor()
    project.write_inventory(["db01"], group="databases")
    add_ci(sor, "db01", environment="production", ci_class="server")
    billing = uuid.uuid4().hex
    db01 = sor.find_cis(names=["db01"])[0]["ci_id"]
    sor.append([Entry("ci.created", billing, {"ci_id": billing, "identities": {}, "attributes": {
        "name": "billing", "class": "application", "environment": "production", "criticality": 1,
        "owner": "payments-team"}}),
        Entry("ci.relationship_added", billing, {"source": billing, "type": "runs_on", "target": db01})])
    today = datetime.datetime.now(datetime.timezone.utc).date()
    project.write("policy.yml", POLICY % {
        "backup_start": minutes(-10), "freeze_start": (today - datetime.timedelta(days=1)).isoformat(),
        "freeze_end": (today + datetime.timedelta(days=2)).isoformat()})
    project.write("publish.yml", PUBLISH)
    project.run("publish.yml")
    other = approved_change(sor, ["billing"], iso(hours=-1), iso(hours=3), timezone="UTC")
    change_request(sor, number=other, requested_by="payments-team")

    project.write("long.yml", LONG_RUN)
    project.write("ask.yml", ASK)
    long_run = project.start("long.yml")
    try:
        busy = project.wait_for(lambda: running_on(open_sor(), "db01"), timeout=180, what="the long run's play",
                                process=long_run)
        project.run("ask.yml", "-e", "change_type=normal", "-e", "planned_start=%s" % iso(minutes=-5),
                    "-e", "planned_end=%s" % iso(hours=1))
        found = read_found(project)
        assert found["changed"] is False
        [record] = found["change_requests"]
        number = record["number"]
        collisions = record["collisions"]
        items = {item["kind"]: item for item in collisions["items"]}
        assert sorted(items) == ["change_request", "maintenance_window", "running_run"], collisions
        assert (items["running_run"]["reference"], items["running_run"]["action"], items["running_run"]["cis"]) == (
            busy["run_id"], "deny", ["db01"])
        # the other team's request is on billing, which runs on db01: met through the blast radius
        assert (items["change_request"]["reference"], items["change_request"]["owner"],
                items["change_request"]["action"], items["change_request"]["cis"]) == (
            other, "payments-team", "deny", ["billing"])
        assert (items["maintenance_window"]["reference"], items["maintenance_window"]["owner"],
                items["maintenance_window"]["action"]) == ("nightly-backup", "backup-team", "warn")
        assert collisions["blast_radius"]["names"] == ["billing"]
        assert collisions["window"]["timezone"] == "UTC"
        assert len(collisions["would_deny"]) == 2 and any(
            reason.startswith("collision: approved change request %s (test change) of payments-team, " % other)
            for reason in collisions["would_deny"]), collisions["would_deny"]
        assert [warning.split(",")[0] for warning in collisions["warnings"]] == [
            "collision: maintenance window 'nightly-backup' (Database backups) of backup-team"]
        [freeze] = collisions["freezes"]
        assert (freeze["name"], freeze["blocks"], freeze["reason"]) == ("quarter-close", True,
                                                                        "Finance closes the quarter")

        # asking is read-only, in check mode too: the ledger gains only the asking runs' own records
        before = entry_count(open_sor())
        project.run("ask.yml", "--check", "-e", "number=%s" % number)
        again = read_found(project)["change_requests"][0]["collisions"]
        assert sorted(item["kind"] for item in again["items"]) == sorted(items)
        assert open_sor().get_change_request(number)["version"] == record["version"]
        assert not [entry for entry in open_sor().iter_entries(after_seq=before)
                    if entry.kind.startswith(("change_request.", "ci.", "policy."))]

        # an emergency request over the same window: the policy only warns, and the freeze lets it through
        project.run("ask.yml", "-e", "change_type=emergency", "-e", "planned_start=%s" % iso(minutes=-5),
                    "-e", "planned_end=%s" % iso(hours=1))
        emergency = read_found(project)["change_requests"][0]["collisions"]
        actions = {item["kind"]: item["action"] for item in emergency["items"]}
        assert actions == {"running_run": "warn", "change_request": "warn", "maintenance_window": "allow"}, emergency
        assert emergency["would_deny"] == [] and len(emergency["warnings"]) == 2
        assert emergency["freezes"][0]["blocks"] is False
    finally:
        project.kill(long_run)

    # a window in the past meets no run in progress (only a window that includes now can) and no other request
    project.run("ask.yml", "-e", "change_type=normal", "-e", "planned_start=%s" % iso(days=-3),
                "-e", "planned_end=%s" % iso(days=-3, minutes=30))
    past = read_found(project)["change_requests"][0]["collisions"]
    assert not {"running_run", "change_request"} & {item["kind"] for item in past["items"]}, past
    assert past["freezes"] == []
