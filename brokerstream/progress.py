"""Progress and summaries of the long commands, always on stderr: stdout stays for data, so
`brokerstream sql ... | ...` and friends pipe cleanly.

A terminal gets a `rich` progress bar (gone once done); a pipe or a log gets plain lines, at
most one every few seconds. Every long command ends with one summary paragraph: what it
counted, how long it took, where its output went.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from prometheus_client import Counter


def note(text: str) -> None:
    """A line for the person running the command (never data): stderr."""
    print(text, file=sys.stderr, flush=True)


def took(started: float) -> str:
    """`4.2 s`, `3 min 05 s`: time since `started` (time.monotonic())."""
    seconds = time.monotonic() - started
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Steps:
    """Progress over a known (or unknown) number of steps: a bar on a terminal, plain lines
    every `every_s` otherwise."""

    def __init__(self, what: str, total: int | None = None, *, unit: str = "", every_s: float = 5.0,
                 tty: bool | None = None) -> None:
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.done = 0
        self.started = time.monotonic()
        self._last = self.started
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Steps:
        if self.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("{task.fields[detail]}")]
            self._bar = Progress(*columns, console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total, detail="")
        return self

    def advance(self, n: int = 1, detail: str = "") -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, detail=detail)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            of = f"/{self.total:,}" if self.total is not None else ""
            note(f"  {self.what}: {self.done:,}{of}{f' {self.unit}' if self.unit else ''}"
                 f"{f' ({detail})' if detail else ''}, {took(self.started)}")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()


@contextmanager
def spinner(what: str, tty: bool | None = None) -> Iterator[None]:
    """A spinner while one long step runs (a query, a replay without counts), on a terminal."""
    if not (sys.stderr.isatty() if tty is None else tty):
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(what):
        yield


# -- the engine's own counters (pipelines/metrics.py), for the summary of run and replay ---------


def _by_label(counter: Counter, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels.get(label, "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


class EngineCounts:
    """What the engine in this process has counted since `start()`: raw messages read, rows
    written per table, dead letters, alerts (differences of the Prometheus counters, so a
    second run in one process counts only its own)."""

    def __init__(self) -> None:
        self._base = self._read()

    @staticmethod
    def _read() -> tuple[dict[str, float], dict[str, float], float, float]:
        from pipelines.metrics import ALERTS, DEAD_LETTERS, EVENTS_IN, SINK_ROWS

        return (_by_label(EVENTS_IN, "topic"), _by_label(SINK_ROWS, "table"),
                sum(_by_label(DEAD_LETTERS, "topic").values()), sum(_by_label(ALERTS, "rule_id").values()))

    def summary(self, what: str, started: float, where: str) -> str:
        events0, rows0, dead0, alerts0 = self._base
        events1, rows1, dead1, alerts1 = self._read()
        events = int(sum(events1.values()) - sum(events0.values()))
        rows = {t.removesuffix("_store"): int(n - rows0.get(t, 0.0)) for t, n in rows1.items()
                if n - rows0.get(t, 0.0) > 0}
        seconds = max(time.monotonic() - started, 1e-9)
        top = ", ".join(f"{t} {n:,}" for t, n in sorted(rows.items(), key=lambda kv: -kv[1])[:6])
        return (f"{what} in {took(started)}: {events:,} events read ({events / seconds:,.0f}/s), "
                f"{sum(rows.values()):,} rows stored in {where}{f' ({top})' if top else ''}, "
                f"{int(dead1 - dead0):,} dead letters, {int(alerts1 - alerts0):,} alerts.")
