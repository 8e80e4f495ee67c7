# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change policy: schema, validation and evaluation against a change context.

A policy file (YAML, see ``docs/policy-schema.md``) holds standard change
templates (pre-authorised work described by JMESPath conditions over the
*change context* document), protected areas (authentication and access by
default) that only an approved normal change may touch, freeze windows and the
emergency policy. :func:`load_policy` validates a file completely and raises
one ``ValidationError`` naming the file, the path of the bad key, its line and
the value; nothing is evaluated from a policy that failed validation.

Evaluation is pure: :func:`evaluate_standard`, :func:`protected_areas_touched`
and :func:`freezes_in_force` take the policy, a change context and ``now``.
Compiled JMESPath expressions are shared between templates that use the same
text, and each distinct expression is evaluated once per context, so a policy
of many templates over a play of many hosts stays fast (see bench/gate_eval).
"""

from __future__ import annotations

import datetime
import fnmatch
import hashlib
import os
import re

try:
    import yaml
except ImportError:  # pragma: no cover - ansible-core always ships PyYAML on the controller
    yaml = None

try:
    import jmespath
    from jmespath import exceptions as jmespath_exceptions
except ImportError:
    jmespath = None
    jmespath_exceptions = None

try:
    import zoneinfo
except ImportError:  # Python < 3.9 on a managed host; the gate only runs on the controller
    zoneinfo = None

from ansible_collections.changeops.itsm.plugins.module_utils.authorisation.rules import (
    TOP_KEYS as RULE_KEYS,
    CHANGE_TYPES,
    AuthorisationRules,
    parse_rules,
)
from ansible_collections.changeops.itsm.plugins.module_utils.errors import MissingDependency, ValidationError
from ansible_collections.changeops.itsm.plugins.module_utils.intelligence.policy import (
    TOP_KEYS as INTELLIGENCE_KEYS,
    IntelligencePolicy,
    parse_intelligence,
)
# the built-in areas are a data catalogue of their own (re-exported: callers and docs tests read them here)
from ansible_collections.changeops.itsm.plugins.module_utils.protected_areas import (  # noqa: F401
    AREA_LISTS,
    DEFAULT_PROTECTED_AREAS,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# --------------------------------------------------------------------------
# YAML loading that remembers line numbers
# --------------------------------------------------------------------------
class _Mapping(dict):
    """A dict that remembers the line of each key, for error messages."""

    lines = None


class _Sequence(list):
    """A list that remembers the line of each item, for error messages."""

    lines = None


def _item_line(sequence, index, default):
    lines = getattr(sequence, "lines", None)
    return lines[index] if lines and index < len(lines) else default


if yaml is not None:
    # libyaml's parser where PyYAML has it: the gate parses the policy in force in every run (a forked worker keeps
    # nothing), and the pure-Python parser took about 6 ms of CPU for a policy of 20 templates, libyaml's about 1.
    # Only the parser differs: the resolvers and constructors below (key lines, duplicate keys) are the same.
    _SAFE_LOADER = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader

    class _PolicyLoader(_SAFE_LOADER):  # pylint: disable=too-many-ancestors
        """SafeLoader that keeps key lines, refuses duplicate keys, and reads 18:00 as a string.

        YAML 1.1 reads an unquoted 18:00 as the base-60 integer 1080; in a
        policy it is always a time of day, so the sexagesimal form is dropped.
        Dates and times are parsed by the validator, not by YAML.
        """

    _PolicyLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:int"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    # Dates stay strings so that an impossible one (2026-13-20) gets our error message naming the key.
    _PolicyLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _PolicyLoader.yaml_implicit_resolvers.items()
    }
    _PolicyLoader.add_implicit_resolver(
        "tag:yaml.org,2002:int",
        re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
        list("-+0123456789"))

    def _construct_mapping(loader, node, deep=False):
        mapping = _Mapping()
        mapping.lines = {}
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ValidationError("line %d: keys must be strings, got %r" % (key_node.start_mark.line + 1, key))
            if key in mapping:
                raise ValidationError("line %d: key %r appears twice in the same mapping"
                                      % (key_node.start_mark.line + 1, key))
            mapping[key] = loader.construct_object(value_node, deep=True)
            mapping.lines[key] = key_node.start_mark.line + 1
        return mapping

    _PolicyLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)

    def _construct_sequence(loader, node, deep=False):
        sequence = _Sequence(loader.construct_object(child, deep=True) for child in node.value)
        sequence.lines = [child.start_mark.line + 1 for child in node.value]
        return sequence

    _PolicyLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def _require(module, name):
    if module is None:
        raise MissingDependency("the change gate needs the Python library %s on the controller" % name)


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------
class _Checker(object):
    """Walks a loaded policy; every error names the file, the key path, its line and the value."""

    def __init__(self, origin):
        self.origin = origin

    def fail(self, path, message, value=None, line=None, show_value=True):
        where = self.origin
        if line:
            where += " line %d" % line
        text = "%s: %s: %s" % (where, path or "(top level)", message)
        if show_value:
            text += " (got %r)" % (value,)
        raise ValidationError(text, file=self.origin, path=path, line=line, value=_plain_value(value))

    @staticmethod
    def line_of(mapping, key):
        lines = getattr(mapping, "lines", None) or {}
        return lines.get(key)

    def mapping(self, value, path, allowed, required=(), line=None):
        if not isinstance(value, dict):
            self.fail(path, "must be a mapping", value, line)
        for key in value:
            if key not in allowed:
                self.fail(_join(path, key), "unknown key; expected one of %s" % ", ".join(sorted(allowed)),
                          value[key], self.line_of(value, key))
        for key in required:
            if key not in value:
                self.fail(path, "missing required key %r" % key, None, line, show_value=False)
        return value

    def string(self, value, path, line, allow_empty=False):
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            self.fail(path, "must be a non-empty string", value, line)
        return value

    def boolean(self, value, path, line):
        if not isinstance(value, bool):
            self.fail(path, "must be true or false", value, line)
        return value

    def integer(self, value, path, line, minimum=None):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, "must be an integer", value, line)
        if minimum is not None and value < minimum:
            self.fail(path, "must be at least %d" % minimum, value, line)
        return value

    def string_list(self, value, path, line, choices=None):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.fail(path, "must be a list of strings", value, line)
        for index, item in enumerate(value):
            item_path = "%s[%d]" % (path, index)
            self.string(item, item_path, line)
            if choices is not None and item not in choices:
                self.fail(item_path, "must be one of %s" % ", ".join(choices), item, line)
        return list(value)

    def timezone(self, value, path, line):
        self.string(value, path, line)
        return load_timezone(value, lambda message: self.fail(path, message, value, line))

    def moment(self, value, path, line, tz):
        """A date or date-time; naive values are read in ``tz``."""
        if isinstance(value, datetime.datetime):
            moment = value
        elif isinstance(value, datetime.date):
            moment = datetime.datetime(value.year, value.month, value.day)
        elif isinstance(value, str):
            text = value.strip()
            if text.endswith("Z"):
                text = text[:-1] + "+00:00"
            try:
                moment = datetime.datetime.fromisoformat(text)
            except ValueError:
                self.fail(path, "is not an ISO 8601 date or date-time such as 2026-12-20 or 2026-12-20T18:00",
                          value, line)
        else:
            self.fail(path, "must be a date or date-time", value, line)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
        return moment

    def time_of_day(self, value, path, line):
        if isinstance(value, str):
            match = re.match(r"^([01]?\d|2[0-4]):([0-5]\d)$", value.strip())
            if match and (int(match.group(1)) < 24 or match.group(2) == "00"):
                return int(match.group(1)) * 60 + int(match.group(2))
        self.fail(path, "must be a time of day HH:MM between 00:00 and 24:00", value, line)
        return None  # pragma: no cover

    def expression(self, value, path, line):
        self.string(value, path, line)
        try:
            return jmespath.compile(value)
        except (jmespath_exceptions.JMESPathError, ValueError, TypeError) as exc:
            message = str(exc).replace("\n", " ")
            self.fail(path, "invalid JMESPath expression: %s" % message, value, line)
        return None  # pragma: no cover


def _or_default(value, default):
    """Only an absent or null key takes the default: ``templates: {}`` is an error, not "no templates"."""
    return default if value is None else value


def _join(path, key):
    return "%s.%s" % (path, key) if path else str(key)


def _plain_value(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def load_timezone(name, fail):
    _require(zoneinfo, "zoneinfo (Python 3.9+)")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        fail("unknown time zone; use an IANA name such as Europe/Paris or UTC")
    return None  # pragma: no cover


# --------------------------------------------------------------------------
# the policy
# --------------------------------------------------------------------------
class TimeWindow(object):
    __slots__ = ("days", "start", "end", "tz", "timezone")

    def __init__(self, days, start, end, tz, timezone):
        self.days = days
        self.start = start
        self.end = end
        self.tz = tz
        self.timezone = timezone

    def contains(self, now):
        local = now.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        if self.start <= self.end:
            return WEEKDAYS[local.weekday()] in self.days and self.start <= minute < self.end
        # an overnight window (22:00-04:00) belongs to the day it starts on
        if minute >= self.start:
            return WEEKDAYS[local.weekday()] in self.days
        previous = WEEKDAYS[(local.weekday() - 1) % 7]
        return minute < self.end and previous in self.days

    def describe(self):
        return "%s %s-%s %s" % (_describe_days(self.days), _hhmm(self.start), _hhmm(self.end), self.timezone)


def _hhmm(minutes):
    return "%02d:%02d" % divmod(minutes, 60)


def _describe_days(days):
    if list(days) == list(WEEKDAYS):
        return "every day"
    indexes = sorted(WEEKDAYS.index(day) for day in days)
    if indexes == list(range(indexes[0], indexes[-1] + 1)) and len(indexes) > 2:
        return "%s-%s" % (WEEKDAYS[indexes[0]].capitalize(), WEEKDAYS[indexes[-1]].capitalize())
    return ",".join(WEEKDAYS[index].capitalize() for index in indexes)


class Template(object):
    """A standard change template: pre-authorised work that matches its conditions."""

    __slots__ = ("name", "description", "conditions", "max_hosts", "environments", "windows", "allow",
                 "servicenow_template")

    def __init__(self, name, description, conditions, max_hosts, environments, windows, allow=(),
                 servicenow_template=None):
        self.name = name
        self.description = description
        self.conditions = conditions  # list of (text, compiled)
        self.max_hosts = max_hosts
        self.environments = environments
        self.windows = windows
        #: context fields listing what the gate cannot see that this template accepts anyway
        self.allow = frozenset(allow)
        #: the ServiceNow standard change template (name or sys_id) a standard change under it is created from
        self.servicenow_template = servicenow_template


class ProtectedArea(object):
    __slots__ = ("name", "description", "modules", "roles", "tags", "paths", "services", "commands")

    def __init__(self, name, description, modules=(), roles=(), tags=(), paths=(), services=(), commands=()):
        self.name = name
        self.description = description
        self.modules = list(modules)
        self.roles = list(roles)
        self.tags = list(tags)
        self.paths = list(paths)
        self.services = list(services)
        self.commands = list(commands)


class Freeze(object):
    __slots__ = ("name", "reason", "start", "end", "timezone", "tz", "environments", "allowed_change_types")

    def __init__(self, name, reason, start, end, timezone, tz, environments, allowed_change_types):
        self.name = name
        self.reason = reason
        self.start = start
        self.end = end
        self.timezone = timezone
        self.tz = tz
        self.environments = environments
        self.allowed_change_types = allowed_change_types

    def in_force(self, now):
        return self.start <= now < self.end

    def applies_to(self, environments, hosts_without_environment):
        if not self.environments:
            return True
        # A host whose environment is unknown might be in the frozen one: fail closed.
        return bool(set(environments) & set(self.environments)) or bool(hosts_without_environment)


class EmergencyPolicy(object):
    __slots__ = ("allowed", "declarers", "require_justification", "min_justification_length")

    def __init__(self, allowed=True, declarers=("*",), require_justification=True, min_justification_length=10):
        self.allowed = allowed
        self.declarers = list(declarers)
        self.require_justification = require_justification
        self.min_justification_length = min_justification_length

    def may_declare(self, user):
        return any(fnmatch.fnmatchcase(user, pattern) for pattern in self.declarers)


class Policy(object):
    #: ServiceNow as the change authority: ``local_fallback`` and ``fallback_max_age`` (minutes), set by parse_policy
    servicenow = {"local_fallback": False, "fallback_max_age": 60}

    def __init__(self, origin, digest, templates, protected_areas, freezes, emergency, normal_states,
                 authorisation=None, disabled_areas=(), document=None, intelligence=None):
        self.origin = origin
        self.digest = digest
        self.templates = templates
        self.protected_areas = protected_areas
        self.freezes = freezes
        self.emergency = emergency
        self.normal_states = normal_states
        #: approver groups, approval/publishing/review rules (authorisation/rules.py)
        self.authorisation = authorisation or AuthorisationRules()
        #: collisions, blast radius and maintenance windows (intelligence/policy.py)
        self.intelligence = intelligence or IntelligencePolicy()
        #: built-in protected areas the policy switched off by name
        self.disabled_areas = list(disabled_areas)
        # the validated document (plain data on first use: only a publication and its summary need it)
        self._document = document
        # one compiled expression per distinct text, shared between templates
        self.expressions = {}
        for template in templates:
            for text, compiled in template.conditions:
                self.expressions.setdefault(text, compiled)

    def conditions_may_read(self, key):
        """Whether some template condition may read ``key`` of the change context (a top-level key): it names
        the key, or it can see the whole context (``@``, a projection or ``keys``/``values`` of it). The gate
        builds what no condition reads only when something else reads it (``change_gate.build_change_context``)."""
        read = getattr(self, "_context_keys_read", False)
        if read is False:
            read = set()
            for compiled in self.expressions.values():
                keys = context_keys_read(compiled.parsed)
                if keys is None:
                    read = None
                    break
                read |= keys
            self._context_keys_read = read
        return read is None or key in read

    @property
    def document(self):
        """The validated document as plain data: what a publication stores besides the file's text."""
        if self._document is not None and not getattr(self, "_plain", False):
            self._document = plain_document(self._document)
            self._plain = True
        return self._document

    def describe(self):
        described = {"source": self.origin, "sha256": self.digest, "templates": len(self.templates),
                     "protected_areas": sorted(area.name for area in self.protected_areas),
                     "freezes": len(self.freezes)}
        if self.disabled_areas:
            described["disabled_protected_areas"] = list(self.disabled_areas)
        return described


