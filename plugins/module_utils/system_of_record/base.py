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

    def verify(self, expected_head=None, projections=False, payloads=True, anchors=None):
        """Walk the whole chain; returns ``ledger.VerifyReport``.

        ``projections``: also check that the query tables match a replay of the
        chain, for backends that keep query tables (the report says whether it was checked).
        ``payloads``: open every payload against its commitments (False: the chain of hashes only).
        ``anchors``: heads kept outside the database that the chain must still hold (see ``ledger.verify_rows``).
        """
        return verify_rows(self.iter_entries, expected_head=expected_head, payloads=payloads, anchors=anchors)

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
                           authorisation=None, controller=None, status=None, limit=None, offset=0):
        """Change events, newest first."""

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
