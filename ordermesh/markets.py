"""The market table: assets, symbols and their trading rules, loaded from markets.toml."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ordermesh import amounts
from ordermesh.amounts import AmountError
from ordermesh.model import Asset, RejectReason, Symbol

DEFAULT_MARKETS_PATH = Path(__file__).resolve().parents[1] / "config" / "markets.toml"
"""config/markets.toml of the source tree; ORDERMESH_MARKETS or --markets overrides it."""

_ASSET_CODE = re.compile(r"[A-Z][A-Z0-9]{0,11}")
_MAX_FEE_BPS = 1_000  # 10%: anything above is a typo, not a fee schedule


class MarketConfigError(ValueError):
    """markets.toml is malformed or inconsistent; the message names the entry and the rule."""


@dataclass(frozen=True, slots=True)
class AssetSpec:
    """An asset and how many decimals its smallest unit has."""

    code: Asset
    """Upper-case code, e.g. "BTC"."""
    scale: int
    """Decimals: one whole unit is 10**scale atoms."""


@dataclass(frozen=True, slots=True)
class Market:
    """One symbol's rules, all in atoms: prices in quote atoms per whole base unit."""

    symbol: Symbol
    """"BASE-QUOTE", e.g. "BTC-USDT"."""
    base: AssetSpec
    """The asset bought and sold."""
    quote: AssetSpec
    """The asset prices are in."""
    tick_size: int
    """Prices are multiples of this many quote atoms."""
    lot_size: int
    """Quantities are multiples of this many base atoms."""
    min_quantity: int
    """The smallest order quantity, in base atoms."""
    min_notional: int
    """The smallest price x quantity, in quote atoms."""
    maker_fee_bps: int
    """Fee of the resting side, in basis points of what it receives."""
    taker_fee_bps: int
    """Fee of the incoming side, in basis points of what it receives."""

    # -- decimal strings from the public API -------------------------------------------------

    def parse_price(self, text: str, field: str = "price") -> int:
        """A LIMIT price as quote atoms; positive, on the tick grid, within int64."""
        price = amounts.to_atoms(
            text,
            self.quote.scale,
            field=field,
            reason=RejectReason.INVALID_PRICE,
            decimals=_grid_decimals(self.tick_size, self.quote.scale),
            rule=f"tick {self.format_price(self.tick_size)}",
        )
        self.check_price(price, field=field)
        return price

    def parse_quantity(self, text: str, field: str = "quantity") -> int:
        """An order quantity as base atoms; positive, on the lot grid, at least min_quantity."""
        quantity = amounts.to_atoms(
            text,
            self.base.scale,
            field=field,
            reason=RejectReason.INVALID_QUANTITY,
            decimals=_grid_decimals(self.lot_size, self.base.scale),
            rule=f"lot {self.format_quantity(self.lot_size)}",
        )
        self.check_quantity(quantity, field=field)
        return quantity

    def parse_quote_quantity(self, text: str, field: str = "quote_quantity") -> int:
        """A MARKET BUY budget as quote atoms; positive and at least min_notional."""
        budget = amounts.to_atoms(
            text, self.quote.scale, field=field, reason=RejectReason.INVALID_QUOTE_QUANTITY
        )
        if budget < self.min_notional:
            raise AmountError(
                RejectReason.BELOW_MIN_NOTIONAL,
                f"{field} {self.format_quote(budget)} is below the minimum notional "
                f"{self.format_quote(self.min_notional)} {self.quote.code}",
                field=field,
            )
        return budget

    # -- atoms, for internal callers and after parsing ----------------------------------------

    def check_price(self, price: int, field: str = "price") -> None:
        """Raise AmountError unless `price` atoms are a positive int64 on the tick grid."""
        _check_grid(price, self.tick_size, field, RejectReason.INVALID_PRICE, self.format_price)

    def check_quantity(self, quantity: int, field: str = "quantity") -> None:
        """Raise AmountError unless `quantity` is a positive int64 on the lot grid >= minimum."""
        _check_grid(
            quantity, self.lot_size, field, RejectReason.INVALID_QUANTITY, self.format_quantity
        )
        if quantity < self.min_quantity:
            raise AmountError(
                RejectReason.BELOW_MIN_QUANTITY,
                f"{field} {self.format_quantity(quantity)} is below the minimum "
                f"{self.format_quantity(self.min_quantity)} {self.base.code}",
                field=field,
            )

    def check_notional(self, price: int, quantity: int) -> int:
        """Return price x quantity in quote atoms; raise if it overflows or is below minimum."""
        value = amounts.notional(price, quantity, self.base.scale)
        amounts.check_int64(value, field="price x quantity")
        if value < self.min_notional:
            raise AmountError(
                RejectReason.BELOW_MIN_NOTIONAL,
                f"price x quantity = {self.format_quote(value)} {self.quote.code} is below the "
                f"minimum notional {self.format_quote(self.min_notional)} {self.quote.code}",
                field="quantity",
            )
        return value

    def notional(self, price: int, quantity: int) -> int:
        """Return price x quantity in quote atoms (exact on the grid)."""
        return amounts.notional(price, quantity, self.base.scale)

    def format_price(self, price: int) -> str:
        """Quote atoms per base unit as a decimal string."""
        return amounts.format_atoms(price, self.quote.scale)

    def format_quantity(self, quantity: int) -> str:
        """Base atoms as a decimal string."""
        return amounts.format_atoms(quantity, self.base.scale)

    def format_quote(self, value: int) -> str:
        """Quote atoms as a decimal string."""
        return amounts.format_atoms(value, self.quote.scale)


