"""`brokerstream alerts ...`: compliance works alert cases from the terminal (docs/cases.md).

    brokerstream alerts list [--status open|closed|all] [--assignee A] [--severity S] [--tenant T]
    brokerstream alerts show ID
    brokerstream alerts assign ID --to ANALYST
    brokerstream alerts ack ID
    brokerstream alerts note ID --text TEXT
    brokerstream alerts close ID --reason REASON [--note TEXT]
    brokerstream alerts reopen ID [--note TEXT]

ID is a case id (`C-…`) or the id of any alert in the case. Every action is recorded with its
actor (`--as`, default $USER) in the append-only `alert_actions` log.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from cases import CLOSE_REASONS, SEVERITIES, TransitionError
from pipelines.config import Settings, load_settings

ACTIONS = {"assign": "assign", "ack": "acknowledge", "note": "note", "close": "close", "reopen": "reopen"}
_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "dim"}


class _UserError(Exception):
    """Bad input or a refused action: one line, exit 2."""


def _actor(args: argparse.Namespace) -> str:
    actor = (args.actor or os.environ.get("USER") or "").strip()
    if not actor:
        try:
            actor = getpass.getuser()
        except (KeyError, OSError):
            actor = ""
    if not actor:
        raise _UserError("no actor: give --as NAME (or set $USER)")
    if len(actor) > 128 or any(c.isspace() for c in actor):
        raise _UserError(f"--as {actor!r}: a name without spaces, at most 128 characters")
    return actor


def _console() -> Any:
    from rich.console import Console

    # A pipe gets the full width (no wrapped columns) and no colours.
    return Console(width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", 200)),
                   highlight=False)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def format_age(age: timedelta) -> str:
    """`3d 04h`, `5h 07m`, `12m`: the two largest units."""
    seconds = max(0, int(age.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m"


def _now(latest: Iterable[datetime | None]) -> datetime:
    """What ages are measured to: the wall clock, or the newest action when that is later (the
    demo's simulated clock runs days ahead of the wall clock; its cases are filed by it)."""
    return max([datetime.now(UTC), *(t for t in latest if t is not None)])


def _severity(value: str) -> str:
    style = _SEVERITY_STYLE.get(value)
    return f"[{style}]{value}[/]" if style else value


CASE_TABLES = ("alert_actions_store", "cases")  # migration 0010


def _open(args: argparse.Namespace, settings: Settings) -> Any:
    """The case repository over the existing store, opened as `sql` opens it
    (pipelines.store.open_reader): nothing created or migrated, a missing database or store and
    an embedded store an engine holds each said in one line (StoreUnavailable, exit 2)."""
    from pipelines.cases_store import CaseRepository
    from pipelines.store import StoreUnavailable, open_reader

    dsn = settings.clickhouse_dsn()
    try:
        store = open_reader(dsn, args.database or settings.clickhouse.database)
    except StoreUnavailable:
        raise
    except Exception as exc:  # a server that does not answer: not the user's mistake
        first = " ".join(str(exc).split())[:300]
        raise _StoreUnavailable(f"cannot open ClickHouse {dsn}: {first}") from None
    found = {r[0] for r in store.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND has({t:Array(String)}, name)",
        {"t": list(CASE_TABLES)})[1]}
    if missing := [t for t in CASE_TABLES if t not in found]:
        store.close()
        raise StoreUnavailable(f"database {store.database} has no {', '.join(missing)} (its schema "
                               "predates migration 0010: the engine migrates it when it starts)")
    return CaseRepository(store, settings.cases.categories)


class _StoreUnavailable(Exception):
    """The ClickHouse server does not answer: one line, exit 1."""


def _tenants(args: argparse.Namespace, settings: Settings) -> list[str] | None:
    if not args.tenant:
        return None
    known = [t.id for t in settings.tenants]
    unknown = sorted(set(args.tenant) - set(known))
    if unknown:
        raise _UserError(f"no tenant {', '.join(unknown)} (tenants are {', '.join(known)})")
    return list(args.tenant)


