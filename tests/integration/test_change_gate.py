# -*- coding: utf-8 -*-
"""changeops.itsm.change_gate in real ansible-playbook runs, one test per decision path.

Every run has the change_recorder enabled (the ``project`` fixture), so the
tests also check what ITSM staff see afterwards: the change event's
authorisation, computed from the recorded ``run.gate`` decisions.
"""

from __future__ import annotations

import json
import os
import re
import threading

import pytest

from support.change_requests import add_ci, approved_change, change_request, gate_entries, iso

pytestmark = pytest.mark.integration

POLICY = """
templates:
  - name: patching
    description: Monthly OS patching of web servers
    conditions:
      - "contains(tags, 'patching')"
      - "!contains(environments, 'production') || host_count <= `10`"
    max_hosts: 20
"""

WRITE_TASK = """
    - name: Write the marker file (the change this play makes)
      ansible.builtin.copy:
        content: "{{ inventory_hostname }}\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
      tags: [patching]
"""


def gated_playbook(gate_args="", pre="", roles="", extra_tasks=""):
    return """
- name: Patch the web servers
  hosts: web
  gather_facts: false
%s  pre_tasks:
    - name: Change gate (pre_tasks, so it runs before the roles)
      changeops.itsm.change_gate:
        policy: policy.yml
%s      register: gate
      tags: [always]
  tasks:
%s%s
""" % (roles, "".join("        %s\n" % line for line in gate_args.strip().splitlines() if line), pre, WRITE_TASK
       + extra_tasks)


def setup(project, sor, policy=POLICY, hosts=("web01", "web02"), environment="test"):
    project.write_inventory(list(hosts), group="web")
    project.write("policy.yml", policy)
    os.makedirs(project.path("out"), exist_ok=True)
    for host in hosts:
        add_ci(sor, host, environment=environment)


def written(project):
    return sorted(os.listdir(project.path("out")))


def last_event(sor):
    events = sor.find_change_events(limit=1)
    assert events, "the recorder recorded no change event"
    return events[0]


def flat(output):
    return re.sub(r"\s+", " ", output)


def test_standard_change_allowed(project, sor):
    setup(project, sor)
    project.write("pb.yml", gated_playbook())
    run = project.run("pb.yml")
    assert written(project) == ["web01.txt", "web02.txt"]
    [decision] = gate_entries(sor)
    assert decision["allowed"] is True and decision["type"] == "standard"
    assert decision["reference"] == "patching"
    assert decision["hosts"] == ["web01", "web02"]
    assert decision["context"]["environments"] == ["test"]
    event = last_event(sor)
    assert event["authorisation"] == "standard", run.stdout
    assert event["authorisation_ref"] == "patching"


def test_standard_change_refused_when_a_protected_area_is_touched(project, sor):
    setup(project, sor)
    project.write("roles/ssh_hardening/tasks/main.yml", """
        - name: Harden sshd (writes a scratch file in the test)
          ansible.builtin.copy:
            content: hardened
            dest: "{{ playbook_dir }}/out/ssh-{{ inventory_hostname }}"
            mode: "0644"
        """)
    project.write("pb.yml", gated_playbook(roles="  roles:\n    - ssh_hardening\n"))
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert ("play touches protected area sshd (role ssh_hardening), which standard change 'patching' cannot cover"
            in flat(run.stdout))
    assert written(project) == [], "a denied gate must stop the play before any host is touched"
    [decision] = gate_entries(sor)
    assert decision["type"] == "denied"
    assert decision["protected_areas"][0]["area"] == "sshd"


def test_protected_file_path_and_module_are_detected(project, sor):
    setup(project, sor)
    extra = """
    - name: Edit sshd_config (check mode only, never really written)
      ansible.builtin.lineinfile:
        path: /etc/ssh/sshd_config
        line: "PermitRootLogin no"
        create: true
        mode: "0600"
      check_mode: true
      tags: [patching]
    - name: Add a user (check mode only)
      ansible.builtin.user:
        name: changeops-test
      check_mode: true
      tags: [patching]
"""
    project.write("pb.yml", gated_playbook(gate_args="fail_on_deny: false", extra_tasks=extra))
    project.run("pb.yml", "--tags", "patching")
    [decision] = gate_entries(sor)
    areas = {touch["area"]: touch["matched_by"] for touch in decision["protected_areas"]}
    # each with the task that writes or calls it
    assert [re.sub(r":\d+$", ":N", text) for text in areas["sshd"]] == ["path /etc/ssh/sshd_config at pb.yml:N"]
    assert [re.sub(r":\d+$", ":N", text) for text in areas["users_keys"]] == ["module ansible.builtin.user at pb.yml:N"]
    assert decision["allowed"] is False
    # the play went on (fail_on_deny: false) and changed hosts: ITSM staff see it as unauthorised
    assert last_event(sor)["authorisation"] == "unauthorised"


