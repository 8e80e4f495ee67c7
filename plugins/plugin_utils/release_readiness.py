# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the changeops.itsm.release_readiness role (used through plugins/filter/release_readiness.py).

The role's tasks only read from the target (and the CMDB) and register what they saw. Everything
else happens here, on the controller, where it can be unit-tested: validating the checklist
(``plan``), turning raw observations into per-gate results with a sentence a person can act on
(``evaluate``), the summary, the evidence documents and JUnit.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from xml.sax.saxutils import escape, quoteattr

EVIDENCE_SCHEMA = "https://changeops.example/schemas/readiness-evidence-1.json"
CHECKLIST = "release_readiness"
STATUSES = ("pass", "fail", "skipped", "error")
TIERS = ("A", "B", "C")
# a gate of tier X is required for services of tier X and every more critical tier (A is the most critical)
TIER_RANK = {"C": 1, "B": 2, "A": 3}
CONTROLLER_TYPES = ("cmdb_service", "cmdb_relationships", "cmdb_host")
GATE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VERSION_OPERATORS = (">=", ">", "==", "!=", "<=", "<")
# a readiness probe only reads, and it runs from the target even under --check
HTTP_METHODS = ("GET", "HEAD")
CMDB_DEFAULTS = {"service_class": "service", "required_attributes": ["owner", "support_group", "environment"],
                 "relationship_types": [], "transitive": True}
BODY_EXCERPT = 300


class ReadinessError(Exception):
    """Bad checklist input; the message names the variable, the gate and the field."""


# ---------------------------------------------------------------------------------------- check types
# For every type: the fields it accepts with their defaults (REQUIRED = must be present), and the field
# that, when present but empty, means "not configured" (the default checklist leaves these empty).
REQUIRED = object()
CHECK_TYPES = {
    "service": {"fields": {"names": REQUIRED, "state": "running", "enabled": True}, "configured_by": "names"},
    "port": {"fields": {"ports": REQUIRED, "protocol": "tcp", "address": None}, "configured_by": "ports"},
    "http": {"fields": {"url": REQUIRED, "status": [200], "body": None, "body_regex": None, "timeout": 5,
                        "method": "GET", "headers": {}, "validate_certs": True, "ca_path": None,
                        "follow_redirects": "safe", "from": "target"}, "configured_by": "url"},
    "tls": {"fields": {"endpoint": None, "host": None, "port": 443, "server_name": None, "path": None,
                       "min_days": 30, "verify": True, "ca_path": None, "timeout": 5},
            "configured_by": ("endpoint", "host", "path")},
    "disk": {"fields": {"paths": REQUIRED, "min_free_percent": 10, "min_free_inodes_percent": None},
             "configured_by": "paths"},
    "package": {"fields": {"packages": REQUIRED}, "configured_by": "packages"},
    "file": {"fields": {"path": REQUIRED, "state": "present", "mode": None, "owner": None, "group": None,
                        "follow": False}, "configured_by": "path"},
    "command": {"fields": {"argv": None, "shell": None, "rc": 0, "stdout": None, "stdout_regex": None,
                           "timeout": 30}, "configured_by": ("argv", "shell")},
    "rollback": {"fields": {"path": REQUIRED, "patterns": ["*"], "min_count": 1, "file_type": "any"},
                 "configured_by": "path"},
    "reboot": {"fields": {}, "configured_by": None},
    "cmdb_service": {"fields": {"required_attributes": None, "ci_class": None}, "configured_by": None},
    "cmdb_relationships": {"fields": {"types": None, "transitive": None}, "configured_by": None},
    "cmdb_host": {"fields": {"statuses": ["operational"]}, "configured_by": None},
}
GATE_FIELDS = ("id", "title", "tier", "blocking", "owner", "category", "description", "remediation", "check")


def _empty(value):
    return value is None or value == "" or value == [] or value == {}


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _where(source, index, gate):
    gate_id = gate.get("id") if isinstance(gate, dict) else None
    return "%s[%d]%s" % (source, index, " (id %s)" % gate_id if gate_id else "")


def _merge(base, override):
    merged = dict(base)
    for key, value in override.items():
        if key == "check" and isinstance(value, dict) and isinstance(base.get("check"), dict):
            # a different type replaces the check; the same type only changes the given fields
            if value.get("type", base["check"].get("type")) == base["check"].get("type"):
                value = dict(base["check"], **value)
        merged[key] = value
    return merged


def _parse_date(text, where):
    try:
        return datetime.datetime.strptime(str(text), "%Y-%m-%d").date()
    except ValueError:
        raise ReadinessError("%s: field 'expires' must be a date YYYY-MM-DD, got %r" % (where, text))


def _normalise_check(check, where):
    if not isinstance(check, dict):
        raise ReadinessError("%s: field 'check' must be a mapping with a 'type', got %r" % (where, check))
    check_type = check.get("type")
    if check_type not in CHECK_TYPES:
        raise ReadinessError("%s: check.type %r is not one of %s" % (where, check_type, ", ".join(sorted(CHECK_TYPES))))
    spec = CHECK_TYPES[check_type]["fields"]
    unknown = sorted(set(check) - set(spec) - {"type"})
    if unknown:
        raise ReadinessError("%s: check type %s does not take %s (it takes %s)" % (
            where, check_type, ", ".join(unknown), ", ".join(sorted(spec)) or "no options"))
    normalised = {"type": check_type}
    for field, default in spec.items():
        if field in check:
            normalised[field] = check[field]
        elif default is REQUIRED:
            raise ReadinessError("%s: check.%s is required for a %s check" % (where, field, check_type))
        else:
            normalised[field] = default
    return normalised


def _int(value, where, field, minimum=None):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ReadinessError("%s: check.%s must be a whole number, got %r" % (where, field, value))
    if minimum is not None and number < minimum:
        raise ReadinessError("%s: check.%s must be at least %d, got %r" % (where, field, minimum, value))
    return number


def _number(value, where, field):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ReadinessError("%s: check.%s must be a number, got %r" % (where, field, value))


