"""Withdrawal decisions: a versioned policy (`policy.py`, shipped `default_policy.yaml`), the
facts kept per account (`facts.py`) and the decision function (`decide.py`).

Plain Python: the dataflow (`pipelines/withdrawal_step.py`) feeds the facts in each account's
order and writes the decisions; nothing here knows Kafka, Bytewax or ClickHouse."""

from withdrawals.decide import Reason, WithdrawalDecision, decide
from withdrawals.facts import AlertFact, ClientFacts, Payment, WithdrawalBook
from withdrawals.policy import (
    DEFAULT_POLICY_FILE,
    PolicyError,
    WithdrawalPolicy,
    WithdrawalSettings,
    load_policy,
    parse_policy,
)

__all__ = [
    "DEFAULT_POLICY_FILE", "AlertFact", "ClientFacts", "Payment", "PolicyError", "Reason",
    "WithdrawalBook", "WithdrawalDecision", "WithdrawalPolicy", "WithdrawalSettings", "decide",
    "load_policy", "parse_policy",
]
