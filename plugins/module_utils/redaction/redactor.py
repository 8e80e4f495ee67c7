# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The redactor: the catalogue's detectors applied to JSON-like data, to hide (``redact``) or to report
(``find_secrets``) what they find.

Three nets, because no single one is enough (ARA issue #394 shows secrets in results of tasks nobody
marked ``no_log``):

1. known secret values (vault plaintexts, extra-var values, ``secret_vars``) in every form a task may
   print them (``known.py``), wherever they occur, also inside longer strings and in dict keys;
2. secrets recognisable by their shape or by the key they stand under (``catalogue.py``, ``keys.py``):
   private keys, cloud credentials, tokens, passwords in URLs and on command lines, ``key=value`` pairs,
   Kubernetes Secrets, prose; plus the user's own patterns (``user.py``);
3. the caller drops whole results for ``no_log`` tasks/items before this runs.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import int_text
from ansible_collections.changeops.itsm.plugins.module_utils.redaction import catalogue
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.catalogue import Detector
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.keys import (
    DEFAULT_SECRET_KEY_PATTERNS,
    KeyRules,
    key_atom,
    key_triggers,
)
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.known import (
    MIN_KNOWN_SECRET_LENGTH,
    KnownSecrets,
)

REDACTED = "********"
_MAX_DEPTH = 64
_EMPTY = (None, "", [], {})

#: name of the detector that reports a value under a secret-looking key
SECRET_KEY = "secret_key_name"
KUBERNETES_SECRET = "kubernetes_secret"
KNOWN_SECRET = "known_secret"