def _validate_check(check, where):
    """Type-specific validation and normalisation of a configured check."""
    kind = check["type"]
    if kind == "service":
        check["names"] = [str(n) for n in _as_list(check["names"])]
        if check["state"] not in ("running", "stopped", "any"):
            raise ReadinessError("%s: check.state must be running, stopped or any, got %r" % (where, check["state"]))
        if check["enabled"] not in (True, False, None):
            raise ReadinessError("%s: check.enabled must be true, false or null, got %r" % (where, check["enabled"]))
    elif kind == "port":
        check["ports"] = [_int(p, where, "ports", 1) for p in _as_list(check["ports"])]
        if check["protocol"] not in ("tcp", "udp"):
            raise ReadinessError("%s: check.protocol must be tcp or udp, got %r" % (where, check["protocol"]))
    elif kind == "http":
        if not re.match(r"^https?://", str(check["url"])):
            raise ReadinessError("%s: check.url must start with http:// or https://, got %r" % (where, check["url"]))
        check["status"] = [_int(s, where, "status", 100) for s in _as_list(check["status"])]
        check["timeout"] = _int(check["timeout"], where, "timeout", 1)
        method = str(check["method"] or "").upper()
        if method not in HTTP_METHODS:
            raise ReadinessError("%s: check.method must be GET or HEAD (a readiness probe only reads, also under "
                                 "--check), got %r" % (where, check["method"]))
        check["method"] = method
        if check["from"] not in ("target", "controller"):
            raise ReadinessError("%s: check.from must be target or controller, got %r" % (where, check["from"]))
        if check["body_regex"]:
            try:
                re.compile(check["body_regex"])
            except re.error as exc:
                raise ReadinessError("%s: check.body_regex %r is not a regular expression: %s" % (
                    where, check["body_regex"], exc))
    elif kind == "tls":
        if check["endpoint"]:
            host, _sep, port = str(check["endpoint"]).rpartition(":")
            if not host or not port.isdigit():
                raise ReadinessError("%s: check.endpoint must be host:port, got %r" % (where, check["endpoint"]))
            check["host"], check["port"] = host.strip("[]"), int(port)
        check["port"] = _int(check["port"], where, "port", 1)
        check["min_days"] = _int(check["min_days"], where, "min_days", 0)
        check["timeout"] = _int(check["timeout"], where, "timeout", 1)
        check["server_name"] = check["server_name"] or check["host"]
    elif kind == "disk":
        check["paths"] = [str(p) for p in _as_list(check["paths"])]
        check["min_free_percent"] = _number(check["min_free_percent"], where, "min_free_percent")
        if check["min_free_inodes_percent"] is not None:
            check["min_free_inodes_percent"] = _number(check["min_free_inodes_percent"], where,
                                                       "min_free_inodes_percent")
    elif kind == "package":
        packages = []
        for index, package in enumerate(_as_list(check["packages"])):
            if isinstance(package, str):
                package = {"name": package}
            if not isinstance(package, dict) or not package.get("name"):
                raise ReadinessError("%s: check.packages[%d] must be a name or {name, version, op, state}, got %r"
                                     % (where, index, package))
            extra = sorted(set(package) - {"name", "version", "op", "state"})
            if extra:
                raise ReadinessError("%s: check.packages[%d] does not take %s" % (where, index, ", ".join(extra)))
            op = package.get("op") or ">="
            if op not in VERSION_OPERATORS:
                raise ReadinessError("%s: check.packages[%d].op must be one of %s, got %r" % (
                    where, index, " ".join(VERSION_OPERATORS), op))
            state = package.get("state") or "present"
            if state not in ("present", "absent"):
                raise ReadinessError("%s: check.packages[%d].state must be present or absent, got %r" % (
                    where, index, state))
            packages.append({"name": str(package["name"]), "version": None if package.get("version") is None
                             else str(package["version"]), "op": op, "state": state})
        check["packages"] = packages
    elif kind == "file":
        if check["state"] not in ("present", "absent", "file", "directory"):
            raise ReadinessError("%s: check.state must be present, absent, file or directory, got %r" % (
                where, check["state"]))
        if check["mode"] is not None:
            mode = str(check["mode"])
            if not re.match(r"^0?[0-7]{3,4}$", mode):
                raise ReadinessError("%s: check.mode must be an octal string such as '0640', got %r" % (
                    where, check["mode"]))
            check["mode"] = "%04o" % int(mode, 8)
    elif kind == "command":
        if check["argv"] and check["shell"]:
            raise ReadinessError("%s: give check.argv or check.shell, not both" % where)
        check["rc"] = [_int(rc, where, "rc", 0) for rc in _as_list(check["rc"])]
        check["timeout"] = _int(check["timeout"], where, "timeout", 1)
        command = [str(a) for a in _as_list(check["argv"])] if check["argv"] else (
            ["/bin/sh", "-c", str(check["shell"])] if check["shell"] else [])
        # timeout(1) bounds a hanging probe; its exit status 124 is reported as a timeout
        check["exec_argv"] = ["timeout", str(check["timeout"])] + command if command else []
    elif kind == "rollback":
        check["patterns"] = [str(p) for p in _as_list(check["patterns"])] or ["*"]
        check["min_count"] = _int(check["min_count"], where, "min_count", 1)
        if check["file_type"] not in ("any", "file", "directory", "link"):
            raise ReadinessError("%s: check.file_type must be any, file, directory or link, got %r" % (
                where, check["file_type"]))
    elif kind == "cmdb_host":
        check["statuses"] = [str(s) for s in _as_list(check["statuses"])]
    return check


def _strings(value, where, field):
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in _as_list(value)):
        raise ReadinessError("%s: check.%s must be a list of names, got %r" % (where, field, value))
    return list(value)


def _cmdb_check(check, where, defaults):
    """The gate's own CMDB options, or the role-level defaults (release_readiness_cmdb_*) for those it leaves out."""
    kind = check["type"]
    if kind == "cmdb_service":
        if check["ci_class"] is None:
            check["ci_class"] = defaults["service_class"]
        elif not isinstance(check["ci_class"], str) or not check["ci_class"]:
            raise ReadinessError("%s: check.ci_class must be a CI class name, got %r" % (where, check["ci_class"]))
        check["required_attributes"] = (list(defaults["required_attributes"] or []) if check["required_attributes"] is None
                                        else _strings(check["required_attributes"], where, "required_attributes"))
    elif kind == "cmdb_relationships":
        check["types"] = (list(defaults["relationship_types"] or []) if check["types"] is None
                          else _strings(check["types"], where, "types"))
        if check["transitive"] is None:
            check["transitive"] = bool(defaults["transitive"])
        elif check["transitive"] not in (True, False):
            raise ReadinessError("%s: check.transitive must be true or false, got %r" % (where, check["transitive"]))
    return check


def _configured(check):
    configured_by = CHECK_TYPES[check["type"]]["configured_by"]
    if configured_by is None:
        return True, None
    fields = configured_by if isinstance(configured_by, tuple) else (configured_by,)
    if all(_empty(check.get(field)) for field in fields):
        return False, " / ".join("check.%s" % f for f in fields)
    return True, None


