"""Name-matching quality and screening speed against a synthetic list of OFAC SDN size.

    .venv/bin/python bench/score_names.py [--entries 12000] [--per-class 300] [--threshold 88]

Recall per variant class (tests/name_variants.py: each class alone), the false-hit rate on
near-miss names (another person: one token changed, a relative, the surname alone) against the
entry they were made from and against the whole list, and the time of one screen.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from risk_rules import names
from risk_rules.sanctions import ListEntry, Screener
from tests import name_variants as nv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=12_000)
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--threshold", type=float, default=88)
    args = ap.parse_args()

    listed = nv.synthetic_list(args.entries)
    cases = {c: nv.variants(listed, c, args.per_class) for c in nv.ALL_CLASSES}
    entries = [ListEntry(e.entry_id, list(e.names), "SYN") for e in listed]
    for cls, rows in cases.items():  # classes that bring their own listing
        for k, (name, query, eid) in enumerate(rows):
            if not eid:
                entries.append(ListEntry(f"{cls}{k}", [name], "SYN"))
                rows[k] = (name, query, f"{cls}{k}")
    t0 = time.perf_counter()
    screener = Screener(entries)
    build = time.perf_counter() - t0
    n_names = sum(len(e.names) for e in entries)
    print(f"list: {len(entries)} entries, {n_names} names; index built in {build:.1f} s")

    times: list[float] = []
    cpu: list[float] = []

    def screen(query: str) -> set[str]:
        t = time.perf_counter()
        c = time.thread_time()
        found = screener.screen(query, threshold=args.threshold)
        cpu.append(time.thread_time() - c)
        times.append(time.perf_counter() - t)
        return {m.entry.entry_id for m in found}

    print(f"\n{'class':<18}{'n':>6}{'recall':>9}   example miss")
    worst = 1.0
    for cls, rows in cases.items():
        misses = [(name, q) for name, q, eid in rows if eid not in screen(q)]
        recall = 1 - len(misses) / len(rows)
        worst = min(worst, recall)
        example = f"{misses[0][1]!r} vs {misses[0][0]!r}" if misses else ""
        print(f"{cls:<18}{len(rows):>6}{recall:>9.3f}   {example}")
    negatives = nv.near_misses(listed, args.per_class * 4)
    origin = anyhit = 0
    examples = []
    by_id = {e.entry_id: e for e in entries}
    for name, q, eid in negatives:
        found = screen(q)
        origin += eid in found
        # a hit on another entry that lists this very name (same tokens) is a true hit: the
        # synthetic list reuses common given names and surnames
        q_set = {t.text for t in names.tokens(q)}
        anyhit += any(
            all({t.text for t in names.tokens(n)} != q_set for n in by_id[f].names) for f in found
        )
        if eid in found and len(examples) < 3:
            examples.append(f"{q!r} vs {name!r}")
    print(f"\nnear-miss negatives: {len(negatives)}; false hits on their own entry "
          f"{origin / len(negatives):.3%}, any other entry not listing that exact name "
          f"{anyhit / len(negatives):.3%}")
    for ex in examples:
        print(f"  e.g. {ex}")
    times.sort()
    cpu.sort()
    print(f"\nscreen time over {len(times)} screens against {n_names} names: "
          f"mean {statistics.fmean(times) * 1e3:.3f} ms, median {times[len(times) // 2] * 1e3:.3f} ms, "
          f"p99 {times[int(len(times) * 0.99)] * 1e3:.3f} ms (wall); CPU median "
          f"{cpu[len(cpu) // 2] * 1e3:.3f} ms, p99 {cpu[int(len(cpu) * 0.99)] * 1e3:.3f} ms "
          "(bench/bench_screening.py measures speed properly)")
    print(f"worst class recall {worst:.3f}")


if __name__ == "__main__":
    main()
