"""The withdrawal policy: versioned YAML a compliance officer or the payments team can read.

Each check has its thresholds and an `action`: `reject`, `hold` (for review) or `off`. A decision
is `reject` when any reject check fires, else `hold` when any hold check fires, else `approve`.
Money thresholds are in the request's currency. Times are event times. Bump `version` whenever
a threshold changes: every decision names the policy version that made it.

The configuration's `withdrawals` section (`WithdrawalSettings`) names a policy file or gives
the policy inline; by default the shipped `withdrawals/default_policy.yaml` applies.
"""

from __future__ import annotations

from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.validation import describe_errors

# The policy shipped with the package (package data, so a wheel install has it too).
DEFAULT_POLICY_FILE = str(resources.files("withdrawals").joinpath("default_policy.yaml"))

Action = Literal["reject", "hold", "off"]
Severity = Literal["low", "medium", "high", "critical"]
PayoutField = Literal["email", "name", "instrument"]
PAYOUT_FIELDS: tuple[PayoutField, ...] = ("email", "name", "instrument")
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class PolicyError(ValueError):
    """A withdrawal policy that cannot be used; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KycCheck(_Strict):
    """The client's KYC (the CRM's `kyc_status`): only `approved` passes. An approval older than
    `valid_days` counts as expired (the CRM format carries no expiry date of its own)."""

    action_pending: Action = Field(default="hold", description="pending, or no KYC status at all")
    action_expired: Action = "hold"
    action_rejected: Action = "reject"
    valid_days: float = Field(default=0, ge=0, description="approval older than this: expired (0: never)")


class AccountStatusCheck(_Strict):
    """The account's status (CRM `account_closed`, platform `disabled`)."""

    action: Action = "reject"
    statuses: list[str] = Field(default_factory=lambda: ["closed", "disabled"])


class AlertsCheck(_Strict):
    """Open AML/fraud alerts on the client: account-keyed alerts (mode `alert`) raised within
    `lookback_days` before the request, at or above `min_severity`."""

    action: Action = "hold"
    lookback_days: float = Field(default=30, gt=0)
    min_severity: Severity = "medium"
    categories: list[str] = Field(default_factory=lambda: ["aml", "fraud"])
    ignore_rules: list[str] = Field(default_factory=list, description="rule ids that never hold")
    reject_rules: list[str] = Field(default_factory=list, description="rule ids that reject")


class SanctionsCheck(_Strict):
    """Sanctions hits: alerts of the sanctions rule on the client (holder screened at onboarding
    and on name changes; payers and beneficiaries of approved payments), and the request's own
    beneficiary name when the engine has a screener."""

    action: Action = "reject"
    rules: list[str] = Field(default_factory=lambda: ["sanctions_screening"])
    lookback_days: float = Field(default=3650, gt=0)


class FreeMarginCheck(_Strict):
    """The amount against the account's free margin (platform `MarginFree`; the balance when the
    platform sent no margin). With `positions_only`, only clients with open positions are checked:
    without positions the platform itself stops a debit beyond the balance."""

    action: Action = "hold"
    positions_only: bool = True
    unknown_action: Action = Field(default="off", description="free margin never reported")


class ReturnToSourceCheck(_Strict):
    """Deposits go back to where they came from, up to the deposited amount: a payout to another
    instrument while a deposit instrument still has un-returned deposits (more than `tolerance`)."""

    action: Action = "hold"
    methods: list[str] = Field(default_factory=lambda: ["card", "ewallet", "crypto"],
                               description="deposit methods whose deposits must be returned first")
    tolerance: Decimal = Field(default=Decimal("1"), ge=0)


class FirstWithdrawalCheck(_Strict):
    """The client's first withdrawal (no earlier PSP withdrawal in the history kept)."""

    action: Action = "hold"
    max_amount: Decimal = Field(default=Decimal("2000"), ge=0)


