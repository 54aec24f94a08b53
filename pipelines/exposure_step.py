"""The exposure step of the dataflow: feeds a tenant's deals, quotes, accounts and balance
operations to its `ExposureEngine` (risk_rules/exposure) and turns snapshots into table rows
and risk alerts.

A snapshot is taken after a batch of the tenant's inputs when the event time crossed the next
`snapshot_interval_s` boundary (and only then), so a replay of the same history writes the same
rows, and a live engine reflects a deal or a price move within about one interval plus one
batch. Within a batch, position changes come in each account's order and quotes in read order;
since nothing is written before the batch ends, how the two interleave does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

import orjson

from pipelines.tables import (
    ALERTS,
    CORRECTION_ISSUES,
    CURRENCY_EXPOSURE,
    EXPOSURE,
    EXPOSURE_HISTORY,
    POSITIONS,
    Row,
)
from risk_rules.exposure import (
    ExposureEngine,
    ExposureSnapshot,
    LimitEvent,
    MarginEvent,
    PositionBook,
    PositionChange,
)
from risk_rules.exposure.positions import CorrectionIssue, DealHistory, Mode
from risk_rules.exposure.settings import ExposureSettings
from schemas.events import Account, BalanceOperation, Deal, Quote
from schemas.identity import account_key_of, parse_account_key

_position_values = itemgetter(*POSITIONS.columns)


@dataclass
class AccountBook:
    """One account's positions (keyed by account: only touched accounts are snapshotted)."""

    group: str = ""
    book: PositionBook | None = None
    next_prune: datetime | None = None


class PositionBookStep:
    """Stage 1, keyed by account: deals -> position changes (the deal history each position
    keeps for corrections stays here, spread over accounts, instead of in one tenant state)."""

    def __init__(self, settings: ExposureSettings, history: DealHistory | None = None) -> None:
        self.modes = settings.modes
        self.keep_closed = timedelta(minutes=settings.keep_closed_minutes)
        self.history = history  # pruned positions' stored deals (None: late corrections reported)

    def __call__(self, state: AccountBook | None, record: Deal | Account
                 ) -> tuple[AccountBook, list[PositionChange | CorrectionIssue]]:
        state = state or AccountBook()
        if isinstance(record, Account):
            state.group = record.group or state.group
            return state, []
        if state.book is None:
            mode = self.modes.mode_for(tenant=record.tenant, server=record.server,
                                       platform=record.platform, group=state.group,
                                       account_key=account_key_of(record), login=record.login)
            state.book = PositionBook(account_key_of(record), mode, state.group)
        applied, issues = state.book.apply_late(record, self.history)
        # a correction that could not be applied travels on with the changes, to the tenant's
        # exposure step, which writes it to `correction_issues` and alerts the dealing desk
        changes: list[PositionChange | CorrectionIssue] = [*applied, *issues]
        # closed positions leave the state once corrections are unlikely: keeps it (and every
        # recovery snapshot of it) to what is open plus the last `keep_closed_minutes`
        if state.next_prune is None or record.time >= state.next_prune:
            if state.next_prune is not None:
                state.book.prune(record.time - self.keep_closed)
            state.next_prune = record.time + self.keep_closed / 4
        return state, changes


class StoreDealHistory:
    """A `DealHistory` over `deals_store` (every version ClickHouse holds; the latest per deal
    wins, deleted ones included so their versions are known). A query that fails answers None:
    the book then reports the correction instead of guessing."""

    def __init__(self, store: Any) -> None:  # pipelines.store.Store (not imported: layers)
        self.store = store

    def position_deals(self, account_key: str, mode: Mode, ref: str) -> list[Deal] | None:
        platform, server, login = parse_account_key(account_key)
        where = "symbol = {ref:String}" if mode == "netting" else (
            "if(position_id != '', position_id, if(order_id != '', order_id, deal_id)) = {ref:String}")
        columns = ", ".join(f"`{c}`" for c in Deal.model_fields)
        sql = (f"SELECT {columns} FROM deals_store WHERE platform = {{platform:String}} AND "
               f"server = {{server:String}} AND login = {{login:UInt64}} AND {where} "
               "ORDER BY deal_key, version")
        try:
            names, rows = self.store.query(sql, {"platform": platform, "server": server,
                                                 "login": login, "ref": ref})
        except Exception:  # any failure: report the correction, never guess
            return None
        out = []
        for row in rows:
            values = dict(zip(names, row, strict=True))
            time = values["time"]
            values["time"] = time.replace(tzinfo=UTC) if time.tzinfo is None else time
            out.append(Deal.model_validate(values))
        return out


