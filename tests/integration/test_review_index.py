# -*- coding: utf-8 -*-
"""The review service's list index (change_index.py, review_queries.py) on both backends.

Every filter, search, sort, page and count is checked against a brute-force reading of the same events
(``get_change_event`` one by one), and the query plans of the list's typical pages use the indexes
(EXPLAIN; on PostgreSQL with sequential scans turned off, since the planner prefers scanning a tiny table).
"""

from __future__ import annotations

import datetime
import random

import pytest

from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record import change_index, review_queries, schema

from register_fixtures import KIND_CYCLE, fill_synthetic_ledger, synthetic_run
from support import schema_history


def _truth(sor):
    """Every event with its facets, computed from the events themselves (not the index)."""
    events = []
    for row in sor.list_change_events({"all": True}, limit=100000)["rows"]:
        event = sor.get_change_event(row["run_id"])
        categories = change_index.categories(event["authorisation"])
        review = sor.find_reviews(run_id=event["run_id"])
        events.append({
            "run_id": event["run_id"], "started_at": event["started_at"], "playbook": event["playbook"],
            "user": event["user"], "hosts": [host["host"] for host in event["hosts"]],
            "outcome": change_index.outcome_of(event["status"], categories), "categories": categories,
            "environments": [env for env in (event["environment"] or "").split(",") if env],
            "review": change_index.review_state(event["status"], event["dry_run"], categories,
                                                review[0]["outcome"] if review else None),
            "listed": categories != ["no-change"]})
    return events


def _expected(truth, filters):
    chosen = []
    for event in truth:
        if not filters.get("all") and not event["listed"]:
            continue
        if filters.get("host") and filters["host"] not in event["hosts"]:
            continue
        if filters.get("outcome") and event["outcome"] != filters["outcome"]:
            continue
        if filters.get("category") and filters["category"] not in event["categories"]:
            continue
        if filters.get("environment") and filters["environment"] not in event["environments"]:
            continue
        if filters.get("review") and event["review"] != filters["review"]:
            continue
        if filters.get("from") and event["started_at"][:10] < filters["from"]:
            continue
        if filters.get("to") and event["started_at"][:10] > filters["to"]:
            continue
        if filters.get("q"):
            values = [event["user"], event["playbook"]] + event["hosts"] + [event["outcome"]] + event["categories"] + \
                event["environments"]
            words = set(word for value in values for word in change_index.words(value))
            if not all(any(word.startswith(term) for word in words) for term in change_index.words(filters["q"])):
                continue
        chosen.append(event)
    chosen.sort(key=lambda event: (event["started_at"], event["run_id"]), reverse=True)
    return [event["run_id"] for event in chosen]


