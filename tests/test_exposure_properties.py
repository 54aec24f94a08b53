"""Properties of positions and exposure over random trading histories (hypothesis draws the
seed, the length and the mix of accounts; the history generator adds redeliveries, dealer
corrections, deletions, late deals and one-sided quotes)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from risk_rules.exposure import (
    AccountModes,
    BookRouting,
    ExposureEngine,
    ExposureSnapshot,
    Money,
    PositionState,
)
from risk_rules.exposure.money import price12
from risk_rules.exposure.positions import deal_order
from schemas.events import Deal, Quote
from schemas.identity import account_key_of
from tests.test_exposure_support import History, at, random_history

histories = st.builds(
    random_history,
    seed=st.integers(min_value=0, max_value=2**32),
    steps=st.integers(min_value=1, max_value=250),
    accounts=st.integers(min_value=1, max_value=8),
)


def engine_for(history: History) -> ExposureEngine:
    return ExposureEngine(modes=AccountModes(accounts=history.modes),
                          routing=BookRouting(accounts=history.books))


def fed(history: History, events: list[Deal | Quote] | None = None) -> ExposureEngine:
    engine = engine_for(history)
    for event in history.events if events is None else events:
        engine.apply(event)
    return engine


def all_positions(engine: ExposureEngine, history: History) -> list[PositionState]:
    out: list[PositionState] = []
    for account_key in sorted(history.modes):
        book = engine.book(account_key)
        if book is not None:
            out += book.positions(open_only=False)
    return sorted(out, key=lambda p: p.key)


def table_rows(snapshot: ExposureSnapshot) -> list[object]:
    return [*snapshot.positions, *snapshot.exposure, *snapshot.currency_exposure, *snapshot.broker_exposure,
            *snapshot.broker_currency_exposure]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), steps=st.integers(min_value=1, max_value=250),
       accounts=st.integers(min_value=1, max_value=8))
def test_opening_and_fully_closing_anything_returns_exposure_to_zero(
    seed: int, steps: int, accounts: int
) -> None:
    history = random_history(seed, steps, accounts=accounts, close_all=True)
    engine = fed(history)
    snap = engine.snapshot(at(10**6))
    assert engine.positions() == []
    assert all(row.is_deleted for row in snap.positions)
    for row in [*snap.exposure, *snap.broker_exposure]:
        assert (row.net_lots, row.net_units, row.net_notional_usd, row.floating_pnl_usd) == (0, 0, 0, 0)
    for ccy in [*snap.currency_exposure, *snap.broker_currency_exposure]:
        assert (ccy.net_amount, ccy.net_usd) == (0, 0)
    assert snap.top_exposure == snap.top_profit == snap.top_loss == []
    assert engine.margin_status(at(10**6)) == []


def current_episode(deals: list[Deal]) -> tuple[Money, Decimal]:
    """Realised money and gross P&L of the latest episode of a position, walked independently
    from its deals (in replay order): an episode starts when volume opens from flat or a
    reversal opens the other side (the reversal's money and closed volume stay with the side it
    closed); a close of nothing or of more than is open moves at most what is open."""
    net = Decimal(0)
    avg = Decimal(0)
    realised, gross = Money(), Decimal(0)
    for d in deals:
        money = Money.of_deal(d)
        units = d.units if d.side == "buy" else -d.units
        if not units:
            realised += money
            continue
        same_way = net == 0 or (net > 0) == (units > 0)
        if d.entry in ("out", "out_by") and same_way:
            realised += money
            continue
        if same_way:
            if net == 0:
                realised, gross, avg = Money(), Decimal(0), d.price
            else:
                avg = price12((abs(net) * avg + abs(units) * d.price) / (abs(net) + abs(units)))
            realised += money
            net += units
            continue
        realised += money
        closed = min(abs(units), abs(net))
        gross += closed * (d.price - avg) * (1 if net > 0 else -1)
        if abs(units) < abs(net):
            net += units
        elif abs(units) > abs(net) and d.entry not in ("out", "out_by"):
            net += units
            realised, gross, avg = Money(), Decimal(0), d.price  # reversal: the new side from zero
        else:
            net, avg = Decimal(0), Decimal(0)
    return realised, gross


@settings(max_examples=60, deadline=None)
@given(history=histories)
def test_realised_pnl_of_a_position_is_the_sum_of_what_its_deals_say(history: History) -> None:
    engine = fed(history)
    for position in all_positions(engine, history):
        book = engine.book(position.account_key)
        assert book is not None
        said = sum((Money.of_deal(d) for d in book.deals_of(position.key[1])), Money())
        assert position.booked == said  # every episode's money: what moved the balance
        realised, gross = current_episode(book.deals_of(position.key[1]))
        assert position.realised == realised, position.key  # its own episode's deals only
        assert position.gross_pnl == gross, position.key
        assert position.deals == len(book.deals_of(position.key[1]))
    # and over each account, what every live deal says (deleted and canceled ones say nothing)
    by_account: dict[str, Decimal] = {}
    for deal in history.final_deals():
        key = account_key_of(deal)
        by_account[key] = by_account.get(key, Decimal(0)) + Money.of_deal(deal).total
    realised: dict[str, Decimal] = {}
    for position in all_positions(engine, history):
        key = position.account_key
        realised[key] = realised.get(key, Decimal(0)) + position.booked.total
    assert {k: v for k, v in realised.items() if v} == {k: v for k, v in by_account.items() if v}


@settings(max_examples=40, deadline=None)
@given(history=histories)
def test_applying_the_same_deal_twice_changes_nothing(history: History) -> None:
    once = fed(history)
    twice = engine_for(history)
    for event in history.events:
        twice.apply(event)
        if isinstance(event, Deal):
            assert twice.apply(event) == []
    assert all_positions(twice, history) == all_positions(once, history)
    assert table_rows(twice.snapshot(at(1))) == table_rows(once.snapshot(at(1)))


@settings(max_examples=40, deadline=None)
@given(history=histories)
def test_a_stream_with_corrections_ends_where_its_final_deals_lead(history: History) -> None:
    streamed = fed(history)
    final = sorted(history.final_deals(), key=deal_order)
    replayed = fed(history, [*final, *history.quotes()])
    assert all_positions(streamed, history) == all_positions(replayed, history)
    snap_streamed = streamed.snapshot(at(1), positions="none")
    snap_replayed = replayed.snapshot(at(1), positions="none")
    # rows of symbols whose positions were all deleted stay (at zero) in the streamed engine
    assert [r for r in table_rows(snap_streamed) if any(v for v in _values(r))] == [
        r for r in table_rows(snap_replayed) if any(v for v in _values(r))]


def _values(row: object) -> list[object]:
    return [v for k, v in vars(row).items() if k.startswith("net_") or k.startswith("floating")]
