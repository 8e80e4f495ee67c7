# -*- coding: utf-8 -*-
"""Property-based tests (hypothesis) of policy evaluation and of the change request state machine."""

from __future__ import annotations

import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.changeops.itsm.plugins.module_utils import change_policy
from ansible_collections.changeops.itsm.plugins.module_utils.change_gate import build_change_context, decide
from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import (
    STATES,
    TERMINAL_STATES,
    TYPES,
    allowed_transitions,
    transition_problem,
)

UTC = datetime.timezone.utc
NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
TAGS = st.sampled_from(["patching", "web", "db", "ssh", "sudoers", "deploy", "firewall", "users"])
ROLES = st.sampled_from(["nginx", "ssh_hardening", "patching", "postgresql", "sudo_rules", "app"])
MODULES = st.sampled_from(["ansible.builtin.copy", "ansible.builtin.apt", "ansible.builtin.user",
                           "community.general.ufw", "ansible.builtin.template", "ansible.builtin.service"])
PATHS = st.sampled_from(["/etc/nginx/nginx.conf", "/etc/ssh/sshd_config", "/etc/sudoers.d/ops", "/srv/app/env",
                         "/etc/pam.d/common-auth", "/var/www/index.html"])
ENVIRONMENTS = st.sampled_from(["dev", "test", "production"])
MOMENTS = st.datetimes(min_value=datetime.datetime(2026, 1, 1), max_value=datetime.datetime(2027, 12, 31),
                       timezones=st.just(UTC))


@st.composite
def contexts(draw):
    hosts = draw(st.lists(NAMES, min_size=1, max_size=30, unique=True))
    environments = {host: draw(st.one_of(st.none(), ENVIRONMENTS)) for host in hosts}
    cis = [{"name": host, "environment": env, "class": "cmdb_ci_linux_server", "attributes": {}}
           for host, env in environments.items() if draw(st.booleans()) or env]
    play = {"name": draw(NAMES), "tags": draw(st.lists(TAGS, unique=True, max_size=4)),
            "roles": draw(st.lists(ROLES, unique=True, max_size=3)),
            "modules": draw(st.lists(MODULES, unique=True, max_size=4)),
            "paths": draw(st.lists(PATHS, unique=True, max_size=3))}
    for field, _key, _text, _avoid in change_policy.BLIND_SPOTS:
        play[field] = draw(st.lists(st.sampled_from(["pb.yml:3 x", "pb.yml:9 y"]), unique=True, max_size=1))
    return build_change_context(play, hosts, {}, cis, "alice", False, draw(MOMENTS))


CONDITIONS = st.sampled_from([
    "contains(tags, 'patching')", "!contains(environments, 'production')", "length(hosts) <= `10`",
    "contains(roles, 'nginx')", "`true`", "host_count > `3`", "contains(modules, 'ansible.builtin.apt')",
    "length(hosts_without_ci) == `0`",
])


@st.composite
def policies(draw):
    templates = []
    for index in range(draw(st.integers(min_value=0, max_value=5))):
        template = {"name": "t%d" % index, "conditions": draw(st.lists(CONDITIONS, min_size=1, max_size=3))}
        if draw(st.booleans()):
            template["max_hosts"] = draw(st.integers(min_value=1, max_value=40))
        if draw(st.booleans()):
            template["environments"] = draw(st.lists(ENVIRONMENTS, min_size=1, unique=True))
        for _field, key, _text, _avoid in change_policy.BLIND_SPOTS:
            if draw(st.booleans()):
                template[key] = draw(st.booleans())
        templates.append(template)
    freezes = []
    if draw(st.booleans()):
        start = draw(MOMENTS).replace(tzinfo=None)
        freezes.append({"name": "f", "start": start.isoformat(),
                        "end": (start + datetime.timedelta(days=draw(st.integers(1, 30)))).isoformat(),
                        "timezone": "Europe/Paris",
                        "environments": draw(st.lists(ENVIRONMENTS, unique=True, max_size=2)),
                        "allowed_change_types": draw(st.lists(st.sampled_from(["standard", "normal", "emergency"]),
                                                              unique=True, max_size=2))})
    return change_policy.parse_policy({"templates": templates, "freezes": freezes}, "generated.yml")


def _oracle_covers(template, context):
    """An independent reading of one template: conditions, then limits, without the cache."""
    for text, compiled in template.conditions:
        if not change_policy.truthy(compiled.search(context)):
            return False
    if template.max_hosts is not None and len(context["hosts"]) > template.max_hosts:
        return False
    # what the gate cannot see is covered only where the template says so
    for field, _key, _text, _avoid in change_policy.BLIND_SPOTS:
        if context[field] and field not in template.allow:
            return False
    if template.environments is not None:
        for host in context["hosts"]:
            ci = next((ci for ci in context["cis"] if ci["name"] == host), None)
            if ci is None or ci["environment"] not in template.environments:
                return False
    return True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), context=contexts(), now=MOMENTS)
