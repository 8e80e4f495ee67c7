# -*- coding: utf-8 -*-
"""The review service's security, against the real server (uvicorn on loopback) on both backends.

* every route of the application (enumerated from ``app.routes``, so a new route cannot escape) refuses an
  anonymous request, pages with a redirect to the sign-in page and the API with 401, and shows no data;
* a form POST without the session's CSRF token is refused; the API ignores session cookies;
* a viewer cannot act, in a page or through the API; roles and the policy's rules say why;
* the session cookie's flags; sign-out ends the session;
* the sign-in rate limit, and a ledger entry for every sign-in failure;
* no secret planted in a real ansible-playbook run appears in any page or API answer;
* the service says clearly that the system of record is unavailable (SQLite locked, PostgreSQL stopped)
  and recovers, never a stack trace.
"""

from __future__ import annotations

import html
import re
import sqlite3
import uuid
from urllib.parse import urlencode

import pytest

from support.backends import backend_config
from support.change_requests import change_request
from support.project import Project
from support.review_service import (
    ADMIN,
    Client,
    ServiceProcess,
    api,
    api_token,
    create_account,
    request,
    signed_in,
)

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record
from ansible_collections.changeops.itsm.review_service.app import PUBLIC_PATHS, create_app
from ansible_collections.changeops.itsm.review_service.config import ServiceConfig

from register_fixtures import fill_synthetic_ledger
from test_recorder_secrets import LEAKY_MODULE, secret

pytestmark = [pytest.mark.integration]

PASSWORD = "correct-horse-battery"


@pytest.fixture
def service(backend_env, tmp_path):
    with open_system_of_record(backend_config(backend_env)) as sor:
        fill_synthetic_ledger(sor, 24, hosts_per_run=2, host_pool=6)
        number = change_request(sor, short_description="security test change", validate_cis=False)["number"]
        for step in ("assess", "authorise"):
            change_request(sor, number=number, state=step)
    process = ServiceProcess(backend_env, tmp_path, extra_env={"CHANGEOPS_REVIEW_LOGIN_FAILURES": "3"}).start()
    yield process
    process.stop()


def _known(sor):
    event = sor.list_change_events({"category": "unauthorised"}, limit=1)["rows"][0]
    ci = sor.find_cis(limit=1)[0]
    requests = sor.find_change_requests(limit=1)
    return {"run_id": event["run_id"], "ci_id": ci["ci_id"], "number": requests[0]["number"] if requests else "CHG0000001",
            "token_id": "abcdef123456"}


def _routes():
    app = create_app(ServiceConfig(environ={"CHANGEOPS_SQLITE_PATH": "/nonexistent/never-opened.sqlite"}))
    found = []
    for route in app.routes:
        path = getattr(route, "path", "")
        for method in sorted(getattr(route, "methods", None) or ["GET"]):
            if method in ("HEAD", "OPTIONS"):
                continue
            found.append((method, path))
    return found


def test_every_route_refuses_anonymous_requests(service, backend_env):
    routes = _routes()
    assert ("GET", "/changes") in routes and ("POST", "/api/v1/change-requests/{number}/decisions") in routes
    with open_system_of_record(backend_config(backend_env)) as sor:
        known = _known(sor)
        secret_words = [known["run_id"]] + [ci["name"] for ci in sor.find_cis()]
    checked = 0
    for method, template in routes:
        if template.startswith(PUBLIC_PATHS):
            continue
        path = template.format(**known)
        status, headers, body = request(service.base, method, path, body="" if method == "POST" else None,
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        headers = dict((name.lower(), value) for name, value in headers)
        if path.startswith("/api/"):
            assert status == 401, (method, path, status, body[:300])
            assert headers.get("www-authenticate") == "Bearer"
        else:
            assert status == 303 and headers["location"].startswith("/login?next="), (method, path, status, body[:300])
        for word in secret_words:
            assert word not in body, "%s %s shows %s to an anonymous client" % (method, path, word)
        # every answer, refusals too, carries the security headers and is not cached
        assert (headers.get("x-frame-options"), headers.get("x-content-type-options")) == ("DENY", "nosniff"), path
        assert "default-src 'none'" in headers.get("content-security-policy", ""), path
        assert headers.get("cache-control") == "no-store", path
        checked += 1
    assert checked >= 20, routes
    # the public ones show nothing of the record either
    for path in ("/login", "/healthz", "/static/service.css"):
        status, headers, body = request(service.base, "GET", path)
        assert status == 200 and known["run_id"] not in body
        headers = dict((name.lower(), value) for name, value in headers)
        assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]
        assert (headers.get("cache-control") == "no-store") == (not path.startswith("/static")), (path, headers)
    # an API token of nobody, and a cookie on the API, are refused too
    assert api(service.base, "GET", "/api/v1/changes", "cor_" + "x" * 43)[0] == 401
    admin = signed_in(service.base, *ADMIN)
    status, _headers, _body = admin.get("/api/v1/changes")
    assert status == 401, "a session cookie must not open the API (it would make the API CSRF-able)"


