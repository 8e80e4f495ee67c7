# -*- coding: utf-8 -*-
"""The fork-safety audit every integration run carries (tests/support/fork_safety/sitecustomize.py) finds what
it is there to find: a module first imported on a thread other than the main one with our code on that thread's
stack, and nothing else (an import on the main thread, or on a thread running none of our code)."""

import os
import subprocess
import sys
import textwrap

import pytest

from support.project import FORK_SAFETY_DIR

#: stdlib modules no bare interpreter has imported yet (checked in the child before it imports them)
PROGRAM = textwrap.dedent("""
    import sys
    import threading

    for name in ("colorsys", "fractions", "wave"):
        assert name not in sys.modules, name

    def import_on_a_thread(name):
        __import__(name)

    def run(target, name):
        thread = threading.Thread(target=target, args=(name,), name="importer-" + name)
        thread.start()
        thread.join()

    {body}
""")


def run_audited(tmp_path, ours, body):
    """Run ``body`` from a file inside (``ours``) or outside a path of our collection; the audit's findings."""
    directory = tmp_path / ("ansible_collections/changeops/itsm/plugins" if ours else "elsewhere")
    directory.mkdir(parents=True)
    program = directory / "threaded.py"
    program.write_text(PROGRAM.format(body=body))
    audit = tmp_path / "audit.log"
    env = dict(os.environ, PYTHONPATH=FORK_SAFETY_DIR, FORK_SAFETY_AUDIT=str(audit))
    subprocess.run([sys.executable, str(program)], env=env, check=True, timeout=60)
    return audit.read_text() if audit.exists() else ""


def test_an_import_on_a_thread_running_our_code_is_reported_with_its_thread_and_stack(tmp_path):
    findings = run_audited(tmp_path, True, "run(import_on_a_thread, 'colorsys')")
    assert "thread importer-colorsys imported colorsys" in findings
    assert "in import_on_a_thread" in findings  # the importing thread's stack, our function on it


@pytest.mark.parametrize("ours, body", [
    (True, "import fractions"),  # the main thread: Ansible forks from it, so it never holds an import lock then
    (False, "run(import_on_a_thread, 'wave')"),  # a thread running none of our code
], ids=["main thread", "not our code"])
def test_what_cannot_hang_a_worker_of_ours_is_not_reported(tmp_path, ours, body):
    assert run_audited(tmp_path, ours, body) == ""
