# -*- coding: utf-8 -*-
"""CMDB operations against a real system of record: register_host, configuration_item, _info."""

from __future__ import annotations

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils import cmdb
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError, NotFound, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext


def _defaults(spec):
    params = {}
    for name, option in spec.items():
        params[name] = option.get("default")
        if option.get("type") == "list" and option.get("default") is not None:
            params[name] = list(option["default"])
    return params


def make_ctx(sor, spec, params, host=None, facts=None, check_mode=False, diff=True, run_id="run-1",
             play_hosts=None, inventory=None):
    full = _defaults(spec)
    full.update(params)
    play = list(play_hosts or ([host] if host else []))
    task_vars = {"ansible_play_hosts_all": play, "groups": {"all": list(inventory or play)}}
    ctx = OperationContext(sor, full, check_mode=check_mode, diff=diff, host=host, task_vars=task_vars,
                           run_id=run_id, actor="tester@controller")
    ctx.facts = facts or {}
    return ctx


def facts_for(name, machine_id, **extra):
    facts = {"hostname": name, "fqdn": "%s.example.com" % name, "machine_id": machine_id,
             "distribution": "Debian", "memtotal_mb": 4096,
             "default_ipv4": {"address": "10.0.0.%d" % (sum(map(ord, name)) % 250)}}
    facts.update(extra)
    return facts


def register(sor, host, facts, **params):
    options = dict(params)
    check_mode = options.pop("check_mode", False)
    play_hosts = options.pop("play_hosts", None)
    inventory = options.pop("inventory", None)
    run_id = options.pop("run_id", "run-1")
    return cmdb.register_host(make_ctx(sor, cmdb.REGISTER_HOST_SPEC, options, host=host, facts=facts,
                                       check_mode=check_mode, play_hosts=play_hosts, run_id=run_id,
                                       inventory=inventory))


def ci_item(sor, check_mode=False, **params):
    return cmdb.configuration_item(make_ctx(sor, cmdb.CONFIGURATION_ITEM_SPEC, params, check_mode=check_mode))


def info(sor, **params):
    return cmdb.configuration_item_info(make_ctx(sor, cmdb.CONFIGURATION_ITEM_INFO_SPEC, params))


def head(sor):
    return sor.head()[0]


# --------------------------------------------------------------------------
# register_host
# --------------------------------------------------------------------------
def test_register_creates_then_changes_nothing(sor):
    first = register(sor, "web01", facts_for("web01", "m1"), environment="prod", services=["billing", "api"])
    assert first["changed"] and first["created"]
    ci = sor.get_ci(first["ci_id"])
    assert ci["name"] == "web01" and ci["class"] == "server" and ci["status"] == "operational"
    assert ci["attributes"]["services"] == ["api", "billing"]
    assert ci["last_change_run_id"] == "run-1"
    assert ci["identities"] == {"name": "host/web01", "fqdn": "web01.example.com", "machine_id": "m1"}
    before = head(sor)

    again = register(sor, "web01", facts_for("web01", "m1"), environment="prod", services=["api", "billing"],
                     run_id="run-2")
    assert not again["changed"] and again["matched_by"] == "machine_id" and again["changes"] == {}
    assert head(sor) == before
    assert sor.get_ci(first["ci_id"])["last_change_run_id"] == "run-1"


def test_one_changed_fact_updates_exactly_that_attribute(sor):
    first = register(sor, "web01", facts_for("web01", "m1"))
    other = register(sor, "web02", facts_for("web02", "m2"))
    changed = register(sor, "web01", facts_for("web01", "m1", memtotal_mb=8192), run_id="run-2")
    assert changed["changed"] and not changed["created"]
    assert set(changed["changes"]) == {"memory_mb", "last_seen"}
    assert changed["changes"]["memory_mb"] == {"from": 4096, "to": 8192}
    assert changed["diff"]["before"]["memory_mb"] == 4096 and changed["diff"]["after"]["memory_mb"] == 8192
    assert sor.get_ci(first["ci_id"])["last_change_run_id"] == "run-2"
    assert sor.get_ci(other["ci_id"])["version"] == 1
    kinds = [entry.kind for entry in sor.iter_entries(subject=first["ci_id"])]
    assert kinds == ["ci.created", "ci.updated"]


