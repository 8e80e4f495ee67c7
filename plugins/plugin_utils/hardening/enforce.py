# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What enforce mode writes, runs, installs and restarts, planned from the plan and the observations.

Only controls the plan marks ``remediate`` (selected, automatic, not waived, not disruptive unless allowed)
are changed. Settings edited in place, whole files that are not the role's own and commands are planned
only for controls that did not pass before (``before``), so a second run plans nothing. Files the role
owns (sshd drop-in, sysctl.d, modprobe.d, settings drop-ins, sudoers.d) are rewritten for the controls
enforce may change, and every other control keeps the lines it has in them.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex

from ._common import HardeningError, as_list, norm, octal, version_tuple
from .catalogue import iter_checks, managed
from .checks import ENABLED_STATES, account_findings, accounts_view, mode_for, time_daemons
from .observe import parse_grep_h, parse_sysctl_live

# sshd uses the FIRST value it reads for a keyword, and the Debian/Ubuntu and RHEL 9 sshd_config start with
# `Include /etc/ssh/sshd_config.d/*.conf` (sorted by name): a drop-in named 00-... is read before any other
# setting. OpenSSH before 8.2 has no Include (EL 8): there the settings go into a block at the top of sshd_config.
SSHD_MAIN = "/etc/ssh/sshd_config"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-changeops-hardening.conf"
SSHD_INCLUDE_SINCE = (8, 2)
SSHD_BLOCK_MARKER = "# {mark} changeops.itsm.hardening: read before everything below"
SSHD_SUPERSEDED = "# superseded by changeops.itsm.hardening (%s): "
SYSCTL_FILE = "/etc/sysctl.d/60-changeops-hardening.conf"
MODPROBE_FILE = "/etc/modprobe.d/60-changeops-hardening.conf"
OWN_FILE_HEADER = ["# Managed by changeops.itsm.hardening. Enforce mode rewrites the settings of the controls it may",
                   "# change; the lines of every other control stay as they are. Change settings in the inventory."]
KEPT_HEADER = "# kept as found (not the setting of a catalogue control)"
SITE_HEADER = "# site options (hardening_ssh_extra_options)"
_SSHD_LINE = re.compile(r"\s*([^\s=]+)\s*(?:=\s*)?(.*?)\s*$")
# handler (roles/hardening/handlers/main.yml) to notify when enforce changes a file below one of these prefixes
NOTIFY = [("/etc/ssh/", "Restart sshd"), ("/etc/audit/rules.d/", "Load audit rules"),
          ("/etc/systemd/journald.conf", "Restart journald"), ("/etc/rsyslog", "Restart rsyslog"),
          ("/etc/systemd/timesyncd.conf", "Restart the time daemon"), ("/etc/chrony/", "Restart the time daemon"),
          ("/etc/ntp", "Restart the time daemon")]


def notify_for(path):
    for prefix, handler in NOTIFY:
        if path.startswith(prefix):
            return handler
    return None


def _directive(line):
    text = line.strip()
    return text if text and not text.startswith("#") else None


def sshd_keyword(line):
    """(keyword lower-cased, arguments) of a directive line; ``Keyword=value`` counts as sshd reads it."""
    match = _SSHD_LINE.match(line)
    return (match.group(1).lower(), match.group(2)) if match else (line.strip().lower(), "")


# --------------------------------------------------------------------------- files the role owns
def _setting_key(line):
    text = line.strip()
    return re.split(r"[\s=]", text, 1)[0].lower()


def _render_setting(check, key, spec):
    if spec.get("flag"):
        return key
    value = spec.get("write", spec.get("value", spec.get("min", spec.get("max"))))
    separator = check.get("separator", "equals")
    if separator == "ini":
        return "%s=%s" % (key, value)
    if separator == "space":
        return "%s %s" % (key, value)
    return "%s = %s" % (key, value)


def _sudo_key(line):
    match = re.match(r"^\s*Defaults\s+!?([A-Za-z_]+)", line)
    return match.group(1) if match else line.strip()


def _render_sudo(control):
    lines = []
    for name, want in (control["check"].get("defaults") or {}).items():
        if want is True:
            lines.append("Defaults %s" % name)
        elif isinstance(want, dict):
            lines.append("Defaults %s=%s" % (name, want.get("write", want.get("value", want.get("max")))))
        else:
            lines.append("Defaults %s=%s" % (name, want))
    return lines


