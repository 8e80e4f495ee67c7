# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters used by the changeops.itsm.release_readiness role (logic in plugin_utils/release_readiness.py)."""

from __future__ import annotations

import functools

from ansible.errors import AnsibleFilterError

from ansible_collections.changeops.itsm.plugins.plugin_utils import release_readiness


def _friendly(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except release_readiness.ReadinessError as exc:
            raise AnsibleFilterError("changeops.itsm.release_readiness: %s" % exc)
    return wrapper


class FilterModule(object):
    def filters(self):
        return {
            "release_readiness_plan": _friendly(release_readiness.plan),
            "release_readiness_gates_to_run": _friendly(release_readiness.gates_to_run),
            "release_readiness_packages": _friendly(release_readiness.packages_to_query),
            "release_readiness_evaluate": _friendly(release_readiness.evaluate),
            "release_readiness_summary": _friendly(release_readiness.summarise),
            "release_readiness_host_evidence": _friendly(release_readiness.host_evidence),
            "release_readiness_service_evidence": _friendly(release_readiness.service_evidence),
            "release_readiness_junit": _friendly(release_readiness.junit),
            "release_readiness_report": _friendly(release_readiness.blocking_report),
        }
