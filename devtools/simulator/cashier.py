"""Deposits and withdrawals: the provider's notifications through the transaction's life, and
the balance operation the broker books on the trading platform.

Deposit: (pending) -> approved / declined at the provider; a credited deposit appears on the
platform a few seconds to minutes after approval (MT5 Action 2, MT4 cmd 6, cTrader
BALANCE_DEPOSIT), as brokers' payment integrations do; a card deposit may be refunded or charged
back later. Withdrawal: the back office approves the client's request after hours, debits the
platform balance, then pays out through the provider (pending -> approved). Bank wires go
straight to the platform (no provider notification). Now and then a provider notification is
published twice (the receiver restarted and forgot it had acknowledged it).

The platform comment says what a cashier integration writes there, within MT4/MT5's 31
characters: the word, the provider and the payment's reference - the provider's transaction id
where it fits (Praxis tid, CoinsPaid id, Nuvei PPP_TransactionID), else the broker's own order
reference that the provider echoes back (Skrill transaction_id, Stripe description; every
withdrawal: the platform is debited before the payout exists at the provider). The
reconciliation matches on it (docs/reconciliation.md).

Reconciliation breaks (`recon_breaks` > 0, off by default so nothing else changes): the
cashier now and then skips, doubles or mis-books a platform booking, books a payment the
provider never reported, credits a declined deposit, leaves a refund/chargeback unbooked or has
the provider report another currency - each recorded with its ground truth (`recon_truth`).
Nuvei refunds and chargebacks are booked on the platform without a notification the engine
reads (their DMNs are refused, see docs/payments.md): a real break, recorded as natural truth.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from connectors.ctrader_proto import openapi_subset_pb2 as pb
from devtools.simulator import emit
from devtools.simulator.payments import (
    CARD_PROVIDERS,
    METHODS,
    Psp,
    Txn,
    Webhook,
    build_webhook,
    new_txn,
)
from devtools.simulator.world import Instrument, SimAccount, instrument_of

if TYPE_CHECKING:
    from devtools.simulator.brokerage import Brokerage
    from devtools.simulator.typologies import Case

MINUTE = 60_000
RECON_SEED = 16_016  # the break injector's own random stream: the world's draws stay the same
HOUR = 3_600_000
DAY = 86_400_000


class Cashier:
    def __init__(self, sim: Brokerage) -> None:
        self.sim = sim
        self.seq = 100_000
        self.by_tenant: dict[str, list[Psp]] = {}
        for psp in sim.psp.values():
            self.by_tenant.setdefault(psp.tenant, []).append(psp)
        for psps in self.by_tenant.values():
            psps.sort(key=lambda p: p.name)
        self.deposits = 0
        self.withdrawals = 0
        self.webhooks = 0
        self.recon_rate = 0.0  # set by the brokerage (`recon_breaks`)
        self.recon_rng = random.Random(sim.seed * 1_000_003 + RECON_SEED)
        # ground truth of reconciliation breaks: (emit index, record)
        self.recon_truth: list[tuple[int, dict[str, object]]] = []

    # -- reconciliation ground truth --------------------------------------------------------------

    def _inject(self, kinds: tuple[str, ...], weight: float = 1.0) -> str:
        """A break kind to inject at this point (chance `recon_rate` x `weight`), or ''."""
        if self.recon_rate <= 0 or self.recon_rng.random() >= self.recon_rate * weight:
            return ""
        return self.recon_rng.choice(kinds)

    def _truth(self, kind: str, tenant: str, anchor: str, psp_op_key: str, platform_op_key: str,
               injected: bool = True) -> None:
        """One expected break, stamped with the emission index of the event that makes it."""
        self.recon_truth.append((self.sim.emitted - 1, {
            "kind": kind, "break_id": f"{kind}:{anchor}", "tenant": tenant,
            "psp_op_key": psp_op_key, "platform_op_key": platform_op_key,
            "basis": emit.iso(self.sim.now), "injected": injected,
        }))

    @staticmethod
    def reference(txn: Txn) -> str:
        """What the cashier writes after the provider's name in the platform comment."""
        if txn.kind == "deposit" and txn.psp.name in ("praxis", "coinspaid", "nuvei"):
            return txn.txn_id
        return txn.ref.rsplit(":", 1)[-1]

    # -- choosing how to pay --------------------------------------------------------------------

    def providers(self, tenant: str, method: str) -> list[Psp]:
        return [p for p in self.by_tenant.get(tenant, []) if method in METHODS[p.name]]

    def _route(self, acc: SimAccount, method: str, psp: Psp | None,
               instrument: Instrument | None) -> tuple[Psp | None, Instrument | None]:
        """The provider and instrument of a payment: none for a bank wire, else what the caller
        named, with `choose` filling in what it did not."""
        if method == "wire":
            return None, None
        if psp is None or instrument is None:
            chosen_psp, chosen_inst = self.choose(acc, method)
            return psp or chosen_psp, instrument or chosen_inst
        return psp, instrument

    def choose(self, acc: SimAccount, method: str = "") -> tuple[Psp | None, Instrument | None]:
        """The provider and instrument the client pays with (None, None: a bank wire)."""
        rng = self.sim.rng
        client = acc.client
        method = method or acc.preferred_method
        if method == "crypto" and instrument_of(client, "crypto") is None:
            method = "card"
        for candidate in (method, "card", "ewallet", "crypto"):
            psps = self.providers(acc.server.tenant, candidate)
            inst = instrument_of(client, "ewallet" if candidate == "bank" else candidate)
            if candidate == "crypto" and inst is None:
                continue
            if psps and inst is not None:
                cards = [i for i in client.instruments if i.kind == "card"]
                if candidate == "card" and len(cards) > 1:
                    inst = rng.choice(cards)
                return rng.choice(psps), inst
            if candidate == "bank":
                return None, None
        return None, None

    def card_provider(self, tenant: str) -> Psp | None:
        psps = [p for p in self.by_tenant.get(tenant, []) if p.name in CARD_PROVIDERS]
        return self.sim.rng.choice(psps) if psps else None

    # -- publishing -----------------------------------------------------------------------------

    def send(self, hook_args: tuple[Txn, str, str]) -> None:
        """Publish one provider notification (as the receiver writes it) now."""
        txn, status, extra = hook_args
        sim = self.sim
        hook = build_webhook(txn, status, sim.now, extra=extra)
        self.publish(hook, txn.case)
        if status == "approved" and sim.rng.random() < 0.003:  # re-sent, published again
            sim.at(sim.now + sim.rng.randint(MINUTE, 20 * MINUTE), self._resend, hook)

    def publish(self, hook: Webhook, case: Case | None) -> None:
        sim = self.sim
        self.webhooks += 1
        txn = hook.txn
        eid = txn.op_key
        if hook.status == "chargeback":
            related = txn.txn_id
            eid = f"psp:{hook.provider}:{related}:chargeback"
        elif hook.status == "refunded":
            if hook.provider == "praxis":
                eid = f"psp:praxis:{txn.ids.get('refund_tid', txn.txn_id)}"
            else:
                eid = f"psp:{hook.provider}:{txn.txn_id}:refund"
        sim.emit_webhook(hook, case, eid)

    def _resend(self, hook: Webhook) -> None:
        """The provider sends the notification again and the receiver publishes it again."""
        sim = self.sim
        again = build_webhook(hook.txn, hook.status, hook.t_ms, sign_s=sim.now // 1000,
                              extra=hook.extra, received_ms=sim.now)
        self.publish(again, None)

    def platform_balance(self, acc: SimAccount, amount: float, comment: str, *, so: bool = False,
                         case: Case | None = None) -> str:
        """A balance operation on the trading platform now (signed amount); its event id."""
        sim = self.sim
        srv = acc.server
        acc.balance = round(acc.balance + amount, 2)
        key = str(acc.login)
        comment = comment[:31]
        if srv.platform == "mt5":
            deal = srv.ticket()
            doc = emit.mt5_balance(deal=deal, login=acc.login, action=19 if so else 2,
                                   t_server=sim.now + srv.offset_ms, amount=amount,
                                   comment=comment)
            eid = f"mt5:{srv.name}:{deal}"
            sim.emit("mt5.deals", key, doc, {"server": srv.name, "event": "add"}, case, eid)
        elif srv.platform == "mt4":
            order = srv.order()
            doc = emit.mt4_balance(order=order, login=acc.login,
                                   t_server_s=(sim.now + srv.offset_ms) // 1000, amount=amount,
                                   comment=comment)
            eid = f"mt4:{srv.name}:{order}"
            sim.emit("mt4.trades", key, doc, {"server": srv.name, "event": "add"}, case, eid)
        else:
            srv.next_balance += 1
            acc.balance_version += 1
            if so:
                op = pb.BALANCE_DEPOSIT_NEGATIVE_BALANCE_PROTECTION
            else:
                op = pb.BALANCE_DEPOSIT if amount >= 0 else pb.BALANCE_WITHDRAW
            cents = round(acc.balance * 100)
            doc = emit.ctrader_balance(ctid=acc.login, history_id=srv.next_balance, operation=op,
                                       balance=cents, delta=abs(round(amount * 100)), t=sim.now,
                                       note=comment, version=acc.balance_version, equity=cents)
            eid = f"ctrader:{srv.name}:{srv.next_balance}"
            sim.emit("ctrader.events", key, doc, {"server": srv.name}, case, eid)
        return eid

    # -- deposits -------------------------------------------------------------------------------

    def deposit(self, acc: SimAccount, amount: float, *, method: str = "", psp: Psp | None = None,
                instrument: Instrument | None = None, payer: tuple[str, str] | None = None,
                country: str = "", case: Case | None = None, outcome: str = "",
                chargeback_after: int = 0, refund_after: int = 0) -> Txn | None:
        """A deposit requested now; returns its transaction (None for a bank wire)."""
        sim = self.sim
        rng = sim.rng
        psp, instrument = self._route(acc, method, psp, instrument)
        self.seq += rng.randint(1, 9)
        self.deposits += 1
        amount = round(amount, 2)
        if psp is None or instrument is None:  # a bank wire: only the platform sees it
            delay = rng.randint(2 * HOUR, 30 * HOUR)
            sim.at(sim.now + delay, self._credit_wire, (acc, amount, f"Wire DP{self.seq}", case))
            return None
        txn = new_txn(rng, psp, "deposit", acc, amount, instrument, sim.now, self.seq, payer,
                      country)
        txn.case = case
        if psp.name == "coinspaid":
            txn.coin_amount = self.coin_amount(instrument.coin or "USDT", amount, acc.server.currency)
        elif self._inject(("currency_mismatch",), 0.3):  # the provider settles in another currency
            txn.currency = "GBP" if txn.currency != "GBP" else "CHF"
            txn.recon = "currency_mismatch"
        kind = instrument.kind
        if not outcome:
            fail = {"card": 0.08, "ewallet": 0.03, "crypto": 0.01}.get(kind, 0.04)
            outcome = "declined" if rng.random() < fail else "approved"
        t = sim.now
        name = psp.name
        if name == "stripe" or name == "coinspaid" or rng.random() < {"skrill": 0.6, "praxis": 0.7,
                                                                      "nuvei": 0.15}[name]:
            t += rng.randint(1_000, 25_000)
            sim.at(t, self.send, (txn, "pending", ""))
        if kind == "crypto":
            t += rng.randint(8 * MINUTE, 60 * MINUTE)
        elif kind == "card":
            t += rng.randint(3_000, 90_000)
        else:
            t += rng.randint(8_000, 6 * MINUTE)
        sim.at(t, self._settle, (txn, outcome, chargeback_after, refund_after))
        return txn

    def _settle(self, arg: tuple[Txn, str, int, int]) -> None:
        txn, outcome, chargeback_after, refund_after = arg
        sim = self.sim
        rng = sim.rng
        txn.status = outcome
        self.send((txn, outcome, ""))
        if outcome == "declined" and txn.psp.name == "stripe":  # the failed charge, with the card
            sim.at(sim.now + 300, self.send, (txn, "declined", "charge.failed"))
        if outcome != "approved":
            # credited although the provider declined (declines are few: a higher chance)
            if self._inject(("status_mismatch",), 3.0):
                sim.at(sim.now + self.recon_rng.randint(2_000, 90_000), self._credit_declined, txn)
            return
        if txn.psp.name == "stripe":  # the charge follows the payment intent
            sim.at(sim.now + rng.randint(50, 2_000), self.send, (txn, "approved", "charge.succeeded"))
        credit = sim.now + rng.randint(2_000, 90_000)
        sim.at(credit, self._credit, txn)
        if not chargeback_after and txn.instrument.kind == "card" and rng.random() < 0.004:
            refund_after = refund_after or rng.randint(2 * DAY, 12 * DAY)
        if (not chargeback_after and not refund_after and not txn.recon
                and txn.psp.name in ("praxis", "stripe") and self._inject(("reversal_not_booked",))):
            # refunded within hours, and the cashier never debits the platform for it
            txn.recon = "reversal_not_booked"
            refund_after = self.recon_rng.randint(HOUR, 12 * HOUR)
        if chargeback_after:
            sim.at(sim.now + chargeback_after, self._reverse, (txn, "chargeback"))
        elif refund_after:
            sim.at(sim.now + refund_after, self._reverse, (txn, "refunded"))

    def _credit(self, txn: Txn) -> None:
        txn.credited_ms = self.sim.now
        txn.booked = txn.amount
        comment = f"Deposit {txn.psp.name} {self.reference(txn)}"
        tenant = txn.acc.server.tenant
        # CoinsPaid reports the coin amount: no amount to compare with the platform's
        inject = "" if txn.recon else self._inject(
            ("missing_on_platform", "duplicate_credit", "missing_at_psp")
            if txn.psp.name == "coinspaid" else
            ("missing_on_platform", "amount_mismatch", "duplicate_credit", "missing_at_psp"))
        # An injected break changes what the platform books, never the simulated world: the
        # client's modelled balance moves as if booked right, so everything after is the same.
        if inject == "missing_on_platform":  # the cashier never books it
            txn.acc.balance = round(txn.acc.balance + txn.amount, 2)
            self._truth(inject, tenant, txn.op_key, txn.op_key, "")
            return
        amount = txn.amount
        if inject == "amount_mismatch":  # booked off by some cents or units
            amount = round(amount + self.recon_rng.choice((-1, 1)) * self.recon_rng.choice(
                (0.01, 0.1, 1.0, 5.0)), 2)
        eid = self.platform_balance(txn.acc, amount, comment, case=txn.case)
        if txn.recon == "currency_mismatch":
            self._truth("currency_mismatch", tenant, txn.op_key, txn.op_key, eid)
        elif inject == "amount_mismatch":
            txn.acc.balance = round(txn.acc.balance - amount + txn.amount, 2)
            self._truth(inject, tenant, txn.op_key, txn.op_key, eid)
        elif inject == "duplicate_credit":  # booked twice
            second = self._book_extra(txn, amount, comment)
            self._truth(inject, tenant, txn.op_key, txn.op_key, second)
        elif inject == "missing_at_psp":  # and a booking naming a payment the provider never had
            fake = f"{self.recon_rng.randint(1_000_000, 9_999_999)}"
            ghost = self._book_extra(txn, amount, f"Deposit {txn.psp.name} X{fake}")
            self._truth(inject, tenant, ghost, "", ghost)

    def _book_extra(self, txn: Txn, amount: float, comment: str) -> str:
        """A platform booking the simulated world does not know of (an injected break)."""
        eid = self.platform_balance(txn.acc, amount, comment, case=txn.case)
        txn.acc.balance = round(txn.acc.balance - amount, 2)
        return eid

    def _credit_declined(self, txn: Txn) -> None:
        eid = self._book_extra(txn, txn.amount, f"Deposit {txn.psp.name} {self.reference(txn)}")
        self._truth("status_mismatch", txn.acc.server.tenant, txn.op_key, txn.op_key, eid)

    def _credit_wire(self, arg: tuple[SimAccount, float, str, Case | None]) -> None:
        acc, amount, ref, case = arg
        self.platform_balance(acc, amount, f"Deposit bank wire {ref}", case=case)

    def _reverse(self, arg: tuple[Txn, str]) -> None:
        """A chargeback or refund of a deposit: the provider's notice, then the broker's debit."""
        txn, status = arg
        sim = self.sim
        injected = txn.recon == "reversal_not_booked"  # a refund the simulated world never had
        if status == "refunded" and txn.psp.name == "praxis":
            draw = self.recon_rng if injected else sim.rng
            txn.ids["refund_tid"] = str(int(txn.ids["tid"]) + draw.randint(1_000, 90_000))
        if status == "refunded" and txn.psp.name not in ("praxis", "nuvei", "stripe", "skrill"):
            return
        if status == "refunded" and txn.psp.name == "skrill":
            return  # Skrill wallet payments are not refunded through status_url
        if txn.psp.name != "nuvei":  # Nuvei's Credit/Chargeback DMNs name the payment only
            self.send((txn, status, ""))  # outside the checksum: the broker confirms them at Nuvei
        word = "Chargeback" if status == "chargeback" else "Refund"
        ref = self.reference(txn)
        if txn.psp.name == "praxis":  # the refund is a Praxis transaction of its own
            ref = txn.ids["refund_tid"] if status == "refunded" else txn.txn_id
        if status == "chargeback":
            reversal = f"psp:{txn.psp.name}:{txn.txn_id}:chargeback"
        elif txn.psp.name == "praxis":
            reversal = f"psp:praxis:{txn.ids['refund_tid']}"
        else:
            reversal = f"psp:{txn.psp.name}:{txn.txn_id}:refund"
        if injected:
            self._truth("reversal_not_booked", txn.acc.server.tenant, reversal, reversal, "")
            return
        if txn.psp.name != "nuvei" and self._inject(("reversal_not_booked",), 3.0):
            self._truth("reversal_not_booked", txn.acc.server.tenant, reversal, reversal, "")
            # the world goes on as if it were booked, when it would have been
            sim.at(sim.now + sim.rng.randint(10 * MINUTE, 20 * HOUR), self._unbooked,
                   (txn.acc, -txn.amount))
            return
        sim.at(sim.now + sim.rng.randint(10 * MINUTE, 20 * HOUR), self._debit_reversal,
               (txn, -txn.amount, f"{word} {txn.psp.name} {ref}", reversal))

    def _unbooked(self, arg: tuple[SimAccount, float]) -> None:
        acc, amount = arg
        acc.balance = round(acc.balance + amount, 2)

    def _debit_reversal(self, arg: tuple[Txn, float, str, str]) -> None:
        txn, amount, comment, reversal = arg
        eid = self.platform_balance(txn.acc, amount, comment, case=txn.case)
        if txn.recon == "currency_mismatch" and txn.psp.name != "nuvei":  # reversed in it too
            self._truth("currency_mismatch", txn.acc.server.tenant, reversal, reversal, eid)
        if txn.psp.name == "nuvei":  # reversed on the platform, never reported by a DMN we read
            self._truth("missing_at_psp", txn.acc.server.tenant, eid, txn.op_key, eid,
                        injected=False)

    def _debit(self, arg: tuple[SimAccount, float, str, Case | None]) -> None:
        acc, amount, comment, case = arg
        self.platform_balance(acc, amount, comment, case=case)

    # -- withdrawals ----------------------------------------------------------------------------

    def withdraw(self, acc: SimAccount, amount: float, *, psp: Psp | None = None,
                 instrument: Instrument | None = None, case: Case | None = None,
                 approve_after: int = 0, method: str = "") -> None:
        """A withdrawal requested now: approved by the back office later, then paid out."""
        sim = self.sim
        rng = sim.rng
        amount = round(amount, 2)
        if amount <= 0:
            return
        delay = approve_after or rng.randint(HOUR, 36 * HOUR)
        sim.at(sim.now + delay, self._approve_withdrawal, (acc, amount, psp, instrument, case, method))

    def _approve_withdrawal(self, arg: tuple[SimAccount, float, Psp | None, Instrument | None,
                                             Case | None, str]) -> None:
        acc, amount, psp, instrument, case, method = arg
        sim = self.sim
        rng = sim.rng
        free = acc.balance
        if acc.positions:
            equity, margin = sim.trading.margin(acc)
            free = min(acc.balance, equity - margin * 1.5)
        amount = round(min(amount, free), 2)
        if amount < 10:
            return  # nothing left to pay out (the client lost it meanwhile)
        psp, instrument = self._route(acc, method, psp, instrument)
        self.seq += rng.randint(1, 9)
        self.withdrawals += 1
        if psp is None or instrument is None:
            self.platform_balance(acc, -amount, f"Withdrawal bank wire WD{self.seq}", case=case)
            return
        txn = new_txn(rng, psp, "withdrawal", acc, amount, instrument, sim.now, self.seq)
        txn.case = case
        if psp.name == "coinspaid":
            txn.coin_amount = self.coin_amount(instrument.coin or "USDT", amount, acc.server.currency)
        short = txn.ref.rsplit(":", 1)[-1]
        self.platform_balance(acc, -amount, f"Withdrawal {psp.name} {short}", case=case)
        t = sim.now + rng.randint(MINUTE, 40 * MINUTE)
        if psp.name in ("stripe", "praxis", "coinspaid") or rng.random() < 0.3:
            sim.at(t, self.send, (txn, "pending", ""))
            t += rng.randint(5 * MINUTE, 20 * HOUR)
        else:
            t += rng.randint(MINUTE, 2 * HOUR)
        outcome = "approved" if rng.random() > 0.01 else "declined"
        sim.at(t, self._payout_done, (txn, outcome))

    def _payout_done(self, arg: tuple[Txn, str]) -> None:
        txn, outcome = arg
        self.send((txn, outcome, ""))
        if outcome != "approved":  # the payout failed: the broker gives the money back
            short = txn.ref.rsplit(":", 1)[-1]
            self.sim.at(self.sim.now + self.sim.rng.randint(10 * MINUTE, 6 * HOUR), self._debit,
                        (txn.acc, txn.amount, f"Returned {txn.psp.name} {short}", txn.case))

    # -- amounts --------------------------------------------------------------------------------

    def coin_amount(self, coin: str, amount: float, currency: str) -> str:
        m = self.sim.market
        usd = amount * m.rate(currency, "USD")
        if coin == "USDT":
            return f"{usd:.2f}"
        sym = m.by_name.get("BTCUSD" if coin == "BTC" else "ETHUSD")
        price = m.mid[sym.idx] if sym is not None else 1.0
        return f"{usd / price:.8f}"

    def typical_amount(self, acc: SimAccount) -> float:
        """A deposit amount: round numbers mostly, scaled to the client."""
        rng = self.sim.rng
        rate = self.sim.market.rate("USD", acc.server.currency)
        base = acc.profile.deposit_median * rng.lognormvariate(0.0, 0.8) * rate
        base = min(base, 25_000.0 * rate)
        if rng.random() < 0.65:
            for step in (10_000, 5_000, 1_000, 500, 100, 50, 10):
                if base >= step * 1.5:
                    return float(max(step, round(base / step) * step))
            return 50.0
        return round(max(base, 20.0), 2)