def _grid_decimals(step: int, scale: int) -> int:
    return amounts.decimals_of(amounts.format_atoms(step, scale))


def _check_grid(value: int, step: int, field: str, reason: RejectReason, show: Any) -> None:
    if value <= 0:
        raise AmountError(reason, f"{field} must be positive, was {show(value)}", field=field)
    amounts.check_int64(value, field=field)
    if value % step:
        raise AmountError(
            reason,
            f"{field} must be a multiple of {show(step)}, was {show(value)}",
            field=field,
        )


@dataclass(frozen=True, slots=True)
class MarketTable:
    """Every asset and market the system trades; the same file for every service."""

    assets: Mapping[Asset, AssetSpec]
    """By code."""
    markets: Mapping[Symbol, Market]
    """By symbol, in the file's order."""

    def market(self, symbol: str) -> Market:
        """The market of `symbol`, or AmountError(UNKNOWN_SYMBOL) naming the known ones."""
        try:
            return self.markets[Symbol(symbol)]
        except KeyError:
            known = ", ".join(self.markets)
            shown = symbol if symbol else "(empty)"
            raise AmountError(
                RejectReason.UNKNOWN_SYMBOL,
                f"symbol {shown!r} is not traded here; known symbols: {known}",
                field="symbol",
            ) from None

    def asset(self, code: str) -> AssetSpec:
        """The asset `code`, or AmountError(UNKNOWN_ASSET) naming the known ones."""
        try:
            return self.assets[Asset(code)]
        except KeyError:
            known = ", ".join(self.assets)
            shown = code if code else "(empty)"
            raise AmountError(
                RejectReason.UNKNOWN_ASSET,
                f"asset {shown!r} is not known here; known assets: {known}",
                field="asset",
            ) from None


_ASSET_KEYS = {"code", "scale"}
_SYMBOL_KEYS = {
    "name",
    "base",
    "quote",
    "tick_size",
    "lot_size",
    "min_qty",
    "min_notional",
    "maker_fee_bps",
    "taker_fee_bps",
}


def load_markets(path: Path | str | None = None) -> MarketTable:
    """Read and validate a markets.toml; DEFAULT_MARKETS_PATH when `path` is None."""
    source = Path(path) if path is not None else DEFAULT_MARKETS_PATH
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as e:
        raise MarketConfigError(f"cannot read markets file {source}: {e.strerror}") from e
    return parse_markets(text, origin=str(source))


