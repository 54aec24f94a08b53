"""Accounts, logins and quotes through the dataflow into ClickHouse (replay path)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from brokerstream.engine import run_replay
from brokerstream.publish import write_envelopes
from pipelines.config import Settings
from pipelines.store import Store
from schemas.account_state import merge_account
from schemas.envelope import Envelope
from schemas.events import AccountUpdate
from tests.helpers import T0

MT4 = "ACME-MT4-Live"  # utc_offset_minutes = 120 in the test config
T0_S = T0 // 1000


def env(topic: str, doc: dict[str, Any], ts: int, event: str | None = None) -> Envelope:
    headers = {"server": MT4} | ({"event": event} if event else {})
    return Envelope(topic=topic, value=orjson.dumps(doc), timestamp_ms=ts, key=str(doc.get("login", "")),
                    headers=headers)


def update(version: int, **fields: Any) -> AccountUpdate:
    base = dict(account_key="mt4:S:1", tenant="acme", platform="mt4", server="S", login=1,
                origin="platform", event="user_update", time=datetime.fromtimestamp(version, UTC),
                version=version, source=f"s/{version}")
    return AccountUpdate(**(base | fields))


def test_account_merge_is_field_by_field_and_order_independent() -> None:
    a = update(10, origin="crm", event="kyc_status", kyc_status="approved", name="Ann Lee")
    b = update(20, balance=Decimal("100"), group="real\\std", name="ANN LEE")
    c = update(5, kyc_status="pending", country="DE")  # older: must not override kyc
    results = []
    for order in ([a, b, c], [c, b, a], [b, a, c]):
        state = None
        for u in order:
            state, account = merge_account(state, u)
        results.append(account)
    assert results[0] == results[1] == results[2]
    acc = results[0]
    assert (acc.kyc_status, acc.name, acc.country) == ("approved", "ANN LEE", "DE")
    assert acc.balance == Decimal("100")
    assert acc.version == 20 and acc.first_seen == datetime.fromtimestamp(5, UTC)


def test_users_logins_and_ticks_reach_their_tables(tmp_path: Path, settings: Settings, store: Store) -> None:
    server_s = T0_S + 2 * 3600  # MT4 stamps server (UTC+2) time
    user = {"login": 5001, "group": "real\\std", "name": "Jane Roe", "country": "DE", "email": "j@x.io",
            "leverage": 100, "agent_account": 7001, "regdate": server_s, "balance": 0, "credit": 0,
            "enable": 1}
    ticks = [
        {"symbol": "EURUSD.r", "time": server_s, "bid": "1.08500", "ask": "1.08510"},
        {"symbol": "EURUSD.r", "time": server_s, "ctm": (server_s * 1000) + 400, "bid": "1.08520",
         "ask": "1.08530"},
        {"symbol": "EURUSD.r", "time": server_s + 1, "bid": "1.08490", "ask": "1.08505"},
    ]
    online = {"login": 5001, "ip": "203.0.113.7", "counter": 3, "time": server_s}
    envelopes = [env("mt4.users", user, T0), env("mt4.logins", online, T0 + 1)]
    envelopes += [env("mt4.ticks", t, T0 + 2 + i) for i, t in enumerate(ticks)]
    envelopes.append(env("mt4.users", {**user, "balance": 2500, "name": "Jane Roe-Smith"}, T0 + 10, "update"))
    path = tmp_path / "state.jsonl"
    write_envelopes(path, envelopes)
    run_replay(settings, [path])
    run_replay(settings, [path])  # replays change nothing

    _, accounts = store.query("SELECT account_key, name, country, agent, balance, registration FROM accounts")
    assert accounts == [("mt4:ACME-MT4-Live:5001", "Jane Roe-Smith", "DE", "7001", Decimal("2500"),
                         datetime.fromtimestamp(T0_S, UTC).replace(tzinfo=None))]
    _, logins = store.query("SELECT login, kind, ip, time FROM logins")
    assert logins == [(5001, "login", "203.0.113.7", datetime.fromtimestamp(T0_S, UTC).replace(tzinfo=None))]
    _, quotes = store.query("SELECT symbol, bid, ask, bid_low, bid_high FROM quotes ORDER BY second")
    assert quotes == [("EURUSD", Decimal("1.0852"), Decimal("1.0853"), Decimal("1.085"), Decimal("1.0852")),
                      ("EURUSD", Decimal("1.0849"), Decimal("1.08505"), Decimal("1.0849"), Decimal("1.0849"))]
    _, latest = store.query("SELECT symbol, bid, ask FROM latest_quotes")
    assert latest == [("EURUSD", Decimal("1.0849"), Decimal("1.08505"))]
