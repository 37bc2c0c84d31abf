import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from ordermesh.config import (
    CommonSettings,
    SettingsError,
    add_arguments,
    load_settings,
    setting,
    unknown_environment,
)
from ordermesh.markets import DEFAULT_MARKETS_PATH


@dataclass(frozen=True, slots=True)
class Example:
    port: int = setting(50051, "where to listen")
    grace_seconds: float = setting(10.0, "drain time")
    verbose: bool = setting(False, "say more")
    name: str = setting("gw", "instance name")
    data_dir: Path = setting(Path(".ordermesh"), "state")


def parse(argv, environ):
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example)
    return load_settings(Example, parser.parse_args(argv), environ)


def test_defaults_when_nothing_is_set():
    assert parse([], {}) == Example()
    assert load_settings(CommonSettings, None, {}).markets == DEFAULT_MARKETS_PATH


def test_environment_overrides_defaults_and_flags_override_environment():
    env = {"ORDERMESH_PORT": "6000", "ORDERMESH_VERBOSE": "yes", "ORDERMESH_NAME": "blue"}
    assert parse([], env) == Example(port=6000, verbose=True, name="blue")
    got = parse(["--port", "7000", "--data-dir", "/srv/state", "--grace-seconds", "2.5"], env)
    assert got == Example(
        port=7000, grace_seconds=2.5, verbose=True, name="blue", data_dir=Path("/srv/state")
    )


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "http"], {}, "--port='http' is not valid"),
        ([], {"ORDERMESH_PORT": "1.5"}, "ORDERMESH_PORT='1.5' is not valid"),
        ([], {"ORDERMESH_VERBOSE": "maybe"}, "expected true/false, was 'maybe'"),
    ],
)
def test_bad_values_name_the_source(argv, env, message):
    with pytest.raises(SettingsError, match=message):
        parse(argv, env)


def test_help_shows_variable_and_default():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example)
    text = parser.format_help()
    assert "[env ORDERMESH_PORT]" in text
    assert "(default: 50051)" in text


def test_unknown_variables_are_reported_with_a_suggestion():
    env = {"ORDERMESH_PROT": "1", "ORDERMESH_PORT": "2", "ORDERMESH_TEST_KAFKA": "x", "HOME": "/"}
    assert unknown_environment([Example], env) == [
        "ignoring unknown environment variable ORDERMESH_PROT; did you mean ORDERMESH_PORT?"
    ]
