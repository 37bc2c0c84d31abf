"""ubscore's settings and command line: flags, environment, defaults, and clear refusals."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ordermesh.config import SettingsError, load_settings
from ubscore.__main__ import build_parser
from ubscore.bootstrap import UBSCoreSettings
from ubscore.lifecycle import LogTopics

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_are_a_single_local_shard() -> None:
    settings = UBSCoreSettings()
    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 50052, 9102)
    assert (settings.shard_index, settings.shard_count) == (0, 1)
    assert settings.snapshot_every == 10_000
    assert settings.partitions == 4
    assert settings.kafka == ""
    assert settings.topics() == LogTopics()


def test_flags_win_over_the_environment_which_wins_over_defaults() -> None:
    args = build_parser().parse_args(["--port", "6000", "--kafka", "k:9092"])
    environ = {"ORDERMESH_PORT": "5000", "ORDERMESH_SNAPSHOT_EVERY": "50"}
    settings = load_settings(UBSCoreSettings, args, environ)
    assert (settings.port, settings.kafka, settings.snapshot_every) == (6000, "k:9092", 50)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": 70_000}, "port must be 0..65535, was 70000"),
        ({"metrics_port": -1}, "metrics_port must be 0..65535, was -1"),
        ({"snapshot_every": 0}, "snapshot_every must be at least 1, was 0"),
        ({"partitions": 0}, "partitions must be at least 1, was 0"),
        ({"grace_seconds": -1.0}, "grace_seconds must be 0 or more"),
        ({"host": ""}, "host must not be empty"),
        ({"shard_index": 2, "shard_count": 2}, "shard_index must be 0..1, was 2"),
        ({"order_window": 0}, "order_window must be"),
        ({"topic_prefix": "a b"}, "topic prefix may hold"),
    ],
)
def test_a_bad_value_is_refused_naming_it(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        dataclasses.replace(UBSCoreSettings(), **change)


def test_help_teaches_every_setting_with_its_variable() -> None:
    text = build_parser().format_help()
    for field in dataclasses.fields(UBSCoreSettings):
        assert "--" + field.name.replace("_", "-") in text
        assert "ORDERMESH_" + field.name.upper() in text


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ubscore", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_python_m_ubscore_help_exits_cleanly() -> None:
    done = run("--help")
    assert done.returncode == 0
    assert "--snapshot-every" in done.stdout


def test_without_kafka_it_says_kafka_is_required() -> None:
    done = run("--port", "0")
    assert done.returncode == 2
    assert "Kafka is required" in done.stderr
    assert "--kafka" in done.stderr


def test_a_bad_environment_value_names_the_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ubscore", "--kafka", "k:9092"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"ORDERMESH_SNAPSHOT_EVERY": "often", "PATH": ""},
    )
    assert done.returncode == 2
    assert "ORDERMESH_SNAPSHOT_EVERY='often' is not valid" in done.stderr
