# -*- coding: utf-8 -*-
"""libpq work and fork() never overlap in one process (PostgreSQL backend, a real server).

Ansible forks its workers from the controller process while the change_recorder's writer thread
uses PostgreSQL; a worker forked while that thread held an OpenSSL lock (TLS, SCRAM) inherited the
lock taken and hung for ever in its own connect. The backend runs every libpq step under a fork
guard that fork() takes first, and waits for the socket outside it.
"""

from __future__ import annotations

import os
import threading

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import postgresql

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.backends("postgresql")


def test_every_libpq_step_holds_the_fork_guard(sor):
    conn = sor._connection()
    assert isinstance(conn, postgresql._ForkSafeConnection)
    held = []

    def steps():
        held.append(postgresql._FORK_GUARD._is_owned())
        yield psycopg.waiting.Wait.W  # the socket is writable at once
        held.append(postgresql._FORK_GUARD._is_owned())
        return "done"

    assert conn.wait(steps()) == "done"
    assert held == [True, True]
    assert not postgresql._FORK_GUARD._is_owned()


def test_connecting_goes_through_the_guarded_steps(sor, monkeypatch):
    used = []
    original = postgresql._guarded_steps
    monkeypatch.setattr(postgresql, "_guarded_steps", lambda gen: used.append(gen) or original(gen))
    sor.close()
    sor.find_cis(name="nothing")  # reconnects
    assert used, "the connection was opened without the fork guard"


def _fork_and_reap():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def test_a_fork_waits_for_a_step_but_not_for_the_server(sor):
    # a step in progress (the guard held by another thread) holds the fork back...
    released, forked = threading.Event(), threading.Event()

    def step():
        with postgresql._FORK_GUARD:
            released.wait(30)

    holder = threading.Thread(target=step)
    holder.start()
    forker = threading.Thread(target=lambda: (_fork_and_reap(), forked.set()))
    forker.start()
    assert not forked.wait(0.5), "fork() went ahead while a libpq step held the guard"
    released.set()
    assert forked.wait(30)
    holder.join()
    forker.join()

    # ...but a query waiting for the server does not
    finished = threading.Event()
    query = threading.Thread(target=lambda: (sor._query("SELECT pg_sleep(3)", ()), finished.set()))
    query.start()
    threading.Event().wait(0.5)
    _fork_and_reap()
    assert not finished.is_set(), "fork() waited for the server's answer"
    query.join()
