# -*- coding: utf-8 -*-
"""Adversarial, end to end: ServiceNow credentials planted in every place a user puts them (SN_* variables,
the task's instance option, ansible.cfg) never reach any byte the collection writes: the ledger (SQLite file,
WAL, shared memory), the spool, the change register, the outbox's state, nor the output of the runs, through
successful runs, refused credentials, an instance echoing requests back, and OAuth tokens it issues."""

from __future__ import annotations

import base64
import os
import urllib.parse

import pytest


pytestmark = pytest.mark.integration

PASSWORD = "PLANTED-ipw-9d2c71-secret words"
CLIENT_SECRET = "PLANTED-ics-61f0e2"
API_KEY = "PLANTED-iak-0b7d3e"
TASK_PASSWORD = "PLANTED-task-pw-4a8c"

PLAYBOOK = """
- name: Register and change, ServiceNow asked live
  hosts: web
  gather_facts: false
  vars:
    sn_password: "{task_password}"
  pre_tasks:
    - name: Register the host
      changeops.itsm.register_host:
        instance:
          password: "{{{{ sn_password }}}}"
    - name: Change gate
      changeops.itsm.change_gate:
        change_request: "{{{{ chg }}}}"
        policy: policy.yml
        fail_on_deny: false
        instance:
          password: "{{{{ sn_password }}}}"
      tags: [always]
  tasks:
    - name: Write the marker file
      ansible.builtin.copy:
        content: "{{{{ inventory_hostname }}}}\\n"
        dest: "{{{{ playbook_dir }}}}/out/{{{{ inventory_hostname }}}}.txt"
        mode: "0644"
"""


def forms(value):
    yield value
    yield urllib.parse.quote(value, safe="")
    yield urllib.parse.quote_plus(value)
    for user in ("planted.user", "planted.task"):
        yield base64.b64encode(("%s:%s" % (user, value)).encode()).decode()


def every_file(root):
    for directory, _dirs, files in os.walk(root):
        for name in files:
            yield os.path.join(directory, name)


def test_planted_servicenow_secrets_reach_no_byte_the_collection_writes(sqlite_project, sqlite_sor, sn, tmp_path):
    sn.control.users({"planted.user": {"password": PASSWORD, "roles": ["itil", "asset", "change_manager"]},
                      "planted.task": {"password": TASK_PASSWORD, "roles": ["itil", "asset", "change_manager"]}})
    sn.control.oauth_clients({"planted-client": {"secret": CLIENT_SECRET, "user": "planted.user"}})
    sn.control.api_keys({API_KEY: "planted.user"})
    names = ["web01", "web02"]
    sqlite_project.write_inventory(names, group="web")
    sqlite_project.write("policy.yml", "templates: []\n")
    sqlite_project.write("pb.yml", PLAYBOOK.format(task_password=TASK_PASSWORD))
    os.makedirs(sqlite_project.path("out"), exist_ok=True)
    register_path = str(tmp_path / "register.html")
    sqlite_project.write_cfg("""
        [changeops_servicenow]
        api_key = %s
        """ % API_KEY)
    base = sn.env(SN_USERNAME="planted.user", SN_PASSWORD=PASSWORD, SN_CLIENT_ID="planted-client",
                  SN_CLIENT_SECRET=CLIENT_SECRET, CHANGEOPS_REGISTER_PATH=register_path,
                  CHANGEOPS_SERVICENOW_CLOSE_CHANGE_REQUESTS="closed")
    outputs = []
    change = sn.new_change(state="scheduled", cis=names)
    # 1. OAuth (client secret + password from SN_*), the task's instance.password overriding SN_PASSWORD
    outputs.append(sqlite_project.run("pb.yml", "-e", "chg=%s" % change["number"],
                                      env=dict(base, SN_USERNAME="planted.task")).stdout)
    # 2. the API key from ansible.cfg (no OAuth variables)
    api_env = dict((key, value) for key, value in base.items() if key not in ("SN_CLIENT_ID", "SN_CLIENT_SECRET",
                                                                              "SN_USERNAME", "SN_PASSWORD"))
    outputs.append(sqlite_project.run("pb.yml", "-e", "chg=%s" % change["number"], env=api_env,
                                      check=False).stdout)
    # 3. refused credentials: the gate fails closed, the outbox keeps its error
    outputs.append(sqlite_project.run("pb.yml", "-e", "chg=%s" % change["number"], check=False,
                                      env=dict(base, SN_CLIENT_SECRET=CLIENT_SECRET + "-wrong")).stdout)
    # 4. an instance echoing every request back, credentials included
    sn.control.fault(kind="echo", status=400)
    outputs.append(sqlite_project.run("pb.yml", "-e", "chg=%s" % change["number"], env=base, check=False).stdout)
    sn.control.clear_faults()
    outputs.append(sqlite_project.run(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "playbooks", "servicenow_sync.yml"), env=base, check=False).stdout)
    issued = list(sn.simulator.tokens) + list(sn.simulator.refresh_tokens)
    assert issued, "OAuth tokens were issued, so their absence below means something"
    assert "Invalid request: Authorization" in "".join(outputs)  # the echo came back and was scrubbed
    assert sn.chg(change["number"])["state"] == "3"  # the successful run did land on the CHG
    secrets = [PASSWORD, CLIENT_SECRET, API_KEY, TASK_PASSWORD] + issued
    written = list(every_file(str(tmp_path)))  # the project, its HOME (spool), the ledger, the register
    assert any(path.endswith("ledger.sqlite") for path in written) and os.path.exists(register_path)
    for path in written:
        if path.endswith(("pb.yml", "ansible.cfg")):
            continue  # the user's own files, where the test planted them
        with open(path, "rb") as handle:
            data = handle.read()
        for secret in secrets:
            for form in forms(secret):
                assert form.encode() not in data, "%s holds a planted secret (%s...)" % (path, secret[:14])
    for output in outputs:
        for secret in secrets:
            for form in forms(secret):
                assert form not in output, "a run's output holds a planted secret (%s...)" % secret[:14]
    state = sqlite_sor.list_sync_states()
    assert state and all(secret not in repr(state) for secret in secrets)
