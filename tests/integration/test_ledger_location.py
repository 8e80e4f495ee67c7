# -*- coding: utf-8 -*-
"""Where the ledger is: one file, whatever directory ansible-playbook runs from.

A relative ``sqlite_path`` in ansible.cfg's ``[changeops]`` section is relative to the folder of
that ansible.cfg, for every part of the collection: the recorder (configured by Ansible), the
modules (their action plugins read the section themselves) and the ``cmdb`` inventory plugin. It
was resolved against the current directory by the modules, so running from another folder split
the audit trail into a second, empty ledger. A run that is about to create a new ledger while
another one is configured or exists says so.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from support.project import VENV_BIN, Project

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

pytestmark = [pytest.mark.integration, pytest.mark.backends("sqlite")]

PLAYBOOK = """
- name: Use the system of record from a task
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Register this machine as a CI
      changeops.itsm.configuration_item:
        name: app01
        ci_class: server
        attributes:
          environment: test

    - name: Where the modules find the ledger
      changeops.itsm.ledger_verify:
      register: verified

    - name: Say it
      ansible.builtin.debug:
        msg: "modules use {{ verified.backend }}"
"""

CMDB_INVENTORY = """
plugin: changeops.itsm.cmdb
"""


def run_from(project, cwd, *args, env=None, command=None):
    """ansible-playbook (or ``command``) with the project's ansible.cfg (ANSIBLE_CONFIG), started in ``cwd``."""
    argv = [os.path.join(VENV_BIN, command)] + list(args) if command else project.command(*args)
    completed = subprocess.run(argv, cwd=str(cwd), env=project.env(env), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                               timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout[-10000:]
    return completed.stdout


def ledgers_under(*roots):
    found = []
    for root in roots:
        for folder, _dirs, files in os.walk(str(root)):
            found.extend(os.path.join(folder, name) for name in files if name.endswith(".sqlite"))
    return sorted(found)


def test_a_relative_sqlite_path_is_relative_to_ansible_cfg_for_every_plugin(tmp_path):
    project = Project(tmp_path / "project", {})
    project.write_cfg("\n[changeops]\nsqlite_path = state/ledger.sqlite\n")
    os.makedirs(project.path("state"))
    project.write_playbook("pb.yml", PLAYBOOK)
    project.write("inventory/ci.cmdb.yml", CMDB_INVENTORY)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "state").mkdir(parents=True)
    expected = project.path("state", "ledger.sqlite")

    output = run_from(project, elsewhere, project.path("pb.yml"))
    assert "modules use sqlite:%s" % expected in output, output
    # the inventory plugin reads the same ledger: the CI the modules registered is a host
    inventory = run_from(project, elsewhere, "-i", project.path("inventory", "ci.cmdb.yml"), "--graph",
                         command="ansible-inventory")
    assert "|--app01" in inventory, inventory
    assert ledgers_under(tmp_path) == [expected], "one ledger, next to ansible.cfg"
    with open_system_of_record({"backend": "sqlite", "sqlite_path": expected, "busy_timeout": 60}) as sor:
        # the recorder wrote its change event to that ledger too
        assert [event["playbook"] for event in sor.find_change_events()] == [project.path("pb.yml")]
        assert sor.find_cis(name="app01")
    assert "creating a new, empty ledger" not in output + inventory


def test_a_run_that_would_start_a_second_ledger_says_so(tmp_path):
    project = Project(tmp_path / "project", {})
    project.write_cfg("\n[changeops]\nsqlite_path = ledger.sqlite\n")
    project.write_playbook("pb.yml", PLAYBOOK)
    first = project.run("pb.yml").stdout
    assert "creating a new, empty ledger" not in first, "the first ledger of a project is no surprise"
    assert "creating a new, empty ledger" not in project.run("pb.yml").stdout

    stray = str(tmp_path / "stray" / "ledger.sqlite")
    os.makedirs(os.path.dirname(stray))
    output = " ".join(project.run("pb.yml", env={"CHANGEOPS_SQLITE_PATH": stray}).stdout.split())
    assert ("creating a new, empty ledger %s (environment variable CHANGEOPS_SQLITE_PATH) while another ledger is "
            "configured or present: %s (%s [changeops] sqlite_path, exists)"
            % (stray, project.path("ledger.sqlite"), project.path("ansible.cfg"))) in output, output
    assert output.count("creating a new, empty ledger") == 1, "said once, by whoever opens the ledger first"