def _list(args: argparse.Namespace, repo: Any, tenants: list[str] | None) -> int:
    from rich import box
    from rich.table import Table

    rows = repo.list_cases(status=args.status, assignee=args.assignee, severity=args.severity,
                           tenants=tenants, limit=args.limit)
    now = _now(c.last_action_at for c in rows)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    lines = [(c.case_id, c.tenant, c.client, c.severity, f"{c.alerts:,}",
              c.status if c.status == "open" else f"closed ({c.close_reason})",
              c.assignee or "-", "yes" if c.acknowledged else "no", format_age(c.age(now)),
              _when(c.last_action_at)) for c in rows]
    names = ("case", "tenant", "client", "severity", "alerts", "status", "assignee", "ack", "age",
             "last action")
    for i, name in enumerate(names):
        if name == "client":  # the one column that gives way (an instrument key is 75 characters)
            table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=40)
            continue
        width = max([len(name), *(len(line[i]) for line in lines)])
        table.add_column(name, justify="right" if name in ("alerts", "age") else "left", no_wrap=True,
                         min_width=width)
    for line in lines:
        table.add_row(*line[:3], _severity(line[3]), *line[4:])
    console = _console()
    if rows:
        console.print(table)
    scope = f" in {', '.join(tenants)}" if tenants else ""
    what = "cases" if args.status == "all" else f"{args.status} cases"
    alerts = sum(c.alerts for c in rows)
    console.print(f"{len(rows):,} {what}{scope} ({alerts:,} alerts)"
                  + (f"; showing the first {args.limit:,}" if len(rows) >= args.limit else ""))
    return 0


