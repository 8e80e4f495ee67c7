# -*- coding: utf-8 -*-
"""Decisions of the release_readiness role: checklist validation, tiers, skips, per-type evaluation,
version ordering against real dpkg, certificate dates against `cryptography`, /proc/net against real sockets."""

from __future__ import annotations

import base64
import datetime
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.changeops.itsm.plugins.plugin_utils import release_readiness as rr

TODAY = "2026-06-01"


def gate(gate_id="GATE-T-01", check=None, **fields):
    base = {"id": gate_id, "title": "a gate", "tier": "C", "owner": "team", "check": check or {"type": "reboot"}}
    base.update(fields)
    return base


def plan(gates, **kwargs):
    kwargs.setdefault("today", TODAY)
    return rr.plan(gates, **kwargs)


# ---------------------------------------------------------------------------------------------- plan
@pytest.mark.parametrize("bad, message", [
    (gate(title=""), "release_readiness_gates[0] (id GATE-T-01): field 'title' is required"),
    (gate(tier="D"), "field 'tier' must be one of A, B, C, got 'D'"),
    (gate(owner=None), "field 'owner' is required"),
    (gate(blocking="yes"), "field 'blocking' must be true or false, got 'yes'"),
    (gate(colour="red"), "unknown field(s) colour"),
    (gate(gate_id="bad id"), "field 'id' must be a name such as GATE-HTTP-01, got 'bad id'"),
    (gate(check={"type": "nope"}), "check.type 'nope' is not one of"),
    (gate(check={"type": "http"}), "check.url is required for a http check"),
    (gate(check={"type": "http", "url": "ftp://x"}), "check.url must start with http:// or https://, got 'ftp://x'"),
    (gate(check={"type": "http", "url": "http://x", "verbose": True}), "check type http does not take verbose"),
    (gate(check={"type": "port", "ports": ["eighty"]}), "check.ports must be a whole number, got 'eighty'"),
    (gate(check={"type": "file", "path": "/x", "mode": "rwx"}), "check.mode must be an octal string"),
    (gate(check={"type": "tls", "endpoint": "nohost"}), "check.endpoint must be host:port, got 'nohost'"),
    (gate(check={"type": "package", "packages": [{"name": "a", "op": "~>"}]}), "check.packages[0].op must be one of"),
    (gate(check={"type": "command", "argv": ["a"], "shell": "b"}), "give check.argv or check.shell, not both"),
])
def test_a_bad_gate_is_an_error_naming_list_gate_and_field(bad, message):
    with pytest.raises(rr.ReadinessError) as caught:
        plan([bad])
    assert message in str(caught.value)


def test_duplicate_ids_across_the_two_lists_are_refused():
    with pytest.raises(rr.ReadinessError, match=r"release_readiness_extra_gates\[0\] \(id GATE-T-01\): id GATE-T-01 is "
                                                r"used by more than one gate"):
        plan([gate()], extra_gates=[gate()])


def test_tier_decides_which_gates_apply():
    gates = [gate("G-A", tier="A"), gate("G-B", tier="B"), gate("G-C", tier="C")]
    for service_tier, running in (("A", {"G-A", "G-B", "G-C"}), ("B", {"G-B", "G-C"}), ("C", {"G-C"})):
        planned = plan(gates, service_tier=service_tier)
        assert {g["id"] for g in planned if g["run"]} == running
        for skipped in (g for g in planned if not g["run"]):
            assert skipped["status"] == "skipped"
            assert skipped["message"] == "tier %s gate; the service is tier %s" % (skipped["tier"], service_tier)
    with pytest.raises(rr.ReadinessError, match="release_readiness_service_tier must be one of A, B, C, got 'Z'"):
        plan(gates, service_tier="Z")


def test_unconfigured_gates_are_skipped_or_errors():
    empty = gate(check={"type": "http", "url": ""})
    skipped = plan([empty])[0]
    assert (skipped["run"], skipped["status"], skipped["message"]) == (False, "skipped",
                                                                       "not configured: check.url is empty")
    errored = plan([empty], unconfigured="error")[0]
    assert (errored["run"], errored["status"]) == (False, "error")


