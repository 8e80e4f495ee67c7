# -*- coding: utf-8 -*-
"""What the README and docs claim about measurements says what was measured.

A figure without its scope misleads: ``bench/gate_eval`` times the gate's in-memory evaluation,
not a ``change_gate`` task (which also inspects the play, reads the system of record and writes
the ledger), and the README must say so next to the figure.
"""

from __future__ import annotations

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def paragraph_with(path, needle):
    with open(os.path.join(REPO, path), encoding="utf-8") as stream:
        paragraphs = re.split(r"\n\s*\n", stream.read())
    found = [paragraph for paragraph in paragraphs if needle in paragraph]
    assert found, "%s has no paragraph mentioning %s" % (path, needle)
    return " ".join(found[0].split())


def test_the_gate_eval_figure_says_it_is_the_in_memory_evaluation_only():
    text = paragraph_with("README.md", "`bench/gate_eval`")
    assert "in-memory evaluation only" in text, text
    for left_out in ("inspecting the play", "system of record", "ledger"):
        assert left_out in text, "the README's gate_eval paragraph does not say it leaves out %s: %s" % (left_out, text)
    # and the benchmark itself still measures only that (were it to time the whole task, the words would lie)
    with open(os.path.join(REPO, "bench", "gate_eval", "run.py"), encoding="utf-8") as stream:
        source = stream.read()
    # the published variant reads the policy from a system of record once per play, as the gate does;
    # nothing in the benchmark inspects a play or writes a decision to the ledger
    assert "read from it and validated once per play" in source
    assert "inspect_play" not in source and "sor.append" not in source and "finish(" not in source


def test_the_register_docs_say_what_counts_as_a_change_and_how_it_relates_to_the_recap():
    text = paragraph_with("docs/change-register.md", "**How it relates to Ansible's PLAY RECAP.**")
    assert "counts *tasks*" in text, text
    with open(os.path.join(REPO, "docs", "change-register.md"), encoding="utf-8") as stream:
        doc = stream.read()
    assert "## What counts as a change" in doc and "plugins/module_utils/change_scope.py" in doc
    for row in ("a loop of 6 changed items", "check mode", "changeops.itsm.register_host"):
        assert row in doc, row
