"""The live simulation's clock: one simulated time for every part of a demo.

The simulated brokerage runs in event time, many times faster than the wall clock (a demo's
minute is days of trading). Everything that stamps or judges a time while it runs live (the
webhook receiver's freshness checks and `received_at`, the engine's detection times, the case
filing, the dashboard's "now") reads this clock instead of the wall clock, so ages and
detection times agree with the events' own times.

It is the time of the latest event the simulator has handed out; before the first one, the
simulated start.
"""

from __future__ import annotations

from datetime import UTC, datetime


class SimClock:
    """Advanced by the simulator (one attribute write per event), read from any thread."""

    __slots__ = ("ms",)

    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def advance(self, ms: int) -> None:
        if ms > self.ms:  # monotonic: a reader never sees time go back
            self.ms = ms

    def seconds(self) -> float:
        """Epoch seconds, the form time.time() has (the receiver's and the page's clock)."""
        return self.ms / 1000

    def now(self) -> datetime:
        """An aware UTC datetime (the engine's detection clock)."""
        return datetime.fromtimestamp(self.ms / 1000, UTC)
