# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the role reads from a target (gather_spec) and how the raw output becomes observations.

The role's gather tasks are a fixed handful of read-only commands (one grep over every file, one
``stat``, one ``systemctl is-enabled`` loop, ``sshd -T``, live sysctls, package facts, the file
system searches and a summary of the account databases); what each of them reads is decided here,
from the plan, so a new control never needs a task of its own.
"""

from __future__ import annotations

import fnmatch
import posixpath

from ._common import as_list, norm
from .catalogue import iter_checks

SYSCTL_DIRS = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"]
SYSCTL_GLOBS = ["/etc/sysctl.conf"] + [d + "/*.conf" for d in SYSCTL_DIRS]
MODPROBE_GLOBS = ["/etc/modprobe.d/*.conf", "/run/modprobe.d/*.conf", "/usr/lib/modprobe.d/*.conf",
                  "/lib/modprobe.d/*.conf"]
SSHD_GLOBS = ["/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d/*.conf"]
SUDOERS_GLOBS = ["/etc/sudoers", "/etc/sudoers.d/*"]
# read for every run: the files the role owns or edits keep lines of controls it may not change, and the
# account and mount checks read these
BASE_GLOBS = SYSCTL_GLOBS + MODPROBE_GLOBS + SSHD_GLOBS + ["/proc/modules", "/proc/self/mounts", "/etc/passwd",
                                                           "/etc/group", "/etc/shells", "/etc/login.defs"]
# never read whole: they hold password hashes (the accounts summary reads what the checks need, no hashes)
SECRET_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")


def _check_paths(check):
    kind = check.get("type")
    paths = []
    for key in ("paths", "path", "target", "edit", "conf"):
        if check.get(key) and kind != "file_mode":
            paths += as_list(check[key])
    if kind == "pam":
        for item in check.get("require") or []:
            paths += as_list(item.get("file")) + as_list(item.get("conf"))
            if (item.get("profile") or {}).get("name"):
                paths.append("/usr/share/pam-configs/" + item["profile"]["name"])
        paths += as_list(check.get("unix_profile"))
    if kind == "sudoers":
        paths += SUDOERS_GLOBS
    if kind == "time_sync":
        for daemon in check.get("daemons") or []:
            paths += as_list((daemon.get("sources") or {}).get("paths"))
    return paths


def gather_spec(planned):
    """What the gather step reads for this plan.

    ``read_globs``: files read whole with one ``grep -H`` (shell globs); ``stat_globs``: owner and mode;
    ``units``: ``systemctl is-enabled``; ``sysctl_keys``: live values; ``find_kinds``: file system
    searches; ``accounts``: whether the account summary runs. Own files and edited files of controls that
    are not selected are read too: enforce keeps their lines.
    """
    read, stat, units, keys, finds = list(BASE_GLOBS), [], [], [], []
    accounts = False
    for control in planned:
        for check in iter_checks(control["check"]):
            read += _check_paths(check)
            if not control["selected"]:
                continue
            kind = check.get("type")
            if kind == "file_mode":
                stat += as_list(check.get("paths")) + as_list(check.get("require"))
            elif kind in ("service_enabled", "service_disabled"):
                units += as_list(check.get("service")) + as_list(check.get("services"))
            elif kind == "time_sync":
                for daemon in check.get("daemons") or []:
                    units += as_list(daemon.get("units"))
            elif kind == "sysctl":
                keys += [str(k) for k in check["settings"]]
            elif kind == "find":
                finds.append(check["kind"])
            elif kind == "accounts":
                accounts = True
    # parents of the files enforce may write: a missing one is created (or, under --check, the write reported)
    for parent in _written_dirs(planned):
        stat.append(parent)
    read = [p for p in _unique(read) if p not in SECRET_FILES]
    return {"read_globs": read, "stat_globs": _unique(stat), "units": _unique(units), "sysctl_keys": _unique(keys),
            "find_kinds": _unique(finds), "accounts": accounts}


def _written_dirs(planned):
    dirs = []
    for control in planned:
        for check in iter_checks(control["check"]):
            kind = check.get("type")
            paths = []
            if kind in ("settings", "sudoers", "file_lines") and check.get("target"):
                paths.append(check["target"])
            if kind == "file_content":
                paths.append(check["path"])
            if kind == "pam" and any((item.get("profile") or {}).get("content") for item in check.get("require") or []):
                paths.append("/usr/share/pam-configs/x")
            if kind == "time_sync":
                for daemon in check.get("daemons") or []:
                    dropin = (daemon.get("sources") or {}).get("dropin")
                    if dropin:
                        paths.append(dropin["path"])
            paths += [edit["path"] for edit in control.get("edits") or [] if edit.get("create")]
            dirs += [posixpath.dirname(p) for p in paths]
    return _unique(dirs)


def _unique(items):
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


# --------------------------------------------------------------------------- parsers
def parse_grep_h(stdout):
    """``grep -Hs '' FILES`` output -> {path: [lines]} (our globs never contain ':')."""
    files = {}
    for line in (stdout or "").splitlines():
        path, sep, content = line.partition(":")
        if sep:
            files.setdefault(path, []).append(content)
    return files


def matching(files, patterns):
    return sorted(path for path in files if any(fnmatch.fnmatchcase(path, p) for p in as_list(patterns)))


def persisted_sysctls(files):
    """Effective persisted values, in the order systemd-sysctl applies them (later wins)."""
    chosen = {}
    for directory in SYSCTL_DIRS:
        for path in files:
            if posixpath.dirname(path) == directory and path.endswith(".conf"):
                chosen.setdefault(posixpath.basename(path), path)
    ordered = [chosen[name] for name in sorted(chosen)]
    if "/etc/sysctl.conf" in files:
        ordered.append("/etc/sysctl.conf")
    values = {}
    for path in ordered:
        for line in files[path]:
            line = line.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            key, _sep, value = line.partition("=")
            key = key.strip().lstrip("-").replace("/", ".")
            values[key] = norm(value)
    return values


def parse_sysctl_live(stdout):
    live = {}
    for line in (stdout or "").splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            live[parts[0]] = {"value": norm(parts[1]), "access": parts[2]}
    return live


def parse_sshd_t(stdout):
    effective = {}
    for line in (stdout or "").splitlines():
        keyword, _sep, value = line.strip().partition(" ")
        if keyword:
            effective.setdefault(keyword.lower(), value.strip())
    return effective


def parse_stat(stdout):
    """The gather step's ``stat`` lines (``path TAB octal-mode TAB owner TAB group TAB type``, or
    ``path TAB missing``) -> {path: {exists, mode, pw_name, gr_name, isdir}}."""
    stats = {}
    for line in (stdout or "").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1] == "missing":
            stats[parts[0]] = {"exists": False}
        elif len(parts) >= 5:
            stats[parts[0]] = {"exists": True, "mode": "%04o" % int(parts[1], 8), "pw_name": parts[2],
                               "gr_name": parts[3], "isdir": parts[4] == "directory"}
    return stats


def parse_units(stdout):
    """``unit TAB state`` lines of ``systemctl is-enabled`` (empty state: no such unit) -> {unit: state or None}."""
    units = {}
    for line in (stdout or "").splitlines():
        unit, _sep, state = line.partition("\t")
        if unit:
            # systemd 257 (Debian 13) prints not-found for a unit that does not exist; older ones print nothing
            units[unit] = None if state.strip() in ("", "not-found") else state.strip()
    return units


ACCOUNT_FIELDS = {
    # record kind -> field names after the kind
    "shadow": ("name", "password", "lastchg", "min", "max", "warn", "inactive"),
    "today": ("days",),
    "rootpath": ("dir", "mode", "owner", "type"),
    "home": ("user", "path", "mode", "owner", "type"),
    "dotfile": ("user", "path", "mode", "owner"),
}


def parse_accounts(stdout):
    """The account summary (no password hashes ever: ``password`` is empty, locked or set)."""
    records = {kind: [] for kind in ACCOUNT_FIELDS}
    for line in (stdout or "").splitlines():
        parts = line.split("\t")
        fields = ACCOUNT_FIELDS.get(parts[0])
        if fields and len(parts) == len(fields) + 1:
            records[parts[0]].append(dict(zip(fields, parts[1:])))
    return records


def parse_passwd(lines):
    users = []
    for line in lines or []:
        parts = line.split(":")
        if len(parts) >= 7 and not line.startswith("#"):
            users.append({"name": parts[0], "password": parts[1], "uid": parts[2], "gid": parts[3],
                          "home": parts[5], "shell": parts[6]})
    return users


def parse_group(lines):
    groups = []
    for line in lines or []:
        parts = line.split(":")
        if len(parts) >= 4 and not line.startswith("#"):
            groups.append({"name": parts[0], "gid": parts[2], "members": [m for m in parts[3].split(",") if m]})
    return groups


def parse_mounts(lines):
    """``/proc/self/mounts`` -> {mount point: options}, the last mount of a point winning."""
    mounts = {}
    for line in lines or []:
        parts = line.split()
        if len(parts) >= 4:
            mounts[parts[1].replace("\\040", " ")] = {"device": parts[0], "fstype": parts[2],
                                                      "options": parts[3].split(",")}
    return mounts


def _find_kinds(argv):
    """The kinds a search prints (its -printf formats ``kind\\t%p\\n``)."""
    return [argv[i + 1].split("\t")[0] for i, arg in enumerate(argv[:-1]) if arg == "-printf"]


def normalise_observations(raw):
    """Turn the role's registered task results into what the checkers read."""
    obs = {"files": parse_grep_h((raw.get("files") or {}).get("stdout", ""))}
    sshd = raw.get("sshd") or {}
    obs["sshd"] = {"rc": sshd.get("rc"), "stdout": sshd.get("stdout", ""), "stderr": sshd.get("stderr", ""),
                   "missing": sshd.get("rc") == 127 or bool(sshd.get("skipped"))}
    obs["sysctl"] = parse_sysctl_live((raw.get("sysctl") or {}).get("stdout", ""))
    obs["stat"] = parse_stat((raw.get("stat") or {}).get("stdout", ""))
    obs["packages"] = sorted((raw.get("packages") or {}).keys())
    obs["services"] = parse_units((raw.get("services") or {}).get("stdout", ""))
    obs["find"] = {}
    for result in (raw.get("find") or {}).get("results", []):
        if result.get("skipped"):
            continue
        if isinstance(result.get("item"), list):
            # one walk for several kinds (hardening_find_commands): lines are "kind TAB path"
            for kind in _find_kinds(result["item"]):
                obs["find"].setdefault(kind, [])
            for line in (result.get("stdout") or "").splitlines():
                kind, sep, path = line.partition("\t")
                if sep:
                    obs["find"].setdefault(kind, []).append(path)
        else:
            obs["find"][result["item"]] = [line for line in (result.get("stdout") or "").splitlines() if line]
    accounts = raw.get("accounts") or {}
    obs["accounts"] = None if accounts.get("skipped") or "stdout" not in accounts else \
        parse_accounts(accounts.get("stdout"))
    return obs
