# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one HTTP client every ServiceNow call goes through (``requests``).

* **Timeouts** on every request (``timeout``, never past the caller's deadline).
* **TLS** verified by default; ``ca_path`` names a CA bundle for a private CA.
  ``validate_certs: false`` exists for servicenow.itsm compatibility and warns.
* **Proxies** from the environment (``HTTPS_PROXY``, ``NO_PROXY``), as requests reads them.
* **Retries** with exponential backoff for connection errors and 502/503/504, for
  requests that are safe to repeat (GET, PATCH, PUT, DELETE, and POSTs their
  caller marks idempotent); a request that could not even connect is always retried.
* **429** waits for ``Retry-After`` (seconds or a date) or ``X-RateLimit-Reset``
  (epoch), or ``rate_limit_cooldown`` when ServiceNow sends neither, but only
  while the run's ``rate_limit_wait`` budget lasts; beyond it the request fails
  with ``ServiceNowRateLimited`` carrying when to come back, so a rate-limited
  instance delays a run by at most that budget.
* **A request budget**: at most ``max_requests`` requests per client (one client
  per task or per drain), counting retries and token requests.

Errors are ``servicenow.errors`` classes whose messages never hold a secret.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
import traceback

from ansible_collections.changeops.itsm.plugins.module_utils.errors import MissingDependency
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.auth import make_auth
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import (
    ServiceNowAuthError,
    ServiceNowBudgetExhausted,
    ServiceNowForbidden,
    ServiceNowNotFound,
    ServiceNowRateLimited,
    ServiceNowRequestError,
    ServiceNowTLSError,
    ServiceNowUnavailable,
    error_detail,
)

try:
    import requests
    import requests.exceptions
except ImportError:
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None

IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"))
RETRIED_STATUSES = frozenset((502, 503, 504))
#: the longest one backoff sleep may be
MAX_BACKOFF = 30.0
USER_AGENT = "changeops.itsm (ansible collection)"
TRANSACTION_CANCELLED = "Transaction cancelled"


def require_requests():
    if not HAS_REQUESTS:
        raise MissingDependency("the ServiceNow integration needs the Python library requests on the controller "
                                "(pip install requests)", exception=REQUESTS_IMPORT_ERROR)


class Response(object):
    """What a caller gets back: status, headers (case-insensitive), the parsed body."""

    def __init__(self, status, headers, body, content=b""):
        self.status = status
        self.headers = headers
        self.body = body
        self.content = content

    @property
    def result(self):
        return self.body.get("result") if isinstance(self.body, dict) else None


def parse_retry_after(headers, now_epoch):
    """Seconds to wait that a 429 asks for: ``Retry-After`` (seconds or HTTP date), else ``X-RateLimit-Reset``
    (epoch seconds), else None."""
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(value)
                return max(0.0, moment.timestamp() - now_epoch)
            except (TypeError, ValueError, IndexError, OverflowError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset.strip()) - now_epoch)
        except ValueError:
            pass
    return None