def test_rename_with_the_same_machine_id_updates_the_same_ci(sor):
    first = register(sor, "web01", facts_for("web01", "m1"))
    renamed = register(sor, "app07", facts_for("app07", "m1"))
    assert renamed["ci_id"] == first["ci_id"] and renamed["matched_by"] == "machine_id"
    assert renamed["changes"]["name"] == {"from": "web01", "to": "app07"}
    assert [ci["name"] for ci in sor.find_cis()] == ["app07"]
    assert sor.find_ci_by_identity("name", "host/app07") == first["ci_id"]
    assert sor.find_ci_by_identity("name", "host/web01") is None


def test_reimage_keeps_the_ci_through_the_product_uuid(sor):
    uuid = "4c4c4544-0042-3510-8052-b4c04f4d4d32"
    first = register(sor, "db01", facts_for("db01", "old-machine-id", product_uuid=uuid, product_serial="CZ12"))
    again = register(sor, "db01", facts_for("db01", "new-machine-id", product_uuid=uuid.upper(),
                                            product_serial="CZ12", distribution_version="13"))
    assert again["ci_id"] == first["ci_id"] and again["matched_by"] == "product_uuid"
    assert sor.get_ci(first["ci_id"])["identities"]["machine_id"] == "new-machine-id"
    assert len(sor.find_cis()) == 1


def test_ip_change_updates_the_same_ci(sor):
    first = register(sor, "web01", facts_for("web01", "m1"))
    moved = register(sor, "web01", facts_for("web01", "m1", default_ipv4={"address": "192.168.9.9"}))
    assert moved["ci_id"] == first["ci_id"]
    assert moved["changes"]["primary_ipv4"]["to"] == "192.168.9.9"


def test_two_hosts_of_one_play_claiming_one_machine_id_fail_and_write_nothing(sor):
    play = ["web01", "web02"]
    register(sor, "web01", facts_for("web01", "cloned"), play_hosts=play)
    before = head(sor)
    with pytest.raises(ConflictError) as error:
        register(sor, "web02", facts_for("web02", "cloned"), play_hosts=play)
    assert "web01" in error.value.message and "web02" in error.value.message
    assert "machine_id" in error.value.message
    assert head(sor) == before
    assert [ci["name"] for ci in sor.find_cis()] == ["web01"]


@pytest.mark.parametrize("winner, loser", [("web01", "web02"), ("web02", "web01")])
def test_the_clash_message_does_not_depend_on_which_host_registered_first(sor, winner, loser):
    play = ["web01", "web02"]
    register(sor, winner, facts_for(winner, "cloned"), play_hosts=play)
    with pytest.raises(ConflictError) as error:
        register(sor, loser, facts_for(loser, "cloned"), play_hosts=play)
    assert error.value.message.startswith("hosts web01 and web02 both claim machine_id 'cloned' (CI ")
    assert error.value.details["host"] == loser


def test_a_clone_run_on_its_own_is_refused_while_the_original_is_in_the_inventory(sor):
    inventory = ["web01", "web02", "db01"]
    original = register(sor, "web01", facts_for("web01", "cloned"), play_hosts=["web01"], inventory=inventory)
    before = head(sor)
    with pytest.raises(ConflictError) as error:
        register(sor, "web02", facts_for("web02", "cloned"), play_hosts=["web02"], inventory=inventory)
    assert error.value.message.startswith(
        "host web02 claims machine_id 'cloned', which identifies CI %s (web01, server, status operational) "
        "registered for inventory host web01, still in the inventory" % original["ci_id"])
    assert error.value.details == {"host": "web02", "other_host": "web01", "identity": "machine_id",
                                   "value": "cloned", "ci_id": original["ci_id"]}
    assert head(sor) == before
    # the inventory names hosts as written; the CI name is compared without case
    with pytest.raises(ConflictError):
        register(sor, "web02", facts_for("web02", "cloned"), play_hosts=["web02"], inventory=["WEB01", "web02"])
    # web01 gone from the inventory: web02 is its new name
    renamed = register(sor, "web02", facts_for("web02", "cloned"), play_hosts=["web02"], inventory=["web02", "db01"])
    assert renamed["ci_id"] == original["ci_id"] and renamed["changes"]["name"] == {"from": "web01", "to": "web02"}


