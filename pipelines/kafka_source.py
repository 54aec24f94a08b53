"""The Kafka input of the dataflow: one partition per topic-partition, resumable at the offset
stored in Bytewax's recovery snapshots.

Why not `bytewax.connectors.kafka.KafkaSource`: its bounded mode stops a partition at the first
PARTITION_EOF event, and under load librdkafka reports one before the real end (seen in our
crash test: a resumed run stopped at offset 4,000 of 37,500). Here a bounded run reads up to the
high watermark captured when the partition starts, whatever EOF events say. It also builds
envelopes straight from the consumer's messages, exports consumer lag, and commits the
snapshotted offsets to Kafka (best effort) so the usual lag tools see the engine's progress —
the recovery snapshot stays the source of truth.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from brokerstream.metrics import CONSUMER_LAG
from pipelines.sources import FileItem
from schemas.envelope import Envelope

log = logging.getLogger(__name__)

GROUP_ID = "brokerstream-engine"
IDLE_POLL = timedelta(milliseconds=20)


def _consumer(bootstrap: str, extra: dict[str, str]) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": GROUP_ID,
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        **extra,
    })


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def _headers(raw: dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None
             ) -> dict[str, str]:
    if not raw:
        return {}
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {name: _text(value) for name, value in pairs}


class _KafkaPartition(StatefulSourcePartition[FileItem, int]):
    def __init__(self, bootstrap: str, topic: str, partition: int, prefix: str, batch: int,
                 bounded: bool, resume: int | None, extra: dict[str, str]) -> None:
        self._consumer = _consumer(bootstrap, extra)
        self._tp = TopicPartition(topic, partition)
        self._topic = topic[len(prefix):] if prefix and topic.startswith(prefix) else topic
        self._partition = partition
        self._batch = batch
        self._next = OFFSET_BEGINNING if resume is None else resume
        self._consumer.assign([TopicPartition(topic, partition, self._next)])
        self._end: int | None = None
        if bounded:
            _, self._end = self._consumer.get_watermark_offsets(self._tp, timeout=30)
        self._lag = CONSUMER_LAG.labels(self._topic, str(partition))
        self._awake: datetime | None = None

    def _done(self) -> bool:
        if self._end is None:
            return False
        return self._end <= 0 or (self._next >= 0 and self._next >= self._end)

    def next_batch(self) -> list[FileItem]:
        if self._done():
            raise StopIteration()
        out: list[FileItem] = []
        # Never block: Bytewax polls every partition of this worker in turn, so one idle
        # partition waiting would stall the busy ones. An idle partition asks to be woken later.
        msgs = self._consumer.consume(self._batch, 0)
        self._awake = None if msgs else datetime.now(UTC) + IDLE_POLL
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("Kafka error on %s/%s: %s", self._topic, self._partition, err)
                continue
            offset = msg.offset() or 0
            ts_type, ts_ms = msg.timestamp()
            key = msg.key()
            out.append(Envelope(
                topic=self._topic,
                value=msg.value() or b"",
                # No timestamp (type 0) stays 0: arrival time would break deterministic replays.
                timestamp_ms=ts_ms if ts_type else 0,
                key=key.decode("utf-8", "replace") if isinstance(key, bytes) else "",
                headers=_headers(msg.headers()),
                partition=self._partition,
                offset=offset,
            ))
            self._next = offset + 1
        if self._end is not None and self._next > self._end:
            # Messages past the end captured at start belong to the next run: drop them here
            # (the snapshot offset stays at the end, so they are read then).
            out = [e for e in out if not isinstance(e, Envelope) or e.offset < self._end]
            self._next = self._end
        return out

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        if self._next >= 0:
            try:
                self._consumer.commit(
                    offsets=[TopicPartition(self._tp.topic, self._partition, self._next)],
                    asynchronous=True,
                )
                _, high = self._consumer.get_watermark_offsets(self._tp, cached=True)
                if high >= 0:
                    self._lag.set(max(0, high - self._next))
            except Exception as exc:  # lag export is best effort; the snapshot is what counts
                log.debug("offset commit or lag read failed: %s", exc)
        return self._next

    def close(self) -> None:
        self._consumer.close()


class KafkaRawSource(FixedPartitionedSource[FileItem, int]):
    """All partitions of the given raw topics."""

    def __init__(self, bootstrap: str, topics: list[str], *, prefix: str = "", batch: int = 5000,
                 bounded: bool = False, extra: dict[str, str] | None = None) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._prefix = prefix
        self._batch = batch
        self._bounded = bounded
        self._extra = extra or {}

    def list_parts(self) -> list[str]:
        consumer = _consumer(self._bootstrap, self._extra)
        try:
            parts = []
            for topic in self._topics:
                meta = consumer.list_topics(topic, timeout=30).topics[topic]
                if meta.error is not None:
                    raise RuntimeError(f"Kafka topic {topic!r}: {meta.error}")
                parts += [f"{p}-{topic}" for p in sorted(meta.partitions)]
            return parts
        finally:
            consumer.close()

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _KafkaPartition:
        partition, topic = for_part.split("-", 1)
        return _KafkaPartition(self._bootstrap, topic, int(partition), self._prefix, self._batch,
                               self._bounded, resume_state, self._extra)

