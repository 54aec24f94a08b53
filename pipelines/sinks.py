"""Outputs of the dataflow: ClickHouse tables, and the dead-letter Kafka topic.

Both buffer rows and write when a buffer is full *and* at every epoch end (Bytewax calls
`snapshot()` there): nothing is held across a recovery snapshot, so a crash never loses a
row, and rows written again after a resume carry the same keys and versions, which the
ReplacingMergeTree tables collapse.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import KafkaError, KafkaException, Producer

from pipelines.metrics import (
    KAFKA_TRUNCATED,
    KAFKA_UNDELIVERED,
    KAFKA_WAITING,
    SINK_BATCH_ROWS,
    SINK_FLUSH_SECONDS,
    SINK_ROWS,
    not_ready,
    ready,
)
from pipelines.store import Store
from pipelines.tables import ALERTS, COLUMNS_BY_TABLE
from schemas.events import DeadLetter

log = logging.getLogger(__name__)

Row = tuple[Any, ...]


class _Writer:
    """The process's ClickHouse writer: one thread and one store connection that insert every
    table's batches in the order they were handed over, while the dataflow goes on reading.

    At most `pending` batches wait (then `submit` blocks: back-pressure, bounded memory).
    `wait` returns once everything handed over is written: the sinks call it at every epoch
    snapshot, so a recovery snapshot never counts rows that are not in the store yet."""

    def __init__(self, store: Store, pending: int = 4) -> None:
        self.store = store
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=pending)
        self._error: BaseException | None = None
        self._users = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="clickhouse-writer", daemon=True)
        self._thread.start()

    def attach(self) -> _Writer:
        with self._lock:
            self._users += 1
        return self

    def submit(self, job: Callable[[], None]) -> None:
        self._check()
        self._jobs.put(job)

    def wait(self) -> None:
        self._jobs.join()
        self._check()

    def release(self) -> bool:
        """A table writer is done; the last one stops the thread. True when it was the last."""
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self._jobs.put(None)
            self._thread.join()
            self.store.close()
            self._check()
        return last

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                job()
            except BaseException as exc:  # the store waits out outages: this is a bug, raised
                self._error = exc         # in the dataflow's thread at the next write or snapshot
            finally:
                self._jobs.task_done()

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the ClickHouse writer failed: {self._error!r}") from self._error


class _TableWriter(StatefulSinkPartition[list[Row] | pa.Table, None]):
    def __init__(self, writer: _Writer, table: str, batch_rows: int, flush_s: float) -> None:
        self._writer = writer.attach()
        self._store = writer.store
        self._table = table
        self._columns = COLUMNS_BY_TABLE[table]
        self._batch_rows = batch_rows
        self._flush_s = flush_s
        self._rows: list[Row] = []
        self._arrow: list[pa.Table] = []  # rows a columnar reader built (StoredRows)
        self._held = 0
        self._oldest = 0.0  # monotonic time the oldest buffered row arrived

    def write_batch(self, values: list[list[Row] | pa.Table]) -> None:
        if not self._held:
            self._oldest = time.monotonic()
        for rows in values:  # Bytewax routed each (table, rows) here by table
            if isinstance(rows, pa.Table):
                self._arrow.append(rows)
                self._held += rows.num_rows
            else:
                self._rows.extend(rows)
                self._held += len(rows)
        # full, or held long enough: rows become visible well before the epoch (the recovery
        # snapshot interval) ends; a resume may write them again, which the tables collapse
        if self._held >= self._batch_rows or time.monotonic() - self._oldest >= self._flush_s:
            self._flush()

    def _flush(self) -> None:
        if not self._held:
            return
        rows, self._rows = self._rows, []
        arrow, self._arrow = self._arrow, []
        n, self._held = self._held, 0
        store, table, columns = self._store, self._table, self._columns

        def write() -> None:
            started = time.perf_counter()
            if rows:
                store.insert_rows(table, columns, rows)
            if arrow:
                store.insert_table(table, pa.concat_tables(arrow))
            SINK_FLUSH_SECONDS.labels(table).observe(time.perf_counter() - started)
            SINK_BATCH_ROWS.labels(table).observe(n)
            SINK_ROWS.labels(table).inc(n)

        self._writer.submit(write)

    def snapshot(self) -> None:
        self._flush()
        self._writer.wait()

    def close(self) -> None:
        self._flush()
        self._writer.release()


@dataclass
class Cluster:
    """This process's place in a Bytewax cluster (`run -i N -a ...`): set by `run_flow`."""

    process: int = 0
    processes: int = 1


