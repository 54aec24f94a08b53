"""MT4 connector: TradeRecords -> per-fill deals, balance operations, users, onlines, ticks.

Messages have the shapes an MT4 Manager API bridge publishes (TradeRecord / UserRecord /
ConOnline / TickInfo as JSON). The server is configured at UTC+2, so every server time
below reads two hours later than the UTC time it stands for.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.fields import Rejected
from connectors.mt4 import (
    READERS,
    read_mt4_online,
    read_mt4_tick,
    read_mt4_trade,
    read_mt4_user,
    read_mt4_users,
)
from connectors.registry import Normaliser
from connectors.routing import Router
from pipelines.config import parse_settings
from schemas.envelope import Envelope
from schemas.events import AccountUpdate, BalanceOperation, DeadLetter, Deal, Login, Quote

SERVER = "ACME-MT4"
SETTINGS = parse_settings(
    {
        "tenants": [
            {
                "id": "acme",
                "servers": [
                    {"name": SERVER, "platform": "mt4", "currency": "USD", "utc_offset_minutes": 120},
                    {"name": "ACME-MT5", "platform": "mt5", "currency": "USD"},
                ],
            }
        ]
    }
)
ROUTER = Router(SETTINGS)

OPEN_UTC = datetime(2024, 11, 24, 10, 0, 0, tzinfo=UTC)
CLOSE_UTC = datetime(2024, 11, 24, 13, 30, 0, tzinfo=UTC)
TWO_HOURS = 2 * 3600


def server_seconds(utc: datetime) -> int:
    """What the UTC+2 trade server writes for this instant: its wall clock read as epoch."""
    return int(utc.timestamp()) + TWO_HOURS


OPEN_S = server_seconds(OPEN_UTC)
CLOSE_S = server_seconds(CLOSE_UTC)
TS = 1_732_442_400_000  # envelope time (ms, UTC) of the first message


def envelope(
    topic: str,
    value: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
    ts: int = TS,
    offset: int = 0,
) -> Envelope:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return Envelope(
        topic=topic,
        value=raw,
        timestamp_ms=ts,
        key=str(value.get("login", "")) if isinstance(value, dict) else "",
        headers={"server": SERVER} if headers is None else headers,
        partition=0,
        offset=offset,
    )


def trade_record(**fields: Any) -> dict[str, Any]:
    """An open 1.00 lot EURUSD buy as the Manager API reports it (floating profit included)."""
    record: dict[str, Any] = {
        "order": 1001,
        "login": 5001,
        "symbol": "EURUSD.r",
        "digits": 5,
        "cmd": 0,
        "volume": 100,
        "open_time": OPEN_S,
        "state": 0,
        "open_price": 1.08501,
        "sl": 1.08,
        "tp": 0,
        "close_time": 0,
        "expiration": 0,
        "reason": 0,
        "conv_rates": [1.0, 0.0],
        "commission": -7.0,
        "commission_agent": -1.5,
        "storage": 0,
        "close_price": 1.08611,  # an open record carries the current price here ...
        "profit": 110.0,  # ... and the floating profit: neither is a fill
        "taxes": 0,
        "magic": 0,
        "comment": "",
        "margin_rate": 1.0851,
        "timestamp": OPEN_S,
    }
    record.update(fields)
    return record


def closed(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    base = {
        "state": 3,
        "close_time": CLOSE_S,
        "close_price": 1.08751,
        "profit": 250.0,
        "storage": -1.2,
        "commission": -7.0,
        "taxes": -0.5,
        "timestamp": CLOSE_S,
    }
    return {**record, **base, **fields}


def trades(value: dict[str, Any] | bytes, event: str | None = "add", **kw: Any) -> list[Any]:
    headers = {"server": SERVER} if event is None else {"server": SERVER, "event": event}
    out = read_mt4_trade(envelope("mt4.trades", value, headers, **kw), ROUTER)
    assert isinstance(out, list)
    return checked(out)


def checked(records: Iterable[Any]) -> list[Any]:
    """Every record must pass its model's own validation (readers use model_construct)."""
    out = list(records)
    for record in out:
        assert type(record).model_validate(record.model_dump()) == record
    return out


