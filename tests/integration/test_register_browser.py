# -*- coding: utf-8 -*-
"""The change register in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

The ledger is filled by real ansible-playbook runs, once per backend (SQLite and
PostgreSQL); the register is generated with the collection playbook and opened
from file://, the way a reviewer opens an attachment. Screenshots go to
$CHANGEOPS_SCREENSHOTS_DIR (artifacts/screenshots/).
"""

from __future__ import annotations

import csv
import http.server
import json
import os
import re
import threading
import time

import pytest

from support.backends import BACKENDS, backend_config, fresh_env
from support.project import REPO_ROOT, Project
from support.readiness import SHOP_CMDB_PLAYBOOK

from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

from register_fixtures import RELEASE_REQUESTED_BY, record_real_runs

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.environ.get("CHANGEOPS_SCREENSHOTS_DIR") or os.path.join(REPO_ROOT, "artifacts", "screenshots")
#: awaiting review, riskiest first: unauthorised, emergency, denied, failed, the rest; newest first within each
AWAITING_ORDER = ["deploy.yml", "motd.yml", "emergency.yml", "denied.yml", "patch.yml", "release.yml"]
#: every real run that changed something or tried to: a host, or would have (the dry run), the record
#: (cmdb.yml), or was blocked by a gate (denied.yml); only noop.yml, which changed nothing, is hidden by default
CHANGING_RUNS = ("cmdb.yml", "motd.yml", "motd.yml:check", "emergency.yml", "patch.yml", "release.yml", "denied.yml",
                 "deploy.yml")


def generate_register(project, out_dir, title="Change register"):
    """Generate with the collection playbook; returns (HTML path, register data)."""
    html, data = str(out_dir / "register.html"), str(out_dir / "register.json")
    os.makedirs(str(out_dir), exist_ok=True)
    project.run("changeops.itsm.change_register", "-e", json.dumps(
        {"register_path": html, "register_json_path": data, "register_title": title}))
    with open(data) as stream:
        return html, json.load(stream)


@pytest.fixture(scope="module", params=BACKENDS)
def register(request, tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.fail("%s is missing: apt-get install -y chromium (never `playwright install`)" % CHROMIUM)
    root = tmp_path_factory.mktemp("register_browser")
    project = Project(root / "project", fresh_env(request.param, request, root))
    workdir = root / "work"
    workdir.mkdir()
    record_real_runs(project, str(workdir))
    html, document = generate_register(project, root / "out")
    assert document["title"] == "Change register", "a title with spaces reaches the page whole"
    by_playbook = {}
    for row in document["rows"]:
        by_playbook[row["playbook"].rsplit("/", 1)[-1] + (":check" if row["dry_run"] else "")] = row
    return {"html": html, "data": document, "runs": by_playbook, "root": root, "backend": request.param}


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright import sync_api
    except ImportError as exc:
        # like a missing Chromium, a missing Playwright is a broken set-up, not a reason to skip
        pytest.fail("Playwright is missing (%s): pip install -r requirements-dev.txt (never `playwright install`)"
                    % exc, pytrace=False)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def open_page(browser, url):
    """A page of ``url`` in a fresh context; returns (context, page, problems, requests)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    problems, requests = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_selector("html[data-ready=true]")
    return context, page, problems, requests


def check_clean(problems, requests):
    assert problems == [], "console errors or CSP violations: %s" % problems
    outside = [url for url in requests if not url.startswith(("file:", "blob:", "data:"))]
    assert outside == [], "the register must not touch the network: %s" % outside


@pytest.fixture
def page(browser, register):
    context, page, problems, requests = open_page(browser, "file://" + register["html"])
    yield page
    context.close()
    check_clean(problems, requests)


def shot(page, name, full_page=False, backend=None):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    suffix = "-%s" % backend if backend and backend != "sqlite" else ""
    page.screenshot(path=os.path.join(SCREENSHOTS, "register-%s%s.png" % (name, suffix)), full_page=full_page)


def _search_debounce_ms():
    """The search box's debounce, read from register.js (onFilterInput) so the wait below follows it."""
    source = os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "plugin_utils", "register_templates", "register.js")
    with open(source, encoding="utf-8") as stream:
        found = re.search(r"type === 'search' \? (\d+) : 0", stream.read())
    assert found, "%s: onFilterInput's search delay not found" % source
    return int(found.group(1))


