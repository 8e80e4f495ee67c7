import subprocess

import pytest

from ansible_collections.changeops.itsm.plugins.modules import zz_infra_probe


def test_import_through_collection_tree():
    assert zz_infra_probe.__name__ == "ansible_collections.changeops.itsm.plugins.modules.zz_infra_probe"


@pytest.mark.integration
def test_adhoc(tmp_path):
    out = subprocess.run(["ansible", "localhost", "-m", "changeops.itsm.zz_infra_probe", "-a", "value=hi", "-o"],
                         capture_output=True, text=True, check=True).stdout
    assert '"value": "hi"' in out, out
