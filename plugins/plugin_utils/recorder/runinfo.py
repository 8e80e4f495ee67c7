# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts about the controller and the playbooks' repository for ``run.started``.

Everything here may touch the disk or start a process, so only the writer
thread calls it, never a callback method.
"""

from __future__ import annotations

import os
import socket
import subprocess

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.operation import os_user

GIT_TIMEOUT = 10


def controller_user():
    """Who ran the playbook: the account of the process, as the gate decides it (LOGNAME/USER can lie)."""
    return os_user()


def controller_name():
    return socket.gethostname()


def _git(directory, *args):
    completed = subprocess.run(
        ["git", "-C", directory] + list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, timeout=GIT_TIMEOUT, check=False, universal_newlines=True)
    if completed.returncode != 0:
        return None
    return completed.stdout.strip()


def git_state(path):
    """``{root, commit, commit_time, branch, dirty}`` of the git work tree holding ``path``, or None.

    ``dirty`` counts tracked files only: an untracked scratch file next to the
    playbook does not change what the playbook ran. The remote URL is left
    out on purpose: it may carry a token.
    """
    directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        root = _git(directory, "rev-parse", "--show-toplevel")
        if not root:
            return None
        commit = _git(directory, "rev-parse", "--verify", "-q", "HEAD")
        branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD")
        status = _git(directory, "status", "--porcelain", "--untracked-files=no")
        # the committer time of HEAD: lead time for changes runs from it to the change's start (docs/metrics.md)
        committed = _git(directory, "log", "-1", "--format=%cI", "HEAD") if commit else None
    except (OSError, subprocess.SubprocessError):
        return None
    return {
        "root": root,
        "commit": commit or None,  # None in a repository without commits
        "commit_time": _utc(committed),
        "branch": branch if branch and branch != "HEAD" else None,
        "dirty": bool(status),
    }


def _utc(text):
    """git's strict ISO 8601 (with the committer's offset) as the ledger's UTC form, or None."""
    if not text:
        return None
    try:
        return format_time(parse_time(text))
    except ValueError:
        return None
