"""Margin: equity, used margin, margin level; margin call, stop out and recovery."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from risk_rules.exposure import (
    ExposureEngine,
    InstrumentTable,
    MarginCall,
    MarginConfig,
    MarginLevels,
    MarginRecovered,
    StopOut,
)
from risk_rules.exposure.margin import classify
from risk_rules.exposure.money import q8
from tests.test_exposure_support import at, make_account, make_balance_op, make_deal, make_quote

D = Decimal
ACCOUNT = "mt5:ACME-MT5-Live:70001"


def engine_with_long_eurusd(balance: str = "1000", leverage: int = 100,
                            config: MarginConfig | None = None) -> ExposureEngine:
    engine = ExposureEngine(margin=config)
    engine.apply(make_account(balance=balance, leverage=leverage, t=-10))
    engine.apply(make_deal(1, "buy", "in", "1", "1.10000"))
    return engine


def test_equity_margin_and_level() -> None:
    engine = engine_with_long_eurusd(balance="2000")
    engine.apply(make_quote("EURUSD", "1.09500", "1.09520"))
    (status,) = engine.margin_status(at(1))
    assert status.complete and status.missing == ()
    assert status.floating_pnl == D("-500")  # marked at the bid
    assert status.equity == D("1500")
    assert status.margin == D("1095.1")  # 100,000 x mid 1.09510 / 100
    assert status.free_margin == D("404.9")
    assert status.margin_level == q8(D("1500") / D("1095.1") * 100)


def test_margin_call_stop_out_and_recovery_on_crossing_only() -> None:
    engine = engine_with_long_eurusd()
    # balance 1,000, long 1 lot bought at 1.1: level = (1000 + 100,000 x (p - 1.1)) / (1000 p) x 100
    path = [("1.10200", []), ("1.10050", [MarginCall]), ("1.09900", []), ("1.09500", [StopOut]),
            ("1.09400", []), ("1.09700", [MarginRecovered]), ("1.10200", [MarginRecovered]),
            ("1.10300", [])]
    states = []
    for i, (price, expected) in enumerate(path):
        engine.apply(make_quote("EURUSD", price, price, t=i))
        events = engine.check_margin(at(i))
        assert [type(e) for e in events] == expected, price
        states += [(e.previous_state, e.state) for e in events]
    assert states == [("normal", "margin_call"), ("margin_call", "stop_out"),
                      ("stop_out", "margin_call"), ("margin_call", "normal")]


def test_margin_call_event_carries_the_numbers() -> None:
    engine = engine_with_long_eurusd()
    engine.apply(make_quote("EURUSD", "1.09900", "1.09900"))
    (event,) = engine.check_margin(at(5))
    assert isinstance(event, MarginCall)
    assert event.equity == D("900") and event.margin == D("1099")
    assert event.margin_level == q8(D("900") / D("1099") * 100)
    assert event.threshold == D(100) and event.currency == "USD"
    assert event.event_id.startswith(f"margin:{ACCOUNT}:margin_call:")


def test_recovery_buffer_stops_flapping_at_the_level() -> None:
    levels = MarginLevels(margin_call=D(100), stop_out=D(50), recovery_buffer=D(5))
    assert classify(D("99.9"), "normal", levels) == "margin_call"
    assert classify(D("104"), "margin_call", levels) == "margin_call"
    assert classify(D("105.1"), "margin_call", levels) == "normal"
    assert classify(D("54"), "stop_out", levels) == "stop_out"
    assert classify(D("56"), "stop_out", levels) == "margin_call"
    assert classify(None, "stop_out", levels) == "normal"


def test_group_levels_and_closing_everything_recovers() -> None:
    config = MarginConfig(groups=[{"group": "real\\B-std", "margin_call": "200", "stop_out": "20"}])
    engine = engine_with_long_eurusd(config=config)
    engine.apply(make_quote("EURUSD", "1.10000", "1.10000"))
    (event,) = engine.check_margin(at(1))  # level ~91 %: under this group's 200 %
    assert isinstance(event, MarginCall) and event.threshold == D(200)
    engine.apply(make_deal(2, "sell", "out", "1", "1.10000", position="1", t=2))
    (event,) = engine.check_margin(at(3))
    assert isinstance(event, MarginRecovered) and event.margin_level is None


def test_realised_pnl_and_deposits_after_the_reported_balance_count() -> None:
    engine = engine_with_long_eurusd(balance="1000")
    engine.apply(make_deal(2, "buy", "in", "1", "1.10000", position="2"))
    engine.apply(make_deal(3, "sell", "out", "1", "1.09000", position="2", t=5, profit="-1000",
                           commission="-7"))
    engine.apply(make_balance_op(9, "5000", t=6))
    engine.apply(make_balance_op(10, "300", kind="credit", t=6))
    engine.apply(make_balance_op(9, "5000", t=6))  # replayed: counted once
    engine.apply(make_quote("EURUSD", "1.10000", "1.10000"))
    (status,) = engine.margin_status(at(7))
    assert status.balance == D("1000") - D("1000") - D("7") + D("5000")
    assert status.credit == D("300")
    # a newer account state includes all of that: adjustments before it are dropped
    engine.apply(make_account(balance="3993", credit="300", t=8, version=2))
    (status,) = engine.margin_status(at(9))
    assert status.balance == D("3993") and status.equity == D("4293")


def test_hedged_volume_margin_and_cfd_margin_rate() -> None:
    table = InstrumentTable.from_dict({"GER40": {"base": "GER40", "quote": "EUR", "contract_size": "1",
                                                 "asset_class": "index", "margin_rate": "0.05"}})
    engine = ExposureEngine(instruments=table)
    engine.apply(make_account(balance="100000", leverage=100))
    engine.apply(make_deal(1, "buy", "in", "1", "1.1", position="1"))
    engine.apply(make_deal(2, "sell", "in", "0.4", "1.1", position="2"))
    engine.apply(make_deal(3, "buy", "in", "10", "18000", position="3", symbol="GER40"))
    engine.apply(make_quote("EURUSD", "1.1", "1.1"))
    engine.apply(make_quote("GER40", "18000", "18000"))
    (status,) = engine.margin_status(at(1))
    # EURUSD: the larger leg, 100,000 x 1.1 / 100; GER40: 10 x 18,000 EUR x 5 % in USD
    assert status.margin == D("1100") + D("9000") * D("1.1")


def test_unknown_numbers_hold_the_state() -> None:
    engine = ExposureEngine()
    engine.apply(make_account(balance=None, leverage=100))
    engine.apply(make_deal(1, "buy", "in", "1", "1.1"))
    engine.apply(make_quote("EURUSD", "0.5", "0.5"))
    (status,) = engine.margin_status(at(1))
    assert not status.complete and "balance unknown" in status.missing
    assert engine.check_margin(at(1)) == []


def test_levels_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="stop_out"):
        MarginLevels(margin_call=D(50), stop_out=D(100))
