"""One `ordermesh up` per test module, with a key file of our own: admin, traders 1 to 8."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tests.e2e.mesh_process import Up, mesh_ports

TRADERS = range(1, 9)


def trader_key(account: int) -> str:
    return f"sdk-test-trader-key-{account:04d}"


ADMIN_KEY = "sdk-test-admin-key-0000"


def write_keys(path: Path, accounts: Iterable[int] = TRADERS) -> None:
    """Keys for the admin and `accounts` (1 and 2 keep the demo names the tour reads)."""
    lines = ["[[keys]]", 'name = "admin"', f'key = "{ADMIN_KEY}"', 'role = "admin"', ""]
    for account in accounts:
        name = f"demo-trader-{account}" if account <= 2 else f"trader-{account}"
        lines += ["[[keys]]", f'name = "{name}"', f'key = "{trader_key(account)}"']
        lines += [f"account_id = {account}", 'role = "trader"', ""]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("\n".join(lines))


async def start_mesh(root: Path) -> Up:
    """`ordermesh up` on a new data directory under `root`, with the keys above."""
    data = root / "data"
    data.mkdir()
    write_keys(data / "api_keys.toml")
    up = Up(data, mesh_ports())
    await up.start()
    return up
