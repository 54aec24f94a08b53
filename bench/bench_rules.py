"""AML/fraud rules inside the full dataflow: throughput, and event -> alert latency live.

    .venv/bin/python bench/bench_rules.py [--events 200000] [--accounts 3000] [--rate 3000] [--seconds 60]

1. Throughput, side by side: the same simulated brokerage history (every topic: deals, quotes,
   payments, logins, CRM) replayed through the whole engine with the rules on and with the
   rules off (`rules.enabled: false`); events/s of each, their ratio, and the rule records/s.
2. Latency, live: a real local broker, the engine as a separate process (`brokerstream run`),
   the simulated brokerage publishing live at `--rate` messages/s with suspicious behaviour
   injected often. For every alert: detection (wall clock, stamped by the engine) minus the
   moment the bench handed the triggering event to Kafka; p50, p99 and max.
"""

from __future__ import annotations

import argparse
import bisect
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from brokerstream.publish import publish, write_envelopes  # noqa: E402
from devtools.kafka.local_broker import LocalKafka, ensure_jars  # noqa: E402
from devtools.simulator.brokerage import Brokerage  # noqa: E402
from pipelines.config import load_settings  # noqa: E402
from schemas.envelope import Envelope  # noqa: E402

CLI = [sys.executable, "-m", "brokerstream.cli"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _config(work: Path, name: str, sim_settings: dict, **extra: object) -> Path:
    doc = dict(sim_settings)
    doc["clickhouse"] = {"dsn": f"chdb://{work / name / 'ch'}"}
    doc["commissions"] = []
    doc.update(extra)
    path = work / name / "brokerstream.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def _env(work: Path, name: str) -> dict[str, str]:
    env = {**os.environ, "BROKERSTREAM_HOME": str(work / name / "home")}
    env.pop("BROKERSTREAM_CLICKHOUSE", None)
    return env


def _sql(cfg: Path, env: dict[str, str], query: str) -> list[str]:
    out = subprocess.run([*CLI, "sql", "--format", "csv", "--config", str(cfg), query], env=env,
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()[1:]


def throughput(work: Path, args: argparse.Namespace) -> None:
    base = load_settings(REPO / "examples" / "brokerstream.yaml")
    sim = Brokerage(base, seed=args.seed, accounts=args.accounts, days=args.days, events=args.events,
                    typology_rate=args.typology_rate)
    history = work / "history.jsonl"
    write_envelopes(history, sim.envelopes(args.events))
    settings = sim.settings.model_dump(mode="json")
    print(f"history: {args.events:,} messages, {args.accounts:,} accounts, {args.days} days", flush=True)
    results = {}
    for name, rules_on in (("rules-off", False), ("rules-on", True)):
        cfg = _config(work, name, settings, rules={**settings["rules"], "enabled": rules_on})
        env = _env(work, name)
        started = time.perf_counter()
        subprocess.run([*CLI, "replay", str(history), "--config", str(cfg)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        alerts = int(_sql(cfg, env, "SELECT count() FROM alerts WHERE category IN ('aml', 'fraud')")[0])
        results[name] = seconds
        print(f"  {name:<9} {seconds:6.1f} s  {args.events / seconds:>9,.0f} events/s  {alerts:>5} AML/fraud "
              "alerts", flush=True)
    off, on = results["rules-off"], results["rules-on"]
    print(f"  rules on / off throughput: {off / on:.2f}x; the rules' own cost "
          f"{(on - off) / args.events * 1e6:.1f} us per message")


def latency(work: Path, args: argparse.Namespace) -> None:
    ensure_jars()
    broker = LocalKafka(work / "kafka-home")
    state = broker.start()
    prefix = "rlat."
    base = load_settings(REPO / "examples" / "brokerstream.yaml")
    sim = Brokerage(base, seed=args.seed + 1, accounts=args.accounts, start_ms=int(time.time() * 1000),
                    typology_rate=args.typology_rate * 4)
    settings = sim.settings.model_dump(mode="json")
    settings["kafka"] = {**settings["kafka"], "bootstrap": state.bootstrap, "topic_prefix": prefix,
                         "partitions": 3}
    cfg = _config(work, "live", settings)
    env = _env(work, "live")
    handed: dict[int, float] = {}  # event time (ms) of each message -> wall clock when handed to Kafka

    def stamped(envelopes: Iterable[Envelope]) -> Iterator[Envelope]:
        for env_ in envelopes:
            handed.setdefault(env_.timestamp_ms, time.time())
            yield env_

    try:
        subprocess.run([*CLI, "migrate", "--config", str(cfg)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        engine = subprocess.Popen([*CLI, "run", "--config", str(cfg)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=(work / "engine.log").open("wb"))
        time.sleep(10)  # engine start-up: imports, topics, partitions
        print(f"live: {args.rate:,} messages/s for {args.seconds:.0f} s", flush=True)
        stop_at = time.monotonic() + args.seconds
        n = int(args.rate * args.seconds)

        def run() -> None:
            sim.run_live(lambda envs: publish(state.bootstrap, stamped(envs), topic_prefix=prefix,
                                              stamp_now=True), args.rate, n)

        feeder = threading.Thread(target=run, daemon=True)
        feeder.start()
        feeder.join(max(0.0, stop_at - time.monotonic()) + 30)
        time.sleep(5)
        engine.send_signal(signal.SIGTERM)
        engine.wait(120)
        rows = _sql(cfg, env, "SELECT rule_id, toUnixTimestamp64Milli(event_time), "
                    "toUnixTimestamp64Milli(detected_at), mode FROM alerts "
                    "WHERE category IN ('aml', 'fraud')")
        # The simulator publishes in event-time order: the triggering message was handed to Kafka
        # no later than the first message whose event time is at or after the alert's (MT4 times
        # have whole seconds, so this can only overstate the latency).
        times = sorted(handed)
        lat: list[float] = []
        published: list[float] = []  # mode = alert: what compliance receives on the topic
        by_rule: dict[str, list[float]] = {}
        for row in rows:
            rule, event_ms, detected_ms, mode = row.split(",")
            i = bisect.bisect_left(times, int(event_ms))
            if i == len(times):
                continue
            lat.append(int(detected_ms) - handed[times[i]] * 1000)
            by_rule.setdefault(rule, []).append(lat[-1])
            if mode.strip('"') == "alert":
                published.append(lat[-1])
        deals = _sql(cfg, env, "SELECT count() FROM deals")[0]
        print(f"  published {len(handed):,} messages; {deals} deals stored; {len(rows)} AML/fraud alerts "
              f"({len(lat)} placed in the published stream)")
        print(f"  event handed to Kafka -> alert detected: p50 {percentile(lat, 0.5):,.0f} ms, "
              f"p99 {percentile(lat, 0.99):,.0f} ms, max {max(lat or [0]):,.0f} ms")
        print(f"  alert-mode rules only ({len(published)} alerts, the ones published): p50 "
              f"{percentile(published, 0.5):,.0f} ms, p99 {percentile(published, 0.99):,.0f} ms")
        print("  per rule (alerts, p50, p99 ms); an alert stamped with an earlier event time than the "
              "message that completed it (a payment's creation time, a window start) counts the wait:")
        for rule, values in sorted(by_rule.items()):
            print(f"    {rule:<30} {len(values):>4} {percentile(values, 0.5):>8,.0f} "
                  f"{percentile(values, 0.99):>8,.0f}")
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="throughput: messages in the history")
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--days", type=float, default=2)
    parser.add_argument("--typology-rate", type=float, default=8)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--rate", type=float, default=3000, help="latency: live messages per second")
    parser.add_argument("--seconds", type=float, default=60, help="latency: how long to publish")
    parser.add_argument("--skip", choices=["throughput", "latency"], help="run only the other part")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rules-"))
    print(f"work dir {work}; started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC", flush=True)
    if args.skip != "throughput":
        throughput(work, args)
    if args.skip != "latency":
        latency(work, args)


if __name__ == "__main__":
    main()
