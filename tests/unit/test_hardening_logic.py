# -*- coding: utf-8 -*-
"""The hardening role's decision logic (plugin_utils/hardening/) on recorded observations."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET

import jsonschema
import pytest
import yaml

from ansible_collections.changeops.itsm.plugins.plugin_utils import hardening

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(REPO, "roles", "hardening")
FACTS = {"{{ ansible_facts.distribution | lower }}": "debian", "{{ ansible_facts.distribution_release }}": "bookworm"}


def _load(path, key):
    with open(os.path.join(ROLE, path)) as handle:
        return yaml.safe_load(handle)[key]


with open(os.path.join(ROLE, "defaults", "main.yml")) as _handle:
    DEFAULTS = yaml.safe_load(_handle)
OS_VARS = _load("vars/Debian.yml", "__hardening_os")


def _render(value, extra=None):
    """Stand-in for Ansible's templating of the catalogue's {{ hardening_* }} and {{ __hardening_os.* }} references:
    the role's defaults and Debian values (a whole-value reference keeps its type, as Ansible does)."""
    variables = dict(DEFAULTS, **(extra or {}))
    if isinstance(value, dict):
        return {k: _render(v, extra) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, extra) for v in value]
    if isinstance(value, str) and "{{" in value:
        whole = re.match(r"^\{\{ (__hardening_os\.(\w+)|(hardening_\w+)) \}\}$", value)
        if whole:
            return OS_VARS[whole.group(2)] if whole.group(2) else variables[whole.group(3)]
        for name, text in variables.items():
            value = value.replace("{{ %s }}" % name, str(text))
        for name, text in OS_VARS.items():
            value = value.replace("{{ __hardening_os.%s }}" % name, str(text))
        for name, text in FACTS.items():
            value = value.replace(name, text)
        assert "{{" not in value, value
    return value


@pytest.fixture(scope="module")
def catalogue():
    return _render(_load("vars/catalogue.yml", "__hardening_catalogue"))


@pytest.fixture(scope="module")
def ssg_mapping():
    return _render(_load("vars/ssg_mapping.yml", "__hardening_ssg"))


def _plan(catalogue, **kwargs):
    kwargs.setdefault("ssh_version", "9.2")
    kwargs.setdefault("today", "2026-06-01")
    return hardening.plan(catalogue, "Debian", **kwargs)


def _stat_lines(stats):
    """{path: {exists, mode, pw_name, gr_name[, isdir]}} -> the gather step's stat output."""
    lines = []
    for path, stat in (stats or {}).items():
        if not stat.get("exists"):
            lines.append("%s\tmissing" % path)
        else:
            lines.append("%s\t%s\t%s\t%s\t%s" % (path, stat["mode"].lstrip("0") or "0", stat["pw_name"],
                                                 stat["gr_name"], "directory" if stat.get("isdir") else "regular file"))
    return "\n".join(lines)


def _raw(sshd="", files="", sysctl="", packages=(), services=None, stats=None, find=None, accounts=None):
    return {
        "files": {"stdout": files}, "sshd": {"rc": 0, "stdout": sshd, "stderr": ""},
        "sysctl": {"stdout": sysctl}, "packages": {p: [{}] for p in packages},
        "stat": {"stdout": _stat_lines(stats)},
        "services": {"stdout": "\n".join("%s\t%s" % (k, v or "") for k, v in (services or {}).items())},
        "find": {"results": [{"item": k, "stdout": "\n".join(v)} for k, v in (find or {}).items()]},
        "accounts": {"stdout": accounts or ""},
    }


def _by_id(results):
    return {r["id"]: r for r in results}


WAIVER = {"id": "SSH-06", "justification": "legacy clients", "approver": "ciso", "ticket": "RISK-42",
          "expires": "2026-06-01"}


def test_catalogue_ids_are_unique_and_complete(catalogue):
    ids = hardening.validate_catalogue(catalogue)
    prefixes = {i.split("-")[0] for i in ids}
    assert prefixes == {"SSH", "KRN", "AUTH", "ACC", "PAM", "SUDO", "FS", "MNT", "BOOT", "BAN", "APP", "APT", "SVC",
                        "AUD", "AIDE", "LOG", "TIME", "CRON", "NET", "FW"}
    for control in catalogue["controls"]:
        assert control["refs"]["nist"], control["id"]
        assert control["rationale"], control["id"]


def test_crypto_follows_the_openssh_version(catalogue):
    old = {c["id"]: c for c in _plan(catalogue, ssh_version="8.4")}
    new = {c["id"]: c for c in _plan(catalogue, ssh_version="9.2")}
    assert "sntrup761" not in old["SSH-04"]["check"]["options"]["kexalgorithms"]
    assert new["SSH-04"]["check"]["options"]["kexalgorithms"].startswith("sntrup761x25519-sha512@openssh.com")
    # before 8.7 keyboard-interactive is ChallengeResponseAuthentication
    assert "challengeresponseauthentication" in old["SSH-02"]["check"]["options"]
    assert "kbdinteractiveauthentication" in new["SSH-02"]["check"]["options"]
    unknown = {c["id"]: c for c in _plan(catalogue, ssh_version=None)}
    assert unknown["SSH-03"]["remediate"] is False


