# -*- coding: utf-8 -*-
"""Separation of duties between real people: operating-system accounts the test creates.

Three accounts share one SQLite ledger (a directory of a group they all belong to): chgops-alice
and chgops-bob are in the OS group chgops-cab, which the published policy names as the approver
group; chgops-carol is not. Each runs ``ansible-playbook`` as herself (``runuser``), so every
identity the collection records comes from the account the process runs as, as it would on a
shared controller. Before this, ``approver:`` was free text anyone could type: the requester
approved their own request, anyone approved, in any state, and ran the play they alone approved.

Needs root (to create the accounts), as CI runs. The accounts cannot read root's home, where
pyenv's Python may live, so they run Debian's /usr/bin/python3.X of the same minor version when
there is one, else the test interpreter's own installation bind-mounted read-only at a path they
can reach (Debian 12 has no 3.13, the main line's Python), with the test virtual environment's
site-packages on its path.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import policy_store
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.audit import authorisations
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import os_identity
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

from support.change_requests import iso
from support.project import COLLECTIONS_PATH, ensure_collection_tree

pytestmark = [pytest.mark.integration, pytest.mark.backends("sqlite")]

CAB = "chgops-cab"
LEDGER_GROUP = "chgops-ledger"
ACCOUNTS = {"chgops-alice": [CAB], "chgops-bob": [CAB], "chgops-carol": []}
SYSTEM_PYTHON = "/usr/bin/python%d.%d" % sys.version_info[:2]
PYTHON_NAME = "python%d.%d" % sys.version_info[:2]

POLICY = """
approver_groups:
  cab:
    description: the change advisory board
    os_groups: [chgops-cab]
approvals:
  approvers: [cab]
"""

CHANGE_REQUEST = """
- name: Work on a change request
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Change request
      changeops.itsm.change_request:
        number: "{{ number | default(omit) }}"
        short_description: "{{ omit if number is defined else 'Rotate the web tier certificates' }}"
        affected_cis: "{{ omit if number is defined else ['web01'] }}"
        validate_cis: false
        planned_start: "{{ omit if number is defined else start }}"
        planned_end: "{{ omit if number is defined else end }}"
        state: "{{ state | default(omit) }}"
        approval: "{{ approval | default(omit) }}"
"""

GATED = """
- name: Implement the change
  hosts: web
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        change_request: "{{ number }}"
    - name: The change
      ansible.builtin.copy:
        content: "done"
        dest: "{{ playbook_dir }}/out/{{ lookup('ansible.builtin.env', 'USER') }}.txt"
        mode: "0664"
