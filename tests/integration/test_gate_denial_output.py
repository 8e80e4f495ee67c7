# -*- coding: utf-8 -*-
"""What a denied change gate prints, and the two ways to get its whole decision, in real ansible-playbook runs.

Ansible's default callback prints a failed task's whole result on its ``fatal:`` line. So a failing gate's
result holds the message, the reasons as a list and a few short fields (``decision_id``, type, reference, the
change request as read, the closest templates, the policy version), never the change context, which runs to
kilobytes. The whole decision is recorded; a play gets it either by registering a gate that does not fail
(``fail_on_deny: false``) and failing the play itself, or in a ``rescue:`` section, by the decision id, from
``change_event_info``. Both patterns are the ones docs/change-gate.md shows ("What a denial prints").
"""

from __future__ import annotations

import json
import os

import pytest

from support.change_requests import add_ci, change_request, gate_entries, iso

pytestmark = [pytest.mark.integration, pytest.mark.backends("sqlite")]

POLICY = """
templates:
  - name: patching
    description: Monthly OS patching of web servers
    conditions:
      - "contains(tags, 'patching')"
"""

WRITE_TASK = """
    - name: Write the release marker (the change this play makes)
      ansible.builtin.copy:
        content: "2.4\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
"""

#: the fields of a failing gate's result; anything more (context, hosts, collisions...) would be printed
SHORT_FIELDS = {"changed", "msg", "allowed", "decision_id", "recorded", "reasons", "type", "reference",
                "run_id", "play", "host_count", "checked_at", "change_request", "policy"}
#: keys of the change context: none may reach a fatal line
CONTEXT_KEYS = ("\"context\"", "touched_at", "\"modules\"", "read_includes", "uninspectable_includes", "\"hosts\"")
#: a normal denial's fatal line, reasons included, stays well under this (it was ~3 KB with the context)
FATAL_LINE_BOUND = 1500


def setup(project, sor):
    """web01 and web02, and a change request for web01 only that nobody has assessed or approved yet."""
    project.write_inventory(["web01", "web02"], group="web")
    project.write("policy.yml", POLICY)
    os.makedirs(project.path("out"), exist_ok=True)
    for host in ("web01", "web02"):
        add_ci(sor, host, environment="test")
    return change_request(sor, type="normal", short_description="release 2.4", affected_cis=["web01"],
                          planned_start=iso(hours=-1), planned_end=iso(hours=2), timezone="UTC",
                          validate_cis=False)["number"]


def playbook(pre_tasks):
    return """
- name: Release the web tier
  hosts: web
  gather_facts: false
  pre_tasks:
%s
  tasks:
%s
""" % (pre_tasks, WRITE_TASK)


def fatal_lines(output):
    return [line for line in output.splitlines() if line.startswith("fatal:")]


def shown_result(line):
    return json.loads(line.split(" => ", 1)[1])


def written(project):
    return sorted(os.listdir(project.path("out")))


def only_event(sor):
    [event] = sor.find_change_events()
    return event


def run_denied_gate(project, *gate_options):
    """Run a play whose only task is the gate (``policy.yml`` and ``gate_options``, each ``key: value``); returns
    the run and its one fatal line."""
    options = "".join("\n        %s" % option for option in gate_options)
    project.write("pb.yml", playbook("""
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml%s
""" % options))
    run = project.run("pb.yml", check=False)
    [fatal] = fatal_lines(run.stdout)
    return run, fatal


def test_a_failed_gate_prints_every_reason_and_no_context(project, sor):
    number = setup(project, sor)
    run, fatal = run_denied_gate(project, "change_request: %s" % number)
    assert run.returncode == 2 and written(project) == [], run.stdout[-3000:]
    [decision] = gate_entries(sor)
    assert len(decision["reasons"]) == 3 and decision["context"]["modules"], decision["reasons"]

    shown = shown_result(fatal)
    assert set(shown) == SHORT_FIELDS, sorted(shown)
    assert shown["reasons"] == decision["reasons"], "the fatal line lists every reason"
    for reason in decision["reasons"]:
        assert reason in shown["msg"]
    assert "web02 is not an affected CI of %s" % number in shown["reasons"]
    assert shown["decision_id"] == decision["decision_id"] and shown["recorded"] is True
    assert shown["run_id"] == decision["run_id"] and shown["type"] == "denied" and shown["reference"] is None
    assert shown["change_request"] == {"number": number, "type": "normal", "state": "new",
                                       "approval": "not requested", "template": None}
    assert len(fatal.encode("utf-8")) < FATAL_LINE_BOUND, "the fatal line is %d bytes" % len(fatal.encode("utf-8"))
    for key in CONTEXT_KEYS:
        assert key not in fatal, "the fatal line prints the decision's %s" % key
    assert only_event(sor)["authorisation"] == "denied"


