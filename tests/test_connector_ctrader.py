"""cTrader Open API ProtoMessages (protobuf bytes and the JSON variant) -> canonical records."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from connectors.ctrader import (
    CHANGE_BALANCE_KINDS,
    ctrader_reader,
    read_ctrader_event,
)
from connectors.ctrader_proto import openapi_subset_pb2 as pb
from connectors.ctrader_symbols import (
    SIMULATED_SYMBOLS,
    CTraderSymbol,
    CTraderSymbols,
    symbols_from_open_api,
)
from connectors.fields import Rejected
from connectors.routing import Router
from pipelines.config import ConfigError, parse_settings
from schemas.envelope import Envelope
from schemas.events import AccountUpdate, BalanceOperation, Deal, Quote, event_version

SERVER = "ACME-cTrader"
T0 = 1_732_406_400_000  # 2024-11-24 00:00:00 UTC
T1 = T0 + 1_234  # when the platform executed
CTID = 4_400_123
EURUSD, XAUUSD, BTCUSD = 1, 6, 8
FX_LOT = 10_000_000  # cents of units in one 100,000-unit lot

ROUTER = Router(
    parse_settings(
        {"tenants": [{"id": "acme", "servers": [{"name": SERVER, "platform": "ctrader", "currency": "USD"}]}]}
    )
)


# ---- building messages as a cTrader proxy sends them ---------------------------------------------


def proto_message(payload: Message, payload_type: int | None = None) -> bytes:
    types = {"ProtoOAExecutionEvent": 2126, "ProtoOASpotEvent": 2131, "ProtoOATraderUpdatedEvent": 2123}
    envelope = pb.ProtoMessage(
        payloadType=payload_type or types[payload.DESCRIPTOR.name],
        payload=payload.SerializeToString(),
        clientMsgId="m-1",
    )
    return envelope.SerializeToString()


def env(
    value: bytes, *, server: str | None = SERVER, encoding: str | None = None, ts: int = T0, offset: int = 5
) -> Envelope:
    headers = {} if server is None else {"server": server}
    if encoding is not None:
        headers["encoding"] = encoding
    return Envelope(
        topic="ctrader.events",
        value=value,
        timestamp_ms=ts,
        key=str(CTID),
        headers=headers,
        partition=2,
        offset=offset,
    )


def as_json(payload: Message, payload_type: int) -> bytes:
    """The JSON variant of a message, as the Open API JSON transport writes it."""
    return orjson.dumps(
        {"clientMsgId": "m-1", "payloadType": payload_type, "payload": json_format.MessageToDict(payload)}
    )


def deal_event(**deal_fields: Any) -> pb.ProtoOAExecutionEvent:
    fields: dict[str, Any] = {
        "dealId": 900_001,
        "orderId": 800_001,
        "positionId": 700_001,
        "volume": FX_LOT,
        "filledVolume": FX_LOT,
        "symbolId": EURUSD,
        "createTimestamp": T1 - 20,
        "executionTimestamp": T1,
        "utcLastUpdateTimestamp": T1,
        "executionPrice": 1.08512,
        "tradeSide": pb.BUY,
        "dealStatus": pb.FILLED,
        "commission": -350,
        "moneyDigits": 2,
    }
    fields.update(deal_fields)
    fields = {k: v for k, v in fields.items() if v is not None}
    return pb.ProtoOAExecutionEvent(
        ctidTraderAccountId=CTID, executionType=pb.ORDER_FILLED, deal=pb.ProtoOADeal(**fields)
    )


def close_detail(**fields: Any) -> pb.ProtoOAClosePositionDetail:
    base: dict[str, Any] = {
        "entryPrice": 1.08,
        "grossProfit": 51_200,
        "swap": -125,
        "commission": -700,
        "balance": 10_050_000,
        "moneyDigits": 2,
    }
    base.update(fields)
    return pb.ProtoOAClosePositionDetail(**{k: v for k, v in base.items() if v is not None})


def deposit_event(operation: Any, delta: int, digits: int | None = 2) -> pb.ProtoOAExecutionEvent:
    op = pb.ProtoOADepositWithdraw(
        operationType=operation,
        balanceHistoryId=55_001,
        balance=0,
        delta=delta,
        changeBalanceTimestamp=T1,
        externalNote="wire 7",
    )
    if digits is not None:
        op.moneyDigits = digits
    return pb.ProtoOAExecutionEvent(
        ctidTraderAccountId=CTID, executionType=pb.DEPOSIT_WITHDRAW, depositWithdraw=op
    )


def read(value: bytes, **kwargs: Any) -> list[Any]:
    return read_ctrader_event(env(value, **kwargs), ROUTER)


def one(value: bytes, **kwargs: Any) -> Any:
    """The message's one fact (the account-state update that may come beside it left out)."""
    records = [r for r in read(value, **kwargs)
               if not (isinstance(r, AccountUpdate) and r.event == "account_state")]
    assert len(records) == 1, records
    return records[0]


# ---- deals ------------------------------------------------------------------------------------


