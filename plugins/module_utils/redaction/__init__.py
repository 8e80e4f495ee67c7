# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret redaction for everything the collection stores: one catalogue of detectors, two uses.

The entry point for every caller (the recorder, ``ledger_verify scan_secrets``, ``ledger_redact``):

``Redactor(extra_key_patterns=(), user_detectors=())``
    ``redact(value)`` returns a copy of JSON-like ``value`` with every secret replaced by ``REDACTED``;
    ``redact_string(text)``; ``add_known_secret(value)`` teaches it a secret value (all its forms);
    ``find_secrets(value, path=())`` reports ``[(path, detector name)]`` without changing anything.
``find_secrets(value, path=(), redactor=None)``
    the same report with the built-in catalogue (plus what ``redactor`` knows, when given).
``redact(value, redactor=None)``
    the same copy as ``Redactor().redact(value)``.
``load_detector_file(path)``
    the user's detectors (a YAML list of ``name``/``pattern``) for ``Redactor(user_detectors=...)``.
``catalogue()``
    the built-in detectors (name, what they match, example, false positives), as docs/recorder.md lists them.
``format_path(path)``
    ``data.result.stdout`` / ``data.diff[0].after`` for a path from ``find_secrets``.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.redaction.keys import DEFAULT_SECRET_KEY_PATTERNS
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.known import MIN_KNOWN_SECRET_LENGTH
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.linear import linearity_problem
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.redactor import (
    KEY_OF,
    KNOWN_SECRET,
    KUBERNETES_SECRET,
    REDACTED,
    SECRET_KEY,
    Redactor,
    format_path,
)
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.user import load_detector_file

_DEFAULT = []


def _default_redactor():
    if not _DEFAULT:
        _DEFAULT.append(Redactor())
    return _DEFAULT[0]


def find_secrets(value, path=(), redactor=None):
    """``[(path, detector name)]`` for each secret the catalogue finds in JSON-like ``value``."""
    return (redactor or _default_redactor()).find_secrets(value, path)


def redact(value, redactor=None):
    """A copy of ``value`` with every secret the catalogue finds replaced by ``REDACTED``."""
    return (redactor or _default_redactor()).redact(value)


def catalogue():
    """The built-in detectors, in the order they run: key, mapping and text detectors alike."""
    from ansible_collections.changeops.itsm.plugins.module_utils.redaction.catalogue import Detector

    redactor = _default_redactor()
    return [
        Detector(KNOWN_SECRET, "value", "every value the run knows is secret (vault plaintexts, vault-encrypted"
                 " files read during the run, extra-var values, secret_vars) in any of its forms: as stored,"
                 " trailing newline stripped, as a number (| int), JSON-escaped, base64-encoded (also inside a"
                 " longer base64 text), URL-encoded, HTML-escaped, in any letter case; each line of 8 or more"
                 " characters of a multi-line value", "echo {{ vault_db_password | b64encode }}",
                 "a non-secret text equal to a known value of 4 or more characters"),
        Detector(SECRET_KEY, "key", "a dict key that looks secret: holding password, passwd, passphrase, pwd, secret,"
                 " token, api_key, private_key, access_key, credential, authorization, cookie, session_id, dsn,"
                 " connection_string and others (plus redact_keys); exactly pass, pw, auth, key or psk; ending in"
                 " _pass, -pw, _auth, .key... Its whole value goes",
                 "{\"db_password\": \"x\"}, {\"tls.key\": \"LS0t...\"}, {\"auth\": \"dXNlcjpwYXNz\"}",
                 "public keys under key:, a path under ssh_key_file... are hidden too"),
        Detector(KUBERNETES_SECRET + "_mapping", "mapping", "a dict with kind: Secret: every value of its data"
                 " and stringData", "{\"kind\": \"Secret\", \"data\": {\"username\": \"YWRtaW4=\"}}", "none"),
        Detector("json_document", "text", "a string that is a JSON document: the key and Secret rules applied"
                 " inside it", "kubectl get secret -o json output", "as secret_key_name"),
    ] + list(redactor.detectors)


__all__ = [
    "DEFAULT_SECRET_KEY_PATTERNS", "KEY_OF", "MIN_KNOWN_SECRET_LENGTH", "REDACTED", "Redactor", "catalogue",
    "find_secrets", "format_path", "linearity_problem", "load_detector_file", "redact",
]
