"""cTrader Open API events -> canonical `Deal` / `BalanceOperation` / `Quote` / `AccountUpdate`.

Topic `ctrader.events`: one Kafka message is one `ProtoMessage` envelope, protobuf bytes, or
the JSON variant (`{"payloadType": 2126, "payload": {...}}`, camelCase names) when the
`encoding` header is `json`. Header `server` names the cTrader server (broker environment).
Both forms are parsed into the same generated classes (`connectors/ctrader_proto`), so one
converter serves both.

Read: ProtoOAExecutionEvent (2126) with a filled deal or a deposit/withdrawal,
ProtoOASpotEvent (2131), ProtoOATraderUpdatedEvent (2123).

Accounts: ProtoOATrader gives balance, leverage, registration and the deposit currency (by
asset id: the server's `deposit_assets` mapping, else its configured `currency`). Equity is
sent only with a deposit/withdrawal (ProtoOADepositWithdraw.equity, with the balance after it)
and the balance after a close (ProtoOAClosePositionDetail.balance): each becomes an
`account_state` update beside the deal or operation. The Open API has no account group, name,
e-mail, country, credit, or account-wide margin (margin is per position): those stay None
(docs/data-contract.md, "What each platform sends"). Every other payload type (heartbeats,
order acceptances, margin and depth events, answers to requests, ...) carries no fact we keep
and is ignored on purpose: it returns no record rather than a dead letter. A message that
cannot be parsed, or a known one that cannot be interpreted, raises `Rejected` with a reason.

Units as the Open API sends them: volumes in cents of units (a 100,000-unit FX lot is
10,000,000), money as integers x 10^moneyDigits, spot prices in 1/100000 of a price unit,
times in Unix milliseconds (UTC: cTrader does not stamp server-local times).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, DecimalException, localcontext
from typing import Any, Final, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from connectors.ctrader_proto import openapi_subset_pb2 as pb
from connectors.ctrader_symbols import CTraderSymbols
from connectors.fields import (
    MONEY,
    PRICE,
    Rejected,
    as_decimal,
    as_id,
    as_int,
    decode_json_object,
    event_time,
    fit_decimal,
    from_epoch_ms,
    quantize8,
)
from connectors.routing import Router, ServerInfo
from schemas.envelope import Envelope
from schemas.events import (
    AccountUpdate,
    BalanceOperation,
    Deal,
    Entry,
    Quote,
    Side,
    account_update,
    event_version,
)
from schemas.symbols import canonical_symbol

TOPIC = "ctrader.events"
PLATFORM: Final[Literal["ctrader"]] = "ctrader"

CTraderRecord = Deal | BalanceOperation | Quote | AccountUpdate

PAYLOAD_CLASSES: dict[int, type[Message]] = {
    pb.PROTO_OA_EXECUTION_EVENT: pb.ProtoOAExecutionEvent,
    pb.PROTO_OA_SPOT_EVENT: pb.ProtoOASpotEvent,
    pb.PROTO_OA_TRADER_UPDATE_EVENT: pb.ProtoOATraderUpdatedEvent,
}

SIDES: dict[int, Side] = {pb.BUY: "buy", pb.SELL: "sell"}
FILL_STATUSES = frozenset({pb.FILLED, pb.PARTIALLY_FILLED})

# Every ProtoOAChangeBalanceType -> (canonical kind, sign of the amount). The Open API sends
# `delta` as the size of the move; its direction is in the operation type's name.
CHANGE_BALANCE_KINDS: dict[int, tuple[str, int]] = {
    pb.BALANCE_DEPOSIT: ("balance", 1),
    pb.BALANCE_WITHDRAW: ("balance", -1),
    pb.BALANCE_DEPOSIT_STRATEGY_COMMISSION_INNER: ("commission", 1),
    pb.BALANCE_WITHDRAW_STRATEGY_COMMISSION_INNER: ("commission", -1),
    pb.BALANCE_DEPOSIT_IB_COMMISSIONS: ("agent", 1),
    pb.BALANCE_WITHDRAW_IB_SHARED_PERCENTAGE: ("agent", -1),
    pb.BALANCE_DEPOSIT_IB_SHARED_PERCENTAGE_FROM_SUB_IB: ("agent", 1),
    pb.BALANCE_DEPOSIT_IB_SHARED_PERCENTAGE_FROM_BROKER: ("agent", 1),
    pb.BALANCE_DEPOSIT_REBATE: ("rebate", 1),
    pb.BALANCE_WITHDRAW_REBATE: ("rebate", -1),
    pb.BALANCE_DEPOSIT_STRATEGY_COMMISSION_OUTER: ("commission", 1),
    pb.BALANCE_WITHDRAW_STRATEGY_COMMISSION_OUTER: ("commission", -1),
    pb.BALANCE_WITHDRAW_BONUS_COMPENSATION: ("agent", -1),
    pb.BALANCE_WITHDRAW_IB_SHARED_PERCENTAGE_TO_BROKER: ("agent", -1),
    pb.BALANCE_DEPOSIT_DIVIDENDS: ("dividend", 1),
    pb.BALANCE_WITHDRAW_DIVIDENDS: ("dividend", -1),
    pb.BALANCE_WITHDRAW_GSL_CHARGE: ("charge", -1),
    pb.BALANCE_WITHDRAW_ROLLOVER: ("charge", -1),
    pb.BALANCE_DEPOSIT_NONWITHDRAWABLE_BONUS: ("bonus", 1),
    pb.BALANCE_WITHDRAW_NONWITHDRAWABLE_BONUS: ("bonus", -1),
    pb.BALANCE_DEPOSIT_SWAP: ("swap", 1),
    pb.BALANCE_WITHDRAW_SWAP: ("swap", -1),
    pb.BALANCE_DEPOSIT_MANAGEMENT_FEE: ("commission", 1),
    pb.BALANCE_WITHDRAW_MANAGEMENT_FEE: ("commission", -1),
    pb.BALANCE_DEPOSIT_PERFORMANCE_FEE: ("commission", 1),
    pb.BALANCE_WITHDRAW_FOR_SUBACCOUNT: ("transfer", -1),
    pb.BALANCE_DEPOSIT_TO_SUBACCOUNT: ("transfer", 1),
    pb.BALANCE_WITHDRAW_FROM_SUBACCOUNT: ("transfer", -1),
    pb.BALANCE_DEPOSIT_FROM_SUBACCOUNT: ("transfer", 1),
    pb.BALANCE_WITHDRAW_COPY_FEE: ("commission", -1),
    pb.BALANCE_WITHDRAW_INACTIVITY_FEE: ("charge", -1),
    pb.BALANCE_DEPOSIT_TRANSFER: ("transfer", 1),
    pb.BALANCE_WITHDRAW_TRANSFER: ("transfer", -1),
    pb.BALANCE_DEPOSIT_CONVERTED_BONUS: ("bonus", 1),
    pb.BALANCE_DEPOSIT_NEGATIVE_BALANCE_PROTECTION: ("so_compensation", 1),
}

PRICE_DIGITS = 5  # spot bid/ask are in 1/100000 of a price unit
DEFAULT_MONEY_DIGITS = 2
MAX_MONEY_DIGITS = 18  # an int64 has 19 digits
# lots, contract size and price are stored as Decimal(18, 8): below 10^10.
DECIMAL_18_8_LIMIT = Decimal("1E10")

# The symbol list used when a caller gives none: the simulated broker's, for every server.
# A deployment with real cTrader servers passes its own list (see `ctrader_reader`).
DEFAULT_SYMBOLS = CTraderSymbols.simulated()

ZERO = Decimal(0)


# ---- decoding ---------------------------------------------------------------------------------


def _payload_class(payload_type: int) -> type[Message] | None:
    return PAYLOAD_CLASSES.get(payload_type)


# The upb runtime raises DecodeError; the pure-Python one (PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION
# =python) also raises UnicodeDecodeError for a string field that is not UTF-8.
_PARSE_ERRORS = (DecodeError, ValueError)


def _decode_protobuf(raw: bytes) -> Message | None:
    envelope = pb.ProtoMessage()
    try:
        envelope.ParseFromString(raw)
    except _PARSE_ERRORS as exc:
        raise Rejected(f"not a cTrader ProtoMessage: {exc}{_json_hint(raw)}", "decode") from None
    if not envelope.HasField("payloadType"):
        raise Rejected(f"ProtoMessage without payloadType{_json_hint(raw)}", "decode")
    cls = _payload_class(envelope.payloadType)
    if cls is None:
        return None
    name = cls.DESCRIPTOR.name
    if not envelope.HasField("payload"):
        raise Rejected(f"{name} ({envelope.payloadType}) without payload", "decode")
    message = cls()
    try:
        message.ParseFromString(envelope.payload)
    except _PARSE_ERRORS as exc:
        raise Rejected(f"payload is not a valid {name}: {exc}", "decode") from None
    return message


def _json_hint(raw: bytes) -> str:
    if raw.lstrip()[:1] == b"{":
        return " (the value looks like JSON: the JSON variant needs the header encoding=json)"
    return ""


def _decode_json(raw: bytes) -> Message | None:
    doc = decode_json_object(raw)
    payload_type = doc.get("payloadType")
    if payload_type is None:
        raise Rejected("JSON ProtoMessage without payloadType", "decode")
    try:
        payload_type = as_int(payload_type, "payloadType")
    except Rejected as exc:
        raise Rejected(exc.reason, "decode") from None
    cls = _payload_class(payload_type)
    if cls is None:
        return None
    name = cls.DESCRIPTOR.name
    payload = doc.get("payload")
    if payload is None:
        raise Rejected(f"{name} ({payload_type}) without payload", "decode")
    if not isinstance(payload, dict):
        raise Rejected(f"{name} payload must be a JSON object, got {type(payload).__name__}", "decode")
    message = cls()
    try:
        json_format.ParseDict(payload, message, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise Rejected(f"payload is not a valid {name}: {exc}", "decode") from None
    return message


def decode_ctrader_message(env: Envelope) -> Message | None:
    """The envelope's payload as its generated class, or None for payload types not read."""
    if env.headers.get("encoding", "").lower() == "json":
        return _decode_json(env.value)
    return _decode_protobuf(env.value)


