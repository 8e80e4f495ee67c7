# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command line of the review service.

    python -m ansible_collections.changeops.itsm.review_service serve [--port 8080] [--bind 127.0.0.1]
    python path/to/ansible_collections/changeops/itsm/review_service serve     (the same, by path)
    ... create-account NAME --role reviewer [--role cab] [--password-env VAR]
    ... set-password NAME [--password-env VAR]

``serve`` opens the system of record (creating or upgrading it), makes the first administrator when
there is no account yet (from ``CHANGEOPS_REVIEW_ADMIN`` and ``CHANGEOPS_REVIEW_ADMIN_PASSWORD``, or
asked for on the terminal), prints the URL, and runs uvicorn until interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

if not __package__:  # run by path: make the collection importable by its full name
    _here = os.path.dirname(os.path.abspath(__file__))
    _collection = os.path.dirname(_here)
    _candidates = [os.path.dirname(os.path.dirname(os.path.dirname(_collection))),  # .../ansible_collections/ns/name
                   os.path.join(_collection, ".build", "collections")]  # a checkout with scripts/bootstrap's tree
    for _root in _candidates:
        if os.path.isdir(os.path.join(_root, "ansible_collections", "changeops", "itsm", "review_service")):
            sys.path.insert(0, _root)
            break

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ChangeopsError  # noqa: E402
from ansible_collections.changeops.itsm.review_service import actions  # noqa: E402
from ansible_collections.changeops.itsm.review_service.config import AUTH_MODES, ROLES, ServiceConfig  # noqa: E402
from ansible_collections.changeops.itsm.review_service.store import Store  # noqa: E402

SYSTEM = {"name": "review-service", "source": "review-service"}


def _password(args, prompt_for):
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise SystemExit("the environment variable %s is empty" % args.password_env)
        return value
    if not sys.stdin.isatty():
        raise SystemExit("no terminal to ask the password of %s on: give --password-env VAR" % prompt_for)
    first = getpass.getpass("Password for %s (at least 12 characters): " % prompt_for)
    if getpass.getpass("Again: ") != first:
        raise SystemExit("the passwords differ")
    return first


def ensure_first_admin(sor, environ=None):
    """The first administrator, when there is no account at all; returns its name or None."""
    environ = os.environ if environ is None else environ
    if sor.find_review_accounts():
        return None
    name = environ.get("CHANGEOPS_REVIEW_ADMIN")
    password = environ.get("CHANGEOPS_REVIEW_ADMIN_PASSWORD")
    if not name or not password:
        if not sys.stdin.isatty():
            raise SystemExit("there is no account yet: set CHANGEOPS_REVIEW_ADMIN and CHANGEOPS_REVIEW_ADMIN_PASSWORD "
                             "for the first administrator, or run serve on a terminal to be asked")
        name = name or input("First administrator's account name: ").strip()
        first = getpass.getpass("Password for %s (at least 12 characters): " % name)
        if getpass.getpass("Again: ") != first:
            raise SystemExit("the passwords differ")
        password = first
    actions.save_account(sor, SYSTEM, name, ["admin", "viewer"], None)
    actions.set_password(sor, SYSTEM, name, password)
    return name


def serve(args):
    import uvicorn
    overrides = {"bind": args.bind, "port": args.port, "workers": args.workers, "auth": args.auth}
    for key, value in overrides.items():
        if value is not None:
            os.environ["CHANGEOPS_REVIEW_" + key.upper()] = str(value)
    if args.insecure_cookies:
        os.environ["CHANGEOPS_REVIEW_SECURE_COOKIES"] = "false"
    config = ServiceConfig()
    store = Store(config.backend)
    try:
        sor = store.get()
        if config.auth == "local":
            created = ensure_first_admin(sor)
            if created:
                print("created the first administrator: %s" % created, flush=True)
    finally:
        store.close()
    host = "[%s]" % config.bind if ":" in config.bind else config.bind
    print("changeops review service on http://%s:%d/ (system of record: %s)"
          % (host, config.port, config.describe_backend()), flush=True)
    uvicorn.run("ansible_collections.changeops.itsm.review_service.asgi:app", host=config.bind, port=config.port,
                workers=config.workers, proxy_headers=False, server_header=False, date_header=True,
                log_level=args.log_level, access_log=args.access_log)


def create_account(args):
    store = Store(ServiceConfig().backend)
    try:
        sor = store.get()
        account, changed = actions.save_account(sor, SYSTEM, args.name, args.role or ["viewer"], args.display_name)
        if args.password_env or not args.no_password:
            actions.set_password(sor, SYSTEM, args.name, _password(args, args.name))
        print("%s %s: roles %s" % ("saved" if changed else "unchanged", account["name"], ", ".join(account["roles"])))
    finally:
        store.close()


def set_password(args):
    store = Store(ServiceConfig().backend)
    try:
        actions.set_password(store.get(), SYSTEM, args.name, _password(args, args.name))
        print("password of %s set; their sessions were ended" % args.name)
    finally:
        store.close()


def build_parser():
    parser = argparse.ArgumentParser(prog="review_service", description="The changeops.itsm review service")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the service (uvicorn)")
    run.add_argument("--bind", help="address to listen on (default 127.0.0.1; CHANGEOPS_REVIEW_BIND)")
    run.add_argument("--port", type=int, help="port (default 8080; 0 picks a free one... not with workers)")
    run.add_argument("--workers", type=int, help="worker processes (default 1; CHANGEOPS_REVIEW_WORKERS)")
    run.add_argument("--auth", choices=AUTH_MODES,  # every mode the configuration accepts (CHANGEOPS_REVIEW_AUTH)
                     help="local accounts, a trusted proxy's header, or OpenID Connect single sign-on (oidc: "
                          "the CHANGEOPS_REVIEW_OIDC_* settings, docs/review-service.md)")
    run.add_argument("--insecure-cookies", action="store_true",
                     help="session cookies without Secure (only for plain http other than localhost)")
    run.add_argument("--log-level", default="info")
    run.add_argument("--no-access-log", dest="access_log", action="store_false")
    run.set_defaults(func=serve)
    account = commands.add_parser("create-account", help="create or change an account")
    account.add_argument("name")
    account.add_argument("--role", action="append", choices=ROLES)
    account.add_argument("--display-name")
    account.add_argument("--password-env", help="read the password from this environment variable")
    account.add_argument("--no-password", action="store_true", help="for single sign-on accounts (auth: proxy)")
    account.set_defaults(func=create_account)
    password = commands.add_parser("set-password", help="set an account's password")
    password.add_argument("name")
    password.add_argument("--password-env")
    password.set_defaults(func=set_password)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ChangeopsError as exc:
        raise SystemExit("review_service: %s" % exc.message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
