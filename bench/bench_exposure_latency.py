"""How soon after a deal the risk desk sees it: event time -> exposure row in ClickHouse, and
event time -> limit-breach alert on Kafka, at a sustained deal rate plus quotes.

    .venv/bin/python bench/bench_exposure_latency.py --deals-per-s 5000 --quotes-per-s 2000 --seconds 60

A real local broker and the engine (a separate process, embedded ClickHouse) run as in
production. The load generator publishes MT5 deals and ticks stamped with the wall clock (as a
live bridge does), clients mostly buying EURUSD so the broker's B-book exposure crosses the
configured limit and an alert fires. Latencies: `ingested_at - as_of` of every exposure snapshot
row (as_of = event time of the newest event in it), and alert arrival - alert event time.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from brokerstream.publish import producer  # noqa: E402
from devtools.kafka.local_broker import LocalKafka, ensure_jars  # noqa: E402
from devtools.simulator.sanctions import simulated_rules_section  # noqa: E402
from pipelines.topics import ensure_topics  # noqa: E402
from risk_rules.settings import DEFAULT_RULES_FILE  # noqa: E402

SERVER = "ACME-MT5-Live"
SYMBOLS = [("EURUSD", 100_000, 5, 1.0850), ("GBPUSD", 100_000, 5, 1.2650), ("USDJPY", 100_000, 3, 151.2),
           ("XAUUSD", 100, 2, 2650.0)]


TICK = 0.01  # publish in 10 ms slices


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def plan(deals_per_s: int, quotes_per_s: int, seconds: float, close_share: float
         ) -> list[list[tuple[str, str, dict[str, str]]]]:
    """The messages of every 10 ms slice, built before the clock starts (so the generator's own
    Python work does not compete with the engine for the machine's two cores); each gets its
    wall-clock time when it is sent."""
    rng = random.Random(3)
    prices = [s[3] for s in SYMBOLS]
    deal_id = 10_000_000
    open_positions: list[tuple[int, str, bool, int]] = []  # login, position id, bought, symbol index
    slices = []
    for _ in range(int(seconds / TICK)):
        out: list[tuple[str, str, dict[str, str]]] = []
        for _ in range(int(deals_per_s * TICK)):
            i = 0 if rng.random() < 0.7 else rng.randrange(len(SYMBOLS))
            name, contract, digits, _ = SYMBOLS[i]
            deal_id += 1
            buy = rng.random() < (0.8 if i == 0 else 0.5)
            login = 200_000 + rng.randrange(2_000)
            entry, position = "0", str(deal_id)
            if open_positions and rng.random() < close_share:  # close a random open position
                login, position, bought, i = open_positions.pop(rng.randrange(len(open_positions)))
                name, contract, digits, _ = SYMBOLS[i]
                buy, entry = not bought, "1"
            elif close_share:
                open_positions.append((login, position, buy, i))
            out.append(("mt5.deals", str(login), {
                "Deal": str(deal_id), "Login": str(login), "Action": "0" if buy else "1", "Entry": entry,
                "Symbol": name, "ContractSize": f"{contract}", "Price": f"{prices[i]:.{digits}f}",
                "Volume": "10000", "VolumeExt": "100000000", "TimeMsc": "", "PositionID": position,
                "Profit": "0", "Digits": str(digits)}))
        for _ in range(int(quotes_per_s * TICK)):
            i = rng.randrange(len(SYMBOLS))
            name, _, digits, _ = SYMBOLS[i]
            prices[i] *= 1 + rng.gauss(0, 0.00002)
            spread = 10 ** -digits * 2
            out.append(("mt5.ticks", name, {"symbol": name, "time_msc": "", "time": "",
                                           "bid": f"{prices[i] - spread:.{digits}f}",
                                           "ask": f"{prices[i] + spread:.{digits}f}", "flags": "6"}))
        slices.append(out)
    return slices


def load(bootstrap: str, prefix: str, slices: list[list[tuple[str, str, dict[str, str]]]]) -> int:
    prod = producer(bootstrap)
    sent = 0
    started = time.monotonic()
    for n, messages in enumerate(slices):
        now_ms = int(time.time() * 1000)
        for topic, key, doc in messages:
            if topic == "mt5.deals":
                doc["TimeMsc"] = str(now_ms)
                sent += 1
            else:
                doc["time_msc"], doc["time"] = str(now_ms), str(now_ms // 1000)
            prod.produce(prefix + topic, key=key.encode(), value=orjson.dumps(doc),
                         headers=[("server", SERVER)] + ([("event", "add")] if topic == "mt5.deals" else []),
                         timestamp=now_ms)
        prod.poll(0)
        ahead = started + (n + 1) * TICK - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    prod.flush(30)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deals-per-s", type=int, default=5000)
    parser.add_argument("--quotes-per-s", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--close-share", type=float, default=0.0,
                        help="share of deals that close an open position (0: every deal opens one)")
    parser.add_argument("--epoch-s", type=float, default=5.0, help="the engine's pipeline.epoch_s")
    parser.add_argument("--no-rules", action="store_true", help="run the engine without the AML/fraud rules")
    parser.add_argument("--no-commissions", action="store_true",
                        help="run the engine without IB commissions (examples/commissions.yaml)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    ensure_jars()
    broker = LocalKafka(work / "kafka-home")
    state = broker.start()
    prefix = "lat."
    doc = yaml.safe_load((REPO / "examples" / "brokerstream.yaml").read_text())
    doc["rules"] = {**doc.get("rules", {}), **simulated_rules_section()}  # absolute paths
    doc["kafka"].update({"bootstrap": state.bootstrap, "topic_prefix": prefix, "partitions": 3})
    doc["clickhouse"] = {"dsn": f"chdb://{work / 'ch'}"}
    doc["commissions"] = [] if args.no_commissions else [str(REPO / "examples" / "commissions.yaml")]
    doc["pipeline"]["epoch_s"] = args.epoch_s
    doc["rules"] = {**doc["rules"], "enabled": not args.no_rules, "file": DEFAULT_RULES_FILE}
    doc["exposure"]["limits"]["rules"] = [{"id": "symbol-net", "scope": "symbol", "max_usd": 20_000_000}]
    cfg = work / "brokerstream.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "BROKERSTREAM_HOME": str(work / "home")}
    env.pop("BROKERSTREAM_CLICKHOUSE", None)
    cli = [sys.executable, "-m", "brokerstream.cli"]
    alerts: list[float] = []
    try:
        slices = plan(args.deals_per_s, args.quotes_per_s, args.seconds, args.close_share)
        ensure_topics(state.bootstrap, {prefix + t: 3 for t in ("mt5.deals", "mt5.ticks", "alerts")})
        engine = subprocess.Popen([*cli, "run", "--config", str(cfg)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=(work / "engine.log").open("wb"))
        time.sleep(8)  # engine start-up: imports, migrations, partitions

        def watch_alerts() -> None:
            from confluent_kafka import Consumer
            consumer = Consumer({"bootstrap.servers": state.bootstrap, "group.id": "bench",
                                 "auto.offset.reset": "earliest"})
            consumer.subscribe([prefix + "alerts"])
            deadline = time.monotonic() + args.seconds + 30
            while time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                alert = orjson.loads(msg.value())
                if not alert["rule_id"].startswith("limit."):
                    continue
                event = datetime.fromisoformat(alert["event_time"])
                if event.tzinfo is None:
                    event = event.replace(tzinfo=UTC)
                alerts.append(time.time() * 1000 - event.timestamp() * 1000)
            consumer.close()

        watcher = threading.Thread(target=watch_alerts, daemon=True)
        watcher.start()
        rss: list[tuple[float, float]] = []  # (seconds into the run, engine RSS in MB)

        def watch_memory() -> None:
            began = time.monotonic()
            while engine.poll() is None:
                try:
                    status = Path(f"/proc/{engine.pid}/status").read_text()
                except OSError:
                    return
                kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
                rss.append((time.monotonic() - began, kb / 1024))
                time.sleep(5)

        threading.Thread(target=watch_memory, daemon=True).start()
        print(f"load: {args.deals_per_s:,} deals/s + {args.quotes_per_s:,} quotes/s "
              f"for {args.seconds:.0f} s, "
              f"{args.close_share:.0%} of deals closing; epoch {args.epoch_s} s; "
              f"rules {'off' if args.no_rules else 'on'}",
              flush=True)
        sent = load(state.bootstrap, prefix, slices)
        time.sleep(5)
        stopped_at = datetime.now(UTC)
        engine.send_signal(signal.SIGTERM)
        engine.wait(60)
        watcher.join(1)
        # rows written by the engine's final snapshot at the stop are not live latency
        out = subprocess.run(
            [*cli, "sql", "--format", "csv", "--config", str(cfg),
             "SELECT toUnixTimestamp(as_of), dateDiff('millisecond', as_of, ingested_at) "
             "FROM exposure_history WHERE side = 'clients' AND ingested_at < "
             f"toDateTime64('{stopped_at:%Y-%m-%d %H:%M:%S.%f}', 3, 'UTC') ORDER BY as_of"],
            env=env, capture_output=True, text=True, check=True).stdout.splitlines()[1:]
        rows = [(int(a), float(b)) for a, b in (line.split(",") for line in out)]
        lat = [ms for _, ms in rows]
        deals = subprocess.run([*cli, "sql", "--format", "csv", "--config", str(cfg),
                                "SELECT count() FROM deals"], env=env, capture_output=True, text=True,
                               check=True).stdout.splitlines()[1]
        print(f"published {sent:,} deals; {deals} in the deals table; {len(lat):,} exposure rows")
        print(f"deal event time -> exposure row in ClickHouse: p50 {percentile(lat, 0.5):,.0f} ms, "
              f"p99 {percentile(lat, 0.99):,.0f} ms, max {max(lat or [0]):,.0f} ms")
        step = 60 if args.seconds >= 180 else 10
        if rows:  # the trend: does the engine keep up as its state grows?
            start = rows[0][0]
            spans: dict[int, list[float]] = {}
            for second, ms in rows:
                spans.setdefault((second - start) // step, []).append(ms)
            print(f"  by {step} s of the run (p50 / p99 / max ms): " + "  ".join(
                f"{step * k}s {percentile(v, 0.5):,.0f}/{percentile(v, 0.99):,.0f}/{max(v):,.0f}"
                for k, v in sorted(spans.items())))
        if rss:
            by: dict[int, float] = {}
            for at, mb in rss:
                by[int(at // step)] = mb
            print(f"  engine RSS by {step} s (MB): " + "  ".join(
                f"{step * k}s {mb:,.0f}" for k, mb in sorted(by.items())))
        if alerts:
            print(f"event time -> limit alert on Kafka: {len(alerts)} alerts, p50 "
                  f"{percentile(alerts, 0.5):,.0f} ms, p99 {percentile(alerts, 0.99):,.0f} ms")
        else:
            print("no limit alert arrived (raise the load or lower the limit)")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
