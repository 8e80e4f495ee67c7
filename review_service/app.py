# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The FastAPI application: HTML pages for people, a JSON API (``/api/v1``, OpenAPI) for tools.

Every route but ``/login``, ``/healthz`` and ``/static`` needs a signed-in person (``PUBLIC_PATHS``; the
security tests enumerate ``app.routes`` so a new route cannot escape). Pages use the session cookie (or a
trusted proxy's header), the API only bearer tokens, so a browser's ambient cookie can never drive the API,
and every form POST carries the session's CSRF token. Handlers are plain ``def`` functions: FastAPI runs them
in a bounded thread pool, each thread with its own system-of-record connection.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import secrets
import sys
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from ansible_collections.changeops.itsm.plugins.module_utils.errors import (
    BackendUnavailable,
    ChangeopsError,
    ConflictError,
    NotFound,
    ValidationError,
)
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.review_queries import COUNT_LIMIT

from ansible_collections.changeops.itsm.review_service import actions, views
from ansible_collections.changeops.itsm.review_service.config import ROLES
from ansible_collections.changeops.itsm.review_service.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Authenticator,
    Principal,
    tokens_equal,
)
from ansible_collections.changeops.itsm.review_service.store import Store

HERE = os.path.dirname(os.path.abspath(__file__))
#: paths readable without signing in (the sign-in page, a health probe, CSS and JS)
PUBLIC_PATHS = ("/login", "/healthz", "/static")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self';"
       " frame-ancestors 'none'; base-uri 'none'; connect-src 'self'")
EXPORT_LIMIT = 100000
#: seconds a thread may hold the GIL while another waits for it (Python's default: 0.005); see the lifespan
SWITCH_INTERVAL = 0.0005
CSV_COLUMNS = ("run_id", "started_at", "ended_at", "outcome", "categories", "authorisation_ref", "review_state",
               "acknowledgement", "user", "controller", "playbook", "environment", "host_count", "changed_host_count",
               "failed_host_count", "hosts")


class SignInRequired(Exception):
    pass


class Forbidden(Exception):
    def __init__(self, message, refusals=None):
        super(Forbidden, self).__init__(message)
        self.refusals = refusals or []


# -- API models (they make the OpenAPI document) ------------------------------------------------------
class ReviewIn(BaseModel):
    outcome: str = Field(description="accepted or follow-up")
    comment: str = Field("", description="required for follow-up")


class AcknowledgementIn(BaseModel):
    disposition: str = Field(description="retrospective-approval, incident-raised or reverted")
    comment: str = Field(description="what was found and decided")
    reference: str | None = Field(None, description="the incident raised (required for incident-raised)")


class DecisionIn(BaseModel):
    decision: str = Field(description="approved or rejected")
    comment: str = Field("", description="required for a rejection")


