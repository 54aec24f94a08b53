"""The account-keyed stage: one ordered stream per account.

Everything about one account - platform and CRM updates, deals, balance operations, payments,
logins - reaches this stage in the order it was read, in one stream, so no result can depend
on how a consumed batch happened to split them. For each account the stage keeps

- the merged account record (`schemas.account_state`), written to `accounts`,
- the position book (`PositionBookStep`): deals -> position changes for the tenant exposure,
- and, per shard, the account-keyed AML/fraud rule engine (`AccountRulesStep`),

and passes on, in the same order, what the tenant-keyed stages need: merged accounts, position
changes and balance operations for exposure; merged accounts and deals for IB commissions (so a
deal is priced with the group and IB its account had when the deal was read); records re-keyed
for the linked rules (IP, device, instrument, tenant).

Accounts are grouped in shards (`rules.shards` per tenant): Bytewax moves one item per shard
per consumed batch instead of one per event. A snapshot pickles only the accounts that changed
since the previous one and reuses the bytes of the others.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.exposure_step import AccountBook, PositionBookStep
from pipelines.rules_step import AccountRulesStep, LinkedInput, RuleResources, shard_key
from pipelines.withdrawal_step import WithdrawalStep
from risk_rules.alerts import Alert
from risk_rules.engine import RuleEngine, resolved_account_key
from risk_rules.exposure import PositionChange
from risk_rules.exposure.positions import CorrectionIssue
from risk_rules.exposure.settings import ExposureSettings
from schemas.account_state import AccountState, merge_account
from schemas.events import Account, AccountUpdate, BalanceOperation, Deal, Login
from schemas.identity import account_key_of
from schemas.payment_merge import PaymentFacts, merge_payment
from withdrawals import WithdrawalBook, WithdrawalDecision

AccountInput = AccountUpdate | Deal | BalanceOperation | Login
ExposureInput = PositionChange | CorrectionIssue | Account | BalanceOperation
CommissionInput = Deal | Account


@dataclass
class AccountSlot:
    """What the stage keeps of one account."""

    state: AccountState | None = None
    book: AccountBook | None = None
    payouts: WithdrawalBook | None = None  # withdrawal facts (pipelines/withdrawal_step.py)
    payments: dict[str, PaymentFacts] | None = None  # op key -> every notification merged


@dataclass
class AccountOutputs:
    """What one shard produced from one batch, each list in the order the records were read."""

    accounts: list[Account] = field(default_factory=list)  # merged records -> `accounts`
    exposure: dict[str, list[ExposureInput]] = field(default_factory=dict)  # by tenant
    commissions: dict[str, list[CommissionInput]] = field(default_factory=dict)  # by tenant
    alerts: list[Alert] = field(default_factory=list)
    payments: list[BalanceOperation] = field(default_factory=list)  # merged -> `balance_operations`
    linked: list[tuple[str, LinkedInput]] = field(default_factory=list)  # (linked shard, input)
    decisions: list[WithdrawalDecision] = field(default_factory=list)  # -> withdrawal_decisions


class AccountShard:
    """The accounts of one shard. Pickles as the bytes of each account (re-pickled only when the
    account changed since the last snapshot) plus the shard's rule engine."""

    def __init__(self) -> None:
        self.slots: dict[str, AccountSlot] = {}
        self.rules: RuleEngine | None = None
        self._blobs: dict[str, bytes] = {}
        self._dirty: set[str] = set()

    def slot(self, key: str) -> AccountSlot:
        self._dirty.add(key)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = AccountSlot()
        return slot

    def __reduce__(self) -> tuple[Callable[..., AccountShard], tuple[Any, ...]]:
        blobs = self._blobs
        for key in self._dirty:
            blobs[key] = pickle.dumps(self.slots[key], protocol=pickle.HIGHEST_PROTOCOL)
        self._dirty = set()
        return _restore_shard, (blobs, self.rules)


