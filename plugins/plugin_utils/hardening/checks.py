# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One checker per check type: (check, observations) -> (status, observed, message).

Checkers judge raw observations only (file contents, ``sshd -T``, stat lines, unit states, package
facts, search results, the account summary), so an audit says the same with and without --check and
the same logic tells enforce mode what to change.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex

from ._common import as_list, norm, octal
from .observe import (MODPROBE_GLOBS, SUDOERS_GLOBS, matching, parse_group, parse_mounts, parse_passwd,
                      parse_sshd_t, persisted_sysctls)

DISABLED_INSTALL = re.compile(r"^install\s+(\S+)\s+(/usr)?/bin/(false|true)\s*$")
ENABLED_STATES = ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated")
NOT_ENABLED_STATES = (None, "disabled", "masked", "masked-runtime", "not-found", "bad")


# --------------------------------------------------------------------------- value comparison
def compare(actual, spec):
    """Judge one value against ``spec`` ({value, compare, min, max, accepted, bad}); True/False."""
    how = spec.get("compare", "eq")
    if actual is None:
        return False
    try:
        if how == "eq":
            return norm(actual).lower() == norm(spec["value"]).lower()
        if how == "min":
            return int(actual) >= int(spec.get("min", spec.get("value")))
        if how == "max":
            return int(actual) <= int(spec.get("max", spec.get("value")))
        if how == "range":
            return int(spec["min"]) <= int(actual) <= int(spec["max"])
        if how == "not":
            return norm(actual).lower() != norm(spec["bad"]).lower()
        if how == "one_of":
            return norm(actual).upper() in [norm(a).upper() for a in spec.get("accepted") or [spec.get("value")]]
        if how == "regex":
            return re.search(spec["regex"], actual) is not None
        if how == "mode_max":
            return octal(actual) & ~octal(spec.get("max", spec.get("value"))) & 0o7777 == 0
    except (TypeError, ValueError):
        return False
    raise ValueError("unknown compare %r" % how)


def describe(spec):
    """What ``spec`` asks for, in words (evidence 'expected' and messages)."""
    how = spec.get("compare", "eq")
    if spec.get("flag"):
        return "set"
    if how == "min":
        return ">= %s" % spec.get("min", spec.get("value"))
    if how == "max":
        return "<= %s" % spec.get("max", spec.get("value"))
    if how == "range":
        return "%s..%s" % (spec["min"], spec["max"])
    if how == "not":
        return "not %s" % spec["bad"]
    if how == "one_of":
        return "one of %s" % ", ".join(str(a) for a in spec.get("accepted") or [spec.get("value")])
    if how == "regex":
        return "matching %s" % spec["regex"]
    if how == "mode_max":
        return "mode %s or stricter" % spec.get("max", spec.get("value"))
    return str(spec.get("value"))


# --------------------------------------------------------------------------- sshd / sysctl / modprobe
SSHD_CONFIG = "/etc/ssh/sshd_config"


def sshd_config_values(lines):
    """keyword -> every value sshd_config itself states for it (outside Match blocks), as file-based scanners read it."""
    values = {}
    for line in lines or []:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = re.match(r"([^\s=]+)\s*(?:=\s*)?(.*?)\s*$", text)
        keyword = match.group(1).lower()
        if keyword == "match":
            break
        values.setdefault(keyword, []).append(match.group(2))
    return values


def _check_sshd(check, obs):
    sshd = obs.get("sshd") or {}
    if sshd.get("rc") is None or sshd.get("missing"):
        return "not_applicable", {}, "sshd is not installed"
    if sshd.get("rc") != 0:
        return "error", {}, "sshd -T failed: %s" % norm(sshd.get("stderr") or sshd.get("stdout") or "")[:300]
    effective = parse_sshd_t(sshd.get("stdout"))
    stated = sshd_config_values((obs.get("files") or {}).get(SSHD_CONFIG)) if check.get("explicit", True) else None
    observed, bad = {}, []
    compares = check.get("compare") or {}
    for keyword, expected in (check.get("options") or {}).items():
        actual = effective.get(keyword)
        observed[keyword] = actual
        if expected is None:
            bad.append("%s: no crypto profile for this OpenSSH version" % keyword)
            continue
        spec = {"value": expected, "compare": compares.get(keyword, "eq")}
        if not compare(actual, spec):
            bad.append("%s is %s, expected %s" % (keyword, actual, describe(spec)))
        elif stated is not None:
            # in force is not enough: scanners and auditors read sshd_config itself, and a default moves with the
            # OpenSSH version (PermitRootLogin was yes before 7.0), so the setting must be stated there too
            values = stated.get(keyword, [])
            if not values:
                bad.append("%s is %s by sshd's default, not stated in %s" % (keyword, actual, SSHD_CONFIG))
            elif not all(compare(v, spec) for v in values):
                bad.append("%s also says %s %s" % (SSHD_CONFIG, keyword, ", ".join(v for v in values if not compare(v, spec))))
    present = as_list(check.get("present_any"))
    if present:
        found = {k: effective[k] for k in present if effective.get(k)}
        observed.update(found)
        if not found:
            bad.append("none of %s is set" % ", ".join(present))
    return ("fail" if bad else "pass"), observed, "; ".join(bad)


