"""A small simulated brokerage history, replayed through the engine into a ClickHouse database:
the data the dashboards' queries are tested against (tests/test_dashboards.py, the dashboard
page's tests).

    settings = simulated_settings(chdb_dir, "dash_sim")
    fill_simulated_store(settings, tmp_path)
    first, last = data_time_range(store)

Kept small so that it takes seconds (~15 s): 300 accounts, 45,000 events spread over about 20
simulated days (so that chargebacks, which come days after the deposit, and two months of IB
payouts exist), suspicious cases injected 30 times more often than in real life (so that AML
and fraud alerts exist), exposure limits set low (so that limit breaches exist), and
reconciliation on with breaks injected into 5 % of payments (so that the finance dashboard's
break and match-rate panels have something to show).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from brokerstream.engine import run_replay
from brokerstream.publish import write_envelopes
from devtools.simulator.brokerage import Brokerage
from pipelines.config import Settings, parse_settings
from pipelines.store import Store

SEED = 7
ACCOUNTS = 300
EVENTS = 45_000
DAYS = 20.0
TYPOLOGY_RATE = 30.0
RECON_BREAKS = 0.05

# The example configuration's tenants (MT4, MT5 and cTrader; USD and EUR), no `psp` section
# (the simulator brings its own merchant accounts), and exposure limits low enough for a
# brokerage of 300 accounts to cross them.
BASE_CONFIG: dict[str, Any] = {
    "tenants": [
        {"id": "acme", "name": "ACME Markets", "servers": [
            {"name": "ACME-MT5-Live", "platform": "mt5", "currency": "USD"},
            {"name": "ACME-MT4-Live", "platform": "mt4", "currency": "USD", "utc_offset_minutes": 120},
            {"name": "ACME-cTrader", "platform": "ctrader", "currency": "USD"}]},
        {"id": "zenith", "name": "Zenith FX", "servers": [
            {"name": "Zenith-MT5", "platform": "mt5", "currency": "EUR"},
            {"name": "Zenith-MT4", "platform": "mt4", "currency": "EUR", "utc_offset_minutes": 120}]},
    ],
    "exposure": {
        "snapshot_interval_s": 60.0,
        "limits": {"version": "test", "rules": [
            {"id": "symbol-net", "scope": "symbol", "max_usd": 150_000},
            {"id": "currency-net", "scope": "currency", "max_usd": 400_000},
        ]},
        "margin": {"default": {"margin_call": 100, "stop_out": 50}},
    },
    "fx_fixing": {"EUR": "1.0850", "GBP": "1.2650", "JPY": "0.0066", "CHF": "1.1300",
                  "AUD": "0.6550"},
    "pipeline": {"batch_rows": 20_000, "epoch_s": 5.0},
    "recon": {"enabled": True},
}


def simulated_settings(chdb_dir: Path, database: str) -> Settings:
    """The simulated brokerage's settings (its PSP merchant accounts filled in), pointing at
    `database` in the embedded ClickHouse under `chdb_dir`."""
    doc = dict(BASE_CONFIG)
    doc["clickhouse"] = {"dsn": f"chdb://{chdb_dir}", "database": database}
    return _brokerage(parse_settings(doc, "simulated store")).settings


def _brokerage(settings: Settings) -> Brokerage:
    return Brokerage(settings, SEED, accounts=ACCOUNTS, events=EVENTS, days=DAYS,
                     typology_rate=TYPOLOGY_RATE, recon_breaks=RECON_BREAKS)


def fill_simulated_store(settings: Settings, tmp_path: Path) -> None:
    """Simulate, write the replay file and the IB partner configurations (commission YAMLs)
    under `tmp_path`, and replay the file through the engine into `settings`' database."""
    sim = _brokerage(settings)
    tmp_path.mkdir(parents=True, exist_ok=True)
    files = []
    for tenant, partner_doc in sim.partner_configs().items():
        path = tmp_path / f"commissions-{tenant}.yaml"
        path.write_text(yaml.safe_dump(partner_doc, sort_keys=False, allow_unicode=True),
                        encoding="utf-8")
        files.append(str(path))
    replay = tmp_path / "simulated.jsonl"
    write_envelopes(replay, sim.envelopes(EVENTS))
    run_replay(sim.settings.model_copy(update={"commissions": files}), [replay])
    work_cases(sim.settings)


ANALYSTS = ("ana", "bo", "cy")


def work_cases(settings: Settings) -> None:
    """A compliance desk at work on the replayed alerts (docs/cases.md): every alert filed into
    a case; three of four cases assigned (round robin), half of those acknowledged, every fifth
    closed (false positive), one of those reopened. Deterministic: by case id order."""
    from datetime import UTC, datetime

    from cases import CaseAction
    from pipelines.cases_store import CaseRepository, CaseRow

    store = Store(settings.clickhouse_dsn(), settings.clickhouse.database)
    try:
        repo = CaseRepository(store, settings.cases.categories)
        repo.file_new_alerts()
        now = datetime.now(UTC).replace(microsecond=0)
        actions = []
        for i, case in enumerate(sorted(repo.list_cases(), key=lambda c: c.case_id)):
            def act(kind: str, actor: str, step: int, case: CaseRow = case, **fields: str) -> None:
                actions.append(CaseAction(
                    tenant=case.tenant, action_id=f"sim-{case.case_id}-{step}", case_id=case.case_id,
                    action=kind, actor=actor, at=now + timedelta(seconds=step), **fields))  # type: ignore[arg-type]
            if i % 4 == 3:
                continue  # unassigned
            analyst = ANALYSTS[i % 3]
            act("assign", "lead", 1, assignee=analyst)
            if i % 2 == 0:
                act("acknowledge", analyst, 2)
            if i % 5 == 0:
                act("close", analyst, 3, reason="false_positive", note="explained by the client's payslips")
                if i % 10 == 0:
                    act("reopen", "lead", 4, note="new deposits")
        repo.record(actions)
    finally:
        store.close()


TIME_RANGE_SQL = """
SELECT min(t), max(t) FROM (
    SELECT time AS t FROM deals_store UNION ALL
    SELECT time FROM balance_operations_store UNION ALL
    SELECT time FROM logins_store UNION ALL
    SELECT as_of FROM exposure_history
)
"""


def data_time_range(store: Store) -> tuple[datetime, datetime]:
    """The first and the last event time (UTC) of the data in the store, widened to whole
    seconds (the dashboards' time filters, like Grafana's, compare with whole seconds)."""
    first, last = store.query(TIME_RANGE_SQL)[1][0]
    first, last = _utc(first), _utc(last)
    ceil = last.replace(microsecond=0) + (timedelta(seconds=1) if last.microsecond else timedelta())
    return first.replace(microsecond=0), ceil


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def simulated_partner_configs(settings: Settings) -> dict[str, dict[str, Any]]:
    """The commissions configuration (per tenant) that `fill_simulated_store` wrote for the
    simulated brokerage of `settings`: the same seed gives the same IB trees and plans."""
    return _brokerage(settings).partner_configs()
