"""The `ordermesh` command: run the mesh, trade, watch a market, and run the demo.

`main` is the console entry point (`ordermesh.cli:main`). Commands are registered by name
in `ordermesh.cli.app.COMMANDS` and imported only when used, so `ordermesh up` does not pay
for the client and `ordermesh balances` does not pay for the services.
"""

from __future__ import annotations

from ordermesh.cli.app import COMMANDS, cli, main

__all__ = ["COMMANDS", "cli", "main"]
