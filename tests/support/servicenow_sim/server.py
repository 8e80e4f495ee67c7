# -*- coding: utf-8 -*-
"""The simulator's HTTP server: ServiceNow's documented REST APIs on 127.0.0.1, plus a control API.

A real HTTP/1.1 server (``http.server.ThreadingHTTPServer``, keep-alive, optional
TLS) that the collection's real client talks to. What it emulates and from which
documentation page is listed in ``fixtures.py``; behaviour worth knowing:

* Table API ``/api/now[/v1|/v2]/table``: encoded queries (unknown fields dropped
  silently), ``sysparm_fields`` (unknown names ignored), ``sysparm_limit`` (default
  10000) / ``sysparm_offset`` with ``X-Total-Count`` and ``Link``, ``sysparm_display_value``
  ``true|false|all``, references as ``{link, value}`` unless
  ``sysparm_exclude_reference_link``, every value a string; an empty list is 404 on v1
  and on the unversioned path (ASSUMPTION), ``[]`` on v2; 201 + ``Location``, 200, 204.
* Change API ``/api/sn_chg_rest[/v1]/change``: records as ``{value, display_value}``,
  create answers an array with ``__meta.ignoredFields``, the legacy state model (a
  PATCH asking for a move the model does not allow answers 200 and changes nothing),
  ``nextstates``, approvals, affected CIs through a 202 worker, the conflict check
  whose ``status`` reads "Conflict" even when ``conflicts`` is empty.
* IRE ``/api/now/identifyreconcile[/query]``: identification rules, INSERT / UPDATE /
  NO_CHANGE / class switches, ``MULTI_MATCH`` and item errors, relations,
  ``sys_object_source``; the data source must be a ``discovery_source`` choice.
* Attachment API, journals (``sys_journal_field``), ``/oauth_token.do`` (password,
  refresh_token, client_credentials grants), Basic, Bearer and ``x-sn-apikey``.
* Faults on demand (``/__sim/faults``): an error that quotes the request's credentials back
  (``echo``, the adversarial case for the client's scrubbing), 429 with ``Retry-After``, with
  ``X-RateLimit-Reset`` or with neither, 401 with ``X-MFA_TOKEN``, 403 business-rule
  errors, transaction-cancelled bodies, 502/503/504, slow responses, dropped
  connections, and a 200 that leaves a change's state unchanged; and inbound rate
  limiting (``/__sim/rate_limit``) with ``X-RateLimit-*`` headers.

The control API under ``/__sim/`` is the test harness's, not ServiceNow's.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import fixtures
from .store import Store, new_sys_id, now_text

CHANGE_STATE_LABELS = fixtures.CHOICES[("change_request", "state")]
NOT_FOUND_BODY = {"error": {"message": "No Record found",
                            "detail": "Record doesn't exist or ACL restricts the record retrieval"},
                  "status": "failure"}


class HttpError(Exception):
    def __init__(self, status, body, headers=None):
        super(HttpError, self).__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def error_body(message, detail=""):
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


class Fault(object):
    """One injected fault: which requests it hits, how often, and what it does."""

    def __init__(self, spec):
        self.kind = spec["kind"]
        self.method = spec.get("method")
        self.path = spec.get("path", "")
        self.times = spec.get("times")
        self.params = spec
        self.hits = 0

    def applies(self, method, path):
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method != method:
            return False
        return path.startswith(self.path) if not self.path.startswith("~") else self.path[1:] in path


class Simulator(object):
    """A ServiceNow instance simulator of the documented REST APIs (not a real instance), on loopback."""

    def __init__(self, host="127.0.0.1", port=0, state_path=None, certfile=None, keyfile=None):
        self.store = Store(state_path)
        self.users = copy.deepcopy(fixtures.USERS)
        self.api_keys = dict(fixtures.API_KEYS)
        self.oauth_clients = copy.deepcopy(fixtures.OAUTH_CLIENTS)
        self.tokens = {}
        self.refresh_tokens = {}
        self.token_lifetime = fixtures.TOKEN_LIFETIME
        self.faults = []
        self.rate_limit = None
        self.log = []
        self.log_lock = threading.Lock()
        self.options = {"ire_result_as_array": False, "conflict_polls": 1, "worker_polls": 1}
        self.injected_conflicts = {}
        self.blackouts = []
        self.conflict_jobs = {}
        self.workers = {}
        handler = _handler_class(self)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = None

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="servicenow-simulator", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve_forever(self):
        self.httpd.serve_forever()

    # -- bookkeeping ------------------------------------------------------------------------------
    def record_request(self, entry):
        with self.log_lock:
            self.log.append(entry)

    # -- authentication -----------------------------------------------------------------------------
    def authenticate(self, headers, query):
        """The user a request runs as; raises 401 (with ``X-MFA_TOKEN`` for MFA users on Basic)."""
        key = headers.get("x-sn-apikey") or (query.get("x-sn-apikey") or [None])[0]
        if key:
            if key in self.api_keys:
                return self.api_keys[key], "api_key"
            raise HttpError(401, error_body("User Not Authenticated", "Required to provide Auth information"))
        authorization = headers.get("Authorization") or ""
        if authorization.startswith("Bearer "):
            token = authorization[7:]
            entry = self.tokens.get(token)
            if entry and entry[1] > time.time():
                return entry[0], "bearer"
            raise HttpError(401, error_body("User Not Authenticated", "Required to provide Auth information"))
        if authorization.startswith("Basic "):
            try:
                user, _sep, password = base64.b64decode(authorization[6:]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = None, None
            info = self.users.get(user)
            if info and info["password"] == password:
                if info.get("mfa"):
                    raise HttpError(401, error_body("User Not Authenticated", "Required to provide Auth information"),
                                    {"X-MFA_TOKEN": "invalid"})
                return user, "basic"
        raise HttpError(401, error_body("User Not Authenticated", "Required to provide Auth information"))

    def require(self, user, roles_key):
        roles = set(self.users.get(user, {}).get("roles") or ())
        if "admin" in roles or roles.intersection(fixtures.ROLES[roles_key]):
            return
        raise HttpError(403, error_body("User Not Authorized", "User %s lacks a role for this API (%s)"
                                        % (user, ", ".join(fixtures.ROLES[roles_key]))))

    def oauth(self, form):
        client = self.oauth_clients.get(form.get("client_id"))
        denied = HttpError(401, {"error": "access_denied", "error_description": "access_denied"})
        if client is None or client["secret"] != form.get("client_secret"):
            raise denied
        grant = form.get("grant_type")
        if grant == "password":
            info = self.users.get(form.get("username"))
            if not info or info["password"] != form.get("password"):
                raise denied
            user = form["username"]
        elif grant == "refresh_token":
            entry = self.refresh_tokens.get(form.get("refresh_token"))
            if entry is None or entry[1] != form.get("client_id"):
                raise denied
            user = entry[0]
        elif grant == "client_credentials":
            user = client.get("user")
            if not user:
                raise denied
        else:
            raise HttpError(400, {"error": "unsupported_grant_type", "error_description": "unsupported grant"})
        access = "sim-access-" + uuid.uuid4().hex
        self.tokens[access] = (user, time.time() + self.token_lifetime)
        answer = {"access_token": access, "token_type": "Bearer", "expires_in": self.token_lifetime,
                  "scope": "useraccount"}
        if grant != "client_credentials":
            refresh = form.get("refresh_token") if grant == "refresh_token" else "sim-refresh-" + uuid.uuid4().hex
            self.refresh_tokens[refresh] = (user, form.get("client_id"))
            answer["refresh_token"] = refresh
        return answer

    # -- faults and rate limits ---------------------------------------------------------------------
    def fault_for(self, method, path):
        for fault in self.faults:
            if fault.applies(method, path):
                fault.hits += 1
                return fault
        return None

    def rate_limit_headers(self, user):
        """Inbound rate limiting: ``X-RateLimit-*`` on every counted request, 429 past the limit."""
        rule = self.rate_limit
        if rule is None:
            return {}
        now = time.time()
        if now >= rule["reset"]:
            rule["reset"] = now + rule.get("window", 3600)
            rule["counts"] = {}
        rule["counts"][user] = rule["counts"].get(user, 0) + 1
        headers = {"X-RateLimit-Limit": str(rule["limit"]), "X-RateLimit-Reset": str(int(rule["reset"])),
                   "X-RateLimit-Rule": rule["rule"]}
        if rule["counts"][user] > rule["limit"]:
            body = copy.deepcopy(fixtures.RATE_LIMIT_BODY)
            body["error"]["detail"] = body["error"]["detail"] % rule["limit"]
            headers["Retry-After"] = str(max(1, int(rule["reset"] - now)))
            raise HttpError(429, body, headers)
        return headers


def _handler_class(sim):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ServiceNowSimulator/1.0"

        def log_message(self, *args):  # quiet
            pass

        def _log_request(self):
            """Put the request being handled in the log, once (the control API's own requests are not logged)."""
            if self._entry is not None and not self._logged:
                self._logged = True
                sim.record_request(self._entry)

        def _send(self, status, body=None, headers=None, raw=None, content_type="application/json"):
            # logged before the answer leaves: a test that reads the log as soon as its call returns must find the
            # call there (logged after, the log could be asked for and answered first: a CI run failed on that)
            if self._entry is not None:
                self._entry["status"] = status
            self._log_request()
            payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode("utf-8"))
            self.send_response(status)
            if payload or status not in (204,):
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        def _handle(self, method):
            parsed = urllib.parse.urlsplit(self.path)
            path = parsed.path
            query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            entry = {"method": method, "path": path, "at": time.time(),
                     "query": dict((k, v[0]) for k, v in query.items() if k != "x-sn-apikey")}
            self._entry, self._logged = (None if path.startswith("/__sim/") else entry), False
            status = 500
            try:
                if path.startswith("/__sim/"):
                    status, answer, headers, raw = _control(sim, method, path, query, body)
                else:
                    fault = sim.fault_for(method, path)
                    if fault is not None:
                        entry["fault"] = fault.kind
                        answered = _apply_fault(self, fault, body)
                        if answered is not None:
                            status = answered
                            return
                    if path == "/oauth_token.do":
                        entry["grant_type"] = (urllib.parse.parse_qs(body.decode("utf-8", "replace")).get(
                            "grant_type") or [None])[0]
                    status, answer, headers, raw, user = _api(sim, method, path, query, body, self.headers, fault)
                    entry["user"] = user
                self._send(status, answer, headers, raw=raw,
                           content_type=(headers or {}).pop("Content-Type", "application/json"))
            except HttpError as exc:
                status = exc.status
                self._send(exc.status, exc.body, exc.headers)
            except (BrokenPipeError, ConnectionResetError):
                status = 0
            except Exception as exc:  # pylint: disable=broad-except
                status = 500
                self._send(500, error_body("Simulator error", "%s: %s" % (type(exc).__name__, exc)))
            finally:
                # (in the log already when answered: this corrects its status when the answer could not be written)
                entry["status"] = status
                self._log_request()

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def do_PATCH(self):
            self._handle("PATCH")

        def do_PUT(self):
            self._handle("PUT")

        def do_DELETE(self):
            self._handle("DELETE")

    return Handler


