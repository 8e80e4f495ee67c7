# -*- coding: utf-8 -*-
"""ledger_migrate moves the outbox with the chain: after SQLite -> PostgreSQL, ServiceNow (the loopback simulator
of the documented API, not a real instance) is fed from where the SQLite ledger had got to: nothing delivered
twice, nothing skipped. The witnesses' cursors move too."""

from __future__ import annotations

import pytest

from test_servicenow import REGISTER, host_vars

from ansible_collections.changeops.itsm.plugins.module_utils.ledger_migrate import migrate_ledger
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.outbox import Outbox

pytestmark = [pytest.mark.integration, pytest.mark.postgresql, pytest.mark.backends("postgresql")]


def test_after_migrating_the_outbox_goes_on_from_its_cursor(sqlite_env, sqlite_project, sqlite_sor, sor, sn):
    delivered = ["web%02d" % number for number in range(6)]
    waiting = ["app%02d" % number for number in range(4)]
    # an SQLite ledger whose outbox fed ServiceNow (the recorder's end-of-run delivery)...
    sqlite_project.write_inventory(delivered, group="web", host_vars=host_vars(delivered))
    sqlite_project.write("provision.yml", REGISTER.format(hosts="web", push="deferred"))
    sqlite_project.run("provision.yml", env=sn.env())
    # ... and then recorded more while ServiceNow was switched off: those entries wait in its outbox
    sqlite_project.write_inventory(waiting, group="web", host_vars=host_vars(waiting))
    sqlite_project.run("provision.yml", env=sn.env(CHANGEOPS_SERVICENOW="false"))
    target = sn.settings().target_key()
    source_state = sqlite_sor.get_sync_state(target)
    assert source_state["cursor_seq"] > 0
    assert Outbox(sqlite_sor, sn.settings()).status()["pending"] >= len(waiting)
    source_witnesses = sqlite_sor.list_witness_cursors()
    assert source_witnesses  # the recorder's post-run checkpoint fed its file witness

    params = {"source_path": sqlite_env["CHANGEOPS_SQLITE_PATH"], "batch_size": 100}
    checked = migrate_ledger(OperationContext(sor, params, check_mode=True))
    assert {"what": "sync_cursor", "name": target, "from": 0, "to": source_state["cursor_seq"]} in \
        checked["cursors_copied"]
    assert sor.get_sync_state(target) is None and sor.list_witness_cursors() == {}
    migrated = migrate_ledger(OperationContext(sor, params))
    assert migrated["changed"] and migrated["cursors_copied"] == checked["cursors_copied"]
    assert sor.get_sync_state(target)["cursor_seq"] == source_state["cursor_seq"]
    assert sor.get_sync_state(target)["delivered"] == source_state["delivered"]
    assert sor.list_witness_cursors() == source_witnesses
    # a second migration finds everything in place
    assert migrate_ledger(OperationContext(sor, params))["changed"] is False

    since = len(sn.requests())
    report = Outbox(sor, sn.settings()).drain(60)
    assert report.stopped is None and report.set_aside == []
    # only what waited went: the 4 new CIs in one IRE request, none of the 6 delivered before the move
    ire = [entry for entry in sn.requests(since) if entry["method"] == "POST" and "identifyreconcile" in entry["path"]]
    assert len(ire) == 1
    servers = sn.control.records("cmdb_ci_linux_server")
    assert sorted(row["name"] for row in servers) == sorted(delivered + waiting)  # each exactly once
    sources = sn.control.records("sys_object_source", "name=ChangeOps")
    assert len(sources) == 10 and len(set(row["id"] for row in sources)) == 10
    assert Outbox(sor, sn.settings()).status()["pending"] == 0
    for ci in sor.find_cis():
        assert ci["attributes"]["servicenow_sys_id"] == sn.ci(ci["name"])["sys_id"]
