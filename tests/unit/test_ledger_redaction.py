# -*- coding: utf-8 -*-
"""Redacting ledger fields through the system of record (both backends): the chain keeps verifying,
the redaction is listed, the value is gone from every row, and tampering with a redaction is caught."""

from __future__ import annotations

import binascii
import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from support.raw_ledger import raw_ledger_connection

from ansible_collections.changeops.itsm.plugins.module_utils import commitments
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConflictError, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.ledger import Entry, verify_rows
from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import plan_redaction
from ansible_collections.changeops.itsm.plugins.module_utils.system_of_record.factory import open_system_of_record

PLANTED = "Planted-Value-7f3e91"
RUN = "run-redact"


def populate(sor, entry_format=3, stdout_size=0):
    """A run whose third entry printed ``PLANTED`` in stdout and in a diff; returns the results' seqs."""
    started = {"run_id": RUN, "started_at": "2026-11-23T10:00:00.000000Z", "user": "ops", "controller": "ctl",
               "playbooks": ["site.yml"]}
    leak = {"run_id": RUN, "play_id": "p1", "host": "web01", "item": None, "status": "changed", "changed": True,
            "started_at": "2026-11-23T10:00:01.000000Z",
            "task": {"name": "print it", "action": "ansible.builtin.command", "uuid": "t1"},
            "result": {"cmd": "echo %s" % PLANTED, "rc": 0, "stdout": "token %s%s" % (PLANTED, "." * stdout_size)},
            "diff": [{"before": "", "after": "key %s\n" % PLANTED, "after_header": "/etc/app.conf"},
                     {"before": "a\n", "after": "b\n"}]}
    other = dict(leak, host="web02", result={"cmd": "true", "rc": 0, "stdout": ""}, diff=[])
    entries = [Entry("run.started", RUN, started, format=entry_format),
               Entry("run.play", RUN, {"run_id": RUN, "play_id": "p1", "name": "web", "hosts": ["web01", "web02"]},
                     format=entry_format),
               Entry("run.result", RUN, leak, format=entry_format),
               Entry("run.result", RUN, other, format=entry_format),
               Entry("run.finished", RUN, {"run_id": RUN, "ended_at": "2026-11-23T10:05:00.000000Z",
                                           "outcome": "successful"}, format=entry_format)]
    sor.append(entries)
    return 3


def hashes(sor):
    return [(entry.seq, entry.hash) for entry in sor.iter_entries()]


def stored_text(sor, backend_env):
    """Every text column of every table the collection keeps, as one string."""
    conn = raw_ledger_connection(sor, backend_env)
    try:
        texts = []
        for table in ("ledger", "change_events", "run_hosts", "task_results", "configuration_items",
                      "change_requests", "evidence", "reviews", "policies"):
            for row in conn.execute("SELECT * FROM %s" % table).fetchall():
                texts.extend(str(value) for value in row)
        return "\n".join(texts)
    finally:
        conn.close()


def fresh(sor):
    return open_system_of_record(dict(sor.config))


@pytest.mark.parametrize("entry_format", [3, 2, 1], ids=["format3", "format2", "format1"])
def test_redacting_keeps_every_hash_and_the_chain_verifying(sor, backend_env, entry_format):
    seq = populate(sor, entry_format)
    before = hashes(sor)
    assert PLANTED in stored_text(sor, backend_env)

    record = sor.redact_entry(seq, ["result.stdout", "result.cmd", "diff[0].after"], "INC-1: token printed",
                              "alice", "alice@ctl")

    assert record.kind == "ledger.redacted" and record.seq == len(before) + 1
    assert hashes(sor)[:len(before)] == before, "a redaction must not change any hash"
    assert PLANTED not in stored_text(sor, backend_env)
    entry = sor.get_entry(seq)
    assert entry.data["result"]["stdout"] == commitments.tombstone(record.seq)
    assert entry.data["diff"][0] == commitments.tombstone(record.seq), "diff[0].after names the whole diff[0]"
    assert entry.data["diff"][1] == {"before": "a\n", "after": "b\n"}, "the other diff is kept"
    assert entry.data["result"]["rc"] == 0
    with fresh(sor) as other:
        report = other.verify(projections=True)
    assert report.valid, report.summary()
    assert report.projections_checked
    assert sorted((item["seq"], item["field"], item["redacted_by"], item["by"], item["reason"])
                  for item in report.redactions) == [
        (seq, "diff[0]", record.seq, "alice", "INC-1: token printed"),
        (seq, "result.cmd", record.seq, "alice", "INC-1: token printed"),
        (seq, "result.stdout", record.seq, "alice", "INC-1: token printed")]
    assert "3 fields redacted" in report.summary()
    # the query tables serve the tombstone
    [result] = [r for r in sor.get_task_results(RUN) if r["host"] == "web01"]
    assert result["result"]["stdout"] == commitments.tombstone(record.seq)


