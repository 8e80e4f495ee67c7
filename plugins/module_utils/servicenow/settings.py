# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ServiceNow options: one table, one precedence rule, everywhere.

The connection options carry servicenow.itsm's names and environment variables
(``instance.host``, ``username``, ``client_id``..., ``SN_HOST``, ``SN_USERNAME``...),
so its users configure nothing twice; the rest are ours. Precedence, as for the
backend options (``module_utils/config.py``):

    the task's ``instance`` option  >  environment variable  >
    ``[changeops_servicenow]`` section of ansible.cfg  >  documented default

Secrets (``password``, ``client_secret``, ``refresh_token``, ``access_token``,
``api_key``) are ``no_log`` in every argument spec built here, and
:attr:`Settings.secrets` scrubs them out of every message.
"""

from __future__ import annotations

import json
import os

from ansible_collections.changeops.itsm.plugins.module_utils.config import path_from_ini, read_ini_sections
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError
from ansible_collections.changeops.itsm.plugins.module_utils.servicenow.errors import Secrets

INI_SECTION = "changeops_servicenow"
GRANT_TYPES = ("password", "refresh_token", "client_credentials")
CLOSE_TO = ("none", "review", "closed")
UNAUTHORISED_RUNS = ("change", "incident")

#: name -> type, environment variables (first set wins), default, secret, choices
OPTIONS = {
    # -- servicenow.itsm's instance options, same names and variables -----------------------------
    "host": {"type": "str", "env": ["SN_HOST"]},
    "username": {"type": "str", "env": ["SN_USERNAME"]},
    "password": {"type": "str", "env": ["SN_PASSWORD"], "secret": True},
    "client_id": {"type": "str", "env": ["SN_CLIENT_ID"]},
    "client_secret": {"type": "str", "env": ["SN_CLIENT_SECRET", "SN_SECRET_ID"], "secret": True},
    "grant_type": {"type": "str", "env": ["SN_GRANT_TYPE"], "choices": list(GRANT_TYPES)},
    "refresh_token": {"type": "str", "env": ["SN_REFRESH_TOKEN"], "secret": True},
    "access_token": {"type": "str", "env": ["SN_ACCESS_TOKEN"], "secret": True},
    "api_key": {"type": "str", "env": ["SN_API_KEY"], "secret": True},
    "api_path": {"type": "str", "env": [], "default": "api/now"},
    "custom_headers": {"type": "dict", "env": []},
    "timeout": {"type": "float", "env": ["SN_TIMEOUT"], "default": 10.0, "minimum": 0.1},
    "validate_certs": {"type": "bool", "env": ["CHANGEOPS_SERVICENOW_VALIDATE_CERTS"], "default": True},
    "client_certificate_file": {"type": "path", "env": ["SN_CLIENT_CERTIFICATE_FILE"]},
    "client_key_file": {"type": "path", "env": ["SN_CLIENT_KEY_FILE"]},
    # -- changeops.itsm's own -------------------------------------------------------------------------
    "enabled": {"type": "bool", "env": ["CHANGEOPS_SERVICENOW"], "default": False},
    "ca_path": {"type": "path", "env": ["CHANGEOPS_SERVICENOW_CA_PATH"]},
    "max_requests": {"type": "int", "env": ["CHANGEOPS_SERVICENOW_MAX_REQUESTS"], "default": 2000, "minimum": 1},
    "rate_limit_wait": {"type": "float", "env": ["CHANGEOPS_SERVICENOW_RATE_LIMIT_WAIT"], "default": 30.0,
                        "minimum": 0},
    "rate_limit_cooldown": {"type": "float", "env": ["CHANGEOPS_SERVICENOW_RATE_LIMIT_COOLDOWN"], "default": 60.0,
                            "minimum": 0},
    "retries": {"type": "int", "env": ["CHANGEOPS_SERVICENOW_RETRIES"], "default": 4, "minimum": 0},
    "backoff": {"type": "float", "env": ["CHANGEOPS_SERVICENOW_BACKOFF"], "default": 0.5, "minimum": 0},
    "page_size": {"type": "int", "env": ["CHANGEOPS_SERVICENOW_PAGE_SIZE"], "default": 1000, "minimum": 1},
    "batch_size": {"type": "int", "env": ["CHANGEOPS_SERVICENOW_BATCH_SIZE"], "default": 100, "minimum": 1},
    "data_source": {"type": "str", "env": ["CHANGEOPS_SERVICENOW_DATA_SOURCE"], "default": "ChangeOps"},
    "sync_timeout": {"type": "float", "env": ["CHANGEOPS_SERVICENOW_SYNC_TIMEOUT"], "default": 30.0, "minimum": 0},
    "close_change_requests": {"type": "str", "env": ["CHANGEOPS_SERVICENOW_CLOSE_CHANGE_REQUESTS"],
                              "default": "none", "choices": list(CLOSE_TO)},
    # deprecated: the change policy's servicenow.unauthorised_runs decides (no default here, so the outbox can tell
    # a setting someone made from none and say it is deprecated; absent from both: change)
    "unauthorised_runs": {"type": "str", "env": ["CHANGEOPS_SERVICENOW_UNAUTHORISED_RUNS"],
                          "choices": list(UNAUTHORISED_RUNS), "deprecated": "servicenow.unauthorised_runs"},
    "register_url": {"type": "str", "env": ["CHANGEOPS_SERVICENOW_REGISTER_URL"]},
    "assignment_group": {"type": "str", "env": ["CHANGEOPS_SERVICENOW_ASSIGNMENT_GROUP"]},
    # ServiceNow as a witness of the ledger's checkpoints (witnesses/servicenow.py): opt-in, a few requests a run
    "witness": {"type": "bool", "env": ["CHANGEOPS_SERVICENOW_WITNESS"], "default": False},
    "class_map": {"type": "dict", "env": ["CHANGEOPS_SERVICENOW_CLASS_MAP"]},
    "field_map": {"type": "dict", "env": ["CHANGEOPS_SERVICENOW_FIELD_MAP"]},
}

SECRET_OPTIONS = tuple(sorted(name for name, option in OPTIONS.items() if option.get("secret")))


def instance_argument_spec():
    """The ``instance`` option of every module that talks to ServiceNow (no defaults: None is "not given")."""
    options = {}
    for name, option in OPTIONS.items():
        entry = {"type": option["type"]}
        if option.get("choices"):
            entry["choices"] = list(option["choices"])
        if option.get("secret"):
            entry["no_log"] = True
        options[name] = entry
    return {"instance": {"type": "dict", "options": options}}


def _truthy(text):
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    return None


def _coerce(name, value, origin, config_file=None):
    """``value`` of option ``name`` as its type; a relative path read from ``config_file`` (ansible.cfg) is relative
    to its folder, through the collection's one resolver (``config.path_from_ini``)."""
    option = OPTIONS[name]
    kind = option["type"]
    shown = "(hidden)" if option.get("secret") else repr(value)
    if value is None:
        return None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        parsed = _truthy(value)
        if parsed is None:
            raise ConfigurationError("%s: ServiceNow option %s must be true or false, got %s" % (origin, name, shown),
                                     option=name)
        return parsed
    if kind in ("int", "float"):
        try:
            number = int(value) if kind == "int" else float(value)
        except (TypeError, ValueError):
            raise ConfigurationError("%s: ServiceNow option %s must be a number, got %s" % (origin, name, shown),
                                     option=name)
        if "minimum" in option and number < option["minimum"]:
            raise ConfigurationError("%s: ServiceNow option %s must be at least %s, got %s"
                                     % (origin, name, option["minimum"], shown), option=name)
        return number
    if kind == "dict":
        if isinstance(value, dict):
            return dict(value)
        try:
            parsed = json.loads(value)
        except (TypeError, ValueError):
            parsed = None
        if not isinstance(parsed, dict):
            raise ConfigurationError("%s: ServiceNow option %s must be a mapping (JSON object in a variable or "
                                     "ansible.cfg), got %s" % (origin, name, shown), option=name)
        return parsed
    value = str(value)
    if kind == "path":
        value = path_from_ini(value, config_file)
    if option.get("choices") and value not in option["choices"]:
        raise ConfigurationError("%s: ServiceNow option %s must be one of %s, got %s"
                                 % (origin, name, ", ".join(option["choices"]), shown), option=name)
    return value


