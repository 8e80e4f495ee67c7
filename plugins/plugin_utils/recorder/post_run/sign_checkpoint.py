# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post-run hook: sign a checkpoint of the ledger's head after every recorded run and feed the witnesses.

Named to run after the other hooks (they are imported in name order), so the checkpoint covers the
change requests they closed. Options come from the doc fragment ``changeops.itsm.recorder_checkpoint``.
A checkpoint that cannot be signed (an unreadable key) is a warning and the witnesses are still fed
what the ledger holds; a witness that fails is a warning and gets the checkpoint next time. Nothing
here fails the playbook, and the run's final step (``flush_timeout``) bounds how long it can take.
Global, not per run: a run that replays another's spooled end checkpoints at its own end.
"""

from __future__ import annotations

import os

from ansible_collections.changeops.itsm.plugins.module_utils import checkpoints
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.operation import current_actor
from ansible_collections.changeops.itsm.plugins.module_utils.witnesses import feed_witnesses
from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.hooks import register_post_run_hook

PREFIX = "changeops.itsm.change_recorder: "


def _truthy(value, default=True):
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def checkpoint_settings(options):
    """The checkpoint and witness settings of the recorder's ``options`` (with their ``_origins``)."""
    # Ansible resolved these from the environment and ansible.cfg already; unset ones take their defaults.
    # It leaves a relative witness_file (a string option: none turns it off) as written: from ansible.cfg, it is
    # relative to that file's folder, as ledger_verify reads it
    origins = {name: origin for name, origin in (options.get("_origins") or {}).items()
               if isinstance(origin, str) and os.path.isfile(origin)}
    return checkpoints.resolve_settings({name: options.get(name) for name in checkpoints.CHECKPOINT_OPTIONS},
                                        origins=origins)


@register_post_run_hook
def checkpoint_after_run(sor, run_id, options, display):
    if not _truthy(options.get("checkpoint_after_run")):
        return
    settings = checkpoint_settings(options)
    try:
        checkpoints.make_checkpoint(sor, settings, current_actor())
    except ChangeopsError as exc:
        display.warning("%sno checkpoint of the ledger after run %s: %s" % (PREFIX, run_id, exc.message))
    feed_witnesses(sor, settings, warn=lambda message: display.warning(PREFIX + message))
