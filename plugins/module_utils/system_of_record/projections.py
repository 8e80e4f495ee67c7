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
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import change_index
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import intelligence
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import metric_rollups

PROJECTORS = {}
#: entry kind -> projectors that run after the kind's own one: the change intelligence tables
#: (``intelligence.py``), which a replay inside a migration older than them leaves alone
FOLLOWERS = intelligence.FOLLOWERS

#: Kinds whose projector copies the entry's data verbatim (``entry.data_json()``) into one row keyed by
#: its seq, with the data members other columns or tables are derived from. Redacting any other member
#: only has to rewrite that row's ``doc`` (``SqlSystemOfRecord.redact_entry``); otherwise the tables are
#: rebuilt from the ledger. Keep this in step with the projectors below.
VERBATIM_DOCS = {
    "run.result": ("task_results", {"run_id", "play_id", "task", "host", "item", "status", "changed",
                                    "started_at", "duration_ms"}),
    "evidence.recorded": ("evidence", {"run_id", "host", "ci_id", "checklist", "status"}),
    "run.reviewed": ("reviews", {"run_id", "reviewer", "outcome", "reviewed_at"}),
    "run.acknowledged": ("acknowledgements", {"run_id", "disposition", "acknowledged_at"}),
}


#: Set-based projectors: ``function(db, entries)`` applies consecutive entries of one kind with the same
#: effect on the query tables as :func:`project` applied to each in turn, in a fixed number of statements
#: (``db.executemany``, ``db.select_in``). ``SqlSystemOfRecord.append`` uses them; replays and
#: ``ledger_verify``'s comparison (``projection_check``) project entry by entry, so the comparison the test
#: suite makes after every test that writes (tests/conftest.py) checks that both agree. A projector that
#: changes what an entry of such a kind does must change its set-based form alike.
BATCH_PROJECTORS = {}


def projects(*kinds):
    def register(function):
        for kind in kinds:
            PROJECTORS[kind] = function
        return function
    return register


def batch_projects(*kinds):
    def register(function):
        for kind in kinds:
            BATCH_PROJECTORS[kind] = function
        return function
    return register


def project(db, entry, until=None):
    """Apply ``entry`` to the query tables; ``until``: a replay inside the migration of that schema version,
    which leaves alone the tables of later versions."""
    try:
        projector = PROJECTORS[entry.kind]
    except KeyError:
        raise ValidationError("unknown ledger entry kind %r" % entry.kind)
    projector(db, entry)
    if until is None or until >= intelligence.TABLES_VERSION:
        for follower in FOLLOWERS.get(entry.kind, ()):
            follower(db, entry)
    if until is None or until >= metric_rollups.TABLES_VERSION:
        for follower in metric_rollups.FOLLOWERS.get(entry.kind, ()):
            follower(db, entry)
    if until is None or until >= metric_rollups.NEXT_TABLES_VERSION:
        for follower in metric_rollups.NEXT_FOLLOWERS.get(entry.kind, ()):
            follower(db, entry)


def project_many(db, entries):
    """Apply sealed ``entries`` (in chain order); runs of consecutive entries of a kind with a set-based
    projector go together, every other entry on its own."""
    start, count = 0, len(entries)
    while start < count:
        kind = entries[start].kind
        batch = BATCH_PROJECTORS.get(kind)
        if batch is None or FOLLOWERS.get(kind) or metric_rollups.FOLLOWERS.get(kind) or \
                metric_rollups.NEXT_FOLLOWERS.get(kind):
            # (a kind whose entries have followers goes one by one: each entry's followers see the tables as
            # they are right after its own projector, as in a replay)
            project(db, entries[start])
            start += 1
            continue
        end = start + 1
        while end < count and entries[end].kind == kind:
            end += 1
        batch(db, entries[start:end])
        start = end


def _load(text):
    return json.loads(text) if text else {}


def _dump(value):
    return canonical_json(value)


