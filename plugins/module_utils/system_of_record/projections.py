# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply ledger entries to the query tables, inside the append transaction.

One function per entry kind, registered with :func:`projects`. Each receives
``db`` (an object with ``execute(sql, params)`` using ``?`` placeholders and
``fetchone``/``fetchall`` on the result) and the sealed entry. A projector may
raise ``ConflictError``: the whole batch is then rolled back and nothing is
written, which is how identity clashes and stale writes are refused.

The entry kinds and their ``data`` are documented in ``docs/ledger.md``.
"""

from __future__ import annotations

import json

from ansible_collections.changeops.itsm.plugins.module_utils import change_scope
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json
# re-exported: play_inspection and the recorder import it from here
from ansible_collections.changeops.itsm.plugins.module_utils.change_scope import (  # noqa: F401 pylint: disable=unused-import
    RECORD_ONLY_ACTION_PREFIX,
)
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import find_host_cis
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError, ValidationError

PROJECTORS = {}

#: Kinds whose projector copies the entry's data verbatim (``entry.data_json()``) into one row keyed by
#: its seq, with the data members other columns or tables are derived from. Redacting any other member
#: only has to rewrite that row's ``doc`` (``SqlSystemOfRecord.redact_entry``); otherwise the tables are
#: rebuilt from the ledger. Keep this in step with the projectors below.
VERBATIM_DOCS = {
    "run.result": ("task_results", {"run_id", "play_id", "task", "host", "item", "status", "changed",
                                    "started_at", "duration_ms"}),
    "evidence.recorded": ("evidence", {"run_id", "host", "ci_id", "checklist", "status"}),
    "run.reviewed": ("reviews", {"run_id", "reviewer", "outcome", "reviewed_at"}),
}


def projects(*kinds):
    def register(function):
        for kind in kinds:
            PROJECTORS[kind] = function
        return function
    return register


def project(db, entry):
    try:
        projector = PROJECTORS[entry.kind]
    except KeyError:
        raise ValidationError("unknown ledger entry kind %r" % entry.kind)
    projector(db, entry)


def _load(text):
    return json.loads(text) if text else {}


def _dump(value):
    return canonical_json(value)


# --------------------------------------------------------------------------
# change events
# --------------------------------------------------------------------------
def _event_doc(db, run_id):
    row = db.execute("SELECT doc FROM change_events WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    return _load(row[0])


def _save_event_doc(db, run_id, doc, seq, **columns):
    assignments = ["doc = ?", "last_seq = ?"]
    params = [_dump(doc), seq]
    for column, value in columns.items():
        assignments.append("%s = ?" % column)
        params.append(value)
    params.append(run_id)
    db.execute("UPDATE change_events SET %s WHERE run_id = ?" % ", ".join(assignments), tuple(params))


def _ensure_event(db, entry, run_id):
    """Events are normally opened by ``run.started``; a spool replayed out of
    order or a result for a run whose start was lost still needs a row."""
    doc = _event_doc(db, run_id)
    if doc is None:
        doc = {"run_id": run_id, "started_at": entry.at, "incomplete": True}
        db.execute(
            "INSERT INTO change_events (run_id, started_at, status, dry_run, doc, last_seq) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, entry.at, "running", 0, _dump(doc), entry.seq))
    return doc


@projects("run.started")
def _run_started(db, entry):
    data = entry.data
    run_id = data["run_id"]
    existing = _event_doc(db, run_id)
    doc = dict(existing or {})
    doc.pop("incomplete", None)
    doc.update(data)
    columns = dict(
        started_at=data.get("started_at", entry.at),
        status="running",
        dry_run=1 if data.get("check_mode") else 0,
        user_name=data.get("user"),
        controller=data.get("controller"),
        playbook=(data.get("playbooks") or [None])[0],
    )
    if existing is None:
        db.execute(
            "INSERT INTO change_events (run_id, started_at, status, dry_run, user_name, controller, playbook, doc, last_seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, columns["started_at"], columns["status"], columns["dry_run"], columns["user_name"],
             columns["controller"], columns["playbook"], _dump(doc), entry.seq))
    else:
        _save_event_doc(db, run_id, doc, entry.seq, **columns)


@projects("run.play")
def _run_play(db, entry):
    run_id = entry.data["run_id"]
    doc = _ensure_event(db, entry, run_id)
    plays = [play for play in doc.get("plays", []) if play.get("play_id") != entry.data.get("play_id")]
    plays.append(entry.data)
    doc["plays"] = plays
    _save_event_doc(db, run_id, doc, entry.seq)


@projects("run.result")
def _run_result(db, entry):
    data = entry.data
    run_id = data["run_id"]
    _ensure_event(db, entry, run_id)
    task = data.get("task") or {}
    item = data.get("item")
    status = data["status"]
    changed = 1 if data.get("changed") else 0
    db.execute(
        "INSERT INTO task_results (seq, run_id, play_id, task_uuid, task_name, action, host, item_label, status,"
        " changed, started_at, duration_ms, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.seq, run_id, data.get("play_id"), task.get("uuid"), task.get("name"), task.get("action"),
         data["host"], item.get("label") if isinstance(item, dict) else None, status, changed,
         data.get("started_at"), data.get("duration_ms"), entry.data_json()))
    if item is not None:
        # Loop items are recorded one by one; the host summary counts the
        # aggregate result only, as ansible's own stats do.
        return
    column = {"ok": "ok", "changed": "changed", "failed": "failed", "skipped": "skipped",
              "unreachable": "unreachable"}.get(status)
    counts = {"ok": 0, "changed": 0, "failed": 0, "skipped": 0, "unreachable": 0}
    if column:
        counts[column] = 1
    db.execute(
        "INSERT INTO run_hosts (run_id, host, ok, changed, failed, skipped, unreachable) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (run_id, host) DO UPDATE SET ok = run_hosts.ok + excluded.ok,"
        " changed = run_hosts.changed + excluded.changed, failed = run_hosts.failed + excluded.failed,"
        " skipped = run_hosts.skipped + excluded.skipped, unreachable = run_hosts.unreachable + excluded.unreachable",
        (run_id, data["host"], counts["ok"], counts["changed"], counts["failed"], counts["skipped"],
         counts["unreachable"]))


@projects("run.gate")
def _run_gate(db, entry):
    run_id = entry.data["run_id"]
    doc = _ensure_event(db, entry, run_id)
    gates = [gate for gate in doc.get("gates", []) if gate.get("decision_id") != entry.data.get("decision_id")]
    # the ledger position says which results came after the decision (see _authorisation)
    gates.append(dict(entry.data, seq=entry.seq))
    doc["gates"] = gates
    _save_event_doc(db, run_id, doc, entry.seq)


#: how a result's effective check mode (``task.check_mode``) reads in its canonical JSON; the
#: text test only narrows the rows whose document is then read
_CHECK_MODE_TEXT = {True: '%"check_mode":true%', False: '%"check_mode":false%'}


def _changes(db, run_id, dry_run):
    """``(host_changes, record_changed)``: the ``(seq, play_id, host, started_at)`` of the results that
    changed a managed host, and whether any changed only the system of record.

    What counts is ``change_scope.change_scope``, the one definition of a change; this reads just
    enough of each result for it. A result's document is parsed only when its text mentions the
    check mode that would rule it out (``task.check_mode``; results recorded before the recorder
    said follow the run): in a --check run only tasks forced out of check mode change anything.
    """
    rows = db.execute(
        "SELECT seq, play_id, host, started_at, action, status, CASE WHEN doc LIKE ? THEN doc END FROM task_results"
        " WHERE run_id = ? AND changed = 1 ORDER BY seq", (_CHECK_MODE_TEXT[not dry_run], run_id)).fetchall()
    host_changes, record_changed = [], False
    for seq, play_id, host, started_at, action, status, doc in rows:
        check_mode = (_load(doc).get("task") or {}).get("check_mode") if doc is not None else None
        result = {"changed": True, "status": status, "task": {"action": action, "check_mode": check_mode}}
        scope = change_scope.change_scope(result, dry_run)
        if scope == change_scope.HOST:
            host_changes.append((seq, play_id, host, started_at))
        elif scope == change_scope.RECORD:
            record_changed = True
    return host_changes, record_changed


def _gate_denied(db, run_id, doc):
    """Whether a gate denied a play of the run: a recorded denial, or a change_gate task that failed
    (a gate that failed closed could not record its decision)."""
    if any(not gate.get("allowed") and gate.get("type") == "denied" for gate in doc.get("gates", [])):
        return True
    return db.execute("SELECT 1 FROM task_results WHERE run_id = ? AND action = ? AND status = 'failed'",
                      (run_id, change_scope.CHANGE_GATE_ACTION)).fetchone() is not None


def _decisions_by_host(doc):
    """``{(play_id, host): [gate, ...]}`` in ledger order, every gate listed under each host it covers.

    A decision without ``hosts`` (entries written before the gate recorded them) is listed
    under ``(play_id, None)``: it covers every host of its play.
    """
    index = {}
    for gate in sorted(doc.get("gates", []), key=lambda gate: gate.get("seq") or 0):
        play_id = gate.get("play_id")
        hosts = gate.get("hosts")
        for host in hosts if hosts is not None else (None,):
            index.setdefault((play_id, host), []).append(gate)
    return index


def _decisions_for(index, play_id, host):
    decisions = index.get((play_id, host), [])
    play_wide = index.get((play_id, None))
    if play_wide:
        decisions = sorted(decisions + play_wide, key=lambda gate: gate.get("seq") or 0)
    return decisions


def _decision_in_force(decisions, seq, started_at):
    """The latest decision recorded, and taken, before the result; None when there is none.

    Ledger order alone is not enough: the recorder writes results from a queue, so a change
    made before the gate ran may be appended after the gate's entry. Its start time is not."""
    for gate in reversed(decisions):
        if gate.get("seq") is not None and gate["seq"] >= seq:
            continue
        if started_at and gate.get("checked_at") and started_at < gate["checked_at"]:
            continue
        return gate
    return None


