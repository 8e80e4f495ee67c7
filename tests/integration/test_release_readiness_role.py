# -*- coding: utf-8 -*-
"""release_readiness role end to end: real ansible-playbook runs (recorder on) against localhost, probing
HTTP and TLS servers this test starts on loopback, with the CMDB in the system of record of every backend.
The evidence must land on the run's change event and on the service CI; a blocking failure must stop the
play with an actionable line; --check must still probe and record the dry run, but not change the CIs."""

from __future__ import annotations

import datetime
import http.server
import json
import os
import ssl
import threading

import pytest

from support.readiness import SHOP_CMDB_PLAYBOOK

pytestmark = [pytest.mark.integration]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        status, body = {"/health": (200, b'{"status": "ok"}'), "/down": (503, b"maintenance")}.get(
            self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _self_signed(directory, days):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def loopback_services(tmp_path):
    """An HTTP server and a TLS server (certificate valid 90 days) on free loopback ports."""
    pytest.importorskip("cryptography")
    cert, key = _self_signed(str(tmp_path), 90)
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    tls = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in (plain, tls)]
    for thread in threads:
        thread.start()
    yield {"http_port": plain.server_address[1], "tls_port": tls.server_address[1], "ca": cert}
    for server in (plain, tls):
        server.shutdown()
        server.server_close()


READINESS = """
- name: Is the shop ready for release?
  hosts: localhost
  gather_facts: false
  vars:
    release_readiness_service: shop
    release_readiness_ports: [{http_port}, {tls_port}]
    release_readiness_health_url: "http://127.0.0.1:{http_port}/{{{{ health_path | default('health') }}}}"
    release_readiness_health_body: '"status": "ok"'
    release_readiness_tls_endpoint: "127.0.0.1:{tls_port}"
    release_readiness_tls_server_name: localhost
    release_readiness_tls_ca_path: {ca}
    release_readiness_disk_paths: [{root}]
    release_readiness_disk_min_free_percent: 0
    release_readiness_config_file: {root}/app.conf
    release_readiness_backup_command: [test, -s, {root}/backup.tar]
    release_readiness_rollback_path: {root}/releases
    release_readiness_evidence_dir: {root}/evidence
    release_readiness_skip_gates:
      - id: GATE-SVC-01
        reason: the test services are threads of pytest, not systemd units
      - id: GATE-REBOOT-01
        reason: a pending reboot of the CI machine is not the service's business
  roles:
    - changeops.itsm.release_readiness
"""


def _prepare_project(project, services):
    root = project.path("srv")
    os.makedirs(os.path.join(root, "releases", "1.0.0"))
    os.makedirs(os.path.join(root, "releases", "1.1.0"))
    with open(os.path.join(root, "backup.tar"), "w") as handle:
        handle.write("backup")
    config = os.path.join(root, "app.conf")
    with open(config, "w") as handle:
        handle.write("x=1\n")
    os.chmod(config, 0o640)
    project.write_playbook("seed.yml", SHOP_CMDB_PLAYBOOK)
    project.write_playbook("readiness.yml", READINESS.format(root=root, **services))
    return root


def _event(sor, run_id):
    return sor.get_change_event(run_id)


def _service_ci(sor):
    (ci,) = [ci for ci in sor.find_cis(names=["shop"]) if ci["class"] == "service"]
    return sor.get_ci(ci["ci_id"])


