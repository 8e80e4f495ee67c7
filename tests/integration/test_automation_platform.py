# -*- coding: utf-8 -*-
"""A recorded, gated playbook run the way AWX / Ansible Automation Platform and ansible-navigator run it.

AWX runs a job through ``ansible-runner run`` on a private data directory it lays out: the job's
environment in ``env/envvars`` (AWX_HOST, JOB_ID, ... and what a credential type injects, here the
recorder's ``ANSIBLE_CALLBACKS_ENABLED``, the backend and a secret), the extra vars in
``env/extravars`` (the job's own and AWX's ``awx_*``/``tower_*`` metadata), the inventory in
``inventory/`` and the project checkout in ``project/``. ansible-navigator runs the same playbook with
``--ee false --mode stdout``. Both are the real tools (requirements-dev.txt), on both backends; each run
must leave a complete change event: the run, every result, the gate's authorisation, the AWX origin, and
no secret anywhere in the record.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import uuid

import pytest
import yaml

from support.change_requests import add_ci, approved_change, iso
from support.deprecations import DEPRECATION_ENV, assert_no_deprecations_of_ours
from support.project import ensure_collection_tree

pytestmark = pytest.mark.integration

VENV_BIN = os.path.dirname(sys.executable)
HOSTS = ("web01", "web02")

POLICY = """
templates:
  - name: patching
    description: Monthly OS patching of web servers
    conditions:
      - "contains(tags, 'patching')"
"""

PLAYBOOK = """
- name: Patch the web servers
  hosts: web
  gather_facts: false
  pre_tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
        change_request: "{{ change_request }}"
      tags: [always]
  tasks:
    - name: Write the marker file (the change this play makes)
      ansible.builtin.copy:
        content: "{{ inventory_hostname }} patched\\n"
        dest: "{{ out_dir }}/{{ inventory_hostname }}.txt"
        mode: "0644"
    - name: Use the database password the job was given
      ansible.builtin.command: echo "connecting with {{ db_password }}"
      changed_when: false
