"""Output: JSON for scripts (stable field names, decimals as strings), rich tables for people."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

import click
from rich.console import Console, RenderableType
from rich.table import Table

from ordermesh.cli.state import state_of

T = TypeVar("T")
Column = tuple[str, Callable[[T], object]]
"""A table column: its header and how to get the cell's value from a row."""

PIPE_WIDTH = 160
"""Table width when stdout is not a terminal (pipes, files, tests): no wrapping at 80."""


@cache
def console() -> Console:
    """The console tables are printed on (stdout; plain text when it is not a terminal)."""
    terminal = Console(highlight=False)
    if terminal.is_terminal:
        return terminal
    return Console(highlight=False, width=PIPE_WIDTH)


def decimal_text(value: Decimal) -> str:
    """A decimal in plain notation, never exponent form ("0.00000001", "30000")."""
    return format(value, "f")


def _scalar(value: object) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value.name if isinstance(value, enum.Enum) else value


def to_jsonable(value: object) -> Any:
    """`value` as JSON types: dataclasses by field name, Decimal as text, times in ISO 8601.

    Floats (durations, never amounts: the client gives every amount as a Decimal) pass as is.
    """
    if value is None or isinstance(
        value, bool | int | float | str | Decimal | datetime | enum.Enum
    ):
        return _scalar(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [to_jsonable(item) for item in value]
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def emit(ctx: click.Context, data: object, human: Callable[[], RenderableType | None]) -> None:
    """Print `data` as JSON with --json, else what `human` renders (if anything)."""
    if state_of(ctx).json:
        click.echo(json.dumps(to_jsonable(data), indent=2))
        return
    renderable = human()
    if renderable is not None:
        console().print(renderable)


def cell(value: object) -> str:
    """A table cell: decimals plain, times to the second (UTC), None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def table(title: str | None, rows: Iterable[T], columns: Sequence[Column[T]]) -> Table:
    """A table of `rows`, one column per (header, getter); numbers right-aligned."""
    rows = list(rows)
    result = Table(title=title, title_justify="left", header_style="bold")
    values = [[getter(row) for _, getter in columns] for row in rows]
    for index, (header, _) in enumerate(columns):
        numeric = bool(values) and all(
            isinstance(line[index], int | Decimal) and not isinstance(line[index], bool)
            for line in values
            if line[index] is not None
        )
        result.add_column(header, justify="right" if numeric else "left")
    for line in values:
        result.add_row(*(cell(value) for value in line))
    return result


def rows_table(title: str | None, rows: Sequence[Mapping[str, object]]) -> Table:
    """A table of dicts sharing their keys (the first row's keys are the headers).

    With no rows, a one-cell table that says "(none)" rather than an empty line.
    """
    if not rows:
        empty = Table(title=title, title_justify="left", show_header=False, box=None)
        empty.add_column(style="dim")
        empty.add_row("(none)")
        return empty
    headers = list(rows[0])
    columns: list[Column[Mapping[str, object]]] = [
        (header.replace("_", " "), _getter(header)) for header in headers
    ]
    return table(title, rows, columns)


def _getter(key: str) -> Callable[[Mapping[str, object]], object]:
    return lambda row: row[key]


def fields_table(title: str | None, item: object, names: Sequence[str] | None = None) -> Table:
    """One record as two columns: field, value (a dataclass's fields, or `names` of it)."""
    result = Table(title=title, title_justify="left", show_header=False)
    result.add_column(style="bold")
    result.add_column()
    shown = names or [f.name for f in dataclasses.fields(item)]  # type: ignore[arg-type]
    for name in shown:
        result.add_row(name.replace("_", " "), cell(getattr(item, name)))
    return result
