"""Starting the engine: resolve Kafka and ClickHouse from configuration, migrate, run the flow."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from commissions import load_commissions
from pipelines.config import Settings, home_dir
from pipelines.dataflow import (
    FileInput,
    KafkaInput,
    build_flow,
    consumed_topics,
    install_stop_handlers,
    recovery_config,
    run_flow,
)
from pipelines.partner_tables import write_partner_tables
from pipelines.store import Store, open_store
from pipelines.topics import ensure_kafka_topics

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """A problem the user can fix (Kafka not running, ...), said plainly."""


def kafka_bootstrap(settings: Settings) -> str:
    """The bootstrap servers: configured ones, or the local broker's address."""
    if settings.kafka.bootstrap != "local":
        return settings.kafka.bootstrap
    from devtools.kafka.local_broker import LocalKafka

    state = LocalKafka(home_dir()).status()
    if state is None:
        raise EngineError(
            "the local Kafka broker is not running: start it with `brokerstream kafka up`, "
            "or set kafka.bootstrap (or BROKERSTREAM_KAFKA) to an existing cluster"
        )
    return state.bootstrap


def prepare_store(settings: Settings) -> Store:
    store = open_store(settings.clickhouse_dsn(), settings.clickhouse.database)
    if settings.commissions:  # the partner view's tree and tiers (docs/client-partner-views.md)
        write_partner_tables(store, [load_commissions(path) for path in settings.commissions])
    return store


def _store_factory(settings: Settings) -> Store:
    return Store(settings.clickhouse_dsn(), settings.clickhouse.database)


def _handing_over(prepared: Store | None, settings: Settings) -> Callable[[], Store]:
    """A store factory whose first call returns the store `prepare_store` opened (the sink's
    writer takes it: opening embedded ClickHouse again costs ~0.2 s of every start), then new
    stores (a writer re-opened after a failure)."""
    spare = [prepared] if prepared is not None else []

    def factory() -> Store:
        return spare.pop() if spare else _store_factory(settings)

    return factory


def run_kafka(
    settings: Settings,
    *,
    exit_at_end: bool = False,
    recovery_dir: Path | None = None,
    recovery: bool = True,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    metrics_port: int | None = None,
    dashboard_port: int | None = None,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Consume the raw topics until stopped (or until their end with exit_at_end).
    `dashboard_port`: serve the dashboard page from this process (process 0 of a cluster).
    `clock`: the time detections and case filing are stamped with (default the wall clock;
    the demo gives its simulated clock)."""
    bootstrap = kafka_bootstrap(settings)
    ensure_kafka_topics(settings, bootstrap)
    # embedded ClickHouse belongs to one process: in a cluster, process 0 opens and writes it
    # (the others route their rows to it); a server is migrated by whichever process starts
    prepared = None
    if not process_id or not settings.clickhouse_dsn().startswith("chdb:"):
        prepared = prepare_store(settings)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        # loopback unless told otherwise (a container's Prometheus scrapes from outside)
        start_http_server(metrics_port, addr=os.environ.get("BROKERSTREAM_METRICS_ADDR", "127.0.0.1"))
    if dashboard_port is not None and not process_id:
        from services.dashboard.server import DashboardError, start_dashboard_thread

        try:
            start_dashboard_thread(settings, dashboard_port)
        except DashboardError as exc:
            raise EngineError(str(exc)) from None
    if settings.cases.file_every_s and not process_id:
        # -- alert cases (issue 16): new alerts filed into cases while the engine runs --
        from pipelines.cases_store import start_filing

        start_filing(lambda: _store_factory(settings), settings.cases.categories, settings.cases.file_every_s,
                     clock=clock)
    prefix = settings.kafka.topic_prefix
    flow = build_flow(
        settings,
        KafkaInput(bootstrap, [prefix + t for t in consumed_topics(settings)], tail=not exit_at_end,
                   prefix=prefix),
        _handing_over(prepared, settings),
        kafka_config=settings.kafka.extra,
        clock=clock,
    )
    install_stop_handlers()
    rc = None
    if recovery:
        rc = recovery_config(recovery_dir or settings.recovery_dir(), settings.pipeline.recovery_partitions)
    run_flow(flow, settings.pipeline.epoch_s, rc, workers, process_id, addresses)


def run_replay(
    settings: Settings, paths: list[Path], *, recovery_dir: Path | None = None,
    progress_every: int = 0,
) -> None:
    """Run the same dataflow over replay files (no Kafka needed); `progress_every`: print the
    rate to stderr every this many events."""
    flow = build_flow(settings, FileInput(paths, progress_every),
                      _handing_over(prepare_store(settings), settings))
    rc = recovery_config(recovery_dir, settings.pipeline.recovery_partitions) if recovery_dir else None
    run_flow(flow, settings.pipeline.epoch_s, rc)
