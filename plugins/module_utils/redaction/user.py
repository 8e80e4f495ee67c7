# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The user's own detectors: a YAML (or JSON) file with a list of named patterns.

.. code-block:: yaml

    - name: acme_license
      pattern: '(?<![A-Z0-9])ACME-[0-9A-F]{32}(?![A-Z0-9])'
      description: ACME product licence keys
    - name: internal_token
      pattern: '\\bitok_(?P<secret>[a-z0-9]{24})\\b'
      ignore_case: true

With a group named ``secret`` only that group is replaced (the prefix stays readable); otherwise
the whole match is. Each pattern must be linear by construction like the built-in ones
(``linear.py``): a pattern that could backtrack, or that does not start at a boundary, is refused
with the reason, naming the file, the entry and the pattern.
"""

from __future__ import annotations

import json
import os
import re

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.catalogue import Detector, replace_spans
from ansible_collections.changeops.itsm.plugins.module_utils.redaction.linear import linearity_problem, min_width

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML comes with ansible-core
    yaml = None

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_FIELDS = ("name", "pattern", "description", "ignore_case")


def pattern_detector(name, pattern, description=None, ignore_case=False, source="user"):
    """A text detector replacing each match of ``pattern`` (its ``secret`` group, when it has one)."""
    compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    group = "secret" if "secret" in compiled.groupindex else 0

    def redact(text, replacement):
        spans = [match.span(group) for match in compiled.finditer(text) if match.group(group)]
        return replace_spans(text, spans, replacement) if spans else (text, 0)

    return Detector("%s:%s" % (source, name), "text", description or "the user's pattern %s" % name, pattern,
                    "as the pattern's author decides", redact, [compiled])


def load_detector_file(path):
    """The detectors defined in ``path``; ``ConfigurationError`` naming the file, entry, field and value."""
    if not path:
        return []
    path = os.path.expanduser(str(path))
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError("redaction patterns file %s cannot be read: %s" % (path, exc), file=path)
    try:
        document = yaml.safe_load(text) if yaml is not None else json.loads(text)
    except Exception as exc:  # pylint: disable=broad-except
        raise ConfigurationError("redaction patterns file %s is not valid YAML: %s" % (path, exc), file=path)
    if document is None:
        return []
    if isinstance(document, dict) and isinstance(document.get("detectors"), list):
        document = document["detectors"]
    if not isinstance(document, list):
        raise ConfigurationError("redaction patterns file %s: expected a list of detectors (name, pattern), got %s"
                                 % (path, type(document).__name__), file=path)
    detectors, names = [], set()
    for index, entry in enumerate(document):
        where = "redaction patterns file %s, entry %d" % (path, index + 1)
        if not isinstance(entry, dict):
            raise ConfigurationError("%s: expected a mapping with name and pattern, got %r" % (where, entry),
                                     file=path, entry=index + 1)
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise ConfigurationError("%s: unknown field %s (known: %s)" % (where, unknown[0], ", ".join(_FIELDS)),
                                     file=path, entry=index + 1, field=unknown[0])
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ConfigurationError("%s: name must be a word of letters, digits, '_', '.' or '-' (at most 64),"
                                     " got %r" % (where, name), file=path, entry=index + 1, field="name", value=name)
        if name in names:
            raise ConfigurationError("%s: name %r is used twice" % (where, name), file=path, entry=index + 1,
                                     field="name", value=name)
        names.add(name)
        pattern = entry.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise ConfigurationError("%s (%s): pattern must be a non-empty string, got %r" % (where, name, pattern),
                                     file=path, entry=index + 1, field="pattern", value=pattern)
        ignore_case = entry.get("ignore_case", False)
        if not isinstance(ignore_case, bool):
            raise ConfigurationError("%s (%s): ignore_case must be true or false, got %r" % (where, name, ignore_case),
                                     file=path, entry=index + 1, field="ignore_case", value=ignore_case)
        problem = linearity_problem(pattern, re.IGNORECASE if ignore_case else 0)
        if problem:
            raise ConfigurationError("%s (%s): pattern %r is refused: %s" % (where, name, pattern, problem),
                                     file=path, entry=index + 1, field="pattern", value=pattern)
        if min_width(pattern) == 0:
            raise ConfigurationError("%s (%s): pattern %r matches the empty string" % (where, name, pattern),
                                     file=path, entry=index + 1, field="pattern", value=pattern)
        description = entry.get("description")
        detectors.append(pattern_detector(name, pattern, description if isinstance(description, str) else None,
                                          ignore_case))
    return detectors
