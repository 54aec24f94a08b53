"""Backtesting a withdrawal policy: `brokerstream replay FILES --withdrawal-policy NEW.yaml`.

The same dataflow runs twice over the same history, once with the policy in force (the
configured `withdrawals.policy`, or `--baseline-withdrawal-policy`) and once with the candidate,
each into a scratch database of its own (`<database>_wbacktest_baseline` / `_candidate`). The
report lists every request whose latest decision differs (old -> new, with the new reasons)
and a summary of the decisions each policy makes. IB commissions are switched off in these
runs (they do not change decisions); rules and exposure stay as configured, since open alerts
and open positions are facts the policy reads.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from brokerstream.backtest import replay_and_query
from brokerstream.progress import note, spinner
from pipelines.config import Settings
from withdrawals import WithdrawalPolicy

DECISIONS_SQL = ("SELECT tenant, request_key, account_key, amount, currency, decision, reason_codes, "
                 "reasons, policy_version FROM withdrawal_decisions ORDER BY tenant, request_key")


@dataclass
class DecisionChange:
    tenant: str
    request_key: str
    account_key: str
    amount: str
    currency: str
    baseline: str  # decision, or "none" when that policy made none
    candidate: str
    baseline_reasons: list[str] = field(default_factory=list)  # codes
    candidate_reasons: list[str] = field(default_factory=list)
    candidate_texts: list[str] = field(default_factory=list)


@dataclass
class WithdrawalBacktest:
    baseline_policy: str
    candidate_policy: str
    baseline_version: int
    candidate_version: int
    requests: int
    baseline_counts: dict[str, int]
    candidate_counts: dict[str, int]
    changed: list[DecisionChange]  # the decision itself changed
    reasons_changed: int  # same decision, other reasons


def _label(policy: str | WithdrawalPolicy) -> str:
    return policy if isinstance(policy, str) else f"inline policy v{policy.version}"


def _decisions(settings: Settings, policy: str | WithdrawalPolicy, database: str, paths: list[Path]
               ) -> dict[tuple[str, str], dict[str, Any]]:
    scratch = settings.model_copy(update={
        "clickhouse": settings.clickhouse.model_copy(update={"database": database}),
        "withdrawals": settings.withdrawals.model_copy(update={"policy": policy, "enabled": True}),
        "commissions": [],
    })
    names, rows = replay_and_query(scratch, paths, DECISIONS_SQL)
    out = {}
    for row in rows:
        d = dict(zip(names, row, strict=True))
        out[(d["tenant"], d["request_key"])] = d
    return out


def run_withdrawal_backtest(settings: Settings, paths: list[Path], candidate: str,
                            baseline: str | None = None) -> WithdrawalBacktest:
    """Both policies are loaded first: a bad file fails before any replay, naming the field."""
    base_policy: str | WithdrawalPolicy = baseline or settings.withdrawals.policy
    base_version = settings.withdrawals.load(baseline).version
    cand_version = settings.withdrawals.load(candidate).version
    prefix = f"{settings.clickhouse.database}_wbacktest"
    note(f"withdrawal backtest: baseline policy {_label(base_policy)} (v{base_version}) -> {prefix}_baseline")
    with spinner("replaying with the baseline policy…"):
        base = _decisions(settings, base_policy, f"{prefix}_baseline", paths)
    note(f"withdrawal backtest: candidate policy {candidate} (v{cand_version}) -> {prefix}_candidate")
    with spinner("replaying with the candidate policy…"):
        cand = _decisions(settings, candidate, f"{prefix}_candidate", paths)
    changed: list[DecisionChange] = []
    reasons_changed = 0
    for key in sorted(set(base) | set(cand)):
        b, c = base.get(key), cand.get(key)
        either = c or b
        assert either is not None
        b_dec = b["decision"] if b else "none"
        c_dec = c["decision"] if c else "none"
        b_codes = list(b["reason_codes"]) if b else []
        c_codes = list(c["reason_codes"]) if c else []
        if b_dec == c_dec:
            reasons_changed += b_codes != c_codes
            continue
        texts = [f"{r['action']}: {r['text']}" for r in orjson.loads(c["reasons"])] if c else []
        changed.append(DecisionChange(
            key[0], key[1], either["account_key"], f"{either['amount']:.2f}", either["currency"],
            b_dec, c_dec, b_codes, c_codes, texts))
    return WithdrawalBacktest(
        _label(base_policy), candidate, base_version, cand_version, len(set(base) | set(cand)),
        dict(Counter(d["decision"] for d in base.values())),
        dict(Counter(d["decision"] for d in cand.values())), changed, reasons_changed)


def format_withdrawal_report(report: WithdrawalBacktest, show: int = 50) -> str:
    lines = []
    for ch in report.changed[:show]:
        lines.append(f"{ch.request_key}  {ch.account_key}  {ch.amount} {ch.currency}: "
                     f"{ch.baseline} -> {ch.candidate}  [{', '.join(ch.baseline_reasons)}] -> "
                     f"[{', '.join(ch.candidate_reasons)}]")
        lines.extend(f"    {text}" for text in ch.candidate_texts)
    if len(report.changed) > show:
        lines.append(f"  ... and {len(report.changed) - show} more (--report FILE.json has them all)")
    lines.append("")
    lines.append(f"{'decision':<10} {'baseline v' + str(report.baseline_version):>14} "
                 f"{'candidate v' + str(report.candidate_version):>14}")
    for decision in ("approve", "hold", "reject"):
        lines.append(f"{decision:<10} {report.baseline_counts.get(decision, 0):>14} "
                     f"{report.candidate_counts.get(decision, 0):>14}")
    lines.append(f"{len(report.changed)} of {report.requests} decisions change"
                 f"{'' if report.changed else ' (no difference in decisions)'}; "
                 f"{report.reasons_changed} keep their decision with other reasons")
    return "\n".join(lines)
