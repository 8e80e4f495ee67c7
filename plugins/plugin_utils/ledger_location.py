# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the controller's system of record is, read the same way by every plugin.

The callback and the inventory plugin get their options from Ansible, which reads a relative
path in ansible.cfg against that file's folder; action plugins read the ``[changeops]`` section
themselves (:func:`controller_backend_config`) and must land on the same file, whatever the
current directory. :func:`warn_if_new_ledger` is the one check, used by all three, that a run is
about to start a second, empty ledger while another one is configured or exists: the symptom of
a relative path read from another folder or an environment variable left over from another
project, which would split the audit trail without anyone noticing.
"""

from __future__ import annotations

import os

from ansible import constants as C

from ansible_collections.changeops.itsm.plugins.module_utils.config import (
    INI_SECTION,
    backend_option_sources,
    new_ledger_warning,
    read_ini_section,
    resolve_backend_config,
)


def ansible_cfg_path():
    """The ansible.cfg Ansible loaded (absolute), or None."""
    path = getattr(C.config, "_config_file", None)
    return os.path.abspath(path) if path else None


def controller_backend_config(params):
    """Backend config for controller-side code: arguments, env, ansible.cfg (relative to its folder), defaults."""
    cfg = ansible_cfg_path()
    return resolve_backend_config(params, os.environ, read_ini_section(cfg), cfg or "ansible.cfg")


def ledger_sources(params=None, first=None):
    """Every SQLite ledger path the controller is configured with, in force first: ``[(origin, path), ...]``.

    ``first``: an ``(origin, path)`` that takes precedence over the rest (an inventory file's own
    ``sqlite_path``). Also names where earlier versions opened a relative ``sqlite_path`` of
    ansible.cfg in modules, the current directory: a ledger left there holds records of this project.
    """
    cfg = ansible_cfg_path()
    ini = read_ini_section(cfg)
    sources = list(backend_option_sources("sqlite_path", params or {}, os.environ, ini, cfg or "ansible.cfg"))
    if first is not None:
        sources.insert(0, first)
    raw = ini.get("sqlite_path")
    legacy = os.path.abspath(os.path.expandvars(os.path.expanduser(raw))) if raw else None
    if legacy and not os.path.isabs(os.path.expandvars(os.path.expanduser(raw))) and os.path.exists(legacy):
        sources.append(("%s [%s] sqlite_path read from the current directory, as modules of earlier versions did"
                        % (cfg, INI_SECTION), legacy))
    return sources


def warn_if_new_ledger(config, warn, params=None, first=None):
    """Call ``warn`` with why, when ``config`` would create a new SQLite ledger while another is configured or exists."""
    try:
        sources = ledger_sources(params, first)
    except Exception:  # pylint: disable=broad-except
        return None  # a warning must never stop a run; a bad option fails where it is used
    message = new_ledger_warning(config, sources)
    if message:
        warn(message)
    return message
