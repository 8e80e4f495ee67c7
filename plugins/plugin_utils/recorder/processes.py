# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is the process that started a run still that process?

A pid alone is not enough: after a crash the pid may be reused by an
unrelated process. ``process_identity`` returns a string that differs between
two processes that had the same pid (boot id + start time in clock ticks on
Linux, the ``ps`` start time elsewhere); comparing it tells a live run from a
dead one whose pid was recycled.
"""

from __future__ import annotations

import os
import subprocess


def _read_ascii(path):
    """The text of a small /proc file.

    Read as bytes and decoded by ``bytes.decode``, whose ASCII codec is built in: opening in text mode
    looks the codec up in the codec registry, which imports ``encodings.ascii`` the first time, and the
    recorder's writer thread calls this while Ansible forks workers. A worker forked halfway through
    that import inherits the module's import lock held for ever and hangs on its own first look-up (the
    change gate's check of a running run calls this in the worker).
    """
    with open(path, "rb") as handle:
        return handle.read().decode("ascii", "replace")


def _linux_identity(pid):
    try:
        stat = _read_ascii("/proc/%d/stat" % pid)
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ")"
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20:
        return None
    start_ticks = fields[19]
    try:
        boot_id = _read_ascii("/proc/sys/kernel/random/boot_id").strip()
    except OSError:
        boot_id = "?"
    return "linux:%s:%s" % (boot_id, start_ticks)


def _ps_identity(pid):
    try:
        output = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, timeout=10, check=False, universal_newlines=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return "ps:%s" % output if output else None


def process_identity(pid):
    """Identity string of a running process, or None when it is gone or unknown."""
    if os.path.isdir("/proc/self"):
        return _linux_identity(pid)
    return _ps_identity(pid)


def pid_is_alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OSError, ValueError, TypeError):
        return False
    return True


def run_process_is_gone(pid, recorded_identity):
    """True when the process recorded as ``pid``/``recorded_identity`` no longer runs.

    Without a recorded identity only liveness of the pid can be judged, so a
    reused pid then counts as alive (the run stays ``running`` rather than
    being wrongly declared interrupted).
    """
    if not pid or not pid_is_alive(pid):
        return True
    if recorded_identity:
        current = process_identity(int(pid))
        if current is not None and current != recorded_identity:
            return True
    return False
