# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The payload fields no redaction may touch, per entry kind: ``ledger_redact`` refuses them, and verification
refuses a tombstone in one of a format-3 entry (``ledger.py``), which no redaction of this collection wrote.

Its own module because both sides read it: ``ledger_redaction`` imports ``ledger``, which cannot import it back.
"""

from __future__ import annotations

import types

#: Fields the query tables are keyed on or that decide a change event's authorisation: a
#: tombstone there would change what the record says happened, not just hide a value. Paths per
#: entry-kind prefix (``"run."`` covers every run entry); ``("task", "action")`` is a member, and the empty
#: path ``()`` every field.
#: This is the table as entry format 3 was introduced (2026-12-07), and verification holds format-3
#: entries to it (:data:`VERIFIED_TABLES`): never change it, add later protections to
#: :data:`PROTECTED_SINCE_FORMAT_3` (a format-3 entry redacted before them must still verify).
PROTECTED_AT_FORMAT_3 = types.MappingProxyType({prefix: frozenset(paths) for prefix, paths in {
    "run.": {("run_id",), ("play_id",), ("decision_id",)},
    "run.result": {("host",), ("status",), ("changed",), ("started_at",), ("task", "check_mode"),
                   ("task", "action"), ("task", "uuid"), ("item", "index")},
    # and the ServiceNow CHG a decision was taken under (the outbox lands the run on it) and the reading of it the
    # gate's local fallback judges again
    "run.gate": {("allowed",), ("type",), ("hosts",), ("checked_at",), ("reference",),
                 ("policy", "state"), ("policy", "version"), ("policy", "sha256"), ("identities",),
                 ("servicenow",), ("change_request", "servicenow_record")},
    "run.play": {("hosts",)},
    # a playbook run or an ad-hoc command (change_events.kind); an ad-hoc command's arguments may be redacted
    "run.started": {("kind",)},
    "run.finished": {("outcome",)},
    # what the recorder lost decides the change event's authorisation (incomplete) and, for a lost end, how it ended
    "run.incomplete": {("lost_entries",), ("lost_kinds",), ("end", "kind"), ("end", "outcome"), ("run", "kind")},
    "run.reviewed": {("outcome",), ("reviewer_identity",)},
    "ci.": {("ci_id",), ("source",), ("target",), ("type",), ("base_version",), ("identities",),
            ("attributes", "name"), ("attributes", "class")},
    "change_request.": {("base_version",), ("record", "number"), ("record", "state"), ("record", "type")},
    "evidence.": {("ci_id",), ("checklist",)},
    # the version chain the policies table replays (a tombstone in it stops the replay), who published it
    # under which rules, and the document the gate enforces: redacting part of it would change the policy
    # a decision was made under. Its text, comment, summary and source may be redacted.
    "policy.published": {("version",), ("sha256",), ("previous_version",), ("previous_sha256",),
                         ("published_at",), ("publisher",), ("authorised_by",), ("document",)},
    # what ServiceNow calls a CI (the outbox retires and relates it by this sys_id; the inventory shows it)
    "ci.external_ref": {("system",), ("instance",), ("sys_id",), ("class",)},
    # the ledger's own bookkeeping, whole (ledger_redact refuses these kinds before it reads a field)
    "ledger.": {()},
}.items()})
#: protections added since entry format 3: ``ledger_redact`` refuses them, verification of format 3 does not
PROTECTED_SINCE_FORMAT_3 = {}
#: what ``ledger_redact`` refuses
PROTECTED_FIELDS = {prefix: set(PROTECTED_AT_FORMAT_3.get(prefix, ())) | set(PROTECTED_SINCE_FORMAT_3.get(prefix, ()))
                    for prefix in set(PROTECTED_AT_FORMAT_3) | set(PROTECTED_SINCE_FORMAT_3)}
#: the table verification holds the entries of each entry format to (formats 1 and 2: none, they predate it)
VERIFIED_TABLES = types.MappingProxyType({3: PROTECTED_AT_FORMAT_3})


def protected_path(kind, path, table=None):
    """The protected path (of ``table``, default :data:`PROTECTED_FIELDS`) that ``path`` is or lies in, or None."""
    for prefix, paths in (PROTECTED_FIELDS if table is None else table).items():
        if kind == prefix or (prefix.endswith(".") and kind.startswith(prefix)):
            for protected in paths:
                if path[:len(protected)] == protected:
                    return protected
    return None