def _authorisation(db, run_id, doc, dry_run):
    """The change event's category and references, and the hosts it changed.

    A change to a managed host is authorised only by an allowing, non-dry-run gate decision for
    its play that covers its host and was in force when it started (the latest decision for
    that play and host before it). One change without such a decision makes the whole run
    ``unauthorised``. A run that changed no host is ``dry-run``, ``denied``, ``record-only`` or
    ``no-change`` (``change_scope.classify``). Returns ``(category, reference, changed hosts)``.
    """
    changes, record_changed = _changes(db, run_id, dry_run)

    def by_gates():
        decisions = _decisions_by_host(doc)
        kinds = []
        references = []
        for seq, play_id, host, started_at in changes:
            gate = _decision_in_force(_decisions_for(decisions, play_id, host), seq, started_at)
            if gate is None or not gate.get("allowed") or gate.get("type") == "dry-run":
                return "unauthorised", None
            if gate.get("type") not in kinds:
                kinds.append(gate.get("type"))
            if gate.get("reference") and gate["reference"] not in references:
                references.append(gate["reference"])
        return "+".join(kinds), ", ".join(references) or None

    denied = not changes and not dry_run and _gate_denied(db, run_id, doc)
    category, reference = change_scope.classify(dry_run, bool(changes), denied, record_changed, by_gates)
    return category, reference, sorted(set(host for _seq, _play, host, _started in changes))


