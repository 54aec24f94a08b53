"""Every dataflow on: the engine's rate over a long replay, per 100,000 events, beside the floor.

    .venv/bin/python bench/bench_allon.py --events 2000000
    .venv/bin/python bench/bench_allon.py --events 300000 --mix brokerage

Two inputs, each generated once into a JSON Lines file:

  mt5        plain MT5 deal traffic (`brokerstream simulate-mt5`, 5,000 accounts)
  brokerage  the simulated brokerage (`brokerstream simulate`: MT4, MT5, cTrader, PSP webhooks,
             CRM, logins, quotes, with injected AML/fraud cases)

Each is replayed by `brokerstream replay` with exposure, IB commissions (examples/commissions.yaml),
the AML/fraud rules (the shipped rules, the simulator's sanctions and geo-IP files), withdrawal
decisions and reconciliation all on, one process, a fresh embedded ClickHouse. Printed: events/s
for every 100,000 events with the process's resident memory at that point (the rate must not fall
as state grows), the whole run's events/s, CPU per event and peak memory, and the ratio to the
floor measured in the same run on the MT5 file (bench_e2e.py's floor: read the file, orjson,
net lots per account and symbol in a dict, the deals into chdb through Arrow - no other logic).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_e2e import compile_checkout  # noqa: E402

from devtools.simulator.sanctions import simulated_rules_section  # noqa: E402

STEP = 100_000
# replay's progress line: "   100,000 events    9.3 s    10,775/s  (last 100,000: 11,716/s)"
PROGRESS = re.compile(r"^\s*([\d,]+) events\s+([\d.]+) s\s+([\d,]+)/s\s+\(last [\d,]+: ([\d,]+)/s\)")


@dataclass
class Leg:
    name: str
    events: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_mb: float = 0.0
    # per 100k: events so far, seconds, events/s of the last 100k, rss MB, CPU us/event of the last 100k
    steps: list[tuple[int, float, int, float, float]] = field(default_factory=list)


def config(root: Path) -> Path:
    doc = yaml.safe_load((REPO / "examples" / "brokerstream.yaml").read_text())
    doc["rules"] = {**doc.get("rules", {}), **simulated_rules_section()}  # absolute paths
    doc["clickhouse"] = {"dsn": f"chdb://{root / 'ch'}"}
    doc["commissions"] = [str(REPO / "examples" / "commissions.yaml")]
    doc.setdefault("exposure", {})["enabled"] = True
    doc["rules"]["enabled"] = True
    path = root / "brokerstream.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads: ClickHouse's included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _rss_mb(pid: int) -> float:
    """The resident memory of a process and its children (Bytewax runs in the process itself)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def replay(name: str, path: Path, events: int, work: Path, env: dict[str, str]) -> Leg:
    cfg = config(work / name)
    leg = Leg(name, events)
    cmd = [sys.executable, "-m", "brokerstream.cli", "replay", str(path), "--config", str(cfg),
           "--progress-every", str(STEP)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    tail: list[str] = []
    cpu_before, n_before = 0.0, 0
    for line in proc.stderr:
        tail = [*tail, line][-20:]
        m = PROGRESS.match(line)
        if m:
            n, at, last = int(m[1].replace(",", "")), float(m[2]), int(m[4].replace(",", ""))
            cpu = _cpu_s(proc.pid)
            per_event = (cpu - cpu_before) / max(1, n - n_before) * 1e6
            cpu_before, n_before = cpu, n
            leg.steps.append((n, at, last, _rss_mb(proc.pid), per_event))
            print(f"  {name:<10} {n:>10,} events {at:>7.1f} s  last 100k {last:>8,}/s "
                  f"{per_event:>6.1f} us CPU/event  rss {leg.steps[-1][3]:>6,.0f} MB", flush=True)
    _, status, usage = os.wait4(proc.pid, 0)
    leg.wall_s = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"replay failed: {' '.join(cmd)}\n{''.join(tail)}")
    leg.cpu_s = usage.ru_utime + usage.ru_stime
    leg.peak_mb = usage.ru_maxrss / 1024
    return leg


def floor(path: Path, work: Path, env: dict[str, str]) -> tuple[float, float]:
    """bench_e2e.py's floor on the same file, in its own process: (wall s, CPU s)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "bench_e2e.py"), "floor-file",
                             "--file", str(path), "--dsn", f"chdb://{work / 'floor'}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"floor failed:\n{err.decode(errors='replace')[-2000:]}")
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def generate(kind: str, path: Path, events: int, env: dict[str, str]) -> None:
    started = time.perf_counter()
    if kind == "mt5":
        cmd = ["simulate-mt5", "--events", str(events), "--accounts", "5000", "--seed", "42"]
    else:
        cmd = ["simulate", "--events", str(events), "--seed", "7"]
    subprocess.run([sys.executable, "-m", "brokerstream.cli", *cmd, "--out", str(path)], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"generated {events:,} {kind} envelopes in {time.perf_counter() - started:.1f} s "
          f"({path.stat().st_size / 1e6:,.0f} MB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000_000, help="events per input")
    parser.add_argument("--mix", choices=["both", "mt5", "brokerage"], default="both")
    args = parser.parse_args()
    compile_checkout()
    work = Path(tempfile.mkdtemp(prefix="bench-allon-"))
    env = {**os.environ, "BROKERSTREAM_HOME": str(work / "home")}
    env.pop("BROKERSTREAM_CLICKHOUSE", None)
    n = args.events
    mt5_file = work / "mt5.jsonl"
    generate("mt5", mt5_file, n, env)
    floor_wall, floor_cpu = floor(mt5_file, work, env)
    print(f"floor on the MT5 file: {n / floor_wall:,.0f} events/s ({floor_cpu / n * 1e6:.1f} us CPU/event)",
          flush=True)
    legs: list[Leg] = []
    for kind in (["mt5", "brokerage"] if args.mix == "both" else [args.mix]):
        path = mt5_file
        if kind == "brokerage":
            path = work / "brokerage.jsonl"
            generate(kind, path, n, env)
        legs.append(replay(kind, path, n, work, env))

    print()
    print(f"{'input':<10} {'events':>10} {'ev/s':>8} {'/floor':>7} {'CPU/ev':>9} {'peak':>8} "
          f"{'first 100k':>11} {'last 100k':>10} {'last/first':>11}")
    print(f"{'floor':<10} {n:>10,} {n / floor_wall:>8,.0f} {1.0:>6.2f}x {floor_cpu / n * 1e6:>6.1f} us")
    for leg in legs:
        rate = leg.events / leg.wall_s
        first = leg.steps[0][2] if leg.steps else 0
        last = leg.steps[-1][2] if leg.steps else 0
        print(f"{leg.name:<10} {leg.events:>10,} {rate:>8,.0f} {rate / (n / floor_wall):>6.2f}x "
              f"{leg.cpu_s / leg.events * 1e6:>6.1f} us {leg.peak_mb:>5,.0f} MB {first:>11,} {last:>10,} "
              f"{(last / first if first else 0):>10.2f}x")
    print("(whole processes, start-up included; per-100k rates from replay's progress lines; "
          f"files and stores in {work})")


if __name__ == "__main__":
    main()