# ---- reading fields ---------------------------------------------------------------------------


def _need(message: Message, name: str) -> Any:
    """A field the connector cannot do without. An enum value this subset does not know lands
    in the unknown fields (proto2 enums are closed): say so rather than "missing"."""
    if message.HasField(name):
        return getattr(message, name)
    number = message.DESCRIPTOR.fields_by_name[name].number
    for field in UnknownFieldSet(message):
        if field.field_number == number:
            raise Rejected(f"{message.DESCRIPTOR.name}.{name}: unknown value {field.data!r}")
    raise Rejected(f"{message.DESCRIPTOR.name}: missing field {name!r}")


def _epoch(message: Message, name: str) -> datetime:
    return event_time(_need(message, name), f"{message.DESCRIPTOR.name}.{name}")


def _text(message: Message, name: str) -> str:
    """A string field. proto2 strings are not checked for UTF-8 on the wire: the upb runtime
    hands invalid ones over as bytes (the pure-Python one fails to parse, see _PARSE_ERRORS)."""
    value = getattr(message, name)
    if not isinstance(value, str):
        raise Rejected(f"{message.DESCRIPTOR.name}.{name} is not UTF-8 text: {value!r}", "decode")
    return value


def _money_digits(message: Message, fallback: int) -> int:
    if not message.HasField("moneyDigits"):
        return fallback
    digits: int = message.moneyDigits
    if digits > MAX_MONEY_DIGITS:
        raise Rejected(
            f"{message.DESCRIPTOR.name}.moneyDigits: {digits} is out of range (0..{MAX_MONEY_DIGITS})"
        )
    return digits


