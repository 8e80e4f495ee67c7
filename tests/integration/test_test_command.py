# -*- coding: utf-8 -*-
"""The test command itself: what it does when a prerequisite is missing, and what its sanity stage logs.

- On the machine kind CI uses, a missing prerequisite fails the run instead of skipping (issue 20 item 17):
  scripts/test's molecule stage with no runner, and the hardening integration test with no systemd-nspawn
  or debootstrap. Elsewhere (``CHANGEOPS_STRICT_PREREQS=0``) both are skipped, saying why.
- scripts/demo installs only what the demo needs (issue 20 item 11): a venv with requirements.txt, none of the
  test tools scripts/test adds.
- ansible-test installs each sanity test's requirements with pip inside venvs it makes, passing none of our
  environment; the pip stand-in scripts/bootstrap gives it (scripts/ansible-test-get-pip.py) configures those
  venvs' pip to be quiet, so the sanity log holds no pip download output (issue 20 item 14).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv

import pytest

from support import prereqs
from support.project import REPO_ROOT

pytestmark = pytest.mark.integration

PIP_NOISE = re.compile(r"^ *(Collecting |Downloading |Using cached \S+\.(whl|tar\.gz|zip)|Installing collected packages|Successfully installed"
                       r"|Looking in |Requirement already satisfied)", re.M)


def clean_env(**extra):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ANSIBLE_", "CHANGEOPS_", "PIP_")) and key not in ("CI", "PYTEST_ADDOPTS")}
    env.update(extra)
    return env


def run_test_command(tmp_path, **extra):
    """scripts/test with only its molecule stage, pointed at a runner that does not exist."""
    env = clean_env(CHANGEOPS_SKIP_BOOTSTRAP="1", CHANGEOPS_TEST_STAGES="molecule",
                    CHANGEOPS_MOLECULE_RUNNER=str(tmp_path / "no-such-runner"),
                    CHANGEOPS_ARTIFACTS=str(tmp_path / "artifacts"), **extra)
    return subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "test")], cwd=REPO_ROOT, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)


def test_a_missing_molecule_runner_fails_the_test_command_on_ci(tmp_path):
    completed = run_test_command(tmp_path, CI="true")
    assert completed.returncode == 1, completed.stdout
    assert re.search(r"^molecule +FAILED \(exit 1\)", completed.stdout, re.M), completed.stdout
    assert "MISSING PREREQUISITE: molecule runner" in completed.stdout
    assert "stages: 0 passed, 1 failed, 0 skipped" in completed.stdout


def test_a_missing_molecule_runner_is_skipped_where_prerequisites_are_optional(tmp_path):
    completed = run_test_command(tmp_path, CHANGEOPS_STRICT_PREREQS="0")
    assert completed.returncode == 0, completed.stdout
    assert re.search(r"^molecule +skipped", completed.stdout, re.M), completed.stdout
    assert "stages: 0 passed, 0 failed, 1 skipped" in completed.stdout


@pytest.mark.parametrize("env, strict", [
    ({"CI": "true"}, True),
    ({"CI": "true", "CHANGEOPS_STRICT_PREREQS": "0"}, False),
    ({"CHANGEOPS_STRICT_PREREQS": "1"}, True),
    ({"CHANGEOPS_STRICT_PREREQS": "0"}, False),
])
def test_the_rule_that_decides_between_failing_and_skipping(monkeypatch, env, strict):
    for name in ("CI", "CHANGEOPS_STRICT_PREREQS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert prereqs.strict() is strict
    outcome = pytest.fail.Exception if strict else pytest.skip.Exception
    with pytest.raises(outcome, match="missing prerequisite: the thing"):
        prereqs.require(False, "the thing")
    prereqs.require(True, "the thing")  # present: neither


def test_the_hardening_test_fails_on_ci_without_systemd_nspawn(tmp_path):
    """Run the hardening integration test with a PATH that has Python but no systemd-nspawn or debootstrap."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, str(bin_dir / "python"))
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-k", "sqlite",
               os.path.join(REPO_ROOT, "tests", "integration", "test_hardening_role.py")]
    results = {}
    for name, extra in (("ci", {"CI": "true"}), ("laptop", {"CHANGEOPS_STRICT_PREREQS": "0"})):
        results[name] = subprocess.run(
            command, cwd=REPO_ROOT, env=clean_env(PATH=str(bin_dir), **extra), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300, check=False)
    ci, laptop = results["ci"], results["laptop"]
    assert ci.returncode == 1, ci.stdout
    assert "missing prerequisite: root and systemd-nspawn, debootstrap" in ci.stdout, ci.stdout
    assert laptop.returncode == 0 and re.search(r"\b1 skipped\b", laptop.stdout), laptop.stdout


