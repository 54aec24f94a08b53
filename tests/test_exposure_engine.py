"""ExposureEngine: snapshots valued with quotes and rates, books, currency legs, top lists."""

from __future__ import annotations

import pickle
from decimal import Decimal

from risk_rules.exposure import (
    AccountModes,
    BookRouting,
    CurrencyExposureRow,
    ExposureEngine,
    ExposureRow,
    ExposureSnapshot,
    PositionBook,
    PositionRow,
)
from risk_rules.exposure.money import q8
from schemas.events import Deal, Quote
from tests.test_exposure_support import T0, at, make_account, make_deal, make_quote, revise

D = Decimal


def exposure(snapshot: ExposureSnapshot, symbol: str, book: str = "B") -> ExposureRow:
    (row,) = [r for r in snapshot.exposure if r.symbol == symbol and r.book == book]
    return row


def currency(snapshot: ExposureSnapshot, ccy: str, book: str = "B",
             broker: bool = False) -> CurrencyExposureRow:
    rows = snapshot.broker_currency_exposure if broker else snapshot.currency_exposure
    (row,) = [r for r in rows if r.currency == ccy and r.book == book]
    return row


def test_rows_are_valid_table_records() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "1.1"))
    engine.apply(make_quote("EURUSD", "1.1", "1.1001"))
    snap = engine.snapshot(T0)
    for row in [*snap.positions, *snap.exposure, *snap.currency_exposure, *snap.broker_exposure]:
        assert type(row).model_validate(row.model_dump()) == row


def test_eurjpy_pnl_reaches_usd_through_usdjpy_and_a_eur_account_directly() -> None:
    engine = ExposureEngine()
    engine.apply(make_account(currency="EUR"))
    engine.apply(make_deal(1, "buy", "in", "1.00", "160.000", symbol="EURJPY", currency="EUR"))
    engine.apply(make_quote("EURJPY", "161.000", "161.020"))
    engine.apply(make_quote("USDJPY", "149.990", "150.010"))
    (row,) = engine.snapshot(at(1)).positions
    assert row.profit_currency == "JPY" and row.account_currency == "EUR"
    assert row.mark_price == D("161.000")  # a long is marked at the bid
    assert row.floating_pnl == D("100000")  # 100,000 x 1.000 JPY
    assert row.floating_pnl_usd == q8(D("100000") / D("150.000"))  # through USDJPY (mid)
    assert row.floating_pnl_account == q8(D("100000") / D("161.010"))  # EURJPY mid, directly
    assert row.notional_usd == q8(D("100000") * D("161.010") / D("150.000"))
    assert exposure(engine.snapshot(at(1)), "EURJPY").floating_pnl_usd == row.floating_pnl_usd


def test_index_cfd_in_its_own_currency() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "sell", "in", "2.0", "18000.0", symbol="GER40"))  # 1 unit per lot
    engine.apply(make_quote("GER40", "17950.0", "17951.0"))
    engine.apply(make_quote("EURUSD", "1.0800", "1.0802"))
    snap = engine.snapshot(at(1))
    (row,) = snap.positions
    assert (row.side, row.units, row.profit_currency) == ("sell", D("2"), "EUR")
    assert row.mark_price == D("17951.0")  # a short is marked at the ask
    assert row.floating_pnl == D("98")  # 2 x (18000 - 17951)
    assert row.floating_pnl_usd == q8(D("98") * D("1.0801"))
    ger = exposure(snap, "GER40")
    assert ger.net_lots == D("-2") and ger.net_units == D("-2")
    assert ger.net_notional_usd == q8(D("-2") * D("17950.5") * D("1.0801"))
    # a CFD holds no currency but its floating P&L, in EUR
    assert currency(snap, "EUR").net_amount == D("98")
    assert [r.currency for r in snap.currency_exposure] == ["EUR"]


def test_currency_legs_add_up_across_pairs() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "1.10000", symbol="EURUSD"))
    engine.apply(make_deal(2, "buy", "in", "1", "165.000", symbol="EURJPY"))
    engine.apply(make_deal(3, "sell", "in", "0.5", "1.25000", symbol="GBPUSD"))
    engine.apply(make_deal(4, "buy", "in", "0.1", "2000.00", symbol="XAUUSD"))  # 100 oz per lot
    for symbol, bid, ask in [("EURUSD", "1.1", "1.1"), ("EURJPY", "165", "165"), ("USDJPY", "150", "150"),
                             ("GBPUSD", "1.25", "1.25"), ("XAUUSD", "2000", "2000")]:
        engine.apply(make_quote(symbol, bid, ask))
    snap = engine.snapshot(at(1))
    amounts = {r.currency: r.net_amount for r in snap.currency_exposure}
    assert amounts == {
        "EUR": D("200000"),  # EURUSD long and EURJPY long add up in EUR
        "JPY": D("-16500000"),
        "GBP": D("-50000"),
        "USD": D("-110000") + D("62500") - D("20000"),
        "XAU": D("10"),
    }
    # valued at mid, each pair's legs sum to its floating P&L (zero here: marked at cost, with
    # quotes consistent across the EURUSD x USDJPY = EURJPY triangle)
    total = sum((r.net_usd or D(0) for r in snap.currency_exposure), D(0))
    assert abs(total) < D("0.00000001")


