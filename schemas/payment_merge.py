"""Every notification about one payment merged field by field.

A provider reports one payment in several notifications, each saying only part of it: Stripe's
``payment_intent.succeeded`` has no billing details, ``charge.succeeded`` has the payer name and
the card; a Nuvei DMN re-sent later may lack the customer fields. Each notification is a version
of the same operation (``op_key``); the latest version alone would forget what earlier ones said.

The merge keeps, per operation, the notification with the highest version (it says the status,
the amount, the time) and, for each *fact* field, the value of the highest version that said
anything there. A later notification never erases a fact with an empty field, and the result does
not depend on the order the notifications arrive in (ties are broken by the values themselves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.events import BalanceOperation

# What a notification may leave empty although the payment has it.
FACT_FIELDS: tuple[str, ...] = ("payer_name", "instrument_fingerprint", "country", "method", "comment")


def _rank(op: BalanceOperation) -> tuple[Any, ...]:
    """Total order of the versions of one operation: version first, then the content."""
    return (op.version, op.status, str(op.amount), op.time, op.kind, op.is_deleted, op.event,
            op.currency, op.source, tuple(getattr(op, f) for f in FACT_FIELDS))


@dataclass(slots=True)
class PaymentFacts:
    """What is known of one payment: its highest version and each fact with the version it came from."""

    latest: BalanceOperation
    facts: dict[str, tuple[int, str]] = field(default_factory=dict)

    def merged(self) -> BalanceOperation:
        update = {name: value for name, (_, value) in self.facts.items()
                  if getattr(self.latest, name) != value}
        return self.latest.model_copy(update=update) if update else self.latest


def merge_payment(state: PaymentFacts | None, op: BalanceOperation) -> tuple[PaymentFacts, BalanceOperation]:
    """(new state, the merged operation) after one more notification of a payment."""
    if state is None:
        state = PaymentFacts(op)
    elif _rank(op) > _rank(state.latest):
        state.latest = op
    facts = state.facts
    for name in FACT_FIELDS:
        value = getattr(op, name)
        if value:
            have = facts.get(name)
            if have is None or (op.version, value) > have:
                facts[name] = (op.version, value)
    return state, state.merged()


class PaymentMerger:
    """A stream of records with every payment merged so far, as the account stage stores them
    and gives them to the rules (for a sequential run: backtests, `bench/score_rules.py`)."""

    def __init__(self) -> None:
        self.payments: dict[str, PaymentFacts] = {}

    def __call__(self, record: Any) -> Any:
        if isinstance(record, BalanceOperation) and record.platform == "psp":
            self.payments[record.op_key], record = merge_payment(self.payments.get(record.op_key), record)
        return record
