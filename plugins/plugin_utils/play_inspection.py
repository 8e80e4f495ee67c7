# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a play is about to do, read from the parsed play on the controller.

The change gate needs the play's roles, tags, the modules its tasks call and
the files they write *before* any of them runs. Static content (``roles:``,
``import_role``, ``import_tasks``, role dependencies, handlers) is already
parsed into blocks and is walked here. Dynamic includes are read the way
Ansible will load them when the gate can know what they load before the play
runs: ``include_tasks`` of a literal file name (or ``prefix{{ loop_var }}suffix``
over a literal loop), ``include_role`` of a literal role name, nested ones too.
Their tasks count like the play's own, in real and in ``--check`` runs alike:
a protected area behind an include is still a protected area.

What cannot be known in advance is listed as such, never silently skipped:
includes the gate cannot read, paths that need variables only known at run
time (loop items, registered results), commands that do not say what they
change, and hosts tasks delegate to. Tasks that the run's
``--tags``/``--skip-tags`` exclude are left out: they will not run; so are
tasks and includes whose ``when`` is false for every host of the batch, when
the gate can tell that before the play runs (see :class:`_Conditions`).
"""

from __future__ import annotations

import glob
import os
import re

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.playbook.block import Block
from ansible.playbook.handler import Handler
from ansible.playbook.helpers import load_list_of_blocks
from ansible.template import Templar

from ansible_collections.changeops.itsm.plugins.module_utils.protected_areas import SERVICE_MODULES
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.projections import (
    RECORD_ONLY_ACTION_PREFIX,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.task_compat import registered_names

try:
    import jinja2
    from jinja2 import nodes as jinja2_nodes
except ImportError:  # pragma: no cover - ansible-core requires Jinja2
    jinja2 = None

#: arguments that name a file a task writes, for any module
PATH_ARGUMENTS = ("dest", "path")
#: modules whose ``name`` argument is a path too (for others it is a package, a user...)
NAME_IS_PATH = {"file", "lineinfile", "blockinfile", "replace", "ini_file", "xml"}
#: modules that only read the files they name: they touch nothing
READ_ONLY_MODULES = {"stat", "slurp", "find"}
#: module-specific path arguments
EXTRA_PATH_ARGUMENTS = {"sysctl": ("sysctl_file",), "cron": ("cron_file",), "pamd": ("path",),
                        "sudoers": ("sudoers_path",), "authorized_key": ("path",)}
DEFAULT_MODULE_PATHS = {
    # a module that always writes a fixed file, whatever its arguments
    "pamd": "/etc/pam.d/",
    "sudoers": "/etc/sudoers.d/",
    "authorized_key": "~/.ssh/authorized_keys",
    # community.general.pam_limits writes /etc/security/limits.conf unless told another file (dest)
    "pam_limits": "/etc/security/limits.conf",
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

# --- conditions -----------------------------------------------------------------------------
#: variables Ansible sets once for the whole run: no task changes them, every host sees the same value
RUN_CONSTANTS = frozenset((
    "ansible_check_mode", "ansible_diff_mode", "ansible_run_tags", "ansible_skip_tags", "ansible_version",
    "ansible_forks", "ansible_verbosity", "ansible_limit", "ansible_inventory_sources", "ansible_config_file",
    "ansible_playbook_python", "playbook_dir", "ansible_play_name", "ansible_play_role_names",
    "ansible_role_names", "ansible_dependent_role_names", "role_names", "role_name", "role_path", "role_uuid",
    "ansible_role_name", "ansible_collection_name", "ansible_parent_role_names", "ansible_parent_role_paths",
    "omit", "undef",
))
#: per host, but no task changes them
HOST_CONSTANTS = frozenset(("inventory_hostname", "inventory_hostname_short"))
#: the same for every host; only tasks that change the inventory change it (and then nothing is judged)
INVENTORY_WIDE = frozenset(("groups",))
#: change while the play runs whatever its tasks say: hosts fail or end, group_by/add_host move hosts
ALWAYS_MUTABLE = frozenset(("ansible_play_hosts", "ansible_play_batch", "ansible_play_hosts_all", "play_hosts"))
#: names whose value the gate cannot follow (any variable, another host's, a lookup run at gate time)
OPAQUE_NAMES = frozenset(("vars", "hostvars", "lookup", "query", "q", "now"))
#: what the fact modules of ansible-core add besides ``ansible_*`` facts
FACT_MODULE_NAMES = {"package_facts": ("packages",), "service_facts": ("services",)}
FACT_MODULE_PREFIXES = {"getent": "getent_"}
#: any module may return ``ansible_facts`` and so set (or override) a variable of any name; these are known
#: not to, besides the cases above (every other module, a collection's or a library/ one, may)
NO_FACT_PREFIXES = ("ansible.builtin.", "changeops.itsm.")
#: ansible.builtin actions that return whatever another task returned (facts included)
FACTS_OF_ANOTHER_TASK = frozenset(("async_status",))

#: Jinja tests and filters that only compute from their arguments. Any other one - ``exists``, ``file``,
#: ``mount`` (the state of the controller or host when the gate runs, not when the task runs),
#: ``strftime``/``random`` (the clock, chance), ``realpath``/``fileglob``/``expanduser`` (the file system,
#: the environment), a collection's - makes a condition one the gate cannot judge before the play runs.
PURE_TESTS = frozenset((
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "filter",
    "float", "ge", "greaterthan", "gt", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping",
    "ne", "none", "number", "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper", "==",
    "!=", "<", "<=", ">", ">=", "all", "any", "contains", "match", "search", "regex", "version",
    "version_compare", "subset", "superset", "issubset", "issuperset", "nan", "truthy", "falsy",
    "vault_encrypted", "abs", "uri", "url", "urn", "success", "succeeded", "failure", "failed", "changed",
    "change", "skipped", "skip", "finished", "started", "reachable", "unreachable", "timedout",
))
PURE_FILTERS = frozenset((
    # Jinja's own (random is left out: chance)
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join",
    "last", "length", "list", "lower", "map", "max", "min", "pprint", "reject", "rejectattr", "replace", "reverse",
    "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags", "sum", "title", "tojson",
    "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
    # ansible-core's that read nothing but their arguments
    "b64decode", "b64encode", "basename", "bool", "checksum", "combine", "comment", "dict2items", "dirname",
    "extract", "from_json", "from_yaml", "from_yaml_all", "hash", "human_readable", "human_to_bytes",
    "items2dict", "mandatory", "md5", "path_join", "quote", "regex_escape", "regex_findall", "regex_replace",
    "regex_search", "sha1", "split", "splitext", "subelements", "ternary", "to_datetime", "to_json",
    "to_nice_json", "to_nice_yaml", "to_uuid", "to_yaml", "type_debug", "urldecode", "urlsplit", "win_basename",
    "win_dirname", "win_splitdrive", "zip", "zip_longest", "flatten", "intersect", "difference",
    "symmetric_difference", "union", "product", "permutations", "combinations", "log", "pow", "root",
    "normpath", "commonpath",
))
#: functions a condition may call (Jinja's globals): the others (lipsum: chance) are not judged
PURE_GLOBALS = frozenset(("range", "dict", "namespace", "cycler", "joiner", "undef"))
#: how the reasons name the state an impure test or filter reads
_STATE_READ = {
    "exists": "the file system", "file": "the file system", "directory": "the file system", "dir": "the file system",
    "link": "the file system", "link_exists": "the file system", "mount": "the file system",
    "same_file": "the file system", "vaulted_file": "the file system", "realpath": "the file system",
    "fileglob": "the file system", "relpath": "the working directory", "expanduser": "the environment",
    "expandvars": "the environment", "strftime": "the clock", "random": "chance", "shuffle": "chance",
    "password_hash": "chance", "vault": "chance",
}
#: uncertain conditions listed in the context (each with where and why); the protected-area reasons name theirs
MAX_UNCERTAIN_LISTED = 50
#: a variable whose value holds more templates or items than this is not followed
MAX_CLOSURE_NAMES = 100
MAX_VALUE_ITEMS = 2000
#: variable look-ups (one per host and task, ~0.2 ms each) the gate may spend on conditions per play batch:
#: a condition false for the first host that may differ on other hosts is evaluated for every host
#: of the batch while this lasts, else it counts as possibly true
MAX_VARIABLE_LOOKUPS = 1000

_MISSING = object()
_NOT_FOLLOWED = object()


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


def _relative(path, base_dir):
    if base_dir and path.startswith(base_dir.rstrip(os.sep) + os.sep):
        return path[len(base_dir.rstrip(os.sep)) + 1:]
    return path


def _where(task, base_dir):
    """``file:line`` of a task, relative to the playbook directory when below it."""
    return _relative(task.get_path() or "(unknown file)", base_dir)


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
    conditions = getattr(task, "changed_when", None)
    if not isinstance(conditions, (list, tuple)):
        conditions = [conditions]  # ansible-core 2.21 keeps a single condition as written, not in a list
    for condition in conditions:
        if condition is False or (isinstance(condition, str) and condition.strip().lower() == "false"):
            return True
    return False


def _include_targets(task, short, args):
    """The file names an ``include_tasks`` loads, or None when they are not known before the play runs.

    Only a literal file name, or ``prefix{{ loop_var }}suffix`` over a literal ``loop:`` list, is
    known: any other variable may differ from host to host.
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