def test_b_book_mirror_and_a_book_routing() -> None:
    routing = BookRouting(
        books={"A": D(0), "B": D(1), "H": D("0.5")},
        rules=[{"group": "real\\A-*", "book": "A"}, {"group": "real\\H-*", "book": "H"}],
        accounts={"mt5:ACME-MT5-Live:4": "A"},
    )
    engine = ExposureEngine(routing=routing)
    for login, group in [(1, "real\\A-pro"), (2, "real\\B-std"), (3, "real\\H-x"), (4, "real\\B-std")]:
        engine.apply(make_account(login, group=group))
        engine.apply(make_deal(login, "buy", "in", "1", "1.1", login=login))
    engine.apply(make_quote("EURUSD", "1.1", "1.1"))
    snap = engine.snapshot(at(1))
    assert {r.book: r.net_lots for r in snap.exposure} == {"A": D(2), "B": D(1), "H": D(1)}
    broker = {r.book: r.net_lots for r in snap.broker_exposure}
    assert broker == {"A": D(0), "B": D(-1), "H": D("-0.5")}
    assert currency(snap, "EUR", "H", broker=True).net_amount == D("-50000")
    assert {r.login: r.book for r in snap.positions} == {1: "A", 2: "B", 3: "H", 4: "A"}


def test_group_change_reroutes_open_positions() -> None:
    routing = BookRouting(rules=[{"group": "*A*", "book": "A"}])
    engine = ExposureEngine(routing=routing)
    engine.apply(make_account(group="real\\B"))
    engine.apply(make_deal(1, "buy", "in", "1", "1.1"))
    changes = engine.apply(make_account(group="real\\A", version=2))
    assert [c.kind for c in changes] == ["regroup"]
    snap = engine.snapshot(at(1))
    assert {r.book: r.net_lots for r in snap.exposure} == {"A": D(1), "B": D(0)}


def test_netting_mode_from_the_group_even_when_the_account_comes_late() -> None:
    modes = AccountModes(rules=[{"group": "*netting*", "mode": "netting"}])
    engine = ExposureEngine(modes=modes)
    engine.apply(make_deal(1, "buy", "in", "1", "1.1", position="1"))
    engine.apply(make_deal(2, "buy", "in", "1", "1.2", position="2", t=1))
    assert len(engine.positions()) == 2  # hedging until the group is known
    engine.apply(make_account(group="real\\netting"))
    (position,) = engine.positions()
    assert position.mode == "netting" and position.signed_lots == D(2) and position.avg_price == D("1.15")
    assert exposure(engine.snapshot(at(1)), "EURUSD").net_lots == D(2)


def test_missing_quote_or_rate_is_none_and_said() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "160", symbol="EURJPY"))
    snap = engine.snapshot(at(1))
    (row,) = snap.positions
    assert row.floating_pnl is None and row.floating_pnl_usd is None and row.mark_price is None
    assert exposure(snap, "EURJPY").floating_pnl_usd is None
    assert exposure(snap, "EURJPY").net_lots == D(1)  # volumes need no price
    assert "no quote for EURJPY" in snap.missing
    engine.apply(make_quote("EURJPY", "161", "161.02"))
    snap = engine.snapshot(at(2))
    assert snap.positions[0].floating_pnl == D("100000")
    assert snap.positions[0].floating_pnl_usd is None  # JPY -> USD still unknown
    assert any(m.startswith("no rate JPY->USD") for m in snap.missing)


def test_a_quote_with_one_side_marks_what_it_can() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "1.1", position="1"))
    engine.apply(make_deal(2, "sell", "in", "1", "1.1", position="2"))
    engine.apply(make_quote("EURUSD", "1.2", None))  # ask never seen yet
    snap = engine.snapshot(at(1))
    by_side = {r.side: r for r in snap.positions}
    assert by_side["buy"].floating_pnl == D("10000")
    assert by_side["sell"].floating_pnl is None
    assert "no ask price for EURUSD on ACME-MT5-Live" in snap.missing