def test_levels_toggles_and_disruptive(catalogue):
    plan = {c["id"]: c for c in _plan(catalogue, toggles={"hardening_rule_ssh_01": False,
                                                          "hardening_rule_krn_21": True})}
    assert not plan["SSH-01"]["selected"] and "hardening_rule_ssh_01" in plan["SSH-01"]["reason"]
    assert not plan["KRN-23"]["selected"] and "level 2" in plan["KRN-23"]["reason"]
    assert plan["KRN-21"]["selected"]  # level 2, switched on explicitly
    assert plan["KRN-01"]["selected"] and not plan["KRN-01"]["remediate"]  # disruptive: audited, not fixed
    allowed = {c["id"]: c for c in _plan(catalogue, allow_disruptive=True)}
    assert allowed["KRN-01"]["remediate"]


def test_unknown_toggle_is_an_error(catalogue):
    with pytest.raises(hardening.HardeningError, match="hardening_rule_ssh_99"):
        _plan(catalogue, toggles={"hardening_rule_ssh_99": False})


def test_active_waiver_reports_waived_but_still_checks(catalogue):
    plan = _plan(catalogue, waivers=[WAIVER], today="2026-06-01")  # the expiry day itself is still valid
    result = _by_id(hardening.evaluate(plan, _raw(sshd="maxauthtries 6\n")))["SSH-06"]
    assert result["status"] == "waived"
    assert result["check_status"] == "fail"
    assert result["observed"] == {"maxauthtries": "6"}
    assert "RISK-42" in result["message"]
    assert not {c["id"]: c for c in plan}["SSH-06"]["remediate"]


def test_expired_waiver_fails_again(catalogue):
    plan = _plan(catalogue, waivers=[WAIVER], today="2026-06-02")
    results = hardening.evaluate(plan, _raw(sshd="maxauthtries 6\n"))
    assert _by_id(results)["SSH-06"]["status"] == "fail"
    assert "waiver expired on 2026-06-01" in _by_id(results)["SSH-06"]["message"]
    assert hardening.summarise(results)["expired_waivers"] == ["SSH-06"]


@pytest.mark.parametrize("change, message", [
    ({"approver": ""}, "hardening_waivers[0] (id SSH-06): field 'approver' is missing or empty"),
    ({"expires": "2026-13-01"}, "field 'expires' value '2026-13-01' is not a date"),
    ({"id": "SSH-99"}, "field 'id' value 'SSH-99' is not a control"),
    ({"owner": "me"}, "unknown field(s) owner"),
])
def test_malformed_waivers_are_clear_errors(catalogue, change, message):
    waiver = dict(WAIVER, **change)
    with pytest.raises(hardening.HardeningError) as error:
        _plan(catalogue, waivers=[waiver])
    assert message in str(error.value)


def test_duplicate_waiver_is_an_error(catalogue):
    with pytest.raises(hardening.HardeningError, match="second waiver for SSH-06"):
        _plan(catalogue, waivers=[WAIVER, WAIVER])


def test_sysctl_read_only_in_container_is_pass_with_note(catalogue):
    plan = _plan(catalogue)
    files = "/etc/sysctl.d/60-changeops-hardening.conf:kernel.randomize_va_space = 2\n"
    sysctl = "kernel.randomize_va_space\t1\tro\nnet.ipv4.tcp_syncookies\t0\trw\n"
    results = _by_id(hardening.evaluate(plan, _raw(files=files, sysctl=sysctl)))
    assert results["KRN-10"]["status"] == "pass"
    assert "not applied live" in results["KRN-10"]["message"]
    assert results["KRN-08"]["status"] == "fail"  # writable and wrong live, not persisted


def test_sysctl_order_later_file_wins(catalogue):
    files = ("/usr/lib/sysctl.d/50-default.conf:net.ipv4.tcp_syncookies = 1\n"
             "/etc/sysctl.d/99-local.conf:net.ipv4.tcp_syncookies=0\n")
    assert hardening.persisted_sysctls(hardening.parse_grep_h(files))["net.ipv4.tcp_syncookies"] == "0"
    # a file in /etc/sysctl.d masks the same name in /usr/lib/sysctl.d
    files = ("/usr/lib/sysctl.d/60-x.conf:net.ipv4.tcp_syncookies = 0\n"
             "/etc/sysctl.d/60-x.conf:net.ipv4.tcp_syncookies = 1\n")
    assert hardening.persisted_sysctls(hardening.parse_grep_h(files))["net.ipv4.tcp_syncookies"] == "1"