#: a file name's template parts, whatever they hold (``{{ x }}``, ``{% if y %}-z{% endif %}``)
_TEMPLATE_PARTS = re.compile(r"\{[{%#].*[}%#]\}")
#: the most files an include whose name is a template may load that the gate reads
MAX_CANDIDATE_FILES = 20


def _candidate_files(task, args):
    """The task files an ``include_tasks`` whose name holds a template may load: every file its name (or a
    ``with_first_found`` item) matches with each template part read as ``*``, next to the including file, in the
    role's tasks and in the playbook directory. Empty when they are too many or could be anywhere."""
    if getattr(task, "loop_with", None) == "first_found" and isinstance(getattr(task, "loop", None), list):
        names = [item for item in task.loop if isinstance(item, str)]
    else:
        names = [args.get("_raw_params") or args.get("file")]
    patterns = set()
    for name in names:
        if not isinstance(name, str) or not name.strip():
            continue
        pattern = _TEMPLATE_PARTS.sub("*", name.strip())
        if pattern.strip("*/") == "" or pattern.startswith(("/", "~")) or ".." in pattern:
            return []  # any file at all: nothing to narrow it down
        patterns.add(pattern)
    including = (task.get_path() or "").rsplit(":", 1)[0]
    directories = [os.path.dirname(including)] if including else []
    role = getattr(task, "_role", None)
    if role is not None:
        directories.append(os.path.join(role._role_path, "handlers" if isinstance(task, Handler) else "tasks"))
    else:
        directories.append(task._loader.get_basedir())
    found = []
    for directory in directories:
        for pattern in sorted(patterns):
            for path in sorted(glob.glob(os.path.join(directory, pattern))):
                path = os.path.realpath(path)
                if os.path.isfile(path) and path.endswith((".yml", ".yaml")) and path not in found:
                    found.append(path)
    return found if len(found) <= MAX_CANDIDATE_FILES else []


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
    """The blocks Ansible builds from ``path`` for ``task`` (see StrategyBase._load_included_file), and
    whether loading them adds a public role to the play (an ``import_role`` in the file)."""
    data = task._loader.load_from_file(path, trusted_as_template=True)
    if data is None:
        return [], False
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
        blocks = load_list_of_blocks(data, play=play, parent_block=parent, role=task._role,
                                     use_handlers=isinstance(task, Handler), loader=task._loader,
                                     variable_manager=task._variable_manager)
        return blocks, any(getattr(role, "public", True) for role in (play.roles or [])[len(roles):])
    finally:
        # an import_role in the file adds its role to the play when loaded: that is for Ansible to do
        # when (and if) the include runs
        play.roles = roles


