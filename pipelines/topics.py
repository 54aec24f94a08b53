"""The engine's Kafka topics: which exist (`all_topics`) and creating the missing ones
(`ensure_topics`), for a real cluster and the local dev broker alike."""

from __future__ import annotations

import time
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.config import RAW_TOPICS, Settings


def all_topics(settings: Settings) -> dict[str, int]:
    """Every topic the engine and the bridges use (prefixed), with its partition count."""
    prefix = settings.kafka.topic_prefix
    topics = {prefix + name: settings.kafka.partitions for name in RAW_TOPICS}
    topics[prefix + settings.kafka.dead_letter_topic] = 1
    topics[prefix + "alerts"] = settings.kafka.partitions
    topics[prefix + "withdrawal_decisions"] = settings.kafka.partitions  # pipelines/withdrawal_step.py
    return topics


def ensure_kafka_topics(settings: Settings, bootstrap: str) -> list[str]:
    """Create the engine's missing topics on `bootstrap`; return the names created."""
    return ensure_topics(
        bootstrap, all_topics(settings), replication_factor=settings.kafka.replication_factor
    )


def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    config: Mapping[str, str] | None = None,
    timeout_s: float = 30,
    replication_factor: int = 1,
) -> list[str]:
    """Create the missing ``{name: partitions}`` topics; return the names actually created.

    Existing topics are left as they are (their partition count is not changed).
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=timeout_s).topics
    new = [NewTopic(name, num_partitions=n, replication_factor=replication_factor,
                    config=dict(config or {}))
           for name, n in topics.items() if name not in existing]
    created = []
    if new:
        futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    deadline = time.monotonic() + timeout_s
    while True:  # wait until every partition of every topic has a leader
        meta = admin.list_topics(timeout=max(0.5, deadline - time.monotonic())).topics
        ready = [n for n in topics if n in meta and meta[n].error is None and meta[n].partitions
                 and all(p.leader >= 0 for p in meta[n].partitions.values())]
        if len(ready) == len(topics):
            return created
        if time.monotonic() > deadline:
            missing = sorted(set(topics) - set(ready))
            raise RuntimeError(f"topics not ready after {timeout_s}s: {missing}")
        time.sleep(0.1)
