# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Schema migrations shared by the SQL backends (SQLite and PostgreSQL).

Each migration is ``(version, description, [statements])``. Statements use
``{int}`` for a 64-bit integer column type so one text serves both dialects.
Migrations only ever append: never edit one that has shipped, add a new one.

``ledger`` is the source of truth; every other table is a projection that
``projections.py`` maintains from ledger entries in the same transaction and
that could be rebuilt by replaying the ledger.
"""

from __future__ import annotations

import re

#: A migration step that is not SQL: empty every query table and project every ledger entry into it
#: again, in chain order, inside the migration's transaction and write lock. Needed whenever what
#: ``projections.py`` derives from an entry changes, since the tables are only a cache of the ledger.
#: An upgrade through several such migrations replays once, after the last (:func:`upgrade_steps`).
REPLAY_LEDGER = "replay the ledger into the query tables"

MIGRATIONS = [
    (1, "ledger, change events, task results, CMDB, change requests, evidence, reviews", [
        """CREATE TABLE ledger (
            seq {int} PRIMARY KEY,
            entry_id TEXT NOT NULL UNIQUE,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT,
            actor TEXT,
            data TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        "CREATE INDEX ledger_subject ON ledger (subject, seq)",
        "CREATE INDEX ledger_kind ON ledger (kind, seq)",
        """CREATE TABLE change_events (
            run_id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            status TEXT NOT NULL,
            dry_run {int} NOT NULL DEFAULT 0,
            user_name TEXT,
            controller TEXT,
            playbook TEXT,
            environment TEXT,
            authorisation TEXT,
            authorisation_ref TEXT,
            review_status TEXT,
            host_count {int} NOT NULL DEFAULT 0,
            changed_host_count {int} NOT NULL DEFAULT 0,
            failed_host_count {int} NOT NULL DEFAULT 0,
            doc TEXT NOT NULL,
            last_seq {int} NOT NULL
        )""",
        "CREATE INDEX change_events_started ON change_events (started_at)",
        "CREATE INDEX change_events_status ON change_events (status, controller)",
        """CREATE TABLE run_hosts (
            run_id TEXT NOT NULL,
            host TEXT NOT NULL,
            ok {int} NOT NULL DEFAULT 0,
            changed {int} NOT NULL DEFAULT 0,
            failed {int} NOT NULL DEFAULT 0,
            skipped {int} NOT NULL DEFAULT 0,
            unreachable {int} NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, host)
        )""",
        "CREATE INDEX run_hosts_host ON run_hosts (host)",
        """CREATE TABLE task_results (
            seq {int} PRIMARY KEY,
            run_id TEXT NOT NULL,
            play_id TEXT,
            task_uuid TEXT,
            task_name TEXT,
            action TEXT,
            host TEXT NOT NULL,
            item_label TEXT,
            status TEXT NOT NULL,
            changed {int} NOT NULL DEFAULT 0,
            started_at TEXT,
            duration_ms {int},
            doc TEXT NOT NULL
        )""",
        "CREATE INDEX task_results_run ON task_results (run_id, host)",
        """CREATE TABLE configuration_items (
            ci_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            ci_class TEXT NOT NULL,
            status TEXT NOT NULL,
            environment TEXT,
            attributes TEXT NOT NULL,
            version {int} NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            last_change_run_id TEXT,
            last_seq {int} NOT NULL
        )""",
        "CREATE INDEX configuration_items_name ON configuration_items (name)",
        "CREATE INDEX configuration_items_class ON configuration_items (ci_class, status)",
        """CREATE TABLE ci_identities (
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            ci_id TEXT NOT NULL,
            PRIMARY KEY (kind, value)
        )""",
        "CREATE INDEX ci_identities_ci ON ci_identities (ci_id)",
        """CREATE TABLE ci_relationships (
            source TEXT NOT NULL,
            rel_type TEXT NOT NULL,
            target TEXT NOT NULL,
            created_seq {int} NOT NULL,
            PRIMARY KEY (source, rel_type, target)
        )""",
        "CREATE INDEX ci_relationships_target ON ci_relationships (target, rel_type)",
        """CREATE TABLE change_requests (
            number TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            change_type TEXT NOT NULL,
            doc TEXT NOT NULL,
            version {int} NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            last_seq {int} NOT NULL
        )""",
        "CREATE INDEX change_requests_state ON change_requests (state)",
        """CREATE TABLE evidence (
            seq {int} PRIMARY KEY,
            run_id TEXT,
            host TEXT,
            ci_id TEXT,
            checklist TEXT NOT NULL,
            status TEXT,
            recorded_at TEXT NOT NULL,
            doc TEXT NOT NULL
        )""",
        "CREATE INDEX evidence_run ON evidence (run_id)",
        "CREATE INDEX evidence_ci ON evidence (ci_id)",
        """CREATE TABLE reviews (
            seq {int} PRIMARY KEY,
            run_id TEXT NOT NULL,
            reviewer TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reviewed_at TEXT NOT NULL,
            doc TEXT NOT NULL
        )""",
        "CREATE INDEX reviews_run ON reviews (run_id)",
        """CREATE TABLE counters (
            name TEXT PRIMARY KEY,
            value {int} NOT NULL
        )""",
    ]),
    # change_event_info's authorisation filter (newest first) and the register's read of the task
    # results that changed or failed something, a small share of all results, scanned whole before.
    (2, "indexes for the authorisation and task status filters", [
        "CREATE INDEX change_events_authorisation ON change_events (authorisation, started_at)",
        "CREATE INDEX task_results_status ON task_results (status, seq)",
    ]),
    # The projection rules changed (authorisation per host and decision time, check-mode results,
    # each host's own CI for environments...): tables an older version filled would no longer
    # match a replay of their own ledger, and ledger_verify would call them altered.
    (3, "query tables replayed from the ledger with the 0.1.0 projection rules", [REPLAY_LEDGER]),
    # One definition of a change (change_scope.py): a run that changed no host is denied (a gate stopped
    # it), record-only (only the system of record changed) or no-change, and changed_host_count counts
    # the hosts a change of a host was made to, not Ansible's "changed" (check-mode predictions and the
    # collection's own record writes were in it). Rows of older versions would read as altered.
    (4, "query tables replayed: denied and record-only runs, changed hosts by the one definition of a change",
     [REPLAY_LEDGER]),
    # The change policy published into the ledger (policy.published entries): one row per version, the newest
    # in force; the gate finds a runner's file among them by its sha256.
    (5, "published change policy versions", [
        """CREATE TABLE policies (
            version {int} PRIMARY KEY,
            sha256 TEXT NOT NULL,
            published_at TEXT NOT NULL,
            publisher TEXT NOT NULL,
            doc TEXT NOT NULL,
            last_seq {int} NOT NULL
        )""",
        "CREATE INDEX policies_sha256 ON policies (sha256)",
    ]),
    # Entry format 2 (ledger.py, commitments.py): the hash covers salted per-field commitments, so a
    # leaked field can be redacted without breaking the chain. Rows written before keep format 1 and
    # their hashes; salt/payload_root/redactions stay NULL until a field of theirs is redacted.
    # witness_cursors: how far each witness of the chain's checkpoints was fed (not a projection).
    (6, "salted per-field payload commitments, redactions, witness cursors", [
        "ALTER TABLE ledger ADD COLUMN entry_format {int} NOT NULL DEFAULT 1",
        "ALTER TABLE ledger ADD COLUMN salt TEXT",
        "ALTER TABLE ledger ADD COLUMN payload_root TEXT",
        "ALTER TABLE ledger ADD COLUMN redactions TEXT",
        """CREATE TABLE witness_cursors (
            witness TEXT PRIMARY KEY,
            seq {int} NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    ]),
    # Change events have a kind: a playbook run or an ad-hoc command (change_event_info filters on it).
    (7, "change event kind (playbook or adhoc)", [
        "ALTER TABLE change_events ADD COLUMN kind TEXT",
        "CREATE INDEX change_events_kind ON change_events (kind, started_at)",
    ]),
    # The kind column filled for existing events; a play with serial lists the hosts of every batch (its
    # run.play entries were one per batch all along, the projection kept the last); run.incomplete markers
    # (entries the recorder lost) are a new entry kind, which a collection without this migration refuses.
    (8, "query tables replayed: change event kinds, serial plays list every batch, run.incomplete markers",
     [REPLAY_LEDGER]),
    # The ledger is the outbox of external systems (ServiceNow): each target keeps the seq it has delivered
    # up to, its last error and when it may be tried again, and a lease so one process drains at a time;
    # entries a target refused (an IRE MULTI_MATCH...) are set aside here until someone retries or skips
    # them. Bookkeeping of deliveries, like counters, not records: none of it is a ledger entry.
    (9, "outbox cursors of sync targets and the entries they set aside", [
        """CREATE TABLE sync_targets (
            target TEXT PRIMARY KEY,
            cursor_seq {int} NOT NULL DEFAULT 0,
            delivered {int} NOT NULL DEFAULT 0,
            updated_at TEXT,
            last_success_at TEXT,
            last_error TEXT,
            last_error_at TEXT,
            retry_after TEXT,
            lease_owner TEXT,
            lease_expires_ms {int}
        )""",
        """CREATE TABLE sync_items (
            target TEXT NOT NULL,
            seq {int} NOT NULL,
            entry_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT,
            status TEXT NOT NULL,
            error TEXT,
            details TEXT,
            attempts {int} NOT NULL DEFAULT 1,
            recorded_at TEXT NOT NULL,
            PRIMARY KEY (target, seq)
        )""",
        "CREATE INDEX sync_items_status ON sync_items (target, status, seq)",
    ]),
    # Archives (archives/, docs/operations.md): entries older than a retention period move to compressed,
    # self-verifying files. ledger_archives is the projection of the ledger.archived entries (one row per
    # archive, kept when the entry itself is archived later); archive_base holds the query tables' state
    # at the last archived entry (one canonical JSON object per row), which replays start from instead of
    # an empty database: its digest is in the chain (the ledger.archived entry), like the archive's hash.
    (10, "ledger archives and the query tables' state at the last archived entry", [
        """CREATE TABLE ledger_archives (
            archive_seq {int} PRIMARY KEY,
            file TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            first_seq {int} NOT NULL,
            last_seq {int} NOT NULL,
            last_hash TEXT NOT NULL,
            entries {int} NOT NULL,
            cutoff TEXT NOT NULL,
            archived_at TEXT NOT NULL,
            doc TEXT NOT NULL
        )""",
        "CREATE INDEX ledger_archives_range ON ledger_archives (last_seq)",
        """CREATE TABLE archive_base (
            tbl TEXT NOT NULL,
            row_json TEXT NOT NULL
        )""",
        "CREATE INDEX archive_base_tbl ON archive_base (tbl)",
    ]),
]

LATEST_VERSION = MIGRATIONS[-1][0]


def statements_for(dialect_int_type, migration):
    """The SQL of ``migration`` (without a :data:`REPLAY_LEDGER` step, which is not SQL)."""
    return [statement.format(int=dialect_int_type) for statement in migration[2] if statement != REPLAY_LEDGER]


def tables_until(version):
    """The tables the migrations up to ``version`` create: a replay at that point fills only those."""
    tables = set()
    for migration in MIGRATIONS:
        if migration[0] > version:
            break
        for statement in migration[2]:
            match = re.match(r"\s*CREATE TABLE (\w+)", statement)
            if match:
                tables.add(match.group(1))
    return tables


def replays_ledger(migration):
    """True when ``migration`` rebuilds the query tables from the ledger after its SQL."""
    return REPLAY_LEDGER in migration[2]


def upgrade_steps(current):
    """The migrations after version ``current``, in order, each as ``(migration, replay_now)``.

    A replay projects the ledger with *this* version's rules (projections.py), whichever migration asks
    for it, so one upgrade replays once: after the last pending migration that has a
    :data:`REPLAY_LEDGER` step. Replaying earlier as well would cost a full pass over the ledger for
    nothing, and would write columns that a later migration of the same upgrade only adds (a schema-3
    ledger replayed at migration 4 has no ``change_events.kind`` before migration 7). The rule this
    sets for migrations: their SQL must not read what the query tables hold.
    """
    pending = [migration for migration in MIGRATIONS if migration[0] > current]
    replaying = [migration[0] for migration in pending if replays_ledger(migration)]
    last_replay = replaying[-1] if replaying else None
    return [(migration, migration[0] == last_replay) for migration in pending]
