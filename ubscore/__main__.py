"""`python -m ubscore`: run one ubscore shard on Kafka until SIGTERM, or until a fail-stop.

Exit status 0 after a graceful stop (a snapshot is saved on the way out), 1 after a
fail-stop or a failed start (the next start recovers from snapshot + log), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import structlog

from ordermesh.bus.base import BusError
from ordermesh.bus.kafka import KafkaBus
from ordermesh.config import SettingsError, add_arguments, load_settings, unknown_environment
from ordermesh.markets import MarketConfigError
from ordermesh.runtime import EXIT_FATAL
from ordermesh.telemetry import configure_logging
from ubscore.bootstrap import UBSCoreSettings, build

log = structlog.get_logger("ubscore")


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m ubscore`, one per setting."""
    parser = argparse.ArgumentParser(
        prog="python -m ubscore",
        description=(
            "ubscore, the balance authority: checks and freezes funds, logs every order and "
            "funding event to Kafka before it acks, and applies the matcher's trades."
        ),
        epilog=(
            "Each flag can also be set by the environment variable shown; a flag wins. "
            "Exit status: 0 after SIGTERM/SIGINT (a snapshot is saved), 1 after a fail-stop "
            "or a failed start (restart it: it recovers from snapshot + log), 2 for bad usage."
        ),
    )
    add_arguments(parser, UBSCoreSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the settings, run the service, return the exit status."""
    parser = build_parser()
    try:
        settings = load_settings(UBSCoreSettings, parser.parse_args(argv))
        if not settings.kafka:
            raise SettingsError(
                "Kafka is required: give its bootstrap servers with --kafka or ORDERMESH_KAFKA, "
                "e.g. --kafka 127.0.0.1:9092"
            )
        configure_logging(settings.log_level, settings.log_format, service="ubscore")
    except (SettingsError, ValueError) as e:
        parser.error(str(e))
    for warning in unknown_environment([UBSCoreSettings]):
        log.warning(warning)
    return asyncio.run(serve(settings))


async def serve(settings: UBSCoreSettings) -> int:
    """Run one shard on the Kafka cluster the settings name; return the exit status."""
    bus = KafkaBus(settings.kafka, client_id=f"ubscore-{settings.shard_index}")
    try:
        service = build(settings, bus)
    except MarketConfigError as e:
        log.error("cannot load the market table", path=str(settings.markets), error=str(e))
        await bus.close()
        return EXIT_FATAL
    try:
        await service.start()
    except (BusError, OSError) as e:
        log.error("cannot start", error=str(e), kafka=settings.kafka)
        await service.stop()
        await bus.close()
        return EXIT_FATAL
    service.server.install_signal_handlers()
    try:
        return await service.run()
    finally:
        await bus.close()


if __name__ == "__main__":
    sys.exit(main())
