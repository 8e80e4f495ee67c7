# -*- coding: utf-8 -*-
"""The gate's fast paths decide exactly as the paths they replaced, on both backends.

The gate-speed work (bench/gate_task) changed how the gate reads and assembles what it decides on: one
set-based read per kind of the play's host CIs (only their service facet) and of the relationships a blast
radius walks, host CIs grouped only for names several CIs share, inventory groups found per group instead of
a host -> groups map, and one lean pass per host for the change context. Here a seeded estate with every
case those paths distinguish (a host CI sharing its name with an application CI, two host CIs sharing a name
and the identity that settles it, a name only applications carry, hosts missing from the CMDB or without an
environment, services listed out of order, a cyclic dependency graph, change requests overlapping now, a
run in progress and a stale one, a maintenance window on a group) goes through ``change_gate.run_gate``
twice: once as the gate now runs, once through the reference of main (``support/gate_reference.py``, over
the interface's generic reads of whole CI documents), and the decisions must be identical: allowed or
not, type, reasons, rule ids, collisions, blast radius and the recorded context.
"""

from __future__ import annotations

import datetime
import random
import types
import uuid

import pytest

from support import gate_reference

from ansible_collections.changeops.itsm.plugins.action.change_gate import InventoryGroups
from ansible_collections.changeops.itsm.plugins.module_utils import change_gate, change_policy, cmdb_identity
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.errors import BackendUnavailable
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import gate as intelligence, graph
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import base, intelligence as queries

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
HOSTS = ["h%02d" % number for number in range(40)] + ["orphan01", "nowhere01"]
ENVIRONMENTS = ["test", "staging", "production", None]
CRITICALITIES = ["1", "high", "3 - moderate", "low", "2"]
GROUPS = {"all": HOSTS, "ungrouped": ["nowhere01"], "web": HOSTS[:20], "db": HOSTS[20:40], "dc0": HOSTS[:40:3],
          "elsewhere": ["not-in-play"]}

POLICY = {
    "collisions": {"running_runs": {"standard": "deny", "normal": "warn", "emergency": "allow"},
                   "change_requests": "warn", "maintenance_windows": {"standard": "deny", "normal": "warn"}},
    "blast_radius": {"max_depth": 3, "max_items": 10},
    "maintenance_windows": [
        {"name": "backups", "owner": "backup-team", "cron": "0 0 * * *", "timezone": "UTC", "duration": "24h",
         "groups": ["dc0"]},
        {"name": "batch", "owner": "data-team", "cron": "0 0 * * *", "timezone": "UTC", "duration": "24h",
         "services": ["app-02"]},
        {"name": "elsewhere", "owner": "nobody", "cron": "0 0 * * *", "timezone": "UTC", "duration": "24h",
         "groups": ["elsewhere"]},
    ],
    "templates": [
        {"name": "routine", "conditions": ["contains(tags, 'routine')", "blast_radius.service_count < `100`"],
         "max_hosts": 100, "environments": ["test", "staging"]},
        {"name": "few-production", "conditions": ["length(cis[?environment=='production']) < `50`",
                                                  "contains(groups, 'web')"]},
        {"name": "critical-only", "conditions": ["blast_radius.highest_criticality == `1`",
                                                 "contains(services, 'shop')"]},
    ],
}


def ci_entry(ci_id, name, identities=None, **attributes):
    attributes = dict(attributes, name=name)
    return Entry("ci.created", ci_id, {"ci_id": ci_id, "identities": identities or {}, "attributes": attributes})


