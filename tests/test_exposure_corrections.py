"""Issue 14: reopened positions start from zero, and no correction is ever lost - a correction
arriving after its position left memory (`exposure.keep_closed_minutes`) is applied from the
stored deal history, or reported as a `correction_issues` row and a `correction.unapplied`
alert."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from pipelines.exposure_step import (
    AccountBook,
    ExposureStep,
    PositionBookStep,
    StoreDealHistory,
    correction_issue_rows,
)
from pipelines.tables import ALERTS, CORRECTION_ISSUES, DEALS, POSITIONS, to_row
from risk_rules.exposure import AccountModes, ExposureEngine, PositionBook, PositionChange
from risk_rules.exposure.positions import CorrectionIssue, MemoryDealHistory
from risk_rules.exposure.settings import ExposureSettings
from schemas.events import Deal
from tests.test_exposure_support import make_account, make_deal, make_quote, revise

ACCOUNT = "mt5:ACME-MT5-Live:70001"
MINUTE = 60.0
LATENESS = {"1 minute": MINUTE, "2 hours": 2 * 3600.0, "3 days": 3 * 86400.0}


# ---- reopened positions ------------------------------------------------------------------------

def test_a_netting_position_reopened_under_a_new_position_id_starts_from_zero() -> None:
    # the issue's repro: GBPUSD closed flat, reopened 0.3 lot under a new PositionID
    book = PositionBook(ACCOUNT, "netting")
    deals = [
        make_deal(1, "buy", "in", "1.0", "1.25000", symbol="GBPUSD", position="1", commission="-1"),
        make_deal(2, "sell", "out", "1.0", "1.25250", symbol="GBPUSD", position="1", t=60,
                  profit="250", commission="-1"),
        make_deal(3, "buy", "in", "0.3", "1.25300", symbol="GBPUSD", position="3", t=120),
    ]
    changes = [c for d in deals for c in book.apply(d)]
    position = book.position("GBPUSD")
    assert position is not None and position.lots == D("0.3") and position.position_id == "3"
    assert (position.realised.total, position.gross_pnl) == (0, 0)
    assert position.booked.total == D("248")  # the balance still got the first episode's money
    assert changes[2].realised.total == 0


def test_a_reopened_netting_position_counts_only_its_own_deals() -> None:
    book = PositionBook(ACCOUNT, "netting")
    for d in [
        make_deal(1, "buy", "in", "1", "30.00", symbol="XAGUSD", position="1", contract_size="5000"),
        make_deal(2, "sell", "out", "1", "29.99", symbol="XAGUSD", position="1", t=1, profit="-50",
                  contract_size="5000"),
        make_deal(3, "sell", "in", "0.2", "30.00", symbol="XAGUSD", position="3", t=2,
                  commission="-0.80", contract_size="5000"),
        make_deal(4, "buy", "out", "0.1", "29.99", symbol="XAGUSD", position="3", t=3, profit="5",
                  contract_size="5000"),
    ]:
        book.apply(d)
    position = book.position("XAGUSD")
    assert position is not None and position.signed_lots == D("-0.1")
    assert position.realised.total == D("4.20")  # -0.80 commission + 5 profit: not -45.80
    assert position.gross_pnl == D("5")  # 500 units x 0.01


def test_a_hedging_position_id_reused_after_it_went_flat_starts_from_zero() -> None:
    book = PositionBook(ACCOUNT, "hedging")
    for d in [
        make_deal(1, "buy", "in", "1", "1.1000", position="7"),
        make_deal(2, "sell", "out", "1", "1.1010", position="7", t=1, profit="100"),
        make_deal(3, "sell", "in", "2", "1.1020", position="7", t=2, commission="-3"),
    ]:
        book.apply(d)
    position = book.position("7")
    assert position is not None and position.signed_lots == D("-2")
    assert (position.realised.total, position.gross_pnl) == (D("-3"), 0)


def test_the_balance_moves_by_every_episode_of_a_reopened_position() -> None:
    engine = ExposureEngine()
    engine.apply(make_account(balance="1000"))
    for d in [
        make_deal(1, "buy", "in", "1", "1.25", symbol="GBPUSD", position="1", t=1),
        make_deal(2, "sell", "out", "1", "1.26", symbol="GBPUSD", position="1", t=2, profit="1000"),
        make_deal(3, "buy", "in", "1", "1.26", symbol="GBPUSD", position="3", t=3, commission="-7"),
    ]:
        engine.apply(d)
    (status,) = engine.margin_status(make_account().updated_at + timedelta(seconds=5))
    assert status.balance == D("1993")


# ---- late corrections --------------------------------------------------------------------------

def _opened_and_closed() -> list[Deal]:
    symbol = "EURUSD"
    return [
        make_deal(1, "buy", "in", "1", "1.1000", position="1", symbol=symbol, version=4),
        make_deal(2, "sell", "out", "1", "1.1010", position="1", symbol=symbol, t=10, profit="100",
                  version=8),
    ]


def _run(step: PositionBookStep, state: AccountBook | None, deals: list[Deal]
         ) -> tuple[AccountBook, list[PositionChange | CorrectionIssue]]:
    out: list[PositionChange | CorrectionIssue] = []
    for deal in deals:
        state, changes = step(state, deal)
        out += changes
    assert state is not None
    return state, out


def _late_delete(late_s: float) -> tuple[Deal, Deal]:
    """Another deal `late_s` after the close (it lets the book prune), then the dealer deletes
    the closing deal."""
    other = make_deal(50, "buy", "in", "1", "1.2000", position="50", symbol="GBPUSD", t=10 + late_s,
                      version=int((10 + late_s) * 1000) * 4)
    closing = _opened_and_closed()[1]
    delete = revise(closing, version=int((10 + late_s) * 1000) * 4 + 2, event="delete")
    return other, delete


@pytest.mark.parametrize("late", sorted(LATENESS))
def test_a_late_correction_without_history_is_reported_not_silenced(late: str) -> None:
    step = PositionBookStep(ExposureSettings(keep_closed_minutes=60))
    state, _ = _run(step, None, _opened_and_closed())
    other, delete = _late_delete(LATENESS[late])
    state, changes = _run(step, state, [other, delete])
    issues = [c for c in changes if isinstance(c, CorrectionIssue)]
    if late == "1 minute":  # still in memory: applied, the position is open again
        assert not issues
        assert state.book is not None and state.book.position("1") is not None
        assert state.book.position("1").lots == D("1")  # type: ignore[union-attr]
        return
    (issue,) = issues
    assert (issue.deal_key, issue.event, issue.position_ref, issue.account_key) == (
        delete.deal_key, "delete", "1", ACCOUNT)
    assert "left memory" in issue.reason
    rows = correction_issue_rows(issue)
    assert [table for table, _ in rows] == [CORRECTION_ISSUES, ALERTS]
    for table, values in rows:
        assert len(values) == len(table.columns)
    alert = dict(zip(ALERTS.columns, rows[1][1], strict=True))
    assert (alert["rule_id"], alert["category"], alert["subject"]) == (
        "correction.unapplied", "risk", ACCOUNT)
    assert alert["evidence"] == [delete.deal_key]
    assert correction_issue_rows(issue) == rows  # deterministic: a replay writes the same rows


@pytest.mark.parametrize("late", sorted(LATENESS))
@pytest.mark.parametrize("mode", ["hedging", "netting"])
def test_a_late_correction_is_applied_from_the_stored_history(late: str, mode: str) -> None:
    history = MemoryDealHistory()
    settings = ExposureSettings(keep_closed_minutes=60,
                                modes=AccountModes(accounts={ACCOUNT: mode}))  # type: ignore[dict-item]
    step = PositionBookStep(settings, history)
    first = _opened_and_closed()
    for deal in first:
        history.add(deal)  # what the sink stored
    state, _ = _run(step, None, first)
    other, delete = _late_delete(LATENESS[late])
    history.add(other)
    state, changes = _run(step, state, [other, delete])
    assert not [c for c in changes if isinstance(c, CorrectionIssue)]
    assert state.book is not None
    position = state.book.position("1" if mode == "hedging" else "EURUSD")
    assert position is not None and position.signed_lots == D("1") and position.avg_price == D("1.1000")
    change = [c for c in changes if isinstance(c, PositionChange)][-1]
    assert change.realised.total == D("-100")  # the deleted close's profit leaves the balance
    # the same as a book that saw the final deals only
    fresh = PositionBook(ACCOUNT, mode)  # type: ignore[arg-type]
    fresh.apply(first[0])
    fresh.apply(other)
    expected = fresh.position("1" if mode == "hedging" else "EURUSD")
    assert expected is not None
    assert (position.signed_units, position.avg_price, position.realised, position.gross_pnl) == (
        expected.signed_units, expected.avg_price, expected.realised, expected.gross_pnl)
    # and the tenant's exposure follows: the engine folding these changes holds the position
    engine = ExposureStep(settings)
    exposure_state = None
    for c in [*_run(PositionBookStep(settings), None, first)[1], *changes]:
        exposure_state, _rows = engine(exposure_state, c)
    assert exposure_state is not None
    assert {p.key for p in exposure_state.engine.positions()} >= {position.key}


def test_a_redelivered_old_version_after_pruning_is_verified_by_the_history() -> None:
    history = MemoryDealHistory()
    step = PositionBookStep(ExposureSettings(keep_closed_minutes=60), history)
    first = _opened_and_closed()
    for deal in first:
        history.add(deal)
    state, _ = _run(step, None, first)
    other, _delete = _late_delete(3 * 3600)
    state, changes = _run(step, state, [other, first[1]])  # the close again, same version
    assert not [c for c in changes if isinstance(c, CorrectionIssue)]


def test_a_correction_the_history_lacks_is_reported() -> None:
    step = PositionBookStep(ExposureSettings(keep_closed_minutes=60), MemoryDealHistory())
    state, _ = _run(step, None, _opened_and_closed())
    other, delete = _late_delete(2 * 3600)
    _, changes = _run(step, state, [other, delete])
    (issue,) = [c for c in changes if isinstance(c, CorrectionIssue)]
    assert "not stored yet" in issue.reason


def test_the_engine_reports_what_it_cannot_apply() -> None:
    engine = ExposureEngine()
    for deal in _opened_and_closed():
        engine.apply(deal)
    engine.prune(make_deal(0, "buy", "in", "1", "1", t=3600).time)
    other, delete = _late_delete(2 * 3600)
    engine.apply(other)
    engine.apply(delete)
    (issue,) = engine.take_correction_issues()
    assert issue.deal_key == delete.deal_key
    assert engine.take_correction_issues() == []


def test_store_deal_history_reads_a_positions_deals_back(store: object) -> None:
    from pipelines.store import Store

    assert isinstance(store, Store)
    first = _opened_and_closed()
    other, delete = _late_delete(60)
    deals = [*first, other, delete]
    table, columns = DEALS.name, DEALS.columns
    store.insert_rows(table, columns, [to_row(d)[1] for d in deals])
    history = StoreDealHistory(store)
    got = history.position_deals(ACCOUNT, "hedging", "1")
    assert got is not None
    latest = {(d.deal_key, d.version, d.is_deleted) for d in got
              if d.version == max(e.version for e in got if e.deal_key == d.deal_key)}
    assert sorted(latest) == sorted((d.deal_key, d.version, d.is_deleted) for d in [first[0], delete])
    assert {d.deal_key: d for d in got}[first[0].deal_key] == first[0]
    netting = history.position_deals(ACCOUNT, "netting", "GBPUSD")
    assert netting is not None and [d.deal_key for d in netting] == [other.deal_key]


def test_issue_rows_and_mark_sources_land_in_their_views(store: object) -> None:
    from pipelines.exposure_step import snapshot_rows
    from pipelines.store import Store

    assert isinstance(store, Store)
    issue = CorrectionIssue("acme", ACCOUNT, "mt5:ACME-MT5-Live:2", 4 * 1_700_000_000_000 + 2, "delete",
                            "1", make_deal(0, "buy", "in", "1", "1").time, "the position left memory")
    engine = ExposureEngine()
    engine.apply(make_deal(1, "buy", "in", "1", "1.0990", platform_symbol="EURUSD.r"))
    engine.apply(make_quote("EURUSD", "1.1000", "1.1002", t=1).model_copy(
        update={"platform_symbol": "EURUSD.r"}))
    as_of = make_deal(0, "buy", "in", "1", "1", t=5).time
    rows = [*correction_issue_rows(issue), *snapshot_rows(engine.snapshot(as_of))]
    for table in (CORRECTION_ISSUES, ALERTS, POSITIONS):
        store.insert_rows(table.name, table.columns, [v for t, v in rows if t is table])
    assert store.query("SELECT deal_key, event, reason FROM correction_issues")[1] == [
        ("mt5:ACME-MT5-Live:2", "delete", "the position left memory")]
    assert store.query("SELECT rule_id, category FROM alerts")[1] == [("correction.unapplied", "risk")]
    assert store.query("SELECT mark_source, toString(mark_price) FROM positions")[1] == [("own", "1.1")]