def _literal_role(task):
    """``include_role``: the role name and ``*_from`` files when all are literal, else None."""
    name = getattr(task, "_role_name", None)
    from_files = dict(getattr(task, "_from_files", None) or {})
    if not isinstance(name, str) or not name or "{" in name:
        return None
    if any(not isinstance(value, str) or "{" in value for value in from_files.values()):
        return None
    return name, tuple(sorted(from_files.items()))


def _included_role_blocks(task, play):
    """The task and handler blocks Ansible builds for an ``include_role`` (IncludeRole.get_block_list),
    and the role's directory.

    Loading a role registers it with the play (roles, handlers, role cache): that is for Ansible to
    do when (and if) the include runs, so the play is left as it was.
    """
    include = task.copy()
    roles, handlers = list(play.roles or []), list(play.handlers or [])
    cache = getattr(play, "role_cache", None)
    saved_cache = {key: list(value) for key, value in cache.items()} if isinstance(cache, dict) else None
    try:
        blocks, handler_blocks = include.get_block_list(play=play, variable_manager=task._variable_manager,
                                                        loader=task._loader)
    finally:
        play.roles, play.handlers = roles, handlers
        if saved_cache is not None:
            cache.clear()
            cache.update(saved_cache)
    return list(blocks) + list(handler_blocks), include._role_path


def _read_include(task, short, play, stack):
    """What a dynamic include loads: ``([(file, blocks, key, exposes_variables)], [(target, why it is not read)])``.

    ``exposes_variables``: loading the file adds a public role to the play, whose variables later
    tasks will see.

    ``stack``: the keys of the includes being read (an include of itself is a loop). This one
    resolver serves real and ``--check`` runs alike.
    """
    args = task.args or {}
    loaded, unread = [], []
    if short == "include_role":
        role = _literal_role(task)
        shown = args.get("name") or args.get("role")
        if role is None:
            return loaded, [(shown, "not known before the play runs")]
        key = ("role",) + role
        if key in stack or len(stack) >= MAX_INCLUDE_DEPTH:
            return loaded, [(shown, "included from itself or nested too deep")]
        try:
            blocks, path = _included_role_blocks(task, play)
        except Exception as exc:  # pylint: disable=broad-except
            return loaded, [(shown, "cannot be read: %s" % exc)]
        return [(path or role[0], blocks, key, False)], unread
    targets = _include_targets(task, short, args)
    if targets is None:
        unread = [(args.get("name") or args.get("_raw_params") or args.get("file"), "not known before the play runs")]
        # it stays a blind spot, but the files it may load are read too: what they touch is named
        for path in _candidate_files(task, args):
            if path in stack or len(stack) >= MAX_INCLUDE_DEPTH:
                continue
            try:
                blocks, exposes = _included_blocks(task, path, play)
            except Exception:  # pylint: disable=broad-except
                continue  # a candidate that is no task file: Ansible would not load it either
            loaded.append((path, blocks, path, exposes))
        return loaded, unread
    for target in targets:
        path = _include_file(task, target)
        if path is None:
            unread.append((target, "no single file found"))
            continue
        if path in stack or len(stack) >= MAX_INCLUDE_DEPTH:
            unread.append((target, "included from itself or nested too deep"))
            continue
        try:
            blocks, exposes = _included_blocks(task, path, play)
        except Exception as exc:  # pylint: disable=broad-except
            unread.append((target, "cannot be read: %s" % exc))
            continue
        loaded.append((path, blocks, path, exposes))
    return loaded, unread


def _selected(task, only_tags, skip_tags, task_vars):
    try:
        return task.evaluate_tags(only_tags, skip_tags, all_vars=task_vars)
    except Exception:  # pylint: disable=broad-except
        return True  # a tag that cannot be templated yet: assume the task runs


def _loop_names(task):
    """Variables a loop sets for each item: local to the task (and to the files an include loads)."""
    if not (getattr(task, "loop", None) is not None or getattr(task, "loop_with", None)):
        return ()
    control = getattr(task, "loop_control", None)
    names = [getattr(control, "loop_var", None) or "item"]
    if isinstance(getattr(control, "index_var", None), str):
        names.append(control.index_var)
    return tuple(names)


class _Step(object):
    """A task or include of the play, with the includes it sits in (``guards``, outermost first)."""

    __slots__ = ("task", "action", "short", "where", "guards", "local", "files", "unread", "shown")

    def __init__(self, task, action, where, guards):
        self.task = task
        self.action = action
        self.short = _short(action)
        self.where = where
        self.guards = guards
        local = set(_loop_names(task))
        for guard in guards:
            local.update(guard.local)
        self.local = frozenset(local)
        self.files = []
        self.unread = []
        args = task.args or {}
        self.shown = args.get("name") or args.get("role") or args.get("file") or args.get("_raw_params")