def test_opening_deal() -> None:
    deal = one(proto_message(deal_event()))
    assert isinstance(deal, Deal)
    assert deal.deal_key == f"ctrader:{SERVER}:900001"
    assert (deal.tenant, deal.platform, deal.server, deal.login) == ("acme", "ctrader", SERVER, CTID)
    assert (deal.deal_id, deal.order_id, deal.position_id) == ("900001", "800001", "700001")
    assert (deal.symbol, deal.platform_symbol) == ("EURUSD", "EURUSD")
    assert (deal.side, deal.entry) == ("buy", "in")
    assert deal.lots == Decimal("1") and deal.signed_lots == Decimal("1")
    assert deal.contract_size == Decimal("100000")
    assert deal.units == Decimal("100000")
    assert deal.price == Decimal("1.08512")
    assert deal.notional == Decimal("108512.00000000")
    assert deal.commission == Decimal("-3.50")
    assert deal.profit == deal.swap == deal.fee == 0
    assert deal.currency == "USD" and deal.reason == "client"
    assert deal.time == datetime(2024, 11, 24, 0, 0, 1, 234_000, tzinfo=UTC)
    assert deal.version == event_version(T0, "add")
    assert deal.source == "ctrader.events/2/5"
    Deal.model_validate(deal.model_dump())


def test_closing_deal_money_from_close_detail_with_two_money_digits() -> None:
    event = deal_event(
        dealId=900_002,
        tradeSide=pb.SELL,
        executionPrice=1.09024,
        commission=-350,
        closePositionDetail=close_detail(pnlConversionFee=-12),
    )
    event.isServerEvent = True
    deal = one(proto_message(event))
    assert isinstance(deal, Deal)
    assert (deal.side, deal.entry) == ("sell", "out")
    assert deal.signed_lots == Decimal("-1")
    assert deal.profit == Decimal("512.00")
    assert deal.swap == Decimal("-1.25")
    assert deal.commission == Decimal("-3.50")  # its own side only: the detail's -7.00 is round-turn
    assert deal.fee == Decimal("-0.12")
    assert deal.reason == "server"
    Deal.model_validate(deal.model_dump())


def test_closing_deal_with_eight_money_digits() -> None:
    detail = close_detail(
        grossProfit=51_234_567_890, swap=-12_345_678, commission=-700_000_000, moneyDigits=8
    )
    deal = one(proto_message(deal_event(closePositionDetail=detail, moneyDigits=8, commission=-350_000_000)))
    assert deal.profit == Decimal("512.34567890")
    assert deal.swap == Decimal("-0.12345678")
    assert deal.commission == Decimal("-3.50000000")


@pytest.mark.parametrize(
    ("detail_digits", "deal_digits", "profit"),
    [(None, 8, "0.00051200"), (None, None, "512.00"), (3, 8, "51.200")],
)
def test_close_detail_money_digits_fall_back_to_the_deal_then_two(
    detail_digits: int | None, deal_digits: int | None, profit: str
) -> None:
    detail = close_detail(moneyDigits=detail_digits)
    deal = one(proto_message(deal_event(closePositionDetail=detail, moneyDigits=deal_digits)))
    assert deal.profit == Decimal(profit)


def test_opening_commission_uses_the_deal_money_digits() -> None:
    deal = one(proto_message(deal_event(commission=-350_000_000, moneyDigits=8)))
    assert deal.commission == Decimal("-3.50000000")


def test_partial_fill_counts_only_the_filled_volume() -> None:
    event = deal_event(dealStatus=pb.PARTIALLY_FILLED, volume=FX_LOT, filledVolume=2_500_000)
    event.executionType = pb.ORDER_PARTIAL_FILL
    deal = one(proto_message(event))
    assert deal.lots == Decimal("0.25")
    assert deal.units == Decimal("25000")
    assert deal.notional == Decimal("27128.00000000")


@pytest.mark.parametrize(
    ("symbol_id", "filled", "lots", "units", "contract_size"),
    [(XAUUSD, 2_500, "0.25", "25", "100"), (BTCUSD, 150, "1.5", "1.5", "1"), (7, 1, "0.01", "0.01", "1")],
)
def test_lot_sizes_of_metals_indices_and_crypto(
    symbol_id: int, filled: int, lots: str, units: str, contract_size: str
) -> None:
    deal = one(
        proto_message(
            deal_event(symbolId=symbol_id, filledVolume=filled, volume=filled, executionPrice=2650.15)
        )
    )
    assert deal.lots == Decimal(lots)
    assert deal.units == Decimal(units)
    assert deal.contract_size == Decimal(contract_size)
    assert deal.notional == (Decimal(units) * Decimal("2650.15")).quantize(Decimal("1E-8"))


@pytest.mark.parametrize("status", [pb.REJECTED, pb.INTERNALLY_REJECTED, pb.ERROR, pb.MISSED])
def test_deals_that_never_executed_are_not_fills(status: int) -> None:
    event = deal_event(dealStatus=status, filledVolume=0)
    event.executionType = pb.ORDER_REJECTED
    assert read(proto_message(event)) == []


@pytest.mark.parametrize("execution_type", [pb.ORDER_ACCEPTED, pb.ORDER_CANCELLED, pb.ORDER_EXPIRED, pb.SWAP])
def test_execution_events_without_a_deal_record_nothing(execution_type: Any) -> None:
    event = pb.ProtoOAExecutionEvent(ctidTraderAccountId=CTID, executionType=execution_type)
    assert read(proto_message(event)) == []


