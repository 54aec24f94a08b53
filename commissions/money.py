"""The rules by which commission amounts are rounded.

Disputes about IB commissions are almost always disputes about rounding, so the rules are
written down here, and applied nowhere but through these functions:

1. **No rounding before a deal is split.** Rates x lots, shares of the spread markup and of
   the client's commission, currency conversions and the split between tiers are computed
   as exact `Decimal`s in `MONEY_CONTEXT` (50 significant digits, half-even), independent of
   whatever decimal context the calling thread has set.
2. **Each row is rounded once**, half-even ("banker's rounding") to the payout currency's
   minor unit (cents for USD/EUR, whole yen for JPY): `round_minor`.
3. **The rows of one deal never add up to more than the deal's plan total** (the plan total
   itself rounded half-even): when the rounded rows exceed it, one minor unit at a time is
   taken back from the rows that were rounded *up* the most, ties going to the row highest
   up the chain (the largest tier number): `split_rounded`. The rows may add up to *less*
   than the plan total (three rows of 0.005 each round to 0.00); the broker keeps that
   remainder, and each row is still within one minor unit of its exact share.
4. **Day and month caps** are whole minor units (validated in the plan), so capping a rounded
   row cuts whole cents and never rounds again.
5. **`amount_usd`** is `amount x USD rate`, rounded half-even to cents (`to_usd`). It is for
   reporting only; the payout is `amount` in the payout currency. A reversal row copies the
   reversed row's `amount` and `amount_usd` with the sign flipped, so a reversal nets to
   exactly zero in both currencies even if the USD rate moved in between.

The arithmetic itself (ISO 4217 minor units from the maintained `iso4217` table, the contexts,
`round_minor`, `split_rounded`, `to_usd`, conversion) lives in the project's one money module,
`schemas.money`; this module re-exports what the commission code uses, so there is one table
of minor units and one rounding for the whole project.
"""

from __future__ import annotations

from schemas.money import (
    CENT,
    MONEY_CONTEXT,
    ZERO,
    FixedRates,
    MissingRate,
    RateFunction,
    convert,
    is_whole_minor,
    minor_unit,
    round_minor,
    split_rounded,
    to_usd,
    usd_rate,
)

__all__ = [
    "CENT",
    "MONEY_CONTEXT",
    "ZERO",
    "FixedRates",
    "MissingRate",
    "RateFunction",
    "convert",
    "is_whole_minor",
    "minor_unit",
    "round_minor",
    "split_rounded",
    "to_usd",
    "usd_rate",
]