def test_csrf_roles_cookies_and_sign_out(service, backend_env):
    with open_system_of_record(backend_config(backend_env)) as sor:
        known = _known(sor)
    admin = Client(service.base)
    status, headers, _text = admin.login(*ADMIN)
    assert status == 303
    cookie = [value for name, value in admin.last_headers if name.lower() == "set-cookie"
              and value.startswith("changeops_session=")][0]
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "secure" in flags and "samesite=strict" in flags and "path=/" in flags, cookie
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    create_account(service.base, admin, "vera", ["viewer"], PASSWORD)
    create_account(service.base, admin, "rita", ["viewer", "reviewer"], PASSWORD)
    run_id = known["run_id"]

    # CSRF: the reviewer's form without (or with another session's) token is refused, with it accepted
    rita = signed_in(service.base, "rita", PASSWORD)
    status, _h, text = rita.post("/changes/%s/review" % run_id, {"outcome": "accepted", "comment": "no token"})
    assert status == 403 and "CSRF" in text
    other = admin.csrf("/changes")
    status, _h, text = rita.post("/changes/%s/review" % run_id, {"outcome": "accepted", "csrf_token": other})
    assert status == 403 and "CSRF" in text
    status, headers, _text = rita.post("/changes/%s/review" % run_id,
                                       {"outcome": "accepted", "csrf_token": rita.csrf("/changes/%s" % run_id)})
    assert status == 303, _text[:500]
    # the sign-in form has its own token too
    stranger = Client(service.base)
    status, _h, text = stranger.post("/login", {"username": "rita", "password": PASSWORD, "csrf_token": "forged"})
    assert status == 403 and "changeops_session" not in str(stranger.cookies)

    # a viewer cannot act: no form on the page, refused by the service and by its API
    vera = signed_in(service.base, "vera", PASSWORD)
    page = vera.get("/changes/%s" % run_id)[2]
    assert 'id="review-form"' not in page and "Signing off needs the reviewer role" in page
    form = {"outcome": "accepted", "csrf_token": vera.csrf("/changes/%s" % run_id)}
    status, _h, text = vera.post("/changes/%s/review" % run_id, form)
    assert status == 403 and "the reviewer role is needed" in text
    token = api_token(vera)
    status, answer = api(service.base, "POST", "/api/v1/changes/%s/reviews" % run_id, token, {"outcome": "accepted"})
    assert status == 403 and answer["refusals"][0]["rule"] == "role.reviewer", answer
    status, answer = api(service.base, "POST", "/api/v1/changes/%s/acknowledgements" % run_id, token,
                         {"disposition": "reverted", "comment": "rolled back"})
    assert status == 403, answer
    status, answer = api(service.base, "POST", "/api/v1/change-requests/%s/decisions" % known["number"], token,
                         {"decision": "approved"})
    assert status == 403 and answer["refusals"][0]["rule"] == "role.cab", answer
    status, _h, _t = vera.get("/admin/accounts")
    assert status == 403
    with open_system_of_record(backend_config(backend_env)) as sor:
        reviews = sor.find_reviews(run_id=run_id)
        assert [(review["reviewer"], review["reviewer_identity"]) for review in reviews] == [
            ("rita", {"name": "rita", "source": "review-service"})], "only rita's review is recorded"
        assert sor.list_change_events({"q": run_id[:12]}, limit=1)  # still readable

    # sign-out ends the session on the server: the old cookie no longer opens anything
    old = dict(rita.cookies)
    status, headers, _text = rita.post("/logout", {"csrf_token": rita.csrf("/changes")})
    assert status == 303 and headers["location"] == "/login"
    replay = Client(service.base)
    replay.cookies = old
    assert replay.get("/changes")[0] == 303


