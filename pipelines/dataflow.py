"""The brokerstream dataflow: raw envelopes -> canonical records -> ClickHouse (+ dead letters).

The same flow runs from Kafka (production) or from replay files (history, tests): only the
input step differs. Domain logic lives in `connectors/`; this module only wires it.
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import bytewax.operators as op
import pyarrow as pa
from bytewax._bytewax import RecoveryConfig, cli_main, init_db_dir
from bytewax.dataflow import Dataflow, Stream

from commissions import CommissionConfigError, FixedRates, load_commissions
from commissions.engine import CommissionStep, Issue
from commissions.rows import CommissionRow
from connectors.mt5_columns import DealColumns, Mt5DealColumns
from connectors.registry import Normaliser, Record, readers_for
from connectors.routing import Router
from pipelines.account_stage import AccountOutputs, AccountStage, account_router
from pipelines.config import Settings
from pipelines.exposure_step import ExposureStep
from pipelines.kafka_source import KafkaRawSource
from pipelines.keyed_state import SNAPSHOTS, stateful_batch_map, stateful_flat_map
from pipelines.metrics import (
    COMMISSION_ISSUES,
    DEAD_LETTERS,
    EVENT_LAG_SECONDS,
    EVENTS_IN,
    RECORDS_OUT,
)
from pipelines.recon_step import recon_rows
from pipelines.rules_step import (
    AccountRulesStep,
    Clock,
    LinkedRulesStep,
    RuleResources,
    alert_row,
    linked_time,
    load_rule_resources,
    wall_clock,
)
from pipelines.sinks import CLUSTER, ClickHouseSink, TopicSink, alert_message, dead_letter_message
from pipelines.sources import FileItem, JsonlSource, StoppableSource
from pipelines.store import Store
from pipelines.tables import (
    ACCOUNTS,
    ALERTS,
    BALANCE_OPERATIONS,
    DEALS,
    WITHDRAWAL_DECISIONS,
    Table,
    TableRows,
    issue_row,
    table_batches,
    to_row,
)
from pipelines.withdrawal_step import TOPIC as WITHDRAWAL_TOPIC
from pipelines.withdrawal_step import (
    WithdrawalStep,
    decision_message,
    decision_row,
    policy_screen_score,
)
from schemas.envelope import Envelope
from schemas.events import AccountUpdate, BalanceOperation, DeadLetter, Quote
from schemas.symbols import SymbolBook


@dataclass(frozen=True)
class KafkaInput:
    bootstrap: str
    topics: list[str]
    tail: bool = True  # False: stop at the high watermarks seen at start (bounded runs, tests)
    prefix: str = ""  # topic prefix, removed before the connectors see the topic


@dataclass(frozen=True)
class FileInput:
    paths: list[Path]
    progress_every: int = 0  # print events/s to stderr every this many events (0: quiet)


class Progress:
    """Events read so far, printed every `every` events with the rate overall and since the last
    line: a long replay shows it is moving, and whether its rate holds as state grows."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.events = 0
        self.started = self._mark = time.perf_counter()
        self._next = every

    def add(self, n: int) -> None:
        self.events += n
        if self.events < self._next:
            return
        now = time.perf_counter()
        last = self.every / (now - self._mark) if now > self._mark else 0.0
        overall = self.events / (now - self.started)
        print(f"  {self.events:>11,} events  {now - self.started:7.1f} s  {overall:>8,.0f}/s"
              f"  (last {self.every:,}: {last:,.0f}/s)", file=sys.stderr, flush=True)
        self._mark, self._next = now, self._next + self.every


def consumed_topics(settings: Settings) -> list[str]:
    """Raw topics the engine reads: those with a connector."""
    return sorted(readers_for(settings))


ColumnarReader = Callable[[Sequence[Envelope]], DealColumns]


@dataclass(frozen=True)
class StoredRows:
    """Rows a columnar reader built for a table (an Arrow table in its column order): they
    travel with the batch's records and go to the sink as they are."""

    table: Table
    rows: pa.Table


