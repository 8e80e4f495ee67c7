# -*- coding: utf-8 -*-
"""Identification across runs, with real ansible-playbook runs: clones, placeholder FQDNs, swaps, facts."""

from __future__ import annotations

import json
import os
import sys

import pytest

from test_cmdb_register import REGISTER_PLAY, ci_entries, host_facts, recap, run, write_inventory

pytestmark = pytest.mark.integration


def test_a_clone_registered_in_a_later_run_is_refused_not_merged(project, open_sor):
    inventory = {"web01": host_facts("web01", machine_id="cloned"),
                 "web02": host_facts("web02", machine_id="cloned")}
    write_inventory(project, inventory)
    project.write_playbook("register.yml", REGISTER_PLAY)
    run(project, "register.yml", "--limit", "web01")
    sor = open_sor()
    original = sor.find_cis(name="web01")[0]
    written = len(ci_entries(sor))

    clone = run(project, "register.yml", "--limit", "web02", check=False)
    assert clone.returncode != 0
    assert ("host web02 claims machine_id 'cloned', which identifies CI %s (web01, virtual_machine, status "
            "operational) registered for inventory host web01, still in the inventory" % original["ci_id"]
            ) in clone.stdout, clone.stdout
    assert "remove web01 from the inventory" in clone.stdout
    assert "give web02 its own identity" in clone.stdout
    assert len(ci_entries(sor)) == written
    assert [(ci["ci_id"], ci["name"]) for ci in sor.find_cis()] == [(original["ci_id"], "web01")]

    # once web01 has left the inventory, web02 is web01 renamed: the same CI is updated
    del inventory["web01"]
    write_inventory(project, inventory)
    run(project, "register.yml")
    assert [(ci["ci_id"], ci["name"]) for ci in sor.find_cis()] == [(original["ci_id"], "web02")]


def test_localhost_fqdns_identify_nothing(project, open_sor):
    inventory = {"alpha": host_facts("alpha", fqdn="localhost.localdomain"),
                 "beta": host_facts("beta", fqdn="localhost.localdomain")}
    write_inventory(project, inventory)
    project.write_playbook("register.yml", REGISTER_PLAY)
    run(project, "register.yml", "--limit", "alpha")
    run(project, "register.yml", "--limit", "beta")
    sor = open_sor()
    cis = sor.find_cis()
    assert [ci["name"] for ci in cis] == ["alpha", "beta"]
    assert [ci["attributes"]["fqdn"] for ci in cis] == ["localhost.localdomain"] * 2
    assert all("fqdn" not in ci["identities"] for ci in (sor.get_ci(ci["ci_id"]) for ci in cis))

    # both in one play: no false "both claim fqdn" clash
    inventory["gamma"] = host_facts("gamma", fqdn="localhost")
    write_inventory(project, inventory)
    together = run(project, "register.yml")
    assert set(recap(together.stdout)) == {"alpha", "beta", "gamma"}
    assert [ci["name"] for ci in sor.find_cis()] == ["alpha", "beta", "gamma"]


FIX_PLAY = """
- name: Correct the CI after the motherboard swap
  hosts: localhost
  gather_facts: false
  tasks:
    - name: New board, new product uuid and serial
      changeops.itsm.configuration_item:
        name: db01
        attributes:
          product_uuid: 4c4c4544-0000-4000-8000-00000000b002
          serial_number: SN-NEW-BOARD
"""


