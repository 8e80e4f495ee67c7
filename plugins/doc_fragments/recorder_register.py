# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""change_recorder options that refresh the change register after every recorded run."""

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  register_path:
    description:
      - When set, regenerate the change register (the static HTML page that
        M(changeops.itsm.change_register) writes) at this path on the controller after every
        recorded run, so the published register is never stale.
      - The file is only rewritten when its content changes, and replaced atomically; a failure
        to write it is a warning, never a failed playbook.
    type: path
    env:
      - name: CHANGEOPS_REGISTER_PATH
    ini:
      - section: callback_change_recorder
        key: register_path
  register_json_path:
    description: Also refresh the register's JSON data at this path (see O(register_path)).
    type: path
    env:
      - name: CHANGEOPS_REGISTER_JSON_PATH
    ini:
      - section: callback_change_recorder
        key: register_json_path
  register_title:
    description: Title of the refreshed register.
    type: str
    default: Change register
    env:
      - name: CHANGEOPS_REGISTER_TITLE
    ini:
      - section: callback_change_recorder
        key: register_title
  register_verify_chain:
    description:
      - Verify the ledger's hash chain on every refresh and show the result in the register.
        Turn off on very large ledgers if the refresh after each run takes too long.
    type: bool
    default: true
    env:
      - name: CHANGEOPS_REGISTER_VERIFY_CHAIN
    ini:
      - section: callback_change_recorder
        key: register_verify_chain
  register_check_projections:
    description:
      - With O(register_verify_chain), also compare the records the register shows with a replay of the
        ledger on every refresh (see the C(check_projections) option of M(changeops.itsm.change_register)).
      - Off by default for the refresh after each run, because the replay about triples the refresh
        time (about 10 s at 10,000 changes) and the refresh has to fit in O(register_refresh_timeout).
        The refreshed register then says that the records shown were not compared with the ledger;
        the C(changeops.itsm.change_register) playbook and module compare them by default, and
        M(changeops.itsm.ledger_verify) does before reviews.
    type: bool
    default: false
    env:
      - name: CHANGEOPS_REGISTER_CHECK_PROJECTIONS
    ini:
      - section: callback_change_recorder
        key: register_check_projections
  register_refresh_timeout:
    description:
      - Seconds the refresh after a run may take. When they are spent the refresh is given up with a
        warning naming the register, the published file is left as it was (never half written), and the
        next run or the C(changeops.itsm.change_register) playbook brings it up to date.
      - The refresh runs inside the run's final step, which O(flush_timeout) bounds, so at most three
        quarters of O(flush_timeout) are used whatever this says; raise both for a very large ledger,
        or turn off O(register_check_projections) or O(register_verify_chain).
    type: float
    default: 30.0
    env:
      - name: CHANGEOPS_REGISTER_REFRESH_TIMEOUT
    ini:
      - section: callback_change_recorder
        key: register_refresh_timeout
"""
