# -*- coding: utf-8 -*-
"""Adversarial: planted ServiceNow credentials never reach an error message, whatever fails and however.

Each case plants a password, a client secret, a refresh token, an API key or an access token, makes the
request fail in a way that tends to quote credentials (a refused login, a refused token, an instance that
echoes the request back, TLS, a dead host...) and asserts that no form of any planted value (plain,
URL-encoded, the base64 of Basic's ``user:password``) appears in the message, the error's ``repr`` or the
module result built from it. The outbox's stored last error is checked the same way.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.parse

import pytest


from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.client import Client
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.outbox import Outbox
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.table import Query, TableAPI

PASSWORD = "PLANTED-pw-5e1f9c-correct horse"
CLIENT_SECRET = "PLANTED-cs-83b2aa/+="
REFRESH_TOKEN = "PLANTED-rt-77c1d0"
API_KEY = "PLANTED-ak-44e9f1"
ACCESS_TOKEN = "PLANTED-at-12ab34"
PLANTED = [PASSWORD, CLIENT_SECRET, REFRESH_TOKEN, API_KEY, ACCESS_TOKEN]


def forms(value):
    yield value
    yield urllib.parse.quote(value, safe="")
    yield urllib.parse.quote_plus(value)
    for user in ("planted.user", "changeops.integration"):
        yield base64.b64encode(("%s:%s" % (user, value)).encode()).decode()


def assert_clean(text, extra=()):
    for value in PLANTED + list(extra):
        for form in forms(value):
            assert form not in text, "a planted secret (%s...) leaked into: %s" % (value[:12], text)


def failure_text(call):
    with pytest.raises(ChangeopsError) as caught:
        call()
    exc = caught.value
    return "\n".join([exc.message, str(exc), repr(exc), json.dumps(exc.to_result(), default=str)])


def read(client):
    return TableAPI(client).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])


@pytest.fixture
def planted(sn):
    sn.control.users({"planted.user": {"password": PASSWORD, "roles": ["itil"]},
                      "planted.mfa": {"password": PASSWORD, "roles": ["itil"], "mfa": True}})
    return sn


CASES = {
    # a wrong password for a real user: 401
    "basic refused": dict(username="changeops.integration", password=PASSWORD),
    # the right password, an account under multi-factor authentication: 401 with X-MFA_TOKEN
    "mfa": dict(username="planted.mfa", password=PASSWORD),
    # OAuth: the token endpoint refuses the client secret, then the refresh token
    "oauth secret refused": dict(username="planted.user", password=PASSWORD, client_id="changeops-client",
                                 client_secret=CLIENT_SECRET),
    "oauth refresh refused": dict(username=None, password=None, client_id="changeops-client",
                                  client_secret=CLIENT_SECRET, grant_type="refresh_token",
                                  refresh_token=REFRESH_TOKEN),
    "api key refused": dict(username=None, password=None, api_key=API_KEY),
    "access token refused": dict(username=None, password=None, access_token=ACCESS_TOKEN),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_credentials(planted, case):
    assert_clean(failure_text(lambda: read(Client(planted.settings(**CASES[case])))))


@pytest.mark.parametrize("case", ["basic", "api key", "oauth"])
def test_an_instance_that_echoes_the_request_back(planted, case):
    credentials = {"basic": dict(username="planted.user", password=PASSWORD),
                   "api key": dict(username=None, password=None, api_key=API_KEY),
                   "oauth": dict(username="planted.user", password=PASSWORD, client_id="changeops-client",
                                 client_secret="client-simulator-secret")}[case]
    planted.control.api_keys({API_KEY: "planted.user"})
    planted.control.fault(kind="echo", path="/api/now/v2/table")
    client = Client(planted.settings(**credentials))
    text = failure_text(lambda: read(client))
    assert "Invalid request" in text  # the echo did come back, and was scrubbed
    issued = list(planted.simulator.tokens)  # the OAuth token the instance issued
    assert_clean(text, extra=issued)
    # an echoed POST body holding this configuration's own secret
    own = {"basic": PASSWORD, "api key": API_KEY, "oauth": PASSWORD}[case]
    planted.control.fault(kind="echo", method="POST", path="/api/now/v2/table/incident")
    assert_clean(failure_text(lambda: TableAPI(client).create("incident", {"short_description": own})),
                 extra=issued)


def test_a_dead_host_and_a_tls_failure(planted, tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    settings = planted.settings(host="http://127.0.0.1:%d" % port, username="planted.user", password=PASSWORD,
                                retries=0)
    assert_clean(failure_text(lambda: read(Client(settings))))
    settings = planted.settings(host="https://127.0.0.1:%d" % planted.simulator.port, username="planted.user",
                                password=PASSWORD, retries=0)
    assert_clean(failure_text(lambda: read(Client(settings))))


def test_the_outbox_keeps_no_secret_in_its_last_error(sor, planted):
    from test_cmdb import ci_item

    ci_item(sor, name="web01", ci_class="server")
    planted.control.fault(kind="echo", path="/api/now/identifyreconcile")
    report = Outbox(sor, planted.settings(username="planted.user", password=PASSWORD)).drain(10)
    assert report.stopped and "Invalid request" in report.stopped
    state = sor.get_sync_state(planted.settings().target_key())
    assert_clean(json.dumps(state)) and assert_clean(json.dumps(report.to_dict()))
    assert_clean(json.dumps(sor.find_sync_items(planted.settings().target_key())))
