"""No input stops the engine (issue 13): random values in every field of every connector's
messages go through the real normaliser and into the real embedded ClickHouse store. Each
message is either stored or a dead letter with a reason; nothing raises, and no row reaches
the store's own safety net (a value a column cannot hold is caught where it is parsed)."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.ctrader_proto import openapi_subset_pb2 as pb
from connectors.fields import PRICE, Rejected, as_decimal, check_time_ms, fit_decimal
from connectors.psp.common import psp_readers
from connectors.registry import READERS, Normaliser
from connectors.routing import Router
from pipelines.config import parse_settings
from pipelines.store import Store
from pipelines.tables import Table, to_row
from schemas.account_state import merge_account
from schemas.envelope import Envelope, EnvelopeError, envelope_from_json_line
from schemas.events import AccountUpdate, DeadLetter
from tests import test_psp_connectors as psp
from tests.helpers import T0, mt5_deal

SETTINGS = parse_settings({"tenants": [{"id": "acme", "servers": [
    {"name": "ACME-MT5-Live", "platform": "mt5", "currency": "USD"},
    {"name": "ACME-MT4-Live", "platform": "mt4", "currency": "USD", "utc_offset_minutes": 120},
    {"name": "ACME-cTrader", "platform": "ctrader", "currency": "USD"},
]}]}, "poison pills")
NORMALISE = Normaliser(Router(SETTINGS), {**READERS, **psp_readers(psp.make_settings())})
EXAMPLES = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
S = T0 // 1000

# -- random values ------------------------------------------------------------------------------

_TRICKY = ["", " ", "0", "-0", "-5", "1.123456789", "1.123456780", "0.000000001", "1e12", "1E-30",
           "NaN", "Infinity", "-Infinity", "9" * 50, "1_000", " 7 ", "0x10", "1,5", "١٢", "abc",
           str(2**63), str(2**64), str(-(2**63)), "-1e9", "999999999.99999999", "99999999999.5",
           "946684800", "253402300800", "32503680000000", str(10**15), str(2**62)]
_text_numbers = st.one_of(
    st.sampled_from(_TRICKY),
    st.integers(-(2**70), 2**70).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats().map(repr),
)
VALUES = st.one_of(
    _text_numbers,
    st.integers(-(2**63), 2**64 - 1),  # orjson writes integers up to 64 bits
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), st.none(), st.text(max_size=12),
    st.lists(st.integers(0, 9), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    # plausible and implausible times, in seconds and milliseconds
    st.integers(0, 2 * 10**13), st.integers(S - 10**9, S + 10**9),
)


def mutate(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with 1-3 of its fields (or a new one) given random values or removed."""
    out = dict(doc)
    names = sorted(doc)
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
        if draw(st.integers(0, 9)) == 0:
            out.pop(name)
        else:
            out[name] = draw(VALUES)
    return out


# -- valid messages of every connector ----------------------------------------------------------

def _mt5_user() -> dict[str, Any]:
    return {"Login": "70001", "Group": "real\\usd", "Rights": "483", "Registration": str(S - 86400),
            "LastAccess": str(S), "Name": "Jane Doe", "Country": "Germany", "Email": "j@example.com",
            "Leverage": "100", "Agent": "7001", "ClientID": "100231", "Balance": "10250.75",
            "Credit": "0.00"}


def _mt4_trade(**over: Any) -> dict[str, Any]:
    doc = {"order": 1001, "login": 5001, "symbol": "EURUSD.r", "digits": 5, "cmd": 0, "volume": 100,
           "open_time": S, "state": 0, "open_price": 1.08501, "close_time": S + 3600, "reason": 0,
           "commission": -7.0, "storage": 0, "close_price": 1.08611, "profit": 110.0, "taxes": 0,
           "comment": ""}
    doc.update(over)
    return doc


