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
#: A migration step that is not SQL: fill the change intelligence tables (``intelligence.py``) from the ledger
#: and the tables an older version kept, without replaying the whole ledger (a large ledger upgrades in minutes,
#: not hours). It fills them exactly as a replay would (``projection_check`` compares them).
BACKFILL_INTELLIGENCE = "backfill the change intelligence tables"
#: the description of the change intelligence migration: its projectors find their version by it (the
#: integrator may renumber migrations when branches land together)
INTELLIGENCE_MIGRATION = "change intelligence: CI change log, CI facets, change facts, change links, request windows"
#: A migration step that is not SQL: fill the metric rollups (``metric_rollups.py``) from the change intelligence
#: tables, exactly as a replay would (``projection_check`` compares them).
BACKFILL_METRIC_ROLLUPS = "backfill the daily metric rollups"
#: the description of the metric rollups migration (its projectors find their version by it)
METRIC_ROLLUPS_MIGRATION = "DevOps metrics: one row per change and daily rollups per label key"
#: A migration step that is not SQL: fill ``metric_ci_next`` (``metric_rollups.py``) from ``ci_changes`` and
#: ``metric_changes``, exactly as a replay would (``projection_check`` compares them).
BACKFILL_METRIC_NEXT = "backfill each change's next emergency change and next deployment per CI"
#: the description of that migration (its projectors find their version by it)
METRIC_NEXT_MIGRATION = "DevOps metrics: per change and CI, the next emergency change and the next deployment"
#: A migration step that is not SQL: each ``metric_days`` row's lead times packed (``metric_rollups.pack_leads``)
#: from its JSON list, exactly as the projector writes them (``projection_check`` compares them).
BACKFILL_METRIC_LEADS_PACKED = "backfill the daily rollups' lead times packed as binary64"
#: the migration that made ``metric_ci_next`` again for its incremental upkeep (its projector's version)
METRIC_NEXT_INCREMENTAL_MIGRATION = ("DevOps metrics: per change and CI, the next emergency change and the next"
                                     " deployment, kept up incrementally")

#: the migration that stored PostgreSQL's word vector of each change (``change_list.search``)
PG_SEARCH_VECTOR_MIGRATION = "review service: PostgreSQL's word vector of each change stored, the free-text index on it"
#: the most a search's GIN index holds in its pending list (kB; PostgreSQL's default is 4,096): each search scans the
#: whole list, about 8,600 changes at the default when a recorder had just filled it
GIN_PENDING_LIST_KB = 256
#: migration 18's filling of the failed changes' status and environment from change_facts
FILL_FAILED_FACTS = ("UPDATE metric_changes SET failed_status = (SELECT f.status FROM change_facts f WHERE f.run_id ="
                     " metric_changes.run_id), failed_environment = (SELECT f.environment FROM change_facts f WHERE"
                     " f.run_id = metric_changes.run_id) WHERE status_failed = 1")
METRIC_FAILURE_ROWS_MIGRATION = ("metrics: the failure rules' and the times to restore's reads of the change tables"
                                 " answered from their indexes alone")
#: the migration that indexed each CI's deployments by start, with the columns the times to restore read of them,
#: and the changes an emergency change of one of their CIs followed within a day
METRIC_DEPLOYMENT_STARTS_MIGRATION = ("metrics: each CI's deployments by start, for the times to restore; the changes an"
                                      " emergency change followed within a day, by start")
#: migration 21: PostgreSQL vacuums the change tables metrics and triage read by index alone after a few thousand inserts
METRIC_TABLES_VACUUM_MIGRATION = ("metrics and triage: PostgreSQL vacuums the change tables they read by index alone after"
                                  " every few thousand rows inserted")
