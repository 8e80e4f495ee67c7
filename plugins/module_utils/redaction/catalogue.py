# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The catalogue of built-in text detectors: each finds one shape of secret inside a string.

Every detector has a name (reported by ``find_secrets`` and ``ledger_verify scan_secrets``), what it
matches, an example and its false positives; docs/recorder.md has the same table and a unit test keeps
the two in step. A detector's ``redact(text, replacement)`` returns ``(text, count)``: the text with
each secret replaced and how many secrets it replaced (a value that already is the replacement is
not counted, so redacting twice changes nothing and a redacted ledger scans clean).

Every pattern here is linear by construction (``linear.py``; the unit tests check each one): an
attempt only starts at a boundary and never backtracks into what it matched. Detectors that need
more than a pattern (a PEM block's end, a command's arguments, a YAML block) walk the text once.
"""

from __future__ import annotations

import json
import re

from ansible_collections.changeops.itsm.plugins.module_utils.redaction import command_line

# HTTP authentication schemes: in "Authorization: Bearer <token>" the secret is the word after the scheme
AUTH_SCHEMES = r"(?:Bearer|Basic|Digest|Token|Negotiate|NTLM|Bot|ApiKey|Key|AWS4-HMAC-SHA256)"


class Detector(object):
    """One entry of the catalogue (``kind``: ``text`` detectors read strings, ``key`` ones dict keys,
    ``mapping`` ones whole dicts)."""

    __slots__ = ("name", "kind", "matches", "example", "false_positives", "redact", "patterns", "trigger")

    def __init__(self, name, kind, matches, example, false_positives, redact=None, patterns=(), trigger=None):
        self.name = name
        #: ``trigger(text, lowered)``: False when the detector cannot find anything in ``text`` (a few ``in``
        #: tests, so that most strings never reach a pattern: a pattern starting with a lookbehind enters the
        #: regex engine at every position, about 1 us per character with IGNORECASE)
        self.trigger = trigger
        self.kind = kind
        self.matches = matches
        self.example = example
        self.false_positives = false_positives
        self.redact = redact
        #: the compiled patterns it uses (the linearity test reads them)
        self.patterns = tuple(patterns)

    def __repr__(self):
        return "Detector(%r)" % self.name


def _already(value, replacement):
    return value.startswith(replacement) or not value


def line_preserving(segment, replacement):
    """``replacement`` for ``segment``, once per line when it spans several: redacting never changes how many
    lines a text has, so a list of lines (``msg: "{{ out.stdout_lines }}"``) can be redacted as one text."""
    if "\n" not in segment:
        return replacement
    return "\n".join(replacement if line.strip() else line for line in segment.split("\n"))


def replace_spans(text, spans, replacement):
    """Replace sorted, non-overlapping ``spans``; ``(text, count)`` (spans already redacted are kept)."""
    pieces, position, count = [], 0, 0
    for start, end in spans:
        if start < position or _already(text[start:end], replacement):
            continue
        pieces.append(text[position:start])
        pieces.append(line_preserving(text[start:end], replacement))
        position = end
        count += 1
    if not count:
        return text, 0
    pieces.append(text[position:])
    return "".join(pieces), count


def group_replacer(pattern, group="value", prefilter=None, accept=None):
    """A ``redact`` that replaces ``group`` of every match of ``pattern`` (``accept(match)`` may veto one)."""

    def redact(text, replacement):
        if prefilter is not None and not prefilter(text):
            return text, 0
        spans = []
        for match in pattern.finditer(text):
            if match.group(group) is None or (accept is not None and not accept(match)):
                continue
            spans.append(match.span(group))
        return replace_spans(text, spans, replacement) if spans else (text, 0)

    return redact


def any_in(words, text):
    for word in words:
        if word in text:
            return True
    return False


def trigger_windows(text, words):
    """Spans of ``text`` worth a pattern: each line holding one of ``words`` (lower case) and the line after it,
    merged; the whole text when lower-casing changes its length (positions would not map back)."""
    lowered = text.lower()
    if len(lowered) != len(text):
        return [(0, len(text))]
    positions = []
    for word in words:
        position = lowered.find(word)
        while position >= 0:
            positions.append(position)
            position = lowered.find(word, position + len(word))
    if not positions:
        return []
    positions.sort()
    windows = []
    for position in positions:
        if windows and position < windows[-1][1]:
            continue
        start = text.rfind("\n", 0, position) + 1
        end = text.find("\n", position)
        if end >= 0:
            end = text.find("\n", end + 1)
        end = len(text) if end < 0 else end
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


# -- private keys --------------------------------------------------------------------------------------
PEM_BEGIN_RE = re.compile(r"(?<!-)-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----")
PUTTY_RE = re.compile(r"^Private-Lines:[ \t]*+[0-9]++[ \t]*+\r?\n", re.MULTILINE)


def _trimmed(text, start, end):
    """``(start, end)`` without the blank characters at either end (the block keeps its line breaks)."""
    while start < end and text[start] in " \t\r\n":
        start += 1
    while end > start and text[end - 1] in " \t\r\n":
        end -= 1
    return start, end


def redact_private_keys(text, replacement):
    """The body of each PEM/OpenSSH/PGP private key block (up to its END line, or the end of the text when
    the END was cut off), and the private lines of a PuTTY key; the BEGIN/END lines stay readable."""
    spans = []
    if "PRIVATE KEY" in text:
        position = 0
        while True:
            begin = PEM_BEGIN_RE.search(text, position)
            if begin is None:
                break
            end = text.find("-----END", begin.end())
            end = len(text) if end < 0 else end
            spans.append(_trimmed(text, begin.end(), end))
            close = text.find("-----", end + 8) if end < len(text) else -1
            position = len(text) if close < 0 else close + 5
    if "Private-Lines:" in text:
        for head in PUTTY_RE.finditer(text):
            end = text.find("Private-MAC:", head.end())
            spans.append(_trimmed(text, head.end(), len(text) if end < 0 else end))
        spans.sort()
    return replace_spans(text, [(start, end) for start, end in spans if end > start], replacement)


# -- cloud credentials -----------------------------------------------------------------------------------
AWS_KEY_ID_PREFIXES = ("AKIA", "ASIA", "ABIA", "ACCA", "A3T")
AWS_KEY_ID_RE = re.compile(r"(?<![A-Za-z0-9])(?P<value>(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16})(?![A-Za-z0-9])")
AWS_SECRET_RE = re.compile(r"(?<![A-Za-z0-9/+=])(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])")
_AWS_CONTEXT_RE = re.compile(r"aws|amazon|(?:AKIA|ASIA)[A-Z0-9]{16}", re.IGNORECASE)


def _looks_random(value):
    """A 40-character AWS secret mixes cases and digits; a git SHA-1 (hex) or a word does not."""
    return (any(c.isupper() for c in value) and any(c.islower() for c in value)
            and any(c.isdigit() or c in "/+" for c in value))


redact_aws_secret = group_replacer(AWS_SECRET_RE, prefilter=lambda text: len(text) >= 40 and _AWS_CONTEXT_RE.search(text),
                                   accept=lambda match: _looks_random(match.group("value")))

AZURE_RE = re.compile(
    r"(?<![\w.-])(?P<key>AccountKey|SharedAccessKey|SharedAccessSignature)=(?P<value>[^;\s\"']++)"
    r"|(?<![^?&])(?P<sig>sig)=(?P<sigvalue>[^&\s\"'#]++)", re.IGNORECASE)


def redact_azure(text, replacement):
    if "=" not in text:
        return text, 0
    spans = []
    for match in AZURE_RE.finditer(text):
        spans.append(match.span("value") if match.group("value") is not None else match.span("sigvalue"))
    return replace_spans(text, spans, replacement) if spans else (text, 0)


# -- tokens of well-known services -------------------------------------------------------------------------
TOKEN_RE = re.compile(
    r"(?<![A-Za-z0-9_-])(?P<value>"
    r"gh[pousr]_[A-Za-z0-9]{36,255}+"           # GitHub personal, OAuth, user-to-server, server, refresh tokens
    r"|github_pat_[A-Za-z0-9_]{22,255}+"        # GitHub fine-grained personal access token
    r"|glpat-[A-Za-z0-9_-]{20,255}+"            # GitLab personal access token
    r"|xox[abposr]-[A-Za-z0-9-]{10,255}+"       # Slack tokens
    r"|[sr]k_live_[A-Za-z0-9]{20,255}+"         # Stripe secret / restricted keys
    r"|npm_[A-Za-z0-9]{36}"                     # npm access token
    r"|pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,1000}+"  # PyPI API token
    r"|AIza[0-9A-Za-z_-]{35}"                   # Google API key
    r"|eyJ[A-Za-z0-9_-]{8,}+\.eyJ[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]*+"  # JSON Web Token
    r")")
redact_tokens = group_replacer(TOKEN_RE)
TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xox", "k_live_", "npm_", "pypi-",
                  "AIza", "eyJ")

# -- credentials in URLs -----------------------------------------------------------------------------------
# scheme://user:password@host (RFC 3986 userinfo holds no "/", "?", "#" or "@", so a match cannot run into
# the path); for http(s) and ftp also scheme://TOKEN@host, a userinfo without ":" (a token as user name)
URL_PASSWORD_RE = re.compile(
    r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*+://[^\s:/?#@\"']*+:(?P<value>[^\s/?#@\"']++)@", re.IGNORECASE)
URL_TOKEN_RE = re.compile(r"(?<![a-z0-9+.-])(?:https?|ftps?)://(?P<value>[^\s:/?#@\"'\[\]]++)@", re.IGNORECASE)
#: the user information after "://", matched at that position only
_USERINFO_RE = re.compile(r"(?P<user>[^\s:/?#@\"'\[\]]*+)(?::(?P<password>[^\s/?#@\"']++))?+@")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_TOKEN_SCHEMES = frozenset(("http", "https", "ftp", "ftps"))


def redact_url_credentials(text, replacement):
    """Each "://" is looked at once: the scheme before it, the user information after it (the two patterns
    above say the same; they are kept for the documentation and the linearity test)."""
    spans = []
    position = text.find("://")
    previous_end = 0
    while position >= 0:
        start = position
        while start > previous_end and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        scheme = text[start:position].lower()
        while scheme and not scheme[0].isalpha():
            scheme = scheme[1:]
        if scheme:
            match = _USERINFO_RE.match(text, position + 3)
            if match is not None:
                if match.group("password") is not None:
                    spans.append(match.span("password"))
                elif match.group("user") and scheme in _TOKEN_SCHEMES:
                    spans.append(match.span("user"))
        previous_end = position + 3
        position = text.find("://", previous_end)
    return replace_spans(text, spans, replacement) if spans else (text, 0)


# -- command lines -------------------------------------------------------------------------------------------
def redact_command_line(text, replacement):
    spans = command_line.secret_spans(text)
    return replace_spans(text, spans, replacement) if spans else (text, 0)


# -- prose -----------------------------------------------------------------------------------------------------
_VERBS = r"is|was|are|were|has|have|set|changed|reset|becomes|will"
PROSE_RE = re.compile(
    r"(?<![\w-])(?:new[ \t]++|temporary[ \t]++|initial[ \t]++|generated[ \t]++)?+"
    r"(?:password|passphrase|passwd|passcode|pass[ \t]++phrase|secret|token|api[ \t_-]?+key|pin)s?+"
    r"(?:[ \t]++(?!(?:%s)\b)[\w'./@-]++){0,4}+"
    r"[ \t]++(?:(?:is|was|are|were|has[ \t]++been|have[ \t]++been|will[ \t]++be)"
    r"(?:[ \t]++(?:set|changed|reset|updated))?+(?:[ \t]++to)?+|(?:set|changed|reset)[ \t]++to|becomes)"
    r"(?:[ \t]++(?:now|still|currently|simply|just))?+(?:[ \t]*+:)?+[ \t]++"
    r"(?P<value>\"[^\"\n]*+\"|'[^'\n]*+'|`[^`\n]*+`|[^\s\"'`]++)" % _VERBS, re.IGNORECASE)
#: words after "password is" that say something about it rather than being it
PROSE_STOPWORDS = frozenset("""
a an the not no none null nil empty blank unset set missing required needed mandatory optional incorrect
invalid wrong correct valid expired expiring changed unchanged reset updated rotated generated stored saved
hidden encrypted hashed masked redacted sent shown below above in at for from of on to by with used taken
locked unlocked disabled enabled known unknown available unavailable too weak strong short long ok okay fine
good bad default different same being been also only incorrectly successfully different identical too
given provided supplied received accepted rejected ignored issued requested entered typed
""".split())
_TRAILING_PUNCTUATION = ".,;:!?)]}"


def _prose_span(match):
    value = match.group("value")
    start, end = match.span("value")
    if value[0] in "\"'`":
        return (start + 1, end - 1) if end - start > 2 else None
    stripped = value.rstrip(_TRAILING_PUNCTUATION)
    if not stripped or stripped.lower() in PROSE_STOPWORDS:
        return None
    return start, start + len(stripped)


PROSE_TRIGGERS = ("pass", "secret", "token", "key", "pin")


def redact_prose(text, replacement):
    spans = []
    for start, end in trigger_windows(text, PROSE_TRIGGERS):
        for match in PROSE_RE.finditer(text, start, end):
            span = _prose_span(match)
            if span:
                spans.append(span)
    return replace_spans(text, spans, replacement) if spans else (text, 0)


# -- Kubernetes Secret manifests in YAML text ------------------------------------------------------------------
K8S_KIND_RE = re.compile(r"""^[ \t]*+(?:-[ \t]++)?+["']?+kind["']?+[ \t]*+:[ \t]*+["']?+Secret["']?+[ \t]*+\r?$""",
                         re.MULTILINE)
