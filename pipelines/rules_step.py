"""The AML/fraud rules in the dataflow, with explicit re-keying.

Stage 1 is keyed by account: every deal, payment, login and merged account state of an account
reaches the same partition, whose `RuleEngine` runs the account-keyed rules and drops repeats
(a re-sent webhook, a dealer's correction). It then re-keys what the other rules need, with the
account's merged state attached: logins by IP and by device, payments by instrument, and what
links accounts (trades, logins, payments) by tenant. Stage 2 is keyed by those keys and runs the
rules keyed by that kind. Partitions are hash shards of the natural key (`rules.shards` of
them per kind), so state per partition stays small and snapshots touch only busy shards.

Alerts carry the wall-clock detection time on a live run and the event time on a replay, so a
replay of the same history writes the same alerts, ids included.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipelines import tables
from pipelines.config import Settings
from pipelines.exposure_step import facts_json
from pipelines.metrics import ALERTS, RULE_RECORDS
from pipelines.reference import load_geoip, load_screener
from pipelines.tables import Row
from risk_rules.alerts import Alert
from risk_rules.engine import (
    KEY_KINDS,
    ConfigError,
    GeoLookup,
    KeyKind,
    RuleEngine,
    RulesConfig,
    load_rules_config,
)
from risk_rules.sanctions import Screener
from schemas.events import Account, AccountUpdate, BalanceOperation, Deal, Login

RuleInput = Deal | BalanceOperation | Login | AccountUpdate
Routed = tuple[Deal | BalanceOperation | Login, str, Account | None]  # record, account key, state
LinkedInput = tuple[KeyKind, Routed]
Clock = Callable[[], datetime]
LINKED_KINDS: tuple[KeyKind, ...] = tuple(k for k in KEY_KINDS if k != "account")
# the counters' children, bound once: `.labels()` per record was 1% of the engine's time
_ACCOUNT_RECORDS = RULE_RECORDS.labels("account")
_LINKED_RECORDS = {kind: RULE_RECORDS.labels(kind) for kind in LINKED_KINDS}
log = logging.getLogger("brokerstream.rules")


@dataclass(frozen=True)
class RuleResources:
    """Everything the rule engines are built from: loaded once at start, shared by all
    partitions (the reference data is never part of a snapshot)."""

    config: RulesConfig
    geo: GeoLookup | None
    screener: Screener | None
    servers: dict[str, str]  # server name -> platform, to name a payment's account
    shards: int
    dedup_days: float

    def engine(self, kind: KeyKind) -> RuleEngine:
        return RuleEngine(self.config, geo=self.geo, screener=self.screener, servers=self.servers,
                          keyed_by=kind, dedup_days=self.dedup_days)


def load_rule_resources(settings: Settings, rules_file: str | None = None) -> RuleResources | None:
    """The rules configuration and reference data, or None when rules are disabled. A bad
    file fails here, at start, with the field named."""
    rs = settings.rules
    if not rs.enabled:
        return None
    path = rules_file or rs.file
    try:
        config = load_rules_config(path)
    except FileNotFoundError:
        raise ConfigError(f"rules.file: {path} not found") from None
    # reference data: named files, else installed ones, else the packaged geo-IP; no sanctions
    # list is a loud warning (pipelines/reference.py)
    geo, geo_line = load_geoip(rs)
    screener, lists_line = load_screener(rs)
    log.info("%s; %s", geo_line, lists_line)
    servers: dict[str, str] = {name: cfg.platform for name, (_, cfg) in settings.server_index().items()}
    return RuleResources(config, geo, screener, servers, rs.shards, rs.dedup_days)


def shard_key(tenant: str, kind: str, natural: str, shards: int) -> str:
    return f"{tenant}|{kind}|{zlib.crc32(natural.encode()) % shards}"


def _natural_key(kind: KeyKind, record: Deal | BalanceOperation | Login) -> str:
    if kind == "tenant":
        return record.tenant
    if isinstance(record, Login):
        return record.ip if kind == "ip" else record.device if kind == "device" else ""
    if isinstance(record, BalanceOperation) and kind == "instrument":
        return record.instrument_fingerprint
    return ""


class _EngineStep:
    def __init__(self, resources: RuleResources, clock: Clock | None) -> None:
        self.res = resources
        self.clock = clock

    def _live(self, engine: RuleEngine) -> RuleEngine:
        # after a restore: reference data back, and the current file's thresholds
        if not engine.attached:
            engine.attach(self.res.geo, self.res.screener)
            if engine.config != self.res.config:
                engine.reconfigure(self.res.config)
        return engine

    def _now(self) -> datetime | None:
        return self.clock() if self.clock is not None else None


class AccountRulesStep(_EngineStep):
    """Stage 1 mapper: (engine of an account shard, record) -> alerts and re-keyed records."""

    def __init__(self, resources: RuleResources, clock: Clock | None) -> None:
        super().__init__(resources, clock)
        # which linked kinds have enabled rules, and which record classes each reads
        self.probes = {kind: resources.engine(kind) for kind in LINKED_KINDS}
        self.routes: dict[type, list[KeyKind]] = {
            cls: [k for k, e in self.probes.items() if e.rules and e.wants(cls)]
            for cls in (Deal, BalanceOperation, Login)
        }

    def __call__(
        self, state: RuleEngine | None, record: RuleInput
    ) -> tuple[RuleEngine, list[Alert | tuple[str, LinkedInput]]]:
        engine = self._live(state) if state is not None else self.res.engine("account")
        _ACCOUNT_RECORDS.inc()
        out: list[Alert | tuple[str, LinkedInput]] = list(engine.on_record(record, self._now()))
        if isinstance(record, AccountUpdate) or not (engine.accepted or engine.retracted):
            return engine, out  # account states travel with the records; repeats stop here
        kinds = self.routes[type(record)]
        if kinds:
            account_key = engine.last_account_key
            routed: Routed = (record, account_key, engine.ctx.accounts.get(account_key))
            for kind in kinds:
                natural = _natural_key(kind, record)
                if natural and self.probes[kind].reads(record):
                    out.append((shard_key(record.tenant, kind, natural, self.res.shards), (kind, routed)))
        return engine, out


def linked_time(item: LinkedInput) -> datetime:
    return item[1][0].time


class LinkedRulesStep(_EngineStep):
    """Stage 2 mapper, keyed by `tenant|kind|shard`: the rules keyed by IP, device, payment
    instrument or tenant, over the records the account stage accepted."""

    def __call__(self, state: RuleEngine | None, item: LinkedInput) -> tuple[RuleEngine, list[Alert]]:
        kind, (record, account_key, account) = item
        engine = self._live(state) if state is not None else self.res.engine(kind)
        _LINKED_RECORDS[kind].inc()
        return engine, engine.on_routed(record, account_key, account, self._now())


def alert_row(alert: Alert) -> Row:
    ALERTS.labels(alert.rule_id, alert.category, alert.severity, alert.mode).inc()
    return tables.ALERTS, (
        alert.alert_id, alert.rule_id, alert.rule_version, alert.category, alert.severity, alert.tenant,
        alert.subject, alert.summary, facts_json(alert.facts),
        alert.evidence, alert.event_time, alert.detected_at, alert.mode,
    )


def wall_clock() -> datetime:
    return datetime.now(UTC)