def plan(gates, extra_gates=None, overrides=None, skips=None, service_tier="A", today=None, unconfigured="skip",
         default_owner=None, cmdb_enabled=True, cmdb_defaults=None):
    """Validate the checklist and decide, per gate, whether it runs or why it is skipped.

    ``cmdb_defaults``: the role-level CMDB settings (keys of CMDB_DEFAULTS) that CMDB gates use for
    the options they do not set themselves.
    """
    cmdb_defaults = dict(CMDB_DEFAULTS, **(cmdb_defaults or {}))
    if str(service_tier) not in TIERS:
        raise ReadinessError("release_readiness_service_tier must be one of %s, got %r" % (", ".join(TIERS),
                                                                                           service_tier))
    if unconfigured not in ("skip", "error"):
        raise ReadinessError("release_readiness_unconfigured_gates must be skip or error, got %r" % unconfigured)
    today = datetime.date.today() if today is None else (
        today if isinstance(today, datetime.date) else _parse_date(today, "today"))
    collected = []
    for source, items in (("release_readiness_gates", gates), ("release_readiness_extra_gates", extra_gates)):
        if items is None:
            continue
        if not isinstance(items, list):
            raise ReadinessError("%s must be a list of gates, got %r" % (source, type(items).__name__))
        for index, gate in enumerate(items):
            collected.append((_where(source, index, gate), gate))

    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise ReadinessError("release_readiness_gate_overrides must be a mapping of gate id to fields, got %r"
                             % (overrides,))
    known = set()
    planned = []
    for where, gate in collected:
        if not isinstance(gate, dict):
            raise ReadinessError("%s: a gate must be a mapping, got %r" % (where, gate))
        gate_id = gate.get("id")
        if not gate_id or not GATE_ID.match(str(gate_id)):
            raise ReadinessError("%s: field 'id' must be a name such as GATE-HTTP-01, got %r" % (where, gate_id))
        if gate_id in known:
            raise ReadinessError("%s: id %s is used by more than one gate" % (where, gate_id))
        known.add(gate_id)
        if gate_id in overrides:
            if not isinstance(overrides[gate_id], dict):
                raise ReadinessError("release_readiness_gate_overrides[%s] must be a mapping, got %r"
                                     % (gate_id, overrides[gate_id]))
            gate = _merge(gate, overrides[gate_id])
            where += " with release_readiness_gate_overrides[%s]" % gate_id
        unknown = sorted(set(gate) - set(GATE_FIELDS))
        if unknown:
            raise ReadinessError("%s: unknown field(s) %s (a gate has %s)" % (where, ", ".join(unknown),
                                                                              ", ".join(GATE_FIELDS)))
        if _empty(gate.get("title")):
            raise ReadinessError("%s: field 'title' is required" % where)
        tier = str(gate.get("tier", "C"))
        if tier not in TIERS:
            raise ReadinessError("%s: field 'tier' must be one of %s, got %r" % (where, ", ".join(TIERS), tier))
        blocking = gate.get("blocking", True)
        if blocking not in (True, False):
            raise ReadinessError("%s: field 'blocking' must be true or false, got %r" % (where, blocking))
        owner = gate.get("owner") or default_owner
        if _empty(owner):
            raise ReadinessError("%s: field 'owner' is required (who fixes this gate when it fails)" % where)
        check = _normalise_check(gate.get("check"), where)
        entry = {
            "id": str(gate_id), "title": str(gate["title"]), "tier": tier, "blocking": blocking, "owner": str(owner),
            "category": gate.get("category") or check["type"], "description": gate.get("description"),
            "remediation": gate.get("remediation"), "type": check["type"], "run": False, "status": None,
            "message": None, "skip": None, "configured": False,
        }
        configured, missing = _configured(check)
        if configured:
            check = _cmdb_check(_validate_check(check, where), where, cmdb_defaults)
        entry.update(check=check, configured=configured)
        if TIER_RANK[tier] > TIER_RANK[str(service_tier)]:
            entry.update(status="skipped", message="tier %s gate; the service is tier %s" % (tier, service_tier))
        elif check["type"] in CONTROLLER_TYPES and not cmdb_enabled:
            entry.update(status="skipped", message="CMDB checks are off (release_readiness_cmdb_enabled: false)")
        elif not configured:
            if unconfigured == "error":
                entry.update(status="error", message="not configured: %s is empty" % missing)
            else:
                entry.update(status="skipped", message="not configured: %s is empty" % missing)
        else:
            entry["run"] = True
        planned.append(entry)

    unknown_overrides = sorted(set(overrides) - known)
    if unknown_overrides:
        raise ReadinessError("release_readiness_gate_overrides names unknown gate(s) %s (known: %s)" % (
            ", ".join(unknown_overrides), ", ".join(sorted(known))))
    by_id = {entry["id"]: entry for entry in planned}
    for index, skip in enumerate(skips or []):
        where = "release_readiness_skip_gates[%d]" % index
        if not isinstance(skip, dict):
            raise ReadinessError("%s must be a mapping {id, reason, approver, expires}, got %r" % (where, skip))
        extra = sorted(set(skip) - {"id", "reason", "approver", "expires", "ticket"})
        if extra:
            raise ReadinessError("%s: unknown field(s) %s" % (where, ", ".join(extra)))
        if skip.get("id") not in by_id:
            raise ReadinessError("%s: field 'id' %r is not a gate of the checklist (known: %s)" % (
                where, skip.get("id"), ", ".join(sorted(by_id))))
        where += " (id %s)" % skip["id"]
        if _empty(skip.get("reason")) or not str(skip["reason"]).strip():
            raise ReadinessError("%s: field 'reason' is required: a skipped gate must say why" % where)
        entry = by_id[skip["id"]]
        record = {"reason": str(skip["reason"]).strip(), "approver": skip.get("approver"),
                  "ticket": skip.get("ticket"), "expires": None if skip.get("expires") is None else str(skip["expires"]),
                  "expired": False}
        if record["expires"] is not None and _parse_date(record["expires"], where) < today:
            record["expired"] = True
            entry["skip"] = record
            continue  # the gate runs again; the result says the skip lapsed
        entry["skip"] = record
        if entry["status"] is None or entry["status"] == "error":
            entry.update(run=False, status="skipped", message="skipped: %s" % record["reason"]
                         + (" (approved by %s)" % record["approver"] if record["approver"] else ""))
    return planned


def gates_to_run(planned, check_type, where="target"):
    """The planned gates of one type that need probing (``where`` splits HTTP probes by origin)."""
    selected = [g for g in planned if g["run"] and g["type"] == check_type]
    if check_type == "http":
        selected = [g for g in selected if g["check"]["from"] == where]
    return selected


def packages_to_query(planned):
    names = []
    for gate in gates_to_run(planned, "package"):
        for package in gate["check"]["packages"]:
            if package["name"] not in names:
                names.append(package["name"])
    return names


# ------------------------------------------------------------------------------------- version compare
def _dpkg_order(char):
    if char == "~":
        return -1
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _dpkg_part(a, b):
    """dpkg's verrevcmp: alternating non-digit (with ~ sorting first) and numeric runs."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _dpkg_order(a[i]) if i < len(a) else 0
            bc = _dpkg_order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split_version(version):
    version = str(version).strip()
    epoch, _sep, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, _sep, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0), upstream, revision


def compare_versions(a, b):
    """Debian (dpkg) version ordering: negative, zero or positive. Also orders plain and RPM EVR strings."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return ea - eb
    return _dpkg_part(ua, ub) or _dpkg_part(ra, rb)


