# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side machinery of the ``changeops.itsm.change_recorder`` callback.

PRIVATE to the collection: the callback plugin file only translates Ansible
events into small, already-redacted dicts (``summary``, ``vault``); the
``writer`` thread owns every piece of I/O (system of record, ``spool``, git,
``processes``) and runs the post-run ``hooks``.
"""
