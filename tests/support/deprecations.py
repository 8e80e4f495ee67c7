# -*- coding: utf-8 -*-
"""Find the deprecation warnings an Ansible run printed that our collection caused.

ansible-core names the feature it deprecates ("The `CallbackTaskResult.task_fields` mapping is
deprecated ..."), not the caller, so the runs the tests make set ``ANSIBLE_DISPLAY_TRACEBACK=deprecated``
(``DEPRECATION_ENV``): every deprecation warning then carries the traceback of the call that triggered it,
and a warning is ours when its text or traceback names the collection (``changeops.itsm``, the
``ansible_collections/changeops/itsm`` tree) or a file of this repository. Deprecations a module of ours
returns name it as ``changeops.itsm.<module>``; template deprecations (top-level facts, ...) name the
file the template came from.
"""

from __future__ import annotations

import os
import re

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: what a run needs to print deprecations with their origin (deprecation warnings are on by default)
DEPRECATION_ENV = {"ANSIBLE_DEPRECATION_WARNINGS": "True", "ANSIBLE_DISPLAY_TRACEBACK": "deprecated"}

_START = re.compile(r"^\[DEPRECATION WARNING\]:", re.M)
_BLANK = re.compile(r"\n[ \t]*\n")


def deprecation_blocks(output):
    """Every deprecation warning in ``output``, each with the traceback printed under it.

    A warning is its paragraph (up to the next blank line); with ``ANSIBLE_DISPLAY_TRACEBACK=deprecated``
    the next paragraph is its ``Traceback (most recent call last):`` ... ``Message: ...``.
    """
    blocks = []
    for match in _START.finditer(output):
        end = _BLANK.search(output, match.end())
        stop = end.start() if end else len(output)
        if end:
            following = output[end.end():].lstrip("\n")
            if following.startswith("Traceback (most recent call last):"):
                after = _BLANK.search(output, len(output) - len(following))
                stop = after.start() if after else len(output)
        blocks.append(output[match.start():stop].rstrip())
    return blocks


def ours(block, roots=()):
    """True when the warning names the collection or a file under the repository (or one of ``roots``).

    The repository's virtualenvs (.venv, .venv-2.19, ...) hold ansible-core itself: their files are not ours.
    """
    patterns = [re.escape("changeops.itsm"), re.escape("ansible_collections/changeops/itsm/"),
                re.escape(os.path.realpath(REPO_ROOT) + os.sep) + r"(?!\.venv)"]
    patterns.extend(re.escape(os.path.realpath(str(root)) + os.sep) for root in roots)
    return re.search("|".join(patterns), block) is not None


def our_deprecations(output, roots=()):
    return [block for block in deprecation_blocks(output) if ours(block, roots)]


def assert_no_deprecations_of_ours(output, what="the run", roots=()):
    found = our_deprecations(output, roots)
    if found:
        raise AssertionError("%s printed %d deprecation warning(s) caused by changeops.itsm:\n\n%s" % (
            what, len(found), "\n\n".join(found)))
