# -*- coding: utf-8 -*-
"""What the gate reads of a play before it runs: dynamic includes, and conditions it can judge now.

Plays are parsed by Ansible itself (DataLoader, InventoryManager, VariableManager, Playbook) from
files in a temporary project, as ansible-playbook parses them; the gate's inspection then runs on
the parsed play with the first host's variables, as the action plugin does.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from ansible import context
from ansible.inventory.manager import InventoryManager
from ansible.module_utils.common.collections import ImmutableDict
from ansible.parsing.dataloader import DataLoader
from ansible.playbook import Playbook
from ansible.template import Templar
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
from ansible.utils.vars import load_extra_vars
from ansible.vars.manager import VariableManager

from ansible_collections.changeops.itsm.plugins.plugin_utils import play_inspection
from ansible_collections.changeops.itsm.plugins.plugin_utils.play_inspection import inspect_play
from support.project import COLLECTIONS_PATH as COLLECTIONS


@pytest.fixture(autouse=True)
def collection_loader():
    """Tasks resolve their action (ansible.builtin.copy...) through Ansible's collection loader, as in ansible-playbook."""
    _AnsibleCollectionFinder(paths=[COLLECTIONS], scan_sys_paths=False)._install()
    yield
    _AnsibleCollectionFinder._remove()


HARDENING_LIKE = {
    "site.yml": """
        - name: Harden
          hosts: web
          gather_facts: false
          roles:
            - harden
        """,
    "roles/harden/tasks/main.yml": """
        - name: Audit
          ansible.builtin.include_tasks: audit.yml

        - name: Enforce
          when: mode == 'enforce'
          block:
            - name: Remediate
              ansible.builtin.include_tasks: enforce.yml
        """,
    "roles/harden/tasks/audit.yml": """
        - name: Read sshd_config
          ansible.builtin.stat:
            path: "{{ item }}"
          loop: [/etc/ssh/sshd_config]
          changed_when: false
        """,
    "roles/harden/tasks/enforce.yml": """
        - name: Write the sshd drop-in
          ansible.builtin.copy:
            dest: /etc/ssh/sshd_config.d/00-hardening.conf
            content: "PermitRootLogin no\\n"
            mode: "0600"
        """,
}


def inspect(tmp_path, monkeypatch, files, hosts=("web01",), host_vars=None, extra_vars=(), group_vars="",
            check_mode=False):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    lines = ["[web]"] + ["%s %s" % (host, (host_vars or {}).get(host, "")) for host in hosts]
    (tmp_path / "inventory.ini").write_text("\n".join(lines) + "\n" + group_vars)
    # extra vars come from the command line (-e), as for ansible-playbook (which reads them once per process)
    monkeypatch.setattr(context, "CLIARGS", ImmutableDict(extra_vars=tuple(extra_vars)))
    monkeypatch.setattr(load_extra_vars, "extra_vars", None, raising=False)
    loader = DataLoader()
    loader.set_basedir(str(tmp_path))
    inventory = InventoryManager(loader=loader, sources=[str(tmp_path / "inventory.ini")])
    manager = VariableManager(loader=loader, inventory=inventory)
    play = Playbook.load(str(tmp_path / "site.yml"), variable_manager=manager, loader=loader).get_plays()[0]
    batch = [host.name for host in inventory.get_hosts(play.hosts)]
    task_vars = manager.get_vars(play=play, host=inventory.get_host(batch[0]), _hosts=batch, _hosts_all=batch)
    roles, handlers = list(play.roles), list(play.handlers)
    found = inspect_play(play, task_vars, templar=Templar(loader=loader, variables=task_vars),
                         playbook=str(tmp_path / "site.yml"), check_mode=check_mode, hosts=batch)
    assert (play.roles, play.handlers) == (roles, handlers), "reading includes must not change the play"
    return found


def lines_of(texts):
    """``file:line`` made ``file`` (line numbers are the parser's business)."""
    return [re.sub(r":\d+\b", "", text) for text in texts]