# ---- balance operations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "delta", "amount"),
    [
        (pb.BALANCE_DEPOSIT, 100_000, "1000.00"),
        (pb.BALANCE_WITHDRAW, 25_050, "-250.50"),
        # a withdrawal is negative whatever sign the platform puts on `delta`
        (pb.BALANCE_WITHDRAW, -25_050, "-250.50"),
    ],
)
def test_deposit_and_withdrawal(operation: int, delta: int, amount: str) -> None:
    op = one(proto_message(deposit_event(operation, delta)))
    assert isinstance(op, BalanceOperation)
    assert op.op_key == f"ctrader:{SERVER}:55001" and op.op_id == "55001"
    assert (op.kind, op.amount, op.currency) == ("balance", Decimal(amount), "USD")
    assert (op.platform, op.login, op.tenant) == ("ctrader", CTID, "acme")
    assert op.comment == "wire 7"
    assert op.time == datetime(2024, 11, 24, 0, 0, 1, 234_000, tzinfo=UTC)
    assert op.version == event_version(T0, "add")
    BalanceOperation.model_validate(op.model_dump())


def test_deposit_money_digits() -> None:
    assert one(proto_message(deposit_event(pb.BALANCE_DEPOSIT, 123_456_789, 8))).amount == Decimal(
        "1.23456789"
    )
    assert one(proto_message(deposit_event(pb.BALANCE_DEPOSIT, 12_345, None))).amount == Decimal("123.45")


@pytest.mark.parametrize(
    ("operation", "kind", "sign"),
    [
        (pb.BALANCE_WITHDRAW_SWAP, "swap", -1),
        (pb.BALANCE_DEPOSIT_TRANSFER, "transfer", 1),
        (pb.BALANCE_DEPOSIT_IB_COMMISSIONS, "agent", 1),
        (pb.BALANCE_WITHDRAW_INACTIVITY_FEE, "charge", -1),
        (pb.BALANCE_DEPOSIT_NONWITHDRAWABLE_BONUS, "bonus", 1),
    ],
)
def test_other_balance_changes_have_their_own_kind_and_sign(operation: int, kind: str, sign: int) -> None:
    op = one(proto_message(deposit_event(operation, 1_000)))
    assert (op.kind, op.amount) == (kind, sign * Decimal("10.00"))


def test_every_change_balance_type_has_a_kind_and_sign() -> None:
    known = set(pb.ProtoOAChangeBalanceType.values())
    assert set(CHANGE_BALANCE_KINDS) == known
    for name, number in pb.ProtoOAChangeBalanceType.items():
        _kind, sign = CHANGE_BALANCE_KINDS[number]
        assert sign == (-1 if "_WITHDRAW" in name else 1), name


def test_deposit_withdraw_event_without_its_operation_is_rejected() -> None:
    event = pb.ProtoOAExecutionEvent(ctidTraderAccountId=CTID, executionType=pb.DEPOSIT_WITHDRAW)
    with pytest.raises(Rejected, match="without depositWithdraw"):
        read(proto_message(event))


# ---- quotes -----------------------------------------------------------------------------------


def test_spot_with_bid_absent() -> None:
    spot = pb.ProtoOASpotEvent(ctidTraderAccountId=CTID, symbolId=EURUSD, ask=108_523, timestamp=T1)
    quote = one(proto_message(spot))
    assert isinstance(quote, Quote)
    assert quote.bid is None
    assert quote.ask == Decimal("1.08523")
    assert (quote.symbol, quote.platform, quote.server, quote.tenant) == ("EURUSD", "ctrader", SERVER, "acme")
    assert quote.time == datetime(2024, 11, 24, 0, 0, 1, 234_000, tzinfo=UTC)
    Quote.model_validate(quote.model_dump())


def test_spot_prices_are_exact_and_time_falls_back_to_the_envelope() -> None:
    spot = pb.ProtoOASpotEvent(ctidTraderAccountId=CTID, symbolId=XAUUSD, bid=265_015_000, ask=265_045_001)
    quote = one(proto_message(spot))
    assert quote.bid == Decimal("2650.15000") and quote.ask == Decimal("2650.45001")
    assert quote.time == datetime(2024, 11, 24, tzinfo=UTC)


def test_spot_without_any_price_records_nothing() -> None:
    spot = pb.ProtoOASpotEvent(ctidTraderAccountId=CTID, symbolId=EURUSD, sessionClose=108_000)
    assert read(proto_message(spot)) == []


# ---- account updates --------------------------------------------------------------------------


def test_trader_updated_event() -> None:
    trader = pb.ProtoOATrader(
        ctidTraderAccountId=CTID,
        balance=1_005_012_345_678,
        depositAssetId=15,
        leverageInCents=50_000,
        traderLogin=3_001_234,
        registrationTimestamp=T0 - 86_400_000,
        moneyDigits=8,
        accessRights=pb.FULL_ACCESS,
        accountType=pb.HEDGED,
    )
    update = one(proto_message(pb.ProtoOATraderUpdatedEvent(ctidTraderAccountId=CTID, trader=trader)))
    assert isinstance(update, AccountUpdate)
    assert update.account_key == f"ctrader:{SERVER}:{CTID}"
    assert (update.origin, update.event, update.login) == ("platform", "user_update", CTID)
    assert update.balance == Decimal("10050.12345678")
    assert update.leverage == 500
    assert update.registration == datetime(2024, 11, 23, tzinfo=UTC)
    assert update.time == datetime(2024, 11, 24, tzinfo=UTC)
    # asset 15 is not in this server's deposit_assets: the server's configured currency
    assert update.currency == "USD" and update.name is None and update.group is None
    AccountUpdate.model_validate(update.model_dump())