# check type -> (key of a line, keys of a control, lines of a control)
OWN_FILE_KINDS = {
    "sshd": (lambda line: sshd_keyword(line)[0], lambda c: {k.lower() for k in c["check"].get("options") or {}},
             lambda c: ["%s %s" % (k, v) for k, v in (c["check"].get("options") or {}).items()]),
    "sysctl": (lambda line: line.partition("=")[0].strip().lstrip("-").replace("/", "."),
               lambda c: {str(k) for k in c["check"]["settings"]},
               lambda c: ["%s = %s" % (k, v) for k, v in c["check"]["settings"].items()]),
    "modprobe": (lambda line: (line.split()[1] if len(line.split()) > 1 else line.split()[0]).replace("-", "_"),
                 lambda c: {m.replace("-", "_") for m in c["check"]["modules"]},
                 lambda c: [x for m in c["check"]["modules"] for x in ("install %s /bin/false" % m, "blacklist %s" % m)]),
    "settings": (_setting_key, lambda c: {k.lower() for k in c["check"].get("keys") or {}},
                 lambda c: [_render_setting(c["check"], k, s) for k, s in (c["check"].get("keys") or {}).items()]),
    "sudoers": (_sudo_key, lambda c: set(c["check"].get("defaults") or {}), _render_sudo),
}


def own_file_of(control):
    """The file of the role's own a control's remediation writes (None: it writes none)."""
    check = control["check"]
    kind = check.get("type")
    if kind == "sshd":
        return SSHD_DROPIN
    if kind == "sysctl":
        return SYSCTL_FILE
    if kind == "modprobe":
        return MODPROBE_FILE
    if kind in ("settings", "sudoers"):
        return check.get("target")
    return None


def _own_controls(planned, kind, path):
    return [c for c in planned if c["check"].get("type") == kind and own_file_of(c) == path]


def _own_file_body(planned, kind, path, current, site=None):
    """Lines of a file the role owns, and whether enforce has anything to write into it.

    ``current``: the file's lines now. Controls enforce may change get their catalogue lines; every other
    control (waived, disruptive without hardening_allow_disruptive, switched off, not selected, unresolved)
    keeps exactly the lines it has now, whether they pass or not, so "not remediated" never reverts a
    setting. Lines of no control are kept too; only ``site`` (sshd site options, rendered whole from
    hardening_ssh_extra_options) replaces the site section of the file.
    """
    key_of, keys_of, render = OWN_FILE_KINDS[kind]
    controls = _own_controls(planned, kind, path)
    remediate = {c["id"] for c in controls if c["remediate"]}
    headers = set()
    for control in controls:
        headers |= set(as_list(control["check"].get("header")))
    site = site or []
    found, found_site, in_site = [], [], False
    for line in current:
        text = line.strip()
        if text.startswith("#"):
            in_site = text == SITE_HEADER
        elif text and text not in headers:
            (found_site if in_site else found).append((key_of(text), text))
    superseded = {key for key, _line in site}
    body, claimed = [], set()
    for control in controls:
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
    return sorted(headers) + body, bool(remediate or site or found_site)


