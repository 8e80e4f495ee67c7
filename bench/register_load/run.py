#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""Benchmark: a change register of 10,000 recorded changes opens and becomes interactive in <= 2 s.

Fills an SQLite ledger with N synthetic change events shaped exactly like the
recorder's (through SystemOfRecord.append, so projections and hashing are
real; cached between runs), generates the register with the same code as
``changeops.itsm.change_register``, opens it from file:// in Debian's headless
Chromium (Playwright, never ``playwright install``) and measures, per page load,
the time from navigation start to the page's ``register-interactive`` mark
(list filtered, sorted and rendered, handlers attached). Also measures a search
keystroke round trip and opening one change. The baseline is the same page
with an empty register, measured in the same run.

    .venv/bin/python bench/register_load/run.py [--changes 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, ".build", "collections"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support.project import ensure_collection_tree  # noqa: E402

ensure_collection_tree()

from ansible_collections.changeops.itsm.plugins.module_utils.change_register import generate_register  # noqa: E402
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import (  # noqa: E402
    open_system_of_record,
)
from ansible_collections.changeops.itsm.plugins.plugin_utils.register_render import RegisterRenderer  # noqa: E402

from register_fixtures import fill_synthetic_ledger  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
TARGET_MS = 2000.0


def ledger(path, changes):
    sor = open_system_of_record({"backend": "sqlite", "sqlite_path": path, "busy_timeout": 60})
    have = len(sor.find_change_events(limit=changes + 1))
    if have != changes:
        if have:
            sor.close()
            os.unlink(path)
            sor = open_system_of_record({"backend": "sqlite", "sqlite_path": path, "busy_timeout": 60})
        started = time.monotonic()
        fill_synthetic_ledger(sor, changes)
        print("filled %s with %d change events in %.1f s (cached for the next run)" % (
            path, changes, time.monotonic() - started))
    return sor


def generate(sor, out):
    started = time.monotonic()
    result = generate_register(sor, {"path": out, "title": "Change register (benchmark)"}, RegisterRenderer())
    return time.monotonic() - started, result


def measure(browser, html, repeat, interact):
    loads, searches, opens = [], [], []
    for _attempt in range(repeat):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto("file://" + html, wait_until="commit")
        page.wait_for_selector("html[data-ready=true]", timeout=60000)
        loads.append(page.evaluate("performance.getEntriesByName('register-interactive')[0].startTime"))
        if errors:
            raise SystemExit("page errors in %s: %s" % (html, errors))
        if interact:
            searches.append(page.evaluate("""() => new Promise(resolve => {
                const box = document.getElementById('f-search');
                const status = document.getElementById('result-count');
                const before = status.textContent;
                const started = performance.now();
                new MutationObserver((_, observer) => { observer.disconnect(); resolve(performance.now() - started); })
                    .observe(status, {childList: true, characterData: true, subtree: true});
                box.value = 'emergency web07';
                box.dispatchEvent(new Event('input', {bubbles: true}));
            })""") - 150.0)   # minus the typing debounce
            link = page.locator("#rows tr:last-child td.when a")
            started = time.monotonic()
            link.click()
            page.wait_for_selector("#change-view:not([hidden]) #sec-changes")
            opens.append((time.monotonic() - started) * 1000)
        context.close()
    return loads, searches, opens


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", default=os.path.join(REPO, "artifacts", "bench", "register_load"))
    args = parser.parse_args()
    if not os.path.exists("/usr/bin/chromium"):
        raise SystemExit("/usr/bin/chromium is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    os.makedirs(args.workdir, exist_ok=True)
    full_html = os.path.join(args.workdir, "register-%d.html" % args.changes)
    empty_dir = tempfile.mkdtemp(prefix="register-empty-")
    empty_html = os.path.join(empty_dir, "register-empty.html")

    with ledger(os.path.join(args.workdir, "ledger-%d.sqlite" % args.changes), args.changes) as sor:
        generation_s, result = generate(sor, full_html)
    with open_system_of_record({"backend": "sqlite", "sqlite_path": os.path.join(empty_dir, "empty.sqlite")}) as sor:
        empty_generation_s = generate(sor, empty_html)[0]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        try:
            measure(browser, empty_html, 1, False)   # warm the browser's own caches once
            base_loads = measure(browser, empty_html, args.repeat, False)[0]
            loads, searches, opens = measure(browser, full_html, args.repeat, True)
        finally:
            browser.close()

    base = statistics.median(base_loads)
    full = statistics.median(loads)
    print("")
    print("change register load benchmark (%d changes, %d page loads each, medians)" % (args.changes, args.repeat))
    print("  register file:            %.1f MB (%s)" % (os.path.getsize(full_html) / 1e6, full_html))
    print("  generation (Python):      %.2f s for %d changes; %.2f s for the empty register" % (
        generation_s, result["counts"]["changes"], empty_generation_s))
    print("  baseline, empty register: %7.0f ms to interactive" % base)
    print("  %5d changes:             %7.0f ms to interactive  (ratio %.1fx baseline; target <= %.0f ms: %s)" % (
        args.changes, full, full / base if base else float("inf"), TARGET_MS, "PASS" if full <= TARGET_MS else "FAIL"))
    print("  search keystroke:         %7.0f ms to filter %d rows and redraw" % (statistics.median(searches), args.changes))
    print("  open one change:          %7.0f ms (parses its detail chunk on demand)" % statistics.median(opens))
    print("  all loads (ms): baseline %s; full %s" % (
        ", ".join("%.0f" % v for v in base_loads), ", ".join("%.0f" % v for v in loads)))
    return 0 if full <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
