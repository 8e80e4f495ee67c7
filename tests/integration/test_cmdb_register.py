# -*- coding: utf-8 -*-
"""register_host, configuration_item and _info through real ansible-playbook runs."""

from __future__ import annotations

import re
import sys

import pytest
import yaml

pytestmark = pytest.mark.integration

HOSTS = ["host%03d" % number for number in range(1, 51)]

REGISTER_PLAY = """
- name: Provision (register every host in the CMDB)
  hosts: all
  gather_facts: false
  tasks:
    - name: Register the host
      changeops.itsm.register_host:
        environment: production
        owner: platform-team
        services: [billing]
        attribute_map:
          rack: ansible_local.dc.rack
"""


def host_facts(name, machine_id=None, memory=4096, fqdn=None):
    number = int(re.sub(r"\D", "", name) or 0)
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_hostname": name,
        "ansible_fqdn": fqdn or "%s.example.com" % name,
        "ansible_machine_id": machine_id or "machine-%s" % name,
        "ansible_product_serial": "To Be Filled By O.E.M.",
        "ansible_product_uuid": "NA",
        "ansible_distribution": "Debian",
        "ansible_distribution_version": "12.5",
        "ansible_memtotal_mb": memory,
        "ansible_virtualization_role": "guest",
        "ansible_virtualization_type": "kvm",
        "ansible_default_ipv4": {"address": "10.1.%d.%d" % (number // 250, number % 250 + 1)},
        "ansible_local": {"dc": {"rack": "R%d" % (number % 4)}},
    }


def write_inventory(project, hosts):
    project.write("inventory.yml", yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=True))


def recap(output):
    """``{host: (ok, changed, failed)}`` from the PLAY RECAP."""
    found = {}
    for host, ok, changed, failed in re.findall(
            r"^(\S+)\s*: ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", output, re.M):
        found[host] = (int(ok), int(changed), int(failed))
    return found


def ci_entries(sor):
    return [entry for entry in sor.iter_entries() if entry.kind.startswith("ci.")]


def run(project, playbook, *args, check=True):
    return project.run(playbook, "-i", "inventory.yml", *args, check=check)


def test_register_fifty_hosts_rerun_change_rename_and_check_mode(project, open_sor):
    inventory = dict((name, host_facts(name)) for name in HOSTS)
    write_inventory(project, inventory)
    project.write_playbook("register.yml", REGISTER_PLAY)

    first = run(project, "register.yml")
    counts = recap(first.stdout)
    assert len(counts) == 50 and all(changed == 1 for _ok, changed, _failed in counts.values())
    sor = open_sor()
    cis = sor.find_cis()
    assert sorted(ci["name"] for ci in cis) == HOSTS
    assert set(ci["class"] for ci in cis) == {"virtual_machine"}
    assert cis[0]["attributes"]["rack"] in ("R0", "R1", "R2", "R3")
    assert "serial_number" not in cis[0]["attributes"]
    created = ci_entries(sor)
    assert len(created) == 50 and set(entry.kind for entry in created) == {"ci.created"}
    run_id = sor.find_change_events(limit=1)[0]["run_id"]
    assert set(ci["last_change_run_id"] for ci in cis) == {run_id}

    # second run: nothing changes, nothing is written
    second = run(project, "register.yml")
    assert all(changed == 0 for _ok, changed, _failed in recap(second.stdout).values())
    assert len(ci_entries(sor)) == 50

    # one fact changes: exactly that CI is updated
    inventory["host017"]["ansible_memtotal_mb"] = 8192
    write_inventory(project, inventory)
    third = run(project, "register.yml")
    changed_hosts = [host for host, (_ok, changed, _failed) in recap(third.stdout).items() if changed]
    assert changed_hosts == ["host017"]
    updates = ci_entries(sor)[50:]
    host017 = sor.find_cis(name="host017")[0]
    assert [(entry.kind, entry.subject) for entry in updates] == [("ci.updated", host017["ci_id"])]
    assert set(updates[0].data["changes"]) == {"memory_mb", "last_seen"}
    assert host017["attributes"]["memory_mb"] == 8192

    # rename with the same machine id: the same CI, no duplicate
    old_id = sor.find_cis(name="host023")[0]["ci_id"]
    facts = inventory.pop("host023")
    facts.update(ansible_hostname="db-replica", ansible_fqdn="db-replica.example.com")
    inventory["db-replica"] = facts
    write_inventory(project, inventory)
    run(project, "register.yml")
    assert not sor.find_cis(name="host023")
    renamed = sor.find_cis(name="db-replica")
    assert [ci["ci_id"] for ci in renamed] == [old_id]
    assert renamed[0]["attributes"]["fqdn"] == "db-replica.example.com"
    assert len(sor.find_cis()) == 50

    # --check --diff shows the change and writes nothing
    before = len(ci_entries(sor))
    inventory["host042"]["ansible_distribution_version"] = "13.0"
    write_inventory(project, inventory)
    dry = run(project, "register.yml", "--check", "--diff", "--limit", "host042")
    assert re.search(r'^-\s+"os_version": "12.5"', dry.stdout, re.M), dry.stdout
    assert re.search(r'^\+\s+"os_version": "13.0"', dry.stdout, re.M), dry.stdout
    assert recap(dry.stdout)["host042"][1] == 1
    assert len(ci_entries(sor)) == before
    assert sor.find_cis(name="host042")[0]["attributes"]["os_version"] == "12.5"
    assert sor.verify().valid


