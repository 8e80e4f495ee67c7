# -*- coding: utf-8 -*-
"""The README's first command, ``bash scripts/demo``, run as a user would run it.

HOME points into the test's directory, so the demo records into the default ledger
(``~/.ansible/changeops/ledger.sqlite``) of a fresh user and the test reads that file back
through the system-of-record interface. The demo runs twice: people run it again, and a
second run must work on a ledger the first one filled.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_demo(home, artifacts):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CHANGEOPS_"))}
    env.update(HOME=str(home), CHANGEOPS_DEMO_ARTIFACTS=str(artifacts), ANSIBLE_NOCOLOR="1")
    completed = subprocess.run(
        ["bash", os.path.join(REPO_ROOT, "scripts", "demo")], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=900, check=False)
    assert completed.returncode == 0, completed.stdout[-20000:]
    return completed.stdout


def by_playbook(events):
    latest = {}
    for event in events:  # newest first
        latest.setdefault(os.path.basename(event["playbook"]), event)
    return latest


def test_the_demo_shows_every_capability_and_runs_again(tmp_path):
    home, artifacts = tmp_path / "home", tmp_path / "artifacts"
    home.mkdir()
    first = run_demo(home, artifacts)
    run_demo(home, artifacts)

    ledger = home / ".ansible" / "changeops" / "ledger.sqlite"
    assert ledger.is_file(), "the demo did not use the default ledger path"
    sor = open_system_of_record({"backend": "sqlite", "sqlite_path": str(ledger), "busy_timeout": 60})
    try:
        events = sor.find_change_events(limit=100)
        assert len(events) == 24, [event["playbook"] for event in events]  # twelve playbooks, twice
        latest = by_playbook(events)

        # a registered CI, with the checklists' compliance on it, and the service that runs on it
        host_ci = sor.find_cis(name="localhost")[0]
        assert (host_ci["environment"], host_ci["attributes"]["services"]) == ("demo", ["demo-web"])
        assert host_ci["attributes"]["compliance.hardening"]["run_id"] == latest["checklists.yml"]["run_id"]
        assert host_ci["attributes"]["compliance.release_readiness"]["status"] == "pass"
        service_ci = sor.find_cis(name="demo-web")[0]
        assert service_ci["attributes"]["ready_for_release"] is True

        # gate decisions: a standard change, a normal change whose request the recorder closed,
        # and an ungated change that ITSM sees as unauthorised and a reviewer signed off
        assert (latest["site.yml"]["authorisation"], latest["site.yml"]["authorisation_ref"]) == ("standard", "demo-motd")
        normal = latest["normal_change.yml"]
        assert normal["authorisation"] == "normal"
        change_request = sor.get_change_request(normal["authorisation_ref"])
        assert (change_request["state"], change_request["close_code"]) == ("closed", "successful")
        # the same change tried first without a change request: denied before it touched anything
        denied = latest["denied_attempt.yml"]
        assert (denied["authorisation"], denied["changed_host_count"]) == ("denied", 0), denied
        ungated = latest["ungated.yml"]
        assert ungated["authorisation"] == "unauthorised"
        assert [review["outcome"] for review in sor.find_reviews(run_id=ungated["run_id"])] == ["follow-up"]

        # the checklists only read the host: their evidence files on the controller are no change to it, and
        # attaching the evidence to the change event and the CIs changes the record only
        checklists = latest["checklists.yml"]
        assert checklists["authorisation"] == "record-only", checklists
        assert checklists["changed_host_count"] == 0, checklists
        evidence = sorted(record["checklist"] for record in sor.find_evidence(run_id=checklists["run_id"]))
        assert evidence == ["hardening", "release_readiness", "release_readiness"]

        # the change policy published once (the second run changed nothing), and the gate decided under it:
        # site.yml, denied_attempt.yml, normal_change.yml, servicenow.yml and servicenow_standard.yml are gated,
        # twice each
        assert [version["version"] for version in sor.find_policies()] == [1]
        assert [entry.data["policy"]["state"] for entry in sor.iter_entries(kinds=["run.gate"])
                if not entry.data.get("run_id_generated")] == ["published"] * 10

        # trust.yml: the value it printed is redacted in both runs, the chain still verifies and lists it
        report = sor.verify(projections=True)
        assert report.valid, report.summary()
        redacted = sorted((item["field"], item["reason"]) for item in report.redactions)
        assert redacted == sorted([("result.cmd", "demo: a one-time access code was printed"),
                                   ("result.stdout", "demo: a one-time access code was printed")] * 2)
        for item in report.redactions:
            assert "one-time access code" not in json.dumps(sor.get_entry(str(item["seq"])).data["result"])
        # every recorded run ends with a signed checkpoint (trust.yml signs one more on demand)
        assert len(list(sor.iter_entries(kinds=["ledger.checkpoint"]))) >= len(events)

        # ServiceNow (the simulator the demo starts): the CHG the CAB approved there authorised the play
        servicenow = latest["servicenow.yml"]
        assert servicenow["authorisation"] == "normal" and servicenow["authorisation_ref"].startswith("CHG")
        assert host_ci["attributes"]["servicenow_sys_id"]
        # and a standard change raised in the play from ServiceNow's template authorised the next one
        standard = latest["servicenow_standard.yml"]
        assert standard["authorisation"] == "standard" and standard["authorisation_ref"].startswith("CHG"), standard
    finally:
        sor.close()

    register = artifacts / "change-register.html"
    assert register.is_file()
    assert normal["authorisation_ref"] in register.read_text()
    assert (artifacts / "hardening" / "localhost.json").is_file()
    assert (artifacts / "release-readiness" / "service-demo-web.json").is_file()
    for shown in ("authorised as a standard change (demo-motd)", "authorised as a normal change (CHG",
                  "authorisation unauthorised", "ledger chain verified", "@environment_demo", "Change register:",
                  "redacted 2 fields", "history matches the signed checkpoint",
                  "state 3 (3 = Closed), close code successful", "attachment: changeops-run-",
                  "authorised as a standard change (CHG",
                  "change gate denied play 'Publish the release notes without a change request'",
                  "closest standard templates: demo-motd", "decision denied, "):
        assert shown in first, shown
    # the scale step: a verified backup taken during the run, and a retention rehearsal on a copy of it
    for shown in ("backed up sqlite:", "1 archive verified", "linked to the live ledger"):
        assert shown in first, shown
    assert (artifacts / "backup" / "ledger.sqlite").is_file()
    assert len(list((artifacts / "retention-rehearsal" / "archives").glob("*.jsonl.gz"))) == 1
    # the review service step: started on the demo's ledger, signed in as the demo account (whose list counts
    # the demo's changes), its URL and account printed, and stopped again (its log ends with the shutdown)
    service_step = first.split("==== 11/11 review service", 1)[1]
    assert re.search(r"signed in as demo-admin: the change list shows \d+ changes", service_step), service_step
    assert re.search(r"Review service: +http://127\.0\.0\.1:\d+/ +account demo-admin / ", service_step), service_step
    log = (artifacts / "review-service.log").read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log, log[-3000:]
    # step 5 prints the host's CMDB variables with their values, lists included (it printed a bare
    # "cmdb_services:" before)
    inventory_step = first.split("==== 5/11", 1)[1].split("==== 6/11", 1)[0]
    assert "cmdb_services:\n- demo-web\n" in inventory_step, inventory_step
    assert "cmdb_environment: demo\n" in inventory_step, inventory_step
    # the change intelligence step: the last gate's blast radius, a request's collisions, triage, the DORA
    # keys and the earned standard change proposed (never published by the demo)
    intelligence_step = first.split("==== 6/11 change intelligence", 1)[1].split("==== 7/11", 1)[0]
    for shown in ("blast radius: [", "collisions: [", " service(s))", "deployments: ", "change failure rate: ",
                  " change(s))", "standard change candidate", "earned-normal-change-demo"):
        assert shown in intelligence_step, (shown, intelligence_step)
