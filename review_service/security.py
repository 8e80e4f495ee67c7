# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who is signed in: passwords, sessions, CSRF tokens, API tokens and the sign-in rate limit.

* Passwords are hashed with argon2id (``argon2-cffi``), stored outside the ledger; a sign-in with an
  unknown account still spends the time of one hash, so timing does not tell which accounts exist.
* A session is a random 256-bit id in a ``Secure; HttpOnly; SameSite=Strict`` cookie; the database
  keeps only its SHA-256, with the session's CSRF token, an absolute expiry and an idle timeout.
* Every form carries the session's CSRF token (the sign-in form a token of its own cookie); every
  POST without the right one is refused.
* API tokens (``Authorization: Bearer cor_...``) are random 256-bit values shown once; the database
  keeps their SHA-256. A token acts as its account, with the account's roles at the time of use.
* Every sign-in failure (a wrong password, an unknown or disabled account, a refused token or proxy
  header, a rate-limited attempt) is a ``review.sign_in_failed`` ledger entry: the name tried, the
  client address, the reason; never the password or token. Too many failures for one account or from
  one address within the window refuse further attempts until it passes (HTTP 429).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import secrets

from ansible_collections.changeops.itsm.plugins.module_utils.canonical import format_time, parse_time, utc_now
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry

try:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
except ImportError:  # pragma: no cover - requirements-review.txt
    PasswordHasher = None

SESSION_COOKIE = "changeops_session"
LOGIN_CSRF_COOKIE = "changeops_login_csrf"
TOKEN_PREFIX = "cor_"
MIN_PASSWORD_LENGTH = 12
#: touch a session's last-seen time at most this often (a write per request would not scale)
TOUCH_SECONDS = 60

_HASHER = PasswordHasher() if PasswordHasher is not None else None
#: spent on sign-ins of unknown accounts, so they take as long as a wrong password
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16)) if _HASHER is not None else None


def digest(value):
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def hash_password(password):
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValueError("a password needs at least %d characters" % MIN_PASSWORD_LENGTH)
    return _HASHER.hash(password)


def check_password(stored_hash, password):
    """True when ``password`` matches ``stored_hash`` (None: an unknown account, checked against a dummy)."""
    try:
        _HASHER.verify(stored_hash or _DUMMY_HASH, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return stored_hash is not None


def later(hours=0, minutes=0, seconds=0):
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        hours=hours, minutes=minutes, seconds=seconds)
    return format_time(moment)


def tokens_equal(one, other):
    return bool(one) and bool(other) and hmac.compare_digest(str(one), str(other))


class Principal(object):
    """A signed-in person: the identity actions are recorded with, and their roles."""

    SOURCE = "review-service"

    def __init__(self, name, roles, via, display_name=None, session=None, token_id=None, groups=()):
        self.name = name
        self.roles = frozenset(roles)
        self.via = via  # password, proxy, token
        self.display_name = display_name or name
        self.session = session
        self.token_id = token_id
        self.groups = tuple(groups)

    def identity(self):
        """``{"name", "source"}``: what the ledger records of who acted (see the authorisation identity)."""
        return {"name": self.name, "source": self.SOURCE}

    def has(self, role):
        return role in self.roles

    @property
    def csrf(self):
        return (self.session or {}).get("csrf")


