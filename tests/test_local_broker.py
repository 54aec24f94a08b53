"""Integration tests for the real local Kafka broker (devtools.kafka.local_broker).

They start actual ``java kafka.Kafka`` processes in a temporary home; the jar cache is the
shared default one (``$BROKERSTREAM_CACHE_DIR`` or ``~/.cache/brokerstream``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from devtools.kafka.local_broker import LocalKafka
from pipelines.topics import ensure_topics

pytestmark = pytest.mark.kafka


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    broker = LocalKafka(tmp_path / "home")
    try:
        yield broker
    finally:
        broker.stop()


def test_start_topics_produce_consume_stop(kafka: LocalKafka) -> None:
    state = kafka.start()
    assert state.bootstrap == f"127.0.0.1:{state.port}"
    assert kafka.status() == state
    assert kafka.state_file.is_file()

    assert ensure_topics(state.bootstrap, {"trades": 3}) == ["trades"]
    assert ensure_topics(state.bootstrap, {"trades": 3}) == []  # already there
    meta = AdminClient({"bootstrap.servers": state.bootstrap}).list_topics(timeout=10)
    assert len(meta.topics["trades"].partitions) == 3

    producer = Producer({"bootstrap.servers": state.bootstrap, "acks": "all"})
    sent = {f"k{i}": f"trade-{i}" for i in range(10)}
    for key, value in sent.items():
        producer.produce("trades", key=key, value=value)
    assert producer.flush(10) == 0

    consumer = Consumer({
        "bootstrap.servers": state.bootstrap,
        "group.id": f"test-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe(["trades"])
    received: dict[str, str] = {}
    try:
        for _ in range(100):  # at most ~20 s
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                received[msg.key().decode()] = msg.value().decode()  # type: ignore[union-attr]
            if len(received) == len(sent):
                break
    finally:
        consumer.close()
    assert received == sent

    assert kafka.stop() is True
    assert kafka.status() is None
    assert not kafka.state_file.exists()
    assert kafka.stop() is False


def test_start_twice_returns_running_broker(kafka: LocalKafka) -> None:
    first = kafka.start()
    assert kafka.start() == first
    assert LocalKafka(kafka.home).start() == first  # a second handle on the same home
