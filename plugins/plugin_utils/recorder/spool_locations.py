# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the recorder's spool lives, in the order the locations are tried.

1. ``spool_dir`` (default ``~/.ansible/changeops/spool``). By default it sits next to the default
   ledger, so whatever makes the ledger's directory unwritable (a read-only mount, a full disk, an
   immutable directory) takes this spool down with it.
2. ``spool_fallback_dir``, by default the platform's state directory: ``$XDG_STATE_HOME/changeops/spool``
   when ``XDG_STATE_HOME`` is set, else ``/var/lib/changeops/spool`` for root and
   ``~/.local/state/changeops/spool`` for anyone else. The XDG Base Directory specification names
   ``XDG_STATE_HOME`` (default ``~/.local/state``) for data that must outlive the program but is not
   the user's documents (logs, history, queues); for root, which runs the scheduled and service-like
   runs, the Filesystem Hierarchy Standard's ``/var/lib/<package>`` is the place for such state. Both
   are outside ``~/.ansible``, the usual home of the ledger, and ``/var/lib`` is often its own file
   system on servers. A location equal to the first one is not tried twice.
3. Only for the marker that says entries were lost (never for the entries themselves):
   ``<tmp>/changeops-<uid>/spool``. The temporary directory may be emptied at boot, so nothing that
   must survive is kept there; a marker is better there than nowhere.

Each location holds one sub-directory per system of record (``spool.target_key``).
"""

from __future__ import annotations

import os
import stat
import tempfile

# the state directory is also where ledger_redact scrubs: one definition for both
from ansible_collections.changeops.itsm.plugins.module_utils.state_paths import (  # noqa: F401 pylint: disable=unused-import
    STATE_SUBDIRECTORY,
    state_spool_dir,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool import Spool, SpoolChain


def marker_spool_dir(temp_dir=None, uid=None, create=False):
    """``<tmp>/changeops-<uid>/spool``, or None when that directory is absent (and not ``create``d) or
    not safely this user's own.

    The temporary directory is shared: a directory there that is a symbolic link, belongs to
    someone else or is open to others could be planted, so it is not used.
    """
    uid = os.getuid() if uid is None and hasattr(os, "getuid") else uid
    base = os.path.join(temp_dir or tempfile.gettempdir(), "changeops-%s" % uid)
    try:
        if create:
            os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.lstat(base)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077:
        return None
    return os.path.join(base, "spool")


def _same(first, second):
    return os.path.realpath(os.path.expanduser(first)) == os.path.realpath(os.path.expanduser(second))


def spool_roots(spool_dir, fallback_dir=None):
    """The spool root directories for entries, in the order they are tried."""
    roots = [os.path.expanduser(spool_dir)]
    fallback = os.path.expanduser(fallback_dir) if fallback_dir else state_spool_dir()
    if not any(_same(fallback, root) for root in roots):
        roots.append(fallback)
    return roots


def spool_chain(spool_dir, key, label=None, fallback_dir=None, temp_dir=None):
    """The recorder's ``SpoolChain`` for the system of record ``key`` (``spool.target_key``)."""
    spools = [Spool(root, key, label) for root in spool_roots(spool_dir, fallback_dir)]

    def marker_spool(create):
        root = marker_spool_dir(temp_dir=temp_dir, create=create)
        if root is None or any(_same(root, spool.root) for spool in spools):
            return None
        return Spool(root, key, label)

    return SpoolChain(spools, marker_spool=marker_spool)
