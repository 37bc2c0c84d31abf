"""`python -m ubscore`: run one ubscore shard on Kafka until SIGTERM, or until a fail-stop.

Exit status 0 after a graceful stop (a snapshot is saved on the way out), 1 after a
fail-stop or a failed start (the next start recovers from snapshot + log), 2 for bad usage,
3 when another instance took the shard over (fenced; a restart stands by).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import structlog

from ordermesh.bus.base import BusError
from ordermesh.bus.kafka import KafkaBus
from ordermesh.config import add_arguments
from ordermesh.markets import MarketConfigError
from ordermesh.runtime import EXIT_FATAL, run_service, service_main
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
            "or a failed start (restart it: it recovers from snapshot + log), 2 for bad usage, "
            "3 when fenced by another instance that took the shard over (--role standby "
            "and ordermesh.v1.Admin/Promote: python -m ordermesh.handover)."
        ),
    )
    add_arguments(parser, UBSCoreSettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the settings, run the service, return the exit status."""
    return service_main(build_parser(), UBSCoreSettings, serve, argv, service="ubscore")


async def serve(settings: UBSCoreSettings) -> int:
    """Run one shard on the Kafka cluster the settings name; return the exit status."""
    bus = KafkaBus(settings.kafka, client_id=f"ubscore-{settings.shard_index}")
    try:
        service = build(settings, bus)
    except MarketConfigError as e:
        log.error("cannot load the market table", path=str(settings.markets), error=str(e))
        await bus.close()
        return EXIT_FATAL
    return await run_service(service, bus, kafka=settings.kafka, start_errors=(BusError, OSError))


if __name__ == "__main__":
    sys.exit(main())
