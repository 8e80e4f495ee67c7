# -*- coding: utf-8 -*-
"""The record says exactly what ran: serial batches and ad-hoc commands, compared with Ansible's PLAY RECAP.

Real ``ansible-playbook`` and ``ansible`` runs against both backends. Ad-hoc commands run with the one
setting that enables callbacks for them (``bin_ansible_callbacks``, here ANSIBLE_LOAD_CALLBACK_PLUGINS=1),
and the ``default`` stdout callback, so that Ansible prints its PLAY RECAP for them too.
"""

from __future__ import annotations

import json

import pytest

from support.change_requests import approved_change, iso
from support.recorder import new_run_id, play_recap, recorded_stats, recorder_warnings

from ansible_collections.changeops.itsm.plugins.module_utils.change_register import build_register

pytestmark = [pytest.mark.integration]

SERIAL_HOSTS = ["s1", "s2", "s3", "s4", "s5"]

ROLLING = """
- name: Rolling update
  hosts: all_hosts
  serial: 2
  gather_facts: false
  tasks:
    - name: Update the host
      ansible.builtin.command: "true"
      changed_when: true

    - name: Check the host
      ansible.builtin.debug:
        msg: "{{ inventory_hostname }} updated"
"""

#: one host per batch; the second batch fails, so Ansible stops the play there
ROLLING_THAT_FAILS = """
- name: Careful rolling update
  hosts: all_hosts
  serial: 1
  max_fail_percentage: 0
  gather_facts: false
  tasks:
    - name: Update the host
      ansible.builtin.command: "test {{ inventory_hostname }} != s2"
"""

