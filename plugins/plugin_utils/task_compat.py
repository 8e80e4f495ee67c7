# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a task object holds, across the supported ansible-core lines (controller only)."""

from __future__ import annotations


def registered_names(task_or_register):
    """The variable names a task's ``register`` sets.

    ansible-core 2.19 keeps the name as written; 2.20 and later turn it into a projection, a mapping
    of names to the expressions they hold. Takes a task or its ``register`` value.
    """
    register = getattr(task_or_register, "register", task_or_register)
    if not register:
        return []
    if isinstance(register, dict):
        return [str(name) for name in register]
    return [str(register)]