def seed(sor):
    entries = []
    for number, host in enumerate(HOSTS[:40]):
        attributes = {"class": "server", "status": "operational", "support_group": "team-%d" % (number % 3)}
        if ENVIRONMENTS[number % 4]:
            attributes["environment"] = ENVIRONMENTS[number % 4]
        if number % 3 == 0:
            attributes["services"] = ["blog", "shop"]  # as main's facets list them: by name
        elif number % 3 == 1:
            attributes["services"] = ["shop"]
        entries.append(ci_entry("ci-%s" % host, host, **attributes))
    # an application named like a host: never the host's CI
    entries.append(ci_entry("ci-app-h05", "h05", **{"class": "application", "criticality": "1"}))
    # two host CIs share a name: the one holding the host/<name> identity is the host's
    entries.append(ci_entry("ci-vm-h07", "h07", identities={"name": "host/h07"},
                            **{"class": "virtual_machine", "environment": "production", "services": ["vm-svc"]}))
    # two host CIs share a name and neither holds its identity: the first by CI id is the host's, whatever order
    # they were written in (ci-z first)
    entries.append(ci_entry("ci-z-dup", "dup01", **{"class": "server", "environment": "staging", "services": ["z"]}))
    entries.append(ci_entry("ci-a-dup", "dup01", **{"class": "server", "environment": "production",
                                                    "services": ["a"]}))
    # a name only applications carry: no CI for that host
    entries.append(ci_entry("ci-orphan-a", "orphan01", **{"class": "application"}))
    entries.append(ci_entry("ci-orphan-b", "orphan01", **{"class": "service"}))
    for number in range(15):
        app = "ci-app-%02d" % number
        entries.append(ci_entry(app, "app-%02d" % number, **{
            "class": "application", "environment": ENVIRONMENTS[number % 3],
            "criticality": CRITICALITIES[number % len(CRITICALITIES)], "owner": "owner-%d" % (number % 4)}))
    sor.append(entries)
    entries = []
    for number in range(15):
        app = "ci-app-%02d" % number
        for host in HOSTS[:40][(number * 3) % 40:(number * 3) % 40 + 3]:
            entries.append(Entry("ci.relationship_added", app, {"source": app, "type": "runs_on",
                                                                "target": "ci-%s" % host}))
        # a cycle through every application, and a chain deeper than max_depth
        entries.append(Entry("ci.relationship_added", app, {"source": app, "type": "depends_on",
                                                            "target": "ci-app-%02d" % ((number + 1) % 15)}))
    entries.append(Entry("ci.relationship_added", "ci-app-h05", {"source": "ci-app-h05", "type": "runs_on",
                                                                 "target": "ci-h06"}))
    sor.append(entries)

    def request(number, affected, start, end, approval="approved", state="scheduled"):
        record = {"number": number, "state": state, "type": "normal", "approval": approval,
                  "short_description": "change %s" % number, "requested_by": "team-%s" % number[-1],
                  "planned_start": format_time(start), "planned_end": format_time(end), "timezone": "UTC",
                  "affected_cis": affected, "approvals": []}
        return Entry("change_request.created", number, {"record": record, "base_version": 0})

    hour = datetime.timedelta(hours=1)
    sor.append([
        request("CHG0000001", ["h01", "h02", "h30"], NOW - hour, NOW + hour),
        request("CHG0000002", ["app-03"], NOW - hour, NOW + hour),
        request("CHG0000003", ["h01"], NOW - hour, NOW + hour, approval="requested", state="authorise"),
        request("CHG0000004", ["h01"], NOW + 24 * hour, NOW + 26 * hour),
        request("CHG0000009", HOSTS[:39], NOW - hour, NOW + 2 * hour),
    ])
    recent, stale = format_time(NOW - datetime.timedelta(minutes=1)), format_time(NOW - datetime.timedelta(days=2))
    for run_id, at, hosts in (("other-live", recent, ["h03", "h04", "zz"]), ("other-stale", stale, ["h05"])):
        sor.append([Entry("run.started", run_id, {"run_id": run_id, "started_at": at, "controller": "elsewhere",
                                                  "user": "ops", "pid": 1, "playbooks": ["other.yml"]}, at=at),
                    Entry("run.play", run_id, {"run_id": run_id, "play_id": "p", "hosts": hosts}, at=at)])


class _GenericReads(object):
    """The SQL backend with the interface's generic CI and relationship reads, as main's reference."""

    def __init__(self, sor):
        self._sor = sor
        self.find_ci_summaries = types.MethodType(base.SystemOfRecord.find_ci_summaries, sor)
        self.find_relationships = types.MethodType(base.SystemOfRecord.find_relationships, sor)

    def __getattr__(self, name):
        return getattr(self._sor, name)


def _main_context(*args, **_ci_documents):
    """main's context: every host's CI document, whatever the policy reads"""
    return gate_reference.build_change_context(*args)


def _no_lean_context(*_args):
    """main had no column-by-column path: every host CI as a record"""
    return None


class _MainCiSummaries(intelligence.CiSummaries):
    FACETS = None  # main read every facet of a host's CI


def gate(sor, params, tags, reference, policy_document=None):
    full = dict((name, option.get("default")) for name, option in change_gate.CHANGE_GATE_SPEC.items())
    full.update(fail_on_deny=False, **params)
    reads = _GenericReads(sor) if reference else sor
    ctx = OperationContext(reads, full, run_id="run-eq", actor="ops@controller")
    play = {"name": "fleet", "tags": list(tags), "playbook_name": "site.yml", "modules": ["ansible.builtin.apt"],
            "delegated_hosts": ["h39", "orphan01", "outside01"], "delegated_outside_play": ["outside01"],
            "play_host_count": len(HOSTS)}
    groups = (gate_reference.host_groups(HOSTS, {"groups": GROUPS}) if reference
              else InventoryGroups(GROUPS))
    policy = change_policy.parse_policy(policy_document or POLICY, "policy.yml")
    result = change_gate.run_gate(ctx, policy, play, HOSTS, groups, "play-1", uuid.uuid4().hex,
                                  now_func=lambda: NOW, progress=lambda message: None)
    decision = dict(result["decision"])
    decision.pop("decision_id")
    return decision


SCENARIOS = [
    pytest.param({}, ["routine"], id="standard"),
    pytest.param({}, ["other"], id="no-template"),
    pytest.param({"change_request": "CHG0000009"}, [], id="change-request"),
    pytest.param({"emergency": True, "justification": "the database is down for everyone"}, [], id="emergency"),
]


