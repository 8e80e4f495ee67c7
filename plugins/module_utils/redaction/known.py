# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Known secret values (vault plaintexts, extra-var values, ``secret_vars``) in every form a task may print.

A value reaches output changed: ``command`` strips its trailing newline, ``| int`` drops leading zeros,
``to_json`` escapes it, ``b64encode`` (or ``echo | base64``) encodes it, ``upper`` changes its case,
``urlencode`` quotes it. Each known value is therefore stored as a set of *forms*; matching ignores
case (so upper-, lower- and title-cased forms are one form) and base64 forms are the parts of the
encoding fixed by the value alone at each of the three byte alignments, so the value is also found
inside a longer base64 text (``user:password`` encoded for a Basic header, a Kubernetes Secret).

The forms are matched by one regular expression built as a trie (shared prefixes merged, every
repetition possessive): the cost per character does not grow with the number of values the way an
alternation of literals does (measured: 1,000 values, 2,000 characters: 0.6 ms as a trie, 16 ms as
an alternation). The work is linear in the text for a given set of values (at most the longest
form's length per position).

Values are added from several threads (the callback, the reader of decrypted vault data); the
expression is rebuilt lazily, under a lock, the next time text is redacted after an addition.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading

try:
    from urllib.parse import quote, quote_plus
except ImportError:  # pragma: no cover
    quote = quote_plus = None

#: shorter values are not replaced inside longer strings: a 1-character "secret" would shred every string
MIN_KNOWN_SECRET_LENGTH = 4
#: a line of a multi-line value counts on its own from this length (a PEM body line, a line of a .env file)
MIN_LINE_LENGTH = 8
#: a base64 fragment counts from this length (shorter ones match by chance inside long base64 texts)
MIN_BASE64_FRAGMENT = 6
#: values longer than this are matched whole only (no per-line forms): a big decrypted file
MAX_LINE_SPLIT_CHARS = 256 * 1024
#: longer forms are found with a plain substring search instead of the trie (whose depth is the form's length)
MAX_TRIE_FORM = 128
_NUMBER_RE = re.compile(r"[+-]?+[0-9]++(?:\.[0-9]++)?+")


def _per_line(segment, replacement):
    """One replacement per line of a multi-line value, so a text keeps its number of lines."""
    if "\n" not in segment:
        return replacement
    return "\n".join(replacement if line.strip() else line for line in segment.split("\n"))


def base64_fragments(data):
    """The parts of ``base64(data)`` that do not depend on the bytes around ``data``, at each alignment."""
    fragments = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii").rstrip("=")
        # the first characters mix the padding's bits, the last one the next byte's
        start = (0, 2, 3)[offset]
        end = len(encoded) if (offset + len(data)) % 3 == 0 else len(encoded) - 1
        fragment = encoded[start:end]
        if len(fragment) >= MIN_BASE64_FRAGMENT:
            fragments.append(fragment)
            urlsafe = fragment.replace("+", "-").replace("/", "_")
            if urlsafe != fragment:
                fragments.append(urlsafe)
    return fragments


def forms_of(text):
    """Every form of the secret ``text`` worth matching (as written: the matcher lower-cases them)."""
    bases = {text, text.strip(), text.rstrip("\r\n")}
    if "\n" in text and len(text) <= MAX_LINE_SPLIT_CHARS:
        for line in text.splitlines():
            line = line.strip()
            if len(line) >= MIN_LINE_LENGTH:
                bases.add(line)
    stripped = text.strip()
    if _NUMBER_RE.fullmatch(stripped):
        # "| int" and "| float" print a number their own way (leading zeros, a sign, ".0")
        try:
            number = float(stripped)
            bases.add(str(number))
            if "." not in stripped:
                bases.add(str(int(stripped)))
        except ValueError:
            pass
    forms = set()
    for base in bases:
        if len(base) < MIN_KNOWN_SECRET_LENGTH:
            continue
        forms.add(base)
        encoded = json.dumps(base)[1:-1]
        forms.add(encoded)
        forms.add(json.dumps(encoded)[1:-1])  # JSON text inside a JSON string
        forms.add(json.dumps(base, ensure_ascii=False)[1:-1])
        forms.add(repr(base)[1:-1])  # Python's str() of a list or dict (item labels, tracebacks)
        forms.add(html.escape(base))
        if quote is not None:
            forms.add(quote(base, safe=""))
            forms.add(quote_plus(base, safe=""))
        data = base.encode("utf-8", "surrogatepass")
        forms.update(base64_fragments(data))
    return set(form for form in forms if len(form) >= MIN_KNOWN_SECRET_LENGTH)


def trie_pattern(words):
    """A regular expression matching any of ``words`` (longest first), as a trie of possessive groups."""
    root = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = None

    def build(node):
        branches = [re.escape(char) + build(child) for char, child in sorted(
            (item for item in node.items() if item[0]), key=lambda item: item[0])]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:%s)" % "|".join(branches)
        # a word ends here: a longer word is taken when it matches, never given back
        return "(?:%s)?+" % body if "" in node else body

    return build(root)