class _RunHostCis(object):
    """The two lookups ``cmdb_identity.find_host_cis`` makes, over the tables of this transaction,
    for the CIs named like the hosts of one run (``names`` are those hosts: one query, not one
    parameter per host)."""

    def __init__(self, db, run_id):
        self._db = db
        self._run_id = run_id

    def find_cis(self, names):
        wanted = set(names)
        rows = self._db.execute(
            "SELECT ci_id, name, ci_class, environment FROM configuration_items WHERE name IN"
            " (SELECT host FROM run_hosts WHERE run_id = ?) ORDER BY name, ci_id", (self._run_id,)).fetchall()
        return [{"ci_id": row[0], "name": row[1], "class": row[2], "environment": row[3]}
                for row in rows if row[1] in wanted]

    def find_ci_by_identity(self, kind, value):
        row = self._db.execute("SELECT ci_id FROM ci_identities WHERE kind = ? AND value = ?",
                               (kind, str(value))).fetchone()
        return row[0] if row else None


def _finish(db, entry, outcome):
    data = entry.data
    run_id = data["run_id"]
    doc = _ensure_event(db, entry, run_id)
    doc.update({key: value for key, value in data.items() if key != "run_id"})
    doc["outcome"] = outcome
    row = db.execute("SELECT dry_run FROM change_events WHERE run_id = ?", (run_id,)).fetchone()
    dry_run = bool(row[0]) if row else False
    authorisation, reference, changed_hosts = _authorisation(db, run_id, doc, dry_run)
    doc["authorisation"] = {"type": authorisation, "reference": reference}
    counts = db.execute(
        "SELECT COUNT(*), SUM(CASE WHEN failed > 0 OR unreachable > 0 THEN 1 ELSE 0 END) FROM run_hosts"
        " WHERE run_id = ?", (run_id,)).fetchone()
    hosts = [row[0] for row in db.execute("SELECT host FROM run_hosts WHERE run_id = ?", (run_id,)).fetchall()]
    # each host's own CI, as the gate finds it: not an application CI that shares a host's name
    environments = sorted(set(ci["environment"] for ci in find_host_cis(_RunHostCis(db, run_id), hosts).values()
                              if ci.get("environment")))
    if environments:
        doc["environments"] = environments
    _save_event_doc(
        db, run_id, doc, entry.seq,
        status=outcome,
        ended_at=data.get("ended_at", entry.at),
        authorisation=authorisation,
        authorisation_ref=reference,
        environment=",".join(environments) or None,
        host_count=counts[0] or 0,
        # hosts with a change of a host (change_scope), not Ansible's "changed" count: see docs/change-register.md
        changed_host_count=len(changed_hosts),
        failed_host_count=counts[1] or 0,
    )


