# -*- coding: utf-8 -*-
"""The hardening check types and what enforce plans for them (plugin_utils/hardening/), on recorded observations."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from ansible_collections.changeops.itsm.plugins.plugin_utils import hardening
from ansible_collections.changeops.itsm.plugins.plugin_utils.hardening import checks, enforce, observe

from test_hardening_logic import ROLE, WAIVER, _by_id, _plan, _raw, _render, _stat_lines
# a pytest fixture, used by parameter name
from test_hardening_logic import catalogue  # noqa: F401 pylint: disable=unused-import


def _files(mapping):
    """{path: [lines]} -> the gather step's grep -H output."""
    return "\n".join("%s:%s" % (path, line) for path, lines in mapping.items() for line in lines)


def _results(catalogue, **raw):
    return _by_id(hardening.evaluate(_plan(catalogue), _raw(**raw)))


# --------------------------------------------------------------------------- settings and key/value files
def test_settings_follow_the_program_s_precedence_sections_and_defaults(catalogue):
    journald = {"/etc/systemd/journald.conf": ["[Journal]", "#Storage=auto", "ForwardToSyslog=no"],
                "/etc/systemd/journald.conf.d/10-site.conf": ["[Journal]", "ForwardToSyslog=yes"],
                "/etc/systemd/journald.conf.d/20-other.conf": ["[Upload]", "Storage=persistent"]}
    results = _results(catalogue, files=_files(journald))
    assert results["LOG-04"]["status"] == "pass"  # the drop-in wins over the main file
    assert results["LOG-04"]["observed"]["ForwardToSyslog"]["from"].endswith("10-site.conf")
    assert results["LOG-05"]["status"] == "pass"  # Compress: journald's default yes
    assert results["LOG-06"]["status"] == "fail"  # Storage outside [Journal] does not count
    pwq = {"/etc/security/pwquality.conf": ["minlen = 9", "# difok = 5", "enforce_for_root"],
           "/etc/security/pwquality.conf.d/50-site.conf": ["minlen = 16", "difok = 3", "maxrepeat = 2",
                                                           "maxsequence = 3", "dictcheck = 0"]}
    result = _results(catalogue, files=_files(pwq))["PAM-08"]
    assert result["status"] == "fail" and result["message"] == "dictcheck is 0, expected not 0"
    assert result["observed"]["enforce_for_root"]["value"] is True and result["observed"]["minlen"]["value"] == "16"


def test_key_values_with_defaults_modes_and_every_occurrence(catalogue):
    files = {"/etc/default/useradd": ["SHELL=/bin/sh", "# INACTIVE=-1"],
             "/etc/rsyslog.conf": ["$FileCreateMode 0640", "*.* /var/log/all", "$FileCreateMode 0644"],
             "/etc/security/faillock.conf": ["# deny = 3", "unlock_time = 0"]}
    results = _results(catalogue, files=_files(files), packages=["rsyslog"])
    assert results["AUTH-09"]["message"] == "/etc/default/useradd INACTIVE is -1 (default), expected 0..45"
    assert results["LOG-07"]["status"] == "fail" and "0640, 0644" in results["LOG-07"]["message"]
    assert results["PAM-07"]["status"] == "pass"  # deny: pam_faillock's default 3; unlock_time 0: an admin unlocks
    assert checks.compare("0600", {"compare": "mode_max", "value": "0640"})
    assert not checks.compare("0660", {"compare": "mode_max", "value": "0640"})


