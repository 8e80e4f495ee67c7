# -*- coding: utf-8 -*-
"""A real PostgreSQL server for the test session, and a fresh database per test.

Two ways to get the server:

* ``CHANGEOPS_TEST_POSTGRESQL_DSN`` names an existing cluster (a role that may
  ``CREATE DATABASE``): tests create and drop their own databases in it;
* otherwise a private cluster is created with Debian's server binaries
  (``/usr/lib/postgresql/<version>/bin``): ``initdb`` into a temporary
  directory (as the ``postgres`` user when we are root: initdb refuses root),
  ``pg_ctl start`` on a free loopback port, stopped and removed when the
  session ends.

Missing server binaries FAIL the test with the fix, they do not skip it:
``scripts/bootstrap`` installs them, so their absence is a broken set-up.

The private cluster requires a password over TCP (scram-sha-256), so every
test exercises the same authentication path, and the password-redaction
checks have a real password to look for. ``LocalServer(tls=True)`` also serves
TLS, with a self-signed certificate for localhost/127.0.0.1 that openssl makes
(``ca_file`` is what clients trust); the session's server has no certificate.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

EXTERNAL_DSN_ENV = "CHANGEOPS_TEST_POSTGRESQL_DSN"
BIN_DIR_ENV = "CHANGEOPS_TEST_POSTGRESQL_BIN"

_SESSION_SERVER = None
_DATABASE_NUMBERS = itertools.count(1)


def find_bin_dir():
    """Directory holding initdb/pg_ctl, newest Debian version first; None when absent."""
    candidates = []
    if os.environ.get(BIN_DIR_ENV):
        candidates.append(os.environ[BIN_DIR_ENV])
    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                             key=lambda path: int(path.split("/")[-2]) if path.split("/")[-2].isdigit() else 0,
                             reverse=True))
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "initdb")) and os.path.isfile(os.path.join(candidate, "pg_ctl")):
            return candidate
    on_path = shutil.which("pg_ctl")
    if on_path and os.path.isfile(os.path.join(os.path.dirname(on_path), "initdb")):
        return os.path.dirname(on_path)
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _connect(dsn, **kwargs):
    import psycopg

    return psycopg.connect(dsn, autocommit=True, connect_timeout=10, **kwargs)


def self_signed_certificate(directory, name="server"):
    """``(certificate, key)`` paths: a self-signed certificate for ``localhost`` and ``127.0.0.1`` made with
    openssl in ``directory`` (key private to its owner), usable as its own root for ``verify-full``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is missing: apt-get install -y openssl (the TLS tests make their certificate with it)",
                    pytrace=False)
    cert, key = os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")
    completed = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        timeout=60, check=False)
    if completed.returncode != 0:
        raise RuntimeError("openssl could not make a test certificate:\n%s" % completed.stdout)
    os.chmod(key, 0o600)
    return cert, key


