"""Backtesting a rules file: `brokerstream replay FILES --rules NEW.yaml`.

The same dataflow runs twice over the same history, once with the rules in force (the
configured file, or `--baseline-rules`) and once with the candidate, each into a scratch
database of its own. The report says, per rule, how many alerts each version raises and which
subjects only one of them alerts on: what a threshold change would do before it goes live.
Exposure, commissions and reconciliation are switched off in these runs: they do not change
the rules' alerts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brokerstream.engine import run_replay
from brokerstream.progress import note, spinner
from pipelines.config import Settings
from pipelines.store import Store
from risk_rules.engine import load_rules_config

ALERTS_SQL = ("SELECT rule_id, subject FROM alerts "
              "WHERE rule_id NOT LIKE 'limit.%' AND rule_id NOT LIKE 'margin.%'")


@dataclass
class RuleDiff:
    rule_id: str
    baseline_version: int | None = None
    candidate_version: int | None = None
    baseline_alerts: int = 0
    candidate_alerts: int = 0
    only_baseline: list[str] = field(default_factory=list)  # subjects
    only_candidate: list[str] = field(default_factory=list)


@dataclass
class BacktestReport:
    baseline_file: str
    candidate_file: str
    rules: list[RuleDiff]

    def changed(self) -> list[RuleDiff]:
        return [r for r in self.rules if r.only_baseline or r.only_candidate
                or r.baseline_alerts != r.candidate_alerts]


def replay_and_query(scratch: Settings, paths: list[Path], sql: str
                     ) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Replay `paths` with `scratch` settings into their database, emptied first, and run `sql`
    on what the replay wrote (a backtest's scratch database)."""
    database = scratch.clickhouse.database
    admin = Store(scratch.clickhouse_dsn(), "default")
    admin.client.command(f"DROP DATABASE IF EXISTS `{database}`")
    admin.close()
    run_replay(scratch, paths)
    store = Store(scratch.clickhouse_dsn(), database)
    try:
        return store.query(sql)
    finally:
        store.close()


def _alerts(settings: Settings, rules_file: str, database: str, paths: list[Path]
            ) -> dict[str, tuple[int | None, int, set[str]]]:
    """Replay with `rules_file` into a fresh `database`: rule -> (version, alerts, subjects)."""
    scratch = settings.model_copy(update={
        "clickhouse": settings.clickhouse.model_copy(update={"database": database}),
        "rules": settings.rules.model_copy(update={"file": rules_file}),
        "exposure": settings.exposure.model_copy(update={"enabled": False}),
        "recon": settings.recon.model_copy(update={"enabled": False}),
        "commissions": [],
    })
    rows = replay_and_query(scratch, paths, ALERTS_SQL)[1]
    out: dict[str, tuple[int | None, int, set[str]]] = {}
    counts: dict[str, int] = defaultdict(int)
    subjects: dict[str, set[str]] = defaultdict(set)
    for rule_id, subject in rows:
        counts[rule_id] += 1
        subjects[rule_id].add(subject)
    for rs in load_rules_config(rules_file).rules:
        out[rs.id] = (rs.version if rs.enabled else None, counts.get(rs.id, 0), subjects.get(rs.id, set()))
    return out


def run_backtest(settings: Settings, paths: list[Path], candidate: str, baseline: str | None = None,
                 database_prefix: str | None = None) -> BacktestReport:
    base_file = baseline or settings.rules.file
    prefix = database_prefix or f"{settings.clickhouse.database}_backtest"
    note(f"backtest: baseline rules {base_file} -> {prefix}_baseline")
    with spinner("replaying with the baseline rules…"):
        base = _alerts(settings, base_file, f"{prefix}_baseline", paths)
    note(f"backtest: candidate rules {candidate} -> {prefix}_candidate")
    with spinner("replaying with the candidate rules…"):
        cand = _alerts(settings, candidate, f"{prefix}_candidate", paths)
    rules = []
    for rule_id in sorted(set(base) | set(cand)):
        bv, bn, bs = base.get(rule_id, (None, 0, set()))
        cv, cn, cs = cand.get(rule_id, (None, 0, set()))
        rules.append(RuleDiff(rule_id, bv, cv, bn, cn, sorted(bs - cs), sorted(cs - bs)))
    return BacktestReport(base_file, candidate, rules)


def format_report(report: BacktestReport, show: int = 5) -> str:
    def version(v: int | None) -> str:
        return "off" if v is None else f"v{v}"

    lines = [f"{'rule':<30} {'baseline':>12} {'candidate':>12} {'only base':>10} {'only cand':>10}"]
    for r in report.rules:
        lines.append(f"{r.rule_id:<30} {version(r.baseline_version) + ' ' + str(r.baseline_alerts):>12} "
                     f"{version(r.candidate_version) + ' ' + str(r.candidate_alerts):>12} "
                     f"{len(r.only_baseline):>10} {len(r.only_candidate):>10}")
    for r in report.changed():
        for label, subjects in (("no longer alerted", r.only_baseline), ("newly alerted", r.only_candidate)):
            if subjects:
                more = f" (+{len(subjects) - show} more)" if len(subjects) > show else ""
                lines.append(f"  {r.rule_id}: {label}: {', '.join(subjects[:show])}{more}")
    if not report.changed():
        lines.append("no difference in alerts")
    return "\n".join(lines)