def test_enforce_edits_main_files_in_place_and_writes_drop_ins_for_its_own_settings(catalogue):
    plan = _plan(catalogue)
    before = hardening.evaluate(plan, _raw(files=_files({"/etc/security/faillock.conf": ["# deny = 3"]})))
    all_edits = hardening.line_edits(plan, before)
    edits = {(e["id"], e["path"]): e for e in all_edits}
    deny = [e for e in all_edits if e["id"] == "PAM-07" and e["line"].startswith("deny")][0]
    assert deny["path"] == "/etc/security/faillock.conf" and deny["line"] == "deny = 5"
    assert re.match(deny["regexp"], "# deny = 3")
    assert edits[("AUTH-09", "/etc/default/useradd")]["line"] == "INACTIVE=45"  # shell syntax: no spaces
    owned = hardening.owned_files(plan, {}, ssh_version="9.2")
    dropins = {d["path"]: d for d in owned["dropins"]}
    journald = dropins["/etc/systemd/journald.conf.d/60-changeops-hardening.conf"]
    body = [line for line in journald["lines"] if not line.startswith("#")]
    assert body == ["[Journal]", "ForwardToSyslog=yes", "Compress=yes", "Storage=persistent"]
    assert journald["notify"] == "Restart journald"
    sudoers = dropins["/etc/sudoers.d/60-changeops-hardening"]
    assert sudoers["mode"] == "0440" and sudoers["validate"] == "/usr/sbin/visudo -cf %s"
    assert [line for line in sudoers["lines"] if not line.startswith("#")] == \
        ["Defaults use_pty", "Defaults logfile=/var/log/sudo.log", "Defaults timestamp_timeout=15"]
    # a waived control keeps what the drop-in has (here: nothing) instead of getting the catalogue's line
    waived = _plan(catalogue, waivers=[dict(WAIVER, id="SUDO-03", expires="2099-01-01")])
    lines = {d["path"]: d for d in hardening.owned_files(waived, {}, ssh_version="9.2")["dropins"]}
    assert not any("logfile" in line for line in lines["/etc/sudoers.d/60-changeops-hardening"]["lines"])


# --------------------------------------------------------------------------- sudo and PAM
def test_sudoers_defaults_as_sudo_applies_them(catalogue):
    files = {"/etc/sudoers": ["Defaults\tenv_reset", 'Defaults logfile="/var/log/sudo.log", use_pty  # comment',
                              "@includedir /etc/sudoers.d", "%admin ALL=(ALL) NOPASSWD: ALL"],
             "/etc/sudoers.d/90-site": ["Defaults !use_pty", "Defaults timestamp_timeout=60"],
             "/etc/sudoers.d/README.txt": ["Defaults !authenticate"]}  # has a dot: sudo skips it
    results = _results(catalogue, files=_files(files), packages=["sudo"])
    assert results["SUDO-02"]["status"] == "fail"  # the later file switched use_pty off
    assert results["SUDO-03"]["status"] == "pass"  # quoted value
    assert results["SUDO-04"]["status"] == "pass"
    assert results["SUDO-05"]["message"] == "Defaults timestamp_timeout is 60, expected 0..15"
    level2 = _by_id(hardening.evaluate(_plan(catalogue, level=2), _raw(files=_files(files))))
    assert level2["SUDO-06"]["status"] == "fail" and "NOPASSWD" in level2["SUDO-06"]["message"]


DEBIAN_COMMON_AUTH = ["auth\t[success=1 default=ignore]\tpam_unix.so nullok", "auth\trequisite\t\t\tpam_deny.so",
                      "auth\trequired\t\t\tpam_permit.so"]


