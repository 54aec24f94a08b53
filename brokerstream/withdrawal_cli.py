"""The CLI's withdrawal options: `replay --withdrawal-policy NEW.yaml` (a policy backtest,
brokerstream/withdrawal_backtest.py). Light at import: the backtest loads the engine lazily."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from brokerstream.progress import note, took
from pipelines.config import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--withdrawal-policy", metavar="POLICY.yaml",
                   help="backtest: replay with this withdrawal policy and with the policy in force "
                   "(into scratch databases <database>_wbacktest_*) and print the decisions that change")
    p.add_argument("--baseline-withdrawal-policy", metavar="POLICY.yaml",
                   help="backtest: compare with this policy instead of the configured withdrawals.policy")


def run_cli(settings: Settings, paths: list[Path], args: argparse.Namespace) -> int:
    from brokerstream.withdrawal_backtest import format_withdrawal_report, run_withdrawal_backtest

    started = time.monotonic()
    report = run_withdrawal_backtest(settings, paths, args.withdrawal_policy,
                                     args.baseline_withdrawal_policy)
    print(format_withdrawal_report(report))  # the comparison: data, on stdout
    if args.report:
        Path(args.report).write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    note(f"withdrawal backtest done in {took(started)}: {len(report.changed):,} of {report.requests:,} "
         f"decisions change; two replays of {', '.join(map(str, paths))}"
         + (f"; report written to {args.report}" if args.report else ""))
    return 0