def test_skips_need_a_reason_and_lapse_when_expired():
    with pytest.raises(rr.ReadinessError, match=r"release_readiness_skip_gates\[0\] \(id GATE-T-01\): field 'reason' "
                                                r"is required"):
        plan([gate()], skips=[{"id": "GATE-T-01", "reason": "  "}])
    with pytest.raises(rr.ReadinessError, match="'GATE-NOPE' is not a gate of the checklist"):
        plan([gate()], skips=[{"id": "GATE-NOPE", "reason": "x"}])
    active = plan([gate()], skips=[{"id": "GATE-T-01", "reason": "replaced by probe X", "approver": "cab",
                                    "expires": "2026-12-31"}])[0]
    assert active["status"] == "skipped" and not active["run"]
    assert active["message"] == "skipped: replaced by probe X (approved by cab)"
    assert active["skip"]["reason"] == "replaced by probe X"
    lapsed = plan([gate()], skips=[{"id": "GATE-T-01", "reason": "old", "expires": "2026-05-31"}])[0]
    assert lapsed["run"] and lapsed["skip"]["expired"]


def test_overrides_change_fields_or_replace_the_check():
    http = gate("GATE-HTTP-01", check={"type": "http", "url": "http://a/health", "timeout": 3})
    same_type = plan([http], overrides={"GATE-HTTP-01": {"blocking": False, "check": {"timeout": 9}}})[0]
    assert same_type["blocking"] is False
    assert same_type["check"]["url"] == "http://a/health" and same_type["check"]["timeout"] == 9
    other_type = plan([http], overrides={"GATE-HTTP-01": {"check": {"type": "command", "argv": ["true"]}}})[0]
    assert other_type["type"] == "command" and other_type["check"]["exec_argv"] == ["timeout", "30", "true"]
    with pytest.raises(rr.ReadinessError, match="release_readiness_gate_overrides names unknown gate"):
        plan([http], overrides={"GATE-X": {"blocking": False}})


def test_cmdb_gates_are_skipped_when_the_cmdb_is_off():
    planned = plan([gate(check={"type": "cmdb_service"})], cmdb_enabled=False)[0]
    assert planned["status"] == "skipped" and "release_readiness_cmdb_enabled" in planned["message"]


