# -*- coding: utf-8 -*-
"""Secret redaction: keys that look secret, inline key=value, known secret strings."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given, settings, strategies as st

from ansible_collections.changeops.itsm.plugins.module_utils.redaction import REDACTED, Redactor
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.linear import (
    backtracking_constructs as _backtracking_constructs,
    starts_at_a_boundary as _starts_at_a_boundary,
)


@pytest.fixture
def redactor():
    return Redactor()


@pytest.mark.parametrize("key", ["password", "Password", "db_password", "PASSWD", "api_key", "api-key", "apiKey",
                                 "private_key", "client_secret", "auth_token", "X-Authorization", "vault_pass",
                                 "become_pass", "ssh_pass", "secret", "postgresql_dsn", "session_id", "Cookie"])
def test_secret_looking_keys_are_redacted_at_any_depth(redactor, key):
    value = {"outer": [{"inner": {key: "hunter2-value"}}], key: "top-level-value"}
    redacted = redactor.redact(value)
    assert redacted["outer"][0]["inner"][key] == REDACTED
    assert redacted[key] == REDACTED
    assert "hunter2" not in json.dumps(redacted)


@pytest.mark.parametrize("key", ["name", "state", "path", "owner", "changed", "msg", "host", "keyboard"])
def test_ordinary_keys_are_kept(redactor, key):
    assert redactor.redact({key: "visible"}) == {key: "visible"}


def test_empty_and_boolean_secret_values_stay_informative(redactor):
    # "password set: yes/no" and empty values carry no secret and help reviewers
    value = {"password": "", "token": None, "update_password": True, "secrets": [], "api_key": {}}
    assert redactor.redact(value) == value


def test_nested_secret_containers_are_replaced_whole(redactor):
    redacted = redactor.redact({"credentials": {"user": "bob", "pw": "x"}})
    assert redacted == {"credentials": REDACTED}


def test_input_is_not_modified(redactor):
    original = {"password": "p4ssw0rd", "list": [{"token": "t0k3n"}]}
    snapshot = json.loads(json.dumps(original))
    redactor.redact(original)
    assert original == snapshot


@pytest.mark.parametrize("text, secret", [
    ("mysql -u root --password=s3cr3t-pw -e 'select 1'", "s3cr3t-pw"),
    ("curl -H 'Authorization: Bearer-abc123' https://x", "Bearer-abc123"),
    ("connect password=s3cr3t-pw host=db", "s3cr3t-pw"),
    ("PGPASSWORD=s3cr3t-pw psql", "s3cr3t-pw"),
    ('{"api_key": "k3y-value", "name": "x"}', "k3y-value"),
    ("useradd --password s3cr3t-pw bob", "s3cr3t-pw"),
    ("token: t0k3n-value", "t0k3n-value"),
    ("export AWS_SECRET_ACCESS_KEY=abcd/efgh", "abcd/efgh"),
])
def test_inline_secrets_in_strings_are_redacted(redactor, text, secret):
    redacted = redactor.redact({"cmd": text, "stdout_lines": [text]})
    assert secret not in json.dumps(redacted), redacted
    assert REDACTED in redacted["cmd"]


@pytest.mark.parametrize("text, secret", [
    ("reset password token=abc123", "abc123"),
    ("the secret password=hunter22", "hunter22"),
    ("rotate the api key: password: hunter22", "hunter22"),
])
def test_prose_before_a_secret_pair_does_not_hide_it(redactor, text, secret):
    redacted = redactor.redact_string(text)
    assert secret not in redacted and redacted.startswith(text.split()[0]), redacted


@pytest.mark.parametrize("text", [
    "change password for bob",
    "the token expired",
    "rotate secrets weekly",
])
def test_prose_mentioning_secret_words_is_kept(redactor, text):
    assert redactor.redact(text) == text


def test_known_secrets_are_replaced_inside_longer_strings(redactor):
    redactor.add_known_secret("Sup3rS3cret!")
    value = {"diff": {"after": "line1\nconfig value Sup3rS3cret! end\n"}, "msg": ["got Sup3rS3cret!"]}
    redacted = redactor.redact(value)
    assert "Sup3rS3cret!" not in json.dumps(redacted)
    assert redacted["diff"]["after"] == "line1\nconfig value %s end\n" % REDACTED


def test_known_secrets_from_containers_and_longest_first(redactor):
    redactor.add_known_secret({"a": "abcd", "b": ["abcdefgh"]})
    assert redactor.redact("x abcdefgh y abcd") == "x %s y %s" % (REDACTED, REDACTED)


def test_short_booleans_and_none_are_not_known_secrets(redactor):
    for value in (None, True, False, "abc", 42):
        redactor.add_known_secret(value)
    assert redactor.redact("abc 42 True None") == "abc 42 True None"


def test_bytes_are_decoded_and_redacted(redactor):
    redactor.add_known_secret("b1n4ry-secret")
    assert redactor.redact(b"value b1n4ry-secret") == "value %s" % REDACTED


def test_extra_key_patterns_are_configurable():
    redactor = Redactor(extra_key_patterns=["license_code"])
    assert redactor.redact({"license_code": "L-123", "name": "n"}) == {"license_code": REDACTED, "name": "n"}
    assert Redactor().redact({"license_code": "L-123"}) == {"license_code": "L-123"}


def test_key_patterns_can_be_replaced_entirely():
    redactor = Redactor(key_patterns=["pin"])
    assert redactor.redact({"password": "p", "pin": "1234"}) == {"password": "p", "pin": REDACTED}
    assert Redactor(key_patterns=[]).redact({"password": "p"}) == {"password": "p"}


def test_custom_replacement():
    assert Redactor(replacement="<hidden>").redact({"token": "t"}) == {"token": "<hidden>"}


def test_scalars_pass_through(redactor):
    assert redactor.redact(5) == 5
    assert redactor.redact(None) is None
    assert redactor.redact((1, "a")) == [1, "a"]


secret_text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="\\"),
                      min_size=4, max_size=24)


@settings(max_examples=100, deadline=None)
@given(secret=secret_text, prefix=st.text(max_size=20), suffix=st.text(max_size=20))
def test_a_known_secret_never_survives_anywhere(secret, prefix, suffix):
    # a "secret" that is part of the mask itself ('****') is found in every masked value: no leak to look for
    assume(secret not in REDACTED)
    redactor = Redactor()
    redactor.add_known_secret(secret)
    document = {"stdout": prefix + secret + suffix, "results": [{"item": secret, "msg": [prefix, secret]}],
                "diff": [{"before": suffix, "after": prefix + secret}]}
    assert not [text for text in strings(redactor.redact(document)) if secret in text]


def strings(value):
    """Every string in a nested structure (JSON escaping would hide quotes from a plain ``in``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("text, secret", [
    ('password="correct horse battery"', "horse battery"),
    ("password='correct horse battery' user=bob", "horse battery"),
    ('{"api_key": "k3y with \\" quote, and comma", "name": "x"}', "quote, and comma"),
    ('--password "correct horse battery" --user bob', "horse battery"),
    ("token=abc,def", "def"),
    ("secret=abc;def&ghi", "def"),
    ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
    ("curl -H 'Authorization: Bearer eyJhbGciOi.payload.sig' https://api", "eyJhbGciOi"),
    ('curl -H "Authorization: Basic dXNlcjpwYXNz" https://api', "dXNlcjpwYXNz"),
    ("X-Auth-Token: Token t0k3n-value", "t0k3n-value"),
    ("git clone https://deploy:Hunter2Pw@git.example.com/repo.git", "Hunter2Pw"),
    ("psql postgresql://app:Hunter2Pw@db:5432/app", "Hunter2Pw"),
    ("redis://:Hunter2Pw@cache:6379/0", "Hunter2Pw"),
    ("config:\n  db_password: correct horse battery\n  user: bob\n", "horse battery"),
    ("[db]\npassword = correct horse battery\n", "horse battery"),
])
def test_whole_secret_values_are_redacted(redactor, text, secret):
    redacted = redactor.redact_string(text)
    assert secret not in redacted, redacted
    assert REDACTED in redacted
    assert redactor.redact_string(redacted) == redacted, "redaction must be idempotent"


@pytest.mark.parametrize("text, kept", [
    ("curl -H 'Authorization: Bearer eyJhbGciOi' https://api.example.com/v1", ["Bearer", "https://api.example.com/v1"]),
    ("password='correct horse battery' user=bob", ["user=bob"]),
    ("git clone https://deploy:Hunter2Pw@git.example.com/repo.git", ["https://deploy:", "@git.example.com/repo.git"]),
    ("https://git.example.com:8443/path@ref", ["https://git.example.com:8443/path@ref"]),
    ("config:\n  db_password: correct horse\n  user: bob\n", ["config:\n", "  user: bob\n"]),
    ("PGPASSWORD=s3cr3t-pw psql -c 'select 1'", ["psql -c 'select 1'"]),
    ('{"password": "", "user": "bob"}', ['"password": ""']),
])
def test_what_follows_a_secret_is_kept(redactor, text, kept):
    redacted = redactor.redact_string(text)
    for part in kept:
        assert part in redacted, redacted


def test_secrets_as_dict_keys_are_redacted(redactor):
    redactor.add_known_secret("Hunter2Value")
    redactor.add_known_secret("Other-Value9")
    redacted = redactor.redact({"msg": {"Hunter2Value": "x", "Other-Value9": "y", "visible": "z"},
                                "stdout_lines": [{"https://u:Url-Pass9@host/": "ok"}]})
    assert not [text for text in strings(redacted) if "Hunter2Value" in text or "Other-Value9" in text
                or "Url-Pass9" in text]
    # two keys redacted alike must not overwrite each other's values
    assert sorted(redacted["msg"].values()) == ["x", "y", "z"]
    assert redacted["msg"]["visible"] == "z"


quoted_secret_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="\\\"'"),
                             min_size=1, max_size=30).filter(lambda text: text.strip() == text and text)


