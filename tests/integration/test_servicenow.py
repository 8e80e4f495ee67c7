# -*- coding: utf-8 -*-
"""ServiceNow end to end: real ansible-playbook runs, the recorder on, the loopback ServiceNow simulator
(a simulator of the documented API, not a real instance).

* a provisioning play registers 200 hosts in the simulated CMDB through IRE in 6 requests (2 IRE
  requests of 100 items, 4 read-backs of 50), and a second run sends nothing;
* check mode asks IRE's query variant; MULTI_MATCH fails the task naming the host and the rule;
* the gate authorises from a live CHG, denies and fails closed naming the cause;
* a standard CHG is created from a policy template's ServiceNow template;
* a run leaves work notes, the change event attachment, actual times and the closure on its CHG;
* the simulator killed in the middle of a run: what the recorder's background feeder delivered during the run
  is not sent again, and the outbox delivers the rest exactly once later;
* a 429 storm delays the run by no more than the rate-limit budget, and nothing is lost; one the background
  feeder meets during the run is cut at the run's end to the end-of-run budget.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest


from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.outbox import Outbox

pytestmark = pytest.mark.integration
SYNC_PLAYBOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                             "playbooks", "servicenow_sync.yml")

REGISTER = """
- name: Provision
  hosts: {hosts}
  gather_facts: false
  tasks:
    - name: Register the host
      changeops.itsm.register_host:
        environment: production
        support_group: linux-ops
        servicenow_push: {push}
"""


def host_vars(names):
    return dict((name, {"ansible_os_family": "Debian", "ansible_product_serial": "SER-%s" % name,
                        "ansible_fqdn": "%s.example.com" % name}) for name in names)


def outbox_status(sor, handle):
    return Outbox(sor, handle.settings()).status()


def writes(entries):
    return [entry for entry in entries if entry["method"] != "GET"]


# -- CMDB through IRE ----------------------------------------------------------------------------------------
def test_200_hosts_reach_the_cmdb_through_ire_in_six_requests_and_a_second_run_writes_nothing(
        sqlite_project, sqlite_sor, sn):
    names = ["web%03d" % number for number in range(200)]
    sqlite_project.write_inventory(names, group="web", host_vars=host_vars(names))
    sqlite_project.write("provision.yml", REGISTER.format(hosts="web", push="deferred"))
    sqlite_project.run("provision.yml", env=sn.env())
    servers = sn.control.records("cmdb_ci_linux_server")
    assert sorted(row["name"] for row in servers) == names
    assert all(row["environment"] == "production" and row["serial_number"] == "SER-%s" % row["name"]
               for row in servers)
    requests = sn.requests()
    ire = [entry for entry in requests if "identifyreconcile" in entry["path"]]
    # the documented figure: 200 hosts = 2 IRE requests (100 CIs each) + 4 read-backs (50 sys_ids each)
    assert len(ire) == 2 and len(requests) == 6, [(e["method"], e["path"]) for e in requests]
    assert all(ci["attributes"]["servicenow_sys_id"] for ci in sqlite_sor.find_cis())
    assert outbox_status(sqlite_sor, sn)["pending"] == 0
    sqlite_project.run("provision.yml", env=sn.env())
    assert writes(sn.requests(len(requests))) == [] and len(sn.requests()) == len(requests)


def test_check_mode_asks_ire_and_multi_match_fails_the_task_naming_host_and_rule(sqlite_project, sqlite_sor, sn):
    for _attempt in range(2):
        sn.control.insert("cmdb_ci_linux_server", {"name": "dup01"})
    names = ["dup01", "new01"]
    vars_ = host_vars(names)
    vars_["dup01"].pop("ansible_product_serial")  # identified by name only: two records carry it
    sqlite_project.write_inventory(names, group="web", host_vars=vars_)
    sqlite_project.write("provision.yml", REGISTER.format(hosts="web", push="now") + """
      register: registered
    - name: Show what ServiceNow would do
      ansible.builtin.debug:
        var: registered.servicenow
