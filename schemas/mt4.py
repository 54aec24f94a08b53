"""MetaTrader 4 enumerations, as the platform numbers them (Manager API TradeRecord,
transactions, online records).

Names are lower-case so they can be stored as they are in canonical events.
"""

from __future__ import annotations

from schemas.events import Side

# TradeRecord.cmd, in the platform's numbering (0 = buy ... 7 = credit)
TRADE_COMMANDS: dict[int, str] = dict(enumerate(
    ("buy", "sell", "buy_limit", "sell_limit", "buy_stop", "sell_stop", "balance", "credit")))
OP_BUY, OP_SELL, OP_BUY_LIMIT, OP_SELL_LIMIT, OP_BUY_STOP, OP_SELL_STOP, OP_BALANCE, OP_CREDIT = (
    TRADE_COMMANDS)

# Commands that are market positions (fills), with the side of their opening deal.
POSITION_COMMANDS: dict[int, Side] = {OP_BUY: "buy", OP_SELL: "sell"}
# Pending orders: not fills; when one triggers, MT4 updates the record to cmd 0/1.
PENDING_COMMANDS = frozenset({OP_BUY_LIMIT, OP_SELL_LIMIT, OP_BUY_STOP, OP_SELL_STOP})
# Money moved on the account, signed amount in `profit`.
BALANCE_COMMANDS: dict[int, str] = {OP_BALANCE: "balance", OP_CREDIT: "credit"}

# TradeRecord.state, in the platform's numbering (0 = open_normal ... 6 = deleted)
TRADE_STATES: dict[int, str] = dict(enumerate(
    ("open_normal", "open_remand", "open_restored", "closed_normal", "closed_part", "closed_by",
     "deleted")))
TS_OPEN_NORMAL, TS_OPEN_REMAND, TS_OPEN_RESTORED, TS_CLOSED_NORMAL, TS_CLOSED_PART, TS_CLOSED_BY, \
    TS_DELETED = TRADE_STATES
OPEN_STATES = frozenset({TS_OPEN_NORMAL, TS_OPEN_REMAND, TS_OPEN_RESTORED})
CLOSED_STATES = frozenset({TS_CLOSED_NORMAL, TS_CLOSED_PART, TS_CLOSED_BY})

# TradeRecord.reason
TRADE_REASONS: dict[int, str] = dict(enumerate(
    ("client", "expert", "dealer", "signal", "gateway", "mobile", "web", "api")))

# Manager API transaction types (TRANS_ADD, TRANS_DELETE, TRANS_UPDATE) -> canonical event.
TRANSACTIONS: dict[str, str] = {"0": "add", "1": "delete", "2": "update"}

# TradeRecord.volume is in 1/100 lot.
VOLUME_SCALE = 2