def _money(value: int, digits: int, name: str) -> Decimal:
    """An Open API money integer (x 10^moneyDigits) -> its exact Decimal, if the money columns
    (8 places) hold it: moneyDigits above 8 with a non-zero 9th place is a dead letter."""
    return fit_decimal(Decimal(value).scaleb(-digits), name, MONEY)


def _login(value: int, name: str) -> int:
    if value < 0:
        raise Rejected(f"field {name!r} must not be negative, got {value}")
    return value


def _platform_symbol(name: str) -> tuple[str, str]:
    # cTrader may name symbols "EUR/USD"; the canonical name has no separator.
    return canonical_symbol(name.replace("/", "")), name


@dataclass(frozen=True)
class _Context:
    env: Envelope
    info: ServerInfo
    symbols: CTraderSymbols

    @property
    def server(self) -> str:
        return self.info.server.name

    @property
    def version(self) -> int:
        return event_version(self.env.timestamp_ms, "add")


# ---- converters -------------------------------------------------------------------------------


def _execution(event: pb.ProtoOAExecutionEvent, ctx: _Context) -> list[CTraderRecord]:
    login = _login(_need(event, "ctidTraderAccountId"), "ctidTraderAccountId")
    if event.HasField("depositWithdraw"):
        op = event.depositWithdraw
        records: list[CTraderRecord] = [_balance(op, login, ctx)]
        digits = _money_digits(op, DEFAULT_MONEY_DIGITS)
        state = _account_state(login, ctx,
                               balance=_optional_money(op, "balance", digits),
                               equity=_optional_money(op, "equity", digits))
        return records if state is None else [*records, state]
    if event.HasField("executionType") and event.executionType == pb.DEPOSIT_WITHDRAW:
        raise Rejected("DEPOSIT_WITHDRAW execution event without depositWithdraw")
    if event.HasField("deal"):
        deal = _deal(event, login, ctx)
        if deal is None:
            return []
        detail = event.deal.closePositionDetail
        if event.deal.HasField("closePositionDetail") and detail.HasField("balance"):
            # the account's balance once this close was booked
            digits = _money_digits(detail, _money_digits(event.deal, DEFAULT_MONEY_DIGITS))
            state = _account_state(login, ctx, balance=_optional_money(detail, "balance", digits))
            if state is not None:
                return [deal, state]
        return [deal]
    # Order accepted / replaced / cancelled / expired, swap and bonus events: no fill, no money.
    return []


