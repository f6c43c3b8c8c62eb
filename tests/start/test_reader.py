"""kolla_entry.start.reader: Kolla's config.json/yaml into frozen values, errors naming entry and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

from kolla_entry.errors import ConfigError
from kolla_entry.start.reader import (
    DEFAULT_DEPENDENCY_TIMEOUT,
    CheckDependency,
    Dependency,
    Owner,
    default_config_path,
    dependencies_from_env,
    load_config,
    parse_config,
    parse_owner,
    parse_perm,
)

# Trimmed from kolla-ansible's keystone.json.j2 (see research/kolla-runtime.md section 3).
KEYSTONE: Dict[str, Any] = {
    "command": "/usr/bin/keystone-startup.sh",
    "config_files": [
        {"source": "/var/lib/kolla/config_files/keystone-startup.sh", "dest": "/usr/bin/keystone-startup.sh",
         "owner": "root", "perm": "0755"},
        {"source": "/var/lib/kolla/config_files/keystone.conf", "dest": "/etc/keystone/keystone.conf",
         "owner": "keystone", "perm": "0600", "template": True},
        {"source": "/var/lib/kolla/config_files/keystone-paste.ini", "dest": "/etc/keystone/keystone-paste.ini",
         "owner": "keystone", "perm": "0600", "optional": True},
    ],
    "directories": [{"path": "/var/log/kolla/keystone", "owner": "keystone:kolla", "perm": "2775"}],
    "files": [{"path": "/var/log/kolla/keystone/keystone.log", "owner": "keystone:kolla", "perm": "0664"}],
    "permissions": [{"path": "/var/log/kolla/keystone/*.log", "owner": "keystone:kolla", "perm": "0664",
                     "recurse": True, "exclude": ["\\.gz$"]}],
    "dependencies": [{"tcp": "mariadb:3306"}, {"tcp": "[fd00::1]:5672"}],
    "dependency_timeout": 30,
    "user": "keystone",
}


def _error(data: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "/cfg/config.json")
    return info.value


class TestParseConfig:
    def test_kolla_keystone_config_parses_into_values(self) -> None:
        """A real kolla-ansible shape with our extensions becomes frozen entries."""
        config = parse_config(KEYSTONE, "/cfg/config.json")
        assert config.command == "/usr/bin/keystone-startup.sh"
        assert [e.dest for e in config.config_files] == [
            "/usr/bin/keystone-startup.sh", "/etc/keystone/keystone.conf", "/etc/keystone/keystone-paste.ini"]
        assert config.config_files[1].template and config.config_files[2].optional
        assert config.config_files[0].perm == 0o755
        assert config.directories[0].owner == Owner("keystone", "kolla")
        assert config.directories[0].perm == 0o2775
        assert config.files[0].entry == "files[0]"
        assert config.permissions[0].recurse and config.permissions[0].exclude == ("\\.gz$",)
        assert config.dependencies == (Dependency("mariadb", 3306, "dependencies[0].tcp"),
                                       Dependency("fd00::1", 5672, "dependencies[1].tcp"))
        assert config.dependency_timeout == 30.0
        assert config.user == "keystone"

    def test_defaults_when_optional_sections_are_absent(self) -> None:
        config = parse_config({"command": "true"}, "/c.json")
        assert config.config_files == () and config.permissions == ()
        assert config.dependency_timeout == DEFAULT_DEPENDENCY_TIMEOUT and config.user is None

    def test_command_may_be_absent(self) -> None:
        """The command can come from the command line instead (the runner checks)."""
        assert parse_config({}, "/c.json").command is None

    @pytest.mark.parametrize(("data", "entry", "words"), [
        ({"command": 5}, "command", "non-empty string"),
        ({"config_files": [{"dest": "/x", "owner": "a", "perm": "0600"}]}, "config_files[0].source", "required"),
        ({"config_files": [{"source": "/s", "dest": "/x", "perm": "0600"}]}, "config_files[0].owner", "required"),
        ({"config_files": [{"source": "/s", "dest": "/x", "owner": "a"}]}, "config_files[0].perm", "required"),
        ({"config_files": [{"source": "s", "dest": "/x", "owner": "a", "perm": "0600"}]},
         "config_files[0].source", "absolute"),
        ({"config_files": [{"source": "/s", "dest": "/x", "owner": "a", "perm": "0600", "mrege": True}]},
         "config_files[0].mrege", "unknown key"),
        ({"config_files": [{"source": "/s", "dest": "/x", "owner": "a", "perm": "0600", "optional": "yes"}]},
         "config_files[0].optional", "true or false"),
        ({"config_files": {"source": "/s"}}, "config_files", "expected a list"),
        ({"config_files": ["/s"]}, "config_files[0]", "expected an object"),
        ({"directories": [{"path": "/d", "owner": "a", "perm": None}]}, "directories[0].perm", "required"),
        ({"files": [{"path": "/d", "owner": "a:b:c", "perm": "0600"}]}, "files[0].owner", "user:group"),
        ({"permissions": [{"path": "/d", "perm": "0600"}]}, "permissions[0].owner", "required"),
        ({"permissions": [{"path": "/d", "owner": "a", "exclude": ["("]}]}, "permissions[0].exclude",
         "regular expression"),
        ({"dependencies": [{"tcp": "nohost"}]}, "dependencies[0].tcp", "host:port"),
        ({"dependencies": [{"tcp": "h:70000"}]}, "dependencies[0].tcp", "1-65535"),
        ({"dependencies": [{"tcp": "db..svc:3306"}]}, "dependencies[0].tcp", "host name"),
        ({"dependencies": [{"tcp": "a" * 64 + ".svc:3306"}]}, "dependencies[0].tcp", "host name"),
        ({"dependencies": [{"http": "h:1"}]}, "dependencies[0].http", "unknown key"),
        ({"dependencies": [{}]}, "dependencies[0]", "exactly one of \"tcp\" (host:port) or \"command\""),
        ({"dependencies": [{"tcp": "h:1", "command": "true"}]}, "dependencies[0]", "exactly one"),
        ({"dependencies": [{"command": "check 'unbalanced"}]}, "dependencies[0].command", "cannot split"),
        ({"dependencies": [{"command": ""}]}, "dependencies[0].command", "non-empty string"),
        ({"dependency_timeout": 0}, "dependency_timeout", "positive"),
        ({"dependency_timeout": float("nan")}, "dependency_timeout", "positive"),
        ({"dependency_timeout": float("inf")}, "dependency_timeout", "positive"),
        ({"premissions": []}, "premissions", "unknown key"),
        ({"command": "  "}, "command", "got an empty string"),
        ({"user": "key\x00stone"}, "user", "NUL"),
        ({"config_files": [{"source": "/s", "dest": "/etc/a\x00b", "owner": "a", "perm": "0600"}]},
         "config_files[0].dest", "NUL"),
        ({"directories": [{"path": "/d\x00", "owner": "a", "perm": "0755"}]}, "directories[0].path", "NUL"),
        ({1: "x", "foo": "y", None: "z"}, "1", "unknown key"),
    ], ids=lambda v: v if isinstance(v, str) else None)
    def test_invalid_config_names_entry_and_field(self, data: Any, entry: str, words: str) -> None:
        """Every mistake is reported with its entry and field, and what was expected."""
        error = _error(data)
        assert error.entry == entry
        assert error.file == "/cfg/config.json"
        assert words in str(error)
        assert entry in str(error)

    def test_top_level_must_be_an_object(self) -> None:
        assert "expected an object" in str(_error(["command"]))

    def test_preserve_properties_needs_no_owner_or_perm(self) -> None:
        config = parse_config({"config_files": [{"source": "/s/*", "dest": "/", "merge": True,
                                                 "preserve_properties": True}]}, "/c.json")
        entry = config.config_files[0]
        assert entry.owner is None and entry.perm is None and entry.merge


    def test_check_commands_are_split_like_the_command_and_kept_apart_from_tcp(self) -> None:
        """TCP waits come first (step 2), checks after the config files: two lists, each in config order."""
        config = parse_config({"dependencies": [
            {"command": "keystone-manage db_sync --check"}, {"tcp": "db:3306"},
            {"command": "sh -c 'test -s \"/var/lib/x y\"'"}]}, "/c.json")
        assert config.dependencies == (Dependency("db", 3306, "dependencies[1].tcp"),)
        assert config.checks == (
            CheckDependency(("keystone-manage", "db_sync", "--check"), "dependencies[0].command"),
            CheckDependency(("sh", "-c", 'test -s "/var/lib/x y"'), "dependencies[2].command"))
        assert str(config.checks[1]) == "sh -c 'test -s \"/var/lib/x y\"'"


class TestPerm:
    @pytest.mark.parametrize(("text", "mode"), [
        ("0640", 0o640), ("640", 0o640), ("644", 0o644), ("2775", 0o2775), ("0o600", 0o600), ("4755", 0o4755),
    ])
    def test_perm_strings_are_always_octal(self, text: str, mode: int) -> None:
        """Kolla before 2026 read "644" as decimal (LP#2154269); we never do."""
        assert parse_perm(text) == mode

    @pytest.mark.parametrize("text", ["", "64", "0899", "12345", "rw-r--r--", "0x644", " 0644"])
    def test_invalid_perm_strings(self, text: str) -> None:
        assert parse_perm(text) is None

    @pytest.mark.parametrize("value", [416, 644, True])
    def test_numbers_are_refused_not_guessed(self, value: Any) -> None:
        """YAML turns 0640 into 416 and 640 into decimal 640: ask for a quoted string instead."""
        error = _error({"directories": [{"path": "/d", "owner": "a", "perm": value}]})
        assert error.entry == "directories[0].perm" and "quoted" in str(error)


class TestOwner:
    @pytest.mark.parametrize(("text", "owner"), [
        ("keystone", Owner("keystone")),
        ("keystone:", Owner("keystone")),
        ("keystone:kolla", Owner("keystone", "kolla")),
        ("42425:42400", Owner("42425", "42400")),
        ("svc-user:grp.x", Owner("svc-user", "grp.x")),
    ])
    def test_owner_forms(self, text: str, owner: Owner) -> None:
        assert parse_owner(text) == owner

    @pytest.mark.parametrize("text", ["", ":kolla", "a:b:c", "a b", "-a"])
    def test_invalid_owners(self, text: str) -> None:
        assert parse_owner(text) is None

    def test_numeric_owner_in_json_is_accepted(self) -> None:
        config = parse_config({"files": [{"path": "/f", "owner": 0, "perm": "0600"}]}, "/c.json")
        assert config.files[0].owner == Owner("0")


class TestDependenciesFromEnv:
    def test_comma_separated_list(self) -> None:
        assert dependencies_from_env("db:3306, mq:5672,,") == (
            Dependency("db", 3306, "KOLLA_ENTRY_DEPENDENCIES"), Dependency("mq", 5672, "KOLLA_ENTRY_DEPENDENCIES"))

    def test_invalid_item_names_the_variable(self) -> None:
        with pytest.raises(ConfigError) as info:
            dependencies_from_env("db:3306,oops")
        assert info.value.entry == "KOLLA_ENTRY_DEPENDENCIES" and "'oops'" in str(info.value)


class TestLoadConfig:
    def test_json_file(self, tmp_path: Path) -> None:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(KEYSTONE))
        assert load_config(path).path == str(path)

    def test_yaml_file(self, tmp_path: Path) -> None:
        path = tmp_path / "config.yaml"
        path.write_text("command: uwsgi /etc/x.ini\nconfig_files:\n"
                        "  - {source: /a, dest: /b, owner: nova, perm: '0600'}\n")
        config = load_config(path)
        assert config.command == "uwsgi /etc/x.ini" and config.config_files[0].perm == 0o600

    def test_unquoted_yaml_perm_is_an_error(self, tmp_path: Path) -> None:
        path = tmp_path / "config.yaml"
        path.write_text("config_files:\n  - {source: /a, dest: /b, owner: nova, perm: 0600}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert info.value.entry == "config_files[0].perm"

    @pytest.mark.parametrize(("name", "text", "words"), [
        ("config.json", "{\"command\": ", "not valid JSON"),
        ("config.yaml", "command: [", "not valid YAML"),
        ("config.json", '{"files": [{"path": "/a", "owner": "a", "perm": "0600", "perm": "0777"}]}', "appears twice"),
        ("config.yaml", "files:\n  - {path: /a, owner: a, perm: '0600', perm: '0777'}\n", "appears twice"),
    ])
    def test_syntax_errors_name_the_file(self, tmp_path: Path, name: str, text: str, words: str) -> None:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert words in str(info.value) and info.value.file == str(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / "config.json")
        assert "cannot read" in str(info.value)

    def test_default_path_prefers_yaml_like_kolla_master(self, tmp_path: Path) -> None:
        assert default_config_path(tmp_path) == str(tmp_path / "config.json")
        (tmp_path / "config.yaml").write_text("{}")
        assert default_config_path(tmp_path) == str(tmp_path / "config.yaml")