""")
    checked = sqlite_project.run("provision.yml", "--check", env=sn.env(), check=False)
    assert checked.returncode != 0
    assert re.search(r"fatal: \[dup01\].*host dup01 .*identifier rule 'Hardware Rule' \(searched cmdb_ci_hardware "
                     r"on name\)", checked.stdout)
    assert '"status": "would insert"' in checked.stdout and '"operation": "INSERT"' in checked.stdout
    assert writes(sn.requests()) == [e for e in writes(sn.requests()) if "identifyreconcile/query" in e["path"]]
    real = sqlite_project.run("provision.yml", env=sn.env(), check=False)
    assert real.returncode != 0
    assert re.search(r"fatal: \[dup01\].*MULTI_MATCH|fatal: \[dup01\].*several CIs matching identifier rule "
                     r"'Hardware Rule'", real.stdout)
    assert sn.ci("new01") is not None
    assert [item["subject"] for item in outbox_status(sqlite_sor, sn)["set_aside"]] == [
        sqlite_sor.find_cis(names=["dup01"])[0]["ci_id"]]


# -- the gate and the change record ------------------------------------------------------------------------
GATED = """
- name: Change the web servers
  hosts: web
  gather_facts: false
  pre_tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        change_request: "{{ chg }}"
        policy: policy.yml
      tags: [always]
  tasks:
    - name: Write the marker file
      ansible.builtin.copy:
        content: "{{ inventory_hostname }}\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
"""
POLICY = """
templates:
  - name: patching
    servicenow_template: Patch Linux servers
    conditions:
      - "contains(tags, 'patching')"
"""


def gated_project(project, sor, handle):
    names = ["web01", "web02"]
    project.write_inventory(names, group="web", host_vars=host_vars(names))
    project.write("policy.yml", POLICY)
    project.write("provision.yml", REGISTER.format(hosts="web", push="deferred"))
    project.write("gated.yml", GATED)
    os.makedirs(project.path("out"), exist_ok=True)
    project.run("provision.yml", env=handle.env())
    return names


def test_the_gate_authorises_from_a_live_chg_and_the_run_lands_on_it(sqlite_project, sqlite_sor, sn):
    names = gated_project(sqlite_project, sqlite_sor, sn)
    change = sn.new_change(state="scheduled", cis=names)
    env = sn.env(CHANGEOPS_SERVICENOW_CLOSE_CHANGE_REQUESTS="closed",
                 CHANGEOPS_SERVICENOW_REGISTER_URL="https://changes.example/register.html")
    run = sqlite_project.run("gated.yml", "-e", "chg=%s" % change["number"], env=env)
    assert "authorised as a normal change (%s)" % change["number"] in run.stdout
    [event] = sqlite_sor.find_change_events(limit=1)
    assert event["authorisation"] == "normal" and event["authorisation_ref"] == change["number"]
    record = sn.chg(change["number"])
    assert (record["state"], record["close_code"]) == ("3", "successful")
    assert record["work_start"] and record["work_end"]
    notes = [row["value"] for row in sn.control.records("sys_journal_field", "element_id=%s" % change["sys_id"])]
    assert any("run %s started" % event["run_id"] in note for note in notes)
    ended = [note for note in notes if "run %s ended: successful" % event["run_id"] in note]
    assert len(ended) == 1 and "Hosts changed (2): web01, web02" in ended[0]
    assert "https://changes.example/register.html#run-%s" % event["run_id"] in ended[0]
    [attachment] = sn.control.records("sys_attachment", "table_sys_id=%s" % change["sys_id"])
    document = sn.control.attachment(attachment["sys_id"])
    assert document["run_id"] == event["run_id"] and document["ledger"]["head_hash"]


@pytest.mark.parametrize("state,reason", [("assess", "is in state assess, not scheduled or implement"),
                                          ("scheduled-outside", "after the window ends")])
def test_the_gate_denies_a_chg_that_does_not_authorise_the_play(sqlite_project, sqlite_sor, sn, state, reason):
    names = gated_project(sqlite_project, sqlite_sor, sn)
    if state == "scheduled-outside":
        change = sn.new_change(state="scheduled", cis=names, start=-5, end=-1)
    else:
        change = sn.new_change(state=state, approval="requested", cis=names)
    run = sqlite_project.run("gated.yml", "-e", "chg=%s" % change["number"], env=sn.env(), check=False)
    assert run.returncode != 0 and reason in run.stdout
    assert os.listdir(sqlite_project.path("out")) == []


def test_an_unreachable_servicenow_fails_the_gate_closed(sqlite_project, sqlite_sor, sn):
    names = gated_project(sqlite_project, sqlite_sor, sn)
    change = sn.new_change(state="scheduled", cis=names)
    env = sn.env(SN_HOST="http://127.0.0.1:1")
    run = sqlite_project.run("gated.yml", "-e", "chg=%s" % change["number"], env=env, check=False)
    assert run.returncode != 0
    assert "%s cannot be read from ServiceNow http://127.0.0.1:1 (fail closed" % change["number"] in run.stdout
    assert os.listdir(sqlite_project.path("out")) == []


def test_a_standard_change_is_created_from_the_template(sqlite_project, sqlite_sor, sn):
    gated_project(sqlite_project, sqlite_sor, sn)
    sqlite_project.write("standard.yml", GATED.replace('change_request: "{{ chg }}"\n', "")
                         .replace("tags: [always]", "tags: [always, patching]")
                         .replace("  tasks:\n", "  tags: [patching]\n  tasks:\n"))
    run = sqlite_project.run("standard.yml", env=sn.env(CHANGEOPS_SERVICENOW_CLOSE_CHANGE_REQUESTS="closed"))
    [record] = sn.control.records("change_request", "type=standard")
    assert "authorised as a standard change (%s)" % record["number"] in run.stdout
    assert record["state"] == "3" and record["close_code"] == "successful"
    assert record["std_change_producer_version"]
    assert len(sn.control.records("task_ci", "task=%s" % record["sys_id"])) == 2


def test_an_unauthorised_run_becomes_a_chg_in_review(sqlite_project, sqlite_sor, sn):
    gated_project(sqlite_project, sqlite_sor, sn)
    sqlite_project.write("ungated.yml", GATED.split("  pre_tasks:", maxsplit=1)[0] + "  tasks:" + GATED.split("  tasks:", maxsplit=1)[1])
    sqlite_project.run("ungated.yml", env=sn.env())
    [event] = sqlite_sor.find_change_events(limit=1)
    assert event["authorisation"] == "unauthorised"
    [record] = sn.control.records("change_request", "correlation_id=changeops-unauthorised-%s" % event["run_id"])
    assert (record["unauthorized"], record["state"]) == ("true", "0")


# -- outages, restarts, 429s ----------------------------------------------------------------------------------
KILLED = """
- name: First half, delivered in the recorder's background while the run goes on
  hosts: first
  gather_facts: false
  tasks:
    - name: Register the host
      changeops.itsm.register_host:
        servicenow_push: deferred
