"""The README's quickstart runs as shown against a real `ordermesh up`."""

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.mesh_process import Up, clean_environment, free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


@pytest_asyncio.fixture
async def up(tmp_path: Path) -> AsyncIterator[Up]:
    names = ("gateway", "ubscore", "matcher", "settlement", "metrics")
    process = Up(tmp_path / "data", dict(zip(names, free_ports(len(names)), strict=True)))
    try:
        yield process
    finally:
        await process.kill()


@pytest.mark.asyncio
async def test_the_quickstart_trades_and_shows_a_refusal(up: Up) -> None:
    await up.start()
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        str(QUICKSTART),
        f"--gateway={up.gateway}",
        f"--data-dir={up.data_dir}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=clean_environment(),
    )
    output, _ = await asyncio.wait_for(run.communicate(), 60)
    text = output.decode()
    assert run.returncode == 0, text
    assert "bob's buy: ORDER_STATUS_FILLED" in text
    assert "filled 0.2 at 30000, fee 0.0004 BTC" in text  # maker's price; taker pays 20 bps
    assert "bob holds 0.1996 BTC (0 frozen)" in text
    assert "bob holds 44000 USDT (0 frozen)" in text  # the 20 USDT price improvement came back
    assert "refused: INVALID_ARGUMENT INVALID_PRICE - price has 3 decimals" in text
