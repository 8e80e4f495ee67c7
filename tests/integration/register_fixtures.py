# -*- coding: utf-8 -*-
"""Ledger entries shaped exactly like the recorder's, for register tests that need many or odd runs.

Real-run tests fill the ledger with ``ansible-playbook``; these generators add
what real runs on one machine cannot produce cheaply: ten thousand changes
(bench/register_load), every authorisation type at once, CIs and evidence.
Every entry still goes through ``SystemOfRecord.append``, so projections,
hashing and authorisation are the real ones.
"""

from __future__ import annotations

import datetime
import random
import uuid

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from support.change_requests import approved_change, change_request, iso

ENVIRONMENTS = ("production", "staging", "development")
PLAYBOOKS = ("site.yml", "patch.yml", "deploy_web.yml", "rotate_certs.yml", "db_maintenance.yml", "hardening.yml")
USERS = ("alice", "bob", "carol", "deploy-bot")


def _time(moment):
    return format_time(moment)


def synthetic_run(number, started, rng, hosts, kind, environment=None, diff=True):
    """Entries of one run. ``kind``: standard, normal, emergency, unauthorised, dry-run, no-change, failed."""
    run_id = uuid.UUID(int=rng.getrandbits(128)).hex
    play_id = "play-%d" % number
    dry = kind == "dry-run"
    clock = [started]

    def tick(seconds=1.0):
        clock[0] = clock[0] + datetime.timedelta(seconds=seconds)
        return _time(clock[0])

    playbook = "/srv/ansible/%s" % PLAYBOOKS[number % len(PLAYBOOKS)]
    entries = [Entry("run.started", run_id, {
        "run_id": run_id, "started_at": _time(started), "user": USERS[number % len(USERS)], "controller": "ctl01",
        "pid": 1000 + number, "playbooks": [playbook], "git": {"commit": "%040x" % rng.getrandbits(160), "dirty": False},
        "ansible_version": "2.19.4", "check_mode": dry, "diff_mode": diff, "limit": None, "tags": [], "skip_tags": [],
        "extra_var_names": ["release"], "inventory": ["/srv/ansible/inventory"], "forks": 10}, at=_time(started)),
        Entry("run.play", run_id, {"run_id": run_id, "play_id": play_id, "name": "Configure %s" % environment,
                                   "pattern": "web", "hosts": hosts, "roles": ["web"], "tags": [],
                                   "started_at": tick()}, at=_time(clock[0]))]
    if kind in ("standard", "normal", "emergency", "failed"):
        gate_type = "standard" if kind in ("standard", "failed") else kind
        reference = "nginx-config-v2" if gate_type == "standard" else "CHG%07d" % (1000 + number)
        entries.append(Entry("run.gate", run_id, {
            "run_id": run_id, "play_id": play_id, "decision_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "allowed": True, "type": gate_type, "reference": reference,
            "reasons": ["%s change %s covers hosts %s" % (gate_type, reference, ", ".join(hosts)),
                        "inside the maintenance window"], "context": {"environment": environment}}, at=tick()))
    stats = {}
    for host in hosts:
        counts = {"ok": 0, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 0, "rescued": 0, "ignored": 0}
        tasks = [("Install nginx", "ansible.builtin.package", "ok"), ("Template nginx.conf", "ansible.builtin.template",
                 "ok" if kind in ("no-change", "dry-run") else "changed"), ("Restart nginx", "ansible.builtin.service", "ok")]
        if kind == "failed" and host == hosts[-1]:
            tasks.append(("Check health", "ansible.builtin.uri", "failed"))
        for name, action, status in tasks:
            start = tick(0.5)
            result = {"msg": "Status code was 503 and not [200]: HTTP Error 503" if status == "failed" else "",
                      "status": 503} if status == "failed" else {"dest": "/etc/nginx/nginx.conf"}
            record = {"run_id": run_id, "play_id": play_id,
                      "task": {"uuid": "task-%s" % name.replace(" ", "-"), "name": name, "action": action,
                               "path": "roles/web/tasks/main.yml:%d" % (len(name)), "tags": [], "role": "web",
                               "handler": False},
                      "host": host, "item": None, "status": status, "changed": status == "changed",
                      "started_at": start, "ended_at": tick(0.2), "duration_ms": 200, "result": result}
            if status == "changed" and diff:
                record["diff"] = [{"before": "worker_processes 2;\nkeepalive_timeout 65;\n",
                                   "after": "worker_processes 4;\nkeepalive_timeout 65;\n",
                                   "before_header": "/etc/nginx/nginx.conf", "after_header": "/etc/nginx/nginx.conf"}]
            entries.append(Entry("run.result", run_id, record, at=_time(clock[0])))
            counts[{"ok": "ok", "changed": "changed", "failed": "failures"}[status]] += 1
            if status == "changed":
                counts["ok"] += 1
        stats[host] = counts
    entries.append(Entry("run.finished", run_id, {
        "run_id": run_id, "ended_at": tick(), "outcome": "failed" if kind == "failed" else "successful",
        "stats": stats}, at=_time(clock[0])))
    return run_id, entries