# --------------------------------------------------------------------------
# change events
# --------------------------------------------------------------------------
def _event_doc(db, run_id):
    # within an append, the document this transaction last wrote (every write of it goes through here)
    known = getattr(db, "event_docs", None)
    if known is not None and run_id in known:
        return _load(known[run_id])
    if run_id in (getattr(db, "absent_events", None) or ()):
        return None  # looked up with the batch's other runs before it was projected (prefetch_event_docs)
    row = db.execute("SELECT doc FROM change_events WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    return _load(row[0])


#: entry kinds whose projectors read their run's change-event document (``_event_doc``)
_READS_EVENT_DOC = frozenset(("run.started", "run.play", "run.gate", "run.finished", "run.interrupted",
                              "run.incomplete", "run.reviewed"))


def prefetch_event_docs(db, entries):
    """Before a batch is projected: the change-event documents of the runs its entries of :data:`_READS_EVENT_DOC`
    name, in one query per 500 runs instead of one per run (a round trip each on PostgreSQL), kept in
    ``db.event_docs``; the runs without an event go to ``db.absent_events``. Every later write of a document
    goes through ``_wrote_event_doc``, which keeps both up to date, so the projectors read what they would
    read from the table."""
    run_ids = set()
    for entry in entries:
        if entry.kind in _READS_EVENT_DOC:
            run_id = (entry.data or {}).get("run_id")
            if isinstance(run_id, str) and run_id not in db.event_docs:
                run_ids.add(run_id)
    if not run_ids:
        return
    for run_id, doc in db.select_in("SELECT run_id, doc FROM change_events WHERE run_id IN ({marks})", sorted(run_ids)):
        db.event_docs[run_id] = doc
    db.absent_events = set(run_id for run_id in run_ids if run_id not in db.event_docs)


def _wrote_event_doc(db, run_id, text):
    """Remember the document text just written for ``run_id`` (see ``Statements.event_docs``); returns it."""
    known = getattr(db, "event_docs", None)
    if known is not None:
        known[run_id] = text
        (getattr(db, "absent_events", None) or set()).discard(run_id)
    return text


def _save_event_doc(db, run_id, doc, seq, **columns):
    assignments = ["doc = ?", "last_seq = ?"]
    params = [_wrote_event_doc(db, run_id, _dump(doc)), seq]
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
            (run_id, entry.at, "running", 0, _wrote_event_doc(db, run_id, _dump(doc)), entry.seq))
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
        kind=data.get("kind") or "playbook",
    )
    if existing is None:
        db.execute(
            "INSERT INTO change_events (run_id, started_at, status, dry_run, user_name, controller, playbook, kind,"
            " doc, last_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, columns["started_at"], columns["status"], columns["dry_run"], columns["user_name"],
             columns["controller"], columns["playbook"], columns["kind"], _wrote_event_doc(db, run_id, _dump(doc)),
             entry.seq))
    else:
        _save_event_doc(db, run_id, doc, entry.seq, **columns)
    change_index.reindex(db, run_id)


@projects("run.play")
def _run_play(db, entry):
    """A play's start; a play with ``serial`` starts once per batch (same ``play_id``, the batch's hosts).

    The change event's play lists every host of every batch, in order, and ``batches`` the hosts of
    each (only for plays that ran in more than one batch), so a serial play is never recorded as its
    last batch. ``started_at`` stays the first batch's.
    """
    run_id = entry.data["run_id"]
    doc = _ensure_event(db, entry, run_id)
    play = dict(entry.data)
    play.pop("batch", None)
    batch_hosts = list(play.get("hosts") or [])
    plays = list(doc.get("plays", []))
    for position, previous in enumerate(plays):
        if previous.get("play_id") != play.get("play_id"):
            continue
        hosts = list(previous.get("hosts") or [])
        known = set(hosts)
        hosts.extend(host for host in batch_hosts if host not in known)
        play.update(hosts=hosts, batches=list(previous.get("batches") or [previous.get("hosts") or []]) + [batch_hosts],
                    started_at=previous.get("started_at", play.get("started_at")))
        plays[position] = play
        break
    else:
        plays.append(play)
    doc["plays"] = plays
    _save_event_doc(db, run_id, doc, entry.seq)


@projects("run.result")
def _run_result(db, entry):
    # one definition for one result and for many (the append stores runs of results together)
    _run_results(db, [entry])


_TASK_RESULT_COLUMNS = ("seq", "run_id", "play_id", "task_uuid", "task_name", "action", "host", "item_label", "status",
                        "changed", "started_at", "duration_ms", "doc")

#: run_hosts columns a result's status counts in
_HOST_COUNTS = ("ok", "changed", "failed", "skipped", "unreachable")


