# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a play is about to do, read from the parsed play on the controller.

The change gate needs the play's roles, tags, the modules its tasks call and
the files they write *before* any of them runs. Static content (``roles:``,
``import_role``, ``import_tasks``, role dependencies, handlers) is already
parsed into blocks and is walked here. What cannot be known in advance is
listed as such, never silently skipped: dynamic includes, paths that need
variables only known at run time (loop items, registered results), commands
that do not say what they change, and hosts tasks delegate to. Tasks that the
run's ``--tags``/``--skip-tags`` exclude are left out: they will not run.
"""

from __future__ import annotations

import os

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.playbook.block import Block

#: arguments that name a file a task writes, for any module
PATH_ARGUMENTS = ("dest", "path")
#: modules whose ``name`` argument is a path too (for others it is a package, a user...)
NAME_IS_PATH = {"file", "lineinfile", "blockinfile", "replace", "ini_file", "xml", "stat"}
#: module-specific path arguments
EXTRA_PATH_ARGUMENTS = {"sysctl": ("sysctl_file",), "cron": ("cron_file",), "pamd": ("path",),
                        "sudoers": ("sudoers_path",), "authorized_key": ("path",)}
DEFAULT_MODULE_PATHS = {
    # a module that always writes a fixed file, whatever its arguments
    "pamd": "/etc/pam.d/",
    "sudoers": "/etc/sudoers.d/",
    "authorized_key": "~/.ssh/authorized_keys",
}
#: tasks whose content is only known once they run (include_vars loads variables, not tasks)
DYNAMIC_INCLUDES = {"include_tasks", "include_role", "include"}
#: actions that run arbitrary commands: nothing says which files they change
OPAQUE_ACTIONS = {"shell", "command", "raw", "script", "expect", "win_shell", "win_command", "psexec"}
#: delegating to the controller itself is not a change to another managed host
CONTROLLER_NAMES = {"localhost", "127.0.0.1", "::1"}
#: actions that only write to the system of record (see projections.RECORD_ONLY_ACTION_PREFIX)
RECORD_ONLY_PREFIX = "changeops.itsm."


def _short(action):
    return action.rsplit(".", 1)[-1] if action else action


def _walk(blocks):
    for block in blocks or ():
        if isinstance(block, Block):
            for section in (block.block, block.rescue, block.always):
                yield from _walk(section)
        else:
            yield block


def _role_name(role):
    try:
        return role.get_name(include_role_fqcn=False)
    except TypeError:
        return role.get_name()


def _template(templar, value):
    if not isinstance(value, str) or templar is None or "{" not in value:
        return value
    try:
        rendered = templar.template(value)
    except Exception:  # pylint: disable=broad-except
        # loop variables and facts gathered later cannot be known yet
        return value
    return rendered if isinstance(rendered, str) else value


def _where(task, base_dir):
    """``file:line`` of a task, relative to the playbook directory when below it."""
    path = task.get_path() or "(unknown file)"
    if base_dir and path.startswith(base_dir.rstrip(os.sep) + os.sep):
        path = path[len(base_dir.rstrip(os.sep)) + 1:]
    return path


def _unresolved(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _runs_for_real(task, templar):
    """In a --check run: does this task set (or inherit) ``check_mode: false``?

    An expression that cannot be resolved yet counts as real: the gate must not call a play
    a dry run when it cannot tell.
    """
    value = getattr(task, "check_mode", None)
    if isinstance(value, str):
        value = _template(templar, value)
        if isinstance(value, str) and "{" in value:
            return True
        try:
            value = boolean(value, strict=True)
        except TypeError:
            return True
    return value is False


def inspect_play(play, task_vars, templar=None, playbook=None, check_mode=False):
    """``{name, pattern, roles, tags, modules, paths, dynamic_includes, ...}`` of ``play``.

    ``check_mode`` is the run's ``--check``: tasks that still run for real are listed in
    ``real_in_check_mode``.
    """
    only_tags = set(getattr(play, "only_tags", None) or ["all"])
    skip_tags = set(getattr(play, "skip_tags", None) or [])
    roles, tags, modules, paths, includes, real = [], [], [], [], [], []
    unresolved_paths, opaque, delegated, unresolved_delegations = [], [], [], []
    base_dir = task_vars.get("playbook_dir") or (os.path.dirname(playbook) if playbook else None)

    def add(target, value):
        if value and value not in target:
            target.append(value)

    for tag in play.tags or []:
        add(tags, str(tag))
    for role in play.get_roles():
        add(roles, _role_name(role))
        for dependency in role.get_all_dependencies():
            add(roles, _role_name(dependency))

    blocks = play.compile()
    for role in play.get_roles():
        try:
            blocks.extend(role.get_handler_blocks(play=play))
        except TypeError:
            blocks.extend(role.get_handler_blocks())
    blocks.extend(play.handlers or [])

    for task in _walk(blocks):
        action = getattr(task, "resolved_action", None) or getattr(task, "action", None)
        if not action or _short(action) == "meta":
            continue
        try:
            if not task.evaluate_tags(only_tags, skip_tags, all_vars=task_vars):
                continue
        except Exception:  # pylint: disable=broad-except
            pass  # a tag that cannot be templated yet: assume the task runs
        if getattr(task, "_role", None) is not None:
            add(roles, _role_name(task._role))
        for tag in task.tags or []:
            add(tags, str(tag))
        short = _short(action)
        args = task.args or {}
        where = _where(task, base_dir)
        record_only = action.startswith(RECORD_ONLY_PREFIX)
        if check_mode and not record_only and _runs_for_real(task, templar):
            add(real, "%s (%s)" % (where, task.get_name()))
        if getattr(task, "delegate_to", None) and not record_only:
            target = _template(templar, task.delegate_to)
            if _unresolved(target) or not isinstance(target, str):
                add(unresolved_delegations, "%s delegate_to %s" % (where, task.delegate_to))
            elif target not in CONTROLLER_NAMES:
                add(delegated, target)
        if short in DYNAMIC_INCLUDES:
            target = args.get("name") or args.get("file") or args.get("_raw_params")
            add(includes, "%s %s %s" % (where, short, target))
            if short == "include_role" and target:
                add(roles, str(_template(templar, target)))
            continue
        add(modules, action)
        if short in OPAQUE_ACTIONS:
            add(opaque, "%s %s" % (where, action))
        keys = list(PATH_ARGUMENTS) + list(EXTRA_PATH_ARGUMENTS.get(short, ()))
        if short in NAME_IS_PATH:
            keys.append("name")
        written = False
        for key in keys:
            value = _template(templar, args.get(key))
            if _unresolved(value):
                # raw template text matches no protected path: say so instead of pretending
                add(unresolved_paths, "%s %s %s=%s" % (where, action, key, value))
                written = True
            elif isinstance(value, str) and value:
                add(paths, os.path.normpath(value) + ("/" if value.endswith("/") else ""))
                written = True
        if not written and short in DEFAULT_MODULE_PATHS:
            add(paths, DEFAULT_MODULE_PATHS[short])

    name = play.get_name() if hasattr(play, "get_name") else getattr(play, "name", "")
    hosts = play.hosts
    pattern = ",".join(hosts) if isinstance(hosts, list) else str(hosts or "")
    return {
        "name": str(play.name or "") if getattr(play, "name", None) else str(name or ""),
        "pattern": pattern,
        "playbook": playbook,
        "playbook_name": os.path.basename(playbook) if playbook else None,
        "roles": roles,
        "tags": sorted(tags),
        "run_tags": sorted(t for t in only_tags if t != "all"),
        "skip_tags": sorted(skip_tags),
        "modules": sorted(modules),
        "paths": sorted(paths),
        "dynamic_includes": includes,
        "unresolved_paths": unresolved_paths,
        "opaque_actions": opaque,
        "delegated_hosts": sorted(delegated),
        "unresolved_delegations": unresolved_delegations,
        "real_in_check_mode": real,
    }
