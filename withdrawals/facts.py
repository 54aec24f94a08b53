"""What the decision knows of a client, kept per account in the account's own order.

`WithdrawalBook` is folded record by record (the dataflow's account stage feeds it): the merged
account record, the account-keyed alerts raised on it, its PSP deposits and withdrawals (latest
state of each), and the times its payout details changed. `facts(request)` freezes what a
decision reads into `ClientFacts`, which tests can also build directly.

Bounded by event time (`prune`): payments older than the policy's `history_days`, alerts older
than the alert/sanctions look-backs, payout-detail changes older than their cool-down and held
requests older than `hold_review_days` leave the book.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from schemas.events import Account, BalanceOperation
from withdrawals.policy import WithdrawalPolicy

FAILED = frozenset({"declined", "cancelled", "failed"})  # a payout that did not happen


@dataclass(frozen=True, slots=True)
class AlertFact:
    """An alert raised on the client (from the rules' `Alert`, without the rule engine)."""

    alert_id: str
    rule_id: str
    category: str
    severity: str
    mode: str
    summary: str
    event_time: datetime


@dataclass(slots=True)
class Payment:
    """One PSP deposit or withdrawal, at its latest known state. `amount` is a magnitude."""

    op_key: str
    op_id: str
    kind: str
    amount: Decimal
    currency: str
    status: str
    method: str
    instrument: str  # the instrument fingerprint ("" when the provider names none)
    time: datetime  # event time of the first notification
    version: int
    decision: str = ""  # withdrawals: this engine's latest decision on it


@dataclass(frozen=True, slots=True)
class Request:
    """A withdrawal request: the first notification of a PSP withdrawal."""

    request_key: str  # op_key
    request_id: str  # the provider's transaction id
    tenant: str
    account_key: str
    server: str
    login: int
    provider: str
    method: str
    instrument: str
    beneficiary: str
    amount: Decimal  # magnitude
    currency: str
    status: str
    time: datetime


@dataclass(frozen=True, slots=True)
class Source:
    """One deposit instrument in one currency: approved deposits and what went back to it."""

    instrument: str
    method: str
    currency: str
    deposited: Decimal
    withdrawn: Decimal

    @property
    def remaining(self) -> Decimal:
        return self.deposited - self.withdrawn


@dataclass(frozen=True, slots=True)
class PayoutChange:
    time: datetime
    field: str  # email / name / instrument
    detail: str
    cause: str = ""  # the request that first used a new payout instrument


@dataclass(frozen=True)
class ClientFacts:
    """Everything one decision reads, as of the request (the request itself excluded)."""

    account: Account | None = None
    kyc_approved_at: datetime | None = None
    alerts: tuple[AlertFact, ...] = ()
    sources: tuple[Source, ...] = ()
    earlier_withdrawals: tuple[Payment, ...] = ()  # earlier requests, any outcome
    payout_changes: tuple[PayoutChange, ...] = ()
    open_positions: int | None = None  # None: not known (no position book)
    beneficiary_hits: tuple[str, ...] = ()  # sanctions matches of the request's beneficiary


@dataclass
class Held:
    request: Request
    decision: str
    reason_codes: tuple[str, ...]
    revision: int


@dataclass
class WithdrawalBook:
    """One account's facts, folded in the account's order."""

    account: Account | None = None
    kyc_approved_at: datetime | None = None
    alerts: list[AlertFact] = field(default_factory=list)
    deposits: dict[str, Payment] = field(default_factory=dict)
    withdrawals: dict[str, Payment] = field(default_factory=dict)
    payout_instruments: dict[str, datetime] = field(default_factory=dict)  # fingerprint -> first use
    changes: list[PayoutChange] = field(default_factory=list)
    held: dict[str, Held] = field(default_factory=dict)
    next_prune: datetime | None = None

    # -- folding --------------------------------------------------------------------------------

    def on_account(self, account: Account, time: datetime) -> None:
        """The merged account after an update of event time `time`."""
        before = self.account
        if before is not None:
            for name in ("email", "name"):
                old, new = getattr(before, name), getattr(account, name)
                if old and new and old != new:
                    self.changes.append(PayoutChange(time, name, f"{old} -> {new}"))
        if account.kyc_status == "approved" and (before is None or before.kyc_status != "approved"):
            self.kyc_approved_at = time
        self.account = account

    def on_alert(self, alert: AlertFact) -> None:
        if all(a.alert_id != alert.alert_id for a in self.alerts):
            self.alerts.append(alert)

    def on_payment(self, op: BalanceOperation, account_key: str,
                   policy: WithdrawalPolicy) -> Request | None:
        """Fold a PSP payment; the request when it is a new withdrawal request."""
        if op.platform != "psp" or op.is_deleted or op.kind not in ("deposit", "withdrawal"):
            return None
        book = self.deposits if op.kind == "deposit" else self.withdrawals
        known = book.get(op.op_key)
        if known is not None:
            if op.version >= known.version:  # a provider's retry of an older state does not win
                if op.status != "pending":
                    self.held.pop(op.op_key, None)  # the cashier acted on it: no more review
                known.status, known.version = op.status, op.version
            # a first notice may not name the instrument yet (Stripe's payment intent, then its charge)
            known.instrument = known.instrument or op.instrument_fingerprint
            known.method = known.method or op.method
            if op.kind == "withdrawal" and not known.decision and op.status in policy.request_statuses:
                return self._request(op, account_key)  # e.g. `approved` when only it is a request
            return None
        payment = Payment(op.op_key, op.op_id, op.kind, abs(op.amount), op.currency, op.status,
                          op.method, op.instrument_fingerprint, op.time, op.version)
        book[op.op_key] = payment
        if op.kind == "deposit" or op.status not in policy.request_statuses:
            return None
        return self._request(op, account_key)

    @staticmethod
    def _request(op: BalanceOperation, account_key: str) -> Request:
        return Request(op.op_key, op.op_id, op.tenant, account_key, op.server, op.login, op.provider,
                       op.method, op.instrument_fingerprint, op.payer_name, abs(op.amount),
                       op.currency, op.status, op.time)

    def after_decision(self, request: Request, decision: str) -> None:
        """Remember the decision; a payout instrument used for the first time is a change of
        payout details for the requests after it (unless the client deposited from it)."""
        payment = self.withdrawals.get(request.request_key)
        if payment is not None:
            payment.decision = decision
        fp = request.instrument
        if fp and fp not in self.payout_instruments:
            self.payout_instruments[fp] = request.time
            if not any(d.instrument == fp for d in self.deposits.values()):
                self.changes.append(PayoutChange(request.time, "instrument", f"{request.method} {fp[:8]}",
                                                 request.request_key))

    # -- reading --------------------------------------------------------------------------------

    def facts(self, request: Request, open_positions: int | None,
              beneficiary_hits: tuple[str, ...] = (), as_of: datetime | None = None) -> ClientFacts:
        """What a decision reads: earlier requests than this one; alerts and changes up to
        `as_of` (default: the request's time; later when a held request is re-decided)."""
        cutoff = as_of or request.time
        earlier = tuple(sorted((w for w in self.withdrawals.values()
                                if w.op_key != request.request_key and w.time <= request.time),
                               key=lambda w: w.time))
        return ClientFacts(
            account=self.account,
            kyc_approved_at=self.kyc_approved_at,
            alerts=tuple(a for a in self.alerts if a.event_time <= cutoff),
            sources=self._sources(earlier),
            earlier_withdrawals=earlier,
            payout_changes=tuple(c for c in self.changes
                                 if c.time <= cutoff and c.cause != request.request_key),
            open_positions=open_positions,
            beneficiary_hits=beneficiary_hits,
        )

    def _sources(self, earlier: tuple[Payment, ...]) -> tuple[Source, ...]:
        deposited: dict[tuple[str, str], Decimal] = {}
        methods: dict[tuple[str, str], str] = {}
        for d in self.deposits.values():
            if d.status == "approved" and d.instrument:
                key = (d.instrument, d.currency)
                deposited[key] = deposited.get(key, Decimal(0)) + d.amount
                methods[key] = d.method
        withdrawn: dict[tuple[str, str], Decimal] = {}
        for w in earlier:
            if w.status not in FAILED and w.decision != "reject":
                key = (w.instrument, w.currency)
                withdrawn[key] = withdrawn.get(key, Decimal(0)) + w.amount
        return tuple(Source(inst, methods[(inst, cur)], cur, amount,
                            withdrawn.get((inst, cur), Decimal(0)))
                     for (inst, cur), amount in sorted(deposited.items()))

    # -- bounds ---------------------------------------------------------------------------------

    def prune(self, now: datetime, policy: WithdrawalPolicy) -> None:
        """Forget what no check of `policy` looks at any more (at most once an hour)."""
        if self.next_prune is not None and now < self.next_prune:
            return
        self.next_prune = now + timedelta(hours=1)
        history = now - timedelta(days=policy.history_days)
        for book in (self.deposits, self.withdrawals):
            for key in [k for k, p in book.items() if p.time < history]:
                del book[key]
        self.payout_instruments = {k: t for k, t in self.payout_instruments.items() if t >= history}
        alert_days = max(policy.alerts.lookback_days, policy.sanctions.lookback_days)
        sanctions = set(policy.sanctions.rules)
        self.alerts = [a for a in self.alerts if a.event_time >= now - timedelta(days=(
            alert_days if a.rule_id in sanctions else policy.alerts.lookback_days))]
        horizon = now - timedelta(hours=policy.payout_details.cooldown_hours)
        self.changes = [c for c in self.changes if c.time >= horizon]
        review = now - timedelta(days=policy.hold_review_days)
        self.held = {k: h for k, h in self.held.items() if h.request.time >= review}
