# -*- coding: utf-8 -*-
"""The ServiceNow client over real HTTP against the loopback simulator (no mocking of requests).

Retries, 429s, budgets, pagination, queries that cannot widen, TLS, proxies, authentication.
Waits are recorded through the client's ``sleep`` hook rather than timed, so nothing here depends
on how loaded the machine is.
"""

from __future__ import annotations

import datetime
import socket
import subprocess

import pytest

from support.servicenow import SN
from support.servicenow_sim import Control, Simulator

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.client import Client, parse_retry_after
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import (
    ServiceNowAuthError,
    ServiceNowBudgetExhausted,
    ServiceNowForbidden,
    ServiceNowRateLimited,
    ServiceNowRequestError,
    ServiceNowTLSError,
    ServiceNowUnavailable,
)
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.settings import resolve_settings
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.table import (
    Query,
    TableAPI,
    parse_encoded_query,
)


class Sleeps(object):
    def __init__(self):
        self.calls = []

    def __call__(self, seconds):
        self.calls.append(seconds)


def client_for(sn, sleep=None, **overrides):
    return Client(sn.settings(**overrides), sleep=sleep or Sleeps())


def gets(sn, path_part):
    return [entry for entry in sn.requests() if entry["method"] == "GET" and path_part in entry["path"]]


# -- pagination and queries ------------------------------------------------------------------------
def test_pages_follow_the_total_count_and_always_name_their_fields(sn):
    for number in range(25):
        sn.control.insert("cmdb_ci_linux_server", {"name": "page%02d" % number})
    sn.control.reset_log()
    api = TableAPI(client_for(sn, page_size=10))
    rows = api.list("cmdb_ci_server", Query().where("name", "STARTSWITH", "page").order_by("name"), ["name"])
    assert [row["name"] for row in rows] == ["page%02d" % number for number in range(25)]
    pages = gets(sn, "/table/cmdb_ci_server")
    assert len(pages) == 3
    assert all(page["query"]["sysparm_fields"].split(",")[:2] == ["name", "sys_id"] for page in pages)
    assert [page["query"]["sysparm_offset"] for page in pages] == ["0", "10", "20"]


def test_an_unknown_field_in_a_query_is_caught_on_the_rows_instead_of_widening_it(sn):
    for name in ("web01", "web02", "db01"):
        sn.control.insert("cmdb_ci_linux_server", {"name": name})
    api = TableAPI(client_for(sn))
    # the instance drops "nmae=web01" and returns every row: the row check refuses the answer
    with pytest.raises(ServiceNowRequestError, match="ignored part of the query"):
        api.list("cmdb_ci_server", Query().eq("nmae", "web01"), ["name"])
    assert [row["name"] for row in api.list("cmdb_ci_server", Query().eq("name", "web01"), ["name"])] == ["web01"]


def test_field_names_a_person_typed_are_checked_against_the_dictionary(sn):
    api = TableAPI(client_for(sn))
    with pytest.raises(ValidationError, match="'nmae' is not a field of cmdb_ci_server; did you mean 'name'"):
        api.check_fields("cmdb_ci_server", parse_encoded_query("nmae=web01^os=Linux"), "filter")
    with pytest.raises(ValidationError, match="'support_group.nmae' is not a field of sys_user_group"):
        api.check_fields("cmdb_ci_server", ["support_group.nmae"], "filter")
    api.check_fields("cmdb_ci_linux_server", parse_encoded_query("nameSTARTSWITHweb^ORos=Linux^support_group.name="
                                                                 "Linux Ops^ORDERBYDESCname"), "filter")


def test_a_read_must_name_its_fields(sn):
    with pytest.raises(ValidationError, match="sysparm_fields"):
        TableAPI(client_for(sn)).list("cmdb_ci", Query().eq("name", "x"), [])


def test_v1_answers_404_for_no_rows_and_v2_an_empty_list(sn):
    client = client_for(sn)
    empty = {"sysparm_query": "name=nothing-like-this", "sysparm_fields": "name"}
    v1 = client.request("GET", client.api("v1", "table", "cmdb_ci"), params=empty, allow_404=True)
    v2 = client.request("GET", client.api("v2", "table", "cmdb_ci"), params=empty)
    assert (v1.status, v1.body["error"]["message"]) == (404, "No Record found")
    assert (v2.status, v2.result) == (200, [])
    assert TableAPI(client).list("cmdb_ci", Query().eq("name", "nothing-like-this"), ["name"]) == []