#: ``next`` after signing in, and where the service may send the browser: each row a form of open redirect a
#: browser would follow off the site (Chromium reads ``/\\host`` and ``/<TAB>/host`` as ``//host``)
REDIRECT_ROWS = [
    ("/changes?outcome=failed", "/changes?outcome=failed"),
    ("//evil.example/changes", "/changes"), ("https://evil.example/", "/changes"),
    ("/\\evil.example", "/changes"), ("/\t/evil.example", "/changes"), ("/\n/evil.example", "/changes"),
    ("\\\\evil.example", "/changes"), (" //evil.example", "/changes"), ("javascript:alert(1)", "/changes"),
    # an encoded CRLF stays encoded: a path of this service, no header of its own
    ("/%0d%0aSet-Cookie:%20x=1", "/%0d%0aSet-Cookie:%20x=1")]


@pytest.mark.backends("sqlite")
def test_sign_in_never_redirects_off_the_site(service):
    # (one service for every row: starting one per row would cost CI a minute)
    for target, expected in REDIRECT_ROWS:
        client = Client(service.base)
        status, _headers, page = client.get("/login?" + urlencode({"next": target}))
        assert status == 200
        assert re.search(r'name="next" value="([^"]*)"', page).group(1) == html.escape(expected), target
        token = client.csrf("/login")
        status, headers, _text = client.post("/login", {"username": ADMIN[0], "password": ADMIN[1],
                                                        "csrf_token": token, "next": target})
        assert status == 303 and headers["location"] == expected, target
        assert not any(name.lower() == "set-cookie" and value.startswith("x=") for name, value in client.last_headers)


def test_sign_in_rate_limit_and_audit(service, backend_env):
    client = Client(service.base)
    for attempt in range(3):
        status, _h, text = client.login("rita-unknown", "wrong-password-%d" % attempt)
        assert status == 401 and "wrong account name or password" in text
    status, _h, text = client.login("rita-unknown", "wrong-password-x")
    assert status == 429 and "too many failed sign-ins" in text
    # the right password of another account still works: the limit is per account (and per address, higher)
    assert signed_in(service.base, *ADMIN)
    status, _h, text = client.login(ADMIN[0], "not-the-password")
    assert status == 401
    with open_system_of_record(backend_config(backend_env)) as sor:
        failures = [entry.data for entry in sor.iter_entries(kinds=["review.sign_in_failed"])]
    assert [failure["reason"] for failure in failures] == ["wrong password or unknown account"] * 3 + [
        "rate-limited", "wrong password or unknown account"], failures
    assert all(failure["remote"] == "127.0.0.1" for failure in failures)
    assert not any("wrong-password" in repr(failure) or "not-the-password" in repr(failure) for failure in failures), \
        "a tried password must never be recorded"