class _Mutations(object):
    """The variables the play's tasks may set while it runs (set_fact, register, include_vars, facts...).

    A condition on such a variable cannot be judged before the play runs: its value at gate time
    (undefined, or what an earlier play left) is not the value the task will see. Collected over
    every task the gate reads, whether it may run or not (a superset, so conservative), and in no
    particular order (a variable set after the include counts too).
    """

    def __init__(self):
        self.names = {}
        self.prefixes = {}
        #: why every variable may change (an include the gate cannot read, include_vars of an unknown file...)
        self.everything = None

    def all(self, why):
        if self.everything is None:
            self.everything = why

    def add(self, name, why):
        if isinstance(name, str) and name and "{" not in name:
            self.names.setdefault(name, why)
        elif name:
            self.all(why)

    def why(self, name):
        """Why a task may change ``name`` (for the reasons), or None."""
        if name in ALWAYS_MUTABLE:
            return "%s changes while the play runs" % name
        if name.startswith("ansible_"):
            return "%s is a fact, which tasks gather and change" % name
        if name in self.names:
            return self.names[name]
        for prefix, why in self.prefixes.items():
            if name.startswith(prefix):
                return why
        return self.everything

    def covers(self, name):
        if name in RUN_CONSTANTS or name in HOST_CONSTANTS:
            return False
        if name in ALWAYS_MUTABLE or name.startswith("ansible_") or self.everything is not None:
            # facts (any module may return ansible_facts) and play host lists
            return True
        return name in self.names or any(name.startswith(prefix) for prefix in self.prefixes)

    def task(self, task, short, where):
        args = task.args or {}
        for name in registered_names(task):
            self.add(name, "%s registers %s" % (where, name))
        why = "%s %s sets it" % (where, short)
        if short == "set_fact":
            for key in args:
                if key != "cacheable":
                    self.add(key, "%s set_fact sets it" % where if "{" not in str(key) else
                             "%s sets a fact named by a template" % where)
        elif short == "include_vars":
            self._include_vars(task, args, where)
        elif short in ("add_host", "group_by") or (short == "meta" and args.get("_raw_params") == "refresh_inventory"):
            # hosts change groups, so group variables may change for any name
            self.all("%s %s changes the inventory" % (where, short))
        elif short in FACT_MODULE_NAMES:
            for name in FACT_MODULE_NAMES[short]:
                self.names.setdefault(name, why)
        elif short in FACT_MODULE_PREFIXES:
            self.prefixes.setdefault(FACT_MODULE_PREFIXES[short], why)
        elif short.endswith("_facts") and short != "gather_facts":
            self.all("%s %s returns facts" % (where, short))
        elif short == "include_role" and args.get("public") not in (None, False, "false", "no"):
            self.all("%s include_role exposes the role's variables" % where)
        else:
            action = str(getattr(task, "resolved_action", None) or getattr(task, "action", "") or "")
            if short in FACTS_OF_ANOTHER_TASK or not action.startswith(NO_FACT_PREFIXES):
                # its ansible_facts become variables of any name, overriding inventory and role defaults
                self.all("%s %s may return facts that set variables" % (where, action or short))

    def _include_vars(self, task, args, where):
        why = "%s include_vars of a file the gate cannot read" % where
        if args.get("name"):
            self.add(args["name"], why)
            return
        source = args.get("file") or args.get("_raw_params")
        if args.get("dir") or not isinstance(source, str) or "{" in source:
            self.all(why)
            return
        try:
            path = task._loader.path_dwim_relative_stack(task.get_search_path(), "vars", source)
            data = task._loader.load_from_file(path)
        except Exception:  # pylint: disable=broad-except
            data = None
        if not isinstance(data, dict):
            self.all(why)
            return
        for key in data:
            self.add(key, "%s include_vars sets it" % where)