def test_a_page_cancelled_by_the_transaction_quota_is_asked_for_again_smaller(sn):
    for number in range(30):
        sn.control.insert("cmdb_ci_linux_server", {"name": "q%02d" % number})
    sn.control.fault(kind="transaction_cancelled", method="GET", path="/api/now/v2/table/cmdb_ci", times=1)
    rows = TableAPI(client_for(sn, page_size=20)).list("cmdb_ci", Query().where("name", "STARTSWITH", "q"), ["name"])
    assert len(rows) == 30
    limits = [entry["query"]["sysparm_limit"] for entry in gets(sn, "/table/cmdb_ci")]
    assert limits[0] == "20" and limits[1] == "10"


def test_values_with_carets_are_escaped():
    assert Query().eq("name", "a^b").encode() == "name=a^^b"
    with pytest.raises(ValidationError, match="comma"):
        Query().isin("name", ["a,b"])
    with pytest.raises(ValidationError, match="not a ServiceNow field"):
        Query().eq("name=x^ORname", "y")


# -- retries, 429, budgets -------------------------------------------------------------------------------
def test_503_is_retried_with_backoff_for_a_read_but_a_create_is_not_repeated(sn):
    sleeps = Sleeps()
    client = client_for(sn, sleep=sleeps)
    sn.control.fault(kind="503", method="GET", path="/api/now/v2/table/cmdb_rel_type", times=2)
    assert TableAPI(client).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert client.retried == 2 and len(sleeps.calls) == 2 and sleeps.calls[1] > sleeps.calls[0] * 0.9
    sn.control.fault(kind="503", method="POST", path="/api/now/v2/table/incident", times=1)
    before = len(sn.requests())
    with pytest.raises(ServiceNowUnavailable, match="503"):
        TableAPI(client).create("incident", {"short_description": "once"})
    assert len([e for e in sn.requests(before) if e["method"] == "POST"]) == 1


def test_a_refused_connection_is_retried_then_named(sn):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    sleeps = Sleeps()
    client = Client(sn.settings(host="http://127.0.0.1:%d" % port, retries=3), sleep=sleeps)
    with pytest.raises(ServiceNowUnavailable, match="cannot connect after 4 attempts") as caught:
        client.request("POST", client.api("identifyreconcile"), json_body={"items": []}, idempotent=False)
    assert client.requests_made == 4 and len(sleeps.calls) == 3
    assert caught.value.kind == "unreachable"


def test_429_waits_for_retry_after(sn):
    sleeps = Sleeps()
    client = client_for(sn, sleep=sleeps, rate_limit_wait=10)
    sn.control.fault(kind="429", retry_after=3, path="/api/now/v2/table", times=1)
    assert TableAPI(client).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert sleeps.calls == [3.0] and client.rate_limit_waited == 3.0


def test_429_waits_for_x_ratelimit_reset(sn):
    sleeps = Sleeps()
    client = client_for(sn, sleep=sleeps, rate_limit_wait=10)
    sn.control.fault(kind="429", reset_in=4, path="/api/now/v2/table", times=1)
    assert TableAPI(client).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert len(sleeps.calls) == 1 and 2.0 <= sleeps.calls[0] <= 4.0


def test_429_without_headers_cools_down_within_the_budget_and_fails_beyond_it(sn):
    sleeps = Sleeps()
    client = client_for(sn, sleep=sleeps, rate_limit_wait=10, rate_limit_cooldown=7)
    sn.control.fault(kind="429", path="/api/now/v2/table", times=1)
    assert TableAPI(client).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert sleeps.calls == [7.0]
    sn.control.fault(kind="429", path="/api/now/v2/table", times=1)
    with pytest.raises(ServiceNowRateLimited, match="rate_limit_cooldown: neither Retry-After nor "
                                                    "X-RateLimit-Reset") as caught:
        TableAPI(client).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert sleeps.calls == [7.0]  # 7 more would pass the 10 s budget: no second wait
    assert caught.value.retry_at is not None


def test_a_long_retry_after_is_not_waited_for(sn):
    sleeps = Sleeps()
    client = client_for(sn, sleep=sleeps, rate_limit_wait=30)
    sn.control.fault(kind="429", retry_after=3600, path="/api/now/v2/table", times=1)
    with pytest.raises(ServiceNowRateLimited, match="waiting 3600 s as asked would exceed"):
        TableAPI(client).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert sleeps.calls == []


def test_the_simulated_rate_limit_rule_counts_per_user(sn):
    sn.control.call("POST", "rate_limit", {"limit": 2})
    client = client_for(sn, rate_limit_wait=0)
    api = TableAPI(client)
    for _attempt in range(2):
        api.list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    with pytest.raises(ServiceNowRateLimited, match="Rate limit of 2 requests per hour"):
        api.list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])


