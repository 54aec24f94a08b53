"""Money: the project's one module for currency minor units, decimal contexts and rounding.

Every place that rounds or counts money in a currency's units uses this module: the IB
commissions (`commissions/money.py` adds nothing of its own, it re-exports), the payment
connectors that read amounts sent in minor units, and the positions/exposure arithmetic
(`EXACT`, `q8`). Money is `Decimal`, never a binary float.

Minor units come from the ISO 4217 list maintained by SIX (the `iso4217` package, which ships
the agency's published table): 0 for JPY and KRW, 3 for BHD, KWD, JOD, TND, OMR, IQD, LYD,
4 for CLF and UYW, 2 for most. A code ISO gives no minor unit for (XAU and the other metals,
XDR) or does not list at all (USDT, BTC and other crypto an account may be kept in) counts in
hundredths (`DEFAULT_MINOR_DIGITS`), the rounding the platforms use for such accounts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from types import MappingProxyType
from typing import Final

import iso4217

# -- contexts -----------------------------------------------------------------------------------

# Commission arithmetic: 50 significant digits, half-even, whatever the caller's context is.
MONEY_CONTEXT: Final = Context(prec=50, rounding=ROUND_HALF_EVEN)
# Positions and exposure: 60 digits hold sums and products of 8-dp prices and volumes exactly,
# so an aggregate that gains a value and later loses it returns to exactly what it was.
EXACT: Final = Context(prec=60, rounding=ROUND_HALF_EVEN,
                       traps=[InvalidOperation, DivisionByZero, Overflow])

ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
CENT: Final = Decimal("0.01")
OUTPUT_EXP: Final = Decimal("1E-8")
PRICE_EXP: Final = Decimal("1E-12")
_ZERO8: Final = Decimal("0E-8")


def q8(value: Decimal) -> Decimal:
    """`value` rounded half-even to the 8 decimal places the tables store (no negative zero)."""
    out = EXACT.quantize(value, OUTPUT_EXP)
    return out if out else _ZERO8


def q8_or_none(value: Decimal | None) -> Decimal | None:
    return None if value is None else q8(value)


def price12(value: Decimal) -> Decimal:
    """An internal price (a volume-weighted average) rounded to 12 decimal places."""
    return EXACT.quantize(value, PRICE_EXP)


# -- ISO 4217 minor units -------------------------------------------------------------------------

DEFAULT_MINOR_DIGITS: Final = 2
ISO4217_PUBLISHED: Final[str] = str(iso4217.__published__)

# Every active ISO 4217 code with a minor unit -> its number of decimals.
MINOR_DIGITS: Final[Mapping[str, int]] = MappingProxyType({
    currency.code: currency.exponent for currency in iso4217.Currency if currency.exponent is not None
})
_UNITS: Final[dict[int, Decimal]] = {digits: ONE.scaleb(-digits) for digits in set(MINOR_DIGITS.values())}


def minor_digits(currency: str) -> int:
    """Decimals of the currency's minor unit: 2 for USD, 0 for JPY, 3 for KWD, 4 for CLF."""
    return MINOR_DIGITS.get(currency.upper(), DEFAULT_MINOR_DIGITS)


def minor_unit(currency: str) -> Decimal:
    """The currency's smallest unit: 0.01 for USD, 1 for JPY, 0.001 for KWD."""
    return _UNITS.get(minor_digits(currency)) or ONE.scaleb(-minor_digits(currency))


def round_minor(amount: Decimal, currency: str) -> Decimal:
    """Half-even to the currency's minor unit: 0.125 -> 0.12, 0.135 -> 0.14, 0.015 -> 0.02."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_EVEN, context=MONEY_CONTEXT)


def is_whole_minor(amount: Decimal, currency: str) -> bool:
    return amount == round_minor(amount, currency)


def from_minor_units(count: int, currency: str, exponents: Mapping[str, int] | None = None) -> Decimal:
    """An integer count of minor units (cents) -> the amount; `exponents` overrides ISO (a
    provider's own list, or a configured exponent for a code ISO does not list)."""
    digits = exponents.get(currency) if exponents else None
    return Decimal(count).scaleb(-(minor_digits(currency) if digits is None else digits))


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


# -- conversion ---------------------------------------------------------------------------------

# USD per one unit of a currency at a time: rate("EUR", t) -> Decimal("1.08").
RateFunction = Callable[[str, datetime], Decimal]


class MissingRate(LookupError):
    """No USD rate for a currency at a time."""


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