- name: ServiceNow goes down in the middle of the run
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Wait until the background delivery has fed the first half
      changeops.itsm.servicenow_sync_info:
      register: outbox
      until: outbox.servicenow.pending == 0
      retries: 120
      delay: 1
    - name: Kill the simulator
      ansible.builtin.command: kill -9 {{ simulator_pid }}
      changed_when: false
- name: Second half, while ServiceNow is down
  hosts: second
  gather_facts: false
  tasks:
    - name: Register the host
      changeops.itsm.register_host:
        servicenow_push: now
"""


def test_killed_mid_run_the_outbox_delivers_each_entry_exactly_once_later(sqlite_project, sqlite_sor, sn_process):
    first = ["a%02d" % number for number in range(10)]
    second = ["b%02d" % number for number in range(10)]
    lines = ["[first]"] + ["%s ansible_connection=local ansible_os_family=Debian ansible_product_serial=SER-%s"
                           % (name, name) for name in first]
    lines += ["[second]"] + ["%s ansible_connection=local ansible_os_family=Debian ansible_product_serial=SER-%s"
                             % (name, name) for name in second]
    lines += ["[local]", "localhost ansible_connection=local"]
    sqlite_project.write("inventory.ini", "\n".join(lines) + "\n")
    sqlite_project.write("killed.yml", KILLED)
    simulator_process = sn_process.process
    # 5 CIs per IRE request: the first half is two full batches, which the background feeder delivers during the run
    env = sn_process.env(CHANGEOPS_SERVICENOW_BATCH_SIZE="5")
    run = sqlite_project.run("killed.yml", "-e", "simulator_pid=%d" % simulator_process.process.pid, env=env)
    assert run.returncode == 0  # ServiceNow going away fails nothing
    assert "queued for ServiceNow, not delivered yet" in run.stdout
    status = outbox_status(sqlite_sor, sn_process)
    assert status["pending"] >= 10 and "cannot connect" in status["last_error"]
    # delivered while the run went on, before the simulator was killed: the first half, all of it, only it
    delivered_before = sorted(row["name"] for row in _records_from_state(simulator_process.state_path))
    assert delivered_before == first
    simulator_process.process.wait(timeout=60)
    simulator_process.start()  # the same instance again: same port, same records
    sync = sqlite_project.run(SYNC_PLAYBOOK, env=env)
    assert "delivered" in sync.stdout
    servers = sn_process.control.records("cmdb_ci_linux_server")
    assert sorted(row["name"] for row in servers) == sorted(first + second)
    sources = sn_process.control.records("sys_object_source", "name=ChangeOps")
    assert len(sources) == 20 and len(set(row["id"] for row in sources)) == 20
    # only the second half went again: 10 CIs, 5 per IRE request (the first half was not sent twice)
    ire = [entry for entry in sn_process.requests()
           if entry["method"] == "POST" and "identifyreconcile" in entry["path"]]
    assert len(ire) == 2
    assert outbox_status(sqlite_sor, sn_process)["pending"] == 0
    before = len(sn_process.requests())
    sqlite_project.run(SYNC_PLAYBOOK, env=env)
    assert writes(sn_process.requests(before)) == []


def _plain(value):
    """ansible-inventory marks values from an inventory source as unsafe in its JSON."""
    return value.get("__ansible_unsafe", value) if isinstance(value, dict) else value


def _records_from_state(path):
    with open(path) as handle:
        state = json.load(handle)
    return list(state["records"].get("cmdb_ci_linux_server", {}).values())


END_OF_RUN = (r"ServiceNow fed (?P<total>\d+) entries during and after run \w+: (?P<during>\d+) during the run in the "
              r"background \((?P<drains>\d+) drains, waited (?P<waited_during>[\d.]+) s for rate limits\), "
              r"(?P<at_end>\d+) at its end in (?P<end_seconds>[\d.]+) s \(waited (?P<waited_at_end>[\d.]+) s for rate "
              r"limits, rate_limit_wait (?P<rate_limit_wait>\d+) s; end-of-run budget (?P<budget>\d+) s\)")


def test_a_429_storm_delays_a_run_by_no_more_than_the_budget_and_loses_nothing(sqlite_project, sqlite_sor, sn):
    names = ["s%02d" % number for number in range(30)]
    sqlite_project.write_inventory(names, group="web", host_vars=host_vars(names))
    sqlite_project.write("provision.yml", REGISTER.format(hosts="web", push="deferred"))
    sn.control.fault(kind="429", retry_after=2, times=2)  # waited for: 4 s of the 5 s budget
    sn.control.fault(kind="429", retry_after=3600)  # beyond the budget: the drain stops, the entries wait
    env = sn.env(CHANGEOPS_SERVICENOW_RATE_LIMIT_WAIT="5")
    run = sqlite_project.run("provision.yml", env=env)
    match = re.search(END_OF_RUN, run.stdout)
    assert match, run.stdout[-3000:]
    # 30 CIs are less than one IRE batch, delivered once the run's end closes it: by the background feeder if
    # it gets there first, else by the end-of-run delivery; either way 4 s of waiting, then the stop
    assert int(match.group("total")) == 0
    assert 4.0 <= float(match.group("waited_during")) + float(match.group("waited_at_end")) <= 5.0
    assert float(match.group("end_seconds")) <= float(match.group("budget"))
    status = outbox_status(sqlite_sor, sn)
    assert status["pending"] == 31 and status["retry_after"]  # 30 CIs and the run's end
    sn.control.clear_faults()
    waiting = sqlite_project.run(SYNC_PLAYBOOK, env=env, check=False)
    assert "asked to wait until" in waiting.stdout
    sqlite_project.run(SYNC_PLAYBOOK, "-e", "servicenow_sync_force=true", env=env)
    assert sorted(row["name"] for row in sn.control.records("cmdb_ci_linux_server")) == names
    assert outbox_status(sqlite_sor, sn)["pending"] == 0


WAIT_FOR_429 = """
- name: The run goes on while the background delivery waits out a 429
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Wait until ServiceNow has answered the background delivery with a 429
      changeops.itsm.servicenow_sync_info:
      register: outbox
      until: outbox.servicenow.retry_after is not none
      retries: 120
      delay: 1