class Authenticator(object):
    """Sign-in, sessions and tokens over one system of record (``store.get()`` per call)."""

    def __init__(self, config, store):
        self.config = config
        self.store = store

    # -- audit and rate limit ------------------------------------------------------------------
    def record_failure(self, username, remote, reason, via):
        sor = self.store.get()
        sor.append([Entry("review.sign_in_failed", (username or "")[:200] or None, {
            "username": (username or "")[:200], "remote": remote, "reason": reason, "via": via, "at": utc_now()},
            actor="review-service")])

    def rate_limited(self, username, remote):
        """Why sign-in attempts for ``username`` from ``remote`` are refused now, or None."""
        sor = self.store.get()
        since = later(minutes=-self.config.login_window_minutes)
        if username and sor.count_review_audit("review.sign_in_failed", subject=username[:200], since=since) >= \
                self.config.login_failures_per_account:
            return "too many failed sign-ins for %s: try again in %d minutes" % (username,
                                                                                 self.config.login_window_minutes)
        if remote and sor.count_review_audit("review.sign_in_failed", remote=remote, since=since) >= \
                self.config.login_failures_per_address:
            return "too many failed sign-ins from %s: try again in %d minutes" % (remote,
                                                                                  self.config.login_window_minutes)
        return None

    # -- accounts -----------------------------------------------------------------------------------
    def principal_for(self, name, via, session=None, token_id=None, groups=()):
        """The principal of account ``name``, or None when it does not exist or is disabled."""
        account = self.store.get().get_review_account(name)
        if account is None or account["disabled"]:
            return None
        return Principal(name, account["roles"], via, account.get("display_name"), session=session,
                         token_id=token_id, groups=groups)

    def password_sign_in(self, username, password, remote):
        """``(principal, None)`` or ``(None, reason shown to the person)``; records every failure."""
        username = (username or "").strip()
        limited = self.rate_limited(username, remote)
        if limited:
            self.record_failure(username, remote, "rate-limited", "password")
            return None, limited
        sor = self.store.get()
        stored = sor.get_review_credential(username) if username else None
        if not check_password(stored, password):
            self.record_failure(username, remote, "wrong password or unknown account", "password")
            return None, "wrong account name or password"
        principal = self.principal_for(username, "password")
        if principal is None:
            self.record_failure(username, remote, "account disabled", "password")
            return None, "wrong account name or password"
        return principal, None

    # -- sessions --------------------------------------------------------------------------------------
    def start_session(self, principal, groups=None):
        """A new session for ``principal``; returns the cookie value (the only copy of the id). A single sign-on
        session keeps the roles and groups the provider vouched for (``groups``), for people with no account."""
        session_id = secrets.token_urlsafe(32)
        now = utc_now()
        csrf = secrets.token_urlsafe(32)
        sso = principal.via in ("oidc", "proxy")
        self.store.get().create_review_session(digest(session_id), principal.name, csrf, principal.via, now,
                                               later(hours=self.config.session_hours),
                                               sso_roles=sorted(principal.roles) if sso else None,
                                               sso_groups=list(groups if groups is not None else principal.groups)
                                               if sso else None)
        principal.session = {"csrf": csrf, "id_hash": digest(session_id)}
        return session_id

    def session_principal(self, session_id):
        """The principal of a live session cookie, or None (expired, idle, signed out, account disabled)."""
        if not session_id or len(session_id) > 100:
            return None
        sor = self.store.get()
        session = sor.get_review_session(digest(session_id))
        if session is None:
            return None
        now = datetime.datetime.now(datetime.timezone.utc)
        idle = now - parse_time(session["last_seen"])
        if parse_time(session["expires_at"]) <= now or idle > datetime.timedelta(minutes=self.config.idle_minutes):
            sor.delete_review_sessions(id_hash=session["id_hash"])
            return None
        if idle > datetime.timedelta(seconds=TOUCH_SECONDS):
            sor.touch_review_session(session["id_hash"], format_time(now))
        account = sor.get_review_account(session["name"])
        groups = session.get("sso_groups") or ()
        if account is not None:
            # an account of that name decides (an administrator disabling it ends the session)
            if account["disabled"]:
                return None
            return Principal(session["name"], account["roles"], session["via"], account.get("display_name"),
                             session=session, groups=groups)
        if session.get("sso_roles") is None:
            return None  # a password or token account that no longer exists
        return Principal(session["name"], session["sso_roles"], session["via"], session=session, groups=groups)

    def end_session(self, session_id):
        if session_id:
            self.store.get().delete_review_sessions(id_hash=digest(session_id))

    # -- API tokens ----------------------------------------------------------------------------------------
    def issue_token(self, principal, owner, label, by):
        """A new API token of account ``owner``; returns ``(token, token_id)``: the token is shown once."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(6)
        sor = self.store.get()
        sor.create_review_token(digest(token), token_id, owner, label, utc_now())
        issued = {"token_id": token_id, "account": owner, "label": label, "by": by}
        sor.append([Entry("review.token_issued", owner, issued, actor=principal.name)])
        return token, token_id

    def revoke_token(self, principal, token_id, owner):
        sor = self.store.get()
        sor.revoke_review_token(token_id)
        revoked = {"token_id": token_id, "account": owner, "by": principal.identity()}
        sor.append([Entry("review.token_revoked", owner, revoked, actor=principal.name)])

    def token_principal(self, token, remote):
        """``(principal, None)`` or ``(None, reason)`` for a bearer token; a refused token is a sign-in failure."""
        limited = self.rate_limited(None, remote)
        if limited:
            self.record_failure(None, remote, "rate-limited", "token")
            return None, limited
        stored = self.store.get().get_review_token(digest(token)) if token.startswith(TOKEN_PREFIX) else None
        if stored is None or stored["revoked"]:
            self.record_failure(stored["name"] if stored else None, remote,
                                "revoked token" if stored else "unknown token", "token")
            return None, "the API token is not valid"
        principal = self.principal_for(stored["name"], "token", token_id=stored["token_id"])
        if principal is None:
            self.record_failure(stored["name"], remote, "account disabled", "token")
            return None, "the API token is not valid"
        last = stored.get("last_used_at")
        if not last or (datetime.datetime.now(datetime.timezone.utc) - parse_time(last)).total_seconds() > TOUCH_SECONDS:
            self.store.get().touch_review_token(stored["token_id"], utc_now())
        return principal, None

    # -- trusted reverse proxy --------------------------------------------------------------------------
    def trusted_peer(self, peer):
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self.config.trusted_proxies)

    def proxy_identity(self, headers, remote):
        """``(name, groups, None)`` from a trusted proxy's headers; ``(None, (), reason)`` when refused;
        ``(None, (), None)`` when no identity is presented."""
        config = self.config
        name = (headers.get(config.proxy_user_header) or "").strip()
        if not name:
            return None, (), None
        if not self.trusted_peer(remote):
            return None, (), "%s came from %s, which is not a trusted proxy" % (config.proxy_user_header, remote)
        if config.proxy_secret and not tokens_equal(headers.get(config.proxy_secret_header), config.proxy_secret):
            return None, (), "the proxy did not present the shared secret (%s)" % config.proxy_secret_header
        groups = [group.strip() for group in (headers.get(config.proxy_groups_header) or "").split(",")
                  if group.strip()]
        return name, groups, None

    def proxy_roles(self, name, groups):
        """Roles of a proxy-authenticated person: their account's if one exists, else from their groups."""
        account = self.store.get().get_review_account(name)
        if account is not None:
            return None if account["disabled"] else set(account["roles"])
        roles = set()
        for group in groups:
            roles.update(self.config.role_groups.get(group, ()))
        return roles