def test_the_name_option_does_not_let_a_second_inventory_host_into_a_ci(sor):
    inventory = ["web01", "web01-mgmt"]
    register(sor, "web01", facts_for("web01", "m1"), play_hosts=["web01"], inventory=inventory)
    with pytest.raises(ConflictError) as error:
        register(sor, "web01-mgmt", facts_for("web01-mgmt", "m2"), name="web01", play_hosts=["web01-mgmt"],
                 inventory=inventory)
    assert error.value.message.startswith("host web01-mgmt claims name 'host/web01', which identifies CI ")
    assert "registered for inventory host web01, still in the inventory" in error.value.message


def test_a_ci_name_that_is_no_inventory_host_is_the_hosts_registered_name(sor):
    first = register(sor, "web01.dc1", facts_for("web01", "m1"), name="web01", play_hosts=["web01.dc1"])
    again = register(sor, "web01.dc1", facts_for("web01", "m1"), name="web01", play_hosts=["web01.dc1"])
    assert again["ci_id"] == first["ci_id"] and not again["changed"]


@pytest.mark.parametrize("fqdn", ["localhost", "localhost.localdomain", "LOCALHOST.LOCALDOMAIN.",
                                  "localhost6.localdomain6", "localhost4", "ip6-localhost", "debian.localdomain"])
def test_hosts_sharing_a_local_fqdn_are_different_hosts(sor, fqdn):
    inventory = ["alpha", "beta"]
    alpha = register(sor, "alpha", facts_for("alpha", "m-alpha", fqdn=fqdn), play_hosts=inventory, inventory=inventory)
    beta = register(sor, "beta", facts_for("beta", "m-beta", fqdn=fqdn), play_hosts=inventory, inventory=inventory)
    assert beta["created"] and beta["ci_id"] != alpha["ci_id"]
    assert sor.get_ci(alpha["ci_id"])["attributes"]["fqdn"] == fqdn
    assert "fqdn" not in sor.get_ci(alpha["ci_id"])["identities"]


@pytest.mark.parametrize("matched_by, stored, claimed", [
    # same fqdn, new machine id, another product uuid and serial
    ("fqdn", {"product_uuid": "aaaa-1111-2222", "product_serial": "CZ12"},
     {"hostname": "other", "product_uuid": "bbbb-3333-4444", "product_serial": "CZ99"}),
    # same name, new machine id and fqdn, another serial (no product uuid on either side)
    ("name", {"product_serial": "CZ12"}, {"fqdn": "elsewhere.example.com", "product_serial": "CZ99"}),
])
def test_a_match_by_fqdn_or_name_with_other_hardware_is_another_machine(sor, matched_by, stored, claimed):
    original = register(sor, "db01", facts_for("db01", "m1", **stored))
    before = head(sor)
    with pytest.raises(ConflictError) as error:
        register(sor, "db01", dict(facts_for("db01", "m-new"), **claimed))
    assert "its %s" % matched_by in error.value.message and "different machine" in error.value.message
    assert head(sor) == before
    # the same host re-imaged without hardware facts (a VM without SMBIOS data): nothing contradicts the match
    bare_facts = dict(facts_for("db01", "m-new"), **dict(claimed, product_uuid="NA", product_serial="NA"))
    bare = register(sor, "db01", bare_facts)
    assert bare["matched_by"] == matched_by and bare["ci_id"] == original["ci_id"]


def test_hardware_identities_left_out_of_identify_by_are_not_compared(sor):
    original = register(sor, "db01", facts_for("db01", "m1", product_uuid="aaaa-1111-2222"),
                        identify_by=["fqdn", "name"])
    again = register(sor, "db01", facts_for("db01", "m2", product_uuid="bbbb-3333-4444"), identify_by=["fqdn", "name"])
    assert again["ci_id"] == original["ci_id"] and again["matched_by"] == "fqdn"
    assert again["changes"]["product_uuid"] == {"from": "aaaa-1111-2222", "to": "bbbb-3333-4444"}


def test_identify_by_is_tried_in_the_order_given(sor):
    first = register(sor, "web01", facts_for("web01", "m1"))
    assert register(sor, "web01", facts_for("web01", "m1"))["matched_by"] == "machine_id"
    assert register(sor, "web01", facts_for("web01", "m1"), identify_by=["fqdn", "machine_id", "name"])[
        "matched_by"] == "fqdn"
    assert register(sor, "web01", facts_for("web01", "m1"), identify_by=["name", "name", "fqdn"])[
        "matched_by"] == "name"
    assert len(sor.find_cis()) == 1 and sor.find_cis()[0]["ci_id"] == first["ci_id"]