def test_normal_change_allowed_and_closed_by_the_recorder(project, sor):
    setup(project, sor)
    number = approved_change(sor, ["web01", "web02"], iso(hours=-1), iso(hours=2))
    project.write("pb.yml", gated_playbook(gate_args="change_request: %s" % number))
    run = project.run("pb.yml", env={"CHANGEOPS_CLOSE_CHANGE_REQUESTS": "true"})
    assert written(project) == ["web01.txt", "web02.txt"]
    [decision] = gate_entries(sor)
    assert (decision["allowed"], decision["type"], decision["reference"]) == (True, "normal", number)
    event = last_event(sor)
    assert event["authorisation"] == "normal"
    assert event["authorisation_ref"] == number
    record = sor.get_change_request(number)
    assert record["state"] == "closed", run.stdout
    assert record["close_code"] == "successful"
    assert record["actual_start"] == event["started_at"]
    assert record["actual_end"] == event["ended_at"]
    kinds = [entry.kind for entry in sor.iter_entries(subject=number)]
    assert kinds[-3:] == ["change_request.transitioned", "change_request.transitioned", "change_request.closed"]


def test_standard_change_request_allowed_and_closed_by_the_recorder(project, sor):
    """A standard change request authorises what its template covers, and is closed like a normal one;
    a template-only standard change has no request to close."""
    setup(project, sor)
    number = change_request(sor, type="standard", template="patching", short_description="monthly patching",
                            affected_cis=["web01", "web02"], planned_start=iso(hours=-1), planned_end=iso(hours=2),
                            validate_cis=False)["number"]
    change_request(sor, number=number, state="scheduled")
    project.write("pb.yml", gated_playbook(gate_args="change_request: %s" % number))
    project.run("pb.yml", "--tags", "patching", env={"CHANGEOPS_CLOSE_CHANGE_REQUESTS": "true"})
    [decision] = gate_entries(sor)
    assert (decision["allowed"], decision["type"], decision["reference"]) == (True, "standard", number)
    event = last_event(sor)
    assert (event["authorisation"], event["authorisation_ref"]) == ("standard", number)
    record = sor.get_change_request(number)
    assert (record["state"], record["close_code"]) == ("closed", "successful")

    for name in written(project):
        os.unlink(project.path("out", name))
    project.write("template_only.yml", gated_playbook())
    project.run("template_only.yml", "--tags", "patching", env={"CHANGEOPS_CLOSE_CHANGE_REQUESTS": "true"})
    assert (last_event(sor)["authorisation"], last_event(sor)["authorisation_ref"]) == ("standard", "patching")


def test_normal_change_denied_with_every_reason(project, sor):
    setup(project, sor)
    number = change_request(sor, type="normal", short_description="rework", affected_cis=["web01"],
                            planned_start=iso(hours=-5), planned_end=iso(hours=-2), validate_cis=False)["number"]
    change_request(sor, number=number, state="assess")
    project.write("pb.yml", gated_playbook(gate_args="change_request: %s" % number))
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    output = flat(run.stdout)
    assert "%s is in state assess, not scheduled or implement" % number in output
    assert "%s is not approved (approval: not requested)" % number in output
    assert re.search(r"now is 2 h( \d+ min)? after the window ends \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\)", output)
    assert "web02 is not an affected CI of %s" % number in output
    assert "web01 is not an affected CI" not in output
    assert written(project) == []
    [decision] = gate_entries(sor)
    assert len(decision["reasons"]) == 4


def test_normal_change_denied_before_its_window_and_when_rejected(project, sor):
    setup(project, sor)
    number = approved_change(sor, ["web01", "web02"], iso(hours=3), iso(hours=5), timezone="Europe/Paris")
    project.write("pb.yml", gated_playbook(gate_args="change_request: %s" % number))
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert re.search(r"now is (2 h 5\d min|3 h) before the window starts \(.* Europe/Paris\)", flat(run.stdout))

    # approved and scheduled, inside its window, then rejected: the rejection alone denies
    rejected = approved_change(sor, ["web01", "web02"], iso(hours=-1), iso(hours=2))
    change_request(sor, number=rejected, approval={"approver": "dave", "decision": "rejected",
                                                   "comment": "rollback untested"})
    project.write("pb.yml", gated_playbook(gate_args="change_request: %s" % rejected))
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert "change gate denied play 'Patch the web servers': %s was rejected by dave: rollback untested" % rejected \
        in flat(run.stdout)
    assert written(project) == []
    assert gate_entries(sor)[-1]["reasons"] == ["%s was rejected by dave: rollback untested" % rejected]


