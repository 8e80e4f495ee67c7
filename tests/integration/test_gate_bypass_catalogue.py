# -*- coding: utf-8 -*-
"""The adversarial catalogue: plays written to get a protected change past the gate as a standard change.

Each row is a play and the decision the gate must reach (real ``ansible-playbook`` runs). The
policy's one template covers anything (its conditions are ``true`` and it accepts what the gate
cannot see), so only the protected areas, and what the gate counts as touching them, stand
between these plays and a standard change. A row that the gate waved through once is a bypass
that was found: grow the table with every new one.

How the rows bypassed the gate before (all authorised as standard changes):

* conditions the gate judged false at gate time although they read state that the play itself
  changes before the task runs: tests (``is exists``, ``is file``...) and filters (``realpath``)
  over the file system, the clock (``strftime``), chance (``random``), directly or through the
  value of a variable, on a task, a block or an include;
* a variable set by a module's ``ansible_facts`` (any module may return facts, which override
  inventory variables), judged with the inventory's value;
* stopping ``auditd``, running ``auditctl -e 0``, writing ``/etc/sysctl.d``, ``/etc/login.defs`` or
  the CA store: security functions no built-in area covered.

Rows that already held (lookups, registered results, facts, ``hostvars``) stay as regression rows,
and the control rows show the gate still judges what it can (an extra var, a handler no task
notifies): a test that could not fail would prove nothing.
"""

from __future__ import annotations

import os
import re

import pytest

from support.change_requests import add_ci, gate_entries

pytestmark = [pytest.mark.integration, pytest.mark.backends("sqlite")]

POLICY = """
templates:
  - name: routine
    description: anything the CAB considers routine (it can never cover a protected area)
    conditions: ["`true`"]
    allow_dynamic_includes: true
    allow_unresolved_paths: true
    allow_opaque_actions: true
    allow_unresolved_delegations: true
"""

PLAY = """
- name: Catalogue row
  hosts: web
  gather_facts: false
  vars:
    flag: "{{{{ playbook_dir }}}}/out/flag"
{vars}
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
        fail_on_deny: {fail_on_deny}
      register: gate
{stop}
    - name: An ordinary change that creates the flag the next task tests
      ansible.builtin.copy:
        content: "on"
        dest: "{{{{ flag }}}}"
        mode: "0644"
{tasks}
  handlers:
{handlers}
"""

STOP = """    - name: Stop here (the gate has judged the whole play)
      ansible.builtin.meta: end_play
"""

FACTS_MODULE = '''#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule

AnsibleModule(argument_spec={}).exit_json(changed=False, ansible_facts={"feature_on": True})
'''


def protected(area, condition=None, why=None):
    """The reason a row must produce: the area, and the condition the gate could not judge and why (a regex)."""
    text = r"play touches protected area %s \(.*" % area
    if condition:
        text += re.escape(condition) + r".*which the gate cannot judge before the play runs: .*"
    if why:
        text += re.escape(why)
    return text


