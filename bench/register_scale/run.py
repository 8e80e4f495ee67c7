#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""register_host at scale, against a set_fact baseline in the same script.

    .venv/bin/python bench/register_scale/run.py [--hosts 5000] [--forks 5] [--recorder]

One inventory of N hosts (local connection, facts as ``ansible_*`` host
variables, ``gather_facts: false``) is run three times:

1. a play whose one task is ``ansible.builtin.set_fact`` (the baseline: what
   any per-host action costs in Ansible);
2. the same play with ``changeops.itsm.register_host`` on an empty ledger
   (every host becomes a CI: one ledger entry each);
3. that play again (nothing changed: it must write 0 ledger entries).

It prints wall times, the ratio of (2) to (1) (target <= 1.5) and the
ledger entries each register run wrote. It never asserts on time; it exits 1
only when the second run wrote ledger entries or a run failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)

PLAY = """- name: {name}
  hosts: all
  gather_facts: false
  tasks:
    - name: {name}
{task}
"""
SET_FACT = """      ansible.builtin.set_fact:
        cmdb_attributes:
          name: "{{ inventory_hostname }}"
          fqdn: "{{ ansible_fqdn }}"
          machine_id: "{{ ansible_machine_id }}"
          memory_mb: "{{ ansible_memtotal_mb }}"
"""
REGISTER = """      changeops.itsm.register_host:
        environment: production
        services: [bench]
"""


def write_inventory(path, hosts):
    with open(path, "w") as handle:
        handle.write("all:\n  hosts:\n")
        for number in range(1, hosts + 1):
            name = "bench%05d" % number
            handle.write(
                "    %s:\n"
                "      ansible_connection: local\n"
                "      ansible_python_interpreter: %s\n"
                "      ansible_hostname: %s\n"
                "      ansible_fqdn: %s.example.com\n"
                "      ansible_machine_id: %032x\n"
                "      ansible_product_uuid: 4c4c4544-%04x-4000-8000-%012x\n"
                "      ansible_product_serial: SN%08d\n"
                "      ansible_distribution: Debian\n"
                "      ansible_distribution_version: '12.5'\n"
                "      ansible_kernel: 6.1.0-18-amd64\n"
                "      ansible_architecture: x86_64\n"
                "      ansible_processor_vcpus: 4\n"
                "      ansible_memtotal_mb: 7953\n"
                "      ansible_virtualization_role: guest\n"
                "      ansible_virtualization_type: kvm\n"
                "      ansible_default_ipv4: {address: 10.%d.%d.%d, macaddress: '52:54:00:%02x:%02x:%02x'}\n"
                "      ansible_all_ipv4_addresses: [10.%d.%d.%d]\n"
                % (name, sys.executable, name, name, number, number % 65536, number, number,
                   number // 65536, (number // 256) % 256, number % 256,
                   number // 65536, (number // 256) % 256, number % 256,
                   number // 65536, (number // 256) % 256, number % 256))


def ledger_count(path):
    if not os.path.exists(path):
        return 0
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT COUNT(*) FROM ledger WHERE kind LIKE 'ci.%'").fetchone()[0]
    finally:
        connection.close()


def run(workdir, playbook, env):
    started = time.monotonic()
    completed = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "inventory.yml", playbook],
                               cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, check=False)
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-5000:])
        raise SystemExit("%s failed (exit %d)" % (playbook, completed.returncode))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--forks", type=int, default=5)
    parser.add_argument("--recorder", action="store_true", help="enable the change_recorder callback in every run")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="register_scale.")
    ledger = os.path.join(workdir, "ledger.sqlite")
    write_inventory(os.path.join(workdir, "inventory.yml"), args.hosts)
    with open(os.path.join(workdir, "ansible.cfg"), "w") as handle:
        handle.write("[defaults]\nforks = %d\nhost_key_checking = False\nretry_files_enabled = False\n" % args.forks)
    for name, task in (("baseline", SET_FACT), ("register", REGISTER)):
        with open(os.path.join(workdir, name + ".yml"), "w") as handle:
            handle.write(PLAY.format(name=name, task=task))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CHANGEOPS_"))}
    env.update(
        HOME=workdir,
        ANSIBLE_CONFIG=os.path.join(workdir, "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, ".build", "collections"),
        CHANGEOPS_SQLITE_PATH=ledger,
        PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
    )
    if args.recorder:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "changeops.itsm.change_recorder"
    try:
        print("register_scale: %d hosts, forks %d, recorder %s, ledger %s"
              % (args.hosts, args.forks, "on" if args.recorder else "off", ledger), flush=True)
        baseline = run(workdir, "baseline.yml", env)
        print("  set_fact baseline        %8.1f s" % baseline, flush=True)
        first = run(workdir, "register.yml", env)
        after_first = ledger_count(ledger)
        print("  register_host, 1st run   %8.1f s   ratio %.2f x baseline   CI ledger entries written: %d"
              % (first, first / baseline, after_first))
        second = run(workdir, "register.yml", env)
        written = ledger_count(ledger) - after_first
        print("  register_host, 2nd run   %8.1f s   ratio %.2f x baseline   CI ledger entries written: %d"
              % (second, second / baseline, written))
        print("  target: 1st run <= 1.50 x baseline (%s); 2nd run writes 0 entries (%s)"
              % ("met" if first / baseline <= 1.5 else "NOT met", "met" if written == 0 else "NOT met"))
        return 0 if written == 0 and after_first == args.hosts else 1
    finally:
        if args.keep:
            print("  kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
