# -*- coding: utf-8 -*-
"""What records an unauthorised run in ServiceNow is the change policy's ``servicenow.unauthorised_runs``; the
ServiceNow setting of that name is its deprecated predecessor. Real ansible-playbook runs, the recorder on, the
loopback ServiceNow simulator (a simulator of the documented API, not a real instance)."""

from __future__ import annotations

import pytest

from test_servicenow import GATED, SYNC_PLAYBOOK, gated_project

from ansible_collections.changeops.itsm.plugins.module_utils.change_policy import parse_policy_text
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ValidationError

pytestmark = pytest.mark.integration

UNGATED = GATED.split("  pre_tasks:", maxsplit=1)[0] + "  tasks:" + GATED.split("  tasks:", maxsplit=1)[1]
DEPRECATED = ("is deprecated and will be removed in 2.0.0: set servicenow.unauthorised_runs: incident in the change "
              "policy")
IGNORED = "unauthorised_runs=incident (CHANGEOPS_SERVICENOW_UNAUTHORISED_RUNS, [changeops_servicenow]) is " \
          "deprecated and ignored"


@pytest.mark.parametrize("policy_says,setting,table,warning", [
    ("incident", None, "incident", None),
    ("change", None, "change_request", None),
    (None, None, "change_request", None),               # neither says: a CHG, as before
    (None, "incident", "incident", DEPRECATED),          # the old setting still works, with a deprecation warning
    ("change", "incident", "change_request", IGNORED),  # the policy wins over the old setting
])
def test_the_policy_in_force_says_what_records_an_unauthorised_run(sqlite_project, sqlite_sor, sn, policy_says,
                                                                   setting, table, warning):
    gated_project(sqlite_project, sqlite_sor, sn)
    policy = "templates: []\n"
    if policy_says:
        policy += "servicenow:\n  unauthorised_runs: %s\n" % policy_says
    sqlite_project.write("controller-policy.yml", policy)
    sqlite_project.write("ungated.yml", UNGATED)
    env = sn.env(CHANGEOPS_GATE_POLICY=sqlite_project.path("controller-policy.yml"))
    if setting:
        env["CHANGEOPS_SERVICENOW_UNAUTHORISED_RUNS"] = setting
    run = sqlite_project.run("ungated.yml", env=env)
    [event] = sqlite_sor.find_change_events(limit=1)
    assert event["authorisation"] == "unauthorised"
    correlation = "correlation_id=changeops-unauthorised-%s" % event["run_id"]
    [record] = sn.control.records(table, correlation)
    other = "incident" if table == "change_request" else "change_request"
    assert sn.control.records(other, correlation) == []
    if table == "change_request":
        assert (record["unauthorized"], record["state"]) == ("true", "0")
    if warning:
        assert warning in " ".join(run.stdout.split()), run.stdout[-3000:]
    else:
        assert "unauthorised_runs" not in run.stdout


@pytest.mark.parametrize("value", ["ticket", "", 3])
def test_a_wrong_value_is_refused_naming_the_file_field_and_value(value):
    text = "servicenow:\n  unauthorised_runs: %s\n" % (repr(value) if isinstance(value, str) else value)
    with pytest.raises(ValidationError) as caught:
        parse_policy_text(text.encode("utf-8"), "/etc/changeops/policy.yml")
    message = caught.value.message
    assert message.startswith("/etc/changeops/policy.yml line 2: servicenow.unauthorised_runs: ")
    assert "(got %r)" % value in message


def test_an_unreadable_policy_sets_the_unauthorised_run_aside_until_it_is_fixed(sqlite_project, sqlite_sor, sn):
    gated_project(sqlite_project, sqlite_sor, sn)
    sqlite_project.write("controller-policy.yml", "servicenow:\n  unauthorised_runs: ticket\n")
    sqlite_project.write("ungated.yml", UNGATED)
    env = sn.env(CHANGEOPS_GATE_POLICY=sqlite_project.path("controller-policy.yml"))
    run = sqlite_project.run("ungated.yml", env=env)
    assert run.returncode == 0  # never the playbook's problem
    [event] = sqlite_sor.find_change_events(limit=1)
    correlation = "correlation_id=changeops-unauthorised-%s" % event["run_id"]
    assert sn.control.records("change_request", correlation) == sn.control.records("incident", correlation) == []
    assert "servicenow.unauthorised_runs: must be one of change, incident (got 'ticket')" in " ".join(
        run.stdout.split())
    sqlite_project.write("controller-policy.yml", "servicenow:\n  unauthorised_runs: incident\n")
    sqlite_project.run(SYNC_PLAYBOOK, "-e", "servicenow_sync_retry_failed=true", env=env)
    assert len(sn.control.records("incident", correlation)) == 1
