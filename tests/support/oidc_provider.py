# -*- coding: utf-8 -*-
"""A simulator of an OpenID Connect provider on loopback, for the review service's single sign-on tests.

It is **not** a real provider: it follows the parts of OpenID Connect Core 1.0 and Discovery 1.0 (with
RFC 7636 PKCE and RFC 7517 JWKS) that a relying party meets in the authorization code flow, as a real
provider (Keycloak, Entra ID, Okta, Dex...) serves them:

* ``/.well-known/openid-configuration``: issuer, endpoints, ``id_token_signing_alg_values_supported``;
* ``/authorize``: checks ``response_type=code``, the client id, the registered redirect URI and an S256
  ``code_challenge``; "signs in" the configured user at once and redirects back with ``code`` and
  ``state``;
* ``/token``: the authorization code grant, with the client authenticated by ``client_secret_basic``
  or ``client_secret_post``, the redirect URI and the PKCE ``code_verifier`` checked, each code usable
  once; answers with an access token and an RS256-signed ``id_token`` (``iss``, ``sub``, ``aud``,
  ``exp``, ``iat``, ``nonce``, ``preferred_username``, ``groups``...);
* ``/jwks``: the public signing key.

Adversarial knobs (``provider.tamper``) make it answer as a broken or hostile provider would: a token
signed by another key, for another audience, from another issuer, expired, with another nonce (a
replayed token), unsigned (``alg: none``) or signed with HMAC using the client secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from support.postgresql_server import free_port


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class OidcProvider(object):
    def __init__(self, client_id="changeops-review", client_secret="simulator-client-secret", redirect_uri=None):
        self.port = free_port()
        self.issuer = "http://127.0.0.1:%d" % self.port
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.key = RSAKey.generate_key(2048, parameters={"kid": "sim-1", "use": "sig", "alg": "RS256"})
        self.user = {"sub": "u-1001", "preferred_username": "olivia", "name": "Olivia Ops",
                     "email": "olivia@example.org", "groups": ["itsm-reviewers"]}
        #: one of None, bad-signature, wrong-audience, wrong-issuer, expired, other-nonce, alg-none, hmac
        self.tamper = None
        self.requests = []  # (path, query or form) of every request, for the tests' assertions
        self.nonces = []    # the nonces of the authorization requests seen, in order
        self._codes = {}
        self._server = None

    # -- server -------------------------------------------------------------------------------------
    def start(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                return

            def _send(self, status, body=None, headers=None):
                payload = json.dumps(body).encode() if isinstance(body, (dict, list)) else (body or b"")
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if isinstance(body, (dict, list)):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):  # noqa: N802
                parts = urlsplit(self.path)
                query = dict((key, values[0]) for key, values in parse_qs(parts.query).items())
                provider.requests.append((parts.path, query))
                if parts.path == "/.well-known/openid-configuration":
                    return self._send(200, provider.discovery())
                if parts.path == "/jwks":
                    return self._send(200, KeySet([provider.key]).as_dict(private=False))
                if parts.path == "/authorize":
                    status, location, error = provider.authorize(query)
                    if error:
                        return self._send(400, {"error": error})
                    return self._send(status, headers={"Location": location})
                return self._send(404, {"error": "not found"})

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = dict((key, values[0]) for key, values in parse_qs(self.rfile.read(length).decode()).items())
                provider.requests.append((self.path, form))
                if self.path == "/token":
                    status, body = provider.token(form, self.headers.get("Authorization"))
                    return self._send(status, body, {"Cache-Control": "no-store"})
                return self._send(404, {"error": "not found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the protocol -----------------------------------------------------------------------------------
    def discovery(self):
        return {"issuer": self.issuer, "authorization_endpoint": self.issuer + "/authorize",
                "token_endpoint": self.issuer + "/token", "jwks_uri": self.issuer + "/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": ["openid", "profile", "email", "groups"]}

    def authorize(self, query):
        if query.get("response_type") != "code" or query.get("client_id") != self.client_id:
            return 400, None, "invalid_request: response_type code and a known client_id"
        if self.redirect_uri and query.get("redirect_uri") != self.redirect_uri:
            return 400, None, "invalid_request: redirect_uri is not registered"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, None, "invalid_request: PKCE with S256 is required"
        if "openid" not in (query.get("scope") or "").split():
            return 400, None, "invalid_scope: openid"
        self.nonces.append(query.get("nonce"))
        code = secrets.token_urlsafe(24)
        self._codes[code] = {"challenge": query["code_challenge"], "nonce": query.get("nonce"),
                             "redirect_uri": query.get("redirect_uri"), "user": dict(self.user)}
        return 302, query["redirect_uri"] + "?" + urlencode({"code": code, "state": query.get("state", "")}), None

    def token(self, form, authorization):
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            client_id, _sep, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if client_id != self.client_id or secret != self.client_secret:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        grant = self._codes.pop(form.get("code"), None)
        if grant is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        verifier = form.get("code_verifier") or ""
        if _b64url(hashlib.sha256(verifier.encode("ascii")).digest()) != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier does not match"}
        return 200, {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300,
                     "id_token": self.id_token(grant["user"], grant["nonce"])}

    def id_token(self, user, nonce):
        now = int(time.time())
        claims = dict(user, iss=self.issuer, aud=self.client_id, iat=now, exp=now + 300, nonce=nonce)
        header = {"alg": "RS256", "kid": "sim-1"}
        key = self.key
        if self.tamper == "bad-signature":
            key = RSAKey.generate_key(2048, parameters={"kid": "sim-1"})  # same kid, another key
        elif self.tamper == "wrong-audience":
            claims["aud"] = "another-client"
        elif self.tamper == "wrong-issuer":
            claims["iss"] = "http://127.0.0.1:1/evil"
        elif self.tamper == "expired":
            claims.update(iat=now - 7200, exp=now - 3600)
        elif self.tamper == "other-nonce":
            claims["nonce"] = self.nonces[0] if len(self.nonces) > 1 and self.nonces[0] != nonce else "replayed"
        elif self.tamper == "alg-none":
            body = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." + \
                _b64url(json.dumps(claims).encode()) + "."
            return body
        elif self.tamper == "hmac":
            secret = OctKey.import_key(self.client_secret.encode())
            return jwt.encode({"alg": "HS256"}, claims, secret, algorithms=["HS256"])
        return jwt.encode(header, claims, key, algorithms=["RS256"])