def _deal(event: pb.ProtoOAExecutionEvent, login: int, ctx: _Context) -> Deal | None:
    deal = event.deal
    status = _need(deal, "dealStatus")
    if status not in FILL_STATUSES:
        # REJECTED, INTERNALLY_REJECTED, ERROR and MISSED deals never executed: nothing was
        # traded and no money moved, so there is no fact to keep. The message itself is sound,
        # so it is not a dead letter either; the order's own events tell what became of it.
        return None
    deal_id = as_id(_need(deal, "dealId"), "dealId")
    side = SIDES[_need(deal, "tradeSide")]
    symbol = ctx.symbols.symbol(ctx.server, _need(deal, "symbolId"))
    filled = _need(deal, "filledVolume")
    if filled <= 0:
        raise Rejected(f"a fill needs a positive filledVolume, got {filled}")
    price = as_decimal(_need(deal, "executionPrice"), "executionPrice", PRICE)
    if price < ZERO:
        raise Rejected(f"field 'executionPrice': {price} is out of range (negative)")
    time = _epoch(deal, "executionTimestamp")
    deal_digits = _money_digits(deal, DEFAULT_MONEY_DIGITS)
    commission = _money(deal.commission, deal_digits, "ProtoOADeal.commission")
    profit = swap = fee = ZERO
    entry: Entry = "in"
    if deal.HasField("closePositionDetail"):
        entry = "out"
        detail = deal.closePositionDetail
        digits = _money_digits(detail, deal_digits)
        # A closing deal carries the money realised on the closed volume: gross profit and the
        # swap accrued on it, from the close detail. Commission stays the deal's own: the
        # detail's covers the closed part of the position (its opening side included), so
        # summing it over deals would count the opening commission twice.
        profit = _money(_need(detail, "grossProfit"), digits, "closePositionDetail.grossProfit")
        swap = _money(detail.swap, digits, "closePositionDetail.swap")
        fee = _money(detail.pnlConversionFee, digits, "closePositionDetail.pnlConversionFee")
    try:
        with localcontext() as dc:
            dc.prec = 60  # exact room for int64 volumes x prices before rounding to 8 places
            units = Decimal(filled).scaleb(-2)  # volume is in cents of units
            lots = quantize8(Decimal(filled) / Decimal(symbol.lot_size))
            notional = quantize8(units * price)
    except DecimalException as exc:  # pragma: no cover - guarded by the limits above
        raise Rejected(f"volume or price out of range: {exc!r}") from None
    if lots >= DECIMAL_18_8_LIMIT:
        raise Rejected(f"filledVolume {filled} is {lots} lots of {symbol.name}: out of range")
    symbol_name, platform_symbol = _platform_symbol(symbol.name)
    return Deal.from_checked(
        deal_key=f"{PLATFORM}:{ctx.server}:{deal_id}",
        tenant=ctx.info.tenant,
        platform=PLATFORM,
        server=ctx.server,
        login=login,
        deal_id=str(deal_id),
        order_id=str(as_id(deal.orderId, "orderId", zero=True)) if deal.HasField("orderId") else "",
        position_id=(str(as_id(deal.positionId, "positionId", zero=True))
                     if deal.HasField("positionId") else ""),
        symbol=symbol_name,
        platform_symbol=platform_symbol,
        side=side,
        entry=entry,
        lots=lots,
        signed_lots=lots if side == "buy" else -lots,
        contract_size=symbol.contract_size,
        units=units,
        price=price,
        notional=notional,
        profit=profit,
        swap=swap,
        commission=commission,
        fee=fee,
        currency=ctx.info.server.currency,
        # isServerEvent: generated by server logic (stop-out, SL/TP...), not by a request.
        reason="server" if event.isServerEvent else "client",
        canceled=False,
        comment="",
        external_id="",
        time=time,
        event="add",
        version=ctx.version,
        is_deleted=False,
        source=ctx.env.source,
    )