CLUSTER = Cluster()


class ClickHouseSink(FixedPartitionedSink[list[Row], None]):
    """Items are (`writer_key(table, ...)`, rows); one partition per table and writing process.

    Embedded ClickHouse belongs to one process: process 0 alone lists the partitions, so Bytewax
    routes every process's rows to it. A ClickHouse server takes inserts from every process:
    each lists its own partitions and writes its own rows, with no exchange between processes.
    """

    def __init__(self, store_factory: Callable[[], Store], batch_rows: int, flush_s: float = 0.5,
                 *, every_process_writes: bool = False) -> None:
        self._store_factory = store_factory
        self._writer: _Writer | None = None  # shared by this process's table partitions
        self._batch_rows = batch_rows
        self._flush_s = flush_s
        self.every_process_writes = every_process_writes

    def writer(self) -> int:
        """The process whose partitions take this process's rows."""
        return CLUSTER.process if self.every_process_writes else 0

    def _writers(self) -> int:
        return CLUSTER.processes if self.every_process_writes else 1

    def list_parts(self) -> list[str]:
        if not self.every_process_writes and CLUSTER.process != 0:
            return []
        return [f"{table}#{CLUSTER.process}" for table in COLUMNS_BY_TABLE]

    def part_fn(self, item_key: str) -> int:
        # Bytewax indexes the sorted global partition list with part_fn: route each
        # (table, writer) key to its own partition instead of hashing.
        index = getattr(self, "_index", None)
        if index is None:
            names = sorted(f"{t}#{p}" for t in COLUMNS_BY_TABLE for p in range(self._writers()))
            index = self._index = {name: i for i, name in enumerate(names)}
        return index[item_key]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TableWriter:
        table = for_part.rsplit("#", 1)[0]
        if self._writer is None or self._writer_closed():
            self._writer = _Writer(self._store_factory())
        return _TableWriter(self._writer, table, self._batch_rows, self._flush_s)

    def _writer_closed(self) -> bool:
        return self._writer is not None and not self._writer._thread.is_alive()


Message = tuple[bytes | None, bytes, list[tuple[str, str | bytes | None]]]  # key, value, headers

# librdkafka's default message.max.bytes (the broker's default is 1,048,588): a topic sink keeps
# each message below it unless the producer configuration says otherwise.
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
# Room for the record's framing (batch and record headers, lengths, timestamps).
MESSAGE_OVERHEAD = 1_024
# A header value (a raw message's own headers, a reason) is cut to this when a message must shrink.
HEADER_VALUE_LIMIT = 1_024


def dead_letter_message(dl: DeadLetter) -> Message:
    """Raw bytes intact, the reason and where it came from in the headers. (A message too large
    for the topic is cut by the sink, with a `truncated` header; ClickHouse keeps it whole.)"""
    headers: list[tuple[str, str | bytes | None]] = [
        ("reason", dl.reason.encode()), ("source", dl.dl_key.encode()), ("stage", dl.stage.encode())]
    headers += [(k, v.encode()) for k, v in dl.headers.items()
                if k not in ("reason", "source", "stage", "truncated")]
    return dl.key.encode() or None, dl.raw, headers


def alert_message(row: tuple[Any, ...]) -> Message:
    """An alert row as JSON, keyed by its subject."""
    alert = dict(zip(ALERTS.columns, row, strict=True))
    alert["facts"] = orjson.loads(alert["facts"])
    return (str(alert["subject"]).encode(), orjson.dumps(alert, default=str),
            [("alert_id", str(alert["alert_id"]).encode())])


