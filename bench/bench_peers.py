"""Side by side: brokerstream beside the floor and two peer stream processors, same input, same job.

    .venv/bin/python bench/bench_peers.py --events 200000
    .venv/bin/python bench/bench_peers.py --events 20000 --legs floor,brokerstream

The job: read the MT5 deals `brokerstream simulate-mt5` produces (Web API JSON, values as
strings, Volume in 1/10000 lot) from one Kafka topic, parse them, keep the net position per
account and symbol and the exposure per symbol, and store every deal in embedded ClickHouse
(chdb). The legs, each a subprocess with its own chdb directory, reading the same topic from the
beginning:

  floor         plain Python (bench_e2e's consume loop + orjson + a dict + Arrow inserts)
  quixstreams   Quix Streams app: keyed state + a chdb sink on its BatchingSink API (own venv)
  pathway       Pathway: kafka.read, groupby/reduce, Python connectors into chdb (own venv)
  brokerstream  `brokerstream run --exit-at-end`, only normalise + exposure (rules, commissions off)

The peer venvs are created once from PyPI under ~/.cache/brokerstream/bench-venvs/<name> and
reused. Each leg must store all N messages, and its net lots per symbol must agree with the
reference computed here from the generated input; a mismatch is printed loudly and the exit code
is 1. Printed per leg: events/s (whole process, and after start-up), CPU µs per event (user+sys
of the process tree), peak RSS. Network: 127.0.0.1 only (a local Kafka started for the run, or
--bootstrap).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS = BENCH / "peers"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(PEERS))

import common  # noqa: E402  (bench/peers/common.py: the parse the peers share)
from bench_e2e import SERVERS, compile_checkout  # noqa: E402

from devtools.simulator.sanctions import simulated_rules_section  # noqa: E402

LEGS = ["floor", "quixstreams", "pathway", "brokerstream"]
# what each peer venv gets from PyPI; chdb and clickhouse-connect pinned to the project's own
VENV_PACKAGES: dict[str, list[str]] = {
    "quixstreams": ["quixstreams", "chdb==4.4.0", "clickhouse-connect[chdb]==1.12.0", "orjson", "pyarrow"],
    "pathway": ["pathway", "chdb==4.4.0", "clickhouse-connect[chdb]==1.12.0", "orjson", "pyarrow"],
}
TOPIC = "bench.mt5.deals"  # brokerstream reads it as prefix "bench." + "mt5.deals"
TOLERANCE_LOTS = 1e-6


def venv_root() -> Path:
    base = os.environ.get("BROKERSTREAM_CACHE_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "brokerstream") / "bench-venvs"


def ensure_venv(name: str) -> Path:
    """The peer's own virtualenv (python3.11 -m venv + pip install), created once and reused."""
    root = venv_root() / name
    py = root / "bin" / "python"
    marker = root / ".bench-packages"
    wanted = "\n".join(VENV_PACKAGES[name])
    if py.exists() and marker.is_file() and marker.read_text() == wanted:
        return py
    print(f"[venv] creating {root} with {' '.join(VENV_PACKAGES[name])} (once)", flush=True)
    base = "python3.11" if sys.version_info[:2] != (3, 11) else sys.executable
    subprocess.run([base, "-m", "venv", str(root)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *VENV_PACKAGES[name]], check=True)
    marker.write_text(wanted)
    return py


