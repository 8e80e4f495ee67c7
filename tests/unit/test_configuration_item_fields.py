# -*- coding: utf-8 -*-
"""configuration_item: every validation error names the field, and the value, it is about (every backend)."""

from __future__ import annotations

import math

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils import cmdb
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

NAN, INF = float("nan"), float("inf")


def configuration_item(sor, **params):
    full = {name: spec.get("default") for name, spec in cmdb.CONFIGURATION_ITEM_SPEC.items()}
    full.update(params)
    return cmdb.configuration_item(OperationContext(sor, full))


BAD = [
    # (arguments, the field the error must name)
    (dict(attributes={"load": NAN}), "attributes.load"),
    (dict(attributes={"load": INF}), "attributes.load"),
    (dict(attributes={"metrics": {"cpu": [1.0, -INF]}}), "attributes.metrics.cpu[1]"),
    (dict(attributes={"owner": {"scores": {"risk": NAN}}}), "attributes.owner.scores.risk"),
    (dict(attributes={"fqdn": NAN}), "attributes.fqdn"),
    (dict(attributes={"services": [NAN]}), "attributes.services[0]"),
    (dict(attributes={"status": INF}), "attributes.status"),
    (dict(attributes={"status": "broken"}), "attributes.status"),
    (dict(attributes={"environment": 3}), "attributes.environment"),
    (dict(attributes={"name": ""}), "attributes.name"),
    (dict(attributes={" padded ": 1}), "attributes"),
    (dict(attributes=["not", "a", "dict"]), "attributes"),
    (dict(name=NAN), "name"),
    (dict(ci_class=INF), "ci_class"),
    (dict(name="new-ci", ci_class=None), "ci_class"),
    (dict(state="gone"), "state"),
    (dict(relationships=[{"type": "eats", "target": "db01"}]), "relationships[0].type"),
    (dict(relationships=[{"type": "runs_on", "target": "nowhere"}]), "relationships[0].target"),
    (dict(relationships=["db01"]), "relationships[0]"),
    (dict(relationship_types=["Not A Type"]), "relationship_types"),
    (dict(name=None, ci_id="ci-missing"), "ci_id"),
]


@pytest.mark.parametrize("arguments, field", BAD, ids=[field + "-%d" % n for n, (_a, field) in enumerate(BAD)])
def test_every_validation_error_names_its_field(sor, arguments, field):
    params = dict({"name": "web01", "ci_class": "cmdb_ci_linux_server"}, **arguments)
    with pytest.raises(ChangeopsError) as raised:
        configuration_item(sor, **params)
    assert raised.value.details.get("field") == field
    assert raised.value.message.startswith(field), raised.value.message
    assert "Out of range float" not in raised.value.message
    # details go into the task result as JSON: never a NaN or an infinity there either
    value = raised.value.details.get("value")
    assert not (isinstance(value, float) and not math.isfinite(value))
    assert sor.find_cis() == [], "nothing written"


def test_finite_numbers_and_numbers_as_strings_are_stored(sor):
    result = configuration_item(sor, name="web01", ci_class="cmdb_ci_linux_server",
                                attributes={"load": 0.25, "limit": "inf", "ratio": 1e308})
    assert result["changed"] and sor.get_ci(result["ci_id"])["attributes"]["limit"] == "inf"
