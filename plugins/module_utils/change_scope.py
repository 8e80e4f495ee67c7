# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What counts as a change: the one definition behind every count of changes.

The change event's authorisation and changed-host count (``system_of_record/projections.py``),
the recorder's links from a run to the CIs it changed (``plugin_utils/recorder/links.py``) and
every list, count and filter of the change register (``change_register.py``) call the functions
here, so they cannot disagree.

A recorded task result (a ``run.result`` entry's data) is, by :func:`change_scope`:

``host``
    a **change of a host**: it reports ``changed``, did not fail, did not run in check mode,
    and is not one of the collection's own actions (``changeops.itsm.*``);
``record``
    a **change of the record** only: one of the collection's actions reported ``changed``, so
    it wrote to the system of record (a CI registered or updated, checklist evidence attached,
    a change request raised or moved, a review signed) and touched no managed host; the change
    register's own generation (``change_register``) only renders the record and is no change;
``predicted``
    a change that check mode predicted (the task ran in check mode): nothing was changed;
``None``
    no change (ok, skipped, failed, unreachable).

A loop's items are its changes: the loop's own summary result (``item`` null, recorded after
its items) only repeats them, so :func:`counted_results` leaves it out wherever the items are
there. Ansible's PLAY RECAP counts differently, per task and everything that reported
``changed`` (see ``docs/change-register.md``).
"""

from __future__ import annotations

#: actions that only write to the system of record; a "changed" from them is not a change to a
#: managed host, so it needs no authorisation
RECORD_ONLY_ACTION_PREFIX = "changeops.itsm."
#: the gate's action: a failed result of it is a denied (or failed-closed) gate, whose decision may be
#: unrecorded (projections read it so)
CHANGE_GATE_ACTION = "changeops.itsm.change_gate"
#: actions whose "changed" is no change of a host or of the record: publishing the change register
#: rewrites a view of the record, not the record
RENDER_ONLY_ACTIONS = ("changeops.itsm.change_register",)

HOST = "host"
RECORD = "record"
PREDICTED = "predicted"

#: the category of a change event whose record lost task results (``classify``)
INCOMPLETE = "incomplete"

#: statuses of a result that changed nothing, whatever its ``changed`` says
_NO_CHANGE_STATUSES = ("failed", "unreachable", "skipped")


def is_record_only_action(action):
    return bool(action) and str(action).startswith(RECORD_ONLY_ACTION_PREFIX)


def ran_in_check_mode(result, run_check_mode=False):
    """Whether a result ran in check mode: its ``task.check_mode`` (results recorded before the
    recorder said follow the run's mode). Under ``--check`` a ``check_mode: false`` task runs for
    real; in a real run a ``check_mode: true`` task does not."""
    value = (result.get("task") or {}).get("check_mode")
    return bool(run_check_mode) if value is None else bool(value)


def change_scope(result, run_check_mode=False):
    """``"host"``, ``"record"``, ``"predicted"`` or None for one recorded result (see the module docstring)."""
    if not result.get("changed") or result.get("status") in _NO_CHANGE_STATUSES:
        return None
    if ran_in_check_mode(result, run_check_mode):
        return PREDICTED
    action = (result.get("task") or {}).get("action")
    if action in RENDER_ONLY_ACTIONS:
        return None
    if is_record_only_action(action):
        return RECORD
    return HOST


def changes_host(result, run_check_mode=False):
    return change_scope(result, run_check_mode) == HOST


def is_loop_summary(result, looped_tasks):
    """Whether ``result`` is a loop's summary result; ``looped_tasks`` is :func:`looped_tasks` of its run."""
    task = result.get("task") or {}
    return result.get("item") is None and (task.get("uuid"), result.get("host")) in looped_tasks


def looped_tasks(results):
    """``{(task uuid, host)}`` of the tasks whose loop items are among ``results``."""
    return set(((result.get("task") or {}).get("uuid"), result.get("host"))
               for result in results if result.get("item") is not None)


def counted_results(results):
    """``results`` without the loop summaries whose items are there: what each count counts once."""
    results = list(results)
    looped = looped_tasks(results)
    return [result for result in results if not is_loop_summary(result, looped)]


def changes_by_scope(results, run_check_mode=False):
    """``{"host": [...], "record": [...], "predicted": [...]}`` of a run's results, loop summaries counted once."""
    scopes = {HOST: [], RECORD: [], PREDICTED: []}
    for result in counted_results(results):
        scope = change_scope(result, run_check_mode)
        if scope is not None:
            scopes[scope].append(result)
    return scopes


def classify(run_check_mode, host_changed, gate_denied, record_changed, gate_authorisation, results_lost=False):
    """The change event's category when it ended (its ``authorisation`` value).

    ``incomplete`` first, when task results of the run were lost (``results_lost``: the recorder
    wrote a ``run.incomplete`` marker): whether a lost result changed a host, and under which
    decision, cannot be told, so neither an authorisation nor "no change" may be claimed.
    ``gate_authorisation()`` gives the category of a run that changed a host (standard, normal,
    emergency, joined with ``+``, or unauthorised): only a run that changed a host has one.
    Otherwise, in this order: ``dry-run`` (check mode), ``denied`` (a gate stopped a play, or
    denied it and the play changed nothing), ``record-only`` (only the system of record changed),
    ``no-change``. A run that changed a host is never any of these. Playbook runs and ad-hoc
    commands (change events of kind ``adhoc``) are classified alike.
    """
    if results_lost:
        return INCOMPLETE, None
    if host_changed:
        return gate_authorisation()
    if run_check_mode:
        return "dry-run", None
    if gate_denied:
        return "denied", None
    if record_changed:
        return "record-only", None
    return "no-change", None
