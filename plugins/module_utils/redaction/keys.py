# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret-looking key names: the ``secret_key_name`` detector's rules, shared by the dict walk and the
``key=value`` / ``key: value`` patterns inside strings.

Three kinds of rule, because a substring rule alone either misses ``pw`` or hides ``keyboard``:

- substrings (``password``, ``token``, ``secret``...): a key holding one anywhere is secret;
- whole names (``pass``, ``pw``, ``auth``, ``key``, ``psk``): only the key exactly;
- suffixes after a separator (``db_pass``, ``tls.key``, ``proxy-auth``).

``_`` in a substring rule also matches ``-`` or nothing (``api_key``: ``api-key``, ``apiKey``).
"""

from __future__ import annotations

import re

DEFAULT_SECRET_KEY_PATTERNS = (
    "password", "passwd", "passphrase", "pwd", "secret", "token", "api_key", "apikey", "private_key",
    "privatekey", "access_key", "secret_key", "client_secret", "credential", "authorization", "cookie",
    "session_id", "sessionid", "otp", "pin_code", "vault_pass", "become_pass", "ssh_pass", "key_data",
    "signing_key", "encryption_key", "dsn", "connection_string",
    # keytool's -storepass/-keypass, Azure's AccountKey/SharedAccessKey, PostgreSQL's passfile content
    "storepass", "keypass", "accountkey", "sharedaccesskey", "auth_key", "authkey", "privkey",
)
#: keys that are secret when they are the whole name (Kubernetes Secret data, .dockerconfigjson, htpasswd)
EXACT_SECRET_KEYS = ("pass", "pw", "auth", "key", "psk")
#: keys that are secret as the last part of a name after "_", "-" or "." (DB_PASS, proxy-auth, tls.key)
SUFFIX_SECRET_KEYS = ("pass", "pw", "auth", "psk")
#: ... and after "." only (tls.key, client.key: a file name as a key)
DOT_SUFFIX_SECRET_KEYS = ("key",)


def substring_alternatives(patterns):
    return "|".join(re.escape(p.lower()).replace("_", "[_-]?") for p in patterns if p)


def key_atom(patterns):
    """A regular expression for one key word (``[\\w.-]`` characters) that is secret-looking.

    Atomic: once a rule matched, the engine never tries the word's other splits again; every attempt
    starts at a word start (the callers' lookbehind), so the work is linear in the text.
    """
    alternatives = []
    substrings = substring_alternatives(patterns)
    if substrings:
        alternatives.append(r"[\w.-]*?(?:%s)[\w.-]*+" % substrings)
    alternatives.append(r"(?:%s)(?![\w.-])" % "|".join(EXACT_SECRET_KEYS))
    alternatives.append(r"[\w.-]*?[_.-](?:%s)(?![\w.-])" % "|".join(SUFFIX_SECRET_KEYS))
    alternatives.append(r"[\w.-]*?\.(?:%s)(?![\w.-])" % "|".join(DOT_SUFFIX_SECRET_KEYS))
    return "(?>%s)" % "|".join(alternatives)


def key_triggers(patterns):
    """Lower-case words one of which every secret-looking key holds, as few as possible (each costs a scan of
    every recorded string): the whole-name and suffix words, and for each substring rule a word already
    among them (``api_key`` holds "key" in every spelling: ``apikey``, ``api-key``), else its first piece
    (``session_id``: "session")."""
    words = list(EXACT_SECRET_KEYS) + [word for word in SUFFIX_SECRET_KEYS + DOT_SUFFIX_SECRET_KEYS
                                       if word not in EXACT_SECRET_KEYS]
    for pattern in patterns:
        pieces = [piece for piece in pattern.lower().split("_") if piece]
        if pieces and not any(word in piece for piece in pieces for word in words):
            words.append(pieces[0])
    return tuple(words)


class KeyRules(object):
    """``is_secret(key)`` for dict keys, with a cache (the same few keys repeat in every result)."""

    def __init__(self, patterns=DEFAULT_SECRET_KEY_PATTERNS):
        self.patterns = tuple(p for p in patterns if p)
        self.atom = key_atom(self.patterns)
        self._substring_re = re.compile(substring_alternatives(self.patterns), re.IGNORECASE) if self.patterns else None
        self._cache = {}

    def is_secret(self, key):
        if not isinstance(key, str):
            return False
        known = self._cache.get(key)
        if known is None:
            known = bool(self._substring_re is not None and self._substring_re.search(key))
            if not known:
                lowered = key.strip().lower()
                last = re.split(r"[_.-]", lowered)[-1] if len(lowered) < 200 else ""
                known = lowered in EXACT_SECRET_KEYS or (last != lowered and (
                    last in SUFFIX_SECRET_KEYS or (last in DOT_SUFFIX_SECRET_KEYS and lowered.endswith("." + last))))
            if len(self._cache) < 4096:
                self._cache[key] = known
        return known