def _check_sysctl(check, obs):
    persisted = persisted_sysctls(obs.get("files") or {})
    live = obs.get("sysctl") or {}
    observed, bad, notes = {}, [], []
    for key, expected in check["settings"].items():
        expected = norm(expected)
        state = live.get(key) or {"value": None, "access": "missing"}
        observed[key] = {"persisted": persisted.get(key), "live": state["value"], "live_access": state["access"]}
        if persisted.get(key) != expected:
            bad.append("%s persisted as %s, expected %s" % (key, persisted.get(key), expected))
        if state["access"] == "missing":
            notes.append("%s does not exist in this kernel" % key)
        elif state["value"] != expected:
            if state["access"] == "rw":
                bad.append("%s is %s live, expected %s" % (key, state["value"], expected))
            else:
                notes.append("%s is %s live and read-only here (container): not applied live, "
                             "the persisted value applies at boot" % (key, state["value"]))
    return ("fail" if bad else "pass"), observed, "; ".join(bad + notes)


def _check_modprobe(check, obs):
    files = obs.get("files") or {}
    disabled = set()
    for path in matching(files, MODPROBE_GLOBS):
        for line in files[path]:
            match = DISABLED_INSTALL.match(line.strip())
            if match:
                disabled.add(match.group(1).replace("-", "_"))
    loaded_known = "/proc/modules" in files
    loaded = {line.split()[0] for line in files.get("/proc/modules", []) if line.strip()}
    observed, bad = {}, []
    for module in check["modules"]:
        name = module.replace("-", "_")
        observed[module] = {"disabled": name in disabled, "loaded": (name in loaded) if loaded_known else None}
        if name not in disabled:
            bad.append("%s can be loaded (no 'install %s /bin/false')" % (module, module))
        if loaded_known and name in loaded:
            bad.append("%s is loaded now (unload it or reboot)" % module)
    note = "" if loaded_known else "; /proc/modules is not readable here: loaded state unknown"
    return ("fail" if bad else "pass"), observed, ("; ".join(bad) + note).strip("; ")


# --------------------------------------------------------------------------- configuration files
def key_value_of(lines, key, separator, occurrence="last"):
    """Values of ``key`` in ``lines`` (comments ignored): the last one, or all of them for occurrence=all."""
    if separator in ("equals", "shell"):
        pattern = re.compile(r"^\s*%s\s*=\s*(.*?)\s*$" % re.escape(key), re.IGNORECASE)
    else:
        pattern = re.compile(r"^\s*%s\s+(\S+)" % re.escape(key))
    values = [m.group(1) for m in (pattern.match(line) for line in lines if not line.lstrip().startswith("#")) if m]
    if occurrence == "all":
        return values
    return values[-1] if values else None


def _key_value_spec(check):
    spec = {"value": check.get("expected"), "compare": check.get("compare", "eq")}
    for key in ("accepted", "regex", "min", "max", "bad"):
        if key in check:
            spec[key] = check[key]
    if spec["compare"] == "one_of" and "accepted" not in spec:
        spec["accepted"] = [check.get("expected")]
    return spec


def _check_key_value(check, obs):
    files = obs.get("files") or {}
    path = check["path"]
    if path not in files:
        if check.get("missing") == "not_applicable":
            return "not_applicable", {"path": path}, "%s does not exist" % path
        return "fail", {"path": path, check["key"]: None}, "%s does not exist" % path
    spec = _key_value_spec(check)
    if check.get("occurrence") == "all":
        values = key_value_of(files[path], check["key"], check.get("separator", "space"), "all")
        if not values and check.get("default") is not None:
            values = [str(check["default"])]
        bad = [v for v in values if not compare(v, spec)]
        ok = bool(values) and not bad
        message = "" if ok else "%s %s is %s, expected %s" % (path, check["key"], ", ".join(values) or None,
                                                              describe(spec))
        return ("pass" if ok else "fail"), {check["key"]: values}, norm(message)
    actual = key_value_of(files[path], check["key"], check.get("separator", "space"))
    shown = actual
    if actual is None and check.get("default") is not None:
        actual = str(check["default"])
        shown = "%s (default)" % actual
    ok = compare(actual, spec)
    message = "" if ok else "%s %s is %s, expected %s" % (path, check["key"], shown, describe(spec))
    return ("pass" if ok else "fail"), {check["key"]: shown}, norm(message)