def test_a_literal_include_is_read_in_a_real_run_and_its_paths_count(tmp_path, monkeypatch):
    found = inspect(tmp_path, monkeypatch, HARDENING_LIKE, extra_vars=["mode=enforce"])
    assert "/etc/ssh/sshd_config.d/00-hardening.conf" in found["paths"]
    assert found["dynamic_includes"] == []
    assert lines_of(found["read_includes"]) == [
        "roles/harden/tasks/main.yml include_tasks roles/harden/tasks/audit.yml",
        "roles/harden/tasks/main.yml include_tasks roles/harden/tasks/enforce.yml"]
    # the reason can say where the protected path is written
    assert found["touched_at"]["path /etc/ssh/sshd_config.d/00-hardening.conf"].startswith("roles/harden/tasks/enforce.yml:")
    # a module that only reads names no file it touches, literal or not
    assert found["unresolved_paths"] == [] and "/etc/ssh/sshd_config" not in found["paths"]


def test_an_include_whose_condition_is_false_for_every_host_is_not_read(tmp_path, monkeypatch):
    found = inspect(tmp_path, monkeypatch, HARDENING_LIKE, hosts=("web01", "web02"), extra_vars=["mode=audit"])
    assert found["paths"] == []
    assert lines_of(found["skipped_includes"]) == [
        "roles/harden/tasks/main.yml include_tasks enforce.yml (when: mode == 'enforce')"]
    assert lines_of(found["read_includes"]) == ["roles/harden/tasks/main.yml include_tasks roles/harden/tasks/audit.yml"]


@pytest.mark.parametrize("modes, read", [(("audit", "audit", "audit"), False), (("audit", "audit", "enforce"), True)])
def test_a_condition_on_host_variables_is_judged_for_every_host_of_the_batch(tmp_path, monkeypatch, modes, read):
    """The first host is not enough: one host that would run the include is enough to read it."""
    hosts = ("web01", "web02", "web03")
    found = inspect(tmp_path, monkeypatch, HARDENING_LIKE, hosts=hosts,
                    host_vars={host: "mode=%s" % mode for host, mode in zip(hosts, modes)})
    assert ("/etc/ssh/sshd_config.d/00-hardening.conf" in found["paths"]) is read
    assert bool(found["skipped_includes"]) is not read


def test_hosts_with_the_same_values_cost_one_evaluation_and_the_look_ups_are_bounded(tmp_path, monkeypatch):
    hosts = tuple("web%02d" % number for number in range(40))
    modes = {host: "mode=%s" % ("audit" if number % 2 else "check") for number, host in enumerate(hosts)}
    evaluations = []
    real = play_inspection._Conditions._value

    def counting(self, text, closure, variables):
        before = len(self._results)
        value = real(self, text, closure, variables)
        evaluations.append(len(self._results) - before)
        return value

    monkeypatch.setattr(play_inspection._Conditions, "_value", counting)
    found = inspect(tmp_path, monkeypatch, HARDENING_LIKE, hosts=hosts, host_vars=modes)
    assert found["paths"] == [] and len(evaluations) == 40
    assert sum(evaluations) == 2, "one evaluation per distinct value of mode"

    # with fewer look-ups left than hosts to judge, the condition counts as possibly true
    monkeypatch.setattr(play_inspection, "MAX_VARIABLE_LOOKUPS", 20)
    found = inspect(tmp_path, monkeypatch, HARDENING_LIKE, hosts=hosts, host_vars=modes)
    assert "/etc/ssh/sshd_config.d/00-hardening.conf" in found["paths"]


def later(before="ansible.builtin.set_fact:\n  mode: enforce", mode="audit", when="mode == 'enforce'", more=None):
    """A play whose include is conditional on ``mode``, with the task ``before`` it."""
    play = """
        - name: Harden
          hosts: web
          gather_facts: false
          vars:
            mode: %s
          tasks:
            - name: Before
%s
            - name: Remediate
              ansible.builtin.include_tasks: enforce.yml
              when: %s
        """ % (mode, textwrap.indent(before, " " * 14), when)
    return dict({"site.yml": play, "enforce.yml": HARDENING_LIKE["roles/harden/tasks/enforce.yml"]}, **(more or {}))