def test_the_default_checklist_is_valid(tmp_path):
    import yaml

    with open(rr.__file__.replace("plugins/plugin_utils/release_readiness.py",
                                  "roles/release_readiness/defaults/main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    # render the role-variable references the way Ansible would for an unconfigured adopter
    gates = []
    for item in defaults["release_readiness_gates"]:
        item = dict(item, owner="release-management")
        item["check"] = {k: (defaults.get(v.strip("{} ").split("|")[0].strip(), v) if isinstance(v, str) and "{{" in v
                             else v) for k, v in item["check"].items()}
        gates.append(item)
    planned = plan(gates)
    assert len(planned) == 14 and len({g["id"] for g in planned}) == 14
    # an adopter who configured nothing gets the CMDB, disk and reboot gates and recorded skips for the rest
    assert {g["id"] for g in planned if g["run"]} == {"GATE-DISK-01", "GATE-CMDB-01", "GATE-CMDB-02", "GATE-CMDB-03",
                                                      "GATE-REBOOT-01"}


# ------------------------------------------------------------------------------------ version compare
PAIRS = [("1.0", "1.0"), ("1.0", "1.1"), ("1.10", "1.9"), ("1.0~rc1", "1.0"), ("1:1.0", "2.0"), ("1.0-1", "1.0-2"),
         ("9.2p1-2+deb12u3", "9.2p1-2"), ("3.0.13-1~deb12u1", "3.0.13-1"), ("2.36-9+deb12u4", "2.36-9+deb12u10"),
         ("1.0a", "1.0+"), ("1.0.0", "1.0"), ("0:5.2.15-2", "5.2.15-2+b2"), ("1.2.3", "1.2.3~"), ("a", "b")]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg to compare against")
@pytest.mark.parametrize("a, b", PAIRS)
def test_version_ordering_matches_dpkg(a, b):
    def dpkg(op):
        return subprocess.run(["dpkg", "--compare-versions", a, op, b], check=False).returncode == 0

    ours = rr.compare_versions(a, b)
    assert (ours < 0, ours == 0, ours > 0) == (dpkg("lt"), dpkg("eq"), dpkg("gt"))


# -------------------------------------------------------------------------------------- certificates
@pytest.mark.parametrize("not_after", [datetime.datetime(2031, 3, 4, 5, 6, 7), datetime.datetime(2061, 1, 2, 3, 4, 5)])
def test_certificate_dates_match_cryptography(not_after):
    """UTCTime before 2050, GeneralizedTime after; with the explicit version field of X.509 v3."""
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a-rather-long-common-name.example.org")])
    not_before = datetime.datetime(2024, 1, 2, 3, 4, 5)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    start, end = rr.certificate_validity(der)
    assert start == not_before.replace(tzinfo=datetime.timezone.utc)
    assert end == not_after.replace(tzinfo=datetime.timezone.utc)

    tls_gate = plan([gate(check={"type": "tls", "endpoint": "app:8443", "min_days": 30})])[0]
    probe = {"stdout": '{"der": "%s", "verified": true}' % base64.b64encode(der).decode()}
    near = (not_after - datetime.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = rr.evaluate([tls_gate], {"tls": {"results": [dict(probe, item=tls_gate)]}}, {"now": near})[0]
    assert result["status"] == "fail"
    assert result["message"] == "the certificate of app:8443 expires %s (10 days left), expected at least 30 days" % (
        not_after.strftime("%Y-%m-%d"))


# ------------------------------------------------------------------------------------------- sockets
def test_listening_sockets_are_read_from_real_proc_net():
    v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    v4.bind(("127.0.0.1", 0))
    v4.listen(1)
    port = v4.getsockname()[1]
    try:
        with open("/proc/net/tcp") as handle:
            listening = rr.parse_proc_net(handle.read(), "tcp")
        assert ("127.0.0.1", port) in listening
        try:
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            v6.bind(("::1", 0))
        except OSError:
            return
        v6.listen(1)
        try:
            with open("/proc/net/tcp6") as handle:
                listening6 = rr.parse_proc_net(handle.read(), "tcp")
            assert ("0:0:0:0:0:0:0:1", v6.getsockname()[1]) in listening6
        finally:
            v6.close()
    finally:
        v4.close()


# ------------------------------------------------------------------------------------------ evaluate
def _evaluate(check, raw_key, result, **context):
    planned = plan([gate("GATE-X-01", check=check)])
    return rr.evaluate(planned, {raw_key: {"results": [dict(result, item=planned[0])]}}, context)[0]


def test_http_results_say_what_was_returned_and_what_was_expected():
    check = {"type": "http", "url": "https://app:8443/health", "body": "ok"}
    bad_status = _evaluate(check, "http_target", {"status": 503, "content": "down"})
    assert (bad_status["status"], bad_status["message"]) == ("fail", "https://app:8443/health returned 503, expected 200")
    down = _evaluate(check, "http_target", {"status": -1, "msg": "Status code was -1: Connection refused"})
    assert down["message"].startswith("https://app:8443/health did not answer within 5s: ")
    no_body = _evaluate(check, "http_target", {"status": 200, "content": "starting"})
    assert no_body["message"] == "https://app:8443/health returned 200 but the body does not contain 'ok'"
    assert _evaluate(check, "http_target", {"status": 200, "content": "ok", "elapsed": 0})["status"] == "pass"


def test_file_and_command_results():
    stat = {"stat": {"exists": True, "isdir": False, "islnk": False, "mode": "0644", "pw_name": "root",
                     "gr_name": "root"}}
    wrong_mode = _evaluate({"type": "file", "path": "/etc/app.conf", "mode": "640"}, "file", stat)
    assert wrong_mode["message"] == "/etc/app.conf has mode 0644, expected 0640"
    absent_wanted = _evaluate({"type": "file", "path": "/etc/nologin", "state": "absent"}, "file", stat)
    assert absent_wanted["message"] == "/etc/nologin exists (file), expected absent"
    timed_out = _evaluate({"type": "command", "shell": "sleep 99", "timeout": 2}, "command", {"rc": 124})
    assert timed_out["message"] == "`sleep 99` did not finish within 2s"
    missing = _evaluate({"type": "command", "argv": ["nope"]}, "command", {"rc": 127, "stderr": "timeout: nope"})
    assert missing["status"] == "error"


def test_disk_results_from_real_df():
    output = subprocess.run(["/bin/sh", "-c", 'df -Pk -- "$@" && { echo ---; df -Pi -- "$@" || true; }', "df", "/"],
                            stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    ok = _evaluate({"type": "disk", "paths": ["/"], "min_free_percent": 0}, "disk", {"rc": 0, "stdout": output})
    assert ok["status"] == "pass" and 0 <= ok["observed"]["/"]["free_percent"] <= 100
    full = _evaluate({"type": "disk", "paths": ["/"], "min_free_percent": 100.1}, "disk", {"rc": 0, "stdout": output})
    assert full["status"] == "fail" and "expected at least 100.1%" in full["message"]


def test_package_results():
    check = {"type": "package", "packages": [{"name": "openssl", "version": "3.0.13"}, "curl",
                                             {"name": "telnet", "state": "absent"}]}
    query = {"stdout": "openssl\t3.0.11-1~deb12u2\tii \ntelnet\t0.17+2.4-2\tii \ncurl\t7.88.1-10\trc \n"}
    planned = plan([gate("GATE-PKG-01", check=check)])
    result = rr.evaluate(planned, {"package": query})[0]
    assert result["message"] == ("package openssl 3.0.11-1~deb12u2 does not satisfy >= 3.0.13; package curl is not "
                                 "installed; package telnet 0.17+2.4-2 is installed, expected absent")


def test_an_unexpected_observation_is_an_error_of_that_gate_only():
    planned = plan([gate("GATE-A", check={"type": "disk", "paths": ["/"]}), gate("GATE-B")])
    results = rr.evaluate(planned, {"disk": {"results": [{"item": planned[0], "rc": 0, "stdout": "garbage"}]},
                                    "reboot": {"flag": {"stat": {"exists": False}}}}, {"os_family": "Debian"})
    assert [r["status"] for r in results] == ["error", "pass"]


def test_summary_junit_and_service_document():
    planned = plan([gate("G-BLOCK", check={"type": "file", "path": "/a"}),
                    gate("G-ADVISE", check={"type": "file", "path": "/b"}, blocking=False),
                    gate("G-SKIP", tier="A")], service_tier="B")
    missing = {"stat": {"exists": False}}
    results = rr.evaluate(planned, {"file": {"results": [dict(missing, item=planned[0]),
                                                         dict(missing, item=planned[1])]}})
    summary = rr.summarise(results)
    assert summary["status"] == "fail" and not summary["ready"]
    assert summary["blocking_failures"] == ["G-BLOCK /a is missing, expected present"]
    assert summary["advisory_failures"] == ["G-ADVISE /b is missing, expected present"]
    host_doc = rr.host_evidence("web01", results, summary, "shop", "B", "2026-06-01T00:00:00Z")
    service_doc = rr.service_evidence("shop", "B", [host_doc], ["web02"], "2026-06-01T00:00:00Z")
    assert service_doc["summary"]["ready"] is False
    assert "web02: the host dropped out of the play" in service_doc["summary"]["blocking_failures"][-1]
    suite = ET.fromstring(rr.junit(service_doc)).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    assert rr.blocking_report(summary) == "G-BLOCK /a is missing, expected present"


def test_unconfigured_gates_of_every_type_evaluate_to_skipped():
    empty = {"service": {"names": []}, "port": {"ports": []}, "http": {"url": ""}, "tls": {}, "disk": {"paths": []},
             "package": {"packages": []}, "file": {"path": ""}, "command": {"argv": []}, "rollback": {"path": ""}}
    planned = plan([gate("G-%s" % kind, check=dict(check, type=kind)) for kind, check in empty.items()])
    results = rr.evaluate(planned, {})
    assert {r["status"] for r in results} == {"skipped"}
    assert all(r["expected"] is None and r["message"].startswith("not configured: ") for r in results)


# ------------------------------------------------------------------------------------- http method
@pytest.mark.parametrize("method", ["DELETE", "post", "PUT", "", None])
def test_http_gates_only_read(method):
    bad = gate("GATE-HTTP-09", check={"type": "http", "url": "http://app/health", "method": method})
    with pytest.raises(rr.ReadinessError) as caught:
        plan([bad])
    assert ("release_readiness_gates[0] (id GATE-HTTP-09): check.method must be GET or HEAD "
            "(a readiness probe only reads, also under --check), got %r" % method) == str(caught.value)


def test_http_method_is_normalised():
    planned = plan([gate(check={"type": "http", "url": "http://app/health", "method": "head"})])[0]
    assert planned["check"]["method"] == "HEAD"
    assert plan([gate(check={"type": "http", "url": "http://app/health"})])[0]["check"]["method"] == "GET"


# ------------------------------------------------------------------------------------ per-gate CMDB
SERVICE_CI = {"ci_id": "s1", "name": "shop", "class": "service", "status": "operational",
              "attributes": {"owner": "shop-team", "support_group": "", "environment": "production"}}


def _lookup(planned, gate_id, items):
    """A registered loop result of the role's per-gate lookup for one gate."""
    return {"item": [g for g in planned if g["id"] == gate_id][0], "configuration_items": items}


def test_cmdb_gates_take_the_role_defaults_for_options_they_leave_out():
    defaults = {"service_class": "business_service", "required_attributes": ["owner"],
                "relationship_types": ["runs_on"], "transitive": False}
    planned = {g["id"]: g for g in plan([gate("S", check={"type": "cmdb_service"}),
                                         gate("R", check={"type": "cmdb_relationships"}),
                                         gate("R2", check={"type": "cmdb_relationships", "types": [], "transitive": True}),
                                         gate("S2", check={"type": "cmdb_service", "ci_class": "service",
                                                           "required_attributes": []})],
                                        cmdb_defaults=defaults)}
    assert (planned["S"]["check"]["ci_class"], planned["S"]["check"]["required_attributes"]) == ("business_service",
                                                                                                 ["owner"])
    assert (planned["R"]["check"]["types"], planned["R"]["check"]["transitive"]) == (["runs_on"], False)
    assert (planned["R2"]["check"]["types"], planned["R2"]["check"]["transitive"]) == ([], True)
    assert (planned["S2"]["check"]["ci_class"], planned["S2"]["check"]["required_attributes"]) == ("service", [])
    for bad, message in ((gate(check={"type": "cmdb_relationships", "types": "depends_on"}),
                          "(id GATE-T-01): check.types must be a list of names, got 'depends_on'"),
                         (gate(check={"type": "cmdb_relationships", "transitive": "yes"}),
                          "(id GATE-T-01): check.transitive must be true or false, got 'yes'"),
                         (gate(check={"type": "cmdb_service", "ci_class": ""}),
                          "(id GATE-T-01): check.ci_class must be a CI class name, got ''")):
        with pytest.raises(rr.ReadinessError) as caught:
            plan([bad])
        assert message in str(caught.value)


def test_a_relationship_gate_judges_its_own_lookup():
    # two gates, two lookups: any relationship reaches the host; a depends_on-only lookup does not
    planned = plan([gate("GATE-REL-ANY", check={"type": "cmdb_relationships"}),
                    gate("GATE-REL-DEP", check={"type": "cmdb_relationships", "types": ["depends_on"],
                                                "transitive": False})])
    cmdb = {"service": {"configuration_items": [SERVICE_CI]},
            "related_gates": {"results": [_lookup(planned, "GATE-REL-ANY", [{"name": "shop-api"}, {"name": "web01"}]),
                                          _lookup(planned, "GATE-REL-DEP", [{"name": "shop-db"}])]}}
    results = {r["id"]: r for r in rr.evaluate(planned, {"cmdb": cmdb}, {"service": "shop", "host_ci_name": "web01"})}
    assert results["GATE-REL-ANY"]["status"] == "pass"
    assert results["GATE-REL-DEP"]["status"] == "fail"
    assert results["GATE-REL-DEP"]["message"] == ("service CI 'shop' has no relationship to host CI 'web01' "
                                                  "(types depends_on; direct relationships only)")
    assert results["GATE-REL-DEP"]["observed"] == {"related": ["shop-db"], "types": ["depends_on"], "transitive": False}
    assert results["GATE-REL-DEP"]["expected"] == ("service CI related to this host's CI "
                                                   "(types depends_on; direct relationships only)")
    # a gate whose own lookup is missing is an error, never judged on another gate's lookup
    missing = rr.evaluate(planned, {"cmdb": dict(cmdb, related_gates={"results": cmdb["related_gates"]["results"][:1]})},
                          {"service": "shop", "host_ci_name": "web01"})
    assert [r["status"] for r in missing] == ["pass", "error"]


def test_a_service_gate_judges_the_ci_of_its_own_class():
    planned = plan([gate("GATE-SVC-CI", check={"type": "cmdb_service", "ci_class": "business_service",
                                               "required_attributes": ["owner"]}),
                    gate("GATE-SVC-CI2", check={"type": "cmdb_service"})])
    cmdb = {"service_gates": {"results": [_lookup(planned, "GATE-SVC-CI", []),
                                          _lookup(planned, "GATE-SVC-CI2", [SERVICE_CI])]}}
    results = {r["id"]: r for r in rr.evaluate(planned, {"cmdb": cmdb}, {"service": "shop"})}
    assert results["GATE-SVC-CI"]["message"] == "service CI 'shop' (class business_service) does not exist in the CMDB"
    assert results["GATE-SVC-CI2"]["message"] == "service CI 'shop' has no support_group"
    assert results["GATE-SVC-CI2"]["expected"] == ("service CI of class service exists with owner, support_group, "
                                                   "environment set")
