# -*- coding: utf-8 -*-
"""Fixtures and helpers for tests that talk to the ServiceNow simulator (support/servicenow_sim).

tests/conftest.py loads them (``pytest_plugins``), so tests just name ``simulator``, ``sn`` or ``sn_process``.
The simulator is a simulator of ServiceNow's documented API on 127.0.0.1, not a real instance.
"""

from __future__ import annotations

import datetime
import os
import sys

import pytest

from support.servicenow_sim import Control, Simulator, SimulatorProcess

from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import resolve_settings

#: the simulator's integration account (fixtures.USERS)
USER = "changeops.integration"
PASSWORD = "integration-simulator-password"


class SN(object):
    """A started simulator with its control API and ready-made settings for the integration account."""

    def __init__(self, url, control, simulator=None):
        self.url = url
        self.control = control
        self.simulator = simulator

    def settings(self, **overrides):
        values = {"host": self.url, "username": USER, "password": PASSWORD, "retries": 2, "backoff": 0.05,
                  "rate_limit_wait": 5.0, "rate_limit_cooldown": 30.0, "timeout": 10.0}
        values.update(overrides)
        return resolve_settings(values, environ={}, ini={})

    def env(self, **overrides):
        """Environment for ansible-playbook runs that use this instance (the outbox and the gate)."""
        env = {"SN_HOST": self.url, "SN_USERNAME": USER, "SN_PASSWORD": PASSWORD, "CHANGEOPS_SERVICENOW": "true",
               "CHANGEOPS_SERVICENOW_RETRIES": "2", "CHANGEOPS_SERVICENOW_BACKOFF": "0.05",
               "CHANGEOPS_SERVICENOW_RATE_LIMIT_WAIT": "5", "NO_PROXY": "127.0.0.1,localhost"}
        env.update(overrides)
        return env

    def requests(self, since=0):
        return self.control.requests()[since:]

    def writes(self, since=0):
        return [entry for entry in self.requests(since) if entry["method"] != "GET"]

    def ci(self, name):
        rows = self.control.records("cmdb_ci", "name=%s" % name)
        return rows[0] if len(rows) == 1 else rows or None

    def chg(self, number):
        rows = self.control.records("change_request", "number=%s" % number)
        return rows[0] if rows else None

    def user(self, user_name):
        """The simulator's sys_user record of ``user_name`` (made when it has none)."""
        rows = self.control.records("sys_user", "user_name=%s" % user_name)
        return rows[0] if rows else self.control.insert("sys_user", {"user_name": user_name, "name": user_name})

    def new_change(self, state="scheduled", approval="approved", kind="normal", start=-1, end=2, cis=(),
                   approved_by=("cab.manager",), requested_by="changeops.integration", **fields):
        """A CHG made directly in the simulator (as the CAB would leave it), with affected CIs by name.

        An approved CHG carries an approved approval record of each of ``approved_by`` (ServiceNow's
        sysapproval_approver), and ``requested_by``/``opened_by`` that user (None: nobody)."""
        states = {"new": "-5", "assess": "-4", "authorise": "-3", "scheduled": "-2", "implement": "-1", "review": "0",
                  "closed": "3", "cancelled": "4"}
        now = datetime.datetime.now(datetime.timezone.utc)
        values = {"short_description": "test change", "type": kind, "state": states[state], "approval": approval,
                  "start_date": (now + datetime.timedelta(hours=start)).strftime("%Y-%m-%d %H:%M:%S"),
                  "end_date": (now + datetime.timedelta(hours=end)).strftime("%Y-%m-%d %H:%M:%S")}
        if requested_by:
            values["requested_by"] = values["opened_by"] = self.user(requested_by)["sys_id"]
        values.update(fields)
        record = self.control.insert("change_request", values)
        if approval == "approved":
            for user_name in approved_by or ():
                self.approve(record, user_name)
        for name in cis:
            ci = self.ci(name)
            if ci is None:
                ci = self.control.insert("cmdb_ci_linux_server", {"name": name})
            self.control.insert("task_ci", {"task": record["sys_id"], "ci_item": ci["sys_id"]})
        return record

    def approve(self, change, user_name, state="approved"):
        """An approval record of ``user_name`` for ``change`` (as ServiceNow's approval engine leaves it)."""
        return self.control.insert("sysapproval_approver", {
            "approver": self.user(user_name)["sys_id"], "sysapproval": change["sys_id"],
            "document_id": change["sys_id"], "source_table": "change_request", "state": state})


@pytest.fixture
def simulator():
    sim = Simulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def sn(simulator):
    return SN(simulator.url, Control(simulator.url), simulator)


@pytest.fixture
def sn_process(tmp_path):
    """The simulator in its own process (a test may kill it), records kept in a state file across restarts."""
    process = SimulatorProcess(tmp_path / "servicenow-state.json").start()
    handle = SN(process.url, Control(process.url))
    handle.process = process  # a SimulatorProcess: kill() it, start() it again on the same port
    yield handle
    process.stop()


def python_path():
    return os.path.dirname(sys.executable)
