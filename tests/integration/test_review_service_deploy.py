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


#: adversarial values: each would end the statement or change its meaning if put into SQL unquoted
HOSTILE_PASSWORD = "it's a \\ :'pw' \"pw\"; DROP ROLE postgres; --"
HOSTILE_USER = "chan\"ge'ops"
HOSTILE_DATABASE = "change'ops\"; DROP DATABASE postgres; --"


def test_role_creates_the_postgresql_role_and_database_safely(tmp_path, sqlite_env, request):
    """The role's own PostgreSQL tasks (taken from tasks/main.yml, run by ansible-playbook as the role runs them)
    against the real test server, with a hostile password, role name and database name; the password never
    reaches a command line. (The whole role also installs packages, a virtualenv and a systemd unit: that
    deployment is for a booted target, not this test.)"""
    import os

    import psycopg
    import yaml

    from support import postgresql_server

    server = postgresql_server.session_server(request)
    if not isinstance(server, postgresql_server.LocalServer) or os.geteuid() != 0:
        pytest.skip("needs the tests' own PostgreSQL server and root (the role runs psql as postgres via runuser)")
    role = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "review_service", "tasks", "main.yml")
    with open(role) as handle:
        tasks = [task for task in yaml.safe_load(handle) if "ansible.builtin.command" in task
                 and "review_service_manage_postgresql" in str(task.get("when"))]
    assert len(tasks) == 4, [task["name"] for task in tasks]  # look for the role, create it, the same for the database
    for task in tasks:  # the password is never on a command line
        assert "password" not in json.dumps(task["ansible.builtin.command"].get("argv", [])), task["name"]
    project = Project(tmp_path / "project", sqlite_env, callbacks=())
    project.write_inventory(["target"])
    env = {"PGHOST": server.socket_dir, "PGPORT": str(server.port),
           "PATH": "%s:%s" % (server.bin_dir, os.environ["PATH"])}
    play = [{"hosts": "all_hosts", "gather_facts": False, "environment": env, "tasks": tasks, "vars": {
        "review_service_manage_postgresql": True, "review_service_postgresql_user": HOSTILE_USER,
        "review_service_postgresql_password": HOSTILE_PASSWORD,
        "review_service_postgresql_database": HOSTILE_DATABASE}}]
    project.write_playbook("pg.yml", yaml.safe_dump(play))
    try:
        completed = project.run("pg.yml")
        assert "changed=2" in completed.stdout and "failed=0" in completed.stdout, completed.stdout[-3000:]
        assert HOSTILE_PASSWORD not in completed.stdout, "the password task is no_log"
        # the role exists with exactly that password, owns the database of exactly that name
        with psycopg.connect(host="127.0.0.1", port=server.port, user=HOSTILE_USER, password=HOSTILE_PASSWORD,
                             dbname=HOSTILE_DATABASE) as conn:
            owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
                                 ).fetchone()[0]
        assert owner == HOSTILE_USER
        # run again: both found, nothing created (idempotent), and nothing was dropped on the way
        completed = project.run("pg.yml")
        assert "changed=0" in completed.stdout, completed.stdout[-3000:]
        with psycopg.connect(server.admin_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'postgres'").fetchone()[0] == 1
    finally:
        with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s"' % HOSTILE_DATABASE.replace('"', '""'))
            conn.execute('DROP ROLE IF EXISTS "%s"' % HOSTILE_USER.replace('"', '""'))
