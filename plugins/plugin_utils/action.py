# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base class of every action plugin that talks to the system of record.

Subclasses set ``ARGUMENT_SPEC`` (the same dict the module's ``main()`` uses)
and ``operation`` (a function from module_utils), and may override
:meth:`build_context` to hand the operation controller-side knowledge (facts,
the play). Everything runs on the controller: no connection to the managed
host is opened, so SQLite stays one file on one machine.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.policy_store import configured_policy_path
from ansible_collections.changeops.itsm.plugins.module_utils.config import read_ini_section
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext, check_int_sizes
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import register_config_file_finder
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
# ansible_cfg_path is re-exported: action plugins import it from here
from ansible_collections.changeops.itsm.plugins.plugin_utils.ledger_location import (  # noqa: F401 pylint: disable=unused-import
    ansible_cfg_path,
    controller_backend_config,
    warn_if_new_ledger,
)


def controller_policy_path():
    """The change policy file configured on this controller (env, ansible.cfg); in force only while none is
    published (see authorisation/policy_store.py)."""
    cfg = ansible_cfg_path()
    return configured_policy_path(os.environ, read_ini_section(cfg), cfg)


# module_utils may not import ansible: tell the ServiceNow settings where ansible.cfg is
register_config_file_finder(ansible_cfg_path)


def resolve_controller_backend_config(params):
    """Backend config for controller-side code: arguments, env, ansible.cfg (relative to its folder), defaults."""
    return controller_backend_config(params)


def open_controller_system_of_record(params, warn, reader=False):
    """Open the system of record the task's arguments, the environment and ansible.cfg point at.

    ``warn`` is told when that creates a new SQLite ledger while another is configured or exists.
    """
    config = controller_backend_config(params)
    warn_if_new_ledger(config, warn, params)
    # only readers use postgresql_read_dsn: whatever writes reads the primary, so it sees what it wrote
    config["reader"] = bool(reader)
    return open_system_of_record(config)


class SystemOfRecordAction(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    ARGUMENT_SPEC = {}
    MUTUALLY_EXCLUSIVE = None
    REQUIRED_IF = None
    REQUIRED_ONE_OF = None
    REQUIRED_TOGETHER = None

    #: ``function(ctx) -> dict``; a staticmethod on the subclass
    operation = None

    #: True for modules that only read: they read from ``postgresql_read_dsn`` when one is configured
    READS_ONLY = False

    def reads_only(self, params):
        """Whether this task may read from a replica (``postgresql_read_dsn``): ``READS_ONLY`` unless a subclass
        says otherwise for these arguments."""
        del params
        return self.READS_ONLY

    def opens_system_of_record(self, params):
        """Whether this task needs the system of record (False: ``ctx.sor`` is None, nothing is opened or created)."""
        del params
        return True

    def build_context(self, sor, params, task_vars):
        """Context for the operation; override to add more (call super first)."""
        return OperationContext(
            sor,
            params,
            check_mode=bool(self._task.check_mode),
            diff=bool(self._task.diff),
            host=task_vars.get("inventory_hostname"),
            task_vars=task_vars,
            play=self._task.get_play() if hasattr(self._task, "get_play") else None,
            task=self._task,
            warn=self._display.warning,
            display=self._display,
            policy_path=controller_policy_path(),
        )

    def show_deprecations(self, validation):
        """Say so when a task uses a deprecated option name (a module would; the action plugin validates instead)."""
        for deprecation in getattr(validation, "_deprecations", None) or ():
            self._display.deprecated(deprecation["msg"], version=deprecation.get("version"),
                                     date=deprecation.get("date"), collection_name=deprecation.get("collection_name"))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(SystemOfRecordAction, self).run(tmp, task_vars)
        del tmp
        validation, params = self.validate_argument_spec(
            argument_spec=self.ARGUMENT_SPEC,
            mutually_exclusive=self.MUTUALLY_EXCLUSIVE,
            required_if=self.REQUIRED_IF,
            required_one_of=self.REQUIRED_ONE_OF,
            required_together=self.REQUIRED_TOGETHER,
        )
        self.show_deprecations(validation)
        try:
            check_int_sizes(params)
            sor = open_controller_system_of_record(params, self._display.warning, reader=self.reads_only(params)) if (
                self.opens_system_of_record(params)) else None
            try:
                context = self.build_context(sor, params, task_vars)
                outcome = type(self).operation(context)
                read_from = sor.read_source() if sor is not None else None
                if read_from is not None:
                    outcome = dict(outcome, read_from=read_from)
                    if read_from["reason"]:
                        self._display.warning(read_from["reason"])
            finally:
                if sor is not None:
                    sor.close()
        except ChangeopsError as exc:
            result.update(exc.to_result())
            result["failed"] = True
            result.setdefault("changed", False)
            return result
        except AnsibleActionFail:
            raise
        result.update(outcome)
        result.setdefault("changed", False)
        if context.warnings and "warnings" not in result:
            # already shown through display.warning; keep them in the result for registered use
            result["changeops_warnings"] = context.warnings
        return result
