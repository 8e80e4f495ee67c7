# -*- coding: utf-8 -*-
"""Standard change templates that condition on the business service of the targeted CIs.

The CIs are registered the way users register them - register_host from facts and
configuration_item by hand - so the test sees the attributes exactly as the CMDB stores them
(``services``, a list), not as a test helper imagines them.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml

from support.change_requests import gate_entries

pytestmark = pytest.mark.integration

POLICY = """
templates:
  - name: shop-content
    description: Publishing content to the shop's web servers
    conditions:
      - "services == ['shop']"
      - "length(cis[?contains(services, 'shop')]) == host_count"
"""

REGISTER = """
- name: Register the web servers
  hosts: web
  gather_facts: false
  tasks:
    - name: web01 from its facts
      changeops.itsm.register_host:
        environment: test
        services: [shop]
      when: inventory_hostname == 'web01'

    - name: web02 by hand
      changeops.itsm.configuration_item:
        name: web02
        ci_class: server
        attributes:
          environment: test
          services: "{{ web02_services }}"
      run_once: true
"""

GATED = """
- name: Publish shop content
  hosts: web
  gather_facts: false
  tasks:
    - name: Change gate
      changeops.itsm.change_gate:
        policy: policy.yml
        fail_on_deny: false
      register: gate

    - name: Publish
      ansible.builtin.copy:
        content: "{{ inventory_hostname }}\\n"
        dest: "{{ playbook_dir }}/out/{{ inventory_hostname }}.txt"
        mode: "0644"
      when: gate.allowed
"""


def facts(name, number):
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_hostname": name,
        "ansible_fqdn": "%s.example.com" % name,
        "ansible_machine_id": "machine-%s" % name,
        "ansible_product_serial": "SERIAL-%s" % name,
        "ansible_product_uuid": "NA",
        "ansible_distribution": "Debian",
        "ansible_distribution_version": "12.5",
        "ansible_default_ipv4": {"address": "10.9.0.%d" % number},
    }


def prepare(project, web02_services):
    hosts = {"web01": facts("web01", 1), "web02": facts("web02", 2)}
    project.write("inventory.yml", yaml.safe_dump({"all": {"children": {"web": {"hosts": hosts}}}}))
    project.write("policy.yml", POLICY)
    project.write("register.yml", REGISTER)
    project.write("gated.yml", GATED)
    os.makedirs(project.path("out"), exist_ok=True)
    project.run("register.yml", "-i", "inventory.yml", "-e", json.dumps({"web02_services": web02_services}))


@pytest.mark.parametrize("web02_services", [["shop"], "shop"], ids=["list", "single-string"])
def test_template_on_the_service_of_registered_cis_allows(project, sor, web02_services):
    prepare(project, web02_services)
    project.run("gated.yml", "-i", "inventory.yml")
    [decision] = gate_entries(sor)
    assert (decision["allowed"], decision["type"], decision["reference"]) == (True, "standard", "shop-content"), \
        decision["reasons"]
    assert decision["context"]["services"] == ["shop"]
    assert sorted(os.listdir(project.path("out"))) == ["web01.txt", "web02.txt"]


def test_template_on_a_service_refuses_hosts_of_another_service(project, sor):
    prepare(project, ["search"])
    project.run("gated.yml", "-i", "inventory.yml")
    [decision] = gate_entries(sor)
    assert decision["allowed"] is False
    assert decision["context"]["services"] == ["search", "shop"]
    assert os.listdir(project.path("out")) == []
