# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The catalogue and the plan: which controls run, which enforce may change, and under which waiver."""

from __future__ import annotations

import datetime
import re

from ._common import (SEVERITIES, WAIVER_FIELDS, HardeningError, norm, parse_date, rule_variable, truthy,
                      version_tuple)

# check type -> what it judges (details: the header of roles/hardening/vars/catalogue.yml)
CHECK_TYPES = ("sshd", "sysctl", "key_value", "settings", "file_lines", "file_regex", "file_content", "modprobe",
               "file_mode", "packages_absent", "packages_present", "service_enabled", "service_disabled", "find",
               "mount", "time_sync", "pam", "sudoers", "accounts", "any_of", "all_of")
CIS_ID = re.compile(r"^\d+(\.\d+)+$")
CONTROL_ID = re.compile(r"^[A-Z]+-[0-9]+$")


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
            expires = parse_date(expires_text)
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


# --------------------------------------------------------------------------- catalogue
def _keyword_for_version(keyword, aliases, version):
    for alias in aliases or []:
        if alias["keyword"] == keyword and version is not None and version < version_tuple(alias["before"]):
            return alias["use"]
    return keyword


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


def _resolve_check(check, crypto, aliases, version):
    check = dict(check or {})
    if check.get("type") == "sshd":
        options = {}
        for keyword, expected in (check.get("options") or {}).items():
            keyword = _keyword_for_version(keyword, aliases, version)
            if expected == "@ssh_crypto":
                expected = ",".join(crypto[keyword]) if crypto else None
            options[keyword] = expected
        check["options"] = options
    if check.get("type") in ("any_of", "all_of"):
        check["checks"] = [_resolve_check(sub, crypto, aliases, version) for sub in check.get("checks") or []]
    return check


def _resolve_control(control, family, crypto, aliases=None, version=None):
    resolved = dict(control)
    check = dict(control.get("check") or {})
    check.update(((control.get("family") or {}).get(family)) or {})
    resolved["check"] = _resolve_check(check, crypto, aliases, version)
    resolved.pop("family", None)
    return resolved


def iter_checks(check):
    """A check and, for ``any_of`` and ``all_of``, every check inside it (what the gather step must observe)."""
    yield check
    for sub in check.get("checks") or [] if check.get("type") in ("any_of", "all_of") else []:
        yield from iter_checks(sub)


def validate_catalogue(catalogue):
    if not isinstance(catalogue, dict) or not isinstance(catalogue.get("controls"), list):
        raise HardeningError("the hardening catalogue must be a mapping with a 'controls' list")
    seen = set()
    for index, control in enumerate(catalogue["controls"]):
        where = "catalogue controls[%d]" % index
        for field in ("id", "title", "severity", "level", "check", "remediation"):
            if field not in control:
                raise HardeningError("%s (id %s): field '%s' is missing" % (where, control.get("id"), field))
        cid = control["id"]
        if not CONTROL_ID.match(str(cid)):
            raise HardeningError("%s: field 'id' value %r is not like SSH-01" % (where, cid))
        if cid in seen:
            raise HardeningError("%s: id %s is used twice" % (where, cid))
        seen.add(cid)
        where = "%s (id %s)" % (where, cid)
        if control["severity"] not in SEVERITIES:
            raise HardeningError("%s: field 'severity' value %r is not one of %s"
                                 % (where, control["severity"], ", ".join(SEVERITIES)))
        for check in iter_checks(control["check"]):
            if check.get("type") not in CHECK_TYPES:
                raise HardeningError("%s: field 'check.type' value %r is not one of %s"
                                     % (where, check.get("type"), ", ".join(CHECK_TYPES)))
        if control["remediation"] not in ("auto", "manual"):
            raise HardeningError("%s: field 'remediation' value %r is not auto or manual" % (where, control["remediation"]))
        if control["remediation"] == "manual" and not str(control.get("fix") or "").strip():
            raise HardeningError("%s: field 'fix' is missing or empty; a manual control must say how to "
                                 "remediate it" % where)
        cis = (control.get("refs") or {}).get("cis")
        if not isinstance(cis, list) or not all(CIS_ID.match(str(ref)) for ref in cis):
            raise HardeningError("%s: field 'refs.cis' value %r must be a list of CIS recommendation numbers "
                                 "(empty, with refs.cis_note, where the benchmark has none)" % (where, cis))
        if not cis and not str((control.get("refs") or {}).get("cis_note") or "").strip():
            raise HardeningError("%s: field 'refs.cis' is empty and 'refs.cis_note' does not say why" % where)
    return seen


def plan(catalogue, family, ssh_version=None, level=1, allow_disruptive=False, toggles=None, waivers=None,
         today=None, families=("Debian", "RedHat")):
    """Which controls run, which may be remediated, and the waiver that applies to each."""
    known = validate_catalogue(catalogue)
    today = parse_date(today) if today else datetime.date.today()
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
        elif toggle is not None and not truthy(toggle):
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
            item["remediate"], item["remediate_reason"] = False, "manual fix: %s" % norm(item["fix"])
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


# --------------------------------------------------------------------------- who owns which setting
def _settings_of(control):
    """The settings a control's remediation writes, as hashable keys (see _check_one_owner)."""
    from .enforce import OWN_FILE_KINDS, own_file_of  # local: enforce imports this module
    check = control["check"]
    kind = check.get("type")
    owned = set()
    if kind in OWN_FILE_KINDS:
        owned |= {(kind, own_file_of(control), key) for key in OWN_FILE_KINDS[kind][1](control)}
    if kind == "settings" and check.get("edit"):
        owned |= {("edit", check["edit"], str(key).lower()) for key in check.get("keys") or {}}
    if kind == "file_lines":
        owned.add(("file", check["target"]))
    if kind == "file_content":
        owned.add(("file", check["path"]))
    if kind == "key_value":
        owned.add(("edit", check["path"], str(check["key"]).lower()))
    if kind == "file_mode":
        owned |= {("mode", path) for path in check.get("paths") or []}
    if kind == "pam":
        owned |= {("pam-profile", (item.get("profile") or {}).get("name")) for item in check.get("require") or []
                  if (item.get("profile") or {}).get("content")}
    return owned


def _check_one_owner(planned):
    """Every setting the role writes belongs to one control, so enforce can keep or change it on that control's terms."""
    owners = {}
    for control in planned:
        for setting in sorted(_settings_of(control), key=lambda s: tuple(str(p) for p in s)):
            if setting in owners:
                raise HardeningError("catalogue controls %s and %s both set %s; a setting must belong to one control "
                                     "(a waiver, toggle or disruptive flag of one would otherwise decide for the other)"
                                     % (owners[setting], control["id"], " ".join(str(p) for p in setting)))
            owners[setting] = control["id"]


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
