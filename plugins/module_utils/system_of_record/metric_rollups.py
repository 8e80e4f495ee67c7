# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Daily rollups of the DevOps metrics (issue 18): projectors, their backfill and the queries over them.

Query tables kept from the ledger like every other one (``projection_check`` replays and compares
them), let ``intelligence/metrics.py`` read a period's whole days as a few rows per day instead of a row
per change (the design and why the figures are exact: docs/metrics.md, "Daily rollups"):

``metric_changes``
    one row per *change* (``metric_rules.is_change``): its start (text, as ``change_facts`` has it, and in
    microseconds since the epoch), its end in microseconds, whether it ended failed/interrupted, is a
    deployment or an emergency change, its lead time in seconds, its UTC day and, for a change that did
    not end failed, its *label key*: the services, environments and teams it counts for (``metrics._labels``
    over the CIs ``ci_changes`` gives it), as canonical JSON. The metrics read it for the partial days at
    a period's edges and to find the few changes the failure rules concern;
``metric_days``
    per UTC day and label key, over the changes that did not end failed: how many, how many deployments, and
    every lead time (seconds, a sorted JSON list: medians and percentiles cannot be summed, so the list is
    kept whole and the percentile computed from it as the raw computation does; and the same list packed,
    :func:`pack_leads`, which is what a metrics query reads);
``metric_ci_labels``
    what each CI gives the labels of its changes (services, own name, team), so a CI write that changes none of
    it (most do: every run refreshes host facts) costs one read, not a pass over the CI's changes.

A change that ended failed stays out of ``metric_days``: its CIs can come from the hosts it ran on through
the CMDB *as it is when asked* (``find_host_cis``), so it is always read row by row (a few per cent of
changes). Whether a change that ended well counts as failed (an incident, a remediation, an emergency change
after it) and every time to restore depend on the failure window and the period asked, so they are computed
when asked too, from ``metric_changes`` and the narrow intelligence tables, never stored.

