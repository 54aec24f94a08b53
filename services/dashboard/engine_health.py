"""The Prometheus panels (the engine-health dashboard) on the built-in page, without PromQL.

Grafana draws `dashboards/engine-health.json` from a real Prometheus, with the PromQL kept in
that file. The built-in page has no Prometheus and evaluates no PromQL: each of those panels
has a definition here instead (keyed by dashboard uid and panel id), which reads either

* this process's metrics as they are now (`Current`: prometheus_client's registries; counter
  totals and gauges since the process started, a quantile or the mean of a histogram's
  buckets), or
* the store (`Stored`: one SELECT over the tables the engine writes, with the dashboards'
  macros, e.g. the alerts of the last hour counted in `alerts`).

A Prometheus panel without a definition is shown as "needs Prometheus". The tests
(tests/test_dashboard_engine_health.py) hold every Prometheus panel in dashboards/ to having a
definition that reads the metric its PromQL reads, and the values to the true ones.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample

SINCE_START = "since the process started"


@dataclass(frozen=True)
class Current:
    """A metric's value now, summed over every label but `by`. `metric` is the exported name
    (`brokerstream_events_in_total`; a histogram's base name for `quantile` and `mean`)."""

    metric: str
    by: tuple[str, ...] = ()
    kind: Literal["sum", "quantile", "mean"] = "sum"
    q: float = 0.5  # the quantile, for kind="quantile"
    name: str = ""  # the one series' name when `by` is empty (else the panel's legend)
    unit: str = ""  # replaces the panel's unit: a total where Grafana shows a rate
    note: str = SINCE_START


@dataclass(frozen=True)
class Stored:
    """One SELECT on the store (macros and variables as in dashboards/: definitions.render_sql)."""

    sql: str
    unit: str = ""
    note: str = ""


Definition = Current | Stored

HEALTH = "brokerstream-engine-health"
_TO = "$__toTime"  # the end of the page's range: "(1h)" is the hour before it, as in Grafana


def _last_hour(table: str, series: str, where: str = "") -> Stored:
    cond = f"{where} AND " if where else ""
    return Stored(
        f"SELECT '{series}' AS series, count() AS value FROM {table}"
        f" WHERE {cond}ingested_at > {_TO} - INTERVAL 1 HOUR AND ingested_at < {_TO} + INTERVAL 1 SECOND",
        note=f"{table} stored in the hour")


def _per_interval(source: str, series: str, value: str = "count()", note: str = "") -> Stored:
    return Stored(
        "SELECT toStartOfInterval(ingested_at, INTERVAL $__interval_s SECOND) AS time,"
        f" {series} AS series, {value} AS value FROM {source}"
        " WHERE $__timeFilter(ingested_at) GROUP BY time, series ORDER BY time",
        note=note or f"{source} stored per interval")


# dashboard uid -> panel id -> its definition on the built-in page
DEFINITIONS: dict[str, dict[int, Definition]] = {HEALTH: {
    1: Current("brokerstream_events_in_total", name="events read", unit="short"),
    2: Current("brokerstream_event_lag_seconds", kind="quantile", q=0.5, name="p50"),
    3: Current("brokerstream_event_lag_seconds", kind="quantile", q=0.99, name="p99"),
    4: Current("brokerstream_consumer_lag_messages", name="messages", note="at the last snapshot"),
    5: _last_hour("dead_letters", "dead letters"),
    6: _last_hour("alerts", "alerts", "mode = 'alert'"),
    7: Current("brokerstream_events_in_total", by=("topic",), unit="short"),
    8: Current("brokerstream_records_total", by=("kind",), unit="short"),
    9: Current("brokerstream_event_lag_seconds", kind="quantile", q=0.95, name="p95"),
    10: Current("brokerstream_consumer_lag_messages", by=("topic",), note="at the last snapshot"),
    11: _per_interval("dead_letters", "concat(topic, ' ', stage)"),
    # every table the sink writes with an ingested_at (the per-second quote aggregates have none)
    12: _per_interval("merge(currentDatabase(), '_store$')", "replaceRegexpOne(_table, '_store$', '')",
                      "count() / $__interval_s", "rows stored per second (tables with an ingested_at)"),
    13: Current("brokerstream_sink_batch_rows", by=("table",), kind="quantile", q=0.95),
    14: Current("brokerstream_sink_batch_rows", by=("table",), kind="mean"),
    15: Current("brokerstream_sink_flush_seconds", by=("table",), kind="quantile", q=0.95),
    16: _per_interval("alerts", "concat(rule_id, ' (', mode, ')')"),
    17: Current("brokerstream_rule_records_total", by=("keyed_by",), unit="short"),
    18: Current("brokerstream_commission_issues_total", name="issues"),
    19: Current("brokerstream_webhook_requests_total", by=("provider", "code"), unit="short"),
    20: Current("brokerstream_webhook_request_seconds", by=("provider",), kind="quantile", q=0.95),
    21: Current("brokerstream_webhook_rejected_total", by=("provider", "reason")),
    22: Current("brokerstream_webhook_published_total", by=("provider",), unit="short"),
    23: Current("brokerstream_webhook_duplicates_total", by=("provider",)),
}}


def definition(dashboard_uid: str, panel_id: int) -> Definition | None:
    return DEFINITIONS.get(dashboard_uid, {}).get(panel_id)


def describe(d: Definition) -> str:
    """What the page reads for a panel (its ⓘ), in place of Grafana's PromQL."""
    if isinstance(d, Stored):
        return d.sql
    what = {"sum": "sum", "quantile": f"quantile {d.q:g} of the buckets of", "mean": "mean of"}[d.kind]
    by = f" by {', '.join(d.by)}" if d.by else ""
    return f"{what} {d.metric}{by}, now ({d.note})"


def read_names(d: Current) -> tuple[str, ...]:
    """The exported sample names `d` reads (what a panel's PromQL must name too)."""
    if d.kind == "quantile":
        return (d.metric + "_bucket",)
    if d.kind == "mean":
        return (d.metric + "_sum", d.metric + "_count")
    return (d.metric,)


def _samples(registries: Iterable[CollectorRegistry], names: tuple[str, ...]) -> Iterator[Sample]:
    for registry in registries:
        for family in registry.collect():
            for sample in family.samples:
                if sample.name in names:
                    yield sample


def bucket_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of cumulative bucket counts {upper bound: count}, interpolated linearly
    inside its bucket (the lowest starting at 0), as Prometheus' histogram_quantile does; in
    the +Inf bucket, the highest finite bound. None without observations."""
    bounds = sorted(buckets)
    if not bounds or not buckets[bounds[-1]]:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for upper in bounds:
        count = buckets[upper]
        if count >= rank:
            if math.isinf(upper):
                return lower
            inside = count - below
            return upper if inside <= 0 else lower + (upper - lower) * (rank - below) / inside
        lower, below = upper, count
    return lower


_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def series_name(d: Current, labels: dict[str, str], legend: str) -> str:
    """The series' name: the definition's own, else the panel's legend format (`{{topic}}`)."""
    if d.name or not d.by:
        return d.name or legend
    if legend and _LEGEND.search(legend):
        return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), legend).strip()
    return " ".join(labels.get(k, "") for k in d.by)