LIST_FILTER_DELAY_MS = _search_debounce_ms()


def wait_rows(page, count, timeout=10.0):
    """Wait until the list shows ``count`` rows. Polls with evaluate (a function, run through CDP):
    Playwright's wait_for_function with a string would need 'unsafe-eval', which the page's CSP forbids.

    The search box applies what was typed 150 ms after the last key. A count seen before then can be a
    part-typed query's ("dep" may match as many rows as "deploy"), and its re-render replaces the rows a
    test then focuses or clicks. A timer the page queues now, longer than that delay, fires after the
    list's pending one: once it has, the list shows everything typed so far."""
    page.evaluate("() => new Promise(resolve => setTimeout(resolve, %d))" % (LIST_FILTER_DELAY_MS + 50))
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
    assert page.inner_text("#count-failed") == str(counts["failed"]) == "2"
    # runs that changed nothing are hidden by default; the dry run is shown, set apart
    shown = visible_run_ids(page)
    assert runs["noop.yml"]["run_id"] not in shown
    assert set(shown) == {runs[name]["run_id"] for name in CHANGING_RUNS}
    dry = page.locator("tr[data-run-id='%s']" % runs["motd.yml:check"]["run_id"])
    assert "is-dry-run" in dry.get_attribute("class") and "DRY RUN" in dry.inner_text()
    unauthorised = page.locator("tr[data-run-id='%s']" % runs["motd.yml"]["run_id"])
    assert "is-unauthorised" in unauthorised.get_attribute("class")
    assert unauthorised.locator(".badge-unauthorised").inner_text().lower() == "unauthorised"
    # hosts expand
    unauthorised.locator("details.hosts summary").click()
    assert unauthorised.locator("details.hosts li").all_inner_texts() == ["web01 — changed", "web02 — changed"]
    # the screenshot (docs/images/change-register.png is this one) shows the counts at the top
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "list", backend=register["backend"])

    page.select_option("#f-outcome", "failed")
    wait_rows(page, 2)
    assert visible_run_ids(page) == [runs["deploy.yml"]["run_id"], runs["patch.yml"]["run_id"]], "newest first"
    page.click("#f-reset")
    wait_rows(page, len(CHANGING_RUNS))
    for authorisation, name in (("emergency", "emergency.yml"), ("standard", "patch.yml"),
                                ("change-request", "release.yml"), ("dry-run", "motd.yml:check"),
                                ("denied", "denied.yml"), ("record-only", "cmdb.yml")):
        page.select_option("#f-auth", authorisation)
        wait_rows(page, 1)
        assert visible_run_ids(page) == [runs[name]["run_id"]], authorisation
        page.click("#f-reset")
        wait_rows(page, len(CHANGING_RUNS))   # else the next wait sees this filter's one row

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
    # cmdb.yml ran on localhost; denied.yml's gate failed the play at once, a result on web01 only (as in its recap)
    on_web02 = [name for name in CHANGING_RUNS if name not in ("cmdb.yml", "denied.yml")]
    wait_rows(page, len(on_web02))
    assert set(visible_run_ids(page)) == {runs[name]["run_id"] for name in on_web02}
    page.fill("#f-host", "db01")
    wait_rows(page, 0)
    assert "No matching changes" in page.inner_text("#result-count")
    page.click("#f-reset")
    wait_rows(page, len(CHANGING_RUNS))
    page.fill("#f-from", "2999-01-01")
    wait_rows(page, 0)
    page.fill("#f-from", runs["deploy.yml"]["started_at"][:10])
    wait_rows(page, len(CHANGING_RUNS))
    page.check("#f-nochange")
    wait_rows(page, len(CHANGING_RUNS) + 1)
    shot(page, "filtered", backend=register["backend"])

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
    shot(page, "change", full_page=True, backend=register["backend"])

    # CIs touched link to their history
    view.locator("#sec-cis ~ div a", has_text="web01").click()
    page.wait_for_selector("#ci-view:not([hidden]) #ci-heading")
    ci_text = page.inner_text("#ci-view")
    assert "Configuration item web01" in ci_text
    assert "created (" in ci_text and "environment=production" in ci_text
    assert page.locator("#ci-view tbody tr[data-run-id='%s']" % motd["run_id"]).count() == 1
    shot(page, "ci", backend=register["backend"])
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
    # unauthorised, then emergency, then failed, then the rest, newest first within each; no dry run, no
    # run that changed nothing
    assert order == [runs[name]["run_id"] for name in AWAITING_ORDER]
    shot(page, "review", backend=register["backend"])

    page.click("#nav-all")
    page.emulate_media(media="print")
    assert not page.is_visible("#filters") and not page.is_visible("#pager")
    assert page.is_visible("#changes")
    # the headline counts are printed, without their button chrome
    counts = register["data"]["counts"]
    for key, count_id in (("unauthorised", "count-unauthorised"), ("failed", "count-failed"),
                          ("changes", "count-changes"), ("awaiting_review", "count-awaiting")):
        assert page.is_visible("#" + count_id), "%s count hidden in print" % key
        assert page.inner_text("#" + count_id) == str(counts[key])
    assert page.evaluate("getComputedStyle(document.querySelector('.counts .count')).borderTopStyle") == "none"
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


