# -*- coding: utf-8 -*-
"""Property: a planted secret of any class of issue 13 section 1 never survives in a stored byte, whatever
task output surrounds it.

Hypothesis draws a class of secret, the secret, where in a task result it appears (stdout, stderr, msg,
a dict in msg, argv, a diff, a loop item's label) and arbitrary text around it. The result then goes the
recorder's way: ``summary.summarise_result``/``summarise_diff``/``item_label`` with the run's redactor
(known secrets as the recorder collects them), an entry appended to a real SQLite ledger, the same entry
written to a real spool, and the register generated to HTML and JSON. Every byte of the ledger file, its
-wal and -shm, the spool and both register files is searched for the secret (and its JSON-escaped and
HTML-escaped forms, and its tail, so that a part left behind is found too).
"""

from __future__ import annotations

import base64
import glob
import html
import json
import os
import string
import tempfile
import uuid
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.changeops.itsm.plugins.module_utils.change_register import generate_register
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.redaction import Redactor
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.user import pattern_detector
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder import summary
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool import Spool
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.writer import entry_document
from ansible_collections.changeops.itsm.plugins.plugin_utils.register_render import RegisterRenderer

ALNUM = string.ascii_letters + string.digits
word = st.text(alphabet=ALNUM + "-_.!@%+", min_size=8, max_size=24)
alnum_word = st.text(alphabet=ALNUM, min_size=10, max_size=24)
base64_body = st.text(alphabet=ALNUM + "+/", min_size=40, max_size=64)


def distinct(value, salt):
    """A secret that cannot occur in the stored bytes by chance, not even its tail (a hypothesis word alone
    could: "Unauthoris" is in the register's HTML)."""
    return "Zq%s%s" % (value, salt)


@st.composite
def planted(draw):
    """``(secret, text shown in the task output, known secrets the run holds)``."""
    kind = draw(st.sampled_from([
        "vault_plain", "vault_newline", "vault_int", "vault_json", "vault_base64", "vault_base64_in_pair",
        "vault_upper", "vault_urlencoded", "vault_file_line", "pem", "openssh", "aws", "azure", "url_password",
        "url_token", "curl", "mysql", "sshpass", "pass_option", "env_assignment", "kubernetes", "prose",
        "user_detector", "github_token"]))
    salt = draw(st.uuids()).hex[:8]
    secret = distinct(draw(alnum_word if kind in ("mysql", "sshpass", "curl", "url_token", "prose") else word), salt)
    known = []
    if kind.startswith("vault_"):
        if kind == "vault_plain":
            known, shown = [secret], secret
        elif kind == "vault_newline":
            known, shown = [secret + "\n"], secret
        elif kind == "vault_int":
            number = draw(st.integers(min_value=10 ** 9, max_value=10 ** 15))
            secret = str(number)
            known, shown = ["000" + secret], secret
        elif kind == "vault_json":
            secret = secret[:4] + '"\\' + secret[4:]
            known, shown = [secret], json.dumps(secret)[1:-1]
        elif kind == "vault_base64":
            known, shown = [secret], base64.b64encode(secret.encode()).decode()
        elif kind == "vault_base64_in_pair":
            user = draw(st.text(alphabet=ALNUM, min_size=0, max_size=7))
            known, shown = [secret], base64.b64encode(("%s:%s" % (user, secret)).encode()).decode()
        elif kind == "vault_upper":
            known, shown = [secret], secret.upper()
        elif kind == "vault_urlencoded":
            known, shown = [secret], quote(secret, safe="")
        else:  # a line of a vault-encrypted file echoed alone
            known, shown = ["first line of the file\n%s\nlast line\n" % secret], secret
        return kind, secret, shown, known
    if kind == "pem":
        body = draw(base64_body) + salt
        secret = body
        shown = "-----BEGIN RSA PRIVATE KEY-----\n%s\n-----END RSA PRIVATE KEY-----" % body
    elif kind == "openssh":
        secret = "b3BlbnNzaC1rZXk" + draw(base64_body) + salt
        shown = "-----BEGIN OPENSSH PRIVATE KEY-----\n%s\n" % secret  # cut before its END line
    elif kind == "aws":
        key_id = "AKIA" + draw(st.uuids()).hex[:16].upper()
        secret_key = ("Zq9" + draw(st.text(alphabet=ALNUM + "/+", min_size=29, max_size=29)) + salt)[:40]
        secret = key_id
        shown = "aws_keys %s,%s" % (key_id, secret_key)
        known = []
        return kind, (key_id, secret_key), shown, known
    elif kind == "azure":
        secret = draw(base64_body) + salt + "=="
        shown = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=%s;EndpointSuffix=core.windows.net" % secret
    elif kind == "url_password":
        shown = "https://deploy:%s@git.example.com/repo.git" % quote(secret, safe="")
        secret = quote(secret, safe="")
    elif kind == "url_token":
        shown = "https://%s@github.com/org/repo" % secret
    elif kind == "curl":
        shown = "curl -sS -u admin:%s https://api.example.com" % secret
    elif kind == "mysql":
        shown = "mysql -uroot -p%s -e status" % secret
    elif kind == "sshpass":
        shown = "sshpass -p %s ssh deploy@host" % secret
    elif kind == "pass_option":
        shown = "tool --%s %s --verbose" % (draw(st.sampled_from(["pass", "password", "passwd"])), secret)
    elif kind == "env_assignment":
        name = draw(st.sampled_from(["DB_PASS", "APP_SECRET", "API_TOKEN", "REDIS_PASSWORD", "SMTP_PW"]))
        shown = "export %s=%s" % (name, secret)
    elif kind == "kubernetes":
        key = draw(st.sampled_from(["username", "password", "tls.key", "config"]))
        shown = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  %s: %s\n" % (key, secret)
    elif kind == "prose":
        shown = draw(st.sampled_from(["Your new password is %s.", "the temporary token was %s",
                                      "Password for bob has been set to %s", "the api key is now %s"])) % secret
    elif kind == "user_detector":
        secret = "ACME-" + draw(st.uuids()).hex[:16].upper()
        shown = "licence %s" % secret
    else:
        secret = "ghp_" + draw(st.text(alphabet=ALNUM, min_size=28, max_size=28)) + salt
        shown = "token %s" % secret
    return kind, secret, shown, known