K8S_DATA_RE = re.compile(r"""^(?P<indent>[ \t]*+)["']?+(?:data|stringData)["']?+[ \t]*+:[ \t]*+\r?$""", re.MULTILINE)
_YAML_KEY_RE = re.compile(r"""[ \t]*+(?:"[^"\n]*+"|'[^'\n]*+'|[^\s:#][^:\n]*+)[ \t]*+:(?:[ \t]++|$)""")


def redact_kubernetes_yaml(text, replacement):
    """In a text holding a ``kind: Secret`` manifest, the value of every key under ``data:``/``stringData:``
    (block scalars under them go whole)."""
    if "Secret" not in text or K8S_KIND_RE.search(text) is None:
        return text, 0
    spans = []
    walked = 0
    for head in K8S_DATA_RE.finditer(text):
        if head.start() < walked:
            continue  # a "data:" line inside the block just walked
        column = len(head.group("indent"))
        end = head.end()
        first_level = None
        while end < len(text):
            following = text.find("\n", end + 1)
            following = len(text) if following < 0 else following
            line_start = end + 1
            line = text[line_start:following]
            body = line.lstrip(" \t")
            if body.rstrip("\r"):
                indent = len(line) - len(body)
                if indent <= column:
                    break
                if first_level is None:
                    first_level = indent
                key = _YAML_KEY_RE.match(line) if indent == first_level else None
                if key is not None:
                    value_start = line_start + key.end()
                    value_end = line_start + len(line.rstrip("\r \t"))
                    if value_end > value_start:
                        spans.append((value_start, value_end))
                elif indent > first_level:
                    spans.append((line_start + indent, line_start + len(line.rstrip("\r \t"))))
            end = following
        walked = end
    return replace_spans(text, sorted(spans), replacement) if spans else (text, 0)