def test_evidence_lands_on_the_change_event_and_the_service_ci(project, open_sor, loopback_services):
    root = _prepare_project(project, loopback_services)
    project.run("seed.yml")

    ready = project.run("readiness.yml")
    assert "shop on localhost is ready for release" in ready.stdout
    sor = open_sor()
    events = sorted(sor.find_change_events(playbook="readiness.yml"), key=lambda e: e["started_at"])
    assert len(events) == 1, events
    run_id = events[0]["run_id"]
    evidence = {item["host"]: item for item in sor.find_evidence(run_id=run_id, checklist="release_readiness")}
    assert set(evidence) == {"localhost", "shop"}, evidence
    host_doc = evidence["localhost"]["document"]
    statuses = {gate["id"]: gate["status"] for gate in host_doc["gates"]}
    assert statuses == {
        "GATE-SVC-01": "skipped", "GATE-PORT-01": "pass", "GATE-HTTP-01": "pass", "GATE-TLS-01": "pass",
        "GATE-DISK-01": "pass", "GATE-PKG-01": "skipped", "GATE-FILE-01": "pass", "GATE-CMDB-01": "pass",
        "GATE-CMDB-02": "pass", "GATE-CMDB-03": "pass", "GATE-MON-01": "skipped", "GATE-BAK-01": "pass",
        "GATE-RBK-01": "pass", "GATE-REBOOT-01": "skipped"}, host_doc["gates"]
    skipped = {gate["id"]: gate for gate in host_doc["gates"] if gate["status"] == "skipped"}
    assert skipped["GATE-SVC-01"]["skip"]["reason"] == "the test services are threads of pytest, not systemd units"
    assert skipped["GATE-MON-01"]["message"] == "not configured: check.argv / check.shell is empty"
    tls_gate = [gate for gate in host_doc["gates"] if gate["id"] == "GATE-TLS-01"][0]
    assert 88 < tls_gate["observed"]["days_left"] <= 90 and tls_gate["observed"]["verified"] is True
    assert evidence["shop"]["status"] == "pass" and evidence["shop"]["document"]["summary"]["ready"] is True

    service = _service_ci(sor)
    assert service["attributes"]["ready_for_release"] is True
    assert service["attributes"]["ready_for_release_checked_at"] == evidence["shop"]["document"]["generated_at"]
    assert service["attributes"]["compliance.release_readiness"]["run_id"] == run_id
    assert service["attributes"]["compliance.release_readiness"]["status"] == "pass"
    host_ci = sor.find_cis(names=["localhost"])[0]
    assert host_ci["attributes"]["compliance.release_readiness"]["status"] == "pass"
    with open(os.path.join(root, "evidence", "service-shop.json")) as handle:
        assert json.load(handle)["summary"]["ready"] is True

    # the health endpoint answers 503: the play stops with a line a person can act on
    blocked = project.run("readiness.yml", "-e", "health_path=down", check=False)
    assert blocked.returncode == 2, blocked.stdout[-3000:]
    line = "GATE-HTTP-01 http://127.0.0.1:%d/down returned 503, expected 200" % loopback_services["http_port"]
    assert line in blocked.stdout
    sor = open_sor()
    failed_run = [e for e in sor.find_change_events(playbook="readiness.yml") if e["run_id"] != run_id][0]
    assert failed_run["status"] == "failed", failed_run
    (service_evidence,) = [item for item in sor.find_evidence(run_id=failed_run["run_id"]) if item["host"] == "shop"]
    assert service_evidence["status"] == "fail"
    assert ("localhost: " + line) in service_evidence["document"]["summary"]["blocking_failures"]
    service = _service_ci(sor)
    assert service["attributes"]["ready_for_release"] is False
    assert service["attributes"]["ready_for_release_blocking"] == ["localhost: " + line]


def test_check_mode_probes_and_records_without_touching_the_target_or_the_cmdb(project, open_sor, loopback_services):
    root = _prepare_project(project, loopback_services)
    project.run("seed.yml")
    sor = open_sor()

    def attributes():
        return {ci["ci_id"]: (ci["version"], ci["attributes"]) for ci in sor.find_cis(names=["shop", "localhost"])}

    cis_before = attributes()
    before = sorted(os.listdir(root)) + [oct(os.stat(os.path.join(root, "app.conf")).st_mode)]
    result = project.run("readiness.yml", "--check", "--diff")
    assert "is ready for release" in result.stdout
    assert sorted(os.listdir(root)) == sorted(before[:-1] + ["evidence"])
    assert oct(os.stat(os.path.join(root, "app.conf")).st_mode) == before[-1]
    (event,) = sor.find_change_events(playbook="readiness.yml")
    assert event["authorisation"] == "dry-run"
    # the dry run's evidence is its record, on its change event
    evidence = {item["host"]: item for item in sor.find_evidence(run_id=event["run_id"])}
    assert set(evidence) == {"localhost", "shop"}
    assert evidence["localhost"]["document"]["check_mode"] is True
    assert {gate["id"]: gate["status"] for gate in evidence["localhost"]["document"]["gates"]}["GATE-HTTP-01"] == "pass"
    assert evidence["shop"]["document"]["summary"]["ready"] is True
    # the CIs are not changed by a dry run (no ready_for_release, no compliance); the diff says what would be
    assert attributes() == cis_before
    assert "ready_for_release" not in _service_ci(sor)["attributes"]
    assert "compliance.release_readiness" in result.stdout and "ready_for_release" in result.stdout