The projectors follow ``change_facts``' (``run.started``/``run.finished``/``run.interrupted``), the CI links
(``ci.changed_by_run``) and CI writes (``ci.*``: a changed service, owner, support group or name moves the
CI's changes to their new label key), and recompute a change's row from those tables alone
(:func:`_sync`), so a replay, the backfill of an existing ledger (:func:`backfill`, migration 13's
``BACKFILL_METRIC_ROLLUPS`` step) and live appends give identical rows.
"""

from __future__ import annotations

import bisect
import datetime
import json
import struct

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import parse_time as _parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_mapping import HOST_CLASSES
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence import metric_rules
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import schema
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.intelligence import _marks

#: the schema version that made these tables: a replay inside an older migration leaves them alone
TABLES_VERSION = schema.version_of(schema.METRIC_ROLLUPS_MIGRATION)
#: the schema version that made ``metric_ci_next`` as :data:`NEXT_FOLLOWERS` write it (migration 14 made it first,
#: without the columns its incremental upkeep reads)
NEXT_TABLES_VERSION = schema.version_of(schema.METRIC_NEXT_INCREMENTAL_MIGRATION)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_FACT_COLUMNS = "run_id, started_at, ended_at, status, dry_run, authorisation, environment, commit_at"
_MEMBER_COLUMNS = ("run_id, started_at, day, start_us, end_us, status_failed, deployment, emergency, lead_seconds,"
                   " label_key, failed_status, failed_environment")
#: the columns migration 13 made, all its backfill writes (migration 18 adds the failed changes' status and
#: environment, filling them for the rows there are)
_MEMBER_COLUMNS_13 = ", ".join(_MEMBER_COLUMNS.split(", ")[:10])
_MEMBER_INSERT = "INSERT INTO metric_changes (%s) VALUES (%s)" % (_MEMBER_COLUMNS, ", ".join(["?"] * 12))


def micros(moment):
    """Microseconds since the epoch of an aware datetime: exact, so comparisons and differences are too."""
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds


def label_key(services, environments, teams):
    """The canonical JSON of a change's labels (what ``metric_days`` groups by)."""
    return json.dumps([sorted(services), sorted(environments), sorted(teams)], separators=(",", ":"))


def labels_of_key(key):
    services, environments, teams = json.loads(key)
    return {"service": set(services), "environment": set(environments), "team": set(teams)}


def ci_labels(facets, name_and_class):
    """What one CI gives the labels of a change of it (``metrics._labels``' rules): ``(services, team)`` from its
    facets (``{facet: [value, ...]}``, values sorted) and ``(name, class)`` (None: no such CI) - the services
    it lists, its own name when it is not a host, and its support group, else its owner."""
    services = set(facets.get("service", ()))
    if name_and_class is not None and name_and_class[1] not in HOST_CLASSES:
        services.add(name_and_class[0])
    return services, (facets.get("support_group") or facets.get("owner") or [None])[0]


def _fingerprint(facets, name_and_class):
    services, team = ci_labels(facets, name_and_class)
    return json.dumps([sorted(services), team], separators=(",", ":"))


_NOTHING = _fingerprint({}, None)


def member_row(fact, ci_ids, facets, names):
    """The ``metric_changes`` row of a change event, or None when it is not a change.

    ``fact``: its ``change_facts`` columns (``_FACT_COLUMNS``); ``ci_ids``: the CIs ``ci_changes`` links it to;
    ``facets``: ``ci_id -> {facet: [value, ...]}`` (values sorted); ``names``: ``ci_id -> (name, class)``.
    The labels are ``metrics._labels``' own rules over the same inputs. A change that ended failed has no label
    key but its status and environment (``change_facts``' own): the failure rules read them with its row."""
    fact = dict(fact, dry_run=bool(fact["dry_run"]))
    if not metric_rules.is_change(fact):
        return None
    change = metric_rules.Change(fact)
    failed = 1 if change.failed else 0
    key = None
    if not failed:
        services, teams = set(), set()
        for ci_id in ci_ids:
            ci_services, team = ci_labels(facets.get(ci_id, {}), names.get(ci_id))
            services.update(ci_services)
            if team:
                teams.add(team)
        environments = set(part for part in (fact.get("environment") or "").split(",") if part)
        key = label_key(services, environments, teams)
    day = change.start.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d")
    emergency = 1 if "emergency" in (fact.get("authorisation") or "").split("+") else 0
    return (fact["run_id"], fact["started_at"], day, micros(change.start), micros(change.end), failed,
            1 if change.deployment else 0, emergency, change.lead, key, fact["status"] if failed else None,
            fact.get("environment") if failed else None)


# --------------------------------------------------------------------------
# projectors
# --------------------------------------------------------------------------
def _member_from_tables(db, run_id):
    row = db.execute("SELECT %s FROM change_facts WHERE run_id = ?" % _FACT_COLUMNS, (run_id,)).fetchone()
    if row is None:
        return None
    fact = dict(zip(("run_id", "started_at", "ended_at", "status", "dry_run", "authorisation", "environment",
                     "commit_at"), row))
    if not metric_rules.is_change(dict(fact, dry_run=bool(fact["dry_run"]))):
        return None  # (a run still running, a dry run, a denied one: nothing to read)
    if fact["status"] in ("failed", "interrupted"):
        return member_row(fact, [], {}, {})  # (no label key: see the module docstring)
    ci_ids = [ci_id for (ci_id,) in db.execute("SELECT ci_id FROM ci_changes WHERE run_id = ? ORDER BY ci_id",
                                               (run_id,)).fetchall()]
    facets, names = {}, {}
    if ci_ids:
        marks = _marks(ci_ids)
        for ci_id, facet, value in db.execute("SELECT ci_id, facet, value FROM ci_facets WHERE ci_id IN (%s)"
                                              " ORDER BY ci_id, facet, value" % marks, tuple(ci_ids)).fetchall():
            facets.setdefault(ci_id, {}).setdefault(facet, []).append(value)
        for ci_id, name, ci_class in db.execute("SELECT ci_id, name, ci_class FROM configuration_items WHERE ci_id"
                                                " IN (%s)" % marks, tuple(ci_ids)).fetchall():
            names[ci_id] = (name, ci_class)
    return member_row(fact, ci_ids, facets, names)


def pack_leads(leads):
    """Lead times (floats) as the hex text of their big-endian IEEE 754 binary64 values (``metric_days.lead_packed``):
    exact like the JSON list, and days' texts joined by the database decode in one call (:func:`unpack_leads`)
    where parsing as many JSON numbers was most of a long period's query."""
    return struct.pack(">%dd" % len(leads), *leads).hex()


def unpack_leads(text):
    """The floats of :func:`pack_leads` texts joined together."""
    raw = bytes.fromhex(text)
    return struct.unpack(">%dd" % (len(raw) // 8), raw)


def _add_to_day(db, day, key, sign, deployment, lead):
    row = db.execute("SELECT changes, deployments, lead_seconds FROM metric_days WHERE day = ? AND label_key = ?",
                     (day, key)).fetchone()
    changes, deployments, leads = (row[0], row[1], json.loads(row[2])) if row else (0, 0, [])
    changes += sign
    deployments += sign * deployment
    if lead is not None:
        if sign > 0:
            bisect.insort(leads, lead)
        else:
            leads.pop(bisect.bisect_left(leads, lead))
    text = json.dumps(leads, separators=(",", ":"))
    if row is None:
        db.execute("INSERT INTO metric_days (day, label_key, changes, deployments, lead_seconds, lead_packed)"
                   " VALUES (?, ?, ?, ?, ?, ?)", (day, key, changes, deployments, text, pack_leads(leads)))
    elif changes:
        db.execute("UPDATE metric_days SET changes = ?, deployments = ?, lead_seconds = ?, lead_packed = ?"
                   " WHERE day = ? AND label_key = ?", (changes, deployments, text, pack_leads(leads), day, key))
    else:
        db.execute("DELETE FROM metric_days WHERE day = ? AND label_key = ?", (day, key))


def _sync(db, run_id):
    """Bring ``run_id``'s ``metric_changes`` row and its share of ``metric_days`` up to date with the tables."""
    old = db.execute("SELECT %s FROM metric_changes WHERE run_id = ?" % _MEMBER_COLUMNS, (run_id,)).fetchone()
    new = _member_from_tables(db, run_id)
    old = tuple(old) if old is not None else None
    if old == new:
        return
    if old is not None:
        db.execute("DELETE FROM metric_changes WHERE run_id = ?", (run_id,))
        if not old[5]:
            _add_to_day(db, old[2], old[9], -1, old[6], old[8])
    if new is not None:
        db.execute(_MEMBER_INSERT, new)
        if not new[5]:
            _add_to_day(db, new[2], new[9], 1, new[6], new[8])


def _run_written(db, entry):
    _sync(db, entry.data["run_id"])


def _ci_written(db, entry):
    """A CI's services, team or name may have changed: its changes then count for other labels. Most CI writes
    (facts refreshed by every run) change none of that: ``metric_ci_labels`` keeps what each CI gives the labels,
    and only a change of it re-reads the CI's changes."""
    ci_id = entry.data["ci_id"]
    facets = {}
    for facet, value in db.execute("SELECT facet, value FROM ci_facets WHERE ci_id = ? ORDER BY facet, value",
                                   (ci_id,)).fetchall():
        facets.setdefault(facet, []).append(value)
    row = db.execute("SELECT name, ci_class FROM configuration_items WHERE ci_id = ?", (ci_id,)).fetchone()
    fingerprint = _fingerprint(facets, tuple(row) if row is not None else None)
    known = db.execute("SELECT labels FROM metric_ci_labels WHERE ci_id = ?", (ci_id,)).fetchone()
    # (a CI that does not exist gives nothing, like one without services, team or a name of its own)
    before = known[0] if known is not None else _NOTHING
    if row is None:
        db.execute("DELETE FROM metric_ci_labels WHERE ci_id = ?", (ci_id,))
    elif known is None:
        db.execute("INSERT INTO metric_ci_labels (ci_id, labels) VALUES (?, ?)", (ci_id, fingerprint))
    elif known[0] != fingerprint:
        db.execute("UPDATE metric_ci_labels SET labels = ? WHERE ci_id = ?", (fingerprint, ci_id))
    if before == fingerprint:
        return
    for (run_id,) in db.execute("SELECT run_id FROM ci_changes WHERE ci_id = ?", (ci_id,)).fetchall():
        _sync(db, run_id)


# --------------------------------------------------------------------------
# metric_ci_next: per change and CI it changed, the next emergency change and the next deployment of the CI
# --------------------------------------------------------------------------
_NEXT_COLUMNS = ("ci_id, run_id, started_at, end_us, next_emergency_us, next_deployment_run_id, next_deployment_start_us,"
                 " next_deployment_end_us, start_us, emergency, deployment")
_NEXT_INSERT = "INSERT INTO metric_ci_next (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" % _NEXT_COLUMNS


def next_rows(ci_id, members):
    """The ``metric_ci_next`` rows of a CI from its changes ``members``: ``(run_id, started_at, start_us, end_us,
    emergency, deployment)`` of every change ``ci_changes`` links to it. For each change:

    * ``next_emergency_us``: the earliest start of an emergency change of the CI that started after the change
      started and not before it ended (``metrics._mark_failures``' emergency rule marks the change when that start
      is within the failure window of its end: the earliest such start decides, whatever the window);
    * ``next_deployment_*``: the deployment of the CI with the earliest end after the change's end (lowest run id
      among equal ends): the time to restore of a failed change when that deployment is itself counted (started
      inside the range asked, not marked failed); the reader falls back to the CI's deployments otherwise;
    * ``start_us``, ``emergency``, ``deployment``: the change's own, which the incremental upkeep
      (:func:`_link_next`) looks the CI's next ones up by.
    """
    emergencies = sorted(start for _run, _started, start, _end, emergency, _dep in members if emergency)
    deployments = sorted((end, run_id, start) for run_id, _started, start, end, _emergency, deployment in members
                         if deployment)
    deployment_ends = [row[0] for row in deployments]
    rows = []
    for run_id, started_at, start, end, emergency, deployment in members:
        # (an emergency change itself never qualifies: it did not start after its own start)
        position = bisect.bisect_left(emergencies, _emergency_from(start, end))
        next_emergency = emergencies[position] if position < len(emergencies) else None
        position = bisect.bisect_right(deployment_ends, end)
        following = deployments[position] if position < len(deployments) else (None, None, None)
        rows.append((ci_id, run_id, started_at, end, next_emergency, following[1], following[2], following[0],
                     start, 1 if emergency else 0, 1 if deployment else 0))
    return rows


def _emergency_from(start, end):
    """The earliest start of an emergency change that follows a change (:func:`next_rows`): not before its end, and
    after its start."""
    return max(end, start + 1)


def _members_of_ci(db, ci_id):
    return [tuple(row) for row in db.execute(
        "SELECT m.run_id, m.started_at, m.start_us, m.end_us, m.emergency, m.deployment FROM ci_changes c"
        " JOIN metric_changes m ON m.run_id = c.run_id WHERE c.ci_id = ?", (ci_id,)).fetchall()]


def _refresh_next(db, ci_id):
    """Bring the CI's ``metric_ci_next`` rows up to date with ``ci_changes`` and ``metric_changes``: the CI's changes
    are read again (one indexed range over its whole history), and only the rows that differ are written. For a
    change whose start, end or kind changed after its CI links (rare: the recorder links a run's CIs after its end);
    a new link takes :func:`_link_next`."""
    wanted = {row[1]: row for row in next_rows(ci_id, _members_of_ci(db, ci_id))}
    stored = {row[1]: tuple(row) for row in db.execute(
        "SELECT %s FROM metric_ci_next WHERE ci_id = ?" % _NEXT_COLUMNS, (ci_id,)).fetchall()}
    for run_id, row in stored.items():
        if wanted.get(run_id) != row:
            db.execute("DELETE FROM metric_ci_next WHERE ci_id = ? AND run_id = ?", (ci_id, run_id))
    for run_id, row in wanted.items():
        if stored.get(run_id) != row:
            db.execute(_NEXT_INSERT, row)


def _link_next(db, ci_id, run_id):
    """A new CI link: the change's own row, and the rows of the CI's earlier changes whose next emergency change or
    next deployment the change displaces - :func:`next_rows`' result, reached without reading the CI's history.

    Every statement is an index range bounded by what changes (docs/metrics.md, "Speed"): the displaced rows are
    those whose next is later than the new change's, or missing (``metric_ci_next_by_emergency`` /
    ``_by_deployment``), which for a run recorded in order are the changes since the CI's last emergency change or
    deployment - rows that must be written anyway; for one recorded late (a spool flushed after later runs), also
    the CI's changes after it up to their own next one. The change's own next ones are the first entries of two
    partial indexes after its end. Exactness: tests/unit/test_metric_rollups.py compares the rows with
    :func:`next_rows` over the CI's whole history after runs arrive in random order."""
    member = db.execute("SELECT started_at, start_us, end_us, emergency, deployment FROM metric_changes"
                        " WHERE run_id = ?", (run_id,)).fetchone()
    if member is None:
        return  # (not a change, or not yet: its end brings its CIs' rows, :func:`_run_next`)
    if db.execute("SELECT 1 FROM metric_ci_next WHERE ci_id = ? AND run_id = ?", (ci_id, run_id)).fetchone():
        return  # (a link recorded again: the row follows the change's own writes already)
    started_at, start, end, emergency, deployment = member
    if emergency:
        # the CI's changes it follows (started before it, ended not after it) whose next emergency is later or none
        for clause, params in (("next_emergency_us > ?", (start,)), ("next_emergency_us IS NULL", ())):
            db.execute("UPDATE metric_ci_next SET next_emergency_us = ? WHERE ci_id = ? AND %s AND end_us <= ?"
                       " AND start_us < ?" % clause, (start, ci_id) + params + (start, start))
    if deployment:
        # the CI's changes that ended before it whose next deployment ends later (at the same end: has a higher run
        # id, compared here as next_rows sorts, whatever the database's collation) or is none
        for other, following in db.execute(
                "SELECT run_id, next_deployment_run_id FROM metric_ci_next WHERE ci_id = ?"
                " AND next_deployment_end_us = ? AND end_us < ?", (ci_id, end, end)).fetchall():
            if following > run_id:
                db.execute("UPDATE metric_ci_next SET next_deployment_run_id = ?, next_deployment_start_us = ?"
                           " WHERE ci_id = ? AND run_id = ?", (run_id, start, ci_id, other))
        for clause, params in (("next_deployment_end_us > ?", (end,)), ("next_deployment_end_us IS NULL", ())):
            db.execute("UPDATE metric_ci_next SET next_deployment_run_id = ?, next_deployment_start_us = ?,"
                       " next_deployment_end_us = ? WHERE ci_id = ? AND %s AND end_us < ?" % clause,
                       (run_id, start, end, ci_id) + params + (end,))
    # its own next ones, among the CI's other changes (it never qualifies for itself)
    next_emergency = db.execute("SELECT MIN(start_us) FROM metric_ci_next WHERE ci_id = ? AND emergency = 1"
                                " AND start_us >= ?", (ci_id, _emergency_from(start, end))).fetchone()[0]
    following = (None, None, None)
    first_end = db.execute("SELECT MIN(end_us) FROM metric_ci_next WHERE ci_id = ? AND deployment = 1 AND end_us > ?",
                           (ci_id, end)).fetchone()[0]
    if first_end is not None:
        following = min((other, other_start, first_end) for other, other_start in db.execute(
            "SELECT run_id, start_us FROM metric_ci_next WHERE ci_id = ? AND deployment = 1 AND end_us = ?",
            (ci_id, first_end)).fetchall())
    db.execute(_NEXT_INSERT, (ci_id, run_id, started_at, end, next_emergency, following[0], following[1],
                              following[2], start, emergency, deployment))


def _run_next(db, entry):
    """A new CI link: :func:`_link_next`. A run's start, end or authorisation may have changed (or it became a
    change): the rows of the CIs it changed, read again (:func:`_refresh_next`; as the recorder writes, a run's CI
    links come after its end: usually there are none yet)."""
    if entry.kind == "ci.changed_by_run":
        _link_next(db, entry.data["ci_id"], entry.data["run_id"])
        return
    for (ci_id,) in db.execute("SELECT ci_id FROM ci_changes WHERE run_id = ? ORDER BY ci_id",
                               (entry.data["run_id"],)).fetchall():
        _refresh_next(db, ci_id)


#: entry kind -> projectors run after the intelligence followers (``projections.project``), from TABLES_VERSION
FOLLOWERS = {
    "run.started": [_run_written],
    "run.finished": [_run_written],
    "run.interrupted": [_run_written],
    "ci.changed_by_run": [_run_written],
    "ci.created": [_ci_written],
    "ci.updated": [_ci_written],
    "ci.deleted": [_ci_written],
}


#: entry kind -> ``metric_ci_next``'s projector, run after :data:`FOLLOWERS`, from NEXT_TABLES_VERSION
NEXT_FOLLOWERS = {
    "run.started": [_run_next],
    "run.finished": [_run_next],
    "run.interrupted": [_run_next],
    "ci.changed_by_run": [_run_next],
}


# --------------------------------------------------------------------------
# backfill: an existing ledger gets the rows a replay would give it
# --------------------------------------------------------------------------
def backfill(db, batch=5000):
    """Fill the tables from ``change_facts``, ``ci_changes``, ``ci_facets`` and ``configuration_items`` (migration
    13's Python step, inside its transaction): the same :func:`member_row` over the same inputs as the projectors,
    read a table at a time rather than a run at a time."""
    cis = {}
    for ci_id, run_id in db.execute("SELECT ci_id, run_id FROM ci_changes").fetchall():
        cis.setdefault(run_id, []).append(ci_id)
    facets = {}
    for ci_id, facet, value in db.execute("SELECT ci_id, facet, value FROM ci_facets ORDER BY ci_id, facet, value"
                                          ).fetchall():
        facets.setdefault(ci_id, {}).setdefault(facet, []).append(value)
    names = {ci_id: (name, ci_class) for ci_id, name, ci_class
             in db.execute("SELECT ci_id, name, ci_class FROM configuration_items").fetchall()}
    for ci_id in sorted(names):
        db.execute("INSERT INTO metric_ci_labels (ci_id, labels) VALUES (?, ?)",
                   (ci_id, _fingerprint(facets.get(ci_id, {}), names[ci_id])))
    days = {}
    last = ""
    keys = ("run_id", "started_at", "ended_at", "status", "dry_run", "authorisation", "environment", "commit_at")
    while True:
        rows = db.execute("SELECT %s FROM change_facts WHERE run_id > ? ORDER BY run_id LIMIT %d"
                          % (_FACT_COLUMNS, batch), (last,)).fetchall()
        for row in rows:
            fact = dict(zip(keys, row))
            member = member_row(fact, sorted(cis.get(fact["run_id"], ())), facets, names)
            if member is None:
                continue
            db.execute("INSERT INTO metric_changes (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" % _MEMBER_COLUMNS_13,
                       member[:10])
            if not member[5]:
                day = days.setdefault((member[2], member[9]), [0, 0, []])
                day[0] += 1
                day[1] += member[6]
                if member[8] is not None:
                    day[2].append(member[8])
        if len(rows) < batch:
            break
        last = rows[-1][0]
    for (day, key), (changes, deployments, leads) in sorted(days.items()):
        db.execute("INSERT INTO metric_days (day, label_key, changes, deployments, lead_seconds) VALUES (?, ?, ?, ?, ?)",
                   (day, key, changes, deployments, json.dumps(sorted(leads), separators=(",", ":"))))


def backfill_leads_packed(db, batch=5000):
    """Pack every ``metric_days`` row's lead times from its JSON list (migration 18's Python step, and an archived
    state written before it: ``projection_check.load_rows``), a page of rows at a time."""
    after = ("", "")
    while True:
        rows = db.execute("SELECT day, label_key, lead_seconds FROM metric_days WHERE day > ? OR (day = ? AND"
                          " label_key > ?) ORDER BY day, label_key LIMIT %d" % batch,
                          (after[0], after[0], after[1])).fetchall()
        db.executemany("UPDATE metric_days SET lead_packed = ? WHERE day = ? AND label_key = ?",
                       [(pack_leads(json.loads(leads)), day, key) for day, key, leads in rows])
        if len(rows) < batch:
            return
        after = (rows[-1][0], rows[-1][1])


def backfill_next(db):
    """Fill ``metric_ci_next`` from ``ci_changes`` and ``metric_changes`` (migration 16's Python step): the same
    :func:`next_rows` over the same inputs as the projector, read CI by CI in pages of ``_BACKFILL_CIS`` CIs, so
    a large estate's CI links (millions) are never all in memory at once."""
    after = ""
    while True:
        ci_ids = [row[0] for row in db.execute(
            "SELECT DISTINCT ci_id FROM ci_changes WHERE ci_id > ? ORDER BY ci_id LIMIT %d" % _BACKFILL_CIS,
            (after,)).fetchall()]
        if not ci_ids:
            return
        rows = []
        current, members = None, []
        for row in db.execute("SELECT c.ci_id, m.run_id, m.started_at, m.start_us, m.end_us, m.emergency, m.deployment"
                              " FROM ci_changes c JOIN metric_changes m ON m.run_id = c.run_id"
                              " WHERE c.ci_id >= ? AND c.ci_id <= ? ORDER BY c.ci_id",
                              (ci_ids[0], ci_ids[-1])).fetchall():
            if row[0] != current:
                if members:
                    rows.extend(next_rows(current, members))
                current, members = row[0], []
            members.append(tuple(row[1:]))
        if members:
            rows.extend(next_rows(current, members))
        for start in range(0, len(rows), 5000):
            db.executemany(_NEXT_INSERT, rows[start:start + 5000])
        after = ci_ids[-1]


#: CIs whose links :func:`backfill_next` reads per page
_BACKFILL_CIS = 2000


# --------------------------------------------------------------------------
# queries
# --------------------------------------------------------------------------
_MEMBER_KEYS = ("run_id", "started_at", "day", "start_us", "end_us", "status_failed", "deployment", "emergency",
                "lead_seconds", "label_key", "failed_status", "failed_environment")


def _change_clauses(prefix, since, until, failed_only):
    """``(clauses, params)`` choosing ``metric_changes`` rows (columns under ``prefix``) started in ``[since, until)``
    (None: unbounded), only those that ended failed when asked."""
    clauses, params = [], []
    if since is not None:
        clauses.append(prefix + "started_at >= ?")
        params.append(since)
    if until is not None:
        clauses.append(prefix + "started_at < ?")
        params.append(until)
    if failed_only:
        clauses.append(prefix + "status_failed = 1")
    return clauses, params


class MetricRollupQueries(object):
    """The metric rollup methods of ``SystemOfRecord``, for SQL backends (``self._query``)."""

    has_metric_rollups = True

    def find_metric_days(self, first_day, end_day):
        """``metric_days`` rows of the UTC days ``[first_day, end_day)`` (``YYYY-MM-DD``): ``(day, label_key,
        changes, deployments, lead_seconds)`` with ``lead_seconds`` a JSON list, as tuples (a 90-day period is
        thousands of rows)."""
        return [tuple(row) for row in self._query(
            "SELECT day, label_key, changes, deployments, lead_seconds FROM metric_days WHERE day >= ? AND day < ?",
            (first_day, end_day))]

    #: the dialect's aggregate that joins texts (PostgreSQL: STRING_AGG)
    text_aggregate = "GROUP_CONCAT(%s, '')"

    def find_metric_day_sums(self, day_ranges):
        """Per range of UTC days ``(first_day, end_day)`` of ``day_ranges`` (``YYYY-MM-DD``, end excluded) and label
        key, ``metric_days`` added up: ``(range index, label_key, changes, deployments, lead times)`` with the lead
        times the days' packed texts joined (:func:`unpack_leads` decodes them; '': none), in no order. The
        database adds the counts and joins the texts, so a bucket's rows cost one row per label key, and its lead
        times one decoding, whatever its number of days (exact: whole numbers added, binary64 values as stored)."""
        found = []
        sql = ("SELECT label_key, SUM(changes), SUM(deployments), %s FROM metric_days WHERE day >= ? AND day < ?"
               " GROUP BY label_key" % (self.text_aggregate % "lead_packed"))
        # a statement per range, sent together where the backend pipelines them (PostgreSQL: one round trip for a
        # 90-day period's 13 weeks; one statement grouping by range measured slower on both backends)
        results = self._queries([(sql, (first_day, end_day)) for first_day, end_day in day_ranges])
        for index, rows in enumerate(results):
            found.extend((index, key, int(changes), int(deployments), text)
                         for key, changes, deployments, text in rows)
        return found

    def find_metric_changes(self, since, until, failed_only=False, emergency_only=False, run_ids=None,
                            run_ids_only=False):
        """``metric_changes`` rows (dicts) of changes started in ``[since, until)`` (text, as ``change_facts``
        compares them), only those that ended failed / are emergency changes when asked, or of ``run_ids``; only
        their run ids with ``run_ids_only``."""
        clauses, params = _change_clauses("", since, until, failed_only)
        if emergency_only:
            clauses.append("emergency = 1")
        rows = self._select_in("SELECT %s FROM metric_changes" % ("run_id" if run_ids_only else _MEMBER_COLUMNS),
                               clauses, params, "run_id", run_ids)
        if run_ids_only:
            return [row[0] for row in rows]
        return [dict(zip(_MEMBER_KEYS, row)) for row in rows]

    def find_metric_failure_rows(self, since, until, failed_only=False, run_ids=None):
        """``(run_id, start_us, end_us, status_failed, emergency, label_key, status, environment, ci_id,
        next_deployment_end_us, next_deployment_run_id, next_deployment_start_us)`` tuples of the changes started in
        ``[since, until)`` (None: unbounded), only those that ended failed when asked, or of ``run_ids``: a row per
        CI the change changed with its ``metric_ci_next`` columns (one row with a None CI when it changed none);
        ``status`` and ``environment`` only for a change that ended failed (None otherwise: the others' labels are
        their label key). Narrow rows, no dicts: a 90-day period's failure rules read thousands, from the index
        ranges of ``metric_changes_failed`` and ``metric_ci_next_run`` alone (migration 18)."""
        clauses, params = _change_clauses("m.", since, until, failed_only)
        return [tuple(row) for row in self._select_in(
            "SELECT m.run_id, m.start_us, m.end_us, m.status_failed, m.emergency, m.label_key,"
            " m.failed_status, m.failed_environment, n.ci_id, n.next_deployment_end_us, n.next_deployment_run_id,"
            " n.next_deployment_start_us FROM metric_changes m LEFT JOIN metric_ci_next n ON n.run_id = m.run_id",
            clauses, params, "m.run_id", run_ids)]

    def find_metric_changes_of_cis(self, ci_ids, since, until, deployments_only=False):
        """``(ci_id, metric_changes row as a dict)`` for the changes ``ci_changes`` links to ``ci_ids`` that started in
        ``[since, until)``; only deployments when asked."""
        clauses = ["c.started_at >= ?", "m.started_at >= ?", "m.started_at < ?"]
        if deployments_only:
            clauses.append("m.deployment = 1")
        columns = ", ".join("m." + column.strip() for column in _MEMBER_COLUMNS.split(","))
        rows = self._select_in("SELECT c.ci_id, %s FROM ci_changes c JOIN metric_changes m ON m.run_id = c.run_id"
                               % columns, clauses, (since, since, until), "c.ci_id", ci_ids)
        return [(row[0], dict(zip(_MEMBER_KEYS, row[1:]))) for row in rows]

    def find_deployment_ends(self, ci_ids, since, until):
        """``(ci_id, run_id, end_us)`` of the deployments of ``ci_ids`` (``ci_changes``) started in ``[since, until)``:
        what a time to restore looks for. ``metric_ci_next`` has a row per change and CI that ``ci_changes`` links
        (the change's start, end and kind): one range of ``metric_ci_next_deployment_starts`` per CI (migration 19)."""
        return [tuple(row) for row in self._select_in(
            # (deployment = 1 as a literal: the partial index's condition, which the planner must see)
            "SELECT ci_id, run_id, end_us FROM metric_ci_next", ["deployment = 1", "started_at >= ?", "started_at < ?"],
            (since, until), "ci_id", ci_ids)]

    def find_emergency_marked(self, since, until, window_us):
        """Run ids of the changes started in ``[since, until)`` that an emergency change started in the same range
        follows on a CI both changed (``ci_changes``), the change having ended at most ``window_us`` microseconds
        before the emergency change started and started before it: ``metrics._mark_failures``' emergency rule,
        for CIs the changes changed (a failed change's CIs of its hosts are the caller's). One indexed range of
        ``metric_ci_next``: the earliest emergency change after each change decides (:func:`next_rows`)."""
        until_us = micros(_parse_time(until))
        sql = ("SELECT DISTINCT run_id FROM metric_ci_next WHERE started_at >= ? AND started_at < ?"
               " AND next_emergency_us IS NOT NULL AND next_emergency_us - end_us <= ? AND next_emergency_us < ?")
        if window_us <= schema.NEAR_EMERGENCY_US:
            # (implied by the window; as a literal, the condition of metric_ci_next_near_emergencies, migration 19,
            # which holds only those rows)
            sql += " AND next_emergency_us - end_us <= %d" % schema.NEAR_EMERGENCY_US
        rows = self._query(sql, (since, until, int(window_us), until_us))
        return [row[0] for row in rows]

    def find_metric_ci_labels(self, ci_ids):
        """``{ci_id: (services, team)}``: what each of ``ci_ids`` gives the labels of a change of it
        (``metric_ci_labels``: :func:`ci_labels` kept from the CMDB as it is); a CI with no row gives nothing."""
        found, parsed = {}, {}
        for ci_id, labels in self._select_in("SELECT ci_id, labels FROM metric_ci_labels", [], (), "ci_id", ci_ids):
            value = parsed.get(labels)
            if value is None:
                # (CIs share a few hundred combinations of services and team: each parsed once)
                services, team = json.loads(labels)
                value = parsed[labels] = (services, team)
            found[ci_id] = value
        return found

    def find_linked_runs(self, since, until):
        """Run ids of the changes started in ``[since, until)`` that have a ``run.linked`` link."""
        return [row[0] for row in self._query(
            # (links are few, changes many: SQLite reads the links first when told with CROSS JOIN)
            "SELECT DISTINCT m.run_id FROM change_links l CROSS JOIN metric_changes m"
            " WHERE m.run_id = l.run_id AND m.started_at >= ? AND m.started_at < ?", (since, until))]
