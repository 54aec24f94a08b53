"""IB statements and payouts: own vs override, per day and month, deduplicated on commission_id."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from commissions import CommissionEngine, CommissionRow, load_commissions, payouts, statement
from tests.test_commissions_examples import EXAMPLE, make_deal

T0 = datetime(2024, 11, 4, 10, 0, tzinfo=UTC)


def month_of_rows() -> list[CommissionRow]:
    engine = CommissionEngine(load_commissions(EXAMPLE))
    rows: list[CommissionRow] = []
    rows += engine.on_deal(make_deal(1, login=70001, time=T0, version=10))  # IB-3 / IB-2 / IB-1: 5 / 2 / 3
    rows += engine.on_deal(
        make_deal(
            2, login=80001, platform="mt4", server="ACME-MT4-Live", time=T0 + timedelta(hours=1), version=11
        )
    )  # IB-2 own: 7, IB-1: 3
    rows += engine.on_deal(make_deal(3, login=70001, lots="2", time=T0 + timedelta(days=1), version=12))
    rows += engine.on_deal(
        make_deal(3, login=70001, lots="2", time=T0 + timedelta(days=1), version=13, event="delete")
    )
    rows += engine.on_deal(make_deal(4, login=70001, time=datetime(2024, 12, 2, tzinfo=UTC), version=14))
    return rows


def test_statement_lines_show_deal_plan_version_and_chain() -> None:
    rows = month_of_rows()
    csv_text, summary = statement(rows + rows, "IB-2", "2024-11")  # written twice: counted once
    lines = list(csv.DictReader(io.StringIO(csv_text)))
    assert [(r["deal_key"], r["kind"], r["tier"], r["amount"]) for r in lines] == [
        ("mt5:ACME-MT5-Live:1", "earn", "2", "2.00"),
        ("mt4:ACME-MT4-Live:2", "earn", "1", "7.00"),
        ("mt5:ACME-MT5-Live:3", "earn", "2", "4.00"),
        ("mt5:ACME-MT5-Live:3", "reversal", "2", "-4.00"),
    ]
    assert lines[0]["plan_id"] == "sub-7" and lines[0]["plan_version"] == "1"
    assert lines[0]["tier_chain"] == "IB-1>IB-2>IB-3" and lines[1]["tier_chain"] == "IB-1>IB-2"
    assert lines[3]["reverses"] == lines[2]["commission_id"]
    assert "differential 7 - 5 paid below = 2" in lines[0]["basis"]
    assert "Commission statement for IB-2, 2024-11" in summary
    assert "2024-11-04            7.00          2.00          9.00  USD" in summary
    assert "2024-11-05            0.00          0.00          0.00  USD" in summary
    assert "month                 7.00          2.00          9.00  USD" in summary
    assert "of which reversals -4.00 USD; 4 rows" in summary


def test_payouts_split_own_and_override_per_day_and_month() -> None:
    rows = month_of_rows()
    monthly = {(p.ib_id, p.period): (p.own, p.override, p.total) for p in payouts(rows)}
    assert monthly[("IB-1", "2024-11")] == (Decimal(0), Decimal("6.00"), Decimal("6.00"))
    assert monthly[("IB-2", "2024-11")] == (Decimal("7.00"), Decimal("2.00"), Decimal("9.00"))
    assert monthly[("IB-3", "2024-11")] == (Decimal("5.00"), Decimal(0), Decimal("5.00"))
    assert monthly[("IB-3", "2024-12")] == (Decimal("5.00"), Decimal(0), Decimal("5.00"))
    daily = {(p.ib_id, p.period): p.total for p in payouts(rows, by="day")}
    assert daily[("IB-3", "2024-11-05")] == 0
    assert sum(p.total for p in payouts(rows)) == sum(r.amount for r in rows)


def test_an_empty_statement() -> None:
    csv_text, summary = statement([], "IB-9", "2024-11")
    assert csv_text.startswith("deal_time,deal_key,") and "no commission rows" in summary