def ordered_files(files, patterns):
    """Files matching the globs in ``patterns``, in the order given (each glob's matches sorted), once each."""
    ordered = []
    for pattern in as_list(patterns):
        for path in sorted(p for p in files if fnmatch.fnmatchcase(p, pattern)):
            if path not in ordered:
                ordered.append(path)
    return ordered


def setting_line(line, separator):
    """(key, value) of one settings line; a bare word is (word, True); None for comments and blanks."""
    text = line.strip()
    if not text or text[0] in "#;[":
        return None
    if separator in ("equals", "ini", "shell"):
        key, sep, value = text.partition("=")
        if not sep:
            return (key.strip(), True)
        return (key.strip(), value.strip())
    parts = text.split(None, 1)
    return (parts[0], parts[1].strip() if len(parts) > 1 else True)


def effective_settings(files, check):
    """key -> (value, path) as the program reads the files (``precedence`` last or first wins)."""
    values = {}
    section = check.get("section")
    for path in ordered_files(files, check.get("paths")):
        current = None
        for line in files[path]:
            text = line.strip()
            if text.startswith("[") and text.endswith("]"):
                current = text[1:-1]
                continue
            if section and current != section:
                continue
            parsed = setting_line(line, check.get("separator", "equals"))
            if parsed is None:
                continue
            key = parsed[0] if check.get("case_sensitive") else parsed[0].lower()
            if check.get("precedence", "last") == "first" and key in values:
                continue
            values[key] = (parsed[1], path)
    return values


def _check_settings(check, obs):
    files = obs.get("files") or {}
    if check.get("missing") == "not_applicable" and not ordered_files(files, check.get("paths")):
        return "not_applicable", {}, "none of %s exists" % ", ".join(as_list(check.get("paths")))
    effective = effective_settings(files, check)
    observed, bad = {}, []
    for key, spec in (check.get("keys") or {}).items():
        lookup = key if check.get("case_sensitive") else key.lower()
        value, path = effective.get(lookup, (None, None))
        if value is None and spec.get("default") is not None:
            value, path = str(spec["default"]), "default"
        observed[key] = {"value": value, "from": path}
        if spec.get("flag"):
            ok = value is True or (value not in (None, False) and str(value) not in ("0", "false", "no"))
        else:
            ok = value is not True and compare(value, spec)
        if not ok:
            bad.append("%s is %s, expected %s" % (key, "not set" if value is None else value, describe(spec)))
    return ("fail" if bad else "pass"), observed, "; ".join(bad)


def _check_file_lines(check, obs):
    files = obs.get("files") or {}
    present = set()
    for path in matching(files, check["paths"]):
        present.update(norm(line) for line in files[path] if not line.lstrip().startswith("#"))
    missing = [line for line in check["lines"] if norm(line) not in present]
    observed = {"missing_lines": missing, "files": matching(files, check["paths"])}
    return ("fail" if missing else "pass"), observed, ("missing: %s" % "; ".join(missing)) if missing else ""


def _check_file_regex(check, obs):
    files = obs.get("files") or {}
    paths = matching(files, check["paths"])
    if not paths and check.get("missing") == "not_applicable":
        return "not_applicable", {}, "none of %s exists" % ", ".join(as_list(check["paths"]))
    flags = re.IGNORECASE if check.get("ignorecase") else 0
    pattern = re.compile(check["regex"], flags)
    hits = ["%s: %s" % (path, line) for path in paths for line in files[path]
            if not line.lstrip().startswith("#") and pattern.search(line)]
    if check.get("absent"):
        return ("fail" if hits else "pass"), {"matches": hits[:10]}, \
            ("found: %s" % "; ".join(hits[:5])) if hits else ""
    return ("pass" if hits else "fail"), {"matches": hits[:10]}, "" if hits else "no line matches %s" % check["regex"]


def _check_file_content(check, obs):
    files = obs.get("files") or {}
    path = check["path"]
    if path not in files:
        if check.get("require"):
            return "fail", {"exists": False}, "%s does not exist" % path
        return "pass", {"exists": False}, "%s does not exist (nothing to leak)" % path
    pattern = re.compile(check["forbid"], re.IGNORECASE)
    found = [line for line in files[path] if pattern.search(line)]
    return ("fail" if found else "pass"), {"exists": True, "forbidden_lines": found[:5]}, \
        ("%s shows %s" % (path, "; ".join(found[:3]))) if found else ""


# --------------------------------------------------------------------------- files, packages, services
def _stat_matches(stats, pattern):
    if any(ch in pattern for ch in "*?["):
        return sorted(p for p, s in stats.items() if s.get("exists") and fnmatch.fnmatchcase(p, pattern))
    return [pattern] if (stats.get(pattern) or {}).get("exists") else []