JSON_MESSAGES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "mt5 deal": ("mt5.deals", "ACME-MT5-Live", dict(mt5_deal())),
    "mt5 balance": ("mt5.deals", "ACME-MT5-Live", dict(mt5_deal(Action="2", Profit="500.25"))),
    "mt5 user": ("mt5.users", "ACME-MT5-Live", _mt5_user()),
    "mt5 account": ("mt5.users", "ACME-MT5-Live", {
        "Login": "70001", "Balance": "10250.75", "Credit": "500.00", "Margin": "1085.00",
        "MarginFree": "9726.95", "MarginLevel": "1044.19", "Equity": "10811.95"}),
    "mt5 login": ("mt5.logins", "ACME-MT5-Live", {
        "SessionID": "4815162342", "Login": "70001", "Address": "203.0.113.7", "Type": "0",
        "Build": "4755", "Time": str(S), "ComputerID": "A1B2"}),
    "mt5 tick": ("mt5.ticks", "ACME-MT5-Live", {
        "symbol": "EURUSD.r", "time": str(S), "bid": "1.08501", "ask": "1.08512",
        "time_msc": str(T0 + 250), "flags": "6"}),
    "mt4 trade": ("mt4.trades", "ACME-MT4-Live", _mt4_trade()),
    "mt4 balance": ("mt4.trades", "ACME-MT4-Live", _mt4_trade(cmd=6, close_time=0, profit="250.5")),
    "mt4 user": ("mt4.users", "ACME-MT4-Live", {
        "login": 5001, "group": "real", "name": "John", "country": "DE", "email": "j@x.io",
        "leverage": 100, "agent_account": 7001, "regdate": S - 86400, "lastdate": S,
        "enable": 1, "balance": 100.5, "credit": 0}),
    "mt4 login": ("mt4.logins", "ACME-MT4-Live", {"login": 5001, "time": S, "ip": "0x0100007F",
                                                   "counter": 7}),
    "mt4 tick": ("mt4.ticks", "ACME-MT4-Live", {"symbol": "EURUSD", "bid": 1.085, "ask": 1.0851,
                                                 "ctm": S}),
    "crm": ("crm.accounts", "ACME-MT5-Live", {
        "event": "account_opened", "event_id": "crm-1", "time": "2024-11-24T10:15:00+02:00",
        "tenant": "acme", "platform": "mt5", "server": "ACME-MT5-Live", "login": 70001,
        "client_id": "C-1", "name": "Jane", "email": "j@example.com", "country": "DE",
        "date_of_birth": "1988-04-17", "kyc_status": "pending", "ib_id": "IB-1"}),
}

_CTRADER_DEAL: dict[str, Any] = {
    "dealId": 900_001, "orderId": 800_001, "positionId": 700_001, "volume": 10_000_000,
    "filledVolume": 10_000_000, "symbolId": 1, "createTimestamp": T0, "executionTimestamp": T0,
    "executionPrice": 1.08512, "tradeSide": pb.BUY, "dealStatus": pb.FILLED, "commission": -350,
    "moneyDigits": 2,
}
_CTRADER_CLOSE: dict[str, Any] = {
    "entryPrice": 1.08, "grossProfit": 12345, "swap": -10, "commission": -5, "balance": 100_000,
    "moneyDigits": 2, "pnlConversionFee": 0}
_CTRADER_DEPOSIT: dict[str, Any] = {
    "operationType": pb.BALANCE_DEPOSIT, "balanceHistoryId": 55, "balance": 100_000, "delta": 5_000,
    "changeBalanceTimestamp": T0, "moneyDigits": 2}


def _int_field(draw: st.DrawFn) -> int:
    return draw(st.one_of(st.integers(-(2**63), 2**63 - 1),
                          st.sampled_from([0, -1, 2**62, 10**15, T0, 123_456_789_123])))


