# -*- coding: utf-8 -*-
"""vars_files named by a template, per host: their vault values are found, and each file is read once."""

from __future__ import annotations

import os

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret, VaultSecretsContext
from ansible.playbook.play import Play
from ansible.vars.manager import VariableManager

from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.vars_files import VarsFiles

SECRET = VaultSecret(b"test-vault-password")


def inline_vault(name, plaintext):
    ciphertext = VaultLib([("default", SECRET)]).encrypt(plaintext).decode()
    return "%s: !vault |\n%s\n" % (name, "\n".join("  " + line for line in ciphertext.splitlines()))


def project(tmp_path, hosts, monkeypatch):
    (tmp_path / "vars").mkdir()
    (tmp_path / "vars" / "common.yml").write_text("region: eu\n" + inline_vault("common_secret", "common-s3cret"))
    for site in ("a", "b"):
        (tmp_path / "vars" / ("site-%s.yml" % site)).write_text(inline_vault("site_secret", "site-%s-s3cret" % site))
    (tmp_path / "inventory.ini").write_text("[all_hosts]\n" + "".join(
        "%s site=%s\n" % (host, "a" if number % 2 else "b") for number, host in enumerate(hosts)))
    # one context per process (another test may have opened it with its own secret): this test's, undone after it
    current = VaultSecretsContext.current(optional=True)
    monkeypatch.setattr(VaultSecretsContext, "_current", VaultSecretsContext(
        list(current.secrets if current is not None else []) + [("default", SECRET)]))
    loader = DataLoader()
    loader.set_basedir(str(tmp_path))
    loader.set_vault_secrets([("default", SECRET)])
    reads = []
    real_read = loader.get_text_file_contents

    def counting_read(file_name, *args, **kwargs):
        reads.append(os.path.basename(file_name))
        return real_read(file_name, *args, **kwargs)

    loader.get_text_file_contents = counting_read
    inventory = InventoryManager(loader=loader, sources=[str(tmp_path / "inventory.ini")])
    variable_manager = VariableManager(loader=loader, inventory=inventory)
    (tmp_path / "play.yml").write_text(
        "- hosts: all_hosts\n  gather_facts: false\n  vars_files:\n    - vars/common.yml\n"
        "    - vars/site-{{ site }}.yml\n  tasks: []\n")
    # read like ansible-playbook reads a playbook: its strings are trusted templates
    [data] = loader.load_from_file(str(tmp_path / "play.yml"), trusted_as_template=True)
    play = Play.load(data, variable_manager=variable_manager, loader=loader)
    del reads[:]
    return loader, variable_manager, inventory, play, reads


def test_each_vars_file_is_read_once_however_many_hosts_and_rescans(tmp_path, monkeypatch):
    hosts = ["h%02d" % number for number in range(12)]
    _loader, variable_manager, inventory, play, reads = project(tmp_path, hosts, monkeypatch)
    found = []
    files = VarsFiles(found.append)
    for _rescan in range(3):  # a host is scanned again after each result that set facts
        for host in hosts:
            files.scan_host(variable_manager, play, inventory.get_host(host))
    assert sorted(set(found)) == ["common-s3cret", "site-a-s3cret", "site-b-s3cret"]
    assert sorted(reads) == ["common.yml", "site-a.yml", "site-b.yml"], "each file parsed once"
    assert files.reads == 3

    # what the recorder did before: Ansible's own get_vars parses every plain vars file each time
    del reads[:]
    for host in hosts:
        variable_manager.get_vars(play=play, host=inventory.get_host(host), include_hostvars=False)
    assert len(reads) == 2 * len(hosts)


def test_a_vars_file_changed_during_the_run_is_read_again(tmp_path, monkeypatch):
    _loader, variable_manager, inventory, play, reads = project(tmp_path, ["h1"], monkeypatch)
    found = []
    files = VarsFiles(found.append)
    files.scan_host(variable_manager, play, inventory.get_host("h1"))
    path = tmp_path / "vars" / "site-b.yml"
    path.write_text(inline_vault("site_secret", "rotated-s3cret") + "# a longer file\n")
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    files.scan_host(variable_manager, play, inventory.get_host("h1"))
    assert "rotated-s3cret" in found and files.reads == 3
    assert reads.count("site-b.yml") == 2 and reads.count("common.yml") == 1
