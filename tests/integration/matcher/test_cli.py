"""`python -m matcher --help` and the configuration errors it refuses to start with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from matcher.bootstrap import MatcherSettings

ROOT = Path(__file__).resolve().parents[3]


def test_help_teaches_every_setting_and_bad_settings_are_refused() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "matcher", "--help"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    for name in MatcherSettings.__dataclass_fields__:
        assert f"--{name.replace('_', '-')}" in shown
        assert f"ORDERMESH_{name.upper()}" in shown.replace("\n", "").replace(" ", "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERMESH_")}
    missing = subprocess.run([sys.executable, "-m", "matcher"], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert missing.returncode == 2
    assert "--kafka (or ORDERMESH_KAFKA) is required" in missing.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "matcher", "--kafka", "127.0.0.1:1", "--max-batch", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "max_batch must be at least 1, was 0" in bad.stderr
    env_bad = subprocess.run(
        [sys.executable, "-m", "matcher"], cwd=ROOT, capture_output=True, text=True,
        env={**env, "ORDERMESH_PORT": "http"}, check=False,
    )  # fmt: skip
    assert env_bad.returncode == 2
    assert "ORDERMESH_PORT='http' is not valid" in env_bad.stderr