def test_redacting_again_changes_nothing(sor):
    seq = populate(sor)
    assert sor.redact_entry(seq, ["result.stdout"], "why", "alice", "alice@ctl") is not None
    head = sor.head()
    assert sor.redact_entry(seq, ["result.stdout"], "why", "alice", "alice@ctl") is None
    assert sor.head() == head
    # a second field later: a second record, both listed
    assert sor.redact_entry(seq, ["result.cmd", "result.stdout"], "more", "bob", "bob@ctl") is not None
    report = sor.verify()
    assert report.valid and [(item["field"], item["by"]) for item in report.redactions] == [
        ("result.stdout", "alice"), ("result.cmd", "bob")]


def test_a_field_other_tables_derive_from_is_rebuilt_from_the_ledger(sor, backend_env):
    """task.name feeds task_results.task_name: the query tables are replayed, and still match."""
    seq = populate(sor)
    sor.redact_entry(seq, ["task.name", "result.stdout"], "why", "alice", "alice@ctl")
    conn = raw_ledger_connection(sor, backend_env)
    try:
        name = conn.execute("SELECT task_name FROM task_results WHERE seq = ?", (seq,)).fetchone()[0]
    finally:
        conn.close()
    assert name.startswith(commitments.TOMBSTONE_PREFIX)
    with fresh(sor) as other:
        report = other.verify(projections=True)
    assert report.valid and report.projections_checked, report.summary()


@pytest.mark.parametrize("field,message", [
    ("host", "field host cannot be redacted"),
    ("task.action", "field task.action cannot be redacted"),
    ("run_id", "field run_id cannot be redacted"),
    ("result.nope", "no field 'result.nope'"),
    ("nothing", "no field 'nothing'"),
    ("diff[7]", "diff has 2 members"),
])
def test_bad_fields_are_refused_naming_the_entry_and_field(sor, field, message):
    seq = populate(sor)
    head = sor.head()
    with pytest.raises(ValidationError) as caught:
        sor.redact_entry(seq, [field], "why", "alice", "alice@ctl")
    assert message in caught.value.message and "entry %d (run.result" % seq in caught.value.message
    assert sor.head() == head, "nothing written"


