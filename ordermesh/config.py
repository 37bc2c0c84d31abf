"""Settings from flags, then ORDERMESH_* environment variables, then defaults.

A service declares its settings as a frozen dataclass whose fields carry `setting(...)`
metadata; `load_settings` builds the argparse flags from it, so `--help` lists every
setting with its environment variable and default, and both sources share one parser.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Final, TypeVar

from ordermesh.markets import DEFAULT_MARKETS_PATH

ENV_PREFIX: Final = "ORDERMESH_"
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
