# -*- coding: utf-8 -*-
"""find_host_cis: which CI is an inventory host's own, on every backend."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import find_host_cis, name_identity
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry


def ci(sor, ci_id, name, ci_class, identities=None):
    sor.append([Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": {"name": name, "class": ci_class},
                                            "identities": identities or {}})])


def test_an_application_named_like_the_host_is_not_the_hosts_ci(sor):
    ci(sor, "ci-0-app", "web01", "application")  # the lower ci_id: a plain name lookup would take it
    ci(sor, "ci-9-host", "web01", "server", {"name": name_identity("server", "web01")})
    assert find_host_cis(sor, ["web01"])["web01"]["ci_id"] == "ci-9-host"


def test_a_ci_of_another_tools_class_counts_when_it_is_the_only_one(sor):
    ci(sor, "ci-1", "db01", "cmdb_ci_linux_server")
    ci(sor, "ci-2", "twin", "application")
    ci(sor, "ci-3", "twin", "database")
    found = find_host_cis(sor, ["db01", "twin", "missing", None])
    assert {name: record["ci_id"] for name, record in found.items()} == {"db01": "ci-1"}


def test_of_two_host_cis_with_one_name_the_registered_one_wins(sor):
    ci(sor, "ci-a", "web02", "container")
    ci(sor, "ci-b", "web02", "virtual_machine", {"name": name_identity("virtual_machine", "web02")})
    assert find_host_cis(sor, ["web02"])["web02"]["ci_id"] == "ci-b"
    assert find_host_cis(sor, []) == {}
