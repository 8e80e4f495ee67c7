# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform's state directory, where the change recorder keeps its second spool location.

Shared by the recorder (``plugin_utils/recorder/spool_locations.py``, which tries it after ``spool_dir``)
and ``ledger_redact`` (which scrubs every location the recorder may have written a copy to), so the two
cannot disagree about where that is. Why the state directory: see ``spool_locations``.
"""

from __future__ import annotations

import os

STATE_SUBDIRECTORY = os.path.join("changeops", "spool")


def state_spool_dir(environ=None, uid=None, home=None):
    """``$XDG_STATE_HOME/changeops/spool`` when ``XDG_STATE_HOME`` is an absolute path, else
    ``/var/lib/changeops/spool`` for root and ``~/.local/state/changeops/spool`` for anyone else."""
    environ = os.environ if environ is None else environ
    uid = os.getuid() if uid is None and hasattr(os, "getuid") else uid
    state_home = environ.get("XDG_STATE_HOME") or ""
    # the XDG Base Directory specification ignores a relative path
    if os.path.isabs(state_home):
        return os.path.join(state_home, STATE_SUBDIRECTORY)
    if uid == 0:
        return os.path.join(os.sep, "var", "lib", STATE_SUBDIRECTORY)
    home = home or os.path.expanduser("~")
    return os.path.join(home, ".local", "state", STATE_SUBDIRECTORY)
