"""`brokerstream sanctions rescreen`: the whole client base against the lists in force
(risk_rules/rescreen.py; docs/reference-data.md)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson

from brokerstream.progress import Steps, note, took
from pipelines.config import Settings, load_settings
from pipelines.reference import load_screener
from pipelines.rules_step import alert_row
from pipelines.store import Store, open_reader
from pipelines.tables import ALERTS
from risk_rules.engine import RuleSettings, load_rules_config, resolved_account_key
from risk_rules.rescreen import HOLDER, RULE_ID, KnownKey, Party, known_key, rescreen, third_parties

ACCOUNTS_SQL = (
    "SELECT account_key, tenant, name, date_of_birth, updated_at FROM accounts "
    "WHERE name != '' {where} ORDER BY tenant, account_key"
)
# the last PSP payment under each (account, party, name) -- approved deposits, payouts pending
# or approved -- the name a payer or beneficiary used, and the payment that is its evidence
PAYERS_SQL = (
    "SELECT tenant, server, login, payer_name, "
    "if(kind = 'withdrawal' OR amount < 0, 'beneficiary', 'payer') AS party, "
    "argMax(op_key, time) AS last_op, max(time) AS last_time FROM balance_operations "
    "WHERE platform = 'psp' AND (status = 'approved' AND kind = 'deposit' "
    "OR status IN ('pending', 'approved') AND kind = 'withdrawal') "
    "AND payer_name != '' {where} GROUP BY tenant, server, login, payer_name, party "
    "ORDER BY tenant, server, login, payer_name"
)
KNOWN_SQL = "SELECT tenant, subject, facts FROM alerts WHERE rule_id = {rule:String} {where}"


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _tenant_filter(tenants: list[str] | None) -> tuple[str, dict[str, Any]]:
    if not tenants:
        return "", {}
    return "AND tenant IN {tenants:Array(String)}", {"tenants": tenants}


def _rule(settings: Settings) -> RuleSettings:
    config = load_rules_config(settings.rules.file)
    found = next((r for r in config.rules if r.id == RULE_ID), None)
    if found is None:
        raise ValueError(f"{settings.rules.file} has no {RULE_ID} rule")
    return found


def parties(
    store: Store, settings: Settings, tenants: list[str] | None
) -> tuple[list[Party], dict[str, str]]:
    where, params = _tenant_filter(tenants)
    holders: dict[str, str] = {}
    out: list[Party] = []
    _, rows = store.query(ACCOUNTS_SQL.replace("{where}", where), params)
    for key, tenant, name, dob, updated in rows:
        holders[key] = name
        out.append(Party(tenant, key, HOLDER, name, _utc(updated), (key,),
                         dob if isinstance(dob, date) else None))
    servers = {name: cfg.platform for name, (_, cfg) in settings.server_index().items()}
    _, rows = store.query(PAYERS_SQL.replace("{where}", where), params)
    payers = [Party(tenant, resolved_account_key("psp", server, int(login), servers), party, name,
                    _utc(last_time), (op,))
              for tenant, server, login, name, party, op, last_time in rows]
    out.extend(third_parties(payers, holders))
    return out, holders


def known_hits(store: Store, tenants: list[str] | None) -> set[KnownKey]:
    where, params = _tenant_filter(tenants)
    _, rows = store.query(KNOWN_SQL.replace("{where}", where), {"rule": RULE_ID, **params})
    return {known_key(tenant, subject, orjson.loads(facts)) for tenant, subject, facts in rows}


def _progress(total: int, every_s: float = 2.0) -> Callable[[int], None]:
    started = last = time.perf_counter()

    def report(done: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every_s or done == total:
            last = now
            rate = done / max(now - started, 1e-9)
            print(f"  screened {done:>10,} / {total:,} names ({done / max(total, 1):4.0%})  "
                  f"{rate:,.0f}/s", file=sys.stderr, flush=True)

    return report


def cmd_rescreen(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    rule = _rule(settings)
    screener, line = load_screener(settings.rules)
    if screener is None:
        print(f"brokerstream: {line}: configure rules.sanctions or run `brokerstream reference load` "
              "first (docs/reference-data.md)", file=sys.stderr)
        return 2
    tenants = args.tenant or None
    known_ids = {t.id for t in settings.tenants}
    unknown = sorted(set(tenants or ()) - known_ids)
    if unknown:
        print(f"brokerstream: --tenant {', '.join(unknown)}: not in the configuration "
              f"(tenants are {', '.join(sorted(known_ids))})", file=sys.stderr)
        return 2
    database = args.database or settings.clickhouse.database
    note(line)
    # the client base must be there: a missing database is said, never created
    store = open_reader(settings.clickhouse_dsn(), database)
    started = time.monotonic()
    try:
        everyone, holders = parties(store, settings, tenants)
        known = known_hits(store, tenants)
        note(f"client base in {database}: {len(holders):,} account holders, "
             f"{len(everyone) - len(holders):,} payer/beneficiary names; "
             f"{len(known):,} hits already alerted")
        with Steps("screened", len(everyone), unit="names") as steps:
            # a terminal gets the bar; a pipe or a log the plain lines every 2 s
            report = (lambda done: steps.advance(done - steps.done)) if steps.tty \
                else _progress(len(everyone))
            result = rescreen(everyone, screener, rule, known, datetime.now(UTC), progress=report)
        rows = [alert_row(a)[1] for a in result.alerts]
        if rows and not args.dry_run:
            store.insert_rows(ALERTS.name, ALERTS.columns, rows)
    finally:
        store.close()
    note(f"screened {result.screened:,} names in {took(started)}: {result.hits:,} hits, "
         f"{len(result.alerts):,} new, {result.unchanged:,} unchanged"
         + ("; dry run: no alert written" if args.dry_run and result.alerts
            else f"; {len(rows):,} alerts written to {database}" if rows else ""))
    for alert in result.alerts[: args.show]:
        print(f"  NEW {alert.tenant} {alert.subject}: {alert.summary}")
    if len(result.alerts) > args.show:
        print(f"  ... {len(result.alerts) - args.show:,} more (alerts table, rule_id = '{RULE_ID}')")
    return 0


RESCREEN_HELP = (
    "Screen every account holder, every payer name of approved PSP deposits and every "
    "beneficiary name of pending or approved PSP payouts "
    "against the sanctions lists in force (rules.sanctions, else the installed lists) and write "
    "an alert (rule sanctions_screening) for each hit not alerted before: run it after every "
    "list update; a second run raises nothing new. Prints progress and a summary."
)


def add_parser(sub: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("sanctions", help="sanctions screening of the whole client base",
                       description="Sanctions screening outside the live rule (docs/reference-data.md).")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = ssub.add_parser("rescreen", help="screen all clients again (after a list update)",
                        description=RESCREEN_HELP)
    add_config(r)
    r.add_argument("--database", help="another database than the configured one "
                   "(the demo writes to brokerstream_demo)")
    r.add_argument("--tenant", action="append", metavar="ID",
                   help="only this tenant's clients (repeatable; default: every tenant)")
    r.add_argument("--dry-run", action="store_true", help="screen and report, write no alert")
    r.add_argument("--show", type=int, default=20, metavar="N",
                   help="print the first N new hits (default 20)")
    r.set_defaults(func=cmd_rescreen)
