# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters used by the changeops.itsm.hardening role (logic in plugin_utils/hardening/)."""

from __future__ import annotations

import functools

from ansible.errors import AnsibleFilterError

from ansible_collections.changeops.itsm.plugins.plugin_utils import hardening


def _friendly(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except hardening.HardeningError as exc:
            raise AnsibleFilterError("changeops.itsm.hardening: %s" % exc)
    return wrapper


class FilterModule(object):
    def filters(self):
        return {
            "hardening_plan": _friendly(hardening.plan),
            "hardening_gather": _friendly(hardening.gather_spec),
            "hardening_evaluate": _friendly(hardening.evaluate),
            "hardening_summary": _friendly(hardening.summarise),
            "hardening_enforce_plan": _friendly(hardening.enforce_plan),
            "hardening_evidence": _friendly(hardening.evidence),
            "hardening_junit": _friendly(hardening.junit),
            "hardening_oscal": _friendly(hardening.assessment_results),
            "hardening_file_mode_fixes": _friendly(hardening.file_mode_fixes),
            "hardening_sshd_settings": _friendly(hardening.sshd_settings),
            "hardening_owned_files": _friendly(hardening.owned_files),
            "hardening_openssh_version": _friendly(hardening.openssh_version),
            "hardening_rule_variable": _friendly(hardening.rule_variable),
            "hardening_find_argv": _friendly(hardening.find_argv),
            "hardening_find_commands": _friendly(hardening.enforce.find_commands),
        }