def builtin_text_detectors(key_value):
    """The catalogue's text detectors in the order they run (``key_value``: a ``KeyValueDetector``)."""
    return [
        Detector("private_key", "text", "the body of a PEM, OpenSSH or PGP private key block (BEGIN ... PRIVATE KEY to its END,"
                 " or to the end of the text when the END was cut off), and a PuTTY key's private lines",
                 "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1r...\\n-----END OPENSSH PRIVATE KEY-----",
                 "none known: the BEGIN line names a private key",
                 catalogue.redact_private_keys, [catalogue.PEM_BEGIN_RE, catalogue.PUTTY_RE],
                 lambda text, lowered: "PRIVATE KEY" in text or "Private-Lines:" in text),
        Detector("url_credentials", "text", "the password of a URL (scheme://user:PASSWORD@host) and, for http(s) and"
                 " ftp(s), a user part without password (https://TOKEN@host)",
                 "https://deploy:hunter2@git.example.com/repo.git, https://ghp_x@github.com/o/r",
                 "a plain user name in an https URL (https://bob@host) is hidden too; ssh://git@host is kept",
                 catalogue.redact_url_credentials, [catalogue.URL_PASSWORD_RE, catalogue.URL_TOKEN_RE],
                 lambda text, lowered: "://" in text),
        Detector("azure_storage", "text", "AccountKey=, SharedAccessKey=, SharedAccessSignature= in Azure connection"
                 " strings (up to the next ;) and sig= in a SAS URL's query",
                 "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9v...==;EndpointSuffix=core.windows.net",
                 "any URL query parameter named sig",
                 catalogue.redact_azure, [catalogue.AZURE_RE],
                 lambda text, lowered: catalogue.any_in(("accountkey=", "sharedaccess", "sig="), lowered)),
        Detector("aws_secret_access_key", "text", "a 40-character [A-Za-z0-9/+] word mixing upper case, lower case and"
                 " digits, in a text that mentions aws/amazon or holds an access key id",
                 "aws configure set aws_secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                 "other 40-character random words next to the word aws (git SHA-1s are hex: kept)",
                 catalogue.redact_aws_secret, [catalogue.AWS_SECRET_RE],
                 lambda text, lowered: len(text) >= 40 and (catalogue.any_in(("aws", "amazon"), lowered) or
                                                            catalogue.any_in(catalogue.AWS_KEY_ID_PREFIXES, text))),
        Detector("aws_access_key_id", "text", "AWS access key ids: AKIA, ASIA, ABIA, ACCA or A3T and 16 more upper-case"
                 " letters or digits", "AKIAIOSFODNN7EXAMPLE",
                 "20-character upper-case words starting with those letters",
                 catalogue.group_replacer(catalogue.AWS_KEY_ID_RE), [catalogue.AWS_KEY_ID_RE],
                 lambda text, lowered: catalogue.any_in(catalogue.AWS_KEY_ID_PREFIXES, text)),
        Detector("service_token", "text", "tokens with a documented prefix: GitHub (ghp_, gho_, ghu_, ghs_, ghr_,"
                 " github_pat_), GitLab (glpat-), Slack (xox?-), Stripe (sk_live_, rk_live_), npm (npm_), PyPI"
                 " (pypi-AgEIcHlwaS5vcmc), Google API keys (AIza), JSON Web Tokens (eyJ...eyJ...)",
                 "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "a JWT that only carries public claims",
                 catalogue.redact_tokens, [catalogue.TOKEN_RE],
                 lambda text, lowered: catalogue.any_in(catalogue.TOKEN_PREFIXES, text)),
        Detector(KUBERNETES_SECRET, "text", "in text holding a kind: Secret manifest, the value of every key under"
                 " data: and stringData: (also a Secret as a dict, and in JSON text)",
                 "kind: Secret\\ndata:\\n  username: YWRtaW4=", "a ConfigMap's data in the same text as a Secret",
                 catalogue.redact_kubernetes_yaml, [catalogue.K8S_KIND_RE, catalogue.K8S_DATA_RE],
                 lambda text, lowered: "Secret" in text and "data" in lowered),
        Detector("key_value_pair", "text", "the value after a secret-looking key (see secret_key_name) in a string:"
                 " key=value, key: value, \"key\": \"value\", --key value, env-style DB_PASS=value, a key: line of"
                 " its own (rest of the line), a YAML block scalar (key: | and its lines), the credential after an"
                 " HTTP auth scheme", "PGPASSWORD=s3cr3t psql; db_password: \"correct horse\"; Authorization: Bearer x",
                 "values of keys that only look secret (a path after --key, public keys under key:)",
                 key_value.redact, key_value.patterns,
                 lambda text, lowered: catalogue.any_in(key_value.triggers, lowered)),
        Detector("command_line_password", "text", "passwords given as options of well-known commands: mysql -pPW,"
                 " sshpass -p PW, curl -u user:PW, smbclient -U user%PW, ldapsearch -w PW, redis-cli -a PW,"
                 " openssl -passin pass:PW, sqlcmd -P PW, mongo -p PW, docker/podman login -p PW, htpasswd -b f u PW,"
                 " useradd -p HASH", "mysql -uroot -pS3cret -e 'select 1'",
                 "the value of those options for those commands only (ssh -p 2222 is kept)",
                 catalogue.redact_command_line, [catalogue.command_line.COMMAND_RE],
                 # every rule is an option: " -" first, one scan, before the command names
                 lambda text, lowered: (" -" in text or "\t-" in text) and
                 catalogue.any_in(catalogue.command_line.TRIGGERS, lowered)),
        Detector("prose_password", "text", "a password, passphrase, secret, token, API key or PIN announced in prose:"
                 " \"the new password is X\", \"token for bob was X\", \"password has been set to X\"",
                 "Your new password is Tr0ub4dor&3", "words after 'is' that describe it (required, invalid, "
                 "expired...) are kept; other words are hidden (\"the secret is out\")",
                 catalogue.redact_prose, [catalogue.PROSE_RE],
                 lambda text, lowered: catalogue.any_in(catalogue.PROSE_TRIGGERS, lowered)),
    ]


def _text(value):
    """A scalar as text; an int of any length (``str`` refuses ints of more than 4,300 digits)."""
    return int_text(value) if isinstance(value, int) and not isinstance(value, bool) else str(value)


