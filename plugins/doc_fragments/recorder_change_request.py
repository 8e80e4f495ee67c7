# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""change_recorder option of the change-request post-run hook (plugin_utils/recorder/post_run/close_change_requests.py)."""

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  close_change_requests:
    description:
      - After a run, close the change requests (standard, normal or emergency) that authorised it through
        P(changeops.itsm.change_gate#module), walking each forward (V(scheduled) -> V(implement) ->
        V(review) -> V(closed)) with close code V(successful) when the run succeeded and
        V(unsuccessful) otherwise, and the run's start and end as the actual start and end.
      - Check-mode runs and requests not in V(scheduled), V(implement) or V(review) are left alone.
      - When the ledger was unavailable at the end of the run, the run's entries wait in the spool and
        the next run that replays them closes the change request, with this run's outcome, start and end.
        A run that was killed before it could record its end is marked V(interrupted) by the next run;
        its change request is left open for a person to decide on.
    type: bool
    default: false
    env:
      - name: CHANGEOPS_CLOSE_CHANGE_REQUESTS
    ini:
      - section: callback_change_recorder
        key: close_change_requests
"""
