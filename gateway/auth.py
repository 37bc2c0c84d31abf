"""API keys: who is calling, which account they act for, and whether they may fund accounts.

Keys live in a TOML file named by the `api_keys` setting; nothing is built in, so a
gateway without that file serves nobody, and no account ever holds money because of a
default (DESIGN §11). The file::

    [[keys]]
    name = "desk-1"            # optional: shown in logs and metrics, never the key itself
    key_sha256 = "9f86d0..."   # sha256 of the key, 64 hex digits (preferred) ...
    # key = "..."              # ... or the key itself, at least 16 characters
    account_id = 42            # the account the key trades for; optional for an admin
    role = "trader"            # "trader", or "admin" (may also call Deposit and Withdraw)

A caller sends its key as metadata `x-api-key: <key>` or `authorization: ApiKey <key>`.
Keys are held and compared as sha256 digests only, and the comparison that admits a caller
is constant-time (`hmac.compare_digest`): timing an answer tells nothing about a key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from ordermesh.model import MAX_ACCOUNT_ID, AccountId, OrdermeshError, RejectReason

API_KEY_HEADER: Final = "x-api-key"
"""Metadata key that carries an API key."""
AUTHORIZATION_HEADER: Final = "authorization"
"""Metadata key of `ApiKey <key>` (and, in a later version, `Bearer <jwt>`)."""

_MIN_KEY: Final = 16
_MAX_KEY: Final = 256
_HEX_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
_ENTRY_KEYS: Final = {"name", "key", "key_sha256", "account_id", "role"}


class KeyFileError(ValueError):
    """The API key file is missing or malformed; the message names the entry and the rule."""


class Role(StrEnum):
    """What a key may do."""

    TRADER = "trader"
    """Trade and query for its own account."""
    ADMIN = "admin"
    """Also credit and debit any account (Deposit, Withdraw)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a key stands for."""

    name: str
    """For logs and the rate limiter: the entry's name, or a digest prefix of its key."""
    role: Role
    account_id: AccountId | None
    """The account it trades for; None for an admin key without one."""

    def trading_account(self) -> AccountId:
        """The account this caller acts for.

        Raises:
            OrdermeshError: PERMISSION_DENIED for a key that has no account.
        """
        if self.account_id is None:
            raise OrdermeshError(
                RejectReason.PERMISSION_DENIED,
                f"key {self.name!r} has no account: it may fund accounts and read market data,"
                " but not trade or read an account",
            )
        return self.account_id

    def require_admin(self, method: str) -> None:
        """Raise PERMISSION_DENIED unless this is an admin key."""
        if self.role is not Role.ADMIN:
            raise OrdermeshError(
                RejectReason.PERMISSION_DENIED,
                f"{method} needs an admin key; key {self.name!r} is a {self.role.value} key",
            )


def digest(key: str) -> bytes:
    """The sha256 of a key, the form keys are stored and compared in."""
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """The key table: key digest -> principal."""

    def __init__(self, principals: Mapping[bytes, Principal]) -> None:
        self._by_digest = {key: (key, principal) for key, principal in principals.items()}

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]]) -> Principal:
        """The principal whose key the call's metadata carries.

        Raises:
            OrdermeshError: UNAUTHENTICATED when no key is given or it is not known.
        """
        presented = presented_key(metadata)
        if not _MIN_KEY <= len(presented) <= _MAX_KEY:
            raise _unknown_key()
        wanted = digest(presented)
        found = self._by_digest.get(wanted)
        # The table is looked up by digest, which a caller cannot steer towards a stored
        # one; the equality that lets a caller in is decided in constant time all the same.
        if found is None or not hmac.compare_digest(found[0], wanted):
            raise _unknown_key()
        return found[1]

    @classmethod
    def load(cls, path: Path) -> ApiKeys:
        """Read a key file.

        Raises:
            KeyFileError: the file cannot be read or is not a valid key file.
        """
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise KeyFileError(f"cannot read the API key file {path}: {e.strerror}") from e
        return cls.parse(text, origin=str(path))

    @classmethod
    def parse(cls, text: str, origin: str = "api_keys.toml") -> ApiKeys:
        """Validate key file text; every error names the entry and the rule.

        Raises:
            KeyFileError: not TOML, unknown keys, a bad field, or a key listed twice.
        """
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise KeyFileError(f"{origin}: not valid TOML: {e}") from e
        unknown = sorted(set(document) - {"keys"})
        if unknown:
            raise KeyFileError(f"{origin}: unknown table {unknown[0]!r}; only [[keys]] is allowed")
        entries = document.get("keys")
        if not isinstance(entries, list) or not entries:
            raise KeyFileError(f"{origin}: needs at least one [[keys]] entry")
        table: dict[bytes, Principal] = {}
        for i, entry in enumerate(entries):
            where = f"{origin}: keys[{i}]"
            if not isinstance(entry, dict):
                raise KeyFileError(f"{where} must be a table")
            key_digest, principal = _parse_entry(entry, where)
            if key_digest in table:
                raise KeyFileError(f"{where}: the same key is listed twice")
            table[key_digest] = principal
        return cls(table)


