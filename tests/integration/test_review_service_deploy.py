# -*- coding: utf-8 -*-
"""The deployment playbook of the review service (role changeops.itsm.review_service).

What can be tested without a booted target: the playbook's syntax, and a --check --diff run of the role
against this machine (local connection) with PostgreSQL and nginx management off, which renders every file
the role writes (environment file, systemd unit, nginx site) and shows them in the diff, and changes
nothing. A real deployment onto a booted Debian root (systemd-nspawn) is for the lead's run.
"""

from __future__ import annotations

import json

import pytest

from support.project import Project

pytestmark = [pytest.mark.integration]


def test_deploy_playbook_syntax_and_check_mode(tmp_path, sqlite_env):
    project = Project(tmp_path / "project", sqlite_env, callbacks=())
    project.write_inventory(["target"])
    home = tmp_path / "opt"
    tarball = tmp_path / "changeops-itsm-0.1.0.tar.gz"
    tarball.write_bytes(b"not read in check mode")
    extra = ["-e", json.dumps({
        "review_service_hosts": "all_hosts", "review_service_collection_tarball": str(tarball),
        "review_service_home": str(home), "review_service_manage_postgresql": False,
        "review_service_manage_nginx": False, "review_service_packages": [],
        "review_service_admin_password": "first-admin-password", "review_service_dsn": "postgresql:///x"})]
    completed = project.run("changeops.itsm.review_service", "--syntax-check", *extra)
    assert completed.returncode == 0
    completed = project.run("changeops.itsm.review_service", "--check", "--diff", *extra)
    out = completed.stdout
    assert "failed=0" in out, out[-3000:]
    assert "ExecStart=%s/venv/bin/python %s/collections/ansible_collections/changeops/itsm/review_service serve" % (
        home, home) in out, out[-5000:]
    assert "ProtectSystem=strict" in out
    assert not home.exists(), "check mode changed nothing"
    # the secrets file is no_log: its content (the admin password) is not shown
    assert "first-admin-password" not in out