def _sshd_value(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(_sshd_value(v) for v in value)
    return str(value)


def sshd_site_options(planned, options):
    """``hardening_ssh_extra_options`` -> [(keyword, line)], refusing what would change a control's setting."""
    from .catalogue import rule_variable
    if options in (None, "", {}):
        return []
    if not isinstance(options, dict):
        raise HardeningError("hardening_ssh_extra_options must be a mapping of sshd keyword to value, got %r" % (options,))
    owners = {keyword.lower(): c["id"] for c in planned if c["check"]["type"] == "sshd"
              for keyword in list(c["check"].get("options") or {}) + as_list(c["check"].get("present_any"))
              if keyword in (c["check"].get("options") or {})}
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
    """(lines inside the marked block, index of BEGIN, index of END) or ([], None, None)."""
    begin, end = marker.format(mark="BEGIN"), marker.format(mark="END")
    stripped = [line.strip() for line in lines]
    if begin in stripped and end in stripped[stripped.index(begin):]:
        start = stripped.index(begin)
        stop = start + stripped[start:].index(end)
        return lines[start + 1:stop], start, stop
    return [], None, None


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
        keyword, arguments = sshd_keyword(text)
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


def _control_lines(body):
    """The control sections of an own-file body (their comments and lines), without site options or leftovers."""
    lines, keep = [], False
    for line in body:
        if line.startswith("# ") and re.match(r"^# [A-Z]+-\d+: ", line):
            keep = True
        elif line in (KEPT_HEADER, SITE_HEADER):
            keep = False
        if keep:
            lines.append(line)
    return lines


def _sshd_main(planned, main, block_lines):
    """sshd_config with the marked block at the top and, outside it and before any Match, the lines that set a
    keyword of a control enforce may change to another value commented out (the original kept after the marker),
    so a scanner that reads sshd_config alone sees one value per keyword: the one sshd uses."""
    _inside, start, stop = _marked_block(main, SSHD_BLOCK_MARKER)
    rest = main if start is None else main[:start] + main[stop + 1:]
    ours = {}
    for line in block_lines:
        text = _directive(line)
        if text:
            keyword, value = sshd_keyword(text)
            ours.setdefault(keyword, value)
    changeable = {k.lower(): c["id"] for c in managed(planned, "sshd") for k in c["check"].get("options") or {}}
    out, in_match = [], False
    for line in rest:
        text = _directive(line)
        if text:
            keyword, value = sshd_keyword(text)
            in_match = in_match or keyword == "match"
            if not in_match and keyword in changeable and keyword in ours and norm(value).lower() != norm(ours[keyword]).lower():
                out.append((SSHD_SUPERSEDED % changeable[keyword]) + line.strip())
                continue
        out.append(line)
    return ([SSHD_BLOCK_MARKER.format(mark="BEGIN")] + block_lines + [SSHD_BLOCK_MARKER.format(mark="END")] + out)


def _files(files_result):
    if isinstance(files_result, dict) and "stdout" not in files_result:
        return files_result
    return parse_grep_h((files_result or {}).get("stdout", ""))


def owned_files(planned, files_result, ssh_version=None, sshd_options=None):
    """What enforce writes into the files the role owns.

    ``sshd_dropin``: the drop-in (OpenSSH 8.2 and later); ``sshd_main``: the whole new sshd_config: a marked
    block at its top holding the same control settings as the drop-in (scanners read sshd_config alone), an
    Include of the drop-in in that block where sshd_config would not read it first, and superseded lines of
    controls enforce may change commented out; everything else in sshd_config byte for byte. Before OpenSSH 8.2
    the block holds the whole body and there is no drop-in. ``sysctl``, ``modprobe``: the role's files;
    ``dropins``: the settings and sudoers files of the catalogue's ``target``s. ``None`` for a file enforce
    leaves as it is.

    ``files_result``: the pre-remediation file read (registered ``grep -H`` output, or path -> lines).
    """
    files = _files(files_result)
    main = files.get(SSHD_MAIN, [])
    block, _start, _stop = _marked_block(main, SSHD_BLOCK_MARKER)
    include = "Include %s" % SSHD_DROPIN
    # the block mirrors the drop-in: a line in both is one setting (sshd reads the block first)
    current = []
    for line in [line for line in block if line.strip() != include] + files.get(SSHD_DROPIN, []):
        if not _directive(line) or line.strip() not in {x.strip() for x in current}:
            current.append(line)
    body, write = _own_file_body(planned, "sshd", SSHD_DROPIN, current, sshd_site_options(planned, sshd_options))
    result = {"sshd_dropin": None, "sshd_main": None, "dropins": []}
    version = version_tuple(ssh_version)
    if write:
        if version is not None and version < SSHD_INCLUDE_SINCE:
            block_lines = body
        else:
            result["sshd_dropin"] = {"path": SSHD_DROPIN, "lines": OWN_FILE_HEADER + body}
            block_lines = _control_lines(body)
            # judged on sshd_config as it will be (superseded lines commented out), so the next run decides the same
            rest = _sshd_main(planned, main, block_lines)[len(block_lines) + 2:]
            if not sshd_reads_dropin_first(rest, files):
                block_lines = block_lines + [include]
        new_main = _sshd_main(planned, main, block_lines)
        if new_main != main:
            result["sshd_main"] = {"path": SSHD_MAIN, "lines": new_main}
    for kind, path in (("sysctl", SYSCTL_FILE), ("modprobe", MODPROBE_FILE)):
        body, write = _own_file_body(planned, kind, path, files.get(path, []))
        result[kind] = {"path": path, "lines": OWN_FILE_HEADER + body} if write else None
    targets = []
    for control in planned:
        if control["check"].get("type") in ("settings", "sudoers") and own_file_of(control) \
                and (control["check"]["type"], own_file_of(control)) not in targets:
            targets.append((control["check"]["type"], own_file_of(control)))
    for kind, path in targets:
        body, write = _own_file_body(planned, kind, path, files.get(path, []))
        if write:
            owners = ", ".join(c["id"] for c in _own_controls(planned, kind, path))
            result["dropins"].append({"id": owners, "path": path, "lines": OWN_FILE_HEADER + body,
                                      "mode": "0440" if kind == "sudoers" else "0644",
                                      "validate": "/usr/sbin/visudo -cf %s" if kind == "sudoers" else None,
                                      "notify": notify_for(path)})
    return result


# --------------------------------------------------------------------------- what enforce may change now
def _failing_ids(before, planned=None, installing=()):
    """Controls that did not pass before remediation, and those that could not apply yet because a package this
    run installs was missing (``applies_if_installed``)."""
    failing = {r["id"] for r in before or [] if r.get("check_status") in ("fail", "error")}
    if planned is not None and installing:
        for control in planned:
            if set(as_list(control.get("applies_if_installed"))) & set(installing):
                failing.add(control["id"])
    return failing


def _fixable(planned, before, installing=()):
    failing = _failing_ids(before, planned, installing)
    return [c for c in planned if c["remediate"] and c["id"] in failing]


def _time_check(planned):
    for control in planned:
        if control["check"].get("type") == "time_sync":
            return control["check"]
    return None


def time_plan(planned, obs):
    """The time daemon enforce keeps (the one in use, else hardening_time_daemon), to install, enable or disable."""
    check = _time_check(planned)
    if not check:
        return None
    state = time_daemons(check, obs)
    enabled = [name for name, s in state.items() if s["enabled"]]
    preferred = check.get("preferred") or (check.get("daemons") or [{}])[0].get("name")
    keep = preferred if preferred in enabled or not enabled else enabled[0]
    if keep not in state:
        raise HardeningError("hardening_time_daemon value %r is not one of %s" % (keep, ", ".join(state)))
    daemon = next(d for d in check["daemons"] if d["name"] == keep)
    return {"keep": keep, "daemon": daemon, "installed": state[keep]["installed"],
            "disable": [unit for name in enabled if name != keep for unit, unit_state in state[name]["units"].items()
                        if unit_state in ENABLED_STATES]}


def packages(planned, obs, before=None):
    """{'install': [...], 'remove': [...]} for this run."""
    installed = set(obs.get("packages") or [])
    install, remove = [], []
    for control in planned:
        if not control["remediate"]:
            continue
        for check in iter_checks(control["check"]):
            if check["type"] == "packages_present":
                install += [p for p in check["packages"] if p not in installed]
            elif check["type"] == "packages_absent" and control["check"]["type"] != "any_of":
                remove += [p for p in check["packages"] if p in installed]
    time = time_plan(planned, obs)
    if time and any(c["remediate"] and c["check"].get("type") == "time_sync" and c["check"]["facet"] == "installed"
                    for c in planned) and not time["installed"]:
        install += as_list(time["daemon"].get("install") or time["daemon"].get("packages"))[:1]
    return {"install": _unique(install), "remove": _unique(remove)}


def service_fixes(planned, services_result, check_mode=False, obs=None):
    """Units to enable (each marked ``deferred`` under --check when its package is not installed yet) and to disable.

    ``services_result``: the pre-remediation unit states (registered result or parsed mapping).
    """
    from .observe import parse_units
    known = services_result if isinstance(services_result, dict) and "stdout" not in services_result \
        else parse_units((services_result or {}).get("stdout", ""))
    enable, disable = [], []
    for control in planned:
        if not control["remediate"]:
            continue
        check = control["check"]
        if check["type"] == "service_enabled":
            unit = as_list(check.get("service") or check.get("services"))[0]
            enable.append({"id": control["id"], "service": unit})
        elif check["type"] == "service_disabled":
            for unit in as_list(check.get("service")) + as_list(check.get("services")):
                if known.get(unit) not in (None, "disabled", "masked", "not-found"):
                    disable.append({"id": control["id"], "service": unit})
        elif check["type"] == "any_of":
            # the first alternative whose unit exists here (AIDE-03: the timer where aide-common has one)
            for sub in check["checks"]:
                if sub["type"] == "service_enabled" and any(known.get(u) is not None for u in as_list(sub.get("service"))):
                    enable.append({"id": control["id"], "service": as_list(sub.get("service"))[0]})
                    break
        elif check["type"] == "all_of":
            for sub in check["checks"]:
                if sub["type"] == "service_enabled":
                    enable.append({"id": control["id"], "service": as_list(sub.get("service") or sub.get("services"))[0]})
    time = time_plan(planned, dict(obs or {}, services=known)) if obs is not None else None
    time_control = next((c for c in planned if c["check"].get("type") == "time_sync"
                         and c["check"]["facet"] == "one_enabled" and c["remediate"]), None)
    if time and time_control:
        enable.append({"id": time_control["id"], "service": as_list(time["daemon"]["units"])[0]})
        disable += [{"id": time_control["id"], "service": unit} for unit in time["disable"]]
    for item in enable:
        item["deferred"] = bool(check_mode) and known.get(item["service"]) is None
    return {"enable": _dedupe(enable, "service"), "disable": _dedupe(disable, "service")}


def _dedupe(items, key):
    seen, out = set(), []
    for item in items:
        if item[key] not in seen:
            seen.add(item[key])
            out.append(item)
    return out


def _unique(items):
    return list(dict.fromkeys(items))


def sshd_settings(planned):
    settings = {}
    for control in managed(planned, "sshd"):
        settings.update(control["check"].get("options") or {})
    return settings


def sysctl_settings(planned):
    settings = {}
    for control in managed(planned, "sysctl"):
        settings.update(control["check"]["settings"])
    return settings


def managed_files(planned, before=None, installing=()):
    """Whole files enforce writes: file_lines targets (the control's own file, written whenever it may be
    changed), file_content files (banners: only when they failed, so a site's own compliant text stays) and
    pam-auth-update profiles of the role (when their module was missing)."""
    failing = _failing_ids(before, planned, installing) if before is not None else None
    files = []
    for control in planned:
        if not control["remediate"]:
            continue
        check = control["check"]
        if check["type"] == "file_lines":
            files.append({"id": control["id"], "path": check["target"], "content": "\n".join(
                ["# Managed by changeops.itsm.hardening: do not edit, changes are overwritten."] + list(check["lines"])) + "\n",
                "mode": check.get("target_mode", "0640" if check["target"].startswith("/etc/audit/") else "0644")})
        elif check["type"] == "file_content" and (failing is None or control["id"] in failing):
            files.append({"id": control["id"], "path": check["path"], "content": check["content"],
                          "mode": check.get("mode", "0644")})
        elif check["type"] == "pam" and (failing is None or control["id"] in failing):
            for item in check.get("require") or []:
                profile = item.get("profile") or {}
                if profile.get("content"):
                    files.append({"id": control["id"], "path": "/usr/share/pam-configs/" + profile["name"],
                                  "content": profile["content"], "mode": "0644"})
    for item in files:
        item["notify"] = notify_for(item["path"])
    return sorted(files, key=lambda f: f["path"])


def _edit_line(path, line, regexp=None, insertafter=None, control_id=None, create=False):
    return {"id": control_id, "path": path, "line": line, "regexp": regexp, "insertafter": insertafter,
            "create": bool(create), "notify": notify_for(path)}


def _key_line(check, key, value, flag=False):
    if flag:
        return key
    separator = check.get("separator", "space")
    if separator == "shell":
        return "%s=%s" % (key, value)
    if separator == "equals":
        return "%s = %s" % (key, value)
    return "%s %s" % (key, value)


def line_edits(planned, before, obs=None, time_servers=None, installing=()):
    """Lines enforce sets in files it does not own (lineinfile): key/value settings, settings edited in the main
    file, the catalogue's ``edits`` and the time sources of the daemon in use. Only for controls that failed."""
    edits = []
    for control in _fixable(planned, before, installing):
        check = control["check"]
        cid = control["id"]
        if check["type"] == "key_value":
            key = check["key"]
            regexp = r"^\s*#?\s*%s%s" % (re.escape(key), r"\s*=" if check.get("separator") in ("equals", "shell") else r"\s")
            edits.append(_edit_line(check["path"], _key_line(check, key, check.get("write", check.get("expected"))),
                                    regexp, control_id=cid))
        elif check["type"] == "settings" and check.get("edit"):
            for key, spec in (check.get("keys") or {}).items():
                value = spec.get("write", spec.get("value", spec.get("min", spec.get("max"))))
                regexp = r"^\s*#?\s*%s\s*(=|\s|$)" % re.escape(key)
                edits.append(_edit_line(check["edit"], _key_line(check, key, value, spec.get("flag")), regexp,
                                        control_id=cid))
        for edit in control.get("edits") or []:
            if "requires" in edit and not str(edit["requires"] or "").strip():
                continue
            edits.append(_edit_line(edit["path"], edit["line"], edit.get("regexp"), edit.get("insertafter"), cid,
                                    edit.get("create")))
    if obs is not None and time_servers:
        time = time_plan(planned, obs)
        fixable = {c["id"] for c in _fixable(planned, before, installing)}
        sources = next((c for c in planned if c["check"].get("type") == "time_sync"
                        and c["check"]["facet"] == "sources" and c["id"] in fixable), None)
        if time and sources and (time["daemon"].get("sources") or {}).get("edit"):
            edit = time["daemon"]["sources"]["edit"]
            candidates = as_list(edit.get("paths") or edit.get("path"))
            files = obs.get("files") or {}
            path = next((p for p in candidates if p in files), candidates[0])
            for server in time_servers:
                edits.append(_edit_line(path, edit["line"].replace("SERVER", server),
                                        r"^\s*(server|pool)\s+%s(\s|$)" % re.escape(server), control_id=sources["id"]))
    return edits


def time_source_files(planned, before, obs, time_servers, installing=()):
    """Drop-ins for time daemons configured that way (systemd-timesyncd: NTP= in timesyncd.conf.d)."""
    time = time_plan(planned, obs)
    fixable = {c["id"] for c in _fixable(planned, before, installing)}
    sources = next((c for c in planned if c["check"].get("type") == "time_sync"
                    and c["check"]["facet"] == "sources" and c["id"] in fixable), None)
    dropin = ((time or {}).get("daemon") or {}).get("sources", {}).get("dropin")
    if not (time and sources and dropin and time_servers):
        return []
    return [{"id": sources["id"], "path": dropin["path"], "mode": "0644", "notify": notify_for(dropin["path"]),
             "content": "\n".join(OWN_FILE_HEADER + as_list(dropin.get("header"))
                                  + [dropin["line"].replace("SERVERS", " ".join(time_servers))]) + "\n"}]


def _find_fix(check, exclude=None):
    """``find ... -exec chmod`` over what the search matches when it runs (at the end of enforce), so files that
    packages and commands of this run created (apt's and aideinit's logs) are fixed in the same run."""
    chmod = check.get("chmod")
    if not chmod:
        return []
    search = find_argv(check["kind"], exclude)[:-1]
    if isinstance(chmod, str):
        return [search + ["-exec", "chmod", chmod, "{}", "+"]]
    commands, others = [], []
    for pattern, mode in chmod.items():
        if pattern == "*":
            continue
        commands.append(search + ["-name", pattern, "-exec", "chmod", mode, "{}", "+"])
        others += ["!", "-name", pattern]
    if "*" in chmod:
        commands.append(search + others + ["-exec", "chmod", chmod["*"], "{}", "+"])
    return commands


ACCOUNT_FIXES = {
    "password_max_days": lambda check, user: ["chage", "--maxdays", str(check["max"]), user],
    "password_warn_days": lambda check, user: ["chage", "--warndays", str(check["min"]), user],
    "password_inactive": lambda check, user: ["chage", "--inactive", str(check["max"]), user],
    "system_no_shell": lambda check, user: ["usermod", "--shell", "/usr/sbin/nologin", user],
    "no_shell_locked": lambda check, user: ["usermod", "--lock", user],
}


def commands(planned, before, obs, installing=(), find_exclude=None):
    """argv lists enforce runs (after packages and files), each for one failing control, in catalogue order."""
    out = []
    for control in _fixable(planned, before, installing):
        check = control["check"]
        cid = control["id"]
        if check["type"] == "pam":
            # the control failed: (re)enable every profile it names, so pam-auth-update regenerates the common-*
            # files from the profiles as they are now (the role's own were rewritten with the current values)
            profiles = []
            for item in check.get("require") or []:
                name = (item.get("profile") or {}).get("name")
                if name and name not in profiles:
                    profiles.append(name)
            if check.get("unix_profile_remove"):
                out.append({"id": cid, "argv": ["pam-auth-update", "--package"], "order": 60})
            if profiles:
                out.append({"id": cid, "argv": ["pam-auth-update", "--enable"] + profiles, "order": 61})
        elif check["type"] == "accounts" and check["facet"] in ACCOUNT_FIXES:
            for user in account_findings(check, accounts_view(obs)) or []:
                out.append({"id": cid, "argv": ACCOUNT_FIXES[check["facet"]](check, user), "order": 70})
        elif check["type"] == "find":
            for argv in _find_fix(check, find_exclude):
                out.append({"id": cid, "argv": argv, "order": 95})
        for argv in control.get("commands") or []:
            out.append({"id": cid, "argv": [str(a) for a in argv["argv"]] if isinstance(argv, dict) else [str(a) for a in argv],
                        "order": argv.get("order", 50) if isinstance(argv, dict) else 50})
    order = {c["id"]: index for index, c in enumerate(planned)}
    return sorted(out, key=lambda c: (c["order"], order[c["id"]]))


def replacements(planned, before, installing=()):
    """In-place removals (ansible.builtin.replace): arguments taken out of pam-auth-update's unix profile."""
    out = []
    for control in _fixable(planned, before, installing):
        check = control["check"]
        if check["type"] == "pam" and check.get("unix_profile_remove"):
            words = "|".join(re.escape(w) for w in check["unix_profile_remove"])
            out.append({"id": control["id"], "path": check.get("unix_profile", "/usr/share/pam-configs/unix"),
                        "regexp": r"(pam_unix\.so[^\n]*?)[ \t]+(%s)\b" % words, "replace": r"\1"})
    return out


def file_mode_fixes(planned, stat_result):
    """Owner/group/mode for every existing path of the file_mode controls enforce may change, and the files
    they require created (empty). The mode only ever loses bits (observed AND allowed), so a file already
    stricter than the catalogue asks (0600 where 0644 is allowed) is left alone."""
    from .observe import parse_stat
    stats = parse_stat((stat_result or {}).get("stdout", "")) if isinstance(stat_result, dict) and "stdout" in stat_result \
        else dict(stat_result or {})
    fixes = []
    for control in managed(planned, "file_mode"):
        check = control["check"]
        owner, group = as_list(check["owner"])[0], as_list(check["group"])
        for pattern in as_list(check.get("paths")) + as_list(check.get("require")):
            existing = [p for p, s in sorted(stats.items()) if s.get("exists") and fnmatch.fnmatchcase(p, pattern)]
            if not existing and pattern in as_list(check.get("require")) and check.get("create_missing"):
                fixes.append({"id": control["id"], "path": pattern, "owner": owner, "group": group[-1],
                              "mode": "%04o" % octal(mode_for(check, pattern)), "state": "touch"})
            for path in existing:
                stat = stats[path]
                allowed = octal(mode_for(check, path))
                fixes.append({"id": control["id"], "path": path,
                              "owner": stat["pw_name"] if stat["pw_name"] in as_list(check["owner"]) else owner,
                              "group": stat["gr_name"] if stat["gr_name"] in group else group[0],
                              "mode": "%04o" % (octal(stat["mode"]) & allowed),
                              "state": "directory" if stat.get("isdir") else "file"})
    return _dedupe(fixes, "path")


def sysctl_live_fixes(planned, sysctl_result):
    """Kernel parameters to set now: writable here and different from the catalogue.

    Read-only ones (kernel.*, fs.* inside a container belong to the host kernel) are left to the
    persisted file and reported as not applied live.
    """
    live = parse_sysctl_live((sysctl_result or {}).get("stdout", ""))
    fixes = []
    for key, value in sorted(sysctl_settings(planned).items()):
        state = live.get(key)
        if state and state["access"] == "rw" and state["value"] != norm(value):
            fixes.append({"key": key, "value": norm(value)})
    return fixes


_ROOT_WALK = {
    "world_writable": ["-type", "f", "-perm", "-0002"],
    "world_writable_dirs": ["-type", "d", "-perm", "-0002", "!", "-perm", "-1000"],
    "unowned": ["(", "-nouser", "-o", "-nogroup", ")"],
}


def find_commands(kinds, exclude=None):
    """The gather step's searches: one walk of / for every kind that needs it (GNU find's ',' evaluates each
    test on every file) and one of /var/log; each line printed is ``kind TAB path``."""
    kinds = list(kinds or [])
    unknown = [k for k in kinds if k not in _ROOT_WALK and k != "log_files"]
    if unknown:
        raise HardeningError("find check kind %r is not world_writable, world_writable_dirs, unowned or log_files"
                             % unknown[0])
    commands = []
    walk = [k for k in kinds if k in _ROOT_WALK]
    if walk:
        argv = ["find", "/", "-xdev"]
        for path in exclude or []:
            argv += ["-path", str(path), "-prune", "-o"]
        argv.append("(")
        for index, kind in enumerate(walk):
            argv += ([","] if index else []) + ["("] + _ROOT_WALK[kind] + ["-printf", kind + "\t%p\n", ")"]
        commands.append(argv + [")"])
    if "log_files" in kinds:
        commands.append(find_argv("log_files")[:-1] + ["-printf", "log_files\t%p\n"])
    return commands


def find_argv(kind, exclude=None):
    """``find`` command line for the file system searches (argv: no shell, no quoting issues)."""
    if kind == "log_files":
        # log files writable by their group or readable by others (the login records wtmp, btmp and lastlog
        # may be group-writable for utmp, and lastlog and wtmp world-readable, as Debian ships them)
        return ["find", "/var/log", "-xdev", "-type", "f", "(",
                "(", "-name", "wtmp*", "-o", "-name", "lastlog*", ")", "-perm", "/0113", "-o",
                "-name", "btmp*", "-perm", "/0117", "-o",
                "!", "-name", "wtmp*", "!", "-name", "lastlog*", "!", "-name", "btmp*", "-perm", "/0137",
                ")", "-print"]
    argv = ["find", "/", "-xdev"]
    for path in exclude or []:
        argv += ["-path", str(path), "-prune", "-o"]
    if kind == "world_writable":
        argv += ["-type", "f", "-perm", "-0002"]
    elif kind == "world_writable_dirs":
        argv += ["-type", "d", "-perm", "-0002", "!", "-perm", "-1000"]
    elif kind == "unowned":
        argv += ["(", "-nouser", "-o", "-nogroup", ")"]
    else:
        raise HardeningError("find check kind %r is not world_writable, world_writable_dirs, unowned or log_files" % kind)
    return argv + ["-print"]


def enforce_plan(planned, raw, before, check_mode=False, ssh_version=None, sshd_options=None, time_servers=None,
                 find_exclude=None):
    """Everything enforce does in this run, in one mapping the tasks loop over."""
    from .observe import normalise_observations
    obs = normalise_observations(raw)
    pkgs = packages(planned, obs, before)
    installing = pkgs["install"]
    owned = owned_files(planned, raw.get("files") or {}, ssh_version=ssh_version, sshd_options=sshd_options)
    files = managed_files(planned, before, installing) + time_source_files(planned, before, obs, time_servers,
                                                                           installing)
    dirs = []
    for item in owned["dropins"] + files:
        parent = posixpath.dirname(item["path"])
        missing = (obs["stat"].get(parent) or {"exists": True}).get("exists") is False
        item["deferred"] = bool(check_mode and missing)
        if missing and not check_mode and parent not in dirs:
            dirs.append(parent)
    time = time_plan(planned, obs)
    return {
        "packages": pkgs,
        "services": service_fixes(planned, raw.get("services") or {}, check_mode, obs),
        "owned": owned,
        "dirs": dirs,
        "files": files,
        "edits": line_edits(planned, before, obs, time_servers, installing),
        "replacements": replacements(planned, before, installing),
        "modes": file_mode_fixes(planned, raw.get("stat") or {}),
        "commands": commands(planned, before, obs, installing, find_exclude),
        "sysctl_live": sysctl_live_fixes(planned, raw.get("sysctl") or {}),
        "time_unit": as_list(time["daemon"]["units"])[0] if time else "",
    }
