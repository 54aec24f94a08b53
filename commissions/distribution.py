"""How one deal's commission is split along the chain of IBs (tier 1 = the direct IB, the
last tier = the top-level master). Exact arithmetic; rounding happens afterwards, per row
(`money.split_rounded`).

**Differential.** Every IB in the chain prices the deal with its own plan (`amounts[i]`). The
top master's amount is the budget: nothing in the chain is paid more than it. Each IB earns
its amount minus what is already paid below it, never negative:

    own[i]     = min(amounts[i], budget)
    share[i]   = max(0, own[i] - covered[i-1])
    covered[i] = max(covered[i-1], own[i])          (covered[0] = 0)

With $5 / $7 / $10 per lot (direct IB, its master, the top master) a 1-lot deal pays $5, $2
and $3. "What is already paid below" is the highest amount below, not just the amount of the
level directly below: with $5 / $3 / $10 the middle IB earns 0 and the top $5, so the chain
never pays more than $10 (a naive "rate minus the rate below" would pay 5 + 0 + 7 = 12). The
shares add up to exactly the budget.

**Percentage cascade.** The direct IB's plan prices the deal (the pool). Each IB keeps what it
receives minus the share it passes up to its master (`pass_up[i]` of its own plan); the top
master keeps everything it receives. The shares add up to exactly the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from commissions.money import MONEY_CONTEXT, ZERO


@dataclass(frozen=True, slots=True)
class Split:
    shares: list[Decimal]  # exact, tier 1 first
    total: Decimal  # what the plan allows for the deal: shares never add up to more
    notes: list[str]  # how each share was reached, for the row's basis


def _num(value: Decimal) -> str:
    return f"{value.normalize():f}"


def differential(amounts: Sequence[Decimal]) -> Split:
    """Split where each tier earns its own amount minus the highest amount paid below it."""
    if not amounts:
        return Split([], ZERO, [])
    budget = amounts[-1]
    shares: list[Decimal] = []
    notes: list[str] = []
    covered = ZERO
    with localcontext(MONEY_CONTEXT):
        for tier, amount in enumerate(amounts, start=1):
            own = min(amount, budget)
            share = max(ZERO, own - covered)
            shares.append(share)
            if tier == 1:
                notes.append(f"own amount {_num(own)}")
            else:
                clipped = f" (limited to the top master's {_num(budget)})" if own < amount else ""
                notes.append(f"differential {_num(own)}{clipped} - {_num(covered)} paid below = "
                             f"{_num(share)}")
            covered = max(covered, own)
    return Split(shares, budget, notes)


def cascade(pool: Decimal, pass_up: Sequence[Decimal]) -> Split:
    """Split a pool where tier i keeps (1 - pass_up[i]) of what it receives and passes the rest
    up; the last tier keeps all it receives (its pass_up is ignored)."""
    shares: list[Decimal] = []
    notes: list[str] = []
    received = pool
    with localcontext(MONEY_CONTEXT):
        for tier, up in enumerate(pass_up, start=1):
            last = tier == len(pass_up)
            passed = ZERO if last else received * up
            kept = received - passed
            shares.append(kept)
            if last:
                notes.append(f"cascade: keeps all {_num(received)} received")
            else:
                notes.append(f"cascade: keeps {_num((1 - up) * 100)}% of {_num(received)} = "
                             f"{_num(kept)}, passes {_num(passed)} up")
            received = passed
    return Split(shares, pool, notes)
