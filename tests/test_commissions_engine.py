"""The engine's rules one at a time: rounding, splits, tiers, caps, holding time, round turn,
exclusions, corrections, assignments, issues, currencies, state."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commissions import CommissionEngine, FixedRates, load_commissions, parse_commissions
from commissions.distribution import cascade, differential
from commissions.money import round_minor, split_rounded
from schemas.events import AccountUpdate
from tests.test_commissions_examples import EXAMPLE, make_deal

T0 = datetime(2024, 11, 4, 10, 0, tzinfo=UTC)
D = Decimal


def example_engine(**kwargs: Any) -> CommissionEngine:
    return CommissionEngine(load_commissions(EXAMPLE), rates=FixedRates({"EUR": "1.25"}), **kwargs)


def amounts(rows: list[Any]) -> list[tuple[str, str, str]]:
    return [(r.ib_id, r.kind, f"{r.amount}") for r in rows]


def small_config(plan: dict[str, Any], *, chain: int = 1, currency: str = "USD", **extra: Any) -> Any:
    ibs = [{"id": "A", "plan": "p"}]
    for i in range(1, chain):
        ibs.append({"id": "ABC"[i], "parent": "ABC"[i - 1], "plan": "p"})
    return parse_commissions(
        {
            "tenant": "acme",
            "currency": currency,
            "plans": [{"id": "p", "versions": [{"version": 1, "effective_from": "2024-01-01", **plan}]}],
            "ibs": ibs,
            "accounts": [{"account": "mt5:ACME-MT5-Live:70001", "ib": ibs[-1]["id"]}],
            **extra,
        }
    )


# -- money ---------------------------------------------------------------------------------


def test_round_half_even_to_the_currency_minor_unit() -> None:
    assert [round_minor(D(x), "USD") for x in ("0.125", "0.135", "0.015", "-0.125")] == [
        D("0.12"),
        D("0.14"),
        D("0.02"),
        D("-0.12"),
    ]
    assert round_minor(D("12.5"), "JPY") == D("12") and round_minor(D("1.0005"), "KWD") == D("1.000")


def test_split_rounded_takes_cents_back_from_the_most_rounded_up_highest_tier_first() -> None:
    assert split_rounded([D("0.035"), D("0.015"), D("0.02")], D("0.07"), "USD") == [
        D("0.04"),
        D("0.01"),
        D("0.02"),
    ]
    # the largest rounding up gives the cent back first, whatever its tier
    assert split_rounded([D("0.006"), D("0.007"), D("0.001")], D("0.014"), "USD") == [
        D("0.00"),
        D("0.01"),
        D("0.00"),
    ]
    assert split_rounded([D("0.006"), D("0.006"), D("0.002")], D("0.014"), "USD") == [
        D("0.01"),
        D("0.00"),
        D("0.00"),
    ]  # a tie: the row higher up the chain gives the cent back
    assert split_rounded([D("0.005"), D("0.005"), D("0.005")], D("0.015"), "USD") == [D("0"), D("0"), D("0")]


@given(st.lists(st.decimals(min_value=0, max_value=1000, places=6), min_size=1, max_size=6))
def test_split_rounded_never_exceeds_and_stays_within_a_cent(exact: list[Decimal]) -> None:
    total = sum(exact, D(0))
    rounded = split_rounded(exact, total, "USD")
    assert sum(rounded) <= round_minor(total, "USD")
    assert all(r >= 0 and abs(r - e) < D("0.01") for r, e in zip(rounded, exact, strict=True))


@given(st.lists(st.decimals(min_value=0, max_value=100, places=4), min_size=1, max_size=6))
def test_differential_pays_exactly_the_top_budget_and_never_negative(rates: list[Decimal]) -> None:
    split = differential(rates)
    assert sum(split.shares) == split.total == rates[-1]
    assert all(s >= 0 for s in split.shares)


def test_differential_uses_the_highest_amount_paid_below() -> None:
    assert differential([D(5), D(7), D(10)]).shares == [D(5), D(2), D(3)]
    assert differential([D(5), D(3), D(10)]).shares == [D(5), D(0), D(5)]
    assert differential([D(12), D(7), D(10)]).shares == [D(10), D(0), D(0)]  # nobody above the budget


@given(
    st.decimals(min_value=0, max_value=1000, places=4),
    st.lists(st.decimals(min_value=0, max_value=1, places=2), min_size=1, max_size=5),
)
def test_cascade_pays_exactly_the_pool(pool: Decimal, pass_up: list[Decimal]) -> None:
    split = cascade(pool, pass_up)
    assert sum(split.shares) == pool and all(s >= 0 for s in split.shares)


# -- plans -----------------------------------------------------------------------------------


def test_volume_tier_applies_to_the_whole_deal_at_the_tier_reached_before_it() -> None:
    config = small_config(
        {"per_lot": {"fx_major": 10}, "volume_tiers": [{"from_lots": 5, "per_lot": {"fx_major": 12}}]}
    )
    engine = CommissionEngine(config)
    first = engine.on_deal(make_deal(1, lots="4.99", time=T0))
    crossing = engine.on_deal(make_deal(2, lots="2", time=T0 + timedelta(minutes=1)))
    after = engine.on_deal(make_deal(3, lots="1", time=T0 + timedelta(minutes=2)))
    assert [r.amount for r in first + crossing + after] == [D("49.90"), D("20.00"), D("12.00")]
    assert [r.volume_tier for r in first + crossing + after] == [0, 0, 1]
    # a new month starts again from zero
    december = engine.on_deal(make_deal(4, lots="1", time=datetime(2024, 12, 1, tzinfo=UTC)))
    assert december[0].amount == D("10.00")


def test_round_turn_pays_on_the_closing_deal_only() -> None:
    engine = example_engine()  # account 70003 -> IB-5, round-turn-8
    opened = engine.on_deal(make_deal(1, login=70003, lots="2", time=T0))
    closed = engine.on_deal(
        make_deal(2, login=70003, lots="2", entry="out", position=1, time=T0 + timedelta(hours=1))
    )
    assert opened == []
    assert amounts(closed) == [("IB-5", "earn", "16.50")]  # 2 x 8 + 0.50 flat


def test_caps_per_trade_day_and_month_and_a_reversal_frees_room() -> None:
    config = small_config(
        {"per_lot": {"fx_major": 10}, "caps": {"per_trade": 25, "per_day": 40, "per_month": 45}}
    )
    engine = CommissionEngine(config)
    a = engine.on_deal(make_deal(1, lots="3", time=T0))  # 30 -> per trade 25
    b = engine.on_deal(make_deal(2, lots="2", time=T0 + timedelta(minutes=1)))  # 20 -> day room 15
    c = engine.on_deal(make_deal(3, lots="1", time=T0 + timedelta(days=1)))  # new day, month room 5
    assert [(r.amount, r.capped) for r in a + b + c] == [
        (D("25.00"), "trade"),
        (D("15.00"), "day"),
        (D("5.00"), "month"),
    ]
    gone = engine.on_deal(make_deal(1, lots="3", time=T0, event="delete"))
    assert [r.amount for r in gone] == [D("-25.00")]
    d = engine.on_deal(make_deal(4, lots="1", time=T0 + timedelta(days=1, minutes=1)))
    assert d[0].amount == D("10.00")  # room given back by the reversal; earlier deals not topped up


def test_exclusions_of_the_governing_plan_stop_the_whole_deal() -> None:
    engine = example_engine()
    assert engine.on_deal(make_deal(1, symbol="BTCUSD", time=T0), account_group="real\\std") != []
    # retail-5 (IB-3's plan) excludes demo account groups
    assert engine.on_deal(make_deal(2, time=T0), account_group="demo\\usd") == []
    engine.on_account(
        AccountUpdate(
            account_key="mt5:ACME-MT5-Live:70001",
            tenant="acme",
            platform="mt5",
            server="ACME-MT5-Live",
            login=70001,
            origin="platform",
            event="user_update",
            group="real\\staff-1",
            time=T0,
            version=1,
            source="t",
        )
    )
    assert engine.on_deal(make_deal(3, time=T0)) == []


def test_a_masters_own_exclusion_only_zeroes_what_its_plan_allows() -> None:
    engine = example_engine()
    # BTCUSD is crypto: master-10 (IB-1, the budget) excludes crypto, so nobody is paid
    rows = engine.on_deal(make_deal(1, symbol="BTCUSD", time=T0))
    assert [(r.ib_id, r.amount) for r in rows] == [
        ("IB-3", D("0.00")),
        ("IB-2", D("0.00")),
        ("IB-1", D("0.00")),
    ]
    assert "symbol group crypto excluded" in rows[2].basis


# -- minimum holding time --------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "quick"), [(59.999, True), (60, False), (0, True)])
def test_minimum_holding_time_boundary(seconds: float, quick: bool) -> None:
    engine = example_engine()
    engine.on_deal(make_deal(1, time=T0))
    close = engine.on_deal(
        make_deal(2, entry="out", side="sell", position=1, time=T0 + timedelta(seconds=seconds))
    )
    if quick:
        assert amounts(close) == [
            ("IB-3", "reversal", "-5.00"),
            ("IB-2", "reversal", "-2.00"),
            ("IB-1", "reversal", "-3.00"),
        ]
    else:
        assert [r.amount for r in close] == [D("5.00"), D("2.00"), D("3.00")]


def test_a_quick_partial_close_holds_back_the_opening_and_a_correction_restores_it() -> None:
    engine = example_engine()
    opened = engine.on_deal(make_deal(1, lots="2", time=T0, version=10))
    quick = engine.on_deal(
        make_deal(2, lots="0.5", entry="out", position=1, time=T0 + timedelta(seconds=10), version=20)
    )
    later = engine.on_deal(
        make_deal(3, lots="1.5", entry="out", position=1, time=T0 + timedelta(minutes=5), version=30)
    )
    assert [r.amount for r in opened] == [D("10.00"), D("4.00"), D("6.00")]
    assert [r.reason for r in quick] == ["min_hold"] * 3 and sum(r.amount for r in quick) == D("-20.00")
    assert [r.amount for r in later] == [D("7.50"), D("3.00"), D("4.50")]  # not quick itself
    # the dealer moves the partial close to 2 minutes: not quick any more
    fixed = engine.on_deal(
        make_deal(2, lots="0.5", entry="out", position=1, time=T0 + timedelta(minutes=2), version=40)
    )
    assert [(r.deal_key[-1], r.kind, r.reason, r.amount) for r in fixed] == [
        ("1", "earn", "restored", D("10.00")),
        ("1", "earn", "restored", D("4.00")),
        ("1", "earn", "restored", D("6.00")),
        ("2", "earn", "update", D("2.50")),
        ("2", "earn", "update", D("1.00")),
        ("2", "earn", "update", D("1.50")),
    ]
    assert fixed[0].commission_id == "mt5:ACME-MT5-Live:1|IB-3|1|earn|v10|r1"
    assert fixed[0].caused_by == "mt5:ACME-MT5-Live:2@40"


# -- corrections, replays, ids -----------------------------------------------------------------


def test_an_update_that_changes_nothing_commissions_depend_on_emits_nothing() -> None:
    engine = example_engine()
    first = engine.on_deal(make_deal(1, time=T0, version=10))
    assert engine.on_deal(make_deal(1, time=T0, version=11, event="update", price="1.09")) == []
    gone = engine.on_deal(make_deal(1, time=T0, version=12, event="delete"))
    assert [r.reverses for r in gone] == [r.commission_id for r in first]


def test_stale_and_repeated_versions_are_ignored() -> None:
    engine = example_engine()
    engine.on_deal(make_deal(1, time=T0, version=10))
    engine.on_deal(make_deal(1, lots="2", time=T0, version=20, event="update"))
    assert engine.on_deal(make_deal(1, time=T0, version=10)) == []
    assert engine.on_deal(make_deal(1, lots="3", time=T0, version=15, event="update")) == []
    assert engine.on_deal(make_deal(1, lots="2", time=T0, version=20, event="update")) == []


def test_a_delete_before_its_add_leaves_nothing_to_pay() -> None:
    engine = example_engine()
    assert engine.on_deal(make_deal(1, time=T0, version=20, event="delete")) == []
    assert engine.on_deal(make_deal(1, time=T0, version=10)) == []


# -- assignments and issues --------------------------------------------------------------------


def test_account_assignment_from_the_agent_field_is_effective_dated() -> None:
    engine = example_engine()
    key = "mt5:ACME-MT5-Live:70009"
    update = AccountUpdate(
        account_key=key,
        tenant="acme",
        platform="mt5",
        server="ACME-MT5-Live",
        login=70009,
        origin="crm",
        event="ib_assigned",
        agent="IB-2",
        agent_from=datetime(2024, 11, 10, tzinfo=UTC),
        time=T0,
        version=1,
        source="t",
    )
    engine.on_account(update)
    assert engine.on_deal(make_deal(1, login=70009, time=datetime(2024, 11, 9, tzinfo=UTC))) == []
    rows = engine.on_deal(make_deal(2, login=70009, time=datetime(2024, 11, 11, tzinfo=UTC)))
    assert [(r.ib_id, r.amount, r.tier_chain) for r in rows] == [
        ("IB-2", D("7.00"), "IB-1>IB-2"),
        ("IB-1", D("3.00"), "IB-1>IB-2"),
    ]
    assert engine.state.assignments == {(key, datetime(2024, 11, 10, tzinfo=UTC)): "IB-2"}
    # the dataflow may also pass the resolved IB itself
    direct = engine.on_deal(make_deal(3, login=70009, time=datetime(2024, 11, 11, tzinfo=UTC)), "IB-1")
    assert [(r.ib_id, r.amount) for r in direct] == [("IB-1", D("10.00"))]


def test_what_cannot_be_priced_is_reported_not_dropped() -> None:
    engine = example_engine()
    assert engine.on_deal(make_deal(1, time=T0), "IB-99") == []
    assert engine.on_deal(make_deal(2, time=T0, tenant="zenith")) == []
    assert engine.on_deal(make_deal(3, login=70002, time=T0, currency="CHF", commission="-7")) == []
    engine.on_account(
        AccountUpdate(
            account_key="mt5:ACME-MT5-Live:5",
            tenant="acme",
            platform="mt5",
            server="ACME-MT5-Live",
            login=5,
            origin="platform",
            event="user_add",
            agent="IB-404",
            time=T0,
            version=1,
            source="t",
        )
    )
    reasons = [i.reason for i in engine.drain_issues()]
    assert "chain: IB 'IB-99' is not in the partner tree" in reasons[0]
    assert "tenant 'zenith'" in reasons[1]
    assert "no USD rate for CHF" in reasons[2]
    assert "IB 'IB-404' is not in the partner tree" in reasons[3]
    assert engine.drain_issues() == []


def test_payout_in_euros_with_usd_equivalent() -> None:
    config = small_config({"per_lot": {"fx_major": 10}, "commission_share": "0.5"}, currency="EUR")
    engine = CommissionEngine(config, rates=FixedRates({"EUR": "1.25"}))
    rows = engine.on_deal(make_deal(1, lots="0.33", commission="-2.5", time=T0))  # client paid USD 2.50
    # 0.33 x 10 = 3.30 EUR + 50% x (2.50 USD = 2.00 EUR) = 4.30 EUR = 5.375 USD -> 5.38 (half-even)
    assert (rows[0].amount, rows[0].currency, rows[0].amount_usd) == (D("4.30"), "EUR", D("5.38"))


def test_prune_forgets_old_deals_and_refuses_their_corrections() -> None:
    engine = example_engine()
    engine.on_deal(make_deal(1, time=T0, version=10))
    engine.on_deal(make_deal(2, time=T0 + timedelta(days=40), version=11))
    engine.prune(T0 + timedelta(days=30))
    assert set(engine.state.deals) == {"mt5:ACME-MT5-Live:2"}
    assert engine.on_deal(make_deal(1, time=T0, version=12, event="update", lots="2")) == []
    assert "pruned" in engine.drain_issues()[0].reason


def test_state_is_plain_and_picklable() -> None:
    engine = example_engine()
    engine.on_deal(make_deal(1, time=T0))
    engine.assign("mt5:ACME-MT5-Live:70050", "IB-4", T0)
    engine.move("IB-4", "IB-1", T0)
    restored = CommissionEngine(
        load_commissions(EXAMPLE), state=pickle.loads(pickle.dumps(engine.snapshot()))
    )
    assert restored.tree.ib_of("mt5:ACME-MT5-Live:70050", T0) == "IB-4"
    assert [ib.ib_id for ib in restored.tree.chain("IB-4", T0)] == ["IB-4", "IB-1"]
    assert restored.state.month_lots == {
        ("IB-3", "2024-11"): D(1),
        ("IB-2", "2024-11"): D(1),
        ("IB-1", "2024-11"): D(1),
    }


# -- as a Bytewax step -------------------------------------------------------------------------


def test_commission_step_in_a_bytewax_flow_matches_the_engine() -> None:
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    from commissions import CommissionStep, Issue

    config = load_commissions(EXAMPLE)
    events: list[Any] = [
        AccountUpdate(
            account_key="mt5:ACME-MT5-Live:70010",
            tenant="acme",
            platform="mt5",
            server="ACME-MT5-Live",
            login=70010,
            origin="crm",
            event="ib_assigned",
            agent="IB-3",
            time=T0,
            version=1,
            source="t",
        ),
        make_deal(1, login=70010, time=T0, version=10),
        make_deal(2, login=70010, entry="out", position=1, time=T0 + timedelta(seconds=5), version=11),
        make_deal(3, login=70001, time=T0, version=12, tenant="zenith"),
    ]
    flow = Dataflow("commissions_test")
    keyed = op.key_on("by_tenant", op.input("in", flow, TestingSource(events)), lambda e: e.tenant)
    out = op.flat_map(
        "rows", op.stateful_map("ib_commissions", keyed, CommissionStep({"acme": config})), lambda kv: kv[1]
    )
    captured: list[Any] = []
    op.output("out", out, TestingSink(captured))
    run_main(flow)

    engine = CommissionEngine(config)
    engine.on_account(events[0])
    expected = engine.on_deal(events[1]) + engine.on_deal(events[2])
    assert [r for r in captured if not isinstance(r, Issue)] == expected
    assert [i.reason for i in captured if isinstance(i, Issue)] == [
        "no commissions configuration for tenant 'zenith'"
    ]


def test_commission_step_resumes_from_an_unpickled_state() -> None:
    from commissions import CommissionStep

    step = CommissionStep({"acme": load_commissions(EXAMPLE)})
    state, first = step(None, make_deal(1, time=T0, version=10))
    resumed = CommissionStep({"acme": load_commissions(EXAMPLE)})
    _, rows = resumed(pickle.loads(pickle.dumps(state)), make_deal(1, time=T0, version=11, event="delete"))
    assert [r.reverses for r in rows] == [r.commission_id for r in first]  # type: ignore[union-attr]


def test_symbol_groups_and_quote_currencies_from_the_symbols_reference() -> None:
    from schemas.symbols import SymbolBook

    engine = example_engine(symbols=SymbolBook.default())
    exotic = engine.on_deal(make_deal(1, symbol="USDTRY", time=T0))  # fx_exotic: 8 / 11 / 15
    assert [(r.symbol_group, r.amount) for r in exotic] == [
        ("fx_exotic", D("8.00")),
        ("fx_exotic", D("3.00")),
        ("fx_exotic", D("4.00")),
    ]
    # the configuration still wins: XAUUSD is `metal` there, whatever the lookup says
    override = example_engine(symbol_group=lambda s: "index", symbols=SymbolBook.default())
    assert override.on_deal(make_deal(2, symbol="XAUUSD", lots="0.01", time=T0))[0].symbol_group == "metal"
    assert override.on_deal(make_deal(3, symbol="GER40", time=T0))[0].symbol_group == "index"


def test_commission_step_prunes_by_event_time_and_says_so_for_a_late_correction() -> None:
    """The dataflow's step keeps `keep` of deals: older ones leave the state (bounded memory),
    and a correction of one is an Issue, never a silent change."""
    from commissions import CommissionStep, Issue

    step = CommissionStep({"acme": load_commissions(EXAMPLE)}, keep=timedelta(days=1))
    state, _ = step(None, make_deal(1, time=T0, version=10))
    state, _ = step(state, make_deal(2, time=T0 + timedelta(days=3), version=20))
    assert state is not None
    assert set(state.deals) == {"mt5:ACME-MT5-Live:2"}
    _, out = step(state, make_deal(1, time=T0, version=30, event="delete"))
    assert [i.reason for i in out if isinstance(i, Issue)] == [
        "deal older than the retained state (pruned): not applied"]
