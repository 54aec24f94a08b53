"""IB commissions through the dataflow: the docs' worked example, a deletion, and a replay."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson

from brokerstream.engine import run_replay
from brokerstream.publish import write_envelopes
from pipelines.config import Settings, parse_settings
from pipelines.store import Store
from schemas.envelope import Envelope
from tests.conftest import REPO
from tests.helpers import T0, mt5_deal


def deal_env(doc: dict[str, str], ts: int, event: str = "add") -> Envelope:
    return Envelope(topic="mt5.deals", value=orjson.dumps(doc), timestamp_ms=ts, key=doc["Login"],
                    headers={"server": "ACME-MT5-Live", "event": event})


def test_three_level_differential_then_delete_nets_to_zero(
    tmp_path: Path, settings: Settings, store: Store
) -> None:
    doc = settings.model_dump()
    doc["commissions"] = [str(REPO / "examples" / "commissions.yaml")]
    settings = parse_settings(doc)
    # Account 70001 is IB-3's client (IB-3 $5 < IB-2 $7 < IB-1 $10 per lot, differential).
    opening = mt5_deal(Deal=9001, Login=70001, Symbol="EURUSD", Volume=10000, VolumeExt=100000000)
    closing = mt5_deal(Deal=9002, Login=70001, Symbol="EURUSD", Action=1, Entry=1, Volume=10000,
                       VolumeExt=100000000, TimeMsc=T0 + 300_000, Profit="12.00")
    path = tmp_path / "deals.jsonl"
    write_envelopes(path, [deal_env(opening, T0), deal_env(closing, T0 + 300_000)])
    recovery = tmp_path / "recovery"
    run_replay(settings, [path], recovery_dir=recovery)

    _, rows = store.query(
        "SELECT deal_key, ib_id, tier, amount, plan_id, tier_chain FROM ib_commissions "
        "WHERE deal_key = 'mt5:ACME-MT5-Live:9001' ORDER BY tier"
    )
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("IB-3", 1, Decimal("5")), ("IB-2", 2, Decimal("2")), ("IB-1", 3, Decimal("3"))
    ]
    assert rows[0][5] == "IB-1>IB-2>IB-3"

    # The dealer deletes the opening deal: the running engine (state resumed from its
    # recovery snapshots, as after a restart) books reversing rows; nothing is overwritten.
    later = tmp_path / "later.jsonl"
    write_envelopes(later, [deal_env(opening, T0 + 600_000, event="delete")])
    run_replay(settings, [path, later], recovery_dir=recovery)
    run_replay(settings, [path, later], recovery_dir=recovery)  # nothing new: adds nothing
    _, totals = store.query(
        "SELECT ib_id, sum(amount), countIf(kind = 'reversal') FROM ib_commissions "
        "WHERE deal_key = 'mt5:ACME-MT5-Live:9001' GROUP BY ib_id ORDER BY ib_id"
    )
    assert totals == [("IB-1", Decimal("0"), 1), ("IB-2", Decimal("0"), 1), ("IB-3", Decimal("0"), 1)]
    _, payouts = store.query("SELECT ib_id, own, override FROM ib_payouts_monthly ORDER BY ib_id")
    assert {r[0] for r in payouts} >= {"IB-1", "IB-2", "IB-3"}

    # Replaying the whole history (one file, in its real order: two files are independent
    # partitions with no order between them) from scratch into a fresh database: same rows.
    query = "SELECT commission_id, amount, kind FROM ib_commissions ORDER BY commission_id"
    live = store.query(query)[1]
    doc = settings.model_dump()
    doc["clickhouse"]["database"] = settings.clickhouse.database + "_replay"
    fresh = parse_settings(doc)
    history = tmp_path / "history.jsonl"
    history.write_bytes(path.read_bytes() + later.read_bytes())
    run_replay(fresh, [history])
    other = Store(fresh.clickhouse_dsn(), fresh.clickhouse.database)
    try:
        assert other.query(query)[1] == live
    finally:
        other.close()


def test_statement_cli_writes_the_csv(tmp_path: Path, settings: Settings, store: Store,
                                      monkeypatch: object, capsys: object) -> None:
    import yaml

    from brokerstream.cli import main

    doc = settings.model_dump(mode="json")
    doc["commissions"] = [str(REPO / "examples" / "commissions.yaml")]
    path = tmp_path / "deals.jsonl"
    write_envelopes(path, [deal_env(mt5_deal(Deal=9101, Login=70001, Symbol="EURUSD"), T0)])
    run_replay(parse_settings(doc), [path])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(doc))
    out = tmp_path / "ib3.csv"
    assert main(["commissions", "statement", "--ib", "IB-3", "--month", "2024-11", "--out", str(out),
                 "--config", str(config)]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and "mt5:ACME-MT5-Live:9101" in lines[1] and "IB-1>IB-2>IB-3" in lines[1]


def test_platform_agent_login_resolves_to_the_configured_ib() -> None:
    from datetime import UTC, datetime

    import yaml

    from commissions import CommissionEngine, parse_commissions
    from schemas.events import AccountUpdate
    doc = yaml.safe_load((REPO / "examples" / "commissions.yaml").read_text())
    for ib in doc["ibs"]:
        if ib["id"] == "IB-3":
            ib["agent_logins"] = ["7003"]
    engine = CommissionEngine(parse_commissions(doc))
    engine.on_account(AccountUpdate(
        account_key="mt5:ACME-MT5-Live:71234", tenant="acme", platform="mt5", server="ACME-MT5-Live",
        login=71234, origin="platform", event="user_add", agent="7003",
        time=datetime(2024, 11, 1, tzinfo=UTC), version=1, source="t"))
    assert engine.tree.ib_of("mt5:ACME-MT5-Live:71234", datetime(2024, 11, 24, tzinfo=UTC)) == "IB-3"