def mode_for(check, path):
    for pattern, mode in (check.get("modes") or {}).items():
        if fnmatch.fnmatchcase(path, pattern):
            return mode
    return check["mode"]


def _check_file_mode(check, obs):
    stats = obs.get("stat") or {}
    observed, bad = {}, []
    owners, groups = as_list(check["owner"]), as_list(check["group"])
    paths = []
    for pattern in as_list(check.get("paths")) + as_list(check.get("require")):
        for path in _stat_matches(stats, pattern):
            if path not in paths:
                paths.append(path)
    for required in as_list(check.get("require")):
        if not _stat_matches(stats, required):
            observed[required] = {"exists": False}
            bad.append("%s does not exist" % required)
    for path in paths:
        stat = stats[path]
        allowed = octal(mode_for(check, path))
        mode = octal(stat["mode"])
        observed[path] = {"owner": stat.get("pw_name"), "group": stat.get("gr_name"), "mode": "%04o" % mode}
        if mode & ~allowed & 0o7777:
            bad.append("%s mode %04o is more permissive than %04o" % (path, mode, allowed))
        if stat.get("pw_name") not in owners:
            bad.append("%s owner %s, expected %s" % (path, stat.get("pw_name"), " or ".join(owners)))
        if stat.get("gr_name") not in groups:
            bad.append("%s group %s, expected %s" % (path, stat.get("gr_name"), " or ".join(groups)))
    if not observed:
        return "not_applicable", {}, "none of %s exists" % ", ".join(as_list(check.get("paths")))
    return ("fail" if bad else "pass"), observed, "; ".join(bad)


def _check_packages_absent(check, obs):
    installed = set(obs.get("packages") or [])
    found = [p for p in check["packages"] if p in installed]
    return ("fail" if found else "pass"), {"installed": found}, ("installed: %s" % ", ".join(found)) if found else ""


def _check_packages_present(check, obs):
    installed = set(obs.get("packages") or [])
    missing = [p for p in check["packages"] if p not in installed]
    return ("fail" if missing else "pass"), {"missing": missing}, ("not installed: %s" % ", ".join(missing)) if missing else ""


def _units(check):
    return as_list(check.get("service")) + as_list(check.get("services"))


def _check_service_enabled(check, obs):
    services = obs.get("services") or {}
    states = {unit: services.get(unit) for unit in _units(check)}
    ok = any(state in ENABLED_STATES for state in states.values())
    shown = ", ".join("%s is %s" % (u, s or "not found") for u, s in states.items())
    return ("pass" if ok else "fail"), {"enabled": states if len(states) > 1 else next(iter(states.values()))}, \
        "" if ok else shown


def _check_service_disabled(check, obs):
    services = obs.get("services") or {}
    states = {unit: services.get(unit) for unit in _units(check)}
    enabled = [u for u, s in states.items() if s not in NOT_ENABLED_STATES]
    return ("fail" if enabled else "pass"), {"state": states}, \
        ("%s enabled" % ", ".join("%s is %s" % (u, states[u]) for u in enabled)) if enabled else ""


def _check_find(check, obs):
    found = (obs.get("find") or {}).get(check["kind"])
    if found is None:
        return "error", {}, "the %s search did not run" % check["kind"]
    return ("fail" if found else "pass"), {"count": len(found), "sample": found[:20]}, \
        ("%d found (first: %s)" % (len(found), ", ".join(found[:5]))) if found else ""


def _check_mount(check, obs):
    mounts = parse_mounts((obs.get("files") or {}).get("/proc/self/mounts"))
    if not mounts:
        return "error", {}, "/proc/self/mounts could not be read"
    mount = mounts.get(check["path"])
    observed = {"mounted": bool(mount), "fstype": (mount or {}).get("fstype"),
                "options": sorted((mount or {}).get("options") or [])}
    if check.get("separate"):
        return ("pass" if mount else "fail"), observed, "" if mount else "%s is not a separate file system" % check["path"]
    if not mount:
        return "not_applicable", observed, "%s is not a separate file system (see its partition control)" % check["path"]
    missing = [o for o in check.get("options") or [] if o not in mount["options"]]
    return ("fail" if missing else "pass"), observed, \
        ("%s is mounted without %s" % (check["path"], ", ".join(missing))) if missing else ""


# --------------------------------------------------------------------------- time synchronisation
def time_daemons(check, obs):
    """Per daemon of the catalogue: installed (package or unit), enabled (a unit enabled at boot)."""
    installed_packages = set(obs.get("packages") or [])
    services = obs.get("services") or {}
    state = {}
    for daemon in check.get("daemons") or []:
        units = {u: services.get(u) for u in as_list(daemon.get("units"))}
        state[daemon["name"]] = {
            "installed": any(p in installed_packages for p in as_list(daemon.get("packages")))
            or any(s is not None for s in units.values()),
            "enabled": any(s in ENABLED_STATES for s in units.values()),
            "units": units,
        }
    return state


