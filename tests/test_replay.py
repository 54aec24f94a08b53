"""The dataflow over a replay file equals an independent polars computation of the same events,
and running it twice changes nothing."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from brokerstream.engine import run_replay
from brokerstream.publish import write_envelopes
from devtools.simulator.mt5 import Mt5DealSimulator
from pipelines.config import Settings
from pipelines.store import Store
from tests import batch_reference

DEC = pl.Decimal(38, 8)


@pytest.fixture
def sim_file(tmp_path: Path) -> Path:
    path = tmp_path / "deals.jsonl"
    sim = Mt5DealSimulator(["ACME-MT5-Live", "Zenith-MT5"], accounts=300, seed=7,
                           malformed_rate=0.01, correction_rate=0.01)
    write_envelopes(path, sim.envelopes(30_000))
    return path


def table(store: Store, sql: str) -> pl.DataFrame:
    columns, rows = store.query(sql)
    return pl.DataFrame(rows, schema=columns, orient="row")


def engine_tables(store: Store) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    deals = table(store, "SELECT deal_key AS key, tenant, toInt64(login) AS login, lots, signed_lots, "
                         "notional, price FROM deals")
    ops = table(store, "SELECT op_key AS key, tenant, toInt64(login) AS login, amount "
                       "FROM balance_operations")
    return deals, ops, int(store.scalar("SELECT count() FROM dead_letters"))


def assert_same(actual: pl.DataFrame, wanted: pl.DataFrame) -> None:
    cols = wanted.columns
    a = actual.select(cols).with_columns(pl.col(pl.Decimal).cast(DEC)).sort("key")
    w = wanted.select(cols).with_columns(pl.col(pl.Decimal).cast(DEC)).sort("key")
    assert a.height == w.height
    diff = a.join(w, on="key", how="full", suffix="_batch").filter(
        pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_batch")) for c in cols if c != "key"])
    )
    assert diff.height == 0, diff.head(5)


def test_replay_matches_independent_batch_computation(
    sim_file: Path, settings: Settings, store: Store
) -> None:
    run_replay(settings, [sim_file])
    servers = {name: tenant for name, (tenant, _) in settings.server_index().items()}
    want_deals, want_ops, want_dead = batch_reference.expected(batch_reference.load(sim_file, servers))
    deals, ops, dead = engine_tables(store)
    assert want_deals.height > 10_000 and want_ops.height > 500 and want_dead > 100
    assert_same(deals, want_deals)
    assert_same(ops, want_ops)
    assert dead == want_dead
    reasons = store.query("SELECT DISTINCT stage FROM dead_letters")[1]
    assert {r[0] for r in reasons} == {"decode", "validate", "route"}

    # A replay of the same history changes nothing that users query.
    run_replay(settings, [sim_file])
    deals2, ops2, dead2 = engine_tables(store)
    assert_same(deals2, want_deals)
    assert_same(ops2, want_ops)
    assert dead2 == want_dead


def test_bad_envelope_lines_are_dead_letters(tmp_path: Path, settings: Settings, store: Store) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('not json\n{"topic": "mt5.deals", "value": "{}"}\n\n[1]\n')
    run_replay(settings, [path])
    _, rows = store.query("SELECT offset, reason FROM dead_letters ORDER BY offset")
    assert [r[0] for r in rows] == [1, 2, 4]
    assert "not JSON" in rows[0][1] and "'timestamp'" in rows[1][1]
