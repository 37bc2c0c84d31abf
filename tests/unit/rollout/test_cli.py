"""`python -m ordermesh.rollout`: what --help teaches and how bad usage is refused."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from ordermesh.rollout import cli

LOCAL = [
    "local", "--listen", "127.0.0.1:1", "--preview-listen", "127.0.0.1:2",
    "--blue-port", "3", "--green-port", "4",
]  # fmt: skip


def test_help_teaches_the_steps_and_exit_statuses(capsys: pytest.CaptureFixture[str]):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "Steps: apply, ready, smoke-health, smoke-read, flip, drain, scale-down." in text
    assert "exit status 1" in text
    assert "kubectl" in text
    assert "local" in text


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ([], "give the gateway's command after --"),
        (["--", "python", "-m", "gateway"], "a probe API key is needed"),
        (["--green-port", "3", "--", "gw"], "blue and green need ports of their own"),
    ],
)
def test_bad_usage_is_status_2_saying_why(
    extra: list[str],
    complaint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv(cli.PROBE_KEY_VARIABLE, raising=False)
    assert cli.main([*LOCAL, "--state-dir", str(tmp_path), *extra]) == 2
    assert complaint in capsys.readouterr().err


def test_ordermesh_rollout_is_this_command():
    from ordermesh.cli.app import cli as ordermesh  # noqa: PLC0415 - the command under test

    assert ordermesh.get_command(click.Context(ordermesh), "rollout") is cli.rollout
