"""IB statements as report files, and a month's payout run for every IB.

An IB statement is the IB's commission rows of the month (`ib_commissions`, each line with
its deal, plan version, tier chain and formula) and its summary: own / override / total per
day and for the month, the reversals, in the payout currency's minor units. The payout run
writes one statement per IB with rows in the month and a summary file: every IB's payout from
`ib_payouts_monthly`, a total per currency and in USD, and a check that each IB's statement
adds up to its `ib_payouts_monthly` row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from commissions import ROW_COLUMNS, CommissionRow, payouts
from commissions.statement import unique
from reports import queries as q
from reports.formats import Format, write
from reports.model import Cell, Column, Money, Report, Section
from reports.statement import Reader, ReportError, rows_of, utc

ZERO = Decimal(0)
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def parse_month(value: str) -> date:
    """`YYYY-MM` -> its first day; anything else (2026-13, 2026-1, 26-01) is a ReportError."""
    match = _MONTH.fullmatch(value)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ReportError(f"--month must be a month like 2024-11, got {value!r}")
    return date(int(match.group(1)), int(match.group(2)), 1)


def known_ibs(reader: Reader, tenant: str = "") -> list[str]:
    return [r["ib_id"] for r in rows_of(reader, q.KNOWN_IBS, {"tenant": tenant})]


def ib_rows(reader: Reader, ib_id: str, month: str, tenant: str = "") -> list[CommissionRow]:
    """The IB's commission rows of `month` ("YYYY-MM") from ib_commissions (every IB's: "")."""
    columns, found = reader.query(q.ib_rows_sql(ROW_COLUMNS),
                                  {"ib": ib_id, "month": month, "tenant": tenant})
    rows = []
    for values in found:
        row = dict(zip(columns, values, strict=True))
        row["deal_time"] = utc(row["deal_time"])
        rows.append(CommissionRow(**row))
    return rows


LINE_COLUMNS = (
    Column("deal_time", "time"), Column("deal_key"), Column("login", "count"), Column("symbol"),
    Column("lots", "quantity"), Column("kind"), Column("reason"), Column("tier", "count"),
    Column("tier_chain"), Column("plan"), Column("rate", "quantity"), Column("amount", "money"),
    Column("currency"), Column("amount_usd", "money"), Column("capped"), Column("basis"),
)
SUMMARY_COLUMNS = (
    Column("period"), Column("currency"), Column("own", "money"), Column("override", "money"),
    Column("total", "money"), Column("of_which_reversals", "money"), Column("rows", "count"),
)


def ib_statement(rows: list[CommissionRow], ib_id: str, month: str, tenant: str,
                 generated_at: datetime | None = None) -> Report:
    """The statement of `ib_id` for `month` as a report: the summary (per day, then the
    month) first, then one line per commission row."""
    mine = [r for r in unique(rows) if r.ib_id == ib_id and r.deal_time.strftime("%Y-%m") == month]
    summary: list[tuple[Cell, ...]] = []
    for p in [*payouts(mine, by="day"), *payouts(mine, by="month")]:
        label = p.period if len(p.period) > 7 else f"month {p.period}"
        summary.append((label, p.currency, Money(p.own, p.currency), Money(p.override, p.currency),
                        Money(p.total, p.currency), Money(p.reversed, p.currency), p.rows))
    lines = [(r.deal_time, r.deal_key, r.login, r.symbol, r.lots, r.kind, r.reason, r.tier, r.tier_chain,
              f"{r.plan_id} v{r.plan_version}", r.rate, Money(r.amount, r.currency), r.currency,
              Money(r.amount_usd, "USD"), r.capped, r.basis) for r in mine]
    plans = sorted({f"{r.plan_id} v{r.plan_version}" for r in mine})
    return Report(
        title="IB commission statement", tenant=tenant, period=f"{month} (UTC, by deal time)",
        generated_at=generated_at or datetime.now(UTC),
        details=(("ib", ib_id), ("deals", str(len({r.deal_key for r in mine}))),
                 ("plans", ", ".join(plans))),
        sections=(
            Section("summary", "Summary: own, override and total per day and for the month",
                    SUMMARY_COLUMNS, summary, queries=("ib_statement_rows",),
                    note="own: tier 1 (the IB's clients); override: tiers 2+ (its sub-IBs' clients). "
                         "Reversals (dealer corrections, minimum holding time) are included."),
            Section("lines", "Commission lines", LINE_COLUMNS, lines, queries=("ib_statement_rows",),
                    note="Each line: the deal, the plan version that priced it, the tier chain (top "
                         "master first) and the formula."),
        ),
    )


@dataclass(frozen=True, slots=True)
class PayoutLine:
    tenant: str
    ib_id: str
    currency: str
    own: Decimal
    override: Decimal
    total: Decimal
    total_usd: Decimal
    earn_rows: int
    reversal_rows: int


@dataclass(frozen=True, slots=True)
class PayoutRun:
    month: str
    lines: list[PayoutLine]
    files: list[Path]
    summary_file: Path
    mismatches: list[str]  # IBs whose statement does not add up to ib_payouts_monthly

    def totals(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for line in self.lines:
            out[line.currency] = out.get(line.currency, ZERO) + line.total
        return out

    @property
    def total_usd(self) -> Decimal:
        return sum((line.total_usd for line in self.lines), ZERO)


def monthly_payouts(reader: Reader, month: date, tenant: str = "") -> list[PayoutLine]:
    return [PayoutLine(r["tenant"], r["ib_id"], r["currency"], r["own"], r["override"], r["total"],
                       r["total_usd"], int(r["earn_rows"]), int(r["reversal_rows"]))
            for r in rows_of(reader, q.IB_MONTHLY_PAYOUTS, {"tenant": tenant, "month": month})]


def file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def payout_run(reader: Reader, month: date, out_dir: Path, fmt: Format, tenant: str = "",
               progress: Callable[[int, int, str, Path], None] | None = None,
               generated_at: datetime | None = None) -> PayoutRun:
    """Every IB's statement for `month` into `out_dir` (one file each), then the summary file."""
    label = month.strftime("%Y-%m")
    now = generated_at or datetime.now(UTC)
    lines = monthly_payouts(reader, month, tenant)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    checks: dict[tuple[str, str], str] = {}
    mismatches: list[str] = []
    ibs = sorted({(line.tenant, line.ib_id) for line in lines})
    by_ib: dict[tuple[str, str], list[CommissionRow]] = {}
    for row in ib_rows(reader, "", label, tenant):  # one query for every IB's lines
        by_ib.setdefault((row.tenant, row.ib_id), []).append(row)
    for i, (ib_tenant, ib_id) in enumerate(ibs, start=1):
        rows = by_ib.get((ib_tenant, ib_id), [])
        report = ib_statement(rows, ib_id, label, ib_tenant, now)
        name = f"ib-statement-{file_name(ib_tenant)}-{file_name(ib_id)}-{label}.{fmt}"
        path = write(report, fmt, out_dir / name)
        files.append(path)
        stated = {p.currency: p.total for p in payouts(unique(rows), by="month")}
        status = "OK"
        for line in lines:
            mine = (line.tenant, line.ib_id) == (ib_tenant, ib_id)
            if mine and stated.get(line.currency, ZERO) != line.total:
                status = "MISMATCH"
                mismatches.append(f"{ib_tenant}/{ib_id} {line.currency}")
        checks[(ib_tenant, ib_id)] = status
        if progress:
            progress(i, len(ibs), f"{ib_tenant}/{ib_id}", path)
    summary_rows: list[tuple[Cell, ...]] = [
        (line.tenant, line.ib_id, line.currency, Money(line.own, line.currency),
         Money(line.override, line.currency), Money(line.total, line.currency),
         Money(line.total_usd, "USD"), line.earn_rows, line.reversal_rows,
         checks.get((line.tenant, line.ib_id), ""))
        for line in lines]
    run = PayoutRun(label, lines, files, out_dir / f"payout-run-{label}.{fmt}", mismatches)
    for currency, total in sorted(run.totals().items()):
        summary_rows.append(("TOTAL", "", currency, None, None, Money(total, currency), None, None, None, ""))
    summary_rows.append(("TOTAL", "", "USD (all currencies)", None, None, None, Money(run.total_usd, "USD"),
                         None, None, ""))
    columns = (Column("tenant"), Column("ib_id"), Column("currency"), Column("own", "money"),
               Column("override", "money"), Column("total", "money"), Column("total_usd", "money"),
               Column("earn_rows", "count"), Column("reversal_rows", "count"), Column("check"))
    summary = Report(
        title="IB payout run", tenant=tenant or "all", period=f"{label} (UTC, by deal time)",
        generated_at=now,
        details=(("ibs", str(len(ibs))), ("files", str(len(files)))),
        sections=(Section("summary", "Payouts per IB", columns, summary_rows,
                          queries=("ib_monthly_payouts", "ib_statement_rows"),
                          note="From ib_payouts_monthly; check: the IB's statement file adds up to "
                               "the same total."),),
    )
    write(summary, fmt, run.summary_file)
    return run
