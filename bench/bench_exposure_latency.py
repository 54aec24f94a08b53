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
from pathlib import Path

import orjson
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from brokerstream.kafka.local_broker import LocalKafka, ensure_jars, ensure_topics  # noqa: E402
from brokerstream.publish import producer  # noqa: E402

SERVER = "ACME-MT5-Live"
SYMBOLS = [("EURUSD", 100_000, 5, 1.0850), ("GBPUSD", 100_000, 5, 1.2650), ("USDJPY", 100_000, 3, 151.2),
           ("XAUUSD", 100, 2, 2650.0)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def load(bootstrap: str, prefix: str, deals_per_s: int, quotes_per_s: int, seconds: float,
         close_share: float) -> int:
    prod = producer(bootstrap)
    rng = random.Random(3)
    prices = [s[3] for s in SYMBOLS]
    deal_id, sent = 10_000_000, 0
    open_positions: list[tuple[int, str, bool, int]] = []  # login, position id, bought, symbol index
    started = time.monotonic()
    tick = 0.01  # publish in 10 ms slices
    while (elapsed := time.monotonic() - started) < seconds:
        now_ms = int(time.time() * 1000)
        for _ in range(int(deals_per_s * tick)):
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
            doc = {"Deal": str(deal_id), "Login": str(login), "Action": "0" if buy else "1", "Entry": entry,
                   "Symbol": name, "ContractSize": f"{contract}", "Price": f"{prices[i]:.{digits}f}",
                   "Volume": "10000", "VolumeExt": "100000000", "TimeMsc": str(now_ms),
                   "PositionID": position, "Profit": "0", "Digits": str(digits)}
            prod.produce(prefix + "mt5.deals", key=str(login).encode(), value=orjson.dumps(doc),
                         headers=[("server", SERVER), ("event", "add")], timestamp=now_ms)
            sent += 1
        for _ in range(int(quotes_per_s * tick)):
            i = rng.randrange(len(SYMBOLS))
            name, _, digits, _ = SYMBOLS[i]
            prices[i] *= 1 + rng.gauss(0, 0.00002)
            spread = 10 ** -digits * 2
            doc = {"symbol": name, "time_msc": str(now_ms), "time": str(now_ms // 1000),
                   "bid": f"{prices[i] - spread:.{digits}f}", "ask": f"{prices[i] + spread:.{digits}f}",
                   "flags": "6"}
            prod.produce(prefix + "mt5.ticks", key=name.encode(), value=orjson.dumps(doc),
                         headers=[("server", SERVER)], timestamp=now_ms)
        prod.poll(0)
        ahead = started + elapsed + tick - time.monotonic()
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
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    ensure_jars()
    broker = LocalKafka(work / "kafka-home")
    state = broker.start()
    prefix = "lat."
    doc = yaml.safe_load((REPO / "examples" / "brokerstream.yaml").read_text())
    doc["kafka"].update({"bootstrap": state.bootstrap, "topic_prefix": prefix, "partitions": 3})
    doc["clickhouse"] = {"dsn": f"chdb://{work / 'ch'}"}
    doc["commissions"] = []
    doc["exposure"]["limits"]["rules"] = [{"id": "symbol-net", "scope": "symbol", "max_usd": 20_000_000}]
    cfg = work / "brokerstream.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "BROKERSTREAM_HOME": str(work / "home")}
    env.pop("BROKERSTREAM_CLICKHOUSE", None)
    cli = [sys.executable, "-m", "brokerstream.cli"]
    alerts: list[float] = []
    try:
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
                event_ms = int(time.mktime(time.strptime(alert["event_time"][:19], "%Y-%m-%dT%H:%M:%S"))
                               - time.timezone) * 1000 + int(alert["event_time"][20:23] or 0)
                alerts.append(time.time() * 1000 - event_ms)
            consumer.close()

        watcher = threading.Thread(target=watch_alerts, daemon=True)
        watcher.start()
        print(f"load: {args.deals_per_s:,} deals/s + {args.quotes_per_s:,} quotes/s for {args.seconds:.0f} s",
              flush=True)
        sent = load(state.bootstrap, prefix, args.deals_per_s, args.quotes_per_s, args.seconds,
                    args.close_share)
        time.sleep(5)
        engine.send_signal(signal.SIGTERM)
        engine.wait(60)
        watcher.join(1)
        out = subprocess.run(
            [*cli, "sql", "--format", "csv", "--config", str(cfg),
             "SELECT dateDiff('millisecond', as_of, ingested_at) FROM exposure_history "
             "WHERE side = 'clients'"],
            env=env, capture_output=True, text=True, check=True).stdout.splitlines()[1:]
        lat = [float(v) for v in out]
        deals = subprocess.run([*cli, "sql", "--format", "csv", "--config", str(cfg),
                                "SELECT count() FROM deals"], env=env, capture_output=True, text=True,
                               check=True).stdout.splitlines()[1]
        print(f"published {sent:,} deals; {deals} in the deals table; {len(lat):,} exposure rows")
        print(f"deal event time -> exposure row in ClickHouse: p50 {percentile(lat, 0.5):,.0f} ms, "
              f"p99 {percentile(lat, 0.99):,.0f} ms, max {max(lat or [0]):,.0f} ms")
        if alerts:
            print(f"event time -> limit alert on Kafka: {len(alerts)} alerts, p50 "
                  f"{percentile(alerts, 0.5):,.0f} ms, p99 {percentile(alerts, 0.99):,.0f} ms")
        else:
            print("no limit alert arrived (raise the load or lower the limit)")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
