"""AML rules. Money movements are read from the platform ledger (balance operations of kind
`balance`: what was really credited or debited, in the account currency) and payment details
(instrument, payer, country, chargebacks) from the payment providers' operations."""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from risk_rules import names
from risk_rules.engine import Context, Hit, Rule, fmt, register
from risk_rules.rulekit import P, SharedUse, SharedUseParams, note_use, prune
from schemas.events import Account, BalanceOperation, Deal, Login

PLATFORMS = ("mt4", "mt5", "ctrader")


def is_ledger(op: BalanceOperation) -> bool:
    """A deposit/withdrawal as the trading platform booked it."""
    return op.platform in PLATFORMS and op.kind == "balance" and op.amount != 0


def psp_approved(op: BalanceOperation) -> bool:
    return op.platform == "psp" and op.status == "approved" and op.kind in ("deposit", "withdrawal")


def normalise_name(name: str) -> str:
    """ASCII, lower-case, one space between words, in any script (`names.normalise`)."""
    return names.normalise(name)


# --------------------------------------------------------------------------- large transaction


class LargeParams(P):
    threshold: Decimal = Field(default=Decimal(50_000), gt=0, description="account currency")
    withdrawals: bool = False


@register
class LargeTransaction(Rule):
    rule_id = "large_transaction"
    category = "aml"
    Params = LargeParams
    p: LargeParams

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        if not is_ledger(op) or (op.amount < 0 and not self.p.withdrawals):
            return []
        if abs(op.amount) < self.p.threshold:
            return []
        what = "deposit" if op.amount > 0 else "withdrawal"
        return [
            Hit(
                account,
                op.tenant,
                f"{what} of {fmt(abs(op.amount))} {op.currency} at or above {fmt(self.p.threshold)}",
                {"amount": float(op.amount), "threshold": float(self.p.threshold), "currency": op.currency},
                [op.op_key],
                op.time,
            )
        ]


# --------------------------------------------------------------------------- structuring


class BandParams(P):
    """The band just under the reporting threshold (`in_band`), of both structuring rules."""

    threshold: Decimal = Field(default=Decimal(10_000), gt=0, description="reporting threshold")
    lower_ratio: float = Field(default=0.9, gt=0, lt=1, description="a deposit counts from this share")


def in_band(op: BalanceOperation, p: BandParams) -> bool:
    """A ledger deposit just under the reporting threshold (from `lower_ratio` of it)."""
    if not is_ledger(op) or op.amount <= 0:
        return False
    return p.threshold * Decimal(str(p.lower_ratio)) <= op.amount < p.threshold


class StructuringParams(BandParams):
    min_count: int = Field(default=3, ge=2)
    window_hours: float = Field(default=48, gt=0)