class Redactor(object):
    """Redacts nested data; build one per run and feed it known secrets as they appear."""

    def __init__(self, key_patterns=DEFAULT_SECRET_KEY_PATTERNS, extra_key_patterns=(), replacement=REDACTED,
                 user_detectors=(), censor_values=False):
        patterns = [p for p in list(key_patterns) + list(extra_key_patterns) if p]
        self.replacement = replacement
        #: fail closed: every non-empty string value of ``redact``'s data is replaced (keys still only redacted)
        self.censor_values = bool(censor_values)
        self.keys = KeyRules(patterns)
        self.known = KnownSecrets()
        self.key_values = catalogue.KeyValueDetector(key_atom(patterns), key_triggers(patterns))
        self.detectors = builtin_text_detectors(self.key_values) + list(user_detectors)

    # -- known secrets ------------------------------------------------------------------------------------
    def add_known_secret(self, value):
        """Add a secret value (containers: every scalar in them); shorter than 4 characters: ignored."""
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, (list, tuple, set, frozenset)):
            for item in list(value):
                self.add_known_secret(item)
            return
        if isinstance(value, dict):
            for item in list(value.values()):
                self.add_known_secret(item)
            return
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        self.known.add(value if isinstance(value, str) else _text(value))

    def is_secret_key(self, key):
        return self.keys.is_secret(key)

    # -- strings -----------------------------------------------------------------------------------------
    def redact_string(self, text, findings=None, path=()):
        """``text`` with every secret the catalogue finds replaced (``findings``: a list to report into)."""
        if len(text) < MIN_KNOWN_SECRET_LENGTH:
            return text  # nothing this short is a secret any detector knows
        replacement = self.replacement
        text, count = self.known.redact(text, replacement)
        if count and findings is not None:
            findings.append((tuple(path), KNOWN_SECRET))
        values = catalogue.json_secret_strings(text, self._secret_leaves)
        if values:
            text, count = catalogue.redact_json_strings(text, values, replacement)
            if count and findings is not None:
                findings.append((tuple(path), "json_document"))
        # what the triggers read: redacting only takes text away, so a detector a trigger skips has nothing to find
        lowered = text.lower()
        for detector in self.detectors:
            if detector.trigger is not None and not detector.trigger(text, lowered):
                continue
            text, count = detector.redact(text, replacement)
            if count and findings is not None:
                findings.append((tuple(path), detector.name))
        return text

    def _secret_leaves(self, document, depth=0):
        """Strings of a parsed JSON document that stand under a secret-looking key or in a Secret's data."""
        leaves = []
        if depth > _MAX_DEPTH:
            return leaves
        if isinstance(document, dict):
            secret_data = _kubernetes_secret_data(document)
            for key, item in document.items():
                if key in secret_data or self.is_secret_key(key):
                    _string_leaves(item, leaves)
                else:
                    leaves.extend(self._secret_leaves(item, depth + 1))
        elif isinstance(document, list):
            for item in document:
                leaves.extend(self._secret_leaves(item, depth + 1))
        return leaves

    # -- data ---------------------------------------------------------------------------------------------
    def redact(self, value, findings=None, path=()):
        """A redacted copy of ``value`` (dicts, lists, strings, scalars); ``findings`` collects
        ``(path, detector)`` for what was found, ``path`` a tuple of keys and indexes."""
        return self._walk(value, findings, tuple(path), 0)

    def _walk(self, value, findings, path, depth):
        if isinstance(value, str):
            if self.censor_values and value and (not path or path[-1] is not KEY_OF):
                return self.replacement
            return self.redact_string(value, findings, path)
        if isinstance(value, dict):
            if depth > _MAX_DEPTH:
                return "[nested too deep]"
            secret_data = _kubernetes_secret_data(value)
            redacted = {}
            for key, item in value.items():
                # a secret can be a key too ({"<password>": "user"}): keys go through the same net
                if isinstance(key, (str, bytes)):
                    name = self._walk(key if isinstance(key, str) else key.decode("utf-8", "replace"),
                                      findings, path + (_KEY_OF,), depth + 1)
                    unique, number = name, 1
                    while unique in redacted:
                        number += 1
                        unique = "%s (%d)" % (name, number)
                else:
                    unique = key
                if key in secret_data:
                    item = self._replace_whole(item, findings, path + (unique,), KUBERNETES_SECRET, depth)
                elif self.is_secret_key(key) and item not in _EMPTY and not isinstance(item, bool):
                    item = self._replace_whole(item, findings, path + (unique,), SECRET_KEY, depth)
                else:
                    item = self._walk(item, findings, path + (unique,), depth + 1)
                redacted[unique] = item
            return redacted
        if isinstance(value, (list, tuple, set, frozenset)):
            if depth > _MAX_DEPTH:
                return "[nested too deep]"
            items = list(value)
            if len(items) > 1 and not self.censor_values and all(isinstance(item, str) for item in items):
                lines = self._redact_lines(items, findings, path)
                if lines is not None:
                    return lines
            return [self._walk(item, findings, path + (index,), depth + 1) for index, item in enumerate(items)]
        if isinstance(value, bytes):
            return self.redact_string(value.decode("utf-8", "replace"), findings, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and len(self.known) and \
                self.known.is_form(_text(value)):
            # a numeric secret through "| int" is a number in the result, not a string
            if findings is not None:
                findings.append((path, KNOWN_SECRET))
            return self.replacement
        return value

    def _redact_lines(self, items, findings, path):
        """A list of strings redacted as the lines of one text (a private key or a YAML block split into
        ``stdout_lines``), or None when that does not give back as many items (then each goes alone)."""
        joined = "\n".join(items)
        redacted = self.redact_string(joined, findings, path)
        if redacted == joined:
            return list(items)
        pieces = redacted.split("\n")
        if len(pieces) != joined.count("\n") + 1:
            return None
        lines, position = [], 0
        for item in items:
            count = item.count("\n") + 1
            lines.append("\n".join(pieces[position:position + count]))
            position += count
        return lines

    def _replace_whole(self, item, findings, path, name, depth):
        if findings is not None:
            if isinstance(item, dict) and depth < _MAX_DEPTH:
                # a Secret's data as a dict ({"tls.key": ...}): report it value by value, never the redacted marker
                found = [(path + (key,), name) for key, value in item.items()
                         if value not in _EMPTY and not isinstance(value, bool) and value != self.replacement]
                findings.extend(found)
            elif item != self.replacement:
                findings.append((path, name))
        if isinstance(item, dict) and name == KUBERNETES_SECRET:
            return dict((key, self.replacement if value not in _EMPTY else value) for key, value in item.items())
        return self.replacement

    # -- reporting -------------------------------------------------------------------------------------------
    def find_secrets(self, value, path=()):
        """``[(path, detector name)]`` for every secret the catalogue finds in ``value``; nothing is changed.

        ``path`` is a tuple of dict keys (secret-holding keys appear redacted) and list indexes; a finding in a
        dict key itself ends with ``KEY_OF``. The secret values themselves are never part of the answer.
        """
        findings = []
        self.redact(value, findings, path)
        unique = []
        for finding in findings:
            if finding not in unique:
                unique.append(finding)
        return unique


class _KeyMarker(str):
    """The last element of a path that points at a dict key rather than its value."""

    def __repr__(self):
        return "KEY_OF"


#: path element meaning "the key itself" (a secret used as a dict key)
KEY_OF = _KEY_OF = _KeyMarker("(key)")


def _kubernetes_secret_data(mapping):
    """Keys of ``mapping`` whose values are a Kubernetes Secret's data (``data``/``stringData``), else ()."""
    if mapping.get("kind") != "Secret":
        return ()
    return tuple(key for key in ("data", "stringData") if isinstance(mapping.get(key), dict))


def _string_leaves(value, leaves, depth=0):
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, str):
        leaves.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _string_leaves(item, leaves, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _string_leaves(item, leaves, depth + 1)


def format_path(path):
    """``("data", "result", "stdout")`` -> ``data.result.stdout``; indexes as ``[0]``, odd keys quoted."""
    text = ""
    for element in path:
        if element is KEY_OF:
            text += "(key)"
        elif isinstance(element, int):
            text += "[%d]" % element
        elif isinstance(element, str) and element and all(c.isalnum() or c in "_-" for c in element):
            text += ("." if text else "") + element
        else:
            text += "[%s]" % _quote(element)
    return text


def _quote(element):
    import json

    return json.dumps(str(element))


__all__ = ["REDACTED", "Redactor", "KEY_OF", "format_path", "MIN_KNOWN_SECRET_LENGTH", "builtin_text_detectors"]
