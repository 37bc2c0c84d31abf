"""`python -m matcher`: one matcher instance on Kafka, until SIGTERM or a fail-stop.

Exit status: 0 after a graceful stop, 1 after a fail-stop (the next start recovers from
snapshot + log), 2 for a bad flag, environment variable or markets file, 3 when another
instance took a partition over (fenced; a restart stands by).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Final

import structlog

from matcher.bootstrap import MatcherSettings, build
from ordermesh.bus.base import BusError
from ordermesh.bus.kafka import KafkaBus
from ordermesh.config import (
    ENV_PREFIX,
    SettingsError,
    add_arguments,
    load_settings,
    unknown_environment,
)
from ordermesh.markets import MarketConfigError, MarketTable, load_markets
from ordermesh.runtime import EXIT_FATAL
from ordermesh.telemetry import configure_logging

EXIT_USAGE: Final = 2

log = structlog.get_logger("matcher")


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m matcher`: one per setting, each with its variable and default."""
    parser = argparse.ArgumentParser(
        prog="python -m matcher",
        description=(
            "The ordermesh matcher: consumes ordermesh.orders in a consumer group (each"
            " symbol has one owner), matches price-time per symbol, and publishes"
            " ordermesh.engine in Kafka transactions with the consumed offsets (exactly"
            " once). Serves ordermesh.v1.Matcher (GetOrderBook, GetOrder), gRPC health and"
            " reflection, and Prometheus metrics."
        ),
        epilog=(
            f"Every setting can also come from its {ENV_PREFIX}* environment variable; a flag"
            " wins over the variable. Exit status: 0 stopped, 1 fail-stop, 2 bad configuration,"
            " 3 fenced by another instance that took over (--role standby and"
            " ordermesh.v1.Admin/Promote: python -m ordermesh.handover)."
        ),
    )
    add_arguments(parser, MatcherSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags and environment, run the matcher; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(MatcherSettings, args)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not settings.kafka:
        print(
            f"error: --kafka (or {ENV_PREFIX}KAFKA) is required: the Kafka bootstrap servers,"
            " e.g. --kafka 127.0.0.1:9092. To run the whole mesh in one process without"
            " Kafka, use `ordermesh up`.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        markets = load_markets(settings.markets)
    except MarketConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format, service="matcher")
    for warning in unknown_environment([MatcherSettings]):
        log.warning(warning)
    return asyncio.run(_serve(settings, markets))


async def _serve(settings: MatcherSettings, markets: MarketTable) -> int:
    bus = KafkaBus(
        settings.kafka,
        client_id="ordermesh-matcher",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_ms,
    )
    try:
        service = build(settings, bus, markets=markets)
        try:
            await service.start()
        except (BusError, OSError) as e:
            log.error("cannot start", error=str(e), kafka=settings.kafka, port=settings.port)
            await service.stop()
            return EXIT_FATAL
        service.server.install_signal_handlers()
        return await service.run()
    finally:
        await bus.close()


if __name__ == "__main__":
    sys.exit(main())
