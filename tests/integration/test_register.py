# -*- coding: utf-8 -*-
"""The change register from real playbook runs: content, idempotence, bad input, reviews, secrets.

The ledger is filled by real ``ansible-playbook`` runs with the change_recorder
enabled; the register is generated the way users do it
(``ansible-playbook changeops.itsm.change_register``) and read back from its
JSON data and HTML. Browser behaviour is in test_register_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import time
import types

import pytest

from support.backends import BACKENDS, backend_config, fresh_env
from support.project import Project
from support.raw_ledger import raw_ledger_connection

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import os_user
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

from register_fixtures import RELEASE_REQUESTED_BY, REAL_RUNS, fill_synthetic_ledger, record_real_runs

pytestmark = [pytest.mark.integration]

#: awaiting review, riskiest first: unauthorised, emergency, denied, failed, the rest; newest first within each
AWAITING_ORDER = ["deploy.yml", "motd.yml", "emergency.yml", "denied.yml", "patch.yml", "release.yml"]


def _config(env):
    return backend_config(env)


@pytest.fixture(scope="module", params=BACKENDS)
def recorded(request, tmp_path_factory):
    """One system of record per backend filled by real runs of every kind, shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("register")
    env = fresh_env(request.param, request, root)
    project = Project(root / "project", env)
    workdir = root / "work"
    workdir.mkdir()
    change_number = record_real_runs(project, str(workdir))
    with open_system_of_record(_config(env)) as sor:
        events = {event["playbook"].rsplit("/", 1)[-1] + (":check" if event["dry_run"] else ""): event
                  for event in sor.find_change_events()}
    return types.SimpleNamespace(project=project, env=env, root=root, events=events, change_number=change_number)


def generate(project, out_dir, *extra):
    """Run the collection playbook; returns (register data, HTML text)."""
    html = os.path.join(str(out_dir), "register.html")
    data = os.path.join(str(out_dir), "register.json")
    project.run("changeops.itsm.change_register", "-e", "register_path=%s" % html,
                "-e", "register_json_path=%s" % data, *extra)
    with open(data) as stream:
        register = json.load(stream)
    with open(html) as stream:
        page = stream.read()
    return register, page


def details(register):
    merged = {}
    for chunk in register["chunks"]:
        merged.update(chunk)
    return merged


