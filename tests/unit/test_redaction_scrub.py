# -*- coding: utf-8 -*-
"""After a redaction, the spool's copies of the redacted entries lose the values too (redaction_scrub)."""

from __future__ import annotations

import json
import os
import stat
import time

from ansible_collections.changeops.itsm.plugins.module_utils import commitments
from ansible_collections.changeops.itsm.plugins.module_utils.redaction_scrub import scrub_spools

VALUE = "s3cr\u00e9t \"quoted\" Planted-91c2"


def document(entry_id, stdout):
    return {"id": entry_id, "at": "2026-12-05T00:00:00Z", "kind": "run.result", "subject": "r", "actor": None,
            "data": {"run_id": "r", "host": "h", "result": {"stdout": stdout, "rc": 0}}}


def write(path, lines, mode=0o600):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(lines))
    os.chmod(path, mode)


def test_every_spool_copy_of_a_redacted_entry_loses_the_value(tmp_path):
    target = tmp_path / "spool" / "sqlite-0123456789abcdef"
    target.mkdir(parents=True)
    value_json = commitments.encode_value("token " + VALUE)
    fields = [(("result", "stdout"), value_json)]
    kept = json.dumps(document("other", "token " + VALUE), sort_keys=True, ensure_ascii=False) + "\n"
    write(target / "0001-1-1.jsonl", [json.dumps(document("leaky", "token " + VALUE), sort_keys=True,
                                                 ensure_ascii=False) + "\n", kept])
    write(target / "0002-1-1.jsonl.rejected", [json.dumps(document("leaky", "token " + VALUE)) + "\n"])  # ASCII escapes
    # a line cut short (a disk that filled up): not JSON, so the value's text is replaced where it stands
    write(target / "0003-1-1.jsonl.bad", ['{"id": "leaky", "data": {"result": {"stdout": "token %s'
                                          % VALUE.replace('"', '\\"') + '", trunc\n'])
    untouched = target / "0004-1-1.jsonl"
    write(untouched, [json.dumps(document("clean", "nothing here")) + "\n"])
    before = os.stat(untouched).st_mtime_ns
    fresh_temp = target / ".tmp-being-written"
    write(fresh_temp, [json.dumps(document("leaky", "token " + VALUE)) + "\n"])

    rewritten = scrub_spools([str(tmp_path / "spool")], [("leaky", fields)])

    assert sorted(os.path.basename(path) for path in rewritten) == [
        "0001-1-1.jsonl", "0002-1-1.jsonl.rejected", "0003-1-1.jsonl.bad"]
    first = (target / "0001-1-1.jsonl").read_text(encoding="utf-8").splitlines(True)
    assert json.loads(first[0])["data"]["result"] == {"stdout": "[redacted]", "rc": 0}
    assert first[1] == kept, "another entry is not ours to change (a later scan finds it)"
    assert VALUE not in (target / "0002-1-1.jsonl.rejected").read_text(encoding="utf-8")
    bad = (target / "0003-1-1.jsonl.bad").read_text(encoding="utf-8")
    assert "Planted-91c2" not in bad and "[redacted]" in bad
    assert os.stat(untouched).st_mtime_ns == before
    assert stat.S_IMODE(os.stat(target / "0001-1-1.jsonl").st_mode) == 0o600
    assert "Planted" in fresh_temp.read_text(encoding="utf-8"), "a batch being written is left alone"
    # one a crashed writer left behind is scrubbed
    old = time.time() - 3600
    os.utime(fresh_temp, (old, old))
    assert scrub_spools([str(tmp_path / "spool")], [("leaky", fields)]) == [str(fresh_temp)]
    assert scrub_spools([str(tmp_path / "spool"), str(tmp_path / "missing")], [("leaky", fields)]) == []


def test_the_spool_and_register_named_in_ansible_cfg_are_found_from_any_folder(tmp_path):
    """The recorder gets spool_dir and register_path from Ansible, relative to the ansible.cfg's folder;
    ledger_redact must scrub that spool and regenerate that register, not ones under the current directory."""
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import register_settings, spool_dirs
    from ansible_collections.changeops.itsm.plugins.module_utils.state_paths import state_spool_dir

    cfg = tmp_path / "project" / "ansible.cfg"
    cfg.parent.mkdir()
    cfg.write_text("[changeops]\nspool_dir = spool\n")
    ini = [{"spool_dir": "spool"}, {"register_path": "out/register.html", "register_title": "Ops changes"}]
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}
    # the recorder's second spool location (the state directory) is scrubbed too
    assert spool_dirs({}, state, ini, config_file=str(cfg)) == [
        str(tmp_path / "project" / "spool"), str(tmp_path / "state" / "changeops" / "spool")]
    assert register_settings({}, {}, ini, config_file=str(cfg)) == (
        str(tmp_path / "project" / "out" / "register.html"), None, "Ops changes")
    # an argument or the environment is taken as given
    assert spool_dirs({}, dict(state, CHANGEOPS_SPOOL_DIR="/var/spool/x", CHANGEOPS_SPOOL_FALLBACK_DIR="/srv/y"), ini,
                      config_file=str(cfg)) == ["/var/spool/x", "/srv/y"]
    assert spool_dirs({}, state, ini + [{"spool_fallback_dir": "state-spool"}], config_file=str(cfg)) == [
        str(tmp_path / "project" / "spool"), str(tmp_path / "project" / "state-spool")]
    assert spool_dirs({"spool_dirs": ["/a", "/b"]}, {}, ini, config_file=str(cfg)) == ["/a", "/b"]
    # nothing configured: the recorder's defaults (for root without XDG_STATE_HOME, /var/lib/changeops/spool)
    assert spool_dirs({}, {}, []) == [os.path.expanduser("~/.ansible/changeops/spool"), state_spool_dir({})]
    # a fallback equal to spool_dir is listed once
    assert spool_dirs({}, {"CHANGEOPS_SPOOL_DIR": "/s", "CHANGEOPS_SPOOL_FALLBACK_DIR": "/s/"}, []) == ["/s"]
