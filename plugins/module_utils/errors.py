# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exceptions shared by every part of the collection.

Callers catch ``ChangeopsError`` only; the subclasses say what kind of
failure it was so that, for instance, the change gate can fail closed on
``BackendUnavailable`` while a module reports ``ValidationError`` as bad input.
"""

from __future__ import annotations


class ChangeopsError(Exception):
    """Base class: a failure with a message a person can act on."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_result(self):
        result = {"msg": self.message}
        if self.details:
            result["details"] = self.details
        return result


class ConfigurationError(ChangeopsError):
    """A backend option (file, env var or module argument) is wrong."""


class BackendUnavailable(ChangeopsError):
    """The system of record cannot be reached or written right now."""


class ValidationError(ChangeopsError):
    """Input (arguments, a policy file, a mapping) is malformed."""


class NotFound(ChangeopsError):
    """The record asked for does not exist."""


class ConflictError(ChangeopsError):
    """The write contradicts what is stored (identity clash, stale version)."""


class MissingDependency(ChangeopsError):
    """A Python library the chosen feature needs is not installed."""


class Refused(ChangeopsError):
    """The policy does not let this identity do this (separation of duties); ``details["refusals"]``
    lists every rule that refused, each ``{rule, reason}``."""


class LedgerCorrupted(BackendUnavailable):
    """The system of record's storage is damaged (a file with random bytes inside, an unreadable page).

    A kind of ``BackendUnavailable``: whatever cannot be written now is kept (the recorder spools it), but
    retrying cannot help until a person restores the ledger, so the message says what to do.
    """
