"""The daily reconciliation report (`brokerstream recon report`): one day's breaks and the match
rate per PSP, read from ClickHouse without creating anything (a read never creates a database).

One CSV, one header, a `section` column: `summary` rows (one per tenant and provider: PSP
operations of the day, how many have no break, the match rate, the day's breaks and how many
are still open) first, then `break` rows (every break whose age basis falls on the day, open or
resolved). docs/reconciliation.md shows an example.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

PSP_KINDS = "('deposit', 'withdrawal', 'chargeback', 'refund')"
BREAK_FIELDS = (
    "break_id", "kind", "status", "tenant", "provider", "server", "login", "reference",
    "psp_op_key", "psp_status", "psp_amount", "psp_currency", "platform_op_key",
    "platform_amount", "platform_currency", "basis_time", "detected_at", "resolved_at",
    "resolution", "detail",
)
CSV_COLUMNS = ("section", "tenant", "provider", "ops", "matched", "match_rate", "breaks",
               "open_breaks", *(f for f in BREAK_FIELDS if f not in ("tenant", "provider")))


@dataclass(frozen=True, slots=True)
class Summary:
    tenant: str
    provider: str
    ops: int
    matched: int
    breaks: int
    open_breaks: int

    @property
    def match_rate(self) -> Decimal:
        return (Decimal(self.matched) / Decimal(self.ops)).quantize(Decimal("0.0001")) \
            if self.ops else Decimal(0)


@dataclass(frozen=True, slots=True)
class Report:
    day: date
    summary: list[Summary]
    breaks: list[dict[str, Any]]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for s in self.summary:
            writer.writerow({"section": "summary", "tenant": s.tenant, "provider": s.provider,
                             "ops": s.ops, "matched": s.matched, "match_rate": s.match_rate,
                             "breaks": s.breaks, "open_breaks": s.open_breaks})
        for b in self.breaks:
            writer.writerow({"section": "break", **{k: _text(v) for k, v in b.items()}})
        return out.getvalue()


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return "" if value is None else value


def daily_report(client: Client, database: str, day: date, tenant: str | None = None) -> Report:
    db = f"`{database}`"
    params: dict[str, Any] = {"day": day, "tenant": tenant or ""}
    only = "AND tenant = {tenant:String}" if tenant else ""
    ops = client.query(f"""
        SELECT tenant, provider, count() AS ops,
               countIf(op_key NOT IN (SELECT psp_op_key FROM {db}.reconciliation_breaks
                                      WHERE psp_op_key != '')) AS matched
        FROM {db}.balance_operations
        WHERE platform = 'psp' AND kind IN {PSP_KINDS} AND toDate(time) = {{day:Date}} {only}
        GROUP BY tenant, provider""", parameters=params).result_rows
    names = ", ".join(BREAK_FIELDS)
    result = client.query(f"""
        SELECT {names} FROM {db}.reconciliation_breaks
        WHERE toDate(basis_time) = {{day:Date}} {only}
        ORDER BY tenant, basis_time, break_id""", parameters=params)
    breaks = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    counts: dict[tuple[str, str], list[int]] = {(t, p): [n, m, 0, 0] for t, p, n, m in ops}
    for b in breaks:
        c = counts.setdefault((b["tenant"], b["provider"]), [0, 0, 0, 0])
        c[2] += 1
        c[3] += b["status"] == "open"
    summary = [Summary(t, p, *c) for (t, p), c in sorted(counts.items())]
    return Report(day, summary, breaks)
