# -*- coding: utf-8 -*-
"""The AWX/AAP job metadata the recorder keeps as a run's origin, and what it never keeps."""

from __future__ import annotations

from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.runinfo import awx_origin, is_awx_metadata

# what AWX 24 passes to a job launched by hand from a job template (awx_meta_vars), both spellings
AWX_EXTRA_VARS = {}
for _prefix in ("awx_", "tower_"):
    AWX_EXTRA_VARS.update({
        _prefix + "job_id": 4711,
        _prefix + "job_launch_type": "manual",
        _prefix + "job_template_id": 12,
        _prefix + "job_template_name": "Patch web servers",
        _prefix + "user_id": 3,
        _prefix + "user_name": "alice",
        _prefix + "user_email": "alice@example.org",
        _prefix + "user_first_name": "Alice",
        _prefix + "user_last_name": "Liddell",
        _prefix + "inventory_id": 2,
        _prefix + "inventory_name": "Production",
        _prefix + "project_revision": "0123456789abcdef0123456789abcdef01234567",
        _prefix + "project_scm_branch": "main",
    })
AWX_ENVIRONMENT = {"JOB_ID": "4711", "INVENTORY_ID": "2", "AWX_HOST": "https://awx.example.org/",
                   "PROJECT_REVISION": "0123456789abcdef0123456789abcdef01234567"}


def test_a_job_launched_from_a_template_is_the_origin():
    assert awx_origin(AWX_EXTRA_VARS, AWX_ENVIRONMENT) == {
        "platform": "awx",
        "url": "https://awx.example.org",
        "job_id": 4711,
        "launch_type": "manual",
        "job_template_id": 12,
        "job_template_name": "Patch web servers",
        "launched_by_id": 3,
        "launched_by": "alice",
        "inventory_id": 2,
        "inventory_name": "Production",
        "project_revision": "0123456789abcdef0123456789abcdef01234567",
        "project_scm_branch": "main",
    }


def test_outside_awx_there_is_no_origin():
    assert awx_origin({}, {}) is None
    assert awx_origin({"job_id": 3, "user_name": "bob"}, {"JOB_ID": "17", "HOME": "/root"}) is None


def test_older_controllers_tower_names_and_the_environment_alone():
    tower = {"tower_job_id": 9, "tower_user_name": "bob", "tower_job_template_name": "Deploy"}
    assert awx_origin(tower, {}) == {"platform": "awx", "job_id": 9, "job_template_name": "Deploy",
                                     "launched_by": "bob"}
    assert awx_origin({}, {"AWX_HOST": "https://awx.example.org", "JOB_ID": "17"}) == {
        "platform": "awx", "url": "https://awx.example.org", "job_id": 17}


def test_no_secret_and_no_personal_detail_beyond_the_user_name_is_kept():
    extra_vars = dict(AWX_EXTRA_VARS, awx_token="s3cr3t-token", tower_password="hunter2-hunter2",
                      awx_job_template_name={"nested": "not a scalar"})
    environment = dict(AWX_ENVIRONMENT, AWX_HOST="https://admin:pa55word@awx.example.org:8443/ctl/?token=t0ken",
                       REST_API_TOKEN="rest-token-value", CONTROLLER_PASSWORD="controller-secret",
                       TOWER_OAUTH_TOKEN="oauth-token-value")
    origin = awx_origin(extra_vars, environment)
    text = repr(origin)
    for secret in ("s3cr3t-token", "hunter2", "pa55word", "admin", "t0ken", "rest-token-value",
                   "controller-secret", "oauth-token-value", "alice@example.org", "Liddell"):
        assert secret not in text
    assert origin["url"] == "https://awx.example.org:8443/ctl"
    # a value that is no scalar is never recorded: the tower_ spelling of the same field stands in
    assert origin["job_template_name"] == "Patch web servers"


def test_only_awx_metadata_names_are_exempt_from_the_extra_var_secrets():
    assert is_awx_metadata("awx_job_template_name") and is_awx_metadata("tower_user_name")
    for name in ("awx_token", "tower_password", "awx_user_email", "job_id", "awx_", "my_awx_job_id"):
        assert not is_awx_metadata(name), name
