# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The structural check that keeps every redaction pattern linear in its input.

Python's ``re`` backtracks. A pattern stays linear when (1) nothing it matched can be given back:
no lazy repetition and no unbounded greedy one outside an atomic group (possessive ``*+``/``++``
and ``(?>...)`` never give back), and (2) an attempt can only start at a boundary (a line start,
a word boundary, a negative lookbehind), so attempts do not re-read what an earlier one covered.
Bounded repetitions (``{1,40}``) are allowed: they cost a constant per attempt.

The built-in detectors are checked by the unit tests; a user's patterns are checked when they are
loaded, and refused with the reason (see ``user.py``).
"""

from __future__ import annotations

import re

try:  # Python >= 3.11 (possessive quantifiers, which the patterns need, came with it)
    from re import _constants as _sre_constants
    from re import _parser as _sre_parser
except ImportError:  # pragma: no cover
    _sre_constants = None
    _sre_parser = None


def backtracking_constructs(tree, inside_atomic=False):
    """Repetitions the regex engine may backtrack into, as ``(op, min, max)``: lazy ones, and unbounded
    greedy ones outside an atomic group (possessive repetitions never give back what they took)."""
    constants = _sre_constants
    found = []
    for op, argument in tree:
        if op in (constants.MIN_REPEAT, constants.MAX_REPEAT):
            low, high, body = argument
            if not inside_atomic and (op == constants.MIN_REPEAT or high == constants.MAXREPEAT):
                found.append((str(op), low, high))
            found.extend(backtracking_constructs(body, inside_atomic))
        elif op == constants.POSSESSIVE_REPEAT:
            found.extend(backtracking_constructs(argument[2], inside_atomic))
        elif op == constants.ATOMIC_GROUP:
            found.extend(backtracking_constructs(argument, True))
        elif op == constants.SUBPATTERN:
            found.extend(backtracking_constructs(argument[3], inside_atomic))
        elif op == constants.BRANCH:
            for branch in argument[1]:
                found.extend(backtracking_constructs(branch, inside_atomic))
        elif op in (constants.ASSERT, constants.ASSERT_NOT):
            found.extend(backtracking_constructs(argument[1], inside_atomic))
        elif op == constants.GROUPREF_EXISTS:
            for branch in argument[1:]:
                found.extend(backtracking_constructs(branch or [], inside_atomic))
    return found


def starts_at_a_boundary(tree):
    """The pattern's first item is a line start, a word boundary or a negative lookbehind."""
    constants = _sre_constants
    tree = list(tree)
    if not tree:
        return False
    op, argument = tree[0]
    if op == constants.SUBPATTERN:
        return starts_at_a_boundary(argument[3])
    if op == constants.ATOMIC_GROUP:
        return starts_at_a_boundary(argument)
    if op == constants.BRANCH:
        return all(starts_at_a_boundary(branch) for branch in argument[1])
    # "^" parses as AT_BEGINNING; with re.MULTILINE it is a line start
    starts = (constants.AT_BEGINNING, constants.AT_BEGINNING_LINE, constants.AT_BEGINNING_STRING, constants.AT_BOUNDARY)
    return (op == constants.AT and argument in starts) or (op == constants.ASSERT_NOT and argument[0] == -1)


def linearity_problem(pattern, flags=0):
    """Why ``pattern`` (text or compiled) may not run in linear time, or None when it is linear by construction."""
    if _sre_parser is None:  # pragma: no cover
        return "this Python cannot check patterns (3.11 or later is needed)"
    if isinstance(pattern, re.Pattern):
        pattern, flags = pattern.pattern, pattern.flags
    try:
        tree = list(_sre_parser.parse(pattern, flags & ~re.UNICODE if isinstance(pattern, bytes) else flags))
    except re.error as exc:
        return "it is not a valid regular expression (%s)" % exc
    constructs = backtracking_constructs(tree)
    if constructs:
        return ("it can backtrack: make every unbounded repetition possessive (*+, ++, ?+, {n,}+) or put it in an"
                " atomic group (?>...), and use no lazy repetition (*?, +?)")
    if not starts_at_a_boundary(tree):
        return ("it does not start at a boundary: begin it with ^, \\b or a negative lookbehind such as"
                " (?<![A-Za-z0-9]), so a match is only tried where a secret can begin")
    return None


def min_width(pattern, flags=0):
    """The fewest characters a match of ``pattern`` can hold (0: it can match the empty string)."""
    return _sre_parser.parse(pattern, flags).getwidth()[0]
