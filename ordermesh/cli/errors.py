"""Errors as a person (or, with --json, a script) needs them: one message and an exit status."""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING, Any, Final

import click

if TYPE_CHECKING:
    from ordermesh.cli.state import State

EXIT_REFUSED: Final = 1
"""The gateway (or a check before calling it) refused: the reason and field are printed."""
EXIT_USAGE: Final = 2
"""A bad flag or argument (click's usage errors use this status too)."""
EXIT_UNREACHABLE: Final = 3
"""The gateway could not be reached, or did not answer within --timeout."""
EXIT_INTERRUPTED: Final = 130


class CommandFailure(click.ClickException):
    """A refused command (exit 1): `error: ...` on stderr, or with --json a JSON object.

    Args:
        message: the line(s) for a person.
        details: the JSON object printed under "error" with --json.
        as_json: print `details` instead of `message`.
    """

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, details: dict[str, Any], *, as_json: bool = False) -> None:
        super().__init__(message)
        self.details = details
        self.as_json = as_json

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the error on stderr."""
        if self.as_json:
            payload = {"error": {**self.details, "exit_code": self.exit_code}}
            click.echo(json.dumps(payload, indent=2), err=file is None, file=file)
        else:
            click.echo(f"error: {self.message}", err=file is None, file=file)


class UsageFailure(CommandFailure):
    """A command given what it cannot use (exit 2)."""

    exit_code = EXIT_USAGE


class UnreachableFailure(CommandFailure):
    """The gateway could not be reached or did not answer in time (exit 3)."""

    exit_code = EXIT_UNREACHABLE


def refusal(state: State | None, message: str, code: str) -> CommandFailure:
    """A refusal found before or after calling the gateway (exit 1), e.g. a rejected order."""
    as_json = state.json if state is not None else False
    details = {"code": code, "reason": code, "message": message, "metadata": {}}
    return CommandFailure(message, details, as_json=as_json)


def failure_from(error: Exception, state: State | None) -> CommandFailure | None:
    """The CommandFailure for an exception a command let out, or None if it is unexpected."""
    from ordermesh.client import ClientError  # noqa: PLC0415 - grpc only once a call failed

    if isinstance(error, ClientError):
        return _client_failure(error, state)
    return None


def _client_failure(error: Any, state: State | None) -> CommandFailure:
    import grpc  # noqa: PLC0415 - loaded with the client already

    code: grpc.StatusCode = error.code
    reason: str = error.reason
    message: str = error.message
    metadata: dict[str, str] = dict(error.metadata)
    target = state.target if state is not None else "the gateway"
    as_json = state.json if state is not None else False
    details: dict[str, Any] = {
        "code": code.name,
        "reason": reason,
        "message": message,
        "metadata": metadata,
    }
    if code is grpc.StatusCode.UNAVAILABLE and not reason:
        text = (
            f"cannot reach the gateway at {target}: {message}\n"
            "  Is the mesh running? Start one with `ordermesh up` (or `make run`), or point"
            " --target / ORDERMESH_TARGET at it."
        )
        return UnreachableFailure(text, details, as_json=as_json)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        seconds = f"{state.timeout:g} s" if state is not None else "the deadline"
        text = (
            f"no answer from the gateway at {target} within {seconds}: {message}\n"
            "  An order or cancel may still have been taken: check with `ordermesh order get"
            " --client-order-id ID`. A longer --timeout waits more."
        )
        return UnreachableFailure(text, details, as_json=as_json)
    return CommandFailure(
        _refusal_text(code.name, reason, message, metadata), details, as_json=as_json
    )


def _refusal_text(code: str, reason: str, message: str, metadata: dict[str, str]) -> str:
    head = f"{reason} ({code})" if reason and reason != code else code
    lines = [f"{head}: {message}"]
    if "field" in metadata:
        lines.append(f"  field: {metadata['field']}")
    others = {name: value for name, value in metadata.items() if name != "field"}
    lines.extend(f"  {name}: {value}" for name, value in sorted(others.items()))
    if code == "UNAUTHENTICATED":
        lines.append(
            "  Give a key: --key NAME (from the api_keys.toml of `ordermesh up`),"
            " --api-key KEY, or ORDERMESH_API_KEY."
        )
    return "\n".join(lines)