@pytest.mark.parametrize("walks", [None, (3, 10)], ids=["default-walks", "short-walks"])
def test_filters_search_pages_and_counts_match_the_events(sor, backend, monkeypatch, walks):
    """``walks``: PostgreSQL's search page walks the list a few changes at a time (``_text_page_keys``), so that
    each way on of a search page (the page filled by the first walk, a longer walk at the rate the first found,
    the query below the walks, with GIN reading rare words alone) is taken and compared too; at the default
    sizes a test ledger is read by the first walk."""
    # every list counted afresh: a cached summary would let the second way of counting below repeat the first
    monkeypatch.setattr(review_queries, "SUMMARY_CACHE_SIZE", 0)
    statements = []
    if walks:
        monkeypatch.setattr(review_queries, "TEXT_WALK_FIRST", walks[0])
        monkeypatch.setattr(review_queries, "TEXT_WALK_MOST", walks[1])
        query = sor._query

        def recording(sql, params=()):
            statements.append(sql)
            return query(sql, params)

        monkeypatch.setattr(sor, "_query", recording)
    fill_synthetic_ledger(sor, 120, hosts_per_run=2, host_pool=8)
    some = sor.list_change_events({}, limit=3)["rows"]
    review = {"run_id": some[0]["run_id"], "reviewer": "rita", "outcome": "accepted", "comment": ""}
    sor.append([Entry("run.reviewed", some[0]["run_id"], review)])
    truth = _truth(sor)
    hosts = sorted(set(host for event in truth for host in event["hosts"]))
    days = sorted(set(event["started_at"][:10] for event in truth))
    rng = random.Random(5)
    cases = [{}, {"all": True}, {"outcome": "failed"}, {"category": "unauthorised"}, {"review": "accepted"},
             {"host": hosts[0], "outcome": "successful", "from": days[1], "to": days[-2]},
             {"q": "deploy web"}, {"q": "hardening"}, {"q": "production failed"}, {"q": "nothing-matches-this"},
             {"environment": "staging", "category": "emergency"}, {"from": days[2], "to": days[2], "all": True},
             # the words beside a filter: a filter matching fewer leads and the words are checked on each match, or
             # the words lead (rotate_certs.yml: 16 of 120) and the filter is checked on each of theirs
             {"q": "deploy", "outcome": "failed"}, {"q": "web", "host": hosts[1]}, {"q": "hardening", "all": True},
             {"q": "nothing-matches-this", "outcome": "successful"}, {"q": "production", "from": days[1]},
             {"q": "rotate_certs.yml", "environment": "production"}, {"q": "rotate_certs.yml", "outcome": "successful"},
             # words with separators (PostgreSQL leaves out the parts they imply: review_queries.implied_words);
             # certs.yml and site.yml + failed match nothing: no extra match either
             {"q": "rotate_certs.yml"}, {"q": "deploy_web.y web01.example"}, {"q": "certs.yml"},
             {"q": "yml db_maintenance"}, {"q": "web0"}, {"q": "/srv/ansible/site.yml", "outcome": "failed"}]
    for _number in range(10):
        cases.append({"host": rng.choice(hosts), "outcome": rng.choice(["successful", "failed"]),
                      "from": rng.choice(days[:3]), "all": rng.random() < 0.5})
    for filters in cases:
        expected = _expected(truth, filters)
        page = sor.list_change_events(filters, limit=7, offset=3)
        assert [row["run_id"] for row in page["rows"]] == expected[3:10], filters
        page = sor.list_change_events(filters, limit=7)
        assert [row["run_id"] for row in page["rows"]] == expected[:7], filters
        assert (page["total"], page["total_exact"]) == (len(expected), True), filters
        counted = dict((facet, {}) for facet in ("outcome", "category", "review", "environment"))
        for run_id in expected:
            event = [event for event in truth if event["run_id"] == run_id][0]
            for facet, values in (("outcome", [event["outcome"]]), ("category", event["categories"]),
                                  ("review", [event["review"]]), ("environment", event["environments"])):
                for value in values:
                    counted[facet][value] = counted[facet].get(value, 0) + 1
        # counted on their own, and with a page (one pass over the matches gives the total and the counts)
        for counts in (sor.change_event_facet_counts(filters),
                       sor.list_change_events(filters, counts=True)["counts"]):
            assert dict((facet, counts[facet]) for facet in counted) == counted, filters
        # the same list page by page along the keyset cursors, older then back newer
        if len(expected) > 5:
            seen, cursor = [], None
            while True:
                page = sor.list_change_events(filters, limit=4, before=cursor)
                seen += [row["run_id"] for row in page["rows"]]
                if page["older"] is None:
                    break
                cursor = page["older"]
            assert seen == expected, filters
            back, cursor = [], page["rows"][0]["cursor"]
            back = [row["run_id"] for row in page["rows"]]
            while True:
                page = sor.list_change_events(filters, limit=4, after=cursor)
                if not page["rows"]:
                    break
                back = [row["run_id"] for row in page["rows"]] + back
                if page["newer"] is None:
                    break
                cursor = page["newer"]
            assert back == expected, filters
            oldest_first = sor.list_change_events(filters, descending=False, limit=len(expected))["rows"]
            assert [row["run_id"] for row in oldest_first] == expected[::-1], filters
    if walks and backend == "postgresql":
        walked = [sql for sql in statements if "FROM (SELECT * FROM change_list" in sql]
        assert [sql for sql in walked if "LIMIT %d)" % walks[0] in sql], "no first walk"
        assert [sql for sql in walked if "LIMIT %d)" % walks[0] not in sql], "no walk at the rate found"
        below = [sql for sql in statements if "tsquery" in sql and "ORDER BY d.list_key" in sql and "OFFSET" not in sql
                 and sql not in walked]
        assert below, "no query below the walks"
        # and below the walks GIN read the rare words alone, the others checked on its rows (_rare_words)
        assert [sql for sql in below if "IS TRUE" in sql], "no search read its rare words alone"
    # another order, both directions
    rows = sor.list_change_events({"all": True}, sort="playbook", descending=False, limit=200)["rows"]
    assert [row["playbook"] for row in rows] == sorted(event["playbook"] for event in truth)
    assert sor.facet_values("host", hosts[0][:3])[0].startswith(hosts[0][:3])


