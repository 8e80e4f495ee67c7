# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side logic of the hardening role: plan, gather, evaluate, enforce, evidence, exports, scanner.

The role's tasks only gather raw observations from the target (command output, stat lines, package facts)
and change what this package plans; every decision - which controls run, what a waiver means, whether an
observation passes, what enforce writes, what the score is - is made here, in plain Python, so it is the
same in audit and enforce mode, testable without a target, and never templated twice.

    catalogue   the catalogue, waivers and the plan (selection, toggles, who may change what)
    observe     what the gather step reads, and parsing its output
    checks      one checker per check type
    results     per-control results and the summary (build gate)
    enforce     what enforce writes, runs, installs and restarts
    evidence    the evidence document (docs/evidence.schema.json) and JUnit
    oscal       the OSCAL assessment-results export
    scanner     agreement with OpenSCAP / SCAP Security Guide results
"""

from __future__ import annotations

from ._common import (SEVERITIES, STATUSES, WAIVER_FIELDS, HardeningError, openssh_version, rule_variable,
                      version_tuple)
from .catalogue import CHECK_TYPES, managed, plan, select_crypto, validate_catalogue, validate_waivers
from .checks import DISABLED_INSTALL
from .enforce import (KEPT_HEADER, MODPROBE_FILE, OWN_FILE_HEADER, SITE_HEADER, SSHD_BLOCK_MARKER, SSHD_DROPIN,
                      SSHD_INCLUDE_SINCE, SSHD_MAIN, SSHD_SUPERSEDED, SYSCTL_FILE, enforce_plan, file_mode_fixes,
                      find_argv, line_edits, managed_files, owned_files, packages, service_fixes, sshd_reads_dropin_first,
                      sshd_settings, sshd_site_options, sysctl_live_fixes, sysctl_settings)
from .evidence import EVIDENCE_SCHEMA, evidence, junit
from .observe import (MODPROBE_GLOBS, SYSCTL_DIRS, gather_spec, normalise_observations, parse_grep_h,
                      parse_sshd_t, parse_sysctl_live, persisted_sysctls)
from .oscal import assessment_results
from .results import evaluate, summarise

__all__ = [
    "CHECK_TYPES", "DISABLED_INSTALL", "EVIDENCE_SCHEMA", "KEPT_HEADER", "MODPROBE_FILE", "MODPROBE_GLOBS",
    "OWN_FILE_HEADER", "SEVERITIES", "SITE_HEADER", "SSHD_BLOCK_MARKER", "SSHD_DROPIN", "SSHD_INCLUDE_SINCE",
    "SSHD_MAIN", "SSHD_SUPERSEDED", "STATUSES", "SYSCTL_DIRS", "SYSCTL_FILE", "WAIVER_FIELDS", "HardeningError",
    "assessment_results", "enforce_plan", "evaluate", "evidence", "file_mode_fixes", "find_argv", "gather_spec",
    "junit", "line_edits", "managed", "managed_files", "normalise_observations", "openssh_version", "owned_files",
    "packages", "parse_grep_h", "parse_sshd_t", "parse_sysctl_live", "persisted_sysctls", "plan", "rule_variable",
    "select_crypto", "service_fixes", "sshd_reads_dropin_first", "sshd_settings", "sshd_site_options",
    "summarise", "sysctl_live_fixes", "sysctl_settings", "validate_catalogue", "validate_waivers", "version_tuple",
]
