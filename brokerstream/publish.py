"""Publishing raw envelopes to Kafka the way a bridge does: keyed by account, the platform
server and event type in headers, the platform's event time as the message timestamp."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from confluent_kafka import KafkaException, Producer

from schemas.envelope import Envelope, envelope_from_json_line


def producer(bootstrap: str, extra: dict[str, str] | None = None) -> Producer:
    return Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": "true",
        "linger.ms": "20",
        "batch.num.messages": "10000",
        "queue.buffering.max.messages": "500000",
        "compression.type": "lz4",
        **(extra or {}),
    })


def publish(
    bootstrap: str,
    envelopes: Iterable[Envelope],
    *,
    rate: float = 0.0,
    progress: Callable[[int], None] | None = None,
    extra: dict[str, str] | None = None,
    topic_prefix: str = "",
    stamp_now: bool = False,
) -> int:
    """Produce every envelope (acks=all); `rate` > 0 paces to that many messages per second.

    `stamp_now` gives each message the wall-clock time, as a live bridge does (the payload keeps
    the platform's own event time); Kafka 4 rejects messages stamped over an hour ahead.
    Returns the number acknowledged; raises as soon as a delivery fails.
    """
    prod = producer(bootstrap, extra)
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    started = time.monotonic()
    sent = 0
    for env in envelopes:
        while True:
            try:
                prod.produce(
                    topic_prefix + env.topic,
                    key=env.key.encode() if env.key else None,
                    value=env.value,
                    headers=list(env.headers.items()),
                    timestamp=int(time.time() * 1000) if stamp_now else env.timestamp_ms,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                prod.poll(0.05)  # local queue full: let deliveries drain
        sent += 1
        if sent % 1_000 == 0:
            prod.poll(0)
            if failures:
                raise KafkaException(f"Kafka refused a message: {failures[0]}")
            if progress and sent % 10_000 == 0:
                progress(sent)
        if rate > 0:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0.002:
                prod.poll(0)
                time.sleep(ahead)
    remaining = prod.flush(60)
    if remaining or failures:
        raise KafkaException(
            f"{remaining} messages unacknowledged, {len(failures)} failed"
            + (f" (first: {failures[0]})" if failures else "")
        )
    return sent


def read_envelopes(path: Path) -> Iterable[Envelope]:
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.strip():
                yield envelope_from_json_line(line, line_no)


def write_envelopes(path: Path, envelopes: Iterable[Envelope]) -> int:
    n = 0
    with path.open("wb") as fh:
        for env in envelopes:
            fh.write(env.to_json_line())
            fh.write(b"\n")
            n += 1
    return n
