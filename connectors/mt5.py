"""MetaTrader 5 deals (IMTDeal, Web API JSON) -> canonical `Deal` / `BalanceOperation`.

Topic `mt5.deals`; headers `server` (the MT5 server name) and `event` (add / update / delete).
Values may be JSON strings or numbers. Actions 0/1 (and the canceled 13/14) are trades;
every other Action moves money and becomes a balance operation with the signed amount
from `Profit` (deposits positive, withdrawals negative).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from connectors.fields import (
    PRICE,
    PRICE_LIMIT,
    Rejected,
    as_decimal,
    as_id,
    as_int,
    as_login,
    decode_json_object,
    mul8,
    optional_decimal,
    optional_id,
    optional_str,
    required,
    server_event_time,
)
from connectors.routing import Router, ServerInfo
from schemas.envelope import Envelope
from schemas.events import BalanceOperation, Deal, event_version
from schemas.mt5 import (
    CANCELED_ACTIONS,
    DEAL_ACTIONS,
    DEAL_ENTRIES,
    DEAL_REASONS,
    TRADE_ACTIONS,
    VOLUME_EXT_SCALE,
    VOLUME_SCALE,
)
from schemas.symbols import canonical_symbol

TOPIC = "mt5.deals"
ZERO = Decimal(0)


def _lots(doc: dict[str, Any]) -> Decimal:
    ext = doc.get("VolumeExt")
    if ext not in (None, "", "0", 0):
        lots = Decimal(as_int(ext, "VolumeExt")).scaleb(-VOLUME_EXT_SCALE)
    else:
        lots = Decimal(as_int(required(doc, "Volume"), "Volume")).scaleb(-VOLUME_SCALE)
    if not 0 < lots < PRICE_LIMIT:
        raise Rejected(f"a trade needs a positive volume in range, got {lots} lots")
    return lots


def _time(doc: dict[str, Any], info: ServerInfo) -> datetime:
    """Time / TimeMsc are the server's wall clock: UTC through its zone (or fixed offset)."""
    msc = doc.get("TimeMsc")
    if msc not in (None, "", "0", 0):
        return server_event_time(as_int(msc, "TimeMsc"), "TimeMsc", info.clock)
    return server_event_time(as_int(required(doc, "Time"), "Time") * 1000, "Time", info.clock)


def _trade(doc: dict[str, Any], action: int, common: dict[str, Any]) -> Deal:
    entry_code = as_int(required(doc, "Entry"), "Entry")
    entry = DEAL_ENTRIES.get(entry_code)
    if entry is None:
        raise Rejected(f"unknown Entry {entry_code} (0 IN, 1 OUT, 2 INOUT, 3 OUT_BY)")
    platform_symbol = str(required(doc, "Symbol"))
    lots = _lots(doc)
    contract_size = as_decimal(required(doc, "ContractSize"), "ContractSize", PRICE)
    price = as_decimal(required(doc, "Price"), "Price", PRICE)
    if contract_size <= 0:
        raise Rejected(f"field 'ContractSize' must be positive, got {contract_size}")
    if price < 0:
        raise Rejected(f"field 'Price' must not be negative, got {price}")
    side = TRADE_ACTIONS[action]
    canceled = action in CANCELED_ACTIONS
    units = mul8(lots, contract_size)
    reason_code = as_int(doc.get("Reason", 0), "Reason")
    return Deal.trusted({
        "deal_key": common["key"],
        "tenant": common["tenant"],
        "platform": "mt5",
        "server": common["server"],
        "login": common["login"],
        "deal_id": common["id"],
        "order_id": optional_id(doc, "Order"),
        "position_id": optional_id(doc, "PositionID"),
        "symbol": canonical_symbol(platform_symbol),
        "platform_symbol": platform_symbol,
        "side": side,
        "entry": entry,
        "lots": lots,
        "signed_lots": ZERO if canceled else (lots if side == "buy" else -lots),
        "contract_size": contract_size,
        "units": units,
        "price": price,
        "notional": mul8(units, price),
        "profit": optional_decimal(doc, "Profit"),
        "swap": optional_decimal(doc, "Storage"),
        "commission": optional_decimal(doc, "Commission"),
        "fee": optional_decimal(doc, "Fee"),
        "currency": common["currency"],
        "reason": DEAL_REASONS.get(reason_code) or f"unknown_{reason_code}",
        "canceled": canceled,
        "comment": optional_str(doc, "Comment"),
        "external_id": optional_str(doc, "ExternalID"),
        "time": common["time"],
        "event": common["event"],
        "version": common["version"],
        "is_deleted": common["event"] == "delete",
        "source": common["source"],
    })


def _balance(doc: dict[str, Any], action: int, common: dict[str, Any]) -> BalanceOperation:
    return BalanceOperation.trusted({
        "op_key": common["key"],
        "tenant": common["tenant"],
        "platform": "mt5",
        "server": common["server"],
        "login": common["login"],
        "op_id": common["id"],
        "kind": DEAL_ACTIONS[action],
        "amount": optional_decimal(doc, "Profit"),
        "currency": common["currency"],
        "status": "completed",
        "provider": "",
        "method": "",
        "payer_name": "",
        "instrument_fingerprint": "",
        "country": "",
        "comment": optional_str(doc, "Comment"),
        "time": common["time"],
        "event": common["event"],
        "version": common["version"],
        "is_deleted": common["event"] == "delete",
        "source": common["source"],
    })


def read_mt5_deal(env: Envelope, router: Router) -> Deal | BalanceOperation:
    """One `mt5.deals` message -> its canonical record. Raises Rejected with the reason."""
    event = router.deal_event(env)
    info = router.server_of(env, "mt5")
    doc = decode_json_object(env.value, unwrap_answer=True)
    deal_id = as_id(required(doc, "Deal"), "Deal")
    action = as_int(required(doc, "Action"), "Action")
    if action not in DEAL_ACTIONS:
        raise Rejected(f"unknown Action {action} (MT5 knows 0..20)")
    common = {
        "key": f"mt5:{info.server.name}:{deal_id}",
        "id": str(deal_id),
        "tenant": info.tenant,
        "server": info.server.name,
        "login": as_login(required(doc, "Login"), "Login"),
        "currency": info.server.currency,
        "time": _time(doc, info),
        "event": event,
        "version": event_version(env.timestamp_ms, event),
        "source": env.source,
    }
    if action in TRADE_ACTIONS:
        return _trade(doc, action, common)
    return _balance(doc, action, common)
