"""The common case of `mt5.deals`, read without the general reader's per-field machinery.

Nearly every MT5 deal a broker sees is a well-formed trade with every value a JSON string (the
Web API's form). For such a message `read_mt5_trade_fast` builds the same `Deal` as
`connectors.mt5.read_mt5_deal` at a fraction of the cost: one regular-expression check per
field instead of a chain of generic helpers. Anything else - a balance operation, a number
instead of a string, a value near a limit, a missing field, a 9th decimal - returns None, and
the general reader (the reference, with its reasons for dead letters) reads the message.
tests/test_connector_mt5_fast.py checks both agree on random messages.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson

from connectors.fields import Rejected, mul8, server_event_time
from connectors.mt5 import ZERO
from connectors.routing import Router, ServerInfo
from schemas.envelope import Envelope
from schemas.events import Deal, event_version
from schemas.mt5 import CANCELED_ACTIONS, DEAL_ENTRIES, DEAL_REASONS, TRADE_ACTIONS
from schemas.symbols import canonical_symbol

# Shapes the general reader accepts without a second look (narrower than what it accepts:
# the rest goes to it). Ids below 10^19 < 2^64, logins below 10^18 < 2^63, prices and lots
# below 10^9 with at most 8 places, money below 10^24 with at most 8 places.
_TICKET = re.compile(r"[1-9]\d{0,18}").fullmatch
_OPTIONAL_TICKET = re.compile(r"0|[1-9]\d{0,18}").fullmatch
_LOGIN = re.compile(r"0|[1-9]\d{0,17}").fullmatch
_COUNT = re.compile(r"\d{1,18}").fullmatch
_PRICE = re.compile(r"\d{1,9}(?:\.\d{1,8})?").fullmatch
_MONEY = re.compile(r"-?\d{1,24}(?:\.\d{1,8})?").fullmatch


def _text(value: str | None) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        raise TypeError("not a string")
    return value


def _money(doc: dict[str, Any], name: str) -> Decimal | None:
    value = doc.get(name)
    if value is None or value == "":
        return ZERO
    return Decimal(value) if _MONEY(value) else None


def read_mt5_trade_fast(env: Envelope, router: Router) -> Deal | None:
    """The `Deal` of a plain MT5 trade message, or None: then the general reader decides."""
    headers = env.headers
    event = headers.get("event", "add") or "add"
    if event not in ("add", "update", "delete"):
        return None
    try:
        info = router.server_of(env, "mt5")
        doc = orjson.loads(env.value)
    except (Rejected, orjson.JSONDecodeError):
        return None
    if type(doc) is not dict or "answer" in doc:
        return None
    try:  # a number or an object where a string is expected: TypeError, the general reader's
        return _trade(doc, env, info, event)
    except TypeError:
        return None


def _trade(doc: dict[str, Any], env: Envelope, info: ServerInfo, event: str) -> Deal | None:
    g = doc.get
    deal, action, entry, login = g("Deal"), g("Action"), g("Entry"), g("Login")
    symbol, size, price = g("Symbol"), g("ContractSize"), g("Price")
    if not (deal and _TICKET(deal) and action in _TRADE_CODES and entry in _ENTRY_CODES
            and login and _LOGIN(login) and type(symbol) is str and symbol and size and _PRICE(size)
            and price and _PRICE(price)):
        return None
    order, position, reason = _text(g("Order")), _text(g("PositionID")), g("Reason", "0")
    if not ((order == "" or _OPTIONAL_TICKET(order)) and (position == "" or _OPTIONAL_TICKET(position))
            and reason is not None and _COUNT(reason)):
        return None
    ext = g("VolumeExt")
    if ext not in (None, "", "0"):
        if not _COUNT(ext):
            return None
        lots = Decimal(int(ext)).scaleb(-8)
    else:
        volume = g("Volume")
        if not (volume and _COUNT(volume)):
            return None
        lots = Decimal(int(volume)).scaleb(-4)
    contract_size, mark = Decimal(size), Decimal(price)
    if not (0 < lots < _LIMIT and contract_size > 0):
        return None
    profit, swap = _money(doc, "Profit"), _money(doc, "Storage")
    commission, fee = _money(doc, "Commission"), _money(doc, "Fee")
    if profit is None or swap is None or commission is None or fee is None:
        return None
    msc = g("TimeMsc")
    stamp = g("Time")
    try:
        if msc not in (None, "", "0"):
            if not _COUNT(msc):
                return None
            moment = server_event_time(int(msc), "TimeMsc", info.clock)
        elif stamp and _COUNT(stamp):
            moment = server_event_time(int(stamp) * 1000, "Time", info.clock)
        else:
            return None
    except Rejected:
        return None
    code = int(action)
    side = TRADE_ACTIONS[code]
    canceled = code in CANCELED_ACTIONS
    units = mul8(lots, contract_size)
    reason_code = int(reason)
    server = info.server.name
    deal_id = str(int(deal))
    return Deal.trusted({
        "deal_key": f"mt5:{server}:{deal_id}",
        "tenant": info.tenant,
        "platform": "mt5",
        "server": server,
        "login": int(login),
        "deal_id": deal_id,
        "order_id": order,
        "position_id": position,
        "symbol": canonical_symbol(symbol),
        "platform_symbol": symbol,
        "side": side,
        "entry": DEAL_ENTRIES[int(entry)],
        "lots": lots,
        "signed_lots": ZERO if canceled else (lots if side == "buy" else -lots),
        "contract_size": contract_size,
        "units": units,
        "price": mark,
        "notional": mul8(units, mark),
        "profit": profit,
        "swap": swap,
        "commission": commission,
        "fee": fee,
        "currency": info.server.currency,
        "reason": DEAL_REASONS.get(reason_code) or f"unknown_{reason_code}",
        "canceled": canceled,
        "comment": _text(g("Comment")),
        "external_id": _text(g("ExternalID")),
        "time": moment,
        "event": event,
        "version": event_version(env.timestamp_ms, event),
        "is_deleted": event == "delete",
        "source": env.source,
    })


_TRADE_CODES = frozenset(str(code) for code in TRADE_ACTIONS)
_ENTRY_CODES = frozenset(str(code) for code in DEAL_ENTRIES)
_LIMIT = Decimal("1E9")