def test_pam_modules_arguments_and_the_profiles_enforce_enables(catalogue):
    files = {"/etc/pam.d/common-auth": DEBIAN_COMMON_AUTH,
             "/etc/pam.d/common-password": ["password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt",
                                            "password\trequisite\tpam_pwhistory.so use_authtok remember=5"],
             "/etc/security/pwhistory.conf": ["remember = 30", "enforce_for_root"]}
    plan = _plan(catalogue)
    before = hardening.evaluate(plan, _raw(files=_files(files)))
    results = _by_id(before)
    assert results["PAM-09"]["message"] == "/etc/pam.d/common-auth pam_unix.so: with nullok"
    assert results["PAM-10"]["status"] == "pass"
    # remember=5 on the line wins over pwhistory.conf's 30
    assert results["PAM-06"]["message"] == ("/etc/pam.d/common-password pam_pwhistory.so: remember is 5, "
                                            "expected >= 24")
    assert results["PAM-04"]["status"] == "fail"
    commands = [c["argv"] for c in hardening.enforce.commands(plan, before, observe.normalise_observations(
        _raw(files=_files(files))))]
    assert ["pam-auth-update", "--enable", "changeops-faillock-notify", "changeops-faillock"] in commands
    assert ["pam-auth-update", "--package"] in commands  # after taking nullok out of the unix profile
    files_written = {f["path"]: f for f in hardening.managed_files(plan, before)}
    profile = files_written["/usr/share/pam-configs/changeops-pwhistory"]["content"]
    assert "pam_pwhistory.so remember=24 enforce_for_root try_first_pass use_authtok" in profile
    replace = hardening.enforce.replacements(plan, before)[0]
    line = "\t[success=end default=ignore]\tpam_unix.so nullok try_first_pass"
    assert re.sub(replace["regexp"], replace["replace"], line) == "\t[success=end default=ignore]\tpam_unix.so try_first_pass"
    # passing, nothing is planned
    after = [dict(r, check_status="pass") for r in before]
    assert hardening.enforce.commands(plan, after, observe.normalise_observations(_raw())) == []


# --------------------------------------------------------------------------- accounts
SHADOW_SUMMARY = "\n".join([
    # name, password (empty, locked or set: never the hash), lastchg, min, max, warn, inactive: what the gather awk prints
    "shadow\troot\tlocked\t19000\t0\t99999\t7\t", "shadow\talice\tpassword\t19000\t0\t99999\t7\t",
    "shadow\tbob\tpassword\t99999\t1\t90\t14\t30", "shadow\tcarol\tempty\t19000\t0\t99999\t7\t",
    "today\t20000",
    "rootpath\t/usr/local/sbin\t755\troot\tdirectory", "rootpath\t/opt/tools\t777\tbob\tdirectory",
    "rootpath\t.\t\t\tother",
    "home\troot\t/root\t700\troot\tdirectory", "home\talice\t/home/alice\t755\talice\tdirectory",
    "dotfile\talice\t/home/alice/.netrc\t600\talice", "dotfile\talice\t/home/alice/.bashrc\t664\talice",
])
PASSWD = ["root:x:0:0:root:/root:/bin/bash", "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
          "games:x:5:60:games:/usr/games:/bin/sh", "toor:x:0:0::/root:/bin/bash",
          "alice:x:1000:1000::/home/alice:/bin/bash", "bob:x:1001:999::/home/bob:/bin/bash",
          "carol:x:1002:1002::/home/carol:/usr/sbin/nologin", "ghost:secret:1003:42::/:/usr/sbin/nologin"]
GROUP = ["root:x:0:", "daemon:x:1:", "games:x:60:", "wheel:x:0:", "shadow:x:42:bob", "alice:x:1000:", "carol:x:1002:", "alice:x:1003:"]


