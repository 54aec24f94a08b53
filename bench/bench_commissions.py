"""IB commissions computed per second inside the full dataflow.

    .venv/bin/python bench/bench_commissions.py --deals 200000

Runs the same replay twice in separate processes — the dataflow without commissions (the
baseline) and with the example plans over a three-level partner tree — and prints deals/s of
both, the commission rows written, and commission rows per second of the added work.
Every simulated account is assigned to an IB through its MT5 user record (the `Agent` field),
as a broker's platform does it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from brokerstream.publish import write_envelopes  # noqa: E402
from devtools.simulator.mt5 import Mt5DealSimulator  # noqa: E402
from devtools.simulator.sanctions import simulated_rules_section  # noqa: E402
from schemas.envelope import Envelope  # noqa: E402

SERVER = "ACME-MT5-Live"
DIRECT_IBS = ["7003", "7004", "7005"]  # retail-5, pool-cascade, round-turn-8 (see below)


def commissions_config(path: Path) -> None:
    """The example plans, with IB ids as the platform's Agent logins."""
    doc = yaml.safe_load((REPO / "examples" / "commissions.yaml").read_text())
    doc["ibs"] = [
        {"id": "7001", "name": "Atlas Partners", "plan": "master-10"},
        {"id": "7002", "name": "Baltic Traders", "parent": "7001", "plan": "sub-7"},
        {"id": "7003", "name": "Coral FX", "parent": "7002", "plan": "retail-5"},
        {"id": "7004", "name": "Delta Signals", "parent": "7002", "plan": "pool-cascade"},
        {"id": "7005", "name": "Echo Capital", "plan": "round-turn-8"},
    ]
    doc["accounts"] = []
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def history(path: Path, deals: int, accounts: int) -> None:
    sim = Mt5DealSimulator([SERVER], accounts=accounts, seed=5)
    start = sim.now_ms - 1000
    users = [
        Envelope(topic="mt5.users", key=str(acc.login), timestamp_ms=start,
                 headers={"server": SERVER, "event": "add"},
                 value=orjson.dumps({"Login": str(acc.login), "Group": "real\\standard",
                                     "Name": f"Client {acc.login}", "Leverage": "100",
                                     "Agent": DIRECT_IBS[i % len(DIRECT_IBS)],
                                     "Registration": str(start // 1000 - 86400)}))
        for i, acc in enumerate(sim.accounts)
    ]
    write_envelopes(path, [*users, *sim.envelopes(deals)])


def run(work: Path, name: str, events: Path, commissions: Path | None) -> float:
    doc = yaml.safe_load((REPO / "examples" / "brokerstream.yaml").read_text())
    doc["rules"] = {**doc.get("rules", {}), **simulated_rules_section()}  # absolute paths
    doc["clickhouse"] = {"dsn": f"chdb://{work / name}"}
    doc["commissions"] = [str(commissions)] if commissions else []
    cfg = work / f"engine-{name}.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "BROKERSTREAM_HOME": str(work / "home")}
    env.pop("BROKERSTREAM_CLICKHOUSE", None)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "brokerstream.cli", "replay", str(events), "--config", str(cfg)],
                   env=env, check=True, capture_output=True)
    took = time.perf_counter() - started
    return took


def count_rows(work: Path, name: str) -> tuple[int, int]:
    doc = yaml.safe_load((work / f"engine-{name}.yaml").read_text())
    env = {**os.environ, "BROKERSTREAM_HOME": str(work / "home")}
    out = subprocess.run(
        [sys.executable, "-m", "brokerstream.cli", "sql", "--format", "csv", "--config",
         str(work / f"engine-{name}.yaml"),
         "SELECT (SELECT count() FROM ib_commissions), (SELECT count() FROM commission_issues)"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.splitlines()[1]
    del doc
    rows, issues = out.split(",")
    return int(rows), int(issues)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deals", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=3_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-commissions-"))
    events = work / "history.jsonl"
    history(events, args.deals, args.accounts)
    commissions = work / "commissions.yaml"
    commissions_config(commissions)
    n = args.deals + args.accounts
    print(f"{args.accounts:,} accounts assigned to IBs, {args.deals:,} MT5 deals", flush=True)
    base = run(work, "baseline", events, None)
    print(f"baseline (no commissions): {base:.1f} s", flush=True)
    with_c = run(work, "commissions", events, commissions)
    rows, issues = count_rows(work, "commissions")
    extra = max(with_c - base, 1e-9)
    print(f"with commissions:          {with_c:.1f} s, {rows:,} commission rows, {issues:,} issues")
    print()
    print(f"{'run':<26} {'events/s':>10}")
    print(f"{'baseline':<26} {n / base:>10,.0f}")
    print(f"{'with commissions':<26} {n / with_c:>10,.0f}   ({with_c / base:.2f}x the baseline's time)")
    print(f"commission rows per second of added work: {rows / extra:,.0f}")
    print(f"commission rows per second end to end:    {rows / with_c:,.0f}")


if __name__ == "__main__":
    main()
