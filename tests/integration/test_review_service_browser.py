# -*- coding: utf-8 -*-
"""The review service in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

The ledger is filled by real ansible-playbook runs with the change recorder (SQLite), the service runs as
``python review_service serve`` on loopback, and people sign in and work: a viewer who cannot act, a
reviewer signing off, a CAB member approving a change request that a play with the change gate is then
authorised by, a requester refused when approving their own request (the reason shown), an unauthorised
change acknowledged, search and filters, CSV/JSON export, keyboard navigation. Screenshots go to
$CHANGEOPS_SCREENSHOTS_DIR (artifacts/screenshots/review-*.png).
"""

from __future__ import annotations

import csv
import json
import os

import pytest

from support.backends import backend_config
from support.change_requests import change_request, iso
from support.project import REPO_ROOT, Project
from support.review_service import ADMIN, ServiceProcess, create_account, signed_in

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

from register_fixtures import CMDB_PLAYBOOK, MOTD_PLAYBOOK, NOOP_PLAYBOOK, PATCHING_POLICY, RELEASE_PLAYBOOK

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.environ.get("CHANGEOPS_SCREENSHOTS_DIR") or os.path.join(REPO_ROOT, "artifacts", "screenshots")
PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Real runs (CMDB, an unauthorised change, one that changed nothing), a change request awaiting the CAB,
    the running service and its accounts."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("%s is missing: apt-get install -y chromium (never `playwright install`)" % CHROMIUM)
    root = tmp_path_factory.mktemp("review_browser")
    env = {"CHANGEOPS_BACKEND": "sqlite", "CHANGEOPS_SQLITE_PATH": str(root / "ledger.sqlite")}
    project = Project(root / "project", env)
    workdir = root / "work"
    workdir.mkdir()
    project.write_inventory(["web01", "web02"])
    project.write("policy.yml", PATCHING_POLICY)
    project.write_playbook("cmdb.yml", CMDB_PLAYBOOK)
    project.write_playbook("motd.yml", MOTD_PLAYBOOK)
    project.write_playbook("noop.yml", NOOP_PLAYBOOK)
    project.write_playbook("release.yml", RELEASE_PLAYBOOK)
    project.run("cmdb.yml")
    project.run("motd.yml", "--diff", "-e", "motd_text=Welcome", "-e", "workdir=%s" % workdir)
    project.run("noop.yml", "-e", "workdir=%s" % workdir)
    with open_system_of_record(backend_config(env)) as sor:
        # requested by carol (a CAB member): she may not approve it herself; dave may
        number = change_request(sor, short_description="Release 2.4 of the web tier", affected_cis=["web01", "web02"],
                                planned_start=iso(hours=-1), planned_end=iso(hours=3), timezone="UTC",
                                requested_by="carol", validate_cis=False)["number"]
        for step in ("assess", "authorise"):
            change_request(sor, number=number, state=step)
    service = ServiceProcess(env, root).start()
    admin = signed_in(service.base, *ADMIN)
    for name, roles in (("vera", ["viewer"]), ("rita", ["viewer", "reviewer"]), ("carol", ["viewer", "cab"]),
                        ("dave", ["viewer", "cab", "reviewer"])):
        create_account(service.base, admin, name, roles, PASSWORD)
    yield {"service": service, "project": project, "env": env, "number": number, "workdir": str(workdir),
           "root": root}
    service.stop()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright import sync_api
    except ImportError as exc:
        pytest.fail("Playwright is missing (%s): pip install -r requirements-dev.txt (never `playwright install`)"
                    % exc, pytrace=False)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class Person(object):
    def __init__(self, browser, world, name):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        self.page = self.context.new_page()
        self.problems = []
        # a refused sign-in or action is a page with status 401/403/429, which Chromium logs: expected
        self.page.on("console", lambda message: self.problems.append(message.text)
                     if message.type in ("error", "warning") and not any(
                         "status of %d" % status in message.text for status in (400, 401, 403, 429)) else None)
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))
        self.base = world["service"].base
        self.name = name

    def sign_in(self, password=PASSWORD):
        self.page.goto(self.base + "/changes")
        assert "/login" in self.page.url
        self.page.fill("#username", self.name)
        self.page.fill("#password", password)
        self.page.click("#sign-in")
        self.page.wait_for_selector("#who")
        return self

    def close(self):
        self.context.close()
        assert self.problems == [], "console errors or CSP violations: %s" % self.problems


def shot(page, name):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, "review-%s.png" % name), full_page=True)


def run_ids(page):
    return page.eval_on_selector_all("#rows tr[data-run-id]", "rows => rows.map(r => r.dataset.runId)")


