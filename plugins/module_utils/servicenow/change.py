# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Change Management API (``/api/sn_chg_rest``) and the journals of task records.

The shapes the documentation gives disagree, so both are read: a single record
comes back as ``{"result": {...}}`` or ``{"result": [{...}]}``, each field as a
plain string or as ``{"value", "display_value"}``; ``__meta`` sits in the record
or beside it. A state change answered 200 may not have happened (servicenow.itsm
#257/#278): every transition is read back, and one that did not happen is an
error that quotes ``nextstates``' reasons.
"""

from __future__ import annotations

import datetime

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import (
    ServiceNowConflict,
    ServiceNowRequestError,
    ServiceNowUnavailable,
)
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.table import Query, TableAPI, display_of, value_of

#: change_request.state values (legacy state model, the one models since Quebec keep) -> our names
STATE_NAMES = {"-5": "new", "-4": "assess", "-3": "authorise", "-2": "scheduled", "-1": "implement", "0": "review",
               "3": "closed", "4": "cancelled"}
STATE_VALUES = dict((name, value) for value, name in STATE_NAMES.items())
#: the legacy state model's forward path per change type (c_ChangeStateModel.md)
STATE_PATHS = {
    "normal": ("new", "assess", "authorise", "scheduled", "implement", "review", "closed"),
    "standard": ("new", "scheduled", "implement", "review", "closed"),
    "emergency": ("new", "authorise", "scheduled", "implement", "review", "closed"),
}
CLOSE_CODES = {"successful": "successful", "failed": "unsuccessful", "interrupted": "unsuccessful",
               "successful_issues": "successful_issues"}
#: change worker states (POST /change/{id}/ci answers 202 and works in the background)
WORKER_DONE = {"1": "complete", "2": "error"}
READ_FIELDS = ("sys_id", "number", "state", "type", "approval", "start_date", "end_date", "work_start", "work_end",
               "std_change_producer_version", "chg_model", "conflict_status", "short_description", "correlation_id",
               "cmdb_ci", "on_hold", "unauthorized", "active", "close_code")


def first_record(result):
    """The record of a create/read answer, whether ``result`` is an object or a list of one."""
    if isinstance(result, list):
        return result[0] if result else None
    return result


def flatten(record):
    """``{field: value}`` of a Change API record (``{value, display_value}`` per field, or plain values)."""
    if not isinstance(record, dict):
        return {}
    flat = {}
    for key, field in record.items():
        if key == "__meta":
            continue
        value = value_of(field)
        if value is None:
            flat[key] = ""
        elif isinstance(value, bool):
            flat[key] = "true" if value else "false"
        elif isinstance(value, float) and value.is_integer():
            flat[key] = str(int(value))  # the documentation's examples show numbers such as 3.0
        else:
            flat[key] = str(value)
        if isinstance(field, dict) and field.get("display_value") not in (None, ""):
            flat[key + "$display"] = str(field["display_value"])
    return flat


def ignored_fields(body):
    """``__meta.ignoredFields`` wherever the answer put it."""
    if not isinstance(body, dict):
        return []
    meta = body.get("__meta")
    record = first_record(body.get("result"))
    if meta is None and isinstance(record, dict):
        meta = record.get("__meta")
    return list((meta or {}).get("ignoredFields") or [])


def sn_time(text):
    """ServiceNow's ``YYYY-MM-DD HH:MM:SS`` (UTC in the API) -> our ISO time, or None."""
    if not text:
        return None
    try:
        return format_time(parse_time(text))
    except (TypeError, ValueError):
        return None


def to_sn_time(iso):
    moment = parse_time(iso).astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class ChangeAPI(object):
    def __init__(self, client, table=None):
        self.client = client
        self.table = table or TableAPI(client)

    def _path(self, *parts):
        return "/".join(["api", "sn_chg_rest", "change"] + [str(part) for part in parts])

    def _fail(self, cls, text, **kwargs):
        raise cls(self.client.secrets.scrub("%s: %s" % (self.client.describe(), text)), **kwargs)

    # -- finding -------------------------------------------------------------------------------
    def find_sys_id(self, number):
        rows = self.table.list("change_request", Query().eq("number", number), ["number"], limit=2)
        return value_of(rows[0]["sys_id"]) if rows else None

    def find_by_correlation(self, correlation_id, table="change_request"):
        rows = self.table.list(table, Query().eq("correlation_id", correlation_id), ["number", "state"], limit=2)
        if len(rows) > 1:
            self._fail(ServiceNowConflict, "two %s records carry correlation_id %s; remove the duplicate"
                       % (table, correlation_id), kind="item_error")
        return rows[0] if rows else None

    def read(self, sys_id):
        response = self.client.request("GET", self._path(sys_id), allow_404=True)
        if response.status == 404:
            return None
        return flatten(first_record(response.result))

    def affected_ci_sys_ids(self, sys_id, page=500):
        """``{ci sys_id: display name}`` of the CHG's affected CIs (change API, paged)."""
        found = {}
        offset = 0
        while True:
            response = self.client.request("GET", self._path(sys_id, "ci"), params={
                "association_type": "affected", "sysparm_limit": str(page), "sysparm_offset": str(offset)})
            rows = response.result if isinstance(response.result, list) else []
            for row in rows:
                item = row.get("ci_item") if isinstance(row, dict) else None
                if item is None and isinstance(row, dict):
                    item = row.get("cmdb_ci")
                ci = value_of(item)
                if ci:
                    found[ci] = display_of(item) or ""
            offset += len(rows)
            if len(rows) < page:
                return found

    def conflicts(self, sys_id, start_if_not_run=True, polls=6, interval=1.0):
        """The conflict check's ``conflicts`` list (never its ``status`` word, which reads "Conflict" even when
        there are none). A check that never ran is started (``POST``) and polled a few times."""
        result = self._conflict_result(sys_id)
        if start_if_not_run and not result.get("last_run"):
            self.client.request("POST", self._path(sys_id, "conflict"), json_body={}, idempotent=True)
            result = self._conflict_result(sys_id)
        for _poll in range(polls):
            if str(result.get("job_status") or "") not in ("0", "1") and str(result.get("status") or "") not in (
                    "Running", "Queued"):
                break
            self.client._nap(interval, "waiting for the conflict check of %s" % sys_id)
            result = self._conflict_result(sys_id)
        else:
            self._fail(ServiceNowUnavailable, "the conflict check of %s did not finish (job_status %s)"
                       % (sys_id, result.get("job_status")), kind="timeout")
        return [_conflict(item) for item in result.get("conflicts") or []]

    def _conflict_result(self, sys_id):
        response = self.client.request("GET", self._path(sys_id, "conflict"))
        result = response.result
        return first_record(result) if isinstance(result, (list, dict)) else {}

    def next_states(self, sys_id):
        response = self.client.request("GET", self._path(sys_id, "nextstates"), allow_404=True)
        return response.result if response.status == 200 else None

    def find_template(self, name_or_sys_id):
        """The ``std_change_record_producer`` sys_id of a standard change template (its name or sys_id)."""
        if _is_sys_id(name_or_sys_id):
            return name_or_sys_id
        rows = self.table.list("std_change_record_producer",
                               Query().eq("name", name_or_sys_id).eq("active", "true"), ["name"], limit=2)
        if not rows:
            self._fail(ServiceNowRequestError, "no active standard change template named %r "
                       "(std_change_record_producer); publish it or name it by sys_id" % name_or_sys_id,
                       kind="bad_request")
        if len(rows) > 1:
            self._fail(ServiceNowConflict, "two active standard change templates are named %r; name one by sys_id"
                       % name_or_sys_id, kind="item_error")
        return value_of(rows[0]["sys_id"])

    # -- writing -------------------------------------------------------------------------------
    def create(self, kind, values, template=None):
        """POST a normal/emergency change, or a standard change from ``template`` (its sys_id)."""
        path = self._path("standard", template) if kind == "standard" else self._path(kind)
        response = self.client.request("POST", path, json_body=values, idempotent=False)
        record = flatten(first_record(response.result))
        if not record.get("sys_id"):
            self._fail(ServiceNowRequestError, "creating a %s change answered no record: %s" % (kind, response.body),
                       kind="bad_request")
        record["__ignored"] = ignored_fields(response.body)
        return record

    def update(self, sys_id, values):
        response = self.client.request("PATCH", self._path(sys_id), json_body=values)
        return flatten(first_record(response.result))

    def associate_cis(self, sys_id, ci_sys_ids, polls=20, interval=0.5):
        """Make ``ci_sys_ids`` affected CIs (202 + a worker that is polled until done)."""
        if not ci_sys_ids:
            return
        response = self.client.request("POST", self._path(sys_id, "ci"), json_body={
            "association_type": "affected", "cmdb_ci_sys_ids": ",".join(ci_sys_ids),
            "refresh_impacted_services": False}, idempotent=True)
        result = first_record(response.result) or {}
        worker = result.get("worker") or {}
        worker_id = value_of(worker.get("sysId") or worker.get("sys_id"))
        state = str(value_of(result.get("state")) or "")
        for _poll in range(polls):
            if state in WORKER_DONE or not worker_id:
                break
            self.client._nap(interval, "waiting for the worker adding affected CIs to %s" % sys_id)
            polled = self.client.request("GET", self._path("worker", worker_id))
            result = first_record(polled.result) or {}
            state = str(value_of(result.get("state")) or "")
        if state == "2":
            messages = (result.get("messages") or {}).get("errorMessages") or []
            self._fail(ServiceNowConflict, "adding affected CIs to %s failed: %s" % (sys_id, "; ".join(
                str(message) for message in messages) or "the worker reported an error"), kind="item_error")
        if worker_id and state not in WORKER_DONE:
            self._fail(ServiceNowUnavailable, "the worker adding affected CIs to %s did not finish" % sys_id,
                       kind="timeout")

    def move_to(self, sys_id, number, target, extra=None, direct=False):
        """Walk the CHG to state ``target`` along its type's path, one step at a time (``direct``: in one
        step), reading the state back after each: a 200 that changed nothing is an error quoting nextstates."""
        record = self.read(sys_id) or {}
        current = STATE_NAMES.get(record.get("state"), record.get("state"))
        if current == target:
            return record
        path = STATE_PATHS.get(record.get("type") or "normal", STATE_PATHS["normal"])
        if direct:
            steps = [target]
        elif current in path and target in path and path.index(target) > path.index(current):
            steps = list(path[path.index(current) + 1:path.index(target) + 1])
        else:
            self._fail(ServiceNowConflict, "%s is %s; it cannot be moved to %s" % (number, current, target),
                       kind="state_unchanged")
        for state in steps:
            values = {"state": STATE_VALUES[state]}
            if state == target and extra:
                values.update(extra)
            self.update(sys_id, values)
            record = self.read(sys_id) or {}
            now = STATE_NAMES.get(record.get("state"), record.get("state"))
            if now != state:
                why = self._why_not(sys_id, state)
                self._fail(ServiceNowConflict, "%s: ServiceNow answered 200 to moving it from %s to %s, but it is "
                           "still %s%s" % (number, current, state, now, why), kind="state_unchanged")
            current = now
        return record

    def _why_not(self, sys_id, state):
        try:
            answer = self.next_states(sys_id) or {}
        except ServiceNowUnavailable:
            return ""
        answer = first_record(answer) or {}
        available = answer.get("available_states") or []
        reasons = []
        for transition in answer.get("state_transitions") or []:
            if str(transition.get("to_state")) != STATE_VALUES.get(state):
                continue
            for condition in transition.get("conditions") or []:
                if not condition.get("passed"):
                    reasons.append(str((condition.get("condition") or {}).get("name") or condition))
        text = " (next states: %s)" % ", ".join(STATE_NAMES.get(str(s), str(s)) for s in available) if available else ""
        if reasons:
            text += "; unmet conditions: %s" % "; ".join(reasons)
        return text

    # -- journals --------------------------------------------------------------------------------
    def has_journal_entry(self, table, sys_id, marker, element="work_notes"):
        rows = self.table.list("sys_journal_field", Query().eq("element_id", sys_id).eq("element", element)
                               .where("value", "LIKE", marker), ["element", "element_id", "value"], limit=2)
        return len(rows)

    def add_journal_entry(self, table, sys_id, text, marker, element="work_notes", fields=None):
        """Append a work note (or comment) once, with ``fields`` set in the same write: the marker is looked for
        before and read back after the write; the fields are checked in the record the write answers.
        Returns the record after the write, or None when the note was there already (nothing written)."""
        if self.has_journal_entry(table, sys_id, marker, element):
            return None
        fields = dict(fields or {})
        values = dict(fields)
        values[element] = text
        record = self.table.update(table, sys_id, values, fields=tuple(fields) or ("sys_id",)) or {}
        for field, value in fields.items():
            if value_of(record.get(field)) not in (None, value):
                self._fail(ServiceNowConflict, "%s %s: %s was not set (it holds %s)" % (
                    table, sys_id, field, value_of(record.get(field))), kind="item_error")
        if self.has_journal_entry(table, sys_id, marker, element) != 1:
            self._fail(ServiceNowConflict, "the %s written to %s %s did not come back when read (sys_journal_field); "
                       "check the ACLs on journal entries" % (element.replace("_", " "), table, sys_id),
                       kind="item_error")
        return record


def _conflict(item):
    change = item.get("change") if isinstance(item, dict) else None
    kind = item.get("type") if isinstance(item, dict) else None
    ci = item.get("ci") or item.get("configuration_item") if isinstance(item, dict) else None
    return {"type": value_of(kind) or "", "type_label": display_of(kind) or value_of(kind) or "conflict",
            "change": display_of(change) or "", "ci": display_of(ci) or ""}


def _is_sys_id(text):
    text = str(text or "")
    return len(text) == 32 and all(char in "0123456789abcdef" for char in text)
