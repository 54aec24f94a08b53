"""Exposure through the dataflow: the `exposure` table at a checkpoint equals the independent
polars reference over the same deals and last quotes, and a replay writes the same rows."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson

from brokerstream.engine import run_replay
from brokerstream.publish import write_envelopes
from connectors.registry import Normaliser, readers_for
from connectors.routing import Router
from devtools.simulator.mt5 import SYMBOLS, Mt5DealSimulator
from pipelines.config import Settings, parse_settings
from pipelines.store import Store
from schemas.envelope import Envelope
from schemas.events import Deal, Quote
from schemas.identity import account_key
from tests.exposure_reference import deals_frame, net_exposure, quotes_frame

CENT = Decimal("0.01")
QUOTE_CCY = {"EURUSD": "USD", "GBPUSD": "USD", "USDJPY": "JPY", "EURJPY": "JPY", "AUDUSD": "USD",
             "XAUUSD": "USD", "US30": "USD", "BTCUSD": "USD"}
PAIRS = {"EURUSD": ("EUR", "USD"), "GBPUSD": ("GBP", "USD"), "USDJPY": ("USD", "JPY"),
         "EURJPY": ("EUR", "JPY"), "AUDUSD": ("AUD", "USD"), "XAUUSD": ("XAU", "USD"),
         "BTCUSD": ("BTC", "USD")}
SERVER = "ACME-MT5-Live"


def _history(path: Path) -> list[Envelope]:
    # No dealer corrections here: the engine's own tests cover them against the reference.
    sim = Mt5DealSimulator([SERVER], accounts=200, seed=21, correction_rate=0.0)
    envelopes = list(sim.envelopes(20_000))
    last = envelopes[-1].timestamp_ms
    for i, (name, _, digits, _, _) in enumerate(SYMBOLS):  # one closing tick per symbol
        mid = sim.prices[i]
        spread = 10 ** -digits * 3
        tick = {"symbol": name, "time": str((last + 2000) // 1000), "time_msc": str(last + 2000 + i),
                "bid": f"{mid - spread:.{digits}f}", "ask": f"{mid + spread:.{digits}f}", "flags": "6"}
        envelopes.append(Envelope(topic="mt5.ticks", key=name, value=orjson.dumps(tick),
                                  timestamp_ms=last + 2000 + i, headers={"server": SERVER}))
    write_envelopes(path, envelopes)
    return envelopes


def test_exposure_table_equals_the_batch_reference(tmp_path: Path, settings: Settings, store: Store) -> None:
    path = tmp_path / "history.jsonl"
    envelopes = _history(path)
    doc = settings.model_dump(mode="json")
    doc["exposure"]["limits"] = {"rules": [{"id": "symbol-net", "scope": "symbol", "max_usd": 1_000_000}]}
    settings = parse_settings(doc)
    run_replay(settings, [path])

    normalise = Normaliser(Router(settings), readers_for(settings))
    records = [r for env in envelopes for r in normalise(env)]
    deals = deals_frame(r for r in records if isinstance(r, Deal))
    quotes = quotes_frame(r for r in records if isinstance(r, Quote))
    modes = {account_key("mt5", SERVER, login): "hedging" for login in deals["login"].unique().to_list()}
    reference = net_exposure(deals, modes, {}, quotes, QUOTE_CCY, PAIRS)

    _, rows = store.query("SELECT tenant, book, symbol, net_lots, net_units, net_notional_usd, "
                                "floating_pnl_usd FROM exposure ORDER BY symbol")
    got = {(r[0], r[1], r[2]): r for r in rows}
    assert reference.height == len(got) == len(SYMBOLS)
    for ref in reference.iter_rows(named=True):
        row = got[(ref["tenant"], ref["book"], ref["symbol"])]
        assert row[3] == ref["net_lots"].quantize(Decimal("1E-8")), ref["symbol"]
        assert row[4] == ref["net_units"].quantize(Decimal("1E-8")), ref["symbol"]
        assert row[5] is not None and abs(row[5] - ref["net_notional_usd"]) <= CENT, (ref["symbol"], row)
        assert abs(row[6] - ref["floating_pnl_usd"]) <= CENT, ref["symbol"]
    # The broker carries the opposite of the clients on the B-book (the default book).
    _, broker = store.query("SELECT symbol, net_lots FROM broker_exposure ORDER BY symbol")
    assert {s: -lots for s, lots in broker} == {r[2]: r[3] for r in rows}
    assert store.scalar("SELECT count() FROM positions") > 100
    # The broker's net exposure crossed the 1M USD limit on some symbols: risk alerts, explained.
    _, alerts = store.query("SELECT rule_id, category, severity, subject, summary FROM alerts "
                            "WHERE rule_id = 'limit.symbol-net' ORDER BY event_time")
    assert alerts and all(a[1] == "risk" for a in alerts)
    assert "limit 1,000,000 USD" in alerts[0][4] or "recovery level" in alerts[0][4]
    history_rows = store.scalar("SELECT count() FROM exposure_history")

    run_replay(settings, [path])  # the same history again: the same rows
    assert store.query("SELECT tenant, book, symbol, net_lots, net_units, net_notional_usd, "
                       "floating_pnl_usd FROM exposure ORDER BY symbol")[1] == rows
    assert store.scalar("SELECT count() FROM exposure_history FINAL") == history_rows