def by_key(deals: Iterable[Deal]) -> dict[str, Deal]:
    return {d.deal_key: d for d in deals}


def latest(deals: Iterable[Deal]) -> dict[str, Deal]:
    """What storage keeps: per deal_key the highest version (deletes removed)."""
    kept: dict[str, Deal] = {}
    for deal in deals:
        current = kept.get(deal.deal_key)
        if current is None or deal.version > current.version:
            kept[deal.deal_key] = deal
        elif deal.version == current.version:
            # same version twice (a replay) must be the same fact
            assert deal.model_copy(update={"source": ""}) == current.model_copy(update={"source": ""})
    return {k: d for k, d in kept.items() if not d.is_deleted}


SAME_FACT = ("version", "event", "source")


def fact(deal: Deal) -> dict[str, Any]:
    return {k: v for k, v in deal.model_dump().items() if k not in SAME_FACT}


# -- trades -----------------------------------------------------------------------------------


def test_open_then_close_yields_in_and_out_deals_in_utc() -> None:
    opened = trades(trade_record(), "add", ts=TS, offset=1)
    assert len(opened) == 1
    (entry,) = opened
    assert entry.deal_key == f"mt4:{SERVER}:1001:in"
    assert (entry.tenant, entry.platform, entry.server, entry.login) == ("acme", "mt4", SERVER, 5001)
    assert (entry.deal_id, entry.order_id, entry.position_id) == ("1001:in", "1001", "1001")
    assert (entry.symbol, entry.platform_symbol) == ("EURUSD", "EURUSD.r")
    assert (entry.side, entry.entry) == ("buy", "in")
    assert entry.lots == Decimal("1.00") and entry.signed_lots == Decimal("1.00")
    assert entry.contract_size == Decimal(100_000) and entry.units == Decimal(100_000)
    assert entry.price == Decimal("1.08501")
    assert entry.notional == Decimal("108501.00000000")
    # the floating profit of an open record is not realised: the in deal carries no money
    assert (entry.profit, entry.swap, entry.commission, entry.fee) == (0, 0, 0, 0)
    assert entry.time == OPEN_UTC  # 12:00 server time at UTC+2 is 10:00 UTC
    assert entry.currency == "USD" and entry.reason == "client"
    assert (entry.event, entry.is_deleted) == ("add", False)
    assert entry.version == TS * 4
    assert entry.source == "mt4.trades/0/1"

    closing = trades(closed(trade_record()), "update", ts=TS + 5000, offset=2)
    deals = by_key(closing)
    assert set(deals) == {f"mt4:{SERVER}:1001:in", f"mt4:{SERVER}:1001:out"}
    again = deals[f"mt4:{SERVER}:1001:in"]
    assert fact(again) == fact(entry)  # the open, restated
    assert again.version > entry.version  # ... and it replaces it
    out = deals[f"mt4:{SERVER}:1001:out"]
    assert (out.side, out.entry, out.position_id) == ("sell", "out", "1001")
    assert out.lots == Decimal("1.00") and out.signed_lots == Decimal("-1.00")
    assert out.price == Decimal("1.08751")
    assert out.notional == Decimal("108751.00000000")
    assert out.profit == Decimal("250.0")
    assert out.swap == Decimal("-1.2")
    assert out.commission == Decimal("-7.0")
    assert out.fee == Decimal("-0.5")  # taxes
    assert out.time == CLOSE_UTC
    assert (out.event, out.version) == ("update", (TS + 5000) * 4 + 1)
    assert sum(d.signed_lots for d in deals.values()) == 0


def test_closed_record_seen_first_still_yields_the_open() -> None:
    only_close = trades(closed(trade_record()), "update")
    assert sorted(d.entry for d in only_close) == ["in", "out"]
    entry = next(d for d in only_close if d.entry == "in")
    assert entry.time == OPEN_UTC and entry.price == Decimal("1.08501")
    # a late replay of the open (older version) does not undo anything
    old_open = trades(trade_record(), "add", ts=TS - 60_000)
    kept = latest([*only_close, *old_open])
    assert sum(d.signed_lots for d in kept.values()) == 0


