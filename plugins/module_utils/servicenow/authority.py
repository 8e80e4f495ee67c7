# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change gate's authority on change requests: the system of record, or ServiceNow.

:func:`authority_for` is the one place the gate learns where a change request
lives. With ServiceNow configured, a ``change_request: CHG0012345`` is read live
from ServiceNow and turned into the record the gate already judges (state,
approval, type, planned window, affected CIs), plus what only ServiceNow knows:

* the affected CIs come from the Change API (``/change/{id}/ci``): a host is covered
  when its CI's ServiceNow sys_id (``servicenow_sys_id``, from the outbox) or its name
  is among them;
* conflicts come from the conflict API's ``conflicts`` list (never its ``status``,
  which reads "Conflict" even when there are none); each one denies;
* a ServiceNow standard change is covered by the policy template that names its
  ServiceNow template (``servicenow_template``);
* who asked for it (``opened_by``, ``requested_by``) and who approved it (its approved
  records in the Approvals table, ``sysapproval_approver``), as identities of source
  ``servicenow``, so that the separation-of-duties rules of the policy in force apply to a
  ServiceNow CHG as to the collection's own requests (``authorisation/duties.py``: the
  requester is no approver, the runner is not the only approver, compared by name; the
  policy's approver groups are not, since ServiceNow's approval rules chose who approves).

Anything that stops the reading (unreachable, 401/403, 429 beyond the budget) is
an error the gate turns into a denial naming it (fail closed), unless the policy's
``servicenow.local_fallback`` allows the documented fallback: the gate's last
reading of that CHG from ServiceNow, recorded in the ledger, not older than
``fallback_max_age`` minutes, judged again against the current time; such a
decision is flagged for review. Never for 401/403: a credential problem is not an
outage.