def _balance(op: pb.ProtoOADepositWithdraw, login: int, ctx: _Context) -> BalanceOperation:
    kind, sign = CHANGE_BALANCE_KINDS[_need(op, "operationType")]
    op_id = as_id(_need(op, "balanceHistoryId"), "balanceHistoryId")
    # `delta` is the size of the move (int64 on the wire, in practice never negative): the
    # direction comes from the operation type, so a withdrawal is negative either way.
    amount = sign * abs(_money(_need(op, "delta"), _money_digits(op, DEFAULT_MONEY_DIGITS),
                               "ProtoOADepositWithdraw.delta"))
    return BalanceOperation.from_checked(
        op_key=f"{PLATFORM}:{ctx.server}:{op_id}",
        tenant=ctx.info.tenant,
        platform=PLATFORM,
        server=ctx.server,
        login=login,
        op_id=str(op_id),
        kind=kind,
        amount=amount,
        currency=ctx.info.server.currency,
        # status, provider, method, payer, instrument, country: the model's defaults
        comment=_text(op, "externalNote"),
        time=_epoch(op, "changeBalanceTimestamp"),
        event="add",
        version=ctx.version,
        is_deleted=False,
        source=ctx.env.source,
    )


def _optional_money(message: Message, name: str, digits: int) -> Decimal | None:
    if not message.HasField(name):
        return None
    return _money(getattr(message, name), digits, f"{message.DESCRIPTOR.name}.{name}")


def _account_state(login: int, ctx: _Context, *, balance: Decimal | None,
                   equity: Decimal | None = None) -> AccountUpdate | None:
    """What an execution event says about the account's money (None: nothing)."""
    if balance is None and equity is None:
        return None
    return account_update(
        platform=PLATFORM, server=ctx.server, login=login, tenant=ctx.info.tenant,
        event="account_state", balance=balance, equity=equity,
        time=from_epoch_ms(ctx.env.timestamp_ms),
        # ranks with updates: within one millisecond the later message wins
        version=event_version(ctx.env.timestamp_ms, "update"),
        source=ctx.env.source,
    )


def deposit_currency(trader: pb.ProtoOATrader, info: ServerInfo) -> str:
    """The trader's deposit currency: its asset id through the server's mapping, else the
    server's configured currency (the one every deal of the server carries)."""
    if trader.HasField("depositAssetId"):
        code = info.server.deposit_assets.get(trader.depositAssetId)
        if code is not None:
            return code
    return info.server.currency