@pytest.mark.parametrize("whole_table_above", [2000, 4])
@pytest.mark.parametrize("params,tags", SCENARIOS)
def test_the_gate_decides_as_main_did(open_sor, monkeypatch, params, tags, whole_table_above):
    # 2000: the set-parameter reads (one bound list); 4: the whole-table reads a play over most of the estate takes
    monkeypatch.setattr(queries.IntelligenceQueries, "WHOLE_TABLE_ABOVE", whole_table_above)
    sor = open_sor()
    seed(sor)
    now_path = gate(sor, params, tags, reference=False)
    with monkeypatch.context() as reference:
        reference.setattr(change_gate, "find_host_cis", gate_reference.find_host_cis)
        reference.setattr(change_gate, "build_change_context", _main_context)
        reference.setattr(change_gate, "lean_change_context", _no_lean_context)
        reference.setattr(intelligence, "CiSummaries", _MainCiSummaries)
        main_path = gate(sor, params, tags, reference=True)
    assert now_path == main_path
    # not a vacuous comparison: the estate gives the gate something to find
    assert now_path["blast_radius"]["service_count"] > 0 and now_path["blast_radius"]["truncated"] is True
    assert {item["kind"] for item in now_path["collisions"]} == {"running_run", "change_request",
                                                                 "maintenance_window"}
    assert "orphan01" in now_path["context"]["hosts_without_ci"]
    if not params:
        assert now_path["allowed"] is False and now_path["reasons"]


def _templates(*templates):
    return dict(POLICY, templates=list(templates))


ROUTINE = {"name": "routine", "conditions": ["contains(tags, 'routine')", "blast_radius.service_count < `100`"],
           "max_hosts": 100}
#: policies whose conditions read the per-host CI documents (``cis``) or not, and whose environment limits the play
#: breaks (the reason lists the hosts outside them, from ``cis``) or not: and whether the gate builds them
POLICIES = [
    pytest.param(POLICY, True, id="condition-reads-cis"),
    pytest.param(_templates(ROUTINE, {"name": "prod-count", "conditions": [
        "length(sort_by(cis, &name)[?environment == 'production']) > `0`"]}), True, id="condition-reads-cis-sorted"),
    pytest.param(_templates(ROUTINE), False, id="nothing-reads-cis"),
    pytest.param(_templates(dict(ROUTINE, environments=["test", "staging", "production"])), False,
                 id="environment-limit-kept"),
    pytest.param(_templates(dict(ROUTINE, environments=["test", "staging"])), True, id="environment-limit-broken"),
    pytest.param(_templates(ROUTINE, {"name": "whole", "conditions": ["length(keys(@)) > `100`"]}), True,
                 id="condition-reads-whole-context"),
    pytest.param(_templates(ROUTINE, {"name": "starred", "conditions": ["length(*[?environment]) > `0`"]}), True,
                 id="condition-projects-the-context"),
]


@pytest.mark.parametrize("policy_document,builds_cis", POLICIES)
@pytest.mark.parametrize("params,tags", SCENARIOS[:2] + SCENARIOS[3:])
def test_the_ci_documents_are_built_only_when_deciding_reads_them(open_sor, monkeypatch, policy_document, builds_cis,
                                                                  params, tags):
    # a play's per-host CI documents (context["cis"]) are most of the context's cost at 10,000 hosts: built only
    # when a condition or an environment limit's reason reads them, and the decision is main's either way
    sor = open_sor()
    seed(sor)
    built = []
    host_records = change_gate._host_records  # pylint: disable=protected-access
    monkeypatch.setattr(change_gate, "_host_records",
                        lambda hosts, by_name, documents: (built.append(1) if documents else None) or host_records(
                            hosts, by_name, documents))
    now_path = gate(sor, params, tags, reference=False, policy_document=policy_document)
    assert bool(built) is builds_cis
    with monkeypatch.context() as reference:
        reference.setattr(change_gate, "find_host_cis", gate_reference.find_host_cis)
        reference.setattr(change_gate, "build_change_context", _main_context)
        reference.setattr(change_gate, "lean_change_context", _no_lean_context)
        reference.setattr(intelligence, "CiSummaries", _MainCiSummaries)
        main_path = gate(sor, params, tags, reference=True, policy_document=policy_document)
    assert now_path == main_path
    if policy_document is POLICIES[4].values[0] and tags == ["routine"]:
        # not vacuous: the limit's reason names hosts from their CI documents
        assert any("is allowed in environments staging, test only; h02" in reason for reason in now_path["reasons"])


