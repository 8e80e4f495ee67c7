# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Names and small helpers every part of the hardening logic shares."""

from __future__ import annotations

import datetime
import re

SEVERITIES = ["low", "medium", "high", "critical"]
STATUSES = ["pass", "fail", "fixed", "waived", "not_applicable", "error"]
WAIVER_FIELDS = ("id", "justification", "approver", "ticket", "expires")


class HardeningError(Exception):
    """A problem a person must fix in their inventory (bad waiver, unknown toggle, bad catalogue)."""


def rule_variable(control_id):
    """``SSH-01`` -> ``hardening_rule_ssh_01``."""
    return "hardening_rule_" + re.sub(r"[^a-z0-9]+", "_", control_id.lower()).strip("_")


def version_tuple(text):
    match = re.search(r"(\d+)\.(\d+)", str(text or ""))
    return (int(match.group(1)), int(match.group(2))) if match else None


def openssh_version(ssh_v_output):
    """``OpenSSH_9.2p1 Debian-2, OpenSSL ...`` -> ``9.2`` (None when not OpenSSH)."""
    match = re.search(r"OpenSSH_(\d+\.\d+)", str(ssh_v_output or ""))
    return match.group(1) if match else None


def norm(value):
    """One line, single spaces: how values are compared and shown."""
    return " ".join(str(value).split())


def as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_date(text):
    return datetime.datetime.strptime(str(text), "%Y-%m-%d").date()


def truthy(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y")


def octal(value):
    """``"0640"``, ``"640"``, ``0o640`` or ``416`` -> 416; the modes of the catalogue are octal strings."""
    if isinstance(value, int):
        return value
    return int(str(value).strip(), 8)
