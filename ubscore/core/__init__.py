"""ubscore's pure core: accounts, reservations and dedup, rebuilt from snapshot + log replay.

No I/O, no clock, no randomness: the adapters pass timestamps in and log what comes out.
"""

from ubscore.core.authority import UBSCore
from ubscore.core.errors import (
    InsufficientFundsError,
    InvalidRequestError,
    InvariantError,
    NotReadyError,
    ReferenceConflictError,
    SnapshotNotReadyError,
    UnknownOrderError,
)
from ubscore.core.snapshot import (
    AccountBalance,
    AssetSupply,
    SymbolSequence,
    TopicOffset,
    UBSCoreSnapshot,
)
from ubscore.core.values import (
    ENGINE_TOPIC,
    LEDGER_TOPIC,
    ORDERS_TOPIC,
    Balance,
    Funding,
    OpenOrder,
    Reservation,
    ReserveRequest,
    UBSCoreConfig,
)

__all__ = [
    "ENGINE_TOPIC",
    "LEDGER_TOPIC",
    "ORDERS_TOPIC",
    "AccountBalance",
    "AssetSupply",
    "Balance",
    "Funding",
    "InsufficientFundsError",
    "InvalidRequestError",
    "InvariantError",
    "NotReadyError",
    "OpenOrder",
    "ReferenceConflictError",
    "Reservation",
    "ReserveRequest",
    "SnapshotNotReadyError",
    "SymbolSequence",
    "TopicOffset",
    "UBSCore",
    "UBSCoreConfig",
    "UBSCoreSnapshot",
    "UnknownOrderError",
]