def test_ansible_test_venvs_install_their_requirements_quietly(tmp_path):
    """A venv bootstrapped with the stand-in, as ansible-test does it, installs a package without pip chatter."""
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(str(target))
    python = str(target / "bin" / "python")
    env = clean_env(HOME=str(tmp_path))  # ansible-test passes HOME and PATH, no PIP_* variable
    bootstrap = subprocess.run([python, os.path.join(REPO_ROOT, "scripts", "ansible-test-get-pip.py"),
                                "--disable-pip-version-check", "--no-setuptools", "--no-wheel"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=300, check=False)
    assert bootstrap.returncode == 0, bootstrap.stdout
    assert bootstrap.stdout.strip() == "", bootstrap.stdout
    # what ansible-test's requirements step runs in that venv (it filters none of these lines itself)
    install = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "jmespath"], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, timeout=300, check=False)
    assert install.returncode == 0, install.stdout
    assert subprocess.run([python, "-c", "import jmespath"], check=False).returncode == 0
    assert not PIP_NOISE.search(install.stdout), install.stdout
    # and a failure still says what failed
    failing = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
                              "no-such-package-changeops"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True, timeout=300, check=False)
    assert failing.returncode != 0 and "no-such-package-changeops" in failing.stdout, failing.stdout


def test_the_demo_profile_installs_the_runtime_requirements_only(tmp_path):
    """What scripts/demo asks scripts/bootstrap for, in a copy of the repository without a venv."""
    copy = tmp_path / "clone"
    (copy / "scripts").mkdir(parents=True)
    for name in ("galaxy.yml", "requirements.txt", "requirements-dev.txt", "requirements-compat.txt",
                 os.path.join("scripts", "bootstrap")):
        shutil.copy(os.path.join(REPO_ROOT, name), str(copy / name))
    with open(os.path.join(REPO_ROOT, "scripts", "demo")) as handle:
        assert re.search(r"^ *CHANGEOPS_BOOTSTRAP_PROFILE=demo bash scripts/bootstrap$", handle.read(), re.M)
    completed = subprocess.run(["bash", str(copy / "scripts" / "bootstrap")], cwd=str(copy),
                               env=clean_env(CHANGEOPS_BOOTSTRAP_PROFILE="demo", HOME=str(tmp_path)),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout
    assert "apt-get" not in completed.stdout and "ansible-test" not in completed.stdout, completed.stdout
    python = str(copy / ".venv" / "bin" / "python")
    installed = subprocess.run([python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                               stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.lower()
    names = {line.split("==")[0] for line in installed.splitlines()}
    assert {"ansible-core", "jmespath"} <= names, names
    for tool in ("pytest", "ansible-lint", "molecule", "playwright", "ansible-navigator", "psycopg"):
        assert tool not in names, "the demo's venv has %s" % tool
    assert not (copy / ".venv-2.20").exists() and not (copy / ".venv-2.19").exists()
    stamp = (copy / ".venv" / ".requirements-stamp").read_text()
    assert "requirements.txt=" in stamp and "requirements-dev.txt" not in stamp, stamp
    assert os.path.islink(str(copy / ".build" / "collections" / "ansible_collections" / "changeops" / "itsm"))