def test_sell_position_and_close_reason_from_comment() -> None:
    record = closed(trade_record(cmd=1, reason=1), comment="[sl]", close_price=1.0811)
    deals = {d.entry: d for d in trades(record, "update")}
    assert (deals["in"].side, deals["in"].signed_lots) == ("sell", Decimal("-1.00"))
    assert (deals["out"].side, deals["out"].signed_lots) == ("buy", Decimal("1.00"))
    assert deals["in"].reason == "expert"
    assert deals["out"].reason == "sl"
    stop_out = closed(trade_record(), comment="so: 48.2%/1023.5/2123.0")
    assert {d.entry: d.reason for d in trades(stop_out, "update")}["out"] == "so"
    assert {d.entry: d.reason for d in trades(trade_record(reason=42))} == {"in": "unknown_42"}


def test_partial_close_chain_nets_to_zero_with_summed_profit() -> None:
    messages = [
        ("add", trade_record(order=1001, volume=100)),
        # 0.40 closed: #1001 becomes the closed part, #1002 the open remainder
        ("update", closed(trade_record(order=1001, volume=40), state=4, profit=40.0,
                          storage=-0.4, commission=-2.8, comment="to #1002")),
        ("add", trade_record(order=1002, volume=60, comment="from #1001", commission=-4.2)),
        ("update", closed(trade_record(order=1002, volume=60), profit=-15.25,
                          storage=-0.6, commission=-4.2, comment="from #1001",
                          close_time=CLOSE_S + 3600)),
    ]
    seen: list[Deal] = []
    nets: list[Decimal] = []
    for i, (event, record) in enumerate(messages):
        seen += trades(record, event, ts=TS + i * 1000, offset=i)
        nets.append(sum((d.signed_lots for d in latest(seen).values()), Decimal(0)))
    # open 1.00 -> 0.40 closed (1.00 still counted until the remainder arrives) -> 0.60 -> 0
    assert nets == [Decimal("1.00"), Decimal("0.00"), Decimal("0.60"), Decimal("0.00")]
    kept = latest(seen)
    assert set(kept) == {f"mt4:{SERVER}:{o}:{e}" for o in (1001, 1002) for e in ("in", "out")}
    assert kept[f"mt4:{SERVER}:1001:in"].lots == Decimal("0.40")
    assert kept[f"mt4:{SERVER}:1002:in"].lots == Decimal("0.60")
    assert sum(d.profit for d in kept.values()) == Decimal("40.0") + Decimal("-15.25")
    assert sum(d.commission for d in kept.values()) == Decimal("-7.0")
    # the remainder keeps the original open time: 1.00 lot was open before the partial close
    assert all(d.time == OPEN_UTC for d in kept.values() if d.entry == "in")
    assert sum(d.lots for d in kept.values() if d.entry == "in") == Decimal("1.00")


def test_delete_transaction_and_deleted_state_make_tombstones() -> None:
    record = closed(trade_record())
    live = trades(record, "update", ts=TS)
    tombstones = trades(record, "delete", ts=TS)
    assert sorted(d.deal_key for d in tombstones) == sorted(d.deal_key for d in live)
    assert all(d.is_deleted and d.event == "delete" for d in tombstones)
    # a delete wins over an update stamped in the same millisecond
    assert all(t.version > u.version for t, u in zip(tombstones, live, strict=True))
    assert latest([*live, *tombstones]) == {}

    by_code = read_mt4_trade(
        envelope("mt4.trades", record, {"server": SERVER, "transaction": "1"}), ROUTER
    )
    assert [d.is_deleted for d in by_code] == [True, True]

    # a dealer deleting an open position: the record arrives in state DELETED
    state_deleted = trades(trade_record(state=6), "update", ts=TS + 1000)
    assert [(d.entry, d.is_deleted, d.event) for d in state_deleted] == [("in", True, "delete")]

    balance = trades(trade_record(cmd=6, symbol="", volume=0, profit=500), "delete")
    assert [(type(b), b.is_deleted) for b in balance] == [(BalanceOperation, True)]


