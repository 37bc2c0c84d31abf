"""Settings from flags, then ORDERMESH_* environment variables, then defaults.

A service declares its settings as a frozen dataclass whose fields carry `setting(...)`
metadata; `load_settings` builds the argparse flags from it, so `--help` lists every
setting with its environment variable and default, and both sources share one parser.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Final, TypeVar

from ordermesh.markets import DEFAULT_MARKETS_PATH

ENV_PREFIX: Final = "ORDERMESH_"
PORT_MAX: Final = 65_535
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("json", "console")
_TOPIC_PREFIX: Final = re.compile(r"[A-Za-z0-9._-]{0,200}")
_TESTING_PREFIXES: Final = ("ORDERMESH_TEST_", "ORDERMESH_CACHE")  # the test harness's own


class SettingsError(ValueError):
    """A flag or environment variable with a value that cannot be used; says which and why."""


def setting(default: Any, help: str, *, parse: Callable[[str], Any] | None = None) -> Any:
    """A dataclass field that is also a flag `--name-with-dashes` and env `ORDERMESH_NAME`.

    Args:
        default: the value when neither flag nor environment sets it.
        help: one line for `--help`.
        parse: str -> value; defaults to the type of `default` (int, float, str, Path, bool).
    """
    return field(default=default, metadata={"help": help, "parse": parse})


def _parser_for(default: Any) -> Callable[[str], Any]:
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, int | float | Path):
        return type(default)
    return str


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true/false, was {text!r}")


@dataclass(frozen=True, slots=True)
class CommonSettings:
    """What every ordermesh process can be told."""

    markets: Path = setting(DEFAULT_MARKETS_PATH, "markets.toml: the assets and markets to trade")
    log_level: str = setting("info", "debug, info, warning or error")
    log_format: str = setting("json", "json (one object per line) or console (for people)")


_S = TypeVar("_S")


def add_arguments(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """Add one flag per setting of dataclass `cls`, documenting its variable and default."""
    for f in fields(cls):
        env = ENV_PREFIX + f.name.upper()
        default = f.default if f.default is not MISSING else None
        shown = "" if default == "" else f" (default: {default})"
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata.get('help', '')}{shown} [env {env}]",
        )


def load_settings(
    cls: type[_S],
    namespace: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
) -> _S:
    """Build `cls` from parsed flags (winning), then the environment, then defaults.

    Raises:
        SettingsError: a value does not parse; names the flag or variable and the value.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        flag = getattr(namespace, f.name, None) if namespace is not None else None
        env_name = ENV_PREFIX + f.name.upper()
        raw, source = (
            (flag, "--" + f.name.replace("_", "-"))
            if flag is not None
            else (
                env.get(env_name),
                env_name,
            )
        )
        if raw is None:
            continue
        parse = f.metadata.get("parse") or _parser_for(f.default)
        try:
            values[f.name] = parse(raw)
        except ValueError as e:
            raise SettingsError(f"{source}={raw!r} is not valid: {e}") from e
    return cls(**values)


def unknown_environment(
    known: Sequence[type[Any]], environ: Mapping[str, str] | None = None
) -> list[str]:
    """Warnings for ORDERMESH_* variables no settings class knows (likely typos)."""
    env = os.environ if environ is None else environ
    names = {ENV_PREFIX + f.name.upper() for cls in known for f in fields(cls)}
    warnings = []
    for name in sorted(env):
        if (
            name.startswith(ENV_PREFIX)
            and name not in names
            and not name.startswith(_TESTING_PREFIXES)
        ):
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"ignoring unknown environment variable {name}{hint}")
    return warnings


def check_ranges(
    settings: object,
    *,
    ports: Sequence[str] = ("port", "metrics_port"),
    at_least_one: Sequence[str] = (),
    above_zero: Sequence[str] = (),
    not_negative: Sequence[str] = ("grace_seconds",),
) -> None:
    """Raise SettingsError naming the first numeric setting outside its range.

    Args:
        settings: a settings dataclass.
        ports: 0..PORT_MAX (0 picks a free port or turns a server off).
        at_least_one: counts that must be 1 or more.
        above_zero: durations and rates that must be positive.
        not_negative: durations that may be 0.
    """
    for name in ports:
        value = getattr(settings, name)
        if not 0 <= value <= PORT_MAX:
            raise SettingsError(f"{name} must be 0..{PORT_MAX}, was {value}")
    for name in at_least_one:
        if getattr(settings, name) < 1:
            raise SettingsError(f"{name} must be at least 1, was {getattr(settings, name)}")
    for name in above_zero:
        if not getattr(settings, name) > 0:
            raise SettingsError(f"{name} must be above 0, was {getattr(settings, name)}")
    for name in not_negative:
        if getattr(settings, name) < 0:
            raise SettingsError(f"{name} must be 0 or more, was {getattr(settings, name)}")


def check_names(settings: Any) -> None:
    """Raise SettingsError for an empty host, a bad topic_prefix or log level or format.

    A topic_prefix holds up to 200 of [A-Za-z0-9._-].
    """
    if not settings.host:
        raise SettingsError("host must not be empty")
    prefix = settings.topic_prefix
    if _TOPIC_PREFIX.fullmatch(prefix) is None:
        raise SettingsError(f"topic_prefix may hold up to 200 of A-Z a-z 0-9 . _ -, was {prefix!r}")
    if settings.log_level not in LOG_LEVELS:
        raise SettingsError(
            f"log_level must be one of {', '.join(LOG_LEVELS)}, was {settings.log_level!r}"
        )
    if settings.log_format not in LOG_FORMATS:
        raise SettingsError(f"log_format must be json or console, was {settings.log_format!r}")
