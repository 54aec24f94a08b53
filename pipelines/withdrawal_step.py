"""Withdrawal decisions in the account stage (`pipelines/account_stage.py`).

The account stage hands each record of an account, in read order, to `WithdrawalStep` after
its rule engine has seen it, with the alerts that record raised. The step keeps the account's
`withdrawals.WithdrawalBook` in the account's slot and decides each new PSP withdrawal request
with the policy: the decision sees the account record, the position book's open positions and
every account-keyed alert raised up to and including the request itself.

What the step does not see: alerts of the linked rules (keyed by IP, device, instrument or
tenant: `shared_ip`, `shared_instrument`, `mirror_trades`, ...), which are raised in a later
stage. A held request is re-decided when its account record changes or an alert is raised on
it (`hold_review_days` long); time alone (a velocity window passing) re-decides nothing.

Rows go to `withdrawal_decisions_store` (latest revision per request) and, on a Kafka run, to
the `withdrawal_decisions` topic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from pipelines.metrics import WITHDRAWAL_DECISIONS
from risk_rules import names
from risk_rules.alerts import Alert
from risk_rules.engine import resolved_account_key
from schemas.events import Account, AccountUpdate, BalanceOperation
from withdrawals import AlertFact, WithdrawalBook, WithdrawalDecision, WithdrawalPolicy, decide
from withdrawals.facts import Held, Request

if TYPE_CHECKING:
    from pipelines.account_stage import AccountSlot

DECISION_COLUMNS: tuple[str, ...] = (
    "request_key", "tenant", "account_key", "server", "login", "request_id", "provider", "method",
    "instrument_fingerprint", "amount", "currency", "decision", "reason_codes", "reasons",
    "release_conditions", "policy_version", "requested_at", "decided_at", "revision", "decision_id",
)
ACCOUNT_PLATFORMS = frozenset({"mt4", "mt5", "ctrader"})  # an account key: platform:server:login
TOPIC = "withdrawal_decisions"


class Slots(Protocol):
    """The account stage's shard (`AccountShard`): its slots by account key."""

    slots: dict[str, AccountSlot]

    def slot(self, key: str) -> AccountSlot: ...


