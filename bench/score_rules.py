"""Score the AML/fraud rules against the simulator's ground truth.

    .venv/bin/python bench/score_rules.py [--seed 1] [--accounts 3000] [--days 8] [--events 300000]
                                          [--typology-rate 8] [--rules risk_rules/default_rules.yaml]

Simulates a brokerage (file mode), reads every envelope through the connectors, feeds the
canonical records in order to the RuleEngine and prints, per typology, recall (cases with at
least one alert of a rule meant for it) and precision (that rule's alerts that match a case of
the typology: same subject or an account in common, and the alert's window within the case's
span +- the slack), plus the rule engine's throughput. "early" counts only the cases that ended
at least --late-hours before the end of the data (later ones may be cut short: a withdrawal or
a chargeback that has not happened yet). "other" counts alerts that miss their own typology but
fall on another injected case's subject and time; "prec. any" counts those as true. A case
whose behaviour is by construction another typology's too (the simulator's `also`: ring
members logging in from the ring's far address and from home travel impossibly; a dormant
account emptied again is money in and out) counts as true for that typology's alerts on the
accounts it names, and never for recall.
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.registry import Normaliser, readers_for
from connectors.routing import Router
from devtools.simulator.brokerage import Brokerage
from devtools.simulator.sanctions import DATA as SIM_DATA
from pipelines.config import load_settings
from risk_rules.alerts import Alert
from risk_rules.engine import CsvGeoIP, RuleEngine, load_rules_config
from risk_rules.sanctions import Screener, load_ofac
from risk_rules.settings import DEFAULT_RULES_FILE
from schemas.events import Quote
from schemas.payment_merge import PaymentMerger

DATA = SIM_DATA

# rule -> the typologies it is meant for (the first the main one)
TYPOLOGIES_OF: dict[str, tuple[str, ...]] = {
    "large_transaction": ("large_transaction",),
    "structuring": ("structuring",),
    "structuring_across_accounts": ("structuring_across_accounts",),
    "deposit_withdraw_no_trading": ("deposit_withdraw_no_trading",),
    "split_withdrawal": ("split_withdrawal",),
    "payer_name_mismatch": ("payer_name_mismatch",),
    "shared_instrument": ("shared_instrument",),
    "dormant_reactivation": ("dormant_reactivation",),
    # an MT4 country typed as a name is a high-risk residence the rule must read
    "high_risk_jurisdiction": ("high_risk_country", "mt4_country_name"),
    "chargeback": ("chargeback",),
    "sanctions_screening": ("sanctioned_name",),
    "shared_ip": ("shared_ip_device",),
    "shared_device": ("shared_ip_device",),
    "impossible_travel": ("impossible_travel",),
    "failed_logins_account": ("failed_login_burst",),
    "failed_logins_ip": ("failed_login_burst",),
    "card_testing": ("card_testing",),
    "latency_arbitrage": ("latency_arbitrage",),
    "mirror_trades": ("mirror_trades",),
}
TYPOLOGY_OF: dict[str, str] = {rule: typs[0] for rule, typs in TYPOLOGIES_OF.items()}


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def alert_accounts(a: Alert) -> set[str]:
    out = set(a.facts.get("accounts", []))
    if a.subject.count(":") == 2 and not a.subject.startswith(("ip:", "device:", "instrument:")):
        out.add(a.subject)
    return out


def matches(a: Alert, case: dict[str, Any], slack: timedelta) -> bool:
    subj = (
        a.subject.split(":", 1)[1] if a.subject.startswith(("ip:", "instrument:", "device:")) else a.subject
    )
    if subj != case["subject"] and not (alert_accounts(a) & set(case["accounts"])):
        return False
    return bool(_ts(case["start"]) - slack <= a.event_time <= case_end(case) + slack)


def case_end(case: dict[str, Any]) -> datetime:
    """The case's last event, or its planned defining event (a chargeback days later) if later."""
    end = _ts(case["end"])
    return max(end, _ts(case["due"])) if case.get("due") else end


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "-"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--accounts", type=int, default=3000)
    ap.add_argument("--days", type=float, default=8)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--typology-rate", type=float, default=8.0)
    ap.add_argument("--rules", default=DEFAULT_RULES_FILE)
    ap.add_argument("--settings", default="examples/brokerstream.yaml")
    ap.add_argument("--slack-hours", type=float, default=24)
    ap.add_argument(
        "--late-hours",
        type=float,
        default=72,
        help="cases ending this close to the end of the data may be cut short",
    )
    ap.add_argument("--show", default="", help="print the alerts of this rule id")
    ap.add_argument("--cache", default="", help="pickle of (records, truth): read if it exists, else written")
    args = ap.parse_args()

    t0 = time.perf_counter()
    settings = load_settings(args.settings)
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.exists():
        with cache.open("rb") as fh:
            records, truth = pickle.load(fh)
    else:
        sim = Brokerage(
            settings,
            seed=args.seed,
            accounts=args.accounts,
            days=args.days,
            events=args.events,
            typology_rate=args.typology_rate,
        )
        norm = Normaliser(Router(sim.settings), readers_for(sim.settings))
        merged = PaymentMerger()  # as the account stage: each payment's notifications merged
        records = [merged(r) for env in sim.envelopes(args.events) for r in norm(env)
                   if not isinstance(r, Quote)]
        truth = sim.truth()
        if cache is not None:
            with cache.open("wb") as fh:
                pickle.dump((records, truth), fh)
    t1 = time.perf_counter()

    engine = RuleEngine(
        load_rules_config(args.rules),
        geo=CsvGeoIP(DATA / "geoip_synthetic.csv"),
        screener=Screener(load_ofac(DATA / "sanctions_synthetic.csv", DATA / "sanctions_synthetic_alt.csv")),
        servers={name: cfg.platform for name, (_, cfg) in settings.server_index().items()},
    )
    t2 = time.perf_counter()
    alerts: list[Alert] = []
    for rec in records:
        alerts.extend(engine.on_record(rec))
    t3 = time.perf_counter()

    slack = timedelta(hours=args.slack_hours)
    by_typ: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in truth:
        by_typ[case["typology"]].append(case)
    by_rule: dict[str, list[Alert]] = defaultdict(list)
    for a in alerts:
        by_rule[a.rule_id].append(a)

    print(
        f"simulated {args.events:,} messages ({len(records):,} non-quote records, {len(truth)} cases) "
        f"in {t1 - t0:.1f} s; seed {args.seed}, {args.accounts} accounts, {args.days} days, "
        f"typology rate x{args.typology_rate}"
    )
    print(
        f"rule engine: {len(records):,} records in {t3 - t2:.2f} s = "
        f"{len(records) / (t3 - t2):,.0f} records/s, "
        f"{len(alerts)} alerts"
    )
    data_end = max(r.time for r in records)
    late = data_end - timedelta(hours=args.late_hours)
    print()
    print(
        f"{'typology':28} {'cases':>5} {'found':>5} {'recall':>6} | "
        f"{'early':>5} {'found':>5} {'recall':>6} | "
        f"{'alerts':>6} {'true':>5} {'precision':>9} | {'other':>5} {'prec. any':>9}"
    )
    not_due: dict[str, int] = defaultdict(int)
    every_typ = {t for typs in TYPOLOGIES_OF.values() for t in typs}
    for typ in sorted({*by_typ, *every_typ}):
        # a case whose defining event is planned after the data ends cannot be detected yet
        cases = [c for c in by_typ.get(typ, []) if case_end(c) <= data_end]
        not_due[typ] = len(by_typ.get(typ, [])) - len(cases)
        rules = [r for r, ts in TYPOLOGIES_OF.items() if typ in ts]
        # a rule meant for several typologies: its alerts true for another of them are not this one's
        siblings = {t for r in rules for t in TYPOLOGIES_OF[r] if t != typ}
        mine = [a for r in rules for a in by_rule.get(r, []) if not any(
            matches(a, c, slack) for t in siblings for c in by_typ.get(t, []))]
        found = sum(1 for c in cases if any(matches(a, c, slack) for a in mine))
        early = [c for c in cases if case_end(c) < late]
        found_early = sum(1 for c in early if any(matches(a, c, slack) for a in mine))
        # precision: an alert on a case not complete yet (its last events after the data) is true
        every = by_typ.get(typ, [])
        # a case of another typology whose behaviour is this one's too, by construction (the
        # simulator's "also": e.g. ring members logging in from the ring's far address and home)
        shows = [{**c, "accounts": c["also"][typ]} for c in truth if typ in c.get("also", {})]
        every = every + [{**c, "subject": ""} for c in shows]
        true = sum(1 for a in mine if any(matches(a, c, slack) for c in every))
        other = sum(
            1
            for a in mine
            if not any(matches(a, c, slack) for c in every) and any(matches(a, c, slack) for c in truth)
        )
        print(
            f"{typ:28} {len(cases):5} {found:5} {_ratio(found, len(cases)):>6} | "
            f"{len(early):5} {found_early:5} "
            f"{_ratio(found_early, len(early)):>6} | {len(mine):6} {true:5} {_ratio(true, len(mine)):>9} | "
            f"{other:5} {_ratio(true + other, len(mine)):>9}"
        )
    print()
    for typ, n in sorted(not_due.items()):
        if n:
            print(f"{typ}: {n} more cases not counted, their defining event is due after the data ends")
    for r in sorted(by_rule):
        if r not in TYPOLOGY_OF:
            n = len(by_rule[r])
            any_case = sum(1 for a in by_rule[r] if any(matches(a, c, slack) for c in truth))
            print(f"rule {r} (no typology): {n} alerts, {any_case} on a case's subject")
    if args.show:
        for a in by_rule.get(args.show, []):
            hit = [c["typology"] for c in truth if matches(a, c, slack)]
            print(a.event_time, a.subject, a.summary, hit)


if __name__ == "__main__":
    main()