@register
class Structuring(Rule):
    rule_id = "structuring"
    category = "aml"
    Params = StructuringParams
    p: StructuringParams

    def __init__(self, params: StructuringParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.by_account: dict[str, deque[tuple[datetime, Decimal, str]]] = defaultdict(deque)

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        p = self.p
        if not in_band(op, p):
            return []
        q = self.by_account[account]
        q.append((op.time, op.amount, op.op_key))
        prune(q, op.time, timedelta(hours=p.window_hours))
        if len(q) < p.min_count:
            return []
        total = sum(a for _, a, _ in q)
        hours = (q[-1][0] - q[0][0]).total_seconds() / 3600
        return [
            Hit(
                account,
                op.tenant,
                f"{len(q)} deposits totalling {fmt(total)} {op.currency} in {hours:.0f} h, each between "
                f"{p.lower_ratio:.0%} and 100% of {fmt(p.threshold)}",
                {
                    "deposits": len(q),
                    "total": float(total),
                    "threshold": float(p.threshold),
                    "lower_ratio": p.lower_ratio,
                    "window_hours": p.window_hours,
                    "hours": round(hours, 2),
                    "min_count": p.min_count,
                },
                [k for _, _, k in q],
                op.time,
                q[0][0],
            )
        ]

    def on_retract(self, op_key: str, account: str) -> None:
        forget(self.by_account.get(account), op_key)


def forget(q: deque[Any] | None, op_key: str) -> None:
    """Take a deleted or corrected operation out of a window of (time, amount, op key, ...)."""
    if q:
        kept = [e for e in q if e[2] != op_key]
        if len(kept) != len(q):
            q.clear()
            q.extend(kept)


# --------------------------------------------------------------------------- structuring across accounts


class AcrossParams(BandParams):
    min_count: int = Field(default=3, ge=2, description="deposits in the band, all accounts together")
    min_accounts: int = Field(default=2, ge=2, description="of the same client")
    window_hours: float = Field(default=48, gt=0)


@register
class StructuringAcrossAccounts(Rule):
    """Deposits just under the reporting threshold spread over one client's accounts (on any
    platform: the client is the CRM id, else the normalised name + date of birth), so that no
    account alone shows `structuring`."""

    rule_id = "structuring_across_accounts"
    keyed_by = "tenant"  # the accounts of one client may live on any server of the tenant
    category = "aml"
    Params = AcrossParams
    p: AcrossParams

    def __init__(self, params: AcrossParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        # (client, currency) -> deposits in the band: (time, amount, op key, account)
        self.by_client: dict[tuple[str, str], deque[tuple[datetime, Decimal, str, str]]] = defaultdict(deque)

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        p = self.p
        if not in_band(op, p):
            return []
        client = self.ctx.person(account)
        q = self.by_client[(client, op.currency)]
        q.append((op.time, op.amount, op.op_key, account))
        prune(q, op.time, timedelta(hours=p.window_hours))
        accounts = sorted({a for _, _, _, a in q})
        if len(q) < p.min_count or len(accounts) < p.min_accounts:
            return []
        total = sum(a for _, a, _, _ in q)
        hours = (q[-1][0] - q[0][0]).total_seconds() / 3600
        return [
            Hit(
                f"client:{client}",
                op.tenant,
                f"{len(q)} deposits totalling {fmt(total)} {op.currency} over {len(accounts)} accounts of "
                f"one client in {hours:.0f} h, each between {p.lower_ratio:.0%} and 100% of "
                f"{fmt(p.threshold)}",
                {
                    "deposits": len(q),
                    "accounts": accounts,
                    "total": float(total),
                    "threshold": float(p.threshold),
                    "lower_ratio": p.lower_ratio,
                    "min_count": p.min_count,
                    "min_accounts": p.min_accounts,
                    "window_hours": p.window_hours,
                    "hours": round(hours, 2),
                },
                [k for _, _, k, _ in q],
                op.time,
                q[0][0],
            )
        ]

    def on_retract(self, op_key: str, account: str) -> None:
        client = self.ctx.person(account)
        for (who, _), q in self.by_client.items():
            if who == client:
                forget(q, op_key)


# --------------------------------------------------------------------------- one deposit out in parts


class SplitParams(P):
    min_deposit: Decimal = Field(default=Decimal(500), ge=0, description="account currency")
    min_parts: int = Field(default=3, ge=2, description="withdrawals taking the deposit out")
    withdraw_ratio: float = Field(default=0.8, gt=0, le=1, description="parts together / deposit")
    max_lots: Decimal = Field(default=Decimal("0.1"), ge=0, description="lots traded since the deposit")
    window_hours: float = Field(default=168, gt=0, description="from the deposit to the last part")


@register
class SplitWithdrawal(Rule):
    """One deposit withdrawn again in several smaller parts with (almost) no trading in between:
    each part stays under what `deposit_withdraw_no_trading` looks for."""

    rule_id = "split_withdrawal"
    category = "aml"
    Params = SplitParams
    p: SplitParams

    def __init__(self, params: SplitParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        # account -> its deposits in the window, each with the withdrawals and lots since it
        self.open: dict[str, list[_Taken]] = {}

    def on_deal(self, deal: Deal, account: str) -> list[Hit]:
        if deal.entry in ("in", "inout"):
            for taken in self.open.get(account, ()):
                taken.lots += deal.lots
        return []

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        p = self.p
        if not is_ledger(op):
            return []
        window = timedelta(hours=p.window_hours)
        deposits = [d for d in self.open.get(account, ()) if op.time - d.time <= window
                    and d.lots <= p.max_lots]
        self.open[account] = deposits
        if op.amount > 0:
            if op.amount >= p.min_deposit:
                deposits.append(_Taken(op.time, op.amount, op.op_key))
            return []
        if not deposits or self.ctx.is_reversal(account, op):
            return []
        hits: list[Hit] = []
        done_at = op.time
        for d in deposits:
            d.parts.append((op.time, -op.amount, op.op_key))
            out = sum(a for _, a, _ in d.parts)
            ratio = float(out / d.amount)
            if hits or len(d.parts) < p.min_parts or ratio < p.withdraw_ratio:
                continue
            hours = (op.time - d.time).total_seconds() / 3600
            done_at = d.time
            hits.append(Hit(
                account,
                op.tenant,
                f"deposit of {fmt(d.amount)} {op.currency} withdrawn in {len(d.parts)} parts "
                f"({ratio:.0%}) within {hours:.0f} h after {fmt(d.lots)} lots traded",
                {
                    "deposit": float(d.amount),
                    "parts": len(d.parts),
                    "withdrawn": float(out),
                    "ratio": round(ratio, 4),
                    "min_parts": p.min_parts,
                    "withdraw_ratio": p.withdraw_ratio,
                    "lots": float(d.lots),
                    "max_lots": float(p.max_lots),
                    "hours": round(hours, 2),
                },
                [d.op_key] + [k for _, _, k in d.parts],
                op.time,
                d.time,
            ))
        if hits:  # that deposit is out: it and the ones before it are done
            self.open[account] = [d for d in deposits if d.time > done_at]
        return hits

    def on_retract(self, op_key: str, account: str) -> None:
        deposits = self.open.get(account)
        if deposits:
            self.open[account] = [d for d in deposits if d.op_key != op_key]
            for d in self.open[account]:
                d.parts[:] = [x for x in d.parts if x[2] != op_key]


@dataclass(slots=True)
class _Taken:
    """A deposit `split_withdrawal` watches: the withdrawals and the lots opened since it."""

    time: datetime
    amount: Decimal
    op_key: str
    parts: list[tuple[datetime, Decimal, str]] = field(default_factory=list)
    lots: Decimal = Decimal(0)


# --------------------------------------------------------------------------- in/out with little trading


class InOutParams(P):
    lookback_hours: float = Field(default=96, gt=0)
    min_deposit: Decimal = Field(default=Decimal(100), ge=0)
    withdraw_ratio: float = Field(default=0.8, gt=0, le=1, description="withdrawal / deposits")
    max_lots: Decimal = Field(default=Decimal("0.1"), ge=0, description="lots traded in between")


@register
class DepositWithdrawNoTrading(Rule):
    rule_id = "deposit_withdraw_no_trading"
    category = "aml"
    Params = InOutParams
    p: InOutParams

    def __init__(self, params: InOutParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.deposits: dict[str, deque[tuple[datetime, Decimal, str]]] = defaultdict(deque)
        self.lots: dict[str, deque[tuple[datetime, Decimal]]] = defaultdict(deque)

    def on_retract(self, op_key: str, account: str) -> None:
        forget(self.deposits.get(account), op_key)

    def on_deal(self, deal: Deal, account: str) -> list[Hit]:
        if account in self.deposits and deal.entry in ("in", "inout"):
            q = self.lots[account]
            q.append((deal.time, deal.lots))
            prune(q, deal.time, timedelta(hours=self.p.lookback_hours))
        return []

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        if not is_ledger(op):
            return []
        window = timedelta(hours=self.p.lookback_hours)
        deps = self.deposits[account]
        prune(deps, op.time, window)
        if op.amount > 0:
            deps.append((op.time, op.amount, op.op_key))
            return []
        if self.ctx.is_reversal(account, op):  # the broker booking a chargeback or refund
            return []
        out = -op.amount
        trades = self.lots.get(account, ())
        # the latest deposits first: is there a run of recent deposits that this withdrawal takes
        # (nearly) all of, with (almost) no trading since the first of them?
        found = None
        total = Decimal(0)
        for i in range(len(deps) - 1, -1, -1):
            total += deps[i][1]
            lots = sum((lot for t, lot in trades if t >= deps[i][0]), Decimal(0))
            if lots > self.p.max_lots:
                break
            if total >= self.p.min_deposit and float(out / total) >= self.p.withdraw_ratio:
                found = (i, total, lots)
        if found is None:
            return []
        first, total, lots = found
        ratio = float(out / total)
        deps_used = list(deps)[first:]
        hours = (op.time - deps_used[0][0]).total_seconds() / 3600
        evidence = [k for _, _, k in deps_used] + [op.op_key]
        deps.clear()
        return [
            Hit(
                account,
                op.tenant,
                f"withdrawal of {fmt(out)} {op.currency} ({ratio:.0%} of {fmt(total)} deposited "
                f"{hours:.0f} h earlier) after {fmt(lots)} lots traded",
                {
                    "withdrawal": float(out),
                    "deposits": float(total),
                    "ratio": round(ratio, 4),
                    "withdraw_ratio": self.p.withdraw_ratio,
                    "lots": float(lots),
                    "max_lots": float(self.p.max_lots),
                    "hours": round(hours, 2),
                },
                evidence,
                op.time,
            )
        ]


# --------------------------------------------------------------------------- rapid cycling


class CyclingParams(P):
    window_hours: float = Field(default=168, gt=0)
    min_cycles: int = Field(default=3, ge=2)


@register
class RapidCycling(Rule):
    """Repeated deposit -> withdrawal round trips on one account within a week."""

    rule_id = "rapid_in_out_cycling"
    category = "aml"
    Params = CyclingParams
    p: CyclingParams

    def __init__(self, params: CyclingParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.last_sign: dict[str, int] = {}
        self.cycles: dict[str, deque[tuple[datetime, str]]] = defaultdict(deque)

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        if not is_ledger(op):
            return []
        sign = 1 if op.amount > 0 else -1
        prev = self.last_sign.get(account)
        self.last_sign[account] = sign
        if not (prev == 1 and sign == -1):
            return []
        q = self.cycles[account]
        q.append((op.time, op.op_key))
        prune(q, op.time, timedelta(hours=self.p.window_hours))
        if len(q) < self.p.min_cycles:
            return []
        return [
            Hit(
                account,
                op.tenant,
                f"{len(q)} deposit-withdrawal cycles in {self.p.window_hours:.0f} h "
                f"(threshold {self.p.min_cycles})",
                {"cycles": len(q), "min_cycles": self.p.min_cycles, "window_hours": self.p.window_hours},
                [k for _, k in q],
                op.time,
                q[0][0],
            )
        ]


# --------------------------------------------------------------------------- payer name


class PayerParams(P):
    min_score: float = Field(default=85, ge=0, le=100, description="token-aware similarity 0-100")


def name_score(a: str, b: str) -> float:
    """Token-aware similarity 0..100 of two person names, order-free, with the normalisation the
    sanctions screening uses (scripts, ß/ł/ø/Đ, look-alikes, joined tokens): every token of the
    shorter name must find a counterpart in the other and the weakest pair decides, so a relative
    with the same surname does not pass; a missing middle name is fine, an initial matches its
    name, a payer giving only the surname passes."""
    x, y = names.tokens(a), names.tokens(b)
    if not x or not y:
        return 100.0
    return names.compare(x, y, partial=True, margin=0.0)


@register
class PayerNameMismatch(Rule):
    rule_id = "payer_name_mismatch"
    category = "aml"
    Params = PayerParams
    p: PayerParams

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        if not psp_approved(op) or op.amount <= 0 or not op.payer_name:
            return []
        acc = self.ctx.accounts.get(account)
        if acc is None or not acc.name:
            return []
        score = name_score(op.payer_name, acc.name)
        if score >= self.p.min_score:
            return []
        return [
            Hit(
                account,
                op.tenant,
                f"deposit of {fmt(op.amount)} {op.currency} paid by '{op.payer_name}', account holder "
                f"'{acc.name}' (name similarity {score:.1f} < {self.p.min_score:.0f})",
                {
                    "payer_name": op.payer_name,
                    "account_name": acc.name,
                    "score": round(score, 1),
                    "min_score": self.p.min_score,
                    "amount": float(op.amount),
                },
                [op.op_key],
                op.time,
                cooldown_key=f"{account}|{normalise_name(op.payer_name)}",  # per third party
            )
        ]


# --------------------------------------------------------------------------- payment instruments


class WithdrawalRouteParams(P):
    check_country: bool = True
    broker_address_providers: list[str] = Field(
        default_factory=lambda: ["coinspaid"], description="providers whose deposit instrument is "
        "an address the broker gave the client (not where the money came from): not compared")


@register
class WithdrawalToOtherInstrument(Rule):
    """A payout to an instrument (or payer country) the account never deposited from."""

    rule_id = "withdrawal_other_instrument"
    category = "aml"
    Params = WithdrawalRouteParams
    p: WithdrawalRouteParams

    def __init__(self, params: WithdrawalRouteParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.instruments: dict[str, set[str]] = defaultdict(set)
        self.countries: dict[str, set[str]] = defaultdict(set)

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        if not psp_approved(op):
            return []
        if op.amount > 0:
            if op.instrument_fingerprint and op.provider not in self.p.broker_address_providers:
                self.instruments[account].add(op.instrument_fingerprint)
            if op.country:
                self.countries[account].add(op.country)
            return []
        known, countries = self.instruments.get(account), self.countries.get(account)
        if not known or not op.instrument_fingerprint:
            return []
        new_instrument = op.instrument_fingerprint not in known
        new_country = bool(self.p.check_country and op.country and countries and op.country not in countries)
        if not (new_instrument or new_country):
            return []
        what = "an instrument" if new_instrument else "a country"
        return [
            Hit(
                account,
                op.tenant,
                f"withdrawal of {fmt(-op.amount)} {op.currency} via {op.method or op.provider} to {what} "
                f"not used for any of the account's {len(known)} deposit instruments",
                {
                    "new_instrument": new_instrument,
                    "new_country": new_country,
                    "country": op.country,
                    "deposit_countries": sorted(countries or ()),
                    "deposit_instruments": len(known),
                },
                [op.op_key],
                op.time,
            )
        ]


class SharedInstrumentParams(SharedUseParams):
    min_accounts: int = Field(default=3, ge=2, description="different clients")
    window_hours: float = Field(default=720, gt=0)


@register
class SharedInstrument(SharedUse):
    rule_id = "shared_instrument"
    keyed_by = "instrument"
    category = "aml"
    Params = SharedInstrumentParams
    p: SharedInstrumentParams

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        fp = op.instrument_fingerprint
        if op.platform != "psp" or not fp or op.status not in ("approved", "pending"):
            return []
        return self.used(op, fp, account, op.op_key)

    def summary(self, record: Login | BalanceOperation, key: str, clients: int, accounts: int) -> str:
        method = record.method if isinstance(record, BalanceOperation) else ""
        return f"one {method or 'payment'} instrument used by {clients} clients ({accounts} accounts)"


class ManyInstrumentsParams(P):
    max_instruments: int = Field(default=3, ge=1, description="alert above this many in the window")
    window_hours: float = Field(default=24, gt=0)


@register
class ManyInstruments(Rule):
    rule_id = "many_instruments"
    category = "aml"
    Params = ManyInstrumentsParams
    p: ManyInstrumentsParams

    def __init__(self, params: ManyInstrumentsParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.seen: dict[str, dict[str, tuple[datetime, str]]] = defaultdict(dict)

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        if not psp_approved(op) or not op.instrument_fingerprint:
            return []
        seen = self.seen[account]
        note_use(seen, op.instrument_fingerprint, op.time, op.op_key, self.p.window_hours)
        if len(seen) <= self.p.max_instruments:
            return []
        return [
            Hit(
                account,
                op.tenant,
                f"{len(seen)} payment instruments used in {self.p.window_hours:.0f} h "
                f"(more than {self.p.max_instruments})",
                {"instruments": len(seen), "max_instruments": self.p.max_instruments},
                sorted(v[1] for v in seen.values()),
                op.time,
            )
        ]


# --------------------------------------------------------------------------- dormant account


class DormantParams(P):
    dormant_days: float = Field(default=180, gt=0)
    min_amount: Decimal = Field(default=Decimal(1000), ge=0)
    trigger: Literal["withdrawal", "any"] = Field(
        default="withdrawal", description="withdrawal: money taken out after waking (the pass-through "
        "pattern); any: also the first deposit")
    window_days: float = Field(default=30, gt=0, description="how long after waking money movement counts")


@register
class DormantReactivation(Rule):
    """Money movement on an account with no activity for `dormant_days`. Last activity is what
    this engine has seen (logins, deals, money), or before that the platform's last login
    (`Account.last_access`: MT5 LastAccess, MT4 lastdate)."""

    rule_id = "dormant_reactivation"
    category = "aml"
    Params = DormantParams
    p: DormantParams

    def __init__(self, params: DormantParams, ctx: Context) -> None:
        super().__init__(params, ctx)
        self.last_activity: dict[str, datetime] = {}
        self.reactivated: dict[str, tuple[datetime, float, str]] = {}

    def _touch(self, account: str, t: datetime, key: str) -> None:
        last = self.last_activity.get(account)
        if last is not None and (t - last).total_seconds() / 86400 >= self.p.dormant_days:
            self.reactivated[account] = (t, (t - last).total_seconds() / 86400, key)
        if last is None or t > last:
            self.last_activity[account] = t

    def on_account(self, account: Account, previous: Account | None) -> list[Hit]:
        # what the platform knew before we watched: its last login (LastAccess / lastdate);
        # once this engine has seen activity itself, that is what counts
        key = account.account_key
        if account.last_access is not None and key not in self.last_activity:
            self.last_activity[key] = account.last_access
        return []

    def on_login(self, login: Login, account: str) -> list[Hit]:
        if login.kind == "login":
            self._touch(account, login.time, login.login_key)
        return []

    def on_deal(self, deal: Deal, account: str) -> list[Hit]:
        self._touch(account, deal.time, deal.deal_key)
        return []

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        if not is_ledger(op):
            return []
        self._touch(account, op.time, op.op_key)
        react = self.reactivated.get(account)
        if (
            react is None
            or abs(op.amount) < self.p.min_amount
            or (self.p.trigger == "withdrawal" and op.amount >= 0)
            or op.time - react[0] > timedelta(days=self.p.window_days)
        ):
            return []
        return [
            Hit(
                account,
                op.tenant,
                f"{fmt(abs(op.amount))} {op.currency} {'out' if op.amount < 0 else 'in'} "
                f"{(op.time - react[0]).days} days after the "
                f"account woke from {react[1]:.0f} days without activity "
                f"(threshold {self.p.dormant_days:.0f})",
                {
                    "dormant_days": round(react[1], 1),
                    "threshold_days": self.p.dormant_days,
                    "amount": float(op.amount),
                    "trigger": self.p.trigger,
                },
                [react[2], op.op_key],
                op.time,
            )
        ]


# --------------------------------------------------------------------------- jurisdictions


@register
class HighRiskJurisdiction(Rule):
    """Account country, payer/card country or login IP country in the configured list."""

    rule_id = "high_risk_jurisdiction"
    category = "aml"

    def _hit(self, account: str, tenant: str, country: str, via: str, key: str, t: datetime) -> list[Hit]:
        if country not in self.ctx.high_risk_countries:
            return []
        return [
            Hit(
                account,
                tenant,
                f"{via} country {country} is on the high-risk jurisdiction list",
                {"country": country, "via": via, "list": sorted(self.ctx.high_risk_countries)},
                [key],
                t,
            )
        ]

    def on_account(self, account: Account, previous: Account | None) -> list[Hit]:
        if not account.country or (previous is not None and previous.country == account.country):
            return []
        return self._hit(
            account.account_key,
            account.tenant,
            account.country,
            "account",
            account.account_key,
            account.updated_at,
        )

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        if op.platform != "psp" or not op.country or op.status != "approved":
            return []
        return self._hit(account, op.tenant, op.country, "payment", op.op_key, op.time)

    def on_login(self, login: Login, account: str) -> list[Hit]:
        geo = self.ctx.geo
        if login.kind != "login" or not login.ip or geo is None:
            return []
        point = geo(login.ip)
        if point is None:
            return []
        return self._hit(account, login.tenant, point.country, "login IP", login.login_key, login.time)


# --------------------------------------------------------------------------- chargeback


@register
class Chargeback(Rule):
    rule_id = "chargeback"
    category = "aml"

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        if op.platform != "psp" or not (op.status == "chargeback" or op.kind == "chargeback"):
            return []
        # the deposit marked charged back and its reversing entry are one fact: one payment
        payment = op.op_key.removesuffix(":chargeback")
        return [
            Hit(
                account,
                op.tenant,
                f"chargeback of {fmt(abs(op.amount))} {op.currency} via {op.provider}",
                {"amount": float(abs(op.amount)), "provider": op.provider, "method": op.method},
                [payment],
                op.time,
            )
        ]