def in_use(check, obs):
    state = time_daemons(check, obs)
    return [name for name, s in state.items() if s["enabled"]]


def _check_time_sync(check, obs):
    state = time_daemons(check, obs)
    used = [name for name, s in state.items() if s["enabled"]]
    observed = {"installed": [n for n, s in state.items() if s["installed"]], "enabled": used,
                "in_use": used[0] if len(used) == 1 else None}
    facet = check["facet"]
    if facet == "installed":
        ok = bool(observed["installed"])
        return ("pass" if ok else "fail"), observed, "" if ok else "none of %s is installed" % ", ".join(state)
    if facet == "one_enabled":
        if len(used) == 1:
            return "pass", observed, ""
        return "fail", observed, ("none of %s is enabled" % ", ".join(state)) if not used else \
            "%d time daemons are enabled (%s); run one" % (len(used), ", ".join(used))
    if len(used) != 1:
        return "fail", observed, "no single time daemon in use (enabled: %s)" % (", ".join(used) or "none")
    daemon = next(d for d in check["daemons"] if d["name"] == used[0])
    files = obs.get("files") or {}
    if facet == "sources":
        sources = daemon.get("sources") or {}
        pattern = re.compile(sources["regex"])
        hits = ["%s: %s" % (path, line) for path in matching(files, sources.get("paths")) for line in files[path]
                if not line.lstrip().startswith("#") and pattern.search(line)]
        observed["sources"] = hits[:10]
        return ("pass" if hits else "fail"), observed, "" if hits else "%s has no time source configured" % used[0]
    if facet == "config_absent":
        if used[0] != check["daemon"]:
            return "not_applicable", observed, "%s is not the time daemon in use (%s is)" % (check["daemon"], used[0])
        pattern = re.compile(check["regex"])
        hits = ["%s: %s" % (path, line) for path in matching(files, (daemon.get("sources") or {}).get("paths"))
                for line in files[path] if not line.lstrip().startswith("#") and pattern.search(line)]
        observed["found"] = hits[:10]
        return ("fail" if hits else "pass"), observed, ("found: %s" % "; ".join(hits)) if hits else ""
    raise ValueError("unknown time_sync facet %r" % facet)


# --------------------------------------------------------------------------- PAM
PAM_LINE = re.compile(r"^\s*-?(auth|account|password|session)\s+(\[[^\]]*\]|\S+)\s+(\S+)\s*(.*)$")


def pam_lines(lines):
    """(type, control, module, [args]) of the active lines of a PAM file."""
    parsed = []
    for line in lines or []:
        match = PAM_LINE.match(line)
        if match and not line.lstrip().startswith("#"):
            try:
                args = shlex.split(match.group(4), comments=True)
            except ValueError:
                args = match.group(4).split()
            parsed.append((match.group(1), match.group(2), posixpath.basename(match.group(3)), args))
    return parsed


def _arg_values(args):
    values = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        values[key] = value if sep else True
    return values


def _pam_item_ok(item, files):
    lines = pam_lines(files.get(item["file"]))
    candidates = [entry for entry in lines if entry[2] == item["module"] and
                  (not item.get("pam_type") or entry[0] == item["pam_type"])]
    if not candidates:
        return False, "%s has no %s line for %s" % (item["file"], item.get("pam_type", ""), item["module"])
    problems = []
    for _type, _control, _module, args in candidates:
        values = _arg_values(args)
        problems = []
        missing = [a for a in as_list(item.get("args_all")) if a not in args]
        if missing:
            problems.append("without %s" % ", ".join(missing))
        present = [a for a in as_list(item.get("args_none")) if a in values]
        if present:
            problems.append("with %s" % ", ".join(present))
        if item.get("args_any") and not any(a in args for a in item["args_any"]):
            problems.append("without one of %s" % ", ".join(item["args_any"]))
        conf = {}
        if item.get("conf") and item["conf"] in files:
            conf = {k.lower(): v for k, v in (setting_line(line, "equals") or (None, None)
                                              for line in files[item["conf"]]) if k}
        for key, spec in (item.get("settings") or {}).items():
            value = values.get(key, conf.get(key.lower()))
            if spec.get("flag"):
                ok = value not in (None, False)
            else:
                ok = value not in (None, True) and compare(value, spec)
            if not ok:
                state = "not set" if value is None else "is %s" % value
                problems.append("%s %s, expected %s" % (key, state, describe(spec)))
        if not problems:
            return True, ""
    return False, "%s %s: %s" % (item["file"], item["module"], "; ".join(problems))


def _check_pam(check, obs):
    files = obs.get("files") or {}
    observed, bad = {}, []
    for item in check.get("require") or []:
        ok, message = _pam_item_ok(item, files)
        observed["%s %s" % (posixpath.basename(item["file"]), item["module"])] = ok
        if not ok:
            bad.append(message)
    return ("fail" if bad else "pass"), observed, "; ".join(bad)