@pytest.mark.parametrize("files, why", [
    (later(), "set_fact changes the variable before the include runs"),
    (later("ansible.builtin.command: echo enforce\nregister: mode"), "register"),
    (later("ansible.builtin.include_vars: \"{{ playbook_dir }}/mode.yml\""), "include_vars of a file named by a template"),
    (later("ansible.builtin.include_vars: mode.yml", more={"vars/mode.yml": "mode: enforce\n"}),
     "include_vars of a literal file"),
    (later("ansible.builtin.group_by:\n  key: enforcing"), "group_by moves hosts to other groups"),
    (later("ansible.builtin.include_tasks: \"{{ more }}\"\nvars:\n  more: x.yml"),
     "an include the gate cannot read may set anything"),
    (later("ansible.builtin.set_fact:\n  picked: enforce", mode="\"{{ picked | default('audit') }}\""),
     "the value is a template over a variable a task sets"),
    (later("ansible.builtin.include_tasks: setter.yml", more={
        "setter.yml": "- name: Set up\n  ansible.builtin.import_role:\n    name: setter\n",
        "roles/setter/vars/main.yml": "mode: enforce\n",
        "roles/setter/tasks/main.yml": "- name: Nothing\n  ansible.builtin.debug:\n    msg: x\n"}),
     "an included file imports a role whose variables later tasks see"),
])
def test_a_variable_the_play_may_change_before_the_include_is_not_judged_from_its_value_now(
        tmp_path, monkeypatch, files, why):
    """mode is 'audit' when the gate runs, but a task may change it first: the include may run."""
    found = inspect(tmp_path, monkeypatch, files)
    assert "/etc/ssh/sshd_config.d/00-hardening.conf" in found["paths"], why
    assert found["skipped_includes"] == [], why


def test_an_extra_var_wins_over_what_tasks_set(tmp_path, monkeypatch):
    found = inspect(tmp_path, monkeypatch, later(), extra_vars=["mode=audit"])
    assert found["paths"] == [] and len(found["skipped_includes"]) == 1
    # the same play without the set_fact, and mode only a play variable: judged from its value
    assert inspect(tmp_path, monkeypatch, later("ansible.builtin.debug:\n  msg: hi"))["paths"] == []


@pytest.mark.parametrize("condition", [
    "lookup('ansible.builtin.env', 'MODE') == 'enforce'",  # a lookup would run at gate time
    "hostvars[inventory_hostname].mode == 'enforce'",
    "item == 'enforce'\n              loop: [audit]",  # a loop variable
    "\"{{ mode_test }}\"",  # indirection: a template that yields the expression
    "mode === 'enforce'",  # not an expression: an error at run time, not for the gate to rule out
])
def test_conditions_the_gate_cannot_judge_count_as_possibly_true(tmp_path, monkeypatch, condition):
    found = inspect(tmp_path, monkeypatch, later("ansible.builtin.debug:\n  msg: hi", when=condition),
                    extra_vars=["mode=audit", "mode_test=false"])
    assert "/etc/ssh/sshd_config.d/00-hardening.conf" in found["paths"], condition


def test_an_undefined_variable_no_task_sets_is_undefined_at_run_time_too(tmp_path, monkeypatch):
    when = "enforce_now is defined and enforce_now"
    assert inspect(tmp_path, monkeypatch, later("ansible.builtin.debug:\n  msg: hi", when=when))["paths"] == []
    # undefined for the gate, but a registered result by the time the include runs
    found = inspect(tmp_path, monkeypatch, later("ansible.builtin.debug:\n  msg: hi\nregister: enforce_now", when=when))
    assert found["paths"] == ["/etc/ssh/sshd_config.d/00-hardening.conf"]