def _apply_fault(handler, fault, body=b""):
    """Answer the request with the fault (returns the status), or None to go on (slow, state_unchanged)."""
    spec = fault.params
    kind = fault.kind
    if kind == "echo":
        # a misbehaving instance or proxy that quotes the request back: credentials included
        detail = "Authorization: %s; x-sn-apikey: %s; body: %s" % (
            handler.headers.get("Authorization"), handler.headers.get("x-sn-apikey"),
            body.decode("utf-8", "replace")[:300])
        handler._send(int(spec.get("status", 400)), error_body("Invalid request", detail))
        return int(spec.get("status", 400))
    if kind == "slow":
        time.sleep(float(spec.get("seconds", 1.0)))
        return None
    if kind == "state_unchanged":
        return None
    if kind == "drop":
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return 0
    if kind == "429":
        headers = {}
        if spec.get("retry_after") is not None:
            headers["Retry-After"] = str(spec["retry_after"])
        if spec.get("reset_in") is not None:
            headers["X-RateLimit-Reset"] = str(int(time.time() + float(spec["reset_in"])))
            headers["X-RateLimit-Limit"] = "100"
            headers["X-RateLimit-Rule"] = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
        body = copy.deepcopy(fixtures.RATE_LIMIT_BODY)
        body["error"]["detail"] = body["error"]["detail"] % 100
        handler._send(429, body, headers)
        return 429
    if kind == "401_mfa":
        handler._send(401, error_body("User Not Authenticated", "Required to provide Auth information"),
                      {"X-MFA_TOKEN": "invalid"})
        return 401
    if kind == "403_business_rule":
        handler._send(403, fixtures.BUSINESS_RULE_BODY)
        return 403
    if kind == "transaction_cancelled":
        handler._send(500, fixtures.TRANSACTION_CANCELLED_BODY)
        return 500
    if kind in ("500", "502", "503", "504"):
        handler._send(int(kind), error_body("Service unavailable", "the simulator was told to fail"))
        return int(kind)
    raise ValueError("unknown fault kind %r" % kind)