# --------------------------------------------------------------------------- sudo
SUDO_DEFAULTS = re.compile(r"^\s*Defaults\s+(.*)$")


def sudoers_files(files):
    """/etc/sudoers, then the files of its @includedir /etc/sudoers.d that sudo reads (no '.' or trailing '~')."""
    ordered = ["/etc/sudoers"] if "/etc/sudoers" in files else []
    for path in ordered_files(files, SUDOERS_GLOBS[1:]):
        name = posixpath.basename(path)
        if "." not in name and not name.endswith("~"):
            ordered.append(path)
    return ordered


def _split_defaults(text):
    """``use_pty, logfile="/var/log/sudo.log" # comment`` -> ['use_pty', 'logfile="/var/log/sudo.log"']."""
    items, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "#" and not quoted and (not current or current[-1].isspace() or current[-1] == ","):
            break
        if char == "," and not quoted:
            items.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        items.append(current.strip())
    return [item for item in items if item]


def sudo_defaults(files):
    """Global ``Defaults`` as sudo applies them (later wins): name -> True/False/value."""
    values = {}
    for path in sudoers_files(files):
        for line in files[path]:
            match = SUDO_DEFAULTS.match(line)
            if not match:
                continue
            for item in _split_defaults(match.group(1)):
                if item.startswith("!"):
                    values[item[1:].strip()] = False
                elif "=" in item:
                    key, _sep, value = item.partition("=")
                    values[key.strip().rstrip("+-")] = value.strip().strip('"')
                else:
                    values[item] = True
    return values


def _check_sudoers(check, obs):
    files = obs.get("files") or {}
    if "/etc/sudoers" not in files:
        if not check.get("defaults"):
            return "pass", {"sudoers": None}, "sudo is not installed: nothing sets %s" % ", ".join(as_list(check.get("forbid")))
        return "fail", {"sudoers": None}, "/etc/sudoers does not exist (sudo is not installed)"
    effective = sudo_defaults(files)
    observed, bad = {}, []
    for name, want in (check.get("defaults") or {}).items():
        value = effective.get(name)
        observed[name] = value
        if isinstance(want, dict):
            if value is None and want.get("default") is not None:
                value = str(want["default"])
                observed[name] = "%s (default)" % value
            ok = value not in (None, True, False) and compare(value, want)
            shown = describe(want)
        elif want is True:
            ok, shown = value is True, "set"
        else:
            ok, shown = value == str(want), str(want)
        if not ok:
            bad.append("Defaults %s is %s, expected %s" % (name, "not set" if value is None else value, shown))
    for token in as_list(check.get("forbid")):
        pattern = re.compile(r"(^|[\s,:(])%s\b" % re.escape(token))
        hits = ["%s: %s" % (path, line.strip()) for path in sudoers_files(files) for line in files[path]
                if not line.lstrip().startswith("#") and pattern.search(line)]
        if hits:
            observed[token] = hits[:10]
            bad.append("%s found: %s" % (token, "; ".join(hits[:3])))
    return ("fail" if bad else "pass"), observed, "; ".join(bad)


# --------------------------------------------------------------------------- accounts
NOLOGIN_SHELLS = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false")
SYSTEM_SHELL_EXCEPTIONS = ("root", "sync", "shutdown", "halt")


def accounts_view(obs):
    files = obs.get("files") or {}
    login_defs = files.get("/etc/login.defs") or []
    uid_min = key_value_of(login_defs, "UID_MIN", "space")
    shells = [line.strip() for line in files.get("/etc/shells") or [] if line.strip() and not line.startswith("#")]
    return {"users": parse_passwd(files.get("/etc/passwd")), "groups": parse_group(files.get("/etc/group")),
            "uid_min": int(uid_min) if uid_min and uid_min.isdigit() else 1000,
            "shells": [s for s in shells if s not in NOLOGIN_SHELLS], "summary": obs.get("accounts")}


def interactive_users(view):
    return [u for u in view["users"] if u["shell"] in view["shells"]]


