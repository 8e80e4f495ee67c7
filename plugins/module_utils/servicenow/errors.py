# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What can go wrong talking to ServiceNow, sorted the way callers must react.

Each class is also one of the collection's own errors, so callers that know
nothing of ServiceNow still do the right thing: the gate denies on any of them
(fail closed); the outbox stops and retries later on ``BackendUnavailable``
(unreachable, 5xx, 429 beyond the budget), stops and reports on
``ConfigurationError`` (credentials, roles, TLS), and sets one entry aside on a
record-level refusal (``ConflictError``, ``ValidationError``, ``NotFound``).

Messages name the instance, the request and ServiceNow's own words, and never a
secret: every text that reaches a message goes through :class:`Secrets`.
"""

from __future__ import annotations

import base64

from ansible_collections.changeops.itsm.plugins.module_utils.errors import (
    BackendUnavailable,
    ChangeopsError,
    ConfigurationError,
    ConflictError,
    NotFound,
    ValidationError,
)

MASK = "********"
#: shortest value treated as a secret when scrubbing (shorter ones would mask ordinary words)
MIN_SECRET_LENGTH = 4


class Secrets(object):
    """The secret values of one configuration, and :meth:`scrub` to take them out of any text.

    Besides each value it masks the forms a value takes on the wire: URL-encoded
    and the base64 of ``user:password`` that Basic authentication sends.
    """

    def __init__(self, values=(), basic_pair=None):
        self._values = set()
        for value in values:
            self.add(value)
        if basic_pair and basic_pair[0] is not None and basic_pair[1]:
            pair = ("%s:%s" % basic_pair).encode("utf-8")
            self.add(base64.b64encode(pair).decode("ascii"))

    def add(self, value):
        if value is None:
            return
        text = str(value)
        if len(text) < MIN_SECRET_LENGTH:
            return
        self._values.add(text)
        try:
            from urllib.parse import quote, quote_plus

            self._values.update((quote(text, safe=""), quote_plus(text)))
        except Exception:  # pylint: disable=broad-except
            pass

    def __iter__(self):
        return iter(sorted(self._values, key=len, reverse=True))

    def scrub(self, text):
        if text is None:
            return text
        text = str(text)
        for value in self:  # longest first, so a secret containing another is masked whole
            if value in text:
                text = text.replace(value, MASK)
        return text


class ServiceNowError(ChangeopsError):
    """Base of every ServiceNow failure.

    ``kind`` is a short cause (``unreachable``, ``timeout``, ``tls``, ``auth``, ``mfa``,
    ``forbidden``, ``rate_limited``, ``budget``, ``server_error``, ``transaction_cancelled``,
    ``bad_request``, ``not_found``, ``multi_match``, ``item_error``, ``state_unchanged``);
    ``status`` the HTTP status when there was one; ``retry_at`` (epoch seconds) when
    ServiceNow said when to come back.
    """

    kind = "error"

    def __init__(self, message, kind=None, status=None, retry_at=None, **details):
        super(ServiceNowError, self).__init__(message, **details)
        if kind:
            self.kind = kind
        self.status = status
        self.retry_at = retry_at


class ServiceNowUnavailable(ServiceNowError, BackendUnavailable):
    """Not reachable now (connection refused, timeout, 5xx after retries): try again later."""

    kind = "unreachable"


class ServiceNowRateLimited(ServiceNowUnavailable):
    """429 beyond what the rate-limit budget may wait for; ``retry_at`` says when to come back."""

    kind = "rate_limited"


class ServiceNowBudgetExhausted(ServiceNowUnavailable):
    """The request budget or the deadline of this run is spent."""

    kind = "budget"


class ServiceNowAuthError(ServiceNowError, ConfigurationError):
    """401, a refused token request, multi-factor authentication demanded of a REST client."""

    kind = "auth"


class ServiceNowForbidden(ServiceNowError, ConfigurationError):
    """403: an ACL, a missing role, or a business rule or data policy refused the request."""

    kind = "forbidden"


class ServiceNowTLSError(ServiceNowError, ConfigurationError):
    """The instance's certificate could not be verified (set ca_path, never validate_certs: false)."""

    kind = "tls"


class ServiceNowRequestError(ServiceNowError, ValidationError):
    """400/405/415: the request itself is wrong (a field value, a malformed query)."""

    kind = "bad_request"


class ServiceNowNotFound(ServiceNowError, NotFound):
    """404 for one record (Table API v1 answers 404 for an empty list too: callers read that as [])."""

    kind = "not_found"


class ServiceNowConflict(ServiceNowError, ConflictError):
    """ServiceNow's data contradicts the write: IRE MULTI_MATCH, an item error, a transition that did not happen."""

    kind = "item_error"


def error_detail(body):
    """ServiceNow's own words from an error body: ``{"error": {"message", "detail"}, "status": "failure"}``,
    the OAuth endpoint's ``{"error", "error_description"}``, or the text itself (shortened)."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            parts = [str(error.get(key)) for key in ("message", "detail") if error.get(key)]
            if parts:
                return ": ".join(parts)
        if isinstance(error, str):
            description = body.get("error_description")
            return "%s%s" % (error, (": %s" % description) if description and description != error else "")
        result = body.get("result")
        if isinstance(result, dict) and result.get("error"):
            return error_detail(result)
    text = str(body or "").strip()
    return text[:300] + ("..." if len(text) > 300 else "")
