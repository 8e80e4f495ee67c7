# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post-run hook: regenerate the change register after each recorded run (option register_path)."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.change_register import generate_register
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.hooks import register_post_run_hook
from ansible_collections.changeops.itsm.plugins.plugin_utils.register_render import RegisterRenderer

PREFIX = "changeops.itsm.change_recorder"


def _truthy(value, default=True):
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@register_post_run_hook
def refresh_change_register(sor, run_id, options, display):
    path = options.get("register_path")
    if not path:
        return
    params = {
        "path": path,
        "json_path": options.get("register_json_path") or None,
        "title": options.get("register_title") or "Change register",
        "verify_chain": _truthy(options.get("register_verify_chain")),
        "check_projections": _truthy(options.get("register_check_projections")),
    }
    try:
        result = generate_register(sor, params, RegisterRenderer())
    except ChangeopsError as exc:
        display.warning("%s: change register not refreshed after run %s: %s" % (PREFIX, run_id, exc.message))
        return
    if result["changed"]:
        display.vv("%s: %s" % (PREFIX, result["msg"]))