class Client(object):
    """One instance, one set of credentials, one budget. Not thread-safe: one per task or drain."""

    def __init__(self, settings, deadline=None, clock=time.monotonic, sleep=time.sleep, wall_clock=time.time,
                 cooldown=None):
        require_requests()
        self.settings = settings.check_complete()
        self.secrets = settings.secrets
        self.base_url = settings.base_url
        self.api_path = (settings.get("api_path") or "api/now").strip("/")
        self.clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        #: monotonic time after which no request is started and no sleep goes past
        self.deadline = deadline
        #: optional shared cool-down (``get() -> epoch or None``, ``set(epoch, message)``), e.g. the outbox state
        self.cooldown = cooldown
        self.max_requests = int(settings["max_requests"])
        self.rate_limit_wait = float(settings["rate_limit_wait"])
        self.rate_limit_cooldown = float(settings["rate_limit_cooldown"])
        self.retries = int(settings["retries"])
        self.backoff = float(settings["backoff"])
        self.timeout = float(settings["timeout"])
        self.requests_made = 0
        self.writes_made = 0
        self.rate_limit_waited = 0.0
        self.rate_limited = 0
        self.retried = 0
        self.warnings = []
        self.auth = make_auth(settings)
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        if settings.get("custom_headers"):
            self.session.headers.update(dict((str(k), str(v)) for k, v in settings["custom_headers"].items()))
        # passed with every request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's verify
        self.verify = True
        if settings.get("ca_path"):
            self.verify = settings["ca_path"]
        elif settings.get("validate_certs") is False:
            self.verify = False
            self.warnings.append("%s: TLS certificate verification is off (validate_certs: false); name the CA "
                                 "bundle with ca_path instead" % self.describe())
            try:
                import urllib3

                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            except Exception:  # pylint: disable=broad-except
                pass
        if settings.get("client_certificate_file"):
            self.session.cert = (settings["client_certificate_file"], settings["client_key_file"])

    # -- helpers --------------------------------------------------------------------------------
    def describe(self):
        return "ServiceNow %s" % self.base_url

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def api(self, *parts):
        """``api/now/<parts>`` (servicenow.itsm's ``api_path``) as a path."""
        return "/".join([self.api_path] + [str(part).strip("/") for part in parts])

    def _fail(self, cls, text, **kwargs):
        raise cls(self.secrets.scrub("%s: %s" % (self.describe(), text)), **kwargs)

    def time_left(self):
        return None if self.deadline is None else self.deadline - self.clock()

    def _spend(self, what):
        if self.requests_made >= self.max_requests:
            self._fail(ServiceNowBudgetExhausted, "request budget spent (%d requests, max_requests) before %s"
                       % (self.requests_made, what), kind="budget")
        left = self.time_left()
        if left is not None and left <= 0:
            self._fail(ServiceNowBudgetExhausted, "out of time (the caller's deadline passed) before %s" % what,
                       kind="budget")
        self.requests_made += 1

    def _request_timeout(self):
        left = self.time_left()
        timeout = self.timeout if left is None else max(0.1, min(self.timeout, left))
        return (min(timeout, 10.0), timeout)

    def _nap(self, seconds, what, error_cls=ServiceNowUnavailable, **kwargs):
        """Sleep ``seconds`` unless that would pass the deadline (then fail with ``error_cls``)."""
        left = self.time_left()
        if left is not None and seconds > left:
            self._fail(error_cls, "%s; waiting %.1f s more would pass the caller's deadline" % (what, seconds),
                       **kwargs)
        if seconds > 0:
            self._sleep(seconds)

    def _backoff(self, attempt):
        delay = min(MAX_BACKOFF, self.backoff * (2 ** attempt))
        return delay * (0.5 + random.random() / 2)  # nosec - jitter, not cryptography

    # -- the transport --------------------------------------------------------------------------
    def send_token_request(self, path, form):
        """POST the OAuth form (used by ``auth.OAuth``): counted in the budget, retried if it could not connect."""
        return self._send("POST", path, data=form, headers={"Content-Type": "application/x-www-form-urlencoded"},
                          idempotent=True, authenticate=False)

    def request(self, method, path, params=None, json_body=None, data=None, headers=None, idempotent=None,
                allow_404=False):
        """One API call; returns :class:`Response` for a 2xx (and a 404 with ``allow_404``), raises otherwise."""
        response = self._send(method, path, params=params, json_body=json_body, data=data, headers=headers,
                              idempotent=idempotent)
        status = response.status
        if 200 <= status < 300 or (status == 404 and allow_404):
            return response
        where = "%s /%s" % (method, path.split("?", 1)[0])
        detail = error_detail(response.body)
        if status == 401:
            if response.headers.get("X-MFA_TOKEN"):
                self._fail(ServiceNowAuthError, "%s: 401, the instance demands multi-factor authentication of %s "
                           "(X-MFA_TOKEN: %s); REST clients cannot answer it: use OAuth or an API key"
                           % (where, self.auth.describe(), response.headers.get("X-MFA_TOKEN")),
                           kind="mfa", status=status)
            self._fail(ServiceNowAuthError, "%s: 401 Unauthorized with %s: %s" % (where, self.auth.describe(), detail),
                       status=status)
        if status == 403:
            self._fail(ServiceNowForbidden, "%s: 403 Forbidden (an ACL, a missing role, or a business rule or data "
                       "policy refused it): %s" % (where, detail), status=status)
        if status == 404:
            self._fail(ServiceNowNotFound, "%s: 404 Not Found: %s" % (where, detail), status=status)
        if status == 429:
            self._fail(ServiceNowRateLimited, "%s: 429 rate limited: %s" % (where, detail), status=status,
                       retry_at=getattr(response, "retry_at", None))
        if status in (400, 405, 406, 409, 413, 415, 422):
            self._fail(ServiceNowRequestError, "%s: %d %s" % (where, status, detail), status=status)
        if TRANSACTION_CANCELLED.lower() in detail.lower():
            self._fail(ServiceNowUnavailable, "%s: %d %s" % (where, status, detail), kind="transaction_cancelled",
                       status=status)
        self._fail(ServiceNowUnavailable, "%s: %d %s" % (where, status, detail), kind="server_error", status=status)
        return None  # pragma: no cover

    def _shared_cooldown(self, what):
        if self.cooldown is None:
            return
        try:
            until = self.cooldown.get()
        except Exception:  # pylint: disable=broad-except
            return
        if until and until > self._wall_clock():
            wait = until - self._wall_clock()
            if self.rate_limit_waited + wait > self.rate_limit_wait:
                self._fail(ServiceNowRateLimited, "rate limited until %s (a 429 another process received), "
                           "beyond this run's rate_limit_wait of %.0f s; not sending %s"
                           % (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until)), self.rate_limit_wait, what),
                           retry_at=until)
            self._nap(wait, "rate limited until the shared cool-down ends", ServiceNowRateLimited, retry_at=until)
            self.rate_limit_waited += wait

    def _send(self, method, path, params=None, json_body=None, data=None, headers=None, idempotent=None,
              authenticate=True):
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        url = "%s/%s" % (self.base_url, path.lstrip("/"))
        what = "%s /%s" % (method, path.split("?", 1)[0].lstrip("/"))
        attempt = 0
        refreshed = False
        self._shared_cooldown(what)
        while True:
            request_headers = dict(headers or {})
            if authenticate:
                request_headers.update(self.auth.headers(self))
            self._spend(what)
            if method not in ("GET", "HEAD"):
                self.writes_made += 1
            try:
                raw = self.session.request(
                    method, url, params=params, data=(json.dumps(json_body) if json_body is not None else data),
                    headers=dict(request_headers, **({"Content-Type": "application/json"} if json_body is not None
                                                     else {})),
                    timeout=self._request_timeout(), allow_redirects=False, verify=self.verify)
            except requests.exceptions.SSLError as exc:
                self._fail(ServiceNowTLSError, "%s: TLS verification failed (%s); if the instance uses a private CA, "
                           "name its bundle with ca_path" % (what, _one_line(exc)))
            except (requests.exceptions.ConnectTimeout, requests.exceptions.ConnectionError,
                    requests.exceptions.ReadTimeout) as exc:
                connected = not isinstance(exc, requests.exceptions.ConnectTimeout) and not _never_connected(exc)
                kind = "timeout" if isinstance(exc, requests.exceptions.Timeout) else "unreachable"
                if attempt < self.retries and (idempotent or not connected):
                    delay = self._backoff(attempt)
                    attempt += 1
                    self.retried += 1
                    self._nap(delay, "%s: %s" % (what, _one_line(exc)), kind=kind)
                    continue
                self._fail(ServiceNowUnavailable, "%s: %s after %d attempt%s: %s" % (
                    what, "timed out" if kind == "timeout" else "cannot connect", attempt + 1,
                    "" if attempt == 0 else "s", _one_line(exc)), kind=kind)
            response = _response(raw)
            status = response.status
            if status == 429:
                self.rate_limited += 1
                asked = parse_retry_after(response.headers, self._wall_clock())
                wait = asked if asked is not None else self.rate_limit_cooldown
                retry_at = self._wall_clock() + wait
                response.retry_at = retry_at
                if self.cooldown is not None:
                    try:
                        self.cooldown.set(retry_at, "429 from %s" % what)
                    except Exception:  # pylint: disable=broad-except
                        pass
                left = self.time_left()
                if self.rate_limit_waited + wait > self.rate_limit_wait or (left is not None and wait > left):
                    self._fail(ServiceNowRateLimited, "%s: 429 rate limited (%s); waiting %.0f s %s would exceed this "
                               "run's rate_limit_wait budget of %.0f s (%.0f s already spent)%s" % (
                                   what, error_detail(response.body) or "no detail",
                                   wait, "as asked" if asked is not None else
                                   "(rate_limit_cooldown: neither Retry-After nor X-RateLimit-Reset was sent)",
                                   self.rate_limit_wait, self.rate_limit_waited,
                                   "" if left is None or wait <= left else " or the caller's deadline"),
                               status=429, retry_at=retry_at)
                self._sleep(wait)
                self.rate_limit_waited += wait
                continue
            if status in RETRIED_STATUSES and idempotent and attempt < self.retries:
                delay = self._backoff(attempt)
                attempt += 1
                self.retried += 1
                self._nap(delay, "%s: HTTP %d" % (what, status), kind="server_error", status=status)
                continue
            if status == 401 and authenticate and not refreshed and self.auth.refresh_after_401(self):
                refreshed = True
                continue
            return response


def _never_connected(exc):
    """True when the connection was refused or never made: the server saw nothing, so any request may be sent again."""
    text = str(exc)
    return any(marker in text for marker in ("NewConnectionError", "Connection refused", "Failed to establish",
                                             "Name or service not known", "No route to host"))


def _one_line(exc):
    return " ".join(str(exc).split())[:400]


def _response(raw):
    content = raw.content or b""
    body = None
    content_type = raw.headers.get("Content-Type", "")
    if content:
        if "json" in content_type:
            try:
                body = json.loads(content.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                body = content.decode("utf-8", "replace")
        else:
            body = content.decode("utf-8", "replace")
    return Response(raw.status_code, raw.headers, body, content)
