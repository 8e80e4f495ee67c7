# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The list index of change events, and the review service's own ledger entries, as projections.

The review service lists, filters, counts and searches up to millions of change events per request.
Reading the events for that would not scale, so every event is also indexed as *facets*: one row
``(facet, value, started_at, run_id)`` per value it has, in ``change_event_facets``:

==============  ==========================================================================
``listed``      ``yes`` for every event but those that changed nothing (hidden by default)
``host``        each host of the run
``service``     each service the run's host CIs carry (their ``services`` attribute)
``environment`` each environment of the run's host CIs
``outcome``     running, successful, failed, interrupted, or denied (a gate stopped it)
``category``    each authorisation category: standard, change-request, emergency, unauthorised,
                denied, dry-run, record-only, no-change, pending
``review``      awaiting, accepted, follow-up, not-required (nothing to review), pending (running)
``ack``         for unauthorised changes: unacknowledged, or the latest disposition
``term``        search words: user, controller, playbook (path parts and their words), change
                request numbers and templates
==============  ==========================================================================

The primary key makes "events with this value, newest first" one index range scan, and the
second index ``(run_id, facet, value)`` makes "does this event have that value" one probe: a
filtered page walks the most selective filter's range and probes the others (see
``review_queries.py``). ``change_event_facet_counts`` counts the rows per value and UTC day (and
whether the event is listed), so counts over whole days are sums of a few hundred rows.

