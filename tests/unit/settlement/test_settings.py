"""Settings and the command line of `python -m settlement`."""

from __future__ import annotations

from dataclasses import fields

import pytest

from ordermesh.config import SettingsError, load_settings
from settlement.__main__ import build_parser, database_dsn, main
from settlement.bootstrap import SettlementSettings, redacted


def test_defaults() -> None:
    settings = load_settings(SettlementSettings, environ={})
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 50054, 9104)
    assert (settings.kafka, settings.postgres) == ("", "")
    assert settings.topics().engine == "ordermesh.engine"


def test_help_teaches_every_setting() -> None:
    text = build_parser().format_help()
    for field in fields(SettlementSettings):
        assert "--" + field.name.replace("_", "-") in text
        assert "ORDERMESH_" + field.name.upper() in text
    assert "DATABASE_URL" in text


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"ORDERMESH_PORT": "70000"}, "port must be 0..65535, was 70000"),
        ({"ORDERMESH_BATCH_MAX": "0"}, "batch_max must be at least 1, was 0"),
        ({"ORDERMESH_POOL_SIZE": "1"}, "pool_size must be at least 2"),
        ({"ORDERMESH_BATCH_WAIT_MS": "-1"}, "batch_wait_ms must be 0 or more"),
        ({"ORDERMESH_TOPIC_PREFIX": "a b"}, "topic prefix may hold"),
        ({"ORDERMESH_BATCH_MAX": "many"}, "ORDERMESH_BATCH_MAX='many' is not valid"),
    ],
)
def test_bad_settings_are_refused_naming_them(environ: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        load_settings(SettlementSettings, environ=environ)


def test_the_dsn_comes_from_the_setting_then_database_url() -> None:
    given = load_settings(SettlementSettings, environ={"ORDERMESH_POSTGRES": "postgresql://a/b"})
    assert database_dsn(given, {"DATABASE_URL": "postgresql://c/d"}) == "postgresql://a/b"
    plain = load_settings(SettlementSettings, environ={})
    assert database_dsn(plain, {"DATABASE_URL": " postgresql://c/d "}) == "postgresql://c/d"
    with pytest.raises(SettingsError, match="PostgreSQL is required"):
        database_dsn(plain, {})


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--postgres", "postgresql://x/y"], "Kafka is required"),
        (["--kafka", "127.0.0.1:9"], "PostgreSQL is required"),
        (["--kafka", "127.0.0.1:9", "--postgres", "p", "--log-level", "loud"], "log level"),
    ],
)
def test_the_command_line_refuses_what_it_cannot_run(
    argv: list[str], words: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("DATABASE_URL", "ORDERMESH_POSTGRES", "ORDERMESH_KAFKA"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert words in capsys.readouterr().err


def test_passwords_stay_out_of_errors() -> None:
    assert redacted("postgresql://user:secret@db:5432/x") == "postgresql://user:***@db:5432/x"
    assert redacted("postgresql://user@db/x") == "postgresql://user@db/x"