def test_times_beyond_the_key_range_neither_overflow_nor_drop_an_event(sor):
    """A list key is a 64-bit integer (start in microseconds x 1000): a filter date or a recorded start outside
    1677-2262 took an overflow (a 500 for ``?from=2999-01-01``, seen in the browser test) before keys were held
    to the column's range."""
    fill_synthetic_ledger(sor, 4, hosts_per_run=1, host_pool=2, with_cis=False)
    far = datetime.datetime(2999, 6, 1, tzinfo=datetime.timezone.utc)
    far_run, entries = synthetic_run(99, far, random.Random(1), ["web01.example.net"], KIND_CYCLE[0], "production")
    sor.append(entries)
    everything = sor.list_change_events({"all": True}, limit=50)
    assert everything["rows"][0]["run_id"] == far_run and everything["total"] == 5
    assert [row["run_id"] for row in sor.list_change_events({"all": True, "from": "2999-01-01"}, limit=5)["rows"]] \
        == [far_run]
    # (every time after 2262 shares the last microsecond of keys: a filter from then still finds the run)
    assert [row["run_id"] for row in sor.list_change_events({"from": "9999-12-31"}, limit=5)["rows"]] == [far_run]
    for filters in ({"to": "0001-01-01"}, {"from": "2200-01-01", "to": "2200-12-31"}):
        assert sor.list_change_events(dict(filters, all=True), limit=5)["rows"] == [], filters
        assert sor.change_event_facet_counts(dict(filters, all=True))["outcome"] == {}, filters
    oldest = sor.list_change_events({"all": True}, before=-(2 ** 63), limit=5)
    assert oldest["rows"] == []
    assert [row["run_id"] for row in sor.list_change_events({"all": True}, after=2 ** 63 - 1, limit=5)["rows"]] == []
    assert sor.list_change_events({"all": True}, before=2 ** 63 - 1, limit=5)["rows"][0]["run_id"] == far_run


def test_the_list_pages_use_indexes(sor, backend):
    fill_synthetic_ledger(sor, 40, hosts_per_run=2, host_pool=8)
    host = sor.list_change_events({}, limit=1)["rows"][0]["hosts"][0]
    for filters, offset in (({}, 0), ({}, 30), ({"host": host, "outcome": "failed", "from": "2020-01-01",
                                                 "to": "2030-12-31"}, 0), ({"q": "deploy"}, 0), ({"all": True}, 20)):
        plan = "\n".join(sor.explain_change_events(filters, offset=offset))
        if backend == "sqlite":
            # a scan is an ordered walk of an index (a deep page skips index entries), never of a table
            # (or of the free-text index, which FTS5 walks newest first by its rowid, the list key)
            scans = [line for line in plan.splitlines() if line.strip().startswith("SCAN")]
            assert all(("USING" in line and "INDEX" in line) or "VIRTUAL TABLE INDEX" in line for line in scans), \
                (filters, plan)
            if "q" not in filters:  # newest first straight from the index: no sort of the matches
                assert "TEMP B-TREE FOR ORDER BY" not in plan, (filters, plan)
        else:
            assert "Seq Scan" not in plan, (filters, plan)


def test_search_words_beside_a_filter_are_checked_on_the_list_row(sor, backend):
    """When a filter drives the page, each candidate's search words are checked on its own list row, never by a
    free-text query per row: on SQLite a correlated FTS5 MATCH merged every word with the prefix again for each
    row (a one-letter word beside an outcome filter took 6.5 s at 50,000 changes, ``deploy web00`` 0.3 s)."""
    fill_synthetic_ledger(sor, 40, hosts_per_run=2, host_pool=8)
    host = sor.list_change_events({}, limit=1)["rows"][0]["hosts"][0]
    for filters in ({"host": host, "q": "d"}, {"host": host, "outcome": "successful", "q": "deploy web"},
                    {"outcome": "successful", "q": "a"}):
        plan = "\n".join(sor.explain_change_events(filters))
        if "change_list_words" in plan.splitlines()[0] or "change_list d\n" in plan:
            continue  # the words drive this page (they match fewest): walked once, not probed
        if backend == "sqlite":
            assert "change_list_words" not in plan, (filters, plan)
        else:
            assert "Seq Scan" not in plan, (filters, plan)
        # and the words still decide: the same rows as the words checked by hand
        rows = sor.list_change_events(dict(filters, all=True), limit=100)["rows"]
        terms = change_index.words(filters["q"])
        for row in sor.list_change_events(dict(filters, all=True, q=None), limit=100)["rows"]:
            event = sor.get_change_event(row["run_id"])
            values = [event["user"], event["controller"], event["playbook"], row["outcome"]] + row["hosts"] + \
                row["categories"] + (event["authorisation_ref"] or "").split(",") + \
                (event["environment"] or "").split(",")
            words = set(word for value in values for word in change_index.words(value))
            has = all(any(word.startswith(term) for word in words) for term in terms)
            assert has == (row["run_id"] in [r["run_id"] for r in rows]), (filters, row["run_id"])


