# -*- coding: utf-8 -*-
"""Where a review service request's time goes, in process, one request at a time (no HTTP, no other client).

    .venv/bin/python bench/review_service/profile_requests.py --events 50000          # the bench's cached ledger
    .venv/bin/python bench/review_service/profile_requests.py --backend postgresql --dsn "$DSN" --events 20000

The five requests of ``run.py`` (same paths, same seed) go through the real ASGI application (FastAPI, the
security-header middleware, the session look-up, the handler, the templates) called directly, and each
request's time is split, exclusively, into: the session look-up (``auth``, with its own SQL), each SQL
statement shape of the handler (``sql: ...``), template rendering (``render``) and the rest (``framework``:
routing, dependency injection, thread hops, the middleware, response bodies). Also prints the page size and,
for the costliest statement shapes, their query plan. What this shows is the CPU a request costs; ``run.py``
shows what 20 concurrent clients see over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import re
import sys
import time
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run as bench  # noqa: E402  (the bench's paths, ledger and scenarios)

import jinja2  # noqa: E402

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import review_queries  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (  # noqa: E402
    open_system_of_record,
)
from ansible_collections.changeops.itsm.review_service import security  # noqa: E402
from ansible_collections.changeops.itsm.review_service.app import create_app  # noqa: E402
from ansible_collections.changeops.itsm.review_service.config import ServiceConfig  # noqa: E402


class Meter(object):
    """Exclusive time per category: a nested category's time is not counted in the one around it."""

    def __init__(self):
        self.totals = collections.Counter()
        self.counts = collections.Counter()
        self.stack = []
        self.slowest = {}

    def wrap(self, category_of, function):
        meter = self

        def wrapped(*args, **kwargs):
            category = category_of(*args)
            began = time.perf_counter()
            meter.stack.append([category, 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - began
                _category, nested = meter.stack.pop()
                meter.totals[category] += elapsed - nested
                meter.counts[category] += 1
                if meter.stack:
                    meter.stack[-1][1] += elapsed
                if category.startswith("sql") and elapsed > meter.slowest.get(category, (0,))[0]:
                    meter.slowest[category] = (elapsed, args[1], args[2] if len(args) > 2 else ())
        return wrapped


def shape(sql):
    text = re.sub(r"\s+", " ", sql)
    text = re.sub(r"\(\?(, \?)*\)", "(?...)", text)
    text = re.sub(r"LIMIT \d+( OFFSET \d+)?", "LIMIT n", text)
    return "sql: " + text[:110]


async def call(app, path, cookie):
    parts = urlsplit(path)
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": parts.path, "raw_path": parts.path.encode(),
             "query_string": parts.query.encode(), "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie.encode())],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080), "state": {}}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return status, body


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--dsn")
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--requests", type=int, default=200, help="requests per scenario")
    parser.add_argument("--plans", type=int, default=3, help="query plans of this many costliest statements")
    parser.add_argument("--uncached", action="store_true",
                        help="count every list's total and facets each time (no per-head summary cache)")
    args = parser.parse_args()
    if args.uncached:
        review_queries.SUMMARY_CACHE_SIZE = 0
    env = bench.backend_env(args)
    if args.backend == "sqlite" and not os.path.exists(env["CHANGEOPS_SQLITE_PATH"]):
        parser.error("no ledger %s: run run.py --events %d first" % (env["CHANGEOPS_SQLITE_PATH"], args.events))
    sor = open_system_of_record(bench.config_of(env))
    if args.backend == "postgresql":
        bench.analyze(sor)
    measured, total = bench.scenarios(sor, random.Random(args.seed))
    sor.close()
    print("%d changes listed; %d requests per scenario, one at a time" % (total, args.requests))

    meter = Meter()
    # the backend's own _query (the first class up its MRO defining one): every statement a request runs
    probe_sor = open_system_of_record(bench.config_of(env))
    backend_class = next(klass for klass in type(probe_sor).__mro__ if "_query" in vars(klass))
    probe_sor.close()
    unwrapped_query = backend_class._query
    backend_class._query = meter.wrap(lambda self, sql, params=(): shape(sql), unwrapped_query)
    jinja2.environment.Template.render = meter.wrap(lambda *_a: "render", jinja2.environment.Template.render)
    security.Authenticator.session_principal = meter.wrap(lambda *_a: "auth",
                                                          security.Authenticator.session_principal)

    environ = dict(os.environ, **env)
    app = create_app(ServiceConfig(environ=environ, secure_cookies="false"))
    store = app.state.store
    session_id = app.state.auth.start_session(security.Principal("bench-profile", ["viewer"], "proxy"))
    cookie = "%s=%s" % (security.SESSION_COOKIE, session_id)
    loop = asyncio.new_event_loop()
    try:
        for name, make_path in measured:
            loop.run_until_complete(call(app, make_path(), cookie))  # warm the connections and caches
            meter.totals.clear()
            meter.counts.clear()
            meter.slowest.clear()
            sizes, began, cpu = [], time.perf_counter(), time.process_time()
            for _number in range(args.requests):
                status, body = loop.run_until_complete(call(app, make_path(), cookie))
                if status != 200:
                    break
                sizes.append(len(body))
            if status != 200:
                print("\n%s: HTTP %d %s" % (name, status, re.sub(r"\s+", " ", body.decode("utf-8", "replace"))[-300:]))
                continue
            wall = (time.perf_counter() - began) * 1000 / args.requests
            cpu = (time.process_time() - cpu) * 1000 / args.requests
            accounted = sum(meter.totals.values()) * 1000 / args.requests
            print("\n%s: %.2f ms a request (CPU %.2f ms), page %.1f KB" % (
                name, wall, cpu, sum(sizes) / len(sizes) / 1024.0))
            parts = [(value * 1000 / args.requests, key) for key, value in meter.totals.items()]
            parts.append((wall - accounted, "framework (routing, dependencies, thread hops, middleware)"))
            for value, key in sorted(parts, reverse=True):
                per_request = meter.counts.get(key, args.requests) / float(args.requests)
                print("  %7.3f ms  %5.1f/req  %s" % (value, per_request, key))
            slow = sorted(meter.slowest.items(), key=lambda item: -meter.totals[item[0]])[:args.plans]
            probe = store.get()
            for key, (_elapsed, statement, params) in slow:
                explain = "EXPLAIN QUERY PLAN " if args.backend == "sqlite" else "EXPLAIN ANALYZE "
                try:
                    plan = [row[-1] for row in unwrapped_query(probe, explain + statement, params)]
                except Exception as exc:  # pylint: disable=broad-except
                    plan = ["(no plan: %s)" % exc]
                print("  plan of %s\n    %s" % (key[5:80], "\n    ".join(str(line) for line in plan[:12])))
    finally:
        store.close()
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
