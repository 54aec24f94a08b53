"""The built-in page's PromQL subset (services/dashboard/promql.py), on a registry of its
own with a clock the tests move: rates, aggregations, quantiles, arithmetic, and a clear
`Unsupported` outside the subset."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.dashboard import promql
from services.dashboard.definitions import load_dashboards


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world() -> tuple[CollectorRegistry, Clock, promql.MetricHistory]:
    registry = CollectorRegistry()
    clock = Clock()
    return registry, clock, promql.MetricHistory(registry, clock=clock, min_interval_s=0)


def instant(expr: str, history: promql.MetricHistory, t: float) -> dict[str, float]:
    return {promql.series_name(k): v for k, v in promql.evaluate_instant(expr, history, t)}


def test_rate_sum_by_and_counter_reset(world: tuple[CollectorRegistry, Clock, promql.MetricHistory]) -> None:
    registry, clock, history = world
    events = Counter("events_in_total", "events", ["topic"], registry=registry)
    for _ in range(7):  # 10/s on deals, 2/s on quotes, sampled every 5 s
        history.sample()
        events.labels("deals").inc(50)
        events.labels("quotes").inc(10)
        clock.now += 5
    history.sample()
    got = instant("sum by (topic) (rate(events_in_total[1m]))", history, clock.now)
    assert got == pytest.approx({"deals": 10.0, "quotes": 2.0})
    assert instant("sum(rate(events_in_total[1m]))", history, clock.now) == pytest.approx({"": 12.0})
    assert instant('rate(events_in_total{topic=~"de.*"}[1m])', history, clock.now) == pytest.approx(
        {"deals": 10.0})
    assert instant('sum(increase(events_in_total{topic!="deals"}[30s]))', history,
                   clock.now) == pytest.approx({"": 60.0})
    # a restart resets the counter: the increase goes on from zero, never negative
    key = next(k for k in history.series if dict(k).get("topic") == "deals")
    history.series[key][-1] = 20.0  # was 350: the process restarted and counted 20 since
    assert instant('increase(events_in_total{topic="deals"}[10s])', history, clock.now) == pytest.approx(
        {"deals": 50.0 + 20.0})


def test_gauges_lookback_and_arithmetic(world: tuple[CollectorRegistry, Clock, promql.MetricHistory]) -> None:
    registry, clock, history = world
    lag = Gauge("lag_messages", "lag", ["topic", "partition"], registry=registry)
    lag.labels("deals", "0").set(30)
    lag.labels("deals", "1").set(12)
    lag.labels("quotes", "0").set(5)
    history.sample()
    assert instant("sum by (topic) (lag_messages)", history, clock.now) == {"deals": 42.0, "quotes": 5.0}
    assert instant("max(lag_messages) * 2 + 1", history, clock.now) == {"": 61.0}
    assert instant("sum(lag_messages) / count(lag_messages)", history, clock.now) == pytest.approx(
        {"": 47 / 3})
    assert instant("topk(1, lag_messages)", history, clock.now) == {"partition=0, topic=deals": 30.0}
    assert instant("sum without (partition) (lag_messages)", history, clock.now) == {
        "deals": 42.0, "quotes": 5.0}
    # an instant selector sees samples at most 5 minutes old, as Prometheus does
    assert instant("lag_messages", history, clock.now + promql.LOOKBACK_S + 1) == {}


def test_histogram_quantile(world: tuple[CollectorRegistry, Clock, promql.MetricHistory]) -> None:
    registry, clock, history = world
    lag = Histogram("lag_seconds", "lag", ["table"], buckets=(0.1, 0.5, 1.0, 5.0), registry=registry)
    lag.labels("deals")
    lag.labels("quotes")
    history.sample()
    clock.now += 10
    for _ in range(90):
        lag.labels("deals").observe(0.05)
    for _ in range(10):
        lag.labels("deals").observe(3.0)
    lag.labels("quotes").observe(0.7)
    history.sample()
    expr = "histogram_quantile({q}, sum by (le) (rate(lag_seconds_bucket[1m])))"
    assert instant(expr.format(q=0.5), history, clock.now)[""] == pytest.approx(0.1 * 50.5 / 90)
    # the 99th of 101: inside (1, 5], interpolated linearly
    p99 = instant(expr.format(q=0.99), history, clock.now)[""]
    assert 1.0 < p99 < 5.0
    by_table = instant("histogram_quantile(0.5, sum by (table, le) (rate(lag_seconds_bucket[1m])))",
                       history, clock.now)
    assert set(by_table) == {"deals", "quotes"}
    assert by_table["quotes"] == pytest.approx(0.75)
    mean = instant("sum by (table) (rate(lag_seconds_sum[1m]))"
                   " / sum by (table) (rate(lag_seconds_count[1m]))", history, clock.now)
    assert mean["deals"] == pytest.approx((90 * 0.05 + 10 * 3.0) / 100)


def test_range_query_steps_and_gaps(world: tuple[CollectorRegistry, Clock, promql.MetricHistory]) -> None:
    registry, clock, history = world
    rows = Counter("rows_total", "rows", ["table"], registry=registry)
    start = clock.now
    for i in range(13):  # one minute, a sample every 5 s; quotes appear half-way
        rows.labels("deals").inc(5)
        if i >= 6:
            rows.labels("quotes").inc(1)
        history.sample()
        clock.now += 5
    out = promql.evaluate_range("sum by (table) (rate(rows_total[20s]))", history, start, start + 60, 10)
    series = {promql.series_name(k): pts for k, pts in out.items()}
    assert [t - start for t, _ in series["deals"]] == [10, 20, 30, 40, 50, 60]  # t=0: one sample
    assert all(v == pytest.approx(1.0) for _, v in series["deals"])
    assert series["quotes"][0][0] - start >= 40  # no values before the series existed
    # outside the subset: said plainly
    for expr in ("rate(rows_total[5m]) > 1", "rate(rows_total[5m:1m])", "rows_total offset 5m",
                 "label_replace(rows_total, 'a', 'b', 'c', 'd')", "a or b",
                 "sum(rows_total) by (table) and on() vector(1)"):
        with pytest.raises(promql.Unsupported):
            promql.parse(expr)


def test_every_engine_health_expression_is_in_the_subset() -> None:
    """The engine-health dashboard renders on the page without a Prometheus server."""
    dashboards = [d for d in load_dashboards() if any(p.datasource_type == "prometheus" for p in d.panels)]
    assert dashboards, "no Prometheus dashboard in dashboards/"
    for d in dashboards:
        for panel in d.panels:
            if panel.datasource_type == "prometheus":
                node = promql.parse(panel.sql, interval_s=30)
                assert list(promql.metric_names(node)), panel.title
                promql.evaluate_instant(node, promql.MetricHistory(CollectorRegistry()), 0.0)


def test_history_is_bounded(world: tuple[CollectorRegistry, Clock, promql.MetricHistory]) -> None:
    registry, clock, _ = world
    history = promql.MetricHistory(registry, clock=clock, retention_s=60, min_interval_s=5)
    g = Gauge("g", "g", registry=registry)
    for i in range(100):
        g.set(i)
        history.sample()
        history.sample()  # within min_interval_s: ignored
        clock.now += 5
    assert len(history.times) == 13
    assert all(len(v) == 13 for v in history.series.values())
    assert not any(math.isnan(v) for v in history.series[(("__name__", "g"),)])