@pytest.mark.parametrize("expression,keys", [
    ("contains(tags, 'x') && blast_radius.service_count < `5`", {"tags", "blast_radius"}),
    ("length(cis[?environment=='production']) < `50`", {"cis"}),
    ("sort_by(hosts_list, &cis)[0] | name", {"hosts_list"}),
    ("{a: cis, b: `1`}.a", {"cis"}),
    ("!(environments[0] == 'x') || not_null(user, 'y')", {"environments", "user"}),
    ("@.cis", None), ("*", None), ("[0]", None), ("[?x]", None), ("values(@)", None), ("length(@) > `3`", None),
])
def test_the_context_keys_a_condition_reads(expression, keys):
    import jmespath  # pylint: disable=import-outside-toplevel
    assert change_policy.context_keys_read(jmespath.compile(expression).parsed) == keys


def test_the_reads_and_the_context_agree_with_main(open_sor, monkeypatch):
    sor = open_sor()
    seed(sor)
    generic = _GenericReads(sor)
    for threshold in (2000, 4):
        monkeypatch.setattr(queries.IntelligenceQueries, "WHOLE_TABLE_ABOVE", threshold)
        ids = sorted(ci["ci_id"] for ci in sor.find_ci_summaries(names=HOSTS + ["app-03", "app-04"]))
        assert sor.find_ci_summaries(names=HOSTS, ci_ids=["ci-app-01"]) == generic.find_ci_summaries(
            names=HOSTS, ci_ids=["ci-app-01"])
        assert sor.find_ci_summaries(ci_ids=ids, facets=("service",)) == generic.find_ci_summaries(
            ci_ids=ids, facets=("service",))
        for kwargs in ({"targets": ids}, {"sources": ids[:5]}, {"sources": ids[:3], "targets": ids[3:]},
                       {"targets": ids, "types": ["runs_on"]}):
            assert sorted(sor.find_relationships(as_rows=True, **kwargs)) == sorted(
                generic.find_relationships(as_rows=True, **kwargs))
        found = cmdb_identity.find_host_cis(intelligence.CiSummaries(sor), HOSTS)
        main_found = gate_reference.find_host_cis(_MainCiSummaries(generic), HOSTS)
        assert list(found) == list(main_found)
        assert {name: ci["ci_id"] for name, ci in found.items()} == {
            name: ci["ci_id"] for name, ci in main_found.items()}
        assert found["h05"]["ci_id"] == "ci-h05" and found["h07"]["ci_id"] == "ci-vm-h07" and "orphan01" not in found
        play = {"name": "fleet", "delegated_hosts": ["h39", "orphan01"]}
        assert change_gate.build_change_context(
            play, HOSTS, InventoryGroups(GROUPS), list(found.values()), "ops", False, NOW) == \
            gate_reference.build_change_context(play, HOSTS, gate_reference.host_groups(HOSTS, {"groups": GROUPS}),
                                                list(main_found.values()), "ops", False, NOW)


@pytest.mark.parametrize("services", [["b", "a", " c "], "one, two", [1, None, "x"], [["nested"], "y"], None, []])
def test_the_context_normalises_odd_service_lists_as_main_did(services):
    cis = [{"name": "web01", "ci_id": "c1", "class": "server", "environment": "test", "status": "operational",
            "attributes": {"services": services}},
           {"name": "web02", "ci_id": "c2", "class": "server", "environment": "", "attributes": {"services": ["z"]}}]
    hosts = ["web01", "web02", "web03"]
    groups = {"all": hosts, "web": ["web01"]}

    def build(module, host_groups):
        try:
            return module.build_change_context({"name": "p"}, hosts, host_groups, cis, "ops", False, NOW)
        except Exception as exc:  # pylint: disable=broad-except
            return type(exc).__name__, str(exc)

    assert build(change_gate, InventoryGroups(groups)) == build(gate_reference,
                                                                gate_reference.host_groups(hosts, {"groups": groups}))


class _Relationships(object):
    """``find_relationships`` over a list of ``(source, type, target)``, rows in a shuffled order (the walk sorts)."""

    def __init__(self, rows, rng):
        self.rows = rows
        self.rng = rng

    def find_relationships(self, sources=None, targets=None, types=None, as_rows=False):
        assert as_rows
        found = [row for row in self.rows if (not types or row[1] in types) and (
            (targets is not None and row[2] in targets) or (sources is not None and row[0] in sources))]
        self.rng.shuffle(found)
        return found


@pytest.mark.parametrize("seed_value", range(30))
def test_the_one_direction_walk_reaches_what_main_reached(seed_value):
    # random graphs with cycles, shared targets, several types; every bound, both directions
    rng = random.Random(seed_value)
    nodes = ["n%02d" % number for number in range(30)]
    rows = sorted(set((rng.choice(nodes), rng.choice(("runs_on", "depends_on", "hosted_on")), rng.choice(nodes))
                      for _number in range(rng.randint(20, 90))))
    cmdb = _Relationships(rows, rng)
    compared = 0
    for direction in ("inbound", "outbound", "both"):
        for types in (None, ["runs_on", "depends_on"]):
            for max_depth, max_items in ((None, None), (2, None), (None, 5), (3, 12), (1, 1)):
                start = rng.sample(nodes, rng.randint(1, 6))
                now = graph.walk(cmdb, start, direction, types=types, max_depth=max_depth, max_items=max_items)
                main = gate_reference.walk(cmdb, start, direction, types=types, max_depth=max_depth,
                                           max_items=max_items)
                assert (list(now.reached.items()), now.truncated, now.depth) == (
                    list(main.reached.items()), main.truncated, main.depth)
                compared += bool(now.reached)
    assert compared > 10  # not vacuous: most walks reach something