def test_two_hosts_claiming_one_identity_fail_clearly(project, open_sor):
    inventory = {
        "clone-a": host_facts("clone-a", machine_id="same-machine-id"),
        "clone-b": host_facts("clone-b", machine_id="same-machine-id"),
    }
    write_inventory(project, inventory)
    project.write_playbook("register.yml", REGISTER_PLAY)
    result = run(project, "register.yml", check=False)
    assert result.returncode != 0
    assert "clone-a and clone-b both claim machine_id 'same-machine-id'" in result.stdout
    counts = recap(result.stdout)
    assert sorted(failed for _ok, _changed, failed in counts.values()) == [0, 1]
    sor = open_sor()
    assert len(sor.find_cis()) == 1
    assert len(ci_entries(sor)) == 1


BAD_INPUT = {
    "malformed JMESPath": ("""
        - name: Register with a broken expression
          changeops.itsm.register_host:
            attribute_map:
              rack: "ansible_local.dc.[rack"
        """, "attribute_map.rack: invalid JMESPath expression 'ansible_local.dc.[rack'"),
    "wrong type": ("""
        - name: Register with attributes that are not a dictionary
          changeops.itsm.register_host:
            attributes: just-a-string
        """, "argument 'attributes' is of type str and we were unable to convert to dict"),
    "services not names": ("""
        - name: A CI whose services are not a list of names
          changeops.itsm.configuration_item:
            name: billing
            ci_class: application
            attributes:
              services: {billing: true}
        """, "attributes.services must be a list of names (or one name as a string), got {'billing': True}"),
    "bad status": ("""
        - name: Register with an unknown status
          changeops.itsm.register_host:
            attributes:
              status: on_fire
        """, "attributes.status must be one of"),
    "unknown relationship type": ("""
        - name: Relationship of an unknown type
          changeops.itsm.configuration_item:
            name: billing
            ci_class: application
            relationships:
              - type: talks_to
                target: host001
        """, "relationships[0].type: unknown relationship type 'talks_to'"),
    "relationship to a missing CI": ("""
        - name: Relationship to a CI that does not exist
          changeops.itsm.configuration_item:
            name: billing
            ci_class: application
            relationships:
              - type: depends_on
                target: db99
        """, "relationships[0].target: no CI 'db99' exists"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_a_clear_error_and_writes_nothing(project, open_sor, case):
    tasks, message = BAD_INPUT[case]
    write_inventory(project, {"host001": host_facts("host001")})
    indented = "\n".join("    " + line for line in __import__("textwrap").dedent(tasks).strip().splitlines())
    project.write_playbook("bad.yml", "- name: Bad input\n  hosts: all\n  gather_facts: false\n  tasks:\n"
                           + indented + "\n")
    result = run(project, "bad.yml", check=False)
    assert result.returncode != 0
    assert message in result.stdout, result.stdout
    assert ci_entries(open_sor()) == []


CI_PLAY = """
- name: Model the billing service
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Database runs on db01
      changeops.itsm.configuration_item:
        name: billing-db
        ci_class: database
        attributes:
          engine: postgresql
        relationships:
          - type: runs_on
            target: db01
    - name: Application depends on the database
      changeops.itsm.configuration_item:
        name: billing
        ci_class: application
        attributes:
          environment: production
        relationships:
          - type: depends_on
            target: billing-db
    - name: What depends on db01
      changeops.itsm.configuration_item_info:
        related_to:
          ci: db01
          transitive: true
      register: impact
    - name: Show the impact
      ansible.builtin.debug:
        msg: "IMPACT={{ impact.configuration_items | map(attribute='name') | join(',') }}"
"""

CACHE_TASK = """
    - name: A cache on db01
      changeops.itsm.configuration_item:
        name: cache
        ci_class: application
        relationships:
          - type: runs_on
            target: db01
"""


def test_configuration_items_check_mode_idempotence_and_impact(project, open_sor):
    write_inventory(project, {"db01": host_facts("db01"),
                              "localhost": {"ansible_connection": "local",
                                            "ansible_python_interpreter": sys.executable}})
    project.write_playbook("register.yml", REGISTER_PLAY.replace("hosts: all", "hosts: db01"))
    run(project, "register.yml")
    project.write_playbook("model.yml", CI_PLAY)
    sor = open_sor()
    before = len(ci_entries(sor))

    real = run(project, "model.yml")
    assert recap(real.stdout)["localhost"][1] == 2
    assert "IMPACT=billing,billing-db" in real.stdout
    again = run(project, "model.yml")
    assert recap(again.stdout)["localhost"][1] == 0
    assert len(ci_entries(sor)) == before + 4  # two ci.created, two ci.relationship_added

    # --check --diff: an attribute change and a new CI are shown, nothing is written
    project.write_playbook("model.yml", CI_PLAY.replace("engine: postgresql", "engine: postgresql\n          version: '16'")
                           + CACHE_TASK)
    dry = run(project, "model.yml", "--check", "--diff")
    assert recap(dry.stdout)["localhost"][1] == 2
    assert '+    "version": "16"' in dry.stdout
    assert '+        "runs_on db01"' in dry.stdout
    assert len(ci_entries(sor)) == before + 4
    assert not sor.find_cis(name="cache")

    project.write_playbook("remove.yml", """
        - name: Remove the database CI
          hosts: localhost
          gather_facts: false
          tasks:
            - name: Remove billing-db
              changeops.itsm.configuration_item:
                name: billing-db
                state: absent
        """)
    removal = run(project, "remove.yml", check=False)
    assert removal.returncode != 0
    assert "billing (depends_on billing-db)" in removal.stdout
    assert len(ci_entries(sor)) == before + 4
