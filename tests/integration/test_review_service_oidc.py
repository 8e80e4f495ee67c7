# -*- coding: utf-8 -*-
"""Single sign-on with OpenID Connect: the review service (real uvicorn server, Authlib's client) against a
simulator of an OpenID Connect provider on loopback (``support/oidc_provider.py``: discovery, the
authorization code flow with PKCE, the token endpoint, JWKS; not a real provider).

A sign-in works end to end (roles from the groups claim, the groups on the signed-in identity, where a
policy's ``review_service_groups`` matches them); and every hostile answer is refused, audited in the
ledger, and leaves no session: a token signed by another key, for another audience or issuer, expired,
carrying another sign-in's nonce, unsigned or HMAC-signed with the client secret; a replayed callback; a
callback with a state that was never issued; a code exchanged without the PKCE verifier. SQLite only: the
backend plays no part here (the security tests cover both).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from support.oidc_provider import OidcProvider
from support.review_service import Client, ServiceProcess, request

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import Identity
from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.rules import (
    AuthorisationRules,
    PeopleGroup,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

from support.backends import backend_config

pytestmark = [pytest.mark.integration, pytest.mark.backends("sqlite")]


@pytest.fixture(scope="module")
def sso(tmp_path_factory):
    """One provider and one service for the module (each test starts its own sign-ins)."""
    tmp = tmp_path_factory.mktemp("oidc")
    env = {"CHANGEOPS_BACKEND": "sqlite", "CHANGEOPS_SQLITE_PATH": str(tmp / "ledger.sqlite")}
    provider = OidcProvider().start()
    service = ServiceProcess(env, tmp, auth="oidc")
    provider.redirect_uri = service.base + "/login/oidc/callback"
    service.env.update({
        "CHANGEOPS_REVIEW_OIDC_ISSUER": provider.issuer, "CHANGEOPS_REVIEW_OIDC_CLIENT_ID": provider.client_id,
        "CHANGEOPS_REVIEW_OIDC_CLIENT_SECRET": provider.client_secret,
        "CHANGEOPS_REVIEW_OIDC_REDIRECT_URI": provider.redirect_uri,
        "CHANGEOPS_REVIEW_ROLE_GROUPS": "reviewer=itsm-reviewers;cab=itsm-cab",
        "CHANGEOPS_REVIEW_LOGIN_FAILURES_PER_ADDRESS": "1000"})
    service.start()
    yield provider, service, env
    service.stop()
    provider.stop()


def sign_in(provider, service, tamper=None):
    """Follow the flow as a browser does; returns (client, final status, text, callback path)."""
    provider.tamper = tamper
    client = Client(service.base)
    status, headers, _text = client.get("/login/oidc?next=/changes")
    assert status == 303, _text[:300]
    authorize = urlsplit(headers["location"])
    assert "%s://%s" % (authorize.scheme, authorize.netloc) == provider.issuer
    status, provider_headers, text = request(provider.issuer, "GET", authorize.path + "?" + authorize.query)
    assert status == 302, text
    callback = urlsplit(dict((k.lower(), v) for k, v in provider_headers)["location"])
    path = callback.path + "?" + callback.query
    status, _headers, text = client.get(path)
    return client, status, text, path


def failures(env):
    with open_system_of_record(backend_config(env)) as sor:
        return [entry.data for entry in sor.iter_entries(kinds=["review.sign_in_failed"])]


def test_sign_in_with_pkce_maps_groups_to_roles_and_identity(sso):
    provider, service, _env = sso
    client, status, text, _path = sign_in(provider, service)
    assert status == 303, text[:500]
    status, _headers, page = client.get("/changes")
    assert status == 200 and "olivia" in page
    # the authorization request carried an S256 challenge; the token request its verifier (the provider checks it)
    authorize = [query for path, query in provider.requests if path == "/authorize"][-1]
    assert authorize["code_challenge_method"] == "S256" and authorize["nonce"] and authorize["state"]
    token = [form for path, form in provider.requests if path == "/token"][-1]
    assert token["code_verifier"] and token["grant_type"] == "authorization_code"
    # reviewer through itsm-reviewers: the review form is offered on a change page... (no changes here), and the
    # groups travel with the identity the policy sees
    rules = AuthorisationRules({"itsm": PeopleGroup("itsm", review_service_groups=["itsm-reviewers"])})
    assert rules.member_of_any(Identity("olivia", "review-service", groups=["itsm-reviewers"]), ["itsm"])
    assert not rules.member_of_any(Identity("olivia", "os", groups=["itsm-reviewers"]), ["itsm"])
    assert not rules.member_of_any(Identity("olivia", "review-service", groups=["other"]), ["itsm"])


@pytest.mark.parametrize("tamper, why", [
    ("bad-signature", "does not verify"),
    ("wrong-audience", "aud"),
    ("wrong-issuer", "iss"),
    ("expired", "exp"),
    ("other-nonce", "nonce"),
    ("alg-none", "does not verify"),
    ("hmac", "does not verify"),
])
def test_a_hostile_id_token_is_refused_and_audited(sso, tamper, why):
    provider, service, env = sso
    if tamper == "other-nonce":
        sign_in(provider, service)  # an earlier sign-in whose nonce the hostile token carries
    before = len(failures(env))
    client, status, text, _path = sign_in(provider, service, tamper)
    assert status == 401, (tamper, status, text[:500])
    assert why in text, text[:800]
    assert "changeops_session" not in client.cookies
    assert client.get("/changes")[0] == 303  # still signed out
    audited = failures(env)[before:]
    assert audited and audited[-1]["via"] == "oidc", audited
    assert "eyJ" not in str(audited)  # never the token


def test_a_replayed_or_forged_callback_is_refused(sso):
    provider, service, _env = sso
    client, status, _text, path = sign_in(provider, service)
    assert status == 303
    again = Client(service.base)
    status, _headers, text = again.get(path)
    assert status == 401 and "no sign-in attempt has this state" in text
    status, _headers, text = Client(service.base).get("/login/oidc/callback?code=abc&state=never-issued")
    assert status == 401 and "no sign-in attempt" in text
    status, _headers, text = Client(service.base).get("/login/oidc/callback?error=access_denied")
    assert status == 401 and "access_denied" in text


def test_a_code_without_its_pkce_verifier_is_refused_by_the_provider(sso):
    """The simulator's token endpoint enforces PKCE as a real provider does: a stolen code alone is useless."""
    provider, service, _env = sso
    provider.tamper = None
    status, headers, _text = Client(service.base).get("/login/oidc")
    authorize = urlsplit(headers["location"])
    _status, provider_headers, _text = request(provider.issuer, "GET", authorize.path + "?" + authorize.query)
    code = urlsplit(dict((k.lower(), v) for k, v in provider_headers)["location"]).query.split("code=")[1].split("&")[0]
    status, _headers, text = request(provider.issuer, "POST", "/token", body="grant_type=authorization_code&code=%s"
                                     "&redirect_uri=%s&client_id=%s&client_secret=%s" % (
                                         code, provider.redirect_uri, provider.client_id, provider.client_secret),
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and "PKCE" in text