class _Conditions(object):
    """Is a task's ``when`` false for every host of the batch, as far as the gate can tell now?

    ``task.when`` already holds the conditions the task inherits from its blocks, roles and static
    includes (Ansible builds included tasks under the include, so its own ``when`` is not theirs,
    as at run time). A condition is judged only when every variable it reads, directly or through
    the templates in their values, is one no task of the play may change (see :class:`_Mutations`)
    and no loop sets; it is evaluated with each host's own variables, as Ansible would compute them
    for the task. Anything else - an undefined variable a task will register, a lookup, an error -
    counts as possibly true.

    Cost: one variable look-up for the first host of the batch; when the condition is false there
    and reads only extra vars and run constants, it is false for every host. Otherwise each further
    host costs a look-up (bounded by :data:`MAX_VARIABLE_LOOKUPS` per play batch; past that the
    condition counts as possibly true), and the condition is evaluated once per distinct set of
    values of the variables it reads.
    """

    def __init__(self, play, hosts, mutations, lookups=None):
        manager = play.get_variable_manager() if hasattr(play, "get_variable_manager") else None
        self.manager = manager
        self.inventory = getattr(manager, "_inventory", None)
        self.loader = getattr(play, "_loader", None)
        self.extra = frozenset(getattr(manager, "extra_vars", None) or ())
        self.play = play
        self.hosts = [host for host in hosts or () if host]
        self.mutations = mutations
        self.lookups = MAX_VARIABLE_LOOKUPS if lookups is None else lookups
        self._parsed = {}
        self._results = {}
        self._environment = jinja2.Environment() if jinja2 is not None else None

    # -- reading names ---------------------------------------------------------------------
    def _names(self, text, expression=True):
        """Top-level variable names ``text`` reads, or None when the gate does not judge it (see :meth:`why_not`)."""
        return self._parse(text, expression)[0]

    def _parse(self, text, expression=True):
        """``(names, None)``, or ``(None, why the gate does not judge text)``; cached per text."""
        key = (text, expression)
        if key in self._parsed:
            return self._parsed[key]
        parsed = (None, "the gate cannot read it")
        if self._environment is not None and isinstance(text, str) and text.strip():
            source = text.strip()
            if expression and not any(mark in source for mark in ("{{", "{%", "{#")):
                source = "{{ (%s) }}" % source
            elif expression:
                # a template in a condition (indirection) is resolved by Ansible at run time: not judged
                source = None
                parsed = (None, "it holds a template, which Ansible resolves only when the task runs")
            if source is not None:
                try:
                    tree = self._environment.parse(source)
                except Exception:  # pylint: disable=broad-except
                    tree = None
                    parsed = (None, "it is not a valid expression")
                if tree is not None:
                    impure = self._impure(tree)
                    if impure:
                        parsed = (None, impure)
                    else:
                        # every name read (not only the undeclared ones: a name a template sets itself is read
                        # as a variable too, which can only make the gate more careful); filters and tests are
                        # not names, Jinja's own globals (range, dict...) not variables
                        parsed = (frozenset(node.name for node in tree.find_all(jinja2_nodes.Name)
                                            if node.ctx == "load" and node.name not in self._environment.globals),
                                  None)
        self._parsed[key] = parsed
        return parsed

    @staticmethod
    def _plain(name):
        for prefix in ("ansible.builtin.", "ansible.legacy."):
            if name.startswith(prefix):
                return name[len(prefix):]
        return name

    def _impure(self, tree):
        """Why ``tree`` reads something besides variables (a test or filter over the state of the host or the
        controller, the clock, chance), or None when it only computes from them."""
        for node in tree.find_all(jinja2_nodes.Test):
            name = self._plain(node.name)
            if name not in PURE_TESTS:
                return "the test %s reads %s when it runs" % (node.name, _STATE_READ.get(
                    name, "what the gate cannot know in advance (it is not a test that only reads its arguments)"))
        for node in tree.find_all(jinja2_nodes.Filter):
            name = self._plain(node.name)
            if name not in PURE_FILTERS:
                return "the filter %s reads %s when it runs" % (node.name, _STATE_READ.get(
                    name, "what the gate cannot know in advance (it is not a filter that only reads its arguments)"))
        for node in tree.find_all(jinja2_nodes.Call):
            if isinstance(node.node, jinja2_nodes.Name) and node.node.name in self._environment.globals \
                    and node.node.name not in PURE_GLOBALS:
                return "%s() gives another value each time" % node.node.name
        return None

    def _judged(self, name, local):
        return self._why_not_judged(name, local) is None

    def _why_not_judged(self, name, local):
        """Why a condition reading ``name`` cannot be judged before the play runs, or None when it can."""
        if name in local:
            return "%s is set by a loop" % name
        if name in OPAQUE_NAMES:
            return "%s reads what the gate cannot follow (any variable, another host's, a lookup run when the task " \
                   "runs)" % name
        if name in ALWAYS_MUTABLE:
            return self.mutations.why(name)
        # extra vars win over anything a task sets (set_fact, register, include_vars, facts)
        if name in self.extra or not self.mutations.covers(name):
            return None
        return self.mutations.why(name) or "a task of the play may set %s" % name

    def _templates(self, value):
        """The template strings inside a variable's (raw) value, or None when too big to follow."""
        found, todo, items = [], [value], 0
        while todo:
            item = todo.pop()
            items += 1
            if items > MAX_VALUE_ITEMS:
                return None
            if isinstance(item, str):
                if "{{" in item or "{%" in item:
                    found.append(item)
            elif isinstance(item, dict):
                todo.extend(item.keys())
                todo.extend(item.values())
            elif isinstance(item, (list, tuple, set, frozenset)):
                todo.extend(item)
        return found

    def _closure(self, names, variables, local):
        """Every variable ``names`` read through the templates in their values, or None when one of
        them cannot be judged before the play runs."""
        return self._closure_why(names, variables, local)[0]

    def _closure_why(self, names, variables, local):
        """``(closure, None)`` or ``(None, why)``."""
        seen, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if len(seen) > MAX_CLOSURE_NAMES:
                return None, "it reads more than %d variables through their values" % MAX_CLOSURE_NAMES
            why = self._why_not_judged(name, local)
            if why is not None:
                return None, why
            value = variables.get(name, _MISSING)
            if value is _MISSING:
                continue  # undefined, and no task defines it: undefined at run time too
            templates = self._templates(value)
            if templates is None:
                return None, "the value of %s is too big to follow" % name
            for text in templates:
                more, why = self._parse(text, expression=False)
                if more is None:
                    return None, "%s is a template: %s" % (name, why)
                todo.extend(more)
        return frozenset(seen), None

    def _host_independent(self, closure):
        return all(name in RUN_CONSTANTS or name in INVENTORY_WIDE or (name in self.extra and name not in HOST_CONSTANTS)
                   for name in closure)

    # -- evaluating ------------------------------------------------------------------------
    def _variables(self, task, host_name):
        """The variables Ansible would give ``task`` on ``host_name``, or None."""
        if self.manager is None or self.inventory is None or self.loader is None or self.lookups <= 0:
            return None
        host = self.inventory.get_host(host_name)
        if host is None:
            return None
        self.lookups -= 1
        try:
            # one-host play lists: a full list per host makes each look-up O(hosts); conditions never
            # read them (hosts fail or end while the play runs: ALWAYS_MUTABLE)
            return self.manager.get_vars(play=self.play, host=host, task=task, _hosts=[host_name],
                                         _hosts_all=[host_name])
        except TypeError:
            try:
                return self.manager.get_vars(play=self.play, host=host, task=task)
            except Exception:  # pylint: disable=broad-except
                return None
        except Exception:  # pylint: disable=broad-except
            return None

    def _value(self, text, closure, variables):
        """True/False, or None when it cannot be evaluated; once per distinct set of values read."""
        key = (text, tuple((name, repr(variables.get(name, _MISSING))) for name in sorted(closure)))
        if key not in self._results:
            try:
                self._results[key] = bool(Templar(loader=self.loader, variables=variables).evaluate_conditional(text))
            except Exception:  # pylint: disable=broad-except
                self._results[key] = None  # undefined, broken...: possibly true
        return self._results[key]

    def _evaluate(self, conditions, variables, local):
        """``(false, unknown)`` with ``variables`` (one host): the first condition certainly false as
        ``(text, closure)``, else the first that cannot be evaluated as ``(text, why)``; both None: all true."""
        unknown = None
        for text, names in conditions:
            closure, why = self._closure_why(names, variables, local)
            value = self._value(text, closure, variables) if closure is not None else None
            if value is False:
                return (text, closure), None
            if value is None and unknown is None:
                unknown = (text, why or "it cannot be evaluated before the play runs (undefined, or an error)")
        return None, unknown

    def _false_on(self, conditions, variables, local):
        """The first of ``conditions`` that is certainly false with ``variables``, as ``(text, closure)``."""
        return self._evaluate(conditions, variables, local)[0]

    def judge(self, task, local=frozenset()):
        """What the gate can tell of ``task``'s ``when`` for the batch, before the play runs:

        * ``("false", condition)``: false for every host, the task does not run;
        * ``("true", None)``: no condition, or all true for a host;
        * ``("unknown", (condition, why))``: it may run; the condition the gate could not judge (counted true).
        """
        conditions = list(getattr(task, "when", None) or ())
        if not conditions:
            return "true", None
        for condition in conditions:
            if condition is False or (isinstance(condition, str) and condition.strip().lower() == "false"):
                return "false", "false"
        judged, unjudged = [], None
        for condition in conditions:
            if condition is True or (isinstance(condition, str) and condition.strip().lower() == "true"):
                continue
            names, why = self._parse(condition) if isinstance(condition, str) else (None, "it is not a string")
            if names is not None:
                why = next((self._why_not_judged(name, local) for name in sorted(names)
                            if not self._judged(name, local)), None)
            if names is None or why is not None:
                unjudged = unjudged or (str(condition), why)
                continue
            judged.append((condition, names))
        if not judged:
            return ("unknown", unjudged) if unjudged else ("true", None)
        if not self.hosts:
            return "unknown", (judged[0][0], "the batch has no host to judge it for")
        first, others = self.hosts[0], self.hosts[1:]
        variables = self._variables(task, first)
        if variables is None:
            return "unknown", (judged[0][0], "the gate could not read the variables of %s" % first)
        false, unknown = self._evaluate(judged, variables, local)
        if false is None:
            return ("unknown", unjudged or unknown) if (unjudged or unknown) else ("true", None)
        if not others or self._host_independent(false[1]):
            return "false", false[0]
        if self.lookups < len(others):
            # not enough look-ups left for every host: possibly true
            return "unknown", (false[0], "it would need more than %d variable look-ups to judge for every host of "
                                         "the batch" % MAX_VARIABLE_LOOKUPS)
        for host in others:
            variables = self._variables(task, host)
            if variables is None:
                return "unknown", (false[0], "the gate could not read the variables of %s" % host)
            host_false, unknown = self._evaluate(judged, variables, local)
            if host_false is None:
                return ("unknown", unjudged or unknown) if (unjudged or unknown) else ("true", None)
        return "false", false[0]

    def false_for_every_host(self, task, local=frozenset()):
        """The condition of ``task`` that is false for every host of the batch, or None (it may run)."""
        verdict, condition = self.judge(task, local)
        return condition if verdict == "false" else None