def test_playbook_is_the_one_holding_the_play_not_the_file_of_the_gate_task(project, sor):
    setup(project, sor, policy=POLICY.replace("      - \"contains(tags, 'patching')\"",
                                              "      - \"playbook_name == 'pb.yml'\""))
    project.write("tasks/gate.yml", """
        - name: Change gate (in a tasks file)
          changeops.itsm.change_gate:
            policy: "{{ playbook_dir }}/policy.yml"
          tags: [always]
        """)
    project.write("pb.yml", """
- name: Patch the web servers
  hosts: web
  gather_facts: false
  tasks:
    - name: Gate
      ansible.builtin.import_tasks: tasks/gate.yml
%s""" % WRITE_TASK)
    project.run("pb.yml")
    [decision] = gate_entries(sor)
    assert (decision["context"]["playbook"], decision["context"]["playbook_name"]) == (project.path("pb.yml"), "pb.yml")
    assert (decision["allowed"], decision["reference"]) == (True, "patching")


def test_freeze_denies_a_standard_change(project, sor):
    policy = POLICY + """
freezes:
  - name: year-end
    reason: Year-end trading
    start: "%s"
    end: "%s"
    timezone: Europe/Paris
    environments: [production]
""" % (iso(days=-1), iso(days=2))
    setup(project, sor, policy=policy, environment="production")
    project.write("pb.yml", gated_playbook())
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert re.search(r"freeze 'year-end' in force until \d{4}-\d\d-\d\d \d\d:\d\d Europe/Paris for production "
                     r"\(only emergency changes allowed\): Year-end trading", flat(run.stdout))
    assert written(project) == []


def test_emergency_change_allowed_flagged_and_refused_without_justification(project, sor):
    setup(project, sor)
    project.write("pb.yml", gated_playbook(gate_args="""
emergency: true
justification: "INC0012345: the web tier returns 500 to every customer"
"""))
    run = project.run("pb.yml")
    assert written(project) == ["web01.txt", "web02.txt"]
    assert "flagged for retrospective review" in flat(run.stdout)
    [decision] = gate_entries(sor)
    assert (decision["type"], decision["review_required"]) == ("emergency", True)
    assert decision["emergency"]["justification"].startswith("INC0012345")
    assert last_event(sor)["authorisation"] == "emergency"

    project.write("pb.yml", gated_playbook(gate_args="emergency: true"))
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert "an emergency change needs a justification of at least 10 characters" in flat(run.stdout)


def test_check_mode_is_always_allowed_as_dry_run(project, sor):
    setup(project, sor)
    project.write("roles/ssh_hardening/tasks/main.yml", """
        - name: Harden sshd
          ansible.builtin.debug:
            msg: hardening
        """)
    project.write("pb.yml", gated_playbook(roles="  roles:\n    - ssh_hardening\n"))
    run = project.run("pb.yml", "--check")
    assert "check mode: play 'Patch the web servers' allowed; a real run would be denied" in flat(run.stdout)
    [decision] = gate_entries(sor)
    assert (decision["allowed"], decision["type"]) == (True, "dry-run")
    assert decision["would_be"]["allowed"] is False
    assert last_event(sor)["authorisation"] == "dry-run"


@pytest.mark.backends("sqlite")  # the PostgreSQL equivalent is in test_postgresql_faults
def test_unreadable_system_of_record_denies(project, sor, tmp_path):
    setup(project, sor)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    project.write("pb.yml", gated_playbook(gate_args="sqlite_path: %s" % garbage))
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    output = flat(run.stdout)
    assert "change gate denied play 'Patch the web servers': cannot open the SQLite ledger %s" % garbage in output
    assert written(project) == []
    assert gate_entries(sor) == []