def test_trader_update_defaults_money_digits_and_leaves_absent_fields_unsaid() -> None:
    trader = pb.ProtoOATrader(ctidTraderAccountId=CTID, balance=12_345, depositAssetId=15)
    update = one(proto_message(pb.ProtoOATraderUpdatedEvent(trader=trader)))
    assert update.balance == Decimal("123.45") and update.login == CTID
    assert update.leverage is None and update.registration is None


# ---- symbol lists -----------------------------------------------------------------------------


def test_unknown_symbol_id() -> None:
    with pytest.raises(Rejected, match=f"unknown cTrader symbolId 99 on server {SERVER}"):
        read(proto_message(deal_event(symbolId=99)))
    spot = pb.ProtoOASpotEvent(ctidTraderAccountId=CTID, symbolId=99, bid=1)
    with pytest.raises(Rejected, match="unknown cTrader symbolId 99"):
        read(proto_message(spot))


def test_simulated_list() -> None:
    names = [(s.id, s.name, s.lot_size) for s in SIMULATED_SYMBOLS]
    assert names == [
        (1, "EURUSD", FX_LOT),
        (2, "GBPUSD", FX_LOT),
        (3, "USDJPY", FX_LOT),
        (4, "EURJPY", FX_LOT),
        (5, "AUDUSD", FX_LOT),
        (6, "XAUUSD", 10_000),
        (7, "US30", 100),
        (8, "BTCUSD", 100),
    ]


def test_symbol_list_per_server_from_a_mapping() -> None:
    symbols = CTraderSymbols.from_mapping(
        {
            SERVER: [
                {"id": 41, "name": "EURUSD.x", "digits": 5, "lot_size": FX_LOT},
                {"id": 42, "name": "EUR/GBP", "digits": 5, "lot_size": FX_LOT},
            ]
        }
    )
    reader = ctrader_reader(symbols)
    deal = reader(env(proto_message(deal_event(symbolId=41))), ROUTER)[0]
    assert isinstance(deal, Deal)
    assert (deal.symbol, deal.platform_symbol) == ("EURUSD", "EURUSD.x")
    quote = reader(env(proto_message(pb.ProtoOASpotEvent(symbolId=42, bid=85_000))), ROUTER)[0]
    assert isinstance(quote, Quote)
    assert (quote.symbol, quote.platform_symbol) == ("EURGBP", "EUR/GBP")
    with pytest.raises(Rejected, match="unknown cTrader symbolId 1 on server"):
        reader(env(proto_message(deal_event(symbolId=1))), ROUTER)


