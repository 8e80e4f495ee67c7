"""Offline stand-in for get-pip.py, installed by changeops.itsm's scripts/bootstrap for ansible-test.

ansible-test bootstraps pip in each virtualenv it makes for a sanity test by running
~/.ansible/test/cache/get_pip_<version>.py (through its quiet_pip wrapper, inside the new venv) with
pip-install arguments, e.g. ``--disable-pip-version-check pip==X --no-setuptools --no-wheel``, and
downloads that script from a host this machine cannot reach when the file is missing. This stand-in
seeds pip from the standard library's ensurepip, then installs what it was asked for from the
configured index.

It also writes the venv's own pip configuration (``<venv>/pip.conf``: quiet): ansible-test then
installs each test's requirements with that pip, passing none of our environment (PIP_QUIET would be
dropped), and pip's download chatter would otherwise fill the sanity log (issue 20 item 14). Errors
are still printed.
"""
import os
import subprocess
import sys

IGNORED = {"--no-setuptools", "--no-wheel"}
NOISE = ("WARNING: Location ", "Looking in ")
PIP_CONF = """# written by changeops.itsm's ansible-test pip stand-in: keep ansible-test's requirement installs quiet
[global]
quiet = 2
progress-bar = off
"""


def run(cmd):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if not line.startswith(NOISE)]
    if proc.returncode or any("ERROR" in line for line in lines):
        print("\n".join(lines))
    if proc.returncode:
        sys.exit(proc.returncode)


def main():
    if sys.prefix != sys.base_prefix:  # only ever configure a virtualenv's own pip, never a system one
        with open(os.path.join(sys.prefix, "pip.conf"), "w", encoding="utf-8") as handle:
            handle.write(PIP_CONF)
    run([sys.executable, "-m", "ensurepip", "--default-pip"])
    args = [a for a in sys.argv[1:] if a not in IGNORED]
    if any(not a.startswith("-") for a in args):
        run([sys.executable, "-m", "pip", "install", "-q"] + args)


if __name__ == "__main__":
    main()
