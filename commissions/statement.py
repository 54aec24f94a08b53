"""IB statements and payouts from commission rows (plain Python; the same sums as the
ClickHouse views over `ib_commissions`).

Rows count in the UTC day and month of the *deal* (`deal_time`): a correction that reverses a
November deal in December restates November. Rows are deduplicated on `commission_id` first,
so rows written twice (a replay, a resume after a crash) count once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from commissions.money import minor_unit
from commissions.rows import CommissionRow

STATEMENT_COLUMNS = (
    "deal_time", "deal_key", "login", "symbol", "lots", "kind", "reason", "tier", "tier_chain",
    "plan_id", "plan_version", "rate", "amount", "currency", "amount_usd", "capped", "commission_id",
    "reverses", "basis",
)


@dataclass(frozen=True, slots=True)
class Payout:
    ib_id: str
    period: str  # "YYYY-MM-DD" or "YYYY-MM"
    currency: str
    own: Decimal  # tier 1: the IB's own clients
    override: Decimal  # tiers 2+: its sub-IBs' clients
    total: Decimal
    reversed: Decimal  # of which reversals (negative or zero)
    rows: int


def unique(rows: Iterable[CommissionRow]) -> list[CommissionRow]:
    """Rows deduplicated on commission_id (first seen kept), in a stable order."""
    seen: dict[str, CommissionRow] = {}
    for row in rows:
        seen.setdefault(row.commission_id, row)
    return sorted(seen.values(), key=lambda r: (r.deal_time, r.deal_key, r.tier, r.commission_id))


def payouts(rows: Iterable[CommissionRow], by: str = "month") -> list[Payout]:
    """What each IB earned per day (`by="day"`) or month, own versus override."""
    if by not in ("day", "month"):
        raise ValueError("by must be 'day' or 'month'")
    fmt = "%Y-%m-%d" if by == "day" else "%Y-%m"
    sums: dict[tuple[str, str, str], list[Decimal]] = {}
    counts: dict[tuple[str, str, str], int] = {}
    for row in unique(rows):
        key = (row.ib_id, row.deal_time.strftime(fmt), row.currency)
        acc = sums.setdefault(key, [Decimal(0), Decimal(0), Decimal(0)])
        acc[0 if row.tier == 1 else 1] += row.amount
        if row.kind == "reversal":
            acc[2] += row.amount
        counts[key] = counts.get(key, 0) + 1
    out = []
    for (ib, period, currency), (own, override, rev) in sorted(sums.items()):
        unit = minor_unit(currency)  # rows are whole minor units: this only writes 0 as 0.00
        own, override, rev = own.quantize(unit), override.quantize(unit), rev.quantize(unit)
        out.append(Payout(ib, period, currency, own, override, own + override, rev,
                          counts[(ib, period, currency)]))
    return out


def statement(rows: Iterable[CommissionRow], ib_id: str, month: str) -> tuple[str, str]:
    """(CSV of every row of `ib_id` in `month` "YYYY-MM", a text summary with daily totals).

    Each CSV line shows the deal, the plan and plan version, the tier chain and the formula.
    """
    mine = [r for r in unique(rows) if r.ib_id == ib_id and r.deal_time.strftime("%Y-%m") == month]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_COLUMNS)
    for r in mine:
        writer.writerow([
            r.deal_time.strftime("%Y-%m-%d %H:%M:%S"), r.deal_key, r.login, r.symbol, f"{r.lots:f}",
            r.kind, r.reason, r.tier, r.tier_chain, r.plan_id, r.plan_version, f"{r.rate:f}",
            # rows are whole minor units; the store hands them back with 8 decimals
            f"{r.amount.quantize(minor_unit(r.currency)):f}", r.currency,
            f"{r.amount_usd.quantize(minor_unit('USD')):f}", r.capped, r.commission_id, r.reverses,
            r.basis,
        ])
    lines = [f"Commission statement for {ib_id}, {month}"]
    if not mine:
        lines.append("no commission rows")
        return out.getvalue(), "\n".join(lines) + "\n"
    currencies = sorted({r.currency for r in mine})
    lines.append(f"{'day':<12}{'own':>14}{'override':>14}{'total':>14}  currency")
    for p in payouts(mine, by="day"):
        lines.append(f"{p.period:<12}{p.own:>14}{p.override:>14}{p.total:>14}  {p.currency}")
    for p in payouts(mine, by="month"):
        lines.append(f"{'month':<12}{p.own:>14}{p.override:>14}{p.total:>14}  {p.currency}")
        lines.append(f"  of which reversals {p.reversed} {p.currency}; {p.rows} rows")
    deals = len({r.deal_key for r in mine})
    plans = sorted({f"{r.plan_id} v{r.plan_version}" for r in mine})
    lines.append(f"{deals} deals; plans: {', '.join(plans)}; currency {', '.join(currencies)}")
    return out.getvalue(), "\n".join(lines) + "\n"
