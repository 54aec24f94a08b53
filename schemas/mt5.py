"""MetaTrader 5 enumerations, as the platform numbers them (IMTDeal).

Names are lower-case so they can be stored as they are in canonical events.
"""

from __future__ import annotations

from typing import Literal

DEAL_ACTIONS: dict[int, str] = {
    0: "buy",
    1: "sell",
    2: "balance",
    3: "credit",
    4: "charge",
    5: "correction",
    6: "bonus",
    7: "commission",
    8: "commission_daily",
    9: "commission_monthly",
    10: "agent_daily",
    11: "agent_monthly",
    12: "interestrate",
    13: "buy_canceled",
    14: "sell_canceled",
    15: "dividend",
    16: "dividend_franked",
    17: "tax",
    18: "agent",
    19: "so_compensation",
    20: "so_compensation_credit",
}

# Actions that are trades (everything else moves money on the account).
TRADE_ACTIONS: dict[int, Literal["buy", "sell"]] = {0: "buy", 1: "sell", 13: "buy", 14: "sell"}
CANCELED_ACTIONS = frozenset({13, 14})

DEAL_ENTRIES: dict[int, Literal["in", "out", "inout", "out_by"]] = {
    0: "in", 1: "out", 2: "inout", 3: "out_by",
}

DEAL_REASONS: dict[int, str] = {
    0: "client",
    1: "expert",
    2: "dealer",
    3: "sl",
    4: "tp",
    5: "so",
    6: "rollover",
    7: "external_client",
    8: "vmargin",
    9: "gateway",
    10: "signal",
    11: "settlement",
    12: "transfer",
    13: "sync",
    14: "external_service",
    15: "migration",
    16: "mobile",
    17: "web",
    18: "split",
}

# Scales of the volume fields: Volume is in 1/10000 lot, VolumeExt in 1/100000000 lot.
VOLUME_SCALE = 4
VOLUME_EXT_SCALE = 8