@dataclass
class ExposureState:
    engine: ExposureEngine
    last_ms: int = 0
    next_snapshot_ms: int = 0
    next_revalue_ms: int = 0
    pending: bool = False  # events since the last snapshot


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


Stage2Input = PositionChange | CorrectionIssue | Quote | Account | BalanceOperation


def _event_ms(record: Stage2Input) -> int:
    if isinstance(record, Account):
        return _ms(record.updated_at)
    if isinstance(record, PositionChange):
        return _ms(record.time or record.after.updated_at)
    if isinstance(record, CorrectionIssue):
        return _ms(record.deal_time)
    return _ms(record.time)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def facts_json(facts: dict[str, Any]) -> str:
    """An alert's facts as the JSON stored in `alerts.facts` (Decimals as strings, times ISO)."""
    return orjson.dumps(facts, default=_json_default).decode()


def _limit_alert(event: LimitEvent) -> Row:
    breach = event.kind == "breach"
    summary = (f"{event.metric} {event.measure} of {event.scope} {event.target} in book {event.book} "
               f"{'is' if breach else 'is back to'} {event.value_usd:,.0f} USD "
               f"({'limit' if breach else 'recovery level'} "
               f"{(event.limit_usd if breach else event.recover_usd):,.0f} USD)")
    facts = {"value_usd": event.value_usd, "limit_usd": event.limit_usd,
             "recover_usd": event.recover_usd, "scope": event.scope, "book": event.book,
             "target": event.target, "measure": event.measure, "metric": event.metric,
             "config_version": event.config_version, "kind": event.kind}
    return ALERTS, (
        event.event_id, f"limit.{event.rule_id}", event.rule_version, "risk",
        "high" if breach else "info", event.tenant, f"{event.scope}:{event.book}:{event.target}",
        summary, facts_json(facts), [], event.as_of, event.as_of, "alert",
    )


def _margin_alert(event: MarginEvent) -> Row:
    severity = {"stop_out": "critical", "margin_call": "high"}.get(event.kind, "info")
    level = "n/a" if event.margin_level is None else f"{event.margin_level:.1f}%"
    summary = (f"{event.kind.replace('_', ' ')}: margin level {level} against {event.threshold}% "
               f"(equity {event.equity} {event.currency}, margin {event.margin} {event.currency})")
    facts = {"margin_level": event.margin_level, "threshold": event.threshold, "equity": event.equity,
             "margin": event.margin, "currency": event.currency, "state": event.state,
             "previous_state": event.previous_state, "config_version": event.config_version}
    return ALERTS, (
        event.event_id, f"margin.{event.kind}", 1, "risk", severity, event.tenant, event.account_key,
        summary, facts_json(facts), [], event.as_of, event.as_of, "alert",
    )


