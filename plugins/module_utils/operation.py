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

import os
import socket

# the identity module is the one place that says who acts (os_user is re-exported for older callers)
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import os_identity, os_user
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import (
    MAX_INT_DIGITS,
    field_name,
    find_oversized_int,
)
from ansible_collections.changeops.itsm.plugins.module_utils.config import resolve_backend_config
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

#: set by the change_recorder callback in the controller process, inherited by
#: the worker processes that run action plugins
RUN_ID_ENV = "CHANGEOPS_RUN_ID"


def current_actor():
    return "%s@%s" % (os_user(), socket.gethostname())


class OperationContext(object):
    """What an operation may use; everything optional beyond ``sor`` and ``params``."""

    def __init__(self, sor, params, check_mode=False, diff=False, host=None, task_vars=None, play=None,
                 task=None, run_id=None, actor=None, warn=None, display=None, identity=None,
                 policy_path=None):
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
        #: who acts, from an authenticated source: what approvals, reviews and publications record
        self.identity = identity or os_identity()
        #: the change policy file the runner configured (CHANGEOPS_GATE_POLICY, ansible.cfg), used only
        #: while no policy is published (see authorisation/policy_store.py)
        self.policy_path = policy_path
        self._warn = warn
        self.display = display
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)
        if self._warn is not None:
            self._warn(message)


def check_int_sizes(params):
    """Refuse a module's input holding an integer of more than ``MAX_INT_DIGITS`` digits, naming the field: the
    ledger records what a playbook *did* whatever it holds (docs/ledger.md, "Integers too long for JSON"), but a
    module's own arguments are the caller's to fix, not to be recorded as something else."""
    path = find_oversized_int(params)
    if path is not None:
        raise ValidationError("%s: an integer of more than %d digits cannot be recorded as a number; pass it as a"
                              " string" % (field_name(path), MAX_INT_DIGITS), option=path[0])


def run_module(module, operation, opens_system_of_record=None):
    """``main()`` body for a module executed directly: resolve, open, run, exit.

    ``opens_system_of_record(params)``: False when the task needs no system of record (``ctx.sor`` is None)."""
    try:
        check_int_sizes(module.params)
        sor = None
        if opens_system_of_record is None or opens_system_of_record(module.params):
            sor = open_system_of_record(resolve_backend_config(module.params))
        try:
            context = OperationContext(sor, module.params, check_mode=module.check_mode,
                                       diff=getattr(module, "_diff", False), warn=module.warn)
            result = operation(context)
        finally:
            if sor is not None:
                sor.close()
    except ChangeopsError as exc:
        module.fail_json(**exc.to_result())
    result.setdefault("changed", False)
    module.exit_json(**result)