def presented_key(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The API key in `x-api-key`, else in `authorization: ApiKey <key>`.

    Raises:
        OrdermeshError: UNAUTHENTICATED when there is none (naming how to send one).
    """
    authorization = ""
    for name, value in metadata:
        if not isinstance(value, str):
            continue
        if name == API_KEY_HEADER:
            return value.strip()
        if name == AUTHORIZATION_HEADER and not authorization:
            authorization = value.strip()
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() == "apikey" and credential.strip():
        return credential.strip()
    if scheme.lower() == "bearer":
        raise OrdermeshError(
            RejectReason.UNAUTHENTICATED,
            "bearer tokens are not accepted yet; send an API key as metadata x-api-key",
        )
    raise OrdermeshError(
        RejectReason.UNAUTHENTICATED,
        "no API key: send one as metadata x-api-key, or authorization: ApiKey <key>",
    )


def _unknown_key() -> OrdermeshError:
    return OrdermeshError(RejectReason.UNAUTHENTICATED, "the API key is not valid")


def _parse_entry(entry: dict[str, Any], where: str) -> tuple[bytes, Principal]:
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_ENTRY_KEYS))
        raise KeyFileError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {allowed}")
    key_digest = _entry_digest(entry, where)
    role_text = entry.get("role")
    if role_text not in {role.value for role in Role}:
        raise KeyFileError(f"{where}: role must be trader or admin, was {role_text!r}")
    role = Role(role_text)
    account = entry.get("account_id")
    if account is None:
        if role is Role.TRADER:
            raise KeyFileError(f"{where}: a trader key needs an account_id")
    elif isinstance(account, bool) or not isinstance(account, int):
        raise KeyFileError(f"{where}: account_id must be an integer, was {account!r}")
    elif not 0 < account <= MAX_ACCOUNT_ID:
        raise KeyFileError(
            f"{where}: account_id must be 1..{MAX_ACCOUNT_ID} (0 is the fee account), was {account}"
        )
    name = entry.get("name", f"key-{key_digest.hex()[:8]}")
    if not isinstance(name, str) or not name:
        raise KeyFileError(f"{where}: name must be a non-empty string, was {name!r}")
    account_id = AccountId(account) if account is not None else None
    return key_digest, Principal(name, role, account_id)


def _entry_digest(entry: dict[str, Any], where: str) -> bytes:
    key, hashed = entry.get("key"), entry.get("key_sha256")
    if (key is None) == (hashed is None):
        raise KeyFileError(f"{where}: give exactly one of key and key_sha256")
    if hashed is not None:
        if not isinstance(hashed, str) or _HEX_DIGEST.fullmatch(hashed.lower()) is None:
            raise KeyFileError(f"{where}: key_sha256 must be 64 hex digits")
        return bytes.fromhex(hashed)
    if not isinstance(key, str) or not _MIN_KEY <= len(key) <= _MAX_KEY or key != key.strip():
        raise KeyFileError(
            f"{where}: key must be {_MIN_KEY} to {_MAX_KEY} characters without surrounding spaces"
        )
    return digest(key)
