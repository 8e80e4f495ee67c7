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
    # a streaming replica for readers only (info modules, the cmdb inventory); writes always go to the primary
    "postgresql_read_dsn": {
        "type": "str",
        "env": "CHANGEOPS_POSTGRESQL_READ_DSN",
        "no_log": True,
        "default": None,
    },
    "postgresql_read_max_lag": {
        "type": "int",
        "env": "CHANGEOPS_POSTGRESQL_READ_MAX_LAG",
        "default": 30,
        "minimum": 0,
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


def _coerce(name, value, origin, config_file=None):
    """``value`` of option ``name`` as its type; a relative path read from ``config_file`` is relative to its folder
    (:func:`path_from_ini`)."""
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
        value = path_from_ini(value, config_file)
    if "choices" in option and value not in option["choices"]:
        raise ConfigurationError(
            "%s: option %s must be one of %s, got %r" % (origin, name, ", ".join(option["choices"]), value))
    return value


def read_ini_section(config_file):
    """Return the ``[changeops]`` section of an ansible.cfg as a dict ({} when absent)."""
    return read_ini_sections(config_file, [INI_SECTION])[0]


def config_file_dir(config_file):
    """The folder relative paths in ``config_file`` are read from (None when it is not a file)."""
    if not config_file or not os.path.isfile(config_file):
        return None
    return os.path.dirname(os.path.abspath(config_file))


def _raw_sources(name, params, environ, ini, ini_origin):
    """``(origin, raw value, config file)`` of every source that sets option ``name``, highest precedence first
    (the config file only for a value read from one)."""
    option = BACKEND_OPTIONS[name]
    if params.get(name) is not None:
        yield "argument", params[name], None
    if environ.get(option["env"]) not in (None, ""):
        yield "environment variable %s" % option["env"], environ[option["env"]], None
    if ini.get(name) not in (None, ""):
        yield "%s [%s] %s" % (ini_origin, INI_SECTION, name), ini[name], ini_origin
    yield "default", option["default"], None


def backend_option_sources(name, params=None, environ=None, ini=None, ini_origin="ansible.cfg"):
    """Every value option ``name`` is given, highest precedence first: ``[(origin, value), ...]``.

    The first is the one in force; the others are what it overrides (the default always last;
    an overridden value that is not valid is left out, as it is never used).
    A relative path from ansible.cfg is relative to that file's folder, as Ansible reads the
    paths of its own configuration (``ini_origin`` is the file's path).
    """
    sources = []
    raw = _raw_sources(name, params or {}, os.environ if environ is None else environ, ini or {}, ini_origin)
    for position, (origin, value, config_file) in enumerate(raw):
        try:
            sources.append((origin, _coerce(name, value, origin, config_file=config_file)))
        except ConfigurationError:
            if position == 0:
                raise
    return sources


def path_from_ini(value, config_file):
    """A path option read from ``config_file``: ``~`` and ``$VARS`` expanded, a relative one taken from that
    file's folder, as Ansible reads the paths of its own configuration (its ``type: path`` options).

    The ONE resolver of path options the collection reads from ansible.cfg itself: the backend options above,
    ``gate_policy``, the checkpoint and witness options, ``ledger_redact``'s spool and register, the ServiceNow
    files (``ca_path``, ``client_certificate_file``, ``client_key_file``). ``config_file`` None (a value from an
    argument or the environment): expanded only, so relative to the current directory."""
    value = os.path.expandvars(os.path.expanduser(str(value)))
    base_dir = config_file_dir(config_file)
    if base_dir and value and not os.path.isabs(value):
        value = os.path.normpath(os.path.join(base_dir, value))
    return value


def read_ini_sections(config_file, names):
    """The named sections of an ansible.cfg as dicts, in the order given ({} for a missing one)."""
    if not config_file or not os.path.exists(config_file):
        return [{} for _name in names]
    import configparser

    # Parse the way ansible-core parses ansible.cfg (";" starts an inline comment, "%" is literal), so
    # the callback (configured by Ansible itself) and the modules (reading the file here) see one value.
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
    ``ini_origin`` is the path of the ansible.cfg ``ini`` was read from: relative
    paths in it are resolved against its folder, never the current directory.
    """
    params = params or {}
    environ = os.environ if environ is None else environ
    ini = ini or {}
    config = {}
    for name in BACKEND_OPTIONS:
        origin, value, config_file = next(_raw_sources(name, params, environ, ini, ini_origin))
        config[name] = _coerce(name, value, origin, config_file=config_file)
    return config


def new_ledger_warning(config, sources, exists=os.path.exists):
    """A warning when ``config`` is about to create a new SQLite ledger while another one is configured or exists.

    ``sources``: what :func:`backend_option_sources` gives for ``sqlite_path`` (plus any other
    ledger path worth naming, such as where older versions put a relative path). A second, empty
    ledger splits the audit trail without anyone noticing: the usual causes are a relative path
    read from another directory, or an environment variable left over from another project.
    Returns None when there is nothing to say.
    """
    if config.get("backend") != "sqlite":
        return None
    path = config.get("sqlite_path")
    if not path or exists(path):
        return None
    here = os.path.abspath(path)
    others, seen = [], set([here])
    for origin, other in sources:
        if not other or os.path.abspath(other) in seen:
            continue
        seen.add(os.path.abspath(other))
        if exists(other):
            others.append("%s (%s, exists)" % (other, origin))
        elif origin != "default":
            others.append("%s (%s)" % (other, origin))
    if not others:
        return None
    chosen = next((origin for origin, value in sources if value and os.path.abspath(value) == here), "sqlite_path")
    return ("changeops: creating a new, empty ledger %s (%s) while another ledger is configured or present: %s. "
            "Changes recorded in two ledgers make two incomplete audit trails; if this is not the ledger you meant, "
            "stop and set sqlite_path (an absolute path, or one relative to ansible.cfg's folder)."
            % (path, chosen, "; ".join(others)))


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
