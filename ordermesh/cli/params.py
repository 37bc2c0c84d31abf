"""Parameter types and options shared by the commands: decimal amounts, times, --limit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import click

_F = TypeVar("_F", bound=Callable[..., Any])


class DecimalType(click.ParamType[Decimal, object]):
    """A decimal amount, kept exact (never a float); the gateway checks tick, lot and range."""

    name = "DECIMAL"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Decimal:
        """Parse `value`; a usage error names the parameter when it is not a number."""
        if isinstance(value, Decimal):
            return value
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            self.fail(f"{value!r} is not a decimal number (e.g. 0.5 or 30000.25)", param, ctx)
        if not number.is_finite():
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class TimeType(click.ParamType[datetime, object]):
    """A time in ISO 8601 ("2025-01-31T12:00", UTC unless an offset is given)."""

    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        """Parse `value` as ISO 8601; naive times are UTC."""
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2025-01-31T12:00)", param, ctx)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


DECIMAL = DecimalType()
TIME = TimeType()


def limit_option(
    maximum: int, default: int, text: str = "At most this many."
) -> Callable[[_F], _F]:
    """Add --limit (1 to `maximum`, `default` when left out) to a command."""
    return click.option(
        "--limit",
        type=click.IntRange(1, maximum),
        default=default,
        show_default=True,
        help=text,
    )