def row_cells(page, run_id):
    return page.eval_on_selector_all("tr[data-run-id='%s'] td" % run_id, "cells => cells.map(c => c.innerText)")


def open_change(page, register, run_id):
    page.goto("file://%s#/change/%s" % (register["html"], run_id))
    page.wait_for_selector("#change-view:not([hidden]) #change-heading")
    return page.locator("#change-view")


def test_blocked_attempts_are_their_own_state(page, register):
    """A run a change gate denied: not an ordinary failure ('failed', 'No change', 'Not needed')."""
    runs = register["runs"]
    denied = runs["denied.yml"]["run_id"]
    cells = row_cells(page, denied)
    # When, Who, Playbook, Environment, Hosts, Outcome, Authorisation, Review
    assert (cells[5].strip(), cells[6].strip(), cells[7].strip()) == ("denied", "DENIED", "Awaiting review"), cells
    assert page.locator("tr[data-run-id='%s'] .badge-denied" % denied).count() == 2
    assert page.inner_text("#count-denied") == "1"
    page.click("button[data-preset=denied]")
    wait_rows(page, 1)
    assert visible_run_ids(page) == [denied]
    page.click("#f-reset")
    page.select_option("#f-outcome", "denied")
    wait_rows(page, 1)
    assert visible_run_ids(page) == [denied]
    page.select_option("#f-outcome", "failed")
    wait_rows(page, 2)
    assert denied not in visible_run_ids(page), "a blocked attempt is not listed among failures"
    view = open_change(page, register, denied)
    assert "give the gate change_request: <number> of an approved change request" in view.inner_text()
    assert "closest: standard change 'monthly-patching'" in view.inner_text()


def test_counts_agree_with_each_other_and_say_what_changed(page, register):
    """One definition of a change: the hosts cell, the category, the detail and the counts agree."""
    runs = register["runs"]
    cmdb = row_cells(page, runs["cmdb.yml"]["run_id"])
    # CMDB registration changed the record, not its host: shown by default, neither "1 changed" nor "No change"
    assert (cmdb[4].strip(), cmdb[6].strip(), cmdb[7].strip()) == ("1 host", "Record only", "Not needed"), cmdb
    release = row_cells(page, runs["release.yml"]["run_id"])
    assert release[4].startswith("2 hosts (2 changed)"), release
    dry = row_cells(page, runs["motd.yml:check"]["run_id"])
    assert dry[4].startswith("2 hosts (2 would change)"), dry

    view = open_change(page, register, runs["release.yml"]["run_id"])
    # a loop of three items and one task: 4 changes on each host, not 5 (the loop's summary is not one more)
    assert view.locator("h4", has_text="(4 changes)").all_inner_texts() == ["web01 (4 changes)", "web02 (4 changes)"]
    hosts = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#change-view section[aria-labelledby=sec-hosts] tbody tr')).map(r => Array.from(r.children).map(c => c.textContent))""")
    # Changes made (this register's count) next to Ansible's recap, which counts the loop once
    assert [row[:2] + [row[3]] for row in hosts] == [["web01", "4", "2"], ["web02", "4", "2"]], hosts
    assert "PLAY RECAP" in view.locator("#sec-hosts ~ p.table-note").inner_text()

    view = open_change(page, register, runs["cmdb.yml"]["run_id"])
    assert "No task changed a host." in view.inner_text()
    record = view.locator("section[aria-labelledby=sec-record]")
    assert "Changes to the record (2)" in record.inner_text()