ODD_TEXT = ["quote \" and back\\slash", "tab\tnew\nline", "caf\u00e9 \u2603 \U0001f680", "[1, 2]", "null", "  ", "0", "1",
            ""]
#: the unit separator joins a column's values in PostgreSQL's packed reads: a value holding it is read as rows
SEPARATOR_TEXT = "unit\x1fseparator"
PACKED_READS = (("ci_id, name, ci_class, status, environment", "FROM configuration_items"),
                ("ci_id, facet, value", "FROM ci_facets"),
                ("source, rel_type, target", "FROM ci_relationships"))


def _odd_entries(texts, first=0):
    cis, relationships = [], []
    for number, text in enumerate(texts, first):
        attributes = {"class": "server", "status": text}
        if text.strip():  # a blank service name is no facet (the context drops it either way: the test below)
            attributes["services"] = sorted([text, "svc %d" % number])  # as facets list them: by name
        if number % 2:
            attributes["environment"] = text
        cis.append(ci_entry("ci-odd-%d" % number, "odd %s" % text, **attributes))
        relationships.append(Entry("ci.relationship_added", "ci-odd-%d" % number, {
            "source": "ci-odd-%d" % number, "type": text, "target": "ci-odd-%d" % ((number + 1) % len(ODD_TEXT))}))
    return cis, relationships


def _spied_unpacking(sor, monkeypatch):
    """``[(table, unpacked)]`` of each packed read ``sor`` makes from now on (``unpacked``: False when it fell back)."""
    seen = []
    unpacked = sor._unpacked

    def spy(row, columns, rest):
        found = unpacked(row, columns, rest)
        seen.append((queries.FROM_TABLE.match(rest).group(1), found is not None))
        return found
    monkeypatch.setattr(sor, "_unpacked", spy)
    return seen


def test_packed_reads_give_the_values_rows_gave(open_sor, monkeypatch):
    # SQLite packs a read's columns into JSON arrays, PostgreSQL joins each column's values with a separator: text
    # that looks like JSON, escapes, characters outside the BMP, empty text beside missing environments (a null) must
    # come back exactly as the rows gave them, unpacked (not read again as rows)
    sor = open_sor()
    seen = _spied_unpacking(sor, monkeypatch)
    for entries in _odd_entries(ODD_TEXT):
        sor.append(entries)
    for columns, rest in PACKED_READS:
        packed = sor._packed_rows(columns, rest)
        plain = sor._query("SELECT %s %s" % (columns, rest))
        assert sorted(tuple(row) for row in packed) == sorted(tuple(row) for row in plain) and len(plain) >= 7
    assert seen == [(rest.split()[1], True) for _columns, rest in PACKED_READS]
    generic = _GenericReads(sor)
    names = ["odd %s" % text for text in ODD_TEXT]
    assert sor.find_ci_summaries(names=names) == generic.find_ci_summaries(names=names)
    ids = ["ci-odd-%d" % number for number in range(len(ODD_TEXT))]
    assert sorted(sor.find_relationships(targets=ids, as_rows=True)) == sorted(
        generic.find_relationships(targets=ids, as_rows=True))
    assert seen and all(unpacked for _table, unpacked in seen)

    # a value holding the separator: PostgreSQL reads that table again as rows, and so from the start afterwards
    for entries in _odd_entries([SEPARATOR_TEXT], first=len(ODD_TEXT)):
        sor.append(entries)
    for columns, rest in PACKED_READS:
        del seen[:]
        plain = sorted(tuple(row) for row in sor._query("SELECT %s %s" % (columns, rest)))
        assert sorted(tuple(row) for row in sor._packed_rows(columns, rest)) == plain
        assert seen == [(rest.split()[1], sor.packs_rows == "json")]
        del seen[:]
        assert sorted(tuple(row) for row in sor._packed_rows(columns, rest)) == plain
        assert seen == ([(rest.split()[1], True)] if sor.packs_rows == "json" else [])


@pytest.mark.parametrize("chosen", [
    "all", "first", "separator", [""], ["", "odd 0"], ["odd 0", None], [None], [], ["odd 1", "odd 1"],
    ["no such CI", "odd \U0001f680"]])