ROWS = [
    # --- conditions over the state of the host or the controller ---------------------------------
    dict(id="is-exists-of-a-file-an-earlier-task-creates", stop=False, expect="denied",
         tasks="""
    - name: Authorise my key (only once the flag exists)
      ansible.builtin.copy:
        content: "ssh-ed25519 AAAA attacker"
        dest: "{{ playbook_dir }}/out/.ssh/authorized_keys"
        mode: "0600"
      when: flag is exists
""", reason=protected("users_keys", "flag is exists", "the test exists reads the file system")),
    dict(id="is-file-of-a-literal-path", expect="denied", tasks="""
    - name: Drop an audit rule override
      ansible.builtin.copy:
        content: "-e 0"
        dest: /etc/audit/rules.d/00-off.rules
        mode: "0640"
      when: "'/etc/changeops-test-no-such-flag' is file"
""", reason=protected("audit_logging", "is file")),
    dict(id="is-directory-inherited-from-a-block", expect="denied", tasks="""
    - name: Only on hosts prepared for it
      when: flag is directory
      block:
        - name: Relax SELinux
          ansible.builtin.copy:
            content: "SELINUX=permissive"
            dest: /etc/selinux/config
            mode: "0644"
""", reason=protected("mandatory_access_control", "is directory")),
    dict(id="a-variable-whose-value-tests-the-file-system", expect="denied",
         vars="    flag_present: \"{{ flag is exists }}\"\n", tasks="""
    - name: Lower the kernel's guard
      ansible.builtin.copy:
        content: "kernel.randomize_va_space = 0"
        dest: /etc/sysctl.d/99-off.conf
        mode: "0644"
      when: flag_present | bool
""", reason=protected("kernel_security", "flag_present | bool", "flag_present is a template: the test exists")),
    dict(id="the-clock", expect="denied", tasks="""
    - name: Weaken passwords (only in a year the gate never sees)
      ansible.builtin.lineinfile:
        path: /etc/login.defs
        regexp: "^PASS_MAX_DAYS"
        line: "PASS_MAX_DAYS 99999"
      when: ("%Y" | strftime | int) < 2000
""", reason=protected("login_policy", "strftime", "the filter strftime reads the clock")),
    dict(id="chance", expect="denied", tasks="""
    - name: Trust another CA, sometimes
      ansible.builtin.copy:
        content: "-----BEGIN CERTIFICATE-----"
        dest: /usr/local/share/ca-certificates/other.crt
        mode: "0644"
      when: (1000000 | random) == 7
""", reason=protected("trust_store", "random", "the filter random reads chance")),
    dict(id="realpath-of-a-link", expect="denied", tasks="""
    - name: Write through a link the play may point anywhere
      ansible.builtin.copy:
        content: "PermitRootLogin yes"
        dest: /etc/ssh/sshd_config.d/50-x.conf
        mode: "0644"
      when: (flag | realpath) == '/etc'
""", reason=protected("sshd", "realpath", "the filter realpath reads the file system")),
    dict(id="an-include-guarded-by-a-state-test", expect="denied",
         files={"more.yml": """
- name: Open the firewall
  ansible.builtin.copy:
    content: "flush ruleset"
    dest: /etc/nftables.conf
    mode: "0644"
"""}, tasks="""
    - name: Load more once the flag exists
      ansible.builtin.include_tasks: more.yml
      when: flag is exists
""", reason=protected("firewall", "flag is exists")),
    dict(id="a-variable-a-module-sets-through-its-facts", expect="denied",
         files={"library/site_settings.py": FACTS_MODULE}, inventory_vars="feature_on=false", tasks="""
    - name: Read the site's settings (returns ansible_facts, which become variables)
      site_settings:
    - name: Enable the feature
      ansible.builtin.copy:
        content: "%admins ALL=(ALL) NOPASSWD: ALL"
        dest: /etc/sudoers.d/feature
        mode: "0440"
      when: feature_on | bool
""", reason=protected("sudoers", "feature_on | bool", "may return facts that set variables")),
    # --- security functions the built-in areas did not cover -----------------------------------------
    dict(id="stopping-auditd", expect="denied", tasks="""
    - name: Stop auditing
      ansible.builtin.service:
        name: auditd
        state: stopped
""", reason=r"play touches protected area audit_logging \(service auditd at pb\.yml:\d+\)"),
    dict(id="auditctl-in-a-command", expect="denied", tasks="""
    - name: Disable auditing without touching a file
      ansible.builtin.command: auditctl -e 0
""", reason=r"play touches protected area audit_logging \(command auditctl at pb\.yml:\d+\)"),
    dict(id="systemctl-in-a-shell-line", expect="denied", tasks="""
    - name: Stop AppArmor in passing
      ansible.builtin.shell: "echo maintenance && systemctl stop apparmor.service"
""", reason=r"play touches protected area mandatory_access_control \(service apparmor at pb\.yml:\d+\)"),
    dict(id="a-service-known-only-at-run-time", expect="denied", tasks="""
    - name: Stop services from a list
      ansible.builtin.service:
        name: "{{ item }}"
        state: stopped
      loop: [auditd]
""", reason=r"the gate cannot tell which service pb\.yml:\d+ ansible\.builtin\.service name=\{\{ item \}\} manages "
            r"before the play runs; standard change 'routine' covers that only with allow_unresolved_services"),
    # --- regression rows: these already held ---------------------------------------------------------
    dict(id="a-lookup", expect="denied", tasks="""
    - name: Only when a file on the controller says so
      ansible.builtin.copy:
        content: "x"
        dest: /etc/pam.d/common-auth
        mode: "0644"
      when: lookup('ansible.builtin.file', flag, errors='ignore') == 'on'
""", reason=protected("pam", "lookup(")),
    dict(id="a-registered-result", expect="denied", tasks="""
    - name: Probe
      ansible.builtin.stat:
        path: "{{ flag }}"
      register: probe
    - name: Only when the probe found it
      ansible.builtin.copy:
        content: "x"
        dest: /etc/pam.d/common-auth
        mode: "0644"
      when: probe.stat.exists
""", reason=protected("pam", "probe.stat.exists", "registers probe")),
    dict(id="a-fact", expect="denied", tasks="""
    - name: Only on a distribution no host has yet
      ansible.builtin.copy:
        content: "x"
        dest: /etc/pam.d/common-auth
        mode: "0644"
      when: ansible_facts.get('distribution') == 'Nonexistent'
""", reason=protected("pam", "ansible_facts")),
    dict(id="hostvars", expect="denied", tasks="""
    - name: Only when another variable says so
      ansible.builtin.copy:
        content: "x"
        dest: /etc/pam.d/common-auth
        mode: "0644"
      when: hostvars[inventory_hostname].get('enable_pam', false)
""", reason=protected("pam", "hostvars")),
    # --- control rows: what the gate can judge, it still judges ----------------------------------------
    dict(id="control-an-extra-var-rules-the-task-out", expect="standard", args=("-e", "enable_pam=false"), tasks="""
    - name: Only when asked for on the command line
      ansible.builtin.copy:
        content: "x"
        dest: /etc/pam.d/common-auth
        mode: "0644"
      when: enable_pam | bool
""", reason=None),
    dict(id="control-a-handler-no-task-notifies", expect="standard", tasks="""
    - name: An ordinary change that notifies nothing
      ansible.builtin.debug:
        msg: nothing to restart
""", handlers="""
    - name: Restart auditd
      ansible.builtin.service:
        name: auditd
        state: restarted
""", reason=None),
    dict(id="a-handler-a-task-notifies", expect="denied", tasks="""
    - name: An ordinary change that notifies the handler
      ansible.builtin.copy:
        content: "x"
        dest: "{{ playbook_dir }}/out/app.conf"
        mode: "0644"
      notify: Reload rules
""", handlers="""
    - name: Reload rules
      ansible.builtin.command: augenrules --load
""", reason=r"play touches protected area audit_logging \(command augenrules at pb\.yml:\d+\)"),
]


