"""The worked examples of docs/commissions.md, read from the page itself and run against
examples/commissions.yaml: every row and total the page shows must be what the engine emits."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from commissions import CommissionEngine, CommissionRow, FixedRates, load_commissions
from schemas.events import Deal, event_version

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "commissions.md"
EXAMPLE = REPO / "examples" / "commissions.yaml"
SERVER = "ACME-MT5-Live"
RATES = FixedRates({"EUR": "1.25", "GBP": "1.25", "JPY": "0.0064"})


def make_deal(
    deal: int | str,
    *,
    login: int = 70001,
    symbol: str = "EURUSD",
    side: str = "buy",
    entry: str = "in",
    lots: Decimal | str | float = "1",
    time: datetime | str = "2024-11-04T10:00:00Z",
    position: int | str | None = None,
    commission: Decimal | str | float = "0",
    event: str = "add",
    version: int | None = None,
    contract_size: Decimal | str = "100000",
    price: Decimal | str = "1.08500",
    currency: str = "USD",
    canceled: bool = False,
    tenant: str = "acme",
    platform: str = "mt5",
    server: str = SERVER,
) -> Deal:
    """A canonical deal from the few fields an example needs."""
    moment = time if isinstance(time, datetime) else datetime.fromisoformat(str(time).replace("Z", "+00:00"))
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    size = Decimal(str(lots))
    contract = Decimal(str(contract_size))
    fill = Decimal(str(price))
    sign = Decimal(1) if side == "buy" else Decimal(-1)
    if version is None:
        version = event_version(int(moment.timestamp() * 1000), event)
    values: dict[str, Any] = {
        "deal_key": f"{platform}:{server}:{deal}",
        "tenant": tenant,
        "platform": platform,
        "server": server,
        "login": login,
        "deal_id": str(deal),
        "order_id": str(deal),
        "position_id": str(deal if position is None else position),
        "symbol": symbol,
        "platform_symbol": symbol,
        "side": side,
        "entry": entry,
        "lots": size,
        "signed_lots": Decimal(0) if canceled else sign * size,
        "contract_size": contract,
        "units": size * contract,
        "price": fill,
        "notional": size * contract * fill,
        "commission": Decimal(str(commission)),
        "currency": currency,
        "reason": "client",
        "canceled": canceled,
        "time": moment,
        "event": event,
        "version": version,
        "is_deleted": event == "delete",
        "source": "test",
    }
    return Deal.model_validate(values)


def load_examples() -> list[dict[str, Any]]:
    """Every ```yaml example block of the page, parsed."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml example\n(.*?)```", text, flags=re.S)
    return [yaml.safe_load(block) for block in blocks]


EXAMPLES = load_examples()


def run_example(example: dict[str, Any]) -> list[CommissionRow]:
    engine = CommissionEngine(load_commissions(EXAMPLE), rates=RATES)
    rows: list[CommissionRow] = []
    for seq, spec in enumerate(example["deals"]):
        fields = dict(spec)
        number = fields.pop("deal")
        moment = fields.pop("time")
        stamp = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment))
        # Versions in event order (a correction of a deal comes after it).
        fields.setdefault(
            "version",
            event_version(int(stamp.timestamp() * 1000), "add")
            + 4 * seq
            + {"add": 0, "update": 1, "delete": 2}[fields.get("event", "add")],
        )
        rows += engine.on_deal(make_deal(number, time=stamp, **fields))
    assert engine.drain_issues() == []
    return rows


def test_the_page_has_the_examples() -> None:
    names = {example["name"] for example in EXAMPLES}
    assert {
        "differential-1-lot",
        "hedged-pair",
        "small-deal",
        "min-hold",
        "correction",
        "cascade-and-move",
    } <= names


def _matches(row: CommissionRow, want: dict[str, Any]) -> list[str]:
    wrong = []
    checks = {
        "deal": lambda: row.deal_key == f"mt5:{SERVER}:{want['deal']}",
        "ib": lambda: row.ib_id == want["ib"],
        "tier": lambda: row.tier == want["tier"],
        "kind": lambda: row.kind == want["kind"],
        "amount": lambda: row.amount == Decimal(str(want["amount"])),
        "gross": lambda: row.gross == Decimal(str(want["gross"])),
        "deal_total": lambda: row.deal_total == Decimal(str(want["deal_total"])),
        "chain": lambda: row.tier_chain == want["chain"],
        "plan": lambda: f"{row.plan_id} v{row.plan_version}" == want["plan"],
        "reason": lambda: row.reason == want["reason"],
        "caused_by": lambda: row.caused_by.startswith(f"mt5:{SERVER}:{want['caused_by']}@"),
    }
    for key in want:
        if not checks[key]():
            wrong.append(key)
    return wrong


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["name"] for e in EXAMPLES])
def test_worked_example(example: dict[str, Any]) -> None:
    rows = run_example(example)
    shown = [(r.deal_key, r.ib_id, r.kind, f"{r.amount}", r.reason) for r in rows]
    assert len(rows) == len(example["rows"]), shown
    for row, want in zip(rows, example["rows"], strict=True):
        assert not _matches(row, want), (want, row)
    totals: dict[str, Decimal] = {}
    for row in rows:
        totals[row.ib_id] = totals.get(row.ib_id, Decimal(0)) + row.amount
    assert {ib: Decimal(str(v)) for ib, v in example["totals"].items()} == totals


def test_example_rows_never_exceed_their_plan_total() -> None:
    for example in EXAMPLES:
        per_deal: dict[str, Decimal] = {}
        for row in run_example(example):
            if row.kind == "earn":
                key = f"{row.deal_key}|{row.deal_version}|{row.revision}"
                per_deal[key] = per_deal.get(key, Decimal(0)) + row.amount
                assert per_deal[key] <= row.deal_total


def test_rows_name_plan_version_and_chain_and_explain_themselves() -> None:
    rows = run_example(EXAMPLES[0])
    assert [r.commission_id for r in rows] == [
        f"mt5:{SERVER}:1001|IB-3|1|earn|v{rows[0].deal_version}",
        f"mt5:{SERVER}:1001|IB-2|2|earn|v{rows[0].deal_version}",
        f"mt5:{SERVER}:1001|IB-1|3|earn|v{rows[0].deal_version}",
    ]
    assert rows[1].basis == "sub-7 v1: 1 lots x 7 (fx_major) = 7; differential 7 - 5 paid below = 2"
    assert all(r.amount_usd == r.amount and r.currency == "USD" for r in rows)
