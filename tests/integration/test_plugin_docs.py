# -*- coding: utf-8 -*-
"""Every plugin of the collection is documented where users look: ``ansible-doc``.

``ansible-doc -t filter -l`` lists a filter without documentation as UNDOCUMENTED; the release
readiness filters were. The listing is read the way users read it, from the installed collection
tree, for every plugin type the collection ships.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from support.project import VENV_BIN, ensure_collection_tree

pytestmark = [pytest.mark.integration]

#: plugin types the collection has a directory for, whose listing ansible-doc can produce
PLUGIN_TYPES = ("filter", "module", "callback", "inventory")


def ansible_doc(*args):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "CHANGEOPS_"))}
    env.update(ANSIBLE_COLLECTIONS_PATH=ensure_collection_tree(), ANSIBLE_NOCOLOR="1")
    completed = subprocess.run([os.path.join(VENV_BIN, "ansible-doc")] + list(args), env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr
    return completed


@pytest.mark.parametrize("plugin_type", PLUGIN_TYPES)
def test_every_plugin_has_documentation(plugin_type):
    listing = json.loads(ansible_doc("-t", plugin_type, "-l", "-j", "changeops.itsm").stdout)
    assert listing, "ansible-doc lists no %s plugin of changeops.itsm" % plugin_type
    undocumented = sorted(name for name, description in listing.items()
                          if not description or description == "UNDOCUMENTED")
    assert undocumented == [], "%s plugins without documentation: %s" % (plugin_type, undocumented)
    # and every one's full documentation parses (ansible-doc fails on the first that does not)
    docs = json.loads(ansible_doc("-t", plugin_type, "-j", *sorted(listing)).stdout)
    assert sorted(docs) == sorted(listing)


def test_release_readiness_filters_are_documented_in_full():
    listing = json.loads(ansible_doc("-t", "filter", "-l", "-j", "changeops.itsm").stdout)
    names = sorted(name for name in listing if name.startswith("changeops.itsm.release_readiness_"))
    assert len(names) == 9, names
    docs = json.loads(ansible_doc("-t", "filter", "-j", *names).stdout)
    for name in names:
        doc = docs[name]["doc"]
        assert doc["short_description"] and doc["options"]["_input"]["description"], name
        assert docs[name]["examples"] and docs[name]["return"]["_value"]["description"], name
