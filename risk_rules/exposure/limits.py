"""Exposure limits per symbol, currency and book, on net notional in USD.

A rule names what it watches and its threshold, for example (YAML)::

    exposure_limits:
      version: "2026-11-01"
      rules:
        - {id: eurusd-b, scope: symbol, target: EURUSD, book: B, max_usd: 5000000}
        - {id: any-symbol, scope: symbol, max_usd: 10000000}          # every symbol, all books
        - {id: jpy, scope: currency, target: JPY, max_usd: 3000000, hysteresis: 0.1}
        - {id: b-book-gross, scope: book, target: B, metric: gross, max_usd: 50000000}

- `measure`: whose exposure - `broker` (default: minus the clients' on the B-book share, what the
  broker itself carries) or `client` (the clients' net).
- `tenant`, `book`, `target`: `"*"` means each one separately (each tenant, each symbol...);
  for symbol and currency rules `book: "*"` adds all books of the tenant together.
- `metric`: `net` compares |sum of the signed USD amounts| (default); `gross` the sum of their
  absolute values (for a book: every symbol's net, long or short, adds up).
- A value above `max_usd` is a breach; it recovers only once at or below `recover_usd`
  (default `max_usd x (1 - hysteresis)`, hysteresis 5 %), so a value oscillating around the
  limit raises one `LimitBreach` and, once clearly back, one `LimitRecovered` - no flapping.
- A value that cannot be computed (a missing price or rate) leaves the state as it is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from risk_rules.exposure.money import EXACT, ZERO, q8
from risk_rules.exposure.rows import CurrencyExposureRow, ExposureRow, ExposureSnapshot

LimitScope = Literal["symbol", "currency", "book"]
Measure = Literal["broker", "client"]
Metric = Literal["net", "gross"]
ANY = "*"


class LimitRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    version: int = Field(default=1, ge=1)
    scope: LimitScope
    target: str = Field(default=ANY, description="symbol, currency or book; * = each")
    tenant: str = ANY
    book: str = Field(default=ANY, description="symbol/currency rules: this book only; * = all books")
    measure: Measure = "broker"
    metric: Metric = "net"
    max_usd: Decimal = Field(gt=0)
    hysteresis: Decimal = Field(default=Decimal("0.05"), ge=0, lt=1)
    recover_usd: Decimal | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _recover_below_max(self) -> LimitRule:
        if self.recover_usd is not None and self.recover_usd > self.max_usd:
            raise ValueError(f"recover_usd ({self.recover_usd}) must not be above max_usd ({self.max_usd})")
        return self

    @property
    def recover_threshold(self) -> Decimal:
        if self.recover_usd is not None:
            return self.recover_usd
        return EXACT.multiply(self.max_usd, EXACT.subtract(Decimal(1), self.hysteresis))


class LimitsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = "1"
    rules: list[LimitRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> LimitsConfig:
        ids = [r.id for r in self.rules]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"limit id(s) used more than once: {', '.join(twice)}")
        return self


@dataclass(frozen=True, slots=True)
class LimitEvent:
    """A limit crossed (or recovered from), with the numbers compared."""

    event_id: str
    kind: Literal["breach", "recovered"]
    rule_id: str
    rule_version: int
    config_version: str
    scope: LimitScope
    tenant: str
    book: str  # "*" when the value adds all books
    target: str  # the symbol, currency or book
    measure: Measure
    metric: Metric
    value_usd: Decimal
    limit_usd: Decimal
    recover_usd: Decimal
    as_of: datetime


@dataclass(frozen=True, slots=True)
class LimitBreach(LimitEvent):
    pass


@dataclass(frozen=True, slots=True)
class LimitRecovered(LimitEvent):
    pass


ValueKey = tuple[str, str, str]  # (tenant, book, target)


def _components(rule: LimitRule, snapshot: ExposureSnapshot) -> dict[ValueKey, list[Decimal | None]]:
    """The signed USD amounts a rule adds up, per (tenant, book, target) it watches."""
    symbols: list[ExposureRow]
    currencies: list[CurrencyExposureRow]
    if rule.measure == "broker":
        symbols, currencies = snapshot.broker_exposure, snapshot.broker_currency_exposure
    else:
        symbols, currencies = snapshot.exposure, snapshot.currency_exposure
    out: dict[ValueKey, list[Decimal | None]] = defaultdict(list)
    if rule.scope == "book":
        for row in symbols:
            if rule.tenant in (ANY, row.tenant) and rule.target in (ANY, row.book):
                out[(row.tenant, row.book, row.book)].append(row.net_notional_usd)
        return out
    items: Iterable[tuple[str, str, str, Decimal | None]]
    if rule.scope == "symbol":
        items = ((r.tenant, r.book, r.symbol, r.net_notional_usd) for r in symbols)
    else:
        items = ((r.tenant, r.book, r.currency, r.net_usd) for r in currencies)
    for tenant, book, target, value in items:
        if rule.tenant not in (ANY, tenant) or rule.target not in (ANY, target):
            continue
        if rule.book == ANY:
            out[(tenant, ANY, target)].append(value)
        elif rule.book == book:
            out[(tenant, book, target)].append(value)
    return out


def _measure(values: list[Decimal | None], metric: Metric) -> Decimal | None:
    if any(v is None for v in values):
        return None
    known = [v for v in values if v is not None]
    if metric == "gross":
        return sum((abs(v) for v in known), ZERO)
    return abs(sum(known, ZERO))


class LimitMonitor:
    """Breach state per (rule, tenant, book, target); `evaluate` returns the crossings."""

    def __init__(self, config: LimitsConfig | None = None) -> None:
        self.config = config if config is not None else LimitsConfig()
        self._breached: dict[tuple[str, str, str, str], Decimal] = {}  # -> value at breach

    def breached(self) -> list[tuple[str, str, str, str]]:
        """(rule id, tenant, book, target) currently in breach."""
        return sorted(self._breached)

    def evaluate(self, snapshot: ExposureSnapshot) -> list[LimitEvent]:
        events: list[LimitEvent] = []
        for rule in self.config.rules:
            values = {key: _measure(parts, rule.metric) for key, parts in _components(rule, snapshot).items()}
            # a watched value that disappeared from the snapshot is zero
            for rule_id, tenant, book, target in list(self._breached):
                if rule_id == rule.id and (tenant, book, target) not in values:
                    values[(tenant, book, target)] = ZERO
            events.extend(self._transitions(rule, values, snapshot.as_of))
        return events

    def _transitions(self, rule: LimitRule, values: Mapping[ValueKey, Decimal | None],
                     as_of: datetime) -> list[LimitEvent]:
        events: list[LimitEvent] = []
        recover = rule.recover_threshold
        for (tenant, book, target), value in sorted(values.items()):
            if value is None:
                continue
            state_key = (rule.id, tenant, book, target)
            breached = state_key in self._breached
            event_type: type[LimitEvent]
            kind: Literal["breach", "recovered"]
            if not breached and value > rule.max_usd:
                self._breached[state_key] = value
                event_type, kind = LimitBreach, "breach"
            elif breached and value <= recover:
                del self._breached[state_key]
                event_type, kind = LimitRecovered, "recovered"
            else:
                continue
            ms = int(as_of.timestamp() * 1000)
            events.append(event_type(
                event_id=f"limit:{rule.id}:{tenant}:{book}:{target}:{kind}:{ms}",
                kind=kind,
                rule_id=rule.id,
                rule_version=rule.version,
                config_version=self.config.version,
                scope=rule.scope,
                tenant=tenant,
                book=book,
                target=target,
                measure=rule.measure,
                metric=rule.metric,
                value_usd=q8(value),
                limit_usd=rule.max_usd,
                recover_usd=q8(recover),
                as_of=as_of,
            ))
        return events