@pytest.mark.backends("sqlite")
def test_no_planted_secret_reaches_a_page_or_the_api(tmp_path, backend_env):
    project = Project(tmp_path / "project", backend_env)
    secrets = {kind: secret(kind) for kind in ("NoLogTask", "ArgPassword", "ExtraVar", "CmdLine")}
    project.write("library/leaky_login.py", LEAKY_MODULE)
    project.write_inventory(["web01"])
    project.write_playbook("secrets.yml", """
- name: Plant secrets
  hosts: all_hosts
  gather_facts: false
  tasks:
    - name: Secret task
      ansible.builtin.command: echo {no_log}
      no_log: true
    - name: Log in with a password argument
      leaky_login:
        user: deploy
        password: {password}
    - name: A password on a command line
      ansible.builtin.command: mysql --password={cmdline} -e 'select 1'
      ignore_errors: true
    - name: Use the extra var {{{{ api_key }}}}
      ansible.builtin.copy:
        content: "key={{{{ api_key }}}}\\n"
        dest: "{workdir}/{{{{ inventory_hostname }}}}.key"
        mode: "0600"
      diff: true
""".format(no_log=secrets["NoLogTask"], password=secrets["ArgPassword"], cmdline=secrets["CmdLine"],
           workdir=str(tmp_path)))
    project.run("secrets.yml", "--diff", "-e", "api_key=%s" % secrets["ExtraVar"])
    process = ServiceProcess(backend_env, tmp_path).start()
    try:
        admin = signed_in(process.base, *ADMIN)
        token = api_token(admin)
        with open_system_of_record(backend_config(backend_env)) as sor:
            run_id = sor.list_change_events({"all": True}, limit=1)["rows"][0]["run_id"]
        seen = []
        for path in ("/changes", "/changes?all=1", "/changes/%s" % run_id, "/changes/export.csv?all=1",
                     "/changes/export.json?all=1", "/changes?q=deploy", "/change-requests", "/admin/accounts",
                     "/changes/export.html?from=2000-01-01"):
            status, _h, text = admin.get(path)
            assert status == 200, (path, status, text[:300])
            seen.append((path, text))
        for path in ("/api/v1/changes?all=true", "/api/v1/changes/%s" % run_id, "/api/openapi.json"):
            status, answer = api(process.base, "GET", path, token)
            assert status == 200, (path, answer)
            seen.append((path, repr(answer)))
        assert "Log in with a password argument" in dict(seen)["/changes/%s" % run_id] or \
            "leaky_login" in dict(seen)["/api/v1/changes/%s" % run_id]
        for path, text in seen:
            for kind, value in secrets.items():
                assert value not in text, "%s (%s) appears in %s" % (kind, value, path)
    finally:
        process.stop()


def _write_locked(path):
    """Hold SQLite's write lock on the ledger (another writer in a long transaction). In WAL mode readers go on."""
    conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_unavailable_system_of_record_gives_a_clear_page(backend, backend_env, tmp_path, request):
    """SQLite locked by another writer: pages read on, an action says the record cannot be written now.
    PostgreSQL stopped: every page and the API say it is unavailable; both recover, never a stack trace."""
    with open_system_of_record(backend_config(backend_env)) as sor:
        fill_synthetic_ledger(sor, 4, hosts_per_run=1, host_pool=2)
        run_id = sor.list_change_events({}, limit=1)["rows"][0]["run_id"]
    extra = {"CHANGEOPS_BUSY_TIMEOUT": "2"} if backend == "sqlite" else {}
    process = ServiceProcess(dict(backend_env, **extra), tmp_path).start()
    try:
        admin = signed_in(process.base, *ADMIN)
        create_account(process.base, admin, "rita", ["viewer", "reviewer"], PASSWORD)
        rita = signed_in(process.base, "rita", PASSWORD)
        token = api_token(rita)
        form = {"outcome": "accepted", "csrf_token": rita.csrf("/changes/%s" % run_id)}
        assert rita.get("/changes")[0] == 200
        if backend == "sqlite":
            holder = _write_locked(backend_env["CHANGEOPS_SQLITE_PATH"])
        else:
            from support.postgresql_server import session_server
            server = session_server(request)
            server.stop("fast")
        try:
            if backend == "sqlite":
                assert rita.get("/changes?q=%s" % uuid.uuid4().hex[:6])[0] == 200, "readers go on in WAL mode"
                status, _h, text = rita.post("/changes/%s/review" % run_id, form)
            else:
                status, _h, text = rita.get("/changes?q=%s" % uuid.uuid4().hex[:6])
                assert request_status(process.base, "/healthz") == 503
            assert status == 503, (status, text[:500])
            assert "System of record unavailable" in text and "Traceback" not in text and 'File "' not in text
            status, answer = api(process.base, "POST", "/api/v1/changes/%s/reviews" % run_id, token,
                                 {"outcome": "accepted"})
            assert status == 503 and "cannot be reached" in answer["error"], answer
        finally:
            if backend == "sqlite":
                holder.execute("ROLLBACK")
                holder.close()
            else:
                server.start()
        assert rita.get("/changes")[0] == 200, "the service recovers once the database is back"
        assert rita.post("/changes/%s/review" % run_id, form)[0] == 303
    finally:
        process.stop()
    assert "Traceback" not in process.log_text()