def test_fixed_status_and_gate(catalogue):
    plan = _plan(catalogue)
    before = hardening.evaluate(plan, _raw(sshd="permitrootlogin yes\n"))
    after = hardening.evaluate(plan, _raw(sshd="permitrootlogin no\n", files="/etc/ssh/sshd_config:PermitRootLogin no"),
                               before=before)
    assert _by_id(before)["SSH-01"]["status"] == "fail"
    assert _by_id(after)["SSH-01"]["status"] == "fixed"
    # in force by sshd's default, but not stated in sshd_config (what scanners and auditors read): not a pass
    implicit = _by_id(hardening.evaluate(plan, _raw(sshd="permitrootlogin no\nmaxsessions 10\n")))
    assert implicit["SSH-01"]["message"].startswith("permitrootlogin is no by sshd's default, not stated in /etc/ssh/sshd_config")
    stated_twice = _by_id(hardening.evaluate(plan, _raw(sshd="permitrootlogin no\n", files=(
        "/etc/ssh/sshd_config:PermitRootLogin no\n/etc/ssh/sshd_config:PermitRootLogin=yes\n"
        "/etc/ssh/sshd_config:Match User x\n/etc/ssh/sshd_config:PermitRootLogin yes"))))
    assert stated_twice["SSH-01"]["message"].startswith("/etc/ssh/sshd_config also says permitrootlogin yes")
    summary = hardening.summarise(before, "high")
    assert "SSH-01" in summary["blocking_failures"] and summary["status"] == "fail"
    assert "AUTH-02" not in summary["blocking_failures"]  # low severity: counted, not blocking
    assert "AUTH-02" in hardening.summarise(before, "low")["blocking_failures"]
    with pytest.raises(hardening.HardeningError, match="hardening_fail_severity"):
        hardening.summarise(before, "urgent")


def test_file_mode_and_packages(catalogue):
    plan = _plan(catalogue)
    stats = {"/etc/shadow": {"exists": True, "mode": "0644", "pw_name": "root", "gr_name": "shadow"},
             "/etc/passwd": {"exists": True, "mode": "0644", "pw_name": "root", "gr_name": "root"}}
    results = _by_id(hardening.evaluate(plan, _raw(stats=stats, packages=["telnet", "auditd"])))
    assert results["FS-02"]["status"] == "fail" and "0644" in results["FS-02"]["message"]
    assert results["FS-01"]["status"] == "pass"
    assert results["FS-03"]["status"] == "not_applicable"
    assert results["SVC-01"]["status"] == "fail" and results["SVC-01"]["observed"] == {"installed": ["telnet"]}
    assert results["AUD-01"]["status"] == "fail"  # audispd-plugins is missing
    fixes = hardening.file_mode_fixes(plan, {"stdout": _stat_lines(stats)})
    assert {"id": "FS-02", "path": "/etc/shadow", "owner": "root", "group": "shadow", "mode": "0640",
            "state": "file"} in fixes
    # never loosens: /etc/passwd at 0644 stays 0644, a 0600 file stays 0600
    assert {f["path"]: f["mode"] for f in fixes}["/etc/passwd"] == "0644"


def test_sshd_failure_is_error_not_pass(catalogue):
    raw = _raw()
    raw["sshd"] = {"rc": 255, "stdout": "", "stderr": "Missing privilege separation directory: /run/sshd"}
    results = _by_id(hardening.evaluate(_plan(catalogue), raw))
    assert results["SSH-01"]["status"] == "error" and "privilege separation" in results["SSH-01"]["message"]