KIND_CYCLE = ("standard", "standard", "normal", "no-change", "dry-run", "standard", "emergency", "normal",
              "unauthorised", "failed")


def fill_synthetic_ledger(sor, count, seed=7, start=None, batch=50, hosts_per_run=3, host_pool=40, with_cis=True):
    """Append ``count`` runs 37 minutes apart, newest last; returns their run ids.

    With ``with_cis`` every host of the pool is first registered as a CI (its
    environment by position), which is where a run's environment comes from.
    """
    rng = random.Random(seed)
    start = start or datetime.datetime(2026, 1, 5, 8, 0, tzinfo=datetime.timezone.utc)
    pool = ["web%02d.example.net" % index for index in range(1, host_pool + 1)]
    if with_cis:
        for position, environment in enumerate(ENVIRONMENTS):
            register_cis(sor, pool[position::len(ENVIRONMENTS)], environment)
    run_ids, pending = [], []
    for number in range(count):
        started = start + datetime.timedelta(minutes=37 * number)
        hosts = sorted(rng.sample(pool, hosts_per_run))
        environment = ENVIRONMENTS[number % len(ENVIRONMENTS)]
        run_id, entries = synthetic_run(number, started, rng, hosts, KIND_CYCLE[number % len(KIND_CYCLE)], environment)
        run_ids.append(run_id)
        pending.extend(entries)
        if len(pending) >= batch * 12:
            sor.append(pending)
            pending = []
    if pending:
        sor.append(pending)
    return run_ids


def register_cis(sor, hosts, environment="production"):
    """Create a CI per host name (as the CMDB's register_host would), so runs link to CIs."""
    entries = []
    for host in hosts:
        ci_id = uuid.uuid5(uuid.NAMESPACE_DNS, host).hex
        entries.append(Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {
            "name": host, "class": "cmdb_ci_linux_server", "status": "operational", "environment": environment,
            "os": "Debian 12"}, "identities": {"fqdn": host}, "run_id": None}))
    sor.append(entries)
    return {host: uuid.uuid5(uuid.NAMESPACE_DNS, host).hex for host in hosts}


# --------------------------------------------------------------------------
# real runs: what the register tests and the browser tests record
# --------------------------------------------------------------------------
MOTD_PLAYBOOK = """
- name: Update the message of the day
  hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Write the message of the day
      ansible.builtin.copy:
        content: "{{ motd_text }}\\n"
        dest: "{{ workdir }}/{{ inventory_hostname }}.motd"
        mode: "0644"
"""

EMERGENCY_PLAYBOOK = """
- name: Emergency fix of the web tier
  hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        emergency: true
        justification: "INC0012345: web tier refuses connections"

    - name: Raise the connection limit
      ansible.builtin.copy:
        content: "max_connections {{ limit }}\\n"
        dest: "{{ workdir }}/{{ inventory_hostname }}.limits"
        mode: "0644"
"""

FAILING_PLAYBOOK = """
- name: Deploy the application
  hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Copy the release marker
      ansible.builtin.copy:
        content: "release 42\\n"
        dest: "{{ workdir }}/{{ inventory_hostname }}.release"
        mode: "0644"

    - name: Health check that fails on web02
      ansible.builtin.command: /bin/false
      when: inventory_hostname == 'web02'
      changed_when: false
"""


CMDB_PLAYBOOK = """
- name: Record the web servers in the CMDB
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Register each web server as a configuration item
      changeops.itsm.configuration_item:
        name: "{{ item }}"
        ci_class: cmdb_ci_linux_server
        attributes:
          environment: production
      loop: "{{ groups['all_hosts'] }}"
"""

#: a run that only looks: no host changed, nothing recorded but the run itself
NOOP_PLAYBOOK = """
- name: Look at the web servers
  hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Read the message of the day
      ansible.builtin.stat:
        path: "{{ workdir }}/{{ inventory_hostname }}.motd"
"""

#: the standard change template the patch run is authorised by
PATCHING_POLICY = """
templates:
  - name: monthly-patching
    description: Monthly OS patching of the web servers
    conditions:
      - "contains(tags, 'patching')"
    max_hosts: 20
"""