def test_the_authorisation_shows_the_change_request_as_a_reviewer_needs_it(page, register):
    """Who asked, who approved and when, for which window; never '[object Object]'."""
    number = register["data"]["rows"] and [row for row in register["data"]["rows"]
                                           if row["authorisation_types"] == ["change-request"]][0]["authorisation_ref"]
    view = open_change(page, register, register["runs"]["release.yml"]["run_id"])
    auth = view.locator("section[aria-labelledby=sec-auth]")
    text = auth.inner_text()
    assert "[object Object]" not in view.inner_text()
    assert "Change request %s (when the gate decided: scheduled, approval approved, window " % number in text
    requests = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#change-view section[aria-labelledby=sec-auth] table')).pop().querySelectorAll('tbody tr')[0].children.length""")
    assert requests == 7
    cells = auth.locator("table").last.locator("tbody tr").first.locator("th, td").all_inner_texts()
    assert cells[0] == number and cells[1] == "scheduled"
    assert cells[4].startswith(RELEASE_REQUESTED_BY + " (raised by "), cells
    window = cells[5]
    assert " UTC – " in window and window.endswith("(Europe/Paris request)"), window
    assert cells[6].startswith("Approved by carol at "), cells
    shot(page, "change-request", full_page=True, backend=register["backend"])


def test_the_ci_page_lists_each_field_once(page, register):
    page.goto("file://%s#/change/%s" % (register["html"], register["runs"]["motd.yml"]["run_id"]))
    page.wait_for_selector("#change-view:not([hidden]) #change-heading")
    page.locator("#change-view a", has_text="web01").first.click()
    page.wait_for_selector("#ci-view:not([hidden]) #ci-heading")
    labels = page.eval_on_selector_all("#ci-view dl.summary dt", "terms => terms.map(t => t.textContent)")
    assert labels[:4] == ["CI id", "Class", "Status", "Environment"]
    assert len(labels) == len(set(labels)), "a field listed twice: %s" % labels
    assert not set(labels) & {"class", "status", "environment", "name"}, labels


