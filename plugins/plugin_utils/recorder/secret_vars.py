# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``secret_vars``: variables the user names as secret, whatever their source.

A password read with ``lookup('env', ...)``, ``lookup('community.hashi_vault.hashi_vault', ...)``, a
``set_fact``, or registered from a command is no vault value and has no telling shape. The recorder
learns the values of the named variables for each host, on the controller, before it summarises that
host's first result of a play, again after a result that sets facts, and for every result of a task
whose own (task or block) vars define one; a result registered under one of the names teaches its own
output (``stdout``, ``content``...) before it is summarised.

Looking a host's variables up costs what Ansible pays per task (``VariableManager.get_vars``) and
templating a variable runs its lookups once more; so this is only done when ``secret_vars`` is set.
"""

from __future__ import annotations

import base64

from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.vault import collect_plain_values
from ansible_collections.changeops.itsm.plugins.plugin_utils.task_compat import registered_names

#: keys of a registered result that describe the task rather than hold the registered value
_RESULT_METADATA = frozenset((
    "changed", "failed", "rc", "cmd", "start", "end", "delta", "msg", "invocation", "item", "ansible_loop_var",
    "attempts", "warnings", "deprecations", "skipped", "skip_reason", "false_condition", "path", "dest", "src",
    "mode", "owner", "group", "uid", "gid", "size", "state", "checksum", "md5sum", "encoding", "source",
    "status", "url", "elapsed", "redirected", "cookies_string", "server", "date", "connection", "content_type",
    "content_length", "changed_when_result", "failed_when_result", "diff", "backup_file", "results",
))


class SecretVars(object):
    def __init__(self, names, add_secret):
        self.names = tuple(name for name in (names or ()) if name)
        self._add = add_secret
        self._resolved = set()

    def __bool__(self):
        return bool(self.names)

    def new_play(self):
        self._resolved = set()

    def before_result(self, variable_manager, loader, play, host, task, raw):
        """Learn the secret variables' values for ``host`` before ``raw`` (its result) is summarised."""
        if not self.names:
            return
        if isinstance(raw, dict) and any(name in self.names for name in registered_names(task)):
            self.learn_registered(raw)
        name = host.get_name()
        if name not in self._resolved:
            self._resolved.add(name)
            self.learn_host(variable_manager, loader, play, host, task)
        elif self._task_defines_one(task):
            # task and block vars are the task's own: looked up for each result of such a task
            self.learn_host(variable_manager, loader, play, host, task)
        if raw.get("ansible_facts"):
            self._resolved.discard(name)  # a fact may hold (or template into) a secret from the next result on

    def _task_defines_one(self, task):
        try:
            own = task.get_vars()
        except Exception:  # pylint: disable=broad-except
            return False
        return any(name in own for name in self.names)

    def learn_registered(self, raw):
        for key, value in raw.items():
            if key in _RESULT_METADATA or str(key).startswith("_ansible"):
                continue
            collect_plain_values(value, self._add)
            if key == "content" and raw.get("encoding") == "base64" and isinstance(value, str):
                try:
                    self._add(base64.b64decode(value).decode("utf-8", "replace"))  # slurp
                except (ValueError, TypeError):
                    pass

    def learn_host(self, variable_manager, loader, play, host, task):
        if variable_manager is None:
            return
        try:
            from ansible.template import Templar

            variables = variable_manager.get_vars(play=play, host=host, task=task)
            templar = Templar(loader=loader, variables=variables)
        except Exception:  # pylint: disable=broad-except
            return
        for name in self.names:
            if name not in variables:
                continue
            try:
                value = templar.template(variables[name])
            except Exception:  # pylint: disable=broad-except
                value = variables[name]  # cannot template it here: its raw value is still worth hiding
            collect_plain_values(value, self._add)
