#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: change_gate
short_description: Decide whether a play may change the hosts it targets, and record the decision
version_added: 0.1.0
description:
  - Put it as the first task of a play. It decides, before any host is touched, whether the change
    the play is about to make is authorised, records the decision in the system of record (a
    C(run.gate) ledger entry the P(changeops.itsm.change_recorder#callback) callback attaches to
    the run's change event) and fails the play with every reason when it is not.
  - It runs once per play (per batch with C(serial)) on the controller, whatever the number of
    hosts; C(run_once) is not needed. It reads the play's targeted hosts (the current batch), the
    roles, tags, modules and file paths of the tasks that will run, check mode and the user, and
    looks the hosts up as configuration items (environment, class, service).
  - The tasks that will run include those of the dynamic includes the gate can read before the play
    runs - C(include_tasks) of a literal file name, C(include_role) of a literal role name - in real
    and C(--check) runs alike, so a protected area behind an include is still a protected area.
    An include or task whose C(when) is false for every host of the batch, as far as the gate can
    tell before the play runs, does not count. It judges a condition only over variables no task
    of the play may change (extra vars, or inventory and play variables that nothing sets), with
    each host's own variables; a condition it cannot judge counts as true (see
    C(docs/change-gate.md) in the collection).
  - B(standard) - no O(change_request) and no O(emergency); a standard change template of the
    policy matches the play (its JMESPath conditions hold and its limits allow it) and the play
    touches no protected area.
  - B(normal) - O(change_request) is approved, in state V(scheduled) or V(implement), now is inside
    its planned window and every targeted host is one of its affected CIs. Its approvals must count under the
    policy in force (approver groups, not the requester; approvals recorded without an authenticated identity
    count only where the policy names no approver groups), and the account running the play must not be its
    only approver (separation of duties, see C(docs/policy-schema.md)).
  - A O(change_request) of type V(standard) is pre-approved only through its policy template - it must
    name one (its C(template) field), and the decision is B(standard) only when that template covers
    the play as above (conditions, limits, no protected area), besides the state, window and
    affected CI checks of a normal change.
  - B(emergency) - O(emergency=true) by a user the policy lets declare emergencies, with a
    justification. Allowed, recorded and flagged for retrospective review.
  - Freeze windows of the policy deny every change type they do not list, for the environments they cover.
  - Before deciding it computes the B(blast radius) - the CIs that depend on the hosts through the CMDB's
    relationships, with their criticality and owner - which template conditions can test (C(blast_radius)), and
    looks for B(collisions) - runs in progress on the hosts, other approved change requests on the same CIs now,
    the policy's recurring maintenance windows - which the policy denies, warns about or allows per change type
    (see C(docs/change-gate.md) in the collection).
  - B(dry-run) - in a C(--check) run the play is always allowed; the decision a real run would get is
    returned under C(decision.would_be). What counts is the run's C(--check), not the gate task's own
    C(check_mode). A play with tasks that run for real in a C(--check) run (C(check_mode) set to V(false)
    without a literal C(changed_when) V(false), which declares a read-only probe) is judged as a real run,
    and so is a play with a dynamic include whose tasks the gate cannot read before the play runs
    (a file or role name from a variable); the tasks of the includes it can read are read.
  - B(denied) otherwise, with every reason. It fails closed - if the system of record cannot be read
    or the decision cannot be recorded, the decision is denied with that reason.
  - A policy file that is not valid fails the task (and so the play) with one error naming the
    file, the key path, its line and the value, whatever O(fail_on_deny) says.
author:
  - changeops.itsm maintainers (@changeops)
extends_documentation_fragment:
  - changeops.itsm.backend
  - changeops.itsm.servicenow
attributes:
  check_mode:
    description:
      - C(--check) runs are always allowed and recorded as type V(dry-run), with the decision a real run would get,
        unless some task of the play runs for real (C(check_mode) set to V(false), and not declared read-only with
        C(changed_when) V(false)) or a dynamic include cannot be read before the play runs.
      - The gate task's own C(check_mode) is ignored.
    support: full
  diff_mode:
    description: Decides and records only; there is nothing to diff.
    support: none
options:
  policy:
    description:
      - Path of a change policy file (YAML; see C(docs/policy-schema.md) and
        C(playbooks/policies/change-policy.example.yml) in the collection).
      - If not set, E(CHANGEOPS_GATE_POLICY), then C(gate_policy) in the C([changeops]) section of
        C(ansible.cfg) (relative to that file).
      - Once a change policy is published (P(changeops.itsm.change_policy#module)), the gate decides under the
        published version, and this file is used only when its sha256 is that version's; any other file is
        denied, naming both hashes - in a C(--check) run it is evaluated as a draft, beside the published policy
        (RV(decision.draft)).
      - Until a policy is published, this file decides (without one, the built-in default policy - no standard
        templates, the default protected areas, no freezes, emergencies by anyone with a justification), and
        decisions record C(policy.state=unpublished).
    type: path
  change_request:
    description:
      - Number of the change request that authorises this play (normal change), for example V(CHG0000042).
      - With O(emergency=true), the emergency change request to link the decision to (optional).
      - When the task sets none of O(change_request), O(emergency) and O(standard_template), the environment
        variable E(CHANGEOPS_CHANGE_REQUEST) names it (the change_recorder reads the same variable for ad-hoc
        commands).
      - With ServiceNow enabled (O(instance), E(CHANGEOPS_SERVICENOW)), the CHG is read live from ServiceNow
        (state, approval, type, planned window, affected CIs, scheduling conflicts); a host is covered by its
        CI's ServiceNow sys_id or its name, and each conflict denies. Anything that stops the reading denies, naming
        it, unless the policy's C(servicenow.local_fallback) allows judging the gate's last reading
        (see U(https://github.com/changeops/changeops.itsm/blob/main/docs/servicenow.md)).
    type: str
  standard_template:
    description:
      - Consider only this standard change template, and report every way it does not cover the play.
      - By default any template of the policy may match.
    type: str
  emergency:
    description:
      - Declare an emergency change (needs O(justification) unless the policy says otherwise).
      - When the task sets none of O(change_request), O(emergency) and O(standard_template), a non-empty
        environment variable E(CHANGEOPS_EMERGENCY) declares one, its value being the justification.
    type: bool
    default: false
  justification:
    description: Why this is an emergency (incident number, impact). Recorded with the decision.
    type: str
  fail_on_deny:
    description:
      - Fail the task, and so the play, when the change is denied. The failed result holds the
        message with every reason (RV(msg)), the reasons as a list (RV(reasons)), RV(decision_id) and other short
        fields (RV(type), RV(reference), RV(change_request), RV(standard), RV(policy)), not the whole decision,
        so the reasons are what Ansible prints; the whole decision is in the ledger (C(run.gate) entry), which
        M(changeops.itsm.change_event_info) returns by O(changeops.itsm.change_event_info#module:decision_id)
        (in a C(rescue) section, C(ansible_failed_result.decision_id)).
      - With V(false) the decision is returned (and recorded) and the play goes on; use RV(allowed) in
        later conditions and RV(decision) for the whole decision. A play that then changes hosts is
        recorded as unauthorised.
    type: bool
    default: true
  wait_for_approval:
    description:
      - When O(change_request) still awaits approval (state V(new), V(assess) or V(authorise), not
        rejected), poll it until it is approved and scheduled (go on), rejected (deny) or
        O(approval_timeout) passes (deny), with a progress line on each poll - the way pipeline
        change gates hold a deployment step.
    type: bool
    default: false
  approval_timeout:
    description: Seconds to wait for approval with O(wait_for_approval).
    type: int
    default: 3600
  poll_interval:
    description: Seconds between two reads of the change request with O(wait_for_approval).
    type: int
    default: 60
notes:
  - With the C(free) strategy Ansible runs the gate once per host; each evaluation decides for the
    whole play and identical decisions are recorded once.
  - What the gate cannot see before the play runs is listed in the change context, never skipped -
    includes whose tasks it cannot read in advance (C(include_tasks) or C(include_role) of a name from
    a variable) as C(dynamic_includes), paths that
    need run-time values as C(unresolved_paths), commands (C(shell), C(command), C(raw), C(script)...)
    as C(opaque_actions) (unless declared read-only with C(changed_when) V(false)), delegations to hosts
    known only at run time as C(unresolved_delegations). A standard change template covers such a play
    only when it says so (C(allow_dynamic_includes), C(allow_unresolved_paths), C(allow_opaque_actions),
    C(allow_unresolved_delegations)).
  - Hosts that tasks delegate to (C(delegated_hosts)) must be affected CIs of a normal change too, and
    count for a standard change template's environments and host limit and for freezes; delegating to
    the controller (C(localhost)) does not count.
seealso:
  - module: changeops.itsm.change_request
  - plugin: changeops.itsm.change_recorder
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Monthly patching (a pre-authorised standard change)
  hosts: web
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: /etc/changeops/policy.yml

    - name: Patch
      ansible.builtin.apt:
        upgrade: safe

- name: SSH hardening under an approved change request
  hosts: web
  roles:
    - ssh_hardening
  pre_tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: /etc/changeops/policy.yml
        change_request: CHG0000042
        wait_for_approval: true
        approval_timeout: 1800
        poll_interval: 30

- name: Fix a production outage now
  hosts: db01
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        emergency: true
        justification: "INC0012345: primary database refuses connections"

- name: Decide, but let the play decide what to do
  hosts: all
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        fail_on_deny: false
      register: gate

    - name: Only report when not authorised
      ansible.builtin.debug:
        msg: "{{ gate.decision.reasons }}"
      when: not gate.allowed
"""

RETURN = r"""
allowed:
  description: Whether the play may go on.
  returned: always
  type: bool
  sample: false
msg:
  description: The decision in one line, with every reason when denied.
  returned: always
  type: str
  sample: "change gate denied play 'Harden SSH': CHG0000012 is in state assess, not scheduled or implement;
    web03 is not an affected CI of CHG0000012"
decision_id:
  description:
    - Id of the decision, when the gate failed the task; the whole decision is the C(run.gate) ledger entry of
      that id (M(changeops.itsm.change_event_info) returns it with
      O(changeops.itsm.change_event_info#module:decision_id), and under C(gates) of its change event; the change
      register shows it).
  returned: when the change is denied and O(fail_on_deny=true)
  type: str
  sample: 2f0c8a4e6b1d4c3a9e7f5b2d1c0a9e8f
recorded:
  description:
    - Whether the decision was written to the system of record, when the gate failed the task (false when the
      system of record could not be read or written - the denial is then in this result only).
  returned: when the change is denied and O(fail_on_deny=true)
  type: bool
reasons:
  description: Every reason the play was denied, one string each (RV(msg) joins them), when the gate failed the task.
  returned: when the change is denied and O(fail_on_deny=true)
  type: list
  elements: str
  sample: ["CHG0000012 is not approved (approval: requested)", "web03 is not an affected CI of CHG0000012"]
type:
  description: V(denied), when the gate failed the task (the decision's type).
  returned: when the change is denied and O(fail_on_deny=true)
  type: str
reference:
  description: The decision's reference (null for a denial), when the gate failed the task.
  returned: when the change is denied and O(fail_on_deny=true)
  type: str
run_id:
  description: The run the decision was recorded under, when the gate failed the task.
  returned: when the change is denied and O(fail_on_deny=true)
  type: str
play:
  description: Name of the play, when the gate failed the task.
  returned: when the change is denied and O(fail_on_deny=true)
  type: str
host_count:
  description: How many hosts the decision was about (the batch), when the gate failed the task.
  returned: when the change is denied and O(fail_on_deny=true)
  type: int
checked_at:
  description: When the gate decided (ISO 8601 UTC), when the gate failed the task.
  returned: when the change is denied and O(fail_on_deny=true)
  type: str
change_request:
  description:
    - The change request the play asked for, as the gate read it (C(number), C(type), C(state), C(approval),
      C(template)), when the gate failed the task.
  returned: when the change is denied under an existing change request and O(fail_on_deny=true)
  type: dict
standard:
  description:
    - The standard change templates considered, when the gate failed the task - C(covered_by) (empty for a
      denial), C(candidates) (templates whose conditions held, but not their limits) and C(closest) (the
      templates to look at - the candidates, the named template, else those failing the fewest conditions).
  returned: when the change is denied as a standard change and O(fail_on_deny=true)
  type: dict
emergency:
  description: The emergency declared (C(declared_by), C(change_request)), when the gate failed the task.
  returned: when an emergency is denied and O(fail_on_deny=true)
  type: dict
policy:
  description:
    - The policy the decision was made under (C(state), and C(version) once published), when the gate failed the
      task; the recorded decision names its file and sha256.
  returned: when the change is denied and O(fail_on_deny=true)
  type: dict
decision:
  description:
    - The decision document, as recorded in the C(run.gate) ledger entry.
    - Not returned when the gate fails the task (see O(fail_on_deny)), so Ansible's C(fatal) line shows the reasons
      instead of kilobytes of context.
  returned: unless the change is denied and O(fail_on_deny=true)
  type: dict
  contains:
    decision_id:
      description: Id of the decision.
      type: str
    allowed:
      description: Whether the play may go on.
      type: bool
    type:
      description: V(standard), V(normal), V(emergency), V(dry-run) or V(denied).
      type: str
    reference:
      description: The standard change template name, the change request number, or V(emergency).
      type: str
    reasons:
      description: Every reason the play was denied (empty when allowed).
      type: list
      elements: str
    review_required:
      description:
        - True for emergency changes, which need a retrospective review, and for decisions taken from the
          ServiceNow local fallback.
      type: bool
    servicenow:
      description:
        - With ServiceNow enabled, an allowing decision under a ServiceNow CHG (read live, or created from a
          policy template's C(servicenow_template)) names it here (C(number), C(sys_id), C(instance)); the run
          is recorded on that CHG.
      returned: when allowed under a ServiceNow CHG
      type: dict
    protected_areas:
      description:
        - Protected areas the play touches, each with C(area) and C(matched_by).
        - A module or path in C(matched_by) says which task calls or writes it (C(path /etc/ssh/x at tasks/main.yml:12)).
      type: list
      elements: dict
    freezes:
      description: Freeze windows in force for the play's hosts.
      type: list
      elements: dict
    blast_radius:
      description:
        - What depends on the targeted and delegated hosts through the CMDB's relationships (walked inbound, bounded
          by the policy's C(blast_radius)) - C(services) (nearest first, at most 50 listed, each with C(name),
          C(class), C(environment), C(criticality), C(owner), C(support_group), C(depth), C(via)), C(service_count),
          C(names), C(criticalities), C(highest_criticality), C(environments), C(owners), C(hosts), C(depth),
          C(truncated). Template conditions see it whole as C(blast_radius) in the change context.
      type: dict
    collisions:
      description:
        - Other work on the same CIs now - runs in progress, approved change requests whose window contains now,
          occurrences of the policy's maintenance windows - each with C(kind), C(reference), C(name), C(owner),
          C(window), C(cis) and the C(action) the policy took (V(deny), V(warn), V(allow), or V(ignored) with why,
          for a run whose process is gone).
      type: list
      elements: dict
    warnings:
      description: Collisions the policy lets through with a warning (also printed).
      type: list
      elements: str
    run_id:
      description: Run the decision belongs to; generated (see C(run_id_generated)) without the recorder.
      type: str
    play_id:
      description: Id of the play.
      type: str
    hosts:
      description:
        - Hosts the decision covers (the play's current batch).
        - Not returned for a batch of more than 1,000 hosts once the decision is recorded (C(ansible_play_batch)
          lists them, the decision's C(host_count) says how many); the recorded decision holds them all.
      returned: when the batch has at most 1,000 hosts, or the decision could not be recorded
      type: list
      elements: str
    would_be:
      description: In check mode, the decision a real run would get.
      type: dict
    policy:
      description:
        - The change policy the decision was made under - C(state) (V(published) with C(version), C(published_at) and
          C(publisher); or V(unpublished) when no policy is published and the configured file or the built-in default
          decided), C(sha256), C(source), and the number of templates, the protected areas and freezes.
      type: dict
    identities:
      description:
        - Who took part, each C({name, source}) - C(runner) (the account running the play), for a change request
          C(requester) and C(approvers) (with C(at)), for an emergency C(declared_by).
      type: dict
    draft:
      description:
        - In a C(--check) run whose policy file is not the published version, that file evaluated as a draft beside
          the published policy - C(policy) (C(state=draft), C(sha256), C(source)) and C(would_be).
      returned: in check mode, with a draft policy file
      type: dict
    context:
      description: The change context the policy was evaluated against, without per-host CI records.
      type: dict
    recorded:
      description: Whether the decision was written to the system of record.
      type: bool
  sample:
    decision_id: 2f0c8a4e6b1d4c3a9e7f5b2d1c0a9e8f
    allowed: true
    type: standard
    reference: patching
    reasons: []
    review_required: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.changeops.itsm.plugins.module_utils.change_gate import CHANGE_GATE_SPEC, module_operation
from ansible_collections.changeops.itsm.plugins.module_utils.operation import run_module


def main():
    module = AnsibleModule(argument_spec=CHANGE_GATE_SPEC, supports_check_mode=True)
    run_module(module, module_operation)


if __name__ == "__main__":
    main()
