# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ad-hoc commands (``ansible <pattern> -m <module> -a <args>``) as change events of their own kind.

Ansible runs an ad-hoc command as a one-task play of a playbook it names ``__adhoc_playbook__``, and
calls callbacks for it only with ``bin_ansible_callbacks = true`` (E(ANSIBLE_LOAD_CALLBACK_PLUGINS)).
The change event then has ``kind: adhoc`` and ``adhoc: {module, pattern, args}`` (the arguments
redacted like every recorded string), no playbooks, and the usual per-host results and outcome.

Its authorisation follows the rules of every change event: a change made without an allowing gate
decision is unauthorised. No gate task can run in an ad-hoc command, so the recorder takes the decision
itself when the operator names what authorises the command, in the variables the gate reads too
(``CHANGEOPS_CHANGE_REQUEST``, ``CHANGEOPS_EMERGENCY``): with the gate's own code and policy, against
the system of record, before the task starts. The decision is recorded (``run.gate``) through the
recorder's queue, so it reaches the ledger, or the spool, before the command's results. The recorder
does not stop a command its decision denies: it says so, and the record shows it unauthorised.
"""

from __future__ import annotations

import datetime
import json
import os

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.changeops.itsm.plugins.module_utils import change_gate
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import policy_store
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

#: the file name ansible's ad-hoc CLI gives the one-play playbook it builds around the command
ADHOC_PLAYBOOK = "__adhoc_playbook__"
KIND = "adhoc"


def is_adhoc(playbook):
    return getattr(playbook, "_file_name", None) == ADHOC_PLAYBOOK


def describe(cli, redactor):
    """``{module, pattern, args}`` of the command; ``args`` redacted (a JSON object stays JSON)."""
    raw = to_text(cli.get("module_args") or "")
    args = raw
    if raw.startswith("{") and raw.endswith("}"):
        try:
            args = json.dumps(redactor.redact(json.loads(raw)), sort_keys=True, ensure_ascii=False)
        except ValueError:
            args = raw
    return {
        "module": to_text(cli.get("module_name") or ""),
        "pattern": redactor.redact_string(to_text(cli.get("args") or "")),
        "args": redactor.redact_string(args) if args else "",
    }


class _QueueingStore(object):
    """The system of record for the gate's reads; its appends are handed to ``put`` (the recorder's queue)."""

    def __init__(self, sor, put):
        self._sor = sor
        self._put = put

    def append(self, entries, **_kwargs):
        for entry in entries:
            self._put({"id": entry.id, "at": entry.at, "kind": entry.kind, "subject": entry.subject,
                       "actor": entry.actor, "data": entry.data})
        return list(entries)

    def __getattr__(self, name):
        return getattr(self._sor, name)


def _policy_path():
    # the gate's own resolution (argument > CHANGEOPS_GATE_POLICY > ansible.cfg > built-in default)
    from ansible_collections.changeops.itsm.plugins.action.change_gate import resolve_policy_path

    return resolve_policy_path({})


def _play_for_gate(play, describe_play, hosts):
    """What the gate reads of a play, for the ad-hoc play (its one task's module and paths)."""
    try:
        from ansible_collections.changeops.itsm.plugins.plugin_utils.play_inspection import inspect_play

        return inspect_play(play, {"playbook_dir": os.getcwd(), "inventory_hostname": hosts[0] if hosts else None},
                            hosts=hosts)
    except Exception:  # pylint: disable=broad-except
        # what the command line says is enough to decide on a change request or an emergency
        return describe_play


def authorise(play, adhoc, hosts, run_id, config, check_mode, put, display, environ=None, now=None):
    """The gate's decision for an ad-hoc command when the environment names a change request or an
    emergency, queued as a ``run.gate`` entry with ``put``; returns the decision, or None when nothing is
    named (the command is then unauthorised if it changes a host, like a play without a gate)."""
    environ = os.environ if environ is None else environ
    params = change_gate.named_in_environment(
        {"change_request": None, "emergency": False, "justification": None, "standard_template": None,
         "wait_for_approval": False, "fail_on_deny": False}, environ)
    if not (params.get("change_request") or params.get("emergency")):
        return None
    now_func = (lambda: now) if now is not None else (lambda: datetime.datetime.now(datetime.timezone.utc))
    play_id = getattr(play, "_uuid", None)
    summary = {"name": "ad-hoc %s" % adhoc["module"], "pattern": adhoc["pattern"], "modules": [adhoc["module"]],
               "playbook": None, "play_host_count": len(hosts)}
    task_uuid = None
    sor = None
    try:
        gate_play = dict(_play_for_gate(play, summary, hosts), **{k: summary[k] for k in ("name", "play_host_count")})
        sor = open_system_of_record(config)
        runner_policy = _policy_path()
        # the policy the gate would decide under: the published version in force (the runner's file only
        # while nothing is published, or when it is that version), with its separation-of-duties rules
        choice = policy_store.gate_policy(sor, runner_policy, check_mode=check_mode)
        context = OperationContext(_QueueingStore(sor, put), params, check_mode=check_mode, run_id=run_id,
                                   warn=display.warning, display=display, policy_path=runner_policy)
        outcome = change_gate.run_gate(context, choice.in_force.policy, gate_play, list(hosts), {}, play_id,
                                       task_uuid, now_func=now_func, policy_choice=choice)
        decision = outcome["decision"]
    except ChangeopsError as exc:
        # fail closed, like the gate: a decision that could not be taken authorises nothing, and says why
        decision = change_gate.fail_closed(params, exc, now_func(), summary, play_id, list(hosts), check_mode)["decision"]
        decision = dict(decision, run_id=run_id, recorded=True, policy=None)
        put({"id": "gate-%s" % decision["decision_id"], "at": decision["checked_at"], "kind": "run.gate",
             "subject": run_id, "actor": None, "data": decision})
        outcome = change_gate.gate_result(params, decision, summary)
    finally:
        if sor is not None:
            sor.close()
    message = "ad-hoc command: %s" % outcome["msg"]
    if decision.get("allowed") and not decision.get("review_required"):
        display.display("changeops.itsm.change_recorder: %s" % message)
    else:
        display.warning("changeops.itsm.change_recorder: %s%s" % (message, "" if decision.get("allowed") else (
            "; the command runs anyway and is recorded as unauthorised if it changes a host")))
    return decision
