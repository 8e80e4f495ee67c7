# -*- coding: utf-8 -*-
"""The review service with a PostgreSQL read replica (issue 21 item 5): per-request routing, against a real primary and
a hot standby started here on loopback, and the service running as a real HTTP server (uvicorn).

* change data (the list, a change, the API) is read from the standby: with replay paused
  (``pg_wal_replay_pause()``) a page is provably behind the primary (someone else's sign-off does not show) and its
  banner says it comes from the replica and how far behind it is;
* sign-in, sessions and every action go to the primary (a sign-in and a sign-off work while the standby replays
  nothing; the standby never has what was written until replay resumes), and a person's own action shows on the
  next page they see: that page is read from the primary until the replica has replayed the action's ledger position;
* a replica lagging beyond ``CHANGEOPS_POSTGRESQL_READ_MAX_LAG`` or stopped: pages are read from the primary, say so,
  and never show a stack trace or the replica's password; once it is back the pages return to it.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

from register_fixtures import fill_synthetic_ledger
from support.replica import (
    primary_and_standby,
    standby_sql,
    wait_until_received_but_not_replayed,
    wait_until_replayed,
)
from support.review_service import ADMIN, ServiceProcess, api, api_token, create_account, signed_in

pytestmark = [pytest.mark.integration, pytest.mark.backends("postgresql")]

PASSWORD = "correct-horse-battery"
BANNER = re.compile(r'<p id="read-from" class="read-from read-from-(\w+)" data-server="(\w+)" role="status">([^<]*)</p>')


@pytest.fixture(scope="module")
def clusters():
    with primary_and_standby(prefix="changeops_review_replica") as (primary, standby, name):
        with open_system_of_record({"backend": "postgresql", "postgresql_dsn": primary.dsn(name)}) as sor:
            fill_synthetic_ledger(sor, 12, hosts_per_run=2, host_pool=6)
        yield primary, standby, name


def _env(primary, standby, name, max_lag=3600):
    return {"CHANGEOPS_BACKEND": "postgresql", "CHANGEOPS_POSTGRESQL_DSN": primary.dsn(name),
            "CHANGEOPS_POSTGRESQL_READ_DSN": standby.dsn(name), "CHANGEOPS_POSTGRESQL_READ_MAX_LAG": str(max_lag)}


@pytest.fixture(scope="module")
def service(clusters, tmp_path_factory):
    primary, standby, name = clusters
    process = ServiceProcess(_env(primary, standby, name), tmp_path_factory.mktemp("review-replica")).start()
    try:
        admin = signed_in(process.base, *ADMIN)
        for person in ("rita", "remy"):
            create_account(process.base, admin, person, ["viewer", "reviewer"], PASSWORD)
        yield process
    finally:
        process.stop()


def _primary(clusters):
    primary, _standby, name = clusters
    return open_system_of_record({"backend": "postgresql", "postgresql_dsn": primary.dsn(name)})


def _caught_up(clusters):
    _primary_server, standby, name = clusters
    with _primary(clusters) as sor:
        wait_until_replayed(standby, name, sor.head()[0])


def _runs(clusters, count=3):
    with _primary(clusters) as sor:
        return [row["run_id"] for row in sor.list_change_events({"outcome": "successful"}, limit=count)["rows"]]


def _banner(text):
    match = BANNER.search(text)
    assert match, "no read-from banner on the page: %s" % text[:800]
    return {"level": match.group(1), "server": match.group(2), "text": match.group(3)}


def _page(client, path):
    status, _headers, text = client.get(path)
    assert status == 200, (path, status, text[:800])
    assert "Traceback" not in text
    return text


def _wait_for_banner(client, path, server, level=None, timeout=60):
    """The banner once it says ``server`` (and ``level``): a write the page's own sign-in made (its session) may still
    be on its way to the standby for a moment, which a replica with no lag allowed counts as lag."""
    deadline = time.monotonic() + timeout
    while True:
        banner = _banner(_page(client, path))
        if banner["server"] == server and level in (None, banner["level"]):
            return banner
        assert time.monotonic() < deadline, "the banner did not say %s (%s) within %d s: %s" % (
            server, level, timeout, banner)
        time.sleep(0.5)


def _reviews_on_primary_and_standby(clusters, run_id):
    primary, standby, name = clusters
    with _primary(clusters) as sor:
        on_primary = [review["comment"] for review in sor.find_reviews(run_id)]
    import psycopg
    with psycopg.connect(standby.dsn(name), autocommit=True) as conn:
        on_standby = [row[0] for row in conn.execute("SELECT doc FROM reviews WHERE run_id = %s", (run_id,))]
    return on_primary, " ".join(on_standby)


def _sign_off_while_replay_is_paused(base, standby, run_id, label):
    """remy signs ``run_id`` off (a unique comment) while the standby's replay is paused; returns his session and
    the comment once the standby has received the write but not replayed it."""
    remy = signed_in(base, "remy", PASSWORD)
    comment = "%s-%s" % (label, uuid.uuid4().hex[:8])
    status, _h, text = remy.post("/changes/%s/review" % run_id, {
        "outcome": "accepted", "comment": comment, "csrf_token": remy.csrf("/changes/%s" % run_id)})
    assert status == 303, text[:800]
    wait_until_received_but_not_replayed(standby)
    return remy, comment


def test_pages_read_the_replica_and_a_persons_own_action_is_never_stale(clusters, service):
    _primary_server, standby, _name = clusters
    first, second, _third = _runs(clusters)  # a third run, untouched, keeps the list's first page busy
    _caught_up(clusters)
    rita = signed_in(service.base, "rita", PASSWORD)
    banner = _wait_for_banner(rita, "/changes", "replica", "info")
    assert "up to date" in banner["text"], banner
    rita_token = api_token(rita)
    status, answer = api(service.base, "GET", "/api/v1/changes/%s" % first, rita_token)
    assert status == 200 and answer["read_from"]["server"] == "replica", answer.get("read_from")
    _caught_up(clusters)  # (the token's issue is a ledger entry: replayed before replay is paused)

    standby_sql(standby, "SELECT pg_wal_replay_pause()")
    try:
        # sessions and actions go to the primary: signing in and signing off work while the standby replays nothing
        remy, remys = _sign_off_while_replay_is_paused(service.base, standby, first, "remy-checked")
        on_primary, on_standby = _reviews_on_primary_and_standby(clusters, first)
        assert remys in on_primary and remys not in on_standby  # written to the primary only

        # rita has not acted: her pages come from the paused replica, which does not have remy's sign-off yet
        page = _page(rita, "/changes/%s" % first)
        assert remys not in page, "rita's page must have been read from the (paused) replica"
        banner = _banner(page)
        assert banner["server"] == "replica" and banner["level"] == "warn", banner
        assert "behind the primary" in banner["text"], banner
        status, answer = api(service.base, "GET", "/api/v1/changes/%s" % first, rita_token)
        assert status == 200 and answer["read_from"]["server"] == "replica", answer["read_from"]
        assert answer["read_from"]["lag_seconds"] > 0 and answer["read_from"]["replayed_seq"], answer["read_from"]
        assert remys not in str(answer["reviews"] if "reviews" in answer else answer)

        # remy's own follow-up page (the redirect after his action) is not stale: read from the primary, and it says why
        page = _page(remy, "/changes/%s?done=1" % first)
        assert remys in page
        banner = _banner(page)
        assert banner["server"] == "primary" and "your latest action" in banner["text"], banner
        # ... and so are his other pages until the replica has replayed his action
        assert _banner(_page(remy, "/changes"))["server"] == "primary"

        # rita acts too, through the API: her next read is hers, from the primary, with remy's sign-off on it as well
        ritas = "rita-checked-%s" % uuid.uuid4().hex[:8]
        status, answer = api(service.base, "POST", "/api/v1/changes/%s/reviews" % second, rita_token,
                             {"outcome": "accepted", "comment": ritas})
        assert status == 201, answer
        status, answer = api(service.base, "GET", "/api/v1/changes/%s" % second, rita_token)
        assert status == 200 and ritas in str(answer), answer.get("read_from")
        assert answer["read_from"]["server"] == "primary" and answer["read_from"]["cause"] == "position"
        assert remys in _page(rita, "/changes/%s" % first)
        on_primary, on_standby = _reviews_on_primary_and_standby(clusters, second)
        assert ritas in on_primary and ritas not in on_standby
        # a third person who has not acted still reads the paused replica
        admin = signed_in(service.base, *ADMIN)
        page = _page(admin, "/changes/%s" % second)
        assert ritas not in page and _banner(page)["server"] == "replica"
    finally:
        standby_sql(standby, "SELECT pg_wal_replay_resume()")

    _caught_up(clusters)
    # replayed: everyone reads the replica again, and it has both sign-offs
    for client, run_id, comment in ((remy, first, remys), (rita, second, ritas)):
        _wait_for_banner(client, "/changes/%s" % run_id, "replica", "info")
        assert comment in _page(client, "/changes/%s" % run_id)


def test_a_replica_lagging_beyond_the_bound_is_not_read(clusters, tmp_path):
    primary, standby, name = clusters
    run_id = _runs(clusters, 1)[0]
    process = ServiceProcess(_env(primary, standby, name, max_lag=0), tmp_path).start()
    try:
        _caught_up(clusters)
        admin = signed_in(process.base, *ADMIN)
        _wait_for_banner(admin, "/changes", "replica")
        standby_sql(standby, "SELECT pg_wal_replay_pause()")
        try:
            _remy, comment = _sign_off_while_replay_is_paused(process.base, standby, run_id, "while-lagging")
            # the administrator has not acted, but the replica lags more than 0 s: the primary is read, and says so
            page = _page(admin, "/changes/%s" % run_id)
            assert comment in page
            banner = _banner(page)
            assert banner["server"] == "primary" and banner["level"] == "warn", banner
            assert "lags" in banner["text"] and "postgresql_read_max_lag: 0 s" in banner["text"], banner
            assert standby.password not in page
        finally:
            standby_sql(standby, "SELECT pg_wal_replay_resume()")
    finally:
        process.stop()
    _caught_up(clusters)


def test_a_stopped_replica_sends_every_page_to_the_primary_with_a_notice(clusters, service):
    _primary_server, standby, _name = clusters
    run_id = _runs(clusters, 1)[0]
    _caught_up(clusters)
    admin = signed_in(service.base, *ADMIN)
    standby.stop()
    try:
        # signing in, and the account page's API tokens, need only the primary
        remy = signed_in(service.base, "remy", PASSWORD)
        token = api_token(remy)
        for client in (admin, remy):
            for path in ("/changes", "/changes/%s" % run_id, "/change-requests", "/changes?q=web01"):
                page = _page(client, path)
                banner = _banner(page)
                assert banner["server"] == "primary" and banner["level"] == "warn", (path, banner)
                assert "not the read replica" in banner["text"], banner
                assert standby.password not in page
        status, answer = api(service.base, "GET", "/api/v1/changes?per_page=5", token)
        assert status == 200 and answer["rows"], answer
        assert answer["read_from"]["server"] == "primary", answer["read_from"]
        assert answer["read_from"]["cause"] in ("unreachable", "error"), answer["read_from"]
        assert standby.password not in str(answer)
        # an action still works: it never needed the replica
        comment = "while-replica-down-%s" % uuid.uuid4().hex[:8]
        status, answer = api(service.base, "POST", "/api/v1/changes/%s/reviews" % run_id, token,
                             {"outcome": "accepted", "comment": comment})
        assert status == 201, answer
    finally:
        standby.start()
    _caught_up(clusters)
    # back: after the retry interval the pages read the replica again (each worker thread tries it anew), with the
    # sign-off made while it was down
    _wait_for_banner(admin, "/changes/%s" % run_id, "replica", timeout=120)
    assert comment in _page(admin, "/changes/%s" % run_id)