class WithdrawalStep:
    """Folds an account's records into its `WithdrawalBook` and decides its withdrawal requests."""

    def __init__(self, policy: WithdrawalPolicy, servers: Mapping[str, str], positions_known: bool,
                 screener: Any = None, min_score: float = 88) -> None:
        self.policy = policy
        self.servers = servers  # server -> platform: a payment names only the server
        self.positions_known = positions_known  # the stage keeps position books
        self.screener = screener  # risk_rules.sanctions.Screener, for the beneficiary's name
        self.min_score = min_score

    def __call__(self, shard: Slots, record: Any, account: Account | None, alerts: Sequence[Alert],
                 out: list[WithdrawalDecision]) -> None:
        for alert in alerts:  # raised by this record: they count for its own decision
            if alert.subject.split(":", 1)[0] not in ACCOUNT_PLATFORMS:
                continue  # not about an account (account-keyed rules name the account)
            slot = shard.slot(alert.subject)
            slot.payouts = slot.payouts or WithdrawalBook()
            slot.payouts.on_alert(AlertFact(alert.alert_id, alert.rule_id, alert.category,
                                            alert.severity, alert.mode, alert.summary,
                                            alert.event_time))
            if not isinstance(record, AccountUpdate):
                self._review(slot, record.time, out)
        if isinstance(record, AccountUpdate) and account is not None:
            slot = shard.slot(record.account_key)
            book = slot.payouts = slot.payouts or WithdrawalBook()
            before = book.account
            book.on_account(account, record.time)
            if book.held and _changed(before, account, book):
                self._review(slot, record.time, out)
        elif isinstance(record, BalanceOperation) and record.platform == "psp":
            key = resolved_account_key(record.platform, record.server, record.login, self.servers)
            slot = shard.slot(key)
            book = slot.payouts = slot.payouts or WithdrawalBook()
            book.prune(record.time, self.policy)
            request = book.on_payment(record, key, self.policy)
            if request is not None:
                decision = decide(self.policy, book.facts(request, self._positions(slot),
                                                          self._screen(request, book)), request)
                book.after_decision(request, decision.decision)
                if decision.decision == "hold":
                    book.held[request.request_key] = Held(request, "hold", _codes(decision), 0)
                out.append(decision)

    def _review(self, slot: AccountSlot, now: Any, out: list[WithdrawalDecision]) -> None:
        """Re-decide the account's held requests after a change; a new revision when it differs."""
        book = slot.payouts
        if book is None or not book.held:
            return
        for key, held in list(book.held.items()):
            facts = book.facts(held.request, self._positions(slot), self._screen(held.request, book),
                               as_of=now)
            decision = decide(self.policy, facts, held.request, decided_at=now,
                              revision=held.revision + 1)
            if (decision.decision, _codes(decision)) == (held.decision, held.reason_codes):
                continue
            out.append(decision)
            book.after_decision(held.request, decision.decision)
            if decision.decision == "hold":
                book.held[key] = Held(held.request, "hold", _codes(decision), decision.revision)
            else:
                del book.held[key]

    def _positions(self, slot: AccountSlot) -> int | None:
        if not self.positions_known:
            return None
        if slot.book is None or slot.book.book is None:
            return 0
        return len(slot.book.book.positions())

    def _screen(self, request: Request, book: WithdrawalBook) -> tuple[str, ...]:
        """Sanctions matches of the beneficiary's name (a pending payout is not screened by the
        sanctions rule, which reads approved payments); the holder is screened by the rule."""
        name = request.beneficiary
        if self.screener is None or not name:
            return ()
        holder = book.account.name if book.account is not None else ""
        if holder and names.normalise(holder) == names.normalise(name):
            return ()
        return tuple(f"matches {m.entry.source} entry {m.entry.entry_id} '{m.listed_name}' "
                     f"(score {m.score:.0f})" for m in self.screener.screen(name, None, self.min_score))


# what a decision reads of the account record; margin only matters to a request held for it
_READ = ("kyc_status", "status", "name", "email")
_MARGIN = ("margin_free", "balance")


def _changed(before: Account | None, after: Account, book: WithdrawalBook) -> bool:
    """Whether an account update can change a held request's decision (MT5 sends account states
    every few minutes: re-deciding on each would be most of this step's work)."""
    if before is None or any(getattr(before, f) != getattr(after, f) for f in _READ):
        return True
    if any(getattr(before, f) != getattr(after, f) for f in _MARGIN):
        return any(code.startswith("free_margin") for h in book.held.values() for code in h.reason_codes)
    return False


def _codes(decision: WithdrawalDecision) -> tuple[str, ...]:
    return tuple(r.code for r in decision.reasons)


def decision_row(d: WithdrawalDecision) -> tuple[Any, ...]:
    """A decision in `DECISION_COLUMNS` order."""
    WITHDRAWAL_DECISIONS.labels(d.decision).inc()
    return (
        d.request_key, d.tenant, d.account_key, d.server, d.login, d.request_id, d.provider, d.method,
        d.instrument_fingerprint, d.amount, d.currency, d.decision, [r.code for r in d.reasons],
        orjson.dumps([r.model_dump() for r in d.reasons]).decode(), d.release_conditions,
        d.policy_version, d.requested_at, d.decided_at, d.revision, d.decision_id,
    )


def decision_message(d: WithdrawalDecision) -> tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]:
    """The topic's message: keyed by account, the decision as JSON (amounts as decimal strings)."""
    return (d.account_key.encode(), orjson.dumps(d.model_dump(mode="json")),
            [("decision_id", d.decision_id.encode()), ("decision", d.decision.encode())])


def policy_screen_score(rules: Any) -> float:
    """The sanctions rule's `min_score` in a rules configuration (88 when not set)."""
    for rs in getattr(rules, "rules", []):
        if rs.id == "sanctions_screening":
            return float(rs.params.get("min_score", 88))
    return 88.0