TOP_KEYS = ("version", "templates", "protected_areas", "default_protected_areas", "disabled_protected_areas",
            "freezes", "emergency", "normal") + RULE_KEYS + INTELLIGENCE_KEYS
#: what the gate cannot see in advance: (context field, template key that accepts it, wording, how to avoid it)
BLIND_SPOTS = (
    ("dynamic_includes", "allow_dynamic_includes", "the gate cannot see what %s will run",
     "use import_tasks/import_role"),
    ("unresolved_paths", "allow_unresolved_paths", "the gate cannot tell which file %s writes before the play runs",
     "use a path known before the play (not a loop item or a registered result)"),
    ("opaque_actions", "allow_opaque_actions", "the gate cannot see what %s changes",
     "use a module that names what it changes"),
    # a host known only at run time may be outside the template's environments or over its max_hosts
    ("unresolved_delegations", "allow_unresolved_delegations",
     "the gate cannot tell which host %s is before the play runs",
     "delegate to a name or a variable known before the play"),
    # a service known only at run time may be auditd, sshd or the firewall
    ("unresolved_services", "allow_unresolved_services",
     "the gate cannot tell which service %s manages before the play runs",
     "name the service (or use a variable known before the play)"),
)
TEMPLATE_KEYS = ("name", "description", "conditions", "max_hosts", "environments", "windows") + tuple(
    key for _field, key, _text, _avoid in BLIND_SPOTS)