class _Scan(object):
    """One walk over the tasks that may run: the play's own, and those of every include the gate can read."""

    def __init__(self, play, base_dir, tags, task_vars):
        self.play = play
        self.base_dir = base_dir
        self.tags = tags
        self.task_vars = task_vars
        self.tasks = []
        self.includes = []
        self.mutations = _Mutations()

    def blocks(self, blocks, guards=(), stack=()):
        for task in _walk(blocks):
            action = getattr(task, "resolved_action", None) or getattr(task, "action", None)
            if not action or not _selected(task, *self.tags, task_vars=self.task_vars):
                continue
            where = _where(task, self.base_dir)
            short = _short(action)
            self.mutations.task(task, short, where)
            if short == "meta":
                continue
            step = _Step(task, action, where, guards)
            if short not in DYNAMIC_INCLUDES:
                self.tasks.append(step)
                continue
            self.includes.append(step)
            loaded, unread = _read_include(task, short, self.play, stack)
            step.unread = ["%s %s %s (%s)" % (where, short, target, why) for target, why in unread]
            if unread:
                # its tasks may set any variable
                self.mutations.all(step.unread[0])
            for path, included, key, exposes in loaded:
                if exposes:
                    self.mutations.all("%s %s imports a role whose variables later tasks see" % (where, path))
                step.files.append(_relative(path, self.base_dir))
                self.blocks(included, guards + (step,), stack + (key,))


#: words that run the command after them (``sudo auditctl -e 0``)
_COMMAND_WRAPPERS = frozenset(("sudo", "env", "exec", "nohup", "nice", "ionice", "command", "time", "builtin", "xargs",
                               "timeout", "stdbuf", "doas", "chroot", "setsid", "flock"))
#: systemctl verbs that change a service
_SYSTEMCTL_VERBS = frozenset(("start", "stop", "restart", "reload", "try-restart", "reload-or-restart", "enable",
                              "disable", "mask", "unmask", "kill", "reenable", "preset", "isolate", "revert", "edit",
                              "set-property"))
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_WRAPPER_VALUE = re.compile(r"^\d+(\.\d+)?[smhd]?$")
_SHELL_SEPARATORS = re.compile(r"&&|\|\||[;|&\n()`]|\$\(")


