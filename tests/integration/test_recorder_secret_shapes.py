# -*- coding: utf-8 -*-
"""Secrets of every class of issue 13 section 1 reach task results, and none of them reaches a stored byte.

One playbook run (``-v --diff``, a vault password file, the register refreshed to HTML and JSON) plants:

* vault values in other forms: a value with a trailing newline echoed by ``command`` (which strips it),
  a numeric value through ``| int``, JSON-escaped (``to_json``), base64 (``b64encode`` and ``| base64`` of
  ``user:value``), upper-cased;
* the content of vault-encrypted files read during the run: ``lookup('file')``, ``lookup('unvault')``,
  ``copy: src:`` with ``--diff``, ``include_vars`` (also with ``name:``, and for another host with
  ``delegate_facts``) echoed in a later play;
* secrets of well-known shapes in stdout, stderr, msg and diffs: PEM and OpenSSH private keys, an AWS key
  pair, a GCP service-account key file, an Azure connection string, credentials in URLs, password options
  (``curl -u``, ``mysql -p``, ``sshpass -p``, ``--pass``, ``--password`` in argv), env-style assignments in a
  file's diff, keys ``pass``/``pw``/``auth``/``key``/``tls.key`` and a Kubernetes Secret, prose;
* values of variables named in ``secret_vars`` (from ``lookup('env')``, and a registered command output),
  and one matched by a user detector file (``redact_patterns_file``).

``ansible-playbook -v`` prints each task result, so the test first proves that every planted value
really reached a result; then it reads every byte the collection wrote: the ledger (SQLite file, -wal and
-shm; on PostgreSQL every row of every table), the spool, and the register's HTML and JSON.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import subprocess
import sys
import uuid

import pytest

from support.raw_ledger import raw_ledger_connection

pytestmark = [pytest.mark.integration]


def token(kind, alphabet="hex"):
    value = uuid.uuid4().hex
    if alphabet == "alnum":
        value = "".join(c.upper() if i % 3 == 0 else c for i, c in enumerate(value))
    return "%s%s" % (kind, value[:14])


def vault(project, *args, **kwargs):
    executable = os.path.join(os.path.dirname(project.command("x")[0]), "ansible-vault")
    return subprocess.run([executable] + list(args) + ["--vault-password-file", project.path("vault-pass")],
                          cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=True, **kwargs).stdout


def encrypt_string(project, name, value):
    """``name: !vault ...`` for ``value`` exactly (read from stdin, so a trailing newline is kept)."""
    return vault(project, "encrypt_string", "--stdin-name", name, input=value)


def encrypt_file(project, relative, content):
    project.write(relative, content)
    vault(project, "encrypt", project.path(relative))


def stored_bytes(project, backend, backend_env, sor, register_paths):
    """Every byte the collection wrote: ledger storage, spool files, register HTML and JSON."""
    chunks = []
    if backend == "sqlite":
        ledger = backend_env["CHANGEOPS_SQLITE_PATH"]
        for path in [ledger] + glob.glob(ledger + "-*"):
            with open(path, "rb") as handle:
                chunks.append(handle.read())
    else:
        connection = raw_ledger_connection(sor, backend_env)
        try:
            tables = [row[0] for row in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()").fetchall()]
            assert "ledger" in " ".join(tables), tables
            for table in tables:
                for row in connection.execute('SELECT t::text FROM "%s" t' % table).fetchall():
                    chunks.append(row[0].encode("utf-8"))
        finally:
            connection.close()
    for path in glob.glob(os.path.join(project.spool_dir, "**", "*"), recursive=True) + list(register_paths):
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                chunks.append(handle.read())
    return b"\n".join(chunks)


def variants_in(raw, value):
    """The stored forms of ``value`` we look for: as is, JSON-escaped, and HTML-escaped (the register)."""
    import html

    forms = {value, json.dumps(value)[1:-1], html.escape(value), json.dumps(html.escape(value))[1:-1]}
    return [form for form in forms if form.encode("utf-8") in raw]


def test_secrets_of_common_shapes_never_reach_a_stored_byte(project, backend, backend_env, open_sor):
    s = {}
    # vault values in other forms
    s["VaultNewline"] = token("VaultNl")
    s["VaultInt"] = "000" + "7" + str(uuid.uuid4().int)[:11]
    s["VaultJson"] = 'Json"q\\' + token("Esc")
    s["VaultBase64"] = token("VaultB64")
    s["VaultUpper"] = token("vaultup")
    # vault-encrypted files
    s["FileLookup"] = token("FileLookup")
    s["Unvault"] = token("Unvault")
    s["CopySrc"] = token("CopySrc")
    s["IncludeVars"] = token("IncVars")
    s["IncludeNamed"] = token("IncNamed")
    s["IncludeDelegated"] = token("IncDelegated")
    # shapes
    s["PemBody"] = "MIIEpAIBAAKCAQEA" + uuid.uuid4().hex + uuid.uuid4().hex.upper()
    s["OpenSshBody"] = "b3BlbnNzaC1rZXktdjEAAAAA" + uuid.uuid4().hex
    s["AwsKeyId"] = "AKIA" + uuid.uuid4().hex[:16].upper()
    s["AwsSecret"] = (uuid.uuid4().hex[:10] + "/" + uuid.uuid4().hex[:10].upper() + "+" + uuid.uuid4().hex)[:40]
    s["GcpKey"] = "MIIEvQIBADANBgkq" + uuid.uuid4().hex
    s["GcpKeyId"] = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    s["AzureKey"] = uuid.uuid4().hex + uuid.uuid4().hex.upper() + "=="
    s["UrlPassword"] = token("UrlPw")
    s["UrlToken"] = token("UrlTok")
    s["CurlPassword"] = token("CurlPw")
    s["MysqlPassword"] = token("MysqlPw")
    s["SshpassPassword"] = token("SshPw")
    s["PassOption"] = token("PassOpt")
    s["PasswordArgv"] = token("PwArgv")
    s["EnvDbPass"] = token("DbPass")
    s["EnvSecret"] = token("AppSecret")
    s["EnvToken"] = token("ApiToken")
    s["KeyPass"] = token("KeyPass")
    s["KeyPw"] = token("KeyPw")
    s["KeyAuth"] = token("KeyAuth")
    s["KeyKey"] = token("KeyKey")
    s["KeyTls"] = token("KeyTls")
    s["K8sData"] = token("K8sData")
    s["ProseStdout"] = token("ProseOut")
    s["ProseStderr"] = token("ProseErr")
    s["ProseMsg"] = token("ProseMsg")
    s["SecretVar"] = token("SecretVar")
    s["RegisteredVar"] = token("RegVar")
    s["UserDetector"] = "ACME-" + uuid.uuid4().hex[:16].upper()

    project.write("vault-pass", "correct horse battery staple\n", mode=0o600)
    project.write("patterns.yml", "- name: acme_licence\n  pattern: '(?<![A-Z0-9-])ACME-[0-9A-F]{16}(?![0-9A-F])'\n")
    project.write("group_vars/all_hosts.yml", "".join(encrypt_string(project, name, value) for name, value in (
        ("vault_newline", s["VaultNewline"] + "\n"), ("vault_int", s["VaultInt"]), ("vault_json", s["VaultJson"]),
        ("vault_b64", s["VaultBase64"]), ("vault_upper", s["VaultUpper"]))))
    encrypt_file(project, "files/looked-up.txt", s["FileLookup"] + "\n")
    encrypt_file(project, "files/unvaulted.txt", s["Unvault"] + "\n")
    encrypt_file(project, "files/copied.conf", "listen 8080\nshared_key_line %s\n" % s["CopySrc"])
    encrypt_file(project, "vars/included.yml", "included_secret: %s\n" % s["IncludeVars"])
    encrypt_file(project, "vars/named.yml", "token_value: %s\n" % s["IncludeNamed"])
    encrypt_file(project, "vars/delegated.yml", "delegated_value: %s\n" % s["IncludeDelegated"])
    with open(project.path("inventory.ini"), "a") as handle:
        # a host that only receives variables (include_vars with delegate_facts) and echoes them later
        handle.write("[peers]\npeer ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    project.write("files/sa.json", json.dumps({
        "type": "service_account", "project_id": "demo", "private_key_id": s["GcpKeyId"],
        "private_key": "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n" % s["GcpKey"],
        "client_email": "deploy@demo.iam.gserviceaccount.com"}, indent=2))
    out = project.path("out")
    project.write("shapes.yml", """
        - name: Vault values in other forms, vault files, shapes
          hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Trailing newline stripped by command
              ansible.builtin.command: printf '%s\\n' "{{{{ vault_newline }}}}"
              changed_when: false
            - name: Numeric vault value through int
              ansible.builtin.debug:
                msg: "{{{{ vault_int | int }}}}"
            - name: JSON-escaped vault value
              ansible.builtin.debug:
                msg: "{{{{ {{'wrapped': vault_json}} | to_json }}}}"
            - name: Base64 of a vault value
              ansible.builtin.command: echo {{{{ vault_b64 | b64encode }}}} {{{{ ('admin:' ~ vault_b64) | b64encode }}}}
              changed_when: false
            - name: Upper-cased vault value
              ansible.builtin.command: echo {{{{ vault_upper | upper }}}}
              changed_when: false
            - name: Read an encrypted file with the file lookup
              ansible.builtin.debug:
                msg: "{{{{ lookup('ansible.builtin.file', 'files/looked-up.txt') }}}}"
            - name: Read an encrypted file with the unvault lookup
              ansible.builtin.debug:
                msg: "{{{{ lookup('ansible.builtin.unvault', 'files/unvaulted.txt') }}}}"
            - name: Copy an encrypted file (diff)
              ansible.builtin.copy:
                src: files/copied.conf
                dest: "{out}/copied.conf"
                mode: "0600"
            - name: Load an encrypted vars file
              ansible.builtin.include_vars: vars/included.yml
            - name: Load an encrypted vars file under a name
              ansible.builtin.include_vars:
                file: vars/named.yml
                name: creds
            - name: Load an encrypted vars file for another host
              ansible.builtin.include_vars: vars/delegated.yml
              delegate_to: peer
              delegate_facts: true
            - name: A PEM private key in a file's diff and in stdout
              ansible.builtin.copy:
                content: "-----BEGIN RSA PRIVATE KEY-----\\n{pem}\\n-----END RSA PRIVATE KEY-----\\n"
                dest: "{out}/id_rsa"
                mode: "0600"
            - name: Print the private keys
              ansible.builtin.shell: >-
                cat {out}/id_rsa;
                printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\\n{openssh}\\n-----END OPENSSH PRIVATE KEY-----\\n'
              changed_when: false
            - name: AWS credentials in output
              ansible.builtin.command: echo "aws keys {aws_id},{aws_secret}"
              changed_when: false
            - name: GCP service account key file
              ansible.builtin.command: cat files/sa.json
              changed_when: false
            - name: Azure storage connection string
              ansible.builtin.command: >-
                echo DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={azure};EndpointSuffix=core.windows.net
              changed_when: false
            - name: Credentials in URLs
              ansible.builtin.command: echo https://deploy:{url_password}@git.example.com/r.git https://{url_token}@github.com/o/r
              changed_when: false
            - name: Password options on command lines
              ansible.builtin.shell: >-
                echo curl -u admin:{curl} https://api;
                echo mysql -uroot -p{mysql} -e status;
                echo sshpass -p {sshpass} ssh host;
                echo redis-cli --pass {pass_option} ping
              changed_when: false
            - name: A password in argv
              ansible.builtin.command:
                argv: [echo, useradd, --password, "{password_argv}", bob]
              changed_when: false
            - name: Environment file (diff)
              ansible.builtin.copy:
                content: "DB_HOST=db\\nDB_PASS={db_pass}\\nAPP_SECRET={app_secret}\\nAPI_TOKEN={api_token}\\n"
                dest: "{out}/app.env"
                mode: "0600"
            - name: Keys named pass, pw, auth, key
              ansible.builtin.debug:
                msg:
                  pass: {key_pass}
                  pw: {key_pw}
                  auth: {key_auth}
                  key: {key_key}
                  tls.key: {key_tls}
            - name: Kubernetes Secret manifest (diff)
              ansible.builtin.copy:
                content: |
                  apiVersion: v1
                  kind: Secret
                  metadata:
                    name: db
                  data:
                    username: {k8s}
                dest: "{out}/secret.yml"
                mode: "0600"
            - name: Prose in stdout and stderr
              ansible.builtin.shell: echo "Your new password is {prose_out}." && echo "the temporary token was {prose_err}" >&2
              changed_when: false
            - name: Prose in msg
              ansible.builtin.debug:
                msg: "Account created; the initial password is {prose_msg}"
            - name: A secret_vars value from the environment
              ansible.builtin.command: echo {{{{ db_password }}}}
              changed_when: false
              vars:
                db_password: "{{{{ lookup('ansible.builtin.env', 'PLANTED_DB_PASSWORD') }}}}"
            - name: Read a password into a registered variable
              ansible.builtin.command: echo {registered}
              register: root_pw_result
              changed_when: false
            - name: Use the registered password
              ansible.builtin.debug:
                msg: "root={{{{ root_pw_result.stdout }}}}"
            - name: A value of the user's detector
              ansible.builtin.command: echo licence {user_detector}
              changed_when: false

        - name: Echo what include_vars loaded, in a later play
          hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Echo included values
              ansible.builtin.command: echo {{{{ included_secret }}}} {{{{ creds.token_value }}}}
              changed_when: false

        - name: Echo what include_vars loaded for the peer
          hosts: peers
          gather_facts: false
          tasks:
            - name: Echo the delegated value
              ansible.builtin.command: echo {{{{ delegated_value }}}}
              changed_when: false
        """.format(out=out, pem=s["PemBody"], openssh=s["OpenSshBody"], aws_id=s["AwsKeyId"], aws_secret=s["AwsSecret"],
                   azure=s["AzureKey"], url_password=s["UrlPassword"], url_token=s["UrlToken"], curl=s["CurlPassword"],
                   mysql=s["MysqlPassword"], sshpass=s["SshpassPassword"], pass_option=s["PassOption"],
                   password_argv=s["PasswordArgv"], db_pass=s["EnvDbPass"], app_secret=s["EnvSecret"],
                   api_token=s["EnvToken"], key_pass=s["KeyPass"], key_pw=s["KeyPw"], key_auth=s["KeyAuth"],
                   key_key=s["KeyKey"], key_tls=s["KeyTls"], k8s=s["K8sData"], prose_out=s["ProseStdout"],
                   prose_err=s["ProseStderr"], prose_msg=s["ProseMsg"], user_detector=s["UserDetector"],
                   registered=s["RegisteredVar"]))
    os.makedirs(out)
    os.makedirs(project.path("register"))
    register_html = project.path("register", "index.html")
    register_json = project.path("register", "changes.json")
    completed = project.run("shapes.yml", "-v", "--diff", "--vault-password-file", project.path("vault-pass"), env={
        "PLANTED_DB_PASSWORD": s["SecretVar"],
        "CHANGEOPS_REGISTER_PATH": register_html,
        "CHANGEOPS_REGISTER_JSON_PATH": register_json,
        "CHANGEOPS_REDACT_PATTERNS_FILE": project.path("patterns.yml"),
        "CHANGEOPS_SECRET_VARS": "db_password,root_pw_result",
    })
    shown = completed.stdout
    # the forms a task prints: ansible-playbook shows results as JSON, and some tasks transform the value
    printed = dict(s, VaultInt=s["VaultInt"].lstrip("0"), VaultUpper=s["VaultUpper"].upper(),
                   VaultBase64=base64.b64encode(s["VaultBase64"].encode()).decode(), VaultJson=s["VaultJson"][8:])
    # the planted values really reached task results
    never_shown = [kind for kind, value in printed.items() if value not in shown]
    assert not never_shown, "planted values that never reached a task result: %s\n%s" % (never_shown, shown[-30000:])
    assert os.path.exists(register_html) and os.path.exists(register_json), "the register was not refreshed:\n%s" % "\n".join(
        line for line in shown.splitlines() if "WARNING" in line or "change_recorder" in line)

    sor = open_sor()
    [event] = sor.find_change_events()
    raw = stored_bytes(project, backend, backend_env, sor, [register_html, register_json])
    assert b"DB_HOST=db" in raw and event["run_id"].encode() in raw, "the byte search would not find a recorded value"
    leaked = {}
    for kind, value in s.items():
        # the value, its tail (a part left behind would show there) and the form the task printed
        needles = [value, value[-12:], printed[kind], printed[kind][-12:]]
        found = [form for needle in needles for form in variants_in(raw, needle)]
        if found:
            leaked[kind] = found
    assert not leaked, "planted secrets found in stored bytes: %s" % sorted(leaked)
    results = {r["task"]["name"]: r for r in sor.get_task_results(event["run_id"])}
    # the record stays useful: the tasks are there, with redaction markers where the secrets were
    assert results["Password options on command lines"]["result"]["stdout"].startswith("curl -u admin:********")
    assert "-----BEGIN RSA PRIVATE KEY-----" in results["Print the private keys"]["result"]["stdout"]
    assert results["Keys named pass, pw, auth, key"]["result"]["msg"]["tls.key"] == "********"
    assert "DB_HOST=db" in results["Environment file (diff)"]["diff"][0]["after"]

    assert sor.verify().valid
    sor.close()


@pytest.mark.backends("sqlite")
def test_a_broken_detector_file_censors_the_run_instead_of_letting_its_secrets_through(project, open_sor):
    """The user's detectors were meant to catch something: a file that cannot be loaded must not let it
    through. The run is recorded (statuses, tasks) with every result string replaced, and a warning names
    the file, the entry and why."""
    planted = "ACME-" + uuid.uuid4().hex[:16].upper()
    project.write("patterns.yml", "- name: acme\n  pattern: 'ACME-[0-9A-F]+'\n")  # no boundary, can backtrack
    project.write("pb.yml", """
        - name: Print a licence
          hosts: all_hosts
          gather_facts: false
          tasks:
            - name: Echo it
              ansible.builtin.command: echo licence {planted}
              changed_when: false
        """.format(planted=planted))
    completed = project.run("pb.yml", "-v", env={"CHANGEOPS_REDACT_PATTERNS_FILE": project.path("patterns.yml")})
    assert planted in completed.stdout
    warning = " ".join(completed.stdout.split())
    assert "redaction patterns file %s, entry 1 (acme): pattern" % project.path("patterns.yml") in warning, warning
    assert "every recorded string of this run's results is replaced" in warning
    sor = open_sor()
    [event] = sor.find_change_events()
    [result] = sor.get_task_results(event["run_id"])
    assert result["status"] == "ok" and result["result"]["stdout"] == "********"
    assert planted not in "\n".join(entry.canonical() for entry in sor.iter_entries())
    sor.close()
