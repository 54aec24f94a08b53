"""Deposits and withdrawals: the provider's notifications through the transaction's life, and
the balance operation the broker books on the trading platform.

Deposit: (pending) -> approved / declined at the provider; a credited deposit appears on the
platform a few seconds to minutes after approval (MT5 Action 2, MT4 cmd 6, cTrader
BALANCE_DEPOSIT), as brokers' payment integrations do; a card deposit may be refunded or charged
back later. Withdrawal: the back office approves the client's request after hours, debits the
platform balance, then pays out through the provider (pending -> approved). Bank wires go
straight to the platform (no provider notification). Now and then a provider notification is
published twice (the receiver restarted and forgot it had acknowledged it).
"""

from __future__ import annotations

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
from devtools.simulator.world import Account, Instrument, instrument_of

if TYPE_CHECKING:
    from devtools.simulator.brokerage import Brokerage
    from devtools.simulator.typologies import Case

MINUTE = 60_000
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

    # -- choosing how to pay --------------------------------------------------------------------

    def providers(self, tenant: str, method: str) -> list[Psp]:
        return [p for p in self.by_tenant.get(tenant, []) if method in METHODS[p.name]]

    def choose(self, acc: Account, method: str = "") -> tuple[Psp | None, Instrument | None]:
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

    def platform_balance(self, acc: Account, amount: float, comment: str, *, so: bool = False,
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

    def deposit(self, acc: Account, amount: float, *, method: str = "", psp: Psp | None = None,
                instrument: Instrument | None = None, payer: tuple[str, str] | None = None,
                country: str = "", case: Case | None = None, outcome: str = "",
                chargeback_after: int = 0, refund_after: int = 0) -> Txn | None:
        """A deposit requested now; returns its transaction (None for a bank wire)."""
        sim = self.sim
        rng = sim.rng
        if method == "wire":
            psp = instrument = None
        elif psp is None or instrument is None:
            chosen_psp, chosen_inst = self.choose(acc, method)
            psp = psp or chosen_psp
            instrument = instrument or chosen_inst
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
            return
        if txn.psp.name == "stripe":  # the charge follows the payment intent
            sim.at(sim.now + rng.randint(50, 2_000), self.send, (txn, "approved", "charge.succeeded"))
        credit = sim.now + rng.randint(2_000, 90_000)
        sim.at(credit, self._credit, txn)
        if not chargeback_after and txn.instrument.kind == "card" and rng.random() < 0.004:
            refund_after = refund_after or rng.randint(2 * DAY, 12 * DAY)
        if chargeback_after:
            sim.at(sim.now + chargeback_after, self._reverse, (txn, "chargeback"))
        elif refund_after:
            sim.at(sim.now + refund_after, self._reverse, (txn, "refunded"))

    def _credit(self, txn: Txn) -> None:
        short = txn.ref.rsplit(":", 1)[-1]
        txn.credited_ms = self.sim.now
        txn.booked = txn.amount
        self.platform_balance(txn.acc, txn.amount, f"Deposit {txn.psp.name} {short}", case=txn.case)

    def _credit_wire(self, arg: tuple[Account, float, str, Case | None]) -> None:
        acc, amount, ref, case = arg
        self.platform_balance(acc, amount, f"Deposit bank wire {ref}", case=case)

    def _reverse(self, arg: tuple[Txn, str]) -> None:
        """A chargeback or refund of a deposit: the provider's notice, then the broker's debit."""
        txn, status = arg
        sim = self.sim
        if status == "refunded" and txn.psp.name == "praxis":
            txn.ids["refund_tid"] = str(int(txn.ids["tid"]) + sim.rng.randint(1_000, 90_000))
        if status == "refunded" and txn.psp.name not in ("praxis", "nuvei", "stripe", "skrill"):
            return
        if status == "refunded" and txn.psp.name == "skrill":
            return  # Skrill wallet payments are not refunded through status_url
        if txn.psp.name != "nuvei":  # Nuvei's Credit/Chargeback DMNs name the payment only
            self.send((txn, status, ""))  # outside the checksum: the broker confirms them at Nuvei
        short = txn.ref.rsplit(":", 1)[-1]
        word = "Chargeback" if status == "chargeback" else "Refund"
        sim.at(sim.now + sim.rng.randint(10 * MINUTE, 20 * HOUR), self._debit,
               (txn.acc, -txn.amount, f"{word} {txn.psp.name} {short}", txn.case))

    def _debit(self, arg: tuple[Account, float, str, Case | None]) -> None:
        acc, amount, comment, case = arg
        self.platform_balance(acc, amount, comment, case=case)

    # -- withdrawals ----------------------------------------------------------------------------

    def withdraw(self, acc: Account, amount: float, *, psp: Psp | None = None,
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

    def _approve_withdrawal(self, arg: tuple[Account, float, Psp | None, Instrument | None,
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
        if method == "wire":
            psp = instrument = None
        elif psp is None or instrument is None:
            chosen_psp, chosen_inst = self.choose(acc, method)
            psp = psp or chosen_psp
            instrument = instrument or chosen_inst
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
                        (txn.acc, txn.amount, f"Withdrawal returned {short}", txn.case))

    # -- amounts --------------------------------------------------------------------------------

    def coin_amount(self, coin: str, amount: float, currency: str) -> str:
        m = self.sim.market
        usd = amount * m.rate(currency, "USD")
        if coin == "USDT":
            return f"{usd:.2f}"
        sym = m.by_name.get("BTCUSD" if coin == "BTC" else "ETHUSD")
        price = m.mid[sym.idx] if sym is not None else 1.0
        return f"{usd / price:.8f}"

    def typical_amount(self, acc: Account) -> float:
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