def test_changed_positions_only_and_closed_ones_reported_once() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "1.1", position="1"))
    engine.apply(make_deal(2, "buy", "in", "1", "150", position="2", symbol="USDJPY"))
    engine.apply(make_deal(3, "buy", "in", "1", "1.3", position="3", symbol="GBPUSD"))
    assert len(engine.snapshot(at(1), positions="changed").positions) == 3
    assert engine.snapshot(at(2), positions="changed").positions == []
    engine.apply(make_quote("GBPUSD", "1.31", "1.3101"))
    assert [r.symbol for r in engine.snapshot(at(3), positions="changed").positions] == ["GBPUSD"]
    engine.apply(make_deal(4, "sell", "out", "1", "1.12", position="1", t=4))
    (closed,) = engine.snapshot(at(5), positions="changed").positions
    assert closed.is_deleted and closed.position_key == "mt5:ACME-MT5-Live:70001:1" and closed.lots == 0
    assert [r.symbol for r in engine.snapshot(at(6)).positions] == ["USDJPY", "GBPUSD"]


def test_traded_lists_only_what_deals_changed() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "1.1", position="1"))
    engine.apply(make_deal(2, "buy", "in", "1", "1.3", position="2", symbol="GBPUSD"))
    assert len(engine.snapshot(at(1), positions="traded").positions) == 2
    engine.apply(make_quote("GBPUSD", "1.31", "1.3101"))
    engine.apply(make_deal(3, "sell", "out", "0.5", "1.12", position="1", t=2))
    assert [r.position_id for r in engine.snapshot(at(3), positions="traded").positions] == ["1"]
    # the quote is still pending for a "changed" listing
    assert [r.symbol for r in engine.snapshot(at(4), positions="changed").positions] == ["GBPUSD"]


def test_rate_move_marks_positions_in_that_currency_changed() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "160", position="1", symbol="EURJPY"))
    engine.apply(make_deal(2, "buy", "in", "1", "1.3", position="2", symbol="GBPUSD"))
    engine.snapshot(at(1), positions="changed")
    engine.apply(make_quote("USDJPY", "150", "150.01"))  # moves JPY -> USD
    assert [r.symbol for r in engine.snapshot(at(2), positions="changed").positions] == ["EURJPY"]


def test_top_lists_and_rollups() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "1.1000", login=1))  # +1,000 at 1.11
    engine.apply(make_deal(2, "buy", "in", "3", "1.1200", login=2))  # -3,000
    engine.apply(make_deal(3, "sell", "in", "2", "1.1000", login=3, server="ACME-MT5-Demo"))  # -2,000
    engine.apply(make_quote("EURUSD", "1.1100", "1.1100"))
    snap = engine.snapshot(at(1), top=2)
    assert [(a.login, a.floating_pnl_usd) for a in snap.top_profit] == [(1, D("1000"))]
    assert [(a.login, a.floating_pnl_usd) for a in snap.top_loss] == [(2, D("-3000")), (3, D("-2000"))]
    assert [a.login for a in snap.top_exposure] == [2, 3]
    by_server = {r.server: r for r in engine.rollup(["server"])}
    assert by_server["ACME-MT5-Live"].net_lots == D(4) and by_server["ACME-MT5-Live"].net_units is None
    assert by_server["ACME-MT5-Demo"].net_lots == D(-2)
    assert by_server["ACME-MT5-Demo"].floating_pnl_usd == D("-2000")
    (total,) = engine.rollup([])
    assert (total.positions, total.long_lots, total.short_lots) == (3, D(4), D(2))


def test_quotes_per_server_mark_that_servers_positions() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "1.1", login=1, server="S1"))
    engine.apply(make_deal(2, "buy", "in", "1", "1.1", login=2, server="S2"))
    engine.apply(make_quote("EURUSD", "1.11", "1.11", server="S1"))
    engine.apply(make_quote("EURUSD", "1.12", "1.12", server="S2"))
    engine.apply(make_quote("EURUSD", "1.13", "1.13", server="S1"))
    marks = {r.server: r.mark_price for r in engine.snapshot(at(1)).positions}
    assert marks == {"S1": D("1.13"), "S2": D("1.12")}


def test_correction_updates_the_aggregates() -> None:
    engine = ExposureEngine()
    opening = make_deal(1, "buy", "in", "1", "1.1")
    engine.apply(opening)
    engine.apply(make_quote("EURUSD", "1.1", "1.1"))
    engine.apply(revise(opening, version=2, event="update", lots="3", price="1.09"))
    snap = engine.snapshot(at(1))
    assert exposure(snap, "EURUSD").net_lots == D(3)
    assert exposure(snap, "EURUSD").floating_pnl_usd == D("3000")
    engine.apply(revise(opening, version=3, event="delete"))
    snap = engine.snapshot(at(2))
    assert exposure(snap, "EURUSD").net_lots == 0 and exposure(snap, "EURUSD").floating_pnl_usd == 0
    assert [r.is_deleted for r in snap.positions] == [True]  # the vanished position, once
    assert engine.positions() == [] and engine.snapshot(at(3)).positions == []