def version_matches(installed, op, required):
    cmp = compare_versions(installed, required)
    return {">=": cmp >= 0, ">": cmp > 0, "==": cmp == 0, "!=": cmp != 0, "<=": cmp <= 0, "<": cmp < 0}[op]


# ------------------------------------------------------------------------------------------ X.509 dates
def _der_read(data, offset):
    tag = data[offset]
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[offset:offset + count], "big")
        offset += count
    return tag, offset, length


def _der_children(data, offset, length):
    end = offset + length
    children = []
    while offset < end:
        tag, start, size = _der_read(data, offset)
        children.append((tag, start, size))
        offset = start + size
    return children


def _der_time(tag, raw):
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = ("20" if year < 50 else "19") + text
    return datetime.datetime.strptime(text.rstrip("Z")[:14], "%Y%m%d%H%M%S").replace(tzinfo=datetime.timezone.utc)


def certificate_validity(der):
    """(not_before, not_after) of a DER X.509 certificate: Certificate > TBSCertificate > Validity."""
    _tag, start, size = _der_read(der, 0)
    tbs_tag, tbs_start, tbs_size = _der_children(der, start, size)[0]
    fields = _der_children(der, tbs_start, tbs_size)
    if fields and fields[0][0] == 0xA0:  # explicit [0] version
        fields = fields[1:]
    _tag, validity_start, validity_size = fields[3]  # serialNumber, signature, issuer, validity
    times = _der_children(der, validity_start, validity_size)
    return tuple(_der_time(tag, der[s:s + n]) for tag, s, n in times[:2])


# ------------------------------------------------------------------------------------------- evaluation
def _loop_item(result):
    return result.get(result.get("ansible_loop_var") or "item")


def _results_by_id(registered):
    """{gate id: loop result} from a registered loop over gates (skipped/absent -> {})."""
    found = {}
    for result in (registered or {}).get("results", []) or []:
        item = _loop_item(result)
        if isinstance(item, dict) and item.get("id"):
            found[item["id"]] = result
    return found


def _msg(result):
    text = result.get("msg") or result.get("stderr") or result.get("module_stderr") or ""
    return " ".join(str(text).split())[:300]


def _check_service(gate, raw):
    facts = (raw.get("service") or {}).get("ansible_facts", {}).get("services")
    if facts is None:
        return "error", None, "service facts could not be gathered: %s" % (_msg(raw.get("service") or {}) or
                                                                           "no systemd/service manager answered")
    check = gate["check"]
    observed, problems = {}, []
    for name in check["names"]:
        unit = name if "." in name else name + ".service"
        fact = facts.get(unit) or facts.get(name)
        if fact is None:
            observed[name] = None
            problems.append("%s is not installed" % unit)
            continue
        observed[name] = {"state": fact.get("state"), "status": fact.get("status")}
        if check["state"] != "any" and fact.get("state") != check["state"]:
            problems.append("%s is %s, expected %s" % (unit, fact.get("state"), check["state"]))
        if check["enabled"] is not None:
            enabled = fact.get("status") in ("enabled", "static", "alias", "indirect", "enabled-runtime")
            if enabled != check["enabled"]:
                problems.append("%s is %s, expected %s" % (unit, fact.get("status"),
                                                           "enabled" if check["enabled"] else "disabled"))
    return ("fail" if problems else "pass"), observed, "; ".join(problems) or "%s %s%s" % (
        ", ".join(check["names"]), check["state"], " and enabled" if check["enabled"] else "")


