"""Commission rows: what the engine emits, one per IB per tier per deal version, and what the
`ib_commissions` table stores (deduplicated on `commission_id`).

Rows are facts that never change. A correction never overwrites a row: it adds a
`reversal` row (the reversed row's amounts with the sign flipped, `reverses` = its id) and,
for the new version of the deal, new `earn` rows. Summing `amount` over any set of rows
therefore gives what is owed, and every row can be explained on its own: deal, plan, plan
version, tier chain, inputs and the formula (`basis`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

RowKind = Literal["earn", "reversal"]


def commission_id(deal_key: str, ib_id: str, tier: int, kind: RowKind, version: int, revision: int) -> str:
    """Deterministic row id: `deal_key|ib_id|tier|kind|v<deal version>` (+ `|r<n>` when the same
    deal version earns again after a minimum-holding-time reversal was undone).

    A reversal row carries the id of the row it reverses with `earn` replaced by `reversal`:
    each earn row is reversed at most once, so ids never collide.
    """
    suffix = f"|r{revision}" if revision else ""
    return f"{deal_key}|{ib_id}|{tier}|{kind}|v{version}{suffix}"


# Not slotted: state snapshots pickle many rows, and a __dict__ pickles on C's fast path while a
# slotted dataclass goes through a Python-level __getstate__ for every object.
@dataclass(frozen=True)
class CommissionRow:
    commission_id: str
    tenant: str
    deal_key: str
    deal_version: int  # version of the deal the row is about
    revision: int  # 0, or n for the n-th re-earn of that version
    account_key: str
    login: int
    symbol: str
    symbol_group: str
    deal_time: datetime  # the deal's execution time (UTC): the day/month the row counts in
    ib_id: str  # beneficiary
    tier: int  # 1 = the direct IB, 2 = its master, ...
    tier_chain: str  # "IB-1>IB-2>IB-3": from the top master down to the direct IB
    plan_id: str  # the plan that set this row's amount
    plan_version: int
    distribution: str  # differential / cascade
    volume_tier: int  # 0 = base rates, n = the plan's n-th volume tier
    lots: Decimal
    rate: Decimal  # per-lot rate applied (payout currency)
    markup: Decimal  # spread markup used, price units per unit (0 = none)
    client_commission: Decimal  # size of the client's commission, account currency
    gross: Decimal  # exact share before rounding (shown to 8 dp)
    deal_total: Decimal  # what the plan allows for the whole deal, rounded: rows sum to <= this
    amount: Decimal  # paid (negative for a reversal), payout currency, minor units
    currency: str
    amount_usd: Decimal
    capped: str  # "", "trade", "day", "month"
    basis: str  # the formula in words
    kind: RowKind
    reverses: str  # for a reversal: the commission_id it reverses
    reason: str  # earn: "new", "update", "restored"; reversal: "update", "delete", "min_hold"
    caused_by: str  # deal_key@version of the event that produced the row

    def reversal(self, reason: str, caused_by: str) -> CommissionRow:
        """The row that cancels this one."""
        return dataclasses.replace(
            self,
            commission_id=commission_id(self.deal_key, self.ib_id, self.tier, "reversal",
                                        self.deal_version, self.revision),
            amount=-self.amount,
            amount_usd=-self.amount_usd,
            kind="reversal",
            reverses=self.commission_id,
            reason=reason,
            caused_by=caused_by,
        )

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ROW_COLUMNS}


ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CommissionRow))
