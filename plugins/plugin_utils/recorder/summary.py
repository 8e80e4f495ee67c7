# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn Ansible task results into small, redacted ``run.result`` payloads.

Runs on the callback thread, so it only copies a few keys and never does I/O.
What is kept is an allow-list (``KEPT_RESULT_KEYS``): module arguments
(``invocation``), facts and registered loop results never reach the ledger.
Every kept value goes through the ``Redactor`` (secret-looking keys, inline
``key=value``, known secret strings) after vault-tagged values were replaced.
"""

from __future__ import annotations

import math
import shlex

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import is_oversized_int, oversized_int_text
from ansible_collections.changeops.itsm.plugins.module_utils.redaction import REDACTED
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.vault import is_vaulted

#: result keys worth keeping: what happened, not what was asked
KEPT_RESULT_KEYS = (
    "msg", "rc", "cmd", "stdout", "stderr", "module_stdout", "module_stderr",
    "state", "path", "dest", "src", "name", "owner", "group", "mode", "checksum",
    "skip_reason", "false_condition", "censored", "attempts", "retries", "warnings",
    "start", "end", "delta", "backup_file", "changed_when_result", "failed_when_result",
    # the CI register_host matched or created: it ties the host to its CI, also for a run replayed later
    "ci_id",
)
CENSORED = "the output has been hidden because no_log was set for this result"
ITEM_LABEL_LIMIT = 200
_DIFF_TEXT_KEYS = ("before", "after")
_DIFF_HEADER_KEYS = ("before_header", "after_header")
_MAX_DEPTH = 32
# strings are cut to this before redaction only to bound the work on pathological outputs
PRE_REDACTION_LIMIT = 1000000


def truncate(text, limit):
    if limit and len(text) > limit:
        return "%s... [%d more characters not recorded]" % (text[:limit], len(text) - limit)
    return text


def plain(value, limit, depth=0):
    """Plain JSON-able copy with vaulted values replaced and long strings truncated.

    Callers that redact pass ``limit=PRE_REDACTION_LIMIT`` here and truncate
    *after* redacting (:func:`truncate_strings`): cutting first could leave
    half a known secret that the redactor no longer recognises.
    """
    if depth > _MAX_DEPTH:
        return "[nested too deep]"
    if is_vaulted(value):
        return REDACTED
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return truncate(value + "", limit)
    if isinstance(value, int):
        # an int too long for JSON (and for str): its digits after a marker (docs/ledger.md, "Integers too long
        # for JSON"), so the ledger, the spool and the redactor meet text
        return truncate(oversized_int_text(value), limit) if is_oversized_int(value) else int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return truncate(value.decode("utf-8", "replace"), limit)
    if isinstance(value, dict):
        return {str(key): plain(item, limit, depth + 1) for key, item in list(value.items())}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item, limit, depth + 1) for item in list(value)]
    return truncate(str(value), limit)


def truncate_strings(value, limit):
    if isinstance(value, str):
        return truncate(value, limit)
    if isinstance(value, dict):
        return {key: truncate_strings(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [truncate_strings(item, limit) for item in value]
    return value


def is_censored(result_dict, task=None):
    if result_dict.get("_ansible_no_log") or "censored" in result_dict:
        return True
    no_log = getattr(task, "no_log", None)
    return isinstance(no_log, bool) and no_log


def summarise_result(result_dict, redactor, max_chars, censored=False):
    """The redacted summary of one (aggregate or item) result."""
    if censored:
        summary = {"censored": CENSORED}
        for key in ("changed", "attempts", "retries"):
            if key in result_dict and isinstance(result_dict[key], (bool, int)):
                summary[key] = result_dict[key]
        return summary
    summary = {}
    for key in KEPT_RESULT_KEYS:
        if key in result_dict:
            summary[key] = plain(result_dict[key], PRE_REDACTION_LIMIT)
    if isinstance(summary.get("cmd"), list):
        # one string, so "--password VALUE" split over two argv elements is still seen as a pair
        summary["cmd"] = shlex.join(str(part) for part in summary["cmd"])
    if isinstance(result_dict.get("results"), list):
        summary["item_count"] = len(result_dict["results"])
    return truncate_strings(redactor.redact(summary), max_chars)


def summarise_diff(result_dict, redactor, max_chars):
    """Redacted diffs of a result (list), or None when it has none."""
    diff = result_dict.get("diff")
    if not diff:
        return None
    diffs = diff if isinstance(diff, list) else [diff]
    recorded = []
    for one in diffs:
        if not isinstance(one, dict):
            continue
        entry = {}
        for key in _DIFF_HEADER_KEYS + _DIFF_TEXT_KEYS + ("prepared",):
            if key in one and one[key] is not None:
                entry[key] = plain(one[key], PRE_REDACTION_LIMIT)
        if entry:
            recorded.append(truncate_strings(redactor.redact(entry), max_chars))
    return recorded or None


def item_label(result_dict, redactor, censored):
    if censored:
        return "(censored)"
    label = result_dict.get("_ansible_item_label", result_dict.get("item"))
    if label is None:
        return None
    if not isinstance(label, str):
        from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json

        label = canonical_json(redactor.redact(plain(label, PRE_REDACTION_LIMIT)))
    # redact before truncating, so a cut never leaves half a secret behind
    return truncate(redactor.redact_string(plain(label, PRE_REDACTION_LIMIT)), ITEM_LABEL_LIMIT)


def status_of(event, result_dict):
    """ok / changed / failed / skipped / unreachable from the callback event and the result."""
    if event in ("failed", "unreachable", "skipped"):
        return event
    return "changed" if result_dict.get("changed") else "ok"


def action_of(task, result=None):
    """The task's action, as a FQCN when Ansible has resolved it (never triggers its warning)."""
    task = _task_of(task, result)
    resolved = getattr(task, "_resolved_action", None)
    if resolved:
        return str(resolved)
    action = getattr(task, "action", None)
    return str(action) if action is not None else None


def _task_of(task, result):
    """The task as the worker ran it for this host: since ansible-core 2.19 a result's ``task`` is the copy
    the strategy rebuilt from the worker's task fields (``task_fields``, deprecated in 2.21, held the same)."""
    return getattr(result, "task", None) or task


def check_mode_of(task, result, run_check_mode):
    """Whether this result ran in check mode: the task's ``check_mode`` as the worker resolved it for this host
    (``check_mode: false`` runs for real under ``--check``), else the run's mode."""
    value = getattr(_task_of(task, result), "check_mode", None)
    if isinstance(value, bool):
        return value
    return bool(run_check_mode)


def task_info(task, redactor, name=None, check_mode=False):
    """Identity of a task as recorded: never its arguments."""
    from ansible.playbook.handler import Handler

    role = getattr(task, "_role", None)
    try:
        path = task.get_path()
    except Exception:  # pylint: disable=broad-except
        path = None
    tags = getattr(task, "tags", None) or []
    return {
        "uuid": task._uuid,
        "name": truncate(redactor.redact_string(plain(name if name is not None else task.get_name(),
                                                      PRE_REDACTION_LIMIT)), 500),
        "action": action_of(task),
        "path": path or None,
        "tags": sorted(str(tag) for tag in tags) if isinstance(tags, (list, tuple, set)) else [str(tags)],
        "role": role.get_name() if role is not None else None,
        "handler": isinstance(task, Handler),
        "check_mode": bool(check_mode),
    }