def _duplicates(values):
    seen, dups = set(), set()
    for value in values:
        (dups if value in seen else seen).add(value)
    return sorted(dups)


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def account_findings(check, view):
    """Names (or paths) that break the facet's rule; ``None`` when the facet needs the summary and it is missing."""
    facet = check["facet"]
    users, groups, summary = view["users"], view["groups"], view["summary"]
    shadow = {r["name"]: r for r in (summary or {}).get("shadow", [])}
    if facet == "uid0_only_root":
        return [u["name"] for u in users if u["uid"] == "0" and u["name"] != "root"]
    if facet == "root_gid0":
        return [u["name"] for u in users if u["name"] == "root" and u["gid"] != "0"]
    if facet == "gid0_only_root":
        return [g["name"] for g in groups if g["gid"] == "0" and g["name"] != "root"]
    if facet == "shadowed":
        return [u["name"] for u in users if u["password"] != "x"]
    if facet == "groups_exist":
        gids = {g["gid"] for g in groups}
        return ["%s (gid %s)" % (u["name"], u["gid"]) for u in users if u["gid"] not in gids]
    if facet == "shadow_group_empty":
        shadow_gids = {g["gid"] for g in groups if g["name"] == "shadow"}
        return sorted(set(m for g in groups if g["name"] == "shadow" for m in g["members"])
                      | {u["name"] for u in users if u["gid"] in shadow_gids})
    if facet == "unique_uids":
        return _duplicates(u["uid"] for u in users)
    if facet == "unique_gids":
        return _duplicates(g["gid"] for g in groups)
    if facet == "unique_user_names":
        return _duplicates(u["name"] for u in users)
    if facet == "unique_group_names":
        return _duplicates(g["name"] for g in groups)
    if facet == "group_empty":
        group = next((g for g in groups if g["name"] == check["group"]), None)
        if group is None:
            return ["%s does not exist" % check["group"]]
        return sorted(set(group["members"]) | {u["name"] for u in users if u["gid"] == group["gid"]})
    if facet == "system_no_shell":
        return [u["name"] for u in users if (_int(u["uid"], 0) < view["uid_min"] or u["uid"] == "65534")
                and u["name"] not in SYSTEM_SHELL_EXCEPTIONS and u["shell"] not in NOLOGIN_SHELLS]
    if summary is None:
        return None
    if facet == "root_access":
        state = (shadow.get("root") or {}).get("password")
        return [] if state in ("password", "locked") else ["root (%s)" % (state or "no shadow entry")]
    if facet == "no_empty_password":
        return [name for name, r in shadow.items() if r["password"] == "empty"]
    if facet == "no_shell_locked":
        valid = set(view["shells"])
        return [u["name"] for u in users if u["name"] != "root" and u["shell"] not in valid
                and (shadow.get(u["name"]) or {}).get("password") == "password"]
    with_password = [r for r in shadow.values() if r["password"] == "password"]
    if facet == "password_max_days":
        limit = int(check["max"])
        return [r["name"] for r in with_password if not (0 < _int(r["max"], -1) <= limit)]
    if facet == "password_warn_days":
        return [r["name"] for r in with_password if _int(r["warn"], -1) < int(check["min"])]
    if facet == "password_inactive":
        return [r["name"] for r in with_password if not (0 <= _int(r["inactive"], -1) <= int(check["max"]))]
    if facet == "last_change_past":
        today = _int(((summary.get("today") or [{}])[0]).get("days"))
        return [r["name"] for r in with_password if today is not None and _int(r["lastchg"], 0) > today]
    if facet == "root_path":
        bad = []
        for entry in summary.get("rootpath", []):
            directory = entry["dir"]
            if directory in ("", "."):
                bad.append("'%s' (empty or current directory)" % directory)
            elif entry["type"] != "directory":
                bad.append("%s (%s)" % (directory, entry["type"] or "missing"))
            elif entry["owner"] != "root" or octal(entry["mode"]) & 0o022:
                bad.append("%s (owner %s, mode %s)" % (directory, entry["owner"], entry["mode"]))
        return bad
    if facet == "home_dirs":
        homes = {h["path"]: h for h in summary.get("home", [])}
        bad = []
        for user in interactive_users(view):
            home = homes.get(user["home"])
            if not home or home["type"] != "directory":
                bad.append("%s: %s does not exist" % (user["name"], user["home"]))
            elif home["owner"] != user["name"] or octal(home["mode"]) & 0o027:
                bad.append("%s: %s owner %s mode %s" % (user["name"], home["path"], home["owner"], home["mode"]))
        return bad
    if facet == "dot_files":
        bad = []
        for entry in summary.get("dotfile", []):
            name = posixpath.basename(entry["path"])
            mode = octal(entry["mode"])
            if name in (".forward", ".rhosts", ".netrc"):
                bad.append("%s exists" % entry["path"])
            elif name == ".bash_history" and mode & 0o177:
                bad.append("%s mode %s" % (entry["path"], entry["mode"]))
            elif mode & 0o022 or entry["owner"] != entry["user"]:
                bad.append("%s owner %s mode %s" % (entry["path"], entry["owner"], entry["mode"]))
        return bad
    raise ValueError("unknown accounts facet %r" % facet)


def _check_accounts(check, obs):
    view = accounts_view(obs)
    findings = account_findings(check, view)
    if findings is None:
        return "error", {}, "the account summary did not run"
    return ("fail" if findings else "pass"), {"found": findings[:20], "count": len(findings)}, \
        ("%s: %s" % (check.get("says", check["facet"].replace("_", " ")), ", ".join(findings[:10]))) if findings else ""


