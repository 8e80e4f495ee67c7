# -*- coding: utf-8 -*-
"""A throwaway Ansible project for integration tests: ansible.cfg, inventory, playbooks.

Every run is a real ``ansible-playbook`` subprocess with the collection on
ANSIBLE_COLLECTIONS_PATH and, by default, the change_recorder callback
enabled. HOME and ANSIBLE_HOME point into the project so defaults (the
ledger path, the spool) never touch the developer's own files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from support.deprecations import DEPRECATION_ENV, assert_no_deprecations_of_ours

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS_PATH = os.path.join(REPO_ROOT, ".build", "collections")
#: holds the sitecustomize that audits every run's processes for fork safety (see its docstring)
FORK_SAFETY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fork_safety")
VENV_BIN = os.path.dirname(sys.executable)


def ensure_collection_tree():
    """The collection must sit at ansible_collections/changeops/itsm; make the symlink if missing."""
    link = os.path.join(COLLECTIONS_PATH, "ansible_collections", "changeops", "itsm")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO_ROOT, link)
    return COLLECTIONS_PATH


class Project(object):
    def __init__(self, root, backend_env, callbacks=("changeops.itsm.change_recorder",)):
        self.root = str(root)
        self.backend_env = dict(backend_env)
        self.callbacks = list(callbacks)
        self.home = os.path.join(self.root, "home")
        os.makedirs(self.home, exist_ok=True)
        self.spool_dir = os.path.join(self.home, ".ansible", "changeops", "spool")
        # the runs' XDG_STATE_HOME: the one state directory of the recorder's default file witness
        # (changeops/checkpoints.jsonl) and its fallback spool (changeops/spool); tests/conftest.py gives
        # writers run inside pytest a temporary one the same way
        self.state_home = os.path.join(self.home, ".local", "state")
        self.fallback_spool_dir = os.path.join(self.state_home, "changeops", "spool")
        self.witness_file = os.path.join(self.state_home, "changeops", "checkpoints.jsonl")
        # outside the project: tests read back what the collection wrote under it
        self.fork_safety_audit = self.root.rstrip(os.sep) + ".fork-safety-audit"
        self.cfg_extra = ""
        self.write_inventory(["localhost"])
        self.write_cfg()

    # -- files ------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def write(self, relative, content, mode=None):
        target = self.path(relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as handle:
            handle.write(textwrap.dedent(content).lstrip("\n"))
        if mode is not None:
            os.chmod(target, mode)
        return target

    def write_cfg(self, extra=""):
        self.cfg_extra = extra
        self.write("ansible.cfg", """
            [defaults]
            inventory = inventory.ini
            host_key_checking = False
            retry_files_enabled = False
            interpreter_python = {python}
            forks = 10
            {extra}
            """.format(python=sys.executable, extra=textwrap.dedent(extra).strip()))

    def write_inventory(self, hosts, group="all_hosts", host_vars=None):
        lines = ["[%s]" % group]
        for host in hosts:
            line = "%s ansible_connection=local ansible_python_interpreter=%s" % (host, sys.executable)
            for key, value in (host_vars or {}).get(host, {}).items():
                line += " %s=%s" % (key, value)
            lines.append(line)
        self.write("inventory.ini", "\n".join(lines) + "\n")

    def write_playbook(self, name, content):
        return self.write(name, content)

    # -- running ------------------------------------------------------------
    def env(self, extra=None):
        env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CHANGEOPS_"))}
        env.update(
            HOME=self.home,
            # the project's state directory, not the caller's (nor /var/lib for root): see state_home
            XDG_STATE_HOME=self.state_home,
            ANSIBLE_HOME=os.path.join(self.home, ".ansible"),
            ANSIBLE_CONFIG=self.path("ansible.cfg"),
            ANSIBLE_COLLECTIONS_PATH=ensure_collection_tree(),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            **DEPRECATION_ENV,
            PATH=VENV_BIN + os.pathsep + env.get("PATH", ""),
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(part for part in (FORK_SAFETY_DIR, env.get("PYTHONPATH")) if part),
            FORK_SAFETY_AUDIT=self.fork_safety_audit,
        )
        if self.callbacks:
            env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(self.callbacks)
        env.update(self.backend_env)
        if extra:
            env.update(extra)
        return env

    def command(self, playbook, *args):
        return [os.path.join(VENV_BIN, "ansible-playbook"), playbook] + list(args)

    def run(self, playbook, *args, env=None, check=True, timeout=600, deprecations_expected=False):
        """Run ansible-playbook to completion; raise with its output when ``check`` and it failed.

        Every run also fails on a deprecation warning our code caused, unless the test is about one
        (``deprecations_expected``: a deprecated option name a task uses on purpose). A run that does not
        end inside ``timeout`` fails the test with every thread's stack of each of its processes
        (``post_mortem``), not only the timeout.
        """
        completed = self._complete(self.command(playbook, *args), env, timeout)
        if check and completed.returncode != 0:
            raise AssertionError("ansible-playbook %s %s exited %d:\n%s" % (
                playbook, " ".join(args), completed.returncode, completed.stdout[-20000:]))
        self.assert_fork_safe()
        # every run of every supported ansible-core line doubles as a deprecation check of our code
        if not deprecations_expected:
            assert_no_deprecations_of_ours(completed.stdout, "ansible-playbook %s %s" % (playbook, " ".join(args)))
        return completed

    def _complete(self, command, env, timeout):
        """Run ``command`` in the project as ``start`` does and wait for it; CompletedProcess."""
        process = self._popen(command, env)
        output = Project.wait_ended(process, timeout, " ".join(os.path.basename(part) for part in command[:2]))
        return subprocess.CompletedProcess(command, process.returncode, output, None)

    def adhoc(self, pattern, *args, env=None, check=True, timeout=600, enable_callbacks=True):
        """Run an ad-hoc ``ansible <pattern> <args>``; ``enable_callbacks``: with callbacks enabled for ad-hoc
        commands (the one setting: bin_ansible_callbacks, here ANSIBLE_LOAD_CALLBACK_PLUGINS=1)."""
        command = [os.path.join(VENV_BIN, "ansible"), pattern] + list(args)
        extra = {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"} if enable_callbacks else {}
        completed = self._complete(command, dict(extra, **(env or {})), timeout)
        if check and completed.returncode != 0:
            raise AssertionError("ansible %s exited %d:\n%s" % (
                " ".join([pattern] + list(args)), completed.returncode, completed.stdout[-20000:]))
        self.assert_fork_safe()
        return completed

    def assert_fork_safe(self):
        """Fail when a run so far (this one, or one started before) imported a module on a thread of ours.

        Every run doubles as this check: see tests/support/fork_safety/sitecustomize.py for why such an
        import can hang one of Ansible's workers, rarely and for ever.
        """
        try:
            with open(self.fork_safety_audit, encoding="utf-8") as handle:
                findings = handle.read()
        except FileNotFoundError:
            return
        os.unlink(self.fork_safety_audit)
        raise AssertionError("a module was imported on a thread other than the main one, with our code on its stack; "
                             "a worker forked meanwhile would hang (import it on the main thread before the thread "
                             "starts, or avoid the import):\n%s" % findings[-20000:])

    def start(self, playbook, *args, env=None):
        """Start ansible-playbook in the background (its own process group); returns Popen.

        Python's fault handler is on in it and its workers (they inherit it), so a run that hangs can be
        made to print every thread's stack (``post_mortem``) instead of only timing out.
        """
        return self._popen(self.command(playbook, *args), env)

    def _popen(self, command, env):
        return subprocess.Popen(
            command, cwd=self.root, env=self.env(dict(env or {}, PYTHONFAULTHANDLER="1")),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
            start_new_session=True)

    @staticmethod
    def post_mortem(process):
        """What a started run that did not get where a test waited for was doing; ends the run.

        Lists the run's processes with the kernel function each sleeps in, then sends them SIGABRT: the
        fault handler (see ``start``) prints the Python stack of every thread of each one to the run's
        output, which is returned (its last 30,000 characters).
        """
        processes = [process.pid] + _descendants(process.pid)
        listing = []
        for pid in processes:
            listing.append("%d %s [%s]" % (pid, _proc_text(pid, "cmdline").replace("\0", " ").strip(),
                                           _proc_text(pid, "wchan")))
        for pid in reversed(processes):  # the workers first: the run may wait on them
            try:
                os.kill(pid, signal.SIGABRT)
            except ProcessLookupError:
                pass
        output = Project.last_output(process, "(the run did not end on SIGABRT)")
        return "the run's processes (pid, command, kernel wait):\n%s\nits output, ending with the stacks:\n%s" % (
            "\n".join(listing), output[-30000:])

    @staticmethod
    def wait_ended(process, timeout, what="the run"):
        """The output of a started run once it ends; when it has not ended inside ``timeout`` seconds, an
        AssertionError naming ``what`` with :meth:`post_mortem` (what its processes were doing), never a bare
        ``TimeoutExpired``."""
        try:
            return process.communicate(timeout=timeout)[0] or ""
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not end inside %ss; %s" % (what, timeout, Project.post_mortem(process)))

    @staticmethod
    def last_output(process, otherwise):
        """The rest of an ending run's output; ``otherwise`` (and the run killed) when it stays open a minute,
        as when a worker left behind holds it."""
        try:
            return process.communicate(timeout=60)[0] or ""
        except subprocess.TimeoutExpired:
            Project.kill(process)
            return otherwise

    @staticmethod
    def kill(process, sig=signal.SIGKILL):
        """Kill a started run and all its workers.

        Ansible's workers start sessions of their own (setsid), so killing the run's process group
        leaves them running; they are found as its descendants first and sent the signal too.
        """
        descendants = _descendants(process.pid)
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        for pid in descendants:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        returncode = process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()
        return returncode

    @staticmethod
    def wait_for(predicate, timeout=60, interval=0.2, what="condition", process=None):
        """Poll ``predicate`` until it returns something true. With the started run ``process`` that should
        bring it about, fail at once when the run ends first, and on timeout say what the run was doing."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            if process is not None and process.poll() is not None:
                value = predicate()  # it may have come about just before the run ended
                if value:
                    return value
                output = Project.last_output(process, "(its output stayed open after it ended)")
                raise AssertionError("the run ended (exit %s) before %s:\n%s" % (process.returncode, what, output[-20000:]))
            time.sleep(interval)
        if process is not None:
            raise AssertionError("timed out after %ss waiting for %s; %s" % (timeout, what, Project.post_mortem(process)))
        raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def _proc_text(pid, name):
    """``/proc/<pid>/<name>``, or "" when the process is gone."""
    try:
        with open("/proc/%d/%s" % (pid, name)) as handle:
            return handle.read()
    except OSError:
        return ""


def _descendants(pid):
    """Every process below ``pid`` (from /proc), children before grandchildren."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                # the command may hold spaces and parentheses: the fields after the last ')' are fixed
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found
