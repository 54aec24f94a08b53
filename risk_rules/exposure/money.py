"""Decimal arithmetic for positions and exposure.

Every computation in this package runs in `EXACT`, a 60-digit context: sums and products of
prices (8 dp) and volumes (8 dp) are exact there, so an aggregate that gains a value and later
loses it returns to exactly what it was. Only two values are rounded inside: the volume-weighted
average open price (to `PRICE_EXP`, 12 dp, so its digits stay bounded) and divisions by a rate
(60 significant digits). Results are rounded to 8 dp, half-even, when they are output (`q8`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

# the one money module of the project (schemas/money.py): contexts, rounding, minor units
from schemas.money import EXACT, ONE, OUTPUT_EXP, PRICE_EXP, ZERO, price12, q8, q8_or_none

if TYPE_CHECKING:
    from schemas.events import Deal

__all__ = ["EXACT", "NO_MONEY", "ONE", "OUTPUT_EXP", "PRICE_EXP", "ZERO", "Money", "price12", "q8",
           "q8_or_none"]


@dataclass(slots=True)
class Money:
    """What deals realised, in the account currency, as the platform reports it.

    Treat as immutable (not frozen only because frozen dataclasses are slow to build)."""

    profit: Decimal = ZERO
    swap: Decimal = ZERO
    commission: Decimal = ZERO
    fee: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return EXACT.add(EXACT.add(self.profit, self.swap), EXACT.add(self.commission, self.fee))

    def __add__(self, other: Money) -> Money:
        return Money(
            EXACT.add(self.profit, other.profit),
            EXACT.add(self.swap, other.swap),
            EXACT.add(self.commission, other.commission),
            EXACT.add(self.fee, other.fee),
        )

    def __sub__(self, other: Money) -> Money:
        return Money(
            EXACT.subtract(self.profit, other.profit),
            EXACT.subtract(self.swap, other.swap),
            EXACT.subtract(self.commission, other.commission),
            EXACT.subtract(self.fee, other.fee),
        )

    def __bool__(self) -> bool:
        return bool(self.profit or self.swap or self.commission or self.fee)

    def __reduce__(self) -> tuple[type[Money], tuple[Decimal, Decimal, Decimal, Decimal]]:
        # positional: a slotted dataclass's default pickle (a state dict) is several times slower
        return Money, (self.profit, self.swap, self.commission, self.fee)

    @classmethod
    def of_deal(cls, deal: Deal) -> Money:
        return cls(deal.profit, deal.swap, deal.commission, deal.fee)


NO_MONEY = Money()