def test_register_shows_every_real_run_with_its_details(recorded, tmp_path):
    register, page = generate(recorded.project, tmp_path)
    events = recorded.events
    assert set(events) == set(REAL_RUNS)
    rows = {row["run_id"]: row for row in register["rows"]}
    assert set(rows) == {event["run_id"] for event in events.values()}, "the generating run itself is left out"
    by_name = {name: rows[event["run_id"]] for name, event in events.items()}

    assert by_name["motd.yml"]["authorisation_types"] == ["unauthorised"]
    assert by_name["motd.yml:check"]["dry_run"] is True
    assert by_name["motd.yml:check"]["authorisation_types"] == ["dry-run"]
    assert by_name["emergency.yml"]["authorisation_types"] == ["emergency"]
    assert by_name["patch.yml"]["authorisation_types"] == ["standard"]
    assert by_name["patch.yml"]["authorisation_ref"] == "monthly-patching"
    assert by_name["patch.yml"]["outcome"] == "failed" and by_name["patch.yml"]["failed_hosts"] == ["web01"]
    assert by_name["release.yml"]["authorisation_types"] == ["change-request"]
    assert by_name["release.yml"]["authorisation_ref"] == recorded.change_number
    assert by_name["deploy.yml"]["outcome"] == "failed"
    assert by_name["deploy.yml"]["failed_hosts"] == ["web02"]
    # registering CIs changed the record, no host: neither "no change" nor a change needing authorisation
    assert by_name["cmdb.yml"]["authorisation_types"] == ["record-only"]
    assert (by_name["cmdb.yml"]["changed_hosts"], by_name["cmdb.yml"]["record_changes"]) == ([], 2)
    assert by_name["denied.yml"]["authorisation_types"] == ["denied"] and by_name["denied.yml"]["outcome"] == "denied"
    for name in ("motd.yml", "emergency.yml", "patch.yml", "release.yml", "deploy.yml"):
        assert by_name[name]["hosts"] == ["web01", "web02"]
        assert by_name[name]["environments"] == ["production"], "environment comes from the hosts' CIs"
    assert register["counts"]["unauthorised"] == 2   # motd.yml and deploy.yml changed hosts without a gate
    assert register["counts"]["failed"] == 2         # patch.yml and deploy.yml (denied.yml is counted apart)
    assert register["counts"]["denied"] == 1
    assert register["counts"]["emergency"] == 1
    assert register["counts"]["dry_runs"] == 1
    # awaiting review: implemented changes only (no dry run, no run that changed nothing), riskiest first
    assert register["awaiting_review"] == [events[name]["run_id"] for name in AWAITING_ORDER]

    detail = details(register)
    motd = detail[events["motd.yml"]["run_id"]]
    assert [group["host"] for group in motd["changes"]] == ["web01", "web02"]
    task = motd["changes"][0]["tasks"][0]
    assert task["task"] == "Write the message of the day" and task["status"] == "changed"
    assert task["diff"].startswith("--- ") and "\n+" in task["diff"]
    assert motd["plays"][0]["name"] == "Update the message of the day"
    assert motd["gates"] == []
    assert {ci["name"] for ci in motd["cis"]} == {"web01", "web02"}
    assert all(ci["via"] == "changed by this run" for ci in motd["cis"])

    emergency = detail[events["emergency.yml"]["run_id"]]
    assert len(emergency["gates"]) == 1
    gate = emergency["gates"][0]
    assert gate["allowed"] is True and gate["type"] == "emergency"
    assert gate["justification"] == "INC0012345: web tier refuses connections"
    assert gate["play"] == "Emergency fix of the web tier"

    release = detail[events["release.yml"]["run_id"]]
    assert [(gate["type"], gate["reference"]) for gate in release["gates"]] == [("normal", recorded.change_number)]
    assert [cr["number"] for cr in release["change_requests"]] == [recorded.change_number]
    assert release["gates"][0]["change_request"] == recorded.change_number, "a number, not the decision's snapshot"

    deploy = detail[events["deploy.yml"]["run_id"]]
    assert [(f["host"], f["task"]) for f in deploy["failures"]] == [("web02", "Health check that fails on web02")]
    assert "non-zero return code" in deploy["failures"][0]["message"]

    ci_ids = {ci["ci_id"] for ci in motd["cis"]}
    for ci_id in ci_ids:
        ci = register["cis"][ci_id]
        assert ci["history"][-1]["kind"] == "ci.created", "history reaches back to the CI's creation"
        assert events["motd.yml"]["run_id"] in ci["runs"]

    assert register["verification"]["valid"] is True
    assert register["verification"]["projections_checked"] is True
    with open_system_of_record(_config(recorded.env)) as sor:
        assert register["verification"]["entries_checked"] <= sor.head()[0]

    # the page is self-contained: no network, every run in its data, the fingerprint in the head
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "default-src 'none'" in page
    assert re.search(r'<meta name="changeops-register-fingerprint" content="%s">' % register["fingerprint"], page)
    for run_id in rows:
        assert run_id in page


IDEMPOTENCE_PLAYBOOK = """
- name: Generate the register three times
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Predict in check mode
      changeops.itsm.change_register:
        path: "{{ out }}"
      check_mode: true
      diff: true
      register: predicted

    - name: Check mode wrote nothing
      ansible.builtin.assert:
        that:
          - predicted is changed
          - predicted.diff.after.counts.changes == expected_changes | int
          - not (out is exists)

    - name: Generate
      changeops.itsm.change_register:
        path: "{{ out }}"
        mode: "0640"
      register: first

    - name: Generate again
      changeops.itsm.change_register:
        path: "{{ out }}"
      register: second

    - name: Check mode after generation
      changeops.itsm.change_register:
        path: "{{ out }}"
      check_mode: true
      register: predicted_again

    - name: Only the first generation changed anything
      ansible.builtin.assert:
        that:
          - first is changed
          - second is not changed
          - predicted_again is not changed
          - first.fingerprint == second.fingerprint
"""


