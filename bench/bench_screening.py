"""Speed of one sanctions screen against a list of OFAC SDN size (~18,000 names with aliases).

    .venv/bin/python bench/bench_screening.py [--entries 12000] [--queries 6000] [--repeat 3]

The list is `tests/name_variants.synthetic_list` (12,000 entries hold ~18,600 names with their
aliases). The queries are what a client base looks like to the screener: mostly people who are
not listed (made-up names from the same given names and surnames, so they share tokens with the
list), spelling variants of listed people (every class of `tests/name_variants.py`) and near
misses. Prints p50/p99 of one screen as CPU time of the thread (what the screen costs; on a
shared machine wall time also counts the time other processes held the core) and as wall time,
screens per second, the index build time and its memory.

`--repeat N` screens every query N times and keeps each query's fastest time: the p99 is then
the 1% slowest queries, not the 1% unluckiest moments of a busy machine. Caches inside the
screener (token similarities) are cleared before every pass, so no pass reuses another's work.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from risk_rules import names
from risk_rules.sanctions import ListEntry, Screener
from tests import name_variants as nv


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def queries(listed: list[nv.Listed], n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    per_class = max(1, n // 10 // len(nv.ALL_CLASSES))
    out = [q for c in nv.ALL_CLASSES for _, q, _ in nv.variants(listed, c, per_class)]
    out += [q for _, q, _ in nv.near_misses(listed, n // 10)]
    while len(out) < n:  # clients who are not listed
        given, surname = nv.person(rng)
        plain = rng.random() < 0.7
        out.append(" ".join([*given, surname]) if plain else f"{surname.upper()}, {' '.join(given)}")
    rng.shuffle(out)
    return out[:n]


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=12_000)
    ap.add_argument("--queries", type=int, default=6_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=88)
    args = ap.parse_args()

    listed = nv.synthetic_list(args.entries)
    entries = [ListEntry(e.entry_id, list(e.names), "SYN") for e in listed]
    qs = queries(listed, args.queries)
    rss0 = rss_mb()
    t0 = time.perf_counter()
    screener = Screener(entries)
    build = time.perf_counter() - t0
    rss1 = rss_mb()
    print(f"list: {len(entries):,} entries, {screener.size:,} names; index built in {build:.1f} s; "
          f"index arrays and keys {screener.index_bytes() / 2**20:.1f} MiB, "
          f"process peak RSS +{rss1 - rss0:.0f} MiB ({rss1:.0f} MiB)")

    cpu_best = [float("inf")] * len(qs)
    wall_best = [float("inf")] * len(qs)
    hits = 0
    gc.disable()  # a collection pause belongs to the process, not to one screen
    for rep in range(args.repeat):
        names.token_sim.cache_clear()
        started = time.perf_counter()
        for i, q in enumerate(qs):
            w = time.perf_counter()
            c = time.thread_time()
            found = screener.screen_uncached(q, threshold=args.threshold)
            cpu_best[i] = min(cpu_best[i], time.thread_time() - c)
            wall_best[i] = min(wall_best[i], time.perf_counter() - w)
            hits += rep == 0 and bool(found)
        elapsed = time.perf_counter() - started
        print(f"pass {rep + 1}: {len(qs):,} screens in {elapsed:.2f} s wall = {len(qs) / elapsed:,.0f} "
              "screens/s")
        gc.collect()
    gc.enable()
    print(f"queries with a hit: {hits:,} of {len(qs):,}")
    print(f"one screen, fastest of {args.repeat} per query:  CPU p50 {pct(cpu_best, .5) * 1e3:.3f} ms, "
          f"p99 {pct(cpu_best, .99) * 1e3:.3f} ms, max {max(cpu_best) * 1e3:.3f} ms;  "
          f"wall p50 {pct(wall_best, .5) * 1e3:.3f} ms, p99 {pct(wall_best, .99) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
