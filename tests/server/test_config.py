"""Settings: every setting a flag and an IMAGE_COMPAT_* variable, flag first; checked values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from extender.cli import build_parser
from extender.nfd.rules import SetSemantics
from extender.policy.pods import Mode, RegistryErrorPolicy
from extender.server.config import (
    OPTIONS,
    ConfigError,
    Settings,
    markdown_table,
    parse_duration,
    parse_listen,
    parse_size,
    settings_from,
)


def parse(*argv: str, env: dict[str, str] | None = None) -> Settings:
    return settings_from(build_parser().parse_args(["serve", *argv]), env or {})


def test_defaults_are_what_an_operator_expects() -> None:
    settings = parse()
    assert settings == Settings()
    assert settings.listen == ("127.0.0.1", 8888)
    assert settings.path_prefix == "/"
    assert settings.scheduler_names == ("image-compat-scheduler",)
    assert settings.annotation_prefix == "image-compat.io/"
    assert settings.allowed_modes == frozenset(Mode)
    assert settings.set_semantics is SetSemantics.ANY
    assert settings.on_registry_error is RegistryErrorPolicy.FAIL
    assert settings.spec_wait_budget == pytest.approx(0.3)
    assert settings.max_body_bytes == 64 * 1024 * 1024


def test_every_setting_has_exactly_one_option_whose_default_matches() -> None:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    assert sorted(o.field for o in OPTIONS) == sorted(fields)
    for option in OPTIONS:
        default = Settings().__getattribute__(option.field)
        assert option.parse(option.default) == default, option.flag
        assert option.env == "IMAGE_COMPAT_" + option.flag[2:].upper().replace("-", "_")


def test_flag_wins_over_environment_which_wins_over_default() -> None:
    env = {"IMAGE_COMPAT_LISTEN": "0.0.0.0:9000", "IMAGE_COMPAT_LOG_LEVEL": "debug"}
    assert parse(env=env).listen == ("0.0.0.0", 9000)
    assert parse(env=env).log_level == "DEBUG"
    assert parse("--listen", "[::1]:7000", env=env).listen == ("::1", 7000)


def test_all_kinds_of_values() -> None:
    settings = parse(
        "--scheduler-name",
        "a",
        "--scheduler-name",
        "b, c",
        "--allowed-modes",
        "enforce,prefer",
        "--set-semantics",
        "ALL",
        "--on-registry-error",
        "ignore",
        "--spec-wait-budget",
        "150ms",
        "--max-body-bytes",
        "1Mi",
        "--path-prefix",
        "scheduler",
        "--features-file",
        "/etc/nodes.yaml",
        "--access-log",
        env={"IMAGE_COMPAT_SPEC_MAP": "/etc/map.yaml", "IMAGE_COMPAT_ACCESS_LOG": "false"},
    )
    assert settings.scheduler_names == ("a", "b", "c")
    assert settings.allowed_modes == {Mode.ENFORCE, Mode.PREFER}
    assert settings.set_semantics is SetSemantics.ALL
    assert settings.on_registry_error is RegistryErrorPolicy.IGNORE
    assert settings.spec_wait_budget == pytest.approx(0.15)
    assert settings.max_body_bytes == 1 << 20
    assert settings.path_prefix == "/scheduler/"
    assert settings.features_file == Path("/etc/nodes.yaml")
    assert settings.spec_map == Path("/etc/map.yaml")
    assert settings.access_log is True
    assert parse(env={"IMAGE_COMPAT_SCHEDULER_NAME": "x,y"}).scheduler_names == ("x", "y")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--listen", "8888"], {}, "--listen: '8888' is not HOST:PORT"),
        (["--listen", "h:99999"], {}, "--listen: port 99999 is out of range"),
        ([], {"IMAGE_COMPAT_SPEC_WAIT_BUDGET": "soon"}, "IMAGE_COMPAT_SPEC_WAIT_BUDGET: 'soon'"),
        (["--set-semantics", "most"], {}, "--set-semantics: 'most' is not one of any, all"),
        (["--allowed-modes", "prefer"], {}, "default mode enforce is not allowed"),
        (["--memo-size", "0"], {}, "--memo-size: 0 must be at least 1"),
        (["--max-body-bytes", "12"], {}, "at least 1Ki"),
        (["--annotation-prefix", "Bad Prefix/"], {}, "annotation key"),
        (["--scheduler-name", " , "], {}, "at least one name"),
        ([], {"IMAGE_COMPAT_ACCESS_LOG": "maybe"}, "not a boolean"),
        (["--log-level", "loud"], {}, "--log-level"),
    ],
)
def test_bad_values_name_their_flag_or_variable(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse(*argv, env=env)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300ms", 0.3), ("2s", 2), ("1m30s", 90), ("0.5", 0.5), ("1h", 3600), (".5s", 0.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1s", "1d", "5 s", "nan", "inf", "1s2"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_size_and_listen() -> None:
    assert parse_size("64Mi") == 64 << 20
    assert parse_size("10K") == 10_000
    assert parse_size("123") == 123
    with pytest.raises(ValueError):
        parse_size("1.5Mi")
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:8888") == ("::1", 8888)
    with pytest.raises(ValueError):
        parse_listen(":8888")


def test_markdown_table_documents_every_option() -> None:
    table = markdown_table()
    for option in OPTIONS:
        assert f"`{option.flag}`" in table and f"`{option.env}`" in table
    assert table.count("\n") == len(OPTIONS) + 2


def test_serve_help_lists_env_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = capsys.readouterr().out
    assert "IMAGE_COMPAT_LISTEN" in out and "--spec-wait-budget" in out


def test_nodefeature_namespaces_and_feature_source() -> None:
    assert parse().watched_namespaces == ("node-feature-discovery",)
    assert parse().effective_feature_source == "kubernetes"
    settings = parse("--nodefeature-namespace=a,b", "--nodefeature-namespace", "c")
    assert settings.watched_namespaces == ("a", "b", "c")
    assert parse("--nodefeature-namespace=a,*").watched_namespaces == ("*",)
    assert parse("--features-file=x.yaml").effective_feature_source == "file"
    with pytest.raises(ConfigError, match="--nodefeature-namespace: 'Bad_NS' is not a namespace"):
        parse("--nodefeature-namespace=Bad_NS")
    with pytest.raises(ConfigError, match="--feature-source=file needs --features-file"):
        parse("--feature-source=file")
    with pytest.raises(ConfigError, match="IMAGE_COMPAT_FEATURE_SOURCE: 'etcd' is not one of"):
        parse(env={"IMAGE_COMPAT_FEATURE_SOURCE": "etcd"})