class BatchNormaliser:
    """The `normalise` step: one consumed batch of raw envelopes -> its canonical records, in
    read order (per-event Python is the cost to watch: metrics are counted per batch).

    With `columnar` readers (when nothing downstream needs their records as objects: see
    `build_flow`), a topic's messages are read a batch at a time into `StoredRows`; the ones a
    columnar reader leaves go through the normaliser one by one."""

    def __init__(self, normaliser: Normaliser, live: bool, progress: Progress | None = None,
                 columnar: dict[str, tuple[Table, ColumnarReader]] | None = None) -> None:
        self._normalise = normaliser
        self._live = live
        self._progress = progress
        self._columnar = columnar or {}

    def __call__(self, items: list[FileItem]) -> list[Record | StoredRows]:
        out: list[Record | StoredRows] = []
        topics: Counter[str] = Counter()
        normalise = self._normalise
        columnar = self._columnar
        held: dict[str, list[Envelope]] = {}
        for item in items:
            if isinstance(item, Envelope):
                topics[item.topic] += 1
                if item.topic in columnar:
                    held.setdefault(item.topic, []).append(item)
                else:
                    out.extend(normalise(item))
            else:
                out.append(item)
        stored = 0
        for topic, envs in held.items():
            table, reader = columnar[topic]
            read = reader(envs)
            if read.table.num_rows:
                out.append(StoredRows(table, read.table))
                stored += read.table.num_rows
            for i in read.left:
                out.extend(normalise(envs[i]))
        kinds: Counter[type] = Counter(map(type, out))
        for topic, n in topics.items():
            EVENTS_IN.labels(topic).inc(n)
        for kind, n in kinds.items():
            if kind is not StoredRows:
                RECORDS_OUT.labels(kind.__name__).inc(n)
        if stored:
            RECORDS_OUT.labels("Deal").inc(stored)
        if kinds[DeadLetter]:
            for record in out:
                if isinstance(record, DeadLetter):
                    DEAD_LETTERS.labels(record.topic, record.stage).inc()
        if self._progress is not None:
            self._progress.add(len(items))
        if self._live and items and isinstance(items[-1], Envelope) and items[-1].timestamp_ms:
            EVENT_LAG_SECONDS.observe(max(0.0, time.time() - items[-1].timestamp_ms / 1000))
        return out


def _record_rows(records: list[Record | StoredRows]) -> list[TableRows]:
    # account updates and payments are stored as the account stage merged them
    batches: list[TableRows] = list(table_batches(
        to_row(r) for r in records if not isinstance(r, AccountUpdate | StoredRows) and not (
            isinstance(r, BalanceOperation) and r.platform == "psp")))
    batches.extend(TableRows(r.table, r.rows) for r in records if isinstance(r, StoredRows))
    return batches


def _keyed_lists(key: Callable[[Any], str | None], items: Iterable[Any]) -> list[tuple[str, list[Any]]]:
    """Items -> one (key, items of that key in order) per key; items whose key is None are dropped."""
    by_key: dict[str, list[Any]] = {}
    for item in items:
        k = key(item)
        if k is not None:
            by_key.setdefault(k, []).append(item)
    return list(by_key.items())


# Set by SIGINT/SIGTERM (see `install_stop_handlers`): the inputs end and the flow completes.
STOP = threading.Event()


def install_stop_handlers() -> None:
    """Turn Ctrl-C and SIGTERM into a clean stop instead of an exception inside Bytewax."""

    def handler(signum: int, _frame: object) -> None:
        if STOP.is_set():  # a second signal: stop now
            raise KeyboardInterrupt
        STOP.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _commission_rows(kv: tuple[str, list[CommissionRow | Issue]]) -> list[TableRows]:
    tenant, items = kv
    rows = []
    for item in items:
        if isinstance(item, CommissionRow):
            rows.append(to_row(item))
        else:
            COMMISSION_ISSUES.inc()
            rows.append(issue_row(tenant, item))
    return table_batches(rows)


def _quotes_by_tenant(records: list[Record | StoredRows]) -> list[tuple[str, list[Any]]]:
    return _keyed_lists(lambda r: r.tenant if isinstance(r, Quote) else None, records)


def _account_rows(kv: tuple[str, AccountOutputs]) -> list[TableRows]:
    accounts, payments = kv[1].accounts, kv[1].payments
    out = [TableRows(ACCOUNTS, [to_row(a)[1] for a in accounts])] if accounts else []
    if payments:  # every notification of a payment merged field by field (account stage)
        out.append(TableRows(BALANCE_OPERATIONS, [to_row(p)[1] for p in payments]))
    return out


def _decision_rows(kv: tuple[str, AccountOutputs]) -> list[TableRows]:
    decisions = kv[1].decisions
    return [TableRows(WITHDRAWAL_DECISIONS, [decision_row(d) for d in decisions])] if decisions else []


