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
