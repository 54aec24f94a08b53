"""Shared fixtures: one embedded ClickHouse path and (when needed) one real Kafka broker per
test session. chdb allows one data path per process, so in-process tests get a fresh
*database* each; engine subprocesses get their own data directory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import pytest

from pipelines.config import Settings, parse_settings
from pipelines.store import Store, open_store

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "examples" / "brokerstream.yaml"

TEST_CONFIG = {
    "tenants": [
        {"id": "acme", "servers": [
            {"name": "ACME-MT5-Live", "platform": "mt5", "currency": "USD"},
            {"name": "ACME-MT4-Live", "platform": "mt4", "currency": "USD", "utc_offset_minutes": 120},
            {"name": "ACME-cTrader", "platform": "ctrader", "currency": "USD"},
        ]},
        {"id": "zenith", "servers": [
            {"name": "Zenith-MT5", "platform": "mt5", "currency": "EUR"},
        ]},
    ],
    "pipeline": {"batch_rows": 5000, "epoch_s": 0.5},
    # no reference data unless a test names it (the simulator's, explicitly): not the packaged
    # geo-IP, not lists a developer installed under their brokerstream home
    "rules": {"geoip": "none", "sanctions": {"installed": False}},
}


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def settings(chdb_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Test settings pointing at the session's embedded store, in a fresh database."""
    monkeypatch.delenv("BROKERSTREAM_CLICKHOUSE", raising=False)
    doc = dict(TEST_CONFIG)
    doc["clickhouse"] = {"dsn": f"chdb://{chdb_dir}", "database": f"t_{uuid.uuid4().hex[:12]}"}
    return parse_settings(doc, "test config")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings.clickhouse_dsn(), settings.clickhouse.database)
    yield s
    s.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-node Kafka broker (KRaft) for the whole session."""
    from devtools.kafka.local_broker import LocalKafka, ensure_jars

    ensure_jars()
    home = tmp_path_factory.mktemp("kafka-home")
    broker = LocalKafka(home)
    state = broker.start()
    os.environ["BROKERSTREAM_TEST_KAFKA"] = state.bootstrap
    try:
        yield state.bootstrap
    finally:
        broker.stop()


class SimulatedStore(NamedTuple):
    store: Store
    settings: Settings
    time_from: datetime
    time_to: datetime


@pytest.fixture(scope="session")
def simulated_store(chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedStore]:
    """A simulated brokerage history (tests/simulated_store.py) replayed through the engine
    into its own database of the session's embedded store, once per session: the open Store,
    the settings it was written with and the data's first and last event time (UTC)."""
    from tests.simulated_store import data_time_range, fill_simulated_store, simulated_settings

    settings = simulated_settings(chdb_dir, f"sim_{uuid.uuid4().hex[:12]}")
    fill_simulated_store(settings, tmp_path_factory.mktemp("simulated"))
    s = open_store(settings.clickhouse_dsn(), settings.clickhouse.database)
    first, last = data_time_range(s)
    yield SimulatedStore(s, settings, first, last)
    s.close()
