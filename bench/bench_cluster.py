"""One engine process against a Bytewax cluster of two, on the same Kafka input.

    .venv/bin/python bench/bench_cluster.py --events 300000

MT5 deals (`simulate-mt5`) are published once into a local Kafka; then `brokerstream run
--exit-at-end` reads them all with 1 process, and again (a fresh store) with 2 processes
(`-i 0/1 -a ...`) on this machine. Every dataflow is on (exposure, commissions, rules). With the
embedded ClickHouse, process 0 alone writes the store and process 1 routes its rows to it; the
count of stored deals is checked after each run. Prints events/s, CPU per event and the ratio.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from devtools.simulator.sanctions import simulated_rules_section
from risk_rules.settings import DEFAULT_RULES_FILE

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SERVERS = ["ACME-MT5-Live", "Zenith-MT5"]


def config(root: Path, bootstrap: str, prefix: str) -> Path:
    doc = yaml.safe_load((REPO / "examples" / "brokerstream.yaml").read_text())
    doc["rules"] = {**doc.get("rules", {}), **simulated_rules_section()}  # absolute paths
    doc["kafka"].update({"bootstrap": bootstrap, "topic_prefix": prefix, "consume_batch": 5000})
    doc["clickhouse"] = {"dsn": f"chdb://{root / 'ch'}"}
    doc["commissions"] = [str(REPO / "examples" / "commissions.yaml")]
    doc["rules"] = {**doc["rules"], "file": DEFAULT_RULES_FILE}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "brokerstream.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(processes: int, cfg: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of a cluster of `processes` reading the topics to their end."""
    cmd = [sys.executable, "-m", "brokerstream.cli", "run", "--exit-at-end", "--no-recovery",
           "--config", str(cfg)]
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd + (["-i", str(i), "-a", addresses] if processes > 1 else []),
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(processes)]
    cpu = 0.0
    for proc in procs:
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        cpu += usage.ru_utime + usage.ru_stime
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"process failed:\n{err.decode(errors='replace')[-2000:]}")
    return time.perf_counter() - started, cpu


def stored_deals(cfg: Path, env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-m", "brokerstream.cli", "sql", "--config", str(cfg),
                          "--format", "csv", "SELECT uniqExact(deal_key) FROM deals_store"],
                         env=env, capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    args = parser.parse_args()
    from brokerstream.publish import publish
    from devtools.kafka.local_broker import running
    from devtools.simulator.mt5 import Mt5DealSimulator
    from pipelines.topics import ensure_topics

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    env = {**os.environ, "BROKERSTREAM_HOME": str(work / "home")}
    env.pop("BROKERSTREAM_CLICKHOUSE", None)
    n = args.events
    with running(work / "kafka-home") as state:
        prefix = "bench."
        ensure_topics(state.bootstrap, {f"{prefix}mt5.deals": 6})
        envelopes = list(Mt5DealSimulator(SERVERS, accounts=5_000, seed=42).envelopes(n))
        # trades only: balance actions (deposits, ...) land in balance_operations, not deals
        docs = [(e.headers.get("server"), orjson.loads(e.value)) for e in envelopes]
        deals = {(server, doc.get("Deal")) for server, doc in docs
                 if isinstance(doc, dict) and str(doc.get("Action")) in ("0", "1", "13", "14")}
        publish(state.bootstrap, envelopes, topic_prefix=prefix)
        print(f"published {n:,} MT5 deal events ({len(deals):,} deals) into Kafka", flush=True)
        rows = []
        for processes in (1, 2):
            cfg = config(work / f"p{processes}", state.bootstrap, prefix)
            wall, cpu = run(processes, cfg, env)
            stored = stored_deals(cfg, env)
            rows.append((processes, wall, cpu, stored))
            print(f"{processes} process(es): {wall:.1f} s, {stored:,} of {len(deals):,} deals stored",
                  flush=True)
    print(f"\n{'processes':>9} {'events/s':>10} {'CPU us/event':>13} {'stored':>9} {'vs 1':>6}")
    for processes, wall, cpu, stored in rows:
        print(f"{processes:>9} {n / wall:>10,.0f} {cpu / n * 1e6:>13.1f} {stored:>9,} "
              f"{rows[0][1] / wall:>5.2f}x")
    print("(whole runs, start-up included; the broker and both processes share this machine's cores)")


if __name__ == "__main__":
    main()
