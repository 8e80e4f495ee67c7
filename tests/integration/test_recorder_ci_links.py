# -*- coding: utf-8 -*-
"""Which configuration item a host changed by a run is (``ci.changed_by_run``), from real runs.

The recorder finds a changed host's CI as register_host does, with its checks: a clone that shares
another inventory host's identity is not that host, and facts are read where Ansible keeps them
(gathered, or a fact cache a later run reads), by the recorder's writer thread.
"""

from __future__ import annotations

import pytest

from support.recorder import links_of, new_run_id

pytestmark = [pytest.mark.integration]


def test_a_clone_is_not_linked_to_the_ci_of_the_host_it_copied(project, sor):
    """vm-a and vm-b are the same machine as far as facts go (two local hosts: one machine id, one
    product UUID), like a VM cloned without regenerating /etc/machine-id. register_host refuses vm-b;
    a change to vm-b must not be recorded as a change of vm-a's CI."""
    project.write_inventory(["vm-a", "vm-b"])
    project.write_playbook("register.yml", """
        - hosts: vm-a
          gather_facts: true
          tasks:
            - name: Register the original
              changeops.itsm.register_host:

        - hosts: vm-b
          gather_facts: true
          tasks:
            - name: Register the clone
              changeops.itsm.register_host:
              register: clone
              ignore_errors: true

            - name: The clone was refused
              ansible.builtin.assert:
                that: clone is failed and 'vm-a' in clone.msg
        """)
    project.write_playbook("change.yml", """
        - hosts: all_hosts
          gather_facts: true
          tasks:
            - name: Change both
              ansible.builtin.command: echo changed
        """)
    seen = set()
    project.run("register.yml")
    new_run_id(sor, seen)
    [vm_a] = sor.find_cis()
    assert vm_a["name"] == "vm-a" and sor.get_ci(vm_a["ci_id"])["identities"].get("machine_id"), vm_a
    project.run("change.yml")
    change_run = new_run_id(sor, seen)
    assert links_of(sor, change_run) == [("vm-a", vm_a["ci_id"])]
    assert sor.verify().valid


def test_a_host_registered_under_another_name_is_found_from_the_fact_cache(project, sor):
    """A later run without fact gathering: the host's identities come from the jsonfile fact cache,
    read by the writer at the end of the run, not by the playbook's thread."""
    project.write_cfg("fact_caching = jsonfile")
    cache = project.path("facts")
    env = {"ANSIBLE_CACHE_PLUGIN_CONNECTION": cache}
    project.write_inventory(["app1"])
    project.write_playbook("register.yml", """
        - hosts: app1
          gather_facts: true
          tasks:
            - name: Register under its DNS name
              changeops.itsm.register_host:
                name: app1.internal.example.com
        """)
    project.write_playbook("change.yml", """
        - hosts: app1
          gather_facts: false
          tasks:
            - name: Change it
              ansible.builtin.command: echo changed
        """)
    seen = set()
    project.run("register.yml", env=env)
    new_run_id(sor, seen)
    [ci] = sor.find_cis()
    assert ci["name"] == "app1.internal.example.com"
    project.run("change.yml", env=env)
    change_run = new_run_id(sor, seen)
    assert links_of(sor, change_run) == [("app1", ci["ci_id"])], "no name matches: only the cached facts tell"
    assert sor.verify().valid
