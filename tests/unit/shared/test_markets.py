from pathlib import Path

import pytest

from ordermesh.amounts import AmountError
from ordermesh.markets import DEFAULT_MARKETS_PATH, MarketConfigError, load_markets, parse_markets
from ordermesh.model import RejectReason

GOOD = """
[[assets]]
code = "BTC"
scale = 8

[[assets]]
code = "USDT"
scale = 6

[[symbols]]
name = "BTC-USDT"
base = "BTC"
quote = "USDT"
tick_size = "0.01"
lot_size = "0.0001"
min_qty = "0.0001"
min_notional = "1"
maker_fee_bps = 10
taker_fee_bps = 20
"""


def with_line(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def test_shipped_file_loads_with_the_three_required_symbols():
    table = load_markets(DEFAULT_MARKETS_PATH)
    assert {"BTC-USDT", "ETH-USDT", "ETH-BTC"} <= set(table.markets)


def test_good_table_in_atoms():
    market = parse_markets(GOOD).market("BTC-USDT")
    assert (market.tick_size, market.lot_size) == (10_000, 10_000)
    assert (market.min_quantity, market.min_notional) == (10_000, 1_000_000)
    assert market.parse_price("42000.5") == 42_000_500_000
    assert market.parse_quantity("0.015") == 1_500_000
    assert market.check_notional(42_000_500_000, 1_500_000) == 630_007_500


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "not valid TOML"),
        ("", "needs at least one [[assets]] table"),
        (GOOD + "\n[extra]\nx = 1\n", "unknown key 'extra'"),
        (with_line("scale = 8", "scale = 8\nprecision = 2"), "assets[0]: unknown key 'precision'"),
        (with_line("scale = 8\n", ""), "assets[0]: missing key 'scale'"),
        (with_line("scale = 8", "scale = 19"), "scale of BTC must be 0..18, was 19"),
        (with_line("scale = 8", 'scale = "8"'), "scale must be a int"),
        (with_line('code = "BTC"', 'code = "btc"'), "code must be 1-12 upper-case"),
        (with_line('code = "USDT"', 'code = "BTC"'), "asset BTC listed twice"),
        (with_line('name = "BTC-USDT"', 'name = "BTCUSDT"'), "name must be BASE-QUOTE"),
        (with_line('quote = "USDT"', 'quote = "EUR"'), "quote asset 'EUR' is not in [[assets]]"),
        (with_line('quote = "USDT"\n', 'quote = "BTC"\n'), "base and quote are both BTC"),
        (with_line('tick_size = "0.01"', 'tick_size = "0.0000001"'), "at most 6 decimals"),
        (with_line('tick_size = "0.01"', 'tick_size = "-0.01"'), "must be positive"),
        (with_line('tick_size = "0.01"', 'tick_size = "abc"'), "must be a decimal string"),
        (with_line('tick_size = "0.01"', "tick_size = 0.01"), "tick_size must be a str"),
        (with_line('lot_size = "0.0001"', 'lot_size = "0.00001"'), "not a whole number of USDT"),
        (with_line('min_qty = "0.0001"', 'min_qty = "0.00015"'), "min_qty must be a multiple"),
        (with_line("maker_fee_bps = 10", "maker_fee_bps = -1"), "maker_fee_bps must be 0..1000"),
        (with_line("taker_fee_bps = 20", "taker_fee_bps = 1001"), "taker_fee_bps must be 0..1000"),
        (with_line("taker_fee_bps = 20", "taker_fee_bps = true"), "taker_fee_bps must be a int"),
        (GOOD + GOOD.split("[[symbols]]")[1].join(["\n[[symbols]]", ""]), "listed twice"),
    ],
)
def test_inconsistent_tables_are_refused_naming_the_entry(text, message):
    with pytest.raises(MarketConfigError) as caught:
        parse_markets(text)
    assert message in str(caught.value)


def test_unreadable_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(MarketConfigError, match="cannot read markets file"):
        load_markets(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("method", "text", "reason", "message"),
    [
        ("parse_price", "42000.001", RejectReason.INVALID_PRICE, "3 decimals, tick 0.01 allows 2"),
        ("parse_quantity", "0.00001", RejectReason.INVALID_QUANTITY, "lot 0.0001 allows 4"),
        ("parse_quantity", "0", RejectReason.INVALID_QUANTITY, "must be positive"),
        ("parse_quote_quantity", "0.5", RejectReason.BELOW_MIN_NOTIONAL, "below the minimum"),
        ("parse_quote_quantity", "-5", RejectReason.INVALID_QUOTE_QUANTITY, "must be positive"),
    ],
)
def test_market_parsers_name_the_rule(method, text, reason, message):
    market = parse_markets(GOOD).market("BTC-USDT")
    with pytest.raises(AmountError) as caught:
        getattr(market, method)(text)
    assert caught.value.reason is reason
    assert message in str(caught.value)


def test_grid_multiples_and_minimums_are_checked_in_atoms():
    text = with_line('tick_size = "0.01"', 'tick_size = "0.05"')
    text = text.replace('min_qty = "0.0001"', 'min_qty = "0.001"')
    market = parse_markets(text).market("BTC-USDT")
    with pytest.raises(AmountError, match=r"price must be a multiple of 0.05, was 1.01"):
        market.parse_price("1.01")
    with pytest.raises(AmountError) as caught:
        market.parse_quantity("0.0005")
    assert caught.value.reason is RejectReason.BELOW_MIN_QUANTITY
    with pytest.raises(AmountError) as caught:
        market.check_notional(market.parse_price("1"), market.parse_quantity("0.001"))
    assert caught.value.reason is RejectReason.BELOW_MIN_NOTIONAL
    with pytest.raises(AmountError) as caught:
        market.check_notional(50_000 * 10**13, 10**16)
    assert caught.value.reason is RejectReason.AMOUNT_OVERFLOW


def test_unknown_symbol_and_asset_list_the_known_ones():
    table = parse_markets(GOOD)
    with pytest.raises(AmountError, match="known symbols: BTC-USDT") as caught:
        table.market("DOGE-USDT")
    assert caught.value.reason is RejectReason.UNKNOWN_SYMBOL
    with pytest.raises(AmountError, match="known assets: BTC, USDT") as caught:
        table.asset("")
    assert caught.value.reason is RejectReason.UNKNOWN_ASSET