@settings(max_examples=100, deadline=None)
@given(secret=quoted_secret_text, quote=st.sampled_from(['"', "'"]),
       key=st.sampled_from(["password", "api_key", "X-Auth-Token"]), separator=st.sampled_from(["=", ": ", " = ", '": ']))
def test_no_word_of_a_quoted_secret_survives(secret, quote, key, separator):
    text = "run %s%s%s%s%s --verbose" % (key, separator, quote, secret, quote)
    assert Redactor().redact_string(text) == "run %s%s%s%s%s --verbose" % (key, separator, quote, REDACTED, quote)


@pytest.mark.parametrize("text", [
    "A" * 20000, "x-" * 10000, "https:" * 4000, ("Zm9v" * 5000) + " password=s3cr3t-pw",
    "password" * 4000 + " password=s3cr3t-pw", "password: s3cr3t-pw" + " " * 32000 + "\n",
    "password: |\n" * 3000 + "  s3cr3t-pw\n",
])
def test_long_pathological_strings_are_redacted(redactor, text):
    """What once made the patterns backtrack for seconds (a base64 blob, a run of spaces, one keyword
    repeated): still redacted. That it is linear is checked on the patterns themselves, below, not timed."""
    redacted = redactor.redact_string(text)
    assert "s3cr3t-pw" not in redacted