def _bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else (value or b"")


def message_size(message: Message) -> int:
    key, body, headers = message
    return (len(key or b"") + len(body) + MESSAGE_OVERHEAD
            + sum(len(name) + len(_bytes(value)) + 8 for name, value in headers))


def fit_message(message: Message, max_bytes: int) -> tuple[Message, bool]:
    """The message if it fits in `max_bytes`, else a copy cut to fit, marked with the header
    `truncated: <original value size>` (True when cut). Key and headers are cut only if the
    value alone cannot make room."""
    if message_size(message) <= max_bytes:
        return message, False
    key, body, headers = message
    headers = [*headers, ("truncated", str(len(body)).encode())]
    if message_size((key, b"", headers)) > max_bytes:  # huge headers or key: cut them too
        key = key[:HEADER_VALUE_LIMIT] if key else key
        headers = [(name[:HEADER_VALUE_LIMIT], _bytes(value)[:HEADER_VALUE_LIMIT])
                   for name, value in headers[:64]]
        if headers[-1][0] != "truncated":
            headers.append(("truncated", str(len(body)).encode()))
    room = max(0, max_bytes - message_size((key, b"", headers)))
    return (key, body[:room], headers), True


class EveryInterval:
    """True at most once per `interval_s` for a given key: one log line per interval.
    `suppressed` counts the calls answered False per key since (for "... and N more")."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def __call__(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -1e18) >= self.interval_s:
            self._last[key] = now
            return True
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        return False


class _RateLimitedLog(logging.Filter):
    """librdkafka repeats every connection failure; let one line per interval through."""

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self._every = EveryInterval(interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        # librdkafka's format is "%s [%s] %s: %s" (fac, name, ...): the facility is the key
        key = str(record.args[0]) if isinstance(record.args, tuple) and record.args else record.msg
        return self._every(str(key))


def librdkafka_logger(name: str, interval_s: float) -> logging.Logger:
    """A logger for librdkafka's own messages (passed as `logger=`), one per interval each."""
    logger = logging.getLogger(f"brokerstream.librdkafka.{name}")
    if not any(isinstance(f, _RateLimitedLog) for f in logger.filters):
        logger.addFilter(_RateLimitedLog(interval_s))
    return logger


