# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ledger archives: retention without losing the proof (docs/operations.md, "Retention and archives").

One entry point per use: :func:`archive_ledger` (the ``ledger_archive`` module's operation, in
``archiving.py``) and :func:`verify_archives` (what ``ledger_verify`` runs for its ``archives`` option,
in ``verify.py``). ``archive_file.py`` is the file format.
"""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.module_utils.archives.archiving import (  # noqa: F401
    LEDGER_ARCHIVE_SPEC,
    archive_ledger,
)
from ansible_collections.changeops.itsm.plugins.module_utils.archives.verify import (  # noqa: F401
    archive_paths,
    verify_archive,
    verify_archives,
)