def request_status(base, path):
    return request(base, "GET", path)[0]


@pytest.mark.backends("sqlite")
def test_proxy_header_sign_in(backend_env, tmp_path):
    process = ServiceProcess(backend_env, tmp_path, auth="proxy", extra_env={
        "CHANGEOPS_REVIEW_PROXY_SECRET": "s3cret-between-proxy-and-service",
        "CHANGEOPS_REVIEW_ROLE_GROUPS": "reviewer=itsm-reviewers;viewer=itsm-reviewers,staff"}).start()
    try:
        headers = {"X-Remote-User": "petra", "X-Remote-Groups": "staff,itsm-reviewers",
                   "X-Changeops-Proxy-Secret": "s3cret-between-proxy-and-service"}
        status, answer_headers, text = request(process.base, "GET", "/changes", headers=headers)
        assert status == 200 and "petra" in text and "reviewer, viewer" in text, text[:500]
        assert any(name.lower() == "set-cookie" and value.startswith("changeops_session=") for name, value in
                   answer_headers)
        # the header without the proxy's shared secret is someone pretending to be the proxy: refused, recorded
        status, _h, text = request(process.base, "GET", "/changes", headers={"X-Remote-User": "admin"})
        assert status == 403 and "shared secret" in text and "Traceback" not in text
        # no header at all: anonymous, sent to the (single sign-on) sign-in page
        assert request(process.base, "GET", "/changes")[0] == 303
    finally:
        process.stop()
    with open_system_of_record(backend_config(backend_env)) as sor:
        failures = [entry.data for entry in sor.iter_entries(kinds=["review.sign_in_failed"])]
    assert [(failure["username"], failure["via"]) for failure in failures] == [("admin", "proxy")]
    assert "s3cret" not in repr(failures)


#: (who, their roles, the roles they try to give themselves): each row a way to change one's own authority
SELF_GRANT_ROWS = [
    ("adam", ["admin", "viewer"], ["admin", "cab", "viewer"]),        # a CAB approver by their own hand
    ("adam", ["admin", "viewer"], ["admin", "reviewer", "viewer"]),   # a reviewer by their own hand
    ("adam", ["admin", "viewer"], ["viewer"]),                        # shedding a role is a change too
    (" adam ", ["admin", "viewer"], ["admin", "cab", "viewer"]),      # the name is stripped: still oneself
    (ADMIN[0], None, ["admin", "cab", "viewer"]),                     # the first administrator too
]


