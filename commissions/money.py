"""Money arithmetic and the ONLY places where commission amounts are rounded.

Disputes about IB commissions are almost always disputes about rounding, so the rules are
here, in one module, and nowhere else:

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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

MONEY_CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN)

ZERO = Decimal(0)
CENT = Decimal("0.01")

# ISO 4217 minor units that are not 2 (the default).
_MINOR_DIGITS: dict[str, int] = {
    "JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "HUF": 2, "XAF": 0, "XOF": 0, "UGX": 0,
    "KWD": 3, "BHD": 3, "OMR": 3, "JOD": 3, "TND": 3, "LYD": 3, "IQD": 3,
}

# USD per one unit of a currency at a time: rate("EUR", t) -> Decimal("1.08").
RateFunction = Callable[[str, datetime], Decimal]


class MissingRate(LookupError):
    """No USD rate for a currency at a time."""


def minor_unit(currency: str) -> Decimal:
    """The currency's smallest unit: 0.01 for USD, 1 for JPY, 0.001 for KWD."""
    return Decimal(1).scaleb(-_MINOR_DIGITS.get(currency.upper(), 2))


def round_minor(amount: Decimal, currency: str) -> Decimal:
    """Half-even to the currency's minor unit: 0.125 -> 0.12, 0.135 -> 0.14, 0.015 -> 0.02."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_EVEN)


def is_whole_minor(amount: Decimal, currency: str) -> bool:
    return amount == round_minor(amount, currency)


def split_rounded(exact: Sequence[Decimal], total: Decimal, currency: str) -> list[Decimal]:
    """Round each exact share half-even, then take back minor units until the rounded shares
    add up to no more than `total` rounded half-even.

    `exact[i]` is tier i+1's exact share (tier 1 = the direct IB); `sum(exact) <= total`.
    Units are taken back from the shares rounded up the most (largest rounded - exact), ties
    to the highest tier; each share loses at most one unit, and only a share that was rounded
    up, so no share goes negative and each stays within one unit of its exact value.
    """
    unit = minor_unit(currency)
    rounded = [round_minor(value, currency) for value in exact]
    cap = round_minor(total, currency)
    excess = sum(rounded, ZERO) - cap
    if excess <= 0:
        return rounded
    with localcontext(MONEY_CONTEXT):
        rounded_up = sorted(
            (i for i in range(len(rounded)) if rounded[i] > exact[i]),
            key=lambda i: (rounded[i] - exact[i], i),
            reverse=True,
        )
    for i in rounded_up:
        if excess <= 0:
            break
        rounded[i] -= unit
        excess -= unit
    if excess > 0:  # cannot happen when sum(exact) <= total (see the docstring)
        raise ArithmeticError(f"cannot fit shares {exact} into {cap}")
    return rounded


def to_usd(amount: Decimal, usd_per_unit: Decimal) -> Decimal:
    """`amount` in USD at `usd_per_unit`, half-even to cents (reporting only)."""
    with localcontext(MONEY_CONTEXT):
        value = amount * usd_per_unit
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def usd_rate(rate: RateFunction, currency: str, at: datetime) -> Decimal:
    """USD per one unit of `currency` at `at`; raises MissingRate."""
    if currency.upper() == "USD":
        return Decimal(1)
    value = rate(currency.upper(), at)
    if value is None or value <= 0:
        raise MissingRate(f"no USD rate for {currency} at {at.isoformat()}")
    return Decimal(value)


def convert(amount: Decimal, source: str, target: str, at: datetime, rate: RateFunction) -> Decimal:
    """Exact (50-digit) conversion through USD; not rounded."""
    if source.upper() == target.upper() or amount == 0:
        return amount
    with localcontext(MONEY_CONTEXT):
        return amount * usd_rate(rate, source, at) / usd_rate(rate, target, at)


class FixedRates:
    """A rate function from a fixed table (USD per unit), for tests, replays and examples.

    Production passes the dataflow's own fixing (for example the day's closing quotes); it
    must depend only on (currency, time) so that a replay prices identically.
    """

    def __init__(self, table: Mapping[str, Decimal | str | int] | None = None) -> None:
        self.table = {k.upper(): Decimal(str(v)) for k, v in (table or {}).items()}
        self.table.setdefault("USD", Decimal(1))

    def __call__(self, currency: str, at: datetime) -> Decimal:
        try:
            return self.table[currency.upper()]
        except KeyError:
            raise MissingRate(f"no USD rate for {currency} at {at.isoformat()}") from None