def test_the_order_of_identify_by_decides_between_a_retired_and_a_live_ci(sor):
    old = register(sor, "old-host", facts_for("old-host", "m-shared"))
    ci_item(sor, ci_id=old["ci_id"], state="retired")
    live = register(sor, "app01", facts_for("app01", "m-app"))
    claim = facts_for("app01", "m-shared", fqdn="app01.example.com")
    with pytest.raises(ConflictError) as error:
        # machine id first: the retired CI is the match, and the live one holds the fqdn
        register(sor, "app01", claim, identify_by=["machine_id", "fqdn", "name"])
    assert "two CIs claim this host" in error.value.message
    # fqdn first: the live CI is the match, and the retired one gives up the machine id
    result = register(sor, "app01", claim, identify_by=["fqdn", "machine_id", "name"])
    assert result["ci_id"] == live["ci_id"] and result["matched_by"] == "fqdn"
    assert sor.find_ci_by_identity("machine_id", "m-shared") == live["ci_id"]
    assert "machine_id" not in sor.get_ci(old["ci_id"])["identities"]


def test_a_different_machine_claiming_a_serial_is_refused(sor):
    register(sor, "db01", facts_for("db01", "m1", product_uuid="aaaa-1111-2222", product_serial="CZ12"))
    before = head(sor)
    with pytest.raises(ConflictError) as error:
        register(sor, "db02", facts_for("db02", "m2", product_uuid="bbbb-3333-4444", product_serial="CZ12"))
    assert "serial_number" in error.value.message and "different machine" in error.value.message
    assert head(sor) == before


def test_an_identity_held_by_a_second_ci_is_refused(sor):
    register(sor, "web01", facts_for("web01", "m1"))
    register(sor, "web02", facts_for("web02", "m2"))
    before = head(sor)
    with pytest.raises(ConflictError) as error:
        # machine id says web01's CI, the fqdn belongs to web02's CI
        register(sor, "web01", facts_for("web01", "m1", fqdn="web02.example.com"))
    assert "two CIs claim this host" in error.value.message
    assert head(sor) == before


def test_a_retired_ci_yields_its_identity_to_a_new_machine(sor):
    old = register(sor, "web01", facts_for("web01", "m1", product_uuid="aaaa-1111"))
    ci_item(sor, ci_id=old["ci_id"], state="retired")
    new = register(sor, "web01", facts_for("web01", "m9", product_uuid="bbbb-2222"))
    assert new["created"] and new["ci_id"] != old["ci_id"]
    retired = sor.get_ci(old["ci_id"])
    assert retired["status"] == "retired" and "name" not in retired["identities"]
    assert sor.find_ci_by_identity("name", "host/web01") == new["ci_id"]


def test_shared_placeholder_serials_never_merge_hosts(sor):
    a = register(sor, "a1", facts_for("a1", "ma", product_serial="To Be Filled By O.E.M.", product_uuid="NA"))
    b = register(sor, "b1", facts_for("b1", "mb", product_serial="To Be Filled By O.E.M.", product_uuid="NA"))
    assert a["ci_id"] != b["ci_id"] and b["created"]
    assert "serial_number" not in sor.get_ci(a["ci_id"])["attributes"]


def test_check_mode_predicts_and_writes_nothing(sor):
    register(sor, "web01", facts_for("web01", "m1"))
    before = head(sor)
    predicted = register(sor, "web01", facts_for("web01", "m1", memtotal_mb=1024), check_mode=True)
    assert predicted["changed"] and predicted["ci"]["attributes"]["memory_mb"] == 1024
    assert predicted["diff"]["before"]["memory_mb"] == 4096
    new = register(sor, "web09", facts_for("web09", "m9"), check_mode=True)
    assert new["changed"] and new["created"]
    assert head(sor) == before
    assert sor.get_ci(predicted["ci_id"])["attributes"]["memory_mb"] == 4096


def test_last_seen_is_refreshed_only_when_stale(sor):
    first = register(sor, "web01", facts_for("web01", "m1"))
    ci_id = first["ci_id"]
    ci = sor.get_ci(ci_id)
    sor.append([Entry("ci.updated", ci_id, {"ci_id": ci_id, "base_version": ci["version"], "changes": {
        "last_seen": {"from": ci["attributes"]["last_seen"], "to": "2020-01-01T00:00:00.000000Z"}}})])
    assert not register(sor, "web01", facts_for("web01", "m1"), last_seen_refresh="never")["changed"]
    refreshed = register(sor, "web01", facts_for("web01", "m1"))
    assert refreshed["changed"] and set(refreshed["changes"]) == {"last_seen"}
    assert not register(sor, "web01", facts_for("web01", "m1"))["changed"]


