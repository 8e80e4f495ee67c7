# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The review service's settings: environment variables (``CHANGEOPS_REVIEW_*``), overridden by ``serve`` flags.

The system of record is configured as everywhere else in the collection (``CHANGEOPS_BACKEND``,
``CHANGEOPS_SQLITE_PATH``, ``CHANGEOPS_POSTGRESQL_DSN``, ``CHANGEOPS_BUSY_TIMEOUT``; default: the SQLite
ledger in ``~/.ansible/changeops/ledger.sqlite``).
"""

from __future__ import annotations

import ipaddress
import os

from ansible_collections.changeops.itsm.plugins.module_utils.config import resolve_backend_config
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError

ROLES = ("viewer", "reviewer", "cab", "admin")
AUTH_MODES = ("local", "proxy", "oidc")


def _bool(name, value):
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError("%s: %r is not a boolean (true/false)" % (name, value))


def _int(name, value, minimum=0):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError("%s: %r is not a whole number" % (name, value))
    if number < minimum:
        raise ConfigurationError("%s: %d is below %d" % (name, number, minimum))
    return number


def _role_groups(name, text):
    """``cab=change-advisory-board,ops-leads;reviewer=itsm`` -> ``{group: {roles}}``."""
    mapping = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        role, _sep, groups = part.partition("=")
        role = role.strip()
        if role not in ROLES or not groups.strip():
            raise ConfigurationError("%s: %r must read role=group[,group...] with a role among %s"
                                     % (name, part, ", ".join(ROLES)))
        for group in groups.split(","):
            if group.strip():
                mapping.setdefault(group.strip(), set()).add(role)
    return mapping


def _loopback_url(url):
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")


class ServiceConfig(object):
    """Everything the application needs to know, validated once at start."""

    def __init__(self, environ=None, **overrides):
        environ = os.environ if environ is None else environ

        def get(key, default=None):
            if overrides.get(key) is not None:
                return overrides[key]
            return environ.get("CHANGEOPS_REVIEW_" + key.upper(), default)

        self.backend = resolve_backend_config(environ=environ)
        self.bind = get("bind", "127.0.0.1")
        self.port = _int("CHANGEOPS_REVIEW_PORT", get("port", 8080), 0)
        self.workers = _int("CHANGEOPS_REVIEW_WORKERS", get("workers", 1), 1)
        self.threads = _int("CHANGEOPS_REVIEW_THREADS", get("threads", 8), 1)
        self.title = get("title", "Change review")
        self.public_url = get("public_url")
        self.auth = get("auth", "local")
        if self.auth not in AUTH_MODES:
            raise ConfigurationError("CHANGEOPS_REVIEW_AUTH: %r is not one of %s" % (self.auth, ", ".join(AUTH_MODES)))
        self.secure_cookies = _bool("CHANGEOPS_REVIEW_SECURE_COOKIES", get("secure_cookies", "true"))
        self.session_hours = _int("CHANGEOPS_REVIEW_SESSION_HOURS", get("session_hours", 8), 1)
        self.idle_minutes = _int("CHANGEOPS_REVIEW_IDLE_MINUTES", get("idle_minutes", 30), 1)
        self.login_failures_per_account = _int("CHANGEOPS_REVIEW_LOGIN_FAILURES", get("login_failures", 5), 1)
        self.login_failures_per_address = _int("CHANGEOPS_REVIEW_LOGIN_FAILURES_PER_ADDRESS",
                                               get("login_failures_per_address", 20), 1)
        self.login_window_minutes = _int("CHANGEOPS_REVIEW_LOGIN_WINDOW_MINUTES", get("login_window_minutes", 15), 1)
        # trusted reverse-proxy sign-in (auth = proxy)
        self.proxy_user_header = get("proxy_user_header", "X-Remote-User")
        self.proxy_groups_header = get("proxy_groups_header", "X-Remote-Groups")
        self.proxy_secret_header = get("proxy_secret_header", "X-Changeops-Proxy-Secret")
        self.proxy_secret = get("proxy_secret") or None
        try:
            self.trusted_proxies = [ipaddress.ip_network(part.strip(), strict=False) for part in
                                    (get("trusted_proxies", "127.0.0.1/32,::1/128") or "").split(",") if part.strip()]
        except ValueError as exc:
            raise ConfigurationError("CHANGEOPS_REVIEW_TRUSTED_PROXIES: %s" % exc)
        self.role_groups = _role_groups("CHANGEOPS_REVIEW_ROLE_GROUPS", get("role_groups", ""))
        # single sign-on with an OpenID Connect provider (auth = oidc): see oidc.py and docs/review-service.md
        self.oidc_issuer = (get("oidc_issuer") or "").rstrip("/") or None
        self.oidc_client_id = get("oidc_client_id") or None
        self.oidc_client_secret = get("oidc_client_secret") or None
        self.oidc_redirect_uri = get("oidc_redirect_uri") or None
        self.oidc_scopes = get("oidc_scopes", "openid profile email groups")
        self.oidc_username_claim = get("oidc_username_claim", "preferred_username")
        self.oidc_groups_claim = get("oidc_groups_claim", "groups")
        self.oidc_display_name = get("oidc_display_name", "single sign-on")
        self.oidc_ca_file = get("oidc_ca_file") or None
        if self.auth == "oidc":
            missing = [name for name, value in (("CHANGEOPS_REVIEW_OIDC_ISSUER", self.oidc_issuer),
                                                ("CHANGEOPS_REVIEW_OIDC_CLIENT_ID", self.oidc_client_id),
                                                ("CHANGEOPS_REVIEW_OIDC_REDIRECT_URI", self.oidc_redirect_uri))
                       if not value]
            if missing:
                raise ConfigurationError("CHANGEOPS_REVIEW_AUTH=oidc needs %s" % ", ".join(missing))
            for name, value in (("CHANGEOPS_REVIEW_OIDC_ISSUER", self.oidc_issuer),
                                ("CHANGEOPS_REVIEW_OIDC_REDIRECT_URI", self.oidc_redirect_uri)):
                if not value.startswith("https://") and not _loopback_url(value):
                    raise ConfigurationError("%s: %r must be an https:// URL (http:// only on loopback)" % (name, value))
        # the policy file the separation-of-duties rules come from while no policy is published
        self.policy_path = get("policy") or environ.get("CHANGEOPS_GATE_POLICY") or None

    def describe_backend(self):
        from ansible_collections.changeops.itsm.plugins.module_utils.config import describe
        return describe(self.backend)
