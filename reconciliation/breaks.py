"""The break record: one version of one reconciliation break (opened, updated or resolved)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

BreakKind = Literal[
    "missing_on_platform",   # the PSP moved money, the platform booked nothing
    "missing_at_psp",        # the platform booked money (or a reversal) the PSP never reported
    "amount_mismatch",       # both sides, same currency, amounts differ (to the cent)
    "currency_mismatch",     # both sides in different ISO 4217 currencies
    "status_mismatch",       # booked on the platform, declined/cancelled/failed at the PSP
    "duplicate_credit",      # two platform bookings for one PSP operation
    "reversal_not_booked",   # a PSP refund/chargeback with no platform debit
]
BREAK_KINDS: tuple[BreakKind, ...] = (
    "missing_on_platform", "missing_at_psp", "amount_mismatch", "currency_mismatch",
    "status_mismatch", "duplicate_credit", "reversal_not_booked",
)
BreakEvent = Literal["opened", "updated", "resolved"]
BreakStatus = Literal["open", "resolved"]

# column order of `reconciliation_breaks_store` (schemas/migrations/0008_reconciliation.sql)
BREAK_COLUMNS: tuple[str, ...] = (
    "break_id", "tenant", "kind", "status", "event", "provider", "server", "login", "reference",
    "psp_op_key", "psp_op_id", "psp_kind", "psp_status", "psp_amount", "psp_currency",
    "platform_op_key", "platform_op_id", "platform_amount", "platform_currency",
    "detail", "basis_time", "detected_at", "updated_at", "resolved_at", "resolution", "version",
)


@dataclass(frozen=True, slots=True)
class Break:
    """One version of a break. `break_id` is `<kind>:<anchor op_key>` (the PSP operation, or
    the platform operation for `missing_at_psp`): the same history gives the same ids.
    `basis_time` is the age basis (the earlier side's event time); `detected_at`, `updated_at`
    and `resolved_at` are the matcher's event-time clock when it opened, changed, resolved it."""

    break_id: str
    tenant: str
    kind: BreakKind
    status: BreakStatus
    event: BreakEvent
    provider: str
    server: str
    login: int
    reference: str
    psp_op_key: str
    psp_op_id: str
    psp_kind: str
    psp_status: str
    psp_amount: Decimal | None
    psp_currency: str
    platform_op_key: str
    platform_op_id: str
    platform_amount: Decimal | None
    platform_currency: str
    detail: str
    basis_time: datetime
    detected_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    resolution: str
    version: int

    def row(self) -> tuple[object, ...]:
        return tuple(getattr(self, c) for c in BREAK_COLUMNS)