# -- key/value pairs under secret-looking keys, inside strings ------------------------------------------------
class KeyValueDetector(object):
    """``key=value``, ``key: value``, ``"key": "value"``, ``--key value``, a ``key: ...`` line and a YAML block
    scalar under a secret-looking key (``keys.KeyRules``), built for one set of key rules."""

    def __init__(self, key_atom, triggers):
        key = key_atom
        #: lower-case words one of which every secret-looking key holds
        self.triggers = tuple(triggers)
        # key=value / key: value / "key": "value" / --key value. A quoted value is taken whole up to its closing
        # quote (spaces, commas and escaped quotes included); an unquoted one runs to the next space or quote,
        # so "token=abc,def" loses "abc,def"; an HTTP auth scheme ("Bearer x") is kept readable while its
        # credential, the word after it, is replaced. Only an option ("--password x") takes the next word
        # without "=" or ":": in prose ("reset password token=abc") the next word may be the start of a real
        # pair, which must not be swallowed as the prose's "value".
        self.inline_re = re.compile(
            r"""(?P<key>(?<![\w.-])(?P<dash>-)?+%s)(?P<sep>["']?+\s*+(?:=|(?P<colon>:))\s*+|(?(dash)\s++|(?!)))"""
            r"""(?:(?P<quote>["'])(?P<quoted>(?:\\.|(?!(?P=quote))[^\\\n])*+)(?P<close>(?P=quote)?+)"""
            # after "key:" a word ending in ":" is the next key ("api key: password: x"), not this one's value
            r"""|(?P<scheme>%s\s++)?(?P<value>[^\s"']++)(?(colon)(?<!:)))"""
            % (key, AUTH_SCHEMES), re.IGNORECASE)
        # "password: correct horse battery" or "password = correct horse battery" on a line of its own (YAML,
        # HTTP headers, ini and config dumps): the value is the rest of the line, spaces included. Not
        # "PGPASSWORD=x psql": without spaces around "=" that is a shell assignment before a command.
        self.line_re = re.compile(
            r"""^(?P<key>[ \t]*+(?:-[ \t]++)?+[+-]?+%s)(?P<sep>[ \t]*+:[ \t]*+|[ \t]++=[ \t]*+)"""
            r"""(?P<scheme>%s[ \t]++)?(?P<value>[^\s"'][^\n]*+)"""
            % (key, AUTH_SCHEMES), re.IGNORECASE | re.MULTILINE)
        # A YAML block scalar ("db_password: |" or ">-", then the value on the lines below): the head is found
        # here, its lines by _block_spans, which walks them once.
        self.block_re = re.compile(
            r"""^(?P<head>(?P<indent>[ \t]*+(?:-[ \t]++)?+)["']?+%s["']?+[ \t]*+:[ \t]*+)"""
            r"""(?P<indicator>[|>](?:[1-9][+-]?+|[+-][1-9]?+)?+[ \t]*+(?:#[^\r\n]*+)?+)\r?+$"""
            % key, re.IGNORECASE | re.MULTILINE)
        self.patterns = (self.inline_re, self.line_re, self.block_re)

    def redact(self, text, replacement):
        spans = []
        for start, end in trigger_windows(text, self.triggers):
            if "|" in text or ">" in text:
                for head in self.block_re.finditer(text, start, end):
                    spans.append((head.start("indicator"), _block_end(text, head)))
            for match in self.line_re.finditer(text, start, end):
                value_start, value_end = match.span("value")
                spans.append(_trimmed(text, value_start, value_end))
            for match in self.inline_re.finditer(text, start, end):
                if match.group("quote"):
                    if match.group("quoted"):
                        spans.append(match.span("quoted"))
                else:
                    spans.append(match.span("value"))
        if not spans:
            return text, 0
        # a block scalar or a whole line before the pairs inside it
        spans.sort(key=lambda span: (span[0], -span[1]))
        return replace_spans(text, spans, replacement)


