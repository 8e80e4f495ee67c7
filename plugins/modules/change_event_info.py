#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: change_event_info
short_description: Query recorded change events (playbook runs)
version_added: 0.1.0
description:
  - Lists the change events that the P(changeops.itsm.change_recorder#callback) callback
    recorded in the system of record, newest first, optionally with their per-host task
    results and checklist evidence.
  - Optionally verifies the ledger's hash chain in the same call.
  - Runs on the controller; no C(delegate_to) is needed.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
attributes:
  check_mode:
    description: Can run in check mode and return the same information.
    support: full
  diff_mode:
    description: Reads only, so there is nothing to diff.
    support: none
options:
  run_id:
    description: Return only this change event.
    type: str
  since:
    description:
      - Only events started at or after this time.
      - An ISO 8601 time or date (V(2026-11-23T08:00:00Z), V(2026-11-23)) or a duration back
        from now (V(30m), V(24h), V(7d), V(2w)).
    type: str
  until:
    description: Only events started at or before this time; same formats as O(since).
    type: str
  host:
    description: Only events that ran a task on this inventory host.
    type: str
  playbook:
    description: Only events whose playbook path contains this text.
    type: str
  status:
    description:
      - Only events with one of these statuses, the RV(change_events[].status) each event returns
        (V(running), or how the run ended).
      - The former name O(outcome) still works and is deprecated.
    type: list
    elements: str
    choices: [running, successful, failed, interrupted]
    aliases: [outcome]
  authorisation:
    description:
      - Only events authorised this way, for example V(standard), V(normal), V(emergency),
        V(unauthorised), V(dry-run), V(denied) (a gate denied a play and no host changed),
        V(record-only) (only the system of record changed), V(no-change) or V(incomplete) (the recorder lost
        some of the run's task results).
    type: list
    elements: str
  kind:
    description:
      - Only events of these kinds - V(playbook) (an C(ansible-playbook) run) or V(adhoc) (an ad-hoc
        C(ansible) command).
    type: list
    elements: str
    choices: [playbook, adhoc]
  limit:
    description: At most this many events.
    type: int
    default: 50
  include_results:
    description: Also return each event's task results (per host, per loop item) and evidence.
    type: bool
    default: false
  verify:
    description:
      - Also verify the ledger's hash chain and that the query tables this module reads match it, and
        return RV(verification) (see M(changeops.itsm.ledger_verify)).
    type: bool
    default: false
notes:
  - The filters combine with AND; to list events that match one filter or another, query once per filter.
seealso:
  - plugin: changeops.itsm.change_recorder
    plugin_type: callback
  - module: changeops.itsm.ledger_verify
"""

EXAMPLES = r"""
- name: Failed or interrupted runs on web01 in the last week
  changeops.itsm.change_event_info:
    host: web01
    since: 7d
    status: [failed, interrupted]
  register: failed_runs

- name: Unauthorised changes to web01 in the last week
  changeops.itsm.change_event_info:
    host: web01
    since: 7d
    authorisation: [unauthorised]
  register: unauthorised_changes

- name: Ad-hoc commands of the last day (module, host pattern, redacted arguments)
  changeops.itsm.change_event_info:
    kind: [adhoc]
    since: 24h
  register: adhoc_commands

- name: One run with everything it did
  changeops.itsm.change_event_info:
    run_id: "{{ run_id }}"
    include_results: true
    verify: true
  register: run
"""

RETURN = r"""
change_events:
  description: Matching change events, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    run_id:
      description: Unique id of the playbook run.
      type: str
    started_at:
      description: Start time, ISO 8601 UTC.
      type: str
    ended_at:
      description: End time, ISO 8601 UTC; null while running.
      type: str
    status:
      description:
        - V(running), V(successful), V(failed) or V(interrupted); the O(status) option filters on it.
      type: str
    dry_run:
      description: True for a check-mode run, which changed nothing.
      type: bool
    user:
      description: Who ran the playbook.
      type: str
    controller:
      description: Host name of the controller.
      type: str
    playbook:
      description: The (first) playbook path; null for an ad-hoc command.
      type: str
    kind:
      description: V(playbook) or V(adhoc).
      type: str
    adhoc:
      description: For an ad-hoc command, its C(module), host C(pattern) and C(args) (redacted).
      type: dict
    plays:
      description:
        - The plays, each with C(hosts) (every host it ran on) and, for a play run in C(serial) batches,
          C(batches) (the hosts of each batch).
      type: list
      elements: dict
    record_lost:
      description:
        - Present when the recorder lost entries of this run (neither the ledger nor any spool location took
          them) - C(entries) (how many), C(kinds) (how many of each kind) and C(markers) (when and why).
      type: dict
    authorisation:
      description: How the run's changes were authorised.
      type: str
    authorisations:
      description:
        - Every gate decision of the run, with the change policy it was made under and the people involved.
      type: list
      elements: dict
      contains:
        play:
          description: The play the decision is for.
          type: str
        allowed:
          description: Whether the decision allowed the play.
          type: bool
        type:
          description: V(standard), V(normal), V(emergency), V(dry-run) or V(denied).
          type: str
        reference:
          description: Standard change template or change request number.
          type: str
        policy:
          description:
            - C(state) (V(published), or V(unpublished) when no policy was published and the configured file decided),
              C(version) (published versions), C(sha256) and C(source).
          type: dict
        identities:
          description:
            - C(runner) (the account that ran the play), and for a change request C(requester) and C(approvers)
              (C({name, source, at}) each), for an emergency C(declared_by).
          type: dict
    hosts:
      description: Per-host counts, when one event was asked for by O(run_id).
      type: list
      elements: dict
    results:
      description: Task results when O(include_results=true).
      type: list
      elements: dict
  sample:
    - run_id: 6f1c0c3e2b7f4bd0a1c6f0b3f7a2d9e1
      status: successful
      authorisation: standard
verification:
  description: Verification report (chain and query tables), when O(verify=true).
  returned: when requested
  type: dict
  sample:
    valid: true
    entries_checked: 1204
    summary: "ledger chain verified: 1204 entries, head 3f9a0c5d1e2b4a67"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.change_events import (
    CHANGE_EVENT_INFO_SPEC,
    query_change_events,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHANGE_EVENT_INFO_SPEC, supports_check_mode=True)
    run_module(module, query_change_events)


if __name__ == "__main__":
    main()