def test_an_ad_hoc_commands_arguments_redact_but_what_classifies_the_record_does_not(sor):
    """The recorder's ad-hoc and lost-entry records: a secret typed into ``-a`` is removed like any field, while
    the event's kind and what a run.incomplete marker says was lost (the authorisation ``incomplete``, the lost
    end's outcome) are protected."""
    run = "run-adhoc"
    sor.append([
        Entry("run.started", run, {"run_id": run, "started_at": "2026-11-23T10:00:00.000000Z", "user": "ops",
                                   "playbooks": [], "kind": "adhoc",
                                   "adhoc": {"module": "ansible.builtin.shell", "pattern": "web",
                                             "args": "mysql -u root -h db %s" % PLANTED}}),
        Entry("run.incomplete", run, {"run_id": run, "lost_entries": 2, "lost_kinds": {"run.result": 1,
                                                                                       "run.finished": 1},
                                      "reason": "disk full", "noted_at": "2026-11-23T10:01:00.000000Z",
                                      "lost_from": "2026-11-23T10:00:01.000000Z", "run_ended": True,
                                      "end": {"kind": "run.finished", "outcome": "successful", "stats": {}}})])
    started, marker = [entry.seq for entry in sor.iter_entries()]
    for seq, field in ((started, "kind"), (marker, "lost_kinds"), (marker, "end.outcome"), (marker, "lost_entries")):
        with pytest.raises(ValidationError) as caught:
            sor.redact_entry(seq, [field], "why", "alice", "alice@ctl")
        assert "cannot be redacted: the query tables or the change event's authorisation are derived from %s" % field \
            in caught.value.message, caught.value.message
    sor.redact_entry(started, ["adhoc.args"], "INC-9: password typed into -a", "alice", "alice@ctl")
    sor.redact_entry(marker, ["reason"], "why", "alice", "alice@ctl")
    event = sor.get_change_event(run)
    assert (event["kind"], event["authorisation"], event["status"]) == ("adhoc", "incomplete", "successful")
    assert PLANTED not in json.dumps(event) and event["adhoc"]["args"].startswith(commitments.TOMBSTONE_PREFIX)
    assert sor.verify(projections=True).valid


def test_the_ledgers_own_entries_cannot_be_redacted(sor):
    seq = populate(sor)
    record = sor.redact_entry(seq, ["result.stdout"], "why", "alice", "alice@ctl")
    with pytest.raises(ValidationError) as caught:
        sor.redact_entry(record.seq, ["reason"], "why", "alice", "alice@ctl")
    assert "ledger's own bookkeeping" in caught.value.message


@pytest.mark.tampers_query_tables
def test_an_entry_edited_before_the_redaction_is_refused(sor, backend_env):
    seq = populate(sor)
    conn = raw_ledger_connection(sor, backend_env)
    try:
        text = conn.execute("SELECT data FROM ledger WHERE seq = ?", (seq,)).fetchone()[0]
        conn.execute("UPDATE ledger SET data = ? WHERE seq = ?", (text.replace("web01", "web09"), seq))
    finally:
        conn.close()
    with pytest.raises(ConflictError) as caught:
        sor.redact_entry(seq, ["result.stdout"], "why", "alice", "alice@ctl")
    assert "cannot be redacted" in caught.value.message and "ledger_verify" in caught.value.message


@pytest.mark.tampers_query_tables
@pytest.mark.parametrize("tamper,problem", [
    ("restore", "field result.stdout was redacted, but holds a value again"),
    ("restore-untombstoned", "field result.stdout has no salt and no tombstone"),
    ("drop-record", "without a ledger.redacted entry"),
    ("edit-kept-field", "does not match its commitments"),
])
def test_tampering_with_a_redaction_is_reported(sor, backend_env, tamper, problem):
    seq = populate(sor)
    record = sor.redact_entry(seq, ["result.stdout"], "why", "alice", "alice@ctl")
    conn = raw_ledger_connection(sor, backend_env)
    try:
        text = conn.execute("SELECT data FROM ledger WHERE seq = ?", (seq,)).fetchone()[0]
        if tamper.startswith("restore"):
            # a value put back (and, the second time, the tombstone dropped from the row's redaction state)
            state = json.loads(conn.execute("SELECT redactions FROM ledger WHERE seq = ?", (seq,)).fetchone()[0])
            if tamper == "restore-untombstoned":
                state["tombstones"] = {}
            conn.execute("UPDATE ledger SET data = ?, redactions = ? WHERE seq = ?",
                         (text.replace(commitments.tombstone(record.seq), "token x"), json.dumps(state), seq))
        elif tamper == "drop-record":
            # the record replaced by an innocent entry sealed in its place (same position and predecessor)
            forged = Entry("run.reviewed", RUN, {"run_id": RUN, "reviewer": "x", "outcome": "accepted"})
            forged.seal(record.seq, record.prev_hash)
            conn.execute("UPDATE ledger SET entry_id = ?, kind = ?, subject = ?, actor = ?, at = ?, data = ?, hash = ?,"
                         " salt = ?, payload_root = ? WHERE seq = ?",
                         (forged.id, forged.kind, forged.subject, forged.actor, forged.at, forged.data_json(),
                          forged.hash, forged.salt, forged.payload_root, record.seq))
        else:
            conn.execute("UPDATE ledger SET data = ? WHERE seq = ?", (text.replace('"rc":0', '"rc":1'), seq))
    finally:
        conn.close()
    with fresh(sor) as other:
        report = other.verify()
    assert not report.valid
    assert report.first_broken["problem"] == "edited"
    assert problem in report.first_broken["detail"], report.first_broken