def test_standard_evaluation_agrees_with_a_per_host_oracle(policy, context, now):
    result = change_policy.evaluate_standard(policy, context, now)
    expected = [t.name for t in policy.templates if _oracle_covers(t, context)]
    assert result["covered_by"] == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), context=contexts(), now=MOMENTS)
def test_a_standard_decision_is_allowed_exactly_when_nothing_stands_in_the_way(policy, context, now):
    decision = decide(policy, context, now, user="alice")
    assert decision["allowed"] == (decision["reasons"] == [])
    covered = change_policy.evaluate_standard(policy, context, now)["covered_by"]
    touched = change_policy.protected_areas_touched(policy, context)
    blocking = [f for f in change_policy.freezes_in_force(policy, context, now)
                if "standard" not in f.allowed_change_types]
    assert decision["allowed"] == bool(covered and not touched and not blocking)
    if decision["allowed"]:
        assert decision["type"] == "standard" and decision["reference"] in covered
    else:
        assert decision["type"] == "denied" and decision["reference"] is None
        # every protected area touched is named in a reason
        for touch in touched:
            assert any("protected area %s " % touch["area"] in reason for reason in decision["reasons"])


@settings(max_examples=100, deadline=None)
@given(policy=policies(), context=contexts(), now=MOMENTS, extra=CONDITIONS)
def test_adding_a_condition_never_widens_a_template(policy, context, now, extra):
    before = set(change_policy.evaluate_standard(policy, context, now)["covered_by"])
    for template in policy.templates:
        template.conditions = template.conditions + [(extra, change_policy.jmespath.compile(extra))]
    policy.expressions.setdefault(extra, change_policy.jmespath.compile(extra))
    after = set(change_policy.evaluate_standard(policy, context, now)["covered_by"])
    assert after <= before


@settings(max_examples=300, deadline=None)
@given(days=st.lists(st.sampled_from(change_policy.WEEKDAYS), min_size=1, unique=True),
       start=st.integers(0, 24 * 60 - 1), end=st.integers(1, 24 * 60), now=MOMENTS)
def test_time_window_membership_matches_minute_arithmetic(days, start, end, now):
    if start == end:
        return
    window = change_policy.TimeWindow(days, start, end, UTC, "UTC")
    minute = now.hour * 60 + now.minute
    today = change_policy.WEEKDAYS[now.weekday()]
    yesterday = change_policy.WEEKDAYS[(now.weekday() - 1) % 7]
    if start < end:
        expected = today in days and start <= minute < end
    else:
        expected = (minute >= start and today in days) or (minute < end and yesterday in days)
    assert window.contains(now) == expected


# --------------------------------------------------------------------------
# the change request state machine
# --------------------------------------------------------------------------
def _record(change_type, state, approval="approved", close_code="successful"):
    return {"number": "CHG0000001", "type": change_type, "state": state, "approval": approval,
            "close_code": close_code}


@settings(max_examples=300, deadline=None)
@given(change_type=st.sampled_from(TYPES), walk=st.lists(st.sampled_from(STATES), max_size=30),
       approved=st.booleans())
def test_random_walks_only_take_legal_steps(change_type, walk, approved):
    record = _record(change_type, "new", approval="approved" if approved else "requested")
    visited = ["new"]
    for target in walk:
        problem = transition_problem(record, target)
        if target == record["state"]:
            assert problem is None
            continue
        if problem is None:
            assert target in allowed_transitions(change_type, record["state"])
            if target == "scheduled" and change_type != "standard":
                assert approved, "a normal or emergency change was scheduled without approval"
            record["state"] = target
            visited.append(target)
        else:
            assert record["number"] in problem
    # closed is reached only through review; terminal states are final
    if "closed" in visited:
        assert visited[visited.index("closed") - 1] == "review"
        assert visited[-1] == "closed"
    if "cancelled" in visited:
        assert visited[-1] == "cancelled"


@given(change_type=st.sampled_from(TYPES), state=st.sampled_from(STATES))
def test_terminal_states_have_no_way_out_and_open_ones_can_always_end(change_type, state):
    targets = allowed_transitions(change_type, state)
    if state in TERMINAL_STATES:
        assert targets == ()
    else:
        assert targets, "an open change request must be able to move"
        # from any open state, the first allowed step is the forward one, and following it reaches closed
        current, steps = state, 0
        while current != "closed":
            current = allowed_transitions(change_type, current)[0]
            steps += 1
            assert steps <= len(STATES)
