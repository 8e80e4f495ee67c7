# -*- coding: utf-8 -*-
"""An execution environment with changeops.itsm in it, as ansible-builder 3 builds one (no container engine).

``ansible-builder create`` turns the documented EE definition (docs/examples/execution-environment.yml)
and the collection tarball into a build context; the generated Containerfile must install the supported
ansible-core range and ansible-runner, install the collection from the tarball, and run ansible-builder's
introspection over the installed collections. That introspection step is then run here, as the build's
builder stage runs it, over the tarball installed the way the galaxy stage installs it: it must find the
collection's meta/execution-environment.yml and yield its Python (jmespath, the PostgreSQL driver) and
system (git) requirements, which only works if those files are in the tarball.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from support.project import REPO_ROOT, VENV_BIN

pytestmark = pytest.mark.integration


def run(command, cwd, env):
    completed = subprocess.run(command, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    assert completed.returncode == 0, "%s exited %d:\n%s" % (" ".join(command), completed.returncode, completed.stdout)
    return completed.stdout


def requirement_names(lines):
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.match(r"[A-Za-z0-9_.\-]+(\[[^\]]*\])?", line).group(0).lower())
    return names


def test_ansible_builder_create_makes_a_context_that_installs_the_collection_and_its_needs(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CHANGEOPS_"))}
    env.update(HOME=str(tmp_path / "home"), ANSIBLE_NOCOLOR="1", PATH=VENV_BIN + os.pathsep + env.get("PATH", ""))
    with open(os.path.join(REPO_ROOT, "galaxy.yml")) as handle:
        version = yaml.safe_load(handle)["version"]
    work = tmp_path / "ee"
    work.mkdir()
    run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(work), REPO_ROOT],
        tmp_path, env)
    tarball = "changeops-itsm-%s.tar.gz" % version
    assert (work / tarball).is_file()
    shutil.copy(os.path.join(REPO_ROOT, "docs", "examples", "execution-environment.yml"), str(work))
    with open(str(work / "execution-environment.yml")) as handle:
        definition = yaml.safe_load(handle)
    assert definition["version"] == 3
    assert definition["dependencies"]["galaxy"]["collections"][0]["name"] == "/build/collections/" + tarball, (
        "docs/examples/execution-environment.yml names another version than galaxy.yml")

    output = run([os.path.join(VENV_BIN, "ansible-builder"), "create", "-f", "execution-environment.yml",
                  "-c", "context", "--output-filename", "Containerfile"], work, env)
    assert "Complete!" in output, output
    context = work / "context"
    containerfile = (context / "Containerfile").read_text()
    # the supported range of ansible-core, ansible-runner, the tarball, and the dependency introspection
    assert re.search(r'^ARG ANSIBLE_INSTALL_REFS="ansible-core>=2\.19,<2\.22 ansible-runner>=2\.4,<3"$',
                     containerfile, re.M), containerfile
    assert "ADD _build/collections /build/collections" in containerfile
    assert re.search(r"^RUN .*ansible-galaxy collection install .*-r requirements\.yml", containerfile, re.M)
    introspect = re.search(r"^RUN \$PYCMD /output/scripts/introspect\.py (introspect .*)$", containerfile, re.M)
    assert introspect, containerfile
    assert "/output/scripts/install-from-bindep" in containerfile
    assert (context / "_build" / "collections" / tarball).is_file()
    with open(str(context / "_build" / "requirements.yml")) as handle:
        assert yaml.safe_load(handle) == {"collections": [{"name": "/build/collections/" + tarball, "type": "file"}]}

    # the galaxy stage: install the tarball the context carries; the builder stage: introspect it
    collections = tmp_path / "usr-share-ansible"
    run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", "-p", str(collections),
         str(context / "_build" / "collections" / tarball)], tmp_path, env)
    pip_out, bindep_out = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    arguments = introspect.group(1).replace("/tmp/src/requirements.txt", str(pip_out)).replace(
        "/tmp/src/bindep.txt", str(bindep_out)).split()
    report = yaml.safe_load(run([os.path.join(VENV_BIN, "python"), str(context / "_build" / "scripts" / "introspect.py")]
                                + arguments + [str(collections)], tmp_path, env))
    collection_python = {"jmespath", "psycopg[binary]", "requests", "python-dateutil", "croniter"}
    assert requirement_names(report["python"]) == collection_python, report
    assert all(line.endswith("# from collection changeops.itsm") for line in report["python"] + report["system"])
    assert requirement_names(pip_out.read_text().splitlines()) == collection_python
    assert [line.split("#")[0].strip() for line in bindep_out.read_text().splitlines()] == [
        "git-core [platform:rpm]", "git [platform:dpkg]"]