def _command_line(short, args):
    """The command line of a command/shell/raw/script task, as written (``argv`` joined), or None."""
    if isinstance(args.get("argv"), list):
        return " ".join(str(word) for word in args["argv"])
    value = args.get("_raw_params") or args.get("cmd")
    return value if isinstance(value, str) else None


def _service_name(name):
    return name[:-len(".service")] if name.endswith(".service") else name


def _command_programs(line):
    """``(programs, services)`` a command line runs and manages: the first word of each part of a shell line
    (after ``sudo``, ``env``, variable assignments...), as a base name; and the services ``systemctl <verb>``
    and ``service <name>`` name. Words still holding a template are left out."""
    programs, services = [], []
    if not isinstance(line, str):
        return programs, services
    for part in _SHELL_SEPARATORS.split(line):
        words = [word.strip("\"'") for word in part.split()]
        while words:
            if _ASSIGNMENT.match(words[0]):
                words.pop(0)
            elif os.path.basename(words[0]) in _COMMAND_WRAPPERS:
                words.pop(0)
                # the wrapper's own options and numbers (sudo -u bob, timeout 10)
                while words and (words[0].startswith("-") or _WRAPPER_VALUE.match(words[0])):
                    option = words.pop(0)
                    if option in ("-u", "-g", "-C", "-n", "-c") and words:
                        words.pop(0)
            else:
                break
        if not words or "{" in words[0]:
            continue
        program = os.path.basename(words[0])
        if program and program not in programs:
            programs.append(program)
        rest = [word for word in words[1:] if not word.startswith("-") and "{" not in word]
        if program == "systemctl" and rest and rest[0] in _SYSTEMCTL_VERBS:
            services.extend(_service_name(word) for word in rest[1:] if _service_name(word) not in services)
        elif program == "service" and rest:
            if _service_name(rest[0]) not in services:
                services.append(_service_name(rest[0]))
    return programs, services


def _notified_names(task):
    """What ``task`` notifies, or None when a name needs run-time values (then any handler may run)."""
    notify = getattr(task, "notify", None) or []
    if isinstance(notify, str):
        notify = [notify]
    names = set()
    for name in notify:
        if not isinstance(name, str) or "{" in name:
            return None
        names.add(name.strip())
    return names


def _handler_answers(handler, notified):
    """Does ``handler`` run for any of the ``notified`` names (its name, a listen topic, ``role : name``)?"""
    name = getattr(handler, "name", None)
    listen = getattr(handler, "listen", None) or []
    if isinstance(listen, str):
        listen = [listen]
    keys = set(str(item) for item in listen)
    if name:
        keys.add(str(name))
    if any("{" in key for key in keys):
        return True
    for wanted in notified:
        if wanted in keys or wanted.rsplit(" : ", 1)[-1] in keys:
            return True
    return False


def _dormant_handlers(steps, counted):
    """The handler tasks (and handler includes) no task that may run notifies, directly or through a handler it
    notifies: they do not run. ``counted(step)``: the step may run, judged without handler notifications."""
    handlers = [step for step in steps if isinstance(step.task, Handler)]
    if not handlers:
        return set()
    notified = set()
    for step in steps:
        if isinstance(step.task, Handler) or not counted(step):
            continue
        names = _notified_names(step.task)
        if names is None:
            return set()  # a notification known only at run time: any handler may run
        notified |= names
    active = set()
    changed = True
    while changed:
        changed = False
        for step in handlers:
            if id(step.task) in active or not _handler_answers(step.task, notified):
                continue
            active.add(id(step.task))
            changed = True
            names = _notified_names(step.task)
            if names is None:
                return set()
            notified |= names
    # a handler include that runs makes the handlers it loads run with it
    return set(step.task for step in handlers if id(step.task) not in active
               and not any(id(guard.task) in active for guard in step.guards))