@pytest.mark.backends("sqlite")
def test_an_administrator_cannot_change_their_own_roles(service, backend_env):
    admin = signed_in(service.base, *ADMIN)
    create_account(service.base, admin, "adam", ["admin", "viewer"], PASSWORD)
    create_account(service.base, admin, "rita", ["viewer"], PASSWORD)
    adam = signed_in(service.base, "adam", PASSWORD)
    clients = {"adam": adam, " adam ": adam, ADMIN[0]: admin}
    with open_system_of_record(backend_config(backend_env)) as sor:
        before = {name: sor.get_review_account(name)["roles"] for name in ("adam", ADMIN[0])}
        entries_before = len(list(sor.iter_entries(kinds=["review.account"])))
    for name, _roles, wanted in SELF_GRANT_ROWS:
        client = clients[name]
        form = {"name": name, "roles": wanted, "display_name": "Myself", "password": "",
                "csrf_token": client.csrf("/admin/accounts")}
        status, _h, text = client.post("/admin/accounts", form)
        assert status == 403 and "role.self_grant" in text and "may not change their own roles" in text, \
            (name, wanted, status, text[:500])
    with open_system_of_record(backend_config(backend_env)) as sor:
        assert {name: sor.get_review_account(name)["roles"] for name in ("adam", ADMIN[0])} == before
        assert len(list(sor.iter_entries(kinds=["review.account"]))) == entries_before, "a refusal writes nothing"
    # an administrator still manages others, and may save their own account with the roles unchanged
    form = {"name": "rita", "roles": ["viewer", "cab"], "password": "", "csrf_token": adam.csrf("/admin/accounts")}
    assert adam.post("/admin/accounts", form)[0] == 303
    form = {"name": "adam", "roles": ["admin", "viewer"], "display_name": "Adam A.", "password": "",
            "csrf_token": adam.csrf("/admin/accounts")}
    assert adam.post("/admin/accounts", form)[0] == 303
    # another administrator may grant adam the CAB role: the entry names who granted it
    form = {"name": "adam", "roles": ["admin", "cab", "viewer"], "password": "", "csrf_token": admin.csrf("/admin/accounts")}
    assert admin.post("/admin/accounts", form)[0] == 303
    with open_system_of_record(backend_config(backend_env)) as sor:
        assert sor.get_review_account("rita")["roles"] == ["cab", "viewer"]
        assert sor.get_review_account("adam")["roles"] == ["admin", "cab", "viewer"]
        last = list(sor.iter_entries(kinds=["review.account"], subject="adam"))[-1]
        assert last.data["by"]["name"] == ADMIN[0] and last.data["before"]["roles"] == ["admin", "viewer"]


@pytest.mark.backends("sqlite")
def test_token_revocation_names_the_owner_and_refuses_unknown_tokens(service, backend_env):
    admin = signed_in(service.base, *ADMIN)
    create_account(service.base, admin, "vera", ["viewer"], PASSWORD)
    create_account(service.base, admin, "walt", ["viewer"], PASSWORD)
    vera = signed_in(service.base, "vera", PASSWORD)
    walt = signed_in(service.base, "walt", PASSWORD)
    token = api_token(vera)
    with open_system_of_record(backend_config(backend_env)) as sor:
        token_id = sor.find_review_tokens("vera")[0]["token_id"]
        revocations = len(list(sor.iter_entries(kinds=["review.token_revoked"])))
    # rows: an unknown token id (by an administrator and by anyone), someone else's token (not an administrator)
    for client, target in ((admin, "ffffffffffff"), (vera, "ffffffffffff"), (walt, token_id)):
        status, _h, text = client.post("/account/tokens/%s/revoke" % target, {"csrf_token": client.csrf("/account")})
        assert status == 404 and "no token %s" % target in text, (target, status, text[:300])
    assert api(service.base, "GET", "/api/v1/me", token)[0] == 200, "walt must not have revoked vera's token"
    with open_system_of_record(backend_config(backend_env)) as sor:
        assert len(list(sor.iter_entries(kinds=["review.token_revoked"]))) == revocations, "a 404 records nothing"
    # an administrator revokes vera's token: the entry names vera as its owner, and the admin as who revoked it
    status, _h, _t = admin.post("/account/tokens/%s/revoke" % token_id, {"csrf_token": admin.csrf("/account")})
    assert status == 303
    assert api(service.base, "GET", "/api/v1/me", token)[0] == 401
    with open_system_of_record(backend_config(backend_env)) as sor:
        entry = list(sor.iter_entries(kinds=["review.token_revoked"]))[-1]
    assert entry.subject == "vera" and entry.data["account"] == "vera" and entry.data["token_id"] == token_id, entry.data
    assert entry.data["by"]["name"] == ADMIN[0] and entry.actor == ADMIN[0]