def test_the_request_budget_stops_a_retry_storm(sn):
    client = client_for(sn, max_requests=3, retries=10)
    sn.control.fault(kind="503", path="/api/now/v2/table")
    with pytest.raises(ServiceNowBudgetExhausted, match="request budget spent \\(3 requests"):
        TableAPI(client).list("cmdb_rel_type", Query().eq("name", "x"), ["name"])


def test_a_deadline_stops_sleeping_and_requests(sn):
    clock = [0.0]
    client = Client(sn.settings(rate_limit_wait=100), sleep=Sleeps(), clock=lambda: clock[0], deadline=5.0)
    sn.control.fault(kind="429", retry_after=10, path="/api/now/v2/table", times=1)
    with pytest.raises(ServiceNowRateLimited, match="deadline"):
        TableAPI(client).list("cmdb_rel_type", Query().eq("name", "x"), ["name"])
    clock[0] = 6.0
    with pytest.raises(ServiceNowBudgetExhausted, match="deadline passed"):
        TableAPI(client).list("cmdb_rel_type", Query().eq("name", "x"), ["name"])


def test_parse_retry_after_forms():
    now = 1_000_000.0
    assert parse_retry_after({"Retry-After": "12"}, now) == 12.0
    date = datetime.datetime.fromtimestamp(now + 30, datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 29 <= parse_retry_after({"Retry-After": date}, now) <= 31
    assert parse_retry_after({"X-RateLimit-Reset": str(int(now + 40))}, now) == 40.0
    assert parse_retry_after({}, now) is None


def test_a_slow_answer_times_out(sn):
    sn.control.fault(kind="slow", seconds=3, path="/api/now/v2/table", times=1)
    client = client_for(sn, timeout=0.5, retries=0)
    with pytest.raises(ServiceNowUnavailable, match="timed out") as caught:
        TableAPI(client).list("cmdb_rel_type", Query().eq("name", "x"), ["name"])
    assert caught.value.kind == "timeout"


def test_a_dropped_connection_is_retried(sn):
    sn.control.fault(kind="drop", path="/api/now/v2/table", times=1)
    client = client_for(sn)
    assert TableAPI(client).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert client.retried == 1


# -- errors --------------------------------------------------------------------------------------------
def test_403_business_rule_and_401_mfa_are_named(sn):
    client = client_for(sn)
    sn.control.fault(kind="403_business_rule", method="PATCH", times=1)
    incident = TableAPI(client).create("incident", {"short_description": "x"})
    with pytest.raises(ServiceNowForbidden, match="Data Policy Exception"):
        TableAPI(client).update("incident", incident["sys_id"], {"short_description": "y"})
    mfa = Client(sn.settings(username="mfa.user", password="mfa-simulator-password"), sleep=Sleeps())
    with pytest.raises(ServiceNowAuthError, match="multi-factor authentication of basic authentication as mfa.user "
                                                  "\\(X-MFA_TOKEN: invalid\\)") as caught:
        TableAPI(mfa).list("cmdb_rel_type", Query().eq("name", "x"), ["name"])
    assert caught.value.kind == "mfa" and "mfa-simulator-password" not in caught.value.message


def test_incomplete_settings_say_what_is_missing():
    with pytest.raises(ConfigurationError, match="no host: set instance.host, SN_HOST"):
        resolve_settings({}, environ={}).check_complete()
    with pytest.raises(ConfigurationError, match="no credentials"):
        resolve_settings({"host": "x.service-now.com"}, environ={}).check_complete()
    with pytest.raises(ConfigurationError, match="OAuth needs both client_id and client_secret"):
        resolve_settings({"host": "x", "client_id": "a"}, environ={}).check_complete()
    with pytest.raises(ConfigurationError, match="grant_type refresh_token needs refresh_token"):
        resolve_settings({"host": "x", "client_id": "a", "client_secret": "b", "grant_type": "refresh_token"},
                         environ={}).check_complete()
    settings = resolve_settings({"host": "x.service-now.com", "api_key": "k" * 20}, environ={}).check_complete()
    assert settings.base_url == "https://x.service-now.com" and settings.auth_method() == "api_key"


def test_settings_precedence_and_servicenow_itsm_names():
    environ = {"SN_HOST": "https://env.example", "SN_USERNAME": "env-user", "SN_PASSWORD": "env-pass",
               "SN_TIMEOUT": "7", "SN_SECRET_ID": "legacy-secret", "CHANGEOPS_SERVICENOW": "yes"}
    ini = {"host": "https://ini.example", "username": "ini-user", "batch_size": "50", "timeout": "3"}
    settings = resolve_settings({"username": "arg-user"}, environ=environ, ini=ini)
    assert settings["host"] == "https://env.example" and settings["username"] == "arg-user"
    assert settings["timeout"] == 7.0 and settings["batch_size"] == 50 and settings["enabled"] is True
    assert settings["client_secret"] == "legacy-secret" and settings.explicit
    assert resolve_settings(None, environ={}, ini={})["rate_limit_wait"] == 30.0
    with pytest.raises(ConfigurationError, match="environment variable SN_TIMEOUT: ServiceNow option timeout must "
                                                 "be a number, got 'soon'"):
        resolve_settings(None, environ={"SN_TIMEOUT": "soon"})
    with pytest.raises(ConfigurationError, match="grant_type must be one of password, refresh_token, "
                                                 "client_credentials"):
        resolve_settings(None, environ={"SN_GRANT_TYPE": "implicit"})


# -- authentication ------------------------------------------------------------------------------------
def _token_requests(sn):
    return [entry for entry in sn.requests() if entry["path"] == "/oauth_token.do"]


def test_oauth_password_grant_is_refreshed_before_expiry_with_the_refresh_token(sn):
    sn.control.call("POST", "token_lifetime", {"seconds": 100})
    clock = [0.0]
    client = Client(sn.settings(client_id="changeops-client", client_secret="client-simulator-secret"),
                    clock=lambda: clock[0], sleep=Sleeps())
    api = TableAPI(client)
    for _attempt in range(3):
        api.list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert [entry["grant_type"] for entry in _token_requests(sn)] == ["password"]
    clock[0] = 81.0  # 100 s lifetime, refreshed 20 s (20 %) early
    api.list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert [entry["grant_type"] for entry in _token_requests(sn)] == ["password", "refresh_token"]


def test_oauth_client_credentials_and_refresh_token_grants(sn):
    for extra in ({"grant_type": "client_credentials"}, ):
        client = client_for(sn, username=None, password=None, client_id="changeops-client",
                            client_secret="client-simulator-secret", **extra)
        assert TableAPI(client).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    first = client_for(sn, client_id="changeops-client", client_secret="client-simulator-secret")
    TableAPI(first).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    refresh = first.auth._refresh_token
    second = client_for(sn, username=None, password=None, client_id="changeops-client",
                        client_secret="client-simulator-secret", grant_type="refresh_token", refresh_token=refresh)
    assert TableAPI(second).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert _token_requests(sn)[-1]["grant_type"] == "refresh_token"


def test_a_revoked_token_is_fetched_again_once(sn):
    client = client_for(sn, client_id="changeops-client", client_secret="client-simulator-secret")
    api = TableAPI(client)
    api.list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    sn.control.call("POST", "tokens/revoke", {})
    api.list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert len(_token_requests(sn)) == 2


def test_api_key_is_sent_as_x_sn_apikey(sn):
    client = client_for(sn, username=None, password=None, api_key="simulator-api-key-0123456789")
    assert TableAPI(client).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert sn.requests()[-1]["user"] == "changeops.integration"
    bad = client_for(sn, username=None, password=None, api_key="not-the-key-0000")
    with pytest.raises(ServiceNowAuthError, match="401 Unauthorized with an API key"):
        TableAPI(bad).list("cmdb_rel_type", Query().eq("name", "x"), ["name"])


# -- TLS and proxies --------------------------------------------------------------------------------------
@pytest.fixture
def tls_simulator(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    sim = Simulator(certfile=str(cert), keyfile=str(key)).start()
    yield sim, str(cert)
    sim.stop()


def test_tls_is_verified_and_a_ca_bundle_can_be_named(tls_simulator):
    sim, cert = tls_simulator
    handle = SN(sim.url, Control(sim.url))
    with pytest.raises(ServiceNowTLSError, match="TLS verification failed .* name its bundle with ca_path"):
        TableAPI(client_for(handle)).list("cmdb_rel_type", Query().eq("name", "x"), ["name"])
    assert TableAPI(client_for(handle, ca_path=cert)).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"),
                                                           ["name"])
    insecure = client_for(handle, validate_certs=False)
    assert TableAPI(insecure).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
    assert "validate_certs: false" in insecure.warnings[0]


def test_proxies_come_from_the_environment(sn, monkeypatch):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:%d" % port)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(ServiceNowUnavailable, match="(?i)proxy"):
        TableAPI(client_for(sn, retries=0)).list("cmdb_rel_type", Query().eq("name", "x"), ["name"])
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert TableAPI(client_for(sn)).list("cmdb_rel_type", Query().eq("name", "Runs on::Runs"), ["name"])