def test_a_set_parameter_matches_exactly_the_values_it_holds(open_sor, chosen):
    # PostgreSQL binds a set of text values as one text it splits (string_to_array) unless a value holds the
    # separator, is not text, or the set is one empty string (which would split into no value): then as an array.
    # Either way the rows are those whose column is one of the values, as Python's own test says.
    sor = open_sor()
    for entries in _odd_entries(ODD_TEXT + [SEPARATOR_TEXT]):
        sor.append(entries)
    names = [row[0] for row in sor._query("SELECT name FROM configuration_items")]
    named = {"all": names, "first": names[:1], "separator": ["odd " + SEPARATOR_TEXT, "odd 0"]}
    values = named[chosen] if isinstance(chosen, str) else chosen
    clause, params = sor._in_values("name", values)
    found = sorted(row[0] for row in sor._query("SELECT name FROM configuration_items WHERE " + clause, params))
    assert found == sorted(name for name in names if name in values)
    if sor.set_parameter == "any":
        text = all(isinstance(value, str) and "\x1f" not in value for value in values) and values not in ([], [""])
        assert ("string_to_array" in clause) == text


def test_a_table_too_large_to_pack_is_read_as_rows(open_sor, monkeypatch):
    sor = open_sor()
    for entries in _odd_entries(ODD_TEXT):
        sor.append(entries)
    names = ["odd %s" % text for text in ODD_TEXT]
    ids = ["ci-odd-%d" % number for number in range(len(ODD_TEXT))]

    def reads():
        return (sor.find_ci_summaries(names=names), sor.find_ci_summaries(ci_ids=ids, facets=("service",)),
                sorted(sor.find_relationships(targets=ids, as_rows=True)), sorted(sor.find_relationships(
                    sources=ids[:2], as_rows=True)))
    fetched = []
    query, queries_at_once = sor._query, sor._queries
    monkeypatch.setattr(sor, "_query", lambda sql, params=(): fetched.append(sql) or query(sql, params))
    monkeypatch.setattr(sor, "_queries", lambda statements: fetched.extend(sql for sql, _params in statements) or
                        queries_at_once(statements))
    packed_reads = reads()
    assert any("json_group_array" in sql or "string_agg" in sql for sql in fetched)  # packed while small
    del fetched[:]
    monkeypatch.setattr(sor, "PACK_ROWS_UP_TO", 3)
    monkeypatch.setattr(sor, "PACK_BYTES_UP_TO", 0, raising=False)
    monkeypatch.setattr(sor, "_pack_sizes", None, raising=False)  # (the sizes a PostgreSQL store keeps a minute)
    assert reads() == packed_reads
    assert not any("json_group_array" in sql or "string_agg" in sql for sql in fetched)
    assert any("max(rowid)" in sql or "pg_table_size" in sql for sql in fetched)


def test_packed_columns_without_null_flags_are_not_null_in_the_schema(open_sor):
    # PostgreSQL's packed reads carry no null flags for the columns PACKED_NOT_NULL lists: a column listed there
    # that the schema lets be null would come back '' where the database holds a null
    sor = open_sor()
    if sor.backend_name != "postgresql":
        pytest.skip("SQLite packs JSON arrays, which hold nulls; the list is PostgreSQL's")
    for table, columns in queries.PACKED_NOT_NULL.items():
        nullable = dict(sor._query("SELECT column_name, is_nullable FROM information_schema.columns "
                                   "WHERE table_schema = current_schema() AND table_name = ?", (table,)))
        assert {column: nullable.get(column) for column in columns} == {column: "NO" for column in columns}


def _by_ci(columns):
    """``{ci_id: (name, class, environment, sorted facet values)}`` of ``find_ci_columns`` columns."""
    values = {}
    for ci_id, value in zip(columns["facet_ci_id"], columns["facet_value"]):
        values.setdefault(ci_id, []).append(value)
    rows = zip(columns["ci_id"], columns["name"], columns["class"], columns["environment"])
    found = {ci_id: (name, ci_class, environment, sorted(values.pop(ci_id, [])))
             for ci_id, name, ci_class, environment in rows}
    assert not values  # no facet row of a CI not read
    return found


@pytest.mark.parametrize("pack_rows_up_to", [250000, 3])
@pytest.mark.parametrize("whole_table_above", [2000, 4])
def test_the_column_reads_agree_with_the_records(open_sor, monkeypatch, whole_table_above, pack_rows_up_to):
    # the gate reads the play's host CIs column by column (no record per CI): the same CIs, columns and services as
    # the records of find_ci_summaries / find_host_cis, names several CIs share settled the same way; packed, or as
    # rows (a table too large to pack: 3 rows on SQLite, no byte on PostgreSQL)
    monkeypatch.setattr(queries.IntelligenceQueries, "WHOLE_TABLE_ABOVE", whole_table_above)
    monkeypatch.setattr(queries.IntelligenceQueries, "PACK_ROWS_UP_TO", pack_rows_up_to)
    sor = open_sor()
    if pack_rows_up_to < 10:
        monkeypatch.setattr(sor, "PACK_BYTES_UP_TO", 0, raising=False)
    seed(sor)
    generic = _GenericReads(sor)
    generic.find_ci_columns = types.MethodType(base.SystemOfRecord.find_ci_columns, generic)
    names = HOSTS + ["app-03", "not-in-cmdb", "dup01"]
    records = {ci["ci_id"]: (ci["name"], ci["class"], ci["environment"], ci["attributes"].get("services", []))
               for ci in sor.find_ci_summaries(names=names, facets=("service",))}
    assert _by_ci(sor.find_ci_columns(set(names))) == records == _by_ci(generic.find_ci_columns(set(names)))
    assert len(records) > len(HOSTS) - 1  # not vacuous: the shared names' CIs are all there
    found = cmdb_identity.find_host_cis(intelligence.CiSummaries(sor), names)
    hosts = {name: ci["ci_id"] for name, ci in found.items()}
    for reads in (sor, generic):
        columns = cmdb_identity.find_host_ci_columns(reads, names)
        assert dict(zip(columns["name"], columns["ci_id"])) == hosts
        assert _by_ci(columns) == {ci_id: records[ci_id] for ci_id in hosts.values()}
    assert hosts["h05"] == "ci-h05" and hosts["h07"] == "ci-vm-h07" and "orphan01" not in hosts
    assert hosts["dup01"] == "ci-a-dup"
    assert cmdb_identity.find_host_ci_columns(sor, ["", None]) == dict(
        {key: [] for key in ("ci_id", "name", "class", "environment")}, facet_ci_id=[], facet_value=[])