def test_cached_totals_and_counts_are_those_of_the_record_as_it_stands(sor, monkeypatch):
    """Each process keeps a list's total and facet counts for the ledger's head (review_queries._summary): they
    must equal a fresh count for every list, and a new run, a review (both ledger entries) must show at once."""
    run_ids = fill_synthetic_ledger(sor, 60, hosts_per_run=2, host_pool=8)
    host = sor.list_change_events({}, limit=1)["rows"][0]["hosts"][0]
    cases = [{}, {"all": True}, {"outcome": "failed"}, {"q": "deploy web"}, {"host": host, "outcome": "successful"},
             {"category": "unauthorised", "ack": "unacknowledged"}]

    def summaries():
        found = []
        for filters in cases:
            first = sor.list_change_events(filters, limit=5, counts=True)
            deeper = sor.list_change_events(filters, limit=5, before=first["older"], counts=True) \
                if first["older"] is not None else first
            assert (deeper["total"], deeper["counts"]) == (first["total"], first["counts"]), filters
            # a search or several filters count total and facets in one pass over the matches: the same as the
            # total alone and the facet counts alone
            alone = sor.list_change_events(filters, limit=5)
            assert (first["total"], first["total_exact"]) == (alone["total"], alone["total_exact"]), filters
            assert first["counts"] == sor.change_event_facet_counts(filters), filters
            found.append((first["total"], first["total_exact"], first["counts"]))
        return found

    def fresh():
        monkeypatch.setattr(review_queries, "SUMMARY_CACHE_SIZE", 0)
        try:
            return summaries()
        finally:
            monkeypatch.undo()

    review_queries._SUMMARIES.clear()  # pylint: disable=protected-access
    assert summaries() == fresh()
    assert summaries() == fresh()  # (the second time from the cache)
    before = summaries()
    # a new run: the head moves, every list is counted again
    _run_id, entries = synthetic_run(60, datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc),
                                     random.Random(3), [host], KIND_CYCLE[0], "production")
    sor.append(entries)
    after = summaries()
    assert after == fresh() and after[1][0] == before[1][0] + 1
    # a review sign-off changes a review count of a past day
    awaiting = sor.list_change_events({"review": "awaiting"}, limit=1)["rows"][0]["run_id"]
    accepted = sor.change_event_facet_counts({})["review"].get("accepted", 0)
    sor.append([Entry("run.reviewed", awaiting, {"run_id": awaiting, "reviewer": "rita", "outcome": "accepted",
                                                 "comment": ""})])
    assert sor.list_change_events({}, limit=1, counts=True)["counts"]["review"]["accepted"] == accepted + 1
    assert summaries() == fresh()
    assert run_ids


def test_searches_are_planned_for_their_words_each_time(sor, backend):
    """psycopg prepares a statement a connection has run five times and PostgreSQL may then keep a generic plan,
    made without the search words: a walk of the whole list for words that match a handful of changes (2 s at
    700,000 changes). A search's statements are never prepared; the list's other statements still are."""
    if backend != "postgresql":
        pytest.skip("SQLite has no server-side prepared statements")
    fill_synthetic_ledger(sor, 20, hosts_per_run=2, host_pool=8)
    for number in range(8):
        sor.list_change_events({"q": "deploy web0%d" % (number % 3)}, counts=True)
        sor.list_change_events({"host": "web01.example.net", "q": "hardening"}, counts=True)
        sor.list_change_events({"outcome": "failed"}, limit=10)
    prepared = [row[0] for row in sor._query("SELECT statement FROM pg_prepared_statements")]
    assert not [statement for statement in prepared if "tsquery" in statement], prepared
    assert [statement for statement in prepared if "change_list" in statement], prepared  # the others are


