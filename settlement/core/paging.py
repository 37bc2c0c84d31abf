"""Page sizes and opaque page tokens for keyset pagination.

A token is the URL-safe base64 (no padding) of a JSON list: the name of the listing it
belongs to, then the sort key of the last row served. Tokens are opaque to clients; one
that does not decode, or belongs to another listing, is INVALID_ARGUMENT naming
page_token.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Final

from ordermesh.model import OrdermeshError, RejectReason

DEFAULT_PAGE_SIZE: Final = 100
"""Rows per page when the request says 0."""
MAX_PAGE_SIZE: Final = 1000
"""The most rows one page may ask for."""

_MAX_TOKEN: Final = 512
_INT64: Final = range(-(2**63), 2**63)

Key = tuple[int | str, ...]
"""A row's sort key, as the listing's query compares it."""


def _invalid(field: str, message: str) -> OrdermeshError:
    return OrdermeshError(RejectReason.INVALID_ARGUMENT, message, field=field)


def page_size(requested: int, field: str = "page_size") -> int:
    """The page size to use: DEFAULT_PAGE_SIZE for 0, else `requested` up to MAX_PAGE_SIZE.

    Raises:
        OrdermeshError: INVALID_ARGUMENT naming `field` when above MAX_PAGE_SIZE.
    """
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if not 0 < requested <= MAX_PAGE_SIZE:
        allowed = f"1..{MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE})"
        raise _invalid(field, f"{field} must be {allowed}, was {requested}")
    return requested


def encode_token(listing: str, key: Key) -> str:
    """The page token that continues `listing` after the row whose sort key is `key`."""
    text = json.dumps([listing, *key], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_token(token: str, listing: str, shape: Sequence[type]) -> Key | None:
    """The sort key a page token carries; None for "" (the first page).

    Args:
        token: the request's page_token.
        listing: the listing the token must belong to.
        shape: the type of each key part (int or str).

    Raises:
        OrdermeshError: INVALID_ARGUMENT naming page_token for a token that is not one of
            this listing's.
    """
    if not token:
        return None
    problem = f"page_token is not a token of this listing ({listing}); pass the next_page_token "
    problem += "of the previous page unchanged, or none for the first page"
    if len(token) > _MAX_TOKEN:
        raise _invalid("page_token", problem)
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        parts = json.loads(raw.decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid("page_token", problem) from None
    if not _fits(parts, listing, shape):
        raise _invalid("page_token", problem)
    return tuple(parts[1:])


def _fits(parts: object, listing: str, shape: Sequence[type]) -> bool:
    if not isinstance(parts, list) or len(parts) != len(shape) + 1 or parts[0] != listing:
        return False
    for value, kind in zip(parts[1:], shape, strict=True):
        if type(value) is not kind:
            return False
        if kind is int and value not in _INT64:
            return False
    return True
