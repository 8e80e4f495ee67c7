# -*- coding: utf-8 -*-
"""change_request_info's collisions: what a request's planned window meets before the CAB does (every backend)."""

from __future__ import annotations

import uuid

from support.change_requests import add_ci, approved_change, change_request

from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import (
    CHANGE_REQUEST_INFO_SPEC,
    query_change_requests,
)
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

POLICY = """
collisions:
  change_requests: {normal: deny}
maintenance_windows:
  - name: nightly-backup
    owner: backup-team
    cron: "0 1 * * *"
    timezone: UTC
    duration: 3h
    services: [billing]
freezes:
  - name: year-end
    start: "2026-12-20"
    end: "2027-01-03"
    timezone: UTC
"""


def info(sor, policy_path, **params):
    full = {name: spec.get("default") for name, spec in CHANGE_REQUEST_INFO_SPEC.items()}
    full.update(params)
    return query_change_requests(OperationContext(sor, full, policy_path=policy_path))["change_requests"]


def test_a_request_sees_the_other_request_the_backup_window_and_the_freeze_its_window_meets(sor, tmp_path):
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    db01 = add_ci(sor, "db01", ci_class="server")
    app = uuid.uuid4().hex
    sor.append([Entry("ci.created", app, {"ci_id": app, "identities": {}, "attributes": {
        "name": "billing", "class": "application", "owner": "payments"}}),
        Entry("ci.relationship_added", app, {"source": app, "type": "runs_on", "target": db01})])
    other = approved_change(sor, ["billing"], "2026-12-21T23:00:00Z", "2026-12-22T05:00:00Z", timezone="UTC")
    change_request(sor, number=other, requested_by="payments-team")
    mine = change_request(sor, short_description="Upgrade PostgreSQL", affected_cis=["db01"],
                          planned_start="2026-12-22T00:30:00Z", planned_end="2026-12-22T02:00:00Z",
                          timezone="UTC")["number"]
    [record] = info(sor, str(policy), number=mine, collisions=True)
    found = record["collisions"]
    assert [(item["kind"], item["reference"], item["action"]) for item in found["items"]] == [
        ("change_request", other, "deny"), ("maintenance_window", "nightly-backup", "warn")]
    # billing depends on db01: the other request's CI is in this one's blast radius
    assert found["items"][0]["cis"] == ["billing"] and found["blast_radius"]["names"] == ["billing"]
    assert found["items"][1]["window"] == {"start": "2026-12-22T01:00:00.000000Z", "end": "2026-12-22T04:00:00.000000Z",
                                           "timezone": "UTC"}
    assert found["would_deny"][0].startswith("collision: approved change request %s (test change) of payments-team, "
                                             "window 2026-12-21 23:00 UTC - 2026-12-22 05:00 UTC on billing" % other)
    [freeze] = found["freezes"]
    assert freeze["name"] == "year-end" and freeze["blocks"] is True
    # without the option, nothing is computed
    assert "collisions" not in info(sor, str(policy), number=mine)[0]
    # a request without a planned window has nothing to collide with
    bare = change_request(sor, short_description="Someday", affected_cis=["db01"])["number"]
    assert info(sor, str(policy), number=bare, collisions=True)[0]["collisions"] is None