Everything here is a projection: replaying the ledger rebuilds it (``projection_check`` compares it).
"""

from __future__ import annotations

import json
import re

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError

#: facets a filter may name (``term`` is searched with words, ``listed`` is the default view)
FILTER_FACETS = ("host", "service", "environment", "outcome", "category", "review", "ack")
#: facets whose values are searched by free text (a word matches a value it starts)
SEARCH_FACETS = ("term", "host", "service", "environment", "outcome", "category")
#: categories of runs that changed no managed host and need no post-implementation review
NO_REVIEW = ("no-change", "record-only", "dry-run", "pending")
#: how a gate type maps to the register's authorisation categories (as ``change_register``)
CATEGORIES = {"normal": "change-request"}
#: dispositions of an acknowledged unauthorised change
DISPOSITIONS = ("retrospective-approval", "incident-raised", "reverted")

_WORD = re.compile(r"[^\w.\-]+", re.UNICODE)
_SUBWORD = re.compile(r"[^\w]+|_", re.UNICODE)


def categories(authorisation):
    if not authorisation:
        return ["pending"]
    return [CATEGORIES.get(part, part) for part in str(authorisation).split("+") if part]


def words(text):
    """Search words of ``text``, lowercased: path parts and names whole, and the words inside them.

    ``/srv/ansible/deploy_web.yml`` gives ``srv``, ``ansible``, ``deploy_web.yml``, ``deploy``, ``web``, ``yml``.
    """
    found = []
    for piece in _WORD.split(str(text or "").lower().replace("/", " ")):
        piece = piece.strip(".-")
        if not piece:
            continue
        if piece not in found:
            found.append(piece)
        for part in _SUBWORD.split(piece):
            part = part.strip(".-")
            if part and part not in found:
                found.append(part)
    return found


def outcome_of(status, category_list):
    if category_list == ["denied"] and status == "failed":
        return "denied"  # a gate stopped it: a blocked attempt, not an ordinary failure
    return status


def review_state(status, dry_run, category_list, review_status):
    if status == "running":
        return "pending"
    if dry_run or any(category in NO_REVIEW for category in category_list):
        return "not-required"
    return review_status or "awaiting"


def facets_of(event, hosts, services, acknowledgement):
    """``(listed, {(facet, value)})`` of one change event row (a dict of ``change_events`` columns)."""
    category_list = categories(event["authorisation"])
    listed = category_list != ["no-change"]
    found = {("outcome", outcome_of(event["status"], category_list)),
             ("review", review_state(event["status"], event["dry_run"], category_list, event["review_status"]))}
    found.update(("category", category) for category in category_list)
    found.update(("environment", env) for env in (event["environment"] or "").split(",") if env)
    found.update(("host", host) for host in hosts)
    found.update(("service", service) for service in services)
    if "unauthorised" in category_list:
        found.add(("ack", acknowledgement or "unacknowledged"))
    for text in (event["user_name"], event["controller"], event["playbook"], event["authorisation_ref"]):
        found.update(("term", word) for word in words(text))
    if listed:
        found.add(("listed", "yes"))
    return listed, found


def _services(db, hosts):
    """Services named by the host CIs of the run (their ``services`` attribute)."""
    if not hosts:
        return set()
    found = set()
    for chunk_start in range(0, len(hosts), 500):
        chunk = hosts[chunk_start:chunk_start + 500]
        rows = db.execute("SELECT attributes FROM configuration_items WHERE name IN (%s)" % ", ".join("?" * len(chunk)),
                          tuple(chunk)).fetchall()
        for (attributes,) in rows:
            services = (json.loads(attributes) if attributes else {}).get("services")
            if isinstance(services, list):
                found.update(str(service) for service in services if service not in (None, ""))
    return found


def reindex(db, run_id):
    """Bring the facets of one change event (and their day counts) up to date with its row."""
    if getattr(db, "tables", None) is not None and "change_event_facets" not in db.tables:
        return  # a replay in a migration older than the index's: the index's own migration replays again
    row = db.execute(
        "SELECT started_at, status, dry_run, user_name, controller, playbook, environment, authorisation,"
        " authorisation_ref, review_status FROM change_events WHERE run_id = ?", (run_id,)).fetchone()
    old = db.execute("SELECT facet, value, started_at FROM change_event_facets WHERE run_id = ?",
                     (run_id,)).fetchall()
    old_listed = any(facet == "listed" for facet, _value, _started in old)
    old_started = old[0][2] if old else None
    old_set = set((facet, value) for facet, value, _started in old)
    if row is None:
        new_set, listed, started_at = set(), False, None
    else:
        event = dict(zip(("started_at", "status", "dry_run", "user_name", "controller", "playbook", "environment",
                          "authorisation", "authorisation_ref", "review_status"), row))
        started_at = event["started_at"]
        if event["status"] == "running":
            hosts, services = [], set()  # the hosts are indexed once the run has ended
        else:
            hosts = [host for (host,) in db.execute("SELECT host FROM run_hosts WHERE run_id = ? ORDER BY host",
                                                    (run_id,)).fetchall()]
            services = _services(db, hosts)
        ack = db.execute("SELECT disposition FROM acknowledgements WHERE run_id = ? ORDER BY seq DESC LIMIT 1",
                         (run_id,)).fetchone()
        listed, new_set = facets_of(event, hosts, services, ack[0] if ack else None)
    if old and (old_started != started_at or old_listed != listed):
        removed, added = old_set, new_set
    else:
        removed, added = old_set - new_set, new_set - old_set
    for facet, value in sorted(removed):
        db.execute("DELETE FROM change_event_facets WHERE facet = ? AND value = ? AND started_at = ? AND run_id = ?",
                   (facet, value, old_started, run_id))
        _count(db, facet, value, old_started, old_listed, -1)
    for facet, value in sorted(added):
        db.execute("INSERT INTO change_event_facets (facet, value, started_at, run_id) VALUES (?, ?, ?, ?)",
                   (facet, value, started_at, run_id))
        _count(db, facet, value, started_at, listed, 1)


def _count(db, facet, value, started_at, listed, delta):
    day = (started_at or "")[:10]
    listed = 1 if listed else 0
    if delta > 0:
        db.execute("INSERT INTO change_event_facet_counts (facet, value, day, listed, n) VALUES (?, ?, ?, ?, 1)"
                   " ON CONFLICT (facet, value, day, listed) DO UPDATE SET n = change_event_facet_counts.n + 1",
                   (facet, value, day, listed))
        return
    db.execute("UPDATE change_event_facet_counts SET n = n - 1 WHERE facet = ? AND value = ? AND day = ? AND listed = ?",
               (facet, value, day, listed))
    db.execute("DELETE FROM change_event_facet_counts WHERE facet = ? AND value = ? AND day = ? AND listed = ? AND n <= 0",
               (facet, value, day, listed))


# --------------------------------------------------------------------------
# the review service's own entries
# --------------------------------------------------------------------------
PROJECTORS = {}


def _projects(kind):
    def register(function):
        PROJECTORS[kind] = function
        return function
    return register


@_projects("run.acknowledged")
def _run_acknowledged(db, entry):
    """An unauthorised change acknowledged with a disposition (retrospective approval, incident, reverted)."""
    data = entry.data
    run_id = data["run_id"]
    row = db.execute("SELECT authorisation FROM change_events WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise ConflictError("change event %s does not exist" % run_id)
    if "unauthorised" not in categories(row[0]):
        raise ConflictError("change event %s is not unauthorised (%s): only unauthorised changes are acknowledged"
                            % (run_id, row[0] or "pending"))
    if data.get("disposition") not in DISPOSITIONS:
        raise ConflictError("disposition %r is not one of %s" % (data.get("disposition"), ", ".join(DISPOSITIONS)))
    db.execute("INSERT INTO acknowledgements (seq, run_id, disposition, acknowledged_at, doc) VALUES (?, ?, ?, ?, ?)",
               (entry.seq, run_id, data["disposition"], data.get("acknowledged_at", entry.at), entry.data_json()))
    reindex(db, run_id)


@_projects("review.account")
def _review_account(db, entry):
    """An account of the review service created or changed (roles, display name, disabled): never a secret."""
    data = entry.data
    name = data["name"]
    roles = canonical_json(sorted(data.get("roles") or []))
    if db.execute("SELECT 1 FROM review_accounts WHERE name = ?", (name,)).fetchone():
        db.execute("UPDATE review_accounts SET display_name = ?, roles = ?, disabled = ?, updated_at = ?, last_seq = ?"
                   " WHERE name = ?", (data.get("display_name"), roles, 1 if data.get("disabled") else 0, entry.at,
                                       entry.seq, name))
    else:
        db.execute("INSERT INTO review_accounts (name, display_name, roles, disabled, created_at, updated_at, last_seq)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)", (name, data.get("display_name"), roles,
                                                    1 if data.get("disabled") else 0, entry.at, entry.at, entry.seq))
    _audit(db, entry)


def _audit(db, entry):
    data = entry.data
    db.execute("INSERT INTO review_audit (seq, at, kind, subject, remote, doc) VALUES (?, ?, ?, ?, ?, ?)",
               (entry.seq, entry.at, entry.kind, entry.subject, data.get("remote"), entry.data_json()))


for _kind in ("review.sign_in_failed", "review.token_issued", "review.token_revoked", "review.password_set"):
    PROJECTORS[_kind] = _audit