def test_a_motherboard_swap_is_refused_until_configuration_item_corrects_the_identities(project, open_sor):
    localhost = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    board = {"ansible_product_uuid": "4c4c4544-0000-4000-8000-00000000a001", "ansible_product_serial": "SN-OLD-BOARD"}
    db01 = dict(host_facts("db01"), **board)
    write_inventory(project, {"db01": db01, "localhost": localhost})
    project.write_playbook("register.yml", REGISTER_PLAY.replace("hosts: all", "hosts: db01"))
    run(project, "register.yml")
    sor = open_sor()
    ci_id = sor.find_cis(name="db01")[0]["ci_id"]

    db01.update(ansible_product_uuid="4c4c4544-0000-4000-8000-00000000b002", ansible_product_serial="SN-NEW-BOARD",
                ansible_memtotal_mb=16384)
    write_inventory(project, {"db01": db01, "localhost": localhost})
    swapped = run(project, "register.yml", check=False)
    assert swapped.returncode != 0
    assert "which is a different machine (product_uuid '4c4c4544-0000-4000-8000-00000000a001' there" in swapped.stdout
    assert "correct its identities" in swapped.stdout
    written = len(ci_entries(sor))

    project.write_playbook("fix.yml", FIX_PLAY)
    dry = run(project, "fix.yml", "--check", "--diff")
    assert recap(dry.stdout)["localhost"][1] == 1
    assert '-        "serial_number": "SN-OLD-BOARD"' in dry.stdout, dry.stdout
    assert '+        "serial_number": "SN-NEW-BOARD"' in dry.stdout, dry.stdout
    assert len(ci_entries(sor)) == written
    run(project, "fix.yml")
    assert sor.get_ci(ci_id)["identities"]["product_uuid"] == "4c4c4544-0000-4000-8000-00000000b002"

    again = run(project, "register.yml")
    assert recap(again.stdout)["db01"][1] == 1
    assert [ci["ci_id"] for ci in sor.find_cis()] == [ci_id]
    assert sor.get_ci(ci_id)["attributes"]["memory_mb"] == 16384


FACTS_PLAY = """
- name: Register localhost from its {how} facts
  hosts: localhost
  gather_facts: {gather}
  tasks:
    - name: Register the host
      changeops.itsm.register_host:
        environment: lab
"""

KEEP_FACTS = """
    - name: Keep the gathered facts for the test
      ansible.builtin.copy:
        content: "{{ ansible_facts | to_json }}"
        dest: "{{ playbook_dir }}/gathered.json"
        mode: "0600"
"""

DRIFT_PLAY = """
- name: The CI drifts from the machine
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Someone edits the memory by hand
      changeops.itsm.configuration_item:
        name: localhost
        attributes:
          memory_mb: 1
"""


def test_register_from_gathered_then_cached_facts(project, open_sor):
    project.write_cfg("fact_caching = jsonfile")
    cache = project.path("facts")
    write_inventory(project, {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}})
    project.write_playbook("gathered.yml", FACTS_PLAY.format(how="gathered", gather="true") + KEEP_FACTS)
    project.write_playbook("cached.yml", FACTS_PLAY.format(how="cached", gather="false"))
    project.write_playbook("drift.yml", DRIFT_PLAY)
    # one line in ansible.cfg (Project.write_cfg), the cache directory from the environment
    env = {"ANSIBLE_CACHE_PLUGIN_CONNECTION": cache}

    def play(playbook):
        return project.run(playbook, "-i", "inventory.yml", env=env)

    first = play("gathered.yml")
    assert recap(first.stdout)["localhost"][1] == 2  # the CI created, the facts file written
    with open(project.path("gathered.json"), encoding="utf-8") as handle:
        facts = json.load(handle)  # what setup really gathered on this machine
    assert os.listdir(cache), "the facts were not cached"
    sor = open_sor()
    ci = sor.find_cis(name="localhost")[0]
    attributes = ci["attributes"]
    assert attributes["hostname"] == facts["hostname"]
    assert attributes["os"] == facts["distribution"]
    assert attributes["kernel"] == facts["kernel"]
    assert attributes["architecture"] == facts["architecture"]
    assert attributes["memory_mb"] == facts["memtotal_mb"]
    assert attributes["ip_addresses"] == sorted(set(facts["all_ipv4_addresses"] + facts["all_ipv6_addresses"]))
    assert attributes["class"] in ("server", "virtual_machine", "container")
    assert attributes["environment"] == "lab"

    # gather_facts: false, facts from the cache: the same facts, nothing to write
    written = len(ci_entries(sor))
    cached = play("cached.yml")
    assert recap(cached.stdout)["localhost"] == (1, 0, 0)
    assert len(ci_entries(sor)) == written

    # the cached facts are what that play reads: they put a drifted attribute right again
    play("drift.yml")
    assert sor.get_ci(ci["ci_id"])["attributes"]["memory_mb"] == 1
    repaired = play("cached.yml")
    assert recap(repaired.stdout)["localhost"] == (1, 1, 0)
    assert sor.get_ci(ci["ci_id"])["attributes"]["memory_mb"] == facts["memtotal_mb"]
