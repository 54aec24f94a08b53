"""The Kafka input of the dataflow: one partition per topic-partition, resumable at the offset
stored in Bytewax's recovery snapshots.

Why not `bytewax.connectors.kafka.KafkaSource`: its bounded mode stops a partition at the first
PARTITION_EOF event, and under load librdkafka reports one before the real end (seen in our
crash test: a resumed run stopped at offset 4,000 of 37,500). Here a bounded run reads up to the
high watermark captured when the partition starts, whatever EOF events say. It also builds
envelopes straight from the consumer's messages, exports consumer lag, and commits the
snapshotted offsets to Kafka (best effort) so the usual lag tools see the engine's progress —
the recovery snapshot stays the source of truth.

A broker outage is waited out, never raised: librdkafka reconnects by itself and fetching
resumes at the partition's position, so nothing is skipped or read twice. While the broker is
away, errors are logged once per interval, `brokerstream_kafka_waiting{role="consumer"}` is 1 and
the engine is not ready (`pipelines.metrics.readiness`). Starting while the broker is away
(listing partitions, reading the end of a bounded run) waits too.

A message whose timestamp cannot be stored (beyond 2299, see `schemas.envelope`) is a dead
letter (stage decode), not a crash.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from connectors.registry import dead_letter
from pipelines.metrics import CONSUMER_LAG, KAFKA_WAITING, not_ready, ready
from pipelines.sinks import librdkafka_logger
from pipelines.sources import FileItem
from schemas.envelope import Envelope, timestamp_problem

log = logging.getLogger(__name__)
T = TypeVar("T")

GROUP_ID = "brokerstream-engine"
IDLE_POLL = timedelta(milliseconds=20)
LOG_EVERY_S = 10.0
# Errors that mean "the broker is away" (librdkafka keeps reconnecting by itself).
_OUTAGE_CODES = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                           KafkaError._TIMED_OUT, KafkaError._RESOLVE,
                           KafkaError.NOT_LEADER_FOR_PARTITION,
                           KafkaError.LEADER_NOT_AVAILABLE})

_last_logged: dict[str, float] = {}


def _log_once(key: str, message: str, *args: object) -> None:
    """One line per LOG_EVERY_S per key: an outage must not flood the log."""
    now = time.monotonic()
    if now - _last_logged.get(key, -1e18) >= LOG_EVERY_S:
        _last_logged[key] = now
        log.warning(message, *args)


# When librdkafka last reported the broker away (error_cb); 0.0 = no outage being waited out.
_outage = {"since": 0.0}


def _on_error(err: KafkaError) -> None:
    _log_once(f"consumer-error:{err.code()}", "Kafka consumer: %s (librdkafka retries; "
              "logged once per %.0f s)", err, LOG_EVERY_S)
    if err.code() in _OUTAGE_CODES:
        if not _outage["since"]:
            _outage["since"] = time.monotonic()
            KAFKA_WAITING.labels("consumer", "*").set(1)
        not_ready("kafka-consumer", f"waiting for the broker: {err}")


def _consumer(bootstrap: str, extra: dict[str, str]) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": GROUP_ID,
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        # back quickly once the broker is: 2 s at most between reconnection attempts
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 2000,
        "log.connection.close": False,
        "error_cb": _on_error,
        **extra,
    }, logger=librdkafka_logger("consumer", LOG_EVERY_S))


def _waiting_out(what: str, call: Callable[[], T]) -> T:
    """`call()` retried with backoff while the broker cannot answer (start-up calls)."""
    delay, started = 0.5, time.monotonic()
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and not err.retriable() and err.code() not in _OUTAGE_CODES:
                raise
            _log_once(f"start:{what}", "Kafka %s failed (%s); waiting for the broker (%.0f s so far)",
                      what, exc, time.monotonic() - started)
            not_ready(f"kafka-consumer:{what}", str(exc))
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


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
            _, self._end = _waiting_out(
                "watermarks", lambda: self._consumer.get_watermark_offsets(self._tp, timeout=10))
            ready("kafka-consumer:watermarks")
        self._lag = CONSUMER_LAG.labels(self._topic, str(partition))
        self._waiting = KAFKA_WAITING.labels("consumer", self._topic)
        self._outage_since: float | None = None
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
                if err.code() in _OUTAGE_CODES:
                    self._outage(err)
                elif err.code() != KafkaError._PARTITION_EOF:
                    _log_once(f"{self._topic}/{self._partition}:{err.code()}",
                              "Kafka error on %s/%s: %s", self._topic, self._partition, err)
                continue
            offset = msg.offset() or 0
            ts_type, ts_ms = msg.timestamp()
            key = msg.key()
            env = Envelope(
                topic=self._topic,
                value=msg.value() or b"",
                # No timestamp (type 0) stays 0: arrival time would break deterministic replays.
                timestamp_ms=ts_ms if ts_type else 0,
                key=key.decode("utf-8", "replace") if isinstance(key, bytes) else "",
                headers=_headers(msg.headers()),
                partition=self._partition,
                offset=offset,
            )
            problem = timestamp_problem(env.timestamp_ms)
            if problem is not None:  # kept whole as a dead letter, stamped at the epoch
                out.append(dead_letter(Envelope(
                    env.topic, env.value, 0, env.key, env.headers, env.partition, env.offset
                ), problem, "decode"))
            else:
                out.append(env)
            self._next = offset + 1
        if self._outage_since is not None and any(m.error() is None for m in msgs):
            log.warning("Kafka %s/%s: reading again after %.1f s", self._topic, self._partition,
                        time.monotonic() - self._outage_since)
            self._outage_since = None
            self._waiting.set(0)
            ready(f"kafka-consumer:{self._topic}/{self._partition}")
        if self._end is not None and self._next > self._end:
            # Messages past the end captured at start belong to the next run: drop them here
            # (the snapshot offset stays at the end, so they are read then).
            out = [e for e in out if not isinstance(e, Envelope) or e.offset < self._end]
            self._next = self._end
        return out

    def _outage(self, err: KafkaError) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            self._waiting.set(1)
            not_ready(f"kafka-consumer:{self._topic}/{self._partition}", str(err))
        _log_once(f"outage:{self._topic}", "Kafka %s/%s: %s; waiting for the broker (%.0f s)",
                  self._topic, self._partition, err, time.monotonic() - self._outage_since)

    def next_awake(self) -> datetime | None:
        return self._awake

    def _check_back(self) -> None:
        """During an outage, at each snapshot: does the broker answer again? (cheap, 1 s)"""
        try:
            self._consumer.list_topics(self._tp.topic, timeout=1)
        except KafkaException:
            return
        log.warning("Kafka answers again after %.1f s", time.monotonic() - _outage["since"])
        _outage["since"] = 0.0
        KAFKA_WAITING.labels("consumer", "*").set(0)
        ready("kafka-consumer")

    def snapshot(self) -> int:
        if _outage["since"]:
            self._check_back()
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
                meta = _waiting_out("metadata", functools.partial(consumer.list_topics, topic,
                                                                  timeout=10)).topics[topic]
                ready("kafka-consumer:metadata")
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

