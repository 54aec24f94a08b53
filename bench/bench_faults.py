"""Faults the engine must survive (issue 13), on its own local Kafka broker and embedded store.

(a) SIGKILL storm: `brokerstream simulate-mt5` makes N events, `brokerstream produce` publishes
    them, `brokerstream run --exit-at-end` (recovery on) is SIGKILLed K times at random moments
    and restarted after each kill until it finishes. Prints lost and doubled deals (distinct
    deal ids in ClickHouse vs produced) and the time overhead against one uninterrupted run.
(b) Broker outage: the engine tails the topics; the broker is stopped for --outage-s seconds
    mid-run and started again; prints lost / doubled and whether the engine ever exited.

Prints numbers, asserts nothing about timing:

    .venv/bin/python bench/bench_faults.py --events 500000 --kills 50 --outage-s 60
    .venv/bin/python bench/bench_faults.py --events 20000 --kills 3 --outage-s 10   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devtools.kafka.local_broker import LocalKafka, ensure_jars  # noqa: E402

SERVERS = [{"name": "ACME-MT5-Live", "platform": "mt5", "currency": "USD"},
           {"name": "Zenith-MT5", "platform": "mt5", "currency": "EUR"}]


class Engine:
    """One engine installation (config, home, embedded store, recovery) driven by the CLI."""

    def __init__(self, root: Path, bootstrap: str, prefix: str) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {
            "tenants": [{"id": "acme", "servers": SERVERS[:1]}, {"id": "zenith", "servers": SERVERS[1:]}],
            "kafka": {"bootstrap": bootstrap, "topic_prefix": prefix, "partitions": 3},
            "clickhouse": {"dsn": f"chdb://{root / 'ch'}"},
            "pipeline": {"epoch_s": 1.0, "recovery_dir": str(root / "rec")},
        }
        self.config = root / "brokerstream.yaml"
        self.config.write_text(yaml.safe_dump(doc))
        self.env = {**os.environ, "BROKERSTREAM_HOME": str(root / "home")}
        self.env.pop("BROKERSTREAM_CLICKHOUSE", None)

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "brokerstream.cli", *args, "--config", str(self.config)]

    def run(self, *args: str) -> str:
        done = subprocess.run(self.cmd(*args), env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / "engine.log").open("ab")
        return subprocess.Popen(self.cmd(*args), env=self.env, stdout=log, stderr=log)

    def counts(self) -> dict[str, int]:
        out = self.run("sql", "--format", "json",
                       "SELECT (SELECT uniqExact(deal_key) FROM deals) AS deals, "
                       "(SELECT count() FROM deals) AS deal_rows, "
                       "(SELECT count() FROM deals_store) AS stored, "
                       "(SELECT count() - uniqExact(deal_key, version) FROM deals_store) AS rewritten, "
                       "(SELECT count() FROM dead_letters) AS dead")
        return {k: int(v) for k, v in json.loads(out.splitlines()[0]).items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def produced_deals(path: Path) -> int:
    """The deals the tables must hold for the file: the batch reference (tests/batch_reference.py,
    corrections and deletes applied), not the engine."""
    from tests import batch_reference

    servers = {s["name"]: t for s, t in zip(SERVERS, ("acme", "zenith"), strict=True)}
    deals, _, _ = batch_reference.expected(batch_reference.load(path, servers))
    return int(deals.height)


def kill_storm(work: Path, bootstrap: str, events_file: Path, kills: int, want: int, seed: int) -> None:
    rng = random.Random(seed)
    base = Engine(work / "baseline", bootstrap, "base.")
    base.run("produce", str(events_file))
    started = time.perf_counter()
    base.run("run", "--exit-at-end")
    baseline_s = time.perf_counter() - started
    print(f"(a) uninterrupted run: {baseline_s:.1f} s")

    eng = Engine(work / "killed", bootstrap, "kill.")
    eng.run("produce", str(events_file))
    started = time.perf_counter()
    done_kills = 0
    while True:  # kill at random moments 2-10 s into each (re)start, then let it finish
        proc = eng.start("run", "--exit-at-end")
        if done_kills < kills:
            try:
                proc.wait(rng.uniform(2.0, 10.0))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                done_kills += 1
                continue
            print(f"    the run finished after {done_kills} kills (shorter than the storm)")
        else:
            proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"engine exited {proc.returncode}; see {eng.root / 'engine.log'}")
        break
    took = time.perf_counter() - started
    got = eng.counts()
    print(f"(a) {done_kills} SIGKILLs: {took:.1f} s ({took - baseline_s:+.1f} s, "
          f"x{took / baseline_s:.2f} of the uninterrupted run)")
    print(f"    deals produced {want:,}, in ClickHouse {got['deals']:,}: lost {want - got['deals']:,}, "
          f"doubled {got['deal_rows'] - got['deals']:,}; rows written again after resumes (same "
          f"key and version, collapsed by the table): {got['rewritten']:,}; dead letters {got['dead']:,}")


def outage(work: Path, broker: LocalKafka, bootstrap: str, events_file: Path, outage_s: float,
           want: int, total: int) -> None:
    eng = Engine(work / "outage", bootstrap, "out.")
    lines = events_file.read_bytes().splitlines(keepends=True)
    half = work / "first.jsonl"
    rest = work / "second.jsonl"
    half.write_bytes(b"".join(lines[: len(lines) // 2]))
    rest.write_bytes(b"".join(lines[len(lines) // 2:]))
    eng.run("produce", str(half))
    port = free_port()
    proc = eng.start("run", "--metrics-port", str(port))
    while metric(port, "brokerstream_events_in_total") < len(lines) // 4:
        if proc.poll() is not None:
            raise RuntimeError("engine exited before the outage")
        time.sleep(0.2)
    read_before = metric(port, "brokerstream_events_in_total")
    broker.stop()
    stopped = time.monotonic()
    exited_during = False
    ready_seen = []
    while time.monotonic() - stopped < outage_s:
        exited_during |= proc.poll() is not None
        ready_seen.append(metric(port, "brokerstream_ready"))
        time.sleep(1)
    broker.start()
    away = time.monotonic() - stopped
    eng.run("produce", str(rest))
    back = time.monotonic()
    while metric(port, "brokerstream_events_in_total") < total and proc.poll() is None:
        time.sleep(0.5)
    caught_up = time.monotonic() - back
    time.sleep(3)
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    got = eng.counts()
    log = (eng.root / "engine.log").read_text(errors="replace")
    print(f"(b) broker stopped {away:.0f} s after {read_before:,.0f} of {total:,} events read; "
          f"engine exited during the outage: {exited_during}; running at the end: {still_running}; "
          f"reported not ready: {0.0 in ready_seen}; caught up {caught_up:.1f} s after the restart")
    print(f"    deals produced {want:,}, in ClickHouse {got['deals']:,}: lost {want - got['deals']:,}, "
          f"doubled {got['deal_rows'] - got['deals']:,}, rows written twice (same key and version; "
          f"no crash here, so expected 0): {got['rewritten']:,}; log lines about waiting: "
          f"{log.count('waiting for')}; tracebacks: {log.count('Traceback')}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=500_000)
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--outage-s", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skip", choices=["kills", "outage"], help="leave one part out")
    args = p.parse_args()
    ensure_jars()
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    broker = LocalKafka(work / "kafka-home", progress=lambda _: None)
    try:
        bootstrap = broker.start().bootstrap
        sim = Engine(work / "sim", bootstrap, "")
        events = work / "events.jsonl"
        print(sim.run("simulate-mt5", "--events", str(args.events), "--seed", str(args.seed),
                      "--malformed-rate", "0.01", "--out", str(events)).strip())
        want = produced_deals(events)
        if args.skip != "kills":
            kill_storm(work, bootstrap, events, args.kills, want, args.seed)
        if args.skip != "outage":
            outage(work, broker, bootstrap, events, args.outage_s, want, args.events)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
