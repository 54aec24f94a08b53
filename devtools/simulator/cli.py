"""`brokerstream simulate`: the simulated brokerage to a replay file or live into Kafka.

    brokerstream simulate --events N --seed S --out FILE --truth TRUTH.jsonl [--accounts A] [--days D]
    brokerstream simulate --kafka --rate R [--bursts] [--events N] [--truth TRUTH.jsonl]

`main(argv, publish=..., bootstrap=...)` is what the main CLI calls: live mode hands the
envelopes to `publish(bootstrap, envelopes, topic_prefix=...)` (brokerstream.publish.publish),
with `bootstrap` a Kafka address or a function of the settings that returns one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from brokerstream.output import one_line_errors
from brokerstream.progress import Steps, note
from devtools.simulator.brokerage import DEFAULT_ACCOUNTS, Brokerage, Stats, write_truth
from devtools.simulator.emit import iso
from pipelines.config import ConfigError, Settings, load_settings

Publish = Callable[..., Any]


def build_parser(prog: str = "brokerstream simulate") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="A simulated brokerage (MT4, MT5, cTrader, payment providers, CRM) with "
        "known suspicious behaviour injected: to a JSON Lines replay file with its ground truth "
        "(--out, --truth), or live into Kafka (--kafka --rate R). Seeded and deterministic.",
    )
    p.add_argument("--events", type=int, default=100_000, help="messages to generate "
                   "(live mode: 0 = until interrupted)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--accounts", type=int, default=DEFAULT_ACCOUNTS, help="trading accounts")
    p.add_argument("--days", type=float, help="spread the events over about this many days "
                   "(clients get busier or quieter); default: clients keep their natural pace")
    p.add_argument("--start", help="simulated start, ISO 8601 UTC (default 2024-11-25T00:00Z; "
                   "live mode: now)")
    p.add_argument("--quote-share", type=float, default=0.4,
                   help="share of the traffic that is price ticks (default 0.4)")
    p.add_argument("--typology-rate", type=float, default=1.0,
                   help="multiply how often suspicious cases are injected (default 1)")
    p.add_argument("--recon-breaks", type=float, default=0.0, metavar="RATE",
                   help="chance that a payment's platform booking is given a reconciliation "
                   "break (0..1; ground truth in <out>.recon.jsonl, docs/reconciliation.md)")
    p.add_argument("--withdrawal-cases", type=int, default=0, metavar="N",
                   help="inject N withdrawal requests the withdrawal policy holds or rejects "
                   "(devtools/simulator/withdrawal_cases.py; default 0)")
    p.add_argument("--out", metavar="FILE", help="write envelopes to this JSON Lines file")
    p.add_argument("--truth", metavar="FILE",
                   help="ground truth, one case per line (default: next to --out)")
    p.add_argument("--kafka", action="store_true", help="publish live into Kafka instead")
    p.add_argument("--rate", type=float, default=1_000.0, help="live: messages per second (0 = max)")
    p.add_argument("--bursts", action="store_true", help="live: uneven pace, as real traffic")
    p.add_argument("--post-url", metavar="URL",
                   help="live: post payment webhooks to the receiver at URL/webhooks/<provider> "
                   "instead of publishing them (re-signed with the wall clock, which that receiver "
                   "checks them against; `brokerstream demo` keeps them on the simulated clock)")
    p.add_argument("--partners", metavar="DIR",
                   help="also write the simulated IB trees as commissions configurations "
                   "(DIR/commissions-<tenant>.yaml)")
    p.add_argument("--config", metavar="FILE",
                   help="configuration file (default: $BROKERSTREAM_CONFIG or the example)")
    return p


def _start_ms(text: str | None, live: bool) -> int | None:
    if text:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    return int(time.time() * 1000) if live else None


def _report(stats: Stats, out: Callable[[str], None]) -> None:
    out(stats.summary())
    for topic, n in stats.by_topic.items():
        out(f"  {topic:16s} {n:>12,}")
    out("injected cases:")
    for name, n in stats.by_typology.items():
        out(f"  {name:28s} {n:>5}")


def main(argv: Sequence[str] | None = None, *, publish: Publish | None = None,
         bootstrap: str | Callable[[Settings], str] | None = None,
         settings: Settings | None = None) -> int:
    args = one_line_errors(build_parser()).parse_args(argv)
    out = note  # progress and summaries on stderr: stdout stays free for data
    try:
        settings = settings or load_settings(args.config)
    except ConfigError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    if not args.kafka and not args.out:
        print("simulate: give --out FILE (file mode) or --kafka (live mode)", file=sys.stderr)
        return 2
    if args.kafka and publish is None:
        print("simulate: live mode needs a publisher (run it as `brokerstream simulate --kafka`)",
              file=sys.stderr)
        return 2
    try:
        start = _start_ms(args.start, args.kafka)
    except ValueError:
        print(f"simulate: --start {args.start!r} is not an ISO 8601 time", file=sys.stderr)
        return 2
    kwargs: dict[str, Any] = {} if start is None else {"start_ms": start}
    sim = Brokerage(settings, args.seed, accounts=args.accounts, days=args.days,
                    events=args.events or None, quote_share=args.quote_share,
                    typology_rate=args.typology_rate, recon_breaks=args.recon_breaks,
                    withdrawal_cases=args.withdrawal_cases, **kwargs)
    truth = Path(args.truth) if args.truth else None
    if args.partners:
        folder = Path(args.partners)
        folder.mkdir(parents=True, exist_ok=True)
        for tenant, doc in sim.partner_configs().items():
            path = folder / f"commissions-{tenant}.yaml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
                            encoding="utf-8")
            out(f"partner tree: {path}")
    if not args.kafka:
        target = Path(args.out)
        truth = truth or target.with_name(target.stem + ".truth.jsonl")
        out(f"simulating {args.events:,} events (seed {args.seed}, {args.accounts:,} accounts) "
            f"-> {target}")
        with Steps("simulating", args.events, unit="events") as steps:
            stats = sim.write_files(target, truth, args.events,
                                    progress=lambda k: steps.advance(k - steps.done))
        _report(stats, out)
        recon = target.with_name(target.stem + ".recon.jsonl")
        n = write_truth(recon, sim.recon_truth())
        out(f"written: {target} ({stats.events:,} events), ground truth {truth} ({stats.cases} "
            f"cases), reconciliation breaks {recon} ({n} made by the simulation)")
        return 0
    assert publish is not None
    address = bootstrap(settings) if callable(bootstrap) else (bootstrap or settings.kafka.bootstrap)
    prefix = settings.kafka.topic_prefix
    out(f"simulating live into Kafka {address} at {args.rate:,.0f}/s"
        f"{' (bursty)' if args.bursts else ''}, seed {args.seed}; Ctrl-C stops")

    def progress(n: int, stats: Stats) -> None:
        out(f"  {n:,} events, simulated time {iso(stats.last_ms)}, {stats.rate:,.0f}/s, "
            f"{len(sim.truth())} cases so far")

    def publish_fn(envelopes: Iterable[Any]) -> Any:
        return publish(address, envelopes, topic_prefix=prefix)

    try:
        stats = sim.run_live(publish_fn, args.rate, args.events, args.bursts,
                             post_url=args.post_url or "", progress=progress)
    except KeyboardInterrupt:
        stats = Stats(events=sim.yielded)
        out("interrupted")
    _report(stats, out)
    if args.post_url:
        out(f"webhooks posted: {stats.posted:,} ({stats.post_failures:,} failed)")
    if truth is not None:
        n = write_truth(truth, sim.truth())
        out(f"ground truth: {truth} ({n} cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