def _quote(spot: pb.ProtoOASpotEvent, ctx: _Context) -> list[CTraderRecord]:
    symbol = ctx.symbols.symbol(ctx.server, _need(spot, "symbolId"))
    # Either side may be left out when unchanged: None, never zero.
    bid = Decimal(spot.bid).scaleb(-PRICE_DIGITS) if spot.HasField("bid") else None
    ask = Decimal(spot.ask).scaleb(-PRICE_DIGITS) if spot.HasField("ask") else None
    if bid is None and ask is None:
        return []  # a spot event with trend bars or session close only: no price to keep
    for side, price in (("bid", bid), ("ask", ask)):
        if price is not None:
            fit_decimal(price, f"ProtoOASpotEvent.{side}", PRICE)
    symbol_name, platform_symbol = _platform_symbol(symbol.name)
    time = _epoch(spot, "timestamp") if spot.HasField("timestamp") else from_epoch_ms(ctx.env.timestamp_ms)
    return [
        Quote.from_checked(
            tenant=ctx.info.tenant,
            platform=PLATFORM,
            server=ctx.server,
            symbol=symbol_name,
            platform_symbol=platform_symbol,
            bid=bid,
            ask=ask,
            time=time,
            source=ctx.env.source,
        )
    ]


def _trader(event: pb.ProtoOATraderUpdatedEvent, ctx: _Context) -> AccountUpdate:
    trader = _need(event, "trader")
    if event.HasField("ctidTraderAccountId"):
        login = event.ctidTraderAccountId
        if trader.HasField("ctidTraderAccountId") and trader.ctidTraderAccountId != login:
            raise Rejected(f"trader {trader.ctidTraderAccountId} updated in an event for account {login}")
    else:
        login = _need(trader, "ctidTraderAccountId")
    login = _login(login, "ctidTraderAccountId")
    digits = _money_digits(trader, DEFAULT_MONEY_DIGITS)
    leverage = None
    if trader.HasField("leverageInCents"):
        # 1:50 is 5000; a fractional leverage (1:33.33) is rounded to the int the schema holds.
        leverage = int(Decimal(trader.leverageInCents).scaleb(-2).to_integral_value())
    return account_update(
        platform=PLATFORM, server=ctx.server, login=login, tenant=ctx.info.tenant,
        event="user_update",
        currency=deposit_currency(trader, ctx.info),
        leverage=leverage,
        registration=(
            _epoch(trader, "registrationTimestamp") if trader.HasField("registrationTimestamp") else None
        ),
        balance=(_money(trader.balance, digits, "ProtoOATrader.balance")
                 if trader.HasField("balance") else None),
        time=from_epoch_ms(ctx.env.timestamp_ms),
        version=ctx.version,
        source=ctx.env.source,
    )


# ---- entry points -----------------------------------------------------------------------------


def read_ctrader_event(
    env: Envelope, router: Router, symbols: CTraderSymbols | None = None
) -> list[CTraderRecord]:
    """One `ctrader.events` message -> its canonical records (none for payload types that
    carry no fact we keep). Raises Rejected with the reason.

    `symbols` is the per-server symbol list; without it the simulated broker's list is used.
    """
    info = router.server_of(env, PLATFORM)
    message = decode_ctrader_message(env)
    if message is None:
        return []
    ctx = _Context(env, info, DEFAULT_SYMBOLS if symbols is None else symbols)
    if isinstance(message, pb.ProtoOAExecutionEvent):
        return _execution(message, ctx)
    if isinstance(message, pb.ProtoOASpotEvent):
        return _quote(message, ctx)
    if isinstance(message, pb.ProtoOATraderUpdatedEvent):
        return [_trader(message, ctx)]
    raise AssertionError(f"no converter for {type(message).__name__}")  # pragma: no cover


def ctrader_reader(symbols: CTraderSymbols) -> Callable[[Envelope, Router], list[CTraderRecord]]:
    """A reader for the connector registry that uses the given symbol lists."""

    def read(env: Envelope, router: Router) -> list[CTraderRecord]:
        return read_ctrader_event(env, router, symbols)

    return read