def read_ini_section(config_file):
    """The ``[changeops_servicenow]`` section of an ansible.cfg as a dict ({} when absent)."""
    return read_ini_sections(config_file, [INI_SECTION])[0]


class Settings(dict):
    """Resolved options (a dict), plus ``secrets`` and where the instance is."""

    def __init__(self, values, explicit=False):
        super(Settings, self).__init__(values)
        #: the task named an instance itself (its ``instance`` option): ServiceNow is wanted for this task
        self.explicit = explicit
        self.secrets = Secrets([values.get(name) for name in SECRET_OPTIONS],
                               basic_pair=(values.get("username"), values.get("password")))

    @property
    def base_url(self):
        host = (self.get("host") or "").strip().rstrip("/")
        if host and "://" not in host:
            host = "https://" + host
        return host

    @property
    def wanted(self):
        """True when this task or configuration asks for ServiceNow (``enabled`` or an explicit ``instance``)."""
        return bool(self.get("enabled") or self.explicit)

    def describe(self):
        return "ServiceNow %s" % (self.base_url or "(no host configured)")

    def target_key(self):
        """The outbox cursor's name: one per instance, so pointing at another instance starts from the start."""
        return "servicenow:%s" % self.base_url.split("://", 1)[-1].lower()

    def auth_method(self):
        """Which credentials the client sends, in servicenow.itsm's order: OAuth, API key, bearer, basic."""
        if self.get("client_id") or self.get("client_secret") or self.get("grant_type") == "client_credentials":
            return "oauth"
        if self.get("api_key"):
            return "api_key"
        if self.get("access_token"):
            return "access_token"
        return "basic"

    def check_complete(self, origin="ServiceNow instance"):
        """Raise ``ConfigurationError`` naming what is missing before any request is made."""
        if not self.base_url:
            raise ConfigurationError("%s: no host: set instance.host, SN_HOST or host in [%s] of ansible.cfg"
                                     % (origin, INI_SECTION), option="host")
        if not self.base_url.startswith(("https://", "http://")):
            raise ConfigurationError("%s: host %r must be an https:// URL or a host name" % (origin, self.get("host")),
                                     option="host")
        method = self.auth_method()
        if method == "oauth":
            grant = self.get("grant_type") or "password"
            if not (self.get("client_id") and self.get("client_secret")):
                raise ConfigurationError("%s: OAuth needs both client_id and client_secret (SN_CLIENT_ID, "
                                         "SN_CLIENT_SECRET)" % origin, option="client_id")
            if grant == "password" and not (self.get("username") and self.get("password")):
                raise ConfigurationError("%s: OAuth grant_type password needs username and password" % origin,
                                         option="grant_type")
            if grant == "refresh_token" and not self.get("refresh_token"):
                raise ConfigurationError("%s: OAuth grant_type refresh_token needs refresh_token (SN_REFRESH_TOKEN)"
                                         % origin, option="grant_type")
        elif method == "basic" and not (self.get("username") and self.get("password")):
            raise ConfigurationError(
                "%s: no credentials: set username and password (SN_USERNAME, SN_PASSWORD), client_id and "
                "client_secret (OAuth), api_key (SN_API_KEY) or access_token" % origin, option="username")
        if self.get("client_certificate_file") and not self.get("client_key_file"):
            raise ConfigurationError("%s: client_certificate_file needs client_key_file" % origin,
                                     option="client_key_file")
        return self


