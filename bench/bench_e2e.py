"""End-to-end throughput of the engine, beside the floor measured in the same run.

    .venv/bin/python bench/bench_e2e.py --events 1000000

For the file path and the Kafka path it prints events/s of the engine's normalise + store
(MT5 deals -> canonical records -> ClickHouse; exposure, commissions and rules off) and of the
floor: plain Python on the same messages in the same run - read the file or consume Kafka,
orjson-decode envelope and value, net lots per account and symbol in a dict, the deals into
chdb through Arrow, no other logic (bench/peers/common.py) - and the ratio between them. Each
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from devtools.simulator.sanctions import simulated_rules_section

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# the packages of the checkout (pyproject's [tool.setuptools] packages, top level)
ROOMS = ("brokerstream", "pipelines", "connectors", "risk_rules", "commissions", "schemas",
         "services", "reports", "cases", "withdrawals", "reconciliation", "devtools")


def compile_checkout() -> None:
    """Byte-compile the checkout first, as an installed wheel is: with PYTHONDONTWRITEBYTECODE
    (set on this machine) every engine process would otherwise compile its modules again."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *ROOMS], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)

if TYPE_CHECKING:
    from confluent_kafka import Message

SERVERS = ["ACME-MT5-Live", "Zenith-MT5"]
BATCH = 50_000


def config(root: Path, bootstrap: str, prefix: str) -> Path:
    doc = yaml.safe_load((REPO / "examples" / "brokerstream.yaml").read_text())
    doc["rules"] = {**doc.get("rules", {}), **simulated_rules_section()}  # absolute paths
    doc["kafka"].update({"bootstrap": bootstrap, "topic_prefix": prefix, "consume_batch": 5000})
    doc["clickhouse"] = {"dsn": f"chdb://{root / 'ch'}"}
    doc["pipeline"] = {"batch_rows": BATCH, "epoch_s": 1.0, "recovery_dir": str(root / "rec")}
    # this measures ingestion: normalise -> canonical tables
    doc["commissions"] = []
    doc.setdefault("exposure", {})["enabled"] = False
    doc["rules"] = {"enabled": False}
    doc["withdrawals"] = {"enabled": False}
    doc["recon"] = {"enabled": False}
    path = root / "brokerstream.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float  # user + system of the process
    peak_mb: float  # its largest resident set


def timed(cmd: list[str], env: dict[str, str]) -> Run:
    """Run a process to its end; its wall time, CPU time and peak memory (wait4's rusage)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{stderr.decode(errors='replace')[-2000:]}")
    return Run(took, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


# ---- the floors (run in their own process: python bench_e2e.py floor-file|floor-kafka ...) ---

def _common() -> Any:
    sys.path.insert(0, str(REPO / "bench" / "peers"))
    import common  # the peers' MT5 parse, table and Arrow insert (bench/peers/common.py)

    return common


Raw = tuple[bytes | str, str, str, int, int]  # value, server header, event header, partition, offset


def _floor(dsn: str, batches: Iterator[list[Raw]]) -> int:
    """The floor itself: parse, net lots per (account, symbol) in a dict, deals into chdb via Arrow."""
    common = _common()
    ch = common.client(dsn)
    positions: dict[tuple[int, str], int] = {}
    rows: list[Any] = []
    n = 0
    for batch in batches:
        for value, server, event, partition, offset in batch:
            try:
                row = common.parse_deal(value, server, event or "add", partition, offset)
            except (KeyError, ValueError, TypeError, orjson.JSONDecodeError):
                continue  # the floor skips what it can't read (the engine dead-letters it)
            rows.append(row)
            key = (row[common.I_LOGIN], row[common.I_SYMBOL])
            positions[key] = positions.get(key, 0) + row[common.I_SIGNED]
        if len(rows) >= BATCH:
            common.insert_deals(ch, rows)
            n, rows = n + len(rows), []
    common.insert_deals(ch, rows)
    return n + len(rows)


def floor_file(path: Path, dsn: str) -> int:
    def batches() -> Iterator[list[Raw]]:
        batch: list[Raw] = []
        with path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                env = orjson.loads(line)
                headers = env.get("headers") or {}
                batch.append((env.get("value", ""), headers.get("server", ""), headers.get("event", ""),
                              -1, number))
                if len(batch) == 5000:
                    yield batch
                    batch = []
        yield batch

    return _floor(dsn, batches())


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
    header = _common().header
    return _floor(dsn, ([(m.value() or b"", header(m.headers(), "server"), header(m.headers(), "event"),
                          m.partition(), m.offset()) for m in batch]
                        for batch in consume_to_end(bootstrap, topic)))


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

    from brokerstream.publish import publish, read_envelopes, write_envelopes
    from devtools.kafka.local_broker import running
    from devtools.simulator.mt5 import Mt5DealSimulator
    from pipelines.topics import ensure_topics

    compile_checkout()
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
    results: list[tuple[str, Run, Run]] = []

    cfg = config(work / "replay", "local", "")
    t_engine = timed([py, "-m", "brokerstream.cli", "replay", str(sim_file), "--config", str(cfg)], env)
    t_floor = timed([py, __file__, "floor-file", "--file", str(sim_file),
                     "--dsn", f"chdb://{work / 'floor-file'}"], env)
    results.append(("replay file", t_engine, t_floor))
    print(f"replay: engine {t_engine.wall_s:.1f} s, floor {t_floor.wall_s:.1f} s", flush=True)

    if not args.skip_kafka:
        with running(work / "kafka-home") as state:
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
            print(f"kafka: engine {t_engine.wall_s:.1f} s, floor {t_floor.wall_s:.1f} s", flush=True)

    print()
    print(f"{'path':<12} {'events':>10} {'engine ev/s':>12} {'floor ev/s':>12} {'engine/floor':>13} "
          f"{'engine CPU':>11} {'floor CPU':>10} {'engine peak':>12} {'floor peak':>11}")
    for name, eng, flo in results:
        print(f"{name:<12} {n:>10,} {n / eng.wall_s:>12,.0f} {n / flo.wall_s:>12,.0f} "
              f"{flo.wall_s / eng.wall_s:>12.2f}x {eng.cpu_s / n * 1e6:>8.1f} us "
              f"{flo.cpu_s / n * 1e6:>7.1f} us {eng.peak_mb:>9,.0f} MB {flo.peak_mb:>8,.0f} MB")
    print("(wall time of whole processes, start-up included: ~3 s per engine process; CPU per event)")


if __name__ == "__main__":
    main()