def test_evidence_validates_and_junit_matches(catalogue, ssg_mapping):
    plan = _plan(catalogue, waivers=[dict(WAIVER, expires="2099-01-01")])
    results = hardening.evaluate(plan, _raw(sshd="permitrootlogin no\nmaxauthtries 9\n", packages=["telnet"]))
    summary = hardening.summarise(results)
    document = hardening.evidence("web01", catalogue, "audit", results, summary, "2026-06-01T10:00:00Z",
                                  facts={"os_family": "Debian"}, settings={"level": 1}, ssg=ssg_mapping)
    refs = {c["id"]: c["refs"] for c in document["controls"]}
    assert refs["SSH-01"]["cis"] == {"benchmark": "CIS Debian Linux 12 Benchmark v1.1.0", "ids": ["5.1.20"]}
    assert refs["SSH-01"]["ssg"]["rules"] == [{"id": "xccdf_org.ssgproject.content_rule_sshd_disable_root_login",
                                               "when": "expected.permitrootlogin == 'no'"}]
    assert refs["SSH-02"]["cis"]["ids"] == [] and "PasswordAuthentication" in refs["SSH-02"]["cis"]["note"]
    assert refs["SSH-08"]["ssg"]["relation"] == "implies"
    assert document["ssg"]["values"]["sshd_max_auth_tries_value"] == "4"
    with open(os.path.join(REPO, "docs", "evidence.schema.json")) as handle:
        schema = json.load(handle)
    jsonschema.validate(json.loads(json.dumps(document)), schema)
    suite = ET.fromstring(hardening.junit(document)).find("testsuite")
    assert int(suite.get("tests")) == len(catalogue["controls"])
    assert int(suite.get("failures")) == summary["counts"]["fail"]
    failing = [case.get("name") for case in suite.findall("testcase") if case.find("failure") is not None]
    assert any(name.startswith("SVC-01 ") for name in failing)
    bad = dict(document, controls=[dict(document["controls"][0], status="ok")])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_argument_specs_and_readme_match_defaults_and_catalogue(catalogue):
    import subprocess
    import sys
    gen = os.path.join(REPO, "roles", "hardening", "tools", "gen_docs.py")
    completed = subprocess.run([sys.executable, gen, "--check"], stdout=subprocess.PIPE, universal_newlines=True,
                               check=False)
    assert completed.returncode == 0, completed.stdout
    with open(os.path.join(REPO, "roles", "hardening", "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    with open(os.path.join(REPO, "roles", "hardening", "meta", "argument_specs.yml")) as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    assert set(defaults) == {name for name in options if not name.startswith("hardening_rule_")}
    assert {hardening.rule_variable(c["id"]) for c in catalogue["controls"]} == \
        {name for name in options if name.startswith("hardening_rule_")}
    for name, value in defaults.items():
        assert name.startswith("hardening_")
        if "{{" not in str(value):
            assert options[name].get("default") == value, name


def test_redhat_family_values(catalogue):
    plan = {c["id"]: c for c in hardening.plan(catalogue, "RedHat", ssh_version="8.7", today="2026-06-01")}
    assert plan["SVC-01"]["check"]["packages"] == ["telnet"]
    assert plan["AUD-01"]["check"]["packages"] == ["audit"]
    assert "kbdinteractiveauthentication" in plan["SSH-02"]["check"]["options"]
    assert not hardening.plan(catalogue, "Suse", today="2026-06-01")[0]["selected"]


def test_find_argv_needs_no_shell():
    argv = hardening.find_argv("unowned", ["/tmp", "/my dir"])
    assert argv[:3] == ["find", "/", "-xdev"] and ["-path", "/my dir", "-prune", "-o"] == argv[7:11]
    assert argv[-6:] == ["(", "-nouser", "-o", "-nogroup", ")", "-print"]
    with pytest.raises(hardening.HardeningError):
        hardening.find_argv("suid")


def test_every_control_says_how_to_remediate_and_cites_a_real_cis_section(catalogue):
    with open(os.path.join(ROLE, "tools", "cis_debian12_v1.1.0.yml")) as handle:
        recommendations = {r["id"] for r in yaml.safe_load(handle)["recommendations"]}
    for control in catalogue["controls"]:
        assert control["remediation"] in ("auto", "manual") and control["fix"].strip(), control["id"]
        cis = control["refs"]["cis"]
        # recommendation numbers of the named benchmark, or a note saying why there is none
        assert set(cis) <= recommendations, (control["id"], cis)
        assert cis or control["refs"]["cis_note"].strip(), control["id"]
    manual = [c for c in catalogue["controls"] if c["remediation"] == "manual"]
    assert {"FS-04", "FS-05", "MNT-01", "BOOT-02", "ACC-01"} <= {c["id"] for c in manual}
    broken = dict(catalogue, controls=[dict(manual[0], fix="  ")])
    with pytest.raises(hardening.HardeningError, match=r"controls\[0\] \(id \S+\): field 'fix' is missing or empty"):
        hardening.validate_catalogue(broken)
    uncited = dict(catalogue, controls=[dict(catalogue["controls"][0], refs={"cis": ["5.1"], "nist": []})])
    hardening.validate_catalogue(uncited)  # a number; whether the benchmark has it is the coverage tool's check
    with pytest.raises(hardening.HardeningError, match="refs.cis' value 'x.y'"):
        hardening.validate_catalogue(dict(catalogue, controls=[dict(catalogue["controls"][0], refs={"cis": "x.y"})]))
    with pytest.raises(hardening.HardeningError, match="refs.cis' is empty and 'refs.cis_note' does not say why"):
        hardening.validate_catalogue(dict(catalogue, controls=[dict(catalogue["controls"][0], refs={"cis": []})]))


def test_a_failing_manual_control_carries_its_fix_in_the_message(catalogue):
    found = {"world_writable": ["/srv/shared.txt"], "unowned": []}
    results = _by_id(hardening.evaluate(_plan(catalogue), _raw(find=found)))
    assert results["FS-04"]["status"] == "fail"
    assert "[not remediated: manual fix: for each file listed" in results["FS-04"]["message"]
    assert "chmod o-w" in results["FS-04"]["message"]


def test_check_mode_defers_units_whose_package_is_not_installed_yet(catalogue):
    plan = _plan(catalogue)
    # auditd is not installed (is-enabled prints nothing); chrony is installed but disabled
    services = {"auditd.service": "", "chrony.service": "disabled"}
    checked = hardening.service_fixes(plan, _raw(services=services)["services"], check_mode=True)
    by_service = {f["service"]: f for f in checked["enable"]}
    assert by_service["auditd.service"] == {"id": "AUD-02", "service": "auditd.service", "deferred": True}
    # for real, the packages are installed first: every unit is enabled (and a missing one is an error)
    real = hardening.service_fixes(plan, _raw(services=services)["services"], check_mode=False)
    assert not any(f["deferred"] for f in real["enable"])
    waived = _plan(catalogue, waivers=[dict(WAIVER, id="AUD-02", expires="2099-01-01")])
    fixes = hardening.service_fixes(waived, _raw(services=services)["services"], check_mode=True)
    assert "AUD-02" not in {f["id"] for f in fixes["enable"]}


# the Debian 12 sshd_config as the openssh-server package ships it (comments left out), plus a site line
DEBIAN_SSHD_CONFIG = ["Include /etc/ssh/sshd_config.d/*.conf", "KbdInteractiveAuthentication no", "UsePAM yes",
                      "X11Forwarding yes", "PrintMotd no", "AcceptEnv LANG LC_*",
                      "Subsystem\tsftp\t/usr/lib/openssh/sftp-server", "PermitRootLogin yes"]
ROOT_WAIVER = dict(WAIVER, id="SSH-01", expires="2099-01-01")


def _sshd_read(main, dropin, other_dropins=None):
    """The directives sshd reads, in order: sshd_config with every Include of sshd_config.d (the distribution's
    glob, or the role's own file) expanded into the drop-ins it names, sorted by name."""
    dropins = dict(other_dropins or {}, **{"00-changeops-hardening.conf": dropin or []})
    lines = []
    for line in main:
        text = line.strip()
        if text.lower().startswith("include "):
            pattern = text.split(None, 1)[1].strip('"')
            name = pattern.rsplit("/", 1)[-1]
            for dropin_name in sorted(dropins):
                if re.fullmatch(name.replace(".", r"\.").replace("*", ".*"), dropin_name):
                    lines += dropins[dropin_name]
        else:
            lines.append(line)
    return lines


def _sshd_directives(lines):
    """keyword -> first value, as sshd takes it (first obtained value wins); comments and Include left out."""
    effective = {}
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            keyword, _sep, value = text.replace("\t", " ").partition(" ")
            if keyword.lower() != "include":
                effective.setdefault(keyword.lower(), value.strip())
    return effective


def _sshd_effective(owned, main):
    """What sshd reads with the role's files in place: the new sshd_config (its block at the top), the drop-in
    wherever sshd_config includes it."""
    new_main = owned["sshd_main"]["lines"] if owned["sshd_main"] else main
    dropin = owned["sshd_dropin"]["lines"] if owned["sshd_dropin"] else []
    return _sshd_directives(_sshd_read(new_main, dropin))


def _outside_block(lines):
    begin, end = (hardening.SSHD_BLOCK_MARKER.format(mark=m) for m in ("BEGIN", "END"))
    if begin not in lines:
        return list(lines)
    return lines[:lines.index(begin)] + lines[lines.index(end) + 1:]


def _block(lines):
    begin, end = (hardening.SSHD_BLOCK_MARKER.format(mark=m) for m in ("BEGIN", "END"))
    return lines[lines.index(begin) + 1:lines.index(end)]


def test_sshd_enforce_changes_only_what_it_may_and_sshd_config_shows_it(catalogue):
    # stock Debian 12 with a site's PermitRootLogin yes: SSH-01 waived, SSH-02 disruptive (not allowed)
    plan = _plan(catalogue, waivers=[ROOT_WAIVER])
    owned = hardening.owned_files(plan, {hardening.SSHD_MAIN: DEBIAN_SSHD_CONFIG}, ssh_version="9.2")
    assert owned["sshd_dropin"]["path"] == "/etc/ssh/sshd_config.d/00-changeops-hardening.conf"
    before, after = _sshd_directives(_sshd_read(DEBIAN_SSHD_CONFIG, [])), _sshd_effective(owned, DEBIAN_SSHD_CONFIG)
    may_change = set(hardening.sshd_settings(plan))
    assert {k for k in set(before) | set(after) if before.get(k) != after.get(k)} <= may_change
    assert after["kbdinteractiveauthentication"] == "no"  # the Debian default, not sshd's compiled-in yes
    assert "passwordauthentication" not in after  # SSH-02 not remediated: still sshd's default
    assert after["permitrootlogin"] == "yes"  # waived: the site's value, not prohibit-password
    assert after["maxauthtries"] == "4" and after["usepam"] == "yes" and after["x11forwarding"] == "no"
    new_main = owned["sshd_main"]["lines"]
    # sshd_config: the block at the top holds the control settings of the drop-in (a scanner reading sshd_config
    # alone sees what sshd uses); the Include at the top already reads the drop-in, so the block does not include it
    block = _block(new_main)
    assert new_main[0] == hardening.SSHD_BLOCK_MARKER.format(mark="BEGIN")
    assert "maxauthtries 4" in block and "x11forwarding no" in block and not any(l.startswith("Include") for l in block)
    assert [l for l in block if not l.startswith("#")] == \
        [l for l in owned["sshd_dropin"]["lines"] if not l.startswith("#")]
    # the rest byte for byte, but for Debian's X11Forwarding yes, superseded by SSH-08 and kept as a comment; the
    # waived site line stays
    rest = _outside_block(new_main)
    assert rest == [hardening.SSHD_SUPERSEDED % "SSH-08" + line if line == "X11Forwarding yes" else line
                    for line in DEBIAN_SSHD_CONFIG]
    assert "PermitRootLogin yes" in rest
    # the next run reads what it wrote and changes nothing
    again = hardening.owned_files(plan, {hardening.SSHD_MAIN: new_main,
                                         hardening.SSHD_DROPIN: owned["sshd_dropin"]["lines"]}, ssh_version="9.2")
    assert again["sshd_main"] is None and again["sshd_dropin"] == owned["sshd_dropin"]


def test_superseding_leaves_match_blocks_and_equal_values_alone(catalogue):
    main = ["Include /etc/ssh/sshd_config.d/*.conf", "MaxAuthTries 4", "X11Forwarding yes", "Match User backup",
            "  X11Forwarding yes", "  MaxAuthTries 9"]
    owned = hardening.owned_files(_plan(catalogue), {hardening.SSHD_MAIN: main}, ssh_version="9.2")
    rest = _outside_block(owned["sshd_main"]["lines"])
    assert rest[:3] == ["Include /etc/ssh/sshd_config.d/*.conf", "MaxAuthTries 4",
                        hardening.SSHD_SUPERSEDED % "SSH-08" + "X11Forwarding yes"]
    assert rest[3:] == main[3:]  # a Match block is conditional: sshd and scanners read it differently


def test_controls_enforce_may_not_change_keep_the_lines_the_role_wrote_before(catalogue):
    # a run with hardening_allow_disruptive wrote SSH-02 and KRN-01; then SSH-02 passes, KRN-01 fails live
    # (a container runtime switched forwarding on); without allow_disruptive both keep their lines
    allowed = _plan(catalogue, allow_disruptive=True)
    first = hardening.owned_files(allowed, {hardening.SSHD_MAIN: DEBIAN_SSHD_CONFIG}, ssh_version="9.2")
    assert "passwordauthentication no" in first["sshd_dropin"]["lines"]
    assert "net.ipv4.ip_forward = 0" in first["sysctl"]["lines"]
    files = {hardening.SSHD_MAIN: DEBIAN_SSHD_CONFIG, hardening.SSHD_DROPIN: first["sshd_dropin"]["lines"],
             hardening.SYSCTL_FILE: first["sysctl"]["lines"], hardening.MODPROBE_FILE: first["modprobe"]["lines"]}
    for plan in (_plan(catalogue),  # disruptive, not allowed
                 _plan(catalogue, waivers=[dict(WAIVER, id="SSH-02", expires="2099-01-01"),
                                           dict(WAIVER, id="KRN-01", expires="2099-01-01")]),
                 _plan(catalogue, allow_disruptive=True,
                       toggles={"hardening_rule_ssh_02": False, "hardening_rule_krn_01": False})):
        kept = hardening.owned_files(plan, files, ssh_version="9.2")
        # the same content: nothing changes, nothing restarts
        assert kept["sshd_dropin"] == first["sshd_dropin"] and kept["sysctl"] == first["sysctl"]
        # ... also when sshd_config holds the block the first run wrote (the same lines as the drop-in: kept once)
        with_block = hardening.owned_files(plan, dict(files, **{hardening.SSHD_MAIN: first["sshd_main"]["lines"]}),
                                           ssh_version="9.2")
        assert with_block["sshd_dropin"] == first["sshd_dropin"] and with_block["sshd_main"] is None
    # ... while a control enforce may change gets its new value
    stricter = dict(catalogue, controls=[dict(c, check=dict(c["check"], options={"maxauthtries": "3"}))
                                         if c["id"] == "SSH-06" else c for c in catalogue["controls"]])
    changed = hardening.owned_files(hardening.plan(stricter, "Debian", ssh_version="9.2", today="2026-06-01"),
                                    files, ssh_version="9.2")
    assert "maxauthtries 3" in changed["sshd_dropin"]["lines"] and "maxauthtries 4" not in changed["sshd_dropin"]["lines"]
    assert "passwordauthentication no" in changed["sshd_dropin"]["lines"]


def test_modprobe_and_sysctl_files_keep_failing_controls_enforce_may_not_change(catalogue):
    # KRN-22 (usb-storage, disruptive) written by an earlier run; KRN-07 waived and failing (the site's
    # loose rp_filter 2 sits in the role's file by hand): rewriting for KRN-20 and KRN-08 keeps both
    modprobe = ["# KRN-22: USB storage cannot be used", "install usb-storage /bin/false", "blacklist usb-storage"]
    sysctl = ["net.ipv4.conf.all.rp_filter = 2", "net.ipv4.conf.default.rp_filter = 2", "vm.swappiness = 10"]
    plan = _plan(catalogue, level=2, waivers=[dict(WAIVER, id="KRN-07", expires="2099-01-01")])
    owned = hardening.owned_files(plan, {hardening.MODPROBE_FILE: modprobe, hardening.SYSCTL_FILE: sysctl})
    lines = owned["modprobe"]["lines"]
    at = lines.index(modprobe[0])
    assert lines[at:at + 3] == modprobe and "install cramfs /bin/false" in lines
    assert "install udf /bin/false" not in lines  # disruptive too, but never written: not added either
    lines = owned["sysctl"]["lines"]
    assert "net.ipv4.conf.all.rp_filter = 2" in lines and "net.ipv4.conf.all.rp_filter = 1" not in lines
    assert "vm.swappiness = 10" in lines  # not a control's setting: kept as found
    assert "net.ipv4.tcp_syncookies = 1" in lines
    # nothing enforce may change: the files are left as they are
    quiet = _plan(catalogue, toggles={hardening.rule_variable(c["id"]): False for c in catalogue["controls"]
                                      if c["check"]["type"] in ("sysctl", "modprobe")})
    untouched = hardening.owned_files(quiet, {hardening.MODPROBE_FILE: modprobe, hardening.SYSCTL_FILE: sysctl})
    assert untouched["modprobe"] is None and untouched["sysctl"] is None


@pytest.mark.parametrize("main, include", [
    (DEBIAN_SSHD_CONFIG, False),
    (["# comment", "", "include   sshd_config.d/*.conf", "UsePAM yes"], False),  # relative to /etc/ssh, any case
    (['Include="/etc/ssh/sshd_config.d/*.conf"'], False),  # Keyword=value and quotes, as sshd reads them
    ([line for line in DEBIAN_SSHD_CONFIG if not line.startswith("Include")], True),  # no Include at all
    # a setting before the Include, of a control enforce may change: superseded, so the Include comes first again
    (["PermitRootLogin yes"] + DEBIAN_SSHD_CONFIG, False),
    (["PrintLastLog no"] + DEBIAN_SSHD_CONFIG, True),  # ... while a site's own setting stays before it
    (["Include /etc/ssh/site/*.conf", "Include /etc/ssh/sshd_config.d/*.conf"], True),  # another directory first
    ([], True),
])
def test_the_block_includes_the_drop_in_only_where_sshd_would_not_read_it_first(catalogue, main, include):
    owned = hardening.owned_files(_plan(catalogue), {hardening.SSHD_MAIN: main}, ssh_version="9.2")
    block = _block(owned["sshd_main"]["lines"])
    assert (("Include " + hardening.SSHD_DROPIN) in block) is include
    assert block.count("Include " + hardening.SSHD_DROPIN) <= 1 and "maxauthtries 4" in block
    effective = _sshd_effective(owned, main)
    assert effective["maxauthtries"] == "4"
    # nothing the main file sets is lost, apart from what the block now sets first
    for keyword, value in _sshd_directives(main).items():
        assert effective[keyword] == value or keyword in hardening.sshd_settings(_plan(catalogue))
    # and the block written, the next run leaves sshd_config as it is
    again = hardening.owned_files(_plan(catalogue), {hardening.SSHD_MAIN: owned["sshd_main"]["lines"],
                                                     hardening.SSHD_DROPIN: owned["sshd_dropin"]["lines"]},
                                  ssh_version="9.2")
    assert again["sshd_main"] is None


def test_a_drop_in_sorting_before_the_role_s_own_needs_the_block():
    dropin_dir = "/etc/ssh/sshd_config.d/"
    main = ["Include /etc/ssh/sshd_config.d/*.conf"]
    assert hardening.sshd_reads_dropin_first(main, {})
    assert hardening.sshd_reads_dropin_first(main, {dropin_dir + "00-aaa.conf": ["# only comments", ""],
                                                    dropin_dir + "50-cloud-init.conf": ["PasswordAuthentication yes"]})
    assert not hardening.sshd_reads_dropin_first(main, {dropin_dir + "00-aaa.conf": ["MaxAuthTries 9"]})


def test_before_openssh_8_2_the_settings_go_into_a_block_at_the_top_of_sshd_config(catalogue):
    plan = _plan(catalogue, ssh_version="8.0", waivers=[ROOT_WAIVER])
    main = [line for line in DEBIAN_SSHD_CONFIG if not line.startswith("Include")]
    owned = hardening.owned_files(plan, {hardening.SSHD_MAIN: main}, ssh_version="8.0")
    assert owned["sshd_dropin"] is None and "maxauthtries 4" in _block(owned["sshd_main"]["lines"])
    assert _sshd_effective(owned, main)["permitrootlogin"] == "yes"
    assert hardening.owned_files(plan, {hardening.SSHD_MAIN: owned["sshd_main"]["lines"]},
                                 ssh_version="8.0")["sshd_main"] is None


def test_site_options_go_into_the_drop_in_and_cannot_touch_a_control(catalogue):
    plan = _plan(catalogue)
    owned = hardening.owned_files(plan, {}, ssh_version="9.2",
                                  sshd_options={"Port": 2222, "PermitTunnel": False, "AllowGroups": ["ops", "adm"]})
    lines = owned["sshd_dropin"]["lines"]
    assert lines[-4:] == [hardening.SITE_HEADER, "Port 2222", "PermitTunnel no", "AllowGroups ops adm"]
    # site options stay in the drop-in only: Port and AllowGroups add up, so sshd must not read them twice
    assert not any(line.startswith(("Port", "AllowGroups")) for line in _block(owned["sshd_main"]["lines"]))
    # an option removed from the variable leaves the drop-in; a control's lines stay
    removed = hardening.owned_files(plan, {hardening.SSHD_DROPIN: lines}, ssh_version="9.2", sshd_options={"Port": 2222})
    assert removed["sshd_dropin"]["lines"][-2:] == [hardening.SITE_HEADER, "Port 2222"]
    for options, message in [({"PasswordAuthentication": "yes"}, "setting of control SSH-02.*hardening_rule_ssh_02"),
                             ({"Match": "User backup"}, "'Match': Match and Include cannot be site options"),
                             ({"Banner": "x"}, "control SSH-10"),
                             ({"TCPKeepAlive": "yes\nPermitRootLogin yes"}, "must be one non-empty line"),
                             ({"Max Startups": 10}, "is not an sshd keyword"),
                             (["Port 22"], "must be a mapping")]:
        with pytest.raises(hardening.HardeningError, match=message):
            hardening.owned_files(plan, {}, ssh_version="9.2", sshd_options=options)


def test_file_lines_targets_are_written_for_their_own_control_only(catalogue):
    waived = _plan(catalogue, waivers=[dict(WAIVER, id="AUD-03", expires="2099-01-01")])
    paths = {f["path"] for f in hardening.managed_files(waived)}
    assert "/etc/security/limits.d/60-changeops-hardening.conf" in paths
    assert "/etc/audit/rules.d/60-changeops-hardening.rules" not in paths  # waived: left as it is


@pytest.mark.parametrize("control_id, change, message", [
    ("KRN-14", {"lines": ["* hard nproc 4096"]}, "both set file /etc/security/limits.d/60-changeops-hardening.conf"),
    ("KRN-02", {"settings": {"net.ipv4.ip_forward": 0}}, "KRN-01 and KRN-99 both set sysctl .*60-changeops-hardening.conf net.ipv4.ip_forward"),
    ("SSH-06", {"options": {"permitrootlogin": "no"}}, "SSH-01 and KRN-99 both set sshd .*00-changeops-hardening.conf permitrootlogin"),
    ("PAM-08", {"keys": {"minlen": {"value": 9}}}, "PAM-08 and KRN-99 both set settings .*pwquality.conf.d.* minlen"),
    ("FS-01", {"paths": ["/etc/passwd"]}, "FS-01 and KRN-99 both set mode /etc/passwd"),
])
def test_a_setting_belongs_to_one_control(catalogue, control_id, change, message):
    # a waiver of one would otherwise decide (keep or rewrite) for the other
    extra = dict({c["id"]: c for c in catalogue["controls"]}[control_id], id="KRN-99")
    extra["check"] = dict(extra["check"], **change)
    with pytest.raises(hardening.HardeningError, match=message):
        hardening.plan(dict(catalogue, controls=catalogue["controls"] + [extra]), "Debian", today="2026-06-01")


def test_the_role_writes_the_files_the_logic_plans():
    with open(os.path.join(REPO, "roles", "hardening", "tasks", "enforce.yml")) as handle:
        tasks = {t["name"].split(" | ")[-1]: t for t in yaml.safe_load(handle)}

    def args(name):
        task = tasks[name]
        return task[next(k for k in task if k.startswith("ansible.builtin."))]
    assert args("Stop unused kernel modules from loading")["dest"] == hardening.MODPROBE_FILE
    assert args("Persist kernel parameters in /etc/sysctl.d")["dest"] == hardening.SYSCTL_FILE
    assert args("Make sure the sshd drop-in directory exists")["path"] == os.path.dirname(hardening.SSHD_DROPIN)
    assert args("Write the sshd drop-in (validated with sshd -t first)")["dest"] == hardening.SSHD_DROPIN
    assert args("Write sshd_config with the role's block at its top")["dest"] == hardening.SSHD_MAIN