def test_the_generic_column_read_gives_services_as_the_facet_rows_hold_them(sor):
    # a CI's services written oddly by another tool (a mapping, a nested list, a number): the SQL backends' facet
    # rows hold the names the CI records give; the interface's generic read gave the raw values, and the gate's
    # set of them failed on a mapping
    sor.append([ci_entry("ci-odd-1", "odd01", **{"class": "server", "services": {"a": 1}}),
                ci_entry("ci-odd-2", "odd02", **{"class": "server", "services": [["n"], "y", 7, None, " "]}),
                ci_entry("ci-odd-3", "odd03", **{"class": "server", "services": "single"})])
    generic = _GenericReads(sor)
    generic.find_ci_columns = types.MethodType(base.SystemOfRecord.find_ci_columns, generic)
    names = {"odd01", "odd02", "odd03"}
    assert _by_ci(generic.find_ci_columns(names)) == _by_ci(sor.find_ci_columns(names))
    assert _by_ci(sor.find_ci_columns(names))["ci-odd-3"][3] == ["single"]


@pytest.mark.parametrize("delegated", [[], ["h39", "orphan01", "outside01", "app-03"]])
@pytest.mark.parametrize("policy_document,builds_cis", POLICIES)
def test_the_lean_context_is_the_records_context(open_sor, policy_document, builds_cis, delegated):
    # the context and the host CI ids the blast radius starts from, column by column, are those of the records'
    # path; when deciding reads the per-host documents the lean path steps aside (None)
    sor = open_sor()
    seed(sor)
    policy = change_policy.parse_policy(policy_document, "policy.yml")
    documents_read = change_gate.ci_documents_read((policy,))
    play = {"name": "fleet", "tags": ["routine"], "delegated_hosts": delegated,
            "delegated_outside_play": [host for host in delegated if host not in HOSTS]}
    lean = change_gate.lean_change_context(sor, play, HOSTS, InventoryGroups(GROUPS), "ops", False, NOW,
                                           documents_read)
    if builds_cis:
        assert lean is None
        return
    host_cis = cmdb_identity.find_host_cis(intelligence.CiSummaries(sor), HOSTS + delegated)
    context = change_gate.build_change_context(play, HOSTS, InventoryGroups(GROUPS), list(host_cis.values()), "ops",
                                               False, NOW, ci_documents=documents_read)
    assert lean == (context, {ci["ci_id"]: name for name, ci in host_cis.items()})
    assert "cis" not in lean[0] and lean[0]["hosts_without_ci"] and lean[0]["hosts_without_environment"]
    assert lean[0]["delegated_cis"] or not delegated


def test_a_host_without_ci_is_named_even_when_the_column_read_returns_other_names(open_sor):
    # the lean path finds the hosts without a CI by a set test, not by counting the names read: a store whose read
    # returned a CI of another name (a looser name match) beside the play's hosts, one of them missing, must still
    # name that host (a count of names equal to the hosts' said every host had one: the environment limits and
    # conditions on hosts_without_ci then saw none)
    sor = open_sor()
    seed(sor)
    hosts = [host for host in HOSTS if host.startswith("h")][:4]
    real = sor.find_ci_columns

    class Loose(object):
        def __getattr__(self, name):
            return getattr(sor, name)

        def find_ci_columns(self, names, facet="service"):
            found = real(set(names) - {hosts[0]}, facet)
            found = {key: list(values) for key, values in found.items()}
            for key, value in (("ci_id", "ci-loose"), ("name", hosts[0].upper()), ("class", "server"),
                               ("environment", "production")):
                found[key].append(value)
            return found

    def documents_read(_environments):
        return False  # (nothing reads the per-host documents: the lean path itself is under test)

    play = {"name": "fleet", "tags": ["routine"], "delegated_hosts": [], "delegated_outside_play": []}
    lean = change_gate.lean_change_context(Loose(), play, hosts, InventoryGroups(GROUPS), "ops", False, NOW,
                                           documents_read)
    assert lean is not None and lean[0]["hosts_without_ci"] == [hosts[0]], lean and lean[0]["hosts_without_ci"]