@pytest.mark.parametrize("extra", [(), ("license_code", "x_vendor_auth")])
def test_every_pattern_is_linear_by_construction(extra):
    """Each pattern is tried only at boundaries and never backtracks into a repetition, so one attempt
    reads each character a bounded number of times and attempts do not overlap: linear in the input.
    The patterns this replaced (a lazy value before an end-of-line test, a greedy word before the secret
    keyword) fail this check; they took 2 s of the playbook's thread for 32,000 spaces."""
    from re import _parser as parser

    redactor = Redactor(extra_key_patterns=extra)
    redactor.add_known_secret("Sup3rS3cret!")
    redactor.add_known_secret("another-secret\nwith two lines")
    patterns = [pattern for detector in redactor.detectors for pattern in detector.patterns]
    assert len(patterns) >= 12
    for pattern in patterns:
        tree = list(parser.parse(pattern.pattern, pattern.flags))
        assert _backtracking_constructs(tree) == [], pattern.pattern
        assert _starts_at_a_boundary(tree), pattern.pattern
    # the known secrets' trie: no backtracking construct (it is tried at every position, and reads at most
    # the longest form there)
    known = redactor.known._compiled()
    assert _backtracking_constructs(list(parser.parse(known.pattern, known.flags))) == [], known.pattern