def _csv_cell(value):
    if isinstance(value, (list, tuple)):
        value = " ".join(str(item) for item in value)
    text = "" if value is None else str(value)
    # a spreadsheet runs a cell starting with these as a formula
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Headers(object):
    """Security headers on every response (and no caching of anything but CSS and JS).

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which runs each request through an extra task and
    memory streams: a third of the list page's time outside its own work at 20 concurrent clients.
    """

    HEADERS = [(b"content-security-policy", CSP.encode("latin-1")), (b"x-content-type-options", b"nosniff"),
               (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cached = scope["path"].startswith("/static")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = set(name.lower() for name, _value in headers)
                headers += [(name, value) for name, value in self.HEADERS if name not in present]
                if not cached and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = dict(message, headers=headers)
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def create_app(config, store=None):
    """The application for ``config`` (a ``ServiceConfig``)."""
    store = store or Store(config.backend)
    auth = Authenticator(config, store)
    sso = None
    if config.auth == "oidc":
        from ansible_collections.changeops.itsm.review_service.oidc import OidcClient
        sso = OidcClient(config, store)
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")), autoescape=True,
                                   auto_reload=False,  # (templates ship with the code: no stat per page)
                                   undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    templates.filters["short"] = lambda text, n=12: (text or "")[:n]
    templates.filters["when"] = lambda text: (text or "").replace("T", " ")[:19]
    templates.filters["json"] = lambda value: json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    templates.filters["redacted"] = views.render_redacted
    templates.globals.update(ROLES=ROLES, OUTCOMES=views.OUTCOMES, CATEGORIES=views.CATEGORIES,
                             REVIEW_STATES=views.REVIEW_STATES, ACK_STATES=views.ACK_STATES,
                             DISPOSITIONS=actions.DISPOSITIONS, PAGE_SIZES=views.PAGE_SIZES, quote=quote,
                             COUNT_LIMIT=COUNT_LIMIT,
                             urlencode=urlencode)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        import anyio.to_thread
        # handlers run in this many threads, each with its own connection to the system of record
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.threads
        # the event loop thread (HTTP, handing requests to the handler threads and back) waits for the GIL behind
        # a handler rendering a page: up to the interpreter's switch interval (5 ms) each time it wants it back,
        # several times a request. A shorter interval lets it in sooner: measured with 20 clients, the deep page's
        # throughput went from 33 to 99 requests/s (bench/review_service/run.py, docs/review-service.md)
        sys.setswitchinterval(SWITCH_INTERVAL)
        try:
            yield
        finally:
            store.close()

    app = FastAPI(title="changeops.itsm review service", version="1", lifespan=lifespan,
                  description="Recorded changes, their reviews and approvals. Every endpoint needs an API token "
                              "(Authorization: Bearer ...); create one on your account page.",
                  # served by openapi_document below, behind a token like every other route (FastAPI's own
                  # route would be public)
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.config = config
    app.state.store = store
    app.state.auth = auth
    app.add_middleware(_Headers)
    app.mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static")

    def remote(request):
        """The client's address: the peer, or what a trusted proxy in front says it saw (X-Forwarded-For)."""
        peer = request.client.host if request.client else None
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded and auth.trusted_peer(peer):
            return forwarded.split(",")[-1].strip()[:64] or peer
        return peer

    def render(request, name, status=200, principal=None, **context):
        template = templates.get_template(name)
        html = template.render(title=config.title, principal=principal, path=request.url.path,
                               backend=config.describe_backend(), read_notice=views.read_from_notice(read_source_of(request)),
                               **context)
        return HTMLResponse(html, status_code=status)

    # -- errors -------------------------------------------------------------------------------------------
    def wants_json(request):
        return request.url.path.startswith("/api/")

    @app.exception_handler(SignInRequired)
    def _sign_in(request, _exc):
        if wants_json(request):
            return JSONResponse({"error": "sign-in required: send Authorization: Bearer <API token>"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        target = request.url.path + ("?" + request.url.query if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)

    @app.exception_handler(Forbidden)
    def _forbidden(request, exc):
        if wants_json(request):
            return JSONResponse({"error": str(exc), "refusals": exc.refusals}, status_code=403)
        return render(request, "error.html.j2", 403, heading="Not allowed", message=str(exc), refusals=exc.refusals)

    @app.exception_handler(BackendUnavailable)
    def _unavailable(request, exc):
        message = ("The system of record cannot be reached right now (%s). Nothing was lost; try again in a "
                   "moment." % exc.message)
        if wants_json(request):
            return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "5"})
        return render(request, "error.html.j2", 503, heading="System of record unavailable", message=message,
                      refusals=[])

    @app.exception_handler(ChangeopsError)
    def _changeops(request, exc):
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, ConflictError) else \
            403 if isinstance(exc, actions.Refused) else 400
        refusals = exc.details.get("refusals") or []
        if wants_json(request):
            return JSONResponse({"error": exc.message, "refusals": refusals}, status_code=status)
        return render(request, "error.html.j2", status, heading="Refused" if status == 403 else "Cannot do that",
                      message=exc.message, refusals=refusals)

    @app.exception_handler(RequestValidationError)
    def _invalid(request, exc):
        problems = ["%s: %s" % (".".join(str(part) for part in error.get("loc", ())), error.get("msg"))
                    for error in exc.errors()]
        if wants_json(request):
            return JSONResponse({"error": "invalid request", "problems": problems}, status_code=422)
        return render(request, "error.html.j2", 400, heading="Invalid request", message="; ".join(problems),
                      refusals=[])

    @app.exception_handler(HTTPException)
    def _http(request, exc):
        if wants_json(request):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return render(request, "error.html.j2", exc.status_code, heading="Error %d" % exc.status_code,
                      message=str(exc.detail), refusals=[])

    @app.exception_handler(Exception)
    def _unexpected(request, exc):  # never a stack trace to the client; the server log keeps it
        logging.getLogger("changeops.review").exception("unexpected error on %s", request.url.path)
        if wants_json(request):
            return JSONResponse({"error": "internal error (see the service log)"}, status_code=500)
        return render(request, "error.html.j2", 500, heading="Something went wrong",
                      message="The service could not complete the request; the details are in its log.", refusals=[])

    # -- who is asking -----------------------------------------------------------------------------------
    def page_principal(request: Request):
        """The signed-in person of a page request (session cookie or trusted proxy header), or SignInRequired."""
        session_id = request.cookies.get(SESSION_COOKIE)
        principal = auth.session_principal(session_id) if session_id else None
        if config.auth == "proxy":
            peer = request.client.host if request.client else None
            name, groups, refused = auth.proxy_identity(request.headers, peer)
            if refused:
                auth.record_failure(request.headers.get(config.proxy_user_header), remote(request), refused, "proxy")
                raise Forbidden("sign-in refused: %s" % refused)
            if name is None:
                raise SignInRequired()
            if principal is not None and principal.name == name:
                principal.groups = tuple(groups)
                return principal
            roles = auth.proxy_roles(name, groups)
            if roles is None:
                auth.record_failure(name, remote(request), "account disabled", "proxy")
                raise Forbidden("the account %s is disabled" % name)
            principal = Principal(name, roles, "proxy", groups=groups)
            request.state.new_session = auth.start_session(principal)
            return principal
        if principal is None:
            raise SignInRequired()
        return principal

    def api_principal(request: Request):
        header = request.headers.get("authorization") or ""
        scheme, _sep, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SignInRequired()
        principal, refused = auth.token_principal(token.strip(), remote(request))
        if principal is None:
            if refused and refused.startswith("too many"):
                raise HTTPException(429, refused)
            raise SignInRequired()
        return principal

    def with_session_cookie(request, response):
        new = getattr(request.state, "new_session", None)
        if new:
            set_session_cookie(response, new)
        return response

    def set_session_cookie(response, session_id):
        response.set_cookie(SESSION_COOKIE, session_id, max_age=config.session_hours * 3600, path="/",
                            secure=config.secure_cookies, httponly=True, samesite="strict")

    def check_csrf(principal, token):
        if not tokens_equal(principal.csrf, token):
            raise Forbidden("the form's CSRF token is missing or wrong: reload the page and submit it again")

    def page(request, name, principal, **context):
        return with_session_cookie(request, render(request, name, principal=principal, **context))

    def sor():
        """The primary: sign-in, sessions, tokens, accounts, permission checks, every action and what validates it."""
        return store.get()

    def change_data_reader(request, principal):
        """The system of record for this request's change data: with a read replica configured (store.py), the
        replica when it is fit and has replayed this person's own newest action, else the primary."""
        reader, routed = store.reader(principal.name)
        request.state.read_from = (reader, routed)
        return reader

    def read_source_of(request):
        """Where this request's change data came from (None without a replica): the routing's answer, or the
        primary when the replica failed in the middle of the request (the backend then says why)."""
        state = getattr(request.state, "read_from", None)
        if not state or state[1] is None:
            return None
        reader, routed = state
        current = reader.read_source()
        if current and current["server"] != routed["server"]:
            return dict(routed, cause="error", **current)
        return routed

    def with_read_from(request, body):
        """An API answer with ``read_from`` when a read replica is configured."""
        where = read_source_of(request)
        if where is not None:
            body = dict(body, read_from=where)
        return body

    def acted(principal):
        """After an action: this person's next pages must see it, whatever the replica has replayed. The action
        has committed by now: failing to note its position must not answer the action with an error (the next
        page may then come from a replica that has not replayed it yet, and its banner says how far behind)."""
        try:
            store.note_write(principal.name)
        except BackendUnavailable as exc:
            logging.getLogger("changeops.review").warning(
                "could not note %s's newest ledger position for read-your-writes: %s", principal.name, exc)

    # -- public ----------------------------------------------------------------------------------------------
    @app.get("/healthz", include_in_schema=False)
    def healthz():
        """Liveness and whether the system of record answers (no data)."""
        try:
            store.get().head()
        except BackendUnavailable:
            return PlainTextResponse("system of record unavailable\n", status_code=503)
        return PlainTextResponse("ok\n")

    def safe_next(target):
        """Where to go after signing in: a path of this service, else the change list. Browsers read a backslash
        as a slash and drop tabs and newlines, so ``/\\evil.example`` or ``/<TAB>/evil.example`` would leave
        the site like ``//evil.example``: refused with them."""
        if not target or not target.startswith("/") or target.startswith("//"):
            return "/changes"
        if "\\" in target or any(ord(char) < 0x21 or ord(char) == 0x7f for char in target):
            return "/changes"
        return target

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/changes"):  # pylint: disable=redefined-builtin
        if config.auth == "proxy":
            return render(request, "error.html.j2", 401, heading="Sign in through your single sign-on",
                          message="This service trusts the sign-in of the web server in front of it; open it through "
                                  "that address.", refusals=[])
        if sso is not None:
            return render(request, "login.html.j2", csrf="", next=safe_next(next), error=None, username="",
                          sso=config.oidc_display_name)
        token = secrets.token_urlsafe(32)
        response = render(request, "login.html.j2", csrf=token, next=safe_next(next), error=None, username="",
                          sso=None)
        response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path="/login", secure=config.secure_cookies,
                            httponly=True, samesite="strict")
        return response

    @app.post("/login", include_in_schema=False)
    def login(request: Request, username: str = Form(""), password: str = Form(""), csrf_token: str = Form(""),
              next: str = Form("/changes")):  # pylint: disable=redefined-builtin
        if config.auth != "local":
            raise HTTPException(404, "password sign-in is off: this service uses single sign-on")
        if not tokens_equal(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token):
            raise Forbidden("the sign-in form's CSRF token is missing or wrong: reload the sign-in page")
        principal, error = auth.password_sign_in(username, password, remote(request))
        if principal is None:
            token = secrets.token_urlsafe(32)
            status = 429 if error.startswith("too many") else 401
            response = render(request, "login.html.j2", status, csrf=token, next=safe_next(next), error=error,
                              username=username[:100], sso=None)
            response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path="/login", secure=config.secure_cookies,
                                httponly=True, samesite="strict")
            return response
        response = RedirectResponse(safe_next(next), status_code=303)
        set_session_cookie(response, auth.start_session(principal))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    # -- single sign-on (OpenID Connect: oidc.py) --------------------------------------------------------------
    @app.get("/login/oidc", include_in_schema=False)
    def oidc_begin(request: Request, next: str = "/changes"):  # pylint: disable=redefined-builtin
        if sso is None:
            raise HTTPException(404, "single sign-on is not configured (CHANGEOPS_REVIEW_AUTH=oidc)")
        limited = auth.rate_limited(None, remote(request))
        if limited:
            raise HTTPException(429, limited)
        return RedirectResponse(sso.begin(safe_next(next)), status_code=303)

    @app.get("/login/oidc/callback", include_in_schema=False)
    def oidc_callback(request: Request):
        from ansible_collections.changeops.itsm.review_service.oidc import SignInRefused
        if sso is None:
            raise HTTPException(404, "single sign-on is not configured (CHANGEOPS_REVIEW_AUTH=oidc)")
        address = remote(request)
        limited = auth.rate_limited(None, address)
        if limited:
            auth.record_failure(None, address, "rate-limited", "oidc")
            raise HTTPException(429, limited)
        name = None
        try:
            claims, target = sso.finish(request.query_params)
            name, groups = sso.identity(claims)
        except SignInRefused as exc:
            auth.record_failure(name, address, str(exc)[:300], "oidc")
            return render(request, "error.html.j2", 401, heading="Single sign-on refused", message=str(exc),
                          refusals=[])
        roles = auth.proxy_roles(name, groups)
        if roles is None:
            auth.record_failure(name, address, "account disabled", "oidc")
            return render(request, "error.html.j2", 403, heading="Account disabled",
                          message="the account %s is disabled" % name, refusals=[])
        principal = Principal(name, roles, "oidc", display_name=claims.get("name"), groups=groups)
        response = RedirectResponse(safe_next(target), status_code=303)
        set_session_cookie(response, auth.start_session(principal, groups=groups))
        return response

    # -- pages -----------------------------------------------------------------------------------------------
    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf_token: str = Form(""), principal=Depends(page_principal)):
        check_csrf(principal, csrf_token)
        auth.end_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", include_in_schema=False)
    def home(request: Request, principal=Depends(page_principal)):
        return with_session_cookie(request, RedirectResponse("/changes", status_code=303))

    # The two pages people (and the bench) read most take one hand-off to a handler thread for the session
    # look-up, the query and the rendering together: as a sync dependency plus a sync handler, FastAPI hands each
    # to the thread pool on its own, and every hand-off waits for the GIL, and on a busy machine for a core.
    @app.get("/changes", include_in_schema=False)
    async def changes_page(request: Request):
        return await run_in_threadpool(list_page, request)

    def list_page(request):
        principal = page_principal(request)
        query = views.ListQuery(request.query_params)
        listing = views.change_list(change_data_reader(request, principal), query)
        return page(request, "changes.html.j2", principal, listing=listing, query=query)

    def export_rows(request, principal):
        """Every matching change (up to EXPORT_LIMIT), in the list's order: along the keyset cursor in time
        order, by offset (at most MAX_OFFSET deep) in another."""
        query = views.ListQuery(request.query_params)
        reader = change_data_reader(request, principal)
        rows, before, after, offset = [], query.before, query.after, 0
        while len(rows) < EXPORT_LIMIT:
            page = reader.list_change_events(query.filters, sort=query.sort, descending=query.descending, limit=250,
                                             offset=offset, before=before, after=after)
            rows.extend(page["rows"])
            if query.sort != "started_at":
                offset += 250
                if len(page["rows"]) < 250 or offset > views.MAX_OFFSET:
                    break
                continue
            cursor = page["older"] if query.descending else page["newer"]
            if cursor is None:
                break
            before, after = (cursor, None) if query.descending else (None, cursor)
        return rows[:EXPORT_LIMIT]

    @app.get("/changes/export.csv", include_in_schema=False)
    def export_csv(request: Request, principal=Depends(page_principal)):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for row in export_rows(request, principal):
            writer.writerow([_csv_cell(row.get(column)) for column in CSV_COLUMNS])
        return with_session_cookie(request, Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="changes.csv"'}))

    @app.get("/changes/export.json", include_in_schema=False)
    def export_json(request: Request, principal=Depends(page_principal)):
        body = json.dumps({"changes": export_rows(request, principal)}, indent=1, sort_keys=True, ensure_ascii=False)
        return with_session_cookie(request, Response(body, media_type="application/json", headers={
            "Content-Disposition": 'attachment; filename="changes.json"'}))

    @app.get("/changes/export.html", include_in_schema=False)
    def export_register(request: Request, principal=Depends(page_principal)):
        """The static change register of a date range: the audit pack's export."""
        from ansible_collections.changeops.itsm.plugins.module_utils import change_register
        from ansible_collections.changeops.itsm.plugins.plugin_utils.register_render import RegisterRenderer
        query = views.ListQuery(request.query_params)
        since = query.filters["from"] + "T00:00:00Z" if query.filters["from"] else None
        until = query.filters["to"] + "T23:59:59.999999Z" if query.filters["to"] else None
        if not since:
            raise ValidationError("from: an export of the register needs a date range (from, and optionally to)")
        register = change_register.build_register(
            change_data_reader(request, principal), since=since, until=until,
            title="Change register %s to %s" % (query.filters["from"], query.filters["to"] or "now"))
        renderer = RegisterRenderer()
        html = renderer.render_html(register, change_register.fingerprint(register, renderer.digest))
        return with_session_cookie(request, Response(html, media_type="text/html; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="change-register-%s.html"' % query.filters["from"],
            # the register carries its own CSP with hashes for its inline script and style
            "Content-Security-Policy": "sandbox allow-scripts; default-src 'none'"}))

    def change_page(request, principal, run_id, notice=None, error=None, refusals=(), status=200):
        view = views.change_view(change_data_reader(request, principal), run_id)
        if view is None:
            raise NotFound("no change event %s" % run_id)
        return with_session_cookie(request, render(
            request, "change.html.j2", status, principal=principal, view=view, notice=notice, error=error,
            refusals=list(refusals), can_review=principal.has("reviewer"), can_cab=principal.has("cab")))

    @app.get("/changes/{run_id}", include_in_schema=False)
    async def change_detail(request: Request, run_id: str):
        return await run_in_threadpool(lambda: change_page(request, page_principal(request), run_id))

    def act(request, principal, run_id, action):
        try:
            action()
        except (actions.Refused, ValidationError, ConflictError) as exc:
            status = 403 if isinstance(exc, actions.Refused) else 409 if isinstance(exc, ConflictError) else 400
            return change_page(request, principal, run_id, error=exc.message,
                               refusals=exc.details.get("refusals") or [], status=status)
        acted(principal)
        return with_session_cookie(request, RedirectResponse("/changes/%s?done=1" % quote(run_id), status_code=303))

    @app.post("/changes/{run_id}/review", include_in_schema=False)
    def review_form(request: Request, run_id: str, outcome: str = Form(...), comment: str = Form(""),
                    csrf_token: str = Form(""), principal=Depends(page_principal)):
        check_csrf(principal, csrf_token)
        return act(request, principal, run_id, lambda: actions.sign_off(
            sor(), principal, run_id, outcome, comment, config.policy_path))

    @app.post("/changes/{run_id}/acknowledge", include_in_schema=False)
    def acknowledge_form(request: Request, run_id: str, disposition: str = Form(...), comment: str = Form(""),
                         reference: str = Form(""), csrf_token: str = Form(""), principal=Depends(page_principal)):
        check_csrf(principal, csrf_token)
        return act(request, principal, run_id, lambda: actions.acknowledge(
            sor(), principal, run_id, disposition, comment, reference, config.policy_path))

    @app.get("/cis/{ci_id}", include_in_schema=False)
    def ci_page(request: Request, ci_id: str, principal=Depends(page_principal)):
        view = views.ci_view(change_data_reader(request, principal), ci_id)
        if view is None:
            raise NotFound("no configuration item %s" % ci_id)
        return page(request, "ci.html.j2", principal, view=view)

    @app.get("/change-requests", include_in_schema=False)
    def change_requests_page(request: Request, state: str = "", principal=Depends(page_principal)):
        state = views._choice("state", state, views.change_requests.STATES)  # pylint: disable=protected-access
        records = change_data_reader(request, principal).find_change_requests(state=state, limit=500)
        return page(request, "change_requests.html.j2", principal, records=records, state=state)

    def change_request_page(request, principal, number, error=None, refusals=(), status=200):
        view = views.change_request_view(change_data_reader(request, principal), number)
        if view is None:
            raise NotFound("no change request %s" % number)
        return with_session_cookie(request, render(
            request, "change_request.html.j2", status, principal=principal, view=view, error=error,
            refusals=list(refusals), can_cab=principal.has("cab")))

    @app.get("/change-requests/{number}", include_in_schema=False)
    def change_request_detail(request: Request, number: str, principal=Depends(page_principal)):
        return change_request_page(request, principal, number)

    @app.post("/change-requests/{number}/decision", include_in_schema=False)
    def decision_form(request: Request, number: str, decision: str = Form(...), comment: str = Form(""),
                      csrf_token: str = Form(""), principal=Depends(page_principal)):
        check_csrf(principal, csrf_token)
        try:
            actions.decide_change_request(sor(), principal, number, decision, comment, config.policy_path)
        except (actions.Refused, ValidationError, ConflictError) as exc:
            status = 403 if isinstance(exc, actions.Refused) else 409 if isinstance(exc, ConflictError) else 400
            return change_request_page(request, principal, number, error=exc.message,
                                       refusals=exc.details.get("refusals") or [], status=status)
        acted(principal)
        return with_session_cookie(request, RedirectResponse("/change-requests/%s" % quote(number), status_code=303))

    @app.get("/account", include_in_schema=False)
    def account_page(request: Request, principal=Depends(page_principal)):
        return page(request, "account.html.j2", principal, tokens=sor().find_review_tokens(principal.name),
                    new_token=None)

    @app.post("/account/tokens", include_in_schema=False)
    def new_token(request: Request, label: str = Form(""), csrf_token: str = Form(""),
                  principal=Depends(page_principal)):
        check_csrf(principal, csrf_token)
        token, _token_id = auth.issue_token(principal, principal.name, label.strip()[:100] or None, principal.identity())
        return page(request, "account.html.j2", principal, tokens=sor().find_review_tokens(principal.name),
                    new_token=token)

    @app.post("/account/tokens/{token_id}/revoke", include_in_schema=False)
    def revoke_token(request: Request, token_id: str, csrf_token: str = Form(""), principal=Depends(page_principal)):
        check_csrf(principal, csrf_token)
        # the owner comes from the token itself: an administrator revoking someone's token records that person as
        # its owner, and a token that does not exist (or is not yours, unless you are an administrator) is a 404
        # with nothing recorded
        found = [token for token in sor().find_review_tokens(None if principal.has("admin") else principal.name)
                 if token["token_id"] == token_id]
        if not found:
            raise NotFound("no token %s%s" % (token_id, "" if principal.has("admin") else " of yours"))
        auth.revoke_token(principal, token_id, found[0]["name"])
        return with_session_cookie(request, RedirectResponse("/account", status_code=303))

    def require_admin(principal):
        if not principal.has("admin"):
            raise Forbidden("%s may not manage accounts: the admin role is needed" % principal.name,
                            [{"rule": "role.admin", "reason": "the admin role is needed"}])

    @app.get("/admin/accounts", include_in_schema=False)
    def accounts_page(request: Request, principal=Depends(page_principal)):
        require_admin(principal)
        return page(request, "accounts.html.j2", principal, accounts=sor().find_review_accounts(),
                    audit=sor().find_review_audit(limit=50))

    @app.post("/admin/accounts", include_in_schema=False)
    def save_account(request: Request, name: str = Form(...), display_name: str = Form(""), password: str = Form(""),
                     roles: list[str] = Form([]), disabled: str = Form(""), csrf_token: str = Form(""),
                     principal=Depends(page_principal)):
        check_csrf(principal, csrf_token)
        require_admin(principal)
        actions.save_account(sor(), principal.identity(), name, roles, display_name.strip() or None, bool(disabled))
        if password:
            actions.set_password(sor(), principal.identity(), name.strip(), password)
        return with_session_cookie(request, RedirectResponse("/admin/accounts", status_code=303))

    # -- the JSON API ---------------------------------------------------------------------------------------
    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi_document(principal=Depends(api_principal)):
        return JSONResponse(app.openapi())

    @app.get("/api/v1/me", tags=["accounts"])
    def api_me(principal=Depends(api_principal)):
        """Who the token acts as, and their roles."""
        return {"name": principal.name, "roles": sorted(principal.roles), "identity": principal.identity()}

    @app.get("/api/v1/changes", tags=["changes"])
    def api_changes(request: Request, principal=Depends(api_principal),
                    page: int = Query(1, ge=1), per_page: int = Query(50, ge=1, le=250),  # pylint: disable=unused-argument
                    sort: str = Query("started_at"), dir: str = Query("desc"),  # pylint: disable=redefined-builtin,unused-argument
                    q: str | None = None, host: str | None = None, service: str | None = None,  # pylint: disable=unused-argument
                    environment: str | None = None, outcome: str | None = None, category: str | None = None,  # pylint: disable=unused-argument
                    review: str | None = None, ack: str | None = None, all: bool = False,  # pylint: disable=unused-argument,redefined-builtin
                    ref: str | None = None,  # pylint: disable=unused-argument
                    before: int | None = Query(None, description="cursor: changes older than this row's cursor"),  # pylint: disable=unused-argument
                    after: int | None = Query(None, description="cursor: changes newer than this row's cursor"),  # pylint: disable=unused-argument
                    counts: bool = True):
        """Change events matching the filters, newest first: one page, the total, and counts per facet.

        ``from``/``to`` (query parameters, UTC days YYYY-MM-DD inclusive) bound the start time. Follow
        ``links.next`` (a keyset cursor: every page costs the same however deep) to read them all.
        """
        query = views.ListQuery(request.query_params)
        listing = views.change_list(change_data_reader(request, principal), query, with_counts=counts)
        listing["links"] = {"self": "/api/v1/changes?" + urlencode(query.params())}
        if query.sort == "started_at":
            onward = listing["older"] if query.descending else listing["newer"]
            back = listing["newer"] if query.descending else listing["older"]
            if onward is not None:
                listing["links"]["next"] = "/api/v1/changes?" + urlencode(query.params(
                    **({"before": onward} if query.descending else {"after": onward})))
            if back is not None:
                listing["links"]["prev"] = "/api/v1/changes?" + urlencode(query.params(
                    **({"after": back} if query.descending else {"before": back})))
        elif query.page < listing["pages"] and query.page < listing["max_page"]:
            listing["links"]["next"] = "/api/v1/changes?" + urlencode(query.params(page=query.page + 1))
        return with_read_from(request, listing)

    @app.get("/api/v1/changes/{run_id}", tags=["changes"])
    def api_change(request: Request, run_id: str, principal=Depends(api_principal)):
        """One change: plays, gate decisions and reasons, per-host changes with diffs, evidence, CIs, reviews,
        acknowledgements and its place in the hash chain."""
        view = views.change_view(change_data_reader(request, principal), run_id)
        if view is None:
            raise NotFound("no change event %s" % run_id)
        return with_read_from(request, view)

    @app.post("/api/v1/changes/{run_id}/reviews", tags=["actions"], status_code=201)
    def api_review(run_id: str, body: ReviewIn, principal=Depends(api_principal)):
        """Sign off a change (reviewer role; the policy's review rules)."""
        review = actions.sign_off(sor(), principal, run_id, body.outcome, body.comment, config.policy_path)
        acted(principal)
        return review

    @app.post("/api/v1/changes/{run_id}/acknowledgements", tags=["actions"], status_code=201)
    def api_acknowledge(run_id: str, body: AcknowledgementIn, principal=Depends(api_principal)):
        """Acknowledge an unauthorised change with a disposition (reviewer role; cab for retrospective approval)."""
        acknowledgement = actions.acknowledge(sor(), principal, run_id, body.disposition, body.comment, body.reference,
                                              config.policy_path)
        acted(principal)
        return acknowledgement

    @app.get("/api/v1/cis/{ci_id}", tags=["cmdb"])
    def api_ci(request: Request, ci_id: str, principal=Depends(api_principal)):
        """A configuration item, its ledger history and the changes that touched it."""
        view = views.ci_view(change_data_reader(request, principal), ci_id)
        if view is None:
            raise NotFound("no configuration item %s" % ci_id)
        return with_read_from(request, view)

    @app.get("/api/v1/change-requests", tags=["change requests"])
    def api_change_requests(request: Request, principal=Depends(api_principal), state: str | None = None,
                            limit: int = Query(100, ge=1, le=1000)):
        """Change requests, newest first."""
        state = views._choice("state", state, views.change_requests.STATES)  # pylint: disable=protected-access
        records = change_data_reader(request, principal).find_change_requests(state=state, limit=limit)
        return with_read_from(request, {"change_requests": records})

    @app.get("/api/v1/change-requests/{number}", tags=["change requests"])
    def api_change_request(request: Request, number: str, principal=Depends(api_principal)):
        """A change request, its workflow (next states, history) and the runs it authorised."""
        view = views.change_request_view(change_data_reader(request, principal), number)
        if view is None:
            raise NotFound("no change request %s" % number)
        return with_read_from(request, view)

    @app.post("/api/v1/change-requests/{number}/decisions", tags=["actions"], status_code=201)
    def api_decide(number: str, body: DecisionIn, principal=Depends(api_principal)):
        """Approve or reject a change request (cab role; the policy's separation of duties)."""
        record, changed = actions.decide_change_request(sor(), principal, number, body.decision, body.comment,
                                                        config.policy_path)
        if changed:
            acted(principal)
        return {"change_request": record, "changed": changed}

    return app