@pytest.mark.parametrize("field", ["reference", "policy.version", "policy.sha256", "policy.state",
                                   "identities.runner", "identities"])
def test_what_a_gate_decision_was_authorised_by_is_refused(sor, field):
    """The change event's authorisation_ref comes from ``reference``; the policy version and the people of a
    decision are what the authorisation audit shows (authorisation/audit.py)."""
    populate(sor)
    [gate] = sor.append([Entry("run.gate", RUN, {
        "run_id": RUN, "play_id": "p1", "decision_id": "d1", "allowed": True, "type": "normal",
        "reference": "CHG0000001", "hosts": ["web01"], "checked_at": "2026-11-23T10:00:00.500000Z",
        "reasons": ["approved by %s" % PLANTED], "policy": {"state": "published", "version": 3, "sha256": "ab" * 32},
        "identities": {"runner": {"name": "ops", "source": "os"}, "approvers": []}})])
    head = sor.head()
    with pytest.raises(ValidationError) as caught:
        sor.redact_entry(gate.seq, [field], "why", "alice", "alice@ctl")
    assert "cannot be redacted" in caught.value.message
    assert sor.head() == head
    # the free text of the decision can go
    record = sor.redact_entry(gate.seq, ["reasons"], "why", "alice", "alice@ctl")
    stored = sor.get_entry(str(gate.seq)).data
    assert PLANTED not in json.dumps(stored) and commitments.tombstone(record.seq) in json.dumps(stored["reasons"])
    assert stored["reference"] == "CHG0000001"
    assert sor.verify(projections=True).valid


POLICY_TEXT = """# webhook token for the CAB channel: %s (pasted here by mistake)
templates:
  - name: motd
    description: the message of the day only
    conditions:
      - "length(paths[?!starts_with(@, '/tmp/')]) == `0`"
""" % PLANTED


def publish(sor, tmp_path, text, comment):
    """A ``policy.published`` entry as change_policy writes it (format 2, committed field by field)."""
    from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import policy_store
    from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.identity import Identity
    from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

    source = tmp_path / ("policy-%d.yml" % len(sor.find_policies()))
    source.write_text(text)
    policy_store._PARSED.clear()
    ctx = OperationContext(sor, {"src": str(source), "change_request": None, "comment": comment},
                           actor="alice@ctl", identity=Identity("alice", "test"))
    result = policy_store.publish_policy(ctx)
    assert result["changed"], result
    return sor.latest_entry(["policy.published"])


@pytest.mark.parametrize("field", ["version", "sha256", "previous_version", "publisher.name", "authorised_by",
                                   "document", "document.templates[0].conditions[0]", "published_at"])
def test_a_published_policys_version_chain_publisher_and_document_are_refused(sor, tmp_path, field):
    """The gate enforces the document and the policies table replays the version chain: a tombstone
    there would change the policy a decision was made under (or stop every later replay)."""
    entry = publish(sor, tmp_path, POLICY_TEXT, "first")
    assert entry.format == 3 and entry.payload_root, "a publication is committed field by field"
    head = sor.head()
    with pytest.raises(ValidationError) as caught:
        sor.redact_entry(entry.seq, [field], "why", "alice", "alice@ctl")
    assert "cannot be redacted" in caught.value.message and "publish a corrected policy" in caught.value.message
    assert sor.head() == head, "nothing written"