def test_the_linearity_check_catches_the_quadratic_shapes():
    from re import _parser as parser

    for quadratic in (r"^(?P<key>\w*password)\s*:\s*(?P<value>[^\n]*?)[ \t]*$", r"(?<!\w)[\w.-]*(?:password)[\w.-]*+="):
        tree = list(parser.parse(quadratic))
        assert _backtracking_constructs(tree), quadratic


# -- YAML block scalars ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, secret, kept", [
    ("db_password: |\n  s3cr3t\nuser: bob\n", "s3cr3t", ["user: bob"]),
    ("db_password: >\n  s3cr3t folded\n  across lines\nuser: bob\n", "across lines", ["user: bob"]),
    ("db_password: >-\n    s3cr3t\n\n    second paragraph\n", "second paragraph", []),
    ("db_password: |+\n  s3cr3t\n", "s3cr3t", []),
    ("db_password: |2-  # keep indentation\n   s3cr3t\n", "s3cr3t", []),
    ("config:\n  db_password: |\n    s3cr3t\n  user: bob\nother: 1\n", "s3cr3t", ["config:\n", "  user: bob\n", "other: 1"]),
    ("- db_password: |\n    s3cr3t\n  user: bob\n- name: x\n", "s3cr3t", ["  user: bob\n", "- name: x"]),
    ("- db_password: |\n    one\n  api_token: |\n    two\n", "two", []),
    ('"db_password": |\n  s3cr3t\n', "s3cr3t", []),
    ("x: 1\r\ndb_password: |\r\n  s3cr3t\r\nuser: bob\r\n", "s3cr3t", ["x: 1\r\n", "\r\nuser: bob\r\n"]),
])
def test_a_block_scalar_under_a_secret_key_is_redacted_whole(redactor, text, secret, kept):
    redacted = redactor.redact_string(text)
    assert secret not in redacted and REDACTED in redacted, redacted
    for part in kept:
        assert part in redacted, redacted
    assert redactor.redact_string(redacted) == redacted, "redaction must be idempotent"


@pytest.mark.parametrize("text", [
    "description: |\n  the password is rotated weekly\nuser: bob\n",
    "password_policy_doc: see below\nnotes: |\n  keep this\n",
])
def test_block_scalars_under_other_keys_are_kept(redactor, text):
    assert "weekly" in redactor.redact_string(text) or "keep this" in redactor.redact_string(text)


block_line = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=4, max_size=20)


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(block_line, min_size=1, max_size=4), indicator=st.sampled_from(["|", ">", "|-", ">+", "|2", ">-1"]),
       indent=st.integers(0, 4), extra=st.integers(1, 4), dash=st.booleans(),
       key=st.sampled_from(["password", "db_password", "api_token", "client_secret"]))
def test_no_line_of_a_secret_block_scalar_survives(lines, indicator, indent, extra, dash, key):
    prefix = " " * indent + ("- " if dash else "")
    column = len(prefix)
    body = "".join(" " * (column + extra) + line + "\n" for line in lines)
    sibling = " " * column + "visible_key: visible-value\n" if not dash else " " * (column) + "visible_key: visible-value\n"
    text = "%s%s: %s\n%s%s" % (prefix, key, indicator, body, sibling)
    redacted = Redactor().redact_string(text)
    assert not [line for line in lines if line in redacted], redacted
    assert "visible_key: visible-value" in redacted