def test_searches_read_each_changes_stored_word_vector(sor, backend):
    """On PostgreSQL a search reads the word vector stored with each change (``change_list.search``, schema
    migration 17) and its GIN index: computing the vector from ``words`` for every row a search walked or rechecked
    cost most of a common-word search's time at a million changes."""
    if backend != "postgresql":
        pytest.skip("SQLite searches its FTS5 index")
    fill_synthetic_ledger(sor, 20, hosts_per_run=2, host_pool=8)
    host = sor.list_change_events({}, limit=1)["rows"][0]["hosts"][0]
    for filters in ({"q": "deploy"}, {"q": "deploy web0"}, {"host": host, "q": "hardening"},
                    {"outcome": "successful", "q": "a"}):
        plan = "\n".join(sor.explain_change_events(filters))
        assert "search @@" in plan and "array_to_tsvector" not in plan, (filters, plan)
    # the vector is what the words say: every change's stored vector equals the one computed from its words
    differing = sor._query("SELECT COUNT(*) FROM change_list WHERE search IS DISTINCT FROM"
                           " array_to_tsvector(string_to_array(words, ' '))")
    assert differing[0][0] == 0


def test_a_ledger_from_before_the_stored_word_vector_searches_the_same_once_upgraded(open_sor, backend):
    """Migration 17 on a filled ledger: PostgreSQL fills the stored vector of every existing change as it adds the
    column, and every search finds what it found before (SQLite: nothing changes)."""
    sor = open_sor()
    fill_synthetic_ledger(sor, 30, hosts_per_run=2, host_pool=8)
    searches = ({"q": "deploy"}, {"q": "deploy web0"}, {"q": "web01 hardening"}, {"q": "zzz"}, {"q": "d", "all": True})

    def found(system):
        return [[row["run_id"] for row in system.list_change_events(filters, limit=100)["rows"]] for filters in searches]

    before = found(sor)
    with sor._write_transaction() as cursor:
        schema_history.roll_back(cursor, schema.version_of(schema.PG_SEARCH_VECTOR_MIGRATION) - 1)
    sor.close()
    upgraded = open_sor()  # opening migrates
    assert upgraded.schema_version() == schema.LATEST_VERSION
    assert found(upgraded) == before and any(before)
    if backend == "postgresql":
        indexes = [row[0] for row in upgraded._query("SELECT indexname FROM pg_indexes WHERE tablename = 'change_list'")]
        assert "change_list_search" in indexes and "change_list_words" not in indexes, indexes


@pytest.mark.tampers_query_tables
@pytest.mark.parametrize("change", ["recorded", "removed"])
def test_a_search_page_reads_each_change_once_while_the_list_changes(sor, backend, monkeypatch, change):
    """A PostgreSQL search page reads the list in several statements (walks, then a query below them). Where a walk
    stopped is read in the walk's own statement: asked in the next one, a change recorded meanwhile at the top of
    the list moved that edge up (the next step read a change again: a page showed it twice) and one removed moved
    it down (a change was never read). Changes are added or removed right after the first walk here."""
    if backend != "postgresql":
        pytest.skip("SQLite reads a search page in one statement")
    monkeypatch.setattr(review_queries, "SUMMARY_CACHE_SIZE", 0)
    monkeypatch.setattr(review_queries, "TEXT_WALK_FIRST", 3)
    monkeypatch.setattr(review_queries, "TEXT_WALK_MOST", 10)
    fill_synthetic_ledger(sor, 40, hosts_per_run=2, host_pool=8)
    filters = {"q": "deploy", "all": True}
    before = [row["cursor"] for row in sor.list_change_events(filters, limit=1000)["rows"]]
    assert len(before) > 12
    columns = ", ".join(change_index.LIST_COLUMNS)
    query, changed, pages = sor._query, [], []

    def changing(sql, params=()):
        result = query(sql, params)
        if "FROM (SELECT * FROM change_list" in sql and not changed:
            changed.append(sql)
            with sor._write_transaction() as cursor:
                if change == "recorded":  # three newer changes with the same words, at the top of the list
                    cursor.execute("INSERT INTO change_list (list_key, %s) SELECT list_key + 1000000000000,"
                                   " run_id || '-new', %s FROM change_list ORDER BY list_key DESC LIMIT 3"
                                   % (columns, ", ".join(change_index.LIST_COLUMNS[1:])))
                else:  # the two newest, which the first walk has read
                    cursor.execute("DELETE FROM change_list WHERE list_key IN (SELECT list_key FROM change_list"
                                   " ORDER BY list_key DESC LIMIT 2)")
        return result

    text_page_keys = sor._text_page_keys

    def recording(*args, **kwargs):
        pages.append(text_page_keys(*args, **kwargs))
        return pages[-1]

    monkeypatch.setattr(sor, "_query", changing)
    monkeypatch.setattr(sor, "_text_page_keys", recording)
    sor.list_change_events(filters, limit=7)
    assert changed and pages
    # the page as the list stood when the first walk read it: the rows of the first 8 matches, each once
    assert pages[0] == before[:8], (pages[0], before[:9])
