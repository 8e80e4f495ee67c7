# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Single sign-on with an OpenID Connect provider: the authorization code flow with PKCE.

Maintained libraries do the protocol: Authlib's OAuth 2.0 client (``OAuth2Session`` over ``requests``)
builds the authorization request with its S256 code challenge and exchanges the code at the token
endpoint; ``joserfc`` (Authlib's JOSE library) checks the ID token's signature against the provider's
published keys (JWKS) and its claims. What this module adds is the policy around them:

* the provider is found by **discovery** (``/.well-known/openid-configuration``), whose ``issuer`` must be
  the configured one, exactly;
* each sign-in attempt has its own random ``state``, ``nonce`` and PKCE verifier, kept server-side
  (``review_sign_in_attempts``, shared by every worker, only the state's hash as key) for ten minutes
  and **used once**: a replayed callback finds no attempt;
* the ID token must be signed with an asymmetric algorithm the provider announces (never ``none`` or
  a shared-secret HMAC, which would let whoever knows the client secret mint tokens), by a key of its
  JWKS (fetched again once when a token names an unknown key: rotation), and carry ``iss`` (the
  issuer), ``aud`` (this client; with several audiences ``azp`` must be this client), ``exp`` (not
  past), ``iat``, ``sub`` and the attempt's ``nonce``. Anything else is refused, and the refusal is a
  ``review.sign_in_failed`` ledger entry like any other sign-in failure.

Who signs in: the ``preferred_username`` claim (``CHANGEOPS_REVIEW_OIDC_USERNAME_CLAIM``) names them; their
roles are those of the service account of that name when one exists, else those their ``groups`` claim
(``CHANGEOPS_REVIEW_OIDC_GROUPS_CLAIM``) maps to through ``CHANGEOPS_REVIEW_ROLE_GROUPS``; the groups also
travel with their identity, where a policy's ``review_service_groups`` finds them.
"""

from __future__ import annotations

import secrets
import threading
import time

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import utc_now
from ansible_collections.changeops.itsm.review_service.security import digest, later

try:
    import requests
    from authlib.integrations.requests_client import OAuth2Session
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet
except ImportError:  # pragma: no cover - requirements-review.txt
    requests = OAuth2Session = jwt = KeySet = None
    JoseError = Exception

#: signature algorithms an ID token may use: asymmetric only
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
ATTEMPT_MINUTES = 10
LEEWAY_SECONDS = 60
DISCOVERY_SECONDS = 3600
JWKS_REFRESH_SECONDS = 60


class SignInRefused(Exception):
    """The provider's answer is not a valid sign-in; the message says why (and is audited, never the token)."""


class OidcClient(object):
    """One configured provider; safe to share between the worker's threads."""

    def __init__(self, config, store, timeout=10):
        self.config = config
        self.store = store
        self.timeout = timeout
        self._lock = threading.Lock()
        self._metadata = None
        self._metadata_at = 0.0
        self._keys = None
        self._keys_at = 0.0
        self._http = requests.Session() if requests is not None else None
        if self._http is not None and config.oidc_ca_file:
            self._http.verify = config.oidc_ca_file

    # -- the provider's documents ----------------------------------------------------------------
    def _get_json(self, url, what):
        try:
            response = self._http.get(url, timeout=self.timeout)
            response.raise_for_status()
            return response.json()
        except (requests.RequestException, ValueError) as exc:
            raise SignInRefused("the sign-in provider's %s (%s) cannot be read: %s" % (what, url, exc))

    def metadata(self):
        with self._lock:
            if self._metadata is not None and time.monotonic() - self._metadata_at < DISCOVERY_SECONDS:
                return self._metadata
        issuer = self.config.oidc_issuer
        document = self._get_json(issuer + "/.well-known/openid-configuration", "discovery document")
        if document.get("issuer") != issuer:
            raise SignInRefused("the discovery document names issuer %r, not the configured %r"
                                % (document.get("issuer"), issuer))
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not document.get(key):
                raise SignInRefused("the discovery document has no %s" % key)
        with self._lock:
            self._metadata, self._metadata_at = document, time.monotonic()
        return document

    def _key_set(self, refresh=False):
        with self._lock:
            fresh = self._keys is not None and not refresh
            recent = time.monotonic() - self._keys_at < JWKS_REFRESH_SECONDS
            if fresh or (refresh and recent and self._keys is not None):
                return self._keys
        keys = KeySet.import_key_set(self._get_json(self.metadata()["jwks_uri"], "signing keys (JWKS)"))
        with self._lock:
            self._keys, self._keys_at = keys, time.monotonic()
        return keys

    def _algorithms(self):
        announced = self.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
        allowed = [algorithm for algorithm in announced if algorithm in ALLOWED_ALGORITHMS]
        if not allowed:
            raise SignInRefused("the provider announces no asymmetric ID token signature algorithm (%s)"
                                % ", ".join(announced))
        return allowed

    def _session(self, **kwargs):
        return OAuth2Session(self.config.oidc_client_id, self.config.oidc_client_secret,
                             scope=self.config.oidc_scopes, redirect_uri=self.config.oidc_redirect_uri,
                             code_challenge_method="S256", default_timeout=self.timeout, **kwargs)

    # -- the flow ---------------------------------------------------------------------------------------
    def begin(self, next_path):
        """The provider's authorization URL for a new attempt (stored server-side)."""
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        session = self._session()
        if self._http is not None and self._http.verify is not True:
            session.verify = self._http.verify
        url, _state = session.create_authorization_url(self.metadata()["authorization_endpoint"], state=state,
                                                       nonce=nonce, code_verifier=verifier)
        self.store.get().create_review_sign_in_attempt(digest(state), nonce, verifier, next_path, utc_now(),
                                                       later(minutes=ATTEMPT_MINUTES))
        return url

    def finish(self, params):
        """``(claims, next_path)`` for the provider's callback ``params`` (code, state), or SignInRefused."""
        if params.get("error"):
            raise SignInRefused("the provider refused the sign-in: %s %s" % (
                str(params.get("error"))[:100], str(params.get("error_description") or "")[:200]))
        state, code = params.get("state") or "", params.get("code") or ""
        if not state or not code:
            raise SignInRefused("the callback has no state or no code")
        attempt = self.store.get().take_review_sign_in_attempt(digest(state), utc_now())
        if attempt is None:
            raise SignInRefused("no sign-in attempt has this state: it was used already, expired or never started")
        session = self._session(state=state)
        if self._http is not None and self._http.verify is not True:
            session.verify = self._http.verify
        try:
            token = session.fetch_token(self.metadata()["token_endpoint"], grant_type="authorization_code",
                                        code=code, code_verifier=attempt["code_verifier"],
                                        redirect_uri=self.config.oidc_redirect_uri)
        except Exception as exc:  # pylint: disable=broad-except  # (Authlib's and requests' errors alike)
            raise SignInRefused("the token endpoint refused the code: %s" % str(exc)[:300])
        id_token = token.get("id_token")
        if not id_token:
            raise SignInRefused("the token endpoint returned no ID token (is the openid scope granted?)")
        return self.verify_id_token(id_token, attempt["nonce"]), attempt["next_path"]

    def verify_id_token(self, id_token, nonce):
        """The ID token's claims once its signature, issuer, audience, times and nonce hold."""
        algorithms = self._algorithms()
        try:
            decoded = self._decode(id_token, algorithms, refresh=False)
        except SignInRefused:
            raise
        except (JoseError, ValueError) as exc:
            raise SignInRefused("the ID token does not verify: %s" % exc)
        claims = decoded.claims
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self.config.oidc_issuer},
            aud={"essential": True, "value": self.config.oidc_client_id},
            exp={"essential": True}, iat={"essential": True}, sub={"essential": True},
            nonce={"essential": True, "value": nonce})
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise SignInRefused("the ID token's claims are not valid for this sign-in: %s" % exc)
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.config.oidc_client_id:
            raise SignInRefused("the ID token has several audiences and its azp is not this client")
        return claims

    def _decode(self, id_token, algorithms, refresh):
        try:
            return jwt.decode(id_token, self._key_set(refresh=refresh), algorithms=algorithms)
        except (JoseError, ValueError) as exc:
            if not refresh and "key" in str(exc).lower():
                # a key the cached set does not have: the provider may have rotated its keys
                return self._decode(id_token, algorithms, refresh=True)
            raise

    def identity(self, claims):
        """``(name, groups)`` of the signed-in person from the ID token's claims."""
        name = claims.get(self.config.oidc_username_claim) or claims.get("email") or claims.get("sub")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise SignInRefused("the ID token has no usable %s claim" % self.config.oidc_username_claim)
        groups = claims.get(self.config.oidc_groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        groups = [str(group) for group in groups if isinstance(group, (str, int))][:200]
        return name.strip(), groups