def _restore_shard(blobs: dict[str, bytes], rules: RuleEngine | None) -> AccountShard:
    shard = AccountShard()
    shard.slots = {key: pickle.loads(blob) for key, blob in blobs.items()}
    shard._blobs = dict(blobs)
    shard.rules = rules
    return shard


class AccountStage:
    """The stage's batch mapper (`keyed_state.stateful_batch_map`): (shard, the shard's records
    of one batch in read order) -> (shard, [their `AccountOutputs`])."""

    def __init__(self, exposure: ExposureSettings | None, commissions: bool,
                 rules: RuleResources | None, rules_step: AccountRulesStep | None,
                 withdrawals: WithdrawalStep | None = None) -> None:
        self.withdrawals = withdrawals
        self.books = PositionBookStep(exposure) if exposure is not None and exposure.enabled else None
        self.commissions = commissions
        self.rules = rules_step
        self.resources = rules

    def __call__(self, shard: AccountShard | None,
                 records: list[AccountInput]) -> tuple[AccountShard, list[AccountOutputs]]:
        shard = shard or AccountShard()
        out = AccountOutputs()
        books, rules, withdrawals = self.books, self.rules, self.withdrawals
        for record in records:
            tenant = record.tenant
            account: Account | None = None
            raised = len(out.alerts)
            if isinstance(record, AccountUpdate):
                slot = shard.slot(record.account_key)
                slot.state, account = merge_account(slot.state, record)
                out.accounts.append(account)
                if books is not None:
                    slot.book, _ = books(slot.book, account)
                    out.exposure.setdefault(tenant, []).append(account)
                if self.commissions:
                    out.commissions.setdefault(tenant, []).append(account)
            elif isinstance(record, Deal):
                if books is not None:
                    slot = shard.slot(account_key_of(record))
                    slot.book, changes = books(slot.book, record)
                    if changes:
                        out.exposure.setdefault(tenant, []).extend(changes)
                if self.commissions:
                    out.commissions.setdefault(tenant, []).append(record)
            elif isinstance(record, BalanceOperation):
                if record.platform == "psp":  # one payment's notifications merged field by field
                    record = merge_payment_into(shard, record)
                    out.payments.append(record)
                if books is not None:
                    out.exposure.setdefault(tenant, []).append(record)
            if rules is not None:
                shard.rules, produced = rules(shard.rules, record)
                for item in produced:
                    if isinstance(item, Alert):
                        out.alerts.append(item)
                    else:
                        out.linked.append(item)
            # after the rules: the alerts this record raised count (deals and logins alone: nothing)
            if withdrawals is not None and (len(out.alerts) > raised
                                            or isinstance(record, AccountUpdate | BalanceOperation)):
                withdrawals(shard, record, account, out.alerts[raised:], out.decisions)
        return shard, [out]


def merge_payment_into(shard: AccountShard, op: BalanceOperation) -> BalanceOperation:
    """The payment with what every notification of it said so far (`schemas.payment_merge`)."""
    slot = shard.slot(f"payments:{op.tenant}:{op.server}:{op.login}")
    payments = slot.payments
    if payments is None:
        payments = slot.payments = {}
    payments[op.op_key], merged = merge_payment(payments.get(op.op_key), op)
    return merged


def account_router(servers: Mapping[str, str], shards: int,
                   updates_only: bool = False) -> Callable[[Any], str | None]:
    """The account shard of a record, or None when no account-keyed stage reads it
    (`updates_only`: exposure, commissions and rules are off, only account updates merge)."""

    def route(record: Any) -> str | None:
        if isinstance(record, AccountUpdate):
            key = record.account_key
        elif isinstance(record, BalanceOperation) and (not updates_only or record.platform == "psp"):
            # payments always: their notifications are merged here before they are stored; a
            # payment names only the server: its platform comes from the configuration
            key = resolved_account_key(record.platform, record.server, record.login, servers)
        elif not updates_only and isinstance(record, Deal | Login):
            key = resolved_account_key(record.platform, record.server, record.login, servers)
        else:
            return None
        return shard_key(record.tenant, "account", key, shards)

    return route
