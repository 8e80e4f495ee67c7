# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one interface every plugin talks to.

Writes happen only through :meth:`SystemOfRecord.append`: a batch of ledger
entries that is sealed into the hash chain and applied to the query tables
(projections) atomically. Reads are domain queries returning plain dicts.
Backends (SQLite, PostgreSQL, a REST ITSM tool) implement this class; modules,
the gate, the callback, the inventory and the register never see which one
they got. Open one with
``system_of_record.factory.open_system_of_record(config)``.
"""

from __future__ import annotations

import abc

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import verify_rows
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import intelligence


class SystemOfRecord(abc.ABC):
    """Abstract system of record."""

    #: short backend name, e.g. ``sqlite``
    backend_name = "abstract"

    def __init__(self, config):
        self.config = config

    # -- lifecycle -------------------------------------------------------
    def close(self):
        """Release connections; idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def describe(self):
        """Secret-free one-line location, for messages."""
        return self.backend_name

    #: whether :meth:`read_aside` runs its read beside the caller (a backend whose reads wait on a database server
    #: that works meanwhile); False: the read runs at once, in the caller's thread
    reads_aside = False

    def read_aside(self, read):
        """Start ``read(store)``, a read only, and return a function that waits for it and gives its result (or raises
        its error). Where the backend can (:attr:`reads_aside`: PostgreSQL), ``store`` is a store of its own (this
        one's configuration, its own connection) and the read runs in a thread beside what the caller does
        meanwhile: a metrics period's day sums, added up by the database, while the caller works out its failed
        changes. Here ``store`` is this store and the read runs now. What it reads is the record as it is at some
        moment between the call and the wait, as for any two reads of a record that others write."""
        found = read(self)
        return lambda: found

    # -- ledger ----------------------------------------------------------
    @abc.abstractmethod
    def append(self, entries):
        """Seal ``entries`` (list of ``ledger.Entry``) into the chain and apply them, atomically.

        Entries whose ``id`` is already in the ledger are skipped (replaying a
        spool twice is harmless). Returns the list of entries actually
        appended, with ``seq``/``prev_hash``/``hash`` set. Raises
        ``ConflictError`` (nothing written) when a projection refuses an
        entry, ``BackendUnavailable`` when storage cannot be written.
        """

    @abc.abstractmethod
    def iter_entries(self, after_seq=0, kinds=None, subject=None, limit=None):
        """Yield committed entries in chain order."""

    @abc.abstractmethod
    def head(self):
        """``(seq, hash)`` of the newest entry, ``(0, None)`` when empty."""

    def verify(self, expected_head=None, projections=False, payloads=True, anchors=None, since=None):
        """Walk the chain; returns ``ledger.VerifyReport``.

        ``projections``: also check that the query tables match a replay of the
        chain, for backends that keep query tables (the report says whether it was checked).
        ``payloads``: open every payload against its commitments (False: the chain of hashes only).
        ``anchors``: heads kept outside the database that the chain must still hold (see ``ledger.verify_rows``).
        ``since``: ``(seq, hash)`` of a verified-up-to marker (``verify_markers``): only the entries after it are
        walked, after checking that entry ``seq`` still has that hash; anchors at or before it are looked up.

        Entries moved to archives (``archives/``) are not in the ledger: the walk starts after the last
        archived entry, whose hash the newest ``ledger.archived`` entry records (it lies in the walked part of
        the chain, and the first entry after it names that hash). Anchors in archived entries are compared
        only at that boundary here; ``ledger_verify`` checks the archive files for the rest.
        """
        point = self.archive_point()
        base = (point["last_seq"], point["last_hash"]) if point else None
        anchors = list(anchors or ())
        archived = [anchor for anchor in anchors if base and anchor["seq"] <= base[0]]
        anchors = [anchor for anchor in anchors if not base or anchor["seq"] > base[0]]
        if since and (base is None or since[0] > base[0]):
            report = self._verify_since(tuple(since), expected_head, payloads, anchors)
        else:
            report = self._walk(expected_head=expected_head, payloads=payloads, anchors=anchors, base=base)
        if base and report.first_broken is None:
            report.archived_through = base[0]
            contradicted = [anchor for anchor in archived if anchor["seq"] == base[0] and anchor["hash"] != base[1]]
            if contradicted and report.history_mismatch is None:
                report.history_mismatch = dict(
                    {key: value for key, value in contradicted[0].items()
                     if key not in ("detail_rewritten", "detail_truncated")},
                    problem="rewritten", detail=contradicted[0]["detail_rewritten"])
            report.archived_anchors = len(archived)
        return report

    def archive_point(self):
        """The newest ``ledger.archived`` entry's data (with its ``seq``): where the live ledger starts; None
        while nothing was archived."""
        from ansible_collections.changeops.itsm.plugins.module_utils.ledger import KIND_ARCHIVED

        entry = self.latest_entry([KIND_ARCHIVED])
        return dict(entry.data, seq=entry.seq) if entry is not None else None

    def _walk(self, expected_head=None, payloads=True, anchors=None, base=None):
        """The walk itself: every entry after ``base`` (``(seq, hash)``; None: the whole ledger)."""
        return verify_rows(lambda: self.iter_entries(after_seq=base[0] if base else 0), expected_head=expected_head,
                           payloads=payloads, anchors=anchors, base=base, load_entries=self.entries_at)

    def _verify_since(self, base, expected_head, payloads, anchors):
        """An incremental verification from ``base``: see :meth:`verify`."""
        from ansible_collections.changeops.itsm.plugins.module_utils.ledger import VerifyReport

        anchors = list(anchors or ())
        seq, expected = base
        found = self.hashes_at([seq]).get(seq)
        if found != expected:
            report = VerifyReport(0, None, None)
            problem = "truncated" if found is None else "rewritten"
            report.history_mismatch = {
                "seq": seq, "hash": expected, "problem": problem, "witness": "verified-up-to marker",
                "detail": ("history %s: entry %s %s, but the verified-up-to marker this incremental verification"
                           " starts from recorded %s for it" % (
                               "truncated" if found is None else "rewritten", seq,
                               "is no longer in the ledger" if found is None else "has the hash %s" % found[:16],
                               expected[:16]))}
            return report
        before = [anchor for anchor in anchors if anchor["seq"] <= seq]
        report = self._walk(expected_head=expected_head, payloads=payloads, base=base,
                            anchors=[anchor for anchor in anchors if anchor["seq"] > seq])
        if report.first_broken is None:
            hashes = self.hashes_at(sorted(set(anchor["seq"] for anchor in before)))
            failures = []
            for anchor in before:
                if hashes.get(anchor["seq"]) != anchor["hash"]:
                    problem = "rewritten" if hashes.get(anchor["seq"]) is not None else "truncated"
                    failures.append(dict(anchor, problem=problem, detail=anchor["detail_" + problem]))
            if failures and report.history_mismatch is None:
                first = min(failures, key=lambda failure: failure["seq"])
                report.history_mismatch = {key: value for key, value in first.items()
                                           if key not in ("detail_rewritten", "detail_truncated")}
            if report.anchor_mismatch and expected_head and self.has_hash(expected_head):
                report.anchor_mismatch = None  # the expected head lies before the marker, and is still there
        return report

    def ledger_identity(self):
        """The hash of the ledger's first entry, which names it in checkpoints (None while it is empty); once it
        is archived, as every ``ledger.archived`` entry carries it forward."""
        first = self.get_entry("1")
        if first is not None:
            return first.hash
        point = self.archive_point()
        return point.get("ledger") if point else None

    def hashes_at(self, seqs):
        """``{seq: hash}`` of the entries at ``seqs`` that the ledger holds. Backends should override this."""
        found = {}
        for seq in seqs:
            entry = self.get_entry(str(seq))
            if entry is not None:
                found[seq] = entry.hash
        return found

    def has_hash(self, entry_hash):
        """Whether some stored entry has ``entry_hash``."""
        return any(entry.hash == entry_hash for entry in self.iter_entries())

    def entries_at(self, seqs):
        """The committed entries at ``seqs`` (those the ledger holds), in order. Backends should override this."""
        return [entry for entry in (self.get_entry(str(seq)) for seq in seqs) if entry is not None]

    def has_entry(self, entry_id):
        raise NotImplementedError

    # -- redaction and witnesses (the ledger's own bookkeeping) --------------
    def get_entry(self, ref):
        """One committed entry by sequence number (digits) or entry id, or None."""
        raise NotImplementedError

    def redact_entry(self, seq, fields, reason, redacted_by, actor):
        """Replace ``fields`` (texts, see ``commitments.resolve_field``) of entry ``seq`` by tombstones that keep
        their commitments, append the ``ledger.redacted`` entry saying who (``redacted_by``, ``actor``) and
        why, and bring the query tables in line, atomically. Returns the ``ledger.redacted`` entry, or None
        when every field was redacted already. See ``ledger_redaction.py``."""
        raise NotImplementedError

    def read_source(self):
        """Where this instance's reads went when the configuration names a read replica (``postgresql_read_dsn``
        and a reader, see ``config.py``): ``{"server": "replica" | "primary", "lag_seconds", "replica", "reason"}``,
        where ``replica`` describes the replica (no password) and ``reason`` says why a reader fell back to the
        primary. None when no replica is configured for it."""
        return None

    def route_reads(self, min_seq=0):
        """Decide again where this reader's next reads go, for one request of a long-lived reader (the review
        service): the replica if it answers, is a standby that lags at most ``postgresql_read_max_lag`` and has
        replayed ledger position ``min_seq`` (read-your-writes: no waiting), else the primary. Returns what
        :meth:`read_source` returns, with ``replayed_seq`` (the replica's newest entry, None when unknown).
        None when no replica is configured for this instance."""
        return None

    def backup(self, destination, tool=None):
        """Write a consistent copy of the whole database (ledger, query tables, cursors) to ``destination`` while
        writers go on, and return ``{"format", "head_seq", "head_hash"}``: the newest entry the copy holds.
        ``tool``: the dump program where the backend needs one (PostgreSQL's ``pg_dump``; default: on PATH).
        See ``ledger_backup.py`` and docs/operations.md."""
        raise NotImplementedError("%s cannot make a backup" % self.describe())

    def scrub_storage(self, compact=True):
        """After a redaction, make the backend's own files (free pages, write-ahead log) let go of the old
        values where it can; returns what was done (``compacted``, ``warnings``)."""
        return {"compacted": False, "warnings": []}

    def latest_entry(self, kinds):
        """The newest committed entry of one of ``kinds``, or None. Backends should override this with one query."""
        latest = None
        for entry in self.iter_entries(kinds=kinds):
            latest = entry
        return latest

    def recent_entries(self, kinds, limit=20, data_contains=None):
        """The newest committed entries of one of ``kinds``, newest first, at most ``limit``; with ``data_contains``
        only those whose stored data text holds it (a cheap pre-filter: callers check what they read).
        Backends should override this with one query."""
        found = [entry for entry in self.iter_entries(kinds=kinds)
                 if data_contains is None or data_contains in (entry.stored_data or "")]
        return list(reversed(found))[:limit]

    def witness_cursor(self, witness):
        """Sequence number of the last ``ledger.checkpoint`` entry fed to ``witness`` (None: never fed)."""
        raise NotImplementedError

    def advance_witness_cursor(self, witness, seq):
        """Record that ``witness`` was fed up to entry ``seq`` (never moves it back)."""
        raise NotImplementedError

    # -- change events (playbook runs) ------------------------------------
    @abc.abstractmethod
    def get_change_event(self, run_id):
        """One change event as a dict, or None."""

    @abc.abstractmethod
    def find_change_events(self, since=None, until=None, host=None, playbook=None, outcome=None,
                           authorisation=None, controller=None, status=None, limit=None, offset=0, kind=None):
        """Change events, newest first; ``kind``: ``playbook`` or ``adhoc`` (or a list of them)."""

    @abc.abstractmethod
    def get_task_results(self, run_id, host=None, changed_only=False):
        """Per-host task results of one run, in the order recorded."""

    def find_task_results(self, run_ids=None, statuses=None):
        """Task results of many runs at once (the bulk form of :meth:`get_task_results`).

        ``run_ids``: only these runs (None: every run); ``statuses``: only results
        with one of these statuses (for example ``["changed", "failed",
        "unreachable"]``). Yields result dicts (with ``seq``) in recorded order.
        Backends should override this with one query; this fallback asks per run.
        """
        if run_ids is None:
            run_ids = [event["run_id"] for event in self.find_change_events()]
        wanted = set(statuses) if statuses else None
        results = []
        for run_id in run_ids:
            results.extend(result for result in self.get_task_results(run_id)
                           if wanted is None or result.get("status") in wanted)
        results.sort(key=lambda result: result.get("seq") or 0)
        return iter(results)

    # -- configuration items ----------------------------------------------
    @abc.abstractmethod
    def get_ci(self, ci_id):
        """One CI (with ``relationships``) or None."""

    @abc.abstractmethod
    def find_cis(self, name=None, ci_class=None, status=None, environment=None, names=None, limit=None):
        """CIs matching all given filters, ordered by name."""

    @abc.abstractmethod
    def find_ci_by_identity(self, kind, value):
        """The ``ci_id`` holding identity ``kind=value`` or None."""

    def find_cis_by_identities(self, kind, values):
        """``{value: ci_id}`` for those ``values`` of identity ``kind`` that a CI holds: the bulk form of
        :meth:`find_ci_by_identity`, for callers that identify many hosts at once (the recorder at the
        end of a run). Values are compared as stored: normalise them first (``cmdb_identity``).
        Backends should override this with one query per batch of values; this fallback asks per value.
        """
        found = {}
        for value in values:
            ci_id = self.find_ci_by_identity(kind, value)
            if ci_id is not None:
                found[value] = ci_id
        return found

    def get_cis(self, ci_ids):
        """``{ci_id: ci}`` for those ``ci_ids`` that exist: the bulk form of :meth:`get_ci`, each CI with its
        ``identities`` but without ``relationships``. Backends should override this with one query per batch."""
        found = {}
        for ci_id in ci_ids:
            ci = self.get_ci(ci_id)
            if ci is not None:
                ci.pop("relationships", None)
                found[ci_id] = ci
        return found

    @abc.abstractmethod
    def get_relationships(self, ci_id=None, rel_type=None, direction="both"):
        """Relationships ``{source, type, target}`` touching ``ci_id``."""

    # -- change requests ----------------------------------------------------
    @abc.abstractmethod
    def get_change_request(self, number):
        """One change request or None."""

    @abc.abstractmethod
    def find_change_requests(self, state=None, change_type=None, ci_id=None, limit=None):
        """Change requests, newest first."""

    @abc.abstractmethod
    def next_number(self, counter):
        """Allocate the next value of a named counter (e.g. change request numbers)."""

    # -- checklist evidence and reviews ------------------------------------
    @abc.abstractmethod
    def find_evidence(self, run_id=None, ci_id=None, host=None, checklist=None, limit=None):
        """Evidence records, newest first."""

    @abc.abstractmethod
    def find_reviews(self, run_id=None):
        """Post-implementation reviews, newest first."""

    # -- the published change policy ----------------------------------------
    #: ledger entry kind of a published change policy version
    POLICY_KIND = "policy.published"

    def get_policy(self, version=None):
        """A published change policy version (``version``), or the one in force (the newest); None when none is.

        A dict: the ``policy.published`` entry's data (``version``, ``sha256``, ``text``, ``document``,
        ``publisher``, ``published_at``, ``summary``...) and its ledger ``seq``. Backends with query
        tables override this; this fallback reads the ledger.
        """
        found = None
        for entry in self.iter_entries(kinds=[self.POLICY_KIND]):
            if version is None or entry.data.get("version") == version:
                found = dict(entry.data, seq=entry.seq)
        return found

    def find_policies(self, sha256=None, limit=None):
        """Published change policy versions, newest first, without ``text`` and ``document``; only those whose
        file had ``sha256`` when given."""
        versions = [dict(entry.data, seq=entry.seq) for entry in self.iter_entries(kinds=[self.POLICY_KIND])
                    if sha256 is None or entry.data.get("sha256") == sha256]
        versions.reverse()
        for version in versions:
            version.pop("text", None)
            version.pop("document", None)
        return versions[:limit] if limit else versions

    # -- storage health (the recorder's writer asks once per run) -------------
    def check_storage(self):
        """A quick structural check of the storage; raises ``LedgerCorrupted`` saying what to do.

        Damage that the next write would not touch is found here too, before anything more is
        written on top of it. Checks the structure, not the content: the hash chain
        (``ledger_verify``) checks every entry's content. The default checks nothing.
        """

    # -- sync targets: the ledger as the outbox of external systems (ServiceNow) -----------------------
    # Per target: a cursor (the seq delivered up to), the last error, when to try again, a drain
    # lease, and the entries the target refused. Bookkeeping outside the ledger, like counters.
    def get_sync_state(self, target):
        """``{target, cursor_seq, delivered, updated_at, last_success_at, last_error, last_error_at, retry_after,
        lease_owner, lease_expires_ms}`` of one target, or None before its first delivery."""
        raise NotImplementedError

    def list_sync_states(self):
        """Every target's state, by name."""
        raise NotImplementedError

    def advance_sync_cursor(self, target, from_seq, to_seq, delivered=0):
        """Move the cursor from ``from_seq`` to ``to_seq`` (adding ``delivered`` to the count) and clear the last
        error; ``ConflictError`` (nothing changed) when the cursor is no longer at ``from_seq``."""
        raise NotImplementedError

    def note_sync_error(self, target, message, retry_after=None):
        """Remember why the last drain stopped (a secret-free message) and, for a 429, when to try again
        (``retry_after``, an ISO time)."""
        raise NotImplementedError

    def acquire_sync_lease(self, target, owner, seconds):
        """Take the target's drain lease for ``seconds``; False while another owner holds an unexpired one."""
        raise NotImplementedError

    def release_sync_lease(self, target, owner):
        """Give the lease back (only ``owner``'s)."""
        raise NotImplementedError

    def set_sync_item(self, target, seq, entry_id, kind, subject, status, error=None, details=None):
        """Record an entry the target refused (``failed``), queued again (``retry``), given up (``skipped``) or
        delivered after all (``delivered``)."""
        raise NotImplementedError

    def find_sync_items(self, target, statuses=None, limit=None):
        """Set-aside entries of a target, oldest first (``statuses``: only these)."""
        raise NotImplementedError

    # -- the review service (review_service/): lists at scale, its accounts and working state -----------
    # The SQL backends implement these in ``review_queries.py``; see there and ``change_index.py``.
    def list_change_events(self, filters, sort="started_at", descending=True, limit=50, offset=0, before=None,
                           after=None, counts=False):
        """One page of change events matching ``filters``: ``{"rows", "total", "total_exact", "older", "newer"}``
        (keyset cursors: pass ``before=older`` for the next older page, ``after=newer`` for the newer one)."""
        raise NotImplementedError

    def change_event_facet_counts(self, filters):
        """``{facet: {value: count}}`` of the change events matching ``filters``, or None when too many match."""
        raise NotImplementedError

    def explain_change_events(self, filters, sort="started_at", descending=True, limit=50, offset=0,
                              forbid_table_scans=True, before=None):
        """The query plan of :meth:`list_change_events`' page query, as text lines."""
        raise NotImplementedError

    def facet_values(self, facet, prefix="", limit=20):
        """Known values of a list facet (``host``, ``service``...) starting with ``prefix``."""
        raise NotImplementedError

    def change_event_position(self, run_id):
        """Where a change event's ledger entries sit in the hash chain (first and last entry, count, the hash
        of the entry before each)."""
        raise NotImplementedError

    def find_acknowledgements(self, run_id=None):
        """Acknowledgements (``run.acknowledged``) of unauthorised changes, newest first."""
        raise NotImplementedError

    def get_review_account(self, name):
        """A review service account (``review.account`` entries): name, display_name, roles, disabled."""
        raise NotImplementedError

    def find_review_accounts(self):
        raise NotImplementedError

    def count_review_audit(self, kind, subject=None, remote=None, since=None):
        """How many review service audit entries of ``kind`` (e.g. ``review.sign_in_failed``) match."""
        raise NotImplementedError

    def find_review_audit(self, limit=100):
        raise NotImplementedError

    def set_review_credential(self, name, password_hash, now):
        """Store an account's password hash (outside the ledger: no secret enters the chain)."""
        raise NotImplementedError

    def get_review_credential(self, name):
        raise NotImplementedError

    def create_review_session(self, id_hash, name, csrf, via, now, expires_at, sso_roles=None, sso_groups=None):
        raise NotImplementedError

    def get_review_session(self, id_hash):
        raise NotImplementedError

    def touch_review_session(self, id_hash, now):
        raise NotImplementedError

    def delete_review_sessions(self, id_hash=None, name=None):
        raise NotImplementedError

    def create_review_sign_in_attempt(self, state_hash, nonce, code_verifier, next_path, now, expires_at):
        """A single sign-on attempt between the redirect to the provider and its callback (working state)."""
        raise NotImplementedError

    def take_review_sign_in_attempt(self, state_hash, now):
        """The attempt of ``state_hash`` (``{nonce, code_verifier, next_path}``), removed: usable once."""
        raise NotImplementedError

    def create_review_token(self, token_hash, token_id, name, label, now, expires_at=None):
        raise NotImplementedError

    def get_review_token(self, token_hash):
        raise NotImplementedError

    def find_review_tokens(self, name=None):
        raise NotImplementedError

    def revoke_review_token(self, token_id):
        raise NotImplementedError

    def touch_review_token(self, token_id, now):
        raise NotImplementedError

    def note_review_write(self, name, seq, now):
        """Remember that account ``name`` acted in the review service and its entries reach ledger position
        ``seq`` (working state, never moved back): its next pages are read from the primary until a read replica
        has replayed ``seq`` (read-your-writes, see ``route_reads``)."""
        raise NotImplementedError

    def get_review_write_position(self, name):
        """The ledger position :meth:`note_review_write` keeps for ``name`` (0 when it never acted)."""
        raise NotImplementedError

    # -- change intelligence (issue 18; SQL backends: system_of_record/intelligence.py) ----------------
    # Plain-dict reads for the gate's collisions and blast radius, triage, metrics and standard change
    # candidates (module_utils/intelligence/), and for every other face (register, review service).

    def find_relationships(self, sources=None, targets=None, types=None, as_rows=False):
        """Relationships ``{source, type, target}`` from any of ``sources`` or to any of ``targets`` (the bulk
        form of :meth:`get_relationships`, one query per batch: a graph walk reads one level at a time); every
        relationship when neither is given. ``as_rows``: ``(source, type, target)`` tuples instead of dicts."""
        found = []
        if sources is None and targets is None:
            found = [rel for rel in self.get_relationships() if not types or rel["type"] in types]
        for ci_ids, direction in ((sources, "outbound"), (targets, "inbound")):
            for ci_id in ci_ids or ():
                for rel in self.get_relationships(ci_id, direction=direction):
                    if (not types or rel["type"] in types) and rel not in found:
                        found.append(rel)
        if as_rows:
            return [(rel["source"], rel["type"], rel["target"]) for rel in found]
        return found

    def find_ci_summaries(self, names=None, ci_ids=None, facets=None):
        """CIs by name or id with only their facets as ``attributes`` (``services``, ``owner``, ``support_group``,
        ``criticality``; only those of ``facets``, facet names such as ``service``, when given): a read that
        parses no attribute document, for plays of thousands of hosts."""
        found = {}
        for ci in self.find_cis(names=list(names)) if names else ():
            found[ci["ci_id"]] = ci
        found.update(self.get_cis(list(ci_ids)) if ci_ids else {})
        keep = ("services", "owner", "support_group", "criticality")
        if facets is not None:
            keep = tuple(attribute for facet, attribute in (("service", "services"), ("owner", "owner"),
                                                            ("support_group", "support_group"),
                                                            ("criticality", "criticality")) if facet in facets)
        return sorted(({"ci_id": ci["ci_id"], "name": ci.get("name"), "class": ci.get("class"), "status": ci.get("status"),
                        "environment": ci.get("environment"),
                        "attributes": {key: value for key, value in (ci.get("attributes") or {}).items() if key in keep}}
                       for ci in found.values()), key=lambda ci: (ci["name"] or "", ci["ci_id"]))

    def find_ci_columns(self, names, facet="service"):
        """The CIs named one of ``names``, column by column: ``{"ci_id": [...], "name": [...], "class": [...],
        "environment": [...], "facet_ci_id": [...], "facet_value": [...]}``, the i-th value of each of the first four
        columns the i-th CI's, the facet columns one row per value of ``facet`` (facet name, such as ``service``) of
        those CIs. No order is promised. What the gate aggregates of the 10,000 host CIs of a play, without a record
        per CI (the SQL backends read both tables column by column; no status: the aggregates do not read it)."""
        found = {"ci_id": [], "name": [], "class": [], "environment": [], "facet_ci_id": [], "facet_value": []}
        for ci in self.find_ci_summaries(names=names, facets=(facet,)) if names else ():
            for key in ("ci_id", "name", "class", "environment"):
                found[key].append(ci[key])
            # the values the SQL backends' facet rows hold (services as the CI records name them, other facets as
            # text): a service written as a mapping or a nested list is no name there either
            for name, item in intelligence.facets_of(ci["attributes"]):
                if name == facet:
                    found["facet_ci_id"].append(ci["ci_id"])
                    found["facet_value"].append(item)
        return found

    def find_ci_changes(self, ci_ids=None, since=None, until=None, limit=None):
        """Changes of CIs: ``{ci_id, run_id, host, started_at}`` (a ``ci.changed_by_run`` link with its run's
        start), newest first, of ``ci_ids`` when given, started within ``[since, until]``."""
        raise NotImplementedError

    def find_ci_facets(self, ci_ids=None, facet=None, values=None):
        """``{ci_id, facet, value}``: each CI's ``service`` names, ``owner``, ``support_group``, ``criticality``."""
        raise NotImplementedError

    def find_change_facts(self, since=None, until=None, run_ids=None):
        """One narrow dict per change event started in ``[since, until)`` (metrics): run_id, started_at,
        ended_at, status, dry_run, authorisation, authorisation_ref, environment, playbook, user, commit_at."""
        raise NotImplementedError

    def find_change_links(self, run_ids=None, link=None, target=None):
        """Incident and remediation links of change events (``run.linked`` entries' data, with ``seq``)."""
        raise NotImplementedError

    def find_run_hosts(self, run_ids):
        """``{run_id: [host, ...]}``: the hosts each of ``run_ids`` ran on."""
        return {run_id: [row["host"] for row in (self.get_change_event(run_id) or {}).get("hosts") or ()]
                for run_id in run_ids}

    def find_change_requests_in_window(self, start, end, states=None):
        """Change requests whose planned window overlaps ``[start, end)``, in one of ``states`` when given."""
        raise NotImplementedError

    # -- daily metric rollups (metric_rollups.py; docs/metrics.md) --------
    #: False: ``intelligence/metrics.py`` computes every figure from the change facts (the raw computation)
    has_metric_rollups = False

    def find_metric_days(self, first_day, end_day):
        """Per UTC day in ``[first_day, end_day)`` and label key, over the changes that did not end failed:
        ``(day, label_key, changes, deployments, lead_seconds JSON list)`` tuples."""
        raise NotImplementedError

    def find_metric_day_sums(self, day_ranges):
        """Per ``(first_day, end_day)`` of ``day_ranges`` and label key, the days added up: ``(range index, label_key,
        changes, deployments, lead times as comma-joined numbers or None)`` tuples."""
        raise NotImplementedError

    def find_metric_changes(self, since, until, failed_only=False, emergency_only=False, run_ids=None,
                            run_ids_only=False):
        """One dict per change started in ``[since, until)``: its microsecond start and end, flags, lead time, day
        and label key (only the run ids with ``run_ids_only``)."""
        raise NotImplementedError

    def find_metric_failure_rows(self, since, until, failed_only=False, run_ids=None):
        """``(run_id, start_us, end_us, status_failed, emergency, label_key, status, environment, ci_id,
        next_deployment_end_us, next_deployment_run_id, next_deployment_start_us)`` tuples of the changes started in
        ``[since, until)`` (None: unbounded), only those that ended failed when asked, or of ``run_ids``: what the
        failure rules read of a change, a row per CI it changed with its ``metric_ci_next`` columns (the next
        deployment: its end, run id and start)."""
        raise NotImplementedError

    def find_metric_changes_of_cis(self, ci_ids, since, until, deployments_only=False):
        """``(ci_id, change dict)`` for the changes of ``ci_ids`` (``ci.changed_by_run``) started in ``[since, until)``."""
        raise NotImplementedError

    def find_deployment_ends(self, ci_ids, since, until):
        """``(ci_id, run_id, end_us)`` of the deployments of ``ci_ids`` started in ``[since, until)``."""
        raise NotImplementedError

    def find_emergency_marked(self, since, until, window_us):
        """Run ids of changes in ``[since, until)`` an emergency change of one of their CIs followed within
        ``window_us`` microseconds of their end."""
        raise NotImplementedError

    def find_metric_ci_labels(self, ci_ids):
        """``{ci_id: (services, team)}``: what each CI gives the labels of a change of it."""
        raise NotImplementedError

    def find_linked_runs(self, since, until):
        """Run ids of the changes started in ``[since, until)`` with an incident or remediation link."""
        raise NotImplementedError

    # -- moving the ledger: the outbox and witness bookkeeping (ledger_migrate) ---------------------------
    def list_witness_cursors(self):
        """``{witness: seq}`` of every witness fed so far (``advance_witness_cursor``'s cursors)."""
        raise NotImplementedError
