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
WITHDRAWAL_DECISIONS = Counter(  # pipelines/withdrawal_step.py
    "brokerstream_withdrawal_decisions_total",
    "Withdrawal decisions written, by decision (a re-decided hold counts again)", ["decision"],
)
RULE_RECORDS = Counter(
    "brokerstream_rule_records_total", "Records evaluated by the AML/fraud rules, by state key kind",
    ["keyed_by"],
)

# -- faults waited out (issue 13) ------------------------------------------------------------

STORE_RETRIES = Counter(
    "brokerstream_store_retries_total",
    "ClickHouse calls retried after a transient failure (connection, server busy), by call",
    ["call"],
)
STORE_WAITING = Gauge(
    "brokerstream_store_waiting", "1 while a ClickHouse write is waiting out a transient failure"
)
STORE_SET_ASIDE = Counter(
    "brokerstream_store_set_aside_total",
    "Rows ClickHouse could not take, kept as dead letters (stage store) instead, by table",
    ["table"],
)
KAFKA_WAITING = Gauge(
    "brokerstream_kafka_waiting",
    "1 while a Kafka producer or consumer waits for the broker (outage), by role and topic",
    ["role", "topic"],
)
KAFKA_UNDELIVERED = Gauge(
    "brokerstream_kafka_undelivered_messages",
    "Messages a topic sink has handed to Kafka and not yet seen acknowledged",
    ["topic"],
)
KAFKA_TRUNCATED = Counter(
    "brokerstream_kafka_truncated_total",
    "Messages published truncated (too large for the topic; stored whole in ClickHouse)",
    ["topic"],
)
READY = Gauge(
    "brokerstream_ready", "1 when every output and input works; 0 while one waits out a fault"
)
READY.set(1)

_not_ready: dict[str, str] = {}


def not_ready(component: str, why: str) -> None:
    """Mark a component as waiting out a fault (the engine keeps running, but is not ready)."""
    _not_ready[component] = why
    READY.set(0)


def ready(component: str) -> None:
    _not_ready.pop(component, None)
    if not _not_ready:
        READY.set(1)


def readiness() -> dict[str, str]:
    """Components not ready now, with why ({} = ready): for health checks."""
    return dict(_not_ready)
