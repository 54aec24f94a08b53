"""`brokerstream statement client`, `brokerstream report daily`, `brokerstream commissions
statement` and `brokerstream commissions payout-run` (docs/reports.md).

Reads only: the database must exist (nothing is created: "no database X in DIR"). A user's
mistake (a bad date, an unknown tenant, client or IB) is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from brokerstream.output import one_line_errors
from brokerstream.progress import Steps, note, spinner, took
from pipelines.config import Settings, load_settings
from pipelines.store import Store, StoreUnavailable, open_reader
from reports.formats import FORMATS, write
from reports.statement import ReportError

Command = Callable[[argparse.Namespace], int]


class UsageError(ValueError):
    """A bad argument: printed as one line, exit 2."""


def _group(sub: argparse._SubParsersAction, name: str, help: str, description: str
           ) -> argparse._SubParsersAction:
    """A command with actions (`statement`, `report`, `commissions`)."""
    p = one_line_errors(sub.add_parser(name, help=help, description=description))
    return p.add_subparsers(dest="action", required=True, metavar="ACTION")


def _reader(group: argparse._SubParsersAction, name: str, command: Command, *, help: str,
            description: str, out: str, out_metavar: str = "FILE", out_required: bool = False,
            month: bool = False) -> argparse.ArgumentParser:
    """One reading action with the arguments every report shares: its own (the caller adds
    them to the returned parser), then --month when it has one, --out, --format, --tenant,
    --database and --config; its errors are one line (exit 2)."""
    p = one_line_errors(group.add_parser(name, help=help, description=description))
    if month:
        p.add_argument("--month", required=True, metavar="YYYY-MM")
    p.add_argument("--out", metavar=out_metavar, required=out_required, help=out)
    p.add_argument("--format", choices=FORMATS, default="csv", help="file format (default csv)")
    p.add_argument("--tenant", help="the tenant (default: the only one, or each that has data)")
    p.add_argument("--database", help="another database than the configured one "
                   "(the demo writes to brokerstream_demo)")
    p.add_argument("--config", metavar="FILE",
                   help="configuration file (default: $BROKERSTREAM_CONFIG or examples/brokerstream.yaml)")
    p.set_defaults(func=_guarded(command))
    return p


def _day(value: str, option: str) -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise UsageError(f"{option} must be a date like 2024-12-01, got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} must be a date like 2024-12-01, got {value!r}") from None


def _tenants(settings: Settings, chosen: str | None) -> list[str]:
    known = [t.id for t in settings.tenants]
    if chosen is None:
        return known
    if chosen not in known:
        raise UsageError(f"no tenant {chosen!r} (tenants are {', '.join(known)})")
    return [chosen]


@contextmanager
def _reading(args: argparse.Namespace) -> Iterator[tuple[Settings, Store]]:
    settings = load_settings(args.config)
    store = open_reader(settings.clickhouse_dsn(), args.database or settings.clickhouse.database)
    try:
        yield settings, store
    finally:
        store.close()


def _guarded(command: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (UsageError, ReportError, StoreUnavailable) as exc:
            print(f"brokerstream: {exc}", file=sys.stderr)
            return 2
    return run


def _out_file(args: argparse.Namespace, default: str) -> Path:
    out = Path(args.out or default)
    if out.suffix.lower() != f".{args.format}":
        raise UsageError(f"--out {out} does not end in .{args.format} (the --format)")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: no directory {out.parent}")
    return out


# -- statement client ---------------------------------------------------------------------------

def cmd_statement_client(args: argparse.Namespace) -> int:
    from reports.statement import NotFound, Period, client_statement

    if (args.client is None) == (args.login is None):
        raise UsageError("give exactly one of --client ID and --login LOGIN")
    if args.login is not None and (not args.login.isdigit() or int(args.login) >= 2**63):
        raise UsageError(f"--login must be an account number, got {args.login!r}")
    started = time.monotonic()
    period = Period(_day(args.date_from, "--from"), _day(args.date_to, "--to"))
    who = args.client if args.client is not None else args.login
    out = _out_file(args, f"statement-{re.sub(r'[^A-Za-z0-9._-]+', '_', who)}-{period.first}-"
                          f"{period.last}.{args.format}")
    with _reading(args) as (settings, store), spinner(f"reading the statement of {who}…"):
        found = []
        for tenant in _tenants(settings, args.tenant):
            try:
                found.append(client_statement(
                    store, tenant, period, client=args.client,
                    login=int(args.login) if args.login is not None else None, server=args.server))
            except NotFound:  # searched in every tenant: found in none is the error below
                if args.tenant is not None:
                    raise
        if not found:
            what = f"client {args.client!r}" if args.client is not None else f"account {args.login}"
            raise ReportError(f"no {what} in any tenant ({', '.join(_tenants(settings, None))})")
        if len(found) > 1:
            raise UsageError(f"{who} is in tenants {', '.join(r.tenant for r in found)}: add --tenant")
    report = found[0]
    write(report, args.format, out)
    summary = report.sections[0]
    at = [c.name for c in summary.columns].index("check")
    checks = [row[at] for row in summary.rows]
    accounts = sum(1 for row in summary.rows if row[0] != "TOTAL")
    note(f"statement of {who} ({report.tenant}), {period.label()}: {accounts} accounts, "
         f"{len(report.section('deals').rows)} deals, {len(report.section('operations').rows)} "
         f"operations; balance check {'OK' if all(c == 'OK' for c in checks) else 'MISMATCH'}; "
         f"written to {out} in {took(started)}")
    return 0 if all(c == "OK" for c in checks) else 1


# -- report daily -------------------------------------------------------------------------------

def cmd_report_daily(args: argparse.Namespace) -> int:
    from reports.daily import daily_pack, routing_books

    started = time.monotonic()
    day = _day(args.date, "--date")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a directory")
    with _reading(args) as (settings, store):
        tenants = _tenants(settings, args.tenant)
        out_dir.mkdir(parents=True, exist_ok=True)
        books = routing_books(settings.exposure.routing)
        lines: list[str] = []
        with Steps(f"daily pack {day}", len(tenants), unit="tenants") as steps:
            for tenant in tenants:
                report = daily_pack(store, tenant, day, books)
                path = write(report, args.format, out_dir / f"daily-{tenant}-{day}.{args.format}")
                figures = {row[0]: row for row in report.sections[0].rows}
                lines.append(f"{tenant}: {len(report.section('broker_pnl').rows)} book/symbol lines, "
                             f"{figures.get('new accounts', ('', '', 0))[2]} new accounts, "
                             f"{figures.get('alerts opened', ('', '', 0))[2]} alerts opened -> {path}")
                steps.advance(detail=tenant)
    note(f"daily pack {day}: {len(tenants)} file(s) in {out_dir} in {took(started)}; " + "; ".join(lines))
    return 0


# -- commissions statement / payout-run -------------------------------------------------------

def cmd_commissions_statement(args: argparse.Namespace) -> int:
    from commissions import statement
    from reports.payout_run import ib_rows, ib_statement, known_ibs, parse_month

    started = time.monotonic()
    parse_month(args.month)
    out = _out_file(args, f"statement-{args.ib}-{args.month}.{args.format}")
    with _reading(args) as (settings, store), spinner(f"reading {args.ib}'s commissions…"):
        tenant = _tenants(settings, args.tenant)[0] if args.tenant else ""
        ibs = known_ibs(store, tenant)
        if args.ib not in ibs:
            sample = ", ".join(ibs[:5]) + (", ..." if len(ibs) > 5 else "")
            raise UsageError(f"no IB {args.ib!r} in ib_commissions"
                             f"{f' of tenant {tenant}' if tenant else ''} (IBs: {sample or 'none'})")
        rows = ib_rows(store, args.ib, args.month, tenant)
    csv_text, summary = statement(rows, args.ib, args.month)
    if args.format == "csv":  # the line file importers read (one table): as it always was
        out.write_text(csv_text + ("" if csv_text.endswith("\n") else "\n"), encoding="utf-8")
    else:  # the summary first, then the lines
        tenants = sorted({r.tenant for r in rows}) or [tenant or "-"]
        write(ib_statement(rows, args.ib, args.month, ", ".join(tenants)), args.format, out)
    print(summary)  # the statement's own summary: data, on stdout
    note(f"statement of {args.ib} for {args.month}: {len(rows)} lines written to {out} in {took(started)}")
    return 0


def cmd_payout_run(args: argparse.Namespace) -> int:
    from reports.payout_run import parse_month, payout_run

    started = time.monotonic()
    month = parse_month(args.month)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a directory")

    steps = Steps(f"payout run {args.month}", unit="IB statements")
    with _reading(args) as (settings, store), steps:
        def progress(i: int, n: int, ib: str, path: Path) -> None:
            steps.total = n
            steps.advance(detail=f"{ib} -> {path.name}")

        tenant = _tenants(settings, args.tenant)[0] if args.tenant else ""
        run = payout_run(store, month, out_dir, args.format, tenant, progress=progress)
    totals = ", ".join(f"{amount:,.2f} {currency}" for currency, amount in sorted(run.totals().items()))
    note(f"payout run {run.month}: {len(run.files)} IB statements in {out_dir}, total "
         f"{totals or 'nothing'} ({run.total_usd:,.2f} USD); summary {run.summary_file}; "
         f"{took(started)}")
    if run.mismatches:
        print(f"brokerstream: statements that do not add up to ib_payouts_monthly: "
              f"{', '.join(run.mismatches)}", file=sys.stderr)
        return 1
    return 0


# -- registration -------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    """Add `statement`, `report` and `commissions` to the CLI's subcommands."""
    statement = _group(sub, "statement", "statements clients receive (CSV, XLSX, PDF)",
                       "Account statements from the store (docs/reports.md).")
    s = _reader(statement, "client", cmd_statement_client,
                help="one client's (or one account's) statement for a period",
                description="Opening balance, every deal and balance operation, closing balance and "
                "the check opening + movements = closing, per account: the accounts of a CRM client id "
                "(--client) or one login. Days are UTC, both included.",
                out="file (default statement-<client>-<from>-<to>.<format>)")
    s.add_argument("--client", help="CRM client id (accounts.client_id)")
    s.add_argument("--login", help="one account's login")
    s.add_argument("--server", help="with --login: the server, when the login is on several")
    s.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD", help="first day")
    s.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD", help="last day (included)")

    report = _group(sub, "report", "report packs for finance, risk and compliance (CSV, XLSX, PDF)",
                    "Report packs from the store (docs/reports.md).")
    r = _reader(report, "daily", cmd_report_daily, help="one UTC day per tenant",
                description="Broker P&L by book and symbol, client deposits/withdrawals/net, payments, "
                "IB payouts, new accounts and KYC, alerts opened and closed: one file per tenant.",
                out="directory for daily-<tenant>-<date>.<format>", out_metavar="DIR", out_required=True)
    r.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the UTC day")

    commissions = _group(sub, "commissions", "IB commission statements and the month's payout run",
                         "An IB's monthly statement (every line shows the deal, the plan version, the "
                         "tier chain and the formula) and the payout run for every IB.")
    c = _reader(commissions, "statement", cmd_commissions_statement, help="one IB, one month",
                description="Statement of one IB for one month (UTC, by deal time), from "
                "ib_commissions. CSV: the lines (one table; the summary is printed); XLSX/PDF: the "
                "summary first, then the lines.",
                out="file (default statement-<IB>-<month>.<format>)", month=True)
    c.add_argument("--ib", required=True, help="IB id, e.g. IB-3")
    _reader(commissions, "payout-run", cmd_payout_run,
            help="every IB's statement for a month, and a summary with the totals",
            description="One statement file per IB with commission rows in the month, and "
            "payout-run-<month>.<format>: each IB's own/override/total from ib_payouts_monthly, the "
            "total per currency and in USD, and a check that each statement adds up to it.",
            out="directory for the files", out_metavar="DIR", out_required=True, month=True)
