# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side logic of the hardening role: plan, evaluate, summarise, render evidence.

The role's tasks only gather raw observations from the target (command output, stat results,
package facts); every decision — which controls run, what a waiver means, whether an observation
passes, what the score is — is made here, in plain Python, so it is the same in audit and enforce
mode, testable without a target, and never templated twice.
"""

from __future__ import annotations

import datetime
import fnmatch
import posixpath
import re
import shlex
from xml.sax.saxutils import escape, quoteattr

SEVERITIES = ["low", "medium", "high", "critical"]
STATUSES = ["pass", "fail", "fixed", "waived", "not_applicable", "error"]
WAIVER_FIELDS = ("id", "justification", "approver", "ticket", "expires")
EVIDENCE_SCHEMA = "https://changeops.example/schemas/checklist-evidence/v1"
CHECK_TYPES = ("sshd", "sysctl", "key_value", "file_lines", "file_regex", "modprobe", "file_mode",
               "packages_absent", "packages_present", "service_enabled", "find")

SYSCTL_DIRS = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"]
MODPROBE_GLOBS = ["/etc/modprobe.d/*.conf", "/run/modprobe.d/*.conf", "/usr/lib/modprobe.d/*.conf",
                  "/lib/modprobe.d/*.conf"]
DISABLED_INSTALL = re.compile(r"^install\s+(\S+)\s+(/usr)?/bin/(false|true)\s*$")


class HardeningError(Exception):
    """A problem a person must fix in their inventory (bad waiver, unknown toggle, bad catalogue)."""


# --------------------------------------------------------------------------- small helpers
def rule_variable(control_id):
    """``SSH-01`` -> ``hardening_rule_ssh_01``."""
    return "hardening_rule_" + re.sub(r"[^a-z0-9]+", "_", control_id.lower()).strip("_")


def version_tuple(text):
    match = re.search(r"(\d+)\.(\d+)", str(text or ""))
    return (int(match.group(1)), int(match.group(2))) if match else None


def openssh_version(ssh_v_output):
    """``OpenSSH_9.2p1 Debian-2, OpenSSL ...`` -> ``9.2`` (None when not OpenSSH)."""
    match = re.search(r"OpenSSH_(\d+\.\d+)", str(ssh_v_output or ""))
    return match.group(1) if match else None


def _norm(value):
    return " ".join(str(value).split())


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _parse_date(text):
    return datetime.datetime.strptime(str(text), "%Y-%m-%d").date()


# --------------------------------------------------------------------------- waivers
def validate_waivers(waivers, known_ids, today):
    """Normalise ``hardening_waivers``; raise HardeningError naming the entry, field and value."""
    if waivers in (None, ""):
        return {}
    if not isinstance(waivers, list):
        raise HardeningError("hardening_waivers must be a list of waivers, got %s" % type(waivers).__name__)
    result = {}
    for index, waiver in enumerate(waivers):
        where = "hardening_waivers[%d]" % index
        if not isinstance(waiver, dict):
            raise HardeningError("%s must be a mapping with %s, got %r" % (where, ", ".join(WAIVER_FIELDS), waiver))
        if waiver.get("id"):
            where += " (id %s)" % waiver.get("id")
        unknown = sorted(set(waiver) - set(WAIVER_FIELDS))
        if unknown:
            raise HardeningError("%s: unknown field(s) %s; a waiver has exactly %s"
                                 % (where, ", ".join(unknown), ", ".join(WAIVER_FIELDS)))
        for field in WAIVER_FIELDS:
            value = waiver.get(field)
            if value is None or not str(value).strip():
                raise HardeningError("%s: field '%s' is missing or empty (value %r); every waiver needs %s"
                                     % (where, field, value, ", ".join(WAIVER_FIELDS)))
        control_id = str(waiver["id"])
        if control_id not in known_ids:
            raise HardeningError("%s: field 'id' value %r is not a control of the catalogue" % (where, control_id))
        if control_id in result:
            raise HardeningError("%s: a second waiver for %s; keep one waiver per control" % (where, control_id))
        expires_text = waiver["expires"]
        if isinstance(expires_text, (datetime.date, datetime.datetime)):
            expires_text = expires_text.strftime("%Y-%m-%d")
        try:
            expires = _parse_date(expires_text)
        except ValueError:
            raise HardeningError("%s: field 'expires' value %r is not a date (YYYY-MM-DD)" % (where, waiver["expires"]))
        result[control_id] = {
            "id": control_id,
            "justification": str(waiver["justification"]),
            "approver": str(waiver["approver"]),
            "ticket": str(waiver["ticket"]),
            "expires": expires.isoformat(),
            # valid through the expiry date itself
            "expired": today > expires,
        }
    return result


# --------------------------------------------------------------------------- plan
def _keyword_for_version(keyword, aliases, version):
    for alias in aliases or []:
        if alias["keyword"] == keyword and version is not None and version < version_tuple(alias["before"]):
            return alias["use"]
    return keyword


def _resolve_control(control, family, crypto, aliases=None, version=None):
    resolved = dict(control)
    check = dict(control.get("check") or {})
    check.update(((control.get("family") or {}).get(family)) or {})
    if check.get("type") == "sshd":
        options = {}
        for keyword, expected in (check.get("options") or {}).items():
            keyword = _keyword_for_version(keyword, aliases, version)
            if expected == "@ssh_crypto":
                if not crypto:
                    expected = None
                else:
                    expected = ",".join(crypto[keyword])
            options[keyword] = expected
        check["options"] = options
    resolved["check"] = check
    resolved.pop("family", None)
    return resolved


def select_crypto(catalogue, ssh_version):
    version = version_tuple(ssh_version)
    if version is None:
        return None
    chosen = None
    for profile in catalogue.get("ssh_crypto") or []:
        if version_tuple(profile["min_version"]) <= version:
            if chosen is None or version_tuple(profile["min_version"]) > version_tuple(chosen["min_version"]):
                chosen = profile
    return chosen


def validate_catalogue(catalogue):
    if not isinstance(catalogue, dict) or not isinstance(catalogue.get("controls"), list):
        raise HardeningError("the hardening catalogue must be a mapping with a 'controls' list")
    seen = set()
    for index, control in enumerate(catalogue["controls"]):
        where = "catalogue controls[%d]" % index
        for field in ("id", "title", "severity", "level", "check", "remediation"):
            if field not in control:
                raise HardeningError("%s (id %s): field '%s' is missing" % (where, control.get("id"), field))
        if control["id"] in seen:
            raise HardeningError("%s: id %s is used twice" % (where, control["id"]))
        seen.add(control["id"])
        if control["severity"] not in SEVERITIES:
            raise HardeningError("%s (id %s): field 'severity' value %r is not one of %s"
                                 % (where, control["id"], control["severity"], ", ".join(SEVERITIES)))
        if control["check"].get("type") not in CHECK_TYPES:
            raise HardeningError("%s (id %s): field 'check.type' value %r is not one of %s"
                                 % (where, control["id"], control["check"].get("type"), ", ".join(CHECK_TYPES)))
        if control["remediation"] not in ("auto", "manual"):
            raise HardeningError("%s (id %s): field 'remediation' value %r is not auto or manual"
                                 % (where, control["id"], control["remediation"]))
        if control["remediation"] == "manual" and not str(control.get("fix") or "").strip():
            raise HardeningError("%s (id %s): field 'fix' is missing or empty; a manual control must say how to "
                                 "remediate it" % (where, control["id"]))
    return seen


def plan(catalogue, family, ssh_version=None, level=1, allow_disruptive=False, toggles=None, waivers=None,
         today=None, families=("Debian", "RedHat")):
    """Which controls run, which may be remediated, and the waiver that applies to each."""
    known = validate_catalogue(catalogue)
    today = _parse_date(today) if today else datetime.date.today()
    toggles = dict(toggles or {})
    by_variable = {rule_variable(cid): cid for cid in known}
    unknown = sorted(name for name in toggles if name not in by_variable)
    if unknown:
        raise HardeningError("unknown control toggle variable(s): %s (controls are %s..)"
                             % (", ".join(unknown), ", ".join(sorted(by_variable)[:3])))
    waivers = validate_waivers(waivers, known, today)
    crypto = select_crypto(catalogue, ssh_version)
    planned = []
    for control in catalogue["controls"]:
        item = _resolve_control(control, family, crypto, catalogue.get("ssh_keyword_aliases"),
                                version_tuple(ssh_version))
        variable = rule_variable(item["id"])
        toggle = toggles.get(variable)
        reason = None
        if family not in (item.get("families") or families):
            reason = "not for OS family %s" % family
        elif toggle is not None and not _truthy(toggle):
            reason = "disabled by %s" % variable
        elif toggle is None and int(item["level"]) > int(level):
            reason = "level %s control; hardening_level is %s" % (item["level"], level)
        item["selected"] = reason is None
        item["reason"] = reason
        item["toggle"] = variable
        item["waiver"] = waivers.get(item["id"])
        waived = bool(item["waiver"]) and not item["waiver"]["expired"]
        if not item["selected"]:
            item["remediate"], item["remediate_reason"] = False, reason
        elif item.get("remediation") != "auto":
            item["remediate"], item["remediate_reason"] = False, "manual fix: %s" % _norm(item["fix"])
        elif waived:
            item["remediate"], item["remediate_reason"] = False, "waived until %s" % item["waiver"]["expires"]
        elif item.get("disruptive") and not allow_disruptive:
            item["remediate"], item["remediate_reason"] = False, "disruptive; hardening_allow_disruptive is false"
        else:
            item["remediate"], item["remediate_reason"] = True, None
        if item["check"].get("type") == "sshd" and any(v is None for v in item["check"]["options"].values()):
            item["remediate"], item["remediate_reason"] = False, "OpenSSH version unknown: no crypto profile"
        planned.append(item)
    _check_one_owner(planned)
    return planned


def _settings_of(control):
    check = control["check"]
    kind = check.get("type")
    if kind in _OWN_FILE_KINDS:
        return {(kind, key) for key in _OWN_FILE_KINDS[kind][1](control)}
    if kind == "file_lines":
        return {("file", check["target"])}
    if kind == "key_value":
        return {("key_value", check["path"], str(check["key"]).lower())}
    return set()


def _check_one_owner(planned):
    """Every setting the role writes belongs to one control, so enforce can keep or change it on that control's terms."""
    owners = {}
    for control in planned:
        for setting in sorted(_settings_of(control)):
            if setting in owners:
                raise HardeningError("catalogue controls %s and %s both set %s; a setting must belong to one control "
                                     "(a waiver, toggle or disruptive flag of one would otherwise decide for the other)"
                                     % (owners[setting], control["id"], " ".join(setting)))
            owners[setting] = control["id"]