def parse_markets(text: str, origin: str = "markets.toml") -> MarketTable:
    """Validate markets.toml text; every error names the entry, key and rule."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise MarketConfigError(f"{origin}: not valid TOML: {e}") from e
    _reject_unknown(document, {"assets", "symbols"}, origin)
    assets: dict[Asset, AssetSpec] = {}
    for i, entry in enumerate(_table_list(document, "assets", origin)):
        spec = _parse_asset(entry, f"{origin}: assets[{i}]")
        if spec.code in assets:
            raise MarketConfigError(f"{origin}: assets[{i}]: asset {spec.code} listed twice")
        assets[spec.code] = spec
    markets: dict[Symbol, Market] = {}
    for i, entry in enumerate(_table_list(document, "symbols", origin)):
        market = _parse_symbol(entry, assets, f"{origin}: symbols[{i}]")
        if market.symbol in markets:
            raise MarketConfigError(f"{origin}: symbols[{i}]: symbol {market.symbol} listed twice")
        markets[market.symbol] = market
    return MarketTable(assets=assets, markets=markets)


def _table_list(document: dict[str, Any], key: str, origin: str) -> list[dict[str, Any]]:
    entries = document.get(key)
    if not isinstance(entries, list) or not entries:
        raise MarketConfigError(f"{origin}: needs at least one [[{key}]] table")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MarketConfigError(f"{origin}: {key}[{i}] must be a table")
    return entries


def _reject_unknown(entry: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise MarketConfigError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(allowed))}"
        )


def _check_keys(entry: dict[str, Any], keys: set[str], where: str) -> None:
    _reject_unknown(entry, keys, where)
    missing = sorted(keys - set(entry))
    if missing:
        raise MarketConfigError(f"{where}: missing key {missing[0]!r}")


def _typed(entry: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MarketConfigError(f"{where}: {key} must be a {kind.__name__}, was {value!r}")
    return value


def _parse_asset(entry: dict[str, Any], where: str) -> AssetSpec:
    _check_keys(entry, _ASSET_KEYS, where)
    code = _typed(entry, "code", str, where)
    if not _ASSET_CODE.fullmatch(code):
        raise MarketConfigError(
            f"{where}: code must be 1-12 upper-case letters or digits, was {code!r}"
        )
    scale = _typed(entry, "scale", int, where)
    if not 0 <= scale <= amounts.MAX_SCALE:
        raise MarketConfigError(
            f"{where}: scale of {code} must be 0..{amounts.MAX_SCALE}, was {scale}"
        )
    return AssetSpec(Asset(code), scale)


def _decimal_atoms(entry: dict[str, Any], key: str, scale: int, where: str) -> int:
    raw = _typed(entry, key, str, where)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise MarketConfigError(f"{where}: {key} must be a decimal string, was {raw!r}") from None
    atoms = value.scaleb(scale)
    if not value.is_finite() or value <= 0 or atoms != atoms.to_integral_value():
        raise MarketConfigError(
            f"{where}: {key} must be positive with at most {scale} decimals, was {raw!r}"
        )
    return amounts.check_int64(int(atoms), field=key)


def _parse_symbol(entry: dict[str, Any], assets: Mapping[Asset, AssetSpec], where: str) -> Market:
    _check_keys(entry, _SYMBOL_KEYS, where)
    name = _typed(entry, "name", str, where)
    specs = []
    for key in ("base", "quote"):
        code = _typed(entry, key, str, where)
        if code not in assets:
            raise MarketConfigError(f"{where} ({name}): {key} asset {code!r} is not in [[assets]]")
        specs.append(assets[Asset(code)])
    base, quote = specs
    if base.code == quote.code:
        raise MarketConfigError(f"{where} ({name}): base and quote are both {base.code}")
    if name != f"{base.code}-{quote.code}":
        raise MarketConfigError(
            f"{where}: name must be BASE-QUOTE, {base.code}-{quote.code}, was {name!r}"
        )
    tick = _decimal_atoms(entry, "tick_size", quote.scale, f"{where} ({name})")
    lot = _decimal_atoms(entry, "lot_size", base.scale, f"{where} ({name})")
    min_qty = _decimal_atoms(entry, "min_qty", base.scale, f"{where} ({name})")
    min_notional = _decimal_atoms(entry, "min_notional", quote.scale, f"{where} ({name})")
    if (tick * lot) % amounts.pow10(base.scale):
        raise MarketConfigError(
            f"{where} ({name}): tick_size x lot_size = "
            f"{Decimal(tick).scaleb(-quote.scale) * Decimal(lot).scaleb(-base.scale)} "
            f"{quote.code} is not a whole number of {quote.code} atoms "
            f"(1 atom = {Decimal(1).scaleb(-quote.scale)}); a coarser tick or lot is needed"
        )
    if min_qty % lot:
        raise MarketConfigError(f"{where} ({name}): min_qty must be a multiple of lot_size")
    fees = []
    for key in ("maker_fee_bps", "taker_fee_bps"):
        bps = _typed(entry, key, int, where)
        if not 0 <= bps <= _MAX_FEE_BPS:
            raise MarketConfigError(f"{where} ({name}): {key} must be 0..{_MAX_FEE_BPS}, was {bps}")
        fees.append(bps)
    return Market(
        symbol=Symbol(name),
        base=base,
        quote=quote,
        tick_size=tick,
        lot_size=lot,
        min_quantity=min_qty,
        min_notional=min_notional,
        maker_fee_bps=fees[0],
        taker_fee_bps=fees[1],
    )