#: rows inserted into one of those tables after which autovacuum visits it (``autovacuum_vacuum_insert_threshold``)
VACUUM_AFTER_INSERTS = 5000
#: the tables whose index-only reads of a recent period need its pages all-visible: the failure rules' rows
#: (metric_changes, metric_ci_next) and the changes of CIs by time (ci_changes: triage, the times to restore)
INSERT_VACUUMED_TABLES = ("metric_changes", "metric_ci_next", "ci_changes")
#: the longest gap (microseconds) from a change's end to its CI's next emergency change that
#: ``metric_ci_next_near_emergencies`` holds: the default failure window (``metrics.DEFAULT_FAILURE_WINDOW``). A window
#: up to it reads that index; a longer one the period's every row. Another value needs a migration (the index's
#: condition is this literal, which a query must repeat for the database to use it).
NEAR_EMERGENCY_US = 24 * 3600 * 1000000


class PerDialect(object):
    """A migration step written once per dialect (a full-text index is SQLite's FTS5 or PostgreSQL's GIN); None:
    nothing to do in that dialect."""

    def __init__(self, sqlite, postgresql):
        self.sqlite = sqlite
        self.postgresql = postgresql

    def pick(self, dialect_int_type):
        return self.postgresql if dialect_int_type == "BIGINT" else self.sqlite


class FilledColumns(object):
    """A migration step that adds ``columns`` (``(name, definition)`` pairs) to a query table and fills them from the
    query tables by ``fill``: a statement, or a Python step of :data:`PYTHON_STEPS` (run after the migration's SQL).

    Declared once here, it is both the migration's SQL and what an archive's state made before the migration gets
    when loaded for a replay (``projection_check.load_rows``: a row without the columns is filled the same way)."""

    def __init__(self, table, columns, fill):
        self.table = table
        self.columns = tuple(columns)
        self.fill = fill

    @property
    def column_names(self):
        return tuple(name for name, _definition in self.columns)

    def steps(self):
        return ["ALTER TABLE %s ADD COLUMN %s %s" % (self.table, name, definition)
                for name, definition in self.columns] + [self.fill]