def test_register_without_facts_uses_explicit_attributes(sor):
    result = register(sor, "vm01", {}, attributes={"class": "virtual_machine", "machine_id": "mm",
                                                   "serial_number": "SER-1"}, owner="team-a")
    ci = sor.get_ci(result["ci_id"])
    assert ci["class"] == "virtual_machine" and ci["attributes"]["owner"] == "team-a"
    assert ci["identities"]["serial_number"] == "SER-1"
    # a later run with facts but no virtualization facts keeps the class
    assert register(sor, "vm01", facts_for("vm01", "mm"))["ci"]["class"] == "virtual_machine"


@pytest.mark.parametrize("params, field", [
    ({"attribute_map": {"rack": "ansible_local.[dc"}}, "attribute_map.rack"),
    ({"attributes": {"status": "on_fire"}}, "attributes.status"),
    ({"attributes": {"name": None}}, "attributes"),
    ({"last_seen_refresh": "sometimes"}, "last_seen_refresh"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(sor, params, field):
    with pytest.raises(ValidationError) as error:
        register(sor, "web01", facts_for("web01", "m1"), **params)
    assert field in error.value.message
    assert head(sor) == 0


# --------------------------------------------------------------------------
# configuration_item
# --------------------------------------------------------------------------
@pytest.fixture
def estate(sor):
    db = register(sor, "db01", facts_for("db01", "m-db"))
    ci_item(sor, name="billing-db", ci_class="database", attributes={"engine": "postgresql"},
            relationships=[{"type": "runs_on", "target": "db01"}])
    ci_item(sor, name="billing", ci_class="application", attributes={"environment": "prod", "services": ["billing"]},
            relationships=[{"type": "depends_on", "target": "billing-db"}])
    ci_item(sor, name="reports", ci_class="application",
            relationships=[{"type": "depends_on", "target": "billing", "target_class": "application"}])
    return db["ci_id"]


def test_configuration_item_with_relationships_is_idempotent(sor, estate):
    before = head(sor)
    again = ci_item(sor, name="billing-db", ci_class="database", attributes={"engine": "postgresql"},
                    relationships=[{"type": "runs_on", "target": "db01"}])
    assert not again["changed"] and head(sor) == before
    names = [(rel["source_name"], rel["type"], rel["target_name"]) for rel in again["ci"]["relationships"]]
    assert ("billing-db", "runs_on", "db01") in names and ("billing", "depends_on", "billing-db") in names


def test_unknown_relationship_type_is_refused_and_nothing_written(sor, estate):
    before = head(sor)
    with pytest.raises(ValidationError) as error:
        ci_item(sor, name="cache", ci_class="application", relationships=[{"type": "talks_to", "target": "db01"}])
    assert "relationships[0].type" in error.value.message and "talks_to" in error.value.message
    assert head(sor) == before and not sor.find_cis(name="cache")


def test_relationship_to_a_missing_ci_is_refused_and_nothing_written(sor, estate):
    before = head(sor)
    with pytest.raises(ValidationError) as error:
        ci_item(sor, name="cache", ci_class="application", relationships=[
            {"type": "runs_on", "target": "db01"}, {"type": "depends_on", "target": "db99"}])
    assert "relationships[1].target" in error.value.message and "db99" in error.value.message
    assert head(sor) == before and not sor.find_cis(name="cache")


def test_custom_relationship_types(sor, estate):
    result = ci_item(sor, name="www.example.com", ci_class="certificate",
                     relationship_types=["secures", "depends_on"],
                     relationships=[{"type": "secures", "target": "db01"}])
    assert result["relationships_added"][0]["type"] == "secures"


def test_absent_is_refused_while_others_depend_on_it(sor, estate):
    before = head(sor)
    with pytest.raises(ConflictError) as error:
        ci_item(sor, name="billing-db", state="absent")
    assert "billing (depends_on billing-db)" in error.value.message
    assert head(sor) == before
    removed = ci_item(sor, name="billing-db", state="absent", force=True, reason="test")
    assert removed["changed"]
    assert not sor.find_cis(name="billing-db")
    assert not [rel for rel in sor.get_relationships() if "billing-db" in (rel["source"], rel["target"])]
    assert not ci_item(sor, name="billing-db", state="absent")["changed"]


def test_retire_keeps_history_and_present_brings_back(sor, estate):
    retired = ci_item(sor, name="reports", state="retired")
    assert retired["changed"] and retired["ci"]["status"] == "retired"
    assert not ci_item(sor, name="reports", state="retired")["changed"]
    ci = sor.find_cis(name="reports")[0]
    kinds = [entry.kind for entry in sor.iter_entries(subject=ci["ci_id"])]
    assert kinds[:2] == ["ci.created", "ci.relationship_added"]
    assert ci_item(sor, name="reports", ci_class="application")["ci"]["status"] == "operational"


def test_configuration_item_check_mode_and_diff(sor, estate):
    before = head(sor)
    predicted = ci_item(sor, check_mode=True, name="billing", ci_class="application", attributes={"tier": 1},
                        relationships=[{"type": "runs_on", "target": "db01"}], purge_relationships=True)
    assert predicted["changed"]
    assert predicted["diff"]["before"]["relationships"] == ["depends_on billing-db"]
    assert predicted["diff"]["after"]["relationships"] == ["runs_on db01"]
    assert predicted["diff"]["after"]["tier"] == 1
    assert head(sor) == before


def test_purge_relationships(sor, estate):
    result = ci_item(sor, name="billing", ci_class="application", relationships=[{"type": "runs_on",
                                                                                  "target": "db01"}],
                     purge_relationships=True)
    assert [rel["target_name"] for rel in result["relationships_removed"]] == ["billing-db"]
    billing = sor.find_cis(name="billing")[0]["ci_id"]
    assert [rel["type"] for rel in sor.get_relationships(billing, direction="outbound")] == ["runs_on"]


def test_ambiguous_names_need_a_class(sor, estate):
    ci_item(sor, name="billing", ci_class="service")
    with pytest.raises(ValidationError) as error:
        ci_item(sor, name="reports", relationships=[{"type": "member_of", "target": "billing"}])
    assert "2 CIs are named 'billing'" in error.value.message


def test_creating_needs_a_class(sor):
    with pytest.raises(ValidationError) as error:
        ci_item(sor, name="mystery")
    assert "ci_class" in error.value.message


def test_retiring_a_missing_ci_is_an_error(sor):
    with pytest.raises(NotFound):
        ci_item(sor, name="ghost", ci_class="application", state="retired")


def test_correcting_a_host_cis_hardware_attributes_moves_its_identities(sor):
    old = {"product_uuid": "aaaa-1111-2222", "product_serial": "CZ12"}
    new = {"product_uuid": "bbbb-3333-4444", "product_serial": "CZ99"}
    first = register(sor, "db01", facts_for("db01", "m1", **old))
    with pytest.raises(ConflictError) as error:
        register(sor, "db01", facts_for("db01", "m1", **new))  # motherboard swap
    assert "different machine" in error.value.message
    before = head(sor)
    fix = {"product_uuid": "BBBB-3333-4444", "serial_number": "CZ99"}
    predicted = ci_item(sor, check_mode=True, name="db01", attributes=fix)
    assert predicted["changed"] and head(sor) == before
    assert predicted["identities"]["from"]["product_uuid"] == "aaaa-1111-2222"
    assert predicted["identities"]["to"]["product_uuid"] == "bbbb-3333-4444"
    assert predicted["identities"]["to"]["serial_number"] == "CZ99"
    assert predicted["diff"]["before"]["identities"]["serial_number"] == "CZ12"
    assert predicted["diff"]["after"]["identities"]["serial_number"] == "CZ99"
    assert predicted["ci"]["identities"] == predicted["identities"]["to"]

    fixed = ci_item(sor, name="db01", attributes=fix)
    ci = sor.get_ci(first["ci_id"])
    assert ci["identities"] == fixed["identities"]["to"] == dict(
        predicted["identities"]["from"], product_uuid="bbbb-3333-4444", serial_number="CZ99")
    assert not ci_item(sor, name="db01", attributes=fix)["changed"]
    after = register(sor, "db01", facts_for("db01", "m1", memtotal_mb=8192, **new))
    assert after["ci_id"] == first["ci_id"] and after["matched_by"] == "product_uuid"
    # the identity was compared without case; the attribute takes the host's spelling
    assert set(after["changes"]) == {"memory_mb", "last_seen", "product_uuid"}
    assert not after.get("identities")


def test_a_host_ci_made_by_configuration_item_is_identified_like_a_registered_one(sor):
    made = ci_item(sor, name="vm05", ci_class="virtual_machine", attributes={"machine_id": "M5", "serial_number": "NA"})
    assert sor.get_ci(made["ci_id"])["identities"] == {"name": "host/vm05", "machine_id": "m5"}
    found = register(sor, "vm05-new", facts_for("vm05-new", "m5"))
    assert found["ci_id"] == made["ci_id"] and found["matched_by"] == "machine_id"


def test_a_ci_leaving_the_host_classes_gives_up_its_host_identities(sor):
    board = {"product_uuid": "aaaa-1111-2222", "product_serial": "CZ12"}
    server = register(sor, "web01", facts_for("web01", "m1", **board))
    held = sor.get_ci(server["ci_id"])["identities"]
    assert set(held) == {"name", "product_uuid", "machine_id", "serial_number", "fqdn"}
    before = head(sor)
    predicted = ci_item(sor, check_mode=True, ci_id=server["ci_id"], ci_class="application")
    assert head(sor) == before
    assert predicted["identities"] == {"from": held, "to": {"name": "application/web01"}}
    assert predicted["diff"]["before"]["identities"] == held
    assert predicted["diff"]["after"]["identities"] == {"name": "application/web01"}

    ci_item(sor, ci_id=server["ci_id"], ci_class="application")
    app = sor.get_ci(server["ci_id"])
    assert app["identities"] == {"name": "application/web01"}
    assert app["attributes"]["product_uuid"] == "aaaa-1111-2222"  # attributes stay, only identification goes
    # the machine registering with the old server's product uuid is a new host, not the application
    again = register(sor, "web01", facts_for("web01", "m1", **board))
    assert again["created"] and again["ci_id"] != server["ci_id"]
    assert sor.get_ci(server["ci_id"]) == app


def test_a_ci_entering_a_host_class_is_identified_by_its_attributes(sor):
    made = ci_item(sor, name="web09", ci_class="application",
                   attributes={"machine_id": "M9", "fqdn": "web09.example.com", "serial_number": "NA"})
    assert sor.get_ci(made["ci_id"])["identities"] == {"name": "application/web09"}
    moved = ci_item(sor, ci_id=made["ci_id"], ci_class="server")
    expected = {"name": "host/web09", "machine_id": "m9", "fqdn": "web09.example.com"}
    assert moved["identities"] == {"from": {"name": "application/web09"}, "to": expected}
    assert sor.get_ci(made["ci_id"])["identities"] == expected
    found = register(sor, "web09", facts_for("web09", "m9"), identify_by=["machine_id", "name"])
    assert found["ci_id"] == made["ci_id"] and found["matched_by"] == "machine_id"


def test_entering_a_host_class_with_an_identity_another_ci_holds_is_refused(sor):
    web = register(sor, "web01", facts_for("web01", "m1"))
    app = ci_item(sor, name="billing", ci_class="application", attributes={"machine_id": "M1"})
    before = head(sor)
    with pytest.raises(ConflictError) as error:
        ci_item(sor, ci_id=app["ci_id"], ci_class="server")
    assert error.value.message.startswith(
        "attributes.machine_id: 'M1' already identifies CI %s (web01, server" % web["ci_id"])
    assert head(sor) == before


def test_a_name_held_by_another_host_class_is_refused_before_writing(sor, monkeypatch):
    web = register(sor, "web01", facts_for("web01", "m-web"))
    appends = []
    monkeypatch.setattr(sor, "append", appends.append)
    with pytest.raises(ConflictError) as error:
        ci_item(sor, name="web01", ci_class="virtual_machine")
    assert error.value.message.startswith(
        "name: 'web01' is already the name of CI %s (web01, server, status operational); servers, virtual machines "
        "and containers share one namespace of names" % web["ci_id"])
    assert error.value.details["field"] == "name" and error.value.details["ci_id"] == web["ci_id"]
    with pytest.raises(ConflictError) as error:
        ci_item(sor, name="vm09", ci_class="virtual_machine", attributes={"machine_id": "M-WEB"})
    assert error.value.message.startswith(
        "attributes.machine_id: 'M-WEB' already identifies CI %s (web01, server" % web["ci_id"])
    assert appends == []  # refused before any write (no retries against the projection)


def test_services_as_one_string_becomes_a_list(sor):
    made = ci_item(sor, name="billing-app", ci_class="application", attributes={"services": "billing"})
    assert sor.get_ci(made["ci_id"])["attributes"]["services"] == ["billing"]
    assert [ci["name"] for ci in info(sor, service="billing")["configuration_items"]] == ["billing-app"]
    registered = register(sor, "web01", facts_for("web01", "m1"), attributes={"services": "billing", "tags": "dmz"})
    assert registered["ci"]["attributes"]["services"] == ["billing"]
    assert registered["ci"]["attributes"]["tags"] == ["dmz"]


@pytest.mark.parametrize("value", [3, {"name": "billing"}, ["billing", 7], [""]])
def test_services_that_are_not_names_are_refused(sor, value):
    with pytest.raises(ValidationError) as error:
        ci_item(sor, name="billing-app", ci_class="application", attributes={"services": value})
    assert error.value.message == "attributes.services must be a list of names (or one name as a string), got %r" % (
        value,)
    with pytest.raises(ValidationError) as error:
        register(sor, "web01", {"ansible_local": {"app": {"services": value}}},
                 attribute_map={"services": "ansible_local.app.services"})
    assert error.value.message.startswith("attribute_map.services must be a list of names")
    assert head(sor) == 0


# --------------------------------------------------------------------------
# configuration_item_info
# --------------------------------------------------------------------------
def test_info_filters(sor, estate):
    register(sor, "web01", facts_for("web01", "m-web", memtotal_mb=1024), environment="prod", services=["billing"])
    assert [ci["name"] for ci in info(sor, ci_class=["server"])["configuration_items"]] == ["db01", "web01"]
    assert [ci["name"] for ci in info(sor, service="billing")["configuration_items"]] == ["billing", "web01"]
    assert [ci["name"] for ci in info(sor, environment=["prod"], ci_class=["application"])[
        "configuration_items"]] == ["billing"]
    assert [ci["name"] for ci in info(sor, filter="memory_mb < `2048`")["configuration_items"]] == ["web01"]
    assert [ci["name"] for ci in info(sor, filter="engine == 'postgresql'")["configuration_items"]] == [
        "billing-db"]
    with pytest.raises(ValidationError) as error:
        info(sor, filter="memory_mb <")
    assert "filter" in error.value.message and "memory_mb <" in error.value.message


def test_info_follows_relationships(sor, estate):
    direct = info(sor, related_to={"ci": "db01", "direction": "inbound", "transitive": False})
    assert [ci["name"] for ci in direct["configuration_items"]] == ["billing-db"]
    everything = info(sor, related_to={"ci": "db01", "direction": "inbound", "transitive": True})
    assert [ci["name"] for ci in everything["configuration_items"]] == ["billing", "billing-db", "reports"]
    only_depends = info(sor, related_to={"ci": "billing-db", "types": ["depends_on"], "transitive": True})
    assert [ci["name"] for ci in only_depends["configuration_items"]] == ["billing", "reports"]
    outbound = info(sor, related_to={"ci": "reports", "direction": "outbound", "transitive": True})
    assert [ci["name"] for ci in outbound["configuration_items"]] == ["billing", "billing-db", "db01"]
    with pytest.raises(NotFound):
        info(sor, related_to={"ci": "nope"})


def test_info_history_includes_runs_that_changed_the_host(sor, estate):
    sor.append([Entry("ci.changed_by_run", estate, {"ci_id": estate, "run_id": "run-77", "host": "db01"})])
    found = info(sor, name=["db01"], include_history=True)["configuration_items"][0]
    kinds = [item["kind"] for item in found["history"]]
    assert kinds[0] == "ci.created" and kinds[-1] == "ci.changed_by_run"
    assert found["history"][-1]["data"]["run_id"] == "run-77"
    assert found["history"][-1]["change_event"] is None  # no such run in the ledger (tests/integration/test_cmdb_history.py reads real ones)
    assert found["last_change_run_id"] == "run-77"
    assert len(info(sor, name=["db01"], include_history=True, history_limit=1)["configuration_items"][0][
        "history"]) == 1
