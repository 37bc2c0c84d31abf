"""The `ordermesh` command through its installed entry point."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "ordermesh"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_help_lists_the_commands():
    done = run("--help")
    assert done.returncode == 0
    assert "up" in done.stdout
    assert "markets" in done.stdout


def test_no_command_prints_usage_and_fails():
    done = run()
    assert done.returncode == 2
    assert "Usage: ordermesh" in done.stderr


def test_markets_lists_the_shipped_symbols():
    done = run("markets")
    assert done.returncode == 0, done.stderr
    for symbol in ("BTC-USDT", "ETH-USDT", "ETH-BTC"):
        assert symbol in done.stdout


def test_markets_reports_a_broken_file_without_a_traceback(tmp_path: Path):
    broken = tmp_path / "markets.toml"
    broken.write_text('[[assets]]\ncode = "BTC"\nscale = 99\n')
    done = run("markets", str(broken))
    assert done.returncode == 1
    assert "scale of BTC must be 0..18, was 99" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [["--version"]])
def test_version(argv):
    done = run(*argv)
    assert done.returncode == 0
    assert done.stdout.startswith("ordermesh, version ")


def test_up_help_says_what_it_starts_where_data_goes_and_how_to_reset():
    done = run("up", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for expected in (
        "gateway",
        "ubscore",
        "matcher",
        "settlement",
        "embedded PostgreSQL",
        "--data-dir",
        "default ./.ordermesh",
        "delete the data directory",
        "--kafka",
        "--postgres",
        "--gateway-port",
        "--metrics-port",
    ):
        assert expected in text


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--host", "192.0.2.1"], "host must be a loopback address"),
        (["--gateway-port", "70000"], "ports must be 0..65535, was 70000"),
        (["--fsync", "sometimes"], "fsync must be one of always, batch, never"),
        (["--metrics-port", "many"], "--metrics-port='many' is not valid"),
        (["--rate-per-second", "0"], "rate_per_second must be above 0, was 0.0"),
        (["--burst", "0"], "burst must be at least 1, was 0"),
    ],
)
def test_up_refuses_bad_settings_before_starting_anything(tmp_path: Path, flags, message):
    done = run("up", "--data-dir", str(tmp_path / "data"), *flags)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "data").exists()