_REVIEW_SERVICE = ("review service: change list keyed newest first, its facets, counts per day and free-text index;"
                   " acknowledgements, accounts, audit, credentials, sessions, API tokens, sign-in attempts")

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
    # The review service (review_service/) pages, filters, counts and searches a million change events per
    # request without reading the ones it skips (change_index.py): change_list holds one narrow row per event
    # keyed by its list key (start time in microseconds x 1000 + a tie-break), so newest first, a time range
    # and a keyset cursor are all key ranges; change_list_facets one row per (facet, value) an event has;
    # change_list_counts the events per facet value and UTC day; change_list_words the free-text index of its
    # words (SQLite FTS5 with prefix indexes, rowid = list key; PostgreSQL a GIN index over the words as a
    # tsvector). Unauthorised changes get acknowledgements; the service's accounts and audit of sign-in
    # failures and tokens are ledger entries too. Password hashes, sessions, API token hashes and single sign-on
    # attempts are the service's working state, kept outside the ledger like the counters (a secret never
    # enters the hash chain).
    (11, _REVIEW_SERVICE, [
        """CREATE TABLE change_list (
            list_key {int} PRIMARY KEY,
            run_id TEXT NOT NULL UNIQUE,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            listed {int} NOT NULL,
            outcome TEXT NOT NULL,
            review TEXT NOT NULL,
            ack TEXT,
            categories TEXT NOT NULL,
            environments TEXT NOT NULL,
            services TEXT NOT NULL,
            hosts TEXT NOT NULL,
            refs TEXT NOT NULL,
            playbook TEXT,
            user_name TEXT,
            words TEXT NOT NULL
        )""",
        # the other orders the list can be sorted in, each with the key as tie-break
        "CREATE INDEX change_list_playbook ON change_list (playbook, list_key)",
        "CREATE INDEX change_list_user ON change_list (user_name, list_key)",
        "CREATE INDEX change_list_ended ON change_list (ended_at, list_key)",
        """CREATE TABLE change_list_facets (
            facet TEXT NOT NULL,
            value TEXT{bytes} NOT NULL,
            list_key {int} NOT NULL,
            PRIMARY KEY (facet, value, list_key)
        ){without_rowid}""",
        """CREATE TABLE change_list_counts (
            facet TEXT NOT NULL,
            value TEXT NOT NULL,
            day TEXT NOT NULL,
            listed {int} NOT NULL,
            n {int} NOT NULL,
            PRIMARY KEY (facet, value, day, listed)
        ){without_rowid}""",
        PerDialect(
            sqlite="CREATE VIRTUAL TABLE change_list_words USING fts5(words, content='change_list',"
                   " content_rowid='list_key', tokenize=\"unicode61 remove_diacritics 0 tokenchars '._-'\","
                   " prefix='2 3 4 5 6')",
            postgresql="CREATE INDEX change_list_words ON change_list USING gin"
                       " (array_to_tsvector(string_to_array(words, ' ')))"),
        """CREATE TABLE acknowledgements (
            seq {int} PRIMARY KEY,
            run_id TEXT NOT NULL,
            disposition TEXT NOT NULL,
            acknowledged_at TEXT NOT NULL,
            doc TEXT NOT NULL
        )""",
        "CREATE INDEX acknowledgements_run ON acknowledgements (run_id, seq)",
        """CREATE TABLE review_accounts (
            name TEXT PRIMARY KEY,
            display_name TEXT,
            roles TEXT NOT NULL,
            disabled {int} NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            last_seq {int} NOT NULL
        )""",
        """CREATE TABLE review_audit (
            seq {int} PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT,
            remote TEXT,
            doc TEXT NOT NULL
        )""",
        "CREATE INDEX review_audit_subject ON review_audit (kind, subject, at)",
        "CREATE INDEX review_audit_remote ON review_audit (kind, remote, at)",
        """CREATE TABLE review_credentials (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE review_sessions (
            id_hash TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            csrf TEXT NOT NULL,
            via TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            sso_roles TEXT,
            sso_groups TEXT
        )""",
        "CREATE INDEX review_sessions_name ON review_sessions (name)",
        """CREATE TABLE review_api_tokens (
            token_hash TEXT PRIMARY KEY,
            token_id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            label TEXT,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            last_used_at TEXT,
            revoked {int} NOT NULL DEFAULT 0
        )""",
        # single sign-on (OpenID Connect) attempts between the redirect to the provider and its callback:
        # the state, the nonce and the PKCE verifier, each usable once
        """CREATE TABLE review_sign_in_attempts (
            state_hash TEXT PRIMARY KEY,
            nonce TEXT NOT NULL,
            code_verifier TEXT NOT NULL,
            next_path TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        REPLAY_LEDGER,
    ]),
    # Change intelligence (issue 18): what changed
    # each CI and when (triage, metrics), the CI attributes that group changes (services, team, criticality), a
    # narrow row per change event for metrics (with the git commit time of the playbook tree, for lead time),
    # incident and remediation links, and the planned window of change requests as columns (collisions read only
    # the requests whose window overlaps).
    (12, INTELLIGENCE_MIGRATION, [
        """CREATE TABLE ci_changes (
            ci_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            host TEXT,
            started_at TEXT NOT NULL,
            seq {int} NOT NULL,
            PRIMARY KEY (ci_id, run_id)
        )""",
        "CREATE INDEX ci_changes_ci_time ON ci_changes (ci_id, started_at)",
        "CREATE INDEX ci_changes_time ON ci_changes (started_at)",
        "CREATE INDEX ci_changes_run ON ci_changes (run_id)",
        """CREATE TABLE ci_facets (
            ci_id TEXT NOT NULL,
            facet TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (ci_id, facet, value)
        )""",
        "CREATE INDEX ci_facets_value ON ci_facets (facet, value)",
        """CREATE TABLE change_facts (
            run_id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            status TEXT NOT NULL,
            dry_run {int} NOT NULL DEFAULT 0,
            authorisation TEXT,
            authorisation_ref TEXT,
            environment TEXT,
            playbook TEXT,
            user_name TEXT,
            commit_at TEXT
        )""",
        "CREATE INDEX change_facts_started ON change_facts (started_at)",
        """CREATE TABLE change_links (
            seq {int} PRIMARY KEY,
            run_id TEXT NOT NULL,
            link TEXT NOT NULL,
            target TEXT NOT NULL,
            linked_at TEXT NOT NULL,
            doc TEXT NOT NULL
        )""",
        "CREATE INDEX change_links_run ON change_links (run_id)",
        "CREATE INDEX change_links_target ON change_links (link, target)",
        """CREATE TABLE change_request_windows (
            number TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            planned_start TEXT,
            planned_end TEXT
        )""",
        "CREATE INDEX change_request_windows_end ON change_request_windows (planned_end, planned_start)",
        BACKFILL_INTELLIGENCE,
    ]),
    # Daily metric rollups (issue 18): 30- and 90-day DevOps metrics read a few rows per day instead of a row per
    # change; one narrow row per change (microsecond times, flags, label key) for a period's edge days and the
    # failure rules. Why the figures stay exact: docs/metrics.md, "Daily rollups".
    (13, METRIC_ROLLUPS_MIGRATION, [
        """CREATE TABLE metric_changes (
            run_id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            day TEXT NOT NULL,
            start_us {int} NOT NULL,
            end_us {int} NOT NULL,
            status_failed {int} NOT NULL,
            deployment {int} NOT NULL,
            emergency {int} NOT NULL,
            lead_seconds DOUBLE PRECISION,
            label_key TEXT
        )""",
        "CREATE INDEX metric_changes_started ON metric_changes (started_at)",
        "CREATE INDEX metric_changes_failed ON metric_changes (status_failed, started_at)",
        "CREATE INDEX metric_changes_emergency ON metric_changes (emergency, started_at)",
        """CREATE TABLE metric_days (
            day TEXT NOT NULL,
            label_key TEXT NOT NULL,
            changes {int} NOT NULL,
            deployments {int} NOT NULL,
            lead_seconds TEXT NOT NULL,
            PRIMARY KEY (day, label_key)
        )""",
        """CREATE TABLE metric_ci_labels (
            ci_id TEXT PRIMARY KEY,
            labels TEXT NOT NULL
        )""",
        BACKFILL_METRIC_ROLLUPS,
    ]),
    # Per change and CI it changed, the next emergency change and the next deployment of that CI (issue 18): the
    # emergency rule and the times to restore of 30- and 90-day metrics read one indexed row per change instead
    # of every change of the CIs concerned (docs/metrics.md, "Daily rollups").
    (14, METRIC_NEXT_MIGRATION, [
        """CREATE TABLE metric_ci_next (
            ci_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            started_at TEXT NOT NULL,
            end_us {int} NOT NULL,
            next_emergency_us {int},
            next_deployment_run_id TEXT,
            next_deployment_start_us {int},
            next_deployment_end_us {int},
            PRIMARY KEY (ci_id, run_id)
        )""",
        "CREATE INDEX metric_ci_next_started ON metric_ci_next (started_at, next_emergency_us, end_us, run_id)",
        "CREATE INDEX metric_ci_next_run ON metric_ci_next (run_id)",
        # (its backfill moved to migration 16, which makes the table again with the columns an incremental
        # upkeep reads: a ledger upgraded through both fills it once, in the shape the projector writes)
    ]),
    # The review service with a read replica (issue 21, docs/review-service.md "Read replica"): the ledger position
    # of each person's newest action there, so the pages they read next come from the primary until the replica
    # has replayed it (read-your-writes). Working state like the sessions: outside the ledger, never replicated
    # into it, and nothing to replay.
    (15, "the ledger position of each review service account's newest action (read-your-writes on a replica)", [
        """CREATE TABLE review_write_positions (
            name TEXT PRIMARY KEY,
            seq {int} NOT NULL,
            written_at TEXT NOT NULL
        )""",
    ]),
    # metric_ci_next kept up incrementally (issue 18, docs/metrics.md "Daily rollups"): each row also holds its
    # change's start and kind, and four indexes let a new CI link read only the CI's rows its change displaces
    # and its own next ones, whatever the CI's history (before: every change of the CI, read again per link).
    # Made again rather than altered: the new columns are NOT NULL, and the backfill fills them all.
    (16, METRIC_NEXT_INCREMENTAL_MIGRATION, [
        "DROP TABLE metric_ci_next",
        """CREATE TABLE metric_ci_next (
            ci_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            started_at TEXT NOT NULL,
            end_us {int} NOT NULL,
            next_emergency_us {int},
            next_deployment_run_id TEXT,
            next_deployment_start_us {int},
            next_deployment_end_us {int},
            start_us {int} NOT NULL,
            emergency {int} NOT NULL,
            deployment {int} NOT NULL,
            PRIMARY KEY (ci_id, run_id)
        )""",
        "CREATE INDEX metric_ci_next_started ON metric_ci_next (started_at, next_emergency_us, end_us, run_id)",
        "CREATE INDEX metric_ci_next_run ON metric_ci_next (run_id)",
        # a change's own next emergency change and next deployment (partial: only those changes are indexed)
        "CREATE INDEX metric_ci_next_emergencies ON metric_ci_next (ci_id, start_us) WHERE emergency = 1",
        "CREATE INDEX metric_ci_next_deployments ON metric_ci_next (ci_id, end_us) WHERE deployment = 1",
        # the rows a new emergency change or deployment displaces: those whose next is later or missing
        "CREATE INDEX metric_ci_next_by_emergency ON metric_ci_next (ci_id, next_emergency_us)",
        "CREATE INDEX metric_ci_next_by_deployment ON metric_ci_next (ci_id, next_deployment_end_us)",
        BACKFILL_METRIC_NEXT,
    ]),
    # PostgreSQL's free-text search read each change's word vector by computing it from ``words`` for every row it
    # walked or rechecked (``array_to_tsvector(string_to_array(words, ' '))``, the expression migration 11 indexed):
    # a search whose words are common walks the list newest first and tests thousands of rows a page. The vector is
    # now a stored generated column (computed once, when the row is written; PostgreSQL fills it for the existing
    # rows as it adds the column, rewriting the table) with the GIN index on it. Its pending list (rows indexed
    # lazily, scanned by every search until merged) is kept small. SQLite's FTS5 index is unchanged.
    (17, PG_SEARCH_VECTOR_MIGRATION, [
        PerDialect(sqlite=None, postgresql="ALTER TABLE change_list ADD COLUMN search tsvector GENERATED ALWAYS AS"
                                           " (array_to_tsvector(string_to_array(words, ' '))) STORED"),
        PerDialect(sqlite=None, postgresql="CREATE INDEX change_list_search ON change_list USING gin (search)"
                                           " WITH (gin_pending_list_limit = %d)" % GIN_PENDING_LIST_KB),
        PerDialect(sqlite=None, postgresql="DROP INDEX change_list_words"),
    ]),
    # A metrics query's failure rules read every change of its period that ended failed, its status and environment,
    # and its next deployment per CI (find_metric_failure_rows): about 5,000 changes in 90 days at 1,000,000 change events; the
    # times to restore that metric_ci_next does not answer read the deployments of their CIs (find_deployment_ends:
    # ci_changes by CI and time, then each change's row). Each row looked a table row up from its index entry; with
    # the columns read in the indexes they come from the index ranges alone (docs/metrics.md, "Speed"). A widened
    # index keeps its name and leading columns, so it serves every query it served; triage's reads of a CI's
    # changes in a window (ci_changes by CI and time) gain the same way.
    (18, METRIC_FAILURE_ROWS_MIGRATION, [
        # a failed change's status and environment, which the rules read of change_facts row by row before
        FilledColumns("metric_changes", (("failed_status", "TEXT"), ("failed_environment", "TEXT")), FILL_FAILED_FACTS),
        "DROP INDEX metric_changes_failed",
        "CREATE INDEX metric_changes_failed ON metric_changes"
        " (status_failed, started_at, run_id, start_us, end_us, emergency, label_key, failed_status, failed_environment)",
        "DROP INDEX metric_ci_next_run",
        "CREATE INDEX metric_ci_next_run ON metric_ci_next"
        " (run_id, ci_id, next_deployment_end_us, next_deployment_run_id, next_deployment_start_us)",
        "DROP INDEX ci_changes_ci_time",
        "CREATE INDEX ci_changes_ci_time ON ci_changes (ci_id, started_at, run_id)",
        "CREATE INDEX metric_changes_run_deployment ON metric_changes (run_id, deployment, started_at, end_us)",
        # a day's lead times as hex of big-endian IEEE 754 binary64 values too: the database joins a bucket's days'
        # texts and Python decodes them at C speed, where parsing the JSON numbers was a 90-day period's largest cost
        FilledColumns("metric_days", (("lead_packed", "TEXT NOT NULL DEFAULT ''"),), BACKFILL_METRIC_LEADS_PACKED),
    ]),
    # The times to restore that metric_ci_next's next deployment does not answer (it is itself failed, or started
    # outside the range asked; a few hundred failed changes in 90 days at 1,000,000 change events) read the
    # deployments their CIs had in the range (find_deployment_ends). metric_ci_next has a row per change and CI with
    # the change's start, end and kind; this index gives a CI's deployments in a range of starts from its entries
    # alone, where ci_changes joined to metric_changes looked each change up (PostgreSQL: 130 ms to 11 for 515 CIs).
    # The emergency rule's read (find_emergency_marked) went through every metric_ci_next row of the period (123,000
    # in 90 days at 1,000,000 change events) for the few an emergency change followed within the window (1,849 within
    # a day); those within the default window have their own index (SQLite 15.6 ms to 1.5; PostgreSQL, which had
    # scanned the table, 80-99 to 3.4).
    (19, METRIC_DEPLOYMENT_STARTS_MIGRATION, [
        "CREATE INDEX metric_ci_next_deployment_starts ON metric_ci_next (ci_id, started_at, end_us, run_id)"
        " WHERE deployment = 1",
        "CREATE INDEX metric_ci_next_near_emergencies ON metric_ci_next (started_at, next_emergency_us, end_us, run_id)"
        " WHERE next_emergency_us - end_us <= %d" % NEAR_EMERGENCY_US,
    ]),
    # Entry format 3 (commitments.py, docs/ledger.md "What is hashed"): nothing changes in the tables (entry_format is
    # an integer column already), but a collection from before it would report every entry written since as edited
    # (a format it does not know); with the schema's version it refuses the ledger as a newer collection's instead.
    (20, "entry format 3: a play's hosts committed as one field, the payload root over the fields' paths", []),
    # Metrics and triage read a recent period of these tables from their indexes alone (index-only scans), which
    # holds only for pages the visibility map marks all-visible; the others are looked up in the table row by row.
    # PostgreSQL's default autovacuum visits an insert-only table after a fifth of its size has been inserted (PG 13
    # and later; 200,000 rows at 1,000,000), so the newest period, the one a metrics query reads, was the part left
    # unmarked. With the visibility map of these three tables cleared, the 90-day query at 1,000,000 change events
    # took 170 ms median against 144-148 after a vacuum (docs/postgresql.md, "Vacuum of the metric tables"). Each is
    # now visited after every VACUUM_AFTER_INSERTS rows inserted whatever its size: a vacuum that finds the older
    # pages marked skips them, so each visit reads about that many rows' pages. PostgreSQL 12 has no insert-driven
    # autovacuum: nothing to set there. SQLite answers from a covering index with no visibility map: nothing either.
    (21, METRIC_TABLES_VACUUM_MIGRATION, [
        PerDialect(sqlite=None, postgresql="DO $$ BEGIN IF current_setting('server_version_num')::int >= 130000 THEN "
                   + " ".join("ALTER TABLE %s SET (autovacuum_vacuum_insert_threshold = %d,"
                              " autovacuum_vacuum_insert_scale_factor = 0);" % (table, VACUUM_AFTER_INSERTS)
                              for table in INSERT_VACUUMED_TABLES) + " END IF; END $$"),
    ]),
]

LATEST_VERSION = MIGRATIONS[-1][0]


#: migration steps that are not SQL
PYTHON_STEPS = (REPLAY_LEDGER, BACKFILL_INTELLIGENCE, BACKFILL_METRIC_ROLLUPS, BACKFILL_METRIC_NEXT,
                BACKFILL_METRIC_LEADS_PACKED)

#: what the other placeholders of a statement stand for in each dialect (chosen by its integer type):
#: ``{without_rowid}`` stores a table in its primary-key index where the dialect can (SQLite)
#: and ``{bytes}`` makes a text column compare byte by byte whatever the database's locale (prefix ranges)
_DIALECT_WORDS = {"INTEGER": {"without_rowid": " WITHOUT ROWID", "bytes": ""},
                  "BIGINT": {"without_rowid": "", "bytes": ' COLLATE "C"'}}


def steps_of(migration):
    """The steps of ``migration`` in order, each :class:`FilledColumns` step as its own steps."""
    steps = []
    for step in migration[2]:
        steps.extend(step.steps() if isinstance(step, FilledColumns) else [step])
    return steps


def filled_columns():
    """Every :class:`FilledColumns` step of the migrations, in order."""
    return [step for migration in MIGRATIONS for step in migration[2] if isinstance(step, FilledColumns)]


def statements_for(dialect_int_type, migration):
    """The SQL of ``migration`` (without its :data:`PYTHON_STEPS`, which are not SQL)."""
    words = _DIALECT_WORDS.get(dialect_int_type, _DIALECT_WORDS["INTEGER"])
    picked = [statement.pick(dialect_int_type) if isinstance(statement, PerDialect) else statement
              for statement in steps_of(migration) if statement not in PYTHON_STEPS]
    return [statement.format(int=dialect_int_type, **words) for statement in picked if statement is not None]


def tables_until(version):
    """The tables the migrations up to ``version`` create: a replay at that point fills only those."""
    tables = set()
    for migration in MIGRATIONS:
        if migration[0] > version:
            break
        for statement in steps_of(migration):
            if not isinstance(statement, str):
                continue  # (a dialect's own index or virtual table: not a query table of its own)
            match = re.match(r"\s*CREATE TABLE (\w+)", statement)
            if match:
                tables.add(match.group(1))
    return tables


def replays_ledger(migration):
    """True when ``migration`` rebuilds the query tables from the ledger after its SQL."""
    return REPLAY_LEDGER in steps_of(migration)


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


def backfills_intelligence(migration):
    """True when ``migration`` fills the change intelligence tables after its SQL."""
    return BACKFILL_INTELLIGENCE in steps_of(migration)


def backfills_metric_rollups(migration):
    """True when ``migration`` fills the metric rollups after its SQL."""
    return BACKFILL_METRIC_ROLLUPS in steps_of(migration)


def backfills_metric_next(migration):
    """True when ``migration`` fills ``metric_ci_next`` after its SQL."""
    return BACKFILL_METRIC_NEXT in steps_of(migration)


def backfills_metric_leads_packed(migration):
    """True when ``migration`` packs ``metric_days``' lead times after its SQL."""
    return BACKFILL_METRIC_LEADS_PACKED in steps_of(migration)


def version_of(description):
    """The version of the migration with this description (see :data:`INTELLIGENCE_MIGRATION`)."""
    for migration in MIGRATIONS:
        if migration[1] == description:
            return migration[0]
    raise KeyError(description)
