# -*- coding: utf-8 -*-
"""``ansible-galaxy collection build`` makes a tarball that installs and works, without local state in it.

The tarball is built from the working tree (where tests, demos and benchmarks leave artifacts, caches and
virtualenvs), installed into a fresh collections path, and the callback's documentation is read from that
installed copy only.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest
import yaml

from support.project import REPO_ROOT, VENV_BIN

pytestmark = [pytest.mark.integration]

#: local state that must never ship: (what it is, test for a path inside the tarball)
FORBIDDEN = (
    ("artifacts/", lambda path: path == "artifacts" or path.startswith("artifacts/")),
    ("virtualenvs", lambda path: any(part.startswith(".venv") for part in path.split("/"))),
    ("the .build tree", lambda path: path == ".build" or path.startswith(".build/")),
    ("hypothesis database", lambda path: path.startswith(".hypothesis")),
    ("python caches", lambda path: "__pycache__" in path.split("/") or path.endswith(".pyc")),
    ("ansible-test output", lambda path: path.startswith("tests/output")),
    ("benchmarks", lambda path: path == "bench" or path.startswith("bench/")),
    # developer tooling: users install the collection, they do not run its test suite from it
    ("the test suite (only tests/sanity ships)",
     lambda path: path.startswith("tests/") and not (path == "tests/sanity" or path.startswith("tests/sanity/"))),
    ("developer scripts", lambda path: path == "scripts" or path.startswith("scripts/")),
    ("test requirements", lambda path: path == "requirements-dev.txt"),
    ("pytest configuration", lambda path: path == "pytest.ini"),
)

#: what users need from the tarball: the plugins and roles, their documentation, the controller
#: requirements, the collection playbooks and the changelog
REQUIRED = ("README.md", "MANIFEST.json", "FILES.json", "meta/runtime.yml", "requirements.txt",
            "plugins/callback/change_recorder.py", "plugins/modules/change_gate.py", "roles/hardening/tasks/main.yml",
            "playbooks/change_register.yml", "docs/change-register.md", "changelogs/changelog.yaml")

#: galaxy tags that name a product the collection integrates with: (tag, path prefix of that integration)
PRODUCT_TAGS = (("servicenow", "plugins/"),)


def run(command, cwd, env):
    completed = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    assert completed.returncode == 0, "%s exited %d:\n%s" % (" ".join(command), completed.returncode, completed.stdout)
    return completed.stdout


def test_the_built_tarball_installs_and_documents_the_recorder(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CHANGEOPS_"))}
    env.update(HOME=str(tmp_path / "home"), ANSIBLE_HOME=str(tmp_path / "home" / ".ansible"), ANSIBLE_NOCOLOR="1",
               PATH=VENV_BIN + os.pathsep + env.get("PATH", ""))
    built = tmp_path / "built"
    # the working tree holds local state whenever tests or the demo ran (both directories are gitignored);
    # make sure of it, so the check below always has something to find
    probes = []
    for directory in ("artifacts", ".hypothesis"):
        probe = os.path.join(REPO_ROOT, directory, "collection-build-probe-%d.txt" % os.getpid())
        os.makedirs(os.path.dirname(probe), exist_ok=True)
        with open(probe, "w") as handle:
            handle.write("local state, not part of the collection\n")
        probes.append(probe)
    try:
        run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(built), REPO_ROOT],
            cwd=str(tmp_path), env=env)
    finally:
        for probe in probes:
            os.unlink(probe)
    [tarball] = list(built.iterdir())
    with open(os.path.join(REPO_ROOT, "galaxy.yml")) as handle:
        version = yaml.safe_load(handle)["version"]
    assert tarball.name == "changeops-itsm-%s.tar.gz" % version
    with tarfile.open(str(tarball)) as archive:
        paths = [member.name.lstrip("./") for member in archive.getmembers()]
    missing = [path for path in REQUIRED if path not in paths]
    assert not missing, "missing from the tarball: %s" % missing
    for what, forbidden in FORBIDDEN:
        found = [path for path in paths if forbidden(path)]
        assert not found, "%s in the tarball: %s" % (what, found[:10])
    with tarfile.open(str(tarball)) as archive:
        manifest = json.load(archive.extractfile([member for member in archive.getmembers()
                                                  if member.name.lstrip("./") == "MANIFEST.json"][0]))
    tags = manifest["collection_info"]["tags"]
    # tags say what is there: a product's tag only once some plugin integrates with it
    for tag, prefix in PRODUCT_TAGS:
        if tag in tags:
            assert [path for path in paths if path.startswith(prefix) and tag in path.lower()], (
                "galaxy.yml tags the collection %r, but no %s file is about %s" % (tag, prefix, tag))

    installed = tmp_path / "collections"
    run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", "-p", str(installed), str(tarball)],
        cwd=str(tmp_path), env=env)
    assert (installed / "ansible_collections" / "changeops" / "itsm" / "plugins" / "callback" / "change_recorder.py").is_file()

    env["ANSIBLE_COLLECTIONS_PATH"] = str(installed)
    doc = run([os.path.join(VENV_BIN, "ansible-doc"), "-t", "callback", "changeops.itsm.change_recorder"],
              cwd=str(tmp_path), env=env)
    assert str(installed) in doc, "ansible-doc did not read the installed copy:\n" + doc
    for option in ("spool_dir", "flush_interval", "redact_keys", "busy_timeout"):
        assert option in doc, doc
