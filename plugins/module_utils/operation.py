# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one wrapper every module uses.

A module's work is an *operation*: ``operation(ctx) -> dict`` where ``ctx`` is
an :class:`OperationContext`. The same operation runs from two places:

* the module's action plugin, on the controller (the normal path: see
  ``plugins/plugin_utils/action.py``), which adds what only the controller
  knows: host facts, the play, the current run id;
* the module's own ``main()`` through :func:`run_module`, so the module also
  works when executed directly (tests, ``ansible -m`` with a local connection).

The returned dict becomes the task result; ``changed`` and ``diff`` are the
operation's to set. Operations raise ``ChangeopsError`` for anything a person
must fix; nothing else is caught.
"""

from __future__ import annotations

import getpass
import os
import socket

try:
    import pwd
except ImportError:  # not POSIX
    pwd = None

from ansible_collections.changeops.itsm.plugins.module_utils.config import resolve_backend_config
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

#: set by the change_recorder callback in the controller process, inherited by
#: the worker processes that run action plugins
RUN_ID_ENV = "CHANGEOPS_RUN_ID"


def os_user():
    """The account this process runs as, from its uid.

    Unlike ``getpass.getuser()``, which believes LOGNAME/USER, nobody can become someone else
    here by setting an environment variable: this is the name authorisation decisions use.
    """
    if pwd is not None and hasattr(os, "getuid"):
        try:
            return pwd.getpwuid(os.getuid()).pw_name
        except KeyError:  # a uid without a passwd entry (some containers)
            return str(os.getuid())
    try:
        return getpass.getuser()  # no uids on this platform
    except Exception:  # pylint: disable=broad-except
        return "unknown"


def claimed_user():
    """The login name the environment claims (LOGNAME, USER...), or None when it is the real one."""
    try:
        claimed = getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        return None
    return claimed if claimed != os_user() else None


def current_actor():
    return "%s@%s" % (os_user(), socket.gethostname())


class OperationContext(object):
    """What an operation may use; everything optional beyond ``sor`` and ``params``."""

    def __init__(self, sor, params, check_mode=False, diff=False, host=None, task_vars=None, play=None,
                 task=None, run_id=None, actor=None, warn=None, display=None):
        self.sor = sor
        self.params = params
        self.check_mode = bool(check_mode)
        self.diff = bool(diff)
        self.host = host
        self.task_vars = task_vars or {}
        self.play = play
        self.task = task
        self.run_id = run_id if run_id is not None else os.environ.get(RUN_ID_ENV)
        self.actor = actor or current_actor()
        self._warn = warn
        self.display = display
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)
        if self._warn is not None:
            self._warn(message)


def run_module(module, operation):
    """``main()`` body for a module executed directly: resolve, open, run, exit."""
    try:
        config = resolve_backend_config(module.params)
        sor = open_system_of_record(config)
        try:
            context = OperationContext(sor, module.params, check_mode=module.check_mode,
                                       diff=getattr(module, "_diff", False), warn=module.warn)
            result = operation(context)
        finally:
            sor.close()
    except ChangeopsError as exc:
        module.fail_json(**exc.to_result())
    result.setdefault("changed", False)
    module.exit_json(**result)