# -- every path option of ansible.cfg, relative to that file's folder --------------------------------------------
BOTH = ("changeops", "callback_change_recorder")

#: (reader, section, key) of every path option the collection reads from ansible.cfg: the recorder and the cmdb
#: inventory (Ansible resolves their ``type: path`` options; the recorder's witness_file, a string, itself), the
#: modules' action plugins, ledger_redact (the recorder's spool and register, to scrub them) and ServiceNow
PATH_OPTIONS = sorted(
    [("recorder", "changeops", "sqlite_path"), ("inventory", "changeops", "sqlite_path"),
     ("recorder", "callback_change_recorder", "register_path"),
     ("recorder", "callback_change_recorder", "register_json_path"),
     ("modules", "changeops", "sqlite_path"), ("modules", "changeops", "gate_policy")]
    + [("recorder", section, key) for section in BOTH
       for key in ("spool_dir", "spool_fallback_dir", "redact_patterns_file", "checkpoint_key", "witness_file",
                   "witness_syslog_address")]
    + [("modules", section, key) for section in BOTH
       for key in ("checkpoint_key", "witness_file", "witness_syslog_address", "checkpoint_public_keys",
                   "checkpoint_sources")]
    + [("ledger_redact", section, key) for section in BOTH
       for key in ("spool_dir", "spool_fallback_dir", "register_path", "register_json_path")]
    + [("servicenow", "changeops_servicenow", key)
       for key in ("ca_path", "client_certificate_file", "client_key_file")])

#: run with the project's ansible.cfg (ANSIBLE_CONFIG) from another folder: each reader's value of each option,
#: through the calls the plugins make, and the path options the recorder's and inventory's documentation declare
PROBE = r"""
import json, os, sys, types
from ansible import constants as C
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import callback_loader, init_plugin_loader, inventory_loader
init_plugin_loader(C.COLLECTIONS_PATHS)
from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints, ledger_redaction
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import ansible_config_file, controller_settings
from ansible_collections.changeops.itsm.plugins.plugin_utils.action import ansible_cfg_path, controller_backend_config, controller_policy_path
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.post_run.sign_checkpoint import checkpoint_settings

found, declared = {}, []
recorder = callback_loader.get("changeops.itsm.change_recorder")
recorder.set_options()
options = recorder._options_dict()
for name in ("sqlite_path", "spool_dir", "spool_fallback_dir", "redact_patterns_file", "register_path",
             "register_json_path"):
    found["recorder " + name] = options.get(name)
for name, value in checkpoint_settings(options).items():
    found["recorder " + name] = value
inventory = inventory_loader.get("changeops.itsm.cmdb")
inventory.loader = DataLoader()
inventory._read_config_data(sys.argv[1])
found["inventory sqlite_path"] = inventory.get_option("sqlite_path")
for kind, plugin in (("callback", recorder), ("inventory", inventory)):
    for name, spec in C.config.get_configuration_definitions(kind, plugin._load_name).items():
        for ini in spec.get("ini") or ():
            declared.append([kind, ini["section"], ini["key"], spec.get("type")])

cfg = ansible_cfg_path()
found["modules sqlite_path"] = controller_backend_config({})["sqlite_path"]
found["modules gate_policy"] = controller_policy_path()
for name, value in checkpoints.settings_for(types.SimpleNamespace(config_file=cfg, params={})).items():
    found["modules " + name] = value
sections = ledger_redaction._ini_sections(cfg)
spool, fallback = ledger_redaction.spool_dirs({}, ini=sections, config_file=cfg)
register = ledger_redaction.register_settings({}, ini=sections, config_file=cfg) or (None, None, None)
found.update({"ledger_redact spool_dir": spool, "ledger_redact spool_fallback_dir": fallback,
              "ledger_redact register_path": register[0], "ledger_redact register_json_path": register[1]})
for name, value in controller_settings(None, ansible_config_file()).items():
    found["servicenow " + name] = value
print(json.dumps({"found": found, "declared": declared}))
"""


