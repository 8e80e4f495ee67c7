# -*- coding: utf-8 -*-
"""The change register in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

The ledger is filled by real ansible-playbook runs; the register is generated
with the collection playbook and opened from file://, the way a reviewer opens
an attachment. Screenshots go to $CHANGEOPS_SCREENSHOTS_DIR (artifacts/screenshots/).

These tests are about the page, so they read one SQLite ledger; the same
register generated from PostgreSQL is checked, data and HTML, by
test_register.py, which runs on both backends.
"""

from __future__ import annotations

import csv
import json
import os
import time

import pytest

from support.project import REPO_ROOT, Project

from register_fixtures import record_real_runs

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.environ.get("CHANGEOPS_SCREENSHOTS_DIR") or os.path.join(REPO_ROOT, "artifacts", "screenshots")


@pytest.fixture(scope="module")
def register(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.fail("%s is missing: apt-get install -y chromium (never `playwright install`)" % CHROMIUM)
    root = tmp_path_factory.mktemp("register_browser")
    env = {"CHANGEOPS_BACKEND": "sqlite", "CHANGEOPS_SQLITE_PATH": str(root / "ledger.sqlite")}
    project = Project(root / "project", env)
    workdir = root / "work"
    workdir.mkdir()
    record_real_runs(project, str(workdir))
    html, data = str(root / "out" / "register.html"), str(root / "out" / "register.json")
    os.makedirs(os.path.dirname(html))
    project.run("changeops.itsm.change_register", "-e", "register_path=%s" % html, "-e", "register_json_path=%s" % data,
                "-e", "register_title=Change register (test)")
    with open(data) as stream:
        document = json.load(stream)
    by_playbook = {}
    for row in document["rows"]:
        by_playbook[row["playbook"].rsplit("/", 1)[-1] + (":check" if row["dry_run"] else "")] = row
    return {"html": html, "data": document, "runs": by_playbook, "root": root}


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, register):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    problems, requests = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto("file://" + register["html"])
    page.wait_for_selector("html[data-ready=true]")
    yield page
    context.close()
    assert problems == [], "console errors or CSP violations: %s" % problems
    outside = [url for url in requests if not url.startswith(("file:", "blob:", "data:"))]
    assert outside == [], "the register must not touch the network: %s" % outside


def shot(page, name, full_page=False):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, "register-%s.png" % name), full_page=full_page)


def wait_rows(page, count, timeout=10.0):
    """Wait until the list shows ``count`` rows. Polls with evaluate (a function, run through CDP):
    Playwright's wait_for_function with a string would need 'unsafe-eval', which the page's CSP forbids."""
    deadline = time.monotonic() + timeout
    while True:
        shown = page.evaluate("() => document.querySelectorAll('#rows tr[data-run-id]').length")
        if shown == count:
            return
        if time.monotonic() > deadline:
            raise AssertionError("expected %d rows, the list shows %d" % (count, shown))
        page.wait_for_timeout(50)


def visible_run_ids(page):
    return page.eval_on_selector_all("#rows tr[data-run-id]", "rows => rows.map(r => r.dataset.runId)")


