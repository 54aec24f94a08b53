"""Long commands report progress and end with a summary, on stderr (brokerstream/progress.py):
stdout stays for data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from brokerstream.progress import EngineCounts, Steps, took
from pipelines.metrics import ALERTS, DEAD_LETTERS, EVENTS_IN, SINK_ROWS


def test_engine_counts_are_what_this_run_added() -> None:
    EVENTS_IN.labels("mt5.deals").inc(5)  # before the run: not counted
    counts = EngineCounts()
    EVENTS_IN.labels("mt5.deals").inc(1_200)
    EVENTS_IN.labels("mt4.trades").inc(34)
    SINK_ROWS.labels("deals_store").inc(1_000)
    SINK_ROWS.labels("logins_store").inc(7)
    DEAD_LETTERS.labels("mt5.deals", "decode").inc(2)
    ALERTS.labels("structuring", "aml", "high", "alert").inc(3)
    text = counts.summary("replay done", time.monotonic() - 2, "brokerstream (chdb:///x)")
    assert text.startswith("replay done in ") and ": 1,234 events read (" in text
    assert "1,007 rows stored in brokerstream (chdb:///x) (deals 1,000, logins 7)" in text
    assert text.endswith("2 dead letters, 3 alerts.")


def test_plain_progress_lines_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with Steps("screened", 3, unit="names", every_s=0, tty=False) as steps:
        steps.advance(2, detail="acme")
    out, err = capsys.readouterr()
    assert not out and err.startswith("  screened: 2/3 names (acme), ")
    assert took(time.monotonic() - 185).startswith("3 min ")


def test_run_prints_its_summary_when_it_stops(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import brokerstream.engine
    from brokerstream.cli import main

    def stopped(*_args: Any, **_kwargs: Any) -> None:
        EVENTS_IN.labels("mt5.deals").inc(10)
        raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(brokerstream.engine, "run_kafka", stopped)
    assert main(["run"]) == 130
    out, err = capsys.readouterr()
    assert "brokerstream engine" in out  # where it reads and writes, as before
    assert "engine stopped in" in err and "10 events read" in err and "dead letters" in err