def test_what_counts_as_a_change_and_who_authorised_it(recorded, tmp_path):
    """One definition of a change for the list, the detail and the counts; the change request as a
    reviewer needs it (window, requester, approver); blocked attempts as their own state."""
    register, _page = generate(recorded.project, tmp_path)
    rows = {row["run_id"]: row for row in register["rows"]}
    detail = details(register)
    by_name = dict((name, (rows[event["run_id"]], detail[event["run_id"]])) for name, event in recorded.events.items())

    # a loop of three items on each host is three changes, not four: its summary result is not one more
    release_row, release = by_name["release.yml"]
    for group in release["changes"]:
        assert [task["item"] for task in group["tasks"]] == [None, "search", "checkout", "wishlist"], group
    assert release_row["host_changes"] == 8 and release_row["changed_hosts"] == ["web01", "web02"]
    assert [host["changes"] for host in release["hosts"]] == [4, 4]
    # Ansible's own recap counts tasks: 2 changed per host (the task and the loop)
    assert [host["changed"] for host in release["hosts"]] == [2, 2]

    # every row that changed a host is a change needing authorisation, never "no change" or "record only";
    # every row that changed none is not: the list, the filters and the counts read the same definition
    for row in rows.values():
        if row["changed_hosts"]:
            assert not set(row["authorisation_types"]) & {"no-change", "record-only", "denied", "dry-run"}, row
        elif not row["dry_run"]:
            assert row["authorisation_types"][0] in ("no-change", "record-only", "denied"), row
    assert register["counts"]["changed_hosts"] == sum(len(row["changed_hosts"]) for row in rows.values())
    record_only = [row["playbook"] for row in rows.values() if row["authorisation_types"] == ["record-only"]]
    assert register["counts"]["record_only"] == len(record_only) and by_name["cmdb.yml"][0]["playbook"] in record_only
    assert not [playbook for playbook in record_only if playbook.endswith("change_register.yml")], (
        "generating the register renders the record, it changes nothing")
    _row, dry = by_name["motd.yml:check"]
    assert dry["changes"] == [] and [group["host"] for group in dry["predicted_changes"]] == ["web01", "web02"]

    # the change request: its window, who asked, who raised it, who approved it and when
    [request] = release["change_requests"]
    assert request["requested_by"] == RELEASE_REQUESTED_BY and request["opened_by"]
    assert request["planned_start"] and request["planned_end"] and request["timezone"] == "Europe/Paris"
    assert [(a["approver"], a["decision"]) for a in request["approvals"]] == [("carol", "approved")]
    assert request["approvals"][0]["at"]
    snapshot = release["gates"][0]["change_request_at_decision"]
    assert (snapshot["state"], snapshot["approval"]) == ("scheduled", "approved")
    assert snapshot["planned_start"] == request["planned_start"]

    # a blocked attempt: its own state, the gate's reasons, awaiting review
    denied_row, denied = by_name["denied.yml"]
    assert denied_row["awaiting_review"] and denied_row["changed_hosts"] == []
    [gate] = denied["gates"]
    assert gate["allowed"] is False and "give the gate change_request" in gate["reasons"][0]

    # the CI page lists class, status and environment once, not again among the attributes
    for ci in register["cis"].values():
        assert not set(ci["attributes"]) & {"name", "class", "status", "environment"}, ci


def test_generation_is_idempotent_and_check_mode_writes_nothing(recorded, tmp_path):
    out = tmp_path / "register.html"
    recorded.project.write_playbook("idempotence.yml", IDEMPOTENCE_PLAYBOOK)
    with open_system_of_record(_config(recorded.env)) as sor:
        expected = len(sor.find_change_events())   # every finished run; the generating run is left out
    recorded.project.run("idempotence.yml", "-e", "out=%s" % out, "-e", "expected_changes=%d" % expected)
    assert oct(os.stat(str(out)).st_mode & 0o777) == "0o640"
    assert not [name for name in os.listdir(str(tmp_path)) if name.startswith(".register.html.")], "no temp file left"


BAD_INPUT_PLAYBOOK = """
- name: Refuse bad input with a message naming it
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Directory that does not exist
      changeops.itsm.change_register:
        path: "{{ base }}/missing-dir/register.html"
      register: missing_dir
      ignore_errors: true

    - name: Unparseable since
      changeops.itsm.change_register:
        path: "{{ base }}/register.html"
        since: last tuesday
      register: bad_since
      ignore_errors: true

    - name: Nonsense mode
      changeops.itsm.change_register:
        path: "{{ base }}/register.html"
        mode: rwx
      register: bad_mode
      ignore_errors: true

    - name: JSON on top of the HTML
      changeops.itsm.change_register:
        path: "{{ base }}/register.html"
        json_path: "{{ base }}/register.html"
      register: same_file
      ignore_errors: true

    - name: Review of a change that was never recorded
      changeops.itsm.change_review:
        run_id: '00000000000000000000000000000000'
        outcome: accepted
      register: unknown_run
      ignore_errors: true

    - name: Follow-up without saying what
      changeops.itsm.change_review:
        run_id: "{{ known_run }}"
        outcome: follow-up
      register: no_comment
      ignore_errors: true

    - name: Every failure names the field and value
      ansible.builtin.assert:
        that:
          - missing_dir is failed
          - missing_dir.msg is search('^path. the directory ' ~ base ~ '/missing-dir of .* does not exist')
          - bad_since is failed
          - bad_since.msg is search("^since. 'last tuesday' is neither")
          - bad_mode is failed
          - bad_mode.msg is search("^mode. 'rwx' is not an octal file mode")
          - same_file is failed
          - same_file.msg is search('^json_path. .* is the same file as path')
          - unknown_run is failed
          - unknown_run.msg is search("^run_id. no change event '0{32}'")
          - no_comment is failed
          - no_comment.msg is search('^comment. say what needs following up')
"""