def test_server_without_a_symbol_list_is_rejected() -> None:
    symbols = CTraderSymbols.from_mapping({"Other-cTrader": []})
    with pytest.raises(Rejected, match=f"no cTrader symbol list is configured for server '{SERVER}'"):
        read_ctrader_event(env(proto_message(deal_event())), ROUTER, symbols)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({SERVER: [{"id": 1, "name": "EURUSD", "digits": 5, "lot_size": 0}]}, "lot_size"),
        ({SERVER: [{"id": 1, "name": "EURUSD", "digits": 5}]}, "lot_size: Field required"),
        (
            {
                SERVER: [
                    {"id": 1, "name": "A", "digits": 5, "lot_size": 1},
                    {"id": 1, "name": "B", "digits": 5, "lot_size": 1},
                ]
            },
            "listed twice",
        ),
    ],
)
def test_bad_symbol_lists_name_the_problem(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        CTraderSymbols.from_mapping(doc)


def test_symbol_list_from_the_open_api_answers() -> None:
    names = pb.ProtoOASymbolsListRes(
        ctidTraderAccountId=CTID,
        symbol=[
            pb.ProtoOALightSymbol(symbolId=1, symbolName="EURUSD", enabled=True),
            pb.ProtoOALightSymbol(symbolId=2, symbolName="XAUUSD"),
            pb.ProtoOALightSymbol(symbolId=3, symbolName="NOLOT"),
        ],
    )
    details = pb.ProtoOASymbolByIdRes(
        ctidTraderAccountId=CTID,
        symbol=[
            pb.ProtoOASymbol(symbolId=1, digits=5, pipPosition=4, lotSize=FX_LOT),
            pb.ProtoOASymbol(symbolId=2, digits=2, pipPosition=1, lotSize=10_000),
            pb.ProtoOASymbol(symbolId=3, digits=2, pipPosition=1),
        ],
    )
    got = symbols_from_open_api(names.SerializeToString(), details.SerializeToString())
    assert got == [
        CTraderSymbol(id=1, name="EURUSD", digits=5, lot_size=FX_LOT),
        CTraderSymbol(id=2, name="XAUUSD", digits=2, lot_size=10_000),
    ]
    with pytest.raises(ValueError, match="not a cTrader symbol answer"):
        symbols_from_open_api(b"\xff\xff\xff", b"")


# ---- undecodable and uninterpretable messages -------------------------------------------------


def test_garbage_bytes() -> None:
    with pytest.raises(Rejected, match="not a cTrader ProtoMessage") as exc:
        read(b"\x00\x01garbage\xff")
    assert exc.value.stage == "decode"


def test_truncated_protobuf() -> None:
    raw = proto_message(deal_event())
    with pytest.raises(Rejected, match="not a cTrader ProtoMessage") as exc:
        read(raw[:-7])  # cut inside the payload bytes
    assert exc.value.stage == "decode"


def test_truncated_payload_inside_a_whole_envelope() -> None:
    payload = deal_event().SerializeToString()[:-3]
    raw = pb.ProtoMessage(payloadType=2126, payload=payload).SerializeToString()
    with pytest.raises(Rejected, match="payload is not a valid ProtoOAExecutionEvent") as exc:
        read(raw)
    assert exc.value.stage == "decode"


def test_string_field_that_is_not_utf8_is_rejected() -> None:
    # proto2 does not promise UTF-8 on the wire; depending on the protobuf runtime the bad
    # note fails the parse or reaches the connector as bytes: a decode rejection either way.
    event = deposit_event(pb.BALANCE_DEPOSIT, 100)
    event.depositWithdraw.ClearField("externalNote")
    op = event.depositWithdraw.SerializeToString() + _bytes(6, b"\x80A")  # externalNote
    event.ClearField("depositWithdraw")
    payload = event.SerializeToString() + _bytes(8, op)
    raw = pb.ProtoMessage(payloadType=2126, payload=payload).SerializeToString()
    with pytest.raises(Rejected, match=r"externalNote|not a valid") as exc:
        read(raw)
    assert exc.value.stage == "decode"


def test_envelope_without_payload_type_or_payload() -> None:
    with pytest.raises(Rejected, match="without payloadType") as exc:
        read(b"")
    assert exc.value.stage == "decode"
    with pytest.raises(Rejected, match=r"ProtoOASpotEvent \(2131\) without payload"):
        read(pb.ProtoMessage(payloadType=2131).SerializeToString())


def test_json_sent_without_the_encoding_header_gets_a_hint() -> None:
    raw = as_json(deal_event(), 2126)
    with pytest.raises(Rejected, match="encoding=json"):
        read(raw)


@pytest.mark.parametrize("payload_type", [51, 2142, 2132, 2141, 2155, 2115, 65_000])
def test_other_payload_types_are_ignored(payload_type: int) -> None:
    raw = pb.ProtoMessage(payloadType=payload_type, payload=b"\x08\x01").SerializeToString()
    assert read(raw) == []
    doc = {"payloadType": payload_type, "payload": {"anything": 1}}
    assert read(orjson.dumps(doc), encoding="json") == []


def test_unknown_enum_value_is_named() -> None:
    # A dealStatus this subset does not know (proto2 enums are closed, so it lands in the
    # unknown fields): the reason names the value rather than calling the field missing.
    event = deal_event(dealStatus=None)
    event.deal.MergeFromString(bytes([12 << 3, 9]))  # dealStatus = 9, appended on the wire
    raw = proto_message(event)
    with pytest.raises(Rejected, match=r"ProtoOADeal.dealStatus: unknown value 9"):
        read(raw)
    doc = orjson.loads(as_json(deal_event(), 2126))
    doc["payload"]["deal"]["dealStatus"] = 9
    with pytest.raises(Rejected, match="Invalid enum value 9") as exc:
        read(orjson.dumps(doc), encoding="json")
    assert exc.value.stage == "decode"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (deal_event(dealId=None), "ProtoOADeal: missing field 'dealId'"),
        (deal_event(filledVolume=0), "positive filledVolume"),
        (deal_event(executionPrice=float("nan")), "'executionPrice'"),
        (deal_event(executionPrice=-1.0), "'executionPrice': -1.0 is out of range"),
        (deal_event(executionPrice=1e12), "out of range"),
        (deal_event(filledVolume=2**62), "out of range"),
        (deal_event(executionTimestamp=-5), "not a plausible time"),
        (deal_event(executionTimestamp=2**62), "not a plausible time"),
        (deal_event(moneyDigits=40), "moneyDigits: 40 is out of range"),
        (deal_event(closePositionDetail=close_detail(grossProfit=None)), "missing field 'grossProfit'"),
        (deal_event(tradeSide=None), "missing field 'tradeSide'"),
        (pb.ProtoOAExecutionEvent(executionType=pb.ORDER_FILLED), "missing field 'ctidTraderAccountId'"),
        (pb.ProtoOASpotEvent(bid=1), "missing field 'symbolId'"),
        (pb.ProtoOASpotEvent(symbolId=EURUSD, ask=10**15), "ask': 10000000000.00000 is out of range"),
        (pb.ProtoOATraderUpdatedEvent(ctidTraderAccountId=CTID), "missing field 'trader'"),
        (
            pb.ProtoOATraderUpdatedEvent(
                ctidTraderAccountId=CTID, trader=pb.ProtoOATrader(ctidTraderAccountId=CTID + 1)
            ),
            "updated in an event for account",
        ),
    ],
)
def test_uninterpretable_messages_are_rejected_with_reasons(message: Message, reason: str) -> None:
    with pytest.raises(Rejected, match=reason) as exc:
        read(proto_message(message))
    assert exc.value.stage == "validate"


