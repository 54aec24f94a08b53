"""MetaTrader 4 enumerations, as the platform numbers them (Manager API TradeRecord,
transactions, online records).

Names are lower-case so they can be stored as they are in canonical events.
"""

from __future__ import annotations

from schemas.events import Side

# TradeRecord.cmd
OP_BUY = 0
OP_SELL = 1
OP_BUY_LIMIT = 2
OP_SELL_LIMIT = 3
OP_BUY_STOP = 4
OP_SELL_STOP = 5
OP_BALANCE = 6
OP_CREDIT = 7

TRADE_COMMANDS: dict[int, str] = {
    OP_BUY: "buy",
    OP_SELL: "sell",
    OP_BUY_LIMIT: "buy_limit",
    OP_SELL_LIMIT: "sell_limit",
    OP_BUY_STOP: "buy_stop",
    OP_SELL_STOP: "sell_stop",
    OP_BALANCE: "balance",
    OP_CREDIT: "credit",
}

# Commands that are market positions (fills), with the side of their opening deal.
POSITION_COMMANDS: dict[int, Side] = {OP_BUY: "buy", OP_SELL: "sell"}
# Pending orders: not fills; when one triggers, MT4 updates the record to cmd 0/1.
PENDING_COMMANDS = frozenset({OP_BUY_LIMIT, OP_SELL_LIMIT, OP_BUY_STOP, OP_SELL_STOP})
# Money moved on the account, signed amount in `profit`.
BALANCE_COMMANDS: dict[int, str] = {OP_BALANCE: "balance", OP_CREDIT: "credit"}

# TradeRecord.state
TS_OPEN_NORMAL = 0
TS_OPEN_REMAND = 1
TS_OPEN_RESTORED = 2
TS_CLOSED_NORMAL = 3
TS_CLOSED_PART = 4
TS_CLOSED_BY = 5
TS_DELETED = 6

TRADE_STATES: dict[int, str] = {
    TS_OPEN_NORMAL: "open_normal",
    TS_OPEN_REMAND: "open_remand",
    TS_OPEN_RESTORED: "open_restored",
    TS_CLOSED_NORMAL: "closed_normal",
    TS_CLOSED_PART: "closed_part",
    TS_CLOSED_BY: "closed_by",
    TS_DELETED: "deleted",
}
OPEN_STATES = frozenset({TS_OPEN_NORMAL, TS_OPEN_REMAND, TS_OPEN_RESTORED})
CLOSED_STATES = frozenset({TS_CLOSED_NORMAL, TS_CLOSED_PART, TS_CLOSED_BY})

# TradeRecord.reason
TRADE_REASONS: dict[int, str] = {
    0: "client",
    1: "expert",
    2: "dealer",
    3: "signal",
    4: "gateway",
    5: "mobile",
    6: "web",
    7: "api",
}

# Manager API transaction types (TRANS_ADD, TRANS_DELETE, TRANS_UPDATE) -> canonical event.
TRANSACTIONS: dict[str, str] = {"0": "add", "1": "delete", "2": "update"}

# TradeRecord.volume is in 1/100 lot.
VOLUME_SCALE = 2