def test_account_rules_read_passwd_group_and_a_shadow_summary(catalogue):
    files = _files({"/etc/passwd": PASSWD, "/etc/group": GROUP, "/etc/shells": ["/bin/sh", "/bin/bash"],
                    "/etc/login.defs": ["UID_MIN 1000"]})
    results = _results(catalogue, files=files, accounts=SHADOW_SUMMARY)
    found = {cid: r["observed"].get("found") for cid, r in results.items() if r["id"].startswith(("ACC", "AUTH"))
             and r["status"] == "fail" and isinstance(r["observed"], dict)}
    assert found["ACC-01"] == ["toor"]
    assert found["ACC-03"] == ["wheel"]
    assert found["ACC-05"][:2] == ["/opt/tools (owner bob, mode 777)", "'.' (empty or current directory)"]
    assert found["ACC-07"] == ["games", "toor"]  # CIS 5.4.2.7 spares root, sync, shutdown and halt only
    assert found["ACC-09"] == ["ghost"]
    assert found["ACC-10"] == ["carol"]
    assert found["ACC-11"] == ["bob (gid 999)"]
    assert found["ACC-12"] == ["bob", "ghost"]
    assert found["ACC-14"] == ["0"] and found["ACC-16"] == ["alice"]
    assert found["ACC-17"] == ["games: /usr/games does not exist", "toor: /root owner root mode 700",
                               "alice: /home/alice owner alice mode 755", "bob: /home/bob does not exist"]
    assert found["ACC-18"] == ["/home/alice/.netrc exists", "/home/alice/.bashrc owner alice mode 664"]
    assert found["AUTH-07"] == ["alice"] and found["AUTH-12"] == ["alice"]
    assert found["AUTH-10"] == ["bob"]
    assert results["ACC-04"]["status"] == "pass"  # root is locked
    assert results["ACC-08"]["status"] == "pass"  # carol has no shell and an empty (not a usable) password
    plan = _plan(catalogue)
    obs = observe.normalise_observations(_raw(files=files, accounts=SHADOW_SUMMARY))
    before = hardening.evaluate(plan, _raw(files=files, accounts=SHADOW_SUMMARY))
    argv = [c["argv"] for c in hardening.enforce.commands(plan, before, obs)]
    assert ["chage", "--maxdays", "365", "alice"] in argv and ["chage", "--inactive", "45", "alice"] in argv
    assert ["usermod", "--shell", "/usr/sbin/nologin", "games"] in argv
    assert not any(a[0] == "userdel" for a in argv)  # removing the second UID 0 (ACC-01) needs a person