def test_routing_failures() -> None:
    raw = proto_message(deal_event())
    with pytest.raises(Rejected, match="missing 'server' header") as exc:
        read(raw, server=None)
    assert exc.value.stage == "route"
    mt5 = Router(
        parse_settings({"tenants": [{"id": "acme", "servers": [{"name": "ACME-MT5", "platform": "mt5"}]}]})
    )
    with pytest.raises(Rejected, match="configured as mt5"):
        read_ctrader_event(env(raw, server="ACME-MT5"), mt5)


# ---- the JSON variant -------------------------------------------------------------------------

SAMPLES: list[tuple[Message, int]] = [
    (deal_event(), 2126),
    (
        deal_event(tradeSide=pb.SELL, closePositionDetail=close_detail(moneyDigits=8, pnlConversionFee=-3)),
        2126,
    ),
    (deal_event(dealStatus=pb.PARTIALLY_FILLED, filledVolume=3_000_000), 2126),
    (deal_event(dealStatus=pb.REJECTED), 2126),
    (deposit_event(pb.BALANCE_DEPOSIT, 100_000), 2126),
    (deposit_event(pb.BALANCE_WITHDRAW, 4_200_000_000, 8), 2126),
    (pb.ProtoOASpotEvent(ctidTraderAccountId=CTID, symbolId=EURUSD, ask=108_523), 2131),
    (
        pb.ProtoOASpotEvent(
            ctidTraderAccountId=CTID, symbolId=EURUSD, bid=108_511, ask=108_523, timestamp=T1
        ),
        2131,
    ),
    (
        pb.ProtoOATraderUpdatedEvent(
            ctidTraderAccountId=CTID,
            trader=pb.ProtoOATrader(
                ctidTraderAccountId=CTID,
                balance=100,
                depositAssetId=15,
                leverageInCents=3_333,
                accessRights=pb.NO_TRADING,
            ),
        ),
        2123,
    ),
]


@pytest.mark.parametrize(("message", "payload_type"), SAMPLES)
def test_json_variant_gives_the_same_records(message: Message, payload_type: int) -> None:
    from_proto = read(proto_message(message, payload_type))
    from_json = read(as_json(message, payload_type), encoding="json")
    assert from_json == from_proto


def test_json_variant_with_numbers_for_enums_and_int64() -> None:
    doc = {
        "payloadType": 2126,
        "clientMsgId": "x",
        "payload": {
            "ctidTraderAccountId": CTID,
            "executionType": 3,
            "isServerEvent": False,
            "newFieldFromAFutureVersion": {"a": 1},
            "deal": {
                "dealId": 900_001,
                "orderId": 800_001,
                "positionId": 700_001,
                "volume": FX_LOT,
                "filledVolume": FX_LOT,
                "symbolId": EURUSD,
                "createTimestamp": T1 - 20,
                "executionTimestamp": T1,
                "utcLastUpdateTimestamp": T1,
                "executionPrice": 1.08512,
                "tradeSide": 1,
                "dealStatus": 2,
                "commission": -350,
                "moneyDigits": 2,
            },
        },
    }
    assert read(orjson.dumps(doc), encoding="json") == read(proto_message(deal_event()))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"payloadType": 2126, ', "not JSON"),
        (b"[2126]", "expected a JSON object"),
        (b'{"payload": {}}', "without payloadType"),
        (b'{"payloadType": "x", "payload": {}}', "'payloadType': expected an integer"),
        (b'{"payloadType": 2126}', "without payload"),
        (b'{"payloadType": 2126, "payload": "CAE="}', "must be a JSON object"),
        (b'{"payloadType": 2126, "payload": {"deal": {"dealId": "abc"}}}', "not a valid"),
        (b'{"payloadType": 2126, "payload": {"deal": 5}}', "not a valid"),
    ],
)
def test_bad_json_is_rejected_at_decode(raw: bytes, reason: str) -> None:
    with pytest.raises(Rejected, match=reason) as exc:
        read(raw, encoding="json")
    assert exc.value.stage == "decode"


# ---- field numbers, independently of the generated code ---------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values are sent as 10-byte two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3 | 0) + _varint(value)


def _double(field: int, value: float) -> bytes:
    return _varint(field << 3 | 1) + struct.pack("<d", value)


def _bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def _envelope(payload_type: int, payload: bytes) -> bytes:
    return _int(1, payload_type) + _bytes(2, payload) + _bytes(3, b"m-1")