def written_cfg(folder, section):
    """An ansible.cfg in ``folder`` setting every path option of ``section`` (and ServiceNow's, with
    [changeops]) to a relative path that names the option: ``rel/<section>/<key>``."""
    keys = sorted(set(key for _reader, option_section, key in PATH_OPTIONS if option_section == section))
    lines = ["[defaults]", "callbacks_enabled = changeops.itsm.change_recorder", "", "[%s]" % section]
    lines += ["%s = rel/%s/%s" % (key, section, key) for key in keys]
    if section == "changeops":
        lines += ["", "[changeops_servicenow]"]
        lines += ["%s = rel/changeops_servicenow/%s" % (key, key) for _reader, option_section, key in PATH_OPTIONS
                  if option_section == "changeops_servicenow"]
    os.makedirs(str(folder))
    with open(os.path.join(str(folder), "ansible.cfg"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    with open(os.path.join(str(folder), "ci.cmdb.yml"), "w") as handle:
        handle.write("plugin: changeops.itsm.cmdb\n")
    return os.path.join(str(folder), "ansible.cfg")


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    """Per section of ansible.cfg: ``(folder of the ansible.cfg, what the probe found)``, run from another folder."""
    root = tmp_path_factory.mktemp("path-options")
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    results = {}
    for section in BOTH:
        cfg = written_cfg(root / section, section)
        env = {"PATH": os.environ["PATH"], "HOME": str(root / "home"), "XDG_STATE_HOME": str(root / "state"),
               "ANSIBLE_CONFIG": cfg, "ANSIBLE_COLLECTIONS_PATH": os.environ["ANSIBLE_COLLECTIONS_PATH"],
               "ANSIBLE_LOCAL_TEMP": str(root / "tmp")}
        completed = subprocess.run([os.path.join(VENV_BIN, "python"), "-c", PROBE,
                                    os.path.join(os.path.dirname(cfg), "ci.cmdb.yml")],
                                   cwd=str(elsewhere), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, universal_newlines=True, timeout=300, check=False)
        assert completed.returncode == 0, completed.stderr[-5000:]
        results[section] = (os.path.dirname(cfg), json.loads(completed.stdout.strip().splitlines()[-1]))
    results["changeops_servicenow"] = results["changeops"]
    return results


@pytest.mark.parametrize("reader, section, key", PATH_OPTIONS, ids=["-".join(row) for row in PATH_OPTIONS])
def test_every_path_option_of_ansible_cfg_is_relative_to_its_folder(resolved, reader, section, key):
    folder, probed = resolved[section]
    value = probed["found"]["%s %s" % (reader, key)]
    if isinstance(value, list):
        [value] = value
    assert value == os.path.join(folder, "rel", section, key), (
        "%s reads %s of [%s] from the current directory, not ansible.cfg's folder %s" % (reader, key, section, folder))


def test_the_table_lists_every_path_option_the_collection_reads_from_ansible_cfg(resolved):
    """A new path option with an ansible.cfg entry, in the plugins' documentation or the option tables of the
    modules and ServiceNow, needs a row in PATH_OPTIONS (and so the one resolver, config.path_from_ini)."""
    from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
    from ansible_collections.changeops.itsm.plugins.module_utils.config import BACKEND_OPTIONS
    from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import OPTIONS

    paths = ("path", "pathspec", "pathlist", "tmppath")
    checkpoint_paths = set(name for name, option in checkpoints.CHECKPOINT_OPTIONS.items()
                           if option["type"] in ("path", "list"))
    wanted = set()
    for kind, section, key, option_type in resolved["changeops"][1]["declared"]:
        if option_type in paths or key in checkpoint_paths:
            wanted.add(("recorder" if kind == "callback" else "inventory", section, key))
    wanted.update(("modules", "changeops", name) for name, option in BACKEND_OPTIONS.items()
                  if option["type"] == "path")
    wanted.update(("modules", section, name) for section in BOTH for name in checkpoint_paths)
    wanted.update(("servicenow", "changeops_servicenow", name) for name, option in OPTIONS.items()
                  if option["type"] == "path")
    assert len(wanted) >= 30 and wanted - set(PATH_OPTIONS) == set(), sorted(wanted - set(PATH_OPTIONS))