def test_the_account_summary_never_carries_a_password_hash(tmp_path):
    """The gather step reads /etc/shadow through awk that prints only whether a password is set: run its first
    command on a shadow file with a planted hash, and check that nothing else reads the hash files."""
    with open(os.path.join(ROLE, "tasks", "gather.yml")) as handle:
        task = [t for t in yaml.safe_load(handle) if "Summarise the account databases" in t["name"]][0]
    script = task["ansible.builtin.shell"]
    awk = script[script.index("awk"):script.index("/etc/shadow") + len("/etc/shadow")]
    planted = "$6$PLANTEDsalt$planted.hash.value/that.must.never.leave.the.host"
    shadow = tmp_path / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\nalice:%s:19000:0:99999:7:::\nbob:!%s:19000::::::\n"
                      % (planted, planted))
    out = subprocess.run(["bash", "-c", awk.replace("/etc/shadow", str(shadow))], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    assert "PLANTED" not in out and "planted" not in out
    summary = observe.parse_accounts(out)["shadow"]
    assert [(r["name"], r["password"]) for r in summary] == [
        ("root", "locked"), ("alice", "password"), ("bob", "locked")]
    spec = hardening.gather_spec(_plan(_render(_load_catalogue())))
    assert not set(spec["read_globs"]) & {"/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-"}


def _load_catalogue():
    with open(os.path.join(ROLE, "vars", "catalogue.yml")) as handle:
        return yaml.safe_load(handle)["__hardening_catalogue"]


# --------------------------------------------------------------------------- time synchronisation
def _time_obs(services, packages=(), files=None):
    return _raw(services=services, packages=packages, files=_files(files or {}))


@pytest.mark.parametrize("services, packages, in_use", [
    ({"systemd-timesyncd.service": "enabled"}, ["systemd"], "systemd-timesyncd"),
    ({"chrony.service": "enabled"}, ["chrony"], "chrony"),
    ({"ntpsec.service": "enabled", "ntp.service": "alias"}, ["ntpsec", "ntp"], "ntp"),
])
def test_time_is_judged_on_the_daemon_in_use_whichever_it_is(catalogue, services, packages, in_use):
    files = {"/etc/chrony/chrony.conf": ["pool 2.debian.pool.ntp.org iburst"],
             "/etc/systemd/timesyncd.conf": ["[Time]", "#NTP="], "/etc/ntpsec/ntp.conf": ["pool 0.debian.pool.ntp.org"]}
    results = _by_id(hardening.evaluate(_plan(catalogue), _time_obs(services, packages, files)))
    assert results["TIME-02"]["status"] == "pass" and results["TIME-02"]["observed"]["in_use"] == in_use
    assert results["TIME-03"]["status"] == ("fail" if in_use == "systemd-timesyncd" else "pass")
    assert results["TIME-04"]["status"] == ("pass" if in_use == "chrony" else "not_applicable")


def test_enforce_keeps_the_daemon_in_use_and_configures_its_sources(catalogue):
    plan = _plan(catalogue)
    # timesyncd in use, chrony also enabled: two daemons; hardening_time_daemon (chrony) is kept
    raw = _time_obs({"systemd-timesyncd.service": "enabled", "chrony.service": "enabled"}, ["chrony"])
    fixes = hardening.service_fixes(plan, raw["services"], obs=observe.normalise_observations(raw))
    assert {"id": "TIME-02", "service": "systemd-timesyncd.service"} in fixes["disable"]
    assert "chrony.service" in {f["service"] for f in fixes["enable"]}
    # only timesyncd in use: it stays, gets its sources in a drop-in, nothing is installed
    raw = _time_obs({"systemd-timesyncd.service": "enabled"}, [], {"/etc/systemd/timesyncd.conf": ["[Time]"]})
    before = hardening.evaluate(plan, raw)
    obs = observe.normalise_observations(raw)
    assert hardening.packages(plan, obs)["install"].count("chrony") == 0
    dropins = enforce.time_source_files(plan, before, obs, ["ntp1.example.org", "ntp2.example.org"])
    assert dropins[0]["path"] == "/etc/systemd/timesyncd.conf.d/60-changeops-hardening.conf"
    assert dropins[0]["content"].endswith("[Time]\nNTP=ntp1.example.org ntp2.example.org\n")
    # nothing in use: hardening_time_daemon is installed and its config file gets the servers
    raw = _time_obs({})
    before = hardening.evaluate(plan, raw)
    obs = observe.normalise_observations(raw)
    assert "chrony" in hardening.packages(plan, obs)["install"]
    edits = hardening.line_edits(plan, before, obs, ["ntp1.example.org"])
    assert {"id": "TIME-03", "path": "/etc/chrony/chrony.conf", "line": "server ntp1.example.org iburst"} in \
        [{k: e[k] for k in ("id", "path", "line")} for e in edits]


# --------------------------------------------------------------------------- files, mounts, services, composites
def test_file_modes_with_globs_per_path_modes_and_required_files(catalogue):
    stats = {"/etc/ssh/ssh_host_ed25519_key": {"exists": True, "mode": "0640", "pw_name": "root", "gr_name": "root"},
             "/etc/ssh/ssh_host_ed25519_key.pub": {"exists": True, "mode": "0644", "pw_name": "root", "gr_name": "root"},
             "/etc/crontab": {"exists": True, "mode": "0644", "pw_name": "root", "gr_name": "root"},
             "/etc/cron.d": {"exists": True, "mode": "0700", "pw_name": "root", "gr_name": "root", "isdir": True},
             "/etc/cron.allow": {"exists": False}}
    results = _results(catalogue, stats=stats, packages=["cron"])
    assert results["SSH-19"]["message"] == "/etc/ssh/ssh_host_ed25519_key mode 0640 is more permissive than 0600"
    assert results["SSH-20"]["status"] == "pass"
    assert results["FS-03"]["message"] == "/etc/crontab mode 0644 is more permissive than 0600"
    assert results["CRON-02"]["message"].startswith("/etc/cron.allow does not exist")
    fixes = {f["path"]: f for f in hardening.file_mode_fixes(_plan(catalogue, allow_disruptive=True),
                                                             {"stdout": _stat_lines(stats)})}
    assert fixes["/etc/cron.allow"] == {"id": "CRON-02", "path": "/etc/cron.allow", "owner": "root",
                                        "group": "crontab", "mode": "0640", "state": "touch"}
    assert fixes["/etc/cron.d"]["state"] == "directory" and fixes["/etc/crontab"]["mode"] == "0600"
    # AIDE-02 requires its database but never creates it: aideinit does
    assert "/var/lib/aide/aide.db" not in fixes


def test_mounts_separate_and_options(catalogue):
    mounts = ["tmpfs /tmp tmpfs rw,nosuid,nodev 0 0", "tmpfs /dev/shm tmpfs rw,nosuid,nodev,noexec 0 0",
              "/dev/sda3 /home ext4 rw,nodev 0 0"]
    results = _results(catalogue, files=_files({"/proc/self/mounts": mounts}))
    assert results["MNT-01"]["status"] == "pass"
    assert results["MNT-02"]["message"].startswith("/tmp is mounted without noexec")
    assert results["MNT-04"]["status"] == "pass"
    assert results["MNT-05"]["message"].startswith("/home is mounted without nosuid")
    assert results["MNT-06"]["status"] == "not_applicable"


def test_banners_must_not_name_the_system_and_are_rewritten_only_when_they_do(catalogue):
    files = {"/etc/issue": ["Debian GNU/Linux 12 \\n \\l"], "/etc/issue.net": ["Authorised access only."],
             "/etc/motd": ["Welcome to \\s \\r"]}
    plan = _plan(catalogue)
    before = hardening.evaluate(plan, _raw(files=_files(files)))
    results = _by_id(before)
    assert results["BAN-02"]["status"] == "fail" and results["BAN-01"]["status"] == "fail"
    assert results["BAN-03"]["status"] == "pass"
    written = {f["path"] for f in hardening.managed_files(plan, before)}
    assert {"/etc/issue", "/etc/motd"} <= written and "/etc/issue.net" not in written


def test_composites_and_packages_a_run_installs(catalogue):
    services = {"logrotate.timer": "enabled", "cron.service": ""}
    results = _results(catalogue, services=services, packages=["logrotate"])
    assert results["LOG-11"]["status"] == "pass"  # all_of: installed and (timer or cron.daily)
    assert results["CRON-01"]["status"] == "fail"
    assert results["LOG-07"]["status"] == "not_applicable"  # applies where rsyslog is installed
    plan = _plan(catalogue)
    raw = _raw(services=services, packages=["logrotate"])
    before = hardening.evaluate(plan, raw)
    obs = observe.normalise_observations(raw)
    installing = hardening.packages(plan, obs)["install"]
    assert {"rsyslog", "cron", "aide", "aide-common", "sudo", "auditd"} <= set(installing)
    # AIDE-02 could not apply before (aide-common missing); it is installed now, so aideinit is planned, last
    argv = [c["argv"] for c in hardening.enforce.commands(plan, before, obs, installing)]
    assert argv[-1] != ["aideinit", "--yes", "--force"] and ["aideinit", "--yes", "--force"] in argv
    assert ["chmod", "g-wx,o-rwx", "{}", "+"] in [a[-4:] for a in argv[argv.index(["aideinit", "--yes", "--force"]):]]


def test_log_files_and_sticky_directories_are_fixed_by_what_find_matches_at_the_end(catalogue):
    argv = hardening.enforce._find_fix({"kind": "world_writable_dirs", "chmod": "+t"}, ["/proc", "/tmp"])
    assert argv == [["find", "/", "-xdev", "-path", "/proc", "-prune", "-o", "-path", "/tmp", "-prune", "-o",
                     "-type", "d", "-perm", "-0002", "!", "-perm", "-1000", "-exec", "chmod", "+t", "{}", "+"]]


def test_enforce_defers_writes_into_directories_a_package_brings_under_check(catalogue):
    plan = _plan(catalogue)
    stats = {"/etc/sudoers.d": {"exists": False}, "/etc/security/pwquality.conf.d": {"exists": False}}
    raw = _raw(stats=stats)
    before = hardening.evaluate(plan, raw)
    checked = hardening.enforce_plan(plan, raw, before, check_mode=True, ssh_version="9.2")
    deferred = {d["path"] for d in checked["owned"]["dropins"] if d["deferred"]}
    assert all(d["id"] for d in checked["owned"]["dropins"] + checked["files"])  # the role reports them by control
    assert "/etc/sudoers.d/60-changeops-hardening" in deferred and checked["dirs"] == []
    real = hardening.enforce_plan(plan, raw, before, check_mode=False, ssh_version="9.2")
    assert {"/etc/sudoers.d", "/etc/security/pwquality.conf.d"} <= set(real["dirs"])
    assert not any(d["deferred"] for d in real["owned"]["dropins"])


def test_an_edit_that_needs_a_setting_waits_for_it(catalogue):
    plan = _plan(catalogue)
    before = hardening.evaluate(plan, _raw(packages=["rsyslog"]))
    assert not [e for e in hardening.line_edits(plan, before) if e["id"] == "LOG-09"]
    configured = hardening.plan(_render(_load_catalogue(), {"hardening_syslog_remote": "logs.example.org:6514"}),
                                "Debian", ssh_version="9.2", today="2026-06-01")
    edit = [e for e in hardening.line_edits(configured, before) if e["id"] == "LOG-09"][0]
    assert edit["line"] == "*.* @@logs.example.org:6514" and edit["create"]


def test_one_walk_of_the_file_system_serves_every_search():
    commands = hardening.enforce.find_commands(["world_writable", "unowned", "world_writable_dirs", "log_files"],
                                               ["/proc", "/tmp"])
    assert len(commands) == 2 and commands[0][:3] == ["find", "/", "-xdev"] and commands[1][1] == "/var/log"
    assert commands[0].count(",") == 2  # GNU find's list operator: every test runs on every file
    raw = {"find": {"results": [{"item": commands[0], "stdout": "world_writable\t/srv/x\nunowned\t/srv/y"},
                                {"item": commands[1], "stdout": ""}]}}
    assert observe.normalise_observations(raw)["find"] == {"world_writable": ["/srv/x"], "unowned": ["/srv/y"],
                                                           "world_writable_dirs": [], "log_files": []}
    with pytest.raises(hardening.HardeningError, match="'suid'"):
        hardening.enforce.find_commands(["suid"])


def test_systemd_257_says_not_found_where_older_ones_say_nothing(catalogue):
    results = _results(catalogue, services={"chrony.service": "not-found", "systemd-timesyncd.service": "",
                                            "ntp.service": "not-found", "ntpsec.service": "not-found"})
    assert results["TIME-01"]["status"] == "fail" and results["TIME-01"]["observed"]["installed"] == []


@pytest.mark.parametrize("sources, status", [
    ({"/etc/apt/sources.list": ["deb http://deb.debian.org/debian bookworm main"]}, "fail"),
    ({"/etc/apt/sources.list": ["deb http://deb.debian.org/debian bookworm main",
                                "deb [signed-by=/k.gpg] http://mirror.example/debian-security bookworm-security main"]}, "pass"),
    ({"/etc/apt/sources.list.d/debian.sources": ["Types: deb", "URIs: http://deb.debian.org/debian-security",
                                                 "Suites: bookworm-security", "Components: main"]}, "pass"),
    ({"/etc/apt/sources.list": ["# deb http://security.debian.org/debian-security bookworm-security main"]}, "fail"),
])
def test_the_security_suite_is_found_in_one_line_and_deb822_sources(catalogue, sources, status):
    assert _results(catalogue, files=_files(sources))["APT-02"]["status"] == status
