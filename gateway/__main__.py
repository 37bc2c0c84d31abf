"""`python -m gateway`: serve the public API on Kafka until SIGTERM, or until a fail-stop.

Exit status 0 after a graceful stop, 1 after a fail-stop or a failed start, 2 for bad usage
(a missing Kafka address or API key file, a setting that does not parse).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import structlog

from gateway.auth import KeyFileError
from gateway.bootstrap import GatewaySettings, build
from ordermesh.bus.base import BusError
from ordermesh.bus.kafka import KafkaBus
from ordermesh.config import SettingsError, add_arguments
from ordermesh.markets import MarketConfigError
from ordermesh.runtime import EXIT_FATAL, run_service, service_main

log = structlog.get_logger("gateway")


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m gateway`, one per setting."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description=(
            "The ordermesh gateway, the public gRPC API (ordermesh.v1.Gateway): checks each "
            "request, then routes orders and funding to ubscore, book reads to the matcher, and "
            "history to settlement. Every call needs an API key (metadata x-api-key); keys come "
            "from the --api-keys file, a TOML list of [[keys]] entries: key_sha256 (or key), "
            "account_id, role (trader or admin; only admin keys may Deposit or Withdraw)."
        ),
        epilog=(
            "Each flag can also be set by the environment variable shown; a flag wins. "
            "Exit status: 0 after SIGTERM/SIGINT, 1 after a fail-stop or a failed start, "
            "2 for bad usage."
        ),
    )
    add_arguments(parser, GatewaySettings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the settings, run the gateway, return the exit status."""
    return service_main(
        build_parser(), GatewaySettings, serve, argv, service="gateway", check=_require_api_keys
    )


def _require_api_keys(settings: GatewaySettings) -> None:
    if not settings.api_keys:
        raise SettingsError(
            "an API key file is required: --api-keys or ORDERMESH_API_KEYS, a TOML file of "
            "[[keys]] entries; the gateway has no built-in keys"
        )


async def serve(settings: GatewaySettings) -> int:
    """Run the gateway on the Kafka cluster the settings name; return the exit status."""
    bus = KafkaBus(settings.kafka, client_id="gateway")
    try:
        service = build(settings, bus)
    except (MarketConfigError, KeyFileError) as e:
        log.error("cannot load configuration", error=str(e))
        await bus.close()
        return EXIT_FATAL
    return await run_service(service, bus, kafka=settings.kafka, start_errors=(BusError, OSError))


if __name__ == "__main__":
    sys.exit(main())
