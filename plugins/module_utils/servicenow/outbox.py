# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ledger as ServiceNow's outbox.

ServiceNow cannot hold the hash chain (no transaction spans requests), so the
ledger stays the record and ServiceNow is fed from it: the entries after the
target's cursor, in ledger order, by :meth:`Outbox.drain`. What each entry kind
becomes:

``ci.created`` / ``ci.updated`` / ``ci.relationship_added``
    the CI as it is now, through IRE, many CIs (and the relations among them) per
    request; its sys_id and class come back into the ledger as ``ci.external_ref``
``ci.deleted``
    the ServiceNow CI is retired (install_status 7), never deleted
``ci.relationship_removed``
    the ``cmdb_rel_ci`` record is deleted
``run.gate`` (allowed under a ServiceNow CHG)
    a work note on the CHG when the run starts; the actual start (``work_start``)
``run.finished`` / ``run.interrupted``
    a work note with the outcome and the hosts changed or failed, the change event
    as a JSON attachment, the actual start and end, and, when configured, the CHG
    moved to Review or Closed with a close code from the outcome (the state read
    back after every step). An unauthorised run gets a CHG flagged unauthorised in
    Review, or an incident, as the change policy in force says
    (``servicenow.unauthorised_runs``; the ServiceNow setting of that name is its
    deprecated predecessor): never nothing
``run.incomplete`` (the recorder lost entries of the run)
    a work note on the run's CHGs saying how many entries of which kinds were lost and why; when the
    marker carried the run's lost end, the run ends on its CHGs as above, except that its CHG is not
    closed (an incomplete record is for a person to review, as the change register says)
``run.reviewed``
    a work note on the run's CHGs
``evidence.recorded``
    the evidence document attached to the run's CHG and to the CI

Every push carries the ledger's sequence number and head hash (IRE's
``source_feed``, the notes, the attachments), so ServiceNow holds a dated copy of
the chain's head: one more witness.

Delivery is idempotent, so nothing is pushed twice even when a drain dies between
a write and the cursor update: IRE identifies before it writes; notes carry a
marker looked for before and read back after the write; attachments are looked up
by name; records are found by ``correlation_id`` before one is created. The cursor
moves with a compare-and-set and a lease lets one process drain at a time.

An outage, a 401/403 or a 429 stops the drain where it is (the cursor stays, the
error and the time to retry are kept); an entry ServiceNow refuses for its own
content (an IRE ``MULTI_MATCH``, a transition its state model refuses) is set aside
with the reason and the drain goes on; ``servicenow_sync`` retries or skips those.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
import uuid

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.policy_store import (
    configured_policy_path,
    policy_in_force,
)
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time, to_plain
from ansible_collections.changeops.itsm.plugins.module_utils.config import read_ini_section
from ansible_collections.changeops.itsm.plugins.module_utils.errors import (
    BackendUnavailable,
    ChangeopsError,
    ConfigurationError,
    ConflictError,
)
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import RUN_END_KINDS, Entry
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.attachments import AttachmentAPI
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.change import (
    STATE_NAMES,
    ChangeAPI,
    to_sn_time,
)
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.client import Client
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import (
    ServiceNowError,
    ServiceNowForbidden,
)
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.ire import IRE, Mapper, RELATION_TYPES, host_label
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import ansible_config_file
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.table import Query, TableAPI, value_of

SYSTEM = "servicenow"
CI_KINDS = ("ci.created", "ci.updated", "ci.deleted", "ci.relationship_added", "ci.relationship_removed")
RUN_KINDS = ("run.gate", "run.finished", "run.interrupted", "run.incomplete", "run.reviewed", "evidence.recorded")
PUSHED_KINDS = CI_KINDS + RUN_KINDS
#: sys_ids per read-back query (keeps the GET URL short)
READ_BACK_CHUNK = 50
#: most hosts a work note lists by name
NOTE_HOSTS = 20
#: a drain's lease outlives its deadline by this much (a killed drain frees the target after it)
LEASE_MARGIN = 60.0
RETIRED = {"install_status": "7", "operational_status": "6"}


class ItemRefused(ChangeopsError):
    """ServiceNow refused this entry for its content: set it aside, go on with the next."""


class DrainReport(object):
    def __init__(self, target):
        self.target = target
        self.delivered = 0
        self.set_aside = []
        self.retried = []
        self.warnings = []
        self.stopped = None
        self.stop_kind = None
        self.busy = False
        self.waiting_until = None
        self.requests = 0
        self.writes = 0
        self.rate_limit_waited = 0.0
        self.cursor = None
        self.elapsed = 0.0
        self.pushed_cis = 0

    def to_dict(self):
        return {"target": self.target, "delivered": self.delivered, "set_aside": list(self.set_aside),
                "retried": list(self.retried), "warnings": list(self.warnings), "stopped": self.stopped,
                "stop_kind": self.stop_kind, "busy": self.busy, "waiting_until": self.waiting_until,
                "requests": self.requests, "writes": self.writes, "rate_limit_waited": round(self.rate_limit_waited, 3),
                "cursor": self.cursor, "elapsed": round(self.elapsed, 3), "pushed_cis": self.pushed_cis}