def _check_any_of(check, obs):
    results = [evaluate_check(sub, obs) for sub in check["checks"]]
    observed = [{"type": sub["type"], "status": r[0], "observed": r[1]} for sub, r in zip(check["checks"], results)]
    if any(r[0] == "pass" for r in results):
        return "pass", observed, ""
    if all(r[0] == "error" for r in results):
        return "error", observed, "; ".join(r[2] for r in results)
    return "fail", observed, " and ".join(r[2] for r in results if r[2])


def _check_all_of(check, obs):
    results = [evaluate_check(sub, obs) for sub in check["checks"]]
    observed = [{"type": sub["type"], "status": r[0], "observed": r[1]} for sub, r in zip(check["checks"], results)]
    statuses = [r[0] for r in results]
    message = "; ".join(r[2] for r in results if r[0] in ("fail", "error") and r[2])
    if "fail" in statuses:
        return "fail", observed, message
    if "error" in statuses:
        return "error", observed, message
    if all(s == "not_applicable" for s in statuses):
        return "not_applicable", observed, "; ".join(r[2] for r in results if r[2])
    return "pass", observed, ""


CHECKERS = {
    "sshd": _check_sshd, "sysctl": _check_sysctl, "key_value": _check_key_value, "settings": _check_settings,
    "file_lines": _check_file_lines, "file_regex": _check_file_regex, "file_content": _check_file_content,
    "modprobe": _check_modprobe, "file_mode": _check_file_mode, "packages_absent": _check_packages_absent,
    "packages_present": _check_packages_present, "service_enabled": _check_service_enabled,
    "service_disabled": _check_service_disabled, "find": _check_find, "mount": _check_mount,
    "time_sync": _check_time_sync, "pam": _check_pam, "sudoers": _check_sudoers, "accounts": _check_accounts,
    "any_of": _check_any_of, "all_of": _check_all_of,
}


def evaluate_check(check, obs):
    return CHECKERS[check["type"]](check, obs)


def expected_of(check):
    """What a check asks for, for the evidence's ``expected``."""
    kind = check["type"]
    if kind == "sshd":
        expected = {k: describe({"value": v, "compare": (check.get("compare") or {}).get(k, "eq")})
                    for k, v in (check.get("options") or {}).items()}
        if check.get("present_any"):
            expected["one of"] = list(check["present_any"])
        return expected
    if kind == "sysctl":
        return {k: norm(v) for k, v in check["settings"].items()}
    if kind == "key_value":
        return {check["key"]: describe(_key_value_spec(check)), "compare": check.get("compare", "eq")}
    if kind == "settings":
        return {k: describe(spec) for k, spec in (check.get("keys") or {}).items()}
    if kind == "file_lines":
        return {"lines": check["lines"]}
    if kind == "file_regex":
        return {"regex": check["regex"], "present": not check.get("absent")}
    if kind == "file_content":
        return {"path": check["path"], "not matching": check["forbid"]}
    if kind == "modprobe":
        return {m: {"disabled": True, "loaded": False} for m in check["modules"]}
    if kind == "file_mode":
        expected = {"owner": check["owner"], "group": check["group"], "max_mode": str(check["mode"])}
        if check.get("modes"):
            expected["max_mode_of"] = {k: str(v) for k, v in check["modes"].items()}
        if check.get("require"):
            expected["exists"] = as_list(check["require"])
        return expected
    if kind == "packages_absent":
        return {"absent": check["packages"]}
    if kind == "packages_present":
        return {"present": check["packages"]}
    if kind == "service_enabled":
        return {"enabled": _units(check)[0] if len(_units(check)) == 1 else {"any of": _units(check)}}
    if kind == "service_disabled":
        return {"not enabled": _units(check)}
    if kind == "mount":
        return {"path": check["path"], "separate": True} if check.get("separate") else \
            {"path": check["path"], "options": check.get("options")}
    if kind == "time_sync":
        return {"facet": check["facet"], "daemons": [d["name"] for d in check.get("daemons") or []]}
    if kind == "pam":
        return [{k: v for k, v in item.items() if k != "profile"} for item in check.get("require") or []]
    if kind == "sudoers":
        return {"defaults": {k: (describe(v) if isinstance(v, dict) else v) for k, v in (check.get("defaults") or {}).items()},
                "forbid": as_list(check.get("forbid"))}
    if kind == "accounts":
        return {"facet": check["facet"], "found": 0}
    if kind == "any_of":
        return {"any of": [expected_of(sub) for sub in check["checks"]]}
    if kind == "all_of":
        return {"all of": [expected_of(sub) for sub in check["checks"]]}
    return {"found": 0}
