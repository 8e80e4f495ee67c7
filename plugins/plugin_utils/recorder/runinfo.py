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

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import (
    format_time,
    is_oversized_int,
    oversized_int_text,
    parse_time,
)
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


# -- AWX / Ansible Automation Platform job metadata ------------------------------------------------------
# AWX (and AAP's automation controller) pass a job's metadata as extra vars, each under an ``awx_`` and a
# ``tower_`` name (awx/main/models: awx_meta_vars), and a few facts in the job's environment. Only these
# names are read, so nothing else a job carries (credentials injected as extra vars or environment
# variables, REST API tokens, the launching user's e-mail) can reach the record through here.
AWX_METADATA_VARS = (
    "job_id", "job_launch_type", "job_template_id", "job_template_name", "user_id", "user_name",
    "workflow_job_id", "workflow_job_name", "schedule_id", "schedule_name", "parent_job_schedule_id",
    "parent_job_schedule_name", "inventory_id", "inventory_name", "project_revision", "project_scm_branch",
    "job_scm_branch",
)
_AWX_ORIGIN_FIELDS = {"user_id": "launched_by_id", "user_name": "launched_by", "job_launch_type": "launch_type"}
_AWX_ENVIRONMENT = {"JOB_ID": "job_id", "INVENTORY_ID": "inventory_id", "PROJECT_REVISION": "project_revision"}
_MAX_ORIGIN_TEXT = 256


def is_awx_metadata(name):
    """True for an extra var that AWX sets to describe the job (not a secret; recorded as the origin)."""
    name = str(name)
    for prefix in ("awx_", "tower_"):
        if name.startswith(prefix) and name[len(prefix):] in AWX_METADATA_VARS:
            return True
    return False


def _origin_value(value):
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list, tuple, set)):
        return None
    if isinstance(value, int):
        return int(value) if not is_oversized_int(value) else oversized_int_text(value)[:_MAX_ORIGIN_TEXT]
    text = str(value) + ""  # ``+ ""`` drops data tags
    return text[:_MAX_ORIGIN_TEXT] if text else None


def _url_without_credentials(url):
    """scheme://host[:port][/path] of ``url``: no user info, query or fragment."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(str(url).strip())
        netloc = parts.hostname or ""
        if parts.port:
            netloc = "%s:%d" % (netloc, parts.port)
    except ValueError:
        return None
    if not (parts.scheme and netloc):
        return None
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def awx_origin(extra_vars, environ):
    """The AWX/AAP job a run belongs to, as the change event's ``origin``; None outside AWX.

    Read from the ``awx_*`` extra vars (``tower_*`` for older controllers) and AWX's job environment
    (``JOB_ID``, ``INVENTORY_ID``, ``PROJECT_REVISION``, ``AWX_HOST``), which counts only next to
    them or to ``AWX_HOST``: a bare ``JOB_ID`` is too common a name to mean AWX.
    """
    extra_vars = extra_vars or {}
    found = {}
    for prefix in ("awx_", "tower_"):  # AWX sets both; awx_ wins
        for name in AWX_METADATA_VARS:
            if name not in found:
                value = _origin_value(extra_vars.get(prefix + name))
                if value is not None:
                    found[name] = value
    host = environ.get("AWX_HOST") or environ.get("TOWER_HOST")
    if not found and not host:
        return None
    for variable, name in _AWX_ENVIRONMENT.items():
        value = _origin_value(environ.get(variable))
        if name not in found and value is not None:
            found[name] = int(value) if isinstance(value, str) and value.isdigit() else value
    origin = {"platform": "awx"}
    if host:
        origin["url"] = _url_without_credentials(host)
    for name in AWX_METADATA_VARS:
        if name in found:
            origin[_AWX_ORIGIN_FIELDS.get(name, name)] = found[name]
    return origin
