# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kept for code written against it: secret redaction lives in the ``redaction`` package now."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.redaction import (
    DEFAULT_SECRET_KEY_PATTERNS,
    MIN_KNOWN_SECRET_LENGTH,
    REDACTED,
    Redactor,
)

__all__ = ["DEFAULT_SECRET_KEY_PATTERNS", "MIN_KNOWN_SECRET_LENGTH", "REDACTED", "Redactor"]