def correction_issue_rows(issue: CorrectionIssue) -> list[Row]:
    """A correction exposure could not apply: its `correction_issues` row and a risk alert for
    the dealing desk (`correction.unapplied`). Both are stamped with the correction's own
    version time (envelope ms), so a replay writes identical rows."""
    detected = datetime.fromtimestamp(issue.version // 4 / 1000, UTC)
    summary = (f"{issue.event} of deal {issue.deal_key} (position {issue.position_ref}) was not applied "
               f"to exposure: {issue.reason}")
    facts = {"deal_key": issue.deal_key, "version": issue.version, "event": issue.event,
             "position_ref": issue.position_ref, "deal_time": issue.deal_time, "reason": issue.reason}
    return [
        (CORRECTION_ISSUES, (issue.tenant, issue.account_key, issue.deal_key, issue.version,
                                     issue.event, issue.position_ref, issue.deal_time, issue.reason,
                                     detected)),
        (ALERTS, (f"correction:{issue.deal_key}:v{issue.version}", "correction.unapplied", 1,
                          "risk", "high", issue.tenant, issue.account_key, summary, facts_json(facts),
                          [issue.deal_key], issue.deal_time, detected, "alert")),
    ]


def snapshot_rows(snapshot: ExposureSnapshot) -> list[Row]:
    rows: list[Row] = []
    for position in snapshot.positions:
        rows.append((POSITIONS, _position_values(position.__dict__)))
    for side, exposure in (("clients", snapshot.exposure), ("broker", snapshot.broker_exposure)):
        for e in exposure:
            values = (side, e.tenant, e.book, e.symbol, e.net_lots, e.net_units, e.net_notional_usd,
                      e.floating_pnl_usd, e.as_of)
            rows.append((EXPOSURE, values))
            rows.append((EXPOSURE_HISTORY, values))
    for side, currencies in (("clients", snapshot.currency_exposure),
                             ("broker", snapshot.broker_currency_exposure)):
        for c in currencies:
            rows.append((CURRENCY_EXPOSURE,
                         (side, c.tenant, c.book, c.currency, c.net_amount, c.net_usd, c.as_of)))
    return rows


class ExposureStep:
    """Stage 2, keyed by tenant: position changes, quotes, accounts and balance operations
    -> exposure aggregates, valued with the latest prices; snapshots become rows and alerts."""

    def __init__(self, settings: ExposureSettings) -> None:
        self.settings = settings
        self.interval_ms = max(1, int(settings.snapshot_interval_s * 1000))
        self.revalue_ms = max(self.interval_ms, int(settings.positions_revalue_s * 1000))

    def new_engine(self) -> ExposureEngine:
        s = self.settings
        return ExposureEngine(routing=s.routing, modes=s.modes, limits=s.limits, margin=s.margin)

    def __call__(self, state: ExposureState | None, record: Stage2Input) -> tuple[ExposureState, list[Row]]:
        if state is None:
            state = ExposureState(self.new_engine())
        if isinstance(record, CorrectionIssue):
            return state, correction_issue_rows(record)  # nothing to fold: written as it comes
        if isinstance(record, PositionChange):
            state.engine.on_position_change(record)
        else:
            state.engine.apply(record)
        state.last_ms = max(state.last_ms, _event_ms(record))
        state.pending = True
        return state, []

    def end_batch(self, state: ExposureState) -> list[Row]:
        """After each batch of the tenant's inputs: a snapshot if the event time crossed a
        boundary. Checked per batch, not per event, so a replay of
        history at speed writes a snapshot per batch, not one per second of history."""
        if state.last_ms < state.next_snapshot_ms:
            return []
        return self._snapshot(state)

    def finish(self, state: ExposureState) -> list[Row]:
        """At the end of the input: the state after the last event, if not yet written."""
        return self._snapshot(state, revalue=True) if state.pending else []

    def _snapshot(self, state: ExposureState, revalue: bool = False) -> list[Row]:
        state.pending = False
        as_of = datetime.fromtimestamp(state.last_ms / 1000, UTC)
        # every position moved by a price is rewritten at most each `positions_revalue_s` (at a
        # busy broker that is the whole book); positions a deal changed, at every snapshot
        if state.last_ms >= state.next_revalue_ms:
            revalue = True
            state.next_revalue_ms = (state.last_ms // self.revalue_ms + 1) * self.revalue_ms
        snapshot = state.engine.snapshot(as_of, positions="changed" if revalue else "traded", top=0)
        rows = snapshot_rows(snapshot)
        rows += [_limit_alert(e) for e in state.engine.check_limits(snapshot)]
        rows += [_margin_alert(e) for e in state.engine.check_margin(as_of)]
        state.next_snapshot_ms = (state.last_ms // self.interval_ms + 1) * self.interval_ms
        return rows
