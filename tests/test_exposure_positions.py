"""PositionBook: positions from deals, hand-built sequences for every platform shape."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from connectors.mt4 import read_mt4_trade
from connectors.routing import Router
from pipelines.config import parse_settings
from risk_rules.exposure import PositionBook, PositionChange, PositionState
from schemas.envelope import Envelope
from schemas.events import Deal
from schemas.identity import account_key_of
from tests.test_exposure_support import T0, make_deal, revise

D = Decimal
ACCOUNT = "mt5:ACME-MT5-Live:70001"


def run(book: PositionBook, deals: list[Deal]) -> list[PositionChange]:
    changes: list[PositionChange] = []
    for deal in deals:
        changes += book.apply(deal)
    return changes


def only(book: PositionBook) -> PositionState:
    (position,) = book.positions()
    return position


# ---- hedging and netting ----------------------------------------------------------------------


def test_hedging_keeps_opposite_positions_apart_netting_nets_them() -> None:
    hedging = PositionBook(ACCOUNT, "hedging")
    run(hedging, [
        make_deal(1, "buy", "in", "1.00", "1.10000", position="1"),
        make_deal(2, "sell", "in", "0.50", "1.10100", position="2", t=1),
    ])
    by_id = {p.position_id: p for p in hedging.positions()}
    assert by_id["1"].signed_lots == D("1.00") and by_id["1"].side == "buy"
    assert by_id["2"].signed_lots == D("-0.50") and by_id["2"].side == "sell"
    assert by_id["2"].key == (ACCOUNT, "2")

    # On a netting account MT5 reports the same sell as an OUT of the one position.
    netting = PositionBook(ACCOUNT, "netting")
    run(netting, [
        make_deal(1, "buy", "in", "1.00", "1.10000", position="1"),
        make_deal(2, "sell", "out", "0.50", "1.10100", position="1", t=1, profit="50"),
    ])
    position = only(netting)
    assert position.key == (ACCOUNT, "EURUSD")
    assert position.signed_lots == D("0.50")
    assert position.signed_units == D("50000")
    assert position.avg_price == D("1.10000")
    assert position.gross_pnl == D("50")  # 50,000 x 0.00100
    assert position.realised.total == D("50")


def test_increase_gives_the_volume_weighted_average_price() -> None:
    book = PositionBook(ACCOUNT)
    changes = run(book, [
        make_deal(1, "buy", "in", "1.00", "1.10000", position="7"),
        make_deal(2, "buy", "in", "3.00", "1.10400", position="7", t=1),
    ])
    assert [c.kind for c in changes] == ["open", "increase"]
    position = only(book)
    assert position.signed_lots == D("4.00")
    assert position.avg_price == D("1.103")  # (1 x 1.1 + 3 x 1.104) / 4
    assert position.opened_at == T0
    assert changes[1].before is not None and changes[1].before.signed_lots == D("1.00")


def test_partial_then_full_close_realises_what_the_platform_says() -> None:
    book = PositionBook(ACCOUNT)
    changes = run(book, [
        make_deal(1, "buy", "in", "1.00", "1.10000", position="9", commission="-3.50"),
        make_deal(2, "sell", "out", "0.40", "1.10500", position="9", t=60, profit="200.00",
                  swap="-1.10", commission="-1.40"),
        make_deal(3, "sell", "out", "0.60", "1.09900", position="9", t=120, profit="-60.00",
                  swap="-1.65", commission="-2.10", fee="-0.25"),
    ])
    assert [c.kind for c in changes] == ["open", "reduce", "close"]
    partial = changes[1].after
    assert partial.signed_lots == D("0.60") and partial.avg_price == D("1.10000")
    assert partial.gross_pnl == D("200")  # 40,000 x 0.005
    assert changes[1].realised.total == D("200.00") - D("1.10") - D("1.40")
    final = changes[2].after
    assert not final.is_open and final.side is None and final.opened_at is None
    assert book.positions() == []
    assert final.realised.profit == D("140.00")
    assert final.realised.swap == D("-2.75")
    assert final.realised.commission == D("-7.00")  # the opening deal's commission counts
    assert final.realised.fee == D("-0.25")
    assert final.realised.total == D("130.00")
    assert final.gross_pnl == D("140")  # 200 + 60,000 x (1.099 - 1.1)
    assert book.position("9") == final  # kept (flat) until pruned


def test_inout_reversal_closes_and_opens_the_rest_the_other_way() -> None:
    book = PositionBook(ACCOUNT, "netting")
    changes = run(book, [
        make_deal(10, "buy", "in", "1.00", "1.10000", position="10"),
        make_deal(11, "sell", "inout", "3.00", "1.11000", position="10", t=5, profit="1000"),
    ])
    assert [c.kind for c in changes] == ["open", "reverse"]
    position = only(book)
    assert position.signed_lots == D("-2.00")
    assert position.signed_units == D("-200000")
    assert position.avg_price == D("1.11000")  # the reversal's price
    assert position.opened_at == make_deal(0, "buy", "in", "1", "1", t=5).time
    # the closed 1.00 lot (100,000 x 0.01) belongs to the side it closed: the new side starts
    # from zero, the money stays booked (balance)
    assert changes[1].before is not None and changes[1].after.booked.total == D("1000")
    assert position.gross_pnl == 0 and position.realised.total == 0
    assert changes[1].realised.total == D("1000")
    assert position.position_id == "10"  # MT5 keeps the position identifier through a reversal


def test_out_by_closes_each_of_two_opposite_positions() -> None:
    # MT5 close-by: two OUT_BY deals, each closing its own position at the opposite one's
    # open price; here the long 1.00 is closed by the short 0.60.
    book = PositionBook(ACCOUNT, "hedging")
    run(book, [
        make_deal(20, "buy", "in", "1.00", "1.10000", position="20"),
        make_deal(21, "sell", "in", "0.60", "1.10500", position="21", t=1),
    ])
    changes = run(book, [
        make_deal(22, "sell", "out_by", "0.60", "1.10500", position="20", t=2, profit="300"),
        make_deal(23, "buy", "out_by", "0.60", "1.10500", position="21", t=2, profit="0"),
    ])
    assert [c.kind for c in changes] == ["reduce", "close"]
    long = book.position("20")
    short = book.position("21")
    assert long is not None and short is not None
    assert long.signed_lots == D("0.40") and long.avg_price == D("1.10000")
    assert not short.is_open
    assert long.gross_pnl + short.gross_pnl == D("300")
    assert long.realised.total + short.realised.total == D("300")
    assert [p.position_id for p in book.positions()] == ["20"]


# ---- MT4: positions arrive as in/out pairs through the real connector ---------------------------

MT4_SETTINGS = parse_settings({"tenants": [{"id": "acme", "servers": [
    {"name": "ACME-MT4", "platform": "mt4", "currency": "USD"}]}]})
MT4_ROUTER = Router(MT4_SETTINGS)
OPEN_S = int(T0.timestamp())


def mt4(record: dict[str, Any], event: str, ts: int) -> list[Deal]:
    env = Envelope(topic="mt4.trades", value=orjson.dumps(record), timestamp_ms=ts, key="5001",
                   headers={"server": "ACME-MT4", "event": event}, partition=0, offset=ts)
    out = read_mt4_trade(env, MT4_ROUTER)
    assert all(isinstance(d, Deal) for d in out)
    return [d for d in out if isinstance(d, Deal)]


def record(order: int, volume: int, **fields: Any) -> dict[str, Any]:
    base = {"order": order, "login": 5001, "symbol": "EURUSD.r", "cmd": 0, "volume": volume,
            "open_time": OPEN_S, "state": 0, "open_price": "1.08500", "close_time": 0,
            "close_price": "1.08600", "profit": "100", "commission": "-7", "storage": "0",
            "taxes": "0", "comment": ""}
    return {**base, **fields}


def test_mt4_positions_and_a_partial_close_chain() -> None:
    book = PositionBook("mt4:ACME-MT4:5001")
    ts = OPEN_S * 1000
    lots: list[Decimal] = []
    realised: list[Decimal] = []

    def feed(deals: list[Deal]) -> None:
        for deal in deals:
            book.apply(deal)
        lots.append(sum((p.signed_lots for p in book.positions()), D(0)))
        realised.append(sum((p.realised.total for p in book.positions(open_only=False)), D(0)))

    feed(mt4(record(100, 100), "add", ts))
    # 0.40 closed: #100 becomes the closed part (its :in deal shrinks), #101 the remainder
    feed(mt4(record(100, 40, state=4, close_time=OPEN_S + 600, close_price="1.08750", profit="100",
                    storage="-0.4", commission="-2.8", comment="to #101"), "update", ts + 1000))
    feed(mt4(record(101, 60, comment="from #100"), "add", ts + 2000))
    feed(mt4(record(101, 60, state=3, close_time=OPEN_S + 1200, close_price="1.08400", profit="-60",
                    storage="-0.6", commission="-4.2", comment="from #100"), "update", ts + 3000))
    # open 1.00 -> closed part 0.40 (remainder not yet in) -> 0.60 -> 0
    assert lots == [D("1.00"), D("0.00"), D("0.60"), D("0.00")]
    assert realised[-1] == D("100") + D("-0.4") + D("-2.8") + D("-60") + D("-0.6") + D("-4.2")
    first, second = book.position("100"), book.position("101")
    assert first is not None and second is not None
    assert first.gross_pnl == D("100")  # 40,000 x 0.0025
    assert second.gross_pnl == D("-60")  # 60,000 x -0.001
    assert not first.incomplete and not second.incomplete


def test_mt4_closed_record_seen_twice_changes_nothing() -> None:
    book = PositionBook("mt4:ACME-MT4:5001")
    closed = record(300, 100, state=3, close_time=OPEN_S + 60, close_price="1.08600", profit="100")
    assert [c.kind for c in run(book, mt4(closed, "add", 1000))] == ["open", "close"]
    # replayed with a newer version (a redelivery after a crash): nothing material changed
    assert run(book, mt4(closed, "update", 2000)) == []


# ---- cancellations, duplicates, order ---------------------------------------------------------


def test_canceled_deals_move_nothing() -> None:
    book = PositionBook(ACCOUNT)
    assert book.apply(make_deal(1, "buy", "in", "1.00", "1.1", canceled=True)) == []
    assert book.positions() == []


def test_same_deal_twice_or_an_older_version_changes_nothing() -> None:
    book = PositionBook(ACCOUNT)
    deal = make_deal(1, "buy", "in", "1.00", "1.1", version=5)
    assert len(book.apply(deal)) == 1
    before = book.positions()
    assert book.apply(deal) == []
    assert book.apply(revise(deal, version=4, price="1.2")) == []
    assert book.positions() == before


def test_a_late_deal_is_replayed_in_event_time_order() -> None:
    in_order = PositionBook(ACCOUNT, "netting")
    late = PositionBook(ACCOUNT, "netting")
    deals = [
        make_deal(1, "buy", "in", "1.00", "1.10000", t=0),
        make_deal(2, "buy", "in", "1.00", "1.12000", t=10),
        make_deal(3, "sell", "out", "1.50", "1.13000", t=20, profit="2500"),
    ]
    run(in_order, deals)
    changes = run(late, [deals[0], deals[2], deals[1]])
    assert changes[-1].kind == "rebuild"
    assert late.positions() == in_order.positions()


def test_a_close_with_nothing_open_opens_no_phantom_position() -> None:
    # The opening deal happened before the data starts: the close moves no volume.
    book = PositionBook(ACCOUNT)
    (change,) = book.apply(make_deal(2, "sell", "out", "1.00", "1.1", position="1", profit="-20"))
    assert change.kind == "unmatched"
    assert book.positions() == []
    assert change.after.incomplete and change.after.realised.total == D("-20")
    # Its opening deal arrives late (older event time): the position is whole again.
    book.apply(make_deal(1, "buy", "in", "1.00", "1.1002", position="1", t=-60))
    position = book.position("1")
    assert position is not None and not position.is_open and not position.incomplete
    assert position.gross_pnl == D("-20")


def test_closing_more_than_is_open_does_not_reverse_a_hedged_position() -> None:
    book = PositionBook(ACCOUNT)
    run(book, [make_deal(1, "buy", "in", "1.00", "1.1", position="1"),
                make_deal(2, "sell", "out", "1.50", "1.1", position="1", t=1)])
    position = book.position("1")
    assert position is not None and not position.is_open and position.incomplete


# ---- dealer corrections -----------------------------------------------------------------------


def test_update_of_an_opening_deal_rebuilds_the_position() -> None:
    book = PositionBook(ACCOUNT)
    opening = make_deal(1, "buy", "in", "1.00", "1.10000", position="1")
    run(book, [opening, make_deal(2, "buy", "in", "1.00", "1.10200", position="1", t=1),
               make_deal(3, "sell", "out", "0.50", "1.10300", position="1", t=2, profit="100")])
    assert only(book).avg_price == D("1.10100")
    # the dealer moves the first fill's price and volume
    (change,) = book.apply(revise(opening, version=2, event="update", price="1.09900", lots="2.00"))
    assert change.kind == "rebuild"
    position = only(book)
    assert position.signed_lots == D("2.50")
    assert position.avg_price == D("1.10000")  # (2 x 1.099 + 1 x 1.102) / 3
    assert position.gross_pnl == D("150")  # 50,000 x (1.103 - 1.100)
    assert change.realised.total == D(0)
    assert change.before is not None and change.before.signed_lots == D("1.50")


def test_delete_of_a_partial_close_gives_the_volume_back() -> None:
    book = PositionBook(ACCOUNT)
    close = make_deal(2, "sell", "out", "0.40", "1.10500", position="1", t=1, profit="200")
    run(book, [make_deal(1, "buy", "in", "1.00", "1.10000", position="1"), close])
    (change,) = book.apply(revise(close, version=2, event="delete"))
    assert change.kind == "rebuild"
    assert change.realised.total == D("-200")
    position = only(book)
    assert position.signed_lots == D("1.00") and position.gross_pnl == 0
    assert position.realised.total == 0 and position.deals == 1


def test_deleting_every_deal_of_a_position_leaves_nothing() -> None:
    book = PositionBook(ACCOUNT)
    opening = make_deal(1, "buy", "in", "1.00", "1.1", position="1", commission="-7")
    book.apply(opening)
    (change,) = book.apply(revise(opening, version=2, event="delete"))
    assert not change.after.is_open and change.after.deals == 0
    assert change.realised.total == D("7")
    assert book.positions() == [] and book.position("1") is None and len(book) == 0
    # a stale replay of the add (older version) stays deleted
    assert book.apply(opening) == []


def test_delete_before_add_wins() -> None:
    book = PositionBook(ACCOUNT)
    opening = make_deal(1, "buy", "in", "1.00", "1.1", version=1)
    assert book.apply(revise(opening, version=2, event="delete")) == []
    assert book.apply(opening) == []
    assert book.positions() == []


def test_update_that_moves_a_deal_to_another_position() -> None:
    book = PositionBook(ACCOUNT)
    deal = make_deal(2, "buy", "in", "0.50", "1.1", position="1", t=1)
    run(book, [make_deal(1, "buy", "in", "1.00", "1.1", position="1"), deal])
    changes = book.apply(revise(deal, version=2, event="update", position_id="2"))
    assert [(c.kind, c.key[1]) for c in changes] == [("rebuild", "1"), ("open", "2")]
    assert {p.position_id: p.signed_lots for p in book.positions()} == {"1": D("1.00"), "2": D("0.50")}


# ---- account-level changes ----------------------------------------------------------------------


def test_group_change_reports_every_open_position() -> None:
    book = PositionBook(ACCOUNT, group="real\\A")
    run(book, [make_deal(1, "buy", "in", "1", "1.1", position="1"),
               make_deal(2, "sell", "in", "1", "1.1", position="2"),
               make_deal(3, "buy", "out", "1", "1.1", position="2", t=1)])
    changes = book.set_group("real\\B")
    assert [(c.kind, c.key[1], c.after.group) for c in changes] == [("regroup", "1", "real\\B")]
    assert book.set_group("real\\B") == []


def test_switching_to_netting_rebuilds_under_symbol_keys() -> None:
    book = PositionBook(ACCOUNT, "hedging")
    run(book, [make_deal(1, "buy", "in", "1.00", "1.10000", position="1"),
               make_deal(2, "sell", "in", "0.25", "1.10400", position="2", t=1)])
    changes = book.set_mode("netting")
    flat = [c for c in changes if not c.after.is_open]
    assert sorted(c.key[1] for c in flat) == ["1", "2"]
    position = only(book)
    assert position.key == (ACCOUNT, "EURUSD")
    assert position.signed_lots == D("0.75")
    assert position.gross_pnl == D("100")  # the sell closed 25,000 at +0.004


def test_prune_forgets_closed_positions_and_ignores_their_replays() -> None:
    book = PositionBook(ACCOUNT)
    deals = [make_deal(1, "buy", "in", "1", "1.1", position="1"),
             make_deal(2, "sell", "out", "1", "1.1", position="1", t=1),
             make_deal(3, "buy", "in", "1", "1.1", position="3", t=2)]
    run(book, deals)
    assert book.prune(before=make_deal(0, "buy", "in", "1", "1", t=10).time) == 1
    assert len(book) == 1
    assert run(book, deals) == []  # replay after a crash: stale for the pruned, duplicate for the open
    assert [p.position_id for p in book.positions()] == ["3"]


def test_a_book_pickled_at_any_point_continues_exactly() -> None:
    """Recovery snapshots pickle each position once until it changes (cached bytes): a book
    restored from any snapshot, however often it was taken, behaves as the live one."""
    import pickle

    from tests.test_exposure_support import random_history

    for seed in range(3):
        history = random_history(seed, 800, accounts=2)
        for account, mode in history.modes.items():
            deals = [e for e in history.events if isinstance(e, Deal)
                     and account_key_of(e) == account]
            live = PositionBook(account, mode)  # type: ignore[arg-type]
            restored = PositionBook(account, mode)  # type: ignore[arg-type]
            for i, deal in enumerate(deals):
                assert live.apply(deal) == restored.apply(deal), f"seed {seed}, {mode}, deal {i}"
                if i % 7 == 0:
                    pickle.dumps(restored)  # fills the caches
                if i % 13 == 0:
                    restored = pickle.loads(pickle.dumps(restored))
            assert len(deals) > 100
            assert live.positions(open_only=False) == restored.positions(open_only=False)
            again = pickle.loads(pickle.dumps(live))
            assert again.positions(open_only=False) == live.positions(open_only=False)