def inspect_play(play, task_vars, templar=None, playbook=None, check_mode=False, hosts=None):
    """``{name, pattern, roles, tags, modules, paths, dynamic_includes, ...}`` of ``play``.

    ``check_mode`` is the run's ``--check``: tasks that still run for real are listed in
    ``real_in_check_mode``, dynamic includes whose tasks cannot be read in advance in
    ``uninspectable_includes``. ``hosts``: the play batch the gate decides for (conditions are
    judged for these hosts; default: the host of ``task_vars``).
    """
    only_tags = set(getattr(play, "only_tags", None) or ["all"])
    skip_tags = set(getattr(play, "skip_tags", None) or [])
    roles, tags, modules, paths, includes, unread = [], [], [], [], [], []
    unresolved_paths, opaque, delegated, unresolved_delegations, real = [], [], [], [], []
    read_includes, skipped_includes, skipped_tasks = [], [], []
    services, unresolved_services, commands = [], [], []
    touched_at = {}
    # "path P" -> the condition the gate could not judge that every task touching P so far is under
    conditions_at = {}
    uncertain_conditions = []
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

    scan = _Scan(play, base_dir, (only_tags, skip_tags), task_vars)
    scan.blocks(blocks)
    conditions = _Conditions(play, hosts or [task_vars.get("inventory_hostname")], scan.mutations)
    verdicts = {}

    def verdict(step):
        key = id(step)
        if key not in verdicts:
            verdicts[key] = conditions.judge(step.task, step.local)
        return verdicts[key]

    def skipped(step):
        kind, condition = verdict(step)
        return condition if kind == "false" else None

    def uncertain(step):
        """``(file:line, condition, why)`` of the condition, the task's own or an include's it sits in, that the
        gate could not judge and counted as true; None when the task certainly runs where it runs."""
        for candidate in (step,) + tuple(reversed(step.guards)):
            kind, detail = verdict(candidate)
            if kind == "unknown":
                return candidate.where, detail[0], detail[1]
        return None

    def touch(key, where, step):
        """Remember where ``key`` ("path P", "module M"...) is touched; under a condition only while no task
        touching it is certain to run."""
        doubt = uncertain(step)
        if key not in touched_at:
            touched_at[key] = where
            if doubt:
                conditions_at[key] = "%s (at %s, which the gate cannot judge before the play runs: %s; counted as " \
                                     "true)" % (doubt[1], doubt[0], doubt[2])
        elif key in conditions_at and not doubt:
            touched_at[key] = where
            del conditions_at[key]

    def reached(step):
        # an include that runs on no host loads nothing; a handler no task notifies does not run
        return step.task not in dormant and not any(skipped(guard) or guard.task in dormant for guard in step.guards)

    # handlers run only when a task that may run notifies them (or a handler it notifies does)
    dormant = set()
    dormant.update(_dormant_handlers(scan.includes + scan.tasks, lambda step: reached(step) and not skipped(step)))

    def described(step):
        if getattr(step.task, "_role", None) is not None:
            add(roles, _role_name(step.task._role))
        for tag in step.task.tags or []:
            add(tags, str(tag))

    def delegation(step):
        if getattr(step.task, "delegate_to", None) and not step.action.startswith(RECORD_ONLY_ACTION_PREFIX):
            target = _template(templar, step.task.delegate_to)
            if _unresolved(target) or not isinstance(target, str):
                add(unresolved_delegations, "%s delegate_to %s" % (step.where, step.task.delegate_to))
            elif target not in CONTROLLER_NAMES:
                add(delegated, target)

    # includes first: what they load depends on them, and they get the condition look-ups first
    for step in scan.includes:
        if not reached(step):
            continue
        described(step)
        condition = skipped(step)
        if condition:
            add(skipped_includes, "%s %s %s (when: %s)" % (step.where, step.short, step.shown, condition))
            continue
        delegation(step)
        if step.short == "include_role" and step.shown:
            add(roles, str(_template(templar, step.shown)))
        for path in step.files:
            add(read_includes, "%s %s %s" % (step.where, step.short, path))
        if step.unread:
            add(includes, "%s %s %s" % (step.where, step.short, step.shown))
            if check_mode:
                for text in step.unread:
                    add(unread, text)

    for step in scan.tasks:
        if step.task in dormant:
            add(skipped_tasks, "%s (%s) (handler: no task that may run notifies it)"
                % (step.where, step.task.get_name()))
            continue
        if not reached(step):
            continue
        described(step)
        task, action, short, where = step.task, step.action, step.short, step.where
        condition = skipped(step)
        if condition:
            add(skipped_tasks, "%s (%s) (when: %s)" % (where, task.get_name(), condition))
            continue
        delegation(step)
        record_only = action.startswith(RECORD_ONLY_ACTION_PREFIX)
        if check_mode and not record_only and not _read_only(task) and _runs_for_real(task, templar):
            add(real, "%s (%s)" % (where, task.get_name()))
        doubt = uncertain(step)
        if doubt and len(uncertain_conditions) < MAX_UNCERTAIN_LISTED:
            add(uncertain_conditions, "%s (%s) when: %s (%s)" % (where, task.get_name(), doubt[1], doubt[2]))
        add(modules, action)
        touch("module %s" % action, where, step)
        args = task.args or {}
        if short in OPAQUE_ACTIONS and not _read_only(task):
            # a command declared read-only (changed_when: false) changes nothing there is to see
            add(opaque, "%s %s" % (where, action))
            programs, managed = _command_programs(_template(templar, _command_line(short, args)))
            for program in programs:
                add(commands, program)
                touch("command %s" % program, where, step)
            for name in managed:
                add(services, name)
                touch("service %s" % name, where, step)
        if short in SERVICE_MODULES and args.get("name") is not None:
            name = _template(templar, args.get("name"))
            if _unresolved(name) or not isinstance(name, str):
                add(unresolved_services, "%s %s name=%s" % (where, action, args.get("name")))
            else:
                name = _service_name(name)
                add(services, name)
                touch("service %s" % name, where, step)
        if short in READ_ONLY_MODULES:
            continue
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
                path = os.path.normpath(value) + ("/" if value.endswith("/") else "")
                add(paths, path)
                touch("path %s" % path, where, step)
                written = True
        if not written and short in DEFAULT_MODULE_PATHS:
            add(paths, DEFAULT_MODULE_PATHS[short])
            touch("path %s" % DEFAULT_MODULE_PATHS[short], where, step)

    name = play.get_name() if hasattr(play, "get_name") else getattr(play, "name", "")
    play_hosts = play.hosts
    pattern = ",".join(play_hosts) if isinstance(play_hosts, list) else str(play_hosts or "")
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
        "touched_at": touched_at,
        "dynamic_includes": includes,
        "read_includes": read_includes,
        "skipped_includes": skipped_includes,
        "skipped_tasks": skipped_tasks,
        "unresolved_paths": unresolved_paths,
        "opaque_actions": opaque,
        "delegated_hosts": sorted(delegated),
        "unresolved_delegations": unresolved_delegations,
        "real_in_check_mode": real,
        "uninspectable_includes": unread,
        "system_services": sorted(services),
        "unresolved_services": unresolved_services,
        "commands": sorted(commands),
        "conditions_at": conditions_at,
        "uncertain_conditions": uncertain_conditions,
    }
