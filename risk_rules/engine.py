"""The AML/fraud rule engine: canonical records in, alerts out, in event time.

Rules are small classes with explicit keyed state; the engine owns what is shared (the merged
account state, which platform a server runs, the geo-IP lookup, the sanctions screener), the
per-(rule, subject) cool-down, and observe-only mode. Configuration is versioned YAML
(`risk_rules/default_rules.yaml`); a wrong value stops loading with the field named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from risk_rules import names
from risk_rules.alerts import Alert, Category, Mode, Severity, alert_id
from risk_rules.geoip import CsvGeoIP as CsvGeoIP  # re-exported for callers of the engine
from risk_rules.geoip import GeoLookup
from risk_rules.geoip import GeoPoint as GeoPoint  # re-exported: the rules name it from the engine
from schemas.account_state import AccountState, merge_account
from schemas.chunked import ChunkedDict
from schemas.events import Account, AccountUpdate, BalanceOperation, Deal, Login
from schemas.identity import AccountKey, account_key, account_key_of

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
    # per subject kind (account / ip / device / instrument) or one exact subject: hours
    cooldown_subjects: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
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


# GeoPoint, GeoLookup and the file source live in risk_rules/geoip.py (packaged, .mmdb, CSV);
# imported here for the rules and callers that name them from the engine.


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
    # normalised name + date of birth -> CRM client id, learnt from accounts that have both
    persons: dict[str, str] = field(default_factory=dict)
    # account -> chargebacks/refunds the providers reported: (time, magnitude), until the
    # platform books the debit (which is not the client taking money out)
    reversals: dict[str, list[tuple[datetime, Decimal]]] = field(default_factory=dict)

    def note_reversal(self, account: str, op: BalanceOperation) -> None:
        if op.kind in ("chargeback", "refund") and op.status in ("chargeback", "refunded"):
            self.reversals.setdefault(account, []).append((op.time, abs(op.amount)))

    def is_reversal(self, account: str, op: BalanceOperation) -> bool:
        """Whether a platform debit is the booking of a reversal a provider reported (same
        magnitude, within a week after it): not a withdrawal."""
        seen = self.reversals.get(account)
        if not seen or op.amount >= 0:
            return False
        for i, (t, amount) in enumerate(seen):
            if amount == -op.amount and timedelta(0) <= op.time - t <= REVERSAL_BOOKING:
                del seen[i]
                return True
        seen[:] = [x for x in seen if op.time - x[0] <= REVERSAL_BOOKING]
        return False

    def __getstate__(self) -> dict[str, Any]:
        # Reference data (geo-IP, sanctions lists) is not state: it is large and reloaded from
        # the configured files, so snapshots stay small and a list update applies on restart.
        return {**self.__dict__, "geo": None, "screener": None}

    def account_of(self, server: str, login: int, platform: str) -> AccountKey:
        return resolved_account_key(platform, server, login, self.server_platform)

    def learn(self, account: Account) -> None:
        """Remember the account's merged state (and which CRM client its name + birth date is)."""
        if self.accounts.get(account.account_key) is account:
            return  # the linked engines see one merged state with many records
        self.accounts[account.account_key] = account
        if account.client_id:
            nd = name_dob(account)
            if nd:
                self.persons[nd] = client_number(account.client_id)

    def person(self, account_key: str) -> str:
        """Who is behind an account across platforms: the CRM client id, else the normalised name
        with the date of birth (and the CRM id another account with them has), else the account."""
        acc = self.accounts.get(account_key)
        if acc is None:
            return account_key
        if acc.client_id:
            return "crm:" + client_number(acc.client_id)
        nd = name_dob(acc)
        if not nd:
            return account_key
        cid = self.persons.get(nd)
        return "crm:" + cid if cid else "person:" + nd


REVERSAL_BOOKING = timedelta(days=7)  # how long after a provider's chargeback the broker books it


def client_number(client_id: str) -> str:
    """The CRM's client number: the CRM says "C-103355", MT5's ClientID 103355."""
    digits = "".join(c for c in client_id if c.isdigit())
    return digits or client_id.strip()


def name_dob(account: Account) -> str:
    """The name's words sorted and joined (spacing and order vary between platforms) + birth date."""
    if not account.name or account.date_of_birth is None:
        return ""
    return _name_dob(account.name, account.date_of_birth)


