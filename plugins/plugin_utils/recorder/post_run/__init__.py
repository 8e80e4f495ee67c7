# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post-run hook modules: each module here registers its hooks at import time.

See ``plugin_utils/recorder/hooks.py`` for the contract. Modules are imported
in name order by the recorder's writer thread at the end of a run.
"""