def events(world, **filters):
    with open_system_of_record(backend_config(world["env"])) as sor:
        return sor.list_change_events(dict(filters, all=True), limit=50)["rows"]


def by_playbook(world, name):
    return [row for row in events(world) if row["playbook"].endswith(name)][0]


def test_sign_in_and_out_and_a_viewer_cannot_act(browser, world):
    person = Person(browser, world, "vera")
    page = person.page
    page.goto(world["service"].base + "/changes")
    assert "/login" in page.url and page.locator("#username").count() == 1
    page.fill("#username", "vera")
    page.fill("#password", "not-her-password")
    page.click("#sign-in")
    assert "wrong account name or password" in page.inner_text("#error")
    shot(page, "sign-in-refused")
    person.sign_in()
    assert "Vera" in page.inner_text("#who") and "viewer" in page.inner_text(".roles")
    motd = by_playbook(world, "motd.yml")
    page.click("tr[data-run-id='%s'] td.when a" % motd["run_id"])
    page.wait_for_selector("#change-heading")
    assert page.locator("#review-form").count() == 0 and page.locator("#ack-form").count() == 0
    assert "Signing off needs the reviewer role" in page.inner_text("#no-review")
    shot(page, "viewer-change")
    page.click("#sign-out")
    page.wait_for_selector("#username")
    page.goto(world["service"].base + "/changes/%s" % motd["run_id"])
    assert "/login" in page.url, "signed out: nothing is readable"
    person.close()


def test_reviewer_signs_off_a_change(browser, world):
    person = Person(browser, world, "rita").sign_in()
    page = person.page
    cmdb = by_playbook(world, "cmdb.yml")
    motd = by_playbook(world, "motd.yml")
    page.goto(world["service"].base + "/changes?review=awaiting")
    assert motd["run_id"] in run_ids(page) and cmdb["run_id"] not in run_ids(page), "record-only needs no review"
    page.click("tr[data-run-id='%s'] td.when a" % motd["run_id"])
    page.wait_for_selector("#review-form")
    text = page.inner_text("main")
    assert "No gate allowed this change" in text and "Write the message of the day" in text
    assert page.locator("pre.diff").count() >= 2, "the redacted diffs of both hosts"
    assert "ledger entries" in page.inner_text("#chain")
    assert "matches its hash and its per-field commitments" in page.inner_text("#chain-ok"), "verified by the ledger"
    page.check("input[name=outcome][value=follow-up]")
    page.click("#review-submit")
    assert "say what needs following up" in page.inner_text("#error"), "follow-up without a comment is refused"
    page.check("input[name=outcome][value=follow-up]")
    page.fill("#review-comment", "Who ran this without a gate? Ask the web team.")
    page.click("#review-submit")
    page.wait_for_selector("#reviews")
    assert "follow-up by rita" in page.inner_text("#reviews")
    shot(page, "reviewed")
    with open_system_of_record(backend_config(world["env"])) as sor:
        review = sor.find_reviews(run_id=motd["run_id"])[0]
    assert review["reviewer_identity"] == {"name": "rita", "source": "review-service"} and review["via"] == "password"
    person.close()


def test_cab_approval_then_the_gate_authorises_the_play(browser, world):
    number = world["number"]
    # carol asked for it: approving her own request is refused, and the page says which rule
    carol = Person(browser, world, "carol").sign_in()
    page = carol.page
    page.goto(world["service"].base + "/change-requests")
    page.click("tr[data-number='%s'] a" % number)
    page.wait_for_selector("#decision-form")
    assert page.inner_text("#cr-state").startswith("authorise")
    page.click("#decision-submit")
    error = page.inner_text("#error")
    assert "carol (review-service) may not approve %s: carol requested it" % number in error
    assert "approvals.allow_self_approval" in error
    shot(page, "self-approval-refused")
    carol.close()

    dave = Person(browser, world, "dave").sign_in()
    page = dave.page
    page.goto(world["service"].base + "/change-requests/%s" % number)
    page.fill("#decision-comment", "Reviewed at CAB on Tuesday")
    page.click("#decision-submit")
    page.wait_for_selector("#approvals")
    assert "approved by dave" in page.inner_text("#approvals") and page.inner_text("#cr-approval") == "approved"
    shot(page, "cab-approved")

    # the change manager schedules it (the module, as the OS account) and the play runs under it
    with open_system_of_record(backend_config(world["env"])) as sor:
        change_request(sor, number=number, state="scheduled")
        approval = sor.get_change_request(number)["approvals"][-1]
    assert approval["identity"] == {"name": "dave", "source": "review-service"} and approval["via"] == "password"
    world["project"].run("release.yml", "-e", "change_number=%s" % number, "-e", "workdir=%s" % world["workdir"])
    release = by_playbook(world, "release.yml")
    assert (release["authorisation"], release["authorisation_ref"]) == ("normal", number)
    page.goto(world["service"].base + "/change-requests/%s" % number)
    assert release["run_id"] in page.inner_html("#cr-runs")
    page.click("#cr-runs tr[data-run-id='%s'] a" % release["run_id"])
    page.wait_for_selector("#change-heading")
    assert "change-request" in page.inner_text(".change-badges") and number in page.inner_text("#sec-auth ~ div")
    shot(page, "authorised-by-cab")
    dave.close()