def test_a_published_policys_text_and_comment_are_redacted_and_the_gate_keeps_its_policy(sor, backend_env, tmp_path):
    from ansible_collections.changeops.itsm.plugins.module_utils.authorisation import policy_store

    entry = publish(sor, tmp_path, POLICY_TEXT, "token %s" % PLANTED)
    # a second version after it: the replay must still follow the version chain
    publish(sor, tmp_path, POLICY_TEXT.replace(PLANTED, "kept in the vault"), "corrected")
    in_force = sor.get_policy()
    assert PLANTED in stored_text(sor, backend_env)

    record = sor.redact_entry(entry.seq, ["text", "comment"], "INC-2: token in a policy comment", "alice", "alice@ctl")

    assert PLANTED not in stored_text(sor, backend_env)
    first = sor.get_policy(1)
    assert first["text"] == first["comment"] == commitments.tombstone(record.seq)
    assert (first["sha256"], first["document"]) == (entry.data["sha256"], entry.data["document"])
    assert sor.get_policy() == in_force, "the version in force is untouched"
    policy_store._PARSED.clear()
    assert policy_store.gate_policy(sor, None).in_force.version == 2
    with fresh(sor) as other:
        report = other.verify(projections=True)
    assert report.valid and report.projections_checked, report.summary()
    assert sorted(item["field"] for item in report.redactions) == ["comment", "text"]


def test_the_commitment_of_a_redacted_field_cannot_be_tried_against(sor):
    """Its salt is deleted with the value: neither the seed nor the kept salts give it back."""
    seq = populate(sor)
    entry = sor.get_entry(seq)
    fields = [path for path, _value in commitments.iter_fields(entry.data, cut=entry.cut())]
    index = fields.index(("result", "stdout"))
    record = sor.redact_entry(seq, ["result.stdout"], "why", "alice", "alice@ctl")
    redacted = sor.get_entry(seq)
    assert redacted.salt is None
    assert redacted.redactions["salts"][index] is None
    assert all(salt for number, salt in enumerate(redacted.redactions["salts"]) if number != index)
    digest = record.data["fields"][0]["commitment"]
    value_json = commitments.encode_value("token " + PLANTED)
    # with the right value the commitment still needs the deleted salt
    assert digest == binascii.hexlify(commitments.commitment(
        commitments.salts_from_seed(entry.salt, len(fields))[index], ("result", "stdout"), value_json)).decode()
    assert digest != hashlib.sha256(('["result","stdout"]\0' + value_json).encode()).hexdigest()
    for salt in redacted.redactions["salts"]:
        if salt:
            assert digest != binascii.hexlify(commitments.commitment(
                binascii.unhexlify(salt), ("result", "stdout"), value_json)).decode()


def test_a_large_value_leaves_no_copy_in_the_sqlite_file_or_its_wal(sqlite_sor):
    """Values past a page go to overflow pages: compacting and the WAL checkpoint must clear those too."""
    seq = populate(sqlite_sor, stdout_size=20000)
    sqlite_sor.redact_entry(seq, ["result.stdout", "result.cmd", "diff[0]"], "why", "alice", "alice@ctl")
    outcome = sqlite_sor.scrub_storage()
    assert outcome["compacted"] and outcome["wal_checkpointed"], outcome
    for suffix in ("", "-wal", "-shm"):
        try:
            with open(sqlite_sor.path + suffix, "rb") as handle:
                assert PLANTED.encode() not in handle.read(), suffix
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------------------------
# property: any payload, any fields redacted, in memory
# ---------------------------------------------------------------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 6, 10 ** 6), st.text(max_size=12))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                       max_leaves=8)
_payloads = st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda key: key not in ("run_id", "host")),
                            _values, min_size=1, max_size=5)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_payloads, data=st.data())