@projects("run.finished")
def _run_finished(db, entry):
    _finish(db, entry, entry.data.get("outcome", "successful"))


@projects("run.interrupted")
def _run_interrupted(db, entry):
    _finish(db, entry, "interrupted")


@projects("run.reviewed")
def _run_reviewed(db, entry):
    data = entry.data
    run_id = data["run_id"]
    if _event_doc(db, run_id) is None:
        raise ConflictError("change event %s does not exist" % run_id)
    db.execute(
        "INSERT INTO reviews (seq, run_id, reviewer, outcome, reviewed_at, doc) VALUES (?, ?, ?, ?, ?, ?)",
        (entry.seq, run_id, data["reviewer"], data["outcome"], data.get("reviewed_at", entry.at), entry.data_json()))
    db.execute("UPDATE change_events SET review_status = ?, last_seq = ? WHERE run_id = ?",
               (data["outcome"], entry.seq, run_id))


# --------------------------------------------------------------------------
# configuration items
# --------------------------------------------------------------------------
def _replace_identities(db, ci_id, identities):
    db.execute("DELETE FROM ci_identities WHERE ci_id = ?", (ci_id,))
    for kind, value in sorted((identities or {}).items()):
        if value in (None, ""):
            continue
        holder = db.execute("SELECT ci_id FROM ci_identities WHERE kind = ? AND value = ?", (kind, str(value))).fetchone()
        if holder is not None and holder[0] != ci_id:
            raise ConflictError(
                "identity %s=%s already belongs to CI %s" % (kind, value, holder[0]),
                kind=kind, value=value, ci_id=holder[0])
        db.execute("INSERT INTO ci_identities (kind, value, ci_id) VALUES (?, ?, ?)", (kind, str(value), ci_id))


def _ci_columns(attributes):
    return (attributes.get("name"), attributes.get("class") or "cmdb_ci", attributes.get("status") or "operational",
            attributes.get("environment"))


@projects("ci.created")
def _ci_created(db, entry):
    data = entry.data
    ci_id = data["ci_id"]
    attributes = data["attributes"]
    if db.execute("SELECT 1 FROM configuration_items WHERE ci_id = ?", (ci_id,)).fetchone():
        raise ConflictError("CI %s already exists" % ci_id)
    name, ci_class, status, environment = _ci_columns(attributes)
    if not name:
        raise ValidationError("a CI needs a name")
    db.execute(
        "INSERT INTO configuration_items (ci_id, name, ci_class, status, environment, attributes, version,"
        " created_at, updated_at, last_change_run_id, last_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (ci_id, name, ci_class, status, environment, _dump(attributes), 1, entry.at, entry.at,
         data.get("run_id"), entry.seq))
    _replace_identities(db, ci_id, data.get("identities"))


def _load_ci(db, ci_id):
    row = db.execute("SELECT attributes, version FROM configuration_items WHERE ci_id = ?", (ci_id,)).fetchone()
    if row is None:
        raise ConflictError("CI %s does not exist" % ci_id)
    return _load(row[0]), row[1]


@projects("ci.updated")
def _ci_updated(db, entry):
    data = entry.data
    ci_id = data["ci_id"]
    attributes, version = _load_ci(db, ci_id)
    base_version = data.get("base_version")
    if base_version is not None and base_version != version:
        raise ConflictError(
            "CI %s was changed by someone else meanwhile (version %s, expected %s)" % (ci_id, version, base_version))
    for key, change in (data.get("changes") or {}).items():
        if change.get("to") is None:
            attributes.pop(key, None)
        else:
            attributes[key] = change["to"]
    name, ci_class, status, environment = _ci_columns(attributes)
    db.execute(
        "UPDATE configuration_items SET name = ?, ci_class = ?, status = ?, environment = ?, attributes = ?,"
        " version = ?, updated_at = ?, last_change_run_id = COALESCE(?, last_change_run_id), last_seq = ?"
        " WHERE ci_id = ?",
        (name, ci_class, status, environment, _dump(attributes), version + 1, entry.at, data.get("run_id"),
         entry.seq, ci_id))
    if "identities" in data:
        _replace_identities(db, ci_id, data["identities"])