GLOB_NAMES = ["sshd", "ssh", "/etc/ssh/sshd_config", "community.general.pamd", "pamd", "a]b", "x!y", "back\\slash",
              "caf\u00e9", "", "SSHD", "role-pam-x", "a.b"]
GLOB_PATTERNS = ["sshd", "ssh*", "*pam*", "/etc/ssh/sshd_config", "a]b", "x!y", "back\\slash", "caf\u00e9", "",
                 "[sS]shd", "ss?d", "a.b", "a?b", "[!s]*", "SSHD", "*"]


def test_glob_match_is_fnmatchcase():
    # protected areas compare literal patterns as they are (nothing compiled in the gate's fresh worker): the same
    # answers as fnmatch.fnmatchcase for literal and wildcard patterns alike
    import fnmatch  # pylint: disable=import-outside-toplevel
    for name in GLOB_NAMES:
        for pattern in GLOB_PATTERNS:
            assert change_policy.glob_match(name, pattern) is fnmatch.fnmatchcase(name, pattern), (name, pattern)


@pytest.mark.parametrize("extra_hosts,listed", [(1000 - len(HOSTS), True), (1001 - len(HOSTS), False)])
def test_a_large_batch_s_hosts_are_in_the_recorded_decision_only(open_sor, extra_hosts, listed):
    # the task result's decision lists up to RESULT_HOSTS_UP_TO hosts (Ansible carries the result back and converts it
    # for each callback: 10,000 names were about 10 ms of the gate task); the ledger's run.gate entry holds them all
    sor = open_sor()
    seed(sor)
    hosts = HOSTS + ["extra%04d" % number for number in range(extra_hosts)]
    full = dict((name, option.get("default")) for name, option in change_gate.CHANGE_GATE_SPEC.items())
    full.update(fail_on_deny=False)
    ctx = OperationContext(sor, full, run_id="run-large", actor="ops@controller")
    play = {"name": "fleet", "tags": ["routine"], "playbook_name": "site.yml", "modules": ["ansible.builtin.apt"],
            "play_host_count": len(hosts)}
    result = change_gate.run_gate(ctx, change_policy.parse_policy(POLICY, "policy.yml"), play, hosts,
                                  InventoryGroups(GROUPS), "play-1", uuid.uuid4().hex, now_func=lambda: NOW,
                                  progress=lambda message: None)
    decision = result["decision"]
    assert decision["host_count"] == len(hosts) == change_gate.RESULT_HOSTS_UP_TO + (0 if listed else 1)
    assert decision.get("hosts") == (hosts if listed else None)
    recorded = [entry for entry in sor.iter_entries(kinds=["run.gate"]) if entry.subject == "run-large"]
    assert [entry.data["hosts"] for entry in recorded] == [hosts]
    assert {key: value for key, value in recorded[0].data.items() if key not in ("hosts", "recorded")} == {
        key: value for key, value in decision.items() if key not in ("hosts", "recorded")}


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_fail_closed_decision_keeps_every_host(check_mode):
    # a decision the gate could not record (the system of record unreachable) is in its result only, and an ad-hoc
    # command's is recorded from that result (recorder/adhoc.py): its hosts stay whatever the batch's size
    hosts = ["host%04d" % number for number in range(change_gate.RESULT_HOSTS_UP_TO + 1)]
    result = change_gate.fail_closed({"fail_on_deny": False}, BackendUnavailable("the database is down"), NOW,
                                     {"name": "fleet"}, "play-1", hosts, check_mode)
    assert result["decision"]["hosts"] == hosts and result["decision"]["recorded"] is False


def test_a_read_of_host_cis_is_one_round_trip_once_the_table_sizes_are_known(open_sor, monkeypatch):
    # PostgreSQL checks the tables' sizes before packing: read once a minute per store, not before every read
    sor = open_sor()
    seed(sor)
    if sor.backend_name != "postgresql":
        pytest.skip("SQLite reads in process: a round trip is PostgreSQL's")
    names = set(HOSTS)
    first = sor.find_ci_columns(names)
    trips = []
    query, queries_at_once = sor._query, sor._queries
    monkeypatch.setattr(sor, "_query", lambda sql, params=(): trips.append(sql) or query(sql, params))
    monkeypatch.setattr(sor, "_queries", lambda statements: trips.append(statements) or queries_at_once(statements))
    assert sor.find_ci_columns(names) == first and len(trips) == 1
    monkeypatch.setattr(sor, "_pack_sizes", (sor._pack_sizes[0] - sor.PACK_SIZES_FOR_SECONDS - 1, sor._pack_sizes[1]))
    assert sor.find_ci_columns(names) == first and len(trips) == 3  # the sizes read again, then the read