def _rule_alerts(
    outputs: Stream[tuple[str, AccountOutputs]], resources: RuleResources, clock: Clock | None
) -> Stream[TableRows]:
    """AML/fraud alerts: the account stage ran the account-keyed rules; what it re-keyed by IP,
    device, payment instrument and tenant goes to the rules about those (pipelines/rules_step.py)."""
    linked = op.flat_map("rules_linked_in", outputs, lambda kv: _keyed_lists(itemgetter(0), kv[1].linked))
    linked_inputs = op.map("rules_linked_values", linked, lambda kv: (kv[0], [v for _, v in kv[1]]))
    # several account shards feed one linked partition: event-time order within each batch
    stage2 = stateful_flat_map("rules_linked", linked_inputs, LinkedRulesStep(resources, clock),
                               order=linked_time, batched=True)
    account_alerts = op.map("rules_account_alerts", outputs, lambda kv: kv[1].alerts)
    alerts = op.merge("rule_alerts", account_alerts, op.map("rules_linked_alerts", stage2, itemgetter(1)))
    return op.flat_map("alert_rows", alerts, lambda batch: table_batches(map(alert_row, batch)))


def commission_step(settings: Settings) -> CommissionStep | None:
    """The commission engine for the configured tenants (None when no file is configured)."""
    if not settings.commissions:
        return None
    configs = {}
    tenants = {t.id for t in settings.tenants}
    for path in settings.commissions:
        config = load_commissions(path)
        if config.tenant not in tenants:
            raise CommissionConfigError(f"{path}: tenant {config.tenant!r} is not in the configuration")
        configs[config.tenant] = config
    return CommissionStep(configs, rates=FixedRates(settings.fx_fixing), symbols=SymbolBook.default(),
                          keep=timedelta(days=settings.commissions_keep_days))


def withdrawal_step(settings: Settings, rules: RuleResources | None,
                    exposure: bool) -> WithdrawalStep | None:
    """The withdrawal decisions (None when disabled); a bad policy fails here, at start."""
    if not settings.withdrawals.enabled:
        return None
    servers = {name: cfg.platform for name, (_, cfg) in settings.server_index().items()}
    return WithdrawalStep(settings.withdrawals.load(), servers, positions_known=exposure,
                          screener=rules.screener if rules else None,
                          min_score=policy_screen_score(rules.config) if rules else 88)