surrounding = st.text(max_size=60)
placement = st.sampled_from(["stdout", "stderr", "msg", "msg_dict", "argv", "diff_after", "diff_before", "item"])


def task_result(shown, where, before, after):
    """An Ansible result dict with ``shown`` at ``where``; shapes stand on lines of their own."""
    text = "%s\n%s\n%s" % (before, shown, after)
    result = {"changed": True, "rc": 0, "stdout": "ok", "msg": "done"}
    if where in ("stdout", "stderr", "msg"):
        result[where] = text
    elif where == "msg_dict":
        result["msg"] = {"output": text, "lines": text.splitlines()}
    elif where == "argv":
        result["cmd"] = ["sh", "-c", shown, before]
    elif where == "item":
        result["item"] = {"name": before, "value": shown}
    else:
        result["diff"] = [{"before_header": "/etc/app.conf", "after_header": "/etc/app.conf",
                           "before": text if where == "diff_before" else before,
                           "after": text if where == "diff_after" else after}]
    return result


def stored_bytes(directory):
    chunks = []
    for path in glob.glob(os.path.join(directory, "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                chunks.append(handle.read())
    return b"\n".join(chunks)


def forms(value):
    """How ``value`` could sit in a stored byte: as is, JSON-escaped, HTML-escaped; and its tail."""
    found = set()
    tail = value[-10:]
    # the tail only when it cannot occur by chance (a run of zeros sits in any SQLite file)
    for text in (value, tail) if len(set(tail)) >= 6 else (value,):
        found.update((text, json.dumps(text)[1:-1], html.escape(text), json.dumps(html.escape(text))[1:-1]))
    return [form.encode("utf-8") for form in found if len(form) >= 6]


@settings(max_examples=int(os.environ.get("CHANGEOPS_PROPERTY_EXAMPLES", "120")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=planted(), where=placement, before=surrounding, after=surrounding)
def test_a_planted_secret_never_survives_in_a_stored_byte(case, where, before, after):
    kind, secret, shown, known = case
    redactor = Redactor(user_detectors=[pattern_detector("acme", r"(?<![A-Z0-9-])ACME-[0-9A-F]{16}(?![0-9A-F])")])
    for value in known:
        redactor.add_known_secret(value)
    raw = task_result(shown, where, before, after)
    run_id = uuid.uuid4().hex
    data = {"run_id": run_id, "play_id": "p1", "host": "web01", "status": "changed", "changed": True,
            "task": {"uuid": "t1", "name": "plant", "action": "ansible.builtin.command", "path": None, "tags": [],
                     "role": None, "handler": False, "check_mode": False},
            "item": {"index": 0, "label": summary.item_label(raw, redactor, False)} if where == "item" else None,
            "started_at": "2026-12-01T10:00:00Z", "ended_at": "2026-12-01T10:00:01Z", "duration_ms": 1000,
            "result": summary.summarise_result(raw, redactor, 2000)}
    diffs = summary.summarise_diff(raw, redactor, 20000)
    if diffs:
        data["diff"] = diffs
    documents = [
        entry_document("run.started", run_id, {"run_id": run_id, "started_at": "2026-12-01T10:00:00Z", "user": "ops",
                                               "controller": "ctl", "playbooks": ["/srv/site.yml"]}),
        entry_document("run.play", run_id, {"run_id": run_id, "play_id": "p1", "name": "play", "hosts": ["web01"]}),
        entry_document("run.result", run_id, data),
        entry_document("run.finished", run_id, {"run_id": run_id, "ended_at": "2026-12-01T10:00:02Z",
                                                "outcome": "successful", "stats": {}}),
    ]
    with tempfile.TemporaryDirectory() as directory:
        sor = open_system_of_record({"backend": "sqlite", "sqlite_path": os.path.join(directory, "ledger.sqlite")})
        try:
            sor.append([Entry.from_dict(document) for document in documents])
            Spool(os.path.join(directory, "spool"), "sqlite-test").write(documents)
            generate_register(sor, {"path": os.path.join(directory, "register.html"),
                                    "json_path": os.path.join(directory, "register.json"), "title": "Register",
                                    "verify_chain": False, "check_projections": False}, RegisterRenderer())
            stored = stored_bytes(directory)
        finally:
            sor.close()
    assert b"web01" in stored and run_id.encode() in stored, "the byte search would not find a recorded value"
    secrets = secret if isinstance(secret, tuple) else (secret,)
    # what the surrounding text holds by chance is no leak
    surroundings = "\n".join((before, after)).encode("utf-8")
    leaked = [form for value in secrets for form in forms(value) if form in stored and form not in surroundings]
    assert not leaked, "%s secret %r (shown as %r at %s) found in stored bytes as %r" % (kind, secret, shown, where, leaked)