When a policy template that names ``servicenow_template`` authorises a real run,
:meth:`ServiceNowAuthority.after_decision` creates the standard CHG from that
template through the Change API (once per run and template: found again by its
``correlation_id``), adds the hosts' CIs as affected CIs, moves it to Implement
reading the state back, and makes it the decision's reference.
"""

from __future__ import annotations

import datetime
import time

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time
from ansible_collections.changeops.itsm.plugins.module_utils.cmdb_identity import find_host_cis
from ansible_collections.changeops.itsm.plugins.module_utils.errors import BackendUnavailable, ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.change import (
    STATE_NAMES,
    ChangeAPI,
    sn_time,
    to_sn_time,
)
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.client import Client
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import (
    ServiceNowConflict,
    ServiceNowError,
    ServiceNowRateLimited,
)
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import (
    ansible_config_file,
    controller_settings,
)
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.standard_change import ensure_standard_change
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.table import Query, value_of

#: approvals as the gate names them
APPROVALS = {"approved": "approved", "rejected": "rejected", "requested": "requested",
             "not requested": "not requested", "": "not requested", "not_required": "not requested"}
#: the source of the identities ServiceNow reports (requesters, approvers): see authorisation/duties.py
IDENTITY_SOURCE = "servicenow"
#: how long a standard CHG created by the gate is planned for
STANDARD_WINDOW = datetime.timedelta(hours=4)
#: most gate decisions searched for the fallback's last reading
FALLBACK_EVENTS = 200


class LocalAuthority(object):
    """Change requests of the system of record (the ``change_request`` module's)."""

    source = "system of record"

    def __init__(self, sor):
        self.sor = sor

    def read(self, number):
        return self.sor.get_change_request(number) if number else None

    def poll_interval(self, requested, left):
        return requested

    def after_decision(self, decision, context, policy, now, check_mode):
        return decision

    def close(self):
        pass


def authority_for(ctx, policy, hosts, delegated=()):
    """The authority the gate asks: ServiceNow when this task or the configuration enables it, else the
    system of record."""
    settings = controller_settings((ctx.params or {}).get("instance"), ansible_config_file())
    if not settings.wanted:
        return LocalAuthority(ctx.sor)
    settings.check_complete("change_gate instance")
    return ServiceNowAuthority(ctx, settings, policy, list(hosts) + [h for h in delegated if h not in hosts])


class ServiceNowAuthority(object):
    source = "ServiceNow"

    def __init__(self, ctx, settings, policy, hosts, client=None):
        self.ctx = ctx
        self.sor = ctx.sor
        self.settings = settings
        self.policy = policy
        self.hosts = list(hosts)
        self.client = client or Client(settings)
        self.change = ChangeAPI(self.client)
        self._sys_ids = {}
        self._last = {}
        self._hold_until = None
        self._cost = 4
        self.fallback_used = None

    def close(self):
        self.client.close()

    def describe(self):
        return self.client.describe()

    # -- reading ----------------------------------------------------------------------------------
    def read(self, number):
        if not number:
            return None
        try:
            return self._read(number)
        except ServiceNowRateLimited as exc:
            if number in self._last and exc.retry_at:
                # waiting for approval: a 429 while polling only postpones the next poll
                self._hold_until = exc.retry_at
                return self._last[number]
            return self._fallback(number, exc)
        except ServiceNowError as exc:
            if isinstance(exc, BackendUnavailable):
                return self._fallback(number, exc)
            raise type(exc)("%s cannot be read from %s: %s" % (number, self.describe(), exc.message),
                            kind=exc.kind, status=exc.status, retry_at=exc.retry_at)

    def _read(self, number):
        before = self.client.requests_made
        sys_id = self._sys_ids.get(number)
        if sys_id is None:
            sys_id = self.change.find_sys_id(number)
            if sys_id is None:
                return None
            self._sys_ids[number] = sys_id
        raw = self.change.read(sys_id)
        if raw is None:
            return None
        previous = self._last.get(number)
        state = STATE_NAMES.get(raw.get("state"), "unknown state %s" % raw.get("state"))
        if previous is not None and state in ("new", "assess", "authorise") and \
                APPROVALS.get(raw.get("approval"), raw.get("approval")) != "rejected":
            # still waiting for approval: the rest is read once it may authorise
            record = dict(previous, state=state, approval=self._approval(raw))
        else:
            affected = self.change.affected_ci_sys_ids(sys_id)
            conflicts = self.change.conflicts(sys_id)
            record = self._record(number, sys_id, raw, affected, conflicts)
        self._last[number] = record
        self._cost = max(1, self.client.requests_made - before)
        return record

    def _approval(self, raw):
        approval = APPROVALS.get(raw.get("approval") or "", raw.get("approval"))
        if (raw.get("type") or "normal") == "standard" and approval != "rejected":
            return "pre-approved"  # a standard change is pre-approved by its template
        return approval

    def _record(self, number, sys_id, raw, affected, conflicts):
        names = set((name or "").lower() for name in affected.values())
        cis = find_host_cis(self.sor, self.hosts)
        covered = []
        for host in self.hosts:
            ci = cis.get(host) or {}
            attributes = ci.get("attributes") or {}
            if attributes.get("servicenow_sys_id") in affected or host.lower() in names or \
                    str(attributes.get("fqdn") or "").lower() in names - {""}:
                covered.append(host)
        reasons = []
        for conflict in conflicts:
            text = "%s has a scheduling conflict in ServiceNow: %s" % (number, conflict["type_label"])
            if conflict.get("ci"):
                text += " (%s)" % conflict["ci"]
            if conflict.get("change") and conflict["change"] != number:
                text += " with %s" % conflict["change"]
            reasons.append(text)
        record = {
            "number": number,
            "state": STATE_NAMES.get(raw.get("state"), "unknown state %s" % raw.get("state")),
            "type": raw.get("type") or "normal",
            "approval": self._approval(raw),
            "planned_start": sn_time(raw.get("start_date")),
            "planned_end": sn_time(raw.get("end_date")),
            "timezone": "UTC",
            "affected_cis": sorted(set(covered) | set(name for name in affected.values() if name)),
            "approvals": [],
            "authority_reasons": reasons,
            "conflicts": conflicts,
            "template": self._policy_template(raw) if (raw.get("type") == "standard") else None,
            "servicenow": {"sys_id": sys_id, "number": number, "instance": self.settings.base_url,
                           "read_at": format_time(datetime.datetime.now(datetime.timezone.utc)),
                           "affected_ci_sys_ids": sorted(affected)},
            "source": "servicenow",
        }
        if str(raw.get("on_hold")) == "true":
            record["authority_reasons"].append("%s is on hold in ServiceNow" % number)
        if record["approval"] == "approved":
            # who approved, and who asked: what separation of duties is checked on (a standard change is
            # pre-approved by its template and has nobody to check)
            record.update(self._people(sys_id, raw))
        return record

    def _people(self, sys_id, raw):
        """``{approvals, opened_by_identity, requested_by, approvals_from}`` of a CHG: its approved records in the
        Approvals table and the users who opened and requested it, by user name (source ``servicenow``)."""
        table = self.change.table
        approvals = []
        for row in table.list("sysapproval_approver", Query().eq("sysapproval", sys_id).eq("state", "approved"),
                              ["approver", "approver.user_name", "sys_updated_on"]):
            name = value_of(row.get("approver.user_name"))
            if name:
                approvals.append({"decision": "approved", "approver": name, "at": sn_time(value_of(
                    row.get("sys_updated_on"))), "identity": {"name": name, "source": IDENTITY_SOURCE}})
        wanted = dict((field, value_of(raw.get(field))) for field in ("opened_by", "requested_by")
                      if value_of(raw.get(field)))
        names = {}
        if wanted:
            for row in table.list("sys_user", Query().isin("sys_id", sorted(set(wanted.values()))), ["user_name"]):
                names[value_of(row["sys_id"])] = value_of(row.get("user_name"))
        people = {"approvals": sorted(approvals, key=lambda approval: (approval["at"] or "", approval["approver"])),
                  "approvals_from": "ServiceNow %s (its Approvals table)" % self.settings.base_url}
        if names.get(wanted.get("opened_by")):
            people["opened_by_identity"] = {"name": names[wanted["opened_by"]], "source": IDENTITY_SOURCE}
        if names.get(wanted.get("requested_by")):
            people["requested_by"] = names[wanted["requested_by"]]
        return people

    def _policy_template(self, raw):
        """The policy template naming this standard change's ServiceNow template (by name or sys_id)."""
        version = raw.get("std_change_producer_version")
        names = set(filter(None, [version, raw.get("std_change_producer_version$display")]))
        if version:
            rows = self.change.table.list("std_change_producer_version", Query().eq("sys_id", version),
                                          ["std_change_producer", "std_change_producer.name", "name"], limit=1)
            for row in rows:
                names.update(filter(None, [value_of(row.get("std_change_producer")),
                                           value_of(row.get("std_change_producer.name")), value_of(row.get("name"))]))
        for template in self.policy.templates:
            if template.servicenow_template and template.servicenow_template in names:
                return template.name
        return None

    def _fallback(self, number, exc):
        rules = getattr(self.policy, "servicenow", None) or {}
        if not rules.get("local_fallback"):
            raise type(exc)("%s cannot be read from %s (fail closed; the policy allows no local fallback): %s"
                            % (number, self.describe(), exc.message), kind=exc.kind, status=exc.status,
                            retry_at=exc.retry_at)
        max_age = datetime.timedelta(minutes=int(rules.get("fallback_max_age") or 60))
        now = datetime.datetime.now(datetime.timezone.utc)
        for event in self.sor.find_change_events(limit=FALLBACK_EVENTS):
            for gate in sorted(event.get("gates") or [], key=lambda gate: gate.get("seq") or 0, reverse=True):
                snapshot = (gate.get("change_request") or {}).get("servicenow_record")
                if not snapshot or snapshot.get("number") != number or (snapshot.get("servicenow") or {}).get(
                        "instance") != self.settings.base_url:
                    continue
                read_at = parse_time(snapshot["servicenow"]["read_at"])
                if now - read_at > max_age:
                    continue
                record = dict(snapshot)
                record["fallback"] = {"because": exc.message, "read_at": snapshot["servicenow"]["read_at"]}
                self.fallback_used = record["fallback"]
                self._last[number] = record
                return record
        raise type(exc)("%s cannot be read from %s, and the local fallback found no reading of it from the last "
                        "%d minutes: %s" % (number, self.describe(), int(max_age.total_seconds() // 60), exc.message),
                        kind=exc.kind, status=exc.status, retry_at=exc.retry_at)

    def poll_interval(self, requested, left):
        """Seconds to the next poll: ``requested``, stretched so the request budget lasts until the timeout, and
        never before a 429's retry time."""
        interval = float(requested)
        remaining = self.client.max_requests - self.client.requests_made
        polls_affordable = max(1, remaining // max(1, self._cost) - 1)
        interval = max(interval, float(left) / polls_affordable)
        if self._hold_until:
            interval = max(interval, self._hold_until - time.time())
            self._hold_until = None
        return interval

    # -- after the decision -------------------------------------------------------------------------
    def after_decision(self, decision, context, policy, now, check_mode):
        record_info = decision.get("change_request")
        number = (record_info or {}).get("number")
        if number and number in self._last:
            record = self._last[number]
            decision["change_request"] = dict(record_info, source="servicenow",
                                              servicenow_record=record, conflicts=record.get("conflicts") or [])
            if decision.get("allowed"):
                decision["servicenow"] = dict(record["servicenow"])
            if record.get("fallback"):
                decision["change_request"]["fallback"] = record["fallback"]
                decision["review_required"] = bool(decision.get("allowed")) or decision.get("review_required")
        if decision.get("allowed") and decision.get("type") == "standard" and not number and not check_mode:
            template = next((t for t in policy.templates if t.name == decision.get("reference")), None)
            if template is not None and template.servicenow_template:
                self._standard_change(decision, context, template, now)
        return decision

    def _standard_change(self, decision, context, template, now):
        run_id = self.ctx.run_id or decision.get("run_id") or "no-run"
        correlation = "changeops-%s-%s" % (run_id, template.name)[:100]
        try:
            start = now.astimezone(datetime.timezone.utc)
            values = {
                "short_description": "changeops: %s (standard change '%s')" % (
                    context.get("playbook_name") or context.get("play") or "playbook", template.name),
                "start_date": to_sn_time(format_time(start)),
                "end_date": to_sn_time(format_time(start + STANDARD_WINDOW)),
            }
            if self.settings.get("assignment_group"):
                values["assignment_group"] = self.settings["assignment_group"]
            cis = find_host_cis(self.sor, context.get("hosts") or [])
            wanted = [(ci.get("attributes") or {}).get("servicenow_sys_id") for ci in cis.values()]
            outcome = ensure_standard_change(self.change, template.servicenow_template, correlation, values,
                                             [ci for ci in wanted if ci], "implement")
            sys_id, number = outcome["sys_id"], outcome["number"]
            if outcome["state"] != "implement":
                raise ServiceNowConflict("%s is %s, not implement" % (number, outcome["state"]))
        except ServiceNowError as exc:
            decision.update(allowed=False, type="denied", reference=None, review_required=False)
            decision["reasons"] = ["standard change '%s' names ServiceNow template %r, but the standard change "
                                   "could not be created in %s: %s" % (template.name, template.servicenow_template,
                                                                       self.describe(), exc.message)]
            return
        decision["reference"] = number
        decision["servicenow"] = {"sys_id": sys_id, "number": number, "instance": self.settings.base_url,
                                  "template": template.servicenow_template, "created_by_gate": True}
        decision["change_request"] = {"number": number, "state": "implement", "type": "standard",
                                      "template": template.name, "source": "servicenow", "created_by_gate": True}


def is_external(authority):
    return not isinstance(authority, LocalAuthority)


__all__ = ["authority_for", "LocalAuthority", "ServiceNowAuthority", "is_external", "ChangeopsError"]