# --------------------------------------------------------------------------
# checklist evidence from a real release_readiness run
# --------------------------------------------------------------------------
class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        status, body = {"/health": (200, b'{"status": "ok"}')}.get(self.path, (503, b"maintenance"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


#: the health endpoint answers 503 and its gate is made advisory, so the run records a failed
#: gate next to passed and skipped ones and still finishes
READINESS = """
- name: Is the shop ready for release?
  hosts: localhost
  gather_facts: false
  vars:
    release_readiness_service: shop
    release_readiness_ports: [{port}]
    release_readiness_health_url: "http://127.0.0.1:{port}/down"
    release_readiness_disk_paths: [{root}]
    release_readiness_disk_min_free_percent: 0
    release_readiness_config_file: {root}/app.conf
    release_readiness_rollback_path: {root}/releases
    release_readiness_evidence_dir: {root}/evidence
    release_readiness_gate_overrides:
      GATE-HTTP-01: {{blocking: false}}
    release_readiness_skip_gates:
      - id: GATE-SVC-01
        reason: the test service is a thread of pytest, not a systemd unit
      - id: GATE-REBOOT-01
        reason: a pending reboot of the CI machine is not the service's business
  roles:
    - changeops.itsm.release_readiness
"""

EVIDENCE_TABLES_JS = """() => Array.from(document.querySelectorAll(
    '#change-view section[aria-labelledby=sec-evidence] table')).map(table => ({
  headers: Array.from(table.querySelectorAll('thead th')).map(cell => cell.textContent),
  rows: Array.from(table.querySelectorAll('tbody tr')).map(row => Array.from(row.children).map(cell => cell.textContent))
}))"""


@pytest.fixture(scope="module", params=BACKENDS)
def readiness_register(request, tmp_path_factory):
    """A register whose ledger holds the evidence of a real release_readiness run against localhost."""
    root = tmp_path_factory.mktemp("register_readiness")
    env = fresh_env(request.param, request, root)
    project = Project(root / "project", env)
    srv = root / "srv"
    for release in ("1.0.0", "1.1.0"):
        (srv / "releases" / release).mkdir(parents=True)
    (srv / "app.conf").write_text("x=1\n")
    os.chmod(str(srv / "app.conf"), 0o640)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        project.write_playbook("seed.yml", SHOP_CMDB_PLAYBOOK)
        project.write_playbook("readiness.yml", READINESS.format(port=server.server_address[1], root=srv))
        project.run("seed.yml")
        project.run("readiness.yml")
    finally:
        server.shutdown()
        server.server_close()
    html, document = generate_register(project, root / "out", title="Release readiness (test)")
    (row,) = [row for row in document["rows"] if row["playbook"].endswith("readiness.yml")]
    with open_system_of_record(backend_config(env)) as sor:
        evidence = {item["host"]: item for item in sor.find_evidence(run_id=row["run_id"])}
    return {"html": html, "run_id": row["run_id"], "evidence": evidence, "backend": request.param}


def test_checklist_evidence_of_a_real_readiness_run_shows_per_control_rows(browser, readiness_register):
    run_id = readiness_register["run_id"]
    host_document = readiness_register["evidence"]["localhost"]["document"]
    service_document = readiness_register["evidence"]["shop"]["document"]
    # what the role really recorded: a host document listing its gates, a service document listing them per host
    assert isinstance(host_document["gates"], list) and list(service_document["gates"]) == ["localhost"]
    statuses = {gate["id"]: gate["status"] for gate in host_document["gates"]}
    assert statuses["GATE-HTTP-01"] == "fail" and statuses["GATE-PORT-01"] == "pass"
    assert statuses["GATE-SVC-01"] == "skipped"

    context, page, problems, requests = open_page(
        browser, "file://%s#/change/%s" % (readiness_register["html"], run_id))
    try:
        page.wait_for_selector("#change-view:not([hidden]) #sec-evidence")
        section = page.locator("#change-view section[aria-labelledby=sec-evidence]")
        headings = section.locator("h4").all_inner_texts()
        assert sorted(headings) == [
            "release_readiness on localhost: %s" % readiness_register["evidence"]["localhost"]["status"],
            "release_readiness on shop: %s" % readiness_register["evidence"]["shop"]["status"]]
        assert "[object Object]" not in section.inner_text()
        # one table per evidence record, in the order of their headings
        tables = dict(zip((heading.split(" on ")[1].split(":")[0] for heading in headings),
                          page.evaluate(EVIDENCE_TABLES_JS)))
        host_table, service_table = tables["localhost"], tables["shop"]

        assert host_table["headers"] == ["Control", "Title", "Status", "Observed", "Expected", "Detail"]
        assert [(cells[0], cells[2]) for cells in host_table["rows"]] == [
            (gate["id"], gate["status"]) for gate in host_document["gates"]]
        http_row = [cells for cells in host_table["rows"] if cells[0] == "GATE-HTTP-01"][0]
        http_gate = [gate for gate in host_document["gates"] if gate["id"] == "GATE-HTTP-01"][0]
        assert "returned 503" in http_row[5] and http_row[5] == http_gate["message"]
        assert '"status": 503' in http_row[3]

        # the service's document: one row per host and gate, with the host named
        assert service_table["headers"] == ["Host", "Control", "Title", "Status", "Observed", "Expected", "Detail"]
        assert [(cells[0], cells[1], cells[3]) for cells in service_table["rows"]] == [
            ("localhost", gate["id"], gate["status"]) for gate in service_document["gates"]["localhost"]]
        failed = page.locator("#change-view section[aria-labelledby=sec-evidence] .badge-bad")
        assert failed.count() == 2, "the failed gate is marked in both tables"
        shot(page, "evidence", full_page=True, backend=readiness_register["backend"])
    finally:
        context.close()
    check_clean(problems, requests)
