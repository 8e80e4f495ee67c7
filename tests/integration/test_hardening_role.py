# -*- coding: utf-8 -*-
"""The hardening role in a recorded run against a real, isolated Debian 12 (systemd-nspawn).

Never against this machine: the target is an instance booted from tests/molecule's cached root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from support import prereqs
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOLECULE = os.path.join(REPO, "tests", "molecule")

pytestmark = pytest.mark.integration


@pytest.fixture
def target(tmp_path):
    # on the CI machine kind a missing prerequisite fails the test (tests/support/prereqs.py), elsewhere skips it
    missing = [tool for tool in ("systemd-nspawn", "debootstrap") if not shutil.which(tool)]
    prereqs.require(os.geteuid() == 0 and not missing,
                    "root and %s (scripts/bootstrap installs them)" % (", ".join(missing) or "systemd-nspawn, debootstrap"))
    instance = tmp_path / "target"
    subprocess.run([os.path.join(MOLECULE, "instance"), "start", str(instance), "bookworm",
                    "cm-" + uuid.uuid4().hex[:12]], check=True)
    try:
        yield str(instance / "rootfs")
    finally:
        subprocess.run([os.path.join(MOLECULE, "instance"), "stop", str(instance)], check=True)


def test_audit_evidence_shows_on_the_change_event_and_the_ci(project, open_sor, target):
    sor = open_sor()
    ci_id = uuid.uuid4().hex
    sor.append([Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": "web01"}, "run_id": None})])
    project.write_cfg("connection_plugins = %s" % os.path.join(MOLECULE, "plugins", "connection"))
    project.write("inventory.ini", "[all_hosts]\nweb01 ansible_connection=nsenter_chroot ansible_host=%s "
                                   "ansible_python_interpreter=/usr/bin/python3\n" % target)
    project.write_playbook("audit.yml", """
        - name: Audit web01
          hosts: all_hosts
          gather_facts: true
          roles:
            - role: changeops.itsm.hardening
              vars:
                hardening_mode: audit
                hardening_evidence_dir: "{{ playbook_dir }}/evidence"
        """)
    project.run("audit.yml")

    (event,) = sor.find_change_events(playbook="audit.yml")
    # an audit changes no host, and its evidence attachment says changed: false (a second audit must
    # be idempotent for molecule), so the run changed nothing; the evidence is on its change event
    assert event["status"] == "successful" and event["authorisation"] == "no-change", event
    (evidence,) = sor.find_evidence(run_id=event["run_id"], checklist="hardening")
    with open(project.path("evidence", "web01.json")) as handle:
        on_disk = json.load(handle)
    assert evidence["document"] == on_disk
    assert evidence["host"] == "web01" and evidence["ci_id"] == ci_id
    assert evidence["status"] == "fail"  # a fresh Debian misses high-severity controls
    summary = evidence["summary"]
    assert "SSH-01" in summary["blocking_failures"] and summary["counts"]["fail"] > 10
    assert summary["score"] == sor.get_ci(ci_id)["attributes"]["compliance.hardening"]["score"]
    statuses = {c["id"]: c["status"] for c in evidence["document"]["controls"]}
    assert statuses["SVC-01"] == "fail" and statuses["FS-02"] == "pass"

    # a dry run records what it found on its own (dry-run) change event, but does not touch the CI
    compliance = sor.get_ci(ci_id)["attributes"]["compliance.hardening"]
    project.run("audit.yml", "--check")
    dry = [e for e in sor.find_change_events(playbook="audit.yml") if e["run_id"] != event["run_id"]][0]
    assert dry["authorisation"] == "dry-run", dry
    (dry_evidence,) = sor.find_evidence(run_id=dry["run_id"], checklist="hardening")
    assert dry_evidence["document"]["check_mode"] is True and dry_evidence["ci_id"] == ci_id
    assert sor.get_ci(ci_id)["attributes"]["compliance.hardening"] == compliance
    assert compliance["run_id"] == event["run_id"]