def parse_proc_net(text, protocol):
    """Listening sockets from /proc/net/{tcp,udp}[6]: [(address, port)]."""
    listening = []
    for line in (text or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        local, state = fields[1], fields[3]
        if protocol == "tcp" and state != "0A":  # TCP_LISTEN
            continue
        if protocol == "udp" and state != "07":  # unconnected UDP socket
            continue
        address_hex, port_hex = local.split(":")
        raw = bytes.fromhex(address_hex)
        if len(raw) == 4:
            address = ".".join(str(b) for b in raw[::-1])
        else:
            # /proc stores IPv6 as four host-order 32-bit words
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
            groups = ["%x" % int.from_bytes(words[i:i + 2], "big") for i in range(0, 16, 2)]
            address = ":".join(groups)
            if address == "0:0:0:0:0:0:0:0":
                address = "::"
            elif address.startswith("0:0:0:0:0:ffff:"):
                address = ".".join(str(b) for b in words[12:])
        listening.append((address, int(port_hex, 16)))
    return listening


def _check_port(gate, raw):
    check = gate["check"]
    slurped = {}
    for result in (raw.get("port") or {}).get("results", []) or []:
        if result.get("content"):
            slurped[_loop_item(result)] = base64.b64decode(result["content"]).decode("ascii", "replace")
    files = ["/proc/net/%s" % check["protocol"], "/proc/net/%s6" % check["protocol"]]
    if not any(f in slurped for f in files):
        return "error", None, "could not read %s on the target" % " or ".join(files)
    listening = []
    for path in files:
        listening.extend(parse_proc_net(slurped.get(path), check["protocol"]))
    wanted_address = check["address"]
    observed, missing = {}, []
    for port in check["ports"]:
        addresses = sorted({a for a, p in listening if p == port})
        observed[str(port)] = addresses
        ok = bool(addresses) if not wanted_address else any(
            a in (wanted_address, "0.0.0.0", "::") for a in addresses)
        if not ok:
            missing.append(port)
    if missing:
        others = sorted({p for _a, p in listening})
        where = " on %s" % wanted_address if wanted_address else ""
        return "fail", observed, "nothing listens on %s port%s %s%s (listening: %s)" % (
            check["protocol"], "s" if len(missing) > 1 else "", ", ".join(str(p) for p in missing), where,
            ", ".join(str(p) for p in others) or "none")
    return "pass", observed, "%s port%s %s listening" % (check["protocol"], "s" if len(check["ports"]) > 1 else "",
                                                         ", ".join(str(p) for p in check["ports"]))


def _check_http(gate, result):
    check = gate["check"]
    url = check["url"]
    if not result:
        return "error", None, "%s was not probed" % url
    status = result.get("status")
    observed = {"status": status, "elapsed_s": result.get("elapsed"), "url": result.get("url") or url}
    if status in (None, -1) or (isinstance(status, int) and status < 100):
        return "fail", observed, "%s did not answer within %ss: %s" % (url, check["timeout"], _msg(result))
    body = result.get("content") or ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    observed["body_excerpt"] = body[:BODY_EXCERPT]
    expected = " or ".join(str(s) for s in check["status"])
    if status not in check["status"]:
        return "fail", observed, "%s returned %s, expected %s" % (url, status, expected)
    if check["body"] and str(check["body"]) not in body:
        return "fail", observed, "%s returned %s but the body does not contain %r" % (url, status, check["body"])
    if check["body_regex"] and not re.search(check["body_regex"], body):
        return "fail", observed, "%s returned %s but the body does not match /%s/" % (url, status,
                                                                                      check["body_regex"])
    return "pass", observed, "%s returned %s in %ss" % (url, status, result.get("elapsed"))


def _check_tls(gate, result, now):
    check = gate["check"]
    subject = check["path"] or "%s:%s" % (check["host"], check["port"])
    if not result:
        return "error", None, "%s was not probed" % subject
    try:
        probe = json.loads(result.get("stdout") or "")
    except ValueError:
        return "error", None, "the TLS probe of %s failed: %s" % (subject, _msg(result) or "no output")
    if probe.get("error"):
        return "fail", {"error": probe["error"]}, "could not read the certificate of %s: %s" % (subject,
                                                                                                probe["error"])
    try:
        not_before, not_after = certificate_validity(base64.b64decode(probe["der"]))
    except Exception as exc:  # a malformed certificate is a finding, not a crash of the role
        return "error", None, "the certificate of %s could not be parsed: %s" % (subject, exc)
    days_left = (not_after - now).total_seconds() / 86400.0
    observed = {"not_before": not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"), "days_left": round(days_left, 1),
                "verified": probe.get("verified"), "verify_error": probe.get("verify_error")}
    if not_before > now:
        return "fail", observed, "the certificate of %s is not valid before %s" % (subject, observed["not_before"])
    if days_left < check["min_days"]:
        state = "expired on" if days_left < 0 else "expires"
        return "fail", observed, "the certificate of %s %s %s (%d days left), expected at least %d days" % (
            subject, state, not_after.strftime("%Y-%m-%d"), int(days_left), check["min_days"])
    if check["verify"] and not check["path"] and not probe.get("verified"):
        return "fail", observed, "the certificate of %s does not verify: %s" % (subject, probe.get("verify_error"))
    return "pass", observed, "the certificate of %s is valid until %s (%d days)" % (
        subject, not_after.strftime("%Y-%m-%d"), int(days_left))


def parse_df(text):
    """Data lines of POSIX ``df -P`` output: [(filesystem, total, used, available, mount)]."""
    rows = []
    for line in (text or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6:
            rows.append((fields[0], fields[1], fields[2], fields[3], " ".join(fields[5:])))
    return rows


def _check_disk(gate, result):
    """Output of ``df -Pk PATHS; echo ---; df -Pi PATHS``: one line per path in each half."""
    check = gate["check"]
    if not result:
        return "error", None, "disk usage of %s was not read" % ", ".join(check["paths"])
    blocks_text, _sep, inodes_text = (result.get("stdout") or "").partition("\n---\n")
    blocks, inodes = parse_df(blocks_text), parse_df(inodes_text)
    if result.get("rc") not in (0, None) or len(blocks) != len(check["paths"]):
        return "error", None, "df %s failed: %s" % (" ".join(check["paths"]), _msg(result) or "no output")
    observed, problems = {}, []
    for index, path in enumerate(check["paths"]):
        _fs, _total, used, available, mount = blocks[index]
        used, available = int(used), int(available)
        free = round(100.0 * available / (used + available), 1) if used + available else 100.0
        observed[path] = {"mount": mount, "free_percent": free, "available_kib": available}
        if free < check["min_free_percent"]:
            problems.append("%s (mount %s) has %s%% free, expected at least %s%%" % (
                path, mount, free, _trim(check["min_free_percent"])))
        if check["min_free_inodes_percent"] is not None and index < len(inodes) and inodes[index][1].isdigit():
            total, free_inodes = int(inodes[index][1]), int(inodes[index][3])
            if total:
                free_inode_percent = round(100.0 * free_inodes / total, 1)
                observed[path]["free_inodes_percent"] = free_inode_percent
                if free_inode_percent < check["min_free_inodes_percent"]:
                    problems.append("%s has %s%% free inodes, expected at least %s%%" % (
                        path, free_inode_percent, _trim(check["min_free_inodes_percent"])))
    if problems:
        return "fail", observed, "; ".join(problems)
    return "pass", observed, "; ".join("%s %s%% free" % (p, o["free_percent"]) for p, o in observed.items())


def _trim(number):
    return ("%f" % number).rstrip("0").rstrip(".")


def parse_package_query(result):
    """{name: version} of installed packages from the role's dpkg-query / rpm output."""
    installed = {}
    for line in ((result or {}).get("stdout") or "").splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[2].strip().startswith("i"):
            installed[fields[0].split(":")[0]] = fields[1].strip()
        elif len(fields) == 2 and "is not installed" not in line:
            installed[fields[0]] = fields[1].strip()
    return installed


def _check_package(gate, result):
    check = gate["check"]
    if not result or result.get("stdout") is None:
        return "error", None, "the installed packages could not be read: %s" % _msg(result or {})
    installed = parse_package_query(result)
    observed, problems = {}, []
    for package in check["packages"]:
        version = installed.get(package["name"])
        observed[package["name"]] = version
        if package["state"] == "absent":
            if version is not None:
                problems.append("package %s %s is installed, expected absent" % (package["name"], version))
            continue
        if version is None:
            problems.append("package %s is not installed%s" % (package["name"], (
                ", expected %s %s" % (package["op"], package["version"])) if package["version"] else ""))
        elif package["version"] and not version_matches(version, package["op"], package["version"]):
            problems.append("package %s %s does not satisfy %s %s" % (package["name"], version, package["op"],
                                                                      package["version"]))
    if problems:
        return "fail", observed, "; ".join(problems)
    return "pass", observed, ", ".join("%s %s" % (n, v or "absent") for n, v in observed.items())


def _check_file(gate, result):
    check = gate["check"]
    path = check["path"]
    if not result or "stat" not in result:
        return "error", None, "%s could not be examined: %s" % (path, _msg(result or {}))
    stat = result["stat"]
    if not stat.get("exists"):
        if check["state"] == "absent":
            return "pass", {"exists": False}, "%s is absent" % path
        return "fail", {"exists": False}, "%s is missing, expected %s" % (path, "a directory" if check["state"] ==
                                                                          "directory" else "present")
    kind = "directory" if stat.get("isdir") else ("link" if stat.get("islnk") else "file")
    observed = {"exists": True, "type": kind, "mode": stat.get("mode"), "owner": stat.get("pw_name"),
                "group": stat.get("gr_name")}
    if check["state"] == "absent":
        return "fail", observed, "%s exists (%s), expected absent" % (path, kind)
    problems = []
    if check["state"] in ("file", "directory") and kind != check["state"]:
        problems.append("%s is a %s, expected a %s" % (path, kind, check["state"]))
    if check["mode"] and stat.get("mode") != check["mode"]:
        problems.append("%s has mode %s, expected %s" % (path, stat.get("mode"), check["mode"]))
    if check["owner"] and stat.get("pw_name") != check["owner"]:
        problems.append("%s is owned by %s, expected %s" % (path, stat.get("pw_name"), check["owner"]))
    if check["group"] and stat.get("gr_name") != check["group"]:
        problems.append("%s has group %s, expected %s" % (path, stat.get("gr_name"), check["group"]))
    if problems:
        return "fail", observed, "; ".join(problems)
    return "pass", observed, "%s present%s" % (path, " with mode %s" % stat.get("mode") if check["mode"] else "")


def _command_text(check):
    return str(check["shell"]) if check["shell"] else " ".join(str(a) for a in _as_list(check["argv"]))


def _check_command(gate, result):
    check = gate["check"]
    text = _command_text(check)
    if not result:
        return "error", None, "`%s` was not run" % text
    rc = result.get("rc")
    stdout = result.get("stdout") or ""
    observed = {"rc": rc, "stdout": stdout[-BODY_EXCERPT:], "stderr": (result.get("stderr") or "")[-BODY_EXCERPT:]}
    if rc is None:
        return "error", observed, "`%s` could not be run: %s" % (text, _msg(result))
    if rc == 124 and 124 not in check["rc"]:
        return "fail", observed, "`%s` did not finish within %ss" % (text, check["timeout"])
    if rc == 127 and 127 not in check["rc"]:
        return "error", observed, "`%s` could not be run: command not found" % text
    if rc not in check["rc"]:
        tail = " ".join((result.get("stderr") or stdout).split())[-200:]
        return "fail", observed, "`%s` exited %s, expected %s%s" % (
            text, rc, " or ".join(str(r) for r in check["rc"]), ": %s" % tail if tail else "")
    if check["stdout"] and str(check["stdout"]) not in stdout:
        return "fail", observed, "`%s` output does not contain %r" % (text, check["stdout"])
    if check["stdout_regex"] and not re.search(check["stdout_regex"], stdout, re.M):
        return "fail", observed, "`%s` output does not match /%s/" % (text, check["stdout_regex"])
    return "pass", observed, "`%s` exited %s" % (text, rc)


def _check_rollback(gate, result):
    check = gate["check"]
    if not result or "files" not in result:
        return "error", None, "%s could not be searched: %s" % (check["path"], _msg(result or {}))
    skipped = result.get("skipped_paths") or {}
    if check["path"] in skipped:
        return "fail", {"count": 0}, "%s cannot be searched (%s), expected at least %d rollback artefact%s" % (
            check["path"], skipped[check["path"]], check["min_count"], "s" if check["min_count"] > 1 else "")
    files = sorted(result.get("files") or [], key=lambda f: f.get("mtime") or 0, reverse=True)
    names = [f["path"].rsplit("/", 1)[-1] for f in files]
    observed = {"count": len(files), "newest": names[:5]}
    if len(files) < check["min_count"]:
        return "fail", observed, "%s has %d entr%s matching %s, expected at least %d" % (
            check["path"], len(files), "y" if len(files) == 1 else "ies", " ".join(check["patterns"]),
            check["min_count"])
    return "pass", observed, "%s has %d rollback artefact%s (newest %s)" % (
        check["path"], len(files), "" if len(files) == 1 else "s", names[0])


def _check_reboot(gate, raw, os_family):
    reboot = raw.get("reboot") or {}
    if os_family == "RedHat":
        result = reboot.get("needs_restarting") or {}
        rc = result.get("rc")
        if rc is None or rc not in (0, 1):
            return "error", None, "needs-restarting -r could not be run (install dnf-utils/yum-utils): %s" % (
                _msg(result))
        if rc == 1:
            return "fail", {"reboot_required": True}, "a reboot is pending: %s" % " ".join(
                (result.get("stdout") or "").split())[:200]
        return "pass", {"reboot_required": False}, "no reboot pending"
    stat = (reboot.get("flag") or {}).get("stat")
    if stat is None:
        return "error", None, "/run/reboot-required could not be examined: %s" % _msg(reboot.get("flag") or {})
    if stat.get("exists"):
        packages = []
        content = (reboot.get("packages") or {}).get("content")
        if content:
            packages = sorted(set(base64.b64decode(content).decode("utf-8", "replace").split()))
        return "fail", {"reboot_required": True, "packages": packages}, "a reboot is pending (/run/reboot-required%s)" % (
            "; packages: %s" % ", ".join(packages) if packages else "")
    return "pass", {"reboot_required": False}, "no reboot pending"


def _cmdb_error(result):
    return result.get("failed") or "configuration_items" not in result


def _check_cmdb_service(gate, cmdb, context):
    service = context.get("service")
    if not service:
        return "error", None, "release_readiness_service is not set: the CMDB gates need the service CI's name"
    # looked up per gate, with the gate's own ci_class
    lookup = _results_by_id(cmdb.get("service_gates")).get(gate["id"])
    if lookup is None:
        return "error", None, "service CI %r was not looked up for this gate" % service
    if _cmdb_error(lookup):
        return "error", None, "the CMDB could not be read: %s" % _msg(lookup)
    items = lookup["configuration_items"]
    ci_class = gate["check"]["ci_class"]
    if not items:
        return "fail", {"exists": False}, "service CI %r (class %s) does not exist in the CMDB" % (service, ci_class)
    if len(items) > 1:
        return "error", {"ci_ids": [ci["ci_id"] for ci in items]}, "%d CIs are named %r (class %s)" % (
            len(items), service, ci_class)
    ci = items[0]
    attributes = dict(ci.get("attributes") or {})
    required = gate["check"]["required_attributes"]
    observed = {"ci_id": ci["ci_id"], "class": ci.get("class"), "status": ci.get("status")}
    observed.update({attr: attributes.get(attr) for attr in required})
    missing = [attr for attr in required if _empty(attributes.get(attr))]
    if missing:
        return "fail", observed, "service CI %r has no %s" % (service, ", ".join(missing))
    return "pass", observed, "service CI %r has %s" % (service, ", ".join(
        "%s=%s" % (attr, attributes.get(attr)) for attr in required))


def _check_cmdb_relationships(gate, cmdb, context):
    service = context.get("service")
    host_ci = context.get("host_ci_name")
    if _cmdb_error(cmdb.get("service") or {}):
        return "error", None, "the CMDB could not be read: %s" % _msg(cmdb.get("service") or {})
    if not cmdb["service"]["configuration_items"]:
        return "fail", None, "service CI %r does not exist, so it has no relationship to host CI %r" % (service,
                                                                                                        host_ci)
    # looked up per gate: only relationships of the gate's types, followed transitively if it says so
    related = _results_by_id(cmdb.get("related_gates")).get(gate["id"])
    if related is None:
        return "error", None, "the relationships of service CI %r were not looked up for this gate" % service
    if _cmdb_error(related):
        return "error", None, "the relationships of service CI %r could not be read: %s" % (service, _msg(related))
    check = gate["check"]
    names = sorted({ci.get("name") for ci in related["configuration_items"]})
    observed = {"related": names[:50], "types": check["types"] or None, "transitive": check["transitive"]}
    scope = _relationship_scope(check)
    if host_ci not in names:
        return "fail", observed, "service CI %r has no relationship to host CI %r%s" % (service, host_ci, scope)
    return "pass", observed, "service CI %r is related to host CI %r%s" % (service, host_ci, scope)


def _relationship_scope(check):
    parts = []
    if check["types"]:
        parts.append("types %s" % ", ".join(check["types"]))
    if not check["transitive"]:
        parts.append("direct relationships only")
    return " (%s)" % "; ".join(parts) if parts else ""


def _check_cmdb_host(gate, cmdb, context):
    host_ci = context.get("host_ci_name")
    lookup = cmdb.get("hosts") or {}
    if _cmdb_error(lookup):
        return "error", None, "the CMDB could not be read: %s" % _msg(lookup)
    matches = [ci for ci in lookup["configuration_items"] if ci.get("name") == host_ci]
    if not matches:
        return "fail", {"exists": False}, "host CI %r does not exist in the CMDB" % host_ci
    statuses = gate["check"]["statuses"]
    ci = matches[0]
    observed = {"ci_id": ci["ci_id"], "status": ci.get("status"), "class": ci.get("class")}
    if ci.get("status") not in statuses:
        return "fail", observed, "host CI %r is %s, expected %s" % (host_ci, ci.get("status"), " or ".join(statuses))
    return "pass", observed, "host CI %r is %s" % (host_ci, ci.get("status"))


def _expected(gate):
    check = gate["check"]
    kind = gate["type"]
    if kind == "service":
        return "%s %s%s" % (", ".join(check["names"]), check["state"], {True: ", enabled", False: ", disabled",
                                                                        None: ""}[check["enabled"]])
    if kind == "port":
        return "%s %s listening%s" % (check["protocol"], ", ".join(str(p) for p in check["ports"]),
                                      " on %s" % check["address"] if check["address"] else "")
    if kind == "http":
        return "%s %s -> %s%s within %ss" % (check["method"], check["url"], " or ".join(str(s) for s in check["status"]),
                                             ", body contains %r" % check["body"] if check["body"] else "",
                                             check["timeout"])
    if kind == "tls":
        return "certificate of %s valid for at least %s days%s" % (
            check["path"] or "%s:%s" % (check["host"], check["port"]), check["min_days"],
            ", verified" if check["verify"] and not check["path"] else "")
    if kind == "disk":
        return "at least %s%% free on %s" % (_trim(check["min_free_percent"]), ", ".join(check["paths"]))
    if kind == "package":
        return ", ".join("%s %s" % (p["name"], "absent" if p["state"] == "absent" else (
            "%s %s" % (p["op"], p["version"]) if p["version"] else "installed")) for p in check["packages"])
    if kind == "file":
        return "%s %s%s" % (check["path"], check["state"], " mode %s" % check["mode"] if check["mode"] else "")
    if kind == "command":
        return "`%s` exits %s%s" % (_command_text(check), " or ".join(str(r) for r in check["rc"]),
                                    ", output contains %r" % check["stdout"] if check["stdout"] else "")
    if kind == "rollback":
        return "at least %d of %s in %s" % (check["min_count"], " ".join(check["patterns"]), check["path"])
    if kind == "reboot":
        return "no reboot pending"
    if kind == "cmdb_service":
        return "service CI of class %s exists%s" % (check["ci_class"], " with %s set" % ", ".join(
            check["required_attributes"]) if check["required_attributes"] else "")
    if kind == "cmdb_relationships":
        return "service CI related to this host's CI%s" % _relationship_scope(check)
    return "host CI %s" % " or ".join(check.get("statuses") or [])


def _now(value):
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    return datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def evaluate(planned, raw, context=None):
    """Per-gate results from the plan and what the role's tasks registered.

    ``raw`` keys: service, port, http_target, http_controller, tls, disk, package, file, command,
    rollback, reboot {flag, packages, needs_restarting}, cmdb {service (the service CI, role-level class),
    service_gates and related_gates (per-gate lookups, loops over the gates), hosts}, checked_at {type: time}.
    ``context``: host, service, host_ci_name, os_family, now.
    """
    context = context or {}
    raw = raw or {}
    now = _now(context.get("now") or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    checked_at = raw.get("checked_at") or {}
    per_id = {}
    for key in ("http_target", "http_controller", "tls", "disk", "file", "command", "rollback"):
        per_id.update(_results_by_id(raw.get(key)))
    cmdb = raw.get("cmdb") or {}
    results = []
    for gate in planned:
        result = {key: gate[key] for key in ("id", "title", "tier", "blocking", "owner", "category", "type")}
        # an unconfigured check was never normalised, so there is nothing meaningful to expect
        result.update(expected=_expected(gate) if gate["configured"] else None,
                      observed=None, skip=gate["skip"], remediation=gate.get("remediation"))
        if not gate["run"]:
            result.update(status=gate["status"], message=gate["message"], checked_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
            results.append(result)
            continue
        kind = gate["type"]
        try:
            if kind == "service":
                status, observed, message = _check_service(gate, raw)
            elif kind == "port":
                status, observed, message = _check_port(gate, raw)
            elif kind == "http":
                status, observed, message = _check_http(gate, per_id.get(gate["id"]))
            elif kind == "tls":
                status, observed, message = _check_tls(gate, per_id.get(gate["id"]), now)
            elif kind == "disk":
                status, observed, message = _check_disk(gate, per_id.get(gate["id"]))
            elif kind == "package":
                status, observed, message = _check_package(gate, raw.get("package"))
            elif kind == "file":
                status, observed, message = _check_file(gate, per_id.get(gate["id"]))
            elif kind == "command":
                status, observed, message = _check_command(gate, per_id.get(gate["id"]))
            elif kind == "rollback":
                status, observed, message = _check_rollback(gate, per_id.get(gate["id"]))
            elif kind == "reboot":
                status, observed, message = _check_reboot(gate, raw, context.get("os_family"))
            elif kind == "cmdb_service":
                status, observed, message = _check_cmdb_service(gate, cmdb, context)
            elif kind == "cmdb_relationships":
                status, observed, message = _check_cmdb_relationships(gate, cmdb, context)
            else:
                status, observed, message = _check_cmdb_host(gate, cmdb, context)
        except Exception as exc:  # one malformed observation must not hide the other gates' results
            status, observed, message = "error", None, "could not evaluate the %s check: %s: %s" % (
                kind, type(exc).__name__, exc)
        if gate["skip"] and gate["skip"]["expired"]:
            message = "%s [skip expired on %s]" % (message, gate["skip"]["expires"])
        http_from = gate["check"].get("from") if kind == "http" else None
        result.update(status=status, observed=observed, message=message,
                      checked_at=checked_at.get("http_controller" if http_from == "controller" else
                                                ("http_target" if kind == "http" else kind))
                      or now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        results.append(result)
    return results


def summarise(results):
    counts = {status: 0 for status in STATUSES}
    for result in results:
        counts[result["status"]] += 1
    blocking = [r for r in results if r["blocking"] and r["status"] in ("fail", "error")]
    advisory = [r for r in results if not r["blocking"] and r["status"] in ("fail", "error")]
    evaluated = counts["pass"] + counts["fail"] + counts["error"]
    score = round(100.0 * counts["pass"] / evaluated, 1) if evaluated else 100.0
    if blocking:
        status = "fail" if any(r["status"] == "fail" for r in blocking) else "error"
    else:
        status = "warn" if advisory else "pass"
    return {
        "status": status, "ready": not blocking, "score": score, "counts": counts, "total": len(results),
        "blocking_failures": ["%s %s" % (r["id"], r["message"]) for r in blocking],
        "advisory_failures": ["%s %s" % (r["id"], r["message"]) for r in advisory],
        "skipped": ["%s: %s" % (r["id"], r["message"]) for r in results if r["status"] == "skipped"],
    }


def _document_gates(results):
    keys = ("id", "title", "tier", "blocking", "owner", "category", "type", "status", "observed", "expected",
            "message", "checked_at", "skip", "remediation")
    return [{key: r.get(key) for key in keys} for r in results]


def host_evidence(host, results, summary, service, service_tier, generated_at, check_mode=False, host_ci_name=None):
    return {
        "$schema": EVIDENCE_SCHEMA, "checklist": CHECKLIST, "scope": "host", "host": host,
        "host_ci": host_ci_name or host, "service": service, "service_tier": service_tier,
        "generated_at": generated_at, "check_mode": bool(check_mode), "summary": summary,
        "gates": _document_gates(results),
    }


def service_evidence(service, service_tier, host_documents, missing_hosts, generated_at, check_mode=False,
                     service_ci_id=None):
    """One document for the service: every host's gates, plus hosts that dropped out of the play."""
    hosts = {}
    blocking, advisory = [], []
    counts = {status: 0 for status in STATUSES}
    for document in sorted(host_documents, key=lambda d: d["host"]):
        summary = document["summary"]
        hosts[document["host"]] = {"status": summary["status"], "ready": summary["ready"], "score": summary["score"],
                                   "counts": summary["counts"]}
        blocking.extend("%s: %s" % (document["host"], line) for line in summary["blocking_failures"])
        advisory.extend("%s: %s" % (document["host"], line) for line in summary["advisory_failures"])
        for status, count in summary["counts"].items():
            counts[status] += count
    for host in sorted(missing_hosts or []):
        hosts[host] = {"status": "error", "ready": False, "score": 0.0, "counts": None}
        blocking.append("%s: the host dropped out of the play (unreachable or failed) before its gates were checked"
                        % host)
    evaluated = counts["pass"] + counts["fail"] + counts["error"]
    ready = not blocking and bool(hosts)
    if not hosts:
        blocking.append("no host of the service was checked")
    status = "pass" if ready and not advisory else ("warn" if ready else (
        "fail" if any(h["status"] == "fail" for h in hosts.values()) else "error"))
    return {
        "$schema": EVIDENCE_SCHEMA, "checklist": CHECKLIST, "scope": "service", "service": service,
        "service_ci_id": service_ci_id, "service_tier": service_tier, "generated_at": generated_at,
        "check_mode": bool(check_mode),
        "summary": {"status": status, "ready": ready, "score": round(100.0 * counts["pass"] / evaluated, 1)
                    if evaluated else 100.0, "counts": counts, "hosts": len(hosts),
                    "blocking_failures": blocking, "advisory_failures": advisory},
        "hosts": hosts,
        "gates": {document["host"]: document["gates"] for document in host_documents},
    }


def _testcase(host, gate):
    name = quoteattr("%s %s" % (gate["id"], gate["title"]))
    classname = quoteattr("release_readiness.%s.%s" % (host, gate["category"]))
    message = quoteattr(gate.get("message") or "")
    body = escape("owner: %s\nblocking: %s\nobserved: %s\nexpected: %s" % (
        gate["owner"], gate["blocking"], gate.get("observed"), gate.get("expected")))
    status = gate["status"]
    if status == "fail" and gate["blocking"]:
        inner = '<failure message=%s type="blocking">%s</failure>' % (message, body)
    elif status == "error" and gate["blocking"]:
        inner = '<error message=%s>%s</error>' % (message, body)
    elif status == "skipped":
        inner = '<skipped message=%s/>' % message
    else:
        # advisory failures are reported but do not fail the suite
        prefix = "ADVISORY %s: " % status.upper() if status in ("fail", "error") else "pass: "
        inner = '<system-out>%s</system-out>' % escape(prefix + (gate.get("message") or ""))
    return '    <testcase name=%s classname=%s>%s</testcase>' % (name, classname, inner)


def junit(document):
    """JUnit XML: one testsuite per host, one testcase per gate; advisory failures are not failures."""
    per_host = document["gates"] if document["scope"] == "service" else {document["host"]: document["gates"]}
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<testsuites name=%s>' % quoteattr("release_readiness %s" % (document.get("service") or ""))]
    for host in sorted(per_host):
        gates = per_host[host]
        failures = sum(1 for g in gates if g["status"] == "fail" and g["blocking"])
        errors = sum(1 for g in gates if g["status"] == "error" and g["blocking"])
        skipped = sum(1 for g in gates if g["status"] == "skipped")
        lines.append('  <testsuite name=%s tests="%d" failures="%d" errors="%d" skipped="%d" timestamp=%s>' % (
            quoteattr("release_readiness.%s" % host), len(gates), failures, errors, skipped,
            quoteattr(document["generated_at"])))
        lines.extend(_testcase(host, gate) for gate in gates)
        lines.append('  </testsuite>')
    lines += ['</testsuites>', '']
    return "\n".join(lines)


def blocking_report(summary, host=None):
    """The list a person can act on, one line per blocking gate."""
    prefix = "%s: " % host if host else ""
    return "\n".join("%s%s" % (prefix, line) for line in summary["blocking_failures"])
