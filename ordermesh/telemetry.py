"""Structured logging: one JSON object per line, with the current trace and span ids."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _add_trace_ids(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add trace_id/span_id of the active OpenTelemetry span, if there is one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def configure_logging(level: str = "info", fmt: str = "json", *, service: str = "") -> None:
    """Send structlog (and stdlib logging) to stderr as JSON or readable console lines.

    Raises:
        ValueError: an unknown level or format, naming the ones allowed.
    """
    if level not in _LEVELS:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}, was {level!r}")
    if fmt not in {"json", "console"}:
        raise ValueError(f"log format must be json or console, was {fmt!r}")
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=_LEVELS[level],
        stream=sys.stderr,
        format="%(name)s %(levelname)s %(message)s",
        force=True,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
