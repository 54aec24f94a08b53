"""Outputs of the dataflow: ClickHouse tables, and the dead-letter Kafka topic.

Both buffer rows and write when a buffer is full *and* at every epoch end (Bytewax calls
`snapshot()` there): nothing is held across a recovery snapshot, so a crash never loses a
row, and rows written again after a resume carry the same keys and versions, which the
ReplacingMergeTree tables collapse.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import Producer

from brokerstream.metrics import SINK_BATCH_ROWS, SINK_FLUSH_SECONDS, SINK_ROWS
from brokerstream.store import Store
from pipelines.exposure_step import ALERT_COLUMNS
from schemas.events import DeadLetter
from schemas.tables import COLUMNS_BY_TABLE

log = logging.getLogger(__name__)

Row = tuple[Any, ...]


class _TableWriter(StatefulSinkPartition[Row, None]):
    def __init__(self, store: Store, table: str, batch_rows: int, flush_s: float) -> None:
        self._store = store
        self._table = table
        self._columns = COLUMNS_BY_TABLE[table]
        self._batch_rows = batch_rows
        self._flush_s = flush_s
        self._rows: list[Row] = []
        self._oldest = 0.0  # monotonic time the oldest buffered row arrived

    def write_batch(self, values: list[Row]) -> None:
        if not self._rows:
            self._oldest = time.monotonic()
        self._rows.extend(values)
        # full, or held long enough: rows become visible well before the epoch (the recovery
        # snapshot interval) ends; a resume may write them again, which the tables collapse
        if len(self._rows) >= self._batch_rows or time.monotonic() - self._oldest >= self._flush_s:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        started = time.perf_counter()
        self._store.insert_rows(self._table, self._columns, rows)
        SINK_FLUSH_SECONDS.labels(self._table).observe(time.perf_counter() - started)
        SINK_BATCH_ROWS.labels(self._table).observe(len(rows))
        SINK_ROWS.labels(self._table).inc(len(rows))

    def snapshot(self) -> None:
        self._flush()

    def close(self) -> None:
        self._flush()
        self._store.close()


class ClickHouseSink(FixedPartitionedSink[Row, None]):
    """Items are (table, row); one partition per table."""

    def __init__(self, store_factory: Callable[[], Store], batch_rows: int, flush_s: float = 0.5) -> None:
        self._store_factory = store_factory
        self._batch_rows = batch_rows
        self._flush_s = flush_s
        # Bytewax indexes the sorted global partition list with part_fn: route each
        # table name to its own partition instead of hashing.
        self._index = {name: i for i, name in enumerate(sorted(COLUMNS_BY_TABLE))}

    def list_parts(self) -> list[str]:
        return list(COLUMNS_BY_TABLE)

    def part_fn(self, item_key: str) -> int:
        return self._index[item_key]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TableWriter:
        return _TableWriter(self._store_factory(), for_part, self._batch_rows, self._flush_s)


Message = tuple[bytes | None, bytes, list[tuple[str, str | bytes | None]]]  # key, value, headers


def dead_letter_message(dl: DeadLetter) -> Message:
    """Raw bytes intact, the reason and where it came from in the headers."""
    headers: list[tuple[str, str | bytes | None]] = [
        ("reason", dl.reason.encode()), ("source", dl.dl_key.encode()), ("stage", dl.stage.encode())]
    headers += [(k, v.encode()) for k, v in dl.headers.items() if k not in ("reason", "source")]
    return dl.key.encode() or None, dl.raw, headers


def alert_message(row: tuple[Any, ...]) -> Message:
    """An alert row as JSON, keyed by its subject."""
    alert = dict(zip(ALERT_COLUMNS, row, strict=True))
    alert["facts"] = orjson.loads(alert["facts"])
    return (str(alert["subject"]).encode(), orjson.dumps(alert, default=str),
            [("alert_id", str(alert["alert_id"]).encode())])


class _TopicProducer(StatefulSinkPartition[Any, None]):
    def __init__(self, config: dict[str, str], topic: str, encode: Callable[[Any], Message]) -> None:
        self._producer = Producer({**config, "acks": "all", "enable.idempotence": "true"})
        self._topic = topic
        self._encode = encode

    def write_batch(self, values: list[Any]) -> None:
        for value in values:
            key, body, headers = self._encode(value)
            self._producer.produce(self._topic, key=key, value=body, headers=headers)
            self._producer.poll(0)

    def snapshot(self) -> None:
        remaining = self._producer.flush(30)
        if remaining:
            raise RuntimeError(f"{remaining} messages to {self._topic} not acknowledged in 30 s")

    def close(self) -> None:
        self.snapshot()


class TopicSink(FixedPartitionedSink[Any, None]):
    """A Kafka topic written at-least-once (acks=all, flushed before every snapshot): dead
    letters, alerts. After a resume the same messages may be written again with the same ids
    (dead-letter source, alert_id), which consumers dedupe on."""

    def __init__(self, config: dict[str, str], topic: str, encode: Callable[[Any], Message]) -> None:
        self._config = config
        self._topic = topic
        self._encode = encode

    def list_parts(self) -> list[str]:
        return [self._topic]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TopicProducer:
        return _TopicProducer(self._config, self._topic, self._encode)