def test_deposits_withdrawals_and_credit() -> None:
    deposit = trades(
        trade_record(order=2001, cmd=6, symbol="", volume=0, open_price=0, profit=1000.0,
                     close_time=OPEN_S, state=3, comment="Deposit wire 8841")
    )
    assert len(deposit) == 1
    (op,) = deposit
    assert isinstance(op, BalanceOperation)
    assert (op.op_key, op.op_id, op.kind) == (f"mt4:{SERVER}:2001", "2001", "balance")
    assert op.amount == Decimal("1000.0") and op.amount > 0
    assert (op.currency, op.tenant, op.platform, op.login) == ("USD", "acme", "mt4", 5001)
    assert op.time == OPEN_UTC
    assert op.comment == "Deposit wire 8841"

    (withdrawal,) = trades(trade_record(order=2002, cmd=6, symbol="", volume=0, profit="-250.50"))
    assert withdrawal.amount == Decimal("-250.50")

    (credit,) = trades(trade_record(order=2003, cmd=7, symbol="", volume=0, profit=300))
    assert (credit.kind, credit.amount) == ("credit", Decimal(300))


@pytest.mark.parametrize("cmd", [2, 3, 4, 5])
def test_pending_orders_are_not_fills(cmd: int) -> None:
    assert trades(trade_record(cmd=cmd, open_price=1.07)) == []
    assert trades(trade_record(cmd=cmd, state=6, close_time=CLOSE_S), "update") == []


def test_triggered_pending_order_opens_when_it_becomes_cmd_0() -> None:
    assert trades(trade_record(cmd=2)) == []
    (entry,) = trades(trade_record(cmd=0), "update", ts=TS + 1000)
    assert entry.deal_key == f"mt4:{SERVER}:1001:in"


def test_strings_and_numbers_read_the_same() -> None:
    record = closed(trade_record())
    as_strings = {k: v if isinstance(v, list) else str(v) for k, v in record.items()}
    assert as_strings["open_price"] == "1.08501" and as_strings["volume"] == "100"
    assert trades(as_strings, "update") == trades(record, "update")
    # integral floats (some bridges write every number as a double) are accepted too
    assert trades({**record, "volume": 100.0, "order": 1001.0}, "update") == trades(record, "update")


def test_transaction_header() -> None:
    record = trade_record()
    read = lambda headers: read_mt4_trade(envelope("mt4.trades", record, headers), ROUTER)  # noqa: E731
    assert read({"server": SERVER, "transaction": "0"})[0].event == "add"
    assert read({"server": SERVER, "transaction": "2"})[0].event == "update"
    assert read({"server": SERVER})[0].event == "add"
    # the event header wins when both are present
    assert read({"server": SERVER, "event": "update", "transaction": "1"})[0].event == "update"
    with pytest.raises(Rejected, match="'transaction' header") as exc:
        read({"server": SERVER, "transaction": "7"})
    assert exc.value.stage == "route"


def test_contract_sizes_by_instrument() -> None:
    gold = trades(trade_record(symbol="XAUUSD", volume=25, open_price=2650.5))[0]
    assert (gold.contract_size, gold.lots, gold.units) == (Decimal(100), Decimal("0.25"), Decimal(25))
    assert gold.notional == Decimal("66262.50000000")
    index = trades(trade_record(symbol="US30.cash", volume=200, open_price="44000.1"))[0]
    assert (index.symbol, index.contract_size, index.units) == ("US30", Decimal(1), Decimal(2))
    silver = trades(trade_record(symbol="XAGUSDm", volume=10, open_price=31.2))[0]
    assert (silver.symbol, silver.units) == ("XAGUSD", Decimal(500))


def test_unknown_extra_fields_and_states_are_accepted() -> None:
    (entry,) = trades(trade_record(state=9, api_data=[1, 2, 3], gw_volume=100))
    assert entry.entry == "in"


