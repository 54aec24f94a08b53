"""The commission engine's state: plain dataclasses, picklable, snapshot-able.

Everything the engine remembers between deals is here, keyed explicitly:

| field | key | what |
|---|---|---|
| `deals` | deal_key | each deal's latest version, what its rows earned, and rows held back |
| `positions` | (account_key, position_id) | the live deals of each position (minimum holding time) |
| `month_lots` | (ib_id, "YYYY-MM") | lots the IB has rows for this month (volume tiers) |
| `day_paid` | (ib_id, "YYYY-MM-DD") | paid to the IB that day (daily cap) |
| `month_paid` | (ib_id, "YYYY-MM") | paid to the IB that month (monthly cap) |
| `assignments` | (account_key, effective_from) | accounts assigned at run time (`assign`, Agent field, CRM) |
| `moves` | (ib_id, effective_from) | IBs moved at run time |
| `account_groups` | account_key | latest platform group seen per account |

`deals` is a `ChunkedDict` (schemas/chunked.py), so a snapshot costs the deals that changed.
The first two and the last three are keyed by account; the counters are keyed by IB. One deal
reads and writes both (its account's ledger and the counters of every IB in its chain), and
tiers and caps depend on the order deals reach them, so the whole state of one commissions
configuration (one tenant) belongs on one worker: key the commission step by tenant.
Months and days are UTC calendar months and days of the deal's execution time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from commissions.plans import DealFacts
from commissions.rows import CommissionRow
from schemas.chunked import ChunkedDict

DEAL_CHUNK = 1024  # deal records per pickled chunk of `CommissionState.deals`


@dataclass(frozen=True)
class Level:
    """One IB of a deal's chain, with the plan (and version) it was on at the deal's time."""

    ib_id: str
    plan_id: str | None
    plan_version: int | None


@dataclass
class DealRecord:
    """What the engine knows about one deal (its latest version)."""

    deal_key: str
    account_key: str
    version: int
    deleted: bool
    time: datetime
    entry: str
    lots: Decimal
    canceled: bool
    login: int
    position_id: str
    levels: tuple[Level, ...]  # the chain at the deal's time, direct IB first; () = no IB
    facts: DealFacts | None
    blocked: bool = False  # held back by the minimum holding time
    live_rows: list[CommissionRow] = field(default_factory=list)  # earn rows in force
    held_rows: list[CommissionRow] = field(default_factory=list)  # earn rows reversed by min-hold
    revision: int = 0  # earn generations issued for this version so far


def _deal_records() -> ChunkedDict[str, DealRecord]:
    return ChunkedDict(DEAL_CHUNK)


@dataclass
class CommissionState:
    # Chunks that pickle once until they change: a recovery snapshot re-pickles the deals that
    # moved, not every recent deal of the tenant. A record changed in place is set again
    # (`CommissionEngine._touch`) to mark its chunk.
    deals: ChunkedDict[str, DealRecord] = field(default_factory=_deal_records)
    positions: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    month_lots: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    day_paid: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    month_paid: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    assignments: dict[tuple[str, datetime], str | None] = field(default_factory=dict)
    moves: dict[tuple[str, datetime], str | None] = field(default_factory=dict)
    account_groups: dict[str, str] = field(default_factory=dict)
    pruned_before: datetime | None = None  # deals older than this are forgotten (see prune)


def bump(counter: dict[tuple[str, str], Decimal], key: tuple[str, str], delta: Decimal) -> None:
    """Add `delta`; a counter back at zero is removed, so state holds only what matters."""
    value = counter.get(key, Decimal(0)) + delta
    if value == 0:
        counter.pop(key, None)
    else:
        counter[key] = value
