# -*- coding: utf-8 -*-
"""The detector catalogue: each detector finds its shape (positive rows) and leaves look-alikes alone
(negative rows); known secrets are found in every form a task prints them; the user's detectors load
with clear errors; find_secrets reports paths and detector names, never values; docs list every detector."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError
from ansible_collections.changeops.itsm.plugins.module_utils.redaction import (
    KEY_OF,
    REDACTED,
    Redactor,
    catalogue,
    find_secrets,
    format_path,
    linearity_problem,
    load_detector_file,
    redact,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PEM_BODY = "MIIEowIBAAKCAQEAx3k9Zp0bQm1wKc4tJqXo7Lr2sV8nFfHd9aYpGq1Z\nkT5uWcE2rM0yPq9n7dLb4sVt"
OPENSSH_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACB"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AZURE_KEY = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4MTIzNA=="

# (detector, text, the secret that must go)
POSITIVE = [
    ("private_key", "-----BEGIN RSA PRIVATE KEY-----\n%s\n-----END RSA PRIVATE KEY-----\n" % PEM_BODY, "kT5uWcE2rM0yPq9n7dLb4sVt"),
    ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\n%s\n-----END OPENSSH PRIVATE KEY-----" % OPENSSH_BODY, "QyNTUxOQAAACB"),
    ("private_key", "+-----BEGIN PRIVATE KEY-----\n+%s\n" % PEM_BODY, "kT5uWcE2rM0yPq9n7dLb4sVt"),  # a diff cut before END
    ("private_key", 'echo "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n"',
     "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
    ("private_key", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGXz9AABCAC0d8Tb\n-----END PGP PRIVATE KEY BLOCK-----", "lQOYBGXz9AABCAC0d8Tb"),
    ("private_key", "PuTTY-User-Key-File-3: ssh-ed25519\nPrivate-Lines: 1\nAAAAIGwx8Hd0Pq\nPrivate-MAC: 8f3a", "AAAAIGwx8Hd0Pq"),
    ("url_credentials", "git clone https://deploy:Hunter2Pw@git.example.com/repo.git", "Hunter2Pw"),
    ("url_credentials", "git clone https://ghx_0123456789abcdefTOKEN@github.com/o/r.git", "ghx_0123456789abcdefTOKEN"),
    ("url_credentials", "remote: https://oauth2:glx-abcdef123456@gitlab.example.com", "glx-abcdef123456"),
    ("azure_storage", "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=%s;EndpointSuffix=core.windows.net" % AZURE_KEY, AZURE_KEY[:30]),
    ("azure_storage", "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&ss=b&sig=AbC%2Bdef123xyz%3D&se=2030", "AbC%2Bdef123xyz"),
    ("azure_storage", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=Q2hhbmdlT3BzU2VjcmV0", "Q2hhbmdlT3BzU2VjcmV0"),
    ("aws_access_key_id", "Found credentials AKIAIOSFODNN7EXAMPLE in env", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key_id", "ASIAY34FZKBOKMUTVV7A,session", "ASIAY34FZKBOKMUTVV7A"),
    ("aws_secret_access_key", "aws configure set default.secret %s" % AWS_SECRET, AWS_SECRET),
    ("aws_secret_access_key", "AKIAIOSFODNN7EXAMPLE,%s" % AWS_SECRET, AWS_SECRET),
    ("service_token", "export GH=ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"),
    ("service_token", "glpat-AbCdEf0123456789xYz_ deploy", "glpat-AbCdEf0123456789xYz_"),
    ("service_token", "slack xoxb-123456789012-abcdefghijkl", "xoxb-123456789012-abcdefghijkl"),
    ("service_token", "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "dozjgNryP4J3jVmNHl0w5N"),
    ("kubernetes_secret", "apiVersion: v1\ndata:\n  username: YWRtaW4=\n  tls.key: LS0tLS1CRUdJTg==\nkind: Secret\nmetadata:\n  name: db\n", "YWRtaW4="),
    ("kubernetes_secret", "kind: Secret\nstringData:\n  config.yaml: |\n    user: root\n    pw-line-two\n", "pw-line-two"),
    ("key_value_pair", "DB_PASS=Sup3rSecret\nDB_HOST=db", "Sup3rSecret"),
    ("key_value_pair", "+APP_SECRET=s3cr3t-value\n", "s3cr3t-value"),
    ("key_value_pair", "export GITHUB_TOKEN='tok en-value'", "en-value"),
    ("key_value_pair", "pass: hunter2-pass", "hunter2-pass"),
    ("key_value_pair", "pw=hunter2pw other=1", "hunter2pw"),
    ("key_value_pair", "redis-cli --pass Hunter2Redis ping", "Hunter2Redis"),
    ("key_value_pair", "tls.key: LS0tLS1CRUdJTiBSU0E=", "LS0tLS1CRUdJTiBSU0E="),
    ("key_value_pair", '"auth": "dXNlcjpwYXNzd29yZA=="', "dXNlcjpwYXNzd29yZA=="),
    ("key_value_pair", "X-Vendor-Auth: abc123xyz", "abc123xyz"),
    ("command_line_password", "mysql -uroot -pS3cretPw -e 'select 1'", "S3cretPw"),
    ("command_line_password", "/usr/bin/mysqldump -p'S3cret Pw' db", "S3cret Pw"),
    ("command_line_password", "sshpass -p Hunter2Ssh ssh host", "Hunter2Ssh"),
    ("command_line_password", "sshpass -pHunter2Ssh ssh host", "Hunter2Ssh"),
    ("command_line_password", "curl -u admin:Hunter2Curl https://api", "Hunter2Curl"),
    ("command_line_password", "curl -sSf --user admin:Hunter2Curl https://api", "Hunter2Curl"),
    ("command_line_password", "smbclient //srv/share -U alice%Hunter2Smb", "Hunter2Smb"),
    ("command_line_password", "ldapsearch -x -D cn=admin -w Hunter2Ldap -b dc=x", "Hunter2Ldap"),
    ("command_line_password", "redis-cli -a Hunter2Redis ping", "Hunter2Redis"),
    ("command_line_password", "openssl enc -aes256 -k Hunter2Ssl -in f", "Hunter2Ssl"),
    ("key_value_pair", "openssl pkcs12 -in a.p12 -passin pass:Hunter2Ssl -nodes", "Hunter2Ssl"),
    ("command_line_password", "sqlcmd -S db -U sa -P Hunter2Sql -Q 'select 1'", "Hunter2Sql"),
    ("command_line_password", "docker login -u bot -p Hunter2Docker registry.example.com", "Hunter2Docker"),
    ("command_line_password", "htpasswd -b /etc/nginx/htpasswd bob Hunter2Htp", "Hunter2Htp"),
    ("command_line_password", "htpasswd -nbB bob Hunter2Htp", "Hunter2Htp"),
    ("command_line_password", "echo ok; mongo -u admin -p Hunter2Mongo admin", "Hunter2Mongo"),
    ("prose_password", "Your new password is Tr0ub4dor&3.", "Tr0ub4dor&3"),
    ("prose_password", "The password for bob was set to \"correct horse\"", "correct horse"),
    ("prose_password", "temporary password has been set to Xy9-abc", "Xy9-abc"),
    ("prose_password", "the api key is now AbC123xyz", "AbC123xyz"),
]

# (detector, text): nothing in it is secret and that detector must not fire
NEGATIVE = [
    ("private_key", "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----"),
    ("private_key", "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"),
    ("private_key", "the private key is stored in /etc/ssl/private"),
    ("url_credentials", "https://git.example.com:8443/path@ref"),
    ("url_credentials", "ssh://git@github.com/org/repo.git"),
    ("url_credentials", "see https://example.com/users/@bob"),
    ("azure_storage", "DefaultEndpointsProtocol=https;AccountName=acct;EndpointSuffix=core.windows.net"),
    ("azure_storage", "the signature=abc param"),
    ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLEX is 21 characters, AKIA1234 too short"),
    ("aws_secret_access_key", "git commit 3f786850e387550fdab836ed7e6dc881de23001b on aws"),
    ("aws_secret_access_key", "%s without any cloud context" % AWS_SECRET),
    ("service_token", "ghp_short and glpat-short and eyJhbGciOiJIUzI1NiJ9 alone"),
    ("kubernetes_secret", "kind: ConfigMap\ndata:\n  app.conf: listen 80\n"),
    ("kubernetes_secret", "data:\n  key: value\n"),
    ("key_value_pair", "keyboard=us monkey: george bypass=true compass: north"),
    ("key_value_pair", "change password for bob; the token expired"),
    ("key_value_pair", "PASSWORD_MIN_LENGTH"),
    ("command_line_password", "ssh -p 2222 host; docker run -p 8080:80 nginx; mkdir -p /tmp/x"),
    ("command_line_password", "mysql -p db_name"),
    ("command_line_password", "curl -u admin https://api"),
    ("command_line_password", "openssl pkcs12 -passin env:P12_PASS -in a.p12"),
    ("prose_password", "the password is required"),
    ("prose_password", "Password is incorrect. The token was expired."),
    ("prose_password", "the password was changed"),
    ("prose_password", "your passport is ready"),
    # a task name: "was given" says something about the password, it is not one (seen on an AWX job's task)
    ("prose_password", "Use the database password the job was given"),
    ("prose_password", "the token was issued yesterday"),
]


def detectors_found(text, redactor=None):
    return set(name for _path, name in find_secrets(text, redactor=redactor))


@pytest.mark.parametrize("detector, text, secret", POSITIVE, ids=["%s-%d" % (row[0], i) for i, row in enumerate(POSITIVE)])
def test_each_detector_finds_its_shape(detector, text, secret):
    redactor = Redactor()
    redacted = redactor.redact_string(text)
    assert secret not in redacted, redacted
    assert REDACTED in redacted
    assert detector in detectors_found(text), find_secrets(text)
    assert redactor.redact_string(redacted) == redacted, "redaction must be idempotent"
    assert find_secrets(redacted) == [], "a redacted text must scan clean"


@pytest.mark.parametrize("detector, text", NEGATIVE, ids=["%s-%d" % (row[0], i) for i, row in enumerate(NEGATIVE)])
def test_look_alikes_are_left_alone(detector, text):
    assert detector not in detectors_found(text), find_secrets(text)


def test_every_detector_has_positive_and_negative_rows():
    names = set(detector.name for detector in Redactor().detectors)
    assert names <= set(row[0] for row in POSITIVE), names - set(row[0] for row in POSITIVE)
    assert names <= set(row[0] for row in NEGATIVE), names - set(row[0] for row in NEGATIVE)


def test_what_the_detectors_keep_readable():
    redactor = Redactor()
    assert redactor.redact_string("mysql -uroot -pS3cretPw -e 'select 1'") == "mysql -uroot -p%s -e 'select 1'" % REDACTED
    assert redactor.redact_string("curl -u admin:pw123456 https://api") == "curl -u admin:%s https://api" % REDACTED
    assert redactor.redact_string("Your new password is Tr0ub4dor&3.") == "Your new password is %s." % REDACTED
    assert redactor.redact_string("git clone https://TOKEN123456@host/r") == "git clone https://%s@host/r" % REDACTED
    pem = "-----BEGIN RSA PRIVATE KEY-----\n%s\n-----END RSA PRIVATE KEY-----\n" % PEM_BODY
    # one marker per line: a text keeps its number of lines
    assert redactor.redact_string(pem) == "-----BEGIN RSA PRIVATE KEY-----\n%s\n%s\n-----END RSA PRIVATE KEY-----\n" % (
        REDACTED, REDACTED)
    assert redactor.redact_string("AccountName=acct;AccountKey=abc==;EndpointSuffix=x") == (
        "AccountName=acct;AccountKey=%s;EndpointSuffix=x" % REDACTED)
    manifest = "kind: Secret\ndata:\n  username: YWRtaW4=\nmetadata:\n  name: db\n"
    assert redactor.redact_string(manifest) == "kind: Secret\ndata:\n  username: %s\nmetadata:\n  name: db\n" % REDACTED


# -- keys and mappings ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["pass", "PW", "auth", "key", "psk", "tls.key", "client.key", "DB_PASS", "proxy-auth",
                                 "db_pw", "storepass", "AccountKey", "password", "X-Api-Key", "private_key_id"])
def test_secret_key_names(key):
    assert Redactor().is_secret_key(key)
    assert redact({key: "value-1234"}) == {key: REDACTED}


@pytest.mark.parametrize("key", ["keyboard", "monkey", "key_file_path", "passenger", "bypass", "compass", "authors",
                                 "public_key_url_list", "name", "passed", "keys"])
def test_ordinary_key_names(key):
    assert not Redactor().is_secret_key(key), key


def test_a_kubernetes_secret_mapping_loses_its_data_values():
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "type": "Opaque",
                "data": {"username": "YWRtaW4=", "tls.crt": "LS0tQ0VSVA=="}, "stringData": {"app": "x=1"}}
    redacted = redact({"diff": {"after": manifest}})["diff"]["after"]
    assert redacted["data"] == {"username": REDACTED, "tls.crt": REDACTED}
    assert redacted["stringData"] == {"app": REDACTED}
    assert redacted["metadata"] == {"name": "db"}
    findings = find_secrets({"diff": {"after": manifest}})
    assert (("diff", "after", "data", "username"), "kubernetes_secret") in findings
    assert redact({"kind": "ConfigMap", "data": {"username": "x"}}) == {"kind": "ConfigMap", "data": {"username": "x"}}


def test_json_documents_inside_strings_get_the_key_rules():
    stdout = json.dumps({"kind": "Secret", "data": {"username": "YWRtaW4=", "password": "cGFzcw=="},
                         "metadata": {"name": "db"}}, indent=2)
    redacted = Redactor().redact_string(stdout)
    assert "YWRtaW4=" not in redacted and "cGFzcw==" not in redacted
    assert json.loads(redacted)["metadata"] == {"name": "db"}
    service_account = json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "0123abcd" * 5,
                                  "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\n-----END PRIVATE KEY-----\n",
                                  "client_email": "sa@p.iam.gserviceaccount.com"})
    redacted = Redactor().redact_string(service_account)
    assert "MIIEvQIBADANBgkq" not in redacted and "0123abcd" not in redacted
    assert json.loads(redacted)["client_email"] == "sa@p.iam.gserviceaccount.com"
    docker = json.dumps({"auths": {"registry.example.com": {"auth": "Ym90Okh1bnRlcjI="}}})
    assert "Ym90Okh1bnRlcjI=" not in Redactor().redact_string(docker)


# -- known secrets in other forms ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, shown", [
    ("S3cret-Value\n", "S3cret-Value"),                                   # command strips the trailing newline
    ("  S3cret-Value  ", "S3cret-Value"),
    ("00012345", "12345"),                                                 # | int
    ("4217", "4217.0"),                                                    # | float
    ('pa"ss\\word', json.dumps('pa"ss\\word')[1:-1]),                      # to_json
    ('pa"ss\\word', json.dumps(json.dumps('pa"ss\\word'))[1:-1]),          # JSON inside a JSON string
    ("pässwörd", "p\\u00e4ssw\\u00f6rd"),
    ("S3cret-Value", base64.b64encode(b"S3cret-Value").decode()),          # | b64encode
    ("S3cret-Value", base64.b64encode(b"S3cret-Value\n").decode()),        # echo | base64
    ("S3cret-Value", base64.b64encode(b"admin:S3cret-Value").decode()),   # inside a longer base64 text
    ("S3cret-Value", base64.b64encode(b"xx:S3cret-Value").decode()),
    ("S3cret-Value", base64.urlsafe_b64encode(b"\xfb\xffS3cret-Value?>").decode()),
    ("S3cret-Value", "S3CRET-VALUE"),                                      # | upper
    ("S3cret-Value", "s3cret-value"),                                      # | lower
    ("S3cret Value&more", "S3cret%20Value%26more"),                        # | urlencode
    ("S3cret<Value>", "S3cret&lt;Value&gt;"),
    ("first-line-secret\nsecond-line-secret\n", "second-line-secret"),     # one line of a multi-line value
])
def test_known_secrets_are_found_in_their_other_forms(value, shown):
    redactor = Redactor()
    redactor.add_known_secret(value)
    text = "before %s after" % shown
    redacted = redactor.redact_string(text)
    core = shown.strip("=")[2:-2]
    assert core not in redacted, redacted
    assert redacted.startswith("before ") and redacted.endswith(" after"), redacted


def test_known_secret_forms_leave_other_text_alone():
    redactor = Redactor()
    for value in ("S3cret-Value", "00012345", "multi\nline"):
        redactor.add_known_secret(value)
    text = "nothing secret here: 1234 S3cret Value line multi"
    assert redactor.redact_string(text) == text


def test_known_secrets_with_characters_that_change_length_in_lower_case():
    redactor = Redactor()
    redactor.add_known_secret("İstanbul-Secret")
    assert "stanbul-Secret" not in redactor.redact_string("x İstanbul-Secret y İSTANBUL-SECRET")


def test_many_known_secrets_are_all_found():
    redactor = Redactor()
    values = ["secret-%04d-%s" % (i, "x" * (i % 7)) for i in range(500)]
    for value in values:
        redactor.add_known_secret(value)
    text = " | ".join(values)
    assert not [value for value in values if value in redactor.redact_string(text)]


# -- user detectors ---------------------------------------------------------------------------------------------------
def test_user_detectors_load_and_redact(tmp_path):
    path = tmp_path / "patterns.yml"
    path.write_text("- name: acme_license\n  pattern: '(?<![A-Z0-9])ACME-[0-9A-F]{8}(?![A-Z0-9])'\n"
                    "  description: ACME licence keys\n"
                    "- name: internal\n  pattern: '\\bitok_(?P<secret>[a-z0-9]{6,}+)'\n  ignore_case: true\n")
    detectors = load_detector_file(str(path))
    redactor = Redactor(user_detectors=detectors)
    assert redactor.redact_string("lic ACME-0123ABCD ok") == "lic %s ok" % REDACTED
    assert redactor.redact_string("ITOK_abc123def") == "ITOK_%s" % REDACTED
    assert set(name for _p, name in redactor.find_secrets("ACME-0123ABCD")) == {"user:acme_license"}
    assert Redactor().redact_string("lic ACME-0123ABCD ok") == "lic ACME-0123ABCD ok"


@pytest.mark.parametrize("content, message", [
    ("- name: slow\n  pattern: '(?<!x)(a+)+b'\n", "entry 1 (slow): pattern '(?<!x)(a+)+b' is refused: it can backtrack"),
    ("- name: lazy\n  pattern: '\\btoken=.*?;'\n", "is refused: it can backtrack"),
    ("- name: nowhere\n  pattern: 'ACME-[0-9]{8}'\n", "does not start at a boundary"),
    ("- name: bad\n  pattern: '\\b(['\n", "is not a valid regular expression"),
    ("- name: empty\n  pattern: '\\b[0-9]{0,3}'\n", "matches the empty string"),
    ("- pattern: '\\bx'\n", "name must be a word"),
    ("- name: a\n  pattern: '\\bx'\n- name: a\n  pattern: '\\by'\n", "entry 2: name 'a' is used twice"),
    ("- name: a\n  regex: '\\bx'\n", "unknown field regex"),
    ("- name: a\n  pattern: '\\bx'\n  ignore_case: maybe\n", "ignore_case must be true or false"),
    ("name: a\n", "expected a list of detectors"),
    ("- [unclosed\n", "is not valid YAML"),
])
def test_bad_user_detector_files_are_refused_naming_file_entry_and_value(tmp_path, content, message):
    path = tmp_path / "patterns.yml"
    path.write_text(content)
    with pytest.raises(ConfigurationError) as caught:
        load_detector_file(str(path))
    assert str(path) in str(caught.value) and message in str(caught.value), str(caught.value)


def test_a_missing_user_detector_file_is_an_error(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_detector_file(str(tmp_path / "missing.yml"))


def test_linearity_problem_accepts_the_documented_shapes():
    for pattern in (r"(?<![A-Z0-9])ACME-[0-9A-F]{32}", r"\bitok_[a-z0-9]++", r"^secret: (?>.*)$"):
        assert linearity_problem(pattern) is None, pattern


# -- find_secrets -----------------------------------------------------------------------------------------------------------
def test_find_secrets_reports_paths_and_detectors_never_values():
    document = {"result": {"stdout": "mysql -pS3cretPw", "msg": "ok", "password": "hunter2-x"},
                "diff": [{"after": "DB_PASS=abc12345\n"}], "items": ["AKIAIOSFODNN7EXAMPLE"],
                "Hunter2-as-key": {"x": 1}}
    redactor = Redactor()
    redactor.add_known_secret("Hunter2-as-key")
    findings = redactor.find_secrets(document, path=("data",))
    assert (("data", "result", "stdout"), "command_line_password") in findings
    assert (("data", "result", "password"), "secret_key_name") in findings
    assert (("data", "diff", 0, "after"), "key_value_pair") in findings
    assert (("data", "items", 0), "aws_access_key_id") in findings
    assert (("data", KEY_OF), "known_secret") in findings
    assert ("data", "result", "msg") not in [path for path, _name in findings]
    rendered = json.dumps([(format_path(path), name) for path, name in findings])
    for value in ("S3cretPw", "hunter2-x", "abc12345", "AKIAIOSFODNN7EXAMPLE", "Hunter2-as-key"):
        assert value not in rendered
    assert format_path(("data", "diff", 0, "after")) == "data.diff[0].after"
    assert format_path(("data", "result", "tls.key")) == 'data.result["tls.key"]'
    assert redactor.find_secrets(redactor.redact(document)) == []


def test_find_secrets_ignores_redacted_values():
    assert find_secrets({"password": REDACTED, "stdout": "password=%s" % REDACTED, "after": "token: %s" % REDACTED}) == []


# -- the docs ---------------------------------------------------------------------------------------------------------------
def test_docs_list_every_detector():
    with open(os.path.join(REPO, "docs", "recorder.md")) as handle:
        docs = handle.read()
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", docs, re.MULTILINE))
    names = set(detector.name for detector in catalogue())
    assert names <= rows, "detectors missing from the catalogue table in docs/recorder.md: %s" % sorted(names - rows)


@pytest.mark.parametrize("text", [
    "mysql " * 20000, "a/" * 30000 + "mysql -pX", "password is " * 8000, "-----BEGIN RSA PRIVATE KEY-----" * 3000,
    "https://" * 10000, "kind: Secret\n" + "data:\n  " * 10000, "AKIA" * 20000, "[" * 100000, "{\"a\": " * 20000,
    "aws " + "A" * 100000, "curl -u " * 20000, "htpasswd -b " * 20000, "sig=" * 30000, "eyJ" * 30000,
])
def test_long_pathological_strings_for_every_detector(text):
    """What could make a detector re-read its input (a repeated command name, nested data: blocks, an
    unterminated key block): still redacted without error. Linearity itself is checked on the patterns
    (test_redact.py), never timed."""
    Redactor().redact_string(text + " password=s3cr3t-pw")


def test_a_numeric_known_secret_is_replaced_as_a_number_too():
    redactor = Redactor()
    redactor.add_known_secret("000123456")
    assert redactor.redact({"msg": 123456, "rc": 0, "other": 1234567}) == {"msg": REDACTED, "rc": 0, "other": 1234567}


# -- triggers: a detector is skipped only when it could find nothing ----------------------------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402

FRAGMENTS = ["password", "Pass", "pw", "key", "auth", "token", "secret", "=", ": ", " is ", "-p", "mysql ", "curl -u ",
             "a:b", "://", "@", "AKIA", "aws", "-----BEGIN RSA PRIVATE KEY-----", "kind: Secret", "\ndata:\n  ",
             "AccountKey=", "sig=", "ghp_", "eyJ", "\n", " ", "x" * 8, "Y7" * 10, "|", "  ", "'", '"', "--pass "]


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=14))
def test_a_trigger_never_hides_a_finding(pieces):
    text = "".join(pieces)
    lowered = text.lower()
    for detector in Redactor().detectors:
        if detector.trigger is not None and not detector.trigger(text, lowered):
            assert detector.redact(text, REDACTED)[1] == 0, (detector.name, text)


def test_triggers_hold_for_every_positive_row():
    detectors = dict((detector.name, detector) for detector in Redactor().detectors)
    for name, text, _secret in POSITIVE:
        assert detectors[name].trigger(text, text.lower()), (name, text)


def test_every_command_has_a_trigger():
    from ansible_collections.changeops.itsm.plugins.module_utils.redaction import command_line

    for name in list(command_line.COMMAND_RULES) + list(command_line._POSITIONAL):
        assert any(trigger in name for trigger in command_line.TRIGGERS), name


@pytest.mark.parametrize("lines, secret", [
    (["-----BEGIN RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEAx3k9Zp0bQm1w", "kT5uWcE2rM0yPq9n7dLb", "-----END RSA PRIVATE KEY-----"],
     "kT5uWcE2rM0yPq9n7dLb"),
    (["apiVersion: v1", "kind: Secret", "data:", "  username: YWRtaW4xMjM=", "metadata:", "  name: db"], "YWRtaW4xMjM="),
    (["config:", "  db_password: |", "    line-one-secret", "  user: bob"], "line-one-secret"),
])
def test_a_list_of_lines_is_redacted_as_one_text(lines, secret):
    """``msg: "{{ out.stdout_lines }}"`` splits a key or a manifest over list items: no item alone shows the shape."""
    redacted = redact({"msg": lines})["msg"]
    assert len(redacted) == len(lines)
    assert secret not in json.dumps(redacted)
    assert redacted[0] == lines[0]
    assert find_secrets({"msg": lines}) and find_secrets({"msg": redacted}) == []


def test_long_known_values_are_found_without_the_trie():
    """A decrypted file is one long value: matched by substring search (a trie as deep as the value
    overflowed Python's recursion limit), in any case, also repeated."""
    redactor = Redactor()
    value = "Zq" + "".join("%04x" % n for n in range(2000))
    redactor.add_known_secret(value)
    text = "a %s b %s c" % (value, value.upper())
    assert redactor.redact_string(text) == "a %s b %s c" % (REDACTED, REDACTED)