def _block_end(text, head):
    """Where the text kept after a ``key: |`` head resumes: the line ending after the scalar's last line.

    Its lines are those after the head that are blank or indented deeper than the key, as YAML reads them
    (under ``- key: |`` the key's column counts, not the dash's). Each line is looked at once.
    """
    column = len(head.group("indent"))
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
    return position


# -- JSON documents inside strings ------------------------------------------------------------------------------
#: JSON texts longer than this are not parsed (the string detectors still read them)
MAX_JSON_TEXT = 1000000


def json_secret_strings(text, structural):
    """Strings that ``structural`` (a function of a parsed document returning secret leaves) finds secret in
    ``text`` when it is a JSON document: ``stdout`` of ``kubectl get secret -o json``, a service-account key
    file printed by ``cat``. Returns a list of strings (empty when ``text`` is no JSON document)."""
    stripped = text.strip()
    if len(stripped) < 2 or len(stripped) > MAX_JSON_TEXT or (stripped[0], stripped[-1]) not in (("{", "}"), ("[", "]")):
        return []
    try:
        document = json.loads(stripped)
    except (ValueError, RecursionError):
        return []
    return structural(document)


def redact_json_strings(text, values, replacement):
    """Replace each of ``values`` where it stands as a whole JSON string (``"value"``) in ``text`` (one pass)."""
    from ansible_collections.changeops.itsm.plugins.module_utils.redaction.known import trie_pattern

    encoded = set()
    for value in values:
        if value and not value.startswith(replacement):
            encoded.add(json.dumps(value))
            encoded.add(json.dumps(value, ensure_ascii=False))
    if not encoded:
        return text, 0
    return re.subn(trie_pattern(encoded), lambda match: '"%s"' % replacement, text)