PER_GATE_CMDB = [
    # the host is reached through the application (member_of, runs_on): any type, transitively
    {"id": "GATE-REL-ANY", "title": "related through anything", "blocking": False, "owner": "ops",
     "check": {"type": "cmdb_relationships"}},
    {"id": "GATE-REL-RUNS", "title": "related through member_of/runs_on", "blocking": False, "owner": "ops",
     "check": {"type": "cmdb_relationships", "types": ["member_of", "runs_on"]}},
    {"id": "GATE-REL-DEP", "title": "related through depends_on", "blocking": False, "owner": "ops",
     "check": {"type": "cmdb_relationships", "types": ["depends_on"]}},
    {"id": "GATE-REL-DIRECT", "title": "related directly", "blocking": False, "owner": "ops",
     "check": {"type": "cmdb_relationships", "transitive": False}},
    {"id": "GATE-CI-BIZ", "title": "a business service CI", "blocking": False, "owner": "ops",
     "check": {"type": "cmdb_service", "ci_class": "business_service"}},
    {"id": "GATE-CI-TIER", "title": "the service CI has a tier", "blocking": False, "owner": "ops",
     "check": {"type": "cmdb_service", "required_attributes": ["tier", "owner"]}},
]


def test_cmdb_gates_use_their_own_types_transitivity_and_class(project, open_sor, loopback_services):
    _prepare_project(project, loopback_services)
    project.run("seed.yml")
    result = project.run("readiness.yml", "-e", json.dumps({"release_readiness_extra_gates": PER_GATE_CMDB}))
    assert "is ready for release" in result.stdout  # advisory gates
    sor = open_sor()
    (event,) = sor.find_change_events(playbook="readiness.yml")
    (host,) = [item for item in sor.find_evidence(run_id=event["run_id"]) if item["host"] == "localhost"]
    gates = {gate["id"]: gate for gate in host["document"]["gates"]}
    assert {gate_id: gates[gate_id]["status"] for gate_id in [g["id"] for g in PER_GATE_CMDB]} == {
        "GATE-REL-ANY": "pass", "GATE-REL-RUNS": "pass", "GATE-REL-DEP": "fail", "GATE-REL-DIRECT": "fail",
        "GATE-CI-BIZ": "fail", "GATE-CI-TIER": "pass"}, gates
    assert gates["GATE-REL-DEP"]["message"] == ("service CI 'shop' has no relationship to host CI 'localhost' "
                                                "(types depends_on)")
    assert gates["GATE-REL-DIRECT"]["message"] == ("service CI 'shop' has no relationship to host CI 'localhost' "
                                                   "(direct relationships only)")
    assert gates["GATE-REL-DIRECT"]["observed"]["related"] == ["shop-api"]
    assert gates["GATE-CI-BIZ"]["message"] == "service CI 'shop' (class business_service) does not exist in the CMDB"
    assert gates["GATE-CI-TIER"]["message"] == "service CI 'shop' has tier=A, owner=shop-team"
    # the default gates still use the role-level settings
    assert gates["GATE-CMDB-02"]["status"] == "pass" and gates["GATE-CMDB-01"]["status"] == "pass"


def test_a_checklist_error_names_the_variable_gate_and_field(project, loopback_services):
    _prepare_project(project, loopback_services)
    result = project.run("readiness.yml", "-e", json.dumps({"release_readiness_skip_gates": [{"id": "GATE-TLS-01"}]}),
                         check=False)
    assert result.returncode == 2
    assert "release_readiness_skip_gates[0] (id GATE-TLS-01): field 'reason' is required" in result.stdout
