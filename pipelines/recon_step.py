"""The reconciliation stage: per tenant, the matcher of `reconciliation/` fed every balance
operation in read order; its break versions go to `reconciliation_breaks`, and an open break
older than `recon.alert_after_s` becomes a `recon.break_aged` alert in `alerts`.

Keyed by tenant: a PSP operation and its platform booking are on one account, but the clock
that opens "missing on X" breaks after the tolerance is the tenant's event time (the latest
deal, balance operation or login time of its records), so a quiet account's break still opens
on time. Each batch of the tenant ends with a `Tick` carrying that time. Per-event cost is a few
dict look-ups; the state is bounded by time (reconciliation/matcher.py) and a snapshot pickles
only the accounts touched since the last one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from prometheus_client import Counter

from pipelines.config import Settings
from pipelines.keyed_state import stateful_flat_map
from pipelines.rules_step import alert_row
from pipelines.tables import RECONCILIATION_BREAKS, Row, TableRows, table_batches
from reconciliation.breaks import Break, BreakKind
from reconciliation.matcher import BreakAged, Matcher
from reconciliation.settings import ReconSettings
from risk_rules.alerts import Alert, Severity, alert_id
from schemas.events import BalanceOperation, Deal, Login
from schemas.identity import account_key

RECON_BREAKS = Counter(
    "brokerstream_recon_breaks_total", "Reconciliation break versions written, by kind and event",
    ["kind", "event"],
)
RULE_ID = "recon.break_aged"
RULE_VERSION = 1
SEVERITY: dict[BreakKind, Severity] = {
    "missing_on_platform": "medium",   # a client not credited: a complaint, not a loss yet
    "amount_mismatch": "medium",
    "currency_mismatch": "medium",
    "missing_at_psp": "high",          # money booked that no provider received or paid
    "status_mismatch": "high",         # credited on the platform, declined at the PSP
    "duplicate_credit": "high",
    "reversal_not_booked": "high",     # a chargeback/refund the client keeps on the platform
}


@dataclass(frozen=True, slots=True)
class Tick:
    """The tenant's event time at the end of a batch (the matcher's clock moves on)."""

    tenant: str
    time: datetime


ReconInput = BalanceOperation | Tick


def recon_inputs(records: Iterable[Any]) -> list[tuple[str, list[ReconInput]]]:
    """One batch of records -> per tenant, its balance operations in read order, then a Tick
    with the latest event time of its deals, balance operations and logins."""
    ops: dict[str, list[ReconInput]] = {}
    latest: dict[str, datetime] = {}
    for r in records:  # every record of the batch passes here: type identity, no isinstance
        kind = type(r)
        if kind is BalanceOperation:
            ops.setdefault(r.tenant, []).append(r)
        elif kind is not Deal and kind is not Login:
            continue
        tenant, time = r.tenant, r.time
        t = latest.get(tenant)
        if t is None or time > t:
            latest[tenant] = time
    return [(tenant, [*ops.get(tenant, []), Tick(tenant, t)]) for tenant, t in latest.items()]


class ReconStep:
    """mapper(matcher or None, input) -> (matcher, rows) for `keyed_state.stateful_flat_map`."""

    def __init__(self, settings: ReconSettings, servers: Mapping[str, str]) -> None:
        self.settings = settings
        self.servers = dict(servers)  # server -> platform, for alert subjects (account keys)

    def __call__(self, state: Matcher | None, value: ReconInput) -> tuple[Matcher, list[Row]]:
        matcher = state or Matcher(value.tenant, self.settings)
        produced = matcher.tick(value.time) if isinstance(value, Tick) else matcher.feed(value)
        return matcher, [self.row(item) for item in produced]

    def row(self, item: Break | BreakAged) -> Row:
        if isinstance(item, Break):
            RECON_BREAKS.labels(item.kind, item.event).inc()
            return RECONCILIATION_BREAKS, item.row()
        return alert_row(self.alert(item))

    def alert(self, aged: BreakAged) -> Alert:
        b = aged.brk
        platform = self.servers.get(b.server, "")
        subject = account_key(platform, b.server, b.login) if platform else f"{b.server}:{b.login}"
        evidence = [k for k in (b.psp_op_key, b.platform_op_key) if k]
        hours = aged.age_s / 3600
        facts: dict[str, Any] = {
            "break_id": b.break_id, "kind": b.kind, "provider": b.provider,
            "reference": b.reference, "age_hours": round(hours, 2),
            "alert_after_hours": round(self.settings.alert_after_s / 3600, 2),
            "psp_amount": b.psp_amount, "psp_currency": b.psp_currency, "psp_status": b.psp_status,
            "platform_amount": b.platform_amount, "platform_currency": b.platform_currency,
        }
        return Alert(
            alert_id=alert_id(RULE_ID, RULE_VERSION, b.break_id, evidence, b.basis_time),
            rule_id=RULE_ID, rule_version=RULE_VERSION, category="risk",
            severity=SEVERITY[b.kind], tenant=b.tenant, subject=subject,
            summary=f"reconciliation break {b.kind} open {hours:.1f} h: {b.detail}",
            facts=facts, evidence=evidence, event_time=b.basis_time, detected_at=aged.at,
        )


def _by_table(kv: tuple[str, list[Row]]) -> list[TableRows]:
    return table_batches(kv[1])


def recon_rows(records: Stream[list[Any]], settings: Settings) -> Stream[TableRows]:
    """The stage wired on the normalised records: (table, rows) batches for the sink."""
    servers = {name: cfg.platform for name, (_, cfg) in settings.server_index().items()}
    inputs = op.flat_map("recon_inputs", records, recon_inputs)
    out = stateful_flat_map("recon", inputs, ReconStep(settings.recon, servers), batched=True)
    return op.flat_map("recon_rows", out, _by_table)