@projects("ci.deleted")
def _ci_deleted(db, entry):
    ci_id = entry.data["ci_id"]
    _load_ci(db, ci_id)
    db.execute("DELETE FROM ci_relationships WHERE source = ? OR target = ?", (ci_id, ci_id))
    db.execute("DELETE FROM ci_identities WHERE ci_id = ?", (ci_id,))
    db.execute("DELETE FROM configuration_items WHERE ci_id = ?", (ci_id,))


@projects("ci.relationship_added")
def _ci_relationship_added(db, entry):
    data = entry.data
    for end in ("source", "target"):
        _load_ci(db, data[end])
    db.execute(
        "INSERT INTO ci_relationships (source, rel_type, target, created_seq) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (source, rel_type, target) DO NOTHING",
        (data["source"], data["type"], data["target"], entry.seq))


@projects("ci.relationship_removed")
def _ci_relationship_removed(db, entry):
    data = entry.data
    db.execute("DELETE FROM ci_relationships WHERE source = ? AND rel_type = ? AND target = ?",
               (data["source"], data["type"], data["target"]))


@projects("ci.changed_by_run")
def _ci_changed_by_run(db, entry):
    data = entry.data
    _load_ci(db, data["ci_id"])
    db.execute("UPDATE configuration_items SET last_change_run_id = ?, last_seq = ? WHERE ci_id = ?",
               (data["run_id"], entry.seq, data["ci_id"]))


# --------------------------------------------------------------------------
# change requests: every change_request.* entry carries the full new record
# --------------------------------------------------------------------------
def _change_request_saved(db, entry):
    data = entry.data
    record = data["record"]
    number = record["number"]
    row = db.execute("SELECT version FROM change_requests WHERE number = ?", (number,)).fetchone()
    base_version = data.get("base_version")
    if row is None:
        if base_version not in (None, 0):
            raise ConflictError("change request %s does not exist" % number)
        db.execute(
            "INSERT INTO change_requests (number, state, change_type, doc, version, created_at, updated_at, last_seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (number, record["state"], record["type"], _dump(record), 1, entry.at, entry.at, entry.seq))
        return
    if base_version is not None and base_version != row[0]:
        raise ConflictError("change request %s was changed by someone else meanwhile (version %s, expected %s)"
                            % (number, row[0], base_version))
    db.execute(
        "UPDATE change_requests SET state = ?, change_type = ?, doc = ?, version = ?, updated_at = ?, last_seq = ?"
        " WHERE number = ?",
        (record["state"], record["type"], _dump(record), row[0] + 1, entry.at, entry.seq, number))


for _kind in ("change_request.created", "change_request.updated", "change_request.transitioned",
              "change_request.approved", "change_request.rejected", "change_request.closed"):
    PROJECTORS[_kind] = _change_request_saved


# --------------------------------------------------------------------------
# checklist evidence
# --------------------------------------------------------------------------
@projects("evidence.recorded")
def _evidence_recorded(db, entry):
    data = entry.data
    db.execute(
        "INSERT INTO evidence (seq, run_id, host, ci_id, checklist, status, recorded_at, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.seq, data.get("run_id"), data.get("host"), data.get("ci_id"), data["checklist"],
         data.get("status"), entry.at, entry.data_json()))


# --------------------------------------------------------------------------
# the published change policy: versions follow each other, one at a time
# --------------------------------------------------------------------------
@projects("policy.published")
def _policy_published(db, entry):
    data = entry.data
    row = db.execute("SELECT version, sha256 FROM policies ORDER BY version DESC LIMIT 1").fetchone()
    current = row[0] if row else None
    if data.get("previous_version") != current or data.get("version") != (current or 0) + 1:
        # two publishers raced: the second was prepared against a version that is no longer in force
        raise ConflictError("change policy version %s was published meanwhile (this publication follows version %s); "
                            "read the policy in force again and retry" % (current, data.get("previous_version")),
                            version=current)
    publisher = data.get("publisher") or {}
    db.execute(
        "INSERT INTO policies (version, sha256, published_at, publisher, doc, last_seq) VALUES (?, ?, ?, ?, ?, ?)",
        (data["version"], data["sha256"], data.get("published_at", entry.at), publisher.get("name") or entry.actor or "",
         entry.data_json(), entry.seq))


# --------------------------------------------------------------------------
# the ledger's own bookkeeping
# --------------------------------------------------------------------------
@projects("ledger.checkpoint", "ledger.redacted")
def _ledger_bookkeeping(db, entry):
    """Checkpoints (fed to the witnesses from the ledger) and redaction records are read from the
    ledger itself by ``ledger_verify`` and the witness feed: no query table holds them."""
    del db, entry
