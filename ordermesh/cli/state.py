"""What the root options decided, shared by every command: where to call, with which key."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

if TYPE_CHECKING:
    from ordermesh.client import AsyncClient, Client

DEFAULT_TARGET: Final = "127.0.0.1:50051"
DEFAULT_DATA_DIR: Final = Path(".ordermesh")
DEFAULT_TIMEOUT: Final = 10.0
KEY_FILE: Final = "api_keys.toml"

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ClientEnvironment:
    """The ORDERMESH_* variables the client commands read, named like settings fields.

    `ordermesh up` lists them with its own settings, so it does not warn about them.
    """

    target: str = ""
    api_key: str = ""
    key: str = ""
    data_dir: str = ""
    timeout: str = ""
    traceback: str = ""


CLIENT_SETTINGS: Final = (ClientEnvironment,)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One [[keys]] entry that holds its key in the clear (as `ordermesh up` writes them)."""

    name: str
    key: str
    role: str
    account_id: int | None


def read_key_file(data_dir: Path) -> list[KeyEntry]:
    """The usable entries of DATA_DIR/api_keys.toml.

    Raises:
        click.UsageError: no such file, or it is not a key file.
    """
    path = data_dir / KEY_FILE
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise click.UsageError(
            f"no key file at {path}: start the mesh there with `ordermesh up` (it writes one),"
            " or give --data-dir DIR of a running `ordermesh up`, or --api-key KEY"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise click.UsageError(f"cannot read the key file {path}: {e}") from None
    entries = document.get("keys", [])
    if not isinstance(entries, list):
        raise click.UsageError(f"{path}: [[keys]] must be an array of tables")
    return [
        KeyEntry(
            name=str(entry.get("name", "")),
            key=entry["key"],
            role=str(entry.get("role", "trader")),
            account_id=entry.get("account_id"),
        )
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("key"), str)
    ]


def key_named(data_dir: Path, name: str) -> str:
    """The key of entry `name` in DATA_DIR/api_keys.toml.

    Raises:
        click.UsageError: no file, or no entry of that name holding its key in the clear.
    """
    entries = read_key_file(data_dir)
    for entry in entries:
        if entry.name == name:
            return entry.key
    names = ", ".join(entry.name for entry in entries if entry.name) or "none"
    raise click.UsageError(
        f"no key named {name!r} in {data_dir / KEY_FILE} (names there: {names}; an entry"
        " holding only key_sha256 cannot be used, give its key with --api-key)"
    )


@dataclass(slots=True)
class State:
    """The root options, and what a command asked for (--json)."""

    target: str = DEFAULT_TARGET
    api_key: str | None = None
    key_name: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    timeout: float = DEFAULT_TIMEOUT
    json: bool = False
    """Machine-readable output, errors included (set by a command's --json)."""
    _resolved: str | None = field(default=None, repr=False)

    def key(self) -> str | None:
        """The API key to send: --key's entry, else --api-key, else none."""
        if self._resolved is None and self.key_name:
            self._resolved = key_named(self.data_dir, self.key_name)
        return self._resolved or self.api_key

    def client(self) -> Client:
        """A blocking client for the gateway (use it in a `with`)."""
        from ordermesh.client import Client  # noqa: PLC0415 - grpc is loaded only when calling

        return Client(self.target, self.key(), timeout=self.timeout)

    def async_client(self, api_key: str | None = None) -> AsyncClient:
        """An asyncio client for the gateway, with `api_key` or the chosen one."""
        from ordermesh.client import AsyncClient  # noqa: PLC0415 - as in `client`

        return AsyncClient(self.target, api_key or self.key(), timeout=self.timeout)


def state_of(ctx: click.Context) -> State:
    """The State the root command put in the context (a fresh default one in isolation)."""
    return ctx.ensure_object(State)


def json_option(command: _F) -> _F:
    """Add --json to a command: machine-readable output (and errors) for it."""

    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            state_of(ctx).json = True

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=remember,
        help="Print JSON (amounts as decimal strings, times in ISO 8601) instead of tables.",
    )(command)