class SorCooldown(object):
    """A 429's "come back at" shared through the system of record, so every process of a run honours it."""

    def __init__(self, sor, target):
        self.sor = sor
        self.target = target

    def get(self):
        state = self.sor.get_sync_state(self.target)
        if not state or not state.get("retry_after"):
            return None
        try:
            return parse_time(state["retry_after"]).timestamp()
        except (TypeError, ValueError):
            return None

    def set(self, epoch, message):
        self.sor.note_sync_error(self.target, "rate limited: %s" % message, retry_after=iso(epoch))


def default_policy(sor):
    """The change policy in force for the outbox: the published version, else the controller's configured file
    (``CHANGEOPS_GATE_POLICY``, ``gate_policy`` in ``[changeops]`` of ansible.cfg), else the built-in default."""
    config_file = ansible_config_file()
    return policy_in_force(sor, configured_policy_path(os.environ, read_ini_section(config_file), config_file))


def iso(epoch):
    return format_time(datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)) if epoch else None


def owner_id():
    return "%s:%d:%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])


class Outbox(object):
    def __init__(self, sor, settings, actor=None, client_factory=Client, wall_clock=time.time, policy=None):
        self.sor = sor
        self.settings = settings
        self.target = settings.target_key()
        self.actor = actor or "changeops-outbox"
        self.client_factory = client_factory
        self.wall_clock = wall_clock
        #: ``policy() -> PolicyInForce``: the change policy whose ``servicenow.unauthorised_runs`` applies
        #: (default: the published policy in force, else the controller's configured file, else the built-in one)
        self.policy = policy or (lambda: default_policy(sor))

    # -- what is waiting ----------------------------------------------------------------------------
    def state(self):
        state = self.sor.get_sync_state(self.target) or {"target": self.target, "cursor_seq": 0, "delivered": 0}
        return dict(state)

    def pending(self, limit=None, after=None):
        cursor = self.state()["cursor_seq"] if after is None else after
        return self.sor.iter_entries(after_seq=cursor, kinds=list(PUSHED_KINDS), limit=limit)

    def status(self):
        """What ``servicenow_sync_info`` shows: cursor, head, pending count, lag, last error, set-aside entries."""
        state = self.state()
        head_seq, _head_hash = self.sor.head()
        pending = 0
        oldest = None
        for entry in self.pending():
            pending += 1
            if oldest is None:
                oldest = entry
        lag = None
        if oldest is not None:
            lag = max(0.0, self.wall_clock() - parse_time(oldest.at).timestamp())
        failed = self.sor.find_sync_items(self.target, statuses=["failed", "retry"])
        return {
            "target": self.target,
            "instance": self.settings.base_url,
            "cursor_seq": state.get("cursor_seq") or 0,
            "head_seq": head_seq,
            "pending": pending,
            "oldest_pending": None if oldest is None else {"seq": oldest.seq, "kind": oldest.kind,
                                                           "subject": oldest.subject, "at": oldest.at},
            "lag_seconds": None if lag is None else round(lag, 1),
            "delivered": state.get("delivered") or 0,
            "last_success_at": state.get("last_success_at"),
            "last_error": state.get("last_error"),
            "last_error_at": state.get("last_error_at"),
            "retry_after": state.get("retry_after"),
            "draining": bool(state.get("lease_owner")) and (state.get("lease_expires_ms") or 0) > time.time() * 1000,
            "set_aside": [dict((key, item[key]) for key in ("seq", "kind", "subject", "status", "error", "attempts",
                                                            "recorded_at")) for item in failed],
        }

    # -- the drain -------------------------------------------------------------------------------------
    def ready(self, partial_batches=True):
        """True when a drain would deliver something now: entries wait, no 429 asked to wait, and (without
        ``partial_batches``) they are not only the start of an IRE batch still being written. Reads only: the
        recorder's background delivery asks this before it takes the lease (a write) for nothing."""
        state = self.state()
        retry_after = state.get("retry_after")
        if retry_after and parse_time(retry_after).timestamp() > self.wall_clock():
            return False
        batch_size = int(self.settings.get("batch_size") or 100)
        window = list(self.sor.iter_entries(after_seq=state.get("cursor_seq") or 0, kinds=list(PUSHED_KINDS),
                                            limit=batch_size * 4))
        if not window:
            return False
        return partial_batches or not _growing_batch(_next_group(window, batch_size), window, batch_size)

    def drain(self, timeout, force=False, retry_failed=False, skip_failed=False, max_entries=None, wait_for_lease=0.0,
              partial_batches=True):
        """Deliver what is pending within ``timeout`` seconds; returns a :class:`DrainReport`.

        Before a 429's retry time only ``force`` sends anything. ``wait_for_lease``: how long to wait for another
        drain to finish (it delivers our entries too). Without ``partial_batches`` (the recorder's delivery while
        the run goes on) CIs go only in full IRE batches: a batch still being written waits for more CIs, or for
        the end of the run.
        """
        report = DrainReport(self.target)
        started = time.monotonic()
        state = self.state()
        report.cursor = state.get("cursor_seq") or 0
        if skip_failed:
            for item in self.sor.find_sync_items(self.target, statuses=["failed", "retry"]):
                self.sor.set_sync_item(self.target, item["seq"], item["entry_id"], item["kind"], item["subject"],
                                       "skipped", details=item["details"])
                report.retried.append({"seq": item["seq"], "status": "skipped"})
        retry_after = state.get("retry_after")
        if retry_after and not force and parse_time(retry_after).timestamp() > self.wall_clock():
            report.waiting_until = retry_after
            report.stopped = "ServiceNow asked to wait until %s (%s); nothing sent" % (
                retry_after, state.get("last_error") or "rate limited")
            report.stop_kind = "rate_limited"
            return report
        owner = owner_id()
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self.sor.acquire_sync_lease(self.target, owner, timeout + LEASE_MARGIN):
            if time.monotonic() - started >= wait_for_lease:
                report.busy = True
                report.stopped = "another drain of %s is running; it delivers these entries too" % self.target
                report.stop_kind = "busy"
                return report
            time.sleep(0.2)
        client = None
        try:
            client = self.client_factory(self.settings, deadline=deadline,
                                         cooldown=None if force else SorCooldown(self.sor, self.target))
            deliverer = Deliverer(self.sor, client, self.settings, self.actor, report, policy=self.policy)
            if retry_failed:
                self._retry_failed(deliverer, report)
            self._drain(deliverer, report, max_entries, partial_batches)
        except ServiceNowError as exc:
            report.stopped = exc.message
            report.stop_kind = exc.kind
            retry_at = exc.retry_at
            if retry_at is None:
                # out of time while waiting out a 429 (the end of a run cut the wait): its retry time still holds
                retry_at = SorCooldown(self.sor, self.target).get()
                retry_at = retry_at if retry_at and retry_at > self.wall_clock() else None
            self.sor.note_sync_error(self.target, exc.message, retry_after=iso(retry_at))
            if retry_at:
                report.waiting_until = iso(retry_at)
        except (BackendUnavailable, ConfigurationError) as exc:
            report.stopped = exc.message
            report.stop_kind = "error"
            try:
                self.sor.note_sync_error(self.target, exc.message)
            except ChangeopsError:
                pass
        finally:
            if client is not None:
                report.requests = client.requests_made
                report.writes = client.writes_made
                report.rate_limit_waited = client.rate_limit_waited
                report.warnings.extend(client.warnings)
                client.close()
            try:
                self.sor.release_sync_lease(self.target, owner)
            except ChangeopsError:
                pass
            report.elapsed = time.monotonic() - started
        return report

    def _retry_failed(self, deliverer, report):
        for item in self.sor.find_sync_items(self.target, statuses=["failed", "retry"]):
            entries = list(self.sor.iter_entries(after_seq=item["seq"] - 1, limit=1))
            if not entries or entries[0].seq != item["seq"]:
                continue
            entry = entries[0]
            refused = deliverer.deliver([entry]).get(entry.seq)
            if refused:
                self.sor.set_sync_item(self.target, entry.seq, entry.id, entry.kind, entry.subject, "failed", refused)
                report.set_aside.append({"seq": entry.seq, "kind": entry.kind, "subject": entry.subject,
                                         "error": refused})
            else:
                self.sor.set_sync_item(self.target, entry.seq, entry.id, entry.kind, entry.subject, "delivered")
                report.retried.append({"seq": entry.seq, "status": "delivered"})
                report.delivered += 1

    def _drain(self, deliverer, report, max_entries, partial_batches=True):
        batch_size = int(self.settings.get("batch_size") or 100)
        cursor = report.cursor
        handled = 0
        while True:
            if max_entries is not None and handled >= max_entries:
                return
            window = list(self.sor.iter_entries(after_seq=cursor, kinds=list(PUSHED_KINDS), limit=batch_size * 4))
            if not window:
                return
            group = _next_group(window, batch_size)
            if not partial_batches and _growing_batch(group, window, batch_size):
                return
            refused = deliverer.deliver(group)
            for entry in group:
                if entry.seq in refused:
                    self.sor.set_sync_item(self.target, entry.seq, entry.id, entry.kind, entry.subject, "failed",
                                           refused[entry.seq])
                    report.set_aside.append({"seq": entry.seq, "kind": entry.kind, "subject": entry.subject,
                                             "error": refused[entry.seq]})
            delivered = len(group) - len(refused)
            try:
                self.sor.advance_sync_cursor(self.target, cursor, group[-1].seq, delivered=delivered)
            except ConflictError as exc:
                raise BackendUnavailable("stopped: %s" % exc.message)
            cursor = group[-1].seq
            report.cursor = cursor
            report.delivered += delivered
            handled += len(group)