def _truthy(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y")


def managed(planned, check_type, results=None):
    """Controls of one check type that enforce mode may change.

    With ``results`` (the pre-remediation evaluation), only those that did not pass: for settings
    edited in place, so a compliant value written differently (a tab instead of a space) is left alone.
    """
    failing = None
    if results is not None:
        failing = {r["id"] for r in results if r.get("check_status") in ("fail", "error")}
    return [c for c in planned if c["remediate"] and c["check"]["type"] == check_type
            and (failing is None or c["id"] in failing)]


def service_fixes(planned, services_result, check_mode=False):
    """Units of the service_enabled controls enforce may enable, each marked ``deferred`` or not.

    ``services_result``: the pre-remediation ``systemctl is-enabled`` loop (empty stdout: no such
    unit). Under --check the packages enforce installs first are not installed, so their units do
    not exist yet and systemd_service would fail on them even in check mode: those are deferred,
    reported as would-be-enabled instead of asked about.
    """
    known = {r.get("item"): bool((r.get("stdout") or "").strip()) for r in (services_result or {}).get("results", [])}
    return [{"id": control["id"], "service": control["check"]["service"],
             "deferred": bool(check_mode) and not known.get(control["check"]["service"], False)}
            for control in managed(planned, "service_enabled")]


def sshd_settings(planned):
    settings = {}
    for control in managed(planned, "sshd"):
        settings.update(control["check"]["options"])
    return settings


def sysctl_settings(planned):
    settings = {}
    for control in managed(planned, "sysctl"):
        settings.update(control["check"]["settings"])
    return settings


def managed_files(planned):
    """target path -> lines, for the file_lines controls enforce mode writes.

    Every target belongs to one control (``plan`` refuses a catalogue where two share one), so a file is
    written only for its own control, when that control may be changed, and never for anybody else.
    """
    return [{"path": control["check"]["target"], "lines": list(control["check"]["lines"])}
            for control in sorted(managed(planned, "file_lines"), key=lambda c: c["check"]["target"])]


# --------------------------------------------------------------------------- files the role owns
# sshd uses the FIRST value it reads for a keyword, and the Debian/Ubuntu and RHEL 9 sshd_config start with
# `Include /etc/ssh/sshd_config.d/*.conf` (sorted by name): a drop-in named 00-... is read before any other
# setting, so it needs no change to the distribution's file. OpenSSH before 8.2 has no Include (EL 8):
# there the same lines go into a marked block at the top of sshd_config.
SSHD_MAIN = "/etc/ssh/sshd_config"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-changeops-hardening.conf"
SSHD_INCLUDE_SINCE = (8, 2)
SSHD_BLOCK_MARKER = "# {mark} changeops.itsm.hardening: read before everything below"
SYSCTL_FILE = "/etc/sysctl.d/60-changeops-hardening.conf"
MODPROBE_FILE = "/etc/modprobe.d/60-changeops-hardening.conf"
OWN_FILE_HEADER = ["# Managed by changeops.itsm.hardening. Enforce mode rewrites the settings of the controls it may",
                   "# change; the lines of every other control stay as they are. Change settings in the inventory."]
KEPT_HEADER = "# kept as found (not the setting of a catalogue control)"
SITE_HEADER = "# site options (hardening_ssh_extra_options)"
_SSHD_LINE = re.compile(r"\s*([^\s=]+)\s*(?:=\s*)?(.*?)\s*$")


def _directive(line):
    text = line.strip()
    return text if text and not text.startswith("#") else None


def _sshd_keyword(line):
    """(keyword lower-cased, arguments) of a directive line; ``Keyword=value`` counts as sshd reads it."""
    match = _SSHD_LINE.match(line)
    return (match.group(1).lower(), match.group(2)) if match else (line.strip().lower(), "")


def _sshd_key(line):
    return _sshd_keyword(line)[0]


def _sysctl_key(line):
    return line.partition("=")[0].strip().lstrip("-").replace("/", ".")


def _modprobe_key(line):
    words = line.split()
    return (words[1] if len(words) > 1 else words[0]).replace("-", "_")


def _render_sshd(control):
    return ["%s %s" % (keyword, value) for keyword, value in control["check"]["options"].items()]


def _render_sysctl(control):
    return ["%s = %s" % (key, value) for key, value in control["check"]["settings"].items()]


def _render_modprobe(control):
    lines = []
    for module in control["check"]["modules"]:
        lines += ["install %s /bin/false" % module, "blacklist %s" % module]
    return lines


# check type -> (key of a line, keys of a control, lines of a control)
_OWN_FILE_KINDS = {
    "sshd": (_sshd_key, lambda c: {k.lower() for k in c["check"]["options"]}, _render_sshd),
    "sysctl": (_sysctl_key, lambda c: {str(k) for k in c["check"]["settings"]}, _render_sysctl),
    "modprobe": (_modprobe_key, lambda c: {m.replace("-", "_") for m in c["check"]["modules"]}, _render_modprobe),
}


def _own_file_body(planned, check_type, current, site=None):
    """Lines of a file the role owns, and whether enforce has anything to write into it.

    ``current``: the file's lines now. Controls enforce may change get their catalogue lines; every other
    control (waived, disruptive without hardening_allow_disruptive, switched off, not selected, unresolved)
    keeps exactly the lines it has now, whether they pass or not, so "not remediated" never reverts a
    setting. Lines of no control are kept too; only ``site`` (sshd site options, rendered whole from
    hardening_ssh_extra_options) replaces the site section of the file.
    """
    key_of, keys_of, render = _OWN_FILE_KINDS[check_type]
    remediate = {c["id"] for c in managed(planned, check_type)}
    site = site or []
    found, found_site, in_site = [], [], False
    for line in current:
        text = line.strip()
        if text.startswith("#"):
            in_site = text == SITE_HEADER
        elif text:
            (found_site if in_site else found).append((key_of(text), text))
    superseded = {key for key, _line in site}
    body, claimed = [], set()
    for control in planned:
        if control["check"]["type"] != check_type:
            continue
        keys = keys_of(control)
        if control["id"] in remediate:
            lines = render(control)
        else:
            lines = [line for key, line in found if key in keys and key not in superseded]
        claimed |= keys
        if lines:
            body += ["# %s: %s" % (control["id"], control["title"])] + lines
    leftover = [line for key, line in found if key not in claimed and key not in superseded]
    if leftover:
        body += [KEPT_HEADER] + leftover
    if site:
        body += [SITE_HEADER] + [line for _key, line in site]
    return body, bool(remediate or site or found_site)


def _sshd_value(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(_sshd_value(v) for v in value)
    return str(value)


def sshd_site_options(planned, options):
    """``hardening_ssh_extra_options`` -> [(keyword, line)], refusing what would change a control's setting."""
    if options in (None, "", {}):
        return []
    if not isinstance(options, dict):
        raise HardeningError("hardening_ssh_extra_options must be a mapping of sshd keyword to value, got %r" % (options,))
    owners = {keyword.lower(): c["id"] for c in planned if c["check"]["type"] == "sshd" for keyword in c["check"]["options"]}
    site = []
    for keyword, value in options.items():
        where = "hardening_ssh_extra_options key %r" % (keyword,)
        name = str(keyword)
        if not re.match(r"^[A-Za-z][A-Za-z0-9]*$", name):
            raise HardeningError("%s is not an sshd keyword" % where)
        if name.lower() in ("match", "include"):
            raise HardeningError("%s: Match and Include cannot be site options (they would apply to the lines after "
                                 "them); put them in a file of your own under /etc/ssh/sshd_config.d/" % where)
        if name.lower() in owners:
            raise HardeningError("%s: %s is the setting of control %s; set it through that control (its "
                                 "hardening_ssh_* variable, a waiver or %s), not as a site option"
                                 % (where, name, owners[name.lower()], rule_variable(owners[name.lower()])))
        text = _sshd_value(value)
        if not text.strip() or "\n" in text or "\r" in text:
            raise HardeningError("%s: value %r must be one non-empty line" % (where, value))
        site.append((name.lower(), "%s %s" % (name, text)))
    return site


def _marked_block(lines, marker):
    begin, end = marker.format(mark="BEGIN"), marker.format(mark="END")
    stripped = [line.strip() for line in lines]
    if begin in stripped and end in stripped[stripped.index(begin):]:
        start = stripped.index(begin)
        return lines[start + 1:start + stripped[start:].index(end)], True
    return [], False


def _include_args(rest):
    try:
        return shlex.split(rest)
    except ValueError:
        return rest.split()


def sshd_reads_dropin_first(main_lines, files, dropin=SSHD_DROPIN):
    """True when the first directive of sshd_config is an Include that reads ``dropin`` before any other setting.

    ``files``: path -> lines of the sshd_config.d/*.conf files (what the role read). A pattern the role cannot
    see through (another directory, not ``*.conf``) counts as "maybe not first".
    """
    directory, name = posixpath.split(dropin)
    for line in main_lines:
        text = _directive(line)
        if text is None:
            continue
        keyword, arguments = _sshd_keyword(text)
        if keyword != "include":
            return False
        for pattern in _include_args(arguments):
            path = pattern if pattern.startswith("/") else posixpath.join("/etc/ssh", pattern)
            pattern_dir, pattern_name = posixpath.split(path)
            if pattern_dir != directory or not pattern_name.endswith(".conf"):
                return False
            names = {posixpath.basename(p) for p in files if posixpath.dirname(p) == directory}
            names = sorted(n for n in names | {name} if fnmatch.fnmatchcase(n, pattern_name))
            for other in names:
                if other == name:
                    return True
                if any(_directive(x) for x in files.get(posixpath.join(directory, other), [])):
                    return False
        return False
    return False


def owned_files(planned, files_result, ssh_version=None, sshd_options=None):
    """What enforce writes into the files the role owns: the sshd drop-in (or, before OpenSSH 8.2, a block at
    the top of sshd_config), the block that makes sshd read the drop-in first where sshd_config does not, and
    the role's sysctl.d and modprobe.d files. ``None`` for a file enforce leaves as it is.

    ``files_result``: the pre-remediation file read (registered ``grep -H`` output, or path -> lines).
    """
    files = files_result if isinstance(files_result, dict) and "stdout" not in files_result else \
        parse_grep_h((files_result or {}).get("stdout", ""))
    main = files.get(SSHD_MAIN, [])
    block, has_block = _marked_block(main, SSHD_BLOCK_MARKER)
    include = "Include %s" % SSHD_DROPIN
    current = files.get(SSHD_DROPIN, []) + [line for line in block if line.strip() != include]
    body, write = _own_file_body(planned, "sshd", current, sshd_site_options(planned, sshd_options))
    result = {"sshd_dropin": None, "sshd_main_block": None}
    version = version_tuple(ssh_version)
    if version is not None and version < SSHD_INCLUDE_SINCE:
        if write:
            result["sshd_main_block"] = {"path": SSHD_MAIN, "marker": SSHD_BLOCK_MARKER, "lines": body}
    elif write:
        result["sshd_dropin"] = {"path": SSHD_DROPIN, "lines": OWN_FILE_HEADER + body}
        if (has_block and [line.strip() for line in block] != [include]) or not sshd_reads_dropin_first(main, files):
            result["sshd_main_block"] = {"path": SSHD_MAIN, "marker": SSHD_BLOCK_MARKER, "lines": [include]}
    for check_type, path in (("sysctl", SYSCTL_FILE), ("modprobe", MODPROBE_FILE)):
        body, write = _own_file_body(planned, check_type, files.get(path, []))
        result[check_type] = {"path": path, "lines": OWN_FILE_HEADER + body} if write else None
    return result


# --------------------------------------------------------------------------- observations
def parse_grep_h(stdout):
    """``grep -Hs '' FILES`` output -> {path: [lines]} (our globs never contain ':')."""
    files = {}
    for line in (stdout or "").splitlines():
        path, sep, content = line.partition(":")
        if sep:
            files.setdefault(path, []).append(content)
    return files


def _matching(files, patterns):
    return sorted(path for path in files if any(fnmatch.fnmatchcase(path, p) for p in _as_list(patterns)))


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
            values[key] = _norm(value)
    return values


def parse_sysctl_live(stdout):
    live = {}
    for line in (stdout or "").splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            live[parts[0]] = {"value": _norm(parts[1]), "access": parts[2]}
    return live


def parse_sshd_t(stdout):
    effective = {}
    for line in (stdout or "").splitlines():
        keyword, _sep, value = line.strip().partition(" ")
        if keyword:
            effective.setdefault(keyword.lower(), value.strip())
    return effective


# --------------------------------------------------------------------------- evaluation
def _check_sshd(check, obs):
    sshd = obs.get("sshd") or {}
    if sshd.get("rc") is None or sshd.get("missing"):
        return "not_applicable", {}, "sshd is not installed"
    if sshd.get("rc") != 0:
        return "error", {}, "sshd -T failed: %s" % _norm(sshd.get("stderr") or sshd.get("stdout") or "")[:300]
    effective = parse_sshd_t(sshd.get("stdout"))
    observed, bad = {}, []
    for keyword, expected in check["options"].items():
        actual = effective.get(keyword)
        observed[keyword] = actual
        if expected is None:
            bad.append("%s: no crypto profile for this OpenSSH version" % keyword)
        elif actual is None or actual.lower() != str(expected).lower():
            bad.append("%s is %s, expected %s" % (keyword, actual, expected))
    return ("fail" if bad else "pass"), observed, "; ".join(bad)


def _check_sysctl(check, obs):
    persisted = persisted_sysctls(obs.get("files") or {})
    live = obs.get("sysctl") or {}
    observed, bad, notes = {}, [], []
    for key, expected in check["settings"].items():
        expected = _norm(expected)
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


def _key_value(lines, key, separator):
    if separator == "equals":
        pattern = re.compile(r"^\s*%s\s*=\s*(.*?)\s*$" % re.escape(key), re.IGNORECASE)
    else:
        pattern = re.compile(r"^\s*%s\s+(\S+)" % re.escape(key))
    value = None
    for line in lines:
        match = pattern.match(line)
        if match and not line.lstrip().startswith("#"):
            value = match.group(1)
    return value


def _check_key_value(check, obs):
    files = obs.get("files") or {}
    path = check["path"]
    if path not in files:
        return "fail", {"path": path, check["key"]: None}, "%s does not exist" % path
    actual = _key_value(files[path], check["key"], check.get("separator", "space"))
    observed = {check["key"]: actual}
    expected = check["expected"]
    compare = check.get("compare", "eq")
    ok = False
    if actual is not None:
        try:
            if compare == "max":
                ok = int(actual) <= int(expected)
            elif compare == "min":
                ok = int(actual) >= int(expected)
            elif compare == "one_of":
                ok = actual.upper() in [str(a).upper() for a in check.get("accepted") or [expected]]
            else:
                ok = actual.lower() == str(expected).lower()
        except ValueError:
            ok = False
    words = {"max": "at most", "min": "at least", "one_of": "one of", "eq": ""}
    want = check.get("accepted") if compare == "one_of" else expected
    message = "" if ok else "%s %s is %s, expected %s %s" % (path, check["key"], actual, words[compare], want)
    return ("pass" if ok else "fail"), observed, _norm(message)


def _check_file_lines(check, obs):
    files = obs.get("files") or {}
    present = set()
    for path in _matching(files, check["paths"]):
        present.update(_norm(line) for line in files[path] if not line.lstrip().startswith("#"))
    missing = [line for line in check["lines"] if _norm(line) not in present]
    observed = {"missing_lines": missing, "files": _matching(files, check["paths"])}
    return ("fail" if missing else "pass"), observed, ("missing: %s" % "; ".join(missing)) if missing else ""


def _check_file_regex(check, obs):
    files = obs.get("files") or {}
    pattern = re.compile(check["regex"])
    hits = ["%s: %s" % (path, line) for path in _matching(files, check["paths"]) for line in files[path]
            if pattern.search(line)]
    return ("pass" if hits else "fail"), {"matches": hits[:10]}, "" if hits else "no line matches %s" % check["regex"]


def _check_modprobe(check, obs):
    files = obs.get("files") or {}
    disabled = set()
    for path in _matching(files, MODPROBE_GLOBS):
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


def _check_file_mode(check, obs):
    stats = obs.get("stat") or {}
    expected_mode = int(str(check["mode"]), 8)
    observed, bad = {}, []
    for path in check["paths"]:
        stat = stats.get(path) or {}
        if not stat.get("exists"):
            continue
        mode = int(str(stat["mode"]), 8)
        observed[path] = {"owner": stat.get("pw_name"), "group": stat.get("gr_name"), "mode": "%04o" % mode}
        if mode & ~expected_mode & 0o7777:
            bad.append("%s mode %04o is more permissive than %s" % (path, mode, check["mode"]))
        if stat.get("pw_name") != check["owner"]:
            bad.append("%s owner %s, expected %s" % (path, stat.get("pw_name"), check["owner"]))
        if stat.get("gr_name") != check["group"]:
            bad.append("%s group %s, expected %s" % (path, stat.get("gr_name"), check["group"]))
    if not observed:
        return "not_applicable", {}, "none of %s exists" % ", ".join(check["paths"])
    return ("fail" if bad else "pass"), observed, "; ".join(bad)


def _check_packages_absent(check, obs):
    installed = set(obs.get("packages") or [])
    found = [p for p in check["packages"] if p in installed]
    return ("fail" if found else "pass"), {"installed": found}, ("installed: %s" % ", ".join(found)) if found else ""


def _check_packages_present(check, obs):
    installed = set(obs.get("packages") or [])
    missing = [p for p in check["packages"] if p not in installed]
    return ("fail" if missing else "pass"), {"missing": missing}, ("not installed: %s" % ", ".join(missing)) if missing else ""


def _check_service_enabled(check, obs):
    state = (obs.get("services") or {}).get(check["service"])
    ok = state in ("enabled", "enabled-runtime", "static", "alias")
    return ("pass" if ok else "fail"), {"enabled": state}, "" if ok else "%s is %s" % (check["service"], state or "not found")


def _check_find(check, obs):
    found = (obs.get("find") or {}).get(check["kind"])
    if found is None:
        return "error", {}, "the %s search did not run" % check["kind"]
    return ("fail" if found else "pass"), {"count": len(found), "sample": found[:20]}, \
        ("%d found (first: %s)" % (len(found), ", ".join(found[:5]))) if found else ""


CHECKERS = {
    "sshd": _check_sshd, "sysctl": _check_sysctl, "key_value": _check_key_value, "file_lines": _check_file_lines,
    "file_regex": _check_file_regex, "modprobe": _check_modprobe, "file_mode": _check_file_mode,
    "packages_absent": _check_packages_absent, "packages_present": _check_packages_present,
    "service_enabled": _check_service_enabled, "find": _check_find,
}


def _expected(check):
    kind = check["type"]
    if kind == "sshd":
        return check["options"]
    if kind == "sysctl":
        return {k: _norm(v) for k, v in check["settings"].items()}
    if kind == "key_value":
        return {check["key"]: check.get("accepted") if check.get("compare") == "one_of" else check["expected"],
                "compare": check.get("compare", "eq")}
    if kind == "file_lines":
        return {"lines": check["lines"]}
    if kind == "file_regex":
        return {"regex": check["regex"]}
    if kind == "modprobe":
        return {m: {"disabled": True, "loaded": False} for m in check["modules"]}
    if kind == "file_mode":
        return {"owner": check["owner"], "group": check["group"], "max_mode": str(check["mode"])}
    if kind == "packages_absent":
        return {"absent": check["packages"]}
    if kind == "packages_present":
        return {"present": check["packages"]}
    if kind == "service_enabled":
        return {"enabled": check["service"]}
    return {"found": 0}


def normalise_observations(raw):
    """Turn the role's registered task results into what the checkers read."""
    obs = {"files": parse_grep_h((raw.get("files") or {}).get("stdout", ""))}
    sshd = raw.get("sshd") or {}
    obs["sshd"] = {"rc": sshd.get("rc"), "stdout": sshd.get("stdout", ""), "stderr": sshd.get("stderr", ""),
                   "missing": sshd.get("rc") == 127 or bool(sshd.get("skipped"))}
    obs["sysctl"] = parse_sysctl_live((raw.get("sysctl") or {}).get("stdout", ""))
    obs["stat"] = {}
    for result in (raw.get("stat") or {}).get("results", []):
        obs["stat"][result["item"]] = result.get("stat") or {}
    obs["packages"] = sorted((raw.get("packages") or {}).keys())
    obs["services"] = {}
    for result in (raw.get("services") or {}).get("results", []):
        obs["services"][result["item"]] = (result.get("stdout") or "").strip() or None
    obs["find"] = {}
    for result in (raw.get("find") or {}).get("results", []):
        if not result.get("skipped"):
            obs["find"][result["item"]] = [line for line in (result.get("stdout") or "").splitlines() if line]
    return obs


def evaluate(planned, raw_observations, before=None):
    """Per-control results. ``before``: results of the pre-remediation check (enforce) for ``fixed``."""
    obs = normalise_observations(raw_observations)
    previous = {r["id"]: r for r in (before or [])}
    results = []
    for control in planned:
        check = control["check"]
        result = {
            "id": control["id"], "title": control["title"], "severity": control["severity"],
            "level": control["level"], "disruptive": bool(control.get("disruptive")),
            "refs": control.get("refs") or {}, "remediation": control.get("remediation"),
            "expected": _expected(check), "observed": None, "message": "", "waiver": control.get("waiver"),
        }
        if not control["selected"]:
            result.update(status="not_applicable", check_status=None, message=control["reason"])
            results.append(result)
            continue
        try:
            status, observed, message = CHECKERS[check["type"]](check, obs)
        except (KeyError, TypeError, ValueError) as exc:
            status, observed, message = "error", None, "could not evaluate: %s: %s" % (type(exc).__name__, exc)
        result.update(check_status=status, observed=observed, message=message)
        waiver = control.get("waiver")
        if waiver and not waiver["expired"]:
            result["status"] = "waived"
            result["message"] = ("waived until %s by %s (%s): %s%s" % (
                waiver["expires"], waiver["approver"], waiver["ticket"], waiver["justification"],
                ("; check: " + message) if message else ""))
        else:
            if waiver:
                result["message"] = _norm("waiver expired on %s (%s); %s" % (waiver["expires"], waiver["ticket"], message))
            result["status"] = status
            if status == "pass" and previous.get(control["id"], {}).get("status") in ("fail", "error"):
                result["status"] = "fixed"
                result["message"] = "fixed in this run (was: %s)" % previous[control["id"]].get("message")
        if result["status"] in ("fail", "error") and not control["remediate"] and control.get("remediate_reason"):
            result["message"] = _norm("%s [not remediated: %s]" % (result["message"], control["remediate_reason"]))
        results.append(result)
    return results


def summarise(results, fail_severity="high"):
    if fail_severity not in SEVERITIES:
        raise HardeningError("hardening_fail_severity value %r is not one of %s" % (fail_severity, ", ".join(SEVERITIES)))
    counts = {status: 0 for status in STATUSES}
    for result in results:
        counts[result["status"]] += 1
    threshold = SEVERITIES.index(fail_severity)
    failing = [r for r in results if r["status"] in ("fail", "error")]
    blocking = [r["id"] for r in failing if SEVERITIES.index(r["severity"]) >= threshold]
    scored = counts["pass"] + counts["fixed"] + counts["fail"] + counts["error"]
    score = round(100.0 * (counts["pass"] + counts["fixed"]) / scored, 1) if scored else 100.0
    status = "fail" if blocking else ("warn" if failing else "pass")
    return {
        "status": status, "score": score, "counts": counts, "total": len(results),
        "fail_severity": fail_severity, "blocking_failures": blocking,
        "failures": [r["id"] for r in failing],
        "waived": [r["id"] for r in results if r["status"] == "waived"],
        "expired_waivers": [r["id"] for r in results if r.get("waiver") and r["waiver"]["expired"]],
    }


def evidence(host, catalogue, mode, results, summary, generated_at, check_mode=False, facts=None, settings=None):
    facts = facts or {}
    return {
        "$schema": EVIDENCE_SCHEMA,
        "checklist": "hardening",
        "host": host,
        "catalogue": {"name": catalogue.get("name"), "version": str(catalogue.get("version"))},
        "mode": mode,
        "check_mode": bool(check_mode),
        "generated_at": generated_at,
        "target": {k: facts.get(k) for k in ("os_family", "distribution", "distribution_version",
                                             "openssh_version", "container")},
        "settings": settings or {},
        "summary": summary,
        "controls": [{k: r.get(k) for k in ("id", "title", "severity", "level", "status", "check_status", "observed",
                                            "expected", "message", "refs", "waiver")} for r in results],
    }


def junit(document):
    """JUnit XML: one testsuite per host, one testcase per control."""
    summary = document["summary"]["counts"]
    host = document["host"]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<testsuites name=%s>' % quoteattr("hardening %s" % document["catalogue"]["version"]),
             '  <testsuite name=%s tests="%d" failures="%d" errors="%d" skipped="%d" timestamp=%s>' % (
                 quoteattr("hardening.%s" % host), len(document["controls"]), summary["fail"], summary["error"],
                 summary["waived"] + summary["not_applicable"], quoteattr(document["generated_at"])),
             '    <properties>',
             '      <property name="mode" value=%s/>' % quoteattr(document["mode"]),
             '      <property name="score" value=%s/>' % quoteattr(str(document["summary"]["score"])),
             '    </properties>']
    for control in document["controls"]:
        name = quoteattr("%s %s" % (control["id"], control["title"]))
        classname = quoteattr("hardening.%s.%s" % (host, control["id"].split("-")[0]))
        message = quoteattr(control.get("message") or "")
        body = escape("observed: %s\nexpected: %s" % (control.get("observed"), control.get("expected")))
        status = control["status"]
        if status == "fail":
            inner = '<failure message=%s type="%s">%s</failure>' % (message, control["severity"], body)
        elif status == "error":
            inner = '<error message=%s>%s</error>' % (message, body)
        elif status in ("waived", "not_applicable"):
            inner = '<skipped message=%s/>' % quoteattr("%s: %s" % (status, control.get("message") or ""))
        else:
            inner = '<system-out>%s</system-out>' % escape("%s: %s" % (status, control.get("message") or ""))
        lines.append('    <testcase name=%s classname=%s>%s</testcase>' % (name, classname, inner))
    lines += ['  </testsuite>', '</testsuites>', '']
    return "\n".join(lines)


def file_mode_fixes(planned, stat_results):
    """Owner/group/mode for every existing path of the file_mode controls enforce may change.

    The mode only ever loses bits (observed AND allowed), so a file that is already stricter
    than the catalogue asks (e.g. 0600 where 0644 is allowed) is left alone.
    """
    stats = {r["item"]: r.get("stat") or {} for r in (stat_results or {}).get("results", [])}
    fixes = []
    for control in managed(planned, "file_mode"):
        check = control["check"]
        allowed = int(str(check["mode"]), 8)
        for path in check["paths"]:
            stat = stats.get(path) or {}
            if not stat.get("exists"):
                continue
            mode = int(str(stat["mode"]), 8) & allowed
            fixes.append({"id": control["id"], "path": path, "owner": check["owner"], "group": check["group"],
                          "mode": "%04o" % mode})
    return fixes


def sysctl_live_fixes(planned, sysctl_result):
    """Kernel parameters to set now: writable here and different from the catalogue.

    Read-only ones (kernel.*, fs.* inside a container belong to the host kernel) are left to the
    persisted file and reported as not applied live.
    """
    live = parse_sysctl_live((sysctl_result or {}).get("stdout", ""))
    fixes = []
    for key, value in sorted(sysctl_settings(planned).items()):
        state = live.get(key)
        if state and state["access"] == "rw" and state["value"] != _norm(value):
            fixes.append({"key": key, "value": _norm(value)})
    return fixes


def find_argv(kind, exclude=None):
    """``find`` command line for the FS-04/FS-05 report (argv: no shell, no quoting issues)."""
    argv = ["find", "/", "-xdev"]
    for path in exclude or []:
        argv += ["-path", str(path), "-prune", "-o"]
    if kind == "world_writable":
        argv += ["-type", "f", "-perm", "-0002"]
    elif kind == "unowned":
        argv += ["(", "-nouser", "-o", "-nogroup", ")"]
    else:
        raise HardeningError("find check kind %r is not world_writable or unowned" % kind)
    return argv + ["-print"]