WINDOW_KEYS = ("days", "start", "end", "timezone")
AREA_KEYS = ("description",) + AREA_LISTS
FREEZE_KEYS = ("name", "reason", "start", "end", "timezone", "environments", "allowed_change_types")
EMERGENCY_KEYS = ("allowed", "declarers", "require_justification", "min_justification_length")
NORMAL_KEYS = ("allowed_states",)
# ServiceNow as the change authority (docs/servicenow.md): a template may name its ServiceNow standard change
# template; the servicenow section allows the gate's local fallback
TOP_KEYS = TOP_KEYS + ("servicenow",)
TEMPLATE_KEYS = TEMPLATE_KEYS + ("servicenow_template",)
SERVICENOW_KEYS = ("local_fallback", "fallback_max_age", "unauthorised_runs")
#: what records an unauthorised run in ServiceNow (the outbox, servicenow/outbox.py): a CHG flagged unauthorised
#: in Review, or an incident
UNAUTHORISED_RUNS = ("change", "incident")


def parse_policy(document, origin, digest=None):
    """Validate a loaded policy document; returns :class:`Policy` or raises ``ValidationError``."""
    _require(jmespath, "jmespath")
    check = _Checker(origin)
    if document is None:
        document = _Mapping()
    check.mapping(document, "", TOP_KEYS)
    line = check.line_of
    if "version" in document and document["version"] != 1:
        check.fail("version", "only policy version 1 exists", document["version"], line(document, "version"))

    templates = []
    raw_templates = _or_default(document.get("templates"), [])
    if not isinstance(raw_templates, list):
        check.fail("templates", "must be a list of templates", raw_templates, line(document, "templates"))
    names = set()
    for index, raw in enumerate(raw_templates):
        path = "templates[%d]" % index
        check.mapping(raw, path, TEMPLATE_KEYS, required=("name", "conditions"), line=line(document, "templates"))
        name = check.string(raw["name"], path + ".name", line(raw, "name"))
        if name in names:
            check.fail(path + ".name", "another template already has this name", name, line(raw, "name"))
        names.add(name)
        description = raw.get("description") or ""
        if not isinstance(description, str):
            check.fail(path + ".description", "must be a string", description, line(raw, "description"))
        raw_conditions = raw["conditions"]
        if isinstance(raw_conditions, str):
            raw_conditions = [raw_conditions]
        if not isinstance(raw_conditions, list) or not raw_conditions:
            check.fail(path + ".conditions", "must be a non-empty list of JMESPath expressions",
                       raw["conditions"], line(raw, "conditions"))
        conditions = [(text, check.expression(text, "%s.conditions[%d]" % (path, position),
                                              _item_line(raw_conditions, position, line(raw, "conditions"))))
                      for position, text in enumerate(raw_conditions)]
        max_hosts = None
        if raw.get("max_hosts") is not None:
            max_hosts = check.integer(raw["max_hosts"], path + ".max_hosts", line(raw, "max_hosts"), minimum=1)
        environments = None
        if raw.get("environments") is not None:
            environments = check.string_list(raw["environments"], path + ".environments", line(raw, "environments"))
        windows = []
        raw_windows = raw.get("windows") or []
        if not isinstance(raw_windows, list):
            check.fail(path + ".windows", "must be a list of time windows", raw_windows, line(raw, "windows"))
        for position, raw_window in enumerate(raw_windows):
            windows.append(_parse_window(check, raw_window, "%s.windows[%d]" % (path, position),
                                         line(raw, "windows")))
        allow = [field for field, key, _text, _avoid in BLIND_SPOTS
                 if key in raw and check.boolean(raw[key], "%s.%s" % (path, key), line(raw, key))]
        servicenow_template = None
        if raw.get("servicenow_template") is not None:
            servicenow_template = check.string(raw["servicenow_template"], path + ".servicenow_template",
                                               line(raw, "servicenow_template"))
        templates.append(Template(name, description, conditions, max_hosts, environments, windows, allow,
                                  servicenow_template))

    areas = {}
    defaults = document.get("default_protected_areas", True)
    check.boolean(defaults, "default_protected_areas", line(document, "default_protected_areas"))
    disabled = check.string_list(_or_default(document.get("disabled_protected_areas"), []),
                                 "disabled_protected_areas", line(document, "disabled_protected_areas"),
                                 choices=sorted(DEFAULT_PROTECTED_AREAS))
    if defaults:
        for name, spec in DEFAULT_PROTECTED_AREAS.items():
            if name not in disabled:
                areas[name] = ProtectedArea(name, spec["description"],
                                            **{key: spec.get(key) or () for key in AREA_LISTS})
    raw_areas = _or_default(document.get("protected_areas"), _Mapping())
    check.mapping(raw_areas, "protected_areas", set(raw_areas) if isinstance(raw_areas, dict) else (),
                  line=line(document, "protected_areas"))
    for name, raw in raw_areas.items():
        path = "protected_areas.%s" % name
        area_line = line(raw_areas, name)
        check.mapping(raw, path, AREA_KEYS, line=area_line)
        lists = {}
        for key in AREA_LISTS:
            lists[key] = check.string_list(raw.get(key) or [], "%s.%s" % (path, key), line(raw, key) or area_line)
        if not any(lists.values()):
            check.fail(path, "must list at least one of %s" % ", ".join(AREA_LISTS), raw, area_line)
        description = raw.get("description") or ""
        if not isinstance(description, str):
            check.fail(path + ".description", "must be a string", description, line(raw, "description"))
        areas[name] = ProtectedArea(name, description, **lists)

    freezes = []
    raw_freezes = _or_default(document.get("freezes"), [])
    if not isinstance(raw_freezes, list):
        check.fail("freezes", "must be a list of freeze windows", raw_freezes, line(document, "freezes"))
    for index, raw in enumerate(raw_freezes):
        path = "freezes[%d]" % index
        check.mapping(raw, path, FREEZE_KEYS, required=("name", "start", "end", "timezone"),
                      line=line(document, "freezes"))
        name = check.string(raw["name"], path + ".name", line(raw, "name"))
        tz = check.timezone(raw["timezone"], path + ".timezone", line(raw, "timezone"))
        start = check.moment(raw["start"], path + ".start", line(raw, "start"), tz)
        end = check.moment(raw["end"], path + ".end", line(raw, "end"), tz)
        if end <= start:
            check.fail(path + ".end", "must be after start (%s)" % raw["start"], raw["end"], line(raw, "end"))
        environments = check.string_list(raw.get("environments") or [], path + ".environments",
                                         line(raw, "environments"))
        allowed = check.string_list(raw.get("allowed_change_types", ["emergency"]) or [],
                                    path + ".allowed_change_types", line(raw, "allowed_change_types"),
                                    choices=CHANGE_TYPES)
        reason = raw.get("reason") or ""
        if not isinstance(reason, str):
            check.fail(path + ".reason", "must be a string", reason, line(raw, "reason"))
        freezes.append(Freeze(name, reason, start, end, raw["timezone"], tz, environments, allowed))

    raw_emergency = _or_default(document.get("emergency"), _Mapping())
    check.mapping(raw_emergency, "emergency", EMERGENCY_KEYS, line=line(document, "emergency"))
    emergency = EmergencyPolicy()
    if "allowed" in raw_emergency:
        emergency.allowed = check.boolean(raw_emergency["allowed"], "emergency.allowed",
                                          line(raw_emergency, "allowed"))
    if "declarers" in raw_emergency:
        emergency.declarers = check.string_list(raw_emergency["declarers"], "emergency.declarers",
                                                line(raw_emergency, "declarers"))
    if "require_justification" in raw_emergency:
        emergency.require_justification = check.boolean(
            raw_emergency["require_justification"], "emergency.require_justification",
            line(raw_emergency, "require_justification"))
    if "min_justification_length" in raw_emergency:
        emergency.min_justification_length = check.integer(
            raw_emergency["min_justification_length"], "emergency.min_justification_length",
            line(raw_emergency, "min_justification_length"), minimum=0)

    raw_normal = _or_default(document.get("normal"), _Mapping())
    check.mapping(raw_normal, "normal", NORMAL_KEYS, line=line(document, "normal"))
    normal_states = ["scheduled", "implement"]
    if "allowed_states" in raw_normal:
        normal_states = check.string_list(raw_normal["allowed_states"], "normal.allowed_states",
                                          line(raw_normal, "allowed_states"), choices=("scheduled", "implement"))

    raw_servicenow = _or_default(document.get("servicenow"), _Mapping())
    check.mapping(raw_servicenow, "servicenow", SERVICENOW_KEYS, line=line(document, "servicenow"))
    servicenow = {"local_fallback": False, "fallback_max_age": 60}
    if "local_fallback" in raw_servicenow:
        servicenow["local_fallback"] = check.boolean(raw_servicenow["local_fallback"], "servicenow.local_fallback",
                                                     line(raw_servicenow, "local_fallback"))
    if "fallback_max_age" in raw_servicenow:
        servicenow["fallback_max_age"] = check.integer(raw_servicenow["fallback_max_age"],
                                                       "servicenow.fallback_max_age",
                                                       line(raw_servicenow, "fallback_max_age"), minimum=1)
    if raw_servicenow.get("unauthorised_runs") is not None:
        # None when absent: the deprecated ServiceNow setting of the same name still applies then
        servicenow["unauthorised_runs"] = check.string(raw_servicenow["unauthorised_runs"],
                                                       "servicenow.unauthorised_runs",
                                                       line(raw_servicenow, "unauthorised_runs"))
        if servicenow["unauthorised_runs"] not in UNAUTHORISED_RUNS:
            check.fail("servicenow.unauthorised_runs", "must be one of %s" % ", ".join(UNAUTHORISED_RUNS),
                       raw_servicenow["unauthorised_runs"], line(raw_servicenow, "unauthorised_runs"))

    authorisation = parse_rules(check, document, _Mapping)
    intelligence = parse_intelligence(check, document, _Mapping)
    policy = Policy(origin, digest, templates, sorted(areas.values(), key=lambda area: area.name), freezes,
                    emergency, normal_states, authorisation=authorisation, disabled_areas=disabled,
                    document=document, intelligence=intelligence)
    policy.servicenow = servicenow
    return policy