@st.composite
def ctrader_messages(draw: st.DrawFn) -> Envelope:
    """A cTrader execution or spot event (protobuf) with random values in its fields."""
    kind = draw(st.sampled_from(["deal", "close", "deposit", "spot", "trader"]))
    if kind in ("deal", "close"):
        deal: dict[str, Any] = dict(_CTRADER_DEAL)
        for name in draw(st.lists(st.sampled_from(sorted(deal)), min_size=1, max_size=3, unique=True)):
            if name == "executionPrice":
                deal[name] = draw(st.floats(allow_nan=True, allow_infinity=True))
            elif name == "tradeSide":
                deal[name] = draw(st.sampled_from([pb.BUY, pb.SELL]))
            elif name == "dealStatus":
                deal[name] = draw(st.integers(2, 7))
            elif name == "moneyDigits":
                deal[name] = draw(st.integers(0, 2**32 - 1))
            else:
                deal[name] = _int_field(draw)
        message = pb.ProtoOADeal(**deal)
        if kind == "close":
            detail: dict[str, Any] = dict(_CTRADER_CLOSE)
            for name in draw(st.lists(st.sampled_from(sorted(detail)), min_size=1, max_size=2)):
                detail[name] = (draw(st.floats()) if name == "entryPrice"
                                else draw(st.integers(0, 2**32 - 1)) if name == "moneyDigits"
                                else _int_field(draw))
            message.closePositionDetail.CopyFrom(pb.ProtoOAClosePositionDetail(**detail))
        payload: Any = pb.ProtoOAExecutionEvent(ctidTraderAccountId=4_400_123,
                                                executionType=pb.ORDER_FILLED, deal=message)
        ptype = pb.PROTO_OA_EXECUTION_EVENT
    elif kind == "deposit":
        op: dict[str, Any] = dict(_CTRADER_DEPOSIT)
        for name in draw(st.lists(st.sampled_from(sorted(op)), min_size=1, max_size=2)):
            op[name] = (draw(st.integers(0, 40)) if name == "operationType"
                        else draw(st.integers(0, 2**32 - 1)) if name == "moneyDigits"
                        else _int_field(draw))
        payload = pb.ProtoOAExecutionEvent(ctidTraderAccountId=_int_field(draw),
                                           executionType=pb.DEPOSIT_WITHDRAW)
        try:
            payload.depositWithdraw.CopyFrom(pb.ProtoOADepositWithdraw(**op))
        except ValueError:  # an enum value the generated class refuses: a valid message then
            payload.depositWithdraw.CopyFrom(pb.ProtoOADepositWithdraw(**_CTRADER_DEPOSIT))
        ptype = pb.PROTO_OA_EXECUTION_EVENT
    elif kind == "spot":
        payload = pb.ProtoOASpotEvent(ctidTraderAccountId=4_400_123, symbolId=1,
                                      bid=draw(st.integers(0, 2**64 - 1)),
                                      ask=draw(st.integers(0, 2**64 - 1)),
                                      timestamp=_int_field(draw))
        ptype = pb.PROTO_OA_SPOT_EVENT
    else:
        payload = pb.ProtoOATraderUpdatedEvent(ctidTraderAccountId=4_400_123, trader=pb.ProtoOATrader(
            ctidTraderAccountId=4_400_123, balance=_int_field(draw),
            moneyDigits=draw(st.integers(0, 20)), leverageInCents=draw(st.integers(0, 2**32 - 1))))
        ptype = pb.PROTO_OA_TRADER_UPDATE_EVENT
    if draw(st.booleans()):  # the JSON variant of the same message
        body = orjson.dumps({"payloadType": ptype, "payload": json_format.MessageToDict(payload)})
        headers = {"server": "ACME-cTrader", "encoding": "json"}
    else:
        body = pb.ProtoMessage(payloadType=ptype, payload=payload.SerializeToString()).SerializeToString()
        headers = {"server": "ACME-cTrader"}
    return Envelope("ctrader.events", body, T0, "4400123", headers, 0, draw(st.integers(0, 10**6)))


@st.composite
def json_messages(draw: st.DrawFn) -> Envelope:
    name = draw(st.sampled_from(sorted(JSON_MESSAGES)))
    topic, server, doc = JSON_MESSAGES[name]
    body = dumps(mutate(draw, doc))
    headers = {"server": server}
    if draw(st.integers(0, 4)) == 0:
        headers["event"] = draw(st.sampled_from(["add", "update", "delete", "bogus"]))
    return Envelope(topic, body, draw(st.sampled_from([T0, 0, T0 + 5])), "k", headers, 0,
                    draw(st.integers(0, 10**6)))


def dumps(doc: Any) -> bytes:
    """JSON of a mutated document: the stdlib encoder writes integers of any size (orjson
    refuses those beyond 64 bits, and a platform may well send them)."""
    return json.dumps(doc, default=str).encode()


