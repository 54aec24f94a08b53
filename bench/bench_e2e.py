"""End-to-end throughput of the engine, beside the floor measured in the same run.

    .venv/bin/python bench/bench_e2e.py --events 1000000

For the file path and the Kafka path it prints events/s of the full dataflow (normalise MT5
deals -> canonical records -> ClickHouse) and of the floor (read the same raw messages and
insert them unprocessed into ClickHouse, same batch size), and the ratio between them. Each
run is a separate process with its own embedded ClickHouse directory, as in production.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from confluent_kafka import Message

SERVERS = ["ACME-MT5-Live", "Zenith-MT5"]
BATCH = 50_000


def config(root: Path, bootstrap: str, prefix: str) -> Path:
    doc = yaml.safe_load((REPO / "examples" / "brokerstream.yaml").read_text())
    doc["kafka"].update({"bootstrap": bootstrap, "topic_prefix": prefix, "consume_batch": 5000})
    doc["clickhouse"] = {"dsn": f"chdb://{root / 'ch'}"}
    doc["pipeline"] = {"batch_rows": BATCH, "epoch_s": 1.0, "recovery_dir": str(root / "rec")}
    doc["commissions"] = []  # this measures ingestion: normalise -> canonical tables
    path = root / "brokerstream.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return took


# ---- the floors (run in their own process: python bench_e2e.py floor-file|floor-kafka ...) ---

def floor_file(path: Path, dsn: str) -> int:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=dsn)
    client.command("CREATE TABLE IF NOT EXISTS raw (line String) ENGINE = MergeTree ORDER BY tuple()")
    n, batch = 0, []
    with path.open("rb") as fh:
        for line in fh:
            batch.append(line)
            if len(batch) == BATCH:
                client.insert("raw", [batch], column_names=["line"], column_oriented=True)
                n += len(batch)
                batch = []
    if batch:
        client.insert("raw", [batch], column_names=["line"], column_oriented=True)
        n += len(batch)
    return n


def consume_to_end(bootstrap: str, topic: str, group: str = "floor") -> Iterator[list[Message]]:
    """Every message of `topic` from offset 0, a consume() call at a time, until each partition's
    end (also the floor of bench/bench_peers.py)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.partition.eof": True, "enable.auto.commit": False})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    done: set[int] = set()
    try:
        while len(done) < len(parts):
            batch = []
            for msg in consumer.consume(5000, 1.0):
                if msg.error():
                    done.add(msg.partition())
                else:
                    batch.append(msg)
            yield batch
    finally:
        consumer.close()


def floor_kafka(bootstrap: str, topic: str, dsn: str) -> int:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=dsn)
    client.command("CREATE TABLE IF NOT EXISTS raw (topic String, partition Int32, offset Int64, "
                   "key String, value String, ts Int64) ENGINE = MergeTree ORDER BY tuple()")
    names = ["topic", "partition", "offset", "key", "value", "ts"]
    n = 0
    cols: list[list[object]] = [[] for _ in range(6)]
    for batch in consume_to_end(bootstrap, topic):
        for msg in batch:
            for col, value in zip(cols, (msg.topic(), msg.partition(), msg.offset(), msg.key() or b"",
                                         msg.value(), msg.timestamp()[1]), strict=True):
                col.append(value)
        if len(cols[0]) >= BATCH:
            client.insert("raw", cols, column_names=names, column_oriented=True)
            n += len(cols[0])
            cols = [[] for _ in range(6)]
    if cols[0]:
        client.insert("raw", cols, column_names=names, column_oriented=True)
        n += len(cols[0])
    return n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "floor-file", "floor-kafka"])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--file")
    parser.add_argument("--dsn")
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic")
    parser.add_argument("--skip-kafka", action="store_true")
    args = parser.parse_args()
    if args.mode == "floor-file":
        print(floor_file(Path(args.file), args.dsn))
        return
    if args.mode == "floor-kafka":
        print(floor_kafka(args.bootstrap, args.topic, args.dsn))
        return

    from brokerstream.kafka.local_broker import LocalKafka, ensure_jars, ensure_topics
    from brokerstream.publish import publish, read_envelopes, write_envelopes
    from brokerstream.simulator.mt5 import Mt5DealSimulator

    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    py = sys.executable
    env = {**os.environ, "BROKERSTREAM_HOME": str(work / "home")}
    env.pop("BROKERSTREAM_CLICKHOUSE", None)
    n = args.events
    sim_file = work / "deals.jsonl"
    started = time.perf_counter()
    write_envelopes(sim_file, Mt5DealSimulator(SERVERS, accounts=5_000, seed=42,
                                               malformed_rate=0.001).envelopes(n))
    print(f"generated {n:,} MT5 deal envelopes in {time.perf_counter() - started:.1f} s "
          f"({sim_file.stat().st_size / 1e6:.0f} MB)", flush=True)
    results: list[tuple[str, float, float]] = []

    cfg = config(work / "replay", "local", "")
    t_engine = timed([py, "-m", "brokerstream.cli", "replay", str(sim_file), "--config", str(cfg)], env)
    t_floor = timed([py, __file__, "floor-file", "--file", str(sim_file),
                     "--dsn", f"chdb://{work / 'floor-file'}"], env)
    results.append(("replay file", t_engine, t_floor))
    print(f"replay: engine {t_engine:.1f} s, floor {t_floor:.1f} s", flush=True)

    if not args.skip_kafka:
        ensure_jars()
        broker = LocalKafka(work / "kafka-home")
        state = broker.start()
        try:
            prefix = "bench."
            ensure_topics(state.bootstrap, {f"{prefix}mt5.deals": 6})
            started = time.perf_counter()
            publish(state.bootstrap, read_envelopes(sim_file), topic_prefix=prefix)
            t_pub = time.perf_counter() - started
            print(f"published {n:,} to Kafka in {t_pub:.1f} s ({n / t_pub:,.0f}/s, acks=all)", flush=True)
            cfg = config(work / "kafka", state.bootstrap, prefix)
            t_engine = timed([py, "-m", "brokerstream.cli", "run", "--exit-at-end", "--config",
                              str(cfg)], env)
            t_floor = timed([py, __file__, "floor-kafka", "--bootstrap", state.bootstrap,
                             "--topic", f"{prefix}mt5.deals", "--dsn", f"chdb://{work / 'floor-kafka'}"],
                            env)
            results.append(("kafka", t_engine, t_floor))
            print(f"kafka: engine {t_engine:.1f} s, floor {t_floor:.1f} s", flush=True)
        finally:
            broker.stop()

    print()
    print(f"{'path':<12} {'events':>10} {'engine ev/s':>12} {'floor ev/s':>12} {'engine/floor':>13}")
    for name, t_engine, t_floor in results:
        print(f"{name:<12} {n:>10,} {n / t_engine:>12,.0f} {n / t_floor:>12,.0f} "
              f"{t_floor / t_engine:>12.2f}x")
    print("(wall time of whole processes, start-up included: ~3 s per engine process)")


if __name__ == "__main__":
    main()
