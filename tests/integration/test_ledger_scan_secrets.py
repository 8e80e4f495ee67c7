# -*- coding: utf-8 -*-
"""``ledger_verify scan_secrets: true`` finds entries written before the detector catalogue that hold
secret-shaped content, names each entry (seq, id, kind) and field, and never repeats the content.

The "old" entries are appended the way an older recorder stored them (its redaction let these shapes
through: see test_recorder_secret_shapes for today's main); the scan runs once through the operation on
both backends and once as a real playbook task.
"""

from __future__ import annotations

import json
import uuid

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.change_events import (
    LEDGER_VERIFY_SPEC,
    scan_ledger_for_secrets,
    verify_ledger,
)
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

pytestmark = [pytest.mark.integration]

# a digit after "Pw": a random hex letter d there makes "...Pwd...", which the key_value_pair detector
# rightly takes for a key as well, and the expected findings below name one detector per field
MYSQL_PASSWORD = "MysqlPw7" + uuid.uuid4().hex[:10]
PEM_BODY = "MIIEpAIBAAKCAQEA" + uuid.uuid4().hex
DB_PASS = "DbPass" + uuid.uuid4().hex[:10]
AWS_KEY_ID = "AKIA" + uuid.uuid4().hex[:16].upper()
K8S_VALUE = "K8s" + uuid.uuid4().hex[:10]
SECRETS = (MYSQL_PASSWORD, PEM_BODY, DB_PASS, AWS_KEY_ID, K8S_VALUE)


def old_ledger(sor):
    """A run as an older recorder stored it: most results clean, four of them with leaks."""
    run = uuid.uuid4().hex

    def result(name, result=None, diff=None):
        data = {"run_id": run, "play_id": "p", "host": "web01", "status": "ok", "changed": False, "item": None,
                "task": {"name": name, "action": "ansible.builtin.command"}, "result": result or {}}
        if diff is not None:
            data["diff"] = diff
        return Entry("run.result", run, data)

    entries = [
        Entry("run.started", run, {"run_id": run, "user": "ops", "controller": "ctl", "playbooks": ["/srv/site.yml"],
                                   "git": {"commit": "3f786850e387550fdab836ed7e6dc881de23001b"}}),
        result("clean", {"stdout": "hello from web01", "rc": 0, "password": "********"}),
        result("mysql", {"cmd": "mysql -uroot -p%s -e status" % MYSQL_PASSWORD, "rc": 0}),
        result("key", diff=[{"after": "-----BEGIN RSA PRIVATE KEY-----\n%s\n-----END RSA PRIVATE KEY-----\n" % PEM_BODY}]),
        result("env", diff=[{"before": "", "after": "DB_HOST=db\nDB_PASS=%s\n" % DB_PASS}],
               result={"msg": "aws id %s" % AWS_KEY_ID}),
        result("k8s", {"msg": {"kind": "Secret", "data": {"username": K8S_VALUE}}}),
        Entry("run.finished", run, {"run_id": run, "outcome": "successful"}),
    ]
    sor.append(entries)
    return dict((entry.data.get("task", {}).get("name"), entry) for entry in entries[1:-1])


def params(**given):
    values = {name: option.get("default") for name, option in LEDGER_VERIFY_SPEC.items()}
    values.update(given)
    return values


def test_scan_secrets_names_each_entry_and_field(sor):
    stored = old_ledger(sor)
    result = verify_ledger(OperationContext(sor, params(scan_secrets=True)))
    assert result["verification"]["valid"] and not result.get("failed")
    scan = result["secret_scan"]
    by_entry = {}
    for finding in scan["findings"]:
        by_entry.setdefault(finding["id"], set()).add((finding["path"], finding["detector"]))
    assert by_entry == {
        stored["mysql"].id: {("data.result.cmd", "command_line_password")},
        stored["key"].id: {("data.diff[0].after", "private_key")},
        stored["env"].id: {("data.diff[0].after", "key_value_pair"), ("data.result.msg", "aws_access_key_id")},
        stored["k8s"].id: {("data.result.msg.data.username", "kubernetes_secret")},
    }
    for finding in scan["findings"]:
        entry = [entry for entry in stored.values() if entry.id == finding["id"]][0]
        assert finding["seq"] == entry.seq and finding["kind"] == "run.result"
    assert scan["entries_with_secrets"] == 4 and scan["findings_total"] == 5 and not scan["truncated"]
    assert "4 stored entries hold secret-shaped content" in result["msg"]
    text = json.dumps(result)
    assert not [secret for secret in SECRETS if secret in text], "the report repeats a secret"


def test_scan_secrets_is_off_by_default_and_clean_ledgers_scan_clean(sor):
    assert "secret_scan" not in verify_ledger(OperationContext(sor, params()))
    assert scan_ledger_for_secrets(sor) == {
        "entries_with_secrets": 0, "findings_total": 0, "findings": [], "truncated": False,
        "summary": "no stored entry holds secret-shaped content"}


def test_scan_secrets_lists_at_most_the_limit(sor):
    old_ledger(sor)
    scan = scan_ledger_for_secrets(sor, limit=2)
    assert len(scan["findings"]) == 2 and scan["findings_total"] == 5 and scan["truncated"]
    assert "2 listed" in scan["summary"]


@pytest.mark.backends("sqlite")
def test_scan_secrets_from_a_playbook(project, open_sor):
    sor = open_sor()
    stored = old_ledger(sor)
    sor.close()
    report = project.path("scan.json")
    project.write("scan.yml", """
        - name: Scan the ledger
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Verify and scan
              changeops.itsm.ledger_verify:
                scan_secrets: true
              register: scanned
            - name: Keep the findings
              ansible.builtin.copy:
                content: "{{{{ scanned.secret_scan | to_json }}}}"
                dest: {report}
                mode: "0600"
        """.format(report=report))
    project.callbacks = []
    project.run("scan.yml")
    with open(report) as handle:
        scan = json.load(handle)
    assert set(finding["id"] for finding in scan["findings"]) == set(stored[name].id for name in ("mysql", "key", "env", "k8s"))
    assert not [secret for secret in SECRETS if secret in json.dumps(scan)]
