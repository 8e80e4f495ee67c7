# -*- coding: utf-8 -*-
"""A CI changing class in and out of the host classes, with real ansible-playbook runs."""

from __future__ import annotations

import sys

import pytest

from test_cmdb_register import REGISTER_PLAY, ci_entries, host_facts, recap, run, write_inventory

pytestmark = pytest.mark.integration

BOARD = {"ansible_product_uuid": "4c4c4544-0000-4000-8000-00000000c003", "ansible_product_serial": "SN-C003"}

RECLASSIFY_PLAY = """
- name: The CI {ci_id} is now the application, not the machine
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Reclassify
      changeops.itsm.configuration_item:
        ci_id: {ci_id}
        ci_class: {ci_class}
"""


def test_a_server_ci_reclassified_as_an_application_is_not_taken_for_the_machine(project, open_sor):
    localhost = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    write_inventory(project, {"db01": dict(host_facts("db01"), **BOARD), "localhost": localhost})
    project.write_playbook("register.yml", REGISTER_PLAY.replace("hosts: all", "hosts: db01"))
    run(project, "register.yml")
    sor = open_sor()
    (registered,) = sor.find_cis(name="db01")
    ci_id = registered["ci_id"]
    assert sor.get_ci(ci_id)["identities"]["product_uuid"] == "4c4c4544-0000-4000-8000-00000000c003"

    project.write_playbook("to-app.yml", RECLASSIFY_PLAY.format(ci_id=ci_id, ci_class="application"))
    written = len(ci_entries(sor))
    dry = run(project, "to-app.yml", "--check", "--diff")
    assert recap(dry.stdout)["localhost"][1] == 1
    # the diff shows the identities register_host matches by going away and the name moving namespace
    assert '-        "product_uuid": "4c4c4544-0000-4000-8000-00000000c003"' in dry.stdout, dry.stdout
    assert '-        "name": "host/db01"' in dry.stdout, dry.stdout
    assert '+        "name": "application/db01"' in dry.stdout, dry.stdout
    assert len(ci_entries(sor)) == written
    run(project, "to-app.yml")
    app = sor.get_ci(ci_id)
    assert app["class"] == "application" and app["identities"] == {"name": "application/db01"}

    # the machine registers again with the old server's product uuid: a new host CI, the application untouched
    again = run(project, "register.yml")
    assert recap(again.stdout)["db01"][1] == 1
    host = [ci for ci in sor.find_cis(name="db01") if ci["ci_id"] != ci_id]
    assert [ci["class"] for ci in host] == ["virtual_machine"]
    assert sor.get_ci(host[0]["ci_id"])["identities"]["product_uuid"] == "4c4c4544-0000-4000-8000-00000000c003"
    assert sor.get_ci(ci_id) == app

    # back into a host class, the application claims the identities its attributes give: the new host has them
    project.write_playbook("to-server.yml", RECLASSIFY_PLAY.format(ci_id=ci_id, ci_class="server"))
    written = len(ci_entries(sor))
    refused = run(project, "to-server.yml", check=False)
    assert refused.returncode != 0
    assert ("attributes.fqdn: 'db01.example.com' already identifies CI %s (db01, virtual_machine"
            % host[0]["ci_id"]) in refused.stdout, refused.stdout
    assert len(ci_entries(sor)) == written
