# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the change_recorder's post-run hooks (see plugin_utils/recorder/hooks.py).

A feature that plugs a post-run hook into the recorder documents its callback
options here (with ``env:`` and ``ini:`` sources, ini section
``callback_change_recorder``); the callback includes this fragment, so the
options are resolved by Ansible and handed to the hook in ``options``.
"""

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options: {}
"""