def _show(console: Any, detail: Any) -> None:
    from rich import box
    from rich.table import Table

    s = detail.state
    now = _now([s.last_action_at])
    status = s.status if s.status == "open" else f"closed ({s.close_reason}) at {_when(s.closed_at)}"
    end = s.closed_at or now
    console.print(f"[bold]{s.case_id}[/]  {s.tenant}  {s.client}")
    console.print(f"  status     {status}")
    console.print(f"  severity   {_severity(s.severity)}   alerts {len(s.alert_ids):,}   "
                  f"age {format_age(end - s.raised_at)}")
    console.print(f"  assignee   {s.assignee or '-'}   acknowledged "
                  f"{f'by {s.acknowledged_by} at {_when(s.acknowledged_at)}' if s.acknowledged else 'no'}")
    console.print(f"  raised     {_when(s.raised_at)}   opened {_when(s.opened_at)}")
    console.print(f"alerts ({len(detail.alerts):,})")
    for a in detail.alerts:  # one block each: the evidence lists are long
        console.print(f"  {_when(a.detected_at)}  {_severity(a.severity)}  {a.rule_id} v{a.rule_version} "
                      f"({a.category})  {a.subject}")
        console.print(f"      {a.summary}", markup=False)
        console.print(f"      alert id: {a.alert_id}", markup=False)
        if a.facts:
            console.print("      facts: " + ", ".join(f"{k}={v}" for k, v in a.facts.items()), markup=False)
        console.print(f"      evidence ({len(a.evidence)}): " + ", ".join(a.evidence), markup=False)
    history = Table(title="history", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    for name in ("at", "actor", "action", "details"):
        history.add_column(name, overflow="fold")
    for entry in s.history:
        a = entry.action
        details = {"open": f"{len(a.alert_ids)} alert(s)", "link": f"+{len(a.alert_ids)} alert(s)",
                   "assign": f"to {a.assignee}", "close": a.reason}.get(a.action, "")
        if a.note:
            details = f"{details}: {a.note}" if details else a.note
        if entry.rejected:
            details = f"[dim](not applied: {entry.rejected})[/] {details}"
        history.add_row(_when(a.at), a.actor, a.action, details)
    console.print(history)


def _check(args: argparse.Namespace) -> None:
    """The arguments' values, checked before the store is opened (one line each)."""
    action = args.alerts_action
    if action == "list":
        if args.status not in ("open", "closed", "all"):
            raise _UserError(f"--status {args.status!r}: one of open, closed, all")
        if args.severity is not None and args.severity not in SEVERITIES:
            raise _UserError(f"--severity {args.severity!r}: one of {', '.join(SEVERITIES)}")
        if args.limit < 1:
            raise _UserError("--limit must be at least 1")
    if action == "close" and args.reason not in CLOSE_REASONS:
        raise _UserError(f"--reason {args.reason!r}: one of {', '.join(CLOSE_REASONS)}")
    if action == "note" and not args.text.strip():
        raise _UserError("--text is empty")
    if action == "assign" and not args.to.strip():
        raise _UserError("--to is empty")


def cmd_alerts(args: argparse.Namespace) -> int:
    from pipelines.cases_store import CaseNotFound, StoreError
    from pipelines.store import StoreUnavailable

    try:
        settings = load_settings(args.config)
        tenants = _tenants(args, settings)
        actor = _actor(args) if args.alerts_action in ACTIONS else ""
        _check(args)
        repo = _open(args, settings)
        try:
            if args.alerts_action == "list":
                return _list(args, repo, tenants)
            if args.alerts_action == "show":
                _show(_console(), repo.detail(args.id, tenants))
                return 0
            kind = ACTIONS[args.alerts_action]
            detail = repo.act(args.id, kind, actor, tenants=tenants, assignee=getattr(args, "to", "") or "",
                              reason=getattr(args, "reason", "") or "",
                              note=(getattr(args, "text", None) or getattr(args, "note", None) or ""),
                              action_id=args.action_id)
            s = detail.state
            extra = {"assign": f" to {s.assignee}", "close": f" ({s.close_reason})"}.get(kind, "")
            print(f"{s.case_id}: {kind}{extra} by {actor}; now {s.status}"
                  f"{', assigned to ' + s.assignee if s.assignee else ''}")
            return 0
        finally:
            repo.store.close()
    except (_UserError, CaseNotFound, TransitionError, StoreUnavailable) as exc:
        print(f"brokerstream: {exc}", file=sys.stderr)
        return 2
    except _StoreUnavailable as exc:
        print(f"brokerstream: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:  # e.g. a server user that may not insert
        print(f"brokerstream: ClickHouse refused: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 1


def add_alerts_parser(sub: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    """`brokerstream alerts` and its actions (registered by brokerstream/cli.py)."""
    p = sub.add_parser("alerts", help="work alert cases: list, show, assign, ack, note, close, reopen",
                       description="Compliance works AML/fraud alerts as cases: linked alerts on one "
                       "client share a case; every action is recorded (who, when, what) in the "
                       "append-only alert_actions log. ID is a case id (C-...) or any of its alert ids.")
    actions = p.add_subparsers(dest="alerts_action", required=True, metavar="ACTION")

    def common(q: argparse.ArgumentParser, acts: bool) -> None:
        q.add_argument("--tenant", action="append", metavar="T",
                       help="only this tenant's cases (repeatable; default every tenant)")
        q.add_argument("--database", help="another database than the configured one "
                       "(the demo writes to brokerstream_demo)")
        if acts:
            q.add_argument("--as", dest="actor", metavar="ACTOR",
                           help="who is acting (recorded; default $USER)")
            q.add_argument("--action-id", metavar="ID",
                           help="this action's id: a retry with the same id is recorded once")
        add_config(q)

    q = actions.add_parser("list", help="the case queue",
                           description="Cases, highest severity first, then oldest first (age counts "
                           "from the first alert).")
    q.add_argument("--status", default="open", help="open (default), closed or all")
    q.add_argument("--assignee", metavar="A", help="only cases assigned to A")
    q.add_argument("--severity", metavar="S",
                   help=f"only cases of this (highest) severity: {', '.join(SEVERITIES)}")
    q.add_argument("--limit", type=int, default=500, metavar="N", help="at most N cases (default 500)")
    common(q, acts=False)
    q = actions.add_parser("show", help="one case: its alerts, evidence and history")
    q.add_argument("id", metavar="ID")
    common(q, acts=False)
    q = actions.add_parser("assign", help="assign a case to an analyst")
    q.add_argument("id", metavar="ID")
    q.add_argument("--to", required=True, metavar="ANALYST")
    common(q, acts=True)
    q = actions.add_parser("ack", help="acknowledge a case (I am on it)")
    q.add_argument("id", metavar="ID")
    common(q, acts=True)
    q = actions.add_parser("note", help="add a note to a case")
    q.add_argument("id", metavar="ID")
    q.add_argument("--text", required=True)
    common(q, acts=True)
    q = actions.add_parser("close", help="close a case with a reason",
                           description=f"Close a case. Reasons: {', '.join(CLOSE_REASONS)} "
                           "('other' needs --note).")
    q.add_argument("id", metavar="ID")
    q.add_argument("--reason", required=True, metavar="R", help=", ".join(CLOSE_REASONS))
    q.add_argument("--note", help="why (kept in the history)")
    common(q, acts=True)
    q = actions.add_parser("reopen", help="reopen a closed case")
    q.add_argument("id", metavar="ID")
    q.add_argument("--note", help="why (kept in the history)")
    common(q, acts=True)
    p.set_defaults(func=cmd_alerts)
