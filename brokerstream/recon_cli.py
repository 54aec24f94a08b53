"""`brokerstream recon report`: finance's daily reconciliation report (docs/reconciliation.md)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any


def cmd_recon_report(args: argparse.Namespace) -> int:
    from pipelines.config import load_settings
    from pipelines.recon_report import daily_report
    from pipelines.store import StoreUnavailable, open_reader

    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.date):
        print(f"brokerstream: --date must look like 2024-11-25, not {args.date!r}", file=sys.stderr)
        return 2
    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        print(f"brokerstream: --date {args.date!r} is not a calendar day", file=sys.stderr)
        return 2
    settings = load_settings(args.config)
    known = [t.id for t in settings.tenants]
    if args.tenant is not None and args.tenant not in known:
        print(f"brokerstream: no tenant {args.tenant!r} (tenants are {', '.join(known)})", file=sys.stderr)
        return 2
    # a read: nothing created or migrated; a store an engine holds is said to be held
    store = open_reader(settings.clickhouse_dsn(), args.database or settings.clickhouse.database)
    try:
        if not store.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                            "AND name = 'reconciliation_breaks'"):
            raise StoreUnavailable(f"database {store.database} has no reconciliation_breaks (its "
                                   "schema predates migration 0008: the engine migrates it when it starts)")
        report = daily_report(store.client, store.database, day, args.tenant)
    finally:
        store.close()
    text = report.csv()
    ops = sum(s.ops for s in report.summary)
    matched = sum(s.matched for s in report.summary)
    opened = sum(1 for b in report.breaks if b["status"] == "open")
    line = (f"{day}: {ops} PSP operations, {matched} matched"
            f"{f' ({matched / ops:.2%})' if ops else ''}, {len(report.breaks)} breaks "
            f"({opened} open)")
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{line}; written to {args.out}")
    else:
        sys.stdout.write(text)
        print(line, file=sys.stderr)
    return 0


def add_recon_parser(sub: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("recon", help="reconciliation of PSP payments with the platforms",
                       description="Reconciliation of money between the payment providers and "
                       "the trading platforms (docs/reconciliation.md).")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = rsub.add_parser("report", help="one day's breaks and match rate per PSP, as CSV",
                        description="One CSV: `summary` rows (per tenant and PSP: operations, "
                        "matched, match rate, breaks, open) then `break` rows (every break whose "
                        "age basis is on the day, open or resolved). Reads only.")
    r.add_argument("--date", required=True, help="the day (UTC), YYYY-MM-DD")
    r.add_argument("--tenant", help="one tenant (default: all)")
    r.add_argument("--database", help="another database than the configured one")
    r.add_argument("--out", metavar="FILE", help="write the CSV here (default: standard output)")
    add_config(r)
    r.set_defaults(func=cmd_recon_report)