# ----------------------------------------------------------------------------------------------------
# value rendering
# ----------------------------------------------------------------------------------------------------
def _choice_label(table, field, value, store):
    for name in store.schema.chain(table):
        labels = fixtures.CHOICES.get((name, field))
        if labels:
            return labels.get(value, value)
    return value


def _render(sim, table, record, fields, display_value, exclude_links, base):
    """A record as the Table API answers it."""
    store = sim.store
    actual = record.get("sys_class_name") or table
    known = store.schema.fields(actual)
    names = fields or [name for name, kind in store.schema.fields(table).items() if kind != "journal"]
    out = {}
    for name in names:
        if "." in name:
            if not store.valid_path(table, name):
                continue
            value = store.resolve(table, record, name) or ""
            out[name] = value
            continue
        if name not in known:
            continue  # sysparm_fields: invalid names are ignored
        kind = known[name]
        value = "" if kind == "journal" else record.get(name, "")
        reference = kind[4:] if kind.startswith("ref:") else None
        display = value
        if reference and value:
            target = store.get(reference, value)
            display = store.display(reference, target) if target else ""
        elif not reference:
            display = _choice_label(actual, name, value, store)
        if display_value == "all":
            out[name] = {"display_value": display, "value": value}
            if reference and value and not exclude_links:
                out[name]["link"] = "%s/api/now/table/%s/%s" % (base, reference, value)
        elif display_value == "true":
            out[name] = display if not (reference and value and not exclude_links) else {
                "display_value": display, "link": "%s/api/now/table/%s/%s" % (base, reference, value)}
        elif reference and value and not exclude_links:
            out[name] = {"link": "%s/api/now/table/%s/%s" % (base, reference, value), "value": value}
        else:
            out[name] = value
    return out


def _change_view(sim, record):
    """A change record as the Change API answers it: every field ``{value, display_value}``, dates with
    ``display_value_internal``."""
    store = sim.store
    rendered = _render(sim, "change_request", record, None, "all", True, "")
    for name, kind in store.schema.fields("change_request").items():
        if kind == "glide_date_time" and name in rendered:
            rendered[name]["display_value_internal"] = rendered[name]["display_value"]
    return rendered


# ----------------------------------------------------------------------------------------------------
# the APIs
# ----------------------------------------------------------------------------------------------------
def _api(sim, method, path, query, body, headers, fault):
    if path == "/oauth_token.do" and method == "POST":
        form = dict((k, v[0]) for k, v in urllib.parse.parse_qs(body.decode("utf-8")).items())
        with sim.store.lock:
            return 200, sim.oauth(form), {}, None, form.get("username") or form.get("client_id")
    user, _kind = sim.authenticate(headers, query)
    extra_headers = sim.rate_limit_headers(user)
    base = "http://%s" % headers.get("Host", "127.0.0.1")
    parts = [part for part in path.split("/") if part]
    with sim.store.lock:
        if parts[:2] == ["api", "now"]:
            rest = parts[2:]
            version = None
            if rest and rest[0] in ("v1", "v2"):
                version, rest = rest[0], rest[1:]
            if rest and rest[0] == "table":
                status, answer, more = _table(sim, method, rest[1:], query, body, user, version, base)
            elif rest and rest[0] == "attachment":
                status, answer, more = _attachment(sim, method, rest[1:], query, body, headers, user, base)
            elif rest and rest[0] == "identifyreconcile":
                sim.require(user, "ire")
                status, answer, more = _ire(sim, rest[1:], query, body, user)
            else:
                raise HttpError(400, error_body("Requested URI does not represent any resource", path))
        elif parts[:2] == ["api", "sn_chg_rest"]:
            rest = parts[2:]
            if rest and rest[0] in ("v1", "v2"):
                rest = rest[1:]
            status, answer, more = _change(sim, method, rest[1:] if rest[:1] == ["change"] else None, query, body,
                                           user, fault, base)
        else:
            raise HttpError(400, error_body("Requested URI does not represent any resource", path))
    extra_headers.update(more or {})
    raw = extra_headers.pop("__raw__", None)
    return status, answer, extra_headers, raw, user


def _json(body):
    if not body:
        return {}
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, error_body("Exception while reading request", "The payload is not valid JSON."))


def _param(query, name, default=None):
    values = query.get(name)
    return values[0] if values else default


def _write_role(sim, user, table):
    store = sim.store
    if store.schema.exists(table) and store.schema.is_a(table, "cmdb_ci"):
        sim.require(user, "cmdb_write")
    elif store.schema.exists(table) and store.schema.is_a(table, "task"):
        sim.require(user, "task_write")
    elif "admin" not in (sim.users.get(user, {}).get("roles") or ()):
        raise HttpError(403, error_body("User Not Authorized", "ACL denies write access to %s" % table))