def test_bad_input_fails_with_a_clear_message_and_writes_nothing(recorded, tmp_path):
    recorded.project.write_playbook("bad_input.yml", BAD_INPUT_PLAYBOOK)
    recorded.project.run("bad_input.yml", "-e", "base=%s" % tmp_path,
                         "-e", "known_run=%s" % recorded.events["motd.yml"]["run_id"])
    assert os.listdir(str(tmp_path)) == []
    with open_system_of_record(_config(recorded.env)) as sor:
        assert sor.find_reviews(run_id=recorded.events["motd.yml"]["run_id"]) == []


REVIEW_PLAYBOOK = """
- name: Sign off a change
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Predict the sign-off
      changeops.itsm.change_review:
        run_id: "{{ run_id }}"
        outcome: "{{ outcome }}"
        comment: "{{ comment }}"
      check_mode: true
      diff: true
      register: predicted

    - name: Sign off
      changeops.itsm.change_review:
        run_id: "{{ run_id }}"
        outcome: "{{ outcome }}"
        comment: "{{ comment }}"
      register: signed

    - name: Sign off again
      changeops.itsm.change_review:
        run_id: "{{ run_id }}"
        outcome: "{{ outcome }}"
        comment: "{{ comment }}"
      register: again

    - name: Check mode predicts, the first sign-off records, the second is a no-op
      ansible.builtin.assert:
        that:
          - predicted is changed
          - predicted.diff.after.outcome == outcome
          - predicted.entry_seq is not defined
          - signed is changed and signed.entry_seq > 0
          - again is not changed
"""

CHANGING_PLAYBOOK = """
- name: Change something
  hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Write a file
      ansible.builtin.copy:
        content: "release 9\\n"
        dest: "{{ workdir }}/{{ inventory_hostname }}.txt"
        mode: "0644"
"""


@pytest.mark.tampers_query_tables
def test_a_record_edited_behind_the_ledger_marks_the_register(project, open_sor, backend_env, tmp_path):
    project.write_inventory(["web01"])
    project.write_playbook("broken.yml", """
        - name: A change that fails
          hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Fail
              ansible.builtin.fail:
                msg: the release did not start
        """)
    assert project.run("broken.yml", check=False).returncode != 0
    sor = open_sor()
    run_id = sor.find_change_events(playbook="broken.yml")[0]["run_id"]
    conn = raw_ledger_connection(sor, backend_env)
    try:  # hide the failure where reviewers read it
        conn.execute("UPDATE change_events SET status = 'successful' WHERE run_id = ?", (run_id,))
    finally:
        conn.close()

    register, page = generate(project, tmp_path)
    verification = register["verification"]
    assert verification["valid"] is False and verification["first_broken"] is None
    assert [(p["table"], p["key"], p["problem"]) for p in verification["projection_problems"]] == [
        ("change_events", "run_id=%s" % run_id, "altered")]
    status = re.search(r'<p id="chain-status"[^>]*>(.*?)</p>', page, re.S)
    assert 'data-valid="false"' in status.group(0)
    assert "Records shown DO NOT MATCH the ledger" in status.group(1)
    assert "change_events row run_id=%s: columns status" % run_id in status.group(1)

    # without the comparison the page says what it did not check, rather than claiming more
    unchecked, page = generate(project, tmp_path, "-e", "register_check_projections=false")
    assert unchecked["verification"]["valid"] is True
    assert unchecked["verification"]["projections_checked"] is None
    assert "The records shown were not compared with it" in page


