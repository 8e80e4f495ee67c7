# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credentials: what each request carries, and what to do on a 401.

servicenow.itsm's order: OAuth (``client_id`` + ``client_secret``, grant ``password``
by default, ``refresh_token`` or ``client_credentials``), then an API key
(``x-sn-apikey``), then a given bearer token, then Basic. OAuth tokens are
fetched from ``/oauth_token.do`` and refreshed before they expire (a minute
early, or at 80 % of a shorter lifetime); a 401 on a bearer token fetches a new
one once. Tokens live in memory only: nothing here is ever written anywhere.
"""

from __future__ import annotations

import base64

from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import ServiceNowAuthError, error_detail

TOKEN_PATH = "oauth_token.do"
#: refresh this many seconds before a token expires (servicenow.itsm uses the same margin)
REFRESH_MARGIN = 60.0


class BasicAuth(object):
    method = "basic"

    def __init__(self, settings):
        pair = ("%s:%s" % (settings["username"], settings["password"])).encode("utf-8")
        self._header = "Basic " + base64.b64encode(pair).decode("ascii")
        self.user = settings["username"]

    def headers(self, client):
        return {"Authorization": self._header}

    def refresh_after_401(self, client):
        return False

    def describe(self):
        return "basic authentication as %s" % self.user


class ApiKeyAuth(object):
    method = "api_key"

    def __init__(self, settings):
        self._key = settings["api_key"]

    def headers(self, client):
        return {"x-sn-apikey": self._key}

    def refresh_after_401(self, client):
        return False

    def describe(self):
        return "an API key (x-sn-apikey)"


class BearerAuth(object):
    method = "access_token"

    def __init__(self, settings):
        self._token = settings["access_token"]

    def headers(self, client):
        return {"Authorization": "Bearer " + self._token}

    def refresh_after_401(self, client):
        return False

    def describe(self):
        return "a given access token"


class OAuth(object):
    """OAuth 2 against the instance's ``/oauth_token.do``."""

    method = "oauth"

    def __init__(self, settings):
        self.grant_type = settings.get("grant_type") or "password"
        self._client_id = settings["client_id"]
        self._client_secret = settings["client_secret"]
        self._username = settings.get("username")
        self._password = settings.get("password")
        self._refresh_token = settings.get("refresh_token")
        self._access_token = None
        self._expires_at = None
        self.token_requests = 0

    def describe(self):
        who = " as %s" % self._username if self.grant_type == "password" else ""
        return "OAuth (grant %s, client %s%s)" % (self.grant_type, self._client_id, who)

    def _form(self):
        form = {"client_id": self._client_id, "client_secret": self._client_secret}
        if self._refresh_token and (self.grant_type == "refresh_token" or self._access_token is not None):
            # a refresh token (given, or obtained with the password grant) renews without the password
            form.update(grant_type="refresh_token", refresh_token=self._refresh_token)
        elif self.grant_type == "client_credentials":
            form["grant_type"] = "client_credentials"
        else:
            form.update(grant_type="password", username=self._username, password=self._password)
        return form

    def _fetch(self, client):
        self.token_requests += 1
        form = self._form()
        response = client.send_token_request(TOKEN_PATH, form)
        if response.status != 200 and form["grant_type"] == "refresh_token" and self.grant_type == "password":
            # the refresh token we were given expired: start again with the password grant
            self._refresh_token = None
            self._access_token = None
            form = self._form()
            response = client.send_token_request(TOKEN_PATH, form)
        body = response.body if isinstance(response.body, dict) else {}
        if response.status != 200 or not body.get("access_token"):
            raise ServiceNowAuthError(client.secrets.scrub(
                "%s: the token endpoint /%s refused %s: HTTP %s %s" % (
                    client.describe(), TOKEN_PATH, self.describe(), response.status, error_detail(response.body))),
                status=response.status)
        self._access_token = body["access_token"]
        client.secrets.add(self._access_token)
        if body.get("refresh_token"):
            self._refresh_token = body["refresh_token"]
            client.secrets.add(self._refresh_token)
        try:
            lifetime = float(body.get("expires_in") or 1800)
        except (TypeError, ValueError):
            lifetime = 1800.0
        margin = min(REFRESH_MARGIN, lifetime * 0.2)
        self._expires_at = client.clock() + lifetime - margin

    def headers(self, client):
        if self._access_token is None or client.clock() >= self._expires_at:
            self._fetch(client)
        return {"Authorization": "Bearer " + self._access_token}

    def refresh_after_401(self, client):
        # the token may have been revoked or expired early: one new one, then the 401 stands
        self._access_token = None
        self._fetch(client)
        return True


def make_auth(settings):
    method = settings.auth_method()
    if method == "oauth":
        return OAuth(settings)
    if method == "api_key":
        return ApiKeyAuth(settings)
    if method == "access_token":
        return BearerAuth(settings)
    return BasicAuth(settings)
