# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret redaction applied to everything before it reaches the ledger.

Three nets, because no single one is enough (ARA issue #394 shows secrets in
results of tasks nobody marked ``no_log``):

1. values under keys that look like secrets (``password``, ``token``...),
   anywhere in a nested structure, including ``key=value`` pairs inside
   strings such as command lines (a quoted value whole, the credential after
   ``Bearer``/``Basic``, the rest of a ``password: ...`` line) and the
   password of a URL (``scheme://user:password@host``);
2. exact known secret strings (vault plaintexts, ``no_log`` values, extra-var
   values) collected by the caller, replaced wherever they occur, also inside
   longer strings such as diffs, and in dict keys as well as values;
3. the caller drops whole results for ``no_log`` tasks/items before this runs.
"""

from __future__ import annotations

import re

REDACTED = "********"

DEFAULT_SECRET_KEY_PATTERNS = (
    "password", "passwd", "passphrase", "pwd", "secret", "token", "api_key", "apikey", "private_key",
    "privatekey", "access_key", "secret_key", "client_secret", "credential", "authorization", "cookie",
    "session_id", "sessionid", "otp", "pin_code", "vault_pass", "become_pass", "ssh_pass", "key_data",
    "signing_key", "encryption_key", "dsn", "connection_string",
)

# HTTP authentication schemes: in "Authorization: Bearer <token>" the secret is the word after the scheme
_AUTH_SCHEMES = r"(?:Bearer|Basic|Digest|Token|Negotiate|NTLM|Bot|ApiKey|Key|AWS4-HMAC-SHA256)"

# The password of a URL's user information: scheme://user:password@host (RFC 3986 userinfo holds no
# "/", "?", "#" or "@", so the match cannot run into the path)
_URL_PASSWORD_RE = re.compile(
    r"(?P<head>(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*+://[^\s:/?#@\"']*+:)(?P<value>[^\s/?#@\"']++)@", re.IGNORECASE)

# Secrets shorter than this are not substituted inside longer strings: a
# 1-character "secret" would otherwise shred every string in the record.
MIN_KNOWN_SECRET_LENGTH = 4


class Redactor(object):
    """Redacts nested data; build one per run and feed it known secrets as they appear."""

    def __init__(self, key_patterns=DEFAULT_SECRET_KEY_PATTERNS, extra_key_patterns=(), replacement=REDACTED):
        patterns = [p for p in list(key_patterns) + list(extra_key_patterns) if p]
        self.replacement = replacement
        alternatives = "|".join(re.escape(p.lower()).replace("_", "[_-]?") for p in patterns)
        self._key_re = re.compile(r"(%s)" % alternatives, re.IGNORECASE) if patterns else None
        # Every pattern is linear by construction: an attempt starts only at a boundary (a word start, a line
        # start), and nothing it consumed is given back. A key is one atomic word holding a secret pattern (a
        # plain "[\w.-]*" before the pattern backtracked through every place the pattern occurs, quadratic on
        # "passwordpassword..."); every other repetition is possessive, so a lazy value followed by an
        # end-of-line test (quadratic on a long run of spaces) cannot come back. tests/unit/test_redact.py
        # checks this shape on the compiled patterns.
        key = r"(?>[\w.-]*?(?:%s)[\w.-]*+)" % alternatives
        # key=value / key: value / "key": "value" / --key value inside strings. A quoted value is taken
        # whole up to its closing quote (spaces, commas and escaped quotes included); an unquoted one runs to
        # the next space or quote, so "token=abc,def" loses "abc,def"; an HTTP auth scheme ("Bearer x")
        # is kept readable while its credential, the word after it, is replaced. Only an option ("--password
        # x") takes the next word without "=" or ":": in prose ("reset password token=abc") the next word
        # may be the start of a real pair, which must not be swallowed as the prose's "value".
        self._inline_re = re.compile(
            r"""(?P<key>(?<![\w.-])(?P<dash>-)?+%s)(?P<sep>["']?+\s*+[=:]\s*+|(?(dash)\s++|(?!)))"""
            r"""(?:(?P<quote>["'])(?P<quoted>(?:\\.|(?!(?P=quote))[^\\\n])*+)(?P<close>(?P=quote)?+)"""
            r"""|(?P<scheme>%s\s++)?(?P<value>[^\s"']++))"""
            % (key, _AUTH_SCHEMES), re.IGNORECASE) if patterns else None
        # "password: correct horse battery" or "password = correct horse battery" on a line of its own
        # (YAML, HTTP headers, ini and config dumps): the value is the rest of the line, spaces included
        # (trailing blanks are dropped with it). Not "PGPASSWORD=x psql": without spaces around "=" that
        # is a shell assignment before a command.
        self._line_re = re.compile(
            r"""^(?P<key>[ \t]*+(?:-[ \t]++)?+%s)(?P<sep>[ \t]*+:[ \t]*+|[ \t]++=[ \t]*+)"""
            r"""(?P<scheme>%s[ \t]++)?(?P<value>[^\s"'][^\n]*+)"""
            % (key, _AUTH_SCHEMES), re.IGNORECASE | re.MULTILINE) if patterns else None
        # A YAML block scalar ("db_password: |" or ">-", then the value on the lines below): the head is
        # found here, its lines by _redact_block_scalars, which walks them once.
        self._block_re = re.compile(
            r"""^(?P<head>(?P<indent>[ \t]*+(?:-[ \t]++)?+)["']?+%s["']?+[ \t]*+:[ \t]*+)"""
            r"""[|>](?:[1-9][+-]?+|[+-][1-9]?+)?+[ \t]*+(?:#[^\r\n]*+)?+\r?+$"""
            % key, re.IGNORECASE | re.MULTILINE) if patterns else None
        self._known = set()
        self._known_re = None

    def is_secret_key(self, key):
        return bool(self._key_re and isinstance(key, str) and self._key_re.search(key))

    def add_known_secret(self, value):
        if value is None:
            return
        if isinstance(value, (list, tuple, set)):
            for item in value:
                self.add_known_secret(item)
            return
        if isinstance(value, dict):
            for item in value.values():
                self.add_known_secret(item)
            return
        if isinstance(value, bool):
            return
        text = str(value)
        if len(text) < MIN_KNOWN_SECRET_LENGTH or text in self._known:
            return
        self._known.add(text)
        # longest first, so a secret containing another is replaced whole
        ordered = sorted(self._known, key=len, reverse=True)
        self._known_re = re.compile("|".join(re.escape(s) for s in ordered))

    def redact_string(self, text):
        if self._known_re is not None:
            text = self._known_re.sub(self.replacement, text)
        text = _URL_PASSWORD_RE.sub(self._url_replacement, text)
        if self._block_re is not None and ("|" in text or ">" in text):
            text = self._redact_block_scalars(text)
        if self._line_re is not None:
            text = self._line_re.sub(self._line_replacement, text)
        if self._inline_re is not None:
            text = self._inline_re.sub(self._inline_replacement, text)
        return text

    def _url_replacement(self, match):
        return "%s%s@" % (match.group("head"), self.replacement)

    def _redact_block_scalars(self, text):
        """``key: |`` (or ``>``) under a secret-looking key: the head says REDACTED and the scalar's lines go.

        Its lines are those after the head that are blank or indented deeper than the key, as YAML reads
        them (under ``- key: |`` the key's column counts, not the dash's). Each line is looked at once.
        """
        heads = list(self._block_re.finditer(text))
        if not heads:
            return text
        pieces = []
        position = 0
        for head in heads:
            if head.start() < position:
                continue  # a "key: |" line inside the block just dropped
            pieces.append(text[position:head.start()])
            pieces.append(head.group("head") + self.replacement)
            column = len(head.group("indent"))
            # end: the newline ending the last line looked at; position: where the kept text resumes
            # (the line ending after the scalar, a "\r" included)
            end = head.end()
            position = end - 1 if head.group(0).endswith("\r") else end
            while end < len(text):
                following = text.find("\n", end + 1)
                following = len(text) if following < 0 else following
                line = text[end + 1:following]
                body = line.lstrip(" \t")
                blank = not body.rstrip("\r")
                if not blank and len(line) - len(body) <= column:
                    break
                if not blank:
                    # blank lines between the head and this line belong to the scalar too
                    position = following - 1 if line.endswith("\r") else following
                end = following
        pieces.append(text[position:])
        return "".join(pieces)

    def _line_replacement(self, match):
        if match.group("value").rstrip() == self.replacement:
            return match.group(0)
        return "%s%s%s%s" % (match.group("key"), match.group("sep"), match.group("scheme") or "", self.replacement)

    def _inline_replacement(self, match):
        quote = match.group("quote")
        value = match.group("quoted") if quote else match.group("value")
        if value == self.replacement or (quote and not value):
            return match.group(0)  # already redacted, or an empty value that tells "no password set"
        if quote:
            return "%s%s%s%s%s" % (match.group("key"), match.group("sep"), quote, self.replacement,
                                   match.group("close"))
        return "%s%s%s%s" % (match.group("key"), match.group("sep"), match.group("scheme") or "", self.replacement)

    def redact(self, value):
        """Return a redacted copy of ``value`` (dicts, lists, strings, scalars)."""
        if isinstance(value, dict):
            redacted = {}
            for key, item in value.items():
                if self.is_secret_key(key) and item not in (None, "", [], {}) and not isinstance(item, bool):
                    item = self.replacement
                else:
                    item = self.redact(item)
                # a secret can be a key too ({"<password>": "user"}): keys go through the same net
                if isinstance(key, (str, bytes)):
                    key = self.redact(key)
                    unique, number = key, 1
                    while unique in redacted:
                        number += 1
                        unique = "%s (%d)" % (key, number)
                    key = unique
                redacted[key] = item
            return redacted
        if isinstance(value, (list, tuple, set)):
            return [self.redact(item) for item in value]
        if isinstance(value, str):
            return self.redact_string(value)
        if isinstance(value, bytes):
            return self.redact_string(value.decode("utf-8", "replace"))
        return value
