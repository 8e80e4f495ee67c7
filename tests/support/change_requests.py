# -*- coding: utf-8 -*-
"""Helpers for change gate and change request tests: CIs, change requests, times."""

from __future__ import annotations

import datetime
import uuid

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import Identity
from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time
from ansible_collections.changeops.itsm.plugins.module_utils.change_requests import (
    CHANGE_REQUEST_SPEC,
    ensure_change_request,
)
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(delta=datetime.timedelta(0), **kwargs):
    """Now plus ``delta`` (or timedelta kwargs), as ISO 8601 UTC."""
    return format_time(utc_now() + delta + datetime.timedelta(**kwargs))


def add_ci(sor, name, environment=None, ci_class="cmdb_ci_linux_server", service=None, entry_format=3):
    ci_id = uuid.uuid4().hex
    attributes = {"name": name, "class": ci_class, "status": "operational"}
    if environment:
        attributes["environment"] = environment
    if service:
        # where register_host and configuration_item keep them
        attributes["services"] = [service]
    sor.append([Entry("ci.created", ci_id, {"ci_id": ci_id, "attributes": attributes, "identities": {}},
                      format=entry_format)])
    return ci_id


def change_request(sor, check_mode=False, diff=True, actor="tester@test", identity=None, **params):
    """Run the change_request operation with module defaults filled in; returns the result.

    ``identity``: who acts (default: the approval's ``approver``, else ``requester``, both of source ``test``);
    modules always act as the OS account that runs them, tests choose to play several people.
    """
    full = {name: spec.get("default") for name, spec in CHANGE_REQUEST_SPEC.items()}
    full.update(params)
    if identity is None:
        identity = Identity((params.get("approval") or {}).get("approver") or "requester", "test")
    return ensure_change_request(OperationContext(sor, full, check_mode=check_mode, diff=diff, actor=actor,
                                                  identity=identity))


def approved_change(sor, affected_cis, start, end, timezone="Europe/Paris", change_type="normal", state="scheduled",
                    validate_cis=False):
    """A change request walked to ``state`` the legal way (assess, authorise, approval, scheduled...)."""
    number = change_request(sor, type=change_type, short_description="test change", affected_cis=affected_cis,
                            planned_start=start, planned_end=end, timezone=timezone,
                            validate_cis=validate_cis)["number"]
    for step in ("assess", "authorise"):
        change_request(sor, number=number, state=step)
    change_request(sor, number=number, approval={"approver": "carol", "decision": "approved"})
    change_request(sor, number=number, state="scheduled")
    if state == "implement":
        change_request(sor, number=number, state="implement")
    return number


def gate_entries(sor):
    return [entry.data for entry in sor.iter_entries(kinds=["run.gate"])]
