# -*- coding: utf-8 -*-
"""The review service as a real server for tests: ``python review_service serve`` on a free loopback port,
and a small HTTP client that keeps cookies (whatever their Secure flag: it talks to loopback only)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from urllib.parse import urlencode, urlsplit

from support.postgresql_server import free_port
from support.project import REPO_ROOT

ADMIN = ("admin", "admin-password-123")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class ServiceProcess(object):
    def __init__(self, backend_env, tmp_path, extra_env=None, auth="local"):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.log_path = str(tmp_path / ("review-service-%d.log" % self.port))
        env = {key: value for key, value in os.environ.items() if not key.startswith(("CHANGEOPS_", "ANSIBLE_"))}
        env.update(backend_env)
        env.update(CHANGEOPS_REVIEW_ADMIN=ADMIN[0], CHANGEOPS_REVIEW_ADMIN_PASSWORD=ADMIN[1],
                   CHANGEOPS_REVIEW_AUTH=auth, PYTHONUNBUFFERED="1")
        env.update(extra_env or {})
        self.env = env
        self.process = None

    def start(self, timeout=60):
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(REPO_ROOT, "review_service"), "serve", "--port", str(self.port),
             "--no-access-log"], env=self.env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("the review service exited (%s):\n%s" % (self.process.returncode, self.log_text()))
            try:
                status, _headers, _body = request(self.base, "GET", "/healthz")
                if status in (200, 503):
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("the review service did not answer within %d s:\n%s" % (timeout, self.log_text()))

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        if self.process is not None:
            self.log.close()

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as handle:
                return handle.read()[-6000:]
        except OSError:
            return ""


def request(base, method, path, body=None, headers=None, timeout=60):
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read().decode("utf-8", "replace")
    finally:
        connection.close()


class Client(object):
    """A person's browser, without a browser: cookies, forms with their CSRF token, redirects not followed."""

    def __init__(self, base):
        self.base = base
        self.cookies = {}
        self.last_headers = []

    def _cookie_header(self):
        return "; ".join("%s=%s" % item for item in self.cookies.items())

    def send(self, method, path, form=None, headers=None, json_body=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = self._cookie_header()
        body = None
        if form is not None:
            body = urlencode(form, doseq=True)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if json_body is not None:
            body = json.dumps(json_body)
            headers["Content-Type"] = "application/json"
        status, response_headers, text = request(self.base, method, path, body, headers)
        self.last_headers = response_headers
        for name, value in response_headers:
            if name.lower() == "set-cookie":
                cookie = value.split(";", 1)[0]
                key, _sep, val = cookie.partition("=")
                if val in ('""', "") or "max-age=0" in value.lower():
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = val
        return status, dict((name.lower(), value) for name, value in response_headers), text

    def get(self, path, **kwargs):
        return self.send("GET", path, **kwargs)

    def post(self, path, form, **kwargs):
        return self.send("POST", path, form=form, **kwargs)

    def csrf(self, path):
        status, _headers, text = self.get(path)
        match = CSRF.search(text)
        assert match, "no CSRF token on %s (%s): %s" % (path, status, text[:500])
        return match.group(1)

    def login(self, username, password):
        token = self.csrf("/login")
        status, headers, text = self.post("/login", {"username": username, "password": password, "csrf_token": token,
                                                     "next": "/changes"})
        return status, headers, text


def signed_in(base, username, password):
    client = Client(base)
    status, _headers, text = client.login(username, password)
    assert status == 303, "sign-in of %s failed (%s): %s" % (username, status, text[:500])
    return client


def create_account(base, admin, name, roles, password):
    token = admin.csrf("/admin/accounts")
    form = {"name": name, "roles": list(roles), "password": password, "csrf_token": token,
            "display_name": name.title()}
    status, _headers, text = admin.post("/admin/accounts", form)
    assert status == 303, "could not create %s (%s): %s" % (name, status, text[:800])


def api_token(client):
    token = client.csrf("/account")
    status, _headers, text = client.post("/account/tokens", {"label": "tests", "csrf_token": token})
    assert status == 200, text[:500]
    return re.search(r'id="new-token">([^<]+)<', text).group(1)


def api(base, method, path, token, json_body=None):
    headers = {"Authorization": "Bearer %s" % token} if token else {}
    body = None
    if json_body is not None:
        body = json.dumps(json_body)
        headers["Content-Type"] = "application/json"
    status, _headers, text = request(base, method, path, body, headers)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text