REJECTS: list[tuple[str, bytes | dict[str, Any], dict[str, str], str, str]] = [
    ("bad json", b'{"order": 1001, "login": ', {"server": SERVER}, "not JSON", "decode"),
    ("not an object", b"[1, 2]", {"server": SERVER}, "expected a JSON object", "decode"),
    ("missing login", {k: v for k, v in trade_record().items() if k != "login"},
     {"server": SERVER}, "missing field 'login'", "validate"),
    ("empty login", trade_record(login=""), {"server": SERVER}, "missing field 'login'",
     "validate"),
    ("negative login", trade_record(login=-5), {"server": SERVER}, "'login' is out of range",
     "validate"),
    ("huge login", trade_record(login=str(2**64)), {"server": SERVER}, "'login' is out of range",
     "validate"),
    ("cmd 99", trade_record(cmd=99), {"server": SERVER}, "unknown cmd 99", "validate"),
    ("negative volume", trade_record(volume=-100), {"server": SERVER},
     "positive volume in range, got -100", "validate"),
    ("huge volume", trade_record(volume=10**12), {"server": SERVER},
     "positive volume in range", "validate"),
    ("zero volume", trade_record(volume=0), {"server": SERVER}, "positive volume in range, got 0",
     "validate"),
    ("fractional volume", trade_record(volume=12.5), {"server": SERVER},
     "'volume': expected an integer", "validate"),
    ("price not a number", trade_record(open_price="1,0850"), {"server": SERVER},
     "'open_price': expected a number", "validate"),
    ("negative price", trade_record(open_price=-1), {"server": SERVER},
     "'open_price' must not be negative", "validate"),
    ("absurd price", trade_record(open_price="1e12"), {"server": SERVER},
     "'open_price': '1e12' is out of range", "validate"),
    ("no open time", trade_record(open_time=0), {"server": SERVER},
     "'open_time' must be a positive server time", "validate"),
    ("closed without close time", trade_record(state=3), {"server": SERVER},
     "close_time is 0", "validate"),
    ("closed without close price", {k: v for k, v in closed(trade_record()).items()
                                    if k != "close_price"},
     {"server": SERVER}, "missing field 'close_price'", "validate"),
    ("nan profit", closed(trade_record(), profit="NaN"), {"server": SERVER},
     "not a finite number", "validate"),
    ("missing symbol", trade_record(symbol=""), {"server": SERVER}, "missing field 'symbol'",
     "validate"),
    ("zero ticket", trade_record(order=0), {"server": SERVER}, "positive ticket", "validate"),
    ("unknown server", trade_record(), {"server": "NOPE-MT4"},
     "server 'NOPE-MT4' is not assigned to any tenant", "route"),
    ("no server header", trade_record(), {}, "missing 'server' header", "route"),
    ("mt5 server on mt4 topic", trade_record(), {"server": "ACME-MT5"},
     "configured as mt5", "route"),
    ("bad event header", trade_record(), {"server": SERVER, "event": "modify"},
     "'event' header must be add, update or delete", "route"),
]


@pytest.mark.parametrize(
    ("value", "headers", "reason", "stage"),
    [case[1:] for case in REJECTS],
    ids=[case[0] for case in REJECTS],
)
def test_malformed_trades_are_rejected_with_a_reason(
    value: bytes | dict[str, Any], headers: dict[str, str], reason: str, stage: str
) -> None:
    with pytest.raises(Rejected) as exc:
        read_mt4_trade(envelope("mt4.trades", value, headers), ROUTER)
    assert reason in exc.value.reason
    assert exc.value.stage == stage


def test_normaliser_turns_rejects_into_dead_letters() -> None:
    normalise = Normaliser(ROUTER, readers=dict(READERS))
    good = normalise(envelope("mt4.trades", closed(trade_record()), {"server": SERVER}))
    assert [type(r) for r in good] == [Deal, Deal]
    bad = normalise(envelope("mt4.trades", trade_record(cmd=99), {"server": SERVER}, offset=7))
    assert len(bad) == 1 and isinstance(bad[0], DeadLetter)
    assert "unknown cmd 99" in bad[0].reason and bad[0].dl_key == "mt4.trades/0/7"
    assert normalise(envelope("mt4.trades", trade_record(cmd=3), {"server": SERVER})) == []


# -- users --------------------------------------------------------------------------------------


def user_record(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "login": 5001,
        "group": "real\\standard-usd",
        "password": "",
        "enable": 1,
        "enable_change_password": 1,
        "enable_read_only": 0,
        "name": "Jane Doe",
        "country": "DE",
        "city": "Berlin",
        "email": "jane@example.com",
        "leverage": 100,
        "agent_account": 7001,
        "regdate": OPEN_S,
        "lastdate": CLOSE_S,
        "balance": 10250.75,
        "credit": 0,
        "status": "RE",
    }
    record.update(fields)
    return record