def test_any_fields_of_any_payload_redact_without_changing_the_root(payload, data):
    entry = Entry("note.recorded", "s", payload).seal(1, "0" * 64)
    fields = [path for path, _value in commitments.iter_fields(entry.data, cut=entry.cut())]
    chosen = data.draw(st.lists(st.sampled_from(fields), min_size=1, unique=True), label="fields")
    plan = plan_redaction(entry, chosen)
    data_json, redactions = plan.stored_state(2)
    redacted = Entry.from_row((1, entry.id, entry.at, entry.kind, entry.subject, entry.actor, data_json,
                               entry.prev_hash, entry.hash, entry.format, None, entry.payload_root,
                               json.dumps(redactions)))
    assert commitments.payload_root(redacted.data, None, redacted.redactions, cut=entry.cut()) == \
        entry.payload_root
    assert redacted.compute_hash("0" * 64) == entry.hash
    record = Entry("ledger.redacted", entry.id, plan.record_data("why", "me", "now")).seal(2, entry.hash)
    report = verify_rows([redacted, record])
    assert report.valid, report.summary()
    assert len(report.redactions) == len(plan.new)


# ---------------------------------------------------------------------------------------------
# the findings of ledger_verify scan_secrets, fed to ledger_redact
# ---------------------------------------------------------------------------------------------
def _scan_then_redact(sor, tmp_path, check_mode=False):
    from ansible_collections.changeops.itsm.plugins.module_utils.change_events import scan_ledger_for_secrets
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import LEDGER_REDACT_SPEC, redact_ledger
    from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

    scan = scan_ledger_for_secrets(sor)
    params = {name: option.get("default") for name, option in LEDGER_REDACT_SPEC.items()}
    params.update(secret_findings=scan["findings"], reason="SEC-1", spool_dirs=[str(tmp_path / "spool")])
    warnings = []
    result = redact_ledger(OperationContext(sor, params, check_mode=check_mode, actor="alice@ctl",
                                            warn=warnings.append))
    return scan, result, warnings