def test_list_counts_filters_search_sort(page, register):
    runs = register["runs"]
    counts = register["data"]["counts"]
    assert page.inner_text("#count-unauthorised") == str(counts["unauthorised"]) == "2"
    assert page.inner_text("#count-failed") == str(counts["failed"]) == "1"
    # runs that changed nothing are hidden by default; the dry run is shown, set apart
    shown = visible_run_ids(page)
    assert runs["cmdb.yml"]["run_id"] not in shown
    assert set(shown) == {runs[name]["run_id"] for name in ("motd.yml", "motd.yml:check", "emergency.yml", "deploy.yml")}
    dry = page.locator("tr[data-run-id='%s']" % runs["motd.yml:check"]["run_id"])
    assert "is-dry-run" in dry.get_attribute("class") and "DRY RUN" in dry.inner_text()
    unauthorised = page.locator("tr[data-run-id='%s']" % runs["motd.yml"]["run_id"])
    assert "is-unauthorised" in unauthorised.get_attribute("class")
    assert unauthorised.locator(".badge-unauthorised").inner_text().lower() == "unauthorised"
    # hosts expand
    unauthorised.locator("details.hosts summary").click()
    assert unauthorised.locator("details.hosts li").all_inner_texts() == ["web01 — changed", "web02 — changed"]
    shot(page, "list")

    page.select_option("#f-outcome", "failed")
    wait_rows(page, 1)
    assert visible_run_ids(page) == [runs["deploy.yml"]["run_id"]]
    page.click("#f-reset")
    page.select_option("#f-auth", "emergency")
    wait_rows(page, 1)
    assert visible_run_ids(page) == [runs["emergency.yml"]["run_id"]]
    page.click("#f-reset")

    page.fill("#f-search", "emergency.yml")
    wait_rows(page, 1)
    assert visible_run_ids(page) == [runs["emergency.yml"]["run_id"]]
    page.fill("#f-search", runs["deploy.yml"]["run_id"][:10])
    deadline = time.monotonic() + 10
    while visible_run_ids(page) != [runs["deploy.yml"]["run_id"]]:
        assert time.monotonic() < deadline, "searching a run id prefix did not find that run"
        page.wait_for_timeout(50)
    page.fill("#f-search", "")
    page.fill("#f-host", "web02")
    page.select_option("#f-env", "production")
    wait_rows(page, 4)
    assert set(visible_run_ids(page)) == {runs[name]["run_id"] for name in ("motd.yml", "motd.yml:check", "emergency.yml", "deploy.yml")}
    page.fill("#f-host", "db01")
    wait_rows(page, 0)
    assert "No matching changes" in page.inner_text("#result-count")
    page.click("#f-reset")
    page.fill("#f-from", "2999-01-01")
    wait_rows(page, 0)
    page.fill("#f-from", runs["deploy.yml"]["started_at"][:10])
    wait_rows(page, 4)
    page.check("#f-nochange")
    wait_rows(page, 5)
    shot(page, "filtered")

    page.click("th[data-key=playbook] button")
    assert page.get_attribute("th[data-key=playbook]", "aria-sort") == "ascending"
    playbooks = page.eval_on_selector_all("#rows td.playbook", "cells => cells.map(c => c.title)")
    assert playbooks == sorted(playbooks)
    page.click("th[data-key=playbook] button")
    assert page.get_attribute("th[data-key=playbook]", "aria-sort") == "descending"
    assert page.eval_on_selector_all("#rows td.playbook", "cells => cells.map(c => c.title)") == sorted(playbooks, reverse=True)
    assert page.get_attribute("th[data-key=started_at]", "aria-sort") is None


def test_change_page_shows_what_the_run_did(page, register):
    runs = register["runs"]
    motd = runs["motd.yml"]
    page.click("tr[data-run-id='%s'] td.when a" % motd["run_id"])
    page.wait_for_selector("#change-view:not([hidden]) #change-heading")
    view = page.locator("#change-view")
    text = view.inner_text()
    assert "motd.yml" in page.inner_text("#change-heading")
    assert "No gate allowed this change" in text
    assert "Write the message of the day" in text
    assert view.locator("h4").all_inner_texts()[:2] == ["web01 (1 change)", "web02 (1 change)"]
    assert view.locator("pre.diff .add").count() >= 2, "the redacted diff is shown, added lines marked"
    assert "Verified: the ledger chain was intact at generation" in text
    assert "and the records shown match it" in text
    assert "awaiting post-implementation review" in text
    view.locator(".signoff summary").click()
    assert "changeops.itsm.change_review" in view.locator(".signoff pre").inner_text()
    shot(page, "change", full_page=True)

    # CIs touched link to their history
    view.locator("#sec-cis ~ div a", has_text="web01").click()
    page.wait_for_selector("#ci-view:not([hidden]) #ci-heading")
    ci_text = page.inner_text("#ci-view")
    assert "Configuration item web01" in ci_text
    assert "created (" in ci_text and "environment=production" in ci_text
    assert page.locator("#ci-view tbody tr[data-run-id='%s']" % motd["run_id"]).count() == 1
    shot(page, "ci")
    page.go_back()
    page.wait_for_selector("#change-view:not([hidden])")

    page.goto("file://%s#/change/%s" % (register["html"], runs["deploy.yml"]["run_id"]))
    page.wait_for_selector("#change-view:not([hidden]) #change-heading")
    failures = page.inner_text("#change-view")
    assert "Failures (1)" in failures and "non-zero return code" in failures and "Health check that fails on web02" in failures

    page.goto("file://%s#/change/%s" % (register["html"], runs["emergency.yml"]["run_id"]))
    page.wait_for_selector("#change-view:not([hidden]) #change-heading")
    gate = page.inner_text("#sec-auth ~ div")
    assert "Allowed" in gate and "INC0012345: web tier refuses connections" in gate

    page.goto("file://%s#/change/%s" % (register["html"], runs["motd.yml:check"]["run_id"]))
    page.wait_for_selector("#change-view:not([hidden]) #change-heading")
    assert "DRY RUN: check mode, nothing changed" in page.inner_text(".change-badges")

    page.goto("file://%s#/change/%s" % (register["html"], "not-a-run"))
    page.wait_for_selector("#change-heading")
    assert page.inner_text("#change-heading") == "Change not found"