def test_a_standard_denial_names_the_closest_template(project, sor):
    setup(project, sor)
    _run, fatal = run_denied_gate(project)
    shown = shown_result(fatal)
    assert shown["standard"] == {"covered_by": [], "candidates": [], "closest": ["patching"]}, shown
    assert shown["reasons"][0].startswith("no standard change template matches this play")
    assert shown["reasons"][1].startswith("closest: standard change 'patching'")
    assert len(fatal.encode("utf-8")) < FATAL_LINE_BOUND and "touched_at" not in fatal
    assert gate_entries(sor)[0]["standard"]["closest"] == ["patching"]


def test_fail_on_deny_false_then_fail_keeps_the_whole_decision_and_stops_the_play(project, sor):
    """Pattern (i): the registered result is the whole decision; the play's own fail task stops it with the
    gate's message; the run is recorded as denied, not as an unauthorised change."""
    number = setup(project, sor)
    project.write("pb.yml", playbook("""
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
        change_request: %s
        fail_on_deny: false
      register: gate

    - name: The whole decision is in the registered result
      ansible.builtin.assert:
        that:
          - gate.decision.decision_id | length == 32
          - "'ansible.builtin.copy' in gate.decision.context.modules"
          - gate.decision.reasons | length == 3
          - gate.decision.hosts == ['web01', 'web02']
        quiet: true
      when: not gate.allowed

    - name: Say what was registered
      ansible.builtin.debug:
        msg: "decision registered: {{ gate.decision.context.play }}"
      when: not gate.allowed

    - name: Stop the play when the gate denies it
      ansible.builtin.fail:
        msg: "{{ gate.msg }}"
      when: not gate.allowed
""" % number))
    run = project.run("pb.yml", check=False)
    assert run.returncode == 2 and written(project) == [], run.stdout[-3000:]
    assert "Assertion failed" not in run.stdout, run.stdout[-3000:]
    assert run.stdout.count('"msg": "decision registered: Release the web tier"') == 2, run.stdout[-3000:]
    [decision] = gate_entries(sor)
    fatal = fatal_lines(run.stdout)
    assert len(fatal) == 2, "the fail task fails each host"
    for line in fatal:
        shown = shown_result(line)
        assert all(reason in shown["msg"] for reason in decision["reasons"]), line
        assert len(line.encode("utf-8")) < FATAL_LINE_BOUND and "touched_at" not in line
    event = only_event(sor)
    assert event["authorisation"] == "denied" and event["status"] == "failed", event["authorisation"]


def test_rescue_reads_the_whole_decision_by_its_id(project, sor):
    """Pattern (ii): the gate fails; its rescue section reads the whole decision by ``decision_id`` from
    change_event_info, then fails the play itself."""
    number = setup(project, sor)
    project.write("pb.yml", playbook("""
    - name: Change gate, and the whole decision when it denies
      block:
        - name: Change gate
          changeops.itsm.change_gate:
            policy: policy.yml
            change_request: %s
      rescue:
        - name: Read the whole decision of the denial
          changeops.itsm.change_event_info:
            decision_id: "{{ ansible_failed_result.decision_id }}"
          register: denial

        - name: It is the decision the gate failed with, context and hosts included
          ansible.builtin.assert:
            that:
              - denial.decision.decision_id == ansible_failed_result.decision_id
              - denial.decision.reasons == ansible_failed_result.reasons
              - "'ansible.builtin.copy' in denial.decision.context.modules"
              - denial.decision.hosts == ['web01', 'web02']
              - denial.change_events | length == 1
              - denial.change_events[0].run_id == ansible_failed_result.run_id
            quiet: true

        - name: Say what was read
          ansible.builtin.debug:
            msg: "decision read: {{ denial.decision.context.play }} ({{ denial.decision.reasons | length }} reasons)"

        - name: Stop the play (a rescued failure would let it go on)
          ansible.builtin.fail:
            msg: "{{ ansible_failed_result.msg }}"
""" % number))
    run = project.run("pb.yml", check=False)
    assert run.returncode == 2 and written(project) == [], run.stdout[-3000:]
    assert "Assertion failed" not in run.stdout, run.stdout[-3000:]
    # the gate runs once for the batch (run_once): Ansible runs the rescue on its first host, and the
    # batch's other hosts leave the play (failed with it, they run nothing more)
    assert run.stdout.count('"msg": "decision read: Release the web tier (3 reasons)"') == 1, run.stdout[-3000:]
    [decision] = gate_entries(sor)
    fatal = fatal_lines(run.stdout)
    assert len(fatal) == 2, "the gate's failure (rescued) and the fail task's: %s" % fatal
    assert all(shown_result(line)["msg"] == shown_result(fatal[0])["msg"] for line in fatal)
    # the gate's own failure (rescued) and the fail task's, on each host
    assert fatal and all(len(line.encode("utf-8")) < FATAL_LINE_BOUND for line in fatal), fatal
    assert any(shown_result(line).get("decision_id") == decision["decision_id"] for line in fatal)
    assert all(reason in run.stdout for reason in decision["reasons"])
    event = only_event(sor)
    assert event["authorisation"] == "denied" and event["status"] == "failed"