@st.composite
def psp_messages(draw: st.DrawFn) -> Envelope:
    """The payment providers' engine-side readers (the receiver checked the signature)."""
    provider = draw(st.sampled_from(["skrill", "praxis", "coinspaid", "nuvei", "stripe"]))
    if provider == "skrill":
        base = dict(__import__("urllib.parse").parse.parse_qsl(psp.skrill_form().decode()))
        body = __import__("urllib.parse").parse.urlencode(
            {k: "" if v is None else str(v) for k, v in mutate(draw, base).items()}).encode()
    elif provider == "nuvei":
        base = dict(__import__("urllib.parse").parse.parse_qsl(psp.nuvei_form().decode()))
        body = __import__("urllib.parse").parse.urlencode(
            {k: "" if v is None else str(v) for k, v in mutate(draw, base).items()}).encode()
    elif provider == "praxis":
        doc = psp.praxis_doc()
        doc["transaction"] = mutate(draw, doc["transaction"])
        body = dumps(mutate(draw, doc) if draw(st.booleans()) else doc)
    elif provider == "coinspaid":
        doc = psp.coinspaid_doc()
        body = dumps(mutate(draw, doc))
    else:
        doc = psp.stripe_event()
        obj = doc["data"]["object"]
        doc["data"]["object"] = mutate(draw, obj)
        body = dumps(doc)
    return psp.env(f"psp.{provider}", body, offset=draw(st.integers(0, 10**6)))


# -- the property -------------------------------------------------------------------------------

def _check_and_store(store: Store, envelopes: list[Envelope]) -> None:
    by_table: dict[Table, list[tuple[Any, ...]]] = defaultdict(list)
    for env in envelopes:
        records = NORMALISE(env)  # must not raise
        for record in records:
            if isinstance(record, DeadLetter):
                assert record.reason and record.stage in ("decode", "validate", "route"), record
                assert not record.reason.startswith("connector error"), record.reason
            stored: Any = merge_account(None, record)[1] if isinstance(record, AccountUpdate) else record
            table, row = to_row(stored)
            by_table[table].append(row)
    for table, rows in by_table.items():
        set_aside = store.insert_rows(table.name, table.columns, rows)
        assert set_aside == [], f"the store had to set aside rows the connectors accepted: {set_aside}"


@EXAMPLES
@given(st.lists(json_messages(), min_size=1, max_size=6))
def test_platform_and_crm_messages_are_stored_or_dead_lettered(store: Store,
                                                               envelopes: list[Envelope]) -> None:
    _check_and_store(store, envelopes)


@EXAMPLES
@given(st.lists(ctrader_messages(), min_size=1, max_size=6))
def test_ctrader_messages_are_stored_or_dead_lettered(store: Store, envelopes: list[Envelope]) -> None:
    _check_and_store(store, envelopes)


@EXAMPLES
@given(st.lists(psp_messages(), min_size=1, max_size=4))
def test_payment_messages_are_stored_or_dead_lettered(store: Store, envelopes: list[Envelope]) -> None:
    _check_and_store(store, envelopes)


# -- the reproduced poison pills, one by one ----------------------------------------------------

NINE = "1.123456789"


@pytest.mark.parametrize("field", ["Price", "Profit", "Commission", "ContractSize", "Storage", "Fee"])
def test_nine_decimal_places_in_an_mt5_deal_are_a_dead_letter_naming_the_field(field: str) -> None:
    env = Envelope("mt5.deals", orjson.dumps(mt5_deal(**{field: NINE})), T0, "k",
                   {"server": "ACME-MT5-Live"}, 0, 1)
    [dl] = NORMALISE(env)
    assert isinstance(dl, DeadLetter) and dl.stage == "validate"
    assert f"field {field!r}" in dl.reason and "decimal places" in dl.reason


def test_trailing_zeros_beyond_eight_places_are_exact_and_stored(store: Store) -> None:
    env = Envelope("mt5.deals", orjson.dumps(mt5_deal(Price="1.085000000")), T0, "k",
                   {"server": "ACME-MT5-Live"}, 0, 1)
    [deal] = NORMALISE(env)
    assert deal.price == Decimal("1.085")  # type: ignore[union-attr]
    _check_and_store(store, [env])