def _list_answer(sim, table, query, rows_query, version, base, default_limit=10000):
    text = _param(query, "sysparm_query", "")
    # name=value pairs instead of sysparm_query (c_TableAPI.md)
    pairs = ["%s=%s" % (k, v[0]) for k, v in query.items() if not k.startswith("sysparm_") and k != "x-sn-apikey"]
    if pairs:
        text = "^".join([text] + pairs) if text else "^".join(pairs)
    rows = rows_query(text)
    total = len(rows)
    limit = int(_param(query, "sysparm_limit", default_limit))
    offset = int(_param(query, "sysparm_offset", 0))
    page = rows[offset:offset + limit]
    fields = [f for f in (_param(query, "sysparm_fields", "") or "").split(",") if f] or None
    display = _param(query, "sysparm_display_value", "false")
    exclude = _param(query, "sysparm_exclude_reference_link", "false") == "true"
    result = [_render(sim, table, row, fields, display, exclude, base) for row in page]
    headers = {}
    if _param(query, "sysparm_no_count", "false") != "true":
        headers["X-Total-Count"] = str(total)
    if _param(query, "sysparm_suppress_pagination_header", "false") != "true":
        links = []

        def link(rel, at):
            params = dict((k, v[0]) for k, v in query.items())
            params.update(sysparm_offset=str(at), sysparm_limit=str(limit))
            links.append('<%s/api/now/table/%s?%s>;rel="%s"' % (base, table, urllib.parse.urlencode(params), rel))

        link("first", 0)
        if offset > 0:
            link("prev", max(0, offset - limit))
        if offset + limit < total:
            link("next", offset + limit)
        link("last", max(0, ((total - 1) // max(limit, 1)) * limit) if total else 0)
        headers["Link"] = ",".join(links)
    if not result and version != "v2":
        raise HttpError(404, fixtures.NO_RECORD_BODY)
    return 200, {"result": result}, headers


def _table(sim, method, rest, query, body, user, version, base):
    store = sim.store
    if not rest or not store.schema.exists(rest[0]):
        raise HttpError(400, error_body("Invalid table %s" % (rest[0] if rest else ""), ""))
    table = rest[0]
    sys_id = rest[1] if len(rest) > 1 else None
    if method == "GET" and sys_id is None:
        return _list_answer(sim, table, query, lambda text: store.query(table, text), version, base)
    if method == "GET":
        record = store.get(table, sys_id)
        if record is None:
            raise HttpError(404, NOT_FOUND_BODY)
        fields = [f for f in (_param(query, "sysparm_fields", "") or "").split(",") if f] or None
        return 200, {"result": _render(sim, table, record, fields, _param(query, "sysparm_display_value", "false"),
                                       _param(query, "sysparm_exclude_reference_link", "false") == "true",
                                       base)}, {}
    _write_role(sim, user, table)
    fields = [f for f in (_param(query, "sysparm_fields", "") or "").split(",") if f] or None
    exclude = _param(query, "sysparm_exclude_reference_link", "false") == "true"
    if method == "POST" and sys_id is None:
        values = _json(body)
        record, _ignored = store.insert(table, values, by=user)
        location = "%s/api/now/table/%s/%s" % (base, table, record["sys_id"])
        return 201, {"result": _render(sim, table, record, fields, "false", exclude, base)}, {"Location": location}
    if method in ("PATCH", "PUT") and sys_id:
        record = store.get(table, sys_id)
        if record is None:
            raise HttpError(404, NOT_FOUND_BODY)
        values = _json(body)
        if record.get("sys_class_name") == "change_request":
            values = _guard_change_update(sim, record, values, None)
        record, _ignored = store.update(table, sys_id, values, by=user)
        return 200, {"result": _render(sim, table, record, fields, "false", exclude, base)}, {}
    if method == "DELETE" and sys_id:
        if not store.delete(table, sys_id):
            raise HttpError(404, error_body("No Record found", "Record doesn't exist"))
        return 204, None, {}
    raise HttpError(405, error_body("Method not Supported", method))


def _guard_change_update(sim, record, values, fault):
    """The state model: a move it does not allow is dropped (the request still answers 200)."""
    values = dict(values)
    if "state" not in values:
        return values
    target = str(values["state"])
    current = record.get("state")
    kind = record.get("type") or "normal"
    allowed = fixtures.STATE_MODEL.get(kind, fixtures.STATE_MODEL["normal"]).get(current, [])
    if target == current:
        return values
    if fault is not None and fault.kind == "state_unchanged":
        values.pop("state")
        return values
    if target not in allowed or (target in fixtures.NEEDS_APPROVAL and kind in fixtures.NEEDS_APPROVAL[target]
                                 and record.get("approval") != "approved"):
        values.pop("state")
        return values
    if target == "3":
        code = values.get("close_code", record.get("close_code"))
        notes = values.get("close_notes", record.get("close_notes"))
        if not code or not notes:
            raise HttpError(403, error_body("Operation Failed", "Data Policy Exception: the following fields are "
                                            "mandatory: Close code, Close notes"))
    if target in ("3", "4"):
        values["active"] = "false"
        values["closed_at"] = now_text()
    return values


# ----------------------------------------------------------------------------------------------------
# Change Management API
# ----------------------------------------------------------------------------------------------------
def _change(sim, method, rest, query, body, user, fault, base):
    store = sim.store
    if rest is None:
        raise HttpError(400, error_body("Requested URI does not represent any resource", ""))
    if method == "GET":
        sim.require(user, "change_read")
    else:
        sim.require(user, "change_write")
    kinds = ("normal", "standard", "emergency")
    # /change, /change/normal, ... (list); /change/standard/template[/id]
    if rest[:2] == ["standard", "template"]:
        def templates(text):
            return store.query("std_change_record_producer", text)
        if len(rest) > 2:
            record = store.get("std_change_record_producer", rest[2])
            if record is None:
                raise HttpError(404, error_body("No Record found", ""))
            return 200, {"result": _render(sim, "std_change_record_producer", record, None, "all", True, base)}, {}
        status, answer, headers = _list_answer(sim, "std_change_record_producer", query, templates, "v2", base, 500)
        answer["result"] = [_render(sim, "std_change_record_producer", store.get("std_change_record_producer",
                                                                                 row["sys_id"]), None, "all", True,
                                    base) for row in answer["result"]]
        return status, answer, headers
    if rest[:1] == ["worker"] and len(rest) == 2 and method == "GET":
        return _worker(sim, rest[1])
    if method == "POST" and rest[:1] == ["standard"] and len(rest) == 2:
        return _create_change(sim, "standard", _json(body), user, template=rest[1])
    if method == "POST" and (not rest or (len(rest) == 1 and rest[0] in ("normal", "emergency"))):
        values = _json(body)
        kind = rest[0] if rest else values.get("type", "normal")
        return _create_change(sim, kind, values, user)
    if method == "GET" and (not rest or (len(rest) == 1 and rest[0] in kinds)):
        def changes(text):
            rows = store.query("change_request", text)
            return [row for row in rows if not rest or row.get("type") == rest[0]]
        limit_default = 500
        status, answer, headers = _list_answer(sim, "change_request", query, changes, "v2", base, limit_default)
        answer["result"] = [_change_view(sim, store.get("change_request", row["sys_id"])) for row in answer["result"]]
        return status, answer, headers
    # /change[/<kind>]/<sys_id>[/...]
    if rest and rest[0] in kinds:
        rest = rest[1:]
    sys_id = rest[0] if rest else None
    record = store.get("change_request", sys_id) if sys_id else None
    if record is None:
        raise HttpError(404, error_body("No Record found", "Record doesn't exist or ACL restricts the record retrieval"))
    sub = rest[1] if len(rest) > 1 else None
    if sub is None:
        if method == "GET":
            return 200, {"result": _change_view(sim, record)}, {}
        if method in ("PATCH", "PUT"):
            values = _guard_change_update(sim, record, _json(body), fault)
            record, ignored = store.update("change_request", sys_id, values, by=user)
            answer = _change_view(sim, record)
            answer["__meta"] = {"ignoredFields": ignored}
            return 200, {"result": answer}, {}
        if method == "DELETE":
            sim.require(user, "change_write")
            store.delete("change_request", sys_id)
            return 204, None, {}
    if sub == "nextstates" and method == "GET":
        return 200, {"result": _next_states(record)}, {}
    if sub == "approvals" and method == "PATCH":
        values = _json(body)
        decision = values.get("state")
        if decision not in ("approved", "rejected"):
            raise HttpError(400, error_body("Invalid state", "state must be approved or rejected"))
        if decision == "rejected" and not values.get("comments"):
            raise HttpError(400, error_body("Comments are required", "comments are required to reject"))
        # the calling user's own approval record, then the change's approval rolled up from it
        approver = _user_sys_id(store, user)
        mine = [row for row in store.rows("sysapproval_approver")
                if row.get("sysapproval") == sys_id and row.get("approver") == approver]
        if mine:
            store.update("sysapproval_approver", mine[0]["sys_id"],
                         {"state": decision, "comments": values.get("comments") or ""}, by=user)
        else:
            store.insert("sysapproval_approver", {"approver": approver, "sysapproval": sys_id, "document_id": sys_id,
                                                  "source_table": "change_request", "state": decision,
                                                  "comments": values.get("comments") or ""}, by=user)
        store.update("change_request", sys_id, {"approval": decision, "work_notes": values.get("comments") or ""},
                     by=user)
        return 200, {"result": _change_view(sim, store.get("change_request", sys_id))}, {}
    if sub == "ci":
        if method == "GET":
            association = _param(query, "association_type")
            if association not in ("affected", "impacted", "offering"):
                raise HttpError(400, error_body("association_type is required", "affected, impacted or offering"))
            rows = [row for row in store.rows("task_ci") if row.get("task") == sys_id] if association == "affected" \
                else []
            limit = int(_param(query, "sysparm_limit", 500))
            offset = int(_param(query, "sysparm_offset", 0))
            result = []
            for row in rows[offset:offset + limit]:
                ci = store.get("cmdb_ci", row.get("ci_item")) or {}
                result.append({"sys_id": {"value": row["sys_id"], "display_value": row["sys_id"]},
                               "ci_item": {"value": row.get("ci_item"), "display_value": ci.get("name", "")},
                               "task": {"value": sys_id, "display_value": record.get("number")}})
            return 200, {"result": result}, {}
        if method == "POST":
            return _add_cis(sim, record, _json(body), base)
    if sub == "conflict":
        return _conflict(sim, method, record)
    raise HttpError(400, error_body("Requested URI does not represent any resource", "/".join(rest)))


def _user_sys_id(store, user_name):
    """The sys_user record of an authenticated user name ("" when it has none)."""
    rows = store.query("sys_user", "user_name=%s" % user_name) if user_name else []
    return rows[0]["sys_id"] if rows else ""


def _create_change(sim, kind, values, user, template=None):
    store = sim.store
    values = dict(values)
    extra = {"type": kind, "state": "-5", "approval": "not requested"}
    if template is not None:
        producer = store.get("std_change_record_producer", template)
        if producer is None or producer.get("active") != "true":
            raise HttpError(404, error_body("No Record found", "standard change template %s does not exist or is "
                                            "not active" % template))
        for pair in (producer.get("template_value") or "").split("^"):
            if "=" in pair:
                field, value = pair.split("=", 1)
                extra.setdefault(field, value)
        versions = [row for row in store.rows("std_change_producer_version")
                    if row.get("std_change_producer") == template]
        if versions:
            extra["std_change_producer_version"] = versions[-1]["sys_id"]
        for ignored in ("description", "backout_plan", "test_plan", "implementation_plan"):
            values.pop(ignored, None)
        extra["short_description"] = values.pop("short_description", None) or producer.get("short_description")
    # ASSUMPTION: ServiceNow's own unauthorized changes are recorded in Review
    # (it-service-management/change-management/unauth-change-properties.md); a create that flags the change
    # unauthorized may set that state, no other create may set a state
    wanted_state = values.pop("state", None)
    if str(values.get("unauthorized", "")).lower() == "true" and str(wanted_state) == "0":
        extra["state"] = "0"
    # task.opened_by and change_request.requested_by default to the user who creates the record
    extra["opened_by"] = extra["requested_by"] = _user_sys_id(store, user)
    merged = dict(extra)
    merged.update(dict((k, v) for k, v in values.items() if k not in ("type",)))
    merged["type"] = kind
    if merged.get("std_change_producer_version") is None:
        merged.pop("std_change_producer_version", None)
    record, ignored = store.insert("change_request", merged, by=user)
    view = _change_view(sim, record)
    view["__meta"] = {"ignoredFields": ignored}
    return 200, {"result": [view]}, {}


def _next_states(record):
    kind = record.get("type") or "normal"
    model = fixtures.STATE_MODEL.get(kind, fixtures.STATE_MODEL["normal"])
    current = record.get("state")
    available = [current] + list(model.get(current, []))
    transitions = []
    for target in model.get(current, []):
        needs = target in fixtures.NEEDS_APPROVAL and kind in fixtures.NEEDS_APPROVAL[target]
        passed = not needs or record.get("approval") == "approved"
        transitions.append({"from_state": current, "to_state": target, "transition_available": passed,
                            "automatic_transition": False,
                            "conditions": [{"condition": {"name": "Approval Status is Approved",
                                                          "description": "The change has been approved",
                                                          "sys_id": new_sys_id()}, "passed": passed}] if needs else []})
    return {"available_states": available, "state_label": dict((s, CHANGE_STATE_LABELS.get(s, s)) for s in available),
            "state_transitions": transitions}


def _add_cis(sim, record, values, base):
    if values.get("association_type") != "affected":
        raise HttpError(400, error_body("association_type must be affected", ""))
    ids = values.get("cmdb_ci_sys_ids") or []
    if isinstance(ids, str):
        ids = [item for item in ids.split(",") if item]
    worker_id = new_sys_id()
    sim.workers[worker_id] = {"task": record["sys_id"], "cis": list(ids), "polls": sim.options["worker_polls"],
                              "state": "3", "errors": []}
    return 202, {"result": {"messages": {"errorMessages": [], "infoMessages": ["Request is in progress"],
                                         "warningMessages": []},
                            "state": {"value": "3", "display_value": "In-Progress"},
                            "worker": {"link": "%s/api/sn_chg_rest/change/worker/%s" % (base, worker_id),
                                       "sysId": worker_id}}}, {}


def _worker(sim, worker_id):
    store = sim.store
    worker = sim.workers.get(worker_id)
    if worker is None:
        raise HttpError(404, error_body("No Record found", "worker %s" % worker_id))
    if worker["state"] == "3":
        worker["polls"] -= 1
        if worker["polls"] <= 0:
            existing = set(row.get("ci_item") for row in store.rows("task_ci") if row.get("task") == worker["task"])
            for ci in worker["cis"]:
                if store.get("cmdb_ci", ci) is None:
                    worker["errors"].append("Configuration item %s does not exist" % ci)
                    continue
                if ci not in existing:
                    store.insert("task_ci", {"task": worker["task"], "ci_item": ci}, by="system", save=False)
                    existing.add(ci)
            store.save()
            worker["state"] = "2" if worker["errors"] else "1"
    labels = {"1": "Complete", "2": "Error", "3": "In-Progress", "4": "Waiting"}
    return 200, {"result": {"state": {"value": worker["state"], "display_value": labels[worker["state"]]},
                            "messages": {"errorMessages": list(worker["errors"]), "infoMessages": [],
                                         "warningMessages": []}}}, {}


def _windows_overlap(a, b):
    return a["start_date"] and a["end_date"] and b["start_date"] and b["end_date"] and \
        a["start_date"] < b["end_date"] and b["start_date"] < a["end_date"]


def _compute_conflicts(sim, record):
    store = sim.store
    cis = [row.get("ci_item") for row in store.rows("task_ci") if row.get("task") == record["sys_id"]]
    found = []
    for other in store.rows("change_request"):
        if other["sys_id"] == record["sys_id"] or other.get("state") not in ("-2", "-1"):
            continue
        shared = [row.get("ci_item") for row in store.rows("task_ci")
                  if row.get("task") == other["sys_id"] and row.get("ci_item") in cis]
        if shared and _windows_overlap(record, other):
            for ci in shared:
                found.append({"change": {"value": other["sys_id"], "display_value": other.get("number")},
                              "type": {"value": "ci_already_scheduled",
                                       "display_value": "Configuration Item Already Scheduled"},
                              "ci": {"value": ci, "display_value": (store.get("cmdb_ci", ci) or {}).get("name")}})
    for blackout in sim.blackouts:
        if _windows_overlap(record, {"start_date": blackout["start"], "end_date": blackout["end"]}):
            for ci in cis:
                if blackout.get("ci") in (None, ci):
                    found.append({"change": {"value": record["sys_id"], "display_value": record.get("number")},
                                  "type": {"value": "blackout", "display_value": "Blackout"},
                                  "ci": {"value": ci, "display_value": (store.get("cmdb_ci", ci) or {}).get("name")},
                                  "schedule": {"value": "", "display_value": blackout.get("name", "Blackout")}})
    found.extend(copy.deepcopy(sim.injected_conflicts.get(record["sys_id"], [])))
    return found


def _conflict(sim, method, record):
    store = sim.store
    job = sim.conflict_jobs.get(record["sys_id"])
    if method == "POST":
        job = {"sys_id": new_sys_id(), "polls": sim.options["conflict_polls"], "last_run": now_text(),
               "conflicts": None}
        sim.conflict_jobs[record["sys_id"]] = job
        return 200, {"result": job["sys_id"]}, {}
    if method == "DELETE":
        sim.conflict_jobs.pop(record["sys_id"], None)
        return 204, None, {}
    if job is None:
        return 200, {"result": {"status": "Not Run", "last_run": "", "record_count": "0", "job_status": "0",
                                "conflicts": []}}, {}
    if job["conflicts"] is None:
        if job["polls"] > 0:
            job["polls"] -= 1
            return 200, {"result": {"status": "Running", "last_run": job["last_run"], "record_count": "0",
                                    "job_status": "1", "conflicts": []}}, {}
        job["conflicts"] = _compute_conflicts(sim, record)
        store.update("change_request", record["sys_id"], {
            "conflict_status": "Conflict" if job["conflicts"] else "No Conflict",
            "conflict_last_run": job["last_run"]}, by="system")
    # the documented quirk: status is "Conflict" whether or not there are conflicts
    return 200, {"result": {"status": "Conflict", "last_run": job["last_run"],
                            "record_count": str(len(job["conflicts"])), "job_status": "2",
                            "conflicts": job["conflicts"]}}, {}


# ----------------------------------------------------------------------------------------------------
# Attachment API
# ----------------------------------------------------------------------------------------------------
def _attachment(sim, method, rest, query, body, headers, user, base):
    store = sim.store
    if method == "POST" and rest == ["file"]:
        table = _param(query, "table_name")
        table_sys_id = _param(query, "table_sys_id")
        file_name = _param(query, "file_name")
        if not (table and table_sys_id and file_name):
            raise HttpError(400, error_body("Missing parameter", "table_name, table_sys_id and file_name are "
                                            "required"))
        if not store.schema.exists(table) or store.get(table, table_sys_id) is None:
            raise HttpError(404, error_body("No Record found", "%s %s does not exist" % (table, table_sys_id)))
        record, _ignored = store.insert("sys_attachment", {
            "file_name": file_name, "table_name": table, "table_sys_id": table_sys_id, "size_bytes": len(body),
            "content_type": headers.get("Content-Type") or "application/octet-stream"}, by=user, save=False)
        record["download_link"] = "%s/api/now/attachment/%s/file" % (base, record["sys_id"])
        record["hash"] = hashlib.sha256(body).hexdigest()
        store.store_attachment(record["sys_id"], body)
        store.save()
        return 201, {"result": dict(record)}, {"Location": "%s/api/now/attachment/%s" % (base, record["sys_id"])}
    if method == "GET" and not rest:
        def attachments(text):
            return store.query("sys_attachment", text)
        status, answer, more = _list_answer(sim, "sys_attachment", query, attachments, "v2", base, 1000)
        return status, answer, more
    if rest:
        record = store.get("sys_attachment", rest[0])
        if record is None:
            raise HttpError(404, error_body("No Record found", "attachment %s" % rest[0]))
        if method == "GET" and len(rest) == 1:
            return 200, {"result": dict(record)}, {}
        if method == "GET" and rest[1:] == ["file"]:
            return 200, None, {"__raw__": store.attachment_content(record["sys_id"]) or b"",
                               "Content-Type": record.get("content_type") or "application/octet-stream"}
        if method == "DELETE" and len(rest) == 1:
            store.delete("sys_attachment", record["sys_id"])
            return 204, None, {}
    raise HttpError(400, error_body("Requested URI does not represent any resource", "/".join(rest)))


# ----------------------------------------------------------------------------------------------------
# IRE
# ----------------------------------------------------------------------------------------------------
def _ire(sim, rest, query, body, user):
    store = sim.store
    query_only = bool(rest) and rest[0] in ("query", "queryEnhanced")
    source = _param(query, "sysparm_data_source")
    sources = fixtures.CHOICES[("cmdb_ci", "discovery_source")]
    if source is not None and source not in sources:
        raise HttpError(400, error_body("Invalid data source",
                                        "%s is not a choice of cmdb_ci.discovery_source" % source))
    payload = _json(body)
    items = payload.get("items")
    if not isinstance(items, list) or not items:
        raise HttpError(400, error_body("Invalid input", "items must be a non-empty list"))
    results = []
    sys_ids = []
    for item in items:
        result = _ire_item(sim, item, source, query_only, user)
        results.append(result)
        sys_ids.append(result.get("sysId"))
    relations = []
    for relation in payload.get("relations") or []:
        try:
            parent, child = sys_ids[int(relation["parent"])], sys_ids[int(relation["child"])]
        except (KeyError, IndexError, ValueError, TypeError):
            relations.append({"errors": [{"error": "INVALID_INPUT_DATA", "message": "bad relation %s" % relation}]})
            continue
        types = [row for row in store.rows("cmdb_rel_type") if row.get("name") == relation.get("type")]
        if not types:
            relations.append({"errors": [{"error": "INVALID_INPUT_DATA",
                                          "message": "no cmdb_rel_type %s" % relation.get("type")}]})
            continue
        if not parent or not child:
            relations.append({"errors": [{"error": "ABANDONED", "message": "an end of the relation failed"}]})
            continue
        existing = [row for row in store.rows("cmdb_rel_ci") if row.get("parent") == parent
                    and row.get("child") == child and row.get("type") == types[0]["sys_id"]]
        if existing:
            relations.append({"operation": "NO_CHANGE", "sysId": existing[0]["sys_id"], "className": "cmdb_rel_ci"})
        elif query_only:
            relations.append({"operation": "INSERT", "sysId": "", "className": "cmdb_rel_ci"})
        else:
            rel, _ignored = store.insert("cmdb_rel_ci", {"parent": parent, "child": child,
                                                         "type": types[0]["sys_id"]}, by=user, save=False)
            relations.append({"operation": "INSERT", "sysId": rel["sys_id"], "className": "cmdb_rel_ci"})
    if not query_only:
        store.save()
    result = {"items": results, "relations": relations, "additionalCommittedItems": []}
    return 200, {"result": [result] if sim.options["ire_result_as_array"] else result}, {}


def _rules_for(store, class_name):
    for rule in fixtures.IDENTIFICATION_RULES:
        if store.schema.is_a(class_name, rule["applies_to"]):
            return rule
    return None


def _ire_item(sim, item, source, query_only, user):
    store = sim.store
    class_name = item.get("className")
    values = dict(item.get("values") or {})
    answer = {"className": class_name, "operation": "", "sysId": "", "identifierEntrySysId": "",
              "identificationAttempts": [], "errorCount": 0, "errors": [], "warnings": []}
    if not class_name or not store.schema.exists(class_name) or not store.schema.is_a(class_name, "cmdb_ci"):
        answer["errors"].append({"error": "INVALID_INPUT_DATA",
                                 "message": "className %s is not a CMDB class" % class_name})
        answer["errorCount"] = 1
        return answer
    if item.get("internal_id"):
        answer["internal_id"] = item["internal_id"]
    rule = _rules_for(store, class_name)
    matched = None
    all_skipped = True
    for entry in rule["entries"]:
        search_on = class_name if entry["search_on"] == "@class" else entry["search_on"]
        attempt = {"identifierName": rule["name"], "attributes": list(entry["attributes"]),
                   "searchOnTable": search_on, "hybridEntryCiAttributes": []}
        candidates = None
        if entry.get("lookup"):
            wanted = [row for row in item.get("lookup") or [] if row.get("className") == entry["lookup"]]
            wanted_values = [row.get("values") or {} for row in wanted
                             if all((row.get("values") or {}).get(attr) for attr in entry["attributes"])]
            if wanted_values:
                owners = set()
                for row in store.rows(entry["lookup"]):
                    for want in wanted_values:
                        if all(row.get(attr) == str(want.get(attr)) for attr in entry["attributes"]) and \
                                row.get("valid", "true") != "false":
                            owners.add(row.get("cmdb_ci"))
                owners.discard(None)
                owners.discard("")
                candidates = [store.get("cmdb_ci", owner) for owner in owners]
                candidates = [ci for ci in candidates if ci is not None]
        elif all(values.get(attr) for attr in entry["attributes"]):
            candidates = [row for row in store.rows(search_on)
                          if all(row.get(attr) == str(values[attr]) for attr in entry["attributes"])]
        if candidates is None:
            attempt["attemptResult"] = "SKIPPED"
            answer["identificationAttempts"].append(attempt)
            continue
        all_skipped = False
        if not candidates:
            attempt["attemptResult"] = "NO_MATCH"
            answer["identificationAttempts"].append(attempt)
            continue
        if len(candidates) > 1:
            attempt["attemptResult"] = "MULTI_MATCH"
            answer["identificationAttempts"].append(attempt)
            answer["errors"].append({"error": "MULTI_MATCH", "message": "Found %d duplicate records in %s using "
                                     "identifier entry %s on %s" % (len(candidates), search_on, rule["name"],
                                                                    ",".join(entry["attributes"]))})
            answer["errorCount"] = len(answer["errors"])
            return answer
        attempt["attemptResult"] = "MATCHED"
        answer["identificationAttempts"].append(attempt)
        matched = candidates[0]
        break
    if matched is None and all_skipped:
        answer["errors"].append({"error": "MISSING_MATCHING_ATTRIBUTES",
                                 "message": "In payload missing minimum set of input values for criterion "
                                            "(identifier entry) attributes from rule %s" % rule["name"]})
        answer["errorCount"] = 1
        return answer
    known = store.schema.fields(class_name)
    clean = dict((field, str(value)) for field, value in values.items() if field in known)
    if source:
        clean["discovery_source"] = source
    if matched is None:
        answer["operation"] = "INSERT"
        if not query_only:
            record, _ignored = store.insert(class_name, clean, by=user, save=False)
            answer["sysId"] = record["sys_id"]
    else:
        answer["sysId"] = matched["sys_id"]
        current_class = matched["sys_class_name"]
        if current_class != class_name:
            if store.schema.is_a(class_name, current_class):
                answer["operation"] = "UPDATE_WITH_UPGRADE"
            elif store.schema.is_a(current_class, class_name):
                answer["operation"] = "UPDATE_WITH_DOWNGRADE"
            else:
                answer["operation"] = "UPDATE_WITH_SWITCH"
            if not query_only:
                store.move(matched["sys_id"], class_name)
                store.update(class_name, matched["sys_id"], clean, by=user, save=False)
        else:
            differs = any(matched.get(field, "") != value for field, value in clean.items()
                          if field != "discovery_source")
            answer["operation"] = "UPDATE" if differs else "NO_CHANGE"
            if differs and not query_only:
                store.update(class_name, matched["sys_id"], clean, by=user, save=False)
    if not query_only and answer["sysId"]:
        _ire_related(sim, item, answer["sysId"], class_name, source, user)
    return answer


def _ire_related(sim, item, sys_id, class_name, source, user):
    store = sim.store
    for lookup in item.get("lookup") or []:
        table = lookup.get("className")
        if table not in ("cmdb_serial_number", "cmdb_ci_network_adapter"):
            continue
        values = dict((k, str(v)) for k, v in (lookup.get("values") or {}).items())
        key = ("serial_number", "serial_number_type") if table == "cmdb_serial_number" else ("mac_address",)
        existing = [row for row in store.rows(table) if row.get("cmdb_ci") == sys_id
                    and all(row.get(k) == values.get(k) for k in key)]
        if not existing:
            store.insert(table, dict(values, cmdb_ci=sys_id), by=user, save=False)
    info = item.get("sys_object_source_info") or {}
    if info.get("source_native_key"):
        name = info.get("source_name") or source or ""
        rows = [row for row in store.rows("sys_object_source") if row.get("name") == name
                and row.get("id") == info["source_native_key"]]
        values = {"name": name, "id": info["source_native_key"], "target_sys_id": sys_id, "target_table": class_name,
                  "last_scan": info.get("source_recency_timestamp") or now_text(),
                  "source_feed": info.get("source_feed") or ""}
        if rows:
            store.update("sys_object_source", rows[0]["sys_id"], values, by=user, save=False)
        else:
            store.insert("sys_object_source", values, by=user, save=False)


# ----------------------------------------------------------------------------------------------------
# the control API (the test harness's, not ServiceNow's)
# ----------------------------------------------------------------------------------------------------
def _control(sim, method, path, query, body):
    parts = [part for part in path.split("/") if part][1:]
    payload = _json(body) if body else {}
    store = sim.store
    with store.lock:
        if parts == ["health"]:
            return 200, {"ok": True, "url": sim.url}, {}, None
        if parts == ["log"] and method == "GET":
            with sim.log_lock:
                return 200, {"requests": list(sim.log)}, {}, None
        if parts == ["log", "reset"]:
            with sim.log_lock:
                sim.log = []
            return 200, {"ok": True}, {}, None
        if parts == ["faults"] and method == "POST":
            for spec in payload if isinstance(payload, list) else [payload]:
                sim.faults.append(Fault(spec))
            return 200, {"faults": len(sim.faults)}, {}, None
        if parts == ["faults"] and method == "DELETE":
            sim.faults = []
            return 200, {"faults": 0}, {}, None
        if parts == ["faults"] and method == "GET":
            return 200, {"faults": [dict(f.params, hits=f.hits) for f in sim.faults]}, {}, None
        if parts == ["rate_limit"]:
            if method == "DELETE":
                sim.rate_limit = None
            else:
                sim.rate_limit = {"limit": int(payload["limit"]), "window": float(payload.get("window", 3600)),
                                  "reset": time.time() + float(payload.get("window", 3600)), "counts": {},
                                  "rule": new_sys_id()}
            return 200, {"ok": True}, {}, None
        if parts == ["users"]:
            sim.users.update(payload)
            for user, info in payload.items():
                if not store.query("sys_user", "user_name=%s" % user):
                    store.insert("sys_user", {"user_name": user, "name": info.get("name", user)}, by="system")
            return 200, {"ok": True}, {}, None
        if parts == ["api_keys"]:
            sim.api_keys.update(payload)
            return 200, {"ok": True}, {}, None
        if parts == ["oauth_clients"]:
            sim.oauth_clients.update(payload)
            return 200, {"ok": True}, {}, None
        if parts == ["token_lifetime"]:
            sim.token_lifetime = int(payload["seconds"])
            return 200, {"ok": True}, {}, None
        if parts == ["tokens", "revoke"]:
            sim.tokens = {}
            return 200, {"ok": True}, {}, None
        if parts == ["options"]:
            sim.options.update(payload)
            return 200, {"options": sim.options}, {}, None
        if parts == ["blackouts"]:
            sim.blackouts = list(payload)
            return 200, {"ok": True}, {}, None
        if len(parts) == 2 and parts[0] == "conflicts":
            sim.injected_conflicts[parts[1]] = list(payload)
            return 200, {"ok": True}, {}, None
        if len(parts) >= 2 and parts[0] == "records":
            table = parts[1]
            if method == "GET" and len(parts) == 2:
                return 200, {"records": store.query(table, _param(query, "query", ""))}, {}, None
            if method == "POST" and len(parts) == 2:
                record, _ignored = store.insert(table, payload, by=payload.pop("__by", "admin"))
                return 201, {"record": record}, {}, None
            if method == "PATCH" and len(parts) == 3:
                record, _ignored = store.update(table, parts[2], payload, by="admin")
                return 200, {"record": record}, {}, None
            if method == "DELETE" and len(parts) == 3:
                store.delete(table, parts[2])
                return 200, {"ok": True}, {}, None
        if len(parts) == 2 and parts[0] == "attachments" and method == "GET":
            content = store.attachment_content(parts[1])
            if content is None:
                return 404, {"error": "no attachment"}, {}, None
            return 200, None, {"Content-Type": "application/octet-stream"}, content
    return 404, {"error": "unknown control path %s" % path}, {}, None