class AmountCurrencies(_Strict):
    """What the money thresholds (limits, first withdrawal, velocity) are counted in: an amount
    in a `plain` currency compares as it is; in a currency of `rates`, times its rate (the value
    of one unit in the thresholds' units, e.g. BTC: 60000); in any other currency (a payout in
    coin units, say) it cannot be compared, and `unknown_action` applies."""

    plain: list[str] = Field(default_factory=lambda: ["USD", "EUR", "GBP", "CHF", "AUD", "CAD",
                                                      "USDT", "USDC"])
    rates: dict[str, Decimal] = Field(default_factory=dict)
    unknown_action: Action = "hold"

    @field_validator("rates")
    @classmethod
    def _positive(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in value.items():
            if rate <= 0:
                raise ValueError(f"{code}: a rate must be positive, got {rate}")
        return value


class AmountLimits(_Strict):
    hold_above: Decimal | None = Field(default=Decimal("10000"), ge=0)
    reject_above: Decimal | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> AmountLimits:
        hold, reject = self.hold_above, self.reject_above
        if hold is not None and reject is not None and reject < hold:
            raise ValueError("reject_above must not be below hold_above")
        return self


class VelocityCheck(_Strict):
    """Requests (and their total) within `window_hours` before this one, this one included."""

    action: Action = "hold"
    window_hours: float = Field(default=24, gt=0)
    max_requests: int = Field(default=3, ge=1)
    max_amount: Decimal | None = Field(default=Decimal("20000"), ge=0)


class PayoutDetailsCheck(_Strict):
    """Payout details changed recently: a new payout instrument used by an earlier request, or
    the account's e-mail or name changed (an account takeover changes them, then withdraws)."""

    action: Action = "hold"
    cooldown_hours: float = Field(default=72, gt=0)
    fields: list[PayoutField] = Field(default_factory=lambda: list(PAYOUT_FIELDS))


class WithdrawalPolicy(_Strict):
    version: int = Field(ge=1)
    # the first notification of a PSP withdrawal in one of these states is the request
    request_statuses: list[str] = Field(default_factory=lambda: ["pending", "approved"], min_length=1)
    history_days: float = Field(default=365, gt=0,
                                description="deposits and withdrawals kept for the source checks")
    hold_review_days: float = Field(default=14, gt=0,
                                    description="held requests are re-decided on account changes this long")
    kyc: KycCheck = KycCheck()
    account_status: AccountStatusCheck = AccountStatusCheck()
    sanctions: SanctionsCheck = SanctionsCheck()
    alerts: AlertsCheck = AlertsCheck()
    free_margin: FreeMarginCheck = FreeMarginCheck()
    return_to_source: ReturnToSourceCheck = ReturnToSourceCheck()
    first_withdrawal: FirstWithdrawalCheck = FirstWithdrawalCheck()
    amounts: AmountCurrencies = AmountCurrencies()
    limits: AmountLimits = AmountLimits()
    velocity: VelocityCheck = VelocityCheck()
    payout_details: PayoutDetailsCheck = PayoutDetailsCheck()


def parse_policy(doc: object, source: str = "withdrawal policy") -> WithdrawalPolicy:
    try:
        return WithdrawalPolicy.model_validate(doc)
    except ValidationError as exc:
        raise PolicyError(describe_errors(f"withdrawal policy error in {source}:", exc)) from None


def load_policy(path: str | Path) -> WithdrawalPolicy:
    """A policy file; a missing file, bad YAML or a bad value raises PolicyError naming it."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"withdrawal policy file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"withdrawal policy {path} is not valid YAML: {exc}") from None
    return parse_policy(doc, str(path))


class WithdrawalSettings(BaseModel):
    """The configuration's `withdrawals` section: `policy` is a file (relative to the config
    file) or the policy itself, inline; unset, the shipped default policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    policy: str | WithdrawalPolicy = Field(default=DEFAULT_POLICY_FILE,
                                           description="policy file or inline policy")

    def resolved(self, base: Path) -> WithdrawalSettings:
        """A relative policy path made absolute against the config file's folder."""
        if isinstance(self.policy, str):
            return self.model_copy(update={"policy": str((base / self.policy).resolve())})
        return self

    def load(self, override: str | None = None) -> WithdrawalPolicy:
        """The policy in force (`override`: another file, e.g. a backtest's candidate)."""
        chosen = override or self.policy
        return chosen if isinstance(chosen, WithdrawalPolicy) else load_policy(chosen)