def test_unauthorised_change_recorded_when_no_gate_ran(project, sor):
    setup(project, sor)
    project.write("pb.yml", """
- name: Change without a gate
  hosts: web
  gather_facts: false
  tasks:
%s""" % WRITE_TASK)
    project.run("pb.yml")
    assert written(project) == ["web01.txt", "web02.txt"]
    event = last_event(sor)
    assert event["authorisation"] == "unauthorised"
    assert sor.find_change_events(authorisation=["unauthorised"])[0]["run_id"] == event["run_id"]


def test_serial_batches_get_one_decision_each(project, sor):
    setup(project, sor)
    project.write("pb.yml", gated_playbook().replace("  gather_facts: false\n", "  gather_facts: false\n  serial: 1\n"))
    project.run("pb.yml")
    decisions = gate_entries(sor)
    assert [d["hosts"] for d in decisions] == [["web01"], ["web02"]]
    assert len(set(d["decision_id"] for d in decisions)) == 2
    # limits such as max_hosts are about the whole play, whatever the batch size
    assert [(d["context"]["host_count"], d["context"]["play_host_count"]) for d in decisions] == [(1, 2), (1, 2)]
    assert last_event(sor)["authorisation"] == "standard"


def test_wait_for_approval_goes_on_once_approved(project, sor, open_sor):
    setup(project, sor)
    number = change_request(sor, type="normal", short_description="wait", affected_cis=["web01", "web02"],
                            planned_start=iso(hours=-1), planned_end=iso(hours=2), validate_cis=False)["number"]
    change_request(sor, number=number, state="assess")
    change_request(sor, number=number, state="authorise")
    project.write("pb.yml", gated_playbook(gate_args="""
change_request: %s
wait_for_approval: true
approval_timeout: 120
poll_interval: 1
""" % number))
    process = project.start("pb.yml")
    seen = []
    # a thread reads the output so that a silent, hung run cannot block the test past its timeouts
    reader = threading.Thread(target=lambda: seen.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        project.wait_for(lambda: sum("waiting for approval of %s" % number in line for line in list(seen)) >= 2,
                         timeout=120, what="two progress lines")
        approver = open_sor()
        change_request(approver, number=number, approval={"approver": "cab", "decision": "approved"})
        change_request(approver, number=number, state="scheduled")
        process.wait(timeout=180)
        reader.join(timeout=30)
    finally:
        if process.poll() is None:
            project.kill(process)
        process.stdout.close()
    output = "".join(seen)
    assert process.returncode == 0, output
    assert re.search(r"waiting for approval of %s \(state authorise, approval requested\): poll 1, " % number, output)
    assert written(project) == ["web01.txt", "web02.txt"]
    assert gate_entries(sor)[0]["type"] == "normal"


def test_wait_for_approval_denies_on_rejection_and_on_timeout(project, sor):
    setup(project, sor)
    rejected = change_request(sor, type="normal", short_description="reject me", affected_cis=["web01", "web02"],
                              planned_start=iso(hours=-1), planned_end=iso(hours=2), validate_cis=False)["number"]
    change_request(sor, number=rejected, state="assess")
    change_request(sor, number=rejected, state="authorise")
    change_request(sor, number=rejected, approval={"approver": "cab", "decision": "rejected",
                                                   "comment": "no rollback plan"})
    project.write("pb.yml", gated_playbook(gate_args="change_request: %s\nwait_for_approval: true" % rejected))
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    assert "%s was rejected by cab: no rollback plan" % rejected in flat(run.stdout)

    pending = change_request(sor, type="normal", short_description="slow CAB", affected_cis=["web01", "web02"],
                             planned_start=iso(hours=-1), planned_end=iso(hours=2), validate_cis=False)["number"]
    change_request(sor, number=pending, state="assess")
    project.write("pb.yml", gated_playbook(gate_args="""
change_request: %s
wait_for_approval: true
approval_timeout: 2
poll_interval: 1
""" % pending))
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    output = flat(run.stdout)
    # the wait lasts the timeout plus at most one read of the change request: 2 s, or 3 on a loaded machine
    assert re.search(r"%s still awaits approval after [23] s \(state assess, approval not requested\): "
                     r"approval_timeout reached" % pending, output), output[-3000:]
    assert output.count("waiting for approval of %s" % pending) >= 2
    assert written(project) == []


BAD_POLICIES = [
    ("templates:\n  - name: p\n    conditions: [\"contains(tags, 'x')\"]\n    colour: red\n",
     "policy.yml line 4: templates[0].colour: unknown key"),
    ("templates:\n  - name: p\n    conditions: [\"contains(tags, 'x')\"]\n    max_hosts: ten\n",
     "policy.yml line 4: templates[0].max_hosts: must be an integer (got 'ten')"),
    ("freezes:\n  - name: f\n    start: 2026-12-20\n    end: 2027-01-03\n    timezone: Europe/Pariss\n",
     "policy.yml line 5: freezes[0].timezone: unknown time zone; use an IANA name such as Europe/Paris or UTC "
     "(got 'Europe/Pariss')"),
    ("freezes:\n  - name: f\n    start: 2026-13-20\n    end: 2027-01-03\n    timezone: UTC\n",
     "policy.yml line 3: freezes[0].start: is not an ISO 8601 date or date-time"),
    ("templates:\n  - name: p\n    conditions: [\"contains(tags, 'x'\"]\n",
     "policy.yml line 3: templates[0].conditions[0]: invalid JMESPath expression"),
]


@pytest.mark.parametrize("policy,message", BAD_POLICIES, ids=["unknown-key", "wrong-type", "bad-timezone",
                                                              "bad-date", "bad-jmespath"])
def test_malformed_policy_stops_the_play_with_one_clear_error(project, sor, policy, message):
    setup(project, sor, policy=policy)
    project.write("pb.yml", gated_playbook(gate_args="fail_on_deny: false"))
    run = project.run("pb.yml", check=False)
    assert run.returncode != 0
    output = flat(run.stdout)
    assert message in output, output[-3000:]
    fatal = [line for line in run.stdout.splitlines() if line.startswith("fatal:")]
    assert len(fatal) == 1 and "change policy is invalid" in fatal[0], run.stdout
    assert written(project) == []


UNMATCHED_PLAYBOOK = """
- name: Release the web tier
  hosts: web
  gather_facts: false
  pre_tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
%s      register: gate
  tasks:
    - name: Write the release marker
      ansible.builtin.copy:
        content: "2.4\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
"""


def test_a_denial_says_what_to_do_and_prints_the_reasons_not_the_context(project, sor):
    """No template matches and no change request was given: the message says what to do, the
    fatal line is the reasons (not kilobytes of context), the record and fail_on_deny: false keep all."""
    setup(project, sor)
    project.write("pb.yml", UNMATCHED_PLAYBOOK % "")
    run = project.run("pb.yml", check=False)
    assert run.returncode == 2 and written(project) == []
    output = flat(run.stdout)
    assert ("no standard change template matches this play (1 checked in %s): give the gate change_request: "
            "<number> of an approved change request (raise one with changeops.itsm.change_request), or change "
            "the play so that a template covers it" % project.path("policy.yml")) in output, output[-3000:]
    assert "; closest: standard change 'patching': condition contains(tags, 'patching') is false for this play" \
        in output
    assert ":;" not in output, "an empty reason was joined into the message"
    [fatal] = [line for line in run.stdout.splitlines() if line.startswith("fatal:")]
    shown = json.loads(fatal.split(" => ", 1)[1])
    assert sorted(shown) == ["allowed", "changed", "checked_at", "decision_id", "host_count", "msg", "play", "policy",
                             "reasons", "recorded", "reference", "run_id", "standard", "type"], fatal
    assert "context" not in shown and shown["standard"]["closest"] == ["patching"]
    # the reasons twice (msg, reasons) and a few short fields: ~3 KB with the context
    assert len(fatal) < 1500, "the fatal line buries the reasons: %d characters" % len(fatal)
    # the whole decision is in the record, under the id the failure names
    [decision] = gate_entries(sor)
    assert decision["decision_id"] == shown["decision_id"] and shown["recorded"] is True
    assert decision["context"]["modules"] and decision["reasons"][1].startswith("closest: ")

    # with fail_on_deny: false the registered result is the whole decision
    project.write("pb.yml", (UNMATCHED_PLAYBOOK % "        fail_on_deny: false\n").replace("  tasks:\n", """  tasks:
    - name: Keep the registered decision
      ansible.builtin.copy:
        content: "{{ gate | to_json }}"
        dest: "{{ playbook_dir }}/gate.json"
        mode: "0600"
      run_once: true
      check_mode: false
      when: not gate.allowed
    - name: Stop here
      ansible.builtin.meta: end_play
      when: not gate.allowed
"""))
    project.run("pb.yml")
    with open(project.path("gate.json")) as handle:
        registered = json.load(handle)
    assert registered["allowed"] is False and registered["decision"]["context"]["modules"]
    assert registered["decision"]["reasons"] == gate_entries(sor)[-1]["reasons"]