@batch_projects("run.result")
def _run_results(db, entries):
    """:func:`_run_result` for many results at once: the events they need opened (one query), their
    task_results rows (one executemany), and each host's counts added up first and upserted once."""
    first_of_run = {}
    rows = []
    tallies = {}
    for entry in entries:
        data = entry.data
        run_id = data["run_id"]
        first_of_run.setdefault(run_id, entry)
        task = data.get("task") or {}
        item = data.get("item")
        status = data["status"]
        host = data["host"]
        rows.append((entry.seq, run_id, data.get("play_id"), task.get("uuid"), task.get("name"), task.get("action"),
                     host, item.get("label") if isinstance(item, dict) else None, status,
                     1 if data.get("changed") else 0, data.get("started_at"), data.get("duration_ms"),
                     entry.data_json()))
        if item is None:
            tally = tallies.setdefault((run_id, host), [0, 0, 0, 0, 0])
            if status in _HOST_COUNTS:
                tally[_HOST_COUNTS.index(status)] += 1
    # the events this append wrote exist (Statements.event_docs): only the others are looked up
    written = getattr(db, "event_docs", None) or {}
    opened = set(run_id for run_id in first_of_run if run_id in written)
    opened.update(row[0] for row in db.select_in(
        "SELECT run_id FROM change_events WHERE run_id IN ({marks})",
        [run_id for run_id in first_of_run if run_id not in opened]))
    missing = [(run_id, entry) for run_id, entry in first_of_run.items() if run_id not in opened]
    if missing:
        # as _ensure_event: a run whose start was lost (or replayed later) still gets its event
        db.executemany(
            "INSERT INTO change_events (run_id, started_at, status, dry_run, doc, last_seq) VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, entry.at, "running", 0, _wrote_event_doc(db, run_id, _dump(
                {"run_id": run_id, "started_at": entry.at, "incomplete": True})), entry.seq) for run_id, entry in missing])
    db.insert_rows("task_results", _TASK_RESULT_COLUMNS, rows)
    if tallies:
        db.executemany(_RUN_HOSTS_UPSERT, [key + tuple(tally) for key, tally in tallies.items()])


_RUN_HOSTS_UPSERT = (
    "INSERT INTO run_hosts (run_id, host, ok, changed, failed, skipped, unreachable) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (run_id, host) DO UPDATE SET ok = run_hosts.ok + excluded.ok,"
    " changed = run_hosts.changed + excluded.changed, failed = run_hosts.failed + excluded.failed,"
    " skipped = run_hosts.skipped + excluded.skipped, unreachable = run_hosts.unreachable + excluded.unreachable")


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
    # the run's gate results, filtered here: with ``status = 'failed'`` in the WHERE clause SQLite walks the status
    # index (every failed result the ledger holds, a cost that grows with the ledger) instead of the run's rows
    rows = db.execute("SELECT status FROM task_results WHERE run_id = ? AND action = ?",
                      (run_id, change_scope.CHANGE_GATE_ACTION)).fetchall()
    return any(row[0] == "failed" for row in rows)


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


def _results_lost(doc):
    """Whether ``run.incomplete`` markers say task results of the run were lost."""
    return bool(((doc.get("record_lost") or {}).get("kinds") or {}).get("run.result"))


