"""The engine-health dashboard on the built-in page (services/dashboard/engine_health.py): no
PromQL, each Prometheus panel of dashboards/ read from this process's metrics as they are now
or from the store, and the values are the true ones: N alerts stored in the hour, the panel
says N (the hand-written `increase()` it replaces said 1,495 for 49)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipelines.store import Store
from services.dashboard import engine_health
from services.dashboard.definitions import load_dashboards, render_sql
from services.dashboard.engine_health import HEALTH, Current, Stored, bucket_quantile, current_values
from services.dashboard.server import create_app, is_single_select
from tests.dashboard_logins import ADMIN, auth_for, log_in

if TYPE_CHECKING:
    from pipelines.config import Settings
    from tests.conftest import SimulatedStore

PROM_PANELS = [(d, p) for d in load_dashboards() for p in d.panels if p.datasource_type == "prometheus"]
PANEL = "/api/dashboards/" + HEALTH + "/panels/{}"


def test_every_prometheus_panel_has_a_definition_reading_its_metric() -> None:
    assert PROM_PANELS
    for d, panel in PROM_PANELS:
        found = engine_health.definition(d.uid, panel.id)
        assert found is not None, f"{d.uid} / {panel.title}: no built-in definition"
        if isinstance(found, Current):
            named = set(re.findall(r"\b(brokerstream_\w+)", panel.sql))
            assert set(engine_health.read_names(found)) <= named, (panel.title, panel.sql)
        else:
            sql = render_sql(found.sql, time_from=datetime.now(UTC) - timedelta(hours=1),
                             time_to=datetime.now(UTC), variables={}, interval_s=60)
            assert is_single_select(sql), panel.title
    # no definition for a panel that is not there
    ids = {p.id for d, p in PROM_PANELS if d.uid == HEALTH}
    assert set(engine_health.DEFINITIONS[HEALTH]) == ids


def test_bucket_quantile_interpolates_inside_the_bucket() -> None:
    # 100 observations: 90 at most 0.1, 10 in (1, 5]
    buckets = {0.1: 90.0, 0.5: 90.0, 1.0: 90.0, 5.0: 100.0, float("inf"): 100.0}
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.1 * 50 / 90)
    assert bucket_quantile(0.95, buckets) == pytest.approx(1.0 + 4.0 * 5 / 10)
    assert bucket_quantile(1.0, buckets) == pytest.approx(5.0)
    # beyond the highest finite bound: that bound, as Prometheus says
    assert bucket_quantile(0.99, {1.0: 1.0, float("inf"): 2.0}) == 1.0
    assert bucket_quantile(0.5, {1.0: 0.0, float("inf"): 0.0}) is None


def test_current_values_of_counters_gauges_and_histograms() -> None:
    registry = CollectorRegistry()
    events = Counter("brokerstream_events_in_total", "events", ["topic"], registry=registry)
    events.labels("deals").inc(7)
    events.labels("quotes").inc(5)
    lag = Gauge("brokerstream_consumer_lag_messages", "lag", ["topic", "partition"], registry=registry)
    lag.labels("deals", "0").set(30)
    lag.labels("deals", "1").set(12)
    flush = Histogram("brokerstream_sink_flush_seconds", "flush", ["table"], buckets=(0.1, 1.0),
                      registry=registry)
    for _ in range(3):
        flush.labels("deals").observe(0.05)
    flush.labels("deals").observe(0.5)
    flush.labels("alerts").observe(0.2)
    assert current_values(Current("brokerstream_events_in_total", name="events read"), [registry]) == [
        ["events read", 12.0]]
    by_topic = Current("brokerstream_events_in_total", by=("topic",))
    assert current_values(by_topic, [registry], "{{topic}}") == [["deals", 7.0], ["quotes", 5.0]]
    assert current_values(Current("brokerstream_consumer_lag_messages", by=("topic",)), [registry]) == [
        ["deals", 42.0]]
    p50 = current_values(Current("brokerstream_sink_flush_seconds", by=("table",), kind="quantile", q=0.5),
                         [registry])
    assert p50 == [["alerts", pytest.approx(0.1 + 0.9 * 0.5)], ["deals", pytest.approx(0.1 * 2 / 3)]]
    mean = current_values(Current("brokerstream_sink_flush_seconds", by=("table",), kind="mean"), [registry])
    assert mean == [["alerts", pytest.approx(0.2)], ["deals", pytest.approx((3 * 0.05 + 0.5) / 4)]]
    # nothing observed: no series (the panel says "No data"), never a made-up zero
    assert current_values(Current("brokerstream_event_lag_seconds", kind="quantile"), [registry]) == []


def _alert(i: int, mode: str, ingested: datetime) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"alert_id": f"a{i}", "rule_id": "large_deposit" if i % 2 else "shared_ip", "rule_version": 1,
            "category": "aml", "severity": "high", "tenant": "acme", "subject": f"acme:srv:{i}",
            "summary": "s", "facts": "{}", "evidence": [], "event_time": now, "detected_at": now,
            "mode": mode, "ingested_at": ingested}


def _insert(store: Store, table: str, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    store.insert_rows(table, columns, [[r[c] for c in columns] for r in rows])


@pytest.fixture
def health(store: Store, settings: Settings) -> Iterator[tuple[TestClient, Store, CollectorRegistry]]:
    registry = CollectorRegistry()
    app = create_app(store, auth=auth_for(settings), registry=registry)
    with TestClient(app) as c:
        log_in(c, ADMIN)
        yield c, store, registry


def _value(c: TestClient, panel_id: int, **params: str) -> Any:
    body = c.get(PANEL.format(panel_id), params={"from": "now-1h", "to": "now", **params}).json()
    assert "unsupported" not in body and "error" not in body, body
    return body


def test_alerts_and_dead_letters_in_the_hour_are_the_stored_ones(
        health: tuple[TestClient, Store, CollectorRegistry]) -> None:
    c, store, _ = health
    assert _value(c, 6)["rows"] == [["alerts", 0]]
    now = datetime.now(UTC)
    n = 49
    _insert(store, "alerts_store",
            [_alert(i, "alert", now - timedelta(minutes=i + 1)) for i in range(n)]  # in the hour
            + [_alert(100 + i, "observe", now - timedelta(minutes=1)) for i in range(3)]  # not raised
            + [_alert(200 + i, "alert", now - timedelta(hours=2)) for i in range(5)])  # earlier
    _insert(store, "alerts_store", [_alert(0, "alert", now - timedelta(seconds=30))])  # stored again
    body = _value(c, 6)
    assert body["rows"] == [["alerts", n]]
    assert body["columns"] == [{"name": "series", "type": "string"}, {"name": "value", "type": "number"}]
    # the range's end decides the hour, as in Grafana: two hours ago, the earlier five
    two_h = str(int((now - timedelta(hours=2)).timestamp() * 1000) + 1000)
    assert _value(c, 6, **{"from": "now-3h", "to": two_h})["rows"] == [["alerts", 5]]
    # "all data" on engine health is the dashboard's own wall-clock range, not the event time
    assert _value(c, 6, **{"from": "all", "to": "all"})["rows"] == [["alerts", n]]
    per_rule = _value(c, 16)
    assert {r[1] for r in per_rule["rows"]} == {"large_deposit (alert)", "shared_ip (alert)",
                                                 "large_deposit (observe)", "shared_ip (observe)"}
    assert sum(r[2] for r in per_rule["rows"] if r[1].endswith("(alert)")) == n
    assert per_rule["columns"][0]["type"] == "time"

    dl = [{"dl_key": f"k{i}", "tenant": "acme", "topic": "mt5.deals", "partition": 0, "offset": i, "key": "",
           "raw": "{}", "headers": {}, "reason": "bad", "stage": "decode", "time": now,
           "ingested_at": now - timedelta(minutes=5 if i < 4 else 90)} for i in range(6)]
    _insert(store, "dead_letters_store", dl)
    assert _value(c, 5)["rows"] == [["dead letters", 4]]
    per_stage = _value(c, 11)["rows"]
    assert {r[1] for r in per_stage} == {"mt5.deals decode"} and sum(r[2] for r in per_stage) == 4
    rows_written = _value(c, 12)["rows"]
    assert {r[1] for r in rows_written} >= {"alerts", "dead_letters"}


def test_metric_panels_are_the_counters_now(health: tuple[TestClient, Store, CollectorRegistry]) -> None:
    c, _, registry = health
    events = Counter("brokerstream_events_in_total", "events", ["topic"], registry=registry)
    lag = Histogram("brokerstream_event_lag_seconds", "lag", buckets=(0.1, 1.0, 10.0), registry=registry)
    assert _value(c, 1)["rows"] == []  # no topic read yet: "No data"
    assert _value(c, 2)["rows"] == []  # nothing observed yet
    events.labels("mt5.deals").inc(1200)
    events.labels("psp.webhooks").inc(34)
    for _ in range(9):
        lag.observe(0.05)
    lag.observe(5.0)
    body = _value(c, 1)
    assert body["rows"] == [["events read", 1234.0]]
    assert body["unit"] == "short" and "since the process started" in body["note"]  # a total, not a rate
    listed = c.get(f"/api/dashboards/{HEALTH}").json()["panels"]
    info = {p["id"]: p["query"] for p in listed}
    assert info[1] == "sum brokerstream_events_in_total, now (since the process started)"
    assert "FROM alerts" in info[6] and "rate(" not in "".join(info.values())  # no PromQL shown
    assert _value(c, 7)["rows"] == [["mt5.deals", 1200.0], ["psp.webhooks", 34.0]]
    assert _value(c, 2)["rows"] == [["p50", pytest.approx(0.1 * 5 / 9)]]
    assert _value(c, 3)["rows"] == [["p99", pytest.approx(1.0 + 9.0 * (9.9 - 9) / 1)]]
    assert "unit" not in _value(c, 2)  # seconds, as in Grafana


def test_alerts_raised_on_the_simulated_engine_run(simulated_store: SimulatedStore) -> None:
    """The engine replayed the simulated brokerage in this session: the panel says how many
    alerts it stored in the hour (the whole run), whatever the counter's history."""
    store = simulated_store.store
    app = create_app(store, auth=auth_for(simulated_store.settings))
    with TestClient(app) as c:
        log_in(c, ADMIN)
        body = _value(c, 6)
    stored = store.scalar("SELECT count() FROM alerts WHERE mode = 'alert' "
                          "AND ingested_at > now() - INTERVAL 1 HOUR")
    assert stored > 0 and body["rows"] == [["alerts", stored]]


def test_a_prometheus_panel_without_a_definition_needs_prometheus(
        store: Store, settings: Settings, tmp_path: Path) -> None:
    ds = {"type": "prometheus", "uid": "${prometheus}"}
    panel = {"id": 1, "title": "x", "type": "stat", "datasource": ds,
             "gridPos": {"x": 0, "y": 0, "w": 6, "h": 4},
             "targets": [{"refId": "A", "datasource": ds, "expr": "up"}]}
    (tmp_path / "other.json").write_text(json.dumps(
        {"uid": "other", "title": "other", "templating": {"list": []}, "panels": [panel]}))
    app = create_app(store, auth=auth_for(settings), dashboards_dir=tmp_path, registry=CollectorRegistry())
    with TestClient(app) as c:
        log_in(c, ADMIN)
        body = c.get("/api/dashboards/other/panels/1").json()
    assert body["unsupported"].startswith("needs Prometheus") and body["rows"] == []
    assert isinstance(engine_health.definition(HEALTH, 6), Stored)