def test_plain_tasks_whose_condition_is_false_for_every_host_write_nothing(tmp_path, monkeypatch):
    files = {
        "site.yml": """
            - name: Configure
              hosts: web
              gather_facts: false
              roles:
                - role: sshd_extra
                  when: manage_sshd | bool
              tasks:
                - name: Write sshd_config when asked
                  ansible.builtin.copy:
                    dest: /etc/ssh/sshd_config
                    content: x
                  when: manage_sshd | bool
                  tags: [ssh]
                - name: Write the motd
                  ansible.builtin.copy:
                    dest: /etc/motd
                    content: x
            """,
        "roles/sshd_extra/tasks/main.yml": """
            - name: Add the user
              ansible.builtin.user:
                name: extra
            """,
    }
    found = inspect(tmp_path, monkeypatch, files, extra_vars=["manage_sshd=false"])
    assert found["paths"] == ["/etc/motd"]
    assert "ansible.builtin.user" not in found["modules"]
    assert lines_of(found["skipped_tasks"]) == [
        "roles/sshd_extra/tasks/main.yml (sshd_extra : Add the user) (when: manage_sshd | bool)",
        "site.yml (Write sshd_config when asked) (when: manage_sshd | bool)"]
    # what the play is stays: its roles and tags (a protected area may be named by them)
    assert found["roles"] == ["sshd_extra"] and "ssh" in found["tags"]
    found = inspect(tmp_path, monkeypatch, files, extra_vars=["manage_sshd=true"])
    assert found["paths"] == ["/etc/motd", "/etc/ssh/sshd_config"] and "ansible.builtin.user" in found["modules"]


ROLE_INCLUDE = {
    "site.yml": """
        - name: Configure
          hosts: web
          gather_facts: false
          tasks:
            - name: Set up ssh
              ansible.builtin.include_role:
                name: %s
        """,
    "roles/ssh_extra/tasks/main.yml": """
        - name: Write the drop-in
          ansible.builtin.copy:
            dest: /etc/ssh/sshd_config.d/10-extra.conf
            content: x
          notify: Restart sshd
        """,
    "roles/ssh_extra/handlers/main.yml": """
        - name: Restart sshd
          ansible.builtin.service:
            name: sshd
            state: restarted
        """,
}


def test_an_include_role_of_a_literal_name_is_read_with_its_handlers(tmp_path, monkeypatch):
    files = dict(ROLE_INCLUDE, **{"site.yml": ROLE_INCLUDE["site.yml"] % "ssh_extra"})
    found = inspect(tmp_path, monkeypatch, files)
    assert found["paths"] == ["/etc/ssh/sshd_config.d/10-extra.conf"]
    assert "ansible.builtin.service" in found["modules"] and found["roles"] == ["ssh_extra"]
    assert found["dynamic_includes"] == []
    assert lines_of(found["read_includes"]) == ["site.yml include_role roles/ssh_extra"]


def test_an_include_role_named_by_a_variable_stays_a_blind_spot(tmp_path, monkeypatch):
    files = dict(ROLE_INCLUDE, **{"site.yml": ROLE_INCLUDE["site.yml"] % '"{{ which }}"'})
    found = inspect(tmp_path, monkeypatch, files, extra_vars=["which=ssh_extra"], check_mode=True)
    assert found["paths"] == []
    assert lines_of(found["dynamic_includes"]) == ["site.yml include_role {{ which }}"]
    assert lines_of(found["uninspectable_includes"]) == ["site.yml include_role {{ which }} (not known before the play runs)"]


def test_an_include_of_itself_is_read_once_and_listed(tmp_path, monkeypatch):
    files = {
        "site.yml": """
            - name: Loop
              hosts: web
              gather_facts: false
              tasks:
                - name: Again
                  ansible.builtin.include_tasks: again.yml
            """,
        "again.yml": """
            - name: Write
              ansible.builtin.copy:
                dest: /etc/motd
                content: x
            - name: Again
              ansible.builtin.include_tasks: again.yml
            """,
    }
    found = inspect(tmp_path, monkeypatch, files)
    assert found["paths"] == ["/etc/motd"]
    assert lines_of(found["dynamic_includes"]) == ["again.yml include_tasks again.yml"]
