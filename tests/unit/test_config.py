# -*- coding: utf-8 -*-
"""Backend option precedence: argument > environment > ansible.cfg [changeops] > default."""

from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.changeops.itsm.plugins.doc_fragments.backend import ModuleDocFragment
from ansible_collections.changeops.itsm.plugins.module_utils.config import (
    BACKEND_OPTIONS,
    DEFAULT_SQLITE_PATH,
    backend_argument_spec,
    backend_option_sources,
    describe,
    new_ledger_warning,
    read_ini_section,
    redact_dsn,
    resolve_backend_config,
)
from ansible_collections.changeops.itsm.plugins.module_utils.errors import ConfigurationError


def write_cfg(tmp_path, body):
    path = tmp_path / "ansible.cfg"
    path.write_text(body)
    return str(path)


def resolve(params=None, environ=None, cfg_path=None):
    ini = read_ini_section(cfg_path) if cfg_path else {}
    return resolve_backend_config(params, environ or {}, ini, cfg_path or "ansible.cfg")


def test_defaults_when_nothing_is_set(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = resolve()
    assert config == {
        "backend": "sqlite",
        "sqlite_path": os.path.join(str(tmp_path), ".ansible", "changeops", "ledger.sqlite"),
        "busy_timeout": 60,
        "postgresql_dsn": None,
        "postgresql_read_dsn": None,
        "postgresql_read_max_lag": 30,
    }
    assert DEFAULT_SQLITE_PATH.startswith("~/")


@pytest.mark.parametrize("name, env, ini_value, env_value, arg_value, expected", [
    ("sqlite_path", "CHANGEOPS_SQLITE_PATH", "/ini/l.sqlite", "/env/l.sqlite", "/arg/l.sqlite", None),
    ("busy_timeout", "CHANGEOPS_BUSY_TIMEOUT", "7", "8", 9, None),
    ("backend", "CHANGEOPS_BACKEND", "postgresql", "sqlite", "postgresql", None),
    ("postgresql_dsn", "CHANGEOPS_POSTGRESQL_DSN", "dbname=ini", "dbname=env", "dbname=arg", None),
    ("postgresql_read_dsn", "CHANGEOPS_POSTGRESQL_READ_DSN", "dbname=ini", "dbname=env", "dbname=arg", None),
    ("postgresql_read_max_lag", "CHANGEOPS_POSTGRESQL_READ_MAX_LAG", "7", "8", 9, None),
])
def test_each_source_overrides_the_next(tmp_path, name, env, ini_value, env_value, arg_value, expected):
    cfg = write_cfg(tmp_path, "[defaults]\nforks = 5\n\n[changeops]\n%s = %s\n" % (name, ini_value))
    kind = BACKEND_OPTIONS[name]["type"]
    as_type = int if kind == "int" else str

    assert resolve(cfg_path=cfg)[name] == as_type(ini_value)
    assert resolve(environ={env: env_value}, cfg_path=cfg)[name] == as_type(env_value)
    assert resolve({name: arg_value}, environ={env: env_value}, cfg_path=cfg)[name] == as_type(arg_value)
    # None and "" mean "not given" and fall through
    assert resolve({name: None}, environ={env: ""}, cfg_path=cfg)[name] == as_type(ini_value)


def test_options_resolve_independently(tmp_path):
    cfg = write_cfg(tmp_path, "[changeops]\nsqlite_path = /ini/ledger.sqlite\nbusy_timeout = 5\n")
    config = resolve({"busy_timeout": 2}, environ={"CHANGEOPS_BACKEND": "sqlite"}, cfg_path=cfg)
    assert config["sqlite_path"] == "/ini/ledger.sqlite"
    assert config["busy_timeout"] == 2
    assert config["backend"] == "sqlite"


def test_paths_expand_user_and_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LEDGER_DIR", "/srv/ledgers")
    assert resolve({"sqlite_path": "~/x.sqlite"})["sqlite_path"] == str(tmp_path / "x.sqlite")
    assert resolve(environ={"CHANGEOPS_SQLITE_PATH": "$LEDGER_DIR/a.sqlite"})["sqlite_path"] == "/srv/ledgers/a.sqlite"


@pytest.mark.parametrize("source, value", [("argument", "abc"), ("environment", "abc"), ("ini", "abc"),
                                           ("environment", "1.5")])
def test_bad_integer_names_source_option_and_value(tmp_path, source, value):
    cfg = write_cfg(tmp_path, "[changeops]\nbusy_timeout = %s\n" % value) if source == "ini" else None
    with pytest.raises(ConfigurationError) as caught:
        resolve({"busy_timeout": value} if source == "argument" else None,
                environ={"CHANGEOPS_BUSY_TIMEOUT": value} if source == "environment" else None,
                cfg_path=cfg)
    message = str(caught.value)
    assert "busy_timeout" in message and repr(value) in message
    expected_origin = {"argument": "argument", "environment": "environment variable CHANGEOPS_BUSY_TIMEOUT",
                       "ini": "%s [changeops] busy_timeout" % cfg}[source]
    assert message.startswith(expected_origin), message


@pytest.mark.parametrize("value", ["0", "-5"])
def test_busy_timeout_below_one_second_is_refused(value):
    with pytest.raises(ConfigurationError) as caught:
        resolve(environ={"CHANGEOPS_BUSY_TIMEOUT": value})
    assert "CHANGEOPS_BUSY_TIMEOUT" in str(caught.value) and repr(value) in str(caught.value)


def test_unknown_backend_names_the_choices(tmp_path):
    cfg = write_cfg(tmp_path, "[changeops]\nbackend = mongodb\n")
    with pytest.raises(ConfigurationError) as caught:
        resolve(cfg_path=cfg)
    message = str(caught.value)
    assert cfg in message and "backend" in message and "'mongodb'" in message
    assert "sqlite" in message and "postgresql" in message


def test_a_bad_lower_precedence_value_is_ignored_when_overridden(tmp_path):
    cfg = write_cfg(tmp_path, "[changeops]\nbusy_timeout = soon\n")
    assert resolve(environ={"CHANGEOPS_BUSY_TIMEOUT": "3"}, cfg_path=cfg)["busy_timeout"] == 3


def test_ini_section_reading(tmp_path):
    assert read_ini_section(None) == {}
    assert read_ini_section(str(tmp_path / "missing.cfg")) == {}
    assert read_ini_section(write_cfg(tmp_path, "[defaults]\nforks = 5\n")) == {}


def test_ini_values_read_the_way_ansible_reads_them(tmp_path):
    """The callback gets its options from Ansible's own parser; modules must see the same values."""
    from ansible.config.manager import ConfigManager

    body = ("[changeops]\n"
            "sqlite_path = /srv/ledger.sqlite ; the shared ledger\n"
            "postgresql_dsn = postgresql://u:p%%w@db/x\n")
    cfg = write_cfg(tmp_path, body)
    ours = read_ini_section(cfg)
    assert ours == {"sqlite_path": "/srv/ledger.sqlite", "postgresql_dsn": "postgresql://u:p%%w@db/x"}
    manager = ConfigManager(conf_file=cfg)
    for key, value in ours.items():
        # the private reader is what ansible-core uses for every plugin's ini option
        assert manager._get_ini_config_value(cfg, "changeops", key) == value


def test_unparsable_ansible_cfg_names_the_file(tmp_path):
    cfg = write_cfg(tmp_path, "[changeops\nbackend = sqlite\n")
    with pytest.raises(ConfigurationError) as caught:
        read_ini_section(cfg)
    assert cfg in str(caught.value)


def test_argument_spec_has_no_defaults_and_hides_the_dsn():
    spec = backend_argument_spec()
    assert set(spec) == set(BACKEND_OPTIONS)
    assert all("default" not in entry for entry in spec.values())
    assert spec["postgresql_dsn"]["no_log"] is True
    assert spec["backend"]["choices"] == ["sqlite", "postgresql"]


def test_doc_fragments_document_every_option_with_its_env_var():
    module_doc = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    plugin_doc = yaml.safe_load(ModuleDocFragment.PLUGINS)["options"]
    assert set(module_doc) == set(plugin_doc) == set(BACKEND_OPTIONS)
    for name, option in BACKEND_OPTIONS.items():
        assert module_doc[name]["type"] == plugin_doc[name]["type"] == option["type"]
        assert plugin_doc[name]["env"] == [{"name": option["env"]}]
        assert plugin_doc[name]["ini"] == [{"section": "changeops", "key": name}]
        assert plugin_doc[name].get("default") == option["default"]
        assert option["env"] in " ".join(module_doc[name]["description"])
        if "choices" in option:
            assert module_doc[name]["choices"] == plugin_doc[name]["choices"] == option["choices"]


@pytest.mark.parametrize("dsn, secret", [
    ("postgresql://ops:pa55w0rd@db.example:5432/changeops", "pa55w0rd"),
    ("host=db user=ops password=pa55w0rd dbname=changeops", "pa55w0rd"),
    ("host=db password = 'pa 55 w0rd' dbname=changeops", "pa 55 w0rd"),
])
def test_descriptions_never_show_a_dsn_password(dsn, secret):
    text = describe({"backend": "postgresql", "postgresql_dsn": dsn})
    assert secret not in text
    assert "db" in text
    assert secret not in redact_dsn(dsn)


def test_describe_sqlite():
    assert describe({"backend": "sqlite", "sqlite_path": "/x/l.sqlite"}) == "sqlite:/x/l.sqlite"


def test_a_relative_path_in_ansible_cfg_is_relative_to_its_folder(tmp_path, monkeypatch):
    """As Ansible reads its own paths: running from another directory must not open another ledger."""
    (tmp_path / "project").mkdir()
    cfg = write_cfg(tmp_path / "project", "[changeops]\nsqlite_path = state/ledger.sqlite\n")
    monkeypatch.chdir(str(tmp_path))
    assert resolve(cfg_path=cfg)["sqlite_path"] == str(tmp_path / "project" / "state" / "ledger.sqlite")
    cfg = write_cfg(tmp_path / "project", "[changeops]\nsqlite_path = ../shared/./ledger.sqlite\n")
    assert resolve(cfg_path=cfg)["sqlite_path"] == str(tmp_path / "shared" / "ledger.sqlite")
    # absolute, ~ and $VAR paths are what they say; arguments and environment variables are the caller's
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = write_cfg(tmp_path / "project", "[changeops]\nsqlite_path = ~/ledger.sqlite\n")
    assert resolve(cfg_path=cfg)["sqlite_path"] == str(tmp_path / "home" / "ledger.sqlite")
    assert resolve({"sqlite_path": "rel.sqlite"}, cfg_path=cfg)["sqlite_path"] == "rel.sqlite"
    assert resolve(environ={"CHANGEOPS_SQLITE_PATH": "rel.sqlite"}, cfg_path=cfg)["sqlite_path"] == "rel.sqlite"


def test_option_sources_list_what_the_value_in_force_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = write_cfg(tmp_path, "[changeops]\nsqlite_path = cfg.sqlite\nbusy_timeout = soon\n")
    sources = backend_option_sources("sqlite_path", {}, {"CHANGEOPS_SQLITE_PATH": "/env.sqlite"},
                                     read_ini_section(cfg), cfg)
    assert sources == [("environment variable CHANGEOPS_SQLITE_PATH", "/env.sqlite"),
                       ("%s [changeops] sqlite_path" % cfg, str(tmp_path / "cfg.sqlite")),
                       ("default", str(tmp_path / ".ansible" / "changeops" / "ledger.sqlite"))]
    # an overridden value that is not valid is never used, so it is not listed (nor an error)
    assert [origin for origin, _value in backend_option_sources(
        "busy_timeout", {}, {"CHANGEOPS_BUSY_TIMEOUT": "5"}, read_ini_section(cfg), cfg)] == [
        "environment variable CHANGEOPS_BUSY_TIMEOUT", "default"]


def test_new_ledger_warning_only_when_another_ledger_is_configured_or_present(tmp_path):
    existing = tmp_path / "existing.sqlite"
    existing.write_text("")
    new = str(tmp_path / "new.sqlite")
    sqlite = {"backend": "sqlite", "sqlite_path": new}
    default = ("default", str(tmp_path / "default.sqlite"))
    # the first ledger of a machine, or one that exists already: nothing to say
    assert new_ledger_warning(sqlite, [("argument", new), default]) is None
    assert new_ledger_warning({"backend": "sqlite", "sqlite_path": str(existing)},
                              [("argument", str(existing)), ("environment variable X", new)]) is None
    assert new_ledger_warning({"backend": "postgresql", "sqlite_path": new}, [("default", str(existing))]) is None
    # another one exists (even the default), or another source names another path
    message = new_ledger_warning(sqlite, [("environment variable CHANGEOPS_SQLITE_PATH", new),
                                          ("ansible.cfg [changeops] sqlite_path", str(existing)), default])
    assert message.startswith("changeops: creating a new, empty ledger %s (environment variable "
                              "CHANGEOPS_SQLITE_PATH) while another ledger is configured or present: %s "
                              "(ansible.cfg [changeops] sqlite_path, exists)." % (new, existing)), message
    assert "default.sqlite" not in message, "a default that does not exist is no other ledger"
    assert "(default, exists)" in new_ledger_warning(sqlite, [("argument", new), ("default", str(existing))])
    configured = new_ledger_warning(sqlite, [("argument", new), ("ansible.cfg [changeops] sqlite_path", "/srv/l.sqlite")])
    assert "/srv/l.sqlite (ansible.cfg [changeops] sqlite_path)" in configured
