# -*- coding: utf-8 -*-
"""Whether a missing prerequisite fails a test or skips it: the rule scripts/test applies to its stages.

On the machine kind CI uses (Debian, as root; CI runs ``bash .ci/run`` with ``CI=true``) scripts/bootstrap
installs every prerequisite (systemd-nspawn, debootstrap, PostgreSQL, Chromium, the venvs of every
supported ansible-core line), so a missing one is a broken set-up that must fail the run, never a silent
skip. Elsewhere (a developer's laptop, not root) the tests that need one skip with the reason.

``CHANGEOPS_STRICT_PREREQS=1``/``0`` decides explicitly (scripts/test exports it for its stages).
"""

from __future__ import annotations

import os

import pytest


def strict():
    explicit = os.environ.get("CHANGEOPS_STRICT_PREREQS", "").strip().lower()
    if explicit in ("1", "true", "yes"):
        return True
    if explicit in ("0", "false", "no"):
        return False
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        return True
    return os.geteuid() == 0 and os.path.isfile("/etc/debian_version")


def require(available, what):
    """Fail (strict) or skip (elsewhere) the calling test unless ``available``; ``what`` says what is missing."""
    if available:
        return
    if strict():
        pytest.fail("missing prerequisite: %s. On the CI machine kind (CI=true, or root on Debian) that is a "
                    "failure, not a skip: run scripts/bootstrap (or set CHANGEOPS_STRICT_PREREQS=0 to skip)" % what,
                    pytrace=False)
    pytest.skip("missing prerequisite: %s (CHANGEOPS_STRICT_PREREQS=0)" % what)
