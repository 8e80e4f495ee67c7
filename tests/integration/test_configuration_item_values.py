# -*- coding: utf-8 -*-
"""configuration_item through ansible-playbook: a non-finite number fails naming its field, nothing is written."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration]


def test_nan_and_infinity_fail_naming_the_field(project, sor):
    project.write_playbook("ci.yml", """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: A CI with a load that is not a number
              changeops.itsm.configuration_item:
                name: web01
                ci_class: cmdb_ci_linux_server
                attributes:
                  metrics:
                    load: [0.5, .inf]
              ignore_errors: true
              register: infinite

            - name: And one that is NaN
              changeops.itsm.configuration_item:
                name: web01
                ci_class: cmdb_ci_linux_server
                attributes:
                  load: .nan
              ignore_errors: true
              register: not_a_number

            - ansible.builtin.assert:
                that:
                  - infinite is failed
                  - infinite.msg is search('^attributes[.]metrics[.]load\\\\[1\\\\]. inf is not a finite number')
                  - not_a_number is failed
                  - not_a_number.msg is search('^attributes[.]load. nan is not a finite number')
        """)
    completed = project.run("ci.yml")
    assert "Out of range float" not in completed.stdout
    assert sor.find_cis() == []


def test_an_integer_too_long_for_json_fails_naming_the_field(project, sor):
    # Python writes no int of more than 4,300 digits as text: a module's own input holding one is the caller's to
    # fix (docs/ledger.md, "Integers too long for JSON")
    project.write_playbook("ci.yml", """
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: A CI with a size too long to write
              changeops.itsm.configuration_item:
                name: web01
                ci_class: cmdb_ci_linux_server
                attributes:
                  disks: [1, "{{ 10 ** 5000 }}"]
              ignore_errors: true
              register: oversized

            - ansible.builtin.assert:
                that:
                  - oversized is failed
                  - oversized.msg is search('^attributes[.]disks\\\\[1\\\\]. an integer of more than 4300 digits')
        """)
    completed = project.run("ci.yml")
    assert "Exceeds the limit" not in completed.stdout
    assert sor.find_cis() == []


def test_a_result_holding_an_integer_too_long_for_json_is_recorded_with_its_digits(project, open_sor):
    # the recorder never loses an event nor fails the playbook over one: the int is recorded as its digits after a
    # marker, the run and every other result with it
    project.write_inventory(["localhost"])
    project.write_playbook("big.yml", """
        - hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Compute a big number
              ansible.builtin.set_fact:
                big: "{{ 7 * 10 ** 5000 }}"

            - name: Show it
              ansible.builtin.debug:
                msg: "{{ big }}"

            - name: Change something
              ansible.builtin.command: echo done
        """)
    project.run("big.yml")
    sor = open_sor()
    events = sor.find_change_events()
    assert len(events) == 1 and events[0]["status"] == "successful", events
    results = list(sor.iter_entries(kinds=["run.result"]))
    assert [entry.data["task"]["name"] for entry in results] == ["Compute a big number", "Show it", "Change something"]
    texts = [value for entry in results for value in (entry.data.get("result") or {}).values()
             if isinstance(value, str) and value.startswith("[integer of 5001 digits] 7000")]
    assert texts, [entry.data.get("result") for entry in results]
    assert sor.verify(projections=True).valid
