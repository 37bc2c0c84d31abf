"""Settlement's pure core: log records in, rows, ledger legs, candles and order states out.

No I/O, no clock, nothing asynchronous; the adapters (consumer, store, service) wrap it.
"""

from ordermesh.model import EXTERNAL_ACCOUNT
from settlement.core.batch import (
    BatchError,
    BatchPlan,
    ChainBreakError,
    ChainPoint,
    LogItem,
    Source,
    plan_batch,
)
from settlement.core.candles import MINUTE_NS, CandleInterval, aggregate, fold_candles
from settlement.core.ledger import funding_legs, trade_legs, trade_reference
from settlement.core.orders import (
    OPEN_STATUSES,
    OrderConflictError,
    OrderRow,
    fold_orders,
    order_ids,
)
from settlement.core.rows import Candle, LedgerEntry, LedgerLeg, Ticker, TradeRow

__all__ = [
    "EXTERNAL_ACCOUNT",
    "MINUTE_NS",
    "OPEN_STATUSES",
    "BatchError",
    "BatchPlan",
    "Candle",
    "CandleInterval",
    "ChainBreakError",
    "ChainPoint",
    "LedgerEntry",
    "LedgerLeg",
    "LogItem",
    "OrderConflictError",
    "OrderRow",
    "Source",
    "Ticker",
    "TradeRow",
    "aggregate",
    "fold_candles",
    "fold_orders",
    "funding_legs",
    "order_ids",
    "plan_batch",
    "trade_legs",
    "trade_reference",
]
