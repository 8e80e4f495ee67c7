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

In a ``--check`` run the gate must also know whether any task runs for real
(``check_mode: false``): that needs the tasks of dynamic includes too, so
``include_tasks`` of a file known before the play runs is read here the way
Ansible will load it; one that cannot be read is listed as uninspectable.
"""

from __future__ import annotations

import os
import re

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.playbook.block import Block
from ansible.playbook.handler import Handler
from ansible.playbook.helpers import load_list_of_blocks

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.projections import (
    RECORD_ONLY_ACTION_PREFIX,
)

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
#: how deep included files may include further files before the gate stops reading them
MAX_INCLUDE_DEPTH = 10
#: ``{{ name }}`` alone: the only template a looped include's file name may hold to be read in advance
_LOOP_VARIABLE = re.compile(r"^([^{}]*)\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}([^{}]*)$")


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


def _read_only(task):
    """``changed_when: false`` written literally: the author declares that the task changes nothing.

    Only the literal counts (an expression may be true at run time), and Ansible then reports the
    task unchanged whatever it did, so the recorder never counts it as a change either: the gate
    and the change event agree. One false condition is enough, as ``changed_when`` conditions
    must all hold.
    """
    for condition in getattr(task, "changed_when", None) or ():
        if condition is False or (isinstance(condition, str) and condition.strip().lower() == "false"):
            return True
    return False


def _include_targets(task, short, args):
    """The file names a dynamic include loads, or None when they are not known before the play runs.

    Only ``include_tasks`` of a literal file name, or of ``prefix{{ loop_var }}suffix`` over a
    literal ``loop:`` list, is known: any other variable may differ from host to host.
    """
    if short != "include_tasks":
        return None
    target = args.get("_raw_params") or args.get("file")
    if not isinstance(target, str) or not target:
        return None
    if "{" not in target:
        return [target]
    match = _LOOP_VARIABLE.match(target)
    loop = getattr(task, "loop", None)
    if match is None or getattr(task, "loop_with", None) or not isinstance(loop, list):
        return None
    loop_var = getattr(getattr(task, "loop_control", None), "loop_var", None) or "item"
    if match.group(2) != loop_var or not all(isinstance(item, (str, int)) and "{" not in str(item) for item in loop):
        return None
    return ["%s%s%s" % (match.group(1), item, match.group(3)) for item in loop]


def _include_file(task, target):
    """The one file ``target`` names from ``task``, or None when no file or several files could be it.

    Ansible looks next to the including file, in the role's tasks (handlers) directory and in the
    playbook directory; a name found in two of those places is left unread rather than guessed.
    """
    loader = task._loader
    if os.path.isabs(target) or target.startswith("~"):
        candidates = [os.path.expanduser(target)]
    else:
        including = (task.get_path() or "").rsplit(":", 1)[0]
        candidates = [os.path.join(os.path.dirname(including), target)] if including else []
        role = getattr(task, "_role", None)
        if role is not None:
            subdir = "handlers" if isinstance(task, Handler) else "tasks"
            candidates += [os.path.join(role._role_path, subdir, target),
                           loader.path_dwim_relative(role._role_path, subdir, target, is_role=True)]
        else:
            candidates += [loader.path_dwim_relative(loader.get_basedir(), "", target), loader.path_dwim(target)]
    found = set(os.path.realpath(path) for path in candidates if path and os.path.isfile(path))
    return found.pop() if len(found) == 1 else None


def _included_blocks(task, path, play):
    """The blocks Ansible builds from ``path`` for ``task`` (see StrategyBase._load_included_file)."""
    data = task._loader.load_from_file(path, trusted_as_template=True)
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError("%s is not a list of tasks" % path)
    parent = task
    apply_attrs = (task.args or {}).get("apply")
    if apply_attrs:
        # as TaskInclude.build_parent_block, without taking ``apply`` out of the play's task
        parent = Block.load(dict(apply_attrs, block=[]), play=play, task_include=task, role=task._role,
                            variable_manager=task._variable_manager, loader=task._loader)
    roles = list(play.roles or [])
    try:
        return load_list_of_blocks(data, play=play, parent_block=parent, role=task._role,
                                   use_handlers=isinstance(task, Handler), loader=task._loader,
                                   variable_manager=task._variable_manager)
    finally:
        # an import_role in the file adds its role to the play when loaded: that is for Ansible to do
        # when (and if) the include runs
        play.roles = roles


def _selected(task, only_tags, skip_tags, task_vars):
    try:
        return task.evaluate_tags(only_tags, skip_tags, all_vars=task_vars)
    except Exception:  # pylint: disable=broad-except
        return True  # a tag that cannot be templated yet: assume the task runs


class _CheckModeScan(object):
    """In a --check run: the tasks that run for real, and the includes whose tasks cannot be read.

    A task forced out of check mode (``check_mode: false``) changes hosts unless it is declared
    read-only (``changed_when: false``). Dynamic includes are read like Ansible will load them
    (nested includes too), so a ``check_mode: false`` task inside one is seen; one the gate
    cannot read makes the run as good as real, since it may hold such a task.
    """

    def __init__(self, play, templar, base_dir, tags, task_vars):
        self.play = play
        self.templar = templar
        self.base_dir = base_dir
        self.tags = tags
        self.task_vars = task_vars
        self.real = []
        self.uninspectable = []

    @staticmethod
    def _add(target, value):
        if value not in target:
            target.append(value)

    def task(self, task, action, where):
        if action.startswith(RECORD_ONLY_ACTION_PREFIX) or _read_only(task):
            return
        if _runs_for_real(task, self.templar):
            self._add(self.real, "%s (%s)" % (where, task.get_name()))

    def include(self, task, short, where, stack=()):
        """Read what the include loads; ``stack``: the files being read (an include of itself is a loop)."""
        args = task.args or {}
        targets = _include_targets(task, short, args)
        shown = args.get("name") or args.get("_raw_params") or args.get("file")
        if targets is None:
            self._add(self.uninspectable, "%s %s %s (not known before the play runs)" % (where, short, shown))
            return
        for target in targets:
            path = _include_file(task, target)
            if path is None:
                self._add(self.uninspectable, "%s %s %s (no single file found)" % (where, short, target))
                continue
            if path in stack or len(stack) >= MAX_INCLUDE_DEPTH:
                self._add(self.uninspectable, "%s %s %s (included from itself or nested too deep)"
                          % (where, short, target))
                continue
            try:
                blocks = _included_blocks(task, path, self.play)
            except Exception as exc:  # pylint: disable=broad-except
                self._add(self.uninspectable, "%s %s %s (cannot be read: %s)" % (where, short, target, exc))
                continue
            self.blocks(blocks, stack + (path,))

    def blocks(self, blocks, stack):
        for task in _walk(blocks):
            action = getattr(task, "resolved_action", None) or getattr(task, "action", None)
            if not action or _short(action) == "meta" or not _selected(task, *self.tags, task_vars=self.task_vars):
                continue
            where = _where(task, self.base_dir)
            if _short(action) in DYNAMIC_INCLUDES:
                self.include(task, _short(action), where, stack)
            else:
                self.task(task, action, where)


def inspect_play(play, task_vars, templar=None, playbook=None, check_mode=False):
    """``{name, pattern, roles, tags, modules, paths, dynamic_includes, ...}`` of ``play``.

    ``check_mode`` is the run's ``--check``: tasks that still run for real are listed in
    ``real_in_check_mode``, dynamic includes whose tasks cannot be read in advance in
    ``uninspectable_includes``.
    """
    only_tags = set(getattr(play, "only_tags", None) or ["all"])
    skip_tags = set(getattr(play, "skip_tags", None) or [])
    roles, tags, modules, paths, includes = [], [], [], [], []
    unresolved_paths, opaque, delegated, unresolved_delegations = [], [], [], []
    base_dir = task_vars.get("playbook_dir") or (os.path.dirname(playbook) if playbook else None)
    scan = _CheckModeScan(play, templar, base_dir, (only_tags, skip_tags), task_vars)

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
        if not action or _short(action) == "meta" or not _selected(task, only_tags, skip_tags, task_vars):
            continue
        if getattr(task, "_role", None) is not None:
            add(roles, _role_name(task._role))
        for tag in task.tags or []:
            add(tags, str(tag))
        short = _short(action)
        args = task.args or {}
        where = _where(task, base_dir)
        record_only = action.startswith(RECORD_ONLY_ACTION_PREFIX)
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
            if check_mode:
                scan.include(task, short, where)
            continue
        if check_mode:
            scan.task(task, action, where)
        add(modules, action)
        if short in OPAQUE_ACTIONS and not _read_only(task):
            # a command declared read-only (changed_when: false) changes nothing there is to see
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
        "real_in_check_mode": scan.real,
        "uninspectable_includes": scan.uninspectable,
    }
