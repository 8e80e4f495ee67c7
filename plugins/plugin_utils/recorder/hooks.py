# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post-run hooks: code that runs once a recorded run has reached the ledger.

A feature that wants to act after a playbook run (close its change request,
refresh a report...) puts a module in ``plugin_utils/recorder/post_run/``
that calls :func:`register_post_run_hook` at import time. The recorder's
writer thread imports every module there, and after the run's final flush
calls each hook as ``func(sor, run_id, options, display)``:

``sor``      the open ``SystemOfRecord`` (owned by the writer thread: use it
             only inside the call);
``run_id``   the run just recorded;
``options``  the callback's resolved options as a dict (backend options and
             any option a doc fragment added to the callback), with ``_origins``:
             where Ansible found each (an ansible.cfg path, ``env: NAME``...);
``display``  Ansible's ``Display``, to warn or report.

A hook that raises is reported as a warning; it never fails the playbook and
never stops the other hooks. Hooks run only when the run's entries reached the
system of record (not while they wait in the spool), once: in the process whose
append wrote the run's end.

A run whose end reached the ledger only later, when another run replayed the
spool, gets the hooks registered with ``replayed_runs=True``, called by the
replaying run's writer with that run's ``options``: a hook whose effect
belongs to the recorded run (closing its change request) should say so; a hook
whose effect is global (refreshing the register) should not, because the
replaying run calls it at its own end anyway. A run killed before it could
record its end gets no hooks: a person decides what its change request needs.

**Append hooks** (:func:`register_append_hook`) are for work that follows the ledger while the run
goes on (feeding an external system from the outbox): the writer thread calls each as
``func(writer, entries)`` right after ``entries`` reached the ledger, with ``writer.config``
(the backend configuration), ``writer.run_id``, ``writer.options`` and ``writer.display``. It must
return at once (it runs on the writer's thread, between two appends): one that has I/O to do starts
a thread of its own and nudges it. Modules of ``post_run`` are imported when the writer is made, on
the callback's main thread, before any worker is forked (an import in a thread while a worker forks
can leave the worker a held import lock).
"""

from __future__ import annotations

import importlib
import pkgutil

_POST_RUN_HOOKS = []
_REPLAYED_RUN_HOOKS = []
_APPEND_HOOKS = []
_PACKAGE = "ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.post_run"
_discovered = False


def register_post_run_hook(func=None, replayed_runs=False):
    """Register ``func(sor, run_id, options, display)``; returns ``func`` so it works as a decorator,
    bare (``@register_post_run_hook``) or with options (``@register_post_run_hook(replayed_runs=True)``).

    ``replayed_runs``: also call it for runs whose end reached the ledger through another run's spool replay.
    """
    if func is None:
        return lambda decorated: register_post_run_hook(decorated, replayed_runs=replayed_runs)
    if not callable(func):
        raise TypeError("post-run hook %r is not callable" % (func,))
    if func not in _POST_RUN_HOOKS:
        _POST_RUN_HOOKS.append(func)
    if replayed_runs and func not in _REPLAYED_RUN_HOOKS:
        _REPLAYED_RUN_HOOKS.append(func)
    return func


def unregister_post_run_hook(func):
    for registry in (_POST_RUN_HOOKS, _REPLAYED_RUN_HOOKS, _APPEND_HOOKS):
        if func in registry:
            registry.remove(func)


def register_append_hook(func):
    """Register ``func(writer, entries)``, called after each append of the writer (see the module docstring)."""
    if not callable(func):
        raise TypeError("append hook %r is not callable" % (func,))
    if func not in _APPEND_HOOKS:
        _APPEND_HOOKS.append(func)
    return func


def run_append_hooks(writer, entries):
    """Call every append hook; a failing one is told once at -vv and never stops the writer. Returns failures."""
    failures = 0
    for hook in list(_APPEND_HOOKS):
        try:
            hook(writer, entries)
        except Exception as exc:  # pylint: disable=broad-except
            failures += 1
            try:
                writer.display.vv("changeops.itsm.change_recorder: append hook %s failed: %s" % (
                    getattr(hook, "__qualname__", repr(hook)), exc))
            except Exception:  # pylint: disable=broad-except
                pass
    return failures


def discover_post_run_hooks():
    """Import every module of the ``post_run`` package once; returns import errors as messages."""
    global _discovered  # pylint: disable=global-statement
    if _discovered:
        return []
    _discovered = True
    problems = []
    try:
        package = importlib.import_module(_PACKAGE)
    except ImportError as exc:
        return ["cannot import %s: %s" % (_PACKAGE, exc)]
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
        try:
            importlib.import_module("%s.%s" % (_PACKAGE, module.name))
        except Exception as exc:  # pylint: disable=broad-except
            problems.append("cannot load post-run hook module %s: %s" % (module.name, exc))
    return problems


def post_run_hooks(replayed=False):
    """Registered hooks in registration order (modules are imported in name order); ``replayed``: only
    those that also run for a run replayed from the spool."""
    return list(_REPLAYED_RUN_HOOKS if replayed else _POST_RUN_HOOKS)


def run_post_run_hooks(sor, run_id, options, display, replayed=False):
    """Call every hook (``replayed``: every hook for replayed runs); a failing hook becomes a warning.
    Returns the number of hooks that failed."""
    failures = 0
    for hook in post_run_hooks(replayed):
        try:
            hook(sor, run_id, options, display)
        except Exception as exc:  # pylint: disable=broad-except
            failures += 1
            display.warning("changeops.itsm.change_recorder: post-run hook %s failed for run %s: %s" % (
                getattr(hook, "__qualname__", repr(hook)), run_id, exc))
    return failures