"""


def _run(command):
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _exists(lookup, name):
    try:
        lookup(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def accounts():
    """The three accounts and their groups, removed afterwards (and refreshed if a killed run left them)."""
    if os.geteuid() != 0:
        pytest.fail("separation-of-duties tests create OS accounts: run them as root (CI does)")
    for group in (CAB, LEDGER_GROUP):
        if not _exists(grp.getgrnam, group):
            _run(["groupadd", group])
    for name, groups in ACCOUNTS.items():
        if _exists(pwd.getpwnam, name):
            _run(["usermod", "-g", LEDGER_GROUP, "-G", ",".join(groups), name])
        else:
            command = ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "-g", LEDGER_GROUP, name]
            if groups:
                command[1:1] = ["-G", ",".join(groups)]
            _run(command)
    yield sorted(ACCOUNTS)
    for name in ACCOUNTS:
        subprocess.run(["userdel", name], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for group in (CAB, LEDGER_GROUP):
        subprocess.run(["groupdel", group], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def account_python():
    """An interpreter of the test's Python version that the accounts may run.

    Debian's own when it has this version; otherwise the installation the test venv was made from
    (``sys.base_prefix``, e.g. pyenv's under root's home) bind-mounted read-only below a directory
    anyone may enter, and unmounted afterwards.
    """
    if os.access(SYSTEM_PYTHON, os.X_OK):
        yield SYSTEM_PYTHON
        return
    base = os.path.realpath(sys.base_prefix)
    if not os.access(os.path.join(base, "bin", PYTHON_NAME), os.X_OK):
        pytest.fail("neither %s nor %s/bin/%s exists to run ansible-playbook as the test accounts"
                    % (SYSTEM_PYTHON, base, PYTHON_NAME))
    mount_root = tempfile.mkdtemp(prefix="changeops-sod-python-", dir="/tmp")
    os.chmod(mount_root, 0o755)
    target = os.path.join(mount_root, "base")
    os.mkdir(target)
    _run(["mount", "--bind", base, target])
    try:
        _run(["mount", "-o", "remount,bind,ro", target])
        yield os.path.join(target, "bin", PYTHON_NAME)
    finally:
        subprocess.run(["umount", target], check=False)
        shutil.rmtree(mount_root, ignore_errors=True)


@contextlib.contextmanager
def _group_writable():
    """Files root creates in the shared directory (the ledger's -wal and -shm) stay writable by the group."""
    previous = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(previous)


class SharedController(object):
    """One controller, one ledger, several people: a project and a ledger their group may write."""

    def __init__(self, root, python):
        self.root = root
        # a bind-mounted build of Python finds its libpython through its own lib/ (its RPATH names root's home)
        self.library_path = None if python == SYSTEM_PYTHON else os.path.join(os.path.dirname(os.path.dirname(python)), "lib")
        self.ledger = os.path.join(root, "ledger.sqlite")
        self.python = os.path.join(root, "python", "bin", "python")
        ledger_gid = grp.getgrnam(LEDGER_GROUP).gr_gid
        for directory in (root, os.path.join(root, "out")):
            os.makedirs(directory, exist_ok=True)
            os.chown(directory, 0, ledger_gid)
            os.chmod(directory, 0o2775)  # setgid: what anyone creates belongs to the ledger group
        with _group_writable():
            # Debian's Python with the test venv's packages: the accounts cannot enter root's pyenv
            subprocess.run([python, "-m", "venv", "--without-pip", os.path.join(root, "python")], check=True)
            site = subprocess.run([self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
            venv_site = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
            with open(os.path.join(site, "changeops-test.pth"), "w") as handle:
                handle.write(venv_site + "\n")
            self.write("ansible.cfg", """
                [defaults]
                inventory = inventory.ini
                retry_files_enabled = False
                callbacks_enabled = changeops.itsm.change_recorder
                """)
            self.write("inventory.ini", "[web]\nweb01 ansible_connection=local ansible_python_interpreter=%s\n"
                                        "[control]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n"
                       % (self.python, self.python))
            self.write("change_request.yml", CHANGE_REQUEST)
            self.write("gated.yml", GATED)
            self.write("policy.yml", POLICY)
            with self.sor() as sor:
                sor.head()  # creates the ledger, group-writable
            os.chmod(self.ledger, 0o664)
        for name in ACCOUNTS:
            home = os.path.join(root, "home", name)
            os.makedirs(home, exist_ok=True)
            shutil.chown(home, name, LEDGER_GROUP)
            os.chmod(home, 0o700)

    def write(self, name, content):
        path = os.path.join(self.root, name)
        with open(path, "w") as handle:
            handle.write(textwrap.dedent(content).lstrip("\n"))
        os.chmod(path, 0o664)
        return path

    @contextlib.contextmanager
    def sor(self):
        with _group_writable():
            sor = open_system_of_record({"backend": "sqlite", "sqlite_path": self.ledger})
            try:
                yield sor
            finally:
                sor.close()

    def run_as(self, account, playbook, extra=None):
        """``ansible-playbook`` as ``account``: its uid, its groups, its own home."""
        home = os.path.join(self.root, "home", account)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "USER": account, "LOGNAME": account,
            "ANSIBLE_HOME": os.path.join(home, ".ansible"), "ANSIBLE_CONFIG": os.path.join(self.root, "ansible.cfg"),
            # the accounts have no home directory of their own: "~" would be one that does not exist
            "ANSIBLE_REMOTE_TMP": os.path.join(home, ".ansible", "tmp"),
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_PATH, "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "False", "CHANGEOPS_BACKEND": "sqlite",
            "CHANGEOPS_SQLITE_PATH": self.ledger, "PYTHONUNBUFFERED": "1",
        }
        if self.library_path:
            env["LD_LIBRARY_PATH"] = self.library_path
        command = ["runuser", "-u", account, "--", "env", "-i"] + ["%s=%s" % item for item in sorted(env.items())] + [
            "sh", "-c", 'umask 002 && exec "$@"', "sh", self.python, "-m", "ansible.cli.playbook", playbook]
        if extra:
            command += ["-e", json.dumps(extra)]
        return subprocess.run(command, cwd=self.root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)

    def request(self, number):
        with self.sor() as sor:
            return sor.get_change_request(number)


@pytest.fixture
def controller(accounts, account_python):
    ensure_collection_tree()
    root = tempfile.mkdtemp(prefix="changeops-sod-", dir="/tmp")
    os.chmod(root, 0o755)
    shared = SharedController(root, account_python)
    # root, the controller's administrator, publishes the policy that names the CAB
    with shared.sor() as sor:
        params = {"src": os.path.join(root, "policy.yml"), "change_request": None, "comment": "the CAB approves"}
        policy_store.publish_policy(OperationContext(sor, params, identity=os_identity()))
    yield shared
    shutil.rmtree(root, ignore_errors=True)


def ok(run):
    assert run.returncode == 0, run.stdout[-6000:]
    return run


def refused(run, *texts):
    assert run.returncode != 0, run.stdout[-6000:]
    flat = " ".join(run.stdout.split())
    for text in texts:
        assert text in flat, run.stdout[-6000:]
    return run


def raise_request(controller, account="chgops-alice"):
    ok(controller.run_as(account, "change_request.yml", {"start": iso(hours=-1), "end": iso(hours=3)}))
    with controller.sor() as sor:
        [record] = sor.find_change_requests(limit=1)
    assert record["opened_by_identity"] == {"name": account, "source": "os"}
    return record["number"]


def step(controller, account, number, **fields):
    return controller.run_as(account, "change_request.yml", dict(fields, number=number))


def test_approval_while_new_is_refused(controller):
    number = raise_request(controller)
    refused(step(controller, "chgops-bob", number, approval={"comment": "looks fine"}),
            "%s is in state new; the policy accepts approvals and rejections only in assess, authorise, scheduled "
            "(rule approvals.states)" % number)
    assert controller.request(number)["approvals"] == []


def test_the_requester_cannot_approve_their_own_request(controller):
    number = raise_request(controller)
    ok(step(controller, "chgops-alice", number, state="assess"))
    refused(step(controller, "chgops-alice", number, approval={"comment": "mine, and fine"}),
            "chgops-alice may not approve %s: chgops-alice requested it (rule approvals.allow_self_approval: false)"
            % number)
    # nor by typing someone else's name
    refused(step(controller, "chgops-alice", number, approval={"approver": "chgops-bob"}),
            "approval.approver: 'chgops-bob' is not who records this decision (chgops-alice, the OS account running "
            "the module)")
    ok(step(controller, "chgops-bob", number, approval={"comment": "rollback plan reviewed"}))
    [approval] = controller.request(number)["approvals"]
    assert (approval["approver"], approval["identity"]) == ("chgops-bob", {"name": "chgops-bob", "source": "os"})
    assert approval["policy"]["state"] == "published" and approval["policy"]["version"] == 1


def test_an_approval_by_someone_outside_the_approver_groups_is_refused(controller):
    number = raise_request(controller)
    ok(step(controller, "chgops-alice", number, state="assess"))
    refused(step(controller, "chgops-carol", number, approval={}),
            "chgops-carol may not approve %s: chgops-carol is not in approver group cab (rule approvals.approvers: "
            "cab (OS groups chgops-cab))" % number)
    assert controller.request(number)["approval"] == "not requested"


def test_the_runner_cannot_be_the_sole_approver_of_the_play_they_run(controller):
    number = raise_request(controller)
    for account, fields in (("chgops-alice", {"state": "assess"}), ("chgops-alice", {"state": "authorise"}),
                            ("chgops-bob", {"approval": {"comment": "approved by the CAB"}}),
                            ("chgops-alice", {"state": "scheduled"})):
        ok(step(controller, account, number, **fields))

    run = refused(controller.run_as("chgops-bob", "gated.yml", {"number": number}),
                  "chgops-bob runs this play and is the only approver of %s; another approver must approve it too, "
                  "or someone else must do it (rule approvals.allow_runner_as_sole_approver: false)" % number)
    assert not os.path.exists(os.path.join(controller.root, "out", "chgops-bob.txt")), run.stdout

    ok(controller.run_as("chgops-alice", "gated.yml", {"number": number}))
    assert os.path.exists(os.path.join(controller.root, "out", "chgops-alice.txt"))
    with controller.sor() as sor:
        decisions = [entry.data for entry in sor.iter_entries(kinds=["run.gate"])]
        event = sor.get_change_event(decisions[-1]["run_id"])
    assert [(d["allowed"], d["identities"]["runner"]["name"]) for d in decisions] == [
        (False, "chgops-bob"), (True, "chgops-alice")]
    # what an auditor reads back: the policy version and every person involved
    assert event["authorisation"] == "normal"
    [authorised] = authorisations(event)
    assert authorised["policy"]["state"] == "published" and authorised["policy"]["version"] == 1
    identities = authorised["identities"]
    assert identities["runner"] == {"name": "chgops-alice", "source": "os"}
    assert identities["requester"] == {"name": "chgops-alice", "source": "os"}
    assert [(a["name"], a["source"]) for a in identities["approvers"]] == [("chgops-bob", "os")]
