# -*- coding: utf-8 -*-
"""The metrics' modules import whole at the top, in any order: computing metrics imports no module of the
collection late. The register's refresh computes them on a thread while Ansible forks workers, and a worker forked
while that thread held an import's lock would wait on it for ever (the fork-safety audit of the integration runs
watches for such imports; this pins the metrics' own, which an import cycle once made late)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from support.project import COLLECTIONS_PATH

PACKAGE = "ansible_collections.changeops.itsm.plugins.module_utils."
#: the rules, the raw computation, the figures from the rollups and the projectors that keep the rollups
METRIC_MODULES = ("intelligence.metric_rules", "intelligence.metrics", "intelligence.metrics_rollup",
                  "system_of_record.metric_rollups")


def run_child(program):
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(program)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, check=False, timeout=120,
                               env=dict(os.environ, PYTHONPATH=COLLECTIONS_PATH))
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


@pytest.mark.parametrize("first", METRIC_MODULES)
def test_each_metrics_module_imports_first_in_a_fresh_interpreter(first):
    # an import cycle between modules that import each other at the top fails in one of the orders
    order = [first] + [name for name in METRIC_MODULES if name != first]
    run_child("""
        import importlib
        for name in %r:
            importlib.import_module(%r + name)
    """ % (order, PACKAGE))


@pytest.mark.parametrize("use_rollups", [True, False], ids=["rollups", "raw"])
def test_computing_metrics_imports_nothing_late(tmp_path, use_rollups):
    late = json.loads(run_child("""
        import datetime
        import json
        import sys

        from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import metrics
        from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (
            open_system_of_record,
        )

        sor = open_system_of_record({"backend": "sqlite", "sqlite_path": %r})
        assert sor.has_metric_rollups
        loaded = set(sys.modules)
        until = datetime.datetime(2026, 12, 7, tzinfo=datetime.timezone.utc)
        metrics.compute(sor, until - datetime.timedelta(days=30), until, group_by="service", use_rollups=%r)
        print(json.dumps(sorted(name for name in set(sys.modules) - loaded if name.startswith("ansible_collections."))))
    """ % (str(tmp_path / "ledger.sqlite"), use_rollups)))
    assert late == []
