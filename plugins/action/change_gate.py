# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs changeops.itsm.change_gate once per play (batch) on the controller.

``BYPASS_HOST_LOOP`` makes the linear strategy run the task once for the whole
batch and treat a failure as fatal for every host of the play: a denied gate
stops the play before any host is touched. Users need not write ``run_once``.
"""

from __future__ import annotations

import datetime
import gc
import os

from ansible import context as ansible_context

from ansible_collections.changeops.itsm.plugins.module_utils import change_gate
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import policy_store
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext, check_int_sizes
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import (
    SystemOfRecordAction,
    controller_policy_path,
    open_controller_system_of_record,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.play_inspection import inspect_play
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import processes, runinfo


def resolve_policy_path(params, playbook_dir=None):
    """The runner's policy file: argument > CHANGEOPS_GATE_POLICY > ansible.cfg [changeops] gate_policy > none.

    A relative ``policy`` argument is looked up next to the playbook first, like other playbook files.
    Once a policy is published, this file is used only when it is the published version (see
    ``authorisation/policy_store.py``); until then it is the policy (none: the built-in default).
    """
    if params.get("policy"):
        path = params["policy"]
        if not os.path.isabs(path) and playbook_dir:
            beside_playbook = os.path.join(playbook_dir, path)
            if os.path.exists(beside_playbook):
                return beside_playbook
        return path
    return controller_policy_path()


def run_check_mode():
    """The run's --check, not the gate task's own check_mode: a gate task marked
    ``check_mode: true`` must not turn its decision into an always-allowed dry run
    while the rest of the play changes hosts."""
    return bool(ansible_context.CLIARGS.get("check", False))


def run_playbook(play_obj):
    """The playbook file holding the play (an imported playbook is its own file), else the first
    playbook on the command line; never the file of the gate task, which may be a tasks file."""
    path = (play_obj.get_path() if hasattr(play_obj, "get_path") else "") or ""
    path = path.rsplit(":", 1)[0] if path else ""
    if not path:
        playbooks = ansible_context.CLIARGS.get("args") or ()
        path = playbooks[0] if playbooks else ""
    return os.path.abspath(path) if path else None


def run_process_check(event):
    """Whether a ``running`` change event's process still runs: the recorder's own dead-run check (pid and
    process identity) for a run of this controller; None (cannot tell here) for one of another controller."""
    if event.get("controller") != runinfo.controller_name():
        return None
    return not processes.run_process_is_gone(event.get("pid"), event.get("pid_identity"))


class InventoryGroups(object):
    """The play's inventory groups (``groups`` of the task variables) as the change context reads them: which
    groups hold at least one host of the batch. Asked per group (a set test over its members, in C), not per
    host: a 10,000-host play needs no host -> groups map."""

    def __init__(self, groups):
        self._groups = groups or {}

    def groups_holding(self, hosts):
        wanted = hosts if isinstance(hosts, (set, frozenset)) else set(hosts)
        return [group for group, members in self._groups.items() if members and not wanted.isdisjoint(members)]


class ActionModule(SystemOfRecordAction):
    BYPASS_HOST_LOOP = True
    ARGUMENT_SPEC = change_gate.CHANGE_GATE_SPEC
    operation = staticmethod(change_gate.module_operation)

    def _now(self):
        return datetime.datetime.now(datetime.timezone.utc)

    def run(self, tmp=None, task_vars=None):
        # The worker is a fork of ansible-playbook and inherits its whole heap (for a 10,000-host inventory,
        # millions of objects). A full collection of the cyclic GC, which the gate's own allocations trigger,
        # walked all of them and wrote to their pages (copy-on-write): most of the gate task's wall time in
        # bench/gate_task. Frozen, the inherited objects are left out of every collection; they are neither
        # garbage of this task nor freed by it. And no collection runs while the gate does: what it allocates
        # (tens of thousands of rows and documents) is freed by reference counting, and collecting it young
        # dozens of times found nothing. Both undone after, so a process that runs actions in-process is left
        # as it was.
        collecting = gc.isenabled()
        gc.disable()
        gc.freeze()
        try:
            return self._run(tmp, task_vars)
        finally:
            gc.unfreeze()
            if collecting:
                gc.enable()

    def _run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(SystemOfRecordAction, self).run(tmp, task_vars)  # pylint: disable=bad-super-call
        del tmp
        # The strategy copies the worker's task attributes back: with run_once
        # set, the registered result lands on every host of the play and a
        # denial fails all of them, exactly as if the user had written run_once.
        self._task.run_once = True
        _validation, params = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)
        params = change_gate.named_in_environment(params, os.environ)
        for option in ("approval_timeout", "poll_interval"):
            if params.get(option) is not None and params[option] < (0 if option == "approval_timeout" else 1):
                result.update(failed=True, changed=False,
                              msg="%s must be %s seconds, got %r" % (
                                  option, "0 or more" if option == "approval_timeout" else "1 or more", params[option]))
                return result
        try:
            check_int_sizes(params)
        except ValidationError as exc:
            result.update(exc.to_result(), failed=True, changed=False)
            return result
        play_obj = self._task.get_play()
        play_id = getattr(play_obj, "_uuid", None)
        hosts = list(task_vars.get("ansible_play_batch") or task_vars.get("ansible_play_hosts") or
                     [task_vars.get("inventory_hostname")])
        play = {"name": getattr(play_obj, "name", None) or ""}
        try:
            play = inspect_play(play_obj, task_vars, templar=self._templar, playbook=run_playbook(play_obj),
                                check_mode=run_check_mode(), hosts=hosts)
        except Exception as exc:  # pylint: disable=broad-except
            # Not knowing what the play does must not let it through unchecked, nor call it a dry run.
            result.update(change_gate.fail_closed(
                params, ChangeopsError("cannot inspect the play's tasks: %s" % exc), self._now(), play, play_id,
                hosts, False))
            return result
        play_hosts = task_vars.get("ansible_play_hosts_all") or hosts
        play["play_host_count"] = len(play_hosts)
        # hosts tasks delegate to count towards a template's max_hosts unless the play targets them anyway
        in_play = set(play_hosts)
        play["delegated_outside_play"] = [host for host in play.get("delegated_hosts") or () if host not in in_play]
        # A --check run whose play has tasks that run for real, or includes whose tasks the gate
        # cannot read (they may), is judged as a real run.
        check_mode = run_check_mode() and not (play.get("real_in_check_mode") or play.get("uninspectable_includes"))

        runner_policy = resolve_policy_path(params, task_vars.get("playbook_dir"))
        sor = None
        try:
            sor = open_controller_system_of_record(params, self._display.warning)
            # the published policy in force, read once per play (batch); a runner's file only if it is that one
            try:
                choice = policy_store.gate_policy(sor, runner_policy, check_mode=check_mode)
            except ValidationError as exc:
                # A broken policy is a configuration error: the play never runs, whatever fail_on_deny says.
                result.update(change_gate.fail_closed(params, exc, self._now(), play, play_id, hosts, False))
                result["failed"] = True
                result["msg"] = "change policy is invalid: %s" % exc.message
                return result
            context = OperationContext(
                sor, params, check_mode=check_mode, diff=bool(self._task.diff),
                host=task_vars.get("inventory_hostname"), task_vars=task_vars, play=play_obj, task=self._task,
                warn=self._display.warning, display=self._display, policy_path=runner_policy)
            outcome = change_gate.run_gate(
                context, choice.in_force.policy, play, hosts, InventoryGroups(task_vars.get("groups")), play_id,
                self._task._uuid, now_func=self._now, progress=self._display.display, policy_choice=choice,
                process_check=run_process_check)
        except ChangeopsError as exc:
            # Fail closed: whatever kept us from reading or recording, the answer is no.
            outcome = change_gate.fail_closed(params, exc, self._now(), play, play_id, hosts, check_mode)
        finally:
            if sor is not None:
                sor.close()
        result.update(outcome)
        if not outcome.get("failed"):
            # an "ok" line alone does not say how the play was authorised
            if outcome["decision"].get("review_required"):
                self._display.warning(outcome["msg"])
            else:
                self._display.display("change_gate: %s" % outcome["msg"])
        return result