#: Ansible prints a PLAY RECAP for ad-hoc commands with a stdout callback other than its ad-hoc default
ADHOC_ENV = {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default"}
ADHOC_HOSTS = ["a1", "a2", "a3"]


def only_play(event):
    [play] = event["plays"]
    return play


# -- serial ------------------------------------------------------------------------------------------
def test_a_serial_play_lists_every_host_it_ran_on_as_ansible_reports_them(project, sor):
    project.write_inventory(SERIAL_HOSTS)
    project.write_playbook("rolling.yml", ROLLING)
    output = project.run("rolling.yml").stdout
    recap = play_recap(output)
    assert sorted(recap) == SERIAL_HOSTS
    event = sor.get_change_event(new_run_id(sor, set()))

    play = only_play(event)
    assert play["hosts"] == SERIAL_HOSTS, "the play lists its last batch only"
    assert play["batches"] == [["s1", "s2"], ["s3", "s4"], ["s5"]]
    assert recorded_stats(event) == recap
    assert event["host_count"] == len(recap) and event["changed_host_count"] == 5
    results = sor.get_task_results(event["run_id"])
    for host, counts in recap.items():
        assert len([r for r in results if r["host"] == host]) == counts["ok"] + counts["failed"] + counts["skipped"]


def test_a_serial_play_stopped_by_a_failed_batch_lists_the_hosts_it_reached(project, sor):
    project.write_inventory(SERIAL_HOSTS)
    project.write_playbook("careful.yml", ROLLING_THAT_FAILS)
    completed = project.run("careful.yml", check=False)
    assert completed.returncode == 2, completed.stdout
    recap = play_recap(completed.stdout)
    assert sorted(recap) == ["s1", "s2"], "Ansible stops after the failed batch"
    event = sor.get_change_event(new_run_id(sor, set()))
    assert only_play(event)["hosts"] == ["s1", "s2"]
    assert only_play(event)["batches"] == [["s1"], ["s2"]]
    assert recorded_stats(event) == recap
    assert event["status"] == "failed"


def test_the_register_shows_every_batch_of_a_serial_play(project, sor, tmp_path):
    project.write_inventory(SERIAL_HOSTS)
    project.write_playbook("rolling.yml", ROLLING)
    project.run("rolling.yml")
    register = build_register(sor, verify_chain=False)
    [row] = register["rows"]
    assert row["hosts"] == SERIAL_HOSTS
    [detail] = register["chunks"][0].values()
    assert detail["plays"][0]["hosts"] == SERIAL_HOSTS


# -- ad-hoc commands -----------------------------------------------------------------------------------
def adhoc_project(project):
    project.write_inventory(ADHOC_HOSTS)
    return project


def test_an_adhoc_command_is_its_own_kind_of_change_event_with_every_host_result(project, sor):
    adhoc_project(project)
    completed = project.adhoc(
        "all_hosts", "-m", "ansible.builtin.shell", "-a", "echo token=abc123def; test {{ inventory_hostname }} != a2",
        "-e", "db_pass=Sup3rS3cretValue", env=ADHOC_ENV, check=False)
    assert completed.returncode == 2, completed.stdout
    recap = play_recap(completed.stdout)
    assert sorted(recap) == ADHOC_HOSTS and recap["a2"]["failed"] == 1
    event = sor.get_change_event(new_run_id(sor, set()))

    assert event["kind"] == "adhoc"
    assert event["adhoc"] == {"module": "ansible.builtin.shell", "pattern": "all_hosts",
                              "args": "echo token=******** test {{ inventory_hostname }} != a2"}
    assert event["playbooks"] == [] and event["playbook"] is None
    assert event["status"] == "failed", "the outcome is Ansible's: a2 failed"
    assert recorded_stats(event) == recap
    assert only_play(event)["hosts"] == ADHOC_HOSTS
    results = sor.get_task_results(event["run_id"])
    assert sorted((r["host"], r["status"]) for r in results) == [("a1", "changed"), ("a2", "failed"), ("a3", "changed")]
    assert all(r["task"]["action"] == "ansible.builtin.shell" for r in results)
    # the extra variable's value never reaches the record, in no form
    assert "Sup3rS3cretValue" not in json.dumps([entry.to_dict() for entry in sor.iter_entries()])
    assert event["authorisation"] == "unauthorised", "nothing named a change request for it"


def test_a_successful_adhoc_command_is_successful_and_says_what_ran(project, sor):
    """On main the host pattern was split into characters and recorded as playbooks, and the run as failed.
    Enabled with the one setting docs/recorder.md names, in ansible.cfg."""
    adhoc_project(project)
    project.adhoc("a1", "-m", "ansible.builtin.command", "-a", "true", env=ADHOC_ENV, enable_callbacks=False)
    assert sor.find_change_events() == [], "Ansible runs no callback plugin for ad-hoc commands by default"
    project.write_cfg("bin_ansible_callbacks = true")
    completed = project.adhoc("a1,a3", "-m", "ansible.builtin.command", "-a", "true", env=ADHOC_ENV,
                              enable_callbacks=False)
    recap = play_recap(completed.stdout)
    event = sor.get_change_event(new_run_id(sor, set()))
    assert (event["kind"], event["status"]) == ("adhoc", "successful")
    assert event["adhoc"] == {"module": "ansible.builtin.command", "pattern": "a1,a3", "args": "true"}
    assert recorded_stats(event) == recap and sorted(recap) == ["a1", "a3"]
    assert [e["run_id"] for e in sor.find_change_events(kind="adhoc")] == [event["run_id"]]
    assert sor.find_change_events(kind="playbook") == []


def test_an_adhoc_command_under_an_approved_change_request_is_a_normal_change(project, sor):
    adhoc_project(project)
    number = approved_change(sor, ADHOC_HOSTS, iso(hours=-1), iso(hours=2))
    completed = project.adhoc("all_hosts", "-m", "ansible.builtin.command", "-a", "true",
                              env=dict(ADHOC_ENV, CHANGEOPS_CHANGE_REQUEST=number))
    assert "authorised as a normal change (%s)" % number in completed.stdout
    event = sor.get_change_event(new_run_id(sor, set()))
    assert (event["authorisation"], event["authorisation_ref"]) == ("normal", number)
    [gate] = event["gates"]
    assert gate["allowed"] and gate["hosts"] == ADHOC_HOSTS


def test_an_adhoc_command_the_named_change_request_does_not_cover_is_unauthorised(project, sor):
    adhoc_project(project)
    number = approved_change(sor, ["a1"], iso(hours=-1), iso(hours=2))
    completed = project.adhoc("all_hosts", "-m", "ansible.builtin.command", "-a", "true",
                              env=dict(ADHOC_ENV, CHANGEOPS_CHANGE_REQUEST=number))
    [warning] = recorder_warnings(completed.stdout)
    assert "a2 is not an affected CI of %s" % number in warning and "recorded as unauthorised" in warning
    event = sor.get_change_event(new_run_id(sor, set()))
    assert event["authorisation"] == "unauthorised"
    [gate] = event["gates"]
    assert not gate["allowed"] and any("a3 is not an affected CI" in reason for reason in gate["reasons"])


def test_an_unknown_change_request_or_an_emergency_for_an_adhoc_command(project, sor):
    adhoc_project(project)
    seen = set()
    project.adhoc("a1", "-m", "ansible.builtin.command", "-a", "true",
                  env=dict(ADHOC_ENV, CHANGEOPS_CHANGE_REQUEST="CHG9999999"))
    unknown = sor.get_change_event(new_run_id(sor, seen))
    assert unknown["authorisation"] == "unauthorised"
    assert "CHG9999999 does not exist in the system of record" in unknown["gates"][0]["reasons"]

    completed = project.adhoc("a1", "-m", "ansible.builtin.command", "-a", "true",
                              env=dict(ADHOC_ENV, CHANGEOPS_EMERGENCY="INC0042: checkout is down"))
    assert "emergency" in completed.stdout
    emergency = sor.get_change_event(new_run_id(sor, seen))
    assert emergency["authorisation"] == "emergency"
    assert emergency["gates"][0]["emergency"]["justification"] == "INC0042: checkout is down"

    # --check: a dry run, whatever is named
    project.adhoc("a1", "-m", "ansible.builtin.command", "-a", "true", "--check",
                  env=dict(ADHOC_ENV, CHANGEOPS_CHANGE_REQUEST="CHG9999999"))
    assert sor.get_change_event(new_run_id(sor, seen))["authorisation"] == "dry-run"


def test_the_register_shows_an_adhoc_command(project, sor, tmp_path):
    adhoc_project(project)
    project.adhoc("all_hosts", "-m", "ansible.builtin.shell", "-a", "uptime", env=ADHOC_ENV)
    register = build_register(sor, verify_chain=False)
    [row] = register["rows"]
    assert row["kind"] == "adhoc" and row["adhoc"] == {"module": "ansible.builtin.shell", "pattern": "all_hosts"}
    assert row["hosts"] == ADHOC_HOSTS and row["authorisation_types"] == ["unauthorised"] and row["awaiting_review"]
    [detail] = register["chunks"][0].values()
    assert detail["run"]["adhoc"]["args"] == "uptime"
    assert sorted(change["host"] for change in detail["changes"]) == ADHOC_HOSTS


@pytest.mark.browser
@pytest.mark.backends("sqlite")
def test_an_adhoc_command_in_the_register_page(project, sor, tmp_path):
    """In real headless Chromium, as tests/integration/test_register_browser.py opens the register."""
    from playwright import sync_api

    adhoc_project(project)
    project.adhoc("all_hosts", "-m", "ansible.builtin.shell", "-a", "uptime", env=ADHOC_ENV)
    run_id = new_run_id(sor, set())
    page_path = tmp_path / "register.html"
    project.write_inventory(ADHOC_HOSTS + ["localhost"])
    project.write_playbook("register.yml", """
        - hosts: localhost
          gather_facts: false
          tasks:
            - changeops.itsm.change_register:
                path: %s
        """ % page_path)
    project.run("register.yml")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                              args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = chromium.new_page()
            problems = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto("file://%s" % page_path)
            page.wait_for_selector("html[data-ready=true]")
            cell = page.locator("tr[data-run-id='%s'] td.playbook" % run_id)
            assert cell.inner_text().split() == ["AD-HOC", "ansible.builtin.shell", "all_hosts"]
            page.click("tr[data-run-id='%s'] td.when a" % run_id)
            page.wait_for_selector("#change-view:not([hidden]) #change-heading")
            assert page.inner_text("#change-heading").startswith("ad-hoc ansible.builtin.shell on all_hosts")
            text = page.inner_text("#change-view")
            assert "ansible all_hosts -m ansible.builtin.shell -a uptime" in text
            assert "No gate allowed this change" in text
            assert problems == []
        finally:
            chromium.close()


def test_change_event_info_returns_adhoc_commands_by_kind(project, sor):
    adhoc_project(project)
    project.adhoc("a1", "-m", "ansible.builtin.command", "-a", "hostname", env=ADHOC_ENV)
    project.write_inventory(ADHOC_HOSTS + ["localhost"])
    project.write_playbook("info.yml", """
        - hosts: localhost
          gather_facts: false
          tasks:
            - changeops.itsm.change_event_info:
                kind: [adhoc]
              register: adhoc_only

            - ansible.builtin.copy:
                content: "{{ adhoc_only.change_events | to_json }}"
                dest: "{{ playbook_dir }}/adhoc.json"
                mode: "0600"
        """)
    project.run("info.yml")
    with open(project.path("adhoc.json")) as handle:
        [event] = json.load(handle)
    assert (event["kind"], event["adhoc"]["args"], event["status"]) == ("adhoc", "hostname", "successful")


def test_the_gate_reads_the_change_request_named_in_the_environment(project, sor):
    project.write_inventory(["g1", "g2"])
    number = approved_change(sor, ["g1", "g2"], iso(hours=-1), iso(hours=2))
    project.write_playbook("gated.yml", """
        - hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Change gate
              changeops.itsm.change_gate:

            - name: The change
              ansible.builtin.command: "true"
              changed_when: true
        """)
    denied = project.run("gated.yml", check=False)
    assert denied.returncode == 2 and "change gate denied" in denied.stdout
    allowed = project.run("gated.yml", env={"CHANGEOPS_CHANGE_REQUEST": number})
    assert "authorised as a normal change (%s)" % number in allowed.stdout
    events = sorted(sor.find_change_events(), key=lambda event: event["started_at"])
    # a run the gate stopped before it changed anything is recorded as denied (docs/change-register.md)
    assert [(event["authorisation"], event["authorisation_ref"]) for event in events] == [
        ("denied", None), ("normal", number)]
