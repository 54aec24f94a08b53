"""Withdrawal requests the withdrawal policy must hold or reject (docs/withdrawals.md), injected
on request (`simulate --withdrawal-cases N`, `Brokerage(withdrawal_cases=N)`; none by default,
so every other simulated history stays as it was).

Each case is ground truth (typology `withdrawal.<kind>`, details `expected_decision` and
`expected_reason`, its events include the withdrawal's `op_key` = the decision's `request_key`):

- `kyc_expired`: an active client's KYC expires, then they withdraw -> hold (kyc_expired);
- `kyc_rejected`: a client's KYC is rejected on review, then they withdraw -> reject;
- `other_instrument`: a deposit by one instrument, a payout to another -> hold (return_to_source);
- `first_over_limit`: a new client's first withdrawal of 5,000 -> hold (first_withdrawal);
- `over_reject_limit`: a new client withdraws 300,000 -> reject (amount_limit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devtools.simulator.brokerage import Brokerage
    from devtools.simulator.typologies import Case
    from devtools.simulator.world import SimAccount

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
EXPECTED: dict[str, tuple[str, str]] = {
    "kyc_expired": ("hold", "kyc_expired"),
    "kyc_rejected": ("reject", "kyc_rejected"),
    "other_instrument": ("hold", "return_to_source"),
    "first_over_limit": ("hold", "first_withdrawal"),
    "over_reject_limit": ("reject", "amount_limit"),
}
KINDS = tuple(EXPECTED)


class WithdrawalCases:
    def __init__(self, sim: Brokerage) -> None:
        self.sim = sim

    def plan(self, start: int, horizon_ms: int, n: int) -> None:
        """`n` cases spread evenly over the first 80% of the window, the kinds in turn."""
        for i in range(n):
            t = start + int(horizon_ms * 0.8 * (i + 0.5) / n)
            self.sim.at(t, self._start, KINDS[i % len(KINDS)])

    def _case(self, kind: str, acc: SimAccount) -> Case:
        decision, reason = EXPECTED[kind]
        return self.sim.typologies.new_case(f"withdrawal.{kind}", acc.server.tenant, acc.key, "account",
                                            [acc.key], expected_decision=decision, expected_reason=reason)

    def _start(self, kind: str) -> None:
        sim, ty = self.sim, self.sim.typologies
        now = sim.now
        if kind in ("first_over_limit", "over_reject_limit"):
            server = sim.rng.choice(sim.servers)
            new = ty.open_account(ty.fresh_client(server.tenant), server, None)
            case = self._case(kind, new)
            amount = 6_000.0 if kind == "first_over_limit" else 400_000.0
            psp, inst = sim.cashier.choose(new, "card")  # in the account currency, not coins
            ty.deposit_at(now + 2 * HOUR_MS, new, amount, case, psp, inst)
            ty.withdraw_at(now + DAY_MS, new, 5_000.0 if kind == "first_over_limit" else 300_000.0,
                           case, psp, inst, approve_after=20 * 60_000)
            return
        acc = ty.pick(lambda a: a.balance > 300 and not a.positions)
        if acc is None:
            return
        ty.own(acc, now + 3 * DAY_MS)  # its own routine stays out of the way
        case = self._case(kind, acc)
        psp, inst = sim.cashier.choose(acc)
        if kind == "other_instrument":
            ty.deposit_at(now + HOUR_MS, acc, 500.0, case, psp, inst)
            known = list(acc.client.instruments)
            for _ in range(8):  # a payout instrument the client never paid with
                other_psp, other = ty.other_instrument(acc, inst.kind if inst is not None else "card")
                if other is None or all(other is not k for k in known):
                    break
            ty.withdraw_at(now + DAY_MS, acc, 200.0, case, other_psp, other, approve_after=20 * 60_000)
            return
        status = "expired" if kind == "kyc_expired" else "rejected"
        sim.at(now + HOUR_MS, self._kyc, (acc, status, case))
        ty.withdraw_at(now + 2 * HOUR_MS, acc, min(acc.balance * 0.5, 1_500.0), case, psp, inst,
                       approve_after=20 * 60_000)

    def _kyc(self, arg: tuple[SimAccount, str, Case]) -> None:
        acc, status, case = arg
        acc.kyc = status
        self.sim.lifecycle.crm(acc, "kyc_status", self.sim.now, case, kyc_status=status)