def test_unauthorised_change_acknowledged(browser, world):
    person = Person(browser, world, "dave").sign_in()
    page = person.page
    page.goto(world["service"].base + "/changes?category=unauthorised&ack=unacknowledged")
    motd = by_playbook(world, "motd.yml")
    assert run_ids(page) == [motd["run_id"]]
    page.click("tr[data-run-id='%s'] td.when a" % motd["run_id"])
    page.wait_for_selector("#ack-form")
    page.select_option("#ack-disposition", "incident-raised")
    page.fill("#ack-comment", "Unapproved motd change on the web tier")
    page.click("#ack-submit")
    assert "name the incident raised" in page.inner_text("#error")
    page.select_option("#ack-disposition", "incident-raised")
    page.fill("#ack-reference", "INC0099881")
    page.fill("#ack-comment", "Unapproved motd change on the web tier")
    page.click("#ack-submit")
    page.wait_for_selector("#acknowledgements")
    assert "incident-raised (INC0099881) by dave" in page.inner_text("#acknowledgements")
    shot(page, "acknowledged")
    page.goto(world["service"].base + "/changes?category=unauthorised&ack=unacknowledged")
    assert run_ids(page) == []
    page.goto(world["service"].base + "/changes?ack=incident-raised")
    assert run_ids(page) == [motd["run_id"]]
    person.close()


def test_search_filters_export_and_keyboard(browser, world):
    person = Person(browser, world, "vera").sign_in()
    page = person.page
    base = world["service"].base
    noop = by_playbook(world, "noop.yml")
    motd = by_playbook(world, "motd.yml")
    shown = run_ids(page)
    assert noop["run_id"] not in shown and motd["run_id"] in shown, "runs that changed nothing are hidden"
    page.check("#f-all")
    page.click("#f-apply")
    page.wait_for_selector("tr[data-run-id='%s']" % noop["run_id"])
    assert "all=1" in page.url, "a permalink keeps the filters"
    page.fill("#f-search", "motd")
    page.click("#f-apply")
    page.wait_for_load_state()
    assert run_ids(page) == [motd["run_id"]]
    page.fill("#f-search", "")
    page.fill("#f-host", "web02")
    page.select_option("#f-outcome", "successful")
    page.click("#f-apply")
    page.wait_for_load_state()
    assert set(run_ids(page)) == set(row["run_id"] for row in events(world, host="web02", outcome="successful"))
    assert noop["run_id"] in run_ids(page)
    assert page.locator(".facet[data-facet=outcome] a[data-value=successful]").count() == 1
    shot(page, "filtered")
    page.goto(base + "/changes?from=2999-01-01")
    assert "No matching changes" in page.inner_text("#result-count")
    page.goto(base + "/changes?sort=playbook&dir=asc&all=1")
    assert page.get_attribute("th[data-key=playbook]", "aria-sort") == "ascending"
    playbooks = page.eval_on_selector_all("#rows td.playbook", "cells => cells.map(c => c.title)")
    assert playbooks == sorted(playbooks)

    # exports of the filtered list
    page.goto(base + "/changes?all=1&host=web01")
    with page.expect_download() as download:
        page.click("#export-csv")
    with open(download.value.path(), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert set(row["run_id"] for row in rows) == set(row["run_id"] for row in events(world, host="web01"))
    with page.expect_download() as download:
        page.click("#export-json")
    with open(download.value.path()) as handle:
        assert len(json.load(handle)["changes"]) == len(rows)

    # keyboard: / to search, j/k to move, Enter to open, Escape back
    page.goto(base + "/changes?all=1")
    page.keyboard.press("/")
    assert page.evaluate("() => document.activeElement.id") == "f-search"
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    first = run_ids(page)[0]
    assert page.evaluate("() => document.activeElement.dataset.runId") == first
    page.keyboard.press("Enter")
    page.wait_for_selector("#change-heading")
    assert first in page.url
    page.keyboard.press("Escape")
    page.wait_for_selector("#rows")
    person.close()
