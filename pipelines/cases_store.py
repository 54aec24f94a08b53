"""Alert cases in ClickHouse: the action log (`alert_actions_store`, migration 0010) written and
read, and the cases folded from it (`cases/`: the domain rules).

Every read first files the alerts not yet in a case (`file_new_alerts`), so a new alert is in
the queue at the next look. Every write is validated against the case's state folded from its
log just before, and is one row with its own `action_id`: a write retried after a timeout, or
a form submitted twice with the same id, is one action (the id is checked, and the table
collapses a row stored twice). Used by the CLI (`brokerstream alerts`), the dashboard page's
Cases view and the simulated store of the tests.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import clickhouse_connect
import orjson
from clickhouse_connect.driver.exceptions import ClickHouseError

from cases import ANALYST_ACTIONS, AlertRef, CaseAction, CaseState, TransitionError, apply, file_alerts, fold
from cases.model import ActionKind
from pipelines.store import Store

log = logging.getLogger(__name__)

ACTION_TABLE = "alert_actions_store"
ACTION_COLUMNS = ("tenant", "action_id", "case_id", "action", "actor", "at", "alert_ids", "client",
                  "severity", "alert_time", "assignee", "reason", "note")
CASE_COLUMNS = ("case_id", "tenant", "client", "status", "severity", "alerts", "assignee",
                "acknowledged", "acknowledged_by", "opened_at", "raised_at", "closed_at",
                "close_reason", "last_action_at", "actions", "notes")
ALERT_COLUMNS = ("alert_id", "rule_id", "rule_version", "category", "severity", "subject", "summary",
                 "facts", "evidence", "event_time", "detected_at")
STATUSES = ("open", "closed", "all")


class WriteRefused(RuntimeError):
    """ClickHouse refused to store an action (the row is kept in dead_letters, stage store)."""


# What the store raises (a server refusing, a user without the right to insert): callers say it
# in one line rather than a traceback.
StoreError = (ClickHouseError, WriteRefused)


class CaseNotFound(LookupError):
    """No case or alert with that id (or not in the caller's tenants: the same answer)."""


class NoDatabase(RuntimeError):
    """The database to read does not exist (a read never creates one)."""


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


@dataclass(frozen=True, slots=True)
class CaseRow:
    """One line of the queue: a case as the `cases` view folds it."""

    case_id: str
    tenant: str
    client: str
    status: str
    severity: str
    alerts: int
    assignee: str
    acknowledged: bool
    acknowledged_by: str
    opened_at: datetime
    raised_at: datetime
    closed_at: datetime | None
    close_reason: str
    last_action_at: datetime
    actions: int
    notes: int

    def age(self, now: datetime) -> timedelta:
        """Time since its first alert was raised (to its close, when closed)."""
        return (self.closed_at or now) - self.raised_at


@dataclass(frozen=True, slots=True)
class CaseAlert:
    alert_id: str
    rule_id: str
    rule_version: int
    category: str
    severity: str
    subject: str
    summary: str
    facts: dict[str, Any]
    evidence: list[str]
    event_time: datetime
    detected_at: datetime


@dataclass(frozen=True, slots=True)
class CaseDetail:
    state: CaseState
    alerts: list[CaseAlert]


def new_action_id() -> str:
    return "a-" + uuid.uuid4().hex


def action_row(action: CaseAction) -> tuple[Any, ...]:
    return (action.tenant, action.action_id, action.case_id, action.action, action.actor, action.at,
            list(action.alert_ids), action.client, action.severity, action.alert_time, action.assignee,
            action.reason, action.note)


def _action(values: Sequence[Any]) -> CaseAction:
    row = dict(zip(ACTION_COLUMNS, values, strict=True))
    return CaseAction(
        tenant=row["tenant"], action_id=row["action_id"], case_id=row["case_id"], action=row["action"],
        actor=row["actor"], at=_utc(row["at"]), alert_ids=tuple(row["alert_ids"]), client=row["client"],
        severity=row["severity"], alert_time=_utc(row["alert_time"]), assignee=row["assignee"],
        reason=row["reason"], note=row["note"])


def open_existing(dsn: str, database: str) -> Store:
    """The store of an existing database (raises NoDatabase rather than creating it), with
    the schema brought up to date (the case tables of migration 0010)."""
    probe = clickhouse_connect.get_client(dsn=dsn, database="default")
    try:
        exists = probe.command("EXISTS DATABASE {db:Identifier}", parameters={"db": database})
    finally:
        probe.close()
    if str(exists).strip() != "1":
        raise NoDatabase(f"no database {database!r} in {dsn} (nothing written there yet?)")
    store = Store(dsn, database, retry_for_s=10.0)
    store.migrate()
    return store


def start_filing(store_factory: Callable[[], Store], categories: Iterable[str], every_s: float,
                 stop: threading.Event | None = None,
                 clock: Callable[[], datetime] | None = None) -> threading.Thread:
    """File new alerts into cases every `every_s` from a daemon thread of the engine (the
    process that holds an embedded store). A failure is logged (at most once per 10 minutes)
    and tried again at the next round; it never stops the engine."""
    halt = stop or threading.Event()

    def run() -> None:
        repo: CaseRepository | None = None
        last_log = -1e18
        while not halt.wait(every_s):
            try:
                if repo is None:
                    repo = (CaseRepository(store_factory(), categories) if clock is None
                            else CaseRepository(store_factory(), categories, clock=clock))
                filed = repo.file_new_alerts()
                if filed:
                    log.info("cases: filed %d new alert(s)", filed)
            except Exception as exc:
                if time.monotonic() - last_log > 600:
                    last_log = time.monotonic()
                    log.warning("cases: filing new alerts failed (%s); trying again every %.0f s",
                                str(exc)[:300], every_s)

    thread = threading.Thread(target=run, daemon=True, name="case-filing")
    thread.start()
    return thread


class CaseRepository:
    """Cases over one Store. `tenants=None` in a call: every tenant (an admin, the CLI);
    otherwise only those tenants' cases are seen or touched."""

    def __init__(self, store: Store, categories: Iterable[str] = ("aml", "fraud"),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.categories = list(categories)
        self.clock = clock

    # -- filing ----------------------------------------------------------------------------

    def file_new_alerts(self) -> int:
        """File every alert (mode `alert`, of the case categories) not yet in a case: into its
        client's open case, or a new one. Returns how many alerts were filed."""
        _, rows = self.store.query(
            "SELECT a.tenant, a.alert_id, a.subject, a.severity, a.detected_at, acc.crm_client "
            "FROM alerts AS a LEFT JOIN (SELECT tenant, account_key, any(client_id) AS crm_client "
            "FROM accounts WHERE client_id != '' GROUP BY tenant, account_key) AS acc "
            "ON acc.tenant = a.tenant AND acc.account_key = a.subject "
            "WHERE a.mode = 'alert' AND has({cats:Array(String)}, a.category) "
            "AND (a.tenant, a.alert_id) NOT IN (SELECT tenant, alert_id FROM alert_cases)",
            {"cats": self.categories})
        if not rows:
            return 0
        refs = [AlertRef(tenant=t, alert_id=i, subject=s, severity=sev, detected_at=_utc(d),
                         client_id=c or "") for t, i, s, sev, d, c in rows]
        _, open_rows = self.store.query(
            "SELECT tenant, client, case_id FROM cases WHERE status = 'open' "
            "ORDER BY opened_at DESC, case_id DESC")
        open_cases = {(t, c): case for t, c, case in open_rows}  # the oldest wins (last written)
        self._insert(file_alerts(refs, open_cases, self.clock()))
        return len(refs)

    def _file_before_reading(self) -> None:
        """Reads file new alerts first; a store that refuses the write (a read-only user) still
        lets them read what is filed."""
        try:
            self.file_new_alerts()
        except StoreError as exc:
            log.warning("cases: could not file new alerts (%s); showing the cases filed so far",
                        " ".join(str(exc).split())[:300])

    # -- reads -------------------------------------------------------------------------------

    def list_cases(self, *, status: str = "open", assignee: str | None = None,
                   severity: str | None = None, tenants: Sequence[str] | None = None,
                   limit: int = 1000) -> list[CaseRow]:
        """The queue: cases by severity (highest first), then oldest first."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        self._file_before_reading()
        where: list[str] = ["1"]
        params: dict[str, Any] = {"limit": limit}
        if status != "all":
            where.append("status = {status:String}")
            params["status"] = status
        if assignee is not None:
            where.append("assignee = {assignee:String}")
            params["assignee"] = assignee
        if severity is not None:
            where.append("severity = {severity:String}")
            params["severity"] = severity
        if tenants is not None:
            where.append("has({tenants:Array(String)}, tenant)")
            params["tenants"] = list(tenants)
        _, rows = self.store.query(
            f"SELECT {', '.join(CASE_COLUMNS)} FROM cases WHERE {' AND '.join(where)} "
            "ORDER BY severity_rank DESC, raised_at, tenant, case_id LIMIT {limit:UInt32}", params)
        out = []
        for r in rows:
            row = {k: _utc(v) for k, v in zip(CASE_COLUMNS, r, strict=True)}
            row["acknowledged"] = bool(row["acknowledged"])
            out.append(CaseRow(**row))
        return out

    def resolve(self, ident: str, tenants: Sequence[str] | None = None) -> tuple[str, str]:
        """(tenant, case id) of a case id or of an alert id (its case)."""
        ident = ident.strip()
        scope, params = "", dict[str, Any](id=ident)
        if tenants is not None:
            scope = " AND has({tenants:Array(String)}, tenant)"
            params["tenants"] = list(tenants)
        if ident.startswith("C-"):
            sql = ("SELECT tenant, case_id FROM alert_actions_store WHERE case_id = {id:String} "
                   "AND action = 'open'" + scope + " LIMIT 1")
        else:
            self._file_before_reading()
            sql = ("SELECT tenant, case_id FROM alert_cases WHERE alert_id = {id:String}" + scope +
                   " ORDER BY filed_at LIMIT 1")
        _, rows = self.store.query(sql, params)
        if not rows:
            raise CaseNotFound(f"no case or alert {ident!r}")
        return rows[0][0], rows[0][1]

    def actions(self, tenant: str, case_id: str) -> list[CaseAction]:
        _, rows = self.store.query(
            f"SELECT {', '.join(ACTION_COLUMNS)} FROM alert_actions WHERE tenant = {{t:String}} "
            "AND case_id = {c:String} ORDER BY at, action_id", {"t": tenant, "c": case_id})
        return [_action(r) for r in rows]

    def alerts(self, tenant: str, alert_ids: Sequence[str]) -> list[CaseAlert]:
        _, rows = self.store.query(
            f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts WHERE tenant = {{t:String}} "
            "AND has({ids:Array(String)}, alert_id) ORDER BY detected_at, alert_id",
            {"t": tenant, "ids": list(alert_ids)})
        out = []
        for r in rows:
            row = {k: _utc(v) for k, v in zip(ALERT_COLUMNS, r, strict=True)}
            try:
                row["facts"] = orjson.loads(row["facts"] or "{}")
            except orjson.JSONDecodeError:
                row["facts"] = {"raw": row["facts"]}
            row["evidence"] = list(row["evidence"])
            out.append(CaseAlert(**row))
        return out

    def detail(self, ident: str, tenants: Sequence[str] | None = None) -> CaseDetail:
        tenant, case_id = self.resolve(ident, tenants)
        state = fold(self.actions(tenant, case_id))
        if state is None:
            raise CaseNotFound(f"no case or alert {ident!r}")
        return CaseDetail(state, self.alerts(tenant, state.alert_ids))

    # -- writes ------------------------------------------------------------------------------

    def act(self, ident: str, kind: str, actor: str, *, tenants: Sequence[str] | None = None,
            assignee: str = "", reason: str = "", note: str = "",
            action_id: str | None = None) -> CaseDetail:
        """Record one analyst action on the case of `ident` (a case or an alert id), after
        checking it against the case's state. Raises TransitionError (not allowed now),
        CaseNotFound. With an `action_id` already in the log: nothing is written again."""
        if kind not in ANALYST_ACTIONS:
            raise TransitionError(f"unknown action {kind!r}")
        tenant, case_id = self.resolve(ident, tenants)
        log = self.actions(tenant, case_id)
        if action_id and any(a.action_id == action_id for a in log):
            return self.detail(case_id, tenants)  # a retry of a stored action
        now = self.clock()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # stored to the millisecond
        if log and now <= log[-1].at:  # a clock behind the last action must not reorder the log
            now = log[-1].at + timedelta(milliseconds=1)
        action = CaseAction(tenant=tenant, action_id=action_id or new_action_id(), case_id=case_id,
                            action=cast(ActionKind, kind), actor=actor, at=now,
                            assignee=assignee.strip(), reason=reason, note=note.strip())
        apply(fold(log), action)  # raises TransitionError
        self._insert([action])
        return self.detail(case_id, tenants)

    def record(self, actions: Sequence[CaseAction]) -> None:
        """Write prepared actions in one insert (a bulk import, the tests' simulated desk): each
        is checked, in order, against its case's state folded from the stored log."""
        if not actions:
            return
        case_ids = sorted({a.case_id for a in actions})
        _, rows = self.store.query(
            f"SELECT {', '.join(ACTION_COLUMNS)} FROM alert_actions "
            "WHERE has({ids:Array(String)}, case_id)", {"ids": case_ids})
        logs: dict[str, list[CaseAction]] = {}
        for row in rows:
            stored = _action(row)
            logs.setdefault(stored.case_id, []).append(stored)
        states = {case_id: fold(log) for case_id, log in logs.items()}
        for action in actions:
            states[action.case_id] = apply(states.get(action.case_id), action)  # raises TransitionError
        self._insert(actions)

    def _insert(self, actions: Sequence[CaseAction]) -> None:
        if not actions:
            return
        bad = self.store.insert_rows(ACTION_TABLE, ACTION_COLUMNS, [action_row(a) for a in actions])
        if bad:
            raise WriteRefused(f"the case store refused {len(bad)} action(s): {bad[0].error[:300]}")