"""


def awx_metadata(job_id):
    """The job metadata AWX passes as extra vars (awx_meta_vars), under both of its spellings."""
    meta = {}
    for prefix in ("awx_", "tower_"):
        meta.update({
            prefix + "job_id": job_id, prefix + "job_launch_type": "manual", prefix + "job_template_id": 12,
            prefix + "job_template_name": "Patch web servers", prefix + "user_id": 3,
            prefix + "user_name": "alice", prefix + "user_email": "alice@example.org",
            prefix + "inventory_id": 2, prefix + "inventory_name": "Web production",
            prefix + "project_revision": "0123456789abcdef0123456789abcdef01234567",
        })
    return meta


class Job(object):
    """One job's inputs, prepared the way AWX prepares them, and the secrets planted in them."""

    def __init__(self, tmp_path, sor, backend_env):
        self.root = tmp_path
        self.home = tmp_path / "home"
        self.out = tmp_path / "out"
        self.home.mkdir()
        self.out.mkdir()
        self.job_id = 4711
        self.secrets = {"db_password": "db-%s" % uuid.uuid4().hex[:12],
                        "credential": "cred-%s" % uuid.uuid4().hex[:12]}
        for host in HOSTS:
            add_ci(sor, host, environment="production")
        self.change_number = approved_change(sor, list(HOSTS), iso(hours=-1), iso(hours=2))
        self.extra_vars = dict(awx_metadata(self.job_id), change_request=self.change_number, out_dir=str(self.out),
                               db_password=self.secrets["db_password"])
        self.environment = dict(
            backend_env,
            ANSIBLE_CALLBACKS_ENABLED="changeops.itsm.change_recorder",
            ANSIBLE_COLLECTIONS_PATH=ensure_collection_tree(),
            ANSIBLE_NOCOLOR="1",
            AWX_HOST="https://awx.example.org",
            JOB_ID=str(self.job_id),
            INVENTORY_ID="2",
            # what a custom credential type could inject next to the recorder's settings
            CONTROLLER_PASSWORD=self.secrets["credential"],
            **DEPRECATION_ENV,
        )
        self.inventory = "[web]\n" + "".join(
            "%s ansible_connection=local ansible_python_interpreter=%s\n" % (host, sys.executable) for host in HOSTS)

    def process_env(self):
        """The tool's own environment: this venv's tools, HOME in the test; nothing of the developer's."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CHANGEOPS_"))}
        env.update(HOME=str(self.home), PATH=VENV_BIN + os.pathsep + env.get("PATH", ""), PYTHONUNBUFFERED="1")
        return env

    def write_project(self, directory):
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "patch.yml"), "w") as handle:
            handle.write(PLAYBOOK.lstrip())
        with open(os.path.join(directory, "policy.yml"), "w") as handle:
            handle.write(POLICY.lstrip())


def assert_complete_change_event(job, sor, backend_env):
    [event] = sor.find_change_events()
    assert event["status"] == "successful", event
    assert (event["authorisation"], event["authorisation_ref"]) == ("normal", job.change_number), event
    assert os.path.basename(event["playbook"]) == "patch.yml"
    full = sor.get_change_event(event["run_id"])
    assert full["origin"] == {
        "platform": "awx", "url": "https://awx.example.org", "job_id": job.job_id, "launch_type": "manual",
        "job_template_id": 12, "job_template_name": "Patch web servers", "launched_by_id": 3,
        "launched_by": "alice", "inventory_id": 2, "inventory_name": "Web production",
        "project_revision": "0123456789abcdef0123456789abcdef01234567",
    }, full.get("origin")
    assert "awx_job_id" in full["extra_var_names"] and "db_password" in full["extra_var_names"]

    results = {(r["task"]["name"], r["host"]): r for r in sor.get_task_results(event["run_id"])}
    for host in HOSTS:
        assert results[("Write the marker file (the change this play makes)", host)]["status"] == "changed"
        echoed = results[("Use the database password the job was given", host)]
        assert echoed["status"] == "ok" and echoed["result"]["stdout"] == "connecting with ********", echoed
    assert sorted(os.listdir(str(job.out))) == ["web01.txt", "web02.txt"]
    gates = [entry.data for entry in sor.iter_entries(kinds=["run.gate"])]
    assert [(g["allowed"], g["type"], g["reference"], sorted(g["hosts"])) for g in gates] == [
        (True, "normal", job.change_number, list(HOSTS))]

    # nothing the job was given as a secret reaches the record; what AWX says about the job does
    everything = "\n".join(entry.canonical() for entry in sor.iter_entries())
    assert "Patch web servers" in everything and "alice" in everything
    for kind, value in job.secrets.items():
        assert value not in everything, "%s secret found in the ledger" % kind
    assert "alice@example.org" not in everything
    if backend_env["CHANGEOPS_BACKEND"] == "sqlite":
        raw = b""
        for path in glob.glob(backend_env["CHANGEOPS_SQLITE_PATH"] + "*"):  # the database, its WAL and shm
            with open(path, "rb") as handle:
                raw += handle.read()
        assert b"Patch web servers" in raw, "the byte search would not find a recorded value"
        for kind, value in job.secrets.items():
            assert value.encode() not in raw, "%s secret found in the ledger file's bytes" % kind
    assert sor.verify().valid


def test_ansible_runner_runs_a_recorded_gated_job_as_awx_lays_it_out(tmp_path, sor, backend_env):
    job = Job(tmp_path, sor, backend_env)
    data = tmp_path / "private_data_dir"
    (data / "env").mkdir(parents=True)
    (data / "inventory").mkdir()
    job.write_project(str(data / "project"))
    (data / "env" / "envvars").write_text(yaml.safe_dump(job.environment))
    (data / "env" / "extravars").write_text(yaml.safe_dump(job.extra_vars))
    (data / "inventory" / "hosts").write_text(job.inventory)

    completed = subprocess.run(
        [os.path.join(VENV_BIN, "ansible-runner"), "run", str(data), "-p", "patch.yml", "--ident", "job-4711"],
        env=job.process_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout[-20000:]
    artifacts = data / "artifacts" / "job-4711"
    assert (artifacts / "status").read_text() == "successful" and (artifacts / "rc").read_text() == "0"
    # the recorder ran beside ansible-runner's own event callback (AWX's job events)
    events = [json.loads(path.read_text()) for path in (artifacts / "job_events").glob("*.json")]
    assert any(event.get("event") == "playbook_on_stats" for event in events)
    assert_no_deprecations_of_ours(completed.stdout, "ansible-runner run")
    assert_complete_change_event(job, sor, job.environment)


def test_ansible_navigator_runs_a_recorded_gated_playbook_without_an_ee(tmp_path, sor, backend_env):
    job = Job(tmp_path, sor, backend_env)
    project = tmp_path / "project"
    job.write_project(str(project))
    (project / "inventory.ini").write_text(job.inventory)
    (project / "extravars.yml").write_text(yaml.safe_dump(job.extra_vars))
    env = job.process_env()
    env.update(job.environment)

    completed = subprocess.run(
        [os.path.join(VENV_BIN, "ansible-navigator"), "run", "patch.yml", "--ee", "false", "--mode", "stdout",
         "-i", "inventory.ini", "--pae", "false", "--lf", str(tmp_path / "navigator.log"),
         "-e", "@extravars.yml"],
        cwd=str(project), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout[-20000:]
    assert "PLAY RECAP" in completed.stdout
    assert_no_deprecations_of_ours(completed.stdout, "ansible-navigator run")
    assert_complete_change_event(job, sor, job.environment)
