"""The AML/fraud rule engine: canonical records in, alerts out, in event time.

Rules are small classes with explicit keyed state; the engine owns what is shared (the merged
account state, which platform a server runs, the geo-IP lookup, the sanctions screener), the
per-(rule, subject) cool-down, and observe-only mode. Configuration is versioned YAML
(`examples/rules.yaml`); a wrong value stops loading with the field named.
"""

from __future__ import annotations

import csv
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.account_state import AccountState, merge_account
from risk_rules.alerts import Alert, Category, Mode, Severity, alert_id
from schemas.events import Account, AccountUpdate, BalanceOperation, Deal, Login

# ----------------------------------------------------------------------------- configuration


class ConfigError(ValueError):
    """A rules configuration that cannot be used; the message names the field."""


class RuleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    version: int = Field(ge=1)
    enabled: bool = True
    mode: Mode = "alert"
    severity: Severity = "medium"
    cooldown_hours: float = Field(default=24.0, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    high_risk_countries: list[str] = Field(default_factory=list)
    rules: list[RuleSettings]


def load_rule_modules() -> None:
    """Import the modules that register the rules (they import this module)."""
    import risk_rules.aml.rules
    import risk_rules.fraud.rules
    import risk_rules.sanctions  # noqa: F401


def parse_rules_config(doc: object, source: str = "rules") -> RulesConfig:
    """Validate a rules document, including each rule's own thresholds."""
    load_rule_modules()
    try:
        config = RulesConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(_errors(source, "", exc)) from None
    seen: set[str] = set()
    for rule in config.rules:
        cls = RULES.get(rule.id)
        if cls is None:
            raise ConfigError(
                f"{source}: rules[{rule.id}].id: unknown rule (known: {', '.join(sorted(RULES))})"
            )
        if rule.id in seen:
            raise ConfigError(f"{source}: rules[{rule.id}].id: listed twice")
        seen.add(rule.id)
        try:
            cls.Params.model_validate(rule.params)
        except ValidationError as exc:
            raise ConfigError(_errors(source, f"rules[{rule.id}].params.", exc)) from None
    for code in config.high_risk_countries:
        if len(code) != 2 or not code.isalpha() or not code.isupper():
            raise ConfigError(f"{source}: high_risk_countries: {code!r} is not an ISO 3166-1 alpha-2 code")
    return config


def load_rules_config(path: str | Path) -> RulesConfig:
    with open(path, encoding="utf-8") as fh:
        return parse_rules_config(yaml.safe_load(fh), str(path))


def _errors(source: str, prefix: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{prefix}{loc}: {err['msg']}")
    return f"{source}: " + "; ".join(parts)


# ----------------------------------------------------------------------------- geo-IP


@dataclass(frozen=True)
class GeoPoint:
    country: str
    city: str
    latitude: float
    longitude: float
    kind: str = ""  # residential / mobile / hosting


GeoLookup = Callable[[str], GeoPoint | None]


class CsvGeoIP:
    """Offline IP -> location from a CSV `network,country,city,latitude,longitude,kind`
    (the simulator's `geoip_synthetic.csv`); any other offline source can be injected instead."""

    def __init__(self, path: str | Path) -> None:
        self._nets: dict[int, dict[ipaddress.IPv4Network, GeoPoint]] = {}
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                net = ipaddress.IPv4Network(row["network"], strict=False)
                point = GeoPoint(
                    row["country"],
                    row.get("city", ""),
                    float(row["latitude"]),
                    float(row["longitude"]),
                    row.get("kind", ""),
                )
                self._nets.setdefault(net.prefixlen, {})[net] = point
        self._lens = sorted(self._nets, reverse=True)

    def __call__(self, ip: str) -> GeoPoint | None:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            return None
        for plen in self._lens:
            net = ipaddress.IPv4Network((int(addr) >> (32 - plen) << (32 - plen), plen))
            point = self._nets[plen].get(net)
            if point is not None:
                return point
        return None


# ----------------------------------------------------------------------------- rules


@dataclass
class Hit:
    """What a rule found; the engine turns it into an Alert (or drops it in cool-down)."""

    subject: str
    tenant: str
    summary: str
    facts: dict[str, Any]
    evidence: list[str]
    event_time: datetime
    window_start: datetime | None = None
    cooldown_key: str = ""  # what the cool-down is per, when finer than the subject


@dataclass
class Context:
    """State shared by the rules, owned by the engine."""

    high_risk_countries: frozenset[str] = frozenset()
    geo: GeoLookup | None = None
    screener: Any = None  # risk_rules.sanctions.Screener
    accounts: dict[str, Account] = field(default_factory=dict)
    server_platform: dict[str, str] = field(default_factory=dict)

    def account_of(self, server: str, login: int, platform: str) -> str:
        if platform == "psp":
            platform = self.server_platform.get(server, "psp")
        return f"{platform}:{server}:{login}"


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule:
    """Base of every rule. Subclasses set `rule_id`, `category`, `Params` and override the
    `on_*` hooks they need, returning the hits. State lives in the instance, keyed explicitly."""

    rule_id: ClassVar[str]
    category: ClassVar[Category]
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: Any, ctx: Context) -> None:
        self.p = params
        self.ctx = ctx

    def on_deal(self, deal: Deal, account: str) -> list[Hit]:
        return []

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        return []

    def on_login(self, login: Login, account: str) -> list[Hit]:
        return []

    def on_account(self, account: Account, previous: Account | None) -> list[Hit]:
        return []


RULES: dict[str, type[Rule]] = {}


def register(cls: type[Rule]) -> type[Rule]:
    RULES[cls.rule_id] = cls
    return cls


def fmt(x: Any) -> str:
    """Money/number for a summary sentence: 29,400 or 9,612.50."""
    v = float(x)
    return f"{v:,.0f}" if v == int(v) else f"{v:,.2f}"


# ----------------------------------------------------------------------------- engine


class RuleEngine:
    """`on_record(record)` -> alerts, in the order the records are given (event time order per
    key). `detected_at` defaults to the record's event time, which makes replays identical."""

    def __init__(
        self,
        config: RulesConfig,
        *,
        geo: GeoLookup | None = None,
        screener: Any = None,
        servers: Mapping[str, str] | None = None,
    ) -> None:
        """`geo`: offline IP -> location lookup; `screener`: a `sanctions.Screener`; `servers`:
        server name -> platform (payment operations name only the server), e.g.
        `{name: cfg.platform for name, (_, cfg) in settings.server_index().items()}`; servers
        not listed are learnt from the platform records seen."""
        load_rule_modules()
        self.config = config
        self.ctx = Context(frozenset(config.high_risk_countries), geo, screener)
        self.ctx.server_platform.update(servers or {})
        self.rules: list[tuple[RuleSettings, Rule]] = []
        for rs in config.rules:
            if rs.enabled:
                cls = RULES[rs.id]
                self.rules.append((rs, cls(cls.Params.model_validate(rs.params), self.ctx)))
        self._cooldown: dict[tuple[str, str], datetime] = {}
        self._states: dict[str, AccountState] = {}
        self._seen_ops: set[tuple[str, str]] = set()
        self._seen_deals: set[str] = set()
        self.records = 0

    def on_record(self, record: Any, detected_at: datetime | None = None) -> list[Alert]:
        self.records += 1
        ctx = self.ctx
        if isinstance(record, Deal):
            # a deal counts once, when first seen: MT4 sends its closing deal as an update of the
            # trade record; dealer corrections re-send a key already seen (not re-evaluated)
            if (
                record.event == "delete"
                or record.is_deleted
                or record.canceled
                or record.deal_key in self._seen_deals
            ):
                return []
            self._seen_deals.add(record.deal_key)
            ctx.server_platform[record.server] = record.platform
            acct = f"{record.platform}:{record.server}:{record.login}"
            return self._run(lambda r: r.on_deal(record, acct), record, detected_at)
        if isinstance(record, BalanceOperation):
            key = (record.op_key, record.status)
            if record.is_deleted or key in self._seen_ops:  # a re-sent webhook is not a new fact
                return []
            self._seen_ops.add(key)
            if record.platform != "psp":
                ctx.server_platform[record.server] = record.platform
            acct = ctx.account_of(record.server, record.login, record.platform)
            return self._run(lambda r: r.on_op(record, acct), record, detected_at)
        if isinstance(record, Login):
            ctx.server_platform[record.server] = record.platform
            acct = f"{record.platform}:{record.server}:{record.login}"
            return self._run(lambda r: r.on_login(record, acct), record, detected_at)
        if isinstance(record, AccountUpdate):
            state, merged = merge_account(self._states.get(record.account_key), record)
            self._states[record.account_key] = state
            return self._on_account(merged, detected_at)
        if isinstance(record, Account):
            return self._on_account(record, detected_at)
        return []

    def _on_account(self, account: Account, detected_at: datetime | None) -> list[Alert]:
        ctx = self.ctx
        if account.platform != "psp":
            ctx.server_platform[account.server] = account.platform
        previous = ctx.accounts.get(account.account_key)
        ctx.accounts[account.account_key] = account
        return self._run(lambda r: r.on_account(account, previous), account, detected_at)

    def rule(self, rule_id: str) -> Rule | None:
        """The enabled rule instance (e.g. to seed `dormant_reactivation.last_activity`)."""
        return next((r for rs, r in self.rules if rs.id == rule_id), None)

    def run(self, records: Iterable[Any]) -> list[Alert]:
        out: list[Alert] = []
        for record in records:
            out.extend(self.on_record(record))
        return out

    def _run(
        self, call: Callable[[Rule], list[Hit]], record: Any, detected_at: datetime | None
    ) -> list[Alert]:
        alerts: list[Alert] = []
        for rs, rule in self.rules:
            for hit in call(rule):
                alert = self._alert(rs, rule, hit, detected_at)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def _alert(self, rs: RuleSettings, rule: Rule, hit: Hit, detected_at: datetime | None) -> Alert | None:
        key = (rs.id, hit.cooldown_key or hit.subject)
        last = self._cooldown.get(key)
        if last is not None and hit.event_time - last < timedelta(hours=rs.cooldown_hours):
            return None
        self._cooldown[key] = hit.event_time
        return Alert(
            alert_id=alert_id(rs.id, rs.version, hit.subject, hit.evidence, hit.window_start),
            rule_id=rs.id,
            rule_version=rs.version,
            category=rule.category,
            severity=rs.severity,
            tenant=hit.tenant,
            subject=hit.subject,
            summary=hit.summary,
            facts=hit.facts,
            evidence=list(hit.evidence),
            event_time=hit.event_time,
            detected_at=detected_at or hit.event_time,
            mode=rs.mode,
        )
