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
    def __init__(self, store: Store, table: str, batch_rows: int) -> None:
        self._store = store
        self._table = table
        self._columns = COLUMNS_BY_TABLE[table]
        self._batch_rows = batch_rows
        self._rows: list[Row] = []

    def write_batch(self, values: list[Row]) -> None:
        self._rows.extend(values)
        if len(self._rows) >= self._batch_rows:
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

    def __init__(self, store_factory: Callable[[], Store], batch_rows: int) -> None:
        self._store_factory = store_factory
        self._batch_rows = batch_rows
        # Bytewax indexes the sorted global partition list with part_fn: route each
        # table name to its own partition instead of hashing.
        self._index = {name: i for i, name in enumerate(sorted(COLUMNS_BY_TABLE))}

    def list_parts(self) -> list[str]:
        return list(COLUMNS_BY_TABLE)

    def part_fn(self, item_key: str) -> int:
        return self._index[item_key]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TableWriter:
        return _TableWriter(self._store_factory(), for_part, self._batch_rows)


class _DeadLetterProducer(StatefulSinkPartition[DeadLetter, None]):
    def __init__(self, config: dict[str, str], topic: str) -> None:
        self._producer = Producer({**config, "acks": "all", "enable.idempotence": "true"})
        self._topic = topic

    def write_batch(self, values: list[DeadLetter]) -> None:
        for dl in values:
            headers: list[tuple[str, str | bytes | None]] = [
                ("reason", dl.reason.encode()), ("source", dl.dl_key.encode()),
                ("stage", dl.stage.encode())]
            headers += [(k, v.encode()) for k, v in dl.headers.items() if k not in ("reason", "source")]
            self._producer.produce(self._topic, key=dl.key.encode() or None, value=dl.raw,
                                   headers=headers)
            self._producer.poll(0)

    def snapshot(self) -> None:
        remaining = self._producer.flush(30)
        if remaining:
            raise RuntimeError(f"{remaining} dead letters not acknowledged by Kafka in 30 s")

    def close(self) -> None:
        self.snapshot()


class DeadLetterTopicSink(FixedPartitionedSink[DeadLetter, None]):
    """Dead letters also go to a Kafka topic, raw bytes intact, reason in the headers."""

    def __init__(self, config: dict[str, str], topic: str) -> None:
        self._config = config
        self._topic = topic

    def list_parts(self) -> list[str]:
        return ["dead_letters"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _DeadLetterProducer:
        return _DeadLetterProducer(self._config, self._topic)


class _AlertProducer(StatefulSinkPartition[tuple[Any, ...], None]):
    def __init__(self, config: dict[str, str], topic: str) -> None:
        self._producer = Producer({**config, "acks": "all", "enable.idempotence": "true"})
        self._topic = topic

    def write_batch(self, values: list[tuple[Any, ...]]) -> None:
        for row in values:
            alert = dict(zip(ALERT_COLUMNS, row, strict=True))
            alert["facts"] = orjson.loads(alert["facts"])
            body = orjson.dumps(alert, default=str)
            self._producer.produce(self._topic, key=str(alert["subject"]).encode(), value=body,
                                   headers=[("alert_id", str(alert["alert_id"]).encode())])
            self._producer.poll(0)

    def snapshot(self) -> None:
        remaining = self._producer.flush(30)
        if remaining:
            raise RuntimeError(f"{remaining} alerts not acknowledged by Kafka in 30 s")

    def close(self) -> None:
        self.snapshot()


class AlertTopicSink(FixedPartitionedSink[tuple[Any, ...], None]):
    """Alerts for compliance and the risk desk: JSON on the `alerts` topic, keyed by subject.
    Written again after a resume with the same alert_id, which consumers dedupe on."""

    def __init__(self, config: dict[str, str], topic: str) -> None:
        self._config = config
        self._topic = topic

    def list_parts(self) -> list[str]:
        return ["alerts"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _AlertProducer:
        return _AlertProducer(self._config, self._topic)