@lru_cache(maxsize=65_536)  # folding a name is costly; an account's name rarely changes
def _name_dob(name: str, born: date) -> str:
    words = sorted(_UMLAUT.sub(r"\1", w) for w in names.words(name))
    return "".join(words) + "|" + born.isoformat()


_UMLAUT = re.compile(r"([aou])e")  # Müller, Mueller and Muller: one spelling in the key


def resolved_account_key(platform: str, server: str, login: int,
                         servers: Mapping[str, str]) -> AccountKey:
    """The account key (`schemas.identity`); a payment (platform psp) names only the server,
    whose platform `servers` knows."""
    if platform == "psp":
        platform = servers.get(server, "psp")
    return account_key(platform, server, login)


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


KeyKind = Literal["account", "ip", "device", "instrument", "tenant"]
KEY_KINDS: tuple[KeyKind, ...] = ("account", "ip", "device", "instrument", "tenant")
SEEN_CHUNK = 4096  # seen ids per pickled chunk
HOOKS = ("on_deal", "on_op", "on_login", "on_account")
_HOOK_OF: dict[type, str] = {Deal: "on_deal", BalanceOperation: "on_op", Login: "on_login"}


class Rule:
    """Base of every rule. Subclasses set `rule_id`, `category`, `Params` and override the
    `on_*` hooks they need, returning the hits. State lives in the instance, keyed explicitly
    by what `keyed_by` names: the dataflow routes each record to the partition of that key
    (the account; the login's IP or device; the payment instrument; the tenant)."""

    rule_id: ClassVar[str]
    category: ClassVar[Category]
    keyed_by: ClassVar[KeyKind] = "account"
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: Any, ctx: Context) -> None:
        self.p = params
        self.ctx = ctx

    def on_deal(self, deal: Deal, account: str) -> list[Hit]:
        return []

    def reads(self, record: Deal | BalanceOperation | Login) -> bool:
        """Whether this rule reads the record (lets the dataflow skip re-keying the others)."""
        return True

    def on_op(self, op: BalanceOperation, account: str) -> list[Hit]:
        return []

    def on_login(self, login: Login, account: str) -> list[Hit]:
        return []

    def on_account(self, account: Account, previous: Account | None) -> list[Hit]:
        return []

    def on_retract(self, op_key: str, account: str) -> None:
        """A balance operation read before was deleted or corrected: forget it (windows, sums)."""


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
    key). `detected_at` defaults to the record's event time, which makes replays identical.

    With `keyed_by`, the engine runs only the rules whose state is keyed by that kind: the
    dataflow gives the account-keyed engine every record (it also drops repeats), and the
    engines keyed by IP, device, instrument or tenant the records routed to them, with the
    account's merged state attached (`on_routed`)."""

    def __init__(
        self,
        config: RulesConfig,
        *,
        geo: GeoLookup | None = None,
        screener: Any = None,
        servers: Mapping[str, str] | None = None,
        keyed_by: KeyKind | None = None,
        dedup_days: float = 14,
    ) -> None:
        """`geo`: offline IP -> location lookup; `screener`: a `sanctions.Screener`; `servers`:
        server name -> platform (payment operations name only the server), e.g.
        `{name: cfg.platform for name, (_, cfg) in settings.server_index().items()}`; servers
        not listed are learnt from the platform records seen."""
        load_rule_modules()
        self.keyed_by = keyed_by
        self.ctx = Context(frozenset(config.high_risk_countries), geo, screener)
        self.ctx.server_platform.update(servers or {})
        self.rules: list[tuple[RuleSettings, Rule]] = []
        self._hooks: dict[str, list[tuple[RuleSettings, Rule]]] = {}
        self._filters: dict[str, bool] = {}
        self.reconfigure(config)
        self._cooldown: dict[tuple[str, str], datetime] = {}
        self._states: dict[str, AccountState] = {}
        # ids seen (deal key / (op key, status)) -> event time, forgotten after `dedup_days`
        # ids of facts already read (repeats are dropped): insert-only, so chunks that pickle
        # once keep a recovery snapshot to the ids seen since the last one
        self._seen: ChunkedDict[Any, datetime] = ChunkedDict(SEEN_CHUNK)
        # platform balance operations read: op key -> (amount, status, time), to tell a repeat
        # from a correction (re-evaluated) and to take a deleted one out of the rules' windows
        self._ops: ChunkedDict[str, tuple[Any, str, datetime]] = ChunkedDict(SEEN_CHUNK)
        self._dedup = timedelta(days=dedup_days)
        self._prune_at = 2 * 65_536
        self.records = 0
        self.accepted = False  # whether the last record was new (not a repeat or a deletion)
        self.retracted = False  # whether it took an operation read before out (deleted, corrected)
        self.last_account_key = ""  # the account the last record was about
        self.attached = True  # reference data present (False after a restore from a snapshot)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "attached": False}

    def reconfigure(self, config: RulesConfig) -> None:
        """Apply a (new) rules configuration, keeping the state of rules still enabled: on a
        restart from a snapshot, the thresholds are those of the current file."""
        old = {rs.id: rule for rs, rule in self.rules}
        self.config = config
        self.ctx.high_risk_countries = frozenset(config.high_risk_countries)
        self.rules = []
        for rs in config.rules:
            cls = RULES[rs.id]
            if not rs.enabled or (self.keyed_by is not None and cls.keyed_by != self.keyed_by):
                continue
            params = cls.Params.model_validate(rs.params)
            rule = old.get(rs.id)
            if rule is None:
                rule = cls(params, self.ctx)
            else:
                rule.p = params
            self.rules.append((rs, rule))
        # per hook, only the rules that implement it (most rules use one or two hooks)
        self._hooks = {
            hook: [(rs, r) for rs, r in self.rules if getattr(type(r), hook) is not getattr(Rule, hook)]
            for hook in HOOKS
        }
        # per hook, whether some rule filters what it reads (`reads`); else all records are read
        self._filters = {hook: any(type(r).reads is not Rule.reads for _, r in rules)
                         for hook, rules in self._hooks.items()}

    def attach(self, geo: GeoLookup | None, screener: Any) -> None:
        """Re-attach the reference data after a restore from a snapshot (it is not pickled)."""
        self.ctx.geo = geo
        self.ctx.screener = screener
        self.attached = True

    def reads(self, record: Deal | BalanceOperation | Login) -> bool:
        """Whether any rule of this engine reads this record."""
        hook = _HOOK_OF[type(record)]
        rules = self._hooks[hook]
        if not self._filters[hook]:
            return bool(rules)
        return any(rule.reads(record) for _, rule in rules)

    def wants(self, kind: type) -> bool:
        """Whether any rule of this engine reads records of this class."""
        return bool(self._hooks[_HOOK_OF.get(kind, "on_account")])

    def _first_time(self, key: Any, when: datetime) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = when
        if len(self._seen) >= self._prune_at:
            horizon = when - self._dedup
            self._seen = self._seen.filtered(lambda _, t: t >= horizon)
            self._ops = self._ops.filtered(lambda _, v: v[2] >= horizon)
            self._prune_at = max(2 * 65_536, 2 * len(self._seen))
        return True

    def on_record(self, record: Any, detected_at: datetime | None = None) -> list[Alert]:
        self.records += 1
        self.accepted = self.retracted = False
        ctx = self.ctx
        if isinstance(record, Deal):
            # a deal counts once, when first seen: MT4 sends its closing deal as an update of the
            # trade record; dealer corrections re-send a key already seen (not re-evaluated)
            if (
                record.event == "delete"
                or record.is_deleted
                or record.canceled
                or not self._first_time(record.deal_key, record.time)
            ):
                return []
            ctx.server_platform[record.server] = record.platform
            acct = account_key_of(record)
            return self._accept("on_deal", record, acct, detected_at)
        if isinstance(record, BalanceOperation):
            if record.platform != "psp":
                ctx.server_platform[record.server] = record.platform
                acct = self.last_account_key = account_key_of(record)
                if not self._ledger(record):
                    return []
                return self._accept("on_op", record, acct, detected_at)
            # a re-sent webhook is not a new fact; a notification that adds one (the payer's name
            # after the intent said none) is read again: alerts stay one per fact (`_alert`)
            seen = (record.op_key, record.status, record.payer_name, record.instrument_fingerprint,
                    record.country)
            if record.is_deleted or not self._first_time(seen, record.time):
                return []
            acct = ctx.account_of(record.server, record.login, record.platform)
            ctx.note_reversal(acct, record)
            return self._accept("on_op", record, acct, detected_at)
        if isinstance(record, Login):
            ctx.server_platform[record.server] = record.platform
            acct = account_key_of(record)
            return self._accept("on_login", record, acct, detected_at)
        if isinstance(record, AccountUpdate):
            state, merged = merge_account(self._states.get(record.account_key), record)
            self._states[record.account_key] = state
            return self._on_account(merged, detected_at)
        if isinstance(record, Account):
            return self._on_account(record, detected_at)
        return []

    def _ledger(self, op: BalanceOperation) -> bool:
        """Whether the rules read this platform balance operation: new, or a correction (the old
        amount leaves the rules' windows first); a repeat is dropped and a deletion only leaves
        the windows (`retracted`)."""
        acct = account_key_of(op)
        before = self._ops.get(op.op_key)
        if op.is_deleted or op.event == "delete":
            if before is not None:
                del self._ops[op.op_key]
                self._retract(op.op_key, acct)
            return False
        if before is not None:
            if (before[0], before[1]) == (op.amount, op.status):
                return False
            self._retract(op.op_key, acct)
        self._ops[op.op_key] = (op.amount, op.status, op.time)
        self._first_time(("op", op.op_key), op.time)  # keeps the pruning schedule
        return True

    def _retract(self, op_key: str, account: str) -> None:
        self.retracted = True
        for _, rule in self.rules:
            rule.on_retract(op_key, account)

    def _accept(self, hook: str, record: Any, account_key: str, detected_at: datetime | None) -> list[Alert]:
        self.accepted = True
        self.last_account_key = account_key
        return self._run(hook, (record, account_key), detected_at)

    def on_routed(
        self, record: Deal | BalanceOperation | Login, account_key: str, account: Account | None,
        detected_at: datetime | None = None,
    ) -> list[Alert]:
        """A record already accepted by the account-keyed engine, re-keyed to this engine's
        partition, with the account's merged state as that engine knew it."""
        self.records += 1
        if account is not None:
            self.ctx.learn(account)
        # the linked engines see the corrections and deletions of platform operations as well
        if isinstance(record, BalanceOperation) and record.platform != "psp" and not self._ledger(record):
            return []
        return self._run(_HOOK_OF[type(record)], (record, account_key), detected_at)

    def _on_account(self, account: Account, detected_at: datetime | None) -> list[Alert]:
        ctx = self.ctx
        if account.platform != "psp":
            ctx.server_platform[account.server] = account.platform
        previous = ctx.accounts.get(account.account_key)
        ctx.learn(account)
        return self._run("on_account", (account, previous), detected_at)

    def rule(self, rule_id: str) -> Rule | None:
        """The enabled rule instance (e.g. to seed `dormant_reactivation.last_activity`)."""
        return next((r for rs, r in self.rules if rs.id == rule_id), None)

    def run(self, records: Iterable[Any]) -> list[Alert]:
        out: list[Alert] = []
        for record in records:
            out.extend(self.on_record(record))
        return out

    def _run(self, hook: str, args: tuple[Any, Any], detected_at: datetime | None) -> list[Alert]:
        alerts: list[Alert] = []
        for rs, rule in self._hooks[hook]:
            for hit in getattr(rule, hook)(*args):
                alert = self._alert(rs, rule, hit, detected_at)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def _alert(self, rs: RuleSettings, rule: Rule, hit: Hit, detected_at: datetime | None) -> Alert | None:
        # one alert per fact: the same evidence again (a redelivery, a correction, a chargeback
        # seen on the deposit and on its reversing entry) is not a new alert
        fact = ("alert", rs.id, tuple(sorted(hit.evidence)))
        if fact in self._seen:
            return None
        key = (rs.id, hit.cooldown_key or hit.subject)
        last = self._cooldown.get(key)
        if last is not None and hit.event_time - last < timedelta(hours=cooldown_hours(rs, hit.subject)):
            return None
        self._cooldown[key] = hit.event_time
        self._first_time(fact, hit.event_time)
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


def subject_kind(subject: str) -> str:
    """account / ip / device / instrument (tenant-wide subjects name an account)."""
    kind = subject.split(":", 1)[0]
    return kind if kind in ("ip", "device", "instrument") else "account"


def cooldown_hours(rs: RuleSettings, subject: str) -> float:
    """The rule's cool-down for this subject: the subject's own, its kind's, else the rule's."""
    over = rs.cooldown_subjects
    if over:
        hours = over.get(subject, over.get(subject_kind(subject)))
        if hours is not None:
            return hours
    return rs.cooldown_hours