def pip_version(py: Path, package: str) -> str:
    done = subprocess.run([str(py), "-c", f"import importlib.metadata as m; print(m.version('{package}'))"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


@dataclass
class Result:
    leg: str
    wall_s: float = 0.0
    startup_s: float | None = None  # until the leg said READY (or printed its first line)
    cpu_s: float = 0.0
    maxrss_mb: float = 0.0
    rc: int = 0
    verify: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """pid and its descendants (/proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):  # the process may just have exited
                todo.extend(int(c) for c in task.read_text().split())
    return out


def run_leg(leg: str, cmd: list[str], env: dict[str, str], log: Path, timeout_s: float) -> Result:
    """Run one leg, timing it; CPU from wait4() (the process and the children it reaped).

    Peak RSS is sampled from /proc (VmHWM of each process in the tree, summed), not taken from
    ru_maxrss: on Linux a child's ru_maxrss starts at its parent's RSS at fork time (the old mm's
    high-water mark survives exec), so every leg would report this bench's own size.
    """
    res = Result(leg)
    started = time.time()
    ready_at: list[float] = []
    peak_kib = [0]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True)  # own group: a timeout kills it whole
        finished = threading.Event()

        def reader() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not ready_at:  # brokerstream prints its first line once imports are done
                    ready_at.append(float(line.split()[1]) if line.startswith("READY ") else time.time())
                err.write(f"[stdout] {line}")

        def sampler() -> None:
            while not finished.wait(0.05):
                peak_kib[0] = max(peak_kib[0], sum(_kib(p, "VmHWM:") for p in _tree(proc.pid)))

        threads = [threading.Thread(target=f, daemon=True) for f in (reader, sampler)]
        for t in threads:
            t.start()
        timer = threading.Timer(timeout_s, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        finished.set()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting
        for t in threads:
            t.join(5)
    res.wall_s = time.time() - started
    res.startup_s = ready_at[0] - started if ready_at else None
    res.cpu_s = usage.ru_utime + usage.ru_stime
    res.maxrss_mb = peak_kib[0] / 1024
    res.rc = proc.returncode
    if res.rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        res.problems.append(f"exit code {res.rc} (log {log}):\n{tail}")
    return res


def brokerstream_config(root: Path, bootstrap: str, partitions: int) -> Path:
    """examples/brokerstream.yaml with only normalise + exposure: rules off, no commission files."""
    doc = yaml.safe_load((REPO / "examples" / "brokerstream.yaml").read_text())
    doc["rules"] = {**doc.get("rules", {}), **simulated_rules_section()}  # absolute paths
    doc["kafka"].update({"bootstrap": bootstrap, "topic_prefix": "bench.", "partitions": partitions})
    doc["clickhouse"] = {"dsn": f"chdb://{root / 'ch'}"}
    doc["pipeline"] = {**doc.get("pipeline", {}), "recovery_dir": str(root / "recovery")}
    doc["rules"] = {"enabled": False}
    doc["commissions"] = []
    doc["withdrawals"] = {"enabled": False}  # the peers' job: parse, positions, exposure, store
    doc["recon"] = {"enabled": False}
    path = root / "brokerstream.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def reference(envelopes: list[Any]) -> tuple[dict[str, float], int]:
    """Net lots per symbol and the number of distinct deals, from the input itself."""
    net: dict[str, int] = {}
    keys: set[str] = set()
    for env in envelopes:
        row = common.parse_deal(env.value, env.headers["server"], env.headers["event"], -1, -1)
        keys.add(row[0])
        if row[common.I_SIGNED]:
            net[row[common.I_SYMBOL]] = net.get(row[common.I_SYMBOL], 0) + row[common.I_SIGNED]
    return {s: v / common.VOLUME_SCALE for s, v in net.items()}, len(keys)


def check(res: Result, n: int, ref_net: dict[str, float], ref_keys: int) -> None:
    v = res.verify
    if not v:
        return
    # brokerstream's *_store tables are ReplacingMergeTree on the deal key: an update or delete
    # that lands in the same insert (or a later merge) collapses into one row, so there every
    # distinct deal must be there in its latest version (checked via deals_net) instead of N rows
    if v["messages"] != n and "dead_letters" not in v:
        res.problems.append(f"stored {v['messages']:,} of {n:,} messages ({v['rows']:,} rows)")
    if v.get("dead_letters"):
        res.problems.append(f"{v['dead_letters']:,} dead letters")
    if v["deal_keys"] != ref_keys:
        res.problems.append(f"{v['deal_keys']:,} distinct deals stored, the input has {ref_keys:,}")
    for label in ("net", "deals_net"):
        if label not in v:
            continue
        got = v[label]
        bad = {s: (got.get(s, 0.0), want) for s, want in ref_net.items()
               if abs(got.get(s, 0.0) - want) > TOLERANCE_LOTS}
        bad.update({s: (lots, 0.0) for s, lots in got.items()
                    if s not in ref_net and abs(lots) > TOLERANCE_LOTS})
        if bad:
            res.problems.append(f"NET LOTS MISMATCH ({label}): " + ", ".join(
                f"{s} {g:+.4f} vs {w:+.4f}" for s, (g, w) in sorted(bad.items())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--legs", default=",".join(LEGS), help=f"comma-separated subset of {LEGS}")
    parser.add_argument("--accounts", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bootstrap", help="use this running Kafka (127.0.0.1:PORT) instead of starting one")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a leg is killed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    compile_checkout()
    legs = [leg.strip() for leg in args.legs.split(",") if leg.strip()]
    unknown = set(legs) - set(LEGS)
    if unknown:
        parser.error(f"unknown legs {sorted(unknown)}; choose from {LEGS}")
    if args.bootstrap and not args.bootstrap.startswith(("127.0.0.1:", "localhost:")):
        parser.error("--bootstrap must be a local broker (127.0.0.1:PORT)")

    from brokerstream.publish import publish
    from devtools.kafka.local_broker import LocalKafka
    from devtools.simulator.mt5 import Mt5DealSimulator
    from pipelines.topics import ensure_topics

    pythons = {leg: ensure_venv(leg) for leg in legs if leg in VENV_PACKAGES}
    versions = {leg: pip_version(py, leg) for leg, py in pythons.items()}
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    n = args.events
    started = time.perf_counter()
    envelopes = list(Mt5DealSimulator(SERVERS, accounts=args.accounts, seed=args.seed).envelopes(n))
    ref_net, ref_keys = reference(envelopes)
    print(f"generated {n:,} MT5 deal messages ({ref_keys:,} distinct deals, {args.accounts:,} accounts) "
          f"in {time.perf_counter() - started:.1f} s; work dir {work}", flush=True)

    broker = None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        broker = LocalKafka(work / "kafka-home")
        bootstrap = broker.start().bootstrap
    results: list[Result] = []
    try:
        ensure_topics(bootstrap, {TOPIC: args.partitions})
        started = time.perf_counter()
        publish(bootstrap, envelopes, topic_prefix="bench.")
        took = time.perf_counter() - started
        print(f"published to {TOPIC} ({args.partitions} partitions) at {bootstrap} in {took:.1f} s",
              flush=True)
        del envelopes

        for leg in legs:
            root = work / leg
            root.mkdir()
            dsn = f"chdb://{root / 'ch'}"
            env = {**os.environ, "BROKERSTREAM_HOME": str(root / "home"), "PYTHONUNBUFFERED": "1"}
            env.pop("BROKERSTREAM_CLICKHOUSE", None)
            env.pop("BROKERSTREAM_KAFKA", None)
            layout = "peer"
            if leg == "floor":
                cmd = [sys.executable, str(PEERS / "floor.py"), "--bootstrap", bootstrap, "--topic", TOPIC,
                       "--dsn", dsn]
            elif leg == "quixstreams":
                cmd = [str(pythons[leg]), str(PEERS / "quix_app.py"), "--bootstrap", bootstrap,
                       "--topic", TOPIC, "--dsn", dsn, "--state-dir", str(root / "state"), "--count", str(n)]
            elif leg == "pathway":
                env.setdefault("PATHWAY_THREADS", "1")
                cmd = [str(pythons[leg]), str(PEERS / "pathway_app.py"), "--bootstrap", bootstrap,
                       "--topic", TOPIC, "--dsn", dsn]
            else:
                cfg = brokerstream_config(root, bootstrap, args.partitions)
                cmd = [sys.executable, "-m", "brokerstream.cli", "run", "--exit-at-end", "--config", str(cfg)]
                layout = "brokerstream"
            print(f"[{leg}] running ...", flush=True)
            res = run_leg(leg, cmd, env, root / "leg.log", args.timeout)
            if res.rc == 0:
                done = subprocess.run([sys.executable, str(PEERS / "common.py"), "verify", "--dsn", dsn,
                                       "--layout", layout], capture_output=True, text=True, check=False)
                if done.returncode == 0:
                    res.verify = json.loads(done.stdout)
                else:
                    res.problems.append(f"verify failed: {done.stderr[-1500:]}")
            check(res, n, ref_net, ref_keys)
            results.append(res)
            print(f"[{leg}] {res.wall_s:.1f} s wall, {res.cpu_s:.1f} s CPU, {res.maxrss_mb:.0f} MB peak RSS"
                  + ("" if not res.problems else "  <-- PROBLEMS"), flush=True)
    finally:
        if broker is not None:
            broker.stop()

    report(results, n, ref_net, versions)
    failed = any(r.problems for r in results)
    if args.keep or failed:
        print(f"\nwork dir kept: {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def report(results: list[Result], n: int, ref_net: dict[str, float], versions: dict[str, str]) -> None:
    print()
    print(f"{n:,} MT5 deal messages; versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    head = (f"{'leg':<13} {'ev/s wall':>10} {'ev/s run':>10} {'start s':>8} {'CPU µs/ev':>10} "
            f"{'peak RSS':>9} {'stored':>9} {'check':>6}")
    print(head)
    print("-" * len(head))
    for r in results:
        run = r.wall_s - (r.startup_s or 0.0)
        stored = r.verify.get("messages", 0)
        print(f"{r.leg:<13} {n / r.wall_s:>10,.0f} {n / run:>10,.0f} "
              f"{(r.startup_s or 0.0):>8.1f} {r.cpu_s / n * 1e6:>10.1f} {r.maxrss_mb:>7.0f}MB "
              f"{stored:>9,} {'ok' if not r.problems else 'FAIL':>6}")
    print("(ev/s wall: whole process; ev/s run: from READY — after imports, ClickHouse start and tables; "
          "brokerstream: from its first output line, before its migrations)")
    by = {r.leg: r for r in results}
    floor = by.get("floor")
    lines = []
    for r in results:
        if floor is not None and r is not floor:
            lines.append(f"{r.leg} vs floor: {floor.wall_s / r.wall_s:.2f}x the floor's events/s (wall), "
                         f"{r.cpu_s / floor.cpu_s:.2f}x its CPU per event")
    bs = by.get("brokerstream")
    if bs is not None:
        for r in results:
            if r.leg in VENV_PACKAGES:
                lines.append(f"brokerstream vs {r.leg}: {r.wall_s / bs.wall_s:.2f}x its events/s (wall), "
                             f"{bs.cpu_s / r.cpu_s:.2f}x its CPU per event, "
                             f"{bs.maxrss_mb / r.maxrss_mb:.2f}x its peak RSS")
    if lines:
        print("\n".join(lines))
    print("\nnet lots per symbol (reference = computed from the generated input):")
    syms = sorted(ref_net)
    print(f"{'symbol':<8} {'reference':>12} " + " ".join(f"{r.leg:>13}" for r in results))
    for s in syms:
        cells = []
        for r in results:
            got = r.verify.get("net", {}).get(s)
            cells.append(f"{got:>13.4f}" if got is not None else f"{'-':>13}")
        print(f"{s:<8} {ref_net[s]:>12.4f} " + " ".join(cells))
    for r in results:
        for p in r.problems:
            print(f"\n!!!!! {r.leg}: {p}")


if __name__ == "__main__":
    raise SystemExit(main())
