# -*- coding: utf-8 -*-
"""The collection's plugins work without the review service's optional dependencies (requirements-review.txt).

The review service imports module_utils, never the reverse. Two checks hold that:

* every Python file under ``plugins/`` is imported in the oldest supported line's venv (``.venv-2.19``,
  built from requirements-compat.txt, which has none of FastAPI, uvicorn, argon2-cffi, Authlib), after
  proving those are not importable there: an import of any of them anywhere in a plugin fails this test;
* in this venv (which has them), importing every plugin loads none of them and nothing of
  ``review_service``.
"""

from __future__ import annotations

import os
import subprocess
import sys

from support.prereqs import require
from support.project import COLLECTIONS_PATH, REPO_ROOT

SERVICE_ONLY = ("fastapi", "uvicorn", "argon2", "authlib", "starlette", "joserfc")

_IMPORT_ALL = r"""
import importlib, os, sys
root, names, probe = sys.argv[1], sys.argv[2].split(","), sys.argv[3] == "probe"
for name in names if probe else ():
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    raise SystemExit("%s is importable here: this check needs a venv without the review service's dependencies" % name)
failed, count = [], 0
for folder, _dirs, files in os.walk(os.path.join(root, "plugins")):
    for file_name in sorted(files):
        if not file_name.endswith(".py") or file_name == "__init__.py":
            continue
        relative = os.path.relpath(os.path.join(folder, file_name), root)[:-3].replace(os.sep, ".")
        module = "ansible_collections.changeops.itsm." + relative
        try:
            importlib.import_module(module)
            count += 1
        except Exception as exc:  # noqa
            failed.append("%s: %s: %s" % (module, type(exc).__name__, exc))
loaded = sorted(name for name in sys.modules if name.split(".")[0] in names or ".review_service" in name)
print("imported %d plugin files" % count)
if failed or loaded:
    raise SystemExit("\n".join(failed + ["loaded: %s" % ", ".join(loaded)] if loaded else failed))
"""


def test_every_plugin_imports_in_a_venv_without_the_service_dependencies():
    python = os.path.join(REPO_ROOT, ".venv-2.19", "bin", "python")
    require(os.path.exists(python), ".venv-2.19 (scripts/bootstrap builds it from requirements-compat.txt)")
    result = subprocess.run([python, "-c", _IMPORT_ALL, os.path.join(COLLECTIONS_PATH, "ansible_collections",
                                                                     "changeops", "itsm"), ",".join(SERVICE_ONLY), "probe"],
                            env=dict(os.environ, PYTHONPATH=COLLECTIONS_PATH), capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imported" in result.stdout


def test_importing_every_plugin_loads_nothing_of_the_service():
    result = subprocess.run([sys.executable, "-c", _IMPORT_ALL, os.path.join(
        COLLECTIONS_PATH, "ansible_collections", "changeops", "itsm"), ",".join(SERVICE_ONLY), "no-probe"],
        env=dict(os.environ, PYTHONPATH=COLLECTIONS_PATH), capture_output=True, text=True, timeout=300,
        check=False)
    assert result.returncode == 0, result.stdout + result.stderr
