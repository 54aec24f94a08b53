"""Alert cases in the real store (chdb): filing alerts into cases, analyst actions written to
the append-only log and read back, idempotent retries, tenant scope, and the SQL view `cases`
agreeing with the Python fold of the same log."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cases import TransitionError, fold
from pipelines.cases_store import (
    ACTION_COLUMNS,
    ACTION_TABLE,
    CaseNotFound,
    CaseRepository,
    NoDatabase,
    action_row,
    open_existing,
)
from pipelines.rules_step import alert_row
from pipelines.store import Store
from risk_rules.alerts import Alert
from schemas.identity import account_key, parse_account_key
from tests.test_cases import ANALYSTS, CLOSE_REASONS, valid_log

T0 = datetime(2024, 11, 25, 9, 0, tzinfo=UTC)


def write_alert(store: Store, alert_id: str, subject: str, *, tenant: str = "acme", severity: str = "high",
                category: str = "aml", mode: str = "alert", minutes: int = 0) -> None:
    at = T0 + timedelta(minutes=minutes)
    alert = Alert(alert_id=alert_id, rule_id="aml.structuring", rule_version=1, category=category,  # type: ignore[arg-type]
                  severity=severity, tenant=tenant, subject=subject,  # type: ignore[arg-type]
                  summary=f"{alert_id}: 4 deposits of 9,500 USD in 24 h",
                  facts={"deposits": 4, "limit": "10000"},
                  evidence=[f"psp:skrill:{alert_id}-1", f"psp:skrill:{alert_id}-2"], event_time=at,
                  detected_at=at, mode=mode)  # type: ignore[arg-type]
    table, row = alert_row(alert)
    store.insert_rows(table.name, ("alert_id", "rule_id", "rule_version", "category", "severity", "tenant",
                              "subject", "summary", "facts", "evidence", "event_time", "detected_at", "mode"),
                      [row])


def write_account(store: Store, account_key: str, client_id: str, tenant: str = "acme") -> None:
    platform, server, login = parse_account_key(account_key)
    store.insert_rows("accounts_store", ("account_key", "tenant", "platform", "server", "login", "client_id",
                                         "first_seen", "updated_at", "version"),
                      [(account_key, tenant, platform, server, int(login), client_id, T0, T0, 1)])


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(days=1)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def test_alerts_are_filed_into_cases_by_client(store: Store) -> None:
    write_account(store, "mt5:ACME-MT5-Live:1001", "CRM-7")
    write_account(store, "mt4:ACME-MT4-Live:5005", "CRM-7")
    write_alert(store, "a1", "mt5:ACME-MT5-Live:1001", severity="medium")
    write_alert(store, "a2", "mt4:ACME-MT4-Live:5005", severity="critical", minutes=5)
    write_alert(store, "b1", "mt5:ACME-MT5-Live:2002")
    write_alert(store, "z1", "mt5:Zenith-MT5:1001", tenant="zenith")
    write_alert(store, "obs", "mt5:ACME-MT5-Live:3003", mode="observe")  # tuning only
    write_alert(store, "risk", "symbol:B:EURUSD", category="risk")  # the risk desk's
    repo = CaseRepository(store, clock=Clock())
    assert repo.file_new_alerts() == 4
    assert repo.file_new_alerts() == 0, "filed once"
    queue = repo.list_cases()
    assert [(c.tenant, c.client, c.alerts, c.severity) for c in queue] == [
        ("acme", "client:CRM-7", 2, "critical"), ("acme", "mt5:ACME-MT5-Live:2002", 1, "high"),
        ("zenith", "mt5:Zenith-MT5:1001", 1, "high")]
    crm = queue[0]
    assert crm.raised_at == T0 and crm.status == "open" and crm.assignee == ""
    # a later alert of the client joins its open case; after the close, a new case
    write_alert(store, "a3", "mt5:ACME-MT5-Live:1001", minutes=60)
    assert repo.detail("a3").state.case_id == crm.case_id
    repo.act(crm.case_id, "close", "ana", reason="escalated")
    write_alert(store, "a4", "mt5:ACME-MT5-Live:1001", minutes=120)
    later = repo.detail("a4").state
    assert later.case_id != crm.case_id and later.alert_ids == ("a4",) and later.client == "client:CRM-7"
    assert [c.case_id for c in repo.list_cases(status="closed")] == [crm.case_id]
    assert len(repo.list_cases(status="all", tenants=["acme"])) == 3


def test_analyst_actions_are_recorded_and_read_back(store: Store) -> None:
    write_alert(store, "a1", "mt5:ACME-MT5-Live:1001")
    write_alert(store, "a2", "mt5:ACME-MT5-Live:1001", minutes=1, severity="low")
    repo = CaseRepository(store, clock=Clock())
    case_id = repo.detail("a2").state.case_id
    repo.act("a1", "assign", "lead", assignee="ana")
    repo.act(case_id, "acknowledge", "ana")
    repo.act(case_id, "note", "ana", note="asked the client for payslips")
    detail = repo.act(case_id, "close", "ana", reason="false_positive", note="salary payments")
    s = detail.state
    assert (s.status, s.assignee, s.acknowledged_by, s.close_reason, s.notes) == (
        "closed", "ana", "ana", "false_positive", 2)
    assert [e.action.action for e in s.history] == ["open", "assign", "acknowledge", "note", "close"]
    assert [e.action.actor for e in s.history] == ["system", "lead", "ana", "ana", "ana"]
    assert [a.alert_id for a in detail.alerts] == ["a1", "a2"]
    assert detail.alerts[0].evidence == ["psp:skrill:a1-1", "psp:skrill:a1-2"]
    assert detail.alerts[0].facts == {"deposits": 4, "limit": "10000"}
    with pytest.raises(TransitionError, match="closed already"):
        repo.act(case_id, "close", "bo", reason="sar_filed")
    with pytest.raises(TransitionError, match="reopen it first"):
        repo.act(case_id, "assign", "bo", assignee="bo")
    with pytest.raises(CaseNotFound):
        repo.act("C-0000000000", "note", "ana", note="x")
    # the queue row (SQL view) says what the fold says
    [row] = repo.list_cases(status="closed")
    assert (row.status, row.assignee, row.acknowledged, row.close_reason, row.notes, row.actions) == (
        "closed", "ana", True, "false_positive", 2, 5)


def test_a_retried_action_is_stored_once(store: Store) -> None:
    write_alert(store, "a1", "mt5:ACME-MT5-Live:1001")
    repo = CaseRepository(store, clock=Clock())
    case_id = repo.detail("a1").state.case_id
    first = repo.act(case_id, "note", "ana", note="called the client", action_id="form-123")
    again = repo.act(case_id, "note", "ana", note="called the client", action_id="form-123")
    assert first.state == again.state and first.state.notes == 1
    # the same row written twice (a retried insert) is one action
    [note] = [a for a in repo.actions("acme", case_id) if a.action == "note"]
    store.insert_rows(ACTION_TABLE, ACTION_COLUMNS, [action_row(note)])
    assert len(repo.actions("acme", case_id)) == 2
    assert store.scalar(f"SELECT actions FROM cases WHERE case_id = '{case_id}'") == 2


def test_a_case_of_another_tenant_is_not_found(store: Store) -> None:
    write_alert(store, "z1", "mt5:Zenith-MT5:1001", tenant="zenith")
    repo = CaseRepository(store, clock=Clock())
    case_id = repo.detail("z1").state.case_id
    for ident in (case_id, "z1"):
        with pytest.raises(CaseNotFound):
            repo.detail(ident, tenants=["acme"])
        with pytest.raises(CaseNotFound):
            repo.act(ident, "note", "spy", note="x", tenants=["acme"])
    assert repo.list_cases(tenants=["acme"]) == []
    assert [c.case_id for c in repo.list_cases(tenants=["zenith"])] == [case_id]
    assert repo.detail(case_id).state.notes == 0


def test_the_cases_view_agrees_with_the_fold(store: Store) -> None:
    """Random valid logs of many cases, written in one go: each case's row of the SQL view has
    the status, assignee, acknowledgement, reason, alerts and counts of the Python fold."""
    rng = random.Random(16)
    kinds = ["assign", "acknowledge", "note", "close", "reopen", "link"]
    logs = []
    for n in range(40):
        attempts = [(rng.choice(kinds), rng.choice(ANALYSTS), rng.choice(CLOSE_REASONS), rng.randrange(4))
                    for _ in range(rng.randrange(0, 20))]
        log = valid_log(attempts, seed=n)
        case_id = f"C-{n:010d}"
        logs.append([a.__class__(**{**{f: getattr(a, f) for f in a.__slots__}, "case_id": case_id})  # type: ignore[attr-defined]
                     for a in log])
    rows = [action_row(a) for log in logs for a in log]
    rng.shuffle(rows)
    store.insert_rows(ACTION_TABLE, ACTION_COLUMNS, rows)
    cases = {c.case_id: c for c in CaseRepository(store).list_cases(status="all")}
    assert len(cases) == 40
    for log in logs:
        state = fold(log)
        assert state is not None
        row = cases[state.case_id]
        assert (row.status, row.assignee, row.acknowledged_by, row.close_reason, row.severity) == (
            state.status, state.assignee, state.acknowledged_by, state.close_reason, state.severity)
        assert (row.opened_at, row.raised_at, row.closed_at, row.last_action_at) == (
            state.opened_at, state.raised_at, state.closed_at, state.last_action_at)
        assert (row.alerts, row.notes, row.actions) == (len(state.alert_ids), state.notes, len(log))


def test_a_read_never_creates_the_database(settings: object, tmp_path: Path) -> None:
    from pipelines.config import Settings

    assert isinstance(settings, Settings)
    with pytest.raises(NoDatabase, match="no database 'nothing_here'"):
        open_existing(settings.clickhouse_dsn(), "nothing_here")
    probe = Store(settings.clickhouse_dsn(), "default")
    try:
        assert probe.scalar("SELECT count() FROM system.databases WHERE name = 'nothing_here'") == 0
    finally:
        probe.close()


def test_the_compliance_case_panels_count_what_the_log_says(store: Store) -> None:
    """The compliance dashboard's queue, ageing and per-analyst panels, run on cases whose ages,
    severities and assignees are known, against a count written here from the scenario."""
    from services.dashboard.definitions import load_dashboards, render_sql

    now = datetime.now(UTC).replace(microsecond=0)
    # (client login, hours since its alert, severity, assignee, acknowledged, closed)
    scenario = [(1, 2, "high", "ana", True, False), (2, 30, "critical", "ana", False, False),
                (3, 100, "medium", "bo", False, False), (4, 200, "high", "", False, False),
                (5, 1000, "low", "", False, False), (6, 50, "critical", "bo", True, True)]
    for login, hours, severity, _, _, _ in scenario:
        subject = account_key("mt5", "ACME-MT5-Live", login)
        at = now - timedelta(hours=hours)
        write_alert(store, f"p{login}", subject, severity=severity,
                    minutes=int((at - T0).total_seconds() // 60))
    repo = CaseRepository(store)
    for login, _, _, assignee, acked, closed in scenario:
        if assignee:
            repo.act(f"p{login}", "assign", "lead", assignee=assignee)
        if acked:
            repo.act(f"p{login}", "acknowledge", assignee)
        if closed:
            repo.act(f"p{login}", "close", assignee, reason="escalated")
    [compliance] = [d for d in load_dashboards() if d.uid == "brokerstream-compliance"]
    panels = {p.title: p for p in compliance.panels}

    def run(title: str) -> list[dict[str, object]]:
        sql = render_sql(panels[title].sql, time_from=now - timedelta(days=90), time_to=now,
                         variables={"tenant": ["acme", "zenith"]}, interval_s=3600)
        names, rows = store.query(sql)
        return [dict(zip(names, r, strict=True)) for r in rows]

    open_cases = [s for s in scenario if not s[5]]
    queue = run("Open case queue")
    rank = {"low": 1, "medium": 2, "high": 3, "critical": 4}
    expected = sorted(open_cases, key=lambda s: (-rank[s[2]], -s[1]))
    assert [(q["client"], q["severity"], q["assignee"]) for q in queue] == [
        (f"mt5:ACME-MT5-Live:{s[0]}", s[2], s[3] or "(unassigned)") for s in expected]
    for q, s in zip(queue, expected, strict=True):
        assert abs(float(q["age_days"]) - s[1] / 24) < 0.1  # type: ignore[arg-type]
    buckets = [("< 1 day", 0, 24), ("1-3 days", 24, 72), ("3-7 days", 72, 168), ("7-30 days", 168, 720),
               ("> 30 days", 720, 10**9)]
    assert [(r["age"], r["open_cases"], r["high_severity"]) for r in run("Case ageing")] == [
        (name, sum(lo <= s[1] < hi for s in open_cases),
         sum(lo <= s[1] < hi and s[2] in ("high", "critical") for s in open_cases))
        for name, lo, hi in buckets]
    load: dict[str, list[int]] = {}
    for _, _, severity, assignee, acked, _ in open_cases:
        row = load.setdefault(assignee or "(unassigned)", [0, 0, 0])
        row[0] += 1
        row[1] += severity in ("high", "critical")
        row[2] += not acked
    got = {r["analyst"]: [r["open_cases"], r["high_severity"], r["not_acknowledged"]]
           for r in run("Open cases per analyst")}
    assert got == load


def test_the_engine_files_new_alerts_in_the_background(store: Store) -> None:
    import threading

    from pipelines.cases_store import start_filing

    write_alert(store, "bg-1", "mt5:ACME-MT5-Live:1001")
    stop = threading.Event()
    start_filing(lambda: store, ["aml", "fraud"], 0.05, stop)
    try:
        for _ in range(600):  # a hang bound, not a timing assertion
            if store.scalar("SELECT count() FROM alert_cases WHERE alert_id = 'bg-1'"):
                break
            stop.wait(0.05)
    finally:
        stop.set()
    assert store.scalar("SELECT count() FROM cases WHERE status = 'open'") == 1


def test_a_store_that_refuses_writes_still_shows_the_filed_cases(store: Store) -> None:
    """A ClickHouse that refuses the action rows (here a real CHECK constraint; on a server, a
    user without INSERT): reads show what is filed, an action is refused in one exception."""
    from pipelines.cases_store import StoreError

    write_alert(store, "w1", "mt5:ACME-MT5-Live:1001")
    repo = CaseRepository(store, clock=Clock())
    case_id = repo.detail("w1").state.case_id
    store.client.command("ALTER TABLE alert_actions_store ADD CONSTRAINT no_more CHECK 0")
    write_alert(store, "w2", "mt5:ACME-MT5-Live:2002")
    assert [c.case_id for c in repo.list_cases()] == [case_id], "w2 could not be filed"
    with pytest.raises(StoreError, match="refused"):
        repo.act(case_id, "note", "ana", note="x")
    assert repo.detail(case_id).state.notes == 0