class KnownSecrets(object):
    """A growing set of secret values, replaced wherever one of their forms occurs."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values = set()
        self._forms = set()
        self._original_forms = set()
        #: lower-case forms longer than MAX_TRIE_FORM, longest first
        self._long_forms = ()
        self._version = 0
        self._compiled_version = 0
        self._pattern = None
        self._pattern_ci = None

    def __len__(self):
        return len(self._values)

    def __contains__(self, value):
        return value in self._values

    def add(self, value):
        """Add one value (a string or a number); True when it was new. Shorter than 4 characters: ignored."""
        if value is None or isinstance(value, bool):
            return False
        text = value if isinstance(value, str) else str(value)
        if len(text.strip()) < MIN_KNOWN_SECRET_LENGTH or text in self._values:
            return False
        originals = forms_of(text)
        forms = set(form.lower() for form in originals)
        long_forms = set(form for form in forms if len(form) > MAX_TRIE_FORM)
        forms -= long_forms
        originals = set(form for form in originals if len(form) <= MAX_TRIE_FORM)
        with self._lock:
            self._values.add(text)
            self._original_forms |= originals
            if long_forms - set(self._long_forms):
                self._long_forms = tuple(sorted(set(self._long_forms) | long_forms, key=len, reverse=True))
            new = forms - self._forms
            if new:
                self._forms |= new
                self._version += 1
        return True

    def is_form(self, text):
        """True when ``text`` is, whole, a form of a known value (a number printed by ``| int``)."""
        return text.lower() in self._forms

    def _compiled(self):
        if self._compiled_version != self._version:
            with self._lock:
                if self._compiled_version != self._version:
                    self._pattern = re.compile(trie_pattern(self._forms)) if self._forms else None
                    self._pattern_ci = None
                    self._compiled_version = self._version
        return self._pattern

    def redact(self, text, replacement):
        """``(text with every form replaced, number of replacements)``."""
        text, long_count = self._redact_long(text, replacement)
        pattern = self._compiled()
        if pattern is None or len(text) < MIN_KNOWN_SECRET_LENGTH:
            return text, long_count
        text, count = self._redact_trie(pattern, text, replacement)
        return text, count + long_count

    def _redact_long(self, text, replacement):
        count = 0
        for form in self._long_forms:
            if len(form) > len(text):
                continue
            lowered = text.lower()
            if len(lowered) != len(text):
                lowered = text  # see _redact_trie: such texts are matched as written
            position = lowered.find(form)
            if position < 0:
                continue
            pieces, kept = [], 0
            while position >= 0:
                pieces.append(text[kept:position])
                pieces.append(_per_line(text[position:position + len(form)], replacement))
                kept = position + len(form)
                count += 1
                position = lowered.find(form, kept)
            pieces.append(text[kept:])
            text = "".join(pieces)
        return text, count

    def _redact_trie(self, pattern, text, replacement):
        lowered = text.lower()
        if len(lowered) != len(text):
            # a character whose lower case is longer ("İ"): match case-insensitively on the text itself
            if self._pattern_ci is None:
                with self._lock:
                    self._pattern_ci = re.compile(trie_pattern(self._original_forms | self._forms), re.IGNORECASE)
            return self._pattern_ci.subn(lambda match: _per_line(match.group(0), replacement), text)
        pieces, position, count = [], 0, 0
        for match in pattern.finditer(lowered):
            start, end = match.span()
            if start == end:
                continue
            pieces.append(text[position:start])
            pieces.append(_per_line(text[start:end], replacement))
            position = end
            count += 1
        if not count:
            return text, 0
        pieces.append(text[position:])
        return "".join(pieces), count