"""


def test_a_429_storm_during_the_run_holds_its_end_up_by_the_budget_at_most_and_loses_nothing(
        sqlite_project, sqlite_sor, sn):
    names = ["c%02d" % number for number in range(20)]
    sqlite_project.write_inventory(names, group="web", host_vars=host_vars(names))
    sqlite_project.write("provision.yml", REGISTER.format(hosts="web", push="deferred") + WAIT_FOR_429)
    # every request answered 429 with Retry-After 20 s: within rate_limit_wait (60 s), so the background feeder
    # sleeps through it while the run goes on; the run's end (budget 3 s) must cut that sleep
    sn.control.fault(kind="429", retry_after=20)
    env = sn.env(CHANGEOPS_SERVICENOW_BATCH_SIZE="10", CHANGEOPS_SERVICENOW_RATE_LIMIT_WAIT="60",
                 CHANGEOPS_SERVICENOW_SYNC_TIMEOUT="3")
    run = sqlite_project.run("provision.yml", env=env)
    match = re.search(END_OF_RUN, run.stdout)
    assert match, run.stdout[-3000:]
    assert int(match.group("total")) == 0 and int(match.group("budget")) == 3
    assert int(match.group("drains")) >= 1  # the background feeder met the storm during the run
    # cut at the budget (a second of grace for a request in flight), not the 20 s Retry-After
    assert float(match.group("end_seconds")) <= 3 + 1.5
    assert any(entry.get("fault") == "429" for entry in sn.requests())
    status = outbox_status(sqlite_sor, sn)
    assert status["pending"] == 21 and status["retry_after"]  # 20 CIs and the run's end, the 429's time kept
    sn.control.clear_faults()
    sqlite_project.run(SYNC_PLAYBOOK, "-e", "servicenow_sync_force=true", env=env)
    servers = sn.control.records("cmdb_ci_linux_server")
    assert sorted(row["name"] for row in servers) == names  # each once
    assert outbox_status(sqlite_sor, sn)["pending"] == 0


# -- the inventory ---------------------------------------------------------------------------------------------
def test_the_inventory_reads_hosts_from_servicenow(sqlite_project, sn):
    group = sn.control.records("sys_user_group", "name=Linux Ops")[0]["sys_id"]
    for name, environment, klass in (("app01", "production", "cmdb_ci_linux_server"),
                                     ("app02", "test", "cmdb_ci_linux_server"),
                                     ("win01", "production", "cmdb_ci_win_server")):
        sn.control.insert(klass, {"name": name, "environment": environment, "ip_address": "10.1.0.%d" % len(name),
                                  "support_group": group, "operational_status": "1", "install_status": "1"})
    sqlite_project.write("servicenow.cmdb.yml", """
        plugin: changeops.itsm.cmdb
        source: servicenow
        environments: [production]
        ansible_host_from: primary_ipv4
        """)
    listed = subprocess.run([os.path.join(os.path.dirname(sqlite_project.command("x")[0]), "ansible-inventory"),
                             "-i", "servicenow.cmdb.yml", "--list"], cwd=sqlite_project.root,
                            env=sqlite_project.env(sn.env()), capture_output=True, text=True, check=True)
    inventory = json.loads(listed.stdout)
    assert "_meta" in inventory and inventory["_meta"]["hostvars"], listed.stderr
    assert sorted(inventory["_meta"]["hostvars"]) == ["app01", "win01"]
    assert sorted(inventory["support_group_Linux_Ops"]["hosts"]) == ["app01", "win01"]
    assert inventory["class_cmdb_ci_linux_server"]["hosts"] == ["app01"]
    assert sorted(inventory["environment_production"]["hosts"]) == ["app01", "win01"]
    app01 = dict((key, _plain(value)) for key, value in inventory["_meta"]["hostvars"]["app01"].items())
    assert app01["ansible_host"] == "10.1.0.5" and app01["cmdb_servicenow_class"] == "cmdb_ci_linux_server"
    sqlite_project.write("typo.cmdb.yml", """
        plugin: changeops.itsm.cmdb
        source: servicenow
        servicenow_query: enviroment=production
        """)
    typo = subprocess.run([os.path.join(os.path.dirname(sqlite_project.command("x")[0]), "ansible-inventory"),
                           "-i", "typo.cmdb.yml", "--list"], cwd=sqlite_project.root,
                          env=sqlite_project.env(sn.env()), capture_output=True, text=True, check=False)
    assert "'enviroment' is not a field of cmdb_ci_server; did you mean 'environment'" in typo.stderr + typo.stdout