def _play(row):
    return PLAY.format(vars=row.get("vars", ""), fail_on_deny="true" if row.get("stop") is False else "false",
                       stop=STOP if row.get("stop", True) else "", tasks=row["tasks"].rstrip("\n"),
                       handlers=(row.get("handlers") or "    []").rstrip("\n"))


@pytest.mark.parametrize("row", ROWS, ids=[row["id"] for row in ROWS])
def test_catalogue(project, sor, row):
    host_vars = {"web01": dict(item.split("=", 1) for item in row.get("inventory_vars", "").split() if item)}
    project.write_inventory(["web01"], group="web", host_vars=host_vars)
    project.write("policy.yml", POLICY)
    for name, content in (row.get("files") or {}).items():
        project.write(name, content)
    project.write("pb.yml", _play(row))
    os.makedirs(project.path("out", ".ssh"), exist_ok=True)
    add_ci(sor, "web01", environment="test")

    run = project.run("pb.yml", *row.get("args", ()), check=False)
    [decision] = gate_entries(sor)
    reasons = decision["reasons"]
    assert decision["type"] == row["expect"], "%s\n%s" % (reasons, run.stdout[-3000:])
    if row["reason"]:
        assert any(re.search(row["reason"], reason) for reason in reasons), reasons
    if row.get("stop") is False:
        # the real run: the protected file the play meant to write was not written
        assert run.returncode != 0
        assert not os.path.exists(project.path("out", ".ssh", "authorized_keys"))