def test_hand_encoded_messages_match_the_spec_field_numbers() -> None:
    # ProtoOAClosePositionDetail: entryPrice 1, grossProfit 2, swap 3, commission 4,
    # balance 5, closedVolume 7, moneyDigits 9, pnlConversionFee 10
    detail = (
        _double(1, 1.08)
        + _int(2, 51_200)
        + _int(3, -125)
        + _int(4, -700)
        + _int(5, 1)
        + _int(7, FX_LOT)
        + _int(9, 2)
        + _int(10, -12)
    )
    # ProtoOADeal: dealId 1, orderId 2, positionId 3, volume 4, filledVolume 5, symbolId 6,
    # createTimestamp 7, executionTimestamp 8, executionPrice 10, tradeSide 11, dealStatus 12,
    # commission 14, closePositionDetail 16, moneyDigits 17
    deal = (
        _int(1, 900_002)
        + _int(2, 800_001)
        + _int(3, 700_001)
        + _int(4, FX_LOT)
        + _int(5, 2_500_000)
        + _int(6, XAUUSD)
        + _int(7, T1 - 20)
        + _int(8, T1)
        + _double(10, 2650.15)
        + _int(11, 2)
        + _int(12, 3)
        + _int(14, -350)
        + _bytes(16, detail)
        + _int(17, 2)
    )
    # ProtoOAExecutionEvent (2126): ctidTraderAccountId 2, executionType 3, deal 6
    event = _int(2, CTID) + _int(3, 11) + _bytes(6, deal)
    [d, state] = read(_envelope(2126, event))
    assert isinstance(d, Deal)
    # closePositionDetail.balance (field 5) is the account's balance after the close
    assert isinstance(state, AccountUpdate) and state.balance == Decimal("0.01")
    assert (d.deal_id, d.order_id, d.position_id, d.login) == ("900002", "800001", "700001", CTID)
    assert (d.symbol, d.side, d.entry) == ("XAUUSD", "sell", "out")
    assert (d.lots, d.units, d.price) == (Decimal("250"), Decimal("25000"), Decimal("2650.15"))
    assert (d.profit, d.swap, d.commission, d.fee) == (
        Decimal("512.00"),
        Decimal("-1.25"),
        Decimal("-3.50"),  # the deal's own commission, not the round-turn detail
        Decimal("-0.12"),
    )
    assert d.time == datetime(2024, 11, 24, 0, 0, 1, 234_000, tzinfo=UTC)

    # ProtoOADepositWithdraw: operationType 1, balanceHistoryId 2, balance 3, delta 4,
    # changeBalanceTimestamp 5, externalNote 6, moneyDigits 9; in the execution event at 8
    op = (
        _int(1, 1)
        + _int(2, 55_001)
        + _int(3, 0)
        + _int(4, 25_050)
        + _int(5, T1)
        + _bytes(6, b"wire 7")
        + _int(9, 2)
    )
    [b, state] = read(_envelope(2126, _int(2, CTID) + _int(3, 10) + _bytes(8, op)))
    assert state.balance == 0 and state.equity is None  # balance 3 sent (0), equity 8 not
    assert isinstance(b, BalanceOperation)
    assert (b.op_id, b.amount, b.comment) == ("55001", Decimal("-250.50"), "wire 7")

    # ProtoOASpotEvent (2131): ctidTraderAccountId 2, symbolId 3, bid 4, ask 5, timestamp 8
    [q] = read(
        _envelope(2131, _int(2, CTID) + _int(3, EURUSD) + _int(4, 108_511) + _int(5, 108_523) + _int(8, T1))
    )
    assert isinstance(q, Quote)
    assert (q.bid, q.ask, q.symbol) == (Decimal("1.08511"), Decimal("1.08523"), "EURUSD")
    assert q.time == datetime(2024, 11, 24, 0, 0, 1, 234_000, tzinfo=UTC)

    # ProtoOATraderUpdatedEvent (2123): ctidTraderAccountId 2, trader 3; ProtoOATrader:
    # ctidTraderAccountId 1, balance 2, depositAssetId 8, leverageInCents 10,
    # registrationTimestamp 17, moneyDigits 20
    trader = (
        _int(1, CTID)
        + _int(2, 1_005_012_345_678)
        + _int(8, 15)
        + _int(10, 50_000)
        + _int(17, T0)
        + _int(20, 8)
    )
    [a] = read(_envelope(2123, _int(2, CTID) + _bytes(3, trader)))
    assert isinstance(a, AccountUpdate)
    assert (a.login, a.balance, a.leverage) == (CTID, Decimal("10050.12345678"), 500)
    assert a.registration == datetime(2024, 11, 24, tzinfo=UTC)


def test_generated_code_serialises_to_the_hand_encoding() -> None:
    spot = pb.ProtoOASpotEvent(
        ctidTraderAccountId=CTID, symbolId=EURUSD, bid=108_511, ask=108_523, timestamp=T1
    )
    hand = _int(2, CTID) + _int(3, EURUSD) + _int(4, 108_511) + _int(5, 108_523) + _int(8, T1)
    assert spot.SerializeToString() == hand
    wrapped = pb.ProtoMessage(payloadType=2131, payload=hand, clientMsgId="m-1")
    assert wrapped.SerializeToString() == _envelope(2131, hand)


# ---- fuzzing ----------------------------------------------------------------------------------


def _never_crashes(value: bytes, encoding: str | None) -> None:
    try:
        out = read(value, encoding=encoding)
    except Rejected as exc:
        assert exc.reason
        return
    assert isinstance(out, list)
    for record in out:
        type(record).model_validate(record.model_dump())


@hsettings(max_examples=400, deadline=None)
@given(value=st.binary(max_size=200), json=st.booleans())
def test_fuzz_random_bytes(value: bytes, json: bool) -> None:
    _never_crashes(value, "json" if json else None)


