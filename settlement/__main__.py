"""`python -m settlement`: persist the log to PostgreSQL and serve history until SIGTERM.

Exit status 0 after a graceful stop, 1 after a fail-stop (a record that does not decode, a
broken engine chain, an inconsistent log, a lost database) or a failed start, 2 for bad
usage. A restart resumes exactly after the last committed batch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import structlog

from ordermesh.bus.base import BusError
from ordermesh.bus.kafka import KafkaBus
from ordermesh.config import SettingsError, add_arguments
from ordermesh.markets import MarketConfigError
from ordermesh.runtime import EXIT_FATAL, run_service, service_main
from settlement.bootstrap import SettlementSettings, StartError, build
from settlement.schema import MigrationError

log = structlog.get_logger("settlement")

DATABASE_URL = "DATABASE_URL"
"""Also read for the DSN when --postgres / ORDERMESH_POSTGRES is not given."""


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m settlement`, one per setting."""
    parser = argparse.ArgumentParser(
        prog="python -m settlement",
        description=(
            "settlement, the system of record: consumes ordermesh.orders, .engine and .ledger, "
            "verifies every symbol's engine hash chain, and writes trades, orders, the "
            "double-entry ledger and 1-minute candles to PostgreSQL in batches, each batch "
            "with its consumed offsets in one transaction (exactly once across restarts). "
            "Serves ordermesh.v1.Settlement over gRPC: ListTrades, ListOrders, GetOrder, "
            "GetLedger, GetCandles (1m, 5m, 1h, 1d) and GetTicker (24h)."
        ),
        epilog=(
            "Each flag can also be set by the environment variable shown; a flag wins. "
            f"The DSN may also come from {DATABASE_URL}. Migrations (settlement/migrations) "
            "are applied on start. Exit status: 0 after SIGTERM/SIGINT, 1 after a fail-stop "
            "or a failed start (fix the cause and restart: it resumes after the last "
            "committed batch), 2 for bad usage."
        ),
    )
    add_arguments(parser, SettlementSettings)
    return parser


def database_dsn(settings: SettlementSettings, environ: Mapping[str, str] | None = None) -> str:
    """The PostgreSQL DSN: the postgres setting, else DATABASE_URL.

    Raises:
        SettingsError: neither is given.
    """
    env = os.environ if environ is None else environ
    dsn = settings.postgres or env.get(DATABASE_URL, "").strip()
    if not dsn:
        raise SettingsError(
            "PostgreSQL is required: give a DSN with --postgres, ORDERMESH_POSTGRES or "
            f"{DATABASE_URL}, e.g. --postgres postgresql://settlement@127.0.0.1:5432/settlement"
        )
    return dsn


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the settings, run the service, return the exit status."""
    return service_main(
        build_parser(),
        SettlementSettings,
        lambda settings: serve(settings, database_dsn(settings)),
        argv,
        service="settlement",
        check=database_dsn,
    )


async def serve(settings: SettlementSettings, dsn: str) -> int:
    """Run settlement on the Kafka cluster and database given; return the exit status."""
    bus = KafkaBus(settings.kafka, client_id="settlement")
    try:
        service = await build(settings, bus, dsn)
    except MarketConfigError as e:
        log.error("cannot load the market table", path=str(settings.markets), error=str(e))
        await bus.close()
        return EXIT_FATAL
    return await run_service(
        service,
        bus,
        kafka=settings.kafka,
        start_errors=(BusError, OSError, StartError, MigrationError, asyncpg.PostgresError),
    )


if __name__ == "__main__":
    sys.exit(main())
