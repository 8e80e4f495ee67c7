# -*- coding: utf-8 -*-
# Copyright: changeops.itsm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the system of record lives: one table of backend options.

The table below is the single source of truth for backend options. It feeds
the module argument specs (:func:`backend_argument_spec`), the plugin option
resolution for callback/inventory (their DOCUMENTATION comes from the
``changeops.itsm.backend`` doc fragment, which must list the same names), and
the precedence rule used everywhere:

    explicit argument / module_defaults  >  environment variable  >
    ``[changeops]`` section of ansible.cfg  >  documented default
"""

from __future__ import annotations

import os

from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError

INI_SECTION = "changeops"
DEFAULT_SQLITE_PATH = "~/.ansible/changeops/ledger.sqlite"
BACKENDS = ("sqlite", "postgresql")

BACKEND_OPTIONS = {
    "backend": {
        "type": "str",
        "choices": list(BACKENDS),
        "env": "CHANGEOPS_BACKEND",
        "default": "sqlite",
    },
    "sqlite_path": {
        "type": "path",
        "env": "CHANGEOPS_SQLITE_PATH",
        "default": DEFAULT_SQLITE_PATH,
    },
    "busy_timeout": {
        "type": "int",
        "env": "CHANGEOPS_BUSY_TIMEOUT",
        "default": 60,
        "minimum": 1,
    },
    "postgresql_dsn": {
        "type": "str",
        "env": "CHANGEOPS_POSTGRESQL_DSN",
        "no_log": True,
        "default": None,
    },
}


def backend_argument_spec():
    """Argument spec entries for the backend options (no defaults: None means "not given")."""
    spec = {}
    for name, option in BACKEND_OPTIONS.items():
        entry = {"type": option["type"]}
        if "choices" in option:
            entry["choices"] = option["choices"]
        if option.get("no_log"):
            entry["no_log"] = True
        spec[name] = entry
    return spec


def _coerce(name, value, origin):
    option = BACKEND_OPTIONS[name]
    if value is None:
        return None
    if option["type"] == "int":
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                "%s: option %s must be an integer, got %r" % (origin, name, value))
        if "minimum" in option and number < option["minimum"]:
            raise ConfigurationError(
                "%s: option %s must be at least %d, got %r" % (origin, name, option["minimum"], value))
        return number
    value = str(value)
    if option["type"] == "path":
        value = os.path.expandvars(os.path.expanduser(value))
    if "choices" in option and value not in option["choices"]:
        raise ConfigurationError(
            "%s: option %s must be one of %s, got %r" % (origin, name, ", ".join(option["choices"]), value))
    return value


def read_ini_section(config_file):
    """Return the ``[changeops]`` section of an ansible.cfg as a dict ({} when absent)."""
    if not config_file or not os.path.exists(config_file):
        return {}
    import configparser

    # Parse the way ansible-core parses ansible.cfg (";" starts an inline comment, "%" is literal), so
    # the callback (configured by Ansible itself) and the modules (reading the file here) see one value.
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        parser.read(config_file)
    except configparser.Error as exc:
        raise ConfigurationError("%s: cannot parse: %s" % (config_file, exc))
    if not parser.has_section(INI_SECTION):
        return {}
    return dict(parser.items(INI_SECTION))


def read_ini_sections(config_file, names):
    """The named sections of an ansible.cfg as dicts, in the order given ({} for a missing one)."""
    if not config_file or not os.path.exists(config_file):
        return [{} for _name in names]
    import configparser

    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        parser.read(config_file)
    except configparser.Error as exc:
        raise ConfigurationError("%s: cannot parse: %s" % (config_file, exc))
    return [dict(parser.items(name)) if parser.has_section(name) else {} for name in names]


def resolve_backend_config(params=None, environ=None, ini=None, ini_origin="ansible.cfg"):
    """Resolve every backend option by precedence; returns a plain dict.

    ``params`` are explicit values (module arguments, plugin options already
    resolved by Ansible); None values fall through to the next source.
    """
    params = params or {}
    environ = os.environ if environ is None else environ
    ini = ini or {}
    config = {}
    for name, option in BACKEND_OPTIONS.items():
        if params.get(name) is not None:
            config[name] = _coerce(name, params[name], "argument")
        elif environ.get(option["env"]) not in (None, ""):
            config[name] = _coerce(name, environ[option["env"]], "environment variable %s" % option["env"])
        elif ini.get(name) not in (None, ""):
            config[name] = _coerce(name, ini[name], "%s [%s] %s" % (ini_origin, INI_SECTION, name))
        else:
            config[name] = _coerce(name, option["default"], "default")
    return config


def describe(config):
    """A one-line, secret-free description of where the system of record is."""
    backend = config.get("backend")
    if backend == "sqlite":
        return "sqlite:%s" % config.get("sqlite_path")
    if backend == "postgresql":
        return "postgresql:%s" % redact_dsn(config.get("postgresql_dsn") or "")
    return backend


def redact_dsn(dsn):
    """Hide a password in a libpq URI or key=value connection string."""
    import re

    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1********@", dsn)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1********", dsn, flags=re.IGNORECASE)
