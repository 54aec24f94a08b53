"""The `recon` configuration section (aggregated into `pipelines.config.Settings`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReconSettings(BaseModel):
    """How long a side may wait for its other side, when an open break becomes an alert, and
    how long settled payments are remembered. Times are event time (seconds)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="run the reconciliation stage")
    tolerance_s: int = Field(default=3600, gt=0, description=(
        "deposits: how long an approved PSP deposit may wait for its platform credit (and a "
        "platform credit for its PSP deposit) before a break opens"))
    withdrawal_tolerance_s: int = Field(default=86_400, gt=0, description=(
        "withdrawals, refunds and chargebacks: how long a platform debit may wait for the PSP's "
        "payout notification, a PSP refund/chargeback for its platform debit, a declined payout "
        "for the platform's return"))
    alert_after_s: int = Field(default=86_400, gt=0, description=(
        "an open break older than this (from its age basis) raises a `recon.break_aged` alert"))
    keep_days: float = Field(default=35.0, gt=0, description=(
        "a settled payment (no open break) is forgotten this long after its last operation"))
    settled_days: float = Field(default=180.0, gt=0, description=(
        "a forgotten payment's id is remembered this long, so a late update of it (a chargeback "
        "months later) is not taken for a new payment missing on the platform"))
    providers: list[str] = Field(default_factory=lambda: [
        "skrill", "praxis", "coinspaid", "nuvei", "stripe"], min_length=1, description=(
        "provider names a platform comment may name ('Deposit praxis 1234567')"))
