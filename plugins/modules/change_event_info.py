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
  decision_id:
    description:
      - Return the whole change gate decision of this id as RV(decision), and the change event that holds it as the
        only one in RV(change_events); the other filters are not applied.
      - A failed M(changeops.itsm.change_gate) task returns the id (RV(changeops.itsm.change_gate#module:decision_id)),
        so a C(rescue) section reads the decision with O(decision_id) set to
        C({{ ansible_failed_result.decision_id }}).
      - Read from the primary even when O(postgresql_read_dsn) is set, so a decision just made is found.
      - A decision that could not be recorded (the gate's C(recorded) is false) is in no ledger - RV(decision) is
        then null, and the gate's own result holds all there is.
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
  triage:
    description:
      - "What changed before this incident? Instead of listing events, return RV(triage): the changes that started
        in the O(triage.window) before O(triage.at) and touched the CI or service, its hosts, or anything it depends
        on (the CMDB's relationships followed outbound), ranked by proximity in time and in the dependency graph,
        with what each changed (tasks, files, packages). For example C(triage: {service: billing, at: 2026-11-24T02:10:00Z,
        window: 24h}). See C(docs/metrics.md) in the collection."
    type: dict
    suboptions:
      ci:
        description: The CI (name or ci_id) the incident is on. Give O(triage.ci) or O(triage.service).
        type: str
      service:
        description: The service the incident is on (a CI of that name, and the hosts that list it in their C(services)).
        type: str
      at:
        description: When the incident started, ISO 8601 or a duration back from now (V(2h)); default now.
        type: str
      window:
        description: How far back from O(triage.at) to look (V(24h), V(90m), V(3d)).
        type: str
        default: 24h
      max_depth:
        description: Levels of "depends on" followed from the CI or service (V(0) for the CI itself only).
        type: int
        default: 3
      limit:
        description: At most this many changes, the best ranked.
        type: int
        default: 20
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

- name: Patch, and when the change gate denies it, read its whole decision before stopping
  block:
    - name: Change gate
      changeops.itsm.change_gate:
        change_request: CHG0000042
  rescue:
    - name: The whole decision of the denial (context, hosts, collisions, blast radius)
      changeops.itsm.change_event_info:
        decision_id: "{{ ansible_failed_result.decision_id }}"
      register: denial
      run_once: true
      # a gate that failed without recording a decision (an invalid policy, the system of record down) has none
      when: ansible_failed_result.recorded | default(false)
    - name: Stop the play (a rescued failure would let it go on, unauthorised)
      ansible.builtin.fail:
        msg: "{{ ansible_failed_result.msg }}"

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
triage:
  description:
    - With O(triage) - C(anchor), C(at), C(since), C(dependencies) (each C(ci), C(class), C(depth), C(path)),
      C(change_count) and C(changes), best first, each with C(run_id), C(started_at), C(status), C(playbook),
      C(user), C(authorisation), C(score), C(depth), C(minutes_before), C(touched) (C(ci), C(host), C(path)) and
      C(changed) (C(tasks), C(files), C(packages)). The ranking is C(0.5 * recency + 0.5 / (1 + depth)).
  returned: when O(triage) is set
  type: dict
decision:
  description:
    - With O(decision_id), the whole gate decision of that id, as the C(run.gate) ledger entry holds it (see the
      RV(changeops.itsm.change_gate#module:decision) of M(changeops.itsm.change_gate)), with the entry's ledger
      C(seq); null when no decision of that id is recorded.
  returned: when O(decision_id) is set
  type: dict
  sample:
    decision_id: 2f0c8a4e6b1d4c3a9e7f5b2d1c0a9e8f
    allowed: false
    type: denied
    reasons: ["CHG0000042 is not approved (approval: requested)"]
    context: {play: Patch, modules: [ansible.builtin.copy]}
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
    CHANGE_EVENT_INFO_MUTUALLY_EXCLUSIVE,
    CHANGE_EVENT_INFO_SPEC,
    query_change_events,
)
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHANGE_EVENT_INFO_SPEC,
                           mutually_exclusive=CHANGE_EVENT_INFO_MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    run_module(module, query_change_events)


if __name__ == "__main__":
    main()