@pytest.mark.parametrize(("topic", "server", "doc", "field"), [
    ("mt5.deals", "ACME-MT5-Live", mt5_deal(Action="2", Profit=NINE), "Profit"),
    ("mt5.ticks", "ACME-MT5-Live", {"symbol": "EURUSD", "bid": NINE, "ask": "1.1", "flags": "6",
                                     "time_msc": str(T0)}, "bid"),
    ("mt4.trades", "ACME-MT4-Live", _mt4_trade(close_price=NINE), "close_price"),
    ("mt4.trades", "ACME-MT4-Live", _mt4_trade(cmd=6, close_time=0, profit=NINE), "profit"),
    ("mt4.ticks", "ACME-MT4-Live", {"symbol": "EURUSD", "bid": NINE, "ask": 1.1, "ctm": S}, "bid"),
    ("mt5.users", "ACME-MT5-Live", {**_mt5_user(), "Balance": NINE}, "Balance"),
])
def test_nine_decimal_places_anywhere_are_dead_letters(topic: str, server: str, doc: dict[str, Any],
                                                      field: str) -> None:
    [dl] = NORMALISE(Envelope(topic, orjson.dumps(doc), T0, "k", {"server": server}, 0, 1))
    assert isinstance(dl, DeadLetter) and f"{field!r}" in dl.reason, dl


def test_ctrader_money_beyond_eight_places_is_a_dead_letter() -> None:
    deal = pb.ProtoOADeal(**{**_CTRADER_DEAL, "moneyDigits": 10, "commission": -123_456_789_123})
    payload = pb.ProtoOAExecutionEvent(ctidTraderAccountId=1, executionType=pb.ORDER_FILLED, deal=deal)
    body = pb.ProtoMessage(payloadType=pb.PROTO_OA_EXECUTION_EVENT,
                           payload=payload.SerializeToString()).SerializeToString()
    [dl] = NORMALISE(Envelope("ctrader.events", body, T0, "1", {"server": "ACME-cTrader"}, 0, 1))
    assert isinstance(dl, DeadLetter) and "ProtoOADeal.commission" in dl.reason
    exact = pb.ProtoOADeal(**{**_CTRADER_DEAL, "moneyDigits": 10, "commission": -12_300_000_000})
    payload.deal.CopyFrom(exact)
    body = pb.ProtoMessage(payloadType=pb.PROTO_OA_EXECUTION_EVENT,
                           payload=payload.SerializeToString()).SerializeToString()
    [deal_record] = NORMALISE(Envelope("ctrader.events", body, T0, "1", {"server": "ACME-cTrader"}, 0, 1))
    assert deal_record.commission == Decimal("-1.23")  # type: ignore[union-attr]


@pytest.mark.parametrize(("fields", "reason"), [
    ({"TimeMsc": str(-5_364_662_400_000)}, "'TimeMsc'.*not a plausible time"),  # 1800
    ({"TimeMsc": "", "Time": str(10**11)}, "'Time'.*not a plausible time"),  # 5138
    ({"Deal": "-5"}, "'Deal' must be a positive ticket"),
    ({"Deal": "9" * 50}, "'Deal' must be a positive ticket"),
    ({"Order": "-1"}, "'Order' is out of range"),
    ({"PositionID": str(2**64)}, "'PositionID' is out of range"),
    ({"Login": str(2**64)}, "'Login' is out of range"),
])
def test_implausible_times_and_ids_are_dead_letters(fields: dict[str, str], reason: str) -> None:
    [dl] = NORMALISE(Envelope("mt5.deals", orjson.dumps(mt5_deal(**fields)), T0, "k",
                              {"server": "ACME-MT5-Live"}, 0, 1))
    assert isinstance(dl, DeadLetter) and dl.stage == "validate"
    assert __import__("re").search(reason, dl.reason), dl.reason


@pytest.mark.parametrize("timestamp", [10**15, 2**62, -1])
def test_envelope_timestamps_out_of_range_are_envelope_errors(timestamp: int) -> None:
    line = orjson.dumps({"topic": "mt5.deals", "value": "{}", "timestamp": timestamp})
    with pytest.raises(EnvelopeError):
        envelope_from_json_line(line, 3, "day.jsonl")


def test_helpers_check_the_column() -> None:
    assert fit_decimal(Decimal("999999999.99999999"), "p", PRICE) == Decimal("999999999.99999999")
    with pytest.raises(Rejected, match="out of range"):
        as_decimal("1e9", "p", PRICE)
    with pytest.raises(Rejected, match="decimal places"):
        as_decimal(0.1 + 0.2, "p")  # 0.30000000000000004: a binary float's tail is not a price
    with pytest.raises(Rejected, match="plausible"):
        check_time_ms(0, "t")
