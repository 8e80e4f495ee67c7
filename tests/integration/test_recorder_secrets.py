# -*- coding: utf-8 -*-
"""No secret reaches the system of record: a playbook plants every kind of secret, the ledger holds none.

Secrets are planted through: no_log on a task, no_log on one loop item, vaulted values (play vars,
playbook group_vars, two vars_files with inline !vault values, a wholly encrypted vars_file, vars_files
named by a template that each host resolves to its own file, one only once a set_fact defined its
name, and both kinds of file loaded at run time by ``include_vars``, which parses them in a worker)
echoed by ``command``, shown in a diff and used as a dict key, a ``password`` argument that a careless
module echoes back in its result, an extra var echoed by a task (and used in its name), a password on
a command line, a quoted password with spaces, a bearer token in an ``Authorization`` header and a
password in a URL. The playbook runs with ``-v``, so its own output shows that every secret that is not
``no_log`` really reached a task result. On SQLite the ledger's raw bytes (database, WAL and
shared-memory files) are searched as well.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import uuid

import pytest

pytestmark = [pytest.mark.integration]

LEAKY_MODULE = '''#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(user=dict(type="str"), password=dict(type="str", no_log=False)),
                           supports_check_mode=True)
    password = module.params["password"]
    module.exit_json(changed=False, password=password, msg="logged in as %s" % module.params["user"],
                     stdout="login ok, password: %s" % password)


if __name__ == "__main__":
    main()
'''


def secret(kind):
    return "%s-%s" % (kind, uuid.uuid4().hex[:12])


def encrypt_string(project, value, name):
    completed = subprocess.run(
        [os.path.join(os.path.dirname(project.command("x")[0]), "ansible-vault"), "encrypt_string",
         "--vault-password-file", project.path("vault-pass"), value, "--name", name],
        cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, check=True)
    return completed.stdout


def indent(text, spaces):
    return "".join(" " * spaces + line if line.strip() else line for line in text.splitlines(True))


#: secrets that a no_log result carries: ansible-playbook -v does not show them either
NO_LOG_KINDS = ("NoLogTask", "NoLogItem")


def test_no_secret_reaches_the_ledger(project, backend, open_sor):
    secrets = {kind: secret(kind) for kind in (
        "NoLogTask", "NoLogItem", "VaultPlay", "VaultGroup", "VaultFile", "VaultFile2", "VaultWhole", "ArgPassword",
        "ExtraVar", "CmdLine", "IncludedWhole", "IncludedInline", "VaultSiteA", "VaultSiteB", "VaultLate",
        "QuotedWord1", "QuotedWord2", "QuotedWord3", "BearerToken", "UrlPassword")}
    public_value = secret("PublicItem")
    project.write("vault-pass", "correct horse battery staple\n", mode=0o600)
    project.write("library/leaky_login.py", LEAKY_MODULE)
    project.write_inventory(["localhost"])
    with open(project.path("inventory.ini"), "a") as handle:
        # two hosts whose vars_files template resolves to different files
        handle.write("[sites]\n")
        for host, site in (("site_a", "a"), ("site_b", "b")):
            handle.write("%s ansible_connection=local ansible_python_interpreter=%s site=%s\n" % (
                host, sys.executable, site))
    project.write("group_vars/all_hosts.yml", encrypt_string(project, secrets["VaultGroup"], "vault_group"))
    project.write("vars/inline.yml", encrypt_string(project, secrets["VaultFile"], "vault_file"))
    project.write("vars/inline2.yml", encrypt_string(project, secrets["VaultFile2"], "vault_file2"))
    project.write("vars/site-a.yml", encrypt_string(project, secrets["VaultSiteA"], "site_secret"))
    project.write("vars/site-b.yml", encrypt_string(project, secrets["VaultSiteB"], "site_secret"))
    project.write("vars/late-chosen.yml", encrypt_string(project, secrets["VaultLate"], "late_secret"))
    project.write("vars/whole.yml", "vault_whole: %s\n" % secrets["VaultWhole"])
    project.write("vars/included_whole.yml", "included_whole: %s\n" % secrets["IncludedWhole"])
    project.write("vars/included_inline.yml", encrypt_string(project, secrets["IncludedInline"], "included_inline"))
    for path in ("vars/whole.yml", "vars/included_whole.yml"):
        subprocess.run([os.path.join(os.path.dirname(project.command("x")[0]), "ansible-vault"), "encrypt",
                        "--vault-password-file", project.path("vault-pass"), project.path(path)],
                       cwd=project.root, env=project.env(), check=True, stdout=subprocess.DEVNULL)
    target = project.path("rendered.txt")
    project.write("secrets.yml", """
        - name: Plant secrets
          hosts: all_hosts
          gather_facts: false
          vars:
        {play_vault}
            loop_items:
              - {{name: public, value: {public}}}
              - {{name: private, value: {no_log_item}}}
          vars_files:
            - vars/inline.yml
            - vars/inline2.yml
            - vars/whole.yml
          tasks:
            - name: Echo every vaulted value
              ansible.builtin.command: >-
                echo {{{{ vault_play }}}} {{{{ vault_group }}}} {{{{ vault_file }}}} {{{{ vault_file2 }}}} {{{{ vault_whole }}}}

            - name: Use a vaulted value as a key
              ansible.builtin.debug:
                msg: "{{{{ {{vault_file2: 'is a key'}} }}}}"

            - name: Quoted password with spaces
              ansible.builtin.shell: echo 'db_password="{quoted}"'
              changed_when: false

            - name: Authorization header
              ansible.builtin.command: >-
                echo curl -H "Authorization: Bearer {bearer}" https://api.example.com/v1
              changed_when: false

            - name: Password in a URL
              ansible.builtin.command: echo git clone https://deploy:{url_password}@git.example.com/repo.git
              changed_when: false

            - name: Show a vaulted value
              ansible.builtin.debug:
                msg: "the value is {{{{ vault_play }}}}"

            - name: Render a vaulted value into a file (diff mode)
              ansible.builtin.copy:
                content: "value={{{{ vault_group }}}}\\n"
                dest: {target}
                mode: "0600"
              diff: true

            - name: Secret task
              ansible.builtin.command: echo {no_log_task}
              no_log: true

            - name: One secret item
              ansible.builtin.command: echo {{{{ item.value }}}}
              loop: "{{{{ loop_items }}}}"
              no_log: "{{{{ item.name == 'private' }}}}"

            - name: Log in with a password argument
              leaky_login:
                user: admin
                password: {arg_password}

            - name: Echo {{{{ deploy_note }}}}
              ansible.builtin.command: echo {{{{ deploy_note }}}}

            - name: Password on a command line
              ansible.builtin.command: echo mysqladmin --password={cmd_line} status

            - name: Load a vaulted file at run time
              ansible.builtin.include_vars: vars/included_whole.yml

            - name: Load a file with an inline vaulted value at run time
              ansible.builtin.include_vars: vars/included_inline.yml

            - name: Echo the values loaded at run time
              ansible.builtin.command: echo {{{{ included_whole }}}} {{{{ included_inline }}}}

        - name: Per-host vars files
          hosts: sites
          gather_facts: false
          vars_files:
            - "vars/site-{{{{ site }}}}.yml"
            - "vars/late-{{{{ late_name }}}}.yml"
          tasks:
            - name: Echo the site secret
              ansible.builtin.command: echo {{{{ site_secret }}}}

            - name: Name the late vars file (a fact, which vars_files templates see)
              ansible.builtin.set_fact:
                late_name: chosen
                cacheable: true

            - name: Echo the late secret
              ansible.builtin.command: echo {{{{ late_secret }}}}
        """.format(play_vault=indent(encrypt_string(project, secrets["VaultPlay"], "vault_play"), 4),
                   public=public_value, no_log_item=secrets["NoLogItem"], target=target,
                   no_log_task=secrets["NoLogTask"], arg_password=secrets["ArgPassword"],
                   cmd_line=secrets["CmdLine"], bearer=secrets["BearerToken"], url_password=secrets["UrlPassword"],
                   quoted=" ".join(secrets["QuotedWord%d" % number] for number in (1, 2, 3))))

    completed = project.run("secrets.yml", "-v", "--vault-password-file", project.path("vault-pass"),
                            "-e", "deploy_note=%s" % secrets["ExtraVar"])
    with open(target) as handle:
        assert handle.read() == "value=%s\n" % secrets["VaultGroup"], "the playbook did not use the secrets"
    # the test plants real secrets: Ansible's own (verbose) output shows each one in a task result
    not_shown = [kind for kind, value in secrets.items() if kind not in NO_LOG_KINDS and value not in completed.stdout]
    assert not not_shown, "these secrets never reached a task result: %s\n%s" % (not_shown, completed.stdout[-20000:])

    sor = open_sor()
    [event] = sor.find_change_events()
    run_id = event["run_id"]
    results = {(r["task"]["name"], (r["item"] or {}).get("index")): r
               for r in sor.get_task_results(run_id) if r["host"] == "localhost"}
    site_results = {(r["task"]["name"], r["host"]): r for r in sor.get_task_results(run_id) if r["host"] != "localhost"}

    # what was recorded is still useful: statuses, public output, redaction markers
    echoed = results[("Echo every vaulted value", None)]["result"]
    assert echoed["stdout"] == " ".join(["********"] * 5)
    assert results[("Use a vaulted value as a key", None)]["result"]["msg"] == {"********": "is a key"}
    assert results[("Quoted password with spaces", None)]["result"]["stdout"] == 'db_password="********"'
    assert results[("Authorization header", None)]["result"]["stdout"] == (
        "curl -H Authorization: Bearer ******** https://api.example.com/v1")
    assert results[("Password in a URL", None)]["result"]["stdout"] == (
        "git clone https://deploy:********@git.example.com/repo.git")
    for host in ("site_a", "site_b"):
        assert site_results[("Echo the site secret", host)]["result"]["stdout"] == "********"
        assert site_results[("Echo the late secret", host)]["result"]["stdout"] == "********"
    assert results[("Show a vaulted value", None)]["result"]["msg"] == "the value is ********"
    [diff] = results[("Render a vaulted value into a file (diff mode)", None)]["diff"]
    assert diff["after"] == "value=********\n"
    assert "censored" in results[("Secret task", None)]["result"]
    public_item = results[("One secret item", 0)]
    assert public_item["item"]["label"] == "{'name': 'public', 'value': '%s'}" % public_value or \
        public_value in public_item["item"]["label"]
    assert public_item["result"]["stdout"] == public_value
    private_item = results[("One secret item", 1)]
    assert private_item["item"]["label"] == "(censored)"
    assert "censored" in private_item["result"] and "stdout" not in private_item["result"]
    login = results[("Log in with a password argument", None)]["result"]
    assert login["msg"] == "logged in as admin"
    assert "********" in login["stdout"]
    assert results[("Echo ********", None)]["result"]["stdout"] == "********"
    assert "--password=********" in results[("Password on a command line", None)]["result"]["stdout"]
    assert results[("Echo the values loaded at run time", None)]["result"]["stdout"] == "******** ********"
    assert [entry.data["extra_var_names"] for entry in sor.iter_entries(kinds=["run.started"])] == [["deploy_note"]]

    everything = "\n".join(entry.canonical() for entry in sor.iter_entries())
    for kind, value in secrets.items():
        assert value not in everything, "%s secret found in the ledger entries" % kind
    assert public_value in everything
    assert sor.verify().valid
    sor.close()

    if backend == "sqlite":
        ledger = project.backend_env["CHANGEOPS_SQLITE_PATH"]
        raw = b""
        for path in [ledger] + glob.glob(ledger + "-*"):
            with open(path, "rb") as handle:
                raw += handle.read()
        assert public_value.encode() in raw, "the byte search would not find a recorded value"
        for kind, value in secrets.items():
            assert value.encode() not in raw, "%s secret found in the ledger file bytes" % kind
    for path in glob.glob(os.path.join(project.spool_dir, "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                content = handle.read()
            for kind, value in secrets.items():
                assert value.encode() not in content, "%s secret found in spool file %s" % (kind, path)
