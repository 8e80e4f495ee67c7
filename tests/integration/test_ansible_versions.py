# -*- coding: utf-8 -*-
"""The collection on the ansible-core line of the Python running these tests.

scripts/test runs this file on every supported line: in the full suite on the main line (.venv,
ansible-core 2.21 on Python 3.13) and in its compatibility stages on .venv-2.20 (Python 3.12) and
.venv-2.19 (Python 3.11). On each line:

- the demo's playbooks (scripts/demo on this venv: every module, the gate, both roles, the cmdb
  inventory, the register, all recorded) print no deprecation warning caused by changeops.itsm,
  with ``ANSIBLE_DISPLAY_TRACEBACK=deprecated`` so that each warning names the code that caused it
  (tests/support/deprecations.py; every ``Project.run`` of the suite checks the same);
- the tarball ``ansible-galaxy collection build`` makes installs with that line's ``ansible-galaxy``,
  without a warning about the supported range, and ``ansible-doc`` renders every plugin and role
  from the installed copy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from support.deprecations import DEPRECATION_ENV, assert_no_deprecations_of_ours, our_deprecations
from support.project import REPO_ROOT, VENV_BIN, Project

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

pytestmark = pytest.mark.integration

VENV = os.path.dirname(VENV_BIN)


def _yaml(*path):
    with open(os.path.join(REPO_ROOT, *path)) as handle:
        return yaml.safe_load(handle)


GALAXY = _yaml("galaxy.yml")
RUNTIME = _yaml("meta", "runtime.yml")


def ansible_core_version():
    from ansible.release import __version__

    return __version__


def clean_env(home, **extra):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CHANGEOPS_"))}
    env.update(HOME=str(home), ANSIBLE_HOME=os.path.join(str(home), ".ansible"), ANSIBLE_NOCOLOR="1",
               PATH=VENV_BIN + os.pathsep + env.get("PATH", ""), **extra)
    return env


def run(command, env, cwd, timeout=900):
    completed = subprocess.run(command, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout, check=False)
    assert completed.returncode == 0, "%s exited %d:\n%s" % (
        " ".join(command), completed.returncode, completed.stdout[-20000:])
    return completed.stdout


def run_doc(command, env, cwd):
    """ansible-doc's output; its warnings (stderr) must not name the collection (ansible-core 2.21 warns about
    its own internal ``ansible._protomatter`` collection when it renders roles: not ours)."""
    completed = subprocess.run(command, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, timeout=900, check=False)
    assert completed.returncode == 0, "%s exited %d:\n%s\n%s" % (
        " ".join(command), completed.returncode, completed.stdout[-10000:], completed.stderr[-10000:])
    problems = [line for line in completed.stderr.splitlines()
                if re.search(r"WARNING|ERROR|Traceback", line) and "changeops" in line]
    assert not problems, "%s:\n%s" % (" ".join(command), "\n".join(problems))
    return completed.stdout


def test_this_line_is_inside_the_supported_range():
    version = tuple(int(part) for part in re.match(r"(\d+)\.(\d+)", ansible_core_version()).groups())
    assert (2, 19) <= version < (2, 22), ansible_core_version()
    assert RUNTIME["requires_ansible"] == ">=2.19.0,<2.22.0"
    python = {(2, 19): (3, 11), (2, 20): (3, 12), (2, 21): (3, 13)}[version]
    assert sys.version_info[:2] == python, "ansible-core %s is tested on Python %d.%d" % ((version,) + python)


def test_the_demo_prints_no_deprecation_of_ours(tmp_path):
    """Every plugin and role of the collection, recorded and gated, on this line: no deprecation of ours."""
    home, artifacts = tmp_path / "home", tmp_path / "artifacts"
    home.mkdir()
    env = clean_env(home, CHANGEOPS_DEMO_VENV=VENV, CHANGEOPS_DEMO_ARTIFACTS=str(artifacts), **DEPRECATION_ENV)
    output = run(["bash", os.path.join(REPO_ROOT, "scripts", "demo")], env, REPO_ROOT)
    assert "ansible-playbook [core %s]" % ansible_core_version() in run(
        [os.path.join(VENV_BIN, "ansible-playbook"), "--version"], env, tmp_path)
    assert_no_deprecations_of_ours(output, "scripts/demo on ansible-core %s" % ansible_core_version())

    # the demo really ran here: every playbook recorded, the gate's decisions among them
    sor = open_system_of_record({"backend": "sqlite", "sqlite_path": str(home / ".ansible" / "changeops" /
                                                                         "ledger.sqlite"), "busy_timeout": 60})
    try:
        events = sor.find_change_events(limit=100)
        assert {os.path.basename(event["playbook"]) for event in events} >= {
            "site.yml", "checklists.yml", "normal_change.yml", "ungated.yml", "report.yml"}
        assert {event["ansible_version"] for event in events} == {ansible_core_version()}
        # (whether a play changed a host depends on what earlier demo runs left on this machine)
        decisions = {(entry.data["type"], entry.data["allowed"]) for entry in sor.iter_entries(kinds=["run.gate"])}
        assert {("standard", True), ("normal", True)} <= decisions, decisions
    finally:
        sor.close()


def test_a_deprecation_our_code_causes_is_caught(tmp_path, sqlite_env):
    """The check above can fail: a filter plugin of the project that uses a deprecated API is named."""
    project = Project(tmp_path / "project", sqlite_env)
    project.write("filter_plugins/old_api.py", '''
        from ansible.utils.display import Display


        def old_api(value):
            Display().deprecated("old_api uses an interface that is going away", version="9.99")
            return value


        class FilterModule(object):
            def filters(self):
                return {"old_api": old_api}
        ''')
    project.write("pb.yml", """
        - name: Use the old API
          hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Filter a value
              ansible.builtin.debug:
                msg: "{{ 'x' | old_api }}"
        """)
    completed = project.run("pb.yml")  # (the project is not ours: Project.run's own check lets it pass)
    assert "old_api uses an interface that is going away" in completed.stdout
    found = our_deprecations(completed.stdout, roots=[project.root])
    assert len(found) == 1 and "filter_plugins/old_api.py" in found[0], completed.stdout
    assert our_deprecations(completed.stdout) == [], "a deprecation outside the collection counted as ours"


def test_the_tarball_installs_and_documents_every_plugin_and_role(tmp_path):
    home = tmp_path / "home"
    env = clean_env(home)
    built = tmp_path / "built"
    run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(built), REPO_ROOT],
        env, tmp_path)
    [tarball] = list(built.iterdir())
    assert tarball.name == "changeops-itsm-%s.tar.gz" % GALAXY["version"]

    installed = tmp_path / "collections"
    env["ANSIBLE_COLLECTIONS_PATH"] = str(installed)
    output = run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", "-p", str(installed),
                  str(tarball)], env, tmp_path)
    assert "changeops.itsm:%s was installed successfully" % GALAXY["version"] in output, output
    assert "WARNING" not in output, output
    root = installed / "ansible_collections" / "changeops" / "itsm"
    manifest = json.loads((root / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == GALAXY["version"]

    doc = [os.path.join(VENV_BIN, "ansible-doc")]
    expected = {
        "module": sorted(name[:-3] for name in os.listdir(os.path.join(REPO_ROOT, "plugins", "modules"))
                         if name.endswith(".py")),
        "callback": ["change_recorder"],
        "inventory": ["cmdb"],
        "role": sorted(name for name in os.listdir(os.path.join(REPO_ROOT, "roles"))
                       if os.path.isfile(os.path.join(REPO_ROOT, "roles", name, "meta", "argument_specs.yml"))),
        "filter": None,  # every filter the plugin files export
    }
    for plugin_type, names in expected.items():
        listed = json.loads(run_doc(doc + ["-t", plugin_type, "-l", "changeops.itsm", "--json"], env, tmp_path))
        if names is not None:
            assert sorted(listed) == ["changeops.itsm." + name for name in names], (plugin_type, sorted(listed))
        assert listed, "ansible-doc lists no %s plugin of changeops.itsm" % plugin_type
        undocumented = {name for name, summary in listed.items() if summary == "UNDOCUMENTED"}
        assert not undocumented, "undocumented %s plugins: %s" % (plugin_type, sorted(undocumented))
        documented = sorted(set(listed) - undocumented)
        rendered = json.loads(run_doc(doc + ["-t", plugin_type, "--json"] + documented, env, tmp_path))
        assert sorted(rendered) == documented, (plugin_type, sorted(rendered))
        for name, entry in rendered.items():
            body = entry.get("doc") or entry.get("entry_points", {}).get("main")
            assert body and (body.get("short_description") or body.get("description")), (name, entry)
            if plugin_type != "role":
                assert str(root) in body.get("filename", str(root)), "%s not read from the installed copy" % name
        text = run_doc(doc + ["-t", plugin_type] + documented, env, tmp_path)
        for name in documented:
            assert name in text, "ansible-doc -t %s did not render %s" % (plugin_type, name)
        # (run_doc also fails on a warning such as "Collection changeops.itsm does not support Ansible version":
        # requires_ansible in meta/runtime.yml covers every supported line)