def resolve_settings(params=None, environ=None, ini=None, ini_origin="ansible.cfg"):
    """Resolve every option by precedence; ``params`` is the task's ``instance`` dict (or None).

    ``ini_origin``: the ansible.cfg ``ini`` was read from; a relative path in it is relative to its folder."""
    given = dict(params or {})
    environ = os.environ if environ is None else environ
    ini = ini or {}
    values = {}
    for name, option in OPTIONS.items():
        if given.get(name) is not None:
            values[name] = _coerce(name, given[name], "instance.%s" % name)
            continue
        for variable in option["env"]:
            if environ.get(variable) not in (None, ""):
                values[name] = _coerce(name, environ[variable], "environment variable %s" % variable)
                break
        else:
            if ini.get(name) not in (None, ""):
                values[name] = _coerce(name, ini[name], "%s [%s] %s" % (ini_origin, INI_SECTION, name),
                                       config_file=ini_origin)
            else:
                values[name] = option.get("default")
    explicit = any(value is not None for value in given.values())
    return Settings(values, explicit=explicit)


def controller_settings(params=None, config_file=None, environ=None):
    """Settings for controller-side code (action plugins, the recorder): arguments, env, ansible.cfg."""
    return resolve_settings(params, environ=environ, ini=read_ini_section(config_file),
                            ini_origin=config_file or "ansible.cfg")


#: functions controller code registers to say where ansible.cfg is (module_utils may not import ansible)
_CONFIG_FILE_FINDERS = []


def register_config_file_finder(finder):
    """Called by controller-side code (``plugin_utils``) with a function returning the ansible.cfg in use."""
    if finder not in _CONFIG_FILE_FINDERS:
        _CONFIG_FILE_FINDERS.append(finder)


def ansible_config_file():
    """The ansible.cfg in use on the controller, as a registered finder says; else ``ANSIBLE_CONFIG``."""
    for finder in _CONFIG_FILE_FINDERS:
        try:
            path = finder()
        except Exception:  # pylint: disable=broad-except
            continue
        if path:
            return path
    return os.environ.get("ANSIBLE_CONFIG") or None
