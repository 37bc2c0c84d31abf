"""The gateway's settings and command line: defaults, refusals, and no built-in keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from gateway.__main__ import build_parser, main
from gateway.auth import KeyFileError
from gateway.bootstrap import GatewaySettings, build
from ordermesh.bus.memory import MemoryBus
from ordermesh.config import SettingsError, load_settings


def test_defaults() -> None:
    settings = GatewaySettings()
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 50051, 9101)
    addresses = settings.addresses()
    assert (addresses.ubscore, addresses.matcher, addresses.settlement) == (
        "127.0.0.1:50052",
        "127.0.0.1:50053",
        "127.0.0.1:50054",
    )
    assert settings.api_keys == ""
    assert settings.engine_topic == "ordermesh.engine"
    assert dataclasses.replace(settings, topic_prefix="t1.").engine_topic == "t1.ordermesh.engine"


def test_flags_win_over_the_environment() -> None:
    args = build_parser().parse_args(["--port", "6000", "--api-keys", "/k.toml"])
    environ = {"ORDERMESH_PORT": "5000", "ORDERMESH_BURST": "7"}
    settings = load_settings(GatewaySettings, args, environ)
    assert (settings.port, settings.api_keys, settings.burst) == (6000, "/k.toml", 7)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": 70_000}, "port must be 0..65535"),
        ({"metrics_port": -1}, "metrics_port must be 0..65535"),
        ({"rate_per_second": 0.0}, "rate_per_second must be above 0"),
        ({"burst": 0}, "burst must be at least 1"),
        ({"upstream_timeout_seconds": 0.0}, "upstream_timeout_seconds must be above 0"),
        ({"result_timeout_seconds": -1.0}, "result_timeout_seconds must be above 0"),
        ({"grace_seconds": -1.0}, "grace_seconds must be 0 or more"),
        ({"host": ""}, "host must not be empty"),
        ({"ubscore": "localhost"}, "ubscore must be host:port"),
        ({"settlement": ""}, "settlement must be host:port"),
        ({"topic_prefix": "a b"}, "topic_prefix may hold"),
        ({"log_level": "loud"}, "log_level must be one of"),
    ],
)
def test_a_bad_value_is_refused_naming_it(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        dataclasses.replace(GatewaySettings(), **change)


def test_help_teaches_every_setting() -> None:
    text = build_parser().format_help()
    for field in dataclasses.fields(GatewaySettings):
        assert "--" + field.name.replace("_", "-") in text
        assert "ORDERMESH_" + field.name.upper() in text


def test_there_are_no_built_in_keys(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="api_keys is required"):
        build(GatewaySettings(), MemoryBus())
    with pytest.raises(KeyFileError, match="cannot read the API key file"):
        build(GatewaySettings(api_keys=str(tmp_path / "missing.toml")), MemoryBus())


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ([], "Kafka is required"),
        (["--kafka", "127.0.0.1:9092"], "an API key file is required"),
        (["--kafka", "k:1", "--api-keys", "x", "--port", "many"], "--port='many' is not valid"),
    ],
)
def test_bad_usage_exits_2_saying_why(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    for name in ("ORDERMESH_KAFKA", "ORDERMESH_API_KEYS", "ORDERMESH_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err
