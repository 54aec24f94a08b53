"""Issue 14: one price per position (its own platform symbol's feed on its own server, bid and
ask of the same feed; flagged fallbacks), and a margin check that recomputes only the accounts
whose inputs changed, with the events of a full recompute."""

from __future__ import annotations

import random
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from risk_rules.exposure import AccountModes, BookRouting, ExposureEngine, PriceBook
from risk_rules.exposure.margin import MarginConfig
from schemas.events import Quote
from schemas.identity import parse_account_key
from tests.test_exposure_support import (
    GEN_SERVERS,
    at,
    make_account,
    make_balance_op,
    make_deal,
    make_quote,
    random_history,
)


def feed_quote(platform_symbol: str, bid: str | None, ask: str | None, *, server: str = "ACME-MT5-Live",
               t: float = 0, symbol: str = "EURUSD") -> Quote:
    return make_quote(symbol, bid, ask, server=server, t=t).model_copy(
        update={"platform_symbol": platform_symbol})


def test_a_position_is_marked_with_its_own_feed_not_the_one_that_ticked_last() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "1.0990", platform_symbol="EURUSD.r"))
    engine.apply(feed_quote("EURUSD.r", "1.1000", "1.1002", t=1))
    engine.apply(feed_quote("EURUSD", "1.2000", "1.2002", t=2))  # another feed, later
    (row,) = engine.snapshot(at(3)).positions
    assert (row.mark_price, row.mark_source, row.floating_pnl) == (D("1.1"), "own", D("100"))
    (exposure,) = engine.snapshot(at(3)).exposure
    assert exposure.floating_pnl_usd == D("100")  # the aggregates use the same feed


def test_bid_and_ask_come_from_one_feed() -> None:
    prices = PriceBook()
    prices.update("S1", "EURUSD", D("1.1000"), D("1.1002"), platform_symbol="EURUSD")
    prices.update("S1", "EURUSD", None, D("1.3000"), platform_symbol="EURUSD.r")  # ask only
    own, source = prices.mark("S1", "EURUSD.r", "EURUSD")
    assert own is not None and (own.bid, own.ask, source) == (None, D("1.3000"), "own")
    other, source = prices.mark("S1", "EURUSD", "EURUSD")
    assert other is not None and (other.bid, other.ask, source) == (D("1.1000"), D("1.1002"), "own")


def test_fallbacks_are_flagged_canonical_then_another_server() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "1.0990", platform_symbol="EURUSD.x"))
    engine.apply(feed_quote("EURUSD", "1.1000", "1.1002", server="ACME-cTrader", t=1))
    (row,) = engine.snapshot(at(2)).positions
    assert (row.mark_price, row.mark_source) == (D("1.1"), "other_server")
    engine.apply(feed_quote("EURUSD.r", "1.1010", "1.1012", t=3))  # a feed of EURUSD, same server
    (row,) = engine.snapshot(at(4)).positions
    assert (row.mark_price, row.mark_source) == (D("1.101"), "canonical")
    engine.apply(feed_quote("EURUSD", "1.1020", "1.1022", t=5))  # the canonical name's own feed
    (row,) = engine.snapshot(at(6)).positions
    assert (row.mark_price, row.mark_source) == (D("1.102"), "canonical")
    engine.apply(feed_quote("EURUSD.x", "1.1030", "1.1032", t=7))
    (row,) = engine.snapshot(at(8)).positions
    assert (row.mark_price, row.mark_source) == (D("1.103"), "own")


def test_a_rate_never_pairs_one_servers_bid_with_anothers_ask() -> None:
    engine = ExposureEngine()
    engine.apply(make_quote("GBPUSD", "1.2500", "1.2502", server="ACME-MT4-Live"))
    engine.apply(make_quote("GBPUSD", None, "1.3000", server="ACME-cTrader", t=1))  # ask only
    assert engine.rates.rate("GBP", "USD") == D("1.3000")  # the latest feed alone, not 1.2751


# ---- margin: only what changed -----------------------------------------------------------------

def _margin_events(seed: int, steps: int, accounts: int, every: int) -> tuple[list[object], list[object]]:
    history = random_history(seed, steps, accounts=accounts)
    rng = random.Random(seed)
    config = MarginConfig(default_leverage=50)
    engines = [ExposureEngine(modes=AccountModes(accounts=history.modes),
                              routing=BookRouting(accounts=history.books), margin=config) for _ in range(2)]
    extra: list[object] = []
    for i, key in enumerate(sorted(history.modes)):
        _, server, login = parse_account_key(key)
        extra.append(make_account(int(login), server=server, tenant=GEN_SERVERS[server],
                                  currency="EUR" if i % 3 == 0 else "USD",
                                  balance=str(rng.choice([300, 1500, 8000, 40000])),
                                  leverage=rng.choice([0, 30, 100])))
    events: list[object] = [*extra, *history.events]
    # account updates and balance operations mid-stream
    for _ in range(steps // 20):
        key = rng.choice(sorted(history.modes))
        _, server, login = parse_account_key(key)
        where = rng.randrange(len(events))
        t = getattr(events[where], "time", at(0))
        op = make_balance_op(rng.randrange(10**6), str(rng.choice([-2000, 500, 5000])), login=int(login),
                             server=server, t=(t - at(0)).total_seconds() + 0.5).model_copy(
            update={"tenant": GEN_SERVERS[server]})
        events.insert(where, op)
    incremental: list[object] = []
    full: list[object] = []
    for n, event in enumerate(events):
        for engine in engines:
            engine.apply(event)  # type: ignore[arg-type]
        if n % every == 0 or n == len(events) - 1:
            as_of = at(n)
            incremental.append(engines[0].check_margin(as_of))
            full.append(engines[1].check_margin_full(as_of))
    return incremental, full


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), steps=st.integers(min_value=20, max_value=300),
       accounts=st.integers(min_value=1, max_value=9), every=st.integers(min_value=1, max_value=15))
def test_the_incremental_margin_check_raises_what_a_full_recompute_raises(
    seed: int, steps: int, accounts: int, every: int
) -> None:
    incremental, full = _margin_events(seed, steps, accounts, every)
    assert incremental == full


def test_the_incremental_margin_check_sees_margin_calls() -> None:
    incremental, full = _margin_events(5, 1500, 9, 7)
    assert incremental == full
    assert sum(len(e) for e in incremental) > 0  # type: ignore[arg-type]


def test_an_unchanged_account_is_not_recomputed() -> None:
    engine = ExposureEngine()
    engine.apply(make_account(balance="1000"))
    engine.apply(make_account(login=70002, balance="1000", server="ACME-cTrader"))
    engine.apply(make_deal(1, "buy", "in", "1", "1.1000"))
    engine.apply(make_deal(2, "buy", "in", "1", "1.1000", login=70002, server="ACME-cTrader"))
    engine.apply(make_quote("EURUSD", "1.1000", "1.1002"))
    engine.apply(make_quote("EURUSD", "1.1000", "1.1002", server="ACME-cTrader"))
    engine.check_margin(at(1))
    engine.apply(make_quote("EURUSD", "1.1001", "1.1003", t=2))  # only the MT5 server's feed
    assert engine._margin_candidates() == {"mt5:ACME-MT5-Live:70001"}
