# -*- coding: utf-8 -*-
"""Real third-party collections for tests, from the PyPI package ``ansible`` (Ansible Galaxy is not reachable).

The ``ansible`` wheel (~54 MB) holds every collection of the community package; tests need a few.
:func:`third_party_collections` downloads the wheel once with pip (into pip's cache and a download
folder under ``.build/``), extracts only the collections asked for into
``.build/third_party/ansible-<version>/ansible_collections/``, and returns that directory for
``ANSIBLE_COLLECTIONS_PATH``. Later calls find the extracted tree and do nothing.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import zipfile

from support.project import REPO_ROOT

#: the newest ``ansible`` release that installs on Python 3.11 (see /work/shared/reference/test-infra.md)
ANSIBLE_VERSION = "12.3.0"
CACHE = os.path.join(REPO_ROOT, ".build", "third_party")


def third_party_collections(names, version=ANSIBLE_VERSION):
    """A collections path holding ``names`` (``["community.general", ...]``) as the ``ansible`` wheel ships them."""
    root = os.path.join(CACHE, "ansible-%s" % version)
    wanted = [name.replace(".", "/") for name in names]
    missing = [name for name in wanted if not os.path.isfile(os.path.join(root, "ansible_collections", name,
                                                                          "MANIFEST.json"))]
    if not missing:
        return root
    download = os.path.join(CACHE, "download")
    wheels = glob.glob(os.path.join(download, "ansible-%s-*.whl" % version))
    if not wheels:
        os.makedirs(download, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--disable-pip-version-check", "ansible==%s" % version, "-d", download],
                       check=True, stdin=subprocess.DEVNULL)
        wheels = glob.glob(os.path.join(download, "ansible-%s-*.whl" % version))
    staging = root + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        prefixes = tuple("ansible_collections/%s/" % name for name in missing)
        members = [member for member in wheel.namelist() if member.startswith(prefixes)]
        if not members:
            raise AssertionError("the ansible %s wheel holds none of %s" % (version, ", ".join(missing)))
        wheel.extractall(staging, members)
    # move each collection in whole: a killed extraction leaves no half collection behind
    for name in missing:
        target = os.path.join(root, "ansible_collections", name)
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(os.path.join(staging, "ansible_collections", name), target)
    shutil.rmtree(staging, ignore_errors=True)
    return root