class _TopicProducer(StatefulSinkPartition[Any, None]):
    """Produces to one topic and waits out broker outages: librdkafka retries deliveries
    forever (message.timeout.ms 0) with the idempotent producer, so nothing is lost or
    doubled; a snapshot waits until every message is acknowledged (the recovery snapshot must
    not get ahead of what Kafka has), logging once per interval, with the waiting metric and
    the not-ready state set meanwhile. A message too large for the topic is cut to fit."""

    def __init__(self, config: dict[str, str], topic: str, encode: Callable[[Any], Message],
                 log_every_s: float = 10.0) -> None:
        self._config = {**config, "acks": "all", "enable.idempotence": "true",
                        "message.timeout.ms": "0", **_WAIT_OUT}
        self._max_bytes = int(self._config.get("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES))
        self._topic = topic
        self._encode = encode
        self._log_every_s = log_every_s
        self._every = EveryInterval(log_every_s)
        self._pending = 0  # handed to librdkafka, no delivery report yet
        self._retry: list[Message] = []  # refused deliveries, produced again after a pause
        self._waiting_since: float | None = None
        self._gauge = KAFKA_WAITING.labels("producer", topic)
        self._undelivered = KAFKA_UNDELIVERED.labels(topic)
        self._producer = self._new_producer()

    def _new_producer(self) -> Producer:
        return Producer({**self._config, "error_cb": self._on_error},
                        logger=librdkafka_logger(f"producer.{self._topic}", self._log_every_s))

    def _on_error(self, err: KafkaError) -> None:
        # _TRANSPORT / _ALL_BROKERS_DOWN while the broker is away: librdkafka reconnects itself
        if self._every(f"error:{err.code()}"):
            log.warning("Kafka producer for %s: %s (retrying; logged once per %.0f s)",
                        self._topic, err, self._log_every_s)
        if err.fatal():
            log.error("Kafka producer for %s hit a fatal error: %s", self._topic, err)

    def _delivered(self, message: Message) -> Callable[[KafkaError | None, Any], None]:
        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            self._pending -= 1
            if err is None:
                return
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                # the broker's (or topic's) limit is below ours: halve ours and cut again
                self._max_bytes = max(4_096, self._max_bytes // 2)
            if self._every(f"delivery:{err.code()}"):
                log.warning("Kafka refused a message to %s: %s; producing it again", self._topic, err)
            self._retry.append(message)  # refused: not written, so producing again cannot double

        return on_delivery

    def _produce(self, message: Message) -> None:
        while True:
            fitted, cut = fit_message(message, self._max_bytes)
            key, body, headers = fitted
            try:
                self._producer.produce(self._topic, key=key, value=body, headers=headers,
                                       on_delivery=self._delivered(message))
            except BufferError:  # local queue full (the broker is away): wait for room
                self._wait("queue full")
                self._producer.poll(0.5)
                continue
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    self._max_bytes = max(4_096, self._max_bytes // 2)
                    continue
                raise
            self._pending += 1
            if cut:
                KAFKA_TRUNCATED.labels(self._topic).inc()
            return

    def _wait(self, why: str) -> None:
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
            self._gauge.set(1)
            not_ready(f"kafka-producer:{self._topic}", f"waiting for Kafka: {why}")
        if self._every("waiting"):
            log.warning("%d message(s) to %s waiting for Kafka (%s) for %.0f s; retrying",
                        self._pending + len(self._retry), self._topic, why, now - self._waiting_since)

    def _waited(self) -> None:
        if self._waiting_since is not None:
            log.warning("Kafka acknowledged everything for %s again after %.1f s", self._topic,
                        time.monotonic() - self._waiting_since)
            self._waiting_since = None
            self._gauge.set(0)
            ready(f"kafka-producer:{self._topic}")

    def write_batch(self, values: list[Any]) -> None:
        for value in values:
            self._produce(self._encode(value))
        self._producer.poll(0)
        self._undelivered.set(self._pending + len(self._retry))

    def snapshot(self) -> None:
        """Returns only when Kafka has acknowledged every message: an outage is waited out."""
        pause = 0.5
        while True:
            remaining = self._producer.flush(1.0)
            if not self._retry and remaining == 0:  # every delivery report is in
                self._pending = 0
                break
            self._wait(f"{remaining + len(self._retry)} unacknowledged")
            if self._retry:  # refused deliveries: again after a pause, growing to 10 s
                time.sleep(pause)
                pause = min(pause * 2, 10.0)
                retry, self._retry = self._retry, []
                for message in retry:
                    self._produce(message)
        self._undelivered.set(0)
        self._waited()

    def close(self) -> None:
        self.snapshot()


# librdkafka settings for riding out an outage: reconnect quickly once the broker is back.
_WAIT_OUT = {"reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "2000",
             "log.connection.close": "false"}


class TopicSink(FixedPartitionedSink[Any, None]):
    """A Kafka topic written at-least-once (acks=all, flushed before every snapshot): dead
    letters, alerts. After a resume the same messages may be written again with the same ids
    (dead-letter source, alert_id), which consumers dedupe on. A broker outage is waited out
    (see `_TopicProducer`), never raised."""

    def __init__(self, config: dict[str, str], topic: str, encode: Callable[[Any], Message]) -> None:
        self._config = config
        self._topic = topic
        self._encode = encode

    def list_parts(self) -> list[str]:
        return [self._topic]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TopicProducer:
        return _TopicProducer(self._config, self._topic, self._encode)
