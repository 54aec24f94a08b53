"""Prometheus metrics of the engine (prometheus-client, conventional names and units)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter(
    "brokerstream_events_in_total", "Raw messages read, by topic", ["topic"]
)
RECORDS_OUT = Counter(
    "brokerstream_records_total", "Canonical records produced, by kind", ["kind"]
)
DEAD_LETTERS = Counter(
    "brokerstream_dead_letters_total", "Messages that could not be read, by topic and stage",
    ["topic", "stage"],
)
COMMISSION_ISSUES = Counter(
    "brokerstream_commission_issues_total", "Deals the commission engine could not price"
)
SINK_ROWS = Counter("brokerstream_sink_rows_total", "Rows written to ClickHouse", ["table"])
SINK_BATCH_ROWS = Histogram(
    "brokerstream_sink_batch_rows", "Rows per ClickHouse insert", ["table"],
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000),
)
SINK_FLUSH_SECONDS = Histogram(
    "brokerstream_sink_flush_seconds", "Time to write one batch to ClickHouse", ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "brokerstream_consumer_lag_messages",
    "Messages in a raw topic partition not yet read by the engine (at the last snapshot)",
    ["topic", "partition"],
)
EVENT_LAG_SECONDS = Histogram(
    "brokerstream_event_lag_seconds",
    "Processing lag: wall-clock time at normalisation minus the message's Kafka timestamp",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
ALERTS = Counter(
    "brokerstream_alerts_total", "Alerts raised, by rule, category, severity and mode (alert/observe)",
    ["rule_id", "category", "severity", "mode"],
)
RULE_RECORDS = Counter(
    "brokerstream_rule_records_total", "Records evaluated by the AML/fraud rules, by state key kind",
    ["keyed_by"],
)