def _ci_ids_of(entry):
    data = entry.data or {}
    if entry.kind in ("ci.relationship_added", "ci.relationship_removed"):
        return [data.get("source"), data.get("target")]
    return [data.get("ci_id") or entry.subject]


def _growing_batch(group, window, batch_size):
    """True when ``group`` is an IRE batch short of ``batch_size`` CIs with nothing after it yet: more CIs of the
    run may still join it (a full batch, or one an entry of another kind closed, is complete)."""
    if group[0].kind not in CI_KINDS or group[-1] is not window[-1] or len(window) >= batch_size * 4:
        return False
    cis = set()
    for entry in group:
        cis.update(ci for ci in _ci_ids_of(entry) if ci)
    return len(cis) < batch_size


def _next_group(window, batch_size):
    """The next entries delivered together: a run of CI entries over at most ``batch_size`` CIs, or one entry."""
    if window[0].kind not in CI_KINDS:
        return window[:1]
    group, cis = [], set()
    for entry in window:
        if entry.kind not in CI_KINDS:
            break
        wanted = cis.union(ci for ci in _ci_ids_of(entry) if ci)
        if group and len(wanted) > batch_size:
            break
        cis = wanted
        group.append(entry)
    return group


class Deliverer(object):
    """Turns ledger entries into ServiceNow writes (one drain's worth)."""

    def __init__(self, sor, client, settings, actor, report, policy=None):
        self.sor = sor
        self.client = client
        self.settings = settings
        self.actor = actor
        self.report = report
        self.policy = policy or (lambda: default_policy(sor))
        self._unauthorised_runs = None
        self.table = TableAPI(client)
        self.change = ChangeAPI(client, self.table)
        self.attachments = AttachmentAPI(client)
        self.mapper = Mapper(settings)
        self.ire = IRE(client, self.mapper)
        self._events = {}
        self._changes = {}

    # -- helpers --------------------------------------------------------------------------------------
    def ledger_tag(self, entry=None):
        head_seq, head_hash = self.sor.head()
        tag = {"head_seq": head_seq, "head_hash": head_hash}
        if entry is not None:
            tag.update(entry_seq=entry.seq, entry_hash=entry.hash, entry_id=entry.id)
        return tag

    def ledger_line(self, entry):
        tag = self.ledger_tag(entry)
        return "ledger entry %s; chain head seq %s, hash %s" % (entry.seq, tag["head_seq"], tag["head_hash"])

    def deliver(self, entries):
        """Deliver ``entries``; returns ``{seq: reason}`` for those ServiceNow refused (set aside)."""
        if entries[0].kind in CI_KINDS:
            return self.deliver_cis(entries)
        entry = entries[0]
        try:
            handler = getattr(self, "_" + entry.kind.replace(".", "_"))
            handler(entry)
        except (ItemRefused, ConflictError) as exc:
            return {entry.seq: exc.message}
        except ServiceNowForbidden as exc:
            # a business rule or data policy refused this record's write: this entry, not the connection
            return {entry.seq: exc.message}
        except ServiceNowError as exc:
            if isinstance(exc, (BackendUnavailable, ConfigurationError)):
                raise
            return {entry.seq: exc.message}
        except ChangeopsError as exc:
            if isinstance(exc, (BackendUnavailable, ConfigurationError)):
                raise
            return {entry.seq: exc.message}
        return {}

    # -- CIs -----------------------------------------------------------------------------------------
    def deliver_cis(self, entries):
        refused = {}
        wanted = []
        for entry in entries:
            if entry.kind in ("ci.created", "ci.updated", "ci.relationship_added"):
                for ci_id in _ci_ids_of(entry):
                    if ci_id and ci_id not in wanted:
                        wanted.append(ci_id)
        cis = self.sor.get_cis(wanted) if wanted else {}
        present = [cis[ci_id] for ci_id in wanted if ci_id in cis]
        failures = {}
        mappable = []
        for ci in present:
            try:
                self.mapper.item(ci)
                mappable.append(ci)
            except ChangeopsError as exc:
                failures[ci["ci_id"]] = "%s: %s" % (host_label(ci), exc.message)
        relations = []
        for entry in entries:
            if entry.kind != "ci.relationship_added":
                continue
            data = entry.data
            if data["source"] in failures or data["target"] in failures:
                continue
            if data["source"] not in cis or data["target"] not in cis:
                continue  # an end was deleted since: nothing to relate
            still = [rel for rel in self.sor.get_relationships(data["source"], rel_type=data["type"],
                                                               direction="outbound") if rel["target"] == data["target"]]
            if not still:
                continue  # removed since: the removal entry follows
            if data["type"] not in RELATION_TYPES:
                refused[entry.seq] = ("relationship %s %s %s has no ServiceNow relation type (known: %s)"
                                      % (cis[data["source"]].get("name"), data["type"], cis[data["target"]].get("name"),
                                         ", ".join(sorted(RELATION_TYPES))))
                continue
            relations.append((data["source"], data["type"], data["target"]))
        if mappable:
            tag = self.ledger_tag(entries[-1])
            feed = "changeops ledger seq %s head %s" % (tag["head_seq"], tag["head_hash"])
            results = self.ire.submit(mappable, relations, source_feed=feed)
            self.report.pushed_cis += len(mappable)
            written = []
            for result in results:
                message = result.error_message(host_label(result.ci))
                if message:
                    failures[result.ci["ci_id"]] = message
                elif not result.sys_id:
                    failures[result.ci["ci_id"]] = "%s: IRE answered %s without a sys_id" % (
                        host_label(result.ci), result.operation)
                elif result.wrote:
                    written.append(result)
            self._read_back(written, failures)
            self._record_refs([result for result in results if result.ci["ci_id"] not in failures])
        for entry in entries:
            if entry.seq in refused:
                continue
            if entry.kind == "ci.deleted":
                reason = self._retire(entry)
            elif entry.kind == "ci.relationship_removed":
                reason = self._remove_relation(entry)
            else:
                reason = next((failures[ci_id] for ci_id in _ci_ids_of(entry) if ci_id in failures), None)
            if reason:
                refused[entry.seq] = reason
        return refused

    def _read_back(self, written, failures):
        """Every CI IRE wrote must exist in ServiceNow with the class IRE reported."""
        by_sys_id = dict((result.sys_id, result) for result in written)
        ids = sorted(by_sys_id)
        found = {}
        for start in range(0, len(ids), READ_BACK_CHUNK):
            chunk = ids[start:start + READ_BACK_CHUNK]
            for row in self.table.list("cmdb_ci", Query().isin("sys_id", chunk), ["sys_class_name", "name"]):
                found[value_of(row["sys_id"])] = value_of(row.get("sys_class_name"))
        for sys_id, result in by_sys_id.items():
            if sys_id not in found:
                failures[result.ci["ci_id"]] = ("%s: IRE answered %s with sys_id %s, but no such CI can be read "
                                                "back from cmdb_ci" % (host_label(result.ci), result.operation, sys_id))
            elif result.class_name and found[sys_id] != result.class_name:
                failures[result.ci["ci_id"]] = ("%s: IRE answered class %s, the CI read back is %s"
                                                % (host_label(result.ci), result.class_name, found[sys_id]))

    def _record_refs(self, results):
        entries = []
        for result in results:
            attributes = result.ci.get("attributes") or {}
            if attributes.get("servicenow_sys_id") == result.sys_id and \
                    attributes.get("servicenow_class") == result.class_name:
                continue
            entries.append(Entry("ci.external_ref", result.ci["ci_id"], {
                "ci_id": result.ci["ci_id"], "system": SYSTEM, "instance": self.settings.base_url,
                "sys_id": result.sys_id, "class": result.class_name, "operation": result.operation,
                "identified_by": result.rule}, actor=self.actor))
        if entries:
            try:
                self.sor.append(entries)
            except ConflictError:
                # a CI was deleted between the read and now: append the others
                for entry in entries:
                    try:
                        self.sor.append([entry])
                    except ConflictError:
                        pass

    def _known_sys_id(self, ci_id):
        ci = self.sor.get_ci(ci_id)
        if ci is not None and (ci.get("attributes") or {}).get("servicenow_sys_id"):
            return ci["attributes"]["servicenow_sys_id"]
        sys_id = None
        for entry in self.sor.iter_entries(subject=ci_id, kinds=["ci.external_ref"]):
            sys_id = entry.data.get("sys_id")
        return sys_id

    def _retire(self, entry):
        sys_id = self._known_sys_id(entry.data.get("ci_id") or entry.subject)
        if not sys_id:
            return None  # never reached ServiceNow: nothing to retire
        if self.table.get("cmdb_ci", sys_id, ["install_status"]) is None:
            return None
        self.table.update("cmdb_ci", sys_id, RETIRED, fields=("install_status",))
        back = self.table.get("cmdb_ci", sys_id, ["install_status"]) or {}
        if str(value_of(back.get("install_status"))) != RETIRED["install_status"]:
            return "CI %s: ServiceNow CI %s was not retired (install_status %s)" % (
                entry.subject, sys_id, value_of(back.get("install_status")))
        return None

    def _remove_relation(self, entry):
        data = entry.data
        kind = RELATION_TYPES.get(data.get("type"))
        if kind is None:
            return None
        source, target = self._known_sys_id(data["source"]), self._known_sys_id(data["target"])
        if not source or not target:
            return None
        parent, child = (source, target) if kind[1] else (target, source)
        query = Query().eq("parent", parent).eq("child", child).eq("type.name", kind[0])
        for row in self.table.list("cmdb_rel_ci", query, ["parent", "child", "type.name"]):
            self.table.delete("cmdb_rel_ci", value_of(row["sys_id"]))
        if self.table.list("cmdb_rel_ci", query, ["parent", "child", "type.name"]):
            return "relationship %s %s %s is still in ServiceNow after its deletion" % (
                data["source"], data["type"], data["target"])
        return None

    # -- runs ----------------------------------------------------------------------------------------
    def event(self, run_id):
        if run_id not in self._events:
            self._events[run_id] = self.sor.get_change_event(run_id)
        return self._events[run_id]

    def _servicenow_changes(self, event, upto_seq=None):
        """The ServiceNow CHGs whose gate decisions allowed plays of the run: ``[{sys_id, number}]``."""
        found = []
        for gate in (event or {}).get("gates") or []:
            if upto_seq is not None and (gate.get("seq") or 0) > upto_seq:
                continue
            ref = gate.get("servicenow") or {}
            if gate.get("allowed") and gate.get("type") != "dry-run" and ref.get("sys_id") and \
                    ref["sys_id"] not in [item["sys_id"] for item in found]:
                found.append({"sys_id": ref["sys_id"], "number": ref.get("number")})
        return found

    def _register_link(self, run_id):
        url = self.settings.get("register_url")
        return ("%s#run-%s" % (url.rstrip("/"), run_id)) if url else None

    def _change_record(self, change, refresh=False):
        """The CHG as read once in this drain (kept up to date with what this drain wrote)."""
        sys_id = change["sys_id"]
        if refresh or sys_id not in self._changes:
            record = self.change.read(sys_id)
            if record is None:
                raise ItemRefused("%s (%s) no longer exists in ServiceNow" % (change.get("number"), sys_id))
            self._changes[sys_id] = record
        return self._changes[sys_id]

    def _run_gate(self, entry):
        decision = entry.data
        ref = decision.get("servicenow") or {}
        if not (decision.get("allowed") and decision.get("type") != "dry-run" and ref.get("sys_id")):
            return
        run_id = decision["run_id"]
        event = self.event(run_id) or {}
        hosts = decision.get("hosts") or []
        note = ["changeops: run %s started." % run_id,
                "Play '%s' of %s, run by %s on %s, authorised by the change gate as a %s change under %s."
                % (decision.get("play") or "", event.get("playbook") or "?", event.get("user") or "?",
                   event.get("controller") or "?", decision.get("type"), ref.get("number")),
                "Hosts (%d): %s" % (len(hosts), _names(hosts))]
        link = self._register_link(run_id)
        if link:
            note.append("Change register: %s" % link)
        note.append(self.ledger_line(entry))
        marker = "[changeops:%s:start:%s]" % (run_id, ref["sys_id"])
        note.append(marker)
        record = self._change_record(ref)
        fields = {}
        if not record.get("work_start") and event.get("started_at"):
            fields["work_start"] = to_sn_time(event["started_at"])
        if self.change.add_journal_entry("change_request", ref["sys_id"], "\n".join(note), marker, fields=fields):
            record.update(fields)

    def _run_finished(self, entry):
        self._finish(entry)

    def _run_interrupted(self, entry):
        self._finish(entry)

    def _finish(self, entry):
        run_id = entry.data["run_id"]
        self._events.pop(run_id, None)
        event = self.event(run_id)
        if event is None or event.get("dry_run"):
            return
        changes = self._servicenow_changes(event)
        if event.get("authorisation") == "unauthorised":
            changes.append(self._unauthorised_record(entry, event))
        for change in changes:
            self._finish_on(change, entry, event)

    def _run_incomplete(self, entry):
        data = entry.data
        run_id = data["run_id"]
        self._events.pop(run_id, None)
        event = self.event(run_id)
        if event is None or event.get("dry_run"):
            return
        kinds = ", ".join("%s %s" % (count, kind) for kind, count in sorted((data.get("lost_kinds") or {}).items()))
        for change in self._servicenow_changes(event):
            marker = "[changeops:%s:incomplete:%s:%s]" % (run_id, entry.seq, change["sys_id"])
            text = ("changeops: the record of run %s is INCOMPLETE: the recorder lost %s entries (%s) since %s: %s. "
                    "What the run changed cannot all be told from the record; review it.\n%s\n%s" % (
                        run_id, data.get("lost_entries"), kinds or "?", data.get("lost_from") or "?",
                        data.get("reason") or "no reason recorded", self.ledger_line(entry), marker))
            self.change.add_journal_entry("change_request", change["sys_id"], text, marker)
        ends = list(self.sor.iter_entries(subject=run_id, kinds=list(RUN_END_KINDS), limit=1))
        if not ends and event.get("status") not in (None, "running"):
            # the marker carried the run's end (its own never reached the ledger): the run ends on its CHGs here
            self._finish(entry)

    def _summary(self, event):
        hosts = event.get("hosts") or []
        changed = [host["host"] for host in hosts if host.get("changed")]
        failed = [host["host"] for host in hosts if host.get("failed") or host.get("unreachable")]
        return changed, failed

    def _event_document(self, entry, event):
        document = to_plain(dict(event))
        document["ledger"] = self.ledger_tag(entry)
        document["source"] = "changeops.itsm change_recorder"
        return json.dumps(document, sort_keys=True, indent=1).encode("utf-8")

    def _finish_on(self, change, entry, event):
        run_id = event["run_id"]
        table = change.get("table", "change_request")
        changed, failed = self._summary(event)
        outcome = event.get("status")
        note = ["changeops: run %s ended: %s." % (run_id, outcome),
                "Playbook %s, run by %s on %s; authorisation: %s%s." % (
                    event.get("playbook") or "?", event.get("user") or "?", event.get("controller") or "?",
                    event.get("authorisation"), " (%s)" % event["authorisation_ref"]
                    if event.get("authorisation_ref") else ""),
                "Hosts changed (%d): %s" % (len(changed), _names(changed)),
                "Hosts failed or unreachable (%d): %s" % (len(failed), _names(failed)),
                "Started %s, ended %s." % (event.get("started_at"), event.get("ended_at"))]
        link = self._register_link(run_id)
        if link:
            note.append("Change register: %s" % link)
        note.append(self.ledger_line(entry))
        marker = "[changeops:%s:end:%s]" % (run_id, change["sys_id"])
        note.append(marker)
        times = {}
        record = self._change_record(change) if table == "change_request" else {}
        if table == "change_request":
            # the actual start and end travel with the note: one write, its answer read back
            if not record.get("work_start") and event.get("started_at"):
                times["work_start"] = to_sn_time(event["started_at"])
            if event.get("ended_at") and record.get("work_end") != to_sn_time(event["ended_at"]):
                times["work_end"] = to_sn_time(event["ended_at"])
        if self.change.add_journal_entry(table, change["sys_id"], "\n".join(note), marker, fields=times):
            record.update(times)
        self.attachments.attach_once(table, change["sys_id"], "changeops-run-%s.json" % run_id,
                                     self._event_document(entry, event))
        if table != "change_request":
            return
        target = self.settings.get("close_change_requests") or "none"
        if target != "none" and event.get("authorisation") == "incomplete":
            self.report.warnings.append("%s is left %s: the record of run %s is incomplete (the recorder lost some "
                                        "of its entries), so a person reviews it before it is closed"
                                        % (change.get("number"),
                                           STATE_NAMES.get(record.get("state"), record.get("state")), run_id))
        elif target != "none" and not change.get("unauthorised"):
            current = STATE_NAMES.get(record.get("state"), record.get("state"))
            order = ["new", "assess", "authorise", "scheduled", "implement", "review", "closed"]
            if current in order and order.index(current) < order.index(target) and current in (
                    "scheduled", "implement", "review"):
                extra = None
                if target == "closed":
                    code = "successful" if outcome == "successful" else "unsuccessful"
                    extra = {"close_code": code, "close_notes": "Closed by changeops run %s: %s. %s" % (
                        run_id, outcome, self.ledger_line(entry))}
                moved = self.change.move_to(change["sys_id"], change.get("number") or change["sys_id"], target,
                                            extra=extra)
                self._changes[change["sys_id"]] = moved
            elif current not in ("review", "closed", "cancelled") and current in order and \
                    order.index(current) < order.index("scheduled"):
                self.report.warnings.append("%s is %s: a run does not move a change that was never scheduled"
                                            % (change.get("number"), current))

    def _unauthorised_record(self, entry, event):
        """The CHG (flagged unauthorised, in Review) or incident that records an unauthorised run."""
        run_id = event["run_id"]
        correlation = "changeops-unauthorised-%s" % run_id
        changed, failed = self._summary(event)
        kind = self.unauthorised_runs()
        table = "incident" if kind == "incident" else "change_request"
        existing = self.change.find_by_correlation(correlation, table=table)
        description = ("changeops recorded run %s of %s by %s on %s, which changed hosts without an authorising "
                       "change gate decision. Hosts changed (%d): %s. %s" % (
                           run_id, event.get("playbook") or "?", event.get("user") or "?",
                           event.get("controller") or "?", len(changed), _names(changed), self.ledger_line(entry)))
        short = "Unauthorised change: changeops run %s (%s)" % (run_id[:12], os.path.basename(
            event.get("playbook") or "playbook"))
        ci_ids = [ref for ref in (self._host_sys_id(host) for host in changed) if ref]
        values = {"short_description": short, "description": description, "correlation_id": correlation,
                  "correlation_display": "changeops"}
        if self.settings.get("assignment_group"):
            values["assignment_group"] = self.settings["assignment_group"]
        if ci_ids:
            values["cmdb_ci"] = ci_ids[0]
        if existing is not None:
            sys_id, number = value_of(existing["sys_id"]), value_of(existing.get("number"))
        elif table == "incident":
            values.update(urgency="2", impact="2", category="software")
            created = self.table.create("incident", values, fields=("number",))
            sys_id, number = value_of(created["sys_id"]), value_of(created.get("number"))
        else:
            values.update(unauthorized="true", state="0")
            if event.get("started_at"):
                values["work_start"] = to_sn_time(event["started_at"])
            if event.get("ended_at"):
                values["work_end"] = to_sn_time(event["ended_at"])
            created = self.change.create("normal", values)
            sys_id, number = created["sys_id"], created.get("number")
        if table == "change_request":
            if ci_ids:
                present = self.change.affected_ci_sys_ids(sys_id)
                missing = [ci for ci in ci_ids if ci not in present]
                if missing:
                    self.change.associate_cis(sys_id, missing)
            record = self.change.read(sys_id) or {}
            if record.get("unauthorized") != "true":
                raise ItemRefused("%s was created for unauthorised run %s but is not flagged unauthorized" % (
                    number, run_id))
            if STATE_NAMES.get(record.get("state")) not in ("review", "closed"):
                try:
                    self.change.move_to(sys_id, number, "review", direct=True)
                except ServiceNowError as exc:
                    self.report.warnings.append("%s (unauthorised run %s) stays %s: %s" % (
                        number, run_id, STATE_NAMES.get(record.get("state")), exc.message))
        else:
            if not self.table.get("incident", sys_id, ["number"]):
                raise ItemRefused("incident %s for unauthorised run %s cannot be read back" % (number, run_id))
        return {"sys_id": sys_id, "number": number, "table": table, "unauthorised": True}

    def unauthorised_runs(self):
        """``change`` or ``incident``: the policy's ``servicenow.unauthorised_runs``, else the deprecated ServiceNow
        setting of that name (with a warning), else ``change``. Decided once per drain."""
        if self._unauthorised_runs is None:
            try:
                in_force = self.policy()
            except ChangeopsError as exc:
                # a policy that does not load decides nothing: this entry waits, set aside, until it is fixed
                raise ItemRefused("the change policy that says what records an unauthorised run cannot be read: %s"
                                  % exc.message)
            policy = getattr(in_force, "policy", in_force)
            chosen = (getattr(policy, "servicenow", None) or {}).get("unauthorised_runs")
            setting = self.settings.get("unauthorised_runs")
            where = getattr(in_force, "label", lambda: getattr(policy, "origin", "the change policy"))()
            if chosen and setting and setting != chosen:
                self.report.warnings.append(
                    "the ServiceNow setting unauthorised_runs=%s (CHANGEOPS_SERVICENOW_UNAUTHORISED_RUNS, "
                    "[changeops_servicenow]) is deprecated and ignored: the %s says servicenow.unauthorised_runs: %s"
                    % (setting, where, chosen))
            elif not chosen and setting:
                self.report.warnings.append(
                    "the ServiceNow setting unauthorised_runs=%s (CHANGEOPS_SERVICENOW_UNAUTHORISED_RUNS, "
                    "[changeops_servicenow]) is deprecated and will be removed in 2.0.0: set "
                    "servicenow.unauthorised_runs: %s in the change policy (%s has none)" % (setting, setting, where))
            self._unauthorised_runs = chosen or setting or "change"
        return self._unauthorised_runs

    def _host_sys_id(self, host):
        for ci in self.sor.find_cis(names=[host]):
            sys_id = (ci.get("attributes") or {}).get("servicenow_sys_id")
            if sys_id:
                return sys_id
        return None

    def _run_reviewed(self, entry):
        data = entry.data
        event = self.event(data["run_id"])
        for change in self._servicenow_changes(event):
            marker = "[changeops:%s:review:%s:%s]" % (data["run_id"], entry.seq, change["sys_id"])
            text = "changeops: run %s reviewed by %s: %s%s\n%s\n%s" % (
                data["run_id"], data.get("reviewer"), data.get("outcome"),
                (" (%s)" % data["comment"]) if data.get("comment") else "", self.ledger_line(entry), marker)
            self.change.add_journal_entry("change_request", change["sys_id"], text, marker)

    def _evidence_recorded(self, entry):
        data = entry.data
        document = dict(to_plain(data))
        document["ledger"] = self.ledger_tag(entry)
        content = json.dumps(document, sort_keys=True, indent=1).encode("utf-8")
        name = "changeops-evidence-%s-%s-%s.json" % (data.get("checklist") or "checklist",
                                                     _safe(data.get("host") or data.get("ci_id") or "ci"), entry.seq)
        targets = []
        if data.get("run_id"):
            targets.extend(("change_request", change["sys_id"])
                           for change in self._servicenow_changes(self.event(data["run_id"])))
        if data.get("ci_id"):
            ci_sys_id = self._known_sys_id(data["ci_id"])
            if ci_sys_id:
                targets.append(("cmdb_ci", ci_sys_id))
        for table, sys_id in targets:
            self.attachments.attach_once(table, sys_id, name, content)


def _names(hosts):
    hosts = list(hosts)
    if not hosts:
        return "none"
    shown = ", ".join(str(host) for host in hosts[:NOTE_HOSTS])
    return shown + (" and %d more" % (len(hosts) - NOTE_HOSTS) if len(hosts) > NOTE_HOSTS else "")


def _safe(text):
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in str(text))[:60]