def test_each_finding_names_the_field_ledger_redact_removes(sor, tmp_path):
    run = "run-scan"
    sor.append([
        Entry("run.started", run, {"run_id": run, "user": "ops"}),
        Entry("run.result", run, {
            "run_id": run, "play_id": "p", "host": "web01", "item": None, "status": "ok", "changed": False,
            "task": {"name": "t", "action": "ansible.builtin.command"},
            "result": {"cmd": "mysql -uroot -p%s" % PLANTED, "db_password": PLANTED,
                       "msg": {"kind": "Secret", "data": {"username": PLANTED}}},
            "diff": [{"after": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow%s\n-----END RSA PRIVATE KEY-----\n" % PLANTED}]}),
        # a secret where no redaction can reach: the actor is hashed into the chain as it is
        Entry("ci.created", "ci-9", {"ci_id": "ci-9", "attributes": {"name": "db", "class": "server"},
                                     "identities": {}}, actor="deploy:password=%s" % PLANTED)])
    scan, result, warnings = _scan_then_redact(sor, tmp_path, check_mode=True)
    fields = sorted((item["kind"], item["field"]) for item in scan["findings"])
    assert fields == [("ci.created", None), ("run.result", "diff[0]"), ("run.result", "result.cmd"),
                      ("run.result", "result.db_password"), ("run.result", "result.msg")], scan["findings"]
    [unreachable] = [item for item in scan["findings"] if item["field"] is None]
    assert unreachable["path"] == "actor" and "hashes as it is" in unreachable["not_redactable"]
    assert result["changed"] and sorted(item["field"] for item in result["redacted"]) == [
        "diff[0]", "result.cmd", "result.db_password", "result.msg"]
    assert [item["path"] for item in result["not_redactable"]] == ["actor"]
    assert warnings and "cannot be removed by a redaction" in warnings[0] and PLANTED not in warnings[0]
    assert PLANTED not in json.dumps(result)

    scan, result, _warnings = _scan_then_redact(sor, tmp_path)
    assert len(result["redacted"]) == 4 and sor.verify(projections=True).valid
    # a tombstone under a secret-looking key (result.db_password) is not a secret: only the actor is left
    scan, result, _warnings = _scan_then_redact(sor, tmp_path)
    assert [item["path"] for item in scan["findings"]] == ["actor"]
    assert result["changed"] is False and result["redacted"] == []


@pytest.mark.parametrize("path,expected", [
    (("data", "result", "stdout"), ("result", "stdout")),
    (("data", "result", "msg", "data", "username"), ("result", "msg")),
    (("data", "diff", 0, "after"), ("diff", 0)),
    (("data", "result"), ("result",)),
    (("data", "result", "nested", "(key)"), ("result", "nested")),
    (("data", "result", "(key)"), "in the name of a key"),
    (("data", "host"), "field host, from which"),
    (("subject",), "the entry's subject"),
])
def test_finding_field(path, expected):
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import finding_field
    from ansible_collections.changeops.itsm.plugins.module_utils.redaction import KEY_OF

    path = tuple(KEY_OF if part == "(key)" else part for part in path)
    entry = Entry("run.result", RUN, {"run_id": RUN, "host": "web01", "status": "ok",
                                      "result": {"stdout": "x", "msg": {"data": {}}, "nested": {"a": 1}},
                                      "diff": [{"after": "y"}]}).seal(1, "0" * 64)
    field, why_not = finding_field(entry, path)
    if isinstance(expected, tuple):
        assert (field, why_not) == (expected, None)
    else:
        assert field is None and expected in why_not
    record = Entry("ledger.redacted", entry.id, {"fields": [{"field": "x"}]}).seal(2, entry.hash)
    assert finding_field(record, ("data", "fields", 0))[1].startswith("the ledger's own bookkeeping")


def test_secret_findings_that_are_not_a_scans_are_refused_naming_them(sor, tmp_path):
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import LEDGER_REDACT_SPEC, redact_ledger
    from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

    populate(sor)
    params = {name: option.get("default") for name, option in LEDGER_REDACT_SPEC.items()}
    for findings, message in (([{"seq": 3, "path": "data.result.stdout"}], "secret_findings[0]: has no field"),
                              ([{"field": "result.stdout"}], "secret_findings[0]: names no entry"),
                              (["3"], "secret_findings[0]: a finding of ledger_verify's secret_scan is a dict")):
        with pytest.raises(ValidationError) as caught:
            redact_ledger(OperationContext(sor, dict(params, secret_findings=findings, reason="r",
                                                     spool_dirs=[str(tmp_path)])))
        assert message in caught.value.message
    empty = redact_ledger(OperationContext(sor, dict(params, secret_findings=[], reason="r")))
    assert empty["changed"] is False and empty["msg"] == "nothing to redact: no finding names a field"


def test_a_redaction_scrubs_the_copies_in_both_spool_locations_of_the_recorder(sor, tmp_path, monkeypatch):
    """A batch the ledger could not take goes to the recorder's spool_dir, else to its second location (the
    state directory, spool_fallback_dir); by default ledger_redact scrubs both, resolved as the recorder does."""
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import LEDGER_REDACT_SPEC, redact_ledger
    from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext
    from ansible_collections.changeops.itsm.plugins.module_utils.redaction_scrub import SPOOL_TOMBSTONE
    from ansible_collections.changeops.itsm.plugins.module_utils.state_paths import state_spool_dir
    from ansible_collections.changeops.itsm.plugins.plugin_utils.recorder.spool_locations import spool_chain

    seq = populate(sor)
    entry = sor.get_entry(seq)
    copy = {"id": entry.id, "at": entry.at, "kind": entry.kind, "subject": entry.subject, "actor": entry.actor,
            "data": entry.data}
    monkeypatch.setenv("CHANGEOPS_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.delenv("CHANGEOPS_SPOOL_FALLBACK_DIR", raising=False)
    monkeypatch.delenv("ANSIBLE_CONFIG", raising=False)
    # the recorder's own locations (XDG_STATE_HOME is the temporary state directory of tests/conftest.py)
    chain = spool_chain(str(tmp_path / "spool"), "sqlite-0123456789abcdef", "test ledger")
    assert [spool.root for spool in chain.spools] == [str(tmp_path / "spool"), state_spool_dir()]
    copies = [spool.write([copy]) for spool in chain.spools]
    assert all(PLANTED in open(path, encoding="utf-8").read() for path in copies)

    params = {name: option.get("default") for name, option in LEDGER_REDACT_SPEC.items()}
    params.update(entry=str(seq), fields=["result.stdout", "result.cmd", "diff[0]"], reason="INC-1: echoed")
    result = redact_ledger(OperationContext(sor, params, actor="alice@ctl", warn=[].append))

    assert result["changed"] and sorted(result["spool_files_scrubbed"]) == sorted(copies)
    for path in copies:
        stored = json.loads(open(path, encoding="utf-8").read())
        assert PLANTED not in json.dumps(stored)
        assert stored["data"]["result"]["stdout"] == SPOOL_TOMBSTONE and stored["data"]["diff"][0] == SPOOL_TOMBSTONE


def test_what_servicenow_depends_on_is_protected_and_what_it_received_is_reported(sor):
    """The outbox retires and relates a CI by the sys_id of its ci.external_ref entry and lands a run on the CHG
    its gate decision names: those fields are refused. An entry a sync target's cursor had passed may be in that
    system already: listed in external_copies with a warning (task results are never sent)."""
    from ansible_collections.changeops.itsm.plugins.module_utils.ledger_redaction import LEDGER_REDACT_SPEC, redact_ledger
    from ansible_collections.changeops.itsm.plugins.module_utils.operation import OperationContext

    populate(sor)
    sor.append([
        Entry("ci.created", "ci-1", {"ci_id": "ci-1", "attributes": {"name": "web01", "class": "server"},
                                     "identities": {}}),
        Entry("ci.external_ref", "ci-1", {"ci_id": "ci-1", "system": "servicenow", "instance": "https://sn.example",
                                          "sys_id": "0123456789abcdef0123456789abcdef", "class": "cmdb_ci_linux_server",
                                          "operation": "INSERT", "identified_by": "Hardware Rule"}),
        Entry("run.gate", RUN, {"run_id": RUN, "play_id": "p1", "decision_id": "d1", "allowed": True,
                                "type": "normal", "reference": "CHG0030001", "reasons": [], "hosts": ["web01"],
                                "checked_at": "2026-11-23T10:00:00.500000Z",
                                "servicenow": {"sys_id": "fedcba9876543210fedcba9876543210", "number": "CHG0030001"},
                                "change_request": {"number": "CHG0030001", "servicenow_record": {"number": "CHG0030001"}},
                                "comment": "fine"})])
    ref, gate = [entry.seq for entry in sor.iter_entries(kinds=["ci.external_ref", "run.gate"])]
    assert sor.get_entry(str(ref)).format == 3, "new entries are written with per-field commitments"
    for seq, field in ((ref, "sys_id"), (ref, "class"), (ref, "instance"), (gate, "servicenow.sys_id"),
                       (gate, "change_request.servicenow_record")):
        with pytest.raises(ValidationError) as caught:
            sor.redact_entry(seq, [field], "why", "alice", "alice@ctl")
        assert "cannot be redacted" in caught.value.message, field

    head = sor.head()[0]
    sor.advance_sync_cursor("servicenow:sn.example", 0, head - 1)  # delivered up to the CI's reference
    params = {name: option.get("default") for name, option in LEDGER_REDACT_SPEC.items()}
    warnings = []

    def redact(seq, field):
        return redact_ledger(OperationContext(sor, dict(params, entry=str(seq), fields=[field], reason="INC-3",
                                                        spool_dirs=[]), actor="alice@ctl", warn=warnings.append))

    # a task result is never sent; the run's start is (its change event is attached to the CHG)
    assert redact(3, "result.stdout")["external_copies"] == []
    assert redact(1, "user")["external_copies"] == [{"seq": 1, "kind": "run.started", "target": "servicenow:sn.example",
                                                     "cursor_seq": head - 1}]
    assert any("entry 1 (run.started) had been delivered to servicenow:sn.example" in text for text in warnings)
    # past the cursor: delivered later, with the tombstone
    assert redact(gate, "comment")["external_copies"] == []
    assert sor.get_sync_state("servicenow:sn.example")["cursor_seq"] == head - 1, "a redaction moves no cursor"