_VALID = [proto_message(m, t) for m, t in SAMPLES]


@hsettings(max_examples=400, deadline=None)
@given(
    sample=st.sampled_from(_VALID),
    cuts=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    truncate=st.integers(0, 400),
)
def test_fuzz_damaged_real_messages(sample: bytes, cuts: list[tuple[int, int]], truncate: int) -> None:
    damaged = bytearray(sample)
    for position, byte in cuts:
        if damaged:
            damaged[position % len(damaged)] = byte
    _never_crashes(bytes(damaged[: max(truncate, 1)]), None)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@hsettings(max_examples=300, deadline=None)
@given(
    sample=st.sampled_from(SAMPLES),
    overrides=st.dictionaries(
        st.sampled_from(
            [
                "dealId",
                "filledVolume",
                "symbolId",
                "executionPrice",
                "tradeSide",
                "dealStatus",
                "moneyDigits",
                "executionTimestamp",
                "closePositionDetail",
                "commission",
            ]
        ),
        _json_values,
        max_size=4,
    ),
)
def test_fuzz_json_fields(sample: tuple[Message, int], overrides: dict[str, Any]) -> None:
    doc = orjson.loads(as_json(*sample))
    target = doc["payload"].get("deal", doc["payload"])
    target.update(overrides)
    _never_crashes(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS), "json")


_i64 = st.integers(-(2**63), 2**63 - 1)
_u32 = st.integers(0, 2**32 - 1)


@hsettings(max_examples=300, deadline=None)
@given(
    deal=st.fixed_dictionaries(
        {},
        optional={
            "dealId": _i64,
            "filledVolume": _i64,
            "symbolId": _i64,
            "executionTimestamp": _i64,
            "executionPrice": st.floats(),
            "commission": _i64,
            "moneyDigits": _u32,
            "tradeSide": st.sampled_from([pb.BUY, pb.SELL]),
            "dealStatus": st.sampled_from([pb.FILLED, pb.PARTIALLY_FILLED, pb.REJECTED]),
        },
    ),
    detail=st.none()
    | st.fixed_dictionaries(
        {},
        optional={
            "grossProfit": _i64,
            "swap": _i64,
            "commission": _i64,
            "pnlConversionFee": _i64,
            "moneyDigits": _u32,
        },
    ),
    deposit=st.none()
    | st.fixed_dictionaries(
        {},
        optional={
            "operationType": st.sampled_from(list(CHANGE_BALANCE_KINDS)),
            "balanceHistoryId": _i64,
            "delta": _i64,
            "changeBalanceTimestamp": _i64,
            "moneyDigits": _u32,
        },
    ),
    login=_i64,
)
def test_fuzz_field_values(
    deal: dict[str, Any], detail: dict[str, Any] | None, deposit: dict[str, Any] | None, login: int
) -> None:
    event = pb.ProtoOAExecutionEvent(
        ctidTraderAccountId=login, executionType=pb.ORDER_FILLED, deal=pb.ProtoOADeal(**deal)
    )
    if detail is not None:
        event.deal.closePositionDetail.CopyFrom(pb.ProtoOAClosePositionDetail(**detail))
    if deposit is not None:
        event.depositWithdraw.CopyFrom(pb.ProtoOADepositWithdraw(**deposit))
    _never_crashes(proto_message(event), None)


# -- account data: currency, equity and balance from the messages that carry them ----------------


def test_deposit_gives_the_balance_and_equity_after_it() -> None:
    event = deposit_event(pb.BALANCE_DEPOSIT, 50_000)
    event.depositWithdraw.balance = 1_050_000
    event.depositWithdraw.equity = 1_062_550
    op, state = read(proto_message(event))
    assert isinstance(op, BalanceOperation) and op.amount == Decimal("500.00")
    assert isinstance(state, AccountUpdate) and state.event == "account_state"
    assert state.account_key == f"ctrader:{SERVER}:{CTID}"
    assert (state.balance, state.equity) == (Decimal("10500.00"), Decimal("10625.50"))
    # the Open API sends no account-wide margin, group or credit: the update says nothing of them
    assert state.margin is None and state.group is None and state.credit is None
    AccountUpdate.model_validate(state.model_dump())


def test_deposit_currency_from_the_configured_asset_mapping() -> None:
    router = Router(parse_settings({"tenants": [{"id": "acme", "servers": [
        {"name": SERVER, "platform": "ctrader", "currency": "USD", "deposit_assets": {15: "EUR", 4: "JPY"}},
    ]}]}))
    for asset, code in ((15, "EUR"), (4, "JPY"), (99, "USD")):
        trader = pb.ProtoOATrader(ctidTraderAccountId=CTID, balance=1, depositAssetId=asset)
        [update] = read_ctrader_event(env(proto_message(pb.ProtoOATraderUpdatedEvent(trader=trader))), router)
        assert update.currency == code


def test_bad_deposit_asset_mapping_fails_at_start() -> None:
    with pytest.raises(ConfigError, match="deposit_assets"):
        parse_settings({"tenants": [{"id": "acme", "servers": [
            {"name": SERVER, "platform": "ctrader", "deposit_assets": {15: "euro"}}]}]})