def users(value: dict[str, Any], event: str = "add") -> AccountUpdate:
    out = read_mt4_user(envelope("mt4.users", value, {"server": SERVER, "event": event}), ROUTER)
    return checked([out])[0]


def test_user_record_becomes_an_account_update() -> None:
    user = users(user_record())
    assert (user.account_key, user.origin, user.event) == (f"mt4:{SERVER}:5001", "platform", "user_add")
    assert (user.tenant, user.platform, user.server, user.login) == ("acme", "mt4", SERVER, 5001)
    assert (user.name, user.group, user.email) == ("Jane Doe", "real\\standard-usd", "jane@example.com")
    assert (user.country, user.currency, user.leverage) == ("DE", "USD", 100)
    assert user.agent == "7001"
    assert user.registration == OPEN_UTC
    assert (user.balance, user.credit) == (Decimal("10250.75"), Decimal(0))
    assert user.status == "active"
    assert user.time == datetime.fromtimestamp(TS / 1000, UTC)
    assert user.version == TS * 4


def test_user_update_variants() -> None:
    as_strings = {k: str(v) for k, v in user_record().items()}
    assert users(as_strings, "update") == users(user_record(), "update")
    plain = users(user_record(agent_account=0, enable=0, country="Germany", email="",
                              leverage="0"), "update")
    assert plain.event == "user_update"
    assert plain.agent is None  # 0 is "no IB"
    assert plain.status == "disabled"
    assert plain.country == "DE"  # the dealer typed a name: read as its ISO code
    for typed, code in (("Iran", "IR"), ("Syrian Arab Republic", "SY"), ("Burma", "MM"),
                        ("North Korea", "KP"), ("IRN", "IR"), ("Atlantis", None), ("-", None)):
        assert users(user_record(country=typed), "update").country == code
    assert plain.email is None and plain.leverage is None
    sparse = users({"login": 5001, "balance": "12.5"}, "update")
    assert (sparse.name, sparse.status, sparse.registration, sparse.balance) == (
        None, None, None, Decimal("12.5"))
    assert users(user_record(), "delete").event == "user_delete"
    assert users(user_record(), "delete").status == "closed"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"name": "no login"}, "missing field 'login'"),
        (user_record(leverage="high"), "'leverage': expected an integer"),
        (user_record(balance="1.000,50"), "'balance': expected a number"),
        (user_record(agent_account=-3), "'agent_account' must be a login"),
    ],
)
def test_malformed_users_are_rejected(value: dict[str, Any], reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        read_mt4_user(envelope("mt4.users", value), ROUTER)


# -- onlines ------------------------------------------------------------------------------------


def onlines(value: dict[str, Any], headers: dict[str, str] | None = None) -> Login:
    return checked([read_mt4_online(envelope("mt4.logins", value, headers), ROUTER)])[0]


def test_online_record_with_integer_ip() -> None:
    # ConOnline.ip is an in_addr read as a little-endian integer: the first octet is the
    # lowest byte. 0x0100007F = bytes 7F 00 00 01 = 127.0.0.1; 0x0101A8C0 = 192.168.1.1.
    login = onlines({"login": 5001, "ip": 0x0100007F, "counter": 3, "time": OPEN_S})
    assert login.ip == "127.0.0.1"
    assert (login.kind, login.tenant, login.platform, login.login) == ("login", "acme", "mt4", 5001)
    assert login.time == OPEN_UTC
    ms = int(OPEN_UTC.timestamp()) * 1000
    assert login.login_key == f"mt4:{SERVER}:5001:{ms}:login"
    assert login.session_id == "3"
    assert login.version == TS * 4
    assert onlines({"login": 5001, "ip": 0x0101A8C0, "time": OPEN_S}).ip == "192.168.1.1"
    assert onlines({"login": 5001, "ip": str(0x0101A8C0), "time": OPEN_S}).ip == "192.168.1.1"
    assert onlines({"login": 5001, "ip": "0x0101A8C0", "time": OPEN_S}).ip == "192.168.1.1"
    # 192.168.1.200 as a signed 32-bit int (0xC801A8C0 read as int32)
    assert onlines({"login": 5001, "ip": 0xC801A8C0 - 2**32, "time": OPEN_S}).ip == "192.168.1.200"


def test_online_record_with_dotted_ip_and_kinds() -> None:
    record = {"login": "5001", "ip": "203.0.113.7", "time": str(OPEN_S)}
    assert onlines(record).ip == "203.0.113.7"
    logout = onlines(record, {"server": SERVER, "event": "logout"})
    assert logout.kind == "logout" and logout.login_key.endswith(":logout")
    failed = onlines({**record, "kind": "FAILED"}, {"server": SERVER, "event": "logout"})
    assert failed.kind == "failed"  # the record's own kind wins over the header
    assert onlines({"login": 5001, "time": OPEN_S}).ip == ""
    assert onlines({**record, "ip": "2001:db8::1"}).ip == "2001:db8::1"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"ip": "1.2.3.4", "time": OPEN_S}, "missing field 'login'"),
        ({"login": 5001, "ip": "1.2.3.4"}, "missing field 'time'"),
        ({"login": 5001, "ip": "1.2.3", "time": OPEN_S}, "neither an IP address"),
        ({"login": 5001, "ip": 2**32, "time": OPEN_S}, "does not fit in 32 bits"),
        ({"login": 5001, "time": OPEN_S, "kind": "kicked"}, "login, logout or failed"),
    ],
)
def test_malformed_onlines_are_rejected(value: dict[str, Any], reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        read_mt4_online(envelope("mt4.logins", value), ROUTER)


# -- ticks --------------------------------------------------------------------------------------


def test_ticks() -> None:
    quote = read_mt4_tick(
        envelope("mt4.ticks", {"symbol": "EURUSD.r", "time": OPEN_S, "bid": 1.08501, "ask": "1.08512"}),
        ROUTER,
    )
    checked([quote])
    assert isinstance(quote, Quote)
    assert (quote.symbol, quote.platform_symbol) == ("EURUSD", "EURUSD.r")
    assert (quote.bid, quote.ask) == (Decimal("1.08501"), Decimal("1.08512"))
    assert quote.time == OPEN_UTC
    assert (quote.tenant, quote.platform, quote.server) == ("acme", "mt4", SERVER)
    precise = read_mt4_tick(
        envelope("mt4.ticks", {"symbol": "XAUUSD", "time": OPEN_S, "ctm": OPEN_S * 1000 + 250,
                               "bid": 2650.1, "ask": 2650.4}),
        ROUTER,
    )
    assert precise.time == OPEN_UTC.replace(microsecond=250_000)
    with pytest.raises(Rejected, match="missing field 'bid'"):
        read_mt4_tick(envelope("mt4.ticks", {"symbol": "EURUSD", "time": OPEN_S, "ask": 1.1}), ROUTER)
    with pytest.raises(Rejected, match="missing field 'time'"):
        read_mt4_tick(envelope("mt4.ticks", {"symbol": "EURUSD", "bid": 1.1, "ask": 1.1}), ROUTER)


def test_readers_by_topic() -> None:
    expected = {
        "mt4.trades": read_mt4_trade,
        "mt4.users": read_mt4_users,
        "mt4.logins": read_mt4_online,
        "mt4.ticks": read_mt4_tick,
    }
    assert expected == READERS
    assert isinstance(onlines({"login": 1, "time": OPEN_S}), Login)


# -- property: any partial-close chain of one position nets to zero ---------------------------

profits = st.decimals(min_value=-10_000, max_value=10_000, places=2, allow_nan=False,
                      allow_infinity=False)


@st.composite
def position_histories(draw: st.DrawFn) -> tuple[list[tuple[str, dict[str, Any]]], Decimal, int]:
    """The MT4 messages of one position's life, in the order the server produced them,
    with the realised profit and the opened volume."""
    volume = draw(st.integers(min_value=1, max_value=10_000))
    cmd = draw(st.sampled_from([0, 1]))
    symbol = draw(st.sampled_from(["EURUSD", "XAUUSD.r", "US30.cash", "BTCUSD"]))
    strings = draw(st.booleans())
    base = {"symbol": symbol, "cmd": cmd, "open_price": "1.2345"}
    order = 5000
    realised = Decimal(0)
    messages: list[tuple[str, dict[str, Any]]] = [("add", trade_record(order=order, volume=volume, **base))]
    if draw(st.booleans()):  # an SL modification of the open record
        messages.append(("update", trade_record(order=order, volume=volume, sl=1.2, **base)))
    remaining = volume
    close_s = CLOSE_S
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        if remaining < 2:
            break
        part = draw(st.integers(min_value=1, max_value=remaining - 1))
        profit = draw(profits)
        realised += profit
        new = order + 1
        closed_part = ("update", closed(trade_record(order=order, volume=part, **base),
                                        state=4, profit=str(profit), comment=f"to #{new}",
                                        close_time=close_s))
        remainder = ("add", trade_record(order=new, volume=remaining - part, **base,
                                         comment=f"from #{order}"))
        pair = [closed_part, remainder] if draw(st.booleans()) else [remainder, closed_part]
        messages += pair
        order, remaining, close_s = new, remaining - part, close_s + 60
    profit = draw(profits)
    realised += profit
    state = draw(st.sampled_from([3, 5]))  # closed normally or by an opposite position
    messages.append(("update", closed(trade_record(order=order, volume=remaining, **base),
                                      state=state, profit=str(profit), close_time=close_s)))
    if strings:
        messages = [(e, {k: v if isinstance(v, list) else str(v) for k, v in r.items()})
                    for e, r in messages]
    return messages, realised, volume


@settings(max_examples=300, deadline=None)
@given(history=position_histories(), data=st.data())
def test_any_partial_close_chain_nets_to_zero(
    history: tuple[list[tuple[str, dict[str, Any]]], Decimal, int], data: st.DataObject
) -> None:
    messages, realised, volume = history
    # stamped in production order; delivered in any order, some of them replayed
    stamped = [(TS + i * 1000, event, record) for i, (event, record) in enumerate(messages)]
    delivered = data.draw(st.permutations(stamped))
    delivered += data.draw(st.lists(st.sampled_from(stamped), max_size=4))
    deals: list[Deal] = []
    for offset, (ts, event, record) in enumerate(delivered):
        deals += trades(record, event, ts=ts, offset=offset)
    kept = latest(deals)
    assert sum((d.signed_lots for d in kept.values()), Decimal(0)) == 0
    assert sum((d.profit for d in kept.values()), Decimal(0)) == realised
    opened = sum((d.lots for d in kept.values() if d.entry == "in"), Decimal(0))
    assert opened == Decimal(volume).scaleb(-2)
    ins = {d.position_id for d in kept.values() if d.entry == "in"}
    outs = {d.position_id for d in kept.values() if d.entry == "out"}
    assert ins == outs  # every link of the chain is opened and closed


# -- MT4 margin level records: equity and margin ------------------------------------------------


def test_margin_level_record_gives_equity_and_margin() -> None:
    doc = {"login": 5001, "group": "real-usd", "leverage": 100, "updated": OPEN_S,
           "balance": "10000.00", "equity": "10250.50", "volume": 30, "margin": "1025.05",
           "margin_free": "9225.45", "margin_level": "1000.00", "margin_type": 0, "level_type": 0}
    update = read_mt4_users(envelope("mt4.users", doc), ROUTER)
    assert isinstance(update, AccountUpdate) and update.event == "account_state"
    assert update.account_key == f"mt4:{SERVER}:5001"
    assert (update.balance, update.equity, update.margin, update.margin_free, update.margin_level) == (
        Decimal("10000.00"), Decimal("10250.50"), Decimal("1025.05"), Decimal("9225.45"),
        Decimal("1000.00"))
    # a snapshot says nothing about the user's own fields
    assert update.group is None and update.credit is None and update.currency is None
    AccountUpdate.model_validate(update.model_dump())


def test_user_record_still_reads_as_a_user_and_has_no_equity() -> None:
    update = read_mt4_users(envelope("mt4.users", {"login": 5001, "group": "real", "balance": "5",
                                                   "prevequity": "7"}), ROUTER)
    assert update.event == "user_add" and update.group == "real"
    assert update.balance == Decimal("5") and update.equity is None


def test_margin_level_with_a_bad_value_is_rejected_naming_it() -> None:
    with pytest.raises(Rejected, match="'equity'"):
        read_mt4_users(envelope("mt4.users", {"login": 5001, "equity": "12x"}), ROUTER)
