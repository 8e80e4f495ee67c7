# -*- coding: utf-8 -*-
"""Capture the projection check's scratch files from a playbook run (see ``sitecustomize.py`` here)."""

from __future__ import annotations

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def capture_env(tmpdir, capture_dir):
    """Environment for ``project.run(env=...)``: the temporary directory at ``tmpdir`` (TMPDIR, which the
    scratch file's ``tempfile.mkdtemp`` honours) and every scratch directory copied into ``capture_dir`` before
    it is removed."""
    os.makedirs(tmpdir, exist_ok=True)
    os.makedirs(capture_dir, exist_ok=True)
    path = os.environ.get("PYTHONPATH")
    return {"TMPDIR": str(tmpdir), "SCRATCH_CAPTURE_DIR": str(capture_dir),
            "PYTHONPATH": HERE + (os.pathsep + path if path else "")}


def captured_scratch_dirs(capture_dir):
    """The scratch directories captured, in the order the checks that wrote them ran."""
    return sorted(os.path.join(capture_dir, name) for name in os.listdir(capture_dir))
