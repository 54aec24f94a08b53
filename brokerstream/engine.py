"""Starting the engine: resolve Kafka and ClickHouse from configuration, migrate, run the flow."""

from __future__ import annotations

import logging
from pathlib import Path

from brokerstream.config import RAW_TOPICS, Settings, home_dir
from brokerstream.store import Store, open_store
from pipelines.dataflow import (
    FileInput,
    KafkaInput,
    build_flow,
    consumed_topics,
    recovery_config,
    run_flow,
)

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """A problem the user can fix (Kafka not running, ...), said plainly."""


def kafka_bootstrap(settings: Settings) -> str:
    """The bootstrap servers: configured ones, or the local broker's address."""
    if settings.kafka.bootstrap != "local":
        return settings.kafka.bootstrap
    from brokerstream.kafka.local_broker import LocalKafka

    state = LocalKafka(home_dir()).status()
    if state is None:
        raise EngineError(
            "the local Kafka broker is not running: start it with `brokerstream kafka up`, "
            "or set kafka.bootstrap (or BROKERSTREAM_KAFKA) to an existing cluster"
        )
    return state.bootstrap


def all_topics(settings: Settings) -> dict[str, int]:
    """Every topic the engine and the bridges use, with its partition count."""
    topics = dict.fromkeys(RAW_TOPICS, settings.kafka.partitions)
    topics[settings.kafka.dead_letter_topic] = 1
    topics["alerts"] = settings.kafka.partitions
    return topics


def ensure_kafka_topics(settings: Settings, bootstrap: str) -> list[str]:
    from brokerstream.kafka.local_broker import ensure_topics

    return ensure_topics(
        bootstrap, all_topics(settings), replication_factor=settings.kafka.replication_factor
    )


def prepare_store(settings: Settings) -> Store:
    store = open_store(settings.clickhouse_dsn(), settings.clickhouse.database)
    return store


def _store_factory(settings: Settings) -> Store:
    return Store(settings.clickhouse_dsn(), settings.clickhouse.database)


def run_kafka(
    settings: Settings,
    *,
    exit_at_end: bool = False,
    recovery_dir: Path | None = None,
    recovery: bool = True,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> None:
    """Consume the raw topics until stopped (or until their end with exit_at_end)."""
    bootstrap = kafka_bootstrap(settings)
    ensure_kafka_topics(settings, bootstrap)
    prepare_store(settings).close()
    flow = build_flow(
        settings,
        KafkaInput(bootstrap, consumed_topics(), tail=not exit_at_end),
        lambda: _store_factory(settings),
        kafka_config=settings.kafka.extra,
    )
    rc = None
    if recovery:
        rc = recovery_config(recovery_dir or settings.recovery_dir(), settings.pipeline.recovery_partitions)
    run_flow(flow, settings.pipeline.epoch_s, rc, workers, process_id, addresses)


def run_replay(
    settings: Settings, paths: list[Path], *, recovery_dir: Path | None = None
) -> None:
    """Run the same dataflow over replay files (no Kafka needed)."""
    prepare_store(settings).close()
    flow = build_flow(settings, FileInput(paths), lambda: _store_factory(settings))
    rc = recovery_config(recovery_dir, settings.pipeline.recovery_partitions) if recovery_dir else None
    run_flow(flow, settings.pipeline.epoch_s, rc)