def test_position_row_fields() -> None:
    engine = ExposureEngine()
    engine.apply(make_account(group="real\\B-std", currency="USD"))
    engine.apply(make_deal(7, "sell", "in", "0.5", "1.2500", symbol="GBPUSD", commission="-3"))
    engine.apply(make_quote("GBPUSD", "1.2400", "1.2402"))
    (row,) = engine.snapshot(at(1)).positions
    assert isinstance(row, PositionRow)
    assert row.model_dump() | {} == {
        "position_key": "mt5:ACME-MT5-Live:70001:7", "tenant": "acme", "platform": "mt5",
        "server": "ACME-MT5-Live", "login": 70001, "account_key": "mt5:ACME-MT5-Live:70001",
        "group": "real\\B-std", "book": "B", "mode": "hedging", "position_id": "7", "symbol": "GBPUSD",
        "side": "sell", "lots": D("0.5"), "units": D("50000"), "open_price": D("1.25"),
        "mark_price": D("1.2402"), "mark_source": "own", "profit_currency": "USD", "floating_pnl": D("490"),
        "account_currency": "USD", "floating_pnl_account": D("490"), "floating_pnl_usd": D("490"),
        "notional_usd": D("62005.00"), "realised_pnl": D("-3"), "gross_pnl": D(0),
        "opened_at": T0, "updated_at": T0, "incomplete": False, "as_of": at(1),
        "version": int(at(1).timestamp() * 1000), "is_deleted": False,
    }


def test_the_account_currency_comes_from_the_account_record() -> None:
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "1.1", currency="USD"))  # the server's default
    engine.apply(make_account(currency="EUR"))
    engine.apply(make_quote("EURUSD", "1.2", "1.2"))
    (row,) = engine.snapshot(at(1)).positions
    assert row.account_currency == "EUR"
    assert row.floating_pnl_account == q8(D("10000") / D("1.2"))


def test_engine_state_survives_pickling() -> None:
    # Bytewax recovery snapshots operator state with pickle
    engine = ExposureEngine(routing=BookRouting(rules=[{"group": "*A*", "book": "A"}]))
    engine.apply(make_account(group="real\\A"))
    opening = make_deal(1, "buy", "in", "1", "1.1")
    events: list[Deal | Quote] = [opening, make_deal(2, "sell", "in", "2", "160", symbol="EURJPY"),
                                  make_quote("EURUSD", "1.2", "1.2"), make_quote("EURJPY", "161", "161.1"),
                                  make_quote("USDJPY", "150", "150")]
    for event in events:
        engine.apply(event)
    restored = pickle.loads(pickle.dumps(engine))
    assert restored.snapshot(at(1)) == engine.snapshot(at(1))
    for copy in (engine, restored):
        copy.apply(revise(opening, version=2, event="update", lots="2"))
    assert restored.snapshot(at(2)) == engine.snapshot(at(2))


def test_position_books_kept_elsewhere_feed_the_same_aggregates() -> None:
    # e.g. books keyed by account in one dataflow step, the engine keyed by tenant in another
    deals = [make_deal(1, "buy", "in", "1", "1.1", commission="-7"),
             make_deal(2, "sell", "out", "0.4", "1.2", position="1", t=5, profit="4000"),
             make_deal(3, "sell", "in", "2", "160", symbol="EURJPY", t=6)]
    together = ExposureEngine()
    apart = ExposureEngine()
    book = PositionBook("mt5:ACME-MT5-Live:70001", group="real\\B-std")  # the owner knows the group
    for engine in (together, apart):
        engine.apply(make_account(balance="1000", t=1))
        engine.apply(make_quote("EURUSD", "1.2", "1.2"))
        engine.apply(make_quote("EURJPY", "161", "161"))
        engine.apply(make_quote("USDJPY", "150", "150"))
    for deal in deals:
        together.apply(deal)
        for change in book.apply(deal):
            apart.on_position_change(change)
    assert apart.snapshot(at(9)) == together.snapshot(at(9))
    assert apart.margin_status(at(9)) == together.margin_status(at(9))
    (status,) = together.margin_status(at(9))
    assert status.balance == D("5000")  # 1000 reported, then +4000 realised (the -7 was before)
