"""The decision: a client's facts and a withdrawal request -> `WithdrawalDecision`.

Each check is a small function `(policy, facts, request) -> [Reason]`, run in `CHECKS` order.
The decision is `reject` when a reason says reject, else `hold` when one says hold, else
`approve`. A hold carries what would release it (`release_conditions`, one per hold reason).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from withdrawals.facts import FAILED, ClientFacts, Request
from withdrawals.policy import SEVERITY_RANK, Action, WithdrawalPolicy

Decision = Literal["approve", "hold", "reject"]
ZERO = Decimal(0)


class Reason(BaseModel):
    """Why: a stable `code`, what it asks for, a sentence, what would release a hold, and the
    numbers compared (as text: exact decimals)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    action: Literal["reject", "hold", "approve"]
    text: str
    release: str = ""
    facts: dict[str, str] = {}


class WithdrawalDecision(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    decision_id: str
    tenant: str
    account_key: str
    server: str
    login: int
    request_key: str  # op_key of the request: psp:<provider>:<transaction id>
    request_id: str  # the provider's transaction id
    provider: str
    method: str
    instrument_fingerprint: str
    amount: Decimal  # magnitude, in `currency`
    currency: str
    decision: Decision
    reasons: list[Reason]
    release_conditions: list[str]
    policy_version: int
    requested_at: datetime  # event time of the request
    decided_at: datetime  # event time the decision was made at (the request, or a later change)
    revision: int  # 0 for the first decision; a held request re-decided counts up


def money(x: Decimal) -> str:
    """An amount for a sentence: 12,500.00."""
    return f"{x:,.2f}"


def short(fp: str) -> str:
    return fp[:8] if fp else "(none)"


def _reason(action: Action, code: str, text: str, release: str = "", **facts: object) -> list[Reason]:
    if action == "off":
        return []
    return [Reason(code=code, action=action, text=text, release=release if action == "hold" else "",
                   facts={k: str(v) for k, v in facts.items()})]


# -- the checks -------------------------------------------------------------------------------


def check_account_status(policy: WithdrawalPolicy, facts: ClientFacts, req: Request) -> list[Reason]:
    c = policy.account_status
    status = facts.account.status if facts.account is not None else ""
    if status not in c.statuses:
        return []
    return _reason(c.action, "account_status", f"the account is {status}",
                   "the account is active again", status=status)


def check_kyc(policy: WithdrawalPolicy, facts: ClientFacts, req: Request) -> list[Reason]:
    c = policy.kyc
    status = facts.account.kyc_status if facts.account is not None else ""
    release = "KYC approved (CRM kyc_status: approved)"
    if status == "rejected":
        return _reason(c.action_rejected, "kyc_rejected", "the client's KYC was rejected", release,
                       kyc_status=status)
    if status == "expired":
        return _reason(c.action_expired, "kyc_expired", "the client's KYC has expired",
                       "KYC renewed (CRM kyc_status: approved)", kyc_status=status)
    if status != "approved":
        return _reason(c.action_pending, "kyc_pending",
                       f"the client's KYC is {status or 'unknown (no KYC status received)'}",
                       release, kyc_status=status or "none")
    approved = facts.kyc_approved_at
    if c.valid_days and approved is not None and req.time - approved > timedelta(days=c.valid_days):
        age = (req.time - approved).days
        return _reason(c.action_expired, "kyc_expired",
                       f"KYC approved {approved:%Y-%m-%d}, {age} days ago: older than {c.valid_days:g} days",
                       "KYC renewed (CRM kyc_status: approved)", approved_at=approved.isoformat(),
                       age_days=age, valid_days=c.valid_days)
    return []


def check_sanctions(policy: WithdrawalPolicy, facts: ClientFacts, req: Request) -> list[Reason]:
    c = policy.sanctions
    since = req.time - timedelta(days=c.lookback_days)
    out: list[Reason] = []
    for a in facts.alerts:
        if a.rule_id in c.rules and a.mode == "alert" and a.event_time >= since:
            out += _reason(c.action, "sanctions_hit", f"sanctions alert {a.alert_id}: {a.summary}",
                           f"compliance clears sanctions alert {a.alert_id}", alert_id=a.alert_id,
                           rule_id=a.rule_id)
    for hit in facts.beneficiary_hits:
        out += _reason(c.action, "sanctions_beneficiary", f"beneficiary '{req.beneficiary}' {hit}",
                       "compliance clears the beneficiary's sanctions match", match=hit)
    return out


def check_alerts(policy: WithdrawalPolicy, facts: ClientFacts, req: Request) -> list[Reason]:
    c = policy.alerts
    since = req.time - timedelta(days=c.lookback_days)
    floor = SEVERITY_RANK[c.min_severity]
    by_rule: dict[str, list[str]] = {}
    summaries: dict[str, str] = {}
    for a in facts.alerts:
        if (a.mode != "alert" or a.event_time < since or a.category not in c.categories
                or a.rule_id in c.ignore_rules or a.rule_id in policy.sanctions.rules
                or SEVERITY_RANK.get(a.severity, 0) < floor):
            continue
        by_rule.setdefault(a.rule_id, []).append(a.alert_id)
        summaries[a.rule_id] = a.summary
    out: list[Reason] = []
    for rule_id, ids in sorted(by_rule.items()):
        action: Action = "reject" if rule_id in c.reject_rules else c.action
        out += _reason(action, "open_alert",
                       f"{len(ids)} open {rule_id} alert{'s' if len(ids) > 1 else ''} "
                       f"within {c.lookback_days:g} days: {summaries[rule_id]}",
                       f"compliance closes {rule_id} alert{'s' if len(ids) > 1 else ''} {', '.join(ids)}",
                       rule_id=rule_id, alert_ids=",".join(ids))
    return out


def limit_value(policy: WithdrawalPolicy, amount: Decimal, currency: str) -> Decimal | None:
    """An amount in the money thresholds' units (None: no rate for its currency)."""
    c = policy.amounts
    if currency in c.plain:
        return amount
    rate = c.rates.get(currency)
    return None if rate is None else amount * rate


def _shown(policy: WithdrawalPolicy, req: Request, value: Decimal) -> str:
    converted = "" if value == req.amount else f" (= {money(value)})"
    return f"{money(req.amount)} {req.currency}{converted}"


def check_currency(policy: WithdrawalPolicy, facts: ClientFacts, req: Request) -> list[Reason]:
    if limit_value(policy, req.amount, req.currency) is not None:
        return []
    return _reason(policy.amounts.unknown_action, "amount_unrated",
                   f"amount {req.amount} {req.currency}: no rate to compare it with the limits",
                   f"a payments officer reviews the amount (or amounts.rates gets {req.currency})",
                   currency=req.currency)


def check_limits(policy: WithdrawalPolicy, facts: ClientFacts, req: Request) -> list[Reason]:
    c = policy.limits
    value = limit_value(policy, req.amount, req.currency)
    if value is None:
        return []
    if c.reject_above is not None and value > c.reject_above:
        return _reason("reject", "amount_limit", f"amount {_shown(policy, req, value)} above "
                       f"the {money(c.reject_above)} limit", amount=value, limit=c.reject_above)
    if c.hold_above is not None and value > c.hold_above:
        return _reason("hold", "amount_review", f"amount {_shown(policy, req, value)} above "
                       f"{money(c.hold_above)}: reviewed before payout",
                       f"a payments officer approves the amount above {money(c.hold_above)}",
                       amount=value, limit=c.hold_above)
    return []


def check_free_margin(policy: WithdrawalPolicy, facts: ClientFacts, req: Request) -> list[Reason]:
    c = policy.free_margin
    positions = facts.open_positions
    if c.positions_only and positions == 0:
        return []
    account = facts.account
    free = account.margin_free if account is not None else None
    if free is None and positions == 0 and account is not None:
        free = account.balance
    if free is None:
        return _reason(c.unknown_action, "free_margin_unknown",
                       "the platform has not reported the account's free margin",
                       "the platform reports the account's free margin")
    if req.amount <= free:
        return []
    held = f" with {positions} open position{'s' if positions != 1 else ''}" if positions else ""
    return _reason(c.action, "free_margin", f"amount {money(req.amount)} above the free margin "
                   f"{money(free)}{held}",
                   f"free margin of at least {money(req.amount)} (positions closed or a smaller amount)",
                   amount=req.amount, margin_free=free, open_positions=positions)


def check_return_to_source(policy: WithdrawalPolicy, facts: ClientFacts, req: Request) -> list[Reason]:
    c = policy.return_to_source
    owed = [s for s in facts.sources if s.method in c.methods and s.currency == req.currency
            and s.remaining > c.tolerance]
    here = next((s for s in owed if s.instrument == req.instrument and req.instrument), None)
    others = [s for s in owed if s is not here]
    if not others:
        return []  # to a deposit instrument, or nothing left to return elsewhere
    if here is not None and req.amount <= here.remaining + c.tolerance:
        return []  # within what came from this instrument
    owed_total = sum((s.remaining for s in others), ZERO)
    names = ", ".join(f"{s.method} {short(s.instrument)} {money(s.remaining)}" for s in others)
    to = "a deposit instrument beyond its deposits" if here is not None else (
        f"{req.method or 'an instrument'} {short(req.instrument)} (not a deposit instrument)")
    return _reason(c.action, "return_to_source",
                   f"pays to {to} while {money(owed_total)} {req.currency} of deposits are not "
                   f"returned to their source ({names})",
                   f"the deposits are returned to their source first ({names}), or compliance "
                   "approves the payout to this instrument",
                   owed=owed_total, instruments=len(others))


def check_first_withdrawal(policy: WithdrawalPolicy, facts: ClientFacts, req: Request) -> list[Reason]:
    c = policy.first_withdrawal
    if any(w.status not in FAILED and w.decision != "reject" for w in facts.earlier_withdrawals):
        return []
    value = limit_value(policy, req.amount, req.currency)
    if value is None or value <= c.max_amount:
        return []
    return _reason(c.action, "first_withdrawal", f"first withdrawal, {_shown(policy, req, value)} "
                   f"above {money(c.max_amount)}",
                   "a payments officer confirms the client (call-back) for a first withdrawal above "
                   f"{money(c.max_amount)}", amount=req.amount, limit=c.max_amount)


def check_velocity(policy: WithdrawalPolicy, facts: ClientFacts, req: Request) -> list[Reason]:
    c = policy.velocity
    since = req.time - timedelta(hours=c.window_hours)
    window = [w for w in facts.earlier_withdrawals if w.time > since]
    count = len(window) + 1
    values = [limit_value(policy, w.amount, w.currency) for w in window]
    values.append(limit_value(policy, req.amount, req.currency))
    total = sum((v for v in values if v is not None), ZERO)
    over_count = count > c.max_requests
    # one request alone is the amount limits' business (`limits`), not velocity's
    over_amount = bool(window) and c.max_amount is not None and total > c.max_amount
    if not (over_count or over_amount):
        return []
    clears = min(w.time for w in window) + timedelta(hours=c.window_hours) if window else req.time
    what = []
    if over_count:
        what.append(f"{count} requests (more than {c.max_requests})")
    if over_amount and c.max_amount is not None:
        what.append(f"{money(total)} in all (more than {money(c.max_amount)})")
    return _reason(c.action, "velocity", f"{' and '.join(what)} within {c.window_hours:g} h",
                   f"a payments officer approves, or the earlier requests leave the {c.window_hours:g} h "
                   f"window (from {clears:%Y-%m-%d %H:%M} UTC)",
                   requests=count, total=total)


def check_payout_details(policy: WithdrawalPolicy, facts: ClientFacts, req: Request) -> list[Reason]:
    c = policy.payout_details
    since = req.time - timedelta(hours=c.cooldown_hours)
    recent = [ch for ch in facts.payout_changes if ch.field in c.fields and since <= ch.time <= req.time]
    if not recent:
        return []
    clears = max(ch.time for ch in recent) + timedelta(hours=c.cooldown_hours)
    what = "; ".join(f"{ch.field} changed {ch.time:%Y-%m-%d %H:%M} ({ch.detail})" for ch in recent)
    return _reason(c.action, "payout_details_changed", f"payout details changed within "
                   f"{c.cooldown_hours:g} h: {what}",
                   f"the client confirms the change through a known channel, or it is older than "
                   f"{c.cooldown_hours:g} h (from {clears:%Y-%m-%d %H:%M} UTC)",
                   changes=len(recent))


Check = Callable[[WithdrawalPolicy, ClientFacts, Request], list[Reason]]
CHECKS: tuple[tuple[str, Check], ...] = (
    ("account_status", check_account_status),
    ("kyc", check_kyc),
    ("sanctions", check_sanctions),
    ("alerts", check_alerts),
    ("currency", check_currency),
    ("limits", check_limits),
    ("free_margin", check_free_margin),
    ("return_to_source", check_return_to_source),
    ("first_withdrawal", check_first_withdrawal),
    ("velocity", check_velocity),
    ("payout_details", check_payout_details),
)


def decision_id(request_key: str, revision: int) -> str:
    return hashlib.sha256(f"{request_key}\x1f{revision}".encode()).hexdigest()[:32]


def decide(policy: WithdrawalPolicy, facts: ClientFacts, req: Request,
           decided_at: datetime | None = None, revision: int = 0) -> WithdrawalDecision:
    """Run every check; reject conditions first, then hold, else approve."""
    reasons: list[Reason] = []
    for _, check in CHECKS:
        reasons.extend(check(policy, facts, req))
    rejects = [r for r in reasons if r.action == "reject"]
    holds = [r for r in reasons if r.action == "hold"]
    decision: Decision = "reject" if rejects else "hold" if holds else "approve"
    if decision == "approve":
        reasons = [Reason(code="approved", action="approve",
                          text=f"all {len(CHECKS)} checks passed: {', '.join(n for n, _ in CHECKS)}")]
    else:
        reasons = rejects + holds
    return WithdrawalDecision(
        decision_id=decision_id(req.request_key, revision),
        tenant=req.tenant, account_key=req.account_key, server=req.server, login=req.login,
        request_key=req.request_key, request_id=req.request_id, provider=req.provider,
        method=req.method, instrument_fingerprint=req.instrument, amount=req.amount,
        currency=req.currency, decision=decision, reasons=reasons,
        release_conditions=[r.release for r in holds] if decision == "hold" else [],
        policy_version=policy.version, requested_at=req.time,
        decided_at=decided_at or req.time, revision=revision,
    )
