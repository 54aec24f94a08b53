"""The streaming engine against the independent polars batch reference, on a few thousand
random deals (with redeliveries, corrections, deletions, late deals and one-sided quotes)."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest

from risk_rules.exposure import AccountModes, BookRouting, ExposureEngine
from risk_rules.exposure.money import q8
from schemas.events import Deal
from tests.exposure_reference import deals_frame, net_exposure, positions, quotes_frame
from tests.test_exposure_support import at, random_history

CENT = Decimal("0.01")
QUOTE_CCY = {"EURUSD": "USD", "USDJPY": "JPY", "EURJPY": "JPY", "GBPUSD": "USD", "XAUUSD": "USD",
             "GER40": "EUR", "US30": "USD"}
PAIRS = {"EURUSD": ("EUR", "USD"), "USDJPY": ("USD", "JPY"), "EURJPY": ("EUR", "JPY"),
         "GBPUSD": ("GBP", "USD"), "XAUUSD": ("XAU", "USD")}


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_engine_matches_the_batch_reference(seed: int) -> None:
    history = random_history(seed, 4000)
    engine = ExposureEngine(modes=AccountModes(accounts=history.modes),
                            routing=BookRouting(accounts=history.books))
    for event in history.events:
        engine.apply(event)
    as_of = at(10**6)
    snap = engine.snapshot(as_of)
    assert snap.missing == []
    deals = deals_frame(e for e in history.events if isinstance(e, Deal))
    quotes = quotes_frame(history.quotes())
    assert deals.height > 2500

    # every open position: same volume, open price, mark and floating P&L (to the cent)
    reference_positions = positions(deals, history.modes, quotes)
    expected = {(r["account_key"], r["ref"]): r for r in reference_positions.iter_rows(named=True)}
    rows = {(r.account_key, r.position_key.removeprefix(r.account_key + ":")): r
            for r in snap.positions if not r.is_deleted}
    assert set(rows) == set(expected)
    assert len(rows) > 50
    for key, row in rows.items():
        ref = expected[key]
        assert row.symbol == ref["symbol"]
        assert row.lots == q8(abs(ref["net_lots"])) and row.units == q8(abs(ref["net_units"]))
        assert abs(row.open_price - ref["avg_price"]) < Decimal("1E-8"), key
        assert row.mark_price == q8(ref["mark"])
        assert row.floating_pnl is not None and abs(row.floating_pnl - ref["floating"]) <= CENT, key

    # every position, closed ones included: computed gross P&L + floating = the cash flows
    floating = {key: row.floating_pnl or Decimal(0) for key, row in rows.items()}
    every = positions(deals, history.modes, quotes, open_only=False)
    totals = {(r["account_key"], r["ref"]): r["cash_total"] for r in every.iter_rows(named=True)}
    seen = 0
    for account_key in history.modes:
        book = engine.book(account_key)
        for state in book.positions(open_only=False) if book is not None else []:
            if not state.deals:
                continue
            made = state.gross_pnl + floating.get(state.key, Decimal(0))
            assert abs(made - totals[state.key]) <= CENT, state.key
            seen += 1
    assert seen == every.height

    # net exposure per tenant, book and symbol: volumes exact, USD to the cent
    reference = net_exposure(deals, history.modes, history.books, quotes, QUOTE_CCY, PAIRS)
    by_key = {(r.tenant, r.book, r.symbol): r for r in snap.exposure}
    for ref in reference.iter_rows(named=True):
        net = by_key.pop((ref["tenant"], ref["book"], ref["symbol"]))
        assert net.net_lots == q8(ref["net_lots"]) and net.net_units == q8(ref["net_units"])
        assert net.net_notional_usd is not None and net.floating_pnl_usd is not None
        assert abs(net.net_notional_usd - ref["net_notional_usd"]) <= CENT
        assert abs(net.floating_pnl_usd - ref["floating_pnl_usd"]) <= CENT
    # what the reference has no open position for is flat in the engine
    assert all(r.net_lots == 0 and r.floating_pnl_usd == 0 for r in by_key.values())
    assert reference.select(pl.col("net_lots").abs().sum()).item() > 0