def test_a_ledger_entry_edited_in_the_database_shows_the_chain_broken_at_that_entry(project, open_sor, backend_env,
                                                                                    tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    project.write_inventory(["web01", "web02"])
    project.write_playbook("change.yml", CHANGING_PLAYBOOK)
    project.run("change.yml", "-e", "workdir=%s" % workdir)
    project.run("change.yml", "-e", "workdir=%s" % workdir)
    sor = open_sor()
    # hide that web02 was changed by the first run: an entry in the middle of the chain, not its head
    first_run = sorted(sor.find_change_events(), key=lambda event: event["started_at"])[0]["run_id"]
    (target,) = [entry for entry in sor.iter_entries(kinds=["run.result"], subject=first_run)
                 if entry.data["host"] == "web02"]
    assert target.seq < sor.head()[0] - 5
    conn = raw_ledger_connection(sor, backend_env)
    try:
        edited = conn.execute("UPDATE ledger SET data = REPLACE(data, ?, ?) WHERE seq = ?",
                              ('"status":"changed"', '"status":"ok"', target.seq))
        assert edited.rowcount == 1
    finally:
        conn.close()

    register, page = generate(project, tmp_path)
    verification = register["verification"]
    assert verification["valid"] is False
    assert (verification["first_broken"]["seq"], verification["first_broken"]["problem"]) == (target.seq, "edited")
    status = re.search(r'<p id="chain-status"[^>]*>(.*?)</p>', page, re.S)
    assert 'data-valid="false"' in status.group(0)
    assert "Ledger chain BROKEN at entry %d</strong>" % target.seq in status.group(1)
    assert "Records from that entry on cannot be trusted" in status.group(1)


def test_review_sign_off_is_a_ledger_entry_and_shows_in_the_register(project, open_sor, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    project.write_inventory(["web01"])
    project.write_playbook("change.yml", CHANGING_PLAYBOOK)
    project.write_playbook("review.yml", REVIEW_PLAYBOOK)
    project.run("change.yml", "-e", "workdir=%s" % workdir)
    sor = open_sor()
    run_id = sor.find_change_events(playbook="change.yml")[0]["run_id"]

    register = generate(project, tmp_path)[0]
    assert register["awaiting_review"] == [run_id]

    for outcome, comment in (("follow-up", "Unauthorised: raise a retrospective change request"),
                             ("accepted", "Retrospective CHG approved")):
        project.run("review.yml", "-e", json.dumps({"run_id": run_id, "outcome": outcome, "comment": comment}))
    reviews = sor.find_reviews(run_id=run_id)
    # the reviewer is the account that ran the module, never a typed name
    assert [(r["outcome"], r["reviewer"]) for r in reviews] == [("accepted", os_user()), ("follow-up", os_user())]
    entries = list(sor.iter_entries(kinds=["run.reviewed"]))
    assert len(entries) == 2 and all(entry.subject == run_id for entry in entries)

    register, page = generate(project, tmp_path)
    row = next(row for row in register["rows"] if row["run_id"] == run_id)
    assert row["review_status"] == "accepted"
    assert row["awaiting_review"] is False
    assert register["awaiting_review"] == []
    assert [r["comment"] for r in details(register)[run_id]["reviews"]] == [
        "Retrospective CHG approved", "Unauthorised: raise a retrospective change request"]
    assert "Retrospective CHG approved" in page


SECRETS = {
    "no_log": "NoLogSecret-7f3a9e",
    "password_argument": "PasswordArg-9b1c44",
    "extra_var": "ExtraVarToken-4d2e81",
}

SECRET_MODULE = '''#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(service=dict(type="str", required=True),
                                              password=dict(type="str", required=True, no_log=False)))
    # echoes the password back, as careless modules do: the recorder must still keep it out
    module.exit_json(changed=True, service=module.params["service"], password=module.params["password"],
                     msg="service %s configured" % module.params["service"])


main()
'''

SECRETS_PLAYBOOK = """
- name: Configure secrets the way real playbooks do
  hosts: all_hosts
  gather_facts: false
  vars:
    nolog_secret: "%(no_log)s"
    service_password: "%(password_argument)s"
  tasks:
    - name: Write a secret under no_log
      ansible.builtin.copy:
        content: "{{ nolog_secret }}\\n"
        dest: "{{ workdir }}/{{ inventory_hostname }}.nolog"
        mode: "0600"
      no_log: true

    - name: Set the service password
      set_service_password:
        service: billing
        password: "{{ service_password }}"

    - name: Write the API token from an extra var
      ansible.builtin.copy:
        content: "api_endpoint=https://api.example.net\\ntoken {{ api_token }}\\n"
        dest: "{{ workdir }}/{{ inventory_hostname }}.token"
        mode: "0600"
""" % SECRETS


def test_no_planted_secret_reaches_the_register(project, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    project.write_inventory(["web01"])
    project.write("library/set_service_password.py", SECRET_MODULE)
    project.write_playbook("secrets.yml", SECRETS_PLAYBOOK)
    project.run("secrets.yml", "--diff", "-e", "workdir=%s" % workdir, "-e", "api_token=%s" % SECRETS["extra_var"])
    # the secrets really went through the run: they are on the "managed host"
    assert SECRETS["no_log"] in (workdir / "web01.nolog").read_text()
    assert SECRETS["extra_var"] in (workdir / "web01.token").read_text()

    register, page = generate(project, tmp_path)
    with open(str(tmp_path / "register.json")) as stream:
        raw_json = stream.read()
    run = next(row for row in register["rows"] if row["playbook"].endswith("secrets.yml"))
    tasks = [task["task"] for group in details(register)[run["run_id"]]["changes"] for task in group["tasks"]]
    # the changed tasks are in the register (so the check below is not vacuous)...
    assert "Set the service password" in tasks and "Write the API token from an extra var" in tasks
    # ...but none of their secrets
    for where, secret in SECRETS.items():
        assert secret not in page, "%s secret leaked into the HTML" % where
        assert secret not in raw_json, "%s secret leaked into the JSON" % where


def test_recorder_refreshes_the_register_after_each_run(project, tmp_path):
    out = tmp_path / "published" / "register.html"
    out.parent.mkdir()
    workdir = tmp_path / "work"
    workdir.mkdir()
    project.write_inventory(["web01"])
    project.write_playbook("change.yml", CHANGING_PLAYBOOK)
    env = {"CHANGEOPS_REGISTER_PATH": str(out), "CHANGEOPS_REGISTER_JSON_PATH": str(tmp_path / "published" / "r.json")}
    project.run("change.yml", "-e", "workdir=%s" % workdir, env=env)
    with open(str(tmp_path / "published" / "r.json")) as stream:
        first = json.load(stream)
    assert [row["playbook"].rsplit("/", 1)[-1] for row in first["rows"]] == ["change.yml"]
    assert first["rows"][0]["outcome"] == "successful", "the hook runs after the run's final flush"

    project.run("change.yml", "--check", "-e", "workdir=%s" % workdir, env=env)
    with open(str(tmp_path / "published" / "r.json")) as stream:
        second = json.load(stream)
    assert len(second["rows"]) == 2 and second["rows"][0]["dry_run"] is True
    assert out.exists() and second["fingerprint"] in out.read_text()
    # the per-run refresh checks the chain but leaves the (slow) replay to the playbook and ledger_verify
    assert second["verification"]["valid"] is True and second["verification"]["projections_checked"] is None


def test_a_refresh_that_overruns_its_budget_is_given_up_and_leaves_the_register_whole(project, open_sor, tmp_path):
    published = tmp_path / "published"
    published.mkdir()
    out, data = published / "register.html", published / "r.json"
    workdir = tmp_path / "work"
    workdir.mkdir()
    project.write_inventory(["web01"])
    project.write_playbook("change.yml", CHANGING_PLAYBOOK)
    env = {"CHANGEOPS_REGISTER_PATH": str(out), "CHANGEOPS_REGISTER_JSON_PATH": str(data)}
    project.run("change.yml", "-e", "workdir=%s" % workdir, env=env)
    before = (out.read_text(), data.read_text())
    # a ledger big enough that a refresh cannot finish in 50 ms
    fill_synthetic_ledger(open_sor(), 300, with_cis=False)

    started = time.monotonic()
    slow = project.run("change.yml", "-e", "workdir=%s" % workdir,
                       env=dict(env, CHANGEOPS_REGISTER_REFRESH_TIMEOUT="0.05"))
    output = re.sub(r"\s+", " ", slow.stdout)
    assert re.search(r"change register %s not refreshed after run [0-9a-f]{32}: gave up after \d+ s "
                     r"\(register_refresh_timeout\)" % re.escape(str(out)), output), slow.stdout[-3000:]
    assert time.monotonic() - started < 60
    assert (out.read_text(), data.read_text()) == before, "a given-up refresh must leave the files as they were"
    assert sorted(os.listdir(str(published))) == ["r.json", "register.html"], "no temporary file left"

    project.run("change.yml", "-e", "workdir=%s" % workdir, env=env)
    with open(str(data)) as stream:
        assert len(json.load(stream)["rows"]) == 303, "the next refresh within its budget catches up"