def test_keyboard_review_list_and_print(page, register):
    runs = register["runs"]
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "f-search"
    page.keyboard.type("deploy")
    wait_rows(page, 1)
    page.focus("#rows tr td.when a")
    page.keyboard.press("Enter")
    page.wait_for_selector("#change-view:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "change-heading", "focus moves to the opened change"
    page.keyboard.press("Escape")
    page.wait_for_selector("#list-view:not([hidden])")
    # visible focus: the outline style applies to focused controls
    page.focus("#export-csv")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"

    page.click("#nav-review")
    page.wait_for_selector("#review-view:not([hidden])")
    order = page.eval_on_selector_all("#review-rows tr[data-run-id]", "rows => rows.map(r => r.dataset.runId)")
    assert order[-1] == runs["emergency.yml"]["run_id"]
    assert set(order[:2]) == {runs["motd.yml"]["run_id"], runs["deploy.yml"]["run_id"]}, "unauthorised first"
    assert runs["motd.yml:check"]["run_id"] not in order
    shot(page, "review")

    page.click("#nav-all")
    page.emulate_media(media="print")
    assert not page.is_visible("#filters") and not page.is_visible("#pager")
    assert page.is_visible("#changes")
    page.emulate_media(media="screen")


def test_exports_are_the_filtered_list(page, register):
    runs = register["runs"]
    page.select_option("#f-auth", "unauthorised")
    wait_rows(page, 2)
    with page.expect_download() as download_info:
        page.click("#export-csv")
    download = download_info.value
    assert download.suggested_filename.startswith("change-register-") and download.suggested_filename.endswith(".csv")
    path = os.path.join(str(register["root"]), download.suggested_filename)
    download.save_as(path)
    with open(path, encoding="utf-8-sig") as stream:
        records = list(csv.DictReader(stream))
    assert {record["run_id"] for record in records} == {runs["motd.yml"]["run_id"], runs["deploy.yml"]["run_id"]}
    assert all(record["authorisation"] == "unauthorised" and record["host_count"] == "2" for record in records)
    assert {record["hosts"] for record in records} == {"web01 web02"}
    os.makedirs(SCREENSHOTS, exist_ok=True)
    with open(path, encoding="utf-8-sig") as source, open(os.path.join(SCREENSHOTS, "register-export.csv"), "w") as copy:
        copy.write(source.read())

    with page.expect_download() as download_info:
        page.click("#export-json")
    json_path = os.path.join(str(register["root"]), "export.json")
    download_info.value.save_as(json_path)
    with open(json_path) as stream:
        exported = json.load(stream)
    assert exported["count"] == 2 and exported["filters"]["auth"] == "unauthorised"
    assert [change["run_id"] for change in exported["changes"]] == [record["run_id"] for record in records]
    assert exported["verification"]["valid"] is True