def current_values(d: Current, registries: Iterable[CollectorRegistry],
                   legend: str = "") -> list[list[Any]]:
    """[[series, value], ...] of `d` over the registries' samples now, sorted by series."""
    sums: dict[tuple[str, ...], float] = defaultdict(float)
    counts: dict[tuple[str, ...], float] = defaultdict(float)
    buckets: dict[tuple[str, ...], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for s in _samples(registries, read_names(d)):
        key = tuple(s.labels.get(k, "") for k in d.by)
        if d.kind == "quantile":
            buckets[key][float(s.labels["le"])] += s.value
        elif d.kind == "mean" and s.name.endswith("_count"):
            counts[key] += s.value
        else:
            sums[key] += s.value
    values: dict[tuple[str, ...], float | None]
    if d.kind == "quantile":
        values = {k: bucket_quantile(d.q, b) for k, b in buckets.items()}
    elif d.kind == "mean":
        values = {k: sums[k] / n if n else None for k, n in counts.items()}
    else:
        values = dict(sums)
    rows = [[series_name(d, dict(zip(d.by, k, strict=True)), legend), v]
            for k, v in values.items() if v is not None]
    return sorted(rows, key=lambda r: str(r[0]))


def label_values(registries: Iterable[CollectorRegistry], metric: str | None, label: str) -> list[str]:
    """Grafana's Prometheus variable helper `label_values([metric,] label)`, on the metrics now."""
    found: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            for s in family.samples:
                if (metric is None or s.name == metric) and s.labels.get(label):
                    found.add(s.labels[label])
    return sorted(found)