def _authorisation(db, run_id, doc, dry_run, results_lost=False):
    """The change event's category and references, and the hosts it changed.

    A change to a managed host is authorised only by an allowing, non-dry-run gate decision for
    its play that covers its host and was in force when it started (the latest decision for
    that play and host before it). One change without such a decision makes the whole run
    ``unauthorised``. A run that changed no host is ``dry-run``, ``denied``, ``record-only`` or
    ``no-change``, and a run whose results were lost (``results_lost``) is ``incomplete``
    (``change_scope.classify``). Returns ``(category, reference, changed hosts)``: the changed hosts
    are those of the results the ledger holds.
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
    category, reference = change_scope.classify(dry_run, bool(changes), denied, record_changed, by_gates,
                                                results_lost=results_lost)
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


def _finish(db, entry, outcome, data=None):
    data = entry.data if data is None else data
    run_id = data["run_id"]
    doc = _ensure_event(db, entry, run_id)
    doc.update({key: value for key, value in data.items() if key != "run_id"})
    doc["outcome"] = outcome
    # the event's dry-run flag and its hosts with their failures in one query (one round trip on PostgreSQL)
    rows = db.execute(
        "SELECT change_events.dry_run, run_hosts.host, run_hosts.failed, run_hosts.unreachable FROM change_events"
        " LEFT JOIN run_hosts ON run_hosts.run_id = change_events.run_id WHERE change_events.run_id = ?",
        (run_id,)).fetchall()
    dry_run = bool(rows[0][0]) if rows else False
    hosts = [row[1] for row in rows if row[1] is not None]
    counts = (len(hosts), sum(1 for row in rows if row[1] is not None and ((row[2] or 0) > 0 or (row[3] or 0) > 0)))
    authorisation, reference, changed_hosts = _authorisation(db, run_id, doc, dry_run,
                                                             results_lost=_results_lost(doc))
    doc["authorisation"] = {"type": authorisation, "reference": reference}
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
    change_index.reindex(db, run_id)


@projects("run.finished")
def _run_finished(db, entry):
    _finish(db, entry, entry.data.get("outcome", "successful"))


@projects("run.interrupted")
def _run_interrupted(db, entry):
    _finish(db, entry, "interrupted")


#: the authorisation of a change event whose record lost task results (see ``run.incomplete``)
INCOMPLETE_AUTHORISATION = change_scope.INCOMPLETE


@projects("run.incomplete")
def _run_incomplete(db, entry):
    """Entries of a run were lost (neither the ledger nor any spool location took them before it ended).

    The change event keeps what the markers say (``record_lost``: how many entries of which kinds, why);
    a marker for a placeholder event (the run's start was lost too) fills in who ran what, where. The run
    ended when its marker was written, so a run still ``running`` ends as its lost end says (the marker
    carries it), else ``interrupted``. Lost results make its authorisation ``incomplete``.
    """
    data = entry.data
    run_id = data["run_id"]
    doc = _ensure_event(db, entry, run_id)
    columns = {}
    if doc.get("incomplete"):
        run = data.get("run") or {}
        for key, value in run.items():
            doc.setdefault(key, value)
        columns = dict(started_at=run.get("started_at") or entry.at, user_name=run.get("user"),
                       controller=run.get("controller"), playbook=(run.get("playbooks") or [None])[0],
                       kind=run.get("kind") or "playbook")
    lost = dict(doc.get("record_lost") or {"entries": 0, "kinds": {}, "markers": []})
    lost["entries"] = lost.get("entries", 0) + int(data.get("lost_entries") or 0)
    kinds = dict(lost.get("kinds") or {})
    for kind, count in (data.get("lost_kinds") or {}).items():
        kinds[kind] = kinds.get(kind, 0) + int(count)
    lost["kinds"] = kinds
    lost["markers"] = list(lost.get("markers") or []) + [{key: data.get(key) for key in (
        "lost_entries", "lost_from", "noted_at", "reason")}]
    doc["record_lost"] = lost
    _save_event_doc(db, run_id, doc, entry.seq, **columns)
    status = db.execute("SELECT status FROM change_events WHERE run_id = ?", (run_id,)).fetchone()[0]
    if status == "running":
        # the marker carries the lost end (Ansible's outcome and stats) when it has it
        end = dict(data.get("end") or {})
        end_kind = end.pop("kind", None)
        end.update(run_id=run_id, ended_at=end.get("ended_at") or data.get("noted_at") or entry.at)
        if end_kind == "run.finished":
            _finish(db, entry, end.get("outcome") or "successful", data=end)
        else:
            lost_reason = "the recorder lost %d entries of this run, its end among them: %s" % (
                lost["entries"], data.get("reason") or "no reason recorded")
            end["reason"] = "%s; %s" % (end["reason"], lost_reason) if end.get("reason") else lost_reason
            _finish(db, entry, "interrupted", data=end)
    elif kinds.get("run.result"):
        # ended already: only the authorisation changes (results are missing)
        _save_event_doc(db, run_id, dict(doc, authorisation={"type": INCOMPLETE_AUTHORISATION, "reference": None}),
                        entry.seq, authorisation=INCOMPLETE_AUTHORISATION, authorisation_ref=None)


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
    change_index.reindex(db, run_id, full=False)


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


@projects("ci.external_ref")
def _ci_external_ref(db, entry):
    """What an external CMDB calls the CI (ServiceNow's sys_id and class), as ``<system>_sys_id`` and
    ``<system>_class`` attributes. Not a change to the CI: its version and update time stay."""
    data = entry.data
    attributes, _version = _load_ci(db, data["ci_id"])
    system = data["system"]
    for key in ("sys_id", "class"):
        if data.get(key):
            attributes["%s_%s" % (system, key)] = data[key]
        else:
            attributes.pop("%s_%s" % (system, key), None)
    db.execute("UPDATE configuration_items SET attributes = ?, last_seq = ? WHERE ci_id = ?",
               (_dump(attributes), entry.seq, data["ci_id"]))


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
@projects("ledger.archived")
def _ledger_archived(db, entry):
    """Entries up to ``last_seq`` moved to an archive file (archives/): the query tables keep the summaries (change
    events, host counts, CIs, change requests, evidence, reviews, policies) and drop the detail the archive holds,
    the task results; the archive is listed in ledger_archives."""
    data = entry.data
    db.execute("DELETE FROM task_results WHERE seq <= ?", (data["last_seq"],))
    db.execute(
        "INSERT INTO ledger_archives (archive_seq, file, sha256, first_seq, last_seq, last_hash, entries, cutoff,"
        " archived_at, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.seq, data["file"], data["sha256"], data["first_seq"], data["last_seq"], data["last_hash"],
         data["entries"], data["cutoff"], data.get("archived_at", entry.at), entry.data_json()))


@projects("ledger.checkpoint", "ledger.redacted")
def _ledger_bookkeeping(db, entry):
    """Checkpoints (fed to the witnesses from the ledger) and redaction records are read from the
    ledger itself by ``ledger_verify`` and the witness feed: no query table holds them."""
    del db, entry


# --------------------------------------------------------------------------
# the review service: acknowledgements, accounts and its audit (change_index.py)
# --------------------------------------------------------------------------
PROJECTORS.update(change_index.PROJECTORS)

# entry kinds the change intelligence tables introduce (``run.linked``)
PROJECTORS.update(intelligence.PROJECTORS)
