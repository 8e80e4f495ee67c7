# -*- coding: utf-8 -*-
"""Loaded by every Python process of a test's playbook run whose PYTHONPATH starts with this directory
(``support.scratch_capture.capture_env``), modules included: before ``shutil.rmtree`` removes a projection
check's scratch directory (``system_of_record/projection_check.ScratchDatabase``) it copies the directory into
``$SCRATCH_CAPTURE_DIR``, so a test can read every byte the check wrote to the temporary directory after the
module has cleaned up."""

import os
import shutil
import time

_CAPTURE = os.environ.get("SCRATCH_CAPTURE_DIR")
_PREFIX = "changeops-projection-check-"

if _CAPTURE:
    _rmtree = shutil.rmtree

    def _capturing_rmtree(path, *args, **kwargs):
        name = os.path.basename(os.fspath(path).rstrip(os.sep))
        if name.startswith(_PREFIX) and os.path.isdir(path):
            # named by the time first, so a sorted listing is in the order the checks ran
            shutil.copytree(path, os.path.join(_CAPTURE, "%020d-%d-%s" % (time.time_ns(), os.getpid(), name)))
        return _rmtree(path, *args, **kwargs)

    shutil.rmtree = _capturing_rmtree