class LocalServer(object):
    """A throwaway cluster owned by this process: initdb, start, stop, restart, remove."""

    superuser = "postgres"

    def __init__(self, bin_dir=None, max_connections=300, tls=False):
        self.bin_dir = bin_dir or find_bin_dir()
        if self.bin_dir is None:
            pytest.fail(
                "PostgreSQL server binaries (initdb, pg_ctl) were not found in /usr/lib/postgresql/*/bin or on PATH:"
                " run scripts/bootstrap (it installs Debian's 'postgresql' package: apt-get install postgresql),"
                " or set %s to an existing cluster, or %s to the binaries' directory"
                % (EXTERNAL_DSN_ENV, BIN_DIR_ENV), pytrace=False)
        self.max_connections = max_connections
        self.root = tempfile.mkdtemp(prefix="changeops-pg-")
        self.data_dir = os.path.join(self.root, "data")
        self.socket_dir = self.root
        self.log_file = os.path.join(self.root, "server.log")
        self.password = secrets.token_urlsafe(18)
        self.port = None
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
        os.chmod(self.root, 0o700)
        self._initdb()
        #: with ``tls``, the self-signed certificate the server presents (clients use it as sslrootcert)
        self.ca_file = self._make_certificate() if tls else None

    # -- commands ------------------------------------------------------------
    def _command(self, name, *args):
        argv = [os.path.join(self.bin_dir, name)] + list(args)
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def _run(self, name, *args, **kwargs):
        completed = subprocess.run(self._command(name, *args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, universal_newlines=True, timeout=120, cwd=self.root,
                                   check=False, **kwargs)
        if completed.returncode != 0:
            raise RuntimeError("%s %s failed (exit %d):\n%s%s" % (
                name, " ".join(args), completed.returncode, completed.stdout, self.log_tail()))
        return completed.stdout

    def _initdb(self):
        pwfile = os.path.join(self.root, "pwfile")
        with open(pwfile, "w") as handle:
            handle.write(self.password + "\n")
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        os.chmod(pwfile, 0o600)
        try:
            # C locale: text sorts by code point, as in SQLite, so both backends
            # return names and times in the same order.
            self._run("initdb", "-D", self.data_dir, "-U", self.superuser, "--pwfile", pwfile,
                      "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale",
                      "--no-sync")
        finally:
            os.unlink(pwfile)

    def _make_certificate(self):
        """Certificate and key in the data directory (the server refuses a key others can read), owned by
        the server's user; returns a copy of the certificate beside the cluster, for clients to trust."""
        cert, key = self_signed_certificate(self.data_dir, "server")
        if self._as_postgres:
            account = pwd.getpwnam("postgres")
            for path in (key, cert):
                os.chown(path, account.pw_uid, account.pw_gid)
        trusted = os.path.join(self.root, "root.crt")
        shutil.copyfile(cert, trusted)
        os.chmod(trusted, 0o644)
        return trusted

    def start(self, port=None):
        self.port = port or self.port or free_port()
        # fsync off: the tests crash processes (kill -9, immediate shutdown),
        # never the kernel, so the WAL in the page cache is enough to recover.
        options = "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=%d -c fsync=off" % (
            self.port, self.socket_dir, self.max_connections)
        if self.ca_file:
            # server.crt / server.key in the data directory are the defaults of ssl_cert_file / ssl_key_file
            options += " -c ssl=on"
        self._run("pg_ctl", "-D", self.data_dir, "-l", self.log_file, "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self, mode="fast"):
        """``fast`` disconnects clients and shuts down cleanly; ``immediate`` is a crash."""
        if self.running():
            self._run("pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "-t", "60", "stop")

    def restart(self):
        self.stop()
        return self.start(self.port)

    def running(self):
        return os.path.exists(os.path.join(self.data_dir, "postmaster.pid"))

    def remove(self):
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines=30):
        try:
            with open(self.log_file) as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""

    # -- DSNs -------------------------------------------------------------------
    def dsn(self, dbname="postgres", password=True):
        if password:
            return "postgresql://%s:%s@127.0.0.1:%d/%s" % (self.superuser, self.password, self.port, dbname)
        return "postgresql://%s@127.0.0.1:%d/%s" % (self.superuser, self.port, dbname)

    @property
    def admin_dsn(self):
        return self.dsn()


class ExternalServer(object):
    """A cluster someone else runs (``CHANGEOPS_TEST_POSTGRESQL_DSN``): never stopped or removed."""

    def __init__(self, dsn):
        self.admin_dsn = dsn

    def dsn(self, dbname="postgres"):
        from psycopg.conninfo import make_conninfo

        return make_conninfo(self.admin_dsn, dbname=dbname)

    def remove(self):
        pass


def session_server(request):
    """The session's server, started on first use and removed when the session ends."""
    global _SESSION_SERVER
    if _SESSION_SERVER is None:
        if os.environ.get(EXTERNAL_DSN_ENV):
            server = ExternalServer(os.environ[EXTERNAL_DSN_ENV])
        else:
            server = LocalServer().start()
        _SESSION_SERVER = server
        request.session.config.add_cleanup(_remove_session_server)
    return _SESSION_SERVER


def _remove_session_server():
    global _SESSION_SERVER
    server, _SESSION_SERVER = _SESSION_SERVER, None
    if server is not None:
        server.remove()


def create_database(server, prefix="changeops_test"):
    name = "%s_%d_%d_%d" % (prefix, os.getpid(), int(time.time()), next(_DATABASE_NUMBERS))
    with _connect(server.admin_dsn) as conn:
        conn.execute('CREATE DATABASE "%s"' % name)
    return name


def drop_database(server, name):
    try:
        with _connect(server.admin_dsn) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    except Exception:  # pylint: disable=broad-except
        # the server may have been stopped by a fault test; the cluster goes anyway
        pass


def database_on_stoppable_server(server, prefix):
    """Generator for a fixture: a fresh database on ``server``, a cluster the test may stop.

    The server is started again before the database is made and before it is dropped, so a
    test that stopped it (and failed before restarting it) does not break the next one.
    """
    if not server.running():
        server.start()
    name = create_database(server, prefix=prefix)
    yield server.dsn(name)
    if not server.running():
        server.start()
    drop_database(server, name)


def fresh_database_env(request):
    """Backend env vars selecting a fresh, empty database (dropped after the test)."""
    server = session_server(request)
    name = create_database(server)
    request.addfinalizer(lambda: drop_database(server, name))
    return {"CHANGEOPS_BACKEND": "postgresql", "CHANGEOPS_POSTGRESQL_DSN": server.dsn(name)}


class StandbyServer(LocalServer):
    """A hot standby of ``primary`` (a LocalServer): ``pg_basebackup -R`` over streaming replication on loopback,
    started on a port of its own. Same users and password as the primary (the base backup copies them)."""

    def __init__(self, primary):
        self.primary = primary
        super(StandbyServer, self).__init__(bin_dir=primary.bin_dir, max_connections=primary.max_connections)

    def _initdb(self):
        self.password = self.primary.password
        self._run("pg_basebackup", "-D", self.data_dir, "-R", "-X", "stream", "-c", "fast", "--no-sync",
                  "-d", self.primary.dsn("postgres"))