PATCH_PLAYBOOK = """
- name: Monthly patching of the web tier
  hosts: all_hosts
  gather_facts: false
  pre_tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
      tags: [always]
  tasks:
    - name: Record the patch level
      ansible.builtin.copy:
        content: "patch level 2026-01\\n"
        dest: "{{ workdir }}/{{ inventory_hostname }}.patch"
        mode: "0644"
      tags: [patching]

    - name: Service check that fails on web01
      ansible.builtin.assert:
        that: inventory_hostname != 'web01'
        fail_msg: "nginx on {{ inventory_hostname }} did not come back after patching"
      tags: [patching]
"""

RELEASE_PLAYBOOK = """
- name: Release 2.4 of the web tier
  hosts: all_hosts
  gather_facts: false
  pre_tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
        change_request: "{{ change_number }}"
  tasks:
    - name: Write the release version
      ansible.builtin.copy:
        content: "2.4.0\\n"
        dest: "{{ workdir }}/{{ inventory_hostname }}.version"
        mode: "0644"

    - name: Write the release's feature flags
      ansible.builtin.copy:
        content: "{{ item }}=on\\n"
        dest: "{{ workdir }}/{{ inventory_hostname }}.{{ item }}"
        mode: "0644"
      loop: [search, checkout, wishlist]
"""

#: a release nobody raised a change request for: no template covers it, so the gate denies it
DENIED_PLAYBOOK = """
- name: Unplanned release of the web tier
  hosts: all_hosts
  gather_facts: false
  pre_tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
  tasks:
    - name: Write the release version
      ansible.builtin.copy:
        content: "2.5.0\\n"
        dest: "{{ workdir }}/{{ inventory_hostname }}.version"
        mode: "0644"
"""

#: record_real_runs' playbooks in the order they run; the name (the file's
#: basename, ':check' for a dry run) is how tests refer to each run
REAL_RUNS = ("cmdb.yml", "noop.yml", "motd.yml", "motd.yml:check", "emergency.yml", "patch.yml", "release.yml",
             "denied.yml", "deploy.yml")
#: who asked for release.yml's change request (who raised it is the test's actor)
RELEASE_REQUESTED_BY = "Dana Requester"


def _open(project):
    env = project.backend_env
    return open_system_of_record({"backend": env["CHANGEOPS_BACKEND"], "sqlite_path": env.get("CHANGEOPS_SQLITE_PATH"),
                                  "postgresql_dsn": env.get("CHANGEOPS_POSTGRESQL_DSN"), "busy_timeout": 60})


def record_real_runs(project, workdir):
    """Nine real ansible-playbook runs, one of each kind a reviewer meets, oldest first:

    ``cmdb.yml`` CMDB registration (changes the record, no managed host), ``noop.yml``
    a run that changes nothing, ``motd.yml``
    unauthorised change, ``motd.yml:check`` dry run, ``emergency.yml`` emergency
    change, ``patch.yml`` standard change that fails on web01, ``release.yml``
    normal change under an approved change request (one task and a loop of three
    items per host: four changes each), ``denied.yml`` an attempt the gate denied
    (no change request, no template), ``deploy.yml`` unauthorised change that fails
    on web02. The order lets a wrong awaiting-review order show: newest first alone
    would put the authorised changes before the emergency one.
    Returns the change request number of ``release.yml``.
    """
    project.write_inventory(["web01", "web02"])
    project.write("policy.yml", PATCHING_POLICY)
    project.write_playbook("cmdb.yml", CMDB_PLAYBOOK)
    project.write_playbook("noop.yml", NOOP_PLAYBOOK)
    project.write_playbook("motd.yml", MOTD_PLAYBOOK)
    project.write_playbook("emergency.yml", EMERGENCY_PLAYBOOK)
    project.write_playbook("patch.yml", PATCH_PLAYBOOK)
    project.write_playbook("release.yml", RELEASE_PLAYBOOK)
    project.write_playbook("deploy.yml", FAILING_PLAYBOOK)
    project.write_playbook("denied.yml", DENIED_PLAYBOOK)
    common = ["-e", "workdir=%s" % workdir]
    project.run("cmdb.yml")
    project.run("noop.yml", *common)
    project.run("motd.yml", "--diff", "-e", "motd_text=Welcome-release-7", *common)
    project.run("motd.yml", "--check", "--diff", "-e", "motd_text=Planned-release-8", *common)
    project.run("emergency.yml", "--diff", "-e", "limit=4096", *common)
    project.run("patch.yml", "--diff", *common, check=False)
    with _open(project) as sor:
        number = approved_change(sor, ["web01", "web02"], iso(hours=-1), iso(hours=3))
        change_request(sor, number=number, requested_by=RELEASE_REQUESTED_BY)
    project.run("release.yml", "--diff", "-e", "change_number=%s" % number, *common)
    project.run("denied.yml", *common, check=False)
    project.run("deploy.yml", *common, check=False)
    return number