def plain_document(value):
    """The loaded document as plain dicts and lists (no line bookkeeping): JSON-ready."""
    if isinstance(value, dict):
        return {key: plain_document(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_document(item) for item in value]
    return value


def _parse_window(check, raw, path, line):
    check.mapping(raw, path, WINDOW_KEYS, required=("start", "end", "timezone"), line=line)
    tz = check.timezone(raw["timezone"], path + ".timezone", check.line_of(raw, "timezone") or line)
    days = check.string_list(raw.get("days") or list(WEEKDAYS), path + ".days", check.line_of(raw, "days") or line,
                             choices=WEEKDAYS)
    start = check.time_of_day(raw["start"], path + ".start", check.line_of(raw, "start") or line)
    end = check.time_of_day(raw["end"], path + ".end", check.line_of(raw, "end") or line)
    if start == end:
        check.fail(path + ".end", "must differ from start", raw["end"], check.line_of(raw, "end") or line)
    return TimeWindow(days, start, end, tz, raw["timezone"])


def read_policy_file(path):
    """``(path, bytes)`` of a policy file, with a clear error when it cannot be read."""
    path = os.path.expanduser(str(path))
    try:
        with open(path, "rb") as handle:
            return path, handle.read()
    except OSError as exc:
        raise ValidationError("cannot read the change policy %s: %s" % (path, exc.strerror or exc), file=path)


def policy_digest(raw):
    """The sha256 a policy is known by: of its file's bytes, exactly as published."""
    return hashlib.sha256(raw).hexdigest()


def load_policy(path):
    """Read and validate a policy file; ``path=None`` gives the built-in default policy."""
    if path is None:
        return parse_policy(None, "(built-in default policy)")
    path, raw = read_policy_file(path)
    return parse_policy_text(raw, path)


def parse_policy_text(raw, origin):
    """Validate a policy from the bytes of its file (``origin`` names it in errors)."""
    _require(yaml, "PyYAML")
    digest = policy_digest(raw)
    try:
        document = yaml.load(raw.decode("utf-8"), Loader=_PolicyLoader)  # nosec - SafeLoader subclass
    except ValidationError as exc:
        raise ValidationError("%s %s" % (origin, exc.message), file=origin)
    except UnicodeDecodeError as exc:
        raise ValidationError("%s: not UTF-8 text: %s" % (origin, exc), file=origin)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = " line %d" % (mark.line + 1) if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValidationError("%s%s: not valid YAML: %s" % (origin, where, problem), file=origin)
    return parse_policy(document, origin, digest)


# --------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------
#: JMESPath AST nodes whose first child is evaluated against the value at hand and the others against what that
#: child gives (``a.b``, ``a[0]``, ``a | b``, ``a[*].b``, ``a.*``, ``a[?c]``, ``a[]``)
_CHAINED_NODES = ("subexpression", "index_expression", "pipe", "projection", "value_projection", "filter_projection",
                  "flatten")
#: nodes whose every child is evaluated against the value at hand
_BRANCHING_NODES = ("comparator", "or_expression", "and_expression", "not_expression", "function_expression",
                    "multi_select_list", "multi_select_dict", "key_val_pair")


def context_keys_read(node):
    """The top-level keys of the document a parsed JMESPath expression (``compiled.parsed``) can read, or None
    when it can read the whole document: ``@`` or a projection at the top (``*``, ``[0]``, ``[?...]``), or a node
    this function does not know (a newer jmespath). An ``&expression`` argument is evaluated by the function
    (``sort_by``, ``max_by``...) against the items of another argument, never against the document itself."""
    kind = node.get("type")
    if kind == "field":
        return {node["value"]}
    if kind in ("literal", "expref"):
        return set()
    if kind in _CHAINED_NODES:
        return context_keys_read(node["children"][0])
    if kind in _BRANCHING_NODES:
        keys = set()
        for child in node["children"]:
            found = context_keys_read(child)
            if found is None:
                return None
            keys |= found
        return keys
    return None


def truthy(value):
    """JMESPath truthiness: false, null, empty string/list/object are false."""
    return not (value is None or value is False or value == "" or value == [] or value == {})


class ExpressionCache(object):
    """Evaluates each distinct expression once per context; errors become reasons, not crashes."""

    def __init__(self, policy, context):
        self._policy = policy
        self._context = context
        self._results = {}

    def value(self, text):
        try:
            return self._results[text]
        except KeyError:
            pass
        compiled = self._policy.expressions.get(text) or jmespath.compile(text)
        try:
            result = (True, truthy(compiled.search(self._context)))
        except jmespath_exceptions.JMESPathError as exc:
            result = (False, str(exc).replace("\n", " "))
        self._results[text] = result
        return result


def template_mismatches(template, context, now, expressions, stop_at_first=False):
    """Why ``template`` does not cover this play; an empty list means it does.

    Conditions come first: a template whose conditions do not hold is simply
    not about this play, so its limits are reported only when they all hold.
    Returns ``(conditions_hold, reasons)``.
    """
    reasons = []
    for text, _compiled in template.conditions:
        ok, value = expressions.value(text)
        if not ok:
            reasons.append("standard change '%s': condition %s cannot be evaluated: %s" % (template.name, text, value))
        elif not value:
            reasons.append("standard change '%s': condition %s is false for this play" % (template.name, text))
        if reasons and stop_at_first:
            return False, reasons
    if reasons:
        return False, reasons
    batch = context.get("host_count", len(context.get("hosts") or ()))
    # serial batches must not split a play into pieces under the limit
    targeted = max(context.get("play_host_count") or 0, batch)
    # a task delegated to another host changes that host too
    delegated = context.get("delegated_host_count") or 0
    if template.max_hosts is not None and targeted + delegated > template.max_hosts:
        reasons.append("standard change '%s' allows at most %d hosts; the play targets %d%s%s"
                       % (template.name, template.max_hosts, targeted,
                          " (%d in this batch)" % batch if batch != targeted else "",
                          " and tasks delegate to %d more" % delegated if delegated else ""))
    if template.environments is not None:
        allowed = set(template.environments)
        outside = sorted(set(context.get("environments") or ()) - allowed)
        if outside:
            hosts = [ci["name"] for ci in context.get("cis") or () if ci.get("environment") in outside]
            hosts.extend("%s (a task delegates to it)" % ci["name"] for ci in context.get("delegated_cis") or ()
                         if ci.get("environment") in outside)
            reasons.append("standard change '%s' is allowed in environment%s %s only; %s %s in %s"
                           % (template.name, "s" if len(allowed) > 1 else "", ", ".join(sorted(allowed)),
                              _some(hosts), "is" if len(hosts) == 1 else "are", ", ".join(outside)))
        unknown = context.get("hosts_without_environment") or []
        if unknown:
            reasons.append("standard change '%s' is limited to environments %s, but %s %s no CI environment"
                           % (template.name, ", ".join(sorted(allowed)), _some(unknown),
                              "has" if len(unknown) == 1 else "have"))
    for field, key, text, avoid in BLIND_SPOTS:
        unseen = context.get(field) or ()
        if unseen and field not in template.allow:
            more = " (and %d more)" % (len(unseen) - 1) if len(unseen) > 1 else ""
            reasons.append("%s%s; standard change '%s' covers that only with %s: true, else %s or raise a normal "
                           "change request" % (text % unseen[0], more, template.name, key, avoid))
    if template.windows and not any(window.contains(now) for window in template.windows):
        window = template.windows[0]
        local = now.astimezone(window.tz)
        reasons.append("standard change '%s' is allowed %s only; now is %s %s"
                       % (template.name, " or ".join(w.describe() for w in template.windows),
                          local.strftime("%a %H:%M"), window.timezone))
    return True, reasons


def evaluate_standard(policy, context, now, only_template=None):
    """Find the templates that cover the play.

    Returns ``{"covered_by": [names], "candidates": [names whose conditions held],
    "closest": [names], "reasons": [...]}``; ``reasons`` explain, for the candidates (or for
    ``only_template``), what they did not allow. ``closest`` names, when none covers the play,
    the templates a reader of the denial should look at: the candidates, else the named template,
    else those that fail the fewest conditions (whose failed conditions ``reasons`` lists).
    """
    expressions = ExpressionCache(policy, context)
    covered_by, candidates, reasons = [], [], []
    templates = policy.templates
    if only_template is not None:
        templates = [t for t in templates if t.name == only_template]
        if not templates:
            return {"covered_by": [], "candidates": [], "closest": [],
                    "reasons": ["standard change template '%s' does not exist in %s"
                                % (only_template, policy.origin)]}
    for template in templates:
        conditions_hold, mismatches = template_mismatches(
            template, context, now, expressions, stop_at_first=only_template is None)
        if conditions_hold:
            candidates.append(template.name)
            if not mismatches:
                covered_by.append(template.name)
                continue
        if conditions_hold or only_template is not None:
            reasons.extend(mismatches)
    closest = [] if covered_by else list(candidates) or ([only_template] if only_template is not None else [])
    if not covered_by and not candidates and only_template is None:
        reasons.append(no_template_reason(policy))
        closest, misses = _closest_misses(policy, context, now, expressions)
        reasons.extend("closest: %s" % reason for reason in misses)
    return {"covered_by": covered_by, "candidates": candidates, "closest": closest, "reasons": reasons}


def no_template_reason(policy):
    """What a play no standard template covers needs, said so the person reading the denial can act on it."""
    found = ("no standard change template matches this play (%d checked in %s)" % (len(policy.templates), policy.origin)
             if policy.templates else "%s has no standard change template" % policy.origin)
    advice = ("give the gate change_request: <number> of an approved change request (raise one with "
              "changeops.itsm.change_request)")
    if policy.templates:
        advice += ", or change the play so that a template covers it (what the closest ones lack is listed)"
    return "%s: %s" % (found, advice)


#: templates whose failed conditions a "no template matches" denial lists
CLOSEST_TEMPLATES = 3


def _closest_misses(policy, context, now, expressions):
    """``(names, reasons)``: the templates that fail the fewest conditions, and every failed condition of
    theirs (a denial only: the cache makes it one more pass over the distinct expressions)."""
    misses = []
    for position, template in enumerate(policy.templates):
        _hold, reasons = template_mismatches(template, context, now, expressions)
        misses.append((len(reasons), position, reasons))
    misses.sort()
    closest = misses[:CLOSEST_TEMPLATES]
    return ([policy.templates[position].name for _count, position, _reasons in closest],
            [reason for _count, _position, reasons in closest for reason in reasons])


def glob_match(name, pattern):
    """``fnmatch.fnmatchcase(name, pattern)``; a pattern without ``*``, ``?`` or ``[`` (most of the protected
    areas' 189 default patterns) is compared as it is, never compiled: the gate runs in a fresh Ansible worker,
    where fnmatch compiles each pattern it meets for the first time (a regex each)."""
    if "*" in pattern or "?" in pattern or "[" in pattern:
        return fnmatch.fnmatchcase(name, pattern)
    return name == pattern


def _matches_module(action, patterns):
    short = action.rsplit(".", 1)[-1]
    for pattern in patterns:
        if "." in pattern:
            if glob_match(action, pattern):
                return True
        elif glob_match(short, pattern):
            return True
    return False


def _matches_path(path, pattern):
    if pattern.endswith("/"):
        return path.startswith(pattern) or path == pattern.rstrip("/")
    return glob_match(path, pattern)


def protected_areas_touched(policy, context):
    """``[{"area": name, "matched_by": ["role ssh_hardening", ...]}]`` for every protected area the play touches.

    A module or path says where the play calls or writes it (``path /etc/ssh/x at tasks/enforce.yml:12``)
    when the context's ``touched_at`` knows: the task may sit deep in an included file.
    """
    modules = context.get("modules") or ()
    roles = context.get("roles") or ()
    tags = set(context.get("tags") or ())
    paths = context.get("paths") or ()
    services = context.get("system_services") or ()
    commands = context.get("commands") or ()
    touched_at = context.get("touched_at") or {}
    # "path P" -> the condition, not judged before the play runs, that the only tasks writing it are under
    conditional = context.get("conditions_at") or {}

    def located(what):
        where = touched_at.get(what)
        text = "%s at %s" % (what, where) if where else what
        if what in conditional:
            text += " if %s" % conditional[what]
        return text

    touched = []
    for area in policy.protected_areas:
        matched = []
        matched.extend(located("module %s" % m) for m in modules if _matches_module(m, area.modules))
        matched.extend("role %s" % r for r in roles if any(glob_match(r, p) for p in area.roles))
        matched.extend("tag %s" % t for t in sorted(tags) if t in area.tags)
        matched.extend(located("path %s" % p) for p in paths if any(_matches_path(p, pattern) for pattern in area.paths))
        matched.extend(located("service %s" % name) for name in services
                       if any(glob_match(name, pattern) for pattern in area.services))
        matched.extend(located("command %s" % name) for name in commands
                       if any(glob_match(name, pattern) for pattern in area.commands))
        if matched:
            touched.append({"area": area.name, "matched_by": matched})
    return touched


def freezes_in_force(policy, context, now):
    """Freezes in force now that cover at least one of the play's hosts."""
    environments = context.get("environments") or ()
    unknown = context.get("hosts_without_environment") or ()
    return [freeze for freeze in policy.freezes
            if freeze.in_force(now) and freeze.applies_to(environments, unknown)]


def describe_local(moment, timezone_name, tz):
    return "%s %s" % (moment.astimezone(tz).strftime("%Y-%m-%d %H:%M"), timezone_name)


def _some(names, limit=5):
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return "%s and %d more" % (", ".join(names[:limit]), len(names) - limit)
