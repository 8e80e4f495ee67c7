# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The list of change events the review service pages, filters, counts and searches, as projections.

At a million change events a page must never read the events it skips, so each event is also one
narrow row of ``change_list``, keyed by its **list key**: the start time in microseconds times 1000,
plus a tie-break from the run id (:func:`list_key`). The key orders the list newest first on its own,
so the first page is the last 50 keys, a deep page is "the 50 keys below this one" (a keyset cursor:
no OFFSET walks), and a time range is a key range. Three things are keyed by it:

``change_list``         one row per event: the facet values, the hosts, the sortable columns and
                        its search words (SQLite: the table is the key's B-tree itself)
``change_list_facets``  one row ``(facet, value, list_key)`` per value a filter can ask for:
                        "events with this value, newest first" is one index range, "does event K
                        have it" one primary-key probe
``change_list_words``   the free-text index of the words: SQLite FTS5 (external content, prefix
                        indexes) whose rowid is the list key, so matches come newest first; on
                        PostgreSQL a GIN index (``change_list_search``) over the stored
                        word vector ``change_list.search``, generated from the same words

==============  ==========================================================================
facet           values
==============  ==========================================================================
``host``        each host of the run (indexed once the run has ended)
``service``     each service the run's host CIs carry (their ``services`` attribute)
``environment`` each environment of the run's host CIs
``outcome``     successful, failed, interrupted, or denied (a gate stopped it); running changes
                have no facet rows (:data:`RUNNING`): ``change_events.status`` finds them
``category``    each authorisation category: standard, change-request, emergency, unauthorised,
                denied, dry-run, record-only, no-change, pending
``review``      awaiting, accepted, follow-up, not-required (nothing to review), pending (running)
``ack``         for unauthorised changes: unacknowledged, or the latest disposition
``ref``         each change request number or template the run was authorised under
==============  ==========================================================================

Search words are the words of the user, controller, playbook (path parts and their sub-words) and
references, and the hosts, services, environments, outcome and categories (:func:`words`), indexed when
the run ends (a running change is at the top of the list and under ``outcome=running``).
``change_list_counts`` counts events per (facet, value, UTC day, listed) for the facets the list
shows counts of, so the counts of a month or a year are sums of a few hundred rows.

Cost per run (what an append pays): :func:`reindex` runs when a run starts, ends, is reviewed or
acknowledged, computes the row it should have, and writes only the difference (a review changes one
facet row and two counters), in one statement per table. Everything here is a projection: replaying
the ledger rebuilds it, and ``projection_check`` compares it like any query table.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import re

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import canonical_json, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError

#: facets a filter may name
FILTER_FACETS = ("host", "service", "environment", "outcome", "category", "review", "ack", "ref")
#: facets the list shows counts of (``change_list_counts``)
COUNTED_FACETS = ("outcome", "category", "review", "environment", "ack", "service")
#: categories of runs that changed no managed host and need no post-implementation review
NO_REVIEW = ("no-change", "record-only", "dry-run", "pending")
#: how a gate type maps to the register's authorisation categories (as ``change_register``)
CATEGORIES = {"normal": "change-request"}
#: dispositions of an acknowledged unauthorised change
DISPOSITIONS = ("retrospective-approval", "incident-raised", "reverted")
#: list keys of one microsecond: the tie-break between runs started at the same microsecond
KEYS_PER_MICROSECOND = 1000
#: the range of a list key: a 64-bit integer column (both dialects); times before 1677 or after 2262 (a mistyped
#: year, a far date asked for in a filter) take the first or last microsecond of keys instead of overflowing it
KEY_MIN, KEY_MAX = -(2 ** 63), 2 ** 63 - 1

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_WORD = re.compile(r"[^\w.\-]+", re.UNICODE)
_SUBWORD = re.compile(r"[^\w]+|_", re.UNICODE)
#: the columns of ``change_list`` a reindex compares (in this order)
LIST_COLUMNS = ("run_id", "started_at", "ended_at", "listed", "outcome", "review", "ack", "categories",
                "environments", "services", "hosts", "refs", "playbook", "user_name", "words")
_MULTI = {"host": "hosts", "service": "services", "environment": "environments", "category": "categories",
          "ref": "refs"}
_SINGLE = ("outcome", "review", "ack")


def categories(authorisation):
    if not authorisation:
        return ["pending"]
    return [CATEGORIES.get(part, part) for part in str(authorisation).split("+") if part]


def words(text):
    """Search words of ``text``, lowercased: path parts and names whole, and the words inside them.

    ``/srv/ansible/deploy_web.yml`` gives ``srv``, ``ansible``, ``deploy_web.yml``, ``deploy``, ``web``, ``yml``.
    """
    return list(_words_of(str(text or "")))


@functools.lru_cache(maxsize=8192)
def _words_of(text):
    # the same users, playbooks, hosts and services recur in run after run: split each once
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
    return tuple(found)


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


def micros(started_at):
    """Microseconds since 1970 of a recorded time (0 for one that does not parse)."""
    try:
        delta = parse_time(started_at) - _EPOCH
    except (TypeError, ValueError):
        return 0
    return (delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds


def day_key(day, end=False):
    """The first list key of a UTC day ``YYYY-MM-DD`` (``end``: the last key of that day)."""
    start = micros(day + "T00:00:00Z")
    if end:
        return _held(start + 86400 * 1000000 - 1) * KEYS_PER_MICROSECOND + KEYS_PER_MICROSECOND - 1
    return _held(start) * KEYS_PER_MICROSECOND


def _held(at):
    """Microseconds ``at`` held to the whole microseconds of keys the column stores: every time beyond them
    (a mistyped year, a far date in a filter) shares the first or last one, so filters still find it."""
    return max(KEY_MIN // KEYS_PER_MICROSECOND + 1, min(KEY_MAX // KEYS_PER_MICROSECOND - 1, at))


def clamp(key):
    """``key`` held to the range a list key column stores (:data:`KEY_MIN`..:data:`KEY_MAX`)."""
    return max(KEY_MIN, min(KEY_MAX, key))


def list_key(started_at, run_id):
    """The preferred list key of an event: its start, then a tie-break fixed by its run id."""
    spread = int(hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:8], 16) % KEYS_PER_MICROSECOND
    return _held(micros(started_at)) * KEYS_PER_MICROSECOND + spread


def _split(text):
    return [part for part in (text or "").split(" ") if part]


def _join(values):
    return " ".join(values)


def _indexed(db):
    # a replay in a migration older than the list's: its own migration replays again
    tables = getattr(db, "tables", None)
    return tables is None or "change_list" in tables


def row_of(event, hosts, services, acknowledgement):
    """The ``change_list`` row (a dict of :data:`LIST_COLUMNS`) of one ``change_events`` row."""
    category_list = categories(event["authorisation"])
    outcome = outcome_of(event["status"], category_list)
    environments = sorted(set(env for env in (event["environment"] or "").split(",") if env))
    refs = sorted(set(ref.strip().replace(" ", "_") for ref in (event["authorisation_ref"] or "").split(",")
                      if ref.strip()))
    found = []
    # a running change is indexed for search when it ends (its hosts and authorisation are known then): words
    # written at its start would be deleted and written again a moment later
    for text in (() if outcome == "running" else (event["user_name"], event["controller"], event["playbook"])) \
            + tuple(refs):
        for word in words(text):
            if word not in found:
                found.append(word)
    states = [] if outcome == "running" else [outcome] + category_list
    for value in list(hosts) + list(services) + environments + states:
        for word in words(value):
            if word not in found:
                found.append(word)
    return {
        "run_id": event["run_id"], "started_at": event["started_at"], "ended_at": event["ended_at"],
        "listed": 0 if category_list == ["no-change"] else 1, "outcome": outcome,
        "review": review_state(event["status"], event["dry_run"], category_list, event["review_status"]),
        "ack": (acknowledgement or "unacknowledged") if "unauthorised" in category_list else None,
        "categories": _join(category_list), "environments": _join(environments), "services": _join(services),
        "hosts": _join(hosts), "refs": _join(refs), "playbook": event["playbook"], "user_name": event["user_name"],
        "words": _join(found),
    }


#: the facet values of a running change: it has no facet rows or counts until it ends (a run would otherwise
#: write and then delete them), and lists find running changes through ``change_events.status``
RUNNING = (("outcome", "running"), ("review", "pending"), ("category", "pending"))


def facets(row):
    """``{(facet, value)}`` of a ``change_list`` row (none while it runs: see :data:`RUNNING`)."""
    if row["outcome"] == "running":
        return set()
    found = set((facet, row[facet]) for facet in _SINGLE if row[facet])
    for facet, column in _MULTI.items():
        found.update((facet, value) for value in _split(row[column]))
    return found


def _counted(row):
    return set((facet, value) for facet, value in facets(row) if facet in COUNTED_FACETS)


def _many(db, sql, rows):
    if not rows:
        return
    if hasattr(db, "executemany"):
        db.executemany(sql, rows)
    else:
        for row in rows:
            db.execute(sql, row)


def _insert_rows(db, head, rows, tail=""):
    """``head VALUES (?, ...) tail`` for each row, as one ``executemany`` (SQLite runs a multi-row VALUES
    statement several times slower than the same rows through executemany)."""
    if rows:
        _many(db, "%s VALUES (%s)%s" % (head, ", ".join("?" * len(rows[0])), tail), rows)


_EVENT_COLUMNS = ("run_id", "started_at", "ended_at", "status", "dry_run", "user_name", "controller", "playbook",
                  "environment", "authorisation", "authorisation_ref", "review_status")


def reindex(db, run_id, full=True):
    """Bring the list row of one change event (its facets, counts and words) up to date with its event.

    ``full``: read its hosts and their CIs' services again (when the run started or ended); a review or an
    acknowledgement keeps those of the row.
    """
    if not _indexed(db):
        return
    # the event and its list row in one query (a round trip each on PostgreSQL); a list row without its event
    # (never left by the projections) is read on its own, to be removed
    both = db.execute(_EVENT_AND_LIST, (run_id,)).fetchone()
    if both is None:
        found = None
        old_row = db.execute("SELECT list_key, %s FROM change_list WHERE run_id = ?" % ", ".join(LIST_COLUMNS),
                             (run_id,)).fetchone()
    else:
        found = both[:len(_EVENT_COLUMNS)]
        old_row = both[len(_EVENT_COLUMNS):] if both[len(_EVENT_COLUMNS)] is not None else None
    old_key, old = (old_row[0], dict(zip(LIST_COLUMNS, old_row[1:]))) if old_row else (None, None)
    if found is None:
        if old is not None:
            _remove(db, old_key, old)
        return
    event = dict(zip(_EVENT_COLUMNS, found))
    if event["status"] == "running":
        hosts, services = [], []  # the hosts are indexed once the run has ended
    elif full or old is None or old["outcome"] == "running":
        hosts, services = _hosts_and_services(db, run_id)
    else:
        hosts, services = _split(old["hosts"]), _split(old["services"])
    ack = None
    if "unauthorised" in categories(event["authorisation"]):
        latest = db.execute("SELECT disposition FROM acknowledgements WHERE run_id = ? ORDER BY seq DESC LIMIT 1",
                            (run_id,)).fetchone()
        ack = latest[0] if latest else None
    new = row_of(event, hosts, services, ack)
    if old == new:
        return
    if old is not None and old["started_at"] == new["started_at"]:
        _update(db, old_key, old, new)
        return
    if old is not None:
        _remove(db, old_key, old)
    _add(db, _free_key(db, new["started_at"], run_id), new)


_EVENT_AND_LIST = ("SELECT %s, change_list.list_key, %s FROM change_events LEFT JOIN change_list"
                   " ON change_list.run_id = change_events.run_id WHERE change_events.run_id = ?" % (
                       ", ".join("change_events.%s" % column for column in _EVENT_COLUMNS),
                       ", ".join("change_list.%s" % column for column in LIST_COLUMNS)))


def _hosts_and_services(db, run_id):
    """The run's hosts (in order) and the services named by the CIs of those names (their ``services`` attribute),
    in one query."""
    hosts, found, previous = [], set(), None
    for host, attributes in db.execute(
            "SELECT run_hosts.host, configuration_items.attributes FROM run_hosts LEFT JOIN configuration_items"
            " ON configuration_items.name = run_hosts.host WHERE run_hosts.run_id = ? ORDER BY run_hosts.host",
            (run_id,)).fetchall():
        if host != previous:  # a host is on one row per CI of its name (none: one row)
            hosts.append(host.replace(" ", "_"))
            previous = host
        services = (json.loads(attributes) if attributes else {}).get("services")
        if isinstance(services, list):
            found.update(str(service).replace(" ", "_") for service in services if service not in (None, ""))
    return hosts, sorted(found)


def _free_key(db, started_at, run_id):
    key = list_key(started_at, run_id)
    base = key - key % KEYS_PER_MICROSECOND
    for _attempt in range(KEYS_PER_MICROSECOND):
        if db.execute("SELECT 1 FROM change_list WHERE list_key = ?", (key,)).fetchone() is None:
            return key
        key = base + (key + 1 - base) % KEYS_PER_MICROSECOND
    raise ConflictError("more than %d change events started at %s" % (KEYS_PER_MICROSECOND, started_at))


def _add(db, key, row):
    db.execute("INSERT INTO change_list (list_key, %s) VALUES (?, %s)" % (
        ", ".join(LIST_COLUMNS), ", ".join("?" * len(LIST_COLUMNS))), (key,) + tuple(row[c] for c in LIST_COLUMNS))
    _insert_rows(db, "INSERT INTO change_list_facets (facet, value, list_key)",
                 [(facet, value, key) for facet, value in sorted(facets(row))])
    _count(db, row, _counted(row), 1)
    _words(db, "insert", key, row["words"])


def _remove(db, key, row):
    _many(db, "DELETE FROM change_list_facets WHERE facet = ? AND value = ? AND list_key = ?",
          [(facet, value, key) for facet, value in sorted(facets(row))])
    _count(db, row, _counted(row), -1)
    _words(db, "delete", key, row["words"])
    db.execute("DELETE FROM change_list WHERE list_key = ?", (key,))


def _update(db, key, old, new):
    before, after = facets(old), facets(new)
    _many(db, "DELETE FROM change_list_facets WHERE facet = ? AND value = ? AND list_key = ?",
          [(facet, value, key) for facet, value in sorted(before - after)])
    _insert_rows(db, "INSERT INTO change_list_facets (facet, value, list_key)",
                 [(facet, value, key) for facet, value in sorted(after - before)])
    if old["listed"] == new["listed"]:
        _count(db, old, _counted(old) - _counted(new), -1)
        _count(db, new, _counted(new) - _counted(old), 1)
    else:
        _count(db, old, _counted(old), -1)
        _count(db, new, _counted(new), 1)
    if old["words"] != new["words"]:
        _words(db, "delete", key, old["words"])
        _words(db, "insert", key, new["words"])
    changed = [column for column in LIST_COLUMNS if old[column] != new[column]]
    db.execute("UPDATE change_list SET %s WHERE list_key = ?" % ", ".join("%s = ?" % c for c in changed),
               tuple(new[c] for c in changed) + (key,))


def _count(db, row, pairs, delta):
    if not pairs:
        return
    day, listed = (row["started_at"] or "")[:10], row["listed"]
    if delta > 0:
        _insert_rows(db, "INSERT INTO change_list_counts (facet, value, day, listed, n)",
                     [(facet, value, day, listed, 1) for facet, value in sorted(pairs)],
                     " ON CONFLICT (facet, value, day, listed) DO UPDATE SET n = change_list_counts.n + 1")
        return
    # a count that falls to 0 stays (a value of that day seen before): the readers skip them
    _many(db, "UPDATE change_list_counts SET n = n - 1 WHERE facet = ? AND value = ? AND day = ? AND listed = ?",
          [(facet, value, day, listed) for facet, value in sorted(pairs)])


def cleared(db):
    """After a replay emptied ``change_list``: empty SQLite's free-text index of it too."""
    if _indexed(db) and getattr(db, "_placeholder", "?") == "?":
        db.execute("INSERT INTO change_list_words (change_list_words) VALUES ('delete-all')")


def loaded(db):
    """After ``change_list`` rows were loaded as they are (a replay starting from an archive's base state):
    index their words in SQLite's free-text index, which is not told of rows written behind its back."""
    if _indexed(db) and getattr(db, "_placeholder", "?") == "?":
        db.execute("INSERT INTO change_list_words (change_list_words) VALUES ('rebuild')")


def _words(db, action, key, text):
    """The free-text index of a row: SQLite's FTS5 table is told (external content); PostgreSQL's GIN index
    follows the ``words`` column by itself."""
    # the projectors' statement wrapper speaks ``?`` on SQLite (and is a plain sqlite3 cursor in a rebuild)
    if getattr(db, "_placeholder", "?") != "?" or not text:
        return
    if action == "insert":
        db.execute("INSERT INTO change_list_words (rowid, words) VALUES (?, ?)", (key, text))
    else:
        db.execute("INSERT INTO change_list_words (change_list_words, rowid, words) VALUES ('delete', ?, ?)",
                   (key, text))


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
    reindex(db, run_id, full=False)


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
                   " VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (name, data.get("display_name"), roles, 1 if data.get("disabled") else 0, entry.at, entry.at, entry.seq))
    _audit(db, entry)


def _audit(db, entry):
    data = entry.data
    db.execute("INSERT INTO review_audit (seq, at, kind, subject, remote, doc) VALUES (?, ?, ?, ?, ?, ?)",
               (entry.seq, entry.at, entry.kind, entry.subject, data.get("remote"), entry.data_json()))


for _kind in ("review.sign_in_failed", "review.token_issued", "review.token_revoked", "review.password_set"):
    PROJECTORS[_kind] = _audit