def build_flow(
    settings: Settings,
    source: KafkaInput | FileInput,
    store_factory: Callable[[], Store],
    kafka_config: dict[str, str] | None = None,
    rules_file: str | None = None,
    clock: Clock | None = None,
) -> Dataflow:
    """`clock`: what a live run (Kafka) stamps detection times with (default the wall clock;
    a demo gives its simulated clock); a replay stamps each alert with its event's time."""
    commissions = commission_step(settings)
    rules = load_rule_resources(settings, rules_file)
    withdrawals = withdrawal_step(settings, rules, settings.exposure.enabled)
    flow = Dataflow("brokerstream")
    batches: Stream[list[FileItem]]  # one item per consumed batch, in read order
    if isinstance(source, KafkaInput):
        kafka = KafkaRawSource(
            source.bootstrap, source.topics, prefix=source.prefix,
            batch=settings.kafka.consume_batch, bounded=not source.tail, extra=settings.kafka.extra,
        )
        batches = op.input("kafka_in", flow, StoppableSource(kafka, STOP))
    else:
        files = JsonlSource(source.paths, settings.kafka.consume_batch)
        batches = op.input("file_in", flow, StoppableSource(files, STOP))

    live = isinstance(source, KafkaInput)
    detect = (clock or wall_clock) if live else None
    progress = None
    if isinstance(source, FileInput) and source.progress_every:
        progress = Progress(source.progress_every)
    exposure = settings.exposure if settings.exposure.enabled else None
    updates_only = exposure is None and commissions is None and rules is None and withdrawals is None
    router = Router(settings)
    columnar: dict[str, tuple[Table, ColumnarReader]] | None = None
    if updates_only:  # nothing but the store reads the deals
        columnar = {"mt5.deals": (DEALS, Mt5DealColumns(router))}
    normaliser = BatchNormaliser(Normaliser(router, readers_for(settings)), live=live,
                                 progress=progress, columnar=columnar)
    records = op.map("normalise", batches, normaliser)
    streams: list[Stream[TableRows]] = [op.flat_map("record_rows", records, _record_rows)]

    # One ordered stream per account: updates, deals, balance operations, payments and logins
    # of an account reach one shard of the account stage in the order they were read.
    servers = {name: cfg.platform for name, (_, cfg) in settings.server_index().items()}
    route = account_router(servers, settings.rules.shards, updates_only=updates_only)
    shards = op.flat_map("to_accounts", records, partial(_keyed_lists, route))
    stage = AccountStage(exposure, commissions is not None, rules,
                         AccountRulesStep(rules, detect) if rules else None,
                         withdrawals)
    outputs = stateful_batch_map("accounts", shards, stage)
    streams.append(op.flat_map("account_rows", outputs, _account_rows))
    if withdrawals is not None:  # decisions -> table (and the topic, below)
        streams.append(op.flat_map("withdrawal_rows", outputs, _decision_rows))
    if exposure is not None:
        changes = op.flat_map("exposure_accounts", outputs, lambda kv: list(kv[1].exposure.items()))
        quotes = op.flat_map("exposure_quotes", records, _quotes_by_tenant)
        ex_in = cast(Stream[tuple[str, list[Any]]], op.merge("exposure_inputs", changes, quotes))
        # Position changes (in each account's order) and quotes (in read order) come on two
        # streams; the step folds both and snapshots once per batch, so their interleaving
        # within a batch does not change what it writes.
        ex_out = stateful_flat_map("exposure", ex_in, ExposureStep(exposure), batched=True)
        streams.append(op.flat_map("exposure_rows", ex_out, lambda kv: table_batches(kv[1])))
    if commissions is not None:
        # keyed by tenant: one deal moves the counters (tiers, caps) of every IB in its chain
        deals = op.flat_map("commission_inputs", outputs, lambda kv: list(kv[1].commissions.items()))
        produced = stateful_flat_map("ib_commissions", deals, commissions, batched=True)
        streams.append(op.flat_map("commission_rows", produced, _commission_rows))
    if rules is not None:
        streams.append(_rule_alerts(outputs, rules, detect))
    # -- reconciliation (issue 16): PSP payments against platform balance operations --
    if settings.recon.enabled:
        streams.append(recon_rows(records, settings))
    # -- end reconciliation --
    all_rows = op.merge("all_rows", *streams)
    sink = ClickHouseSink(store_factory, settings.pipeline.batch_rows, settings.pipeline.flush_s,
                          every_process_writes=not settings.clickhouse_dsn().startswith("chdb:"))
    to_writer = op.map("to_writer", all_rows, lambda tb: (f"{tb.table.name}#{sink.writer()}", tb.rows))
    op.output("clickhouse", to_writer, sink)

    if isinstance(source, KafkaInput):
        config = {"bootstrap.servers": source.bootstrap, **(kafka_config or {})}
        dl_topic = source.prefix + settings.kafka.dead_letter_topic
        dead = op.flat_map("dead_letters", records,
                           lambda rs: [(dl_topic, r) for r in rs if isinstance(r, DeadLetter)])
        op.output("dead_letter_topic", dead, TopicSink(config, dl_topic, dead_letter_message))
        alert_topic = source.prefix + "alerts"
        # observe-only alerts are stored for tuning, not published for compliance to act on
        alerts = op.flat_map("alerts", all_rows, lambda tb: [(alert_topic, row) for row in tb.rows
                             if row[-1] == "alert"] if tb.table is ALERTS else [])
        op.output("alert_topic", alerts, TopicSink(config, alert_topic, alert_message))
        if withdrawals is not None:  # for the cashier / PSP integration to act on
            decision_topic = source.prefix + WITHDRAWAL_TOPIC
            decisions = op.flat_map("withdrawal_decisions", outputs,
                                    lambda kv: [(decision_topic, d) for d in kv[1].decisions])
            op.output("withdrawal_topic", decisions, TopicSink(config, decision_topic, decision_message))

    # -- notifications of new alerts (issue 16): pipelines/notify.py; live only, not replays --
    if settings.notify.enabled and isinstance(source, KafkaInput):
        from pipelines.config import home_dir
        from pipelines.notify import NotifySink, notify_items, notify_state_file

        op.output("notify", op.flat_map("notify_alerts", all_rows, notify_items),
                  NotifySink(settings.notify, notify_state_file(settings.notify, home_dir())))
    return flow


def recovery_config(directory: Path, partitions: int) -> RecoveryConfig:
    """Bytewax recovery in `directory`, creating its SQLite partitions the first time."""
    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.glob("part-*.sqlite3")):
        init_db_dir(directory, partitions)
    return RecoveryConfig(str(directory))


# Allocations (minus frees) between young collections. CPython's default, 700, makes the
# collector walk the whole heap - every open position, deal and rule window - dozens of times
# a minute at a busy broker: measured 17% of the engine's time at 7,000 events/s.
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Keep the cycle collector off the engine's large, long-lived state. Memory is freed by
    reference counting as before; only cyclic garbage waits longer for a collection."""
    gc.collect()
    gc.freeze()  # start-up objects (modules, reference data, restored state) are never garbage
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


def run_flow(
    flow: Dataflow,
    epoch_s: float,
    recovery: RecoveryConfig | None,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> None:
    tune_gc()
    SNAPSHOTS.enabled = recovery is not None
    CLUSTER.process, CLUSTER.processes = process_id or 0, len(addresses) if addresses else 1
    cli_main(
        flow,
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=epoch_s),
        recovery_config=recovery,
    )
