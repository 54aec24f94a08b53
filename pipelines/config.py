"""Engine configuration: one validated file (YAML), overridable by environment variables.

A wrong value fails at start with a message that names the field, for example
``config error in brokerstream.yaml: tenants.0.servers.1.platform: Input should be 'mt4', ...``.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cases.settings import CasesSettings, NotifySettings
from connectors.psp.settings import PspSettings
from connectors.server_time import ServerClock, resolve_zone
from reconciliation.settings import ReconSettings
from risk_rules.exposure.settings import ExposureSettings
from risk_rules.settings import RulesSettings
from schemas.events import Platform
from schemas.validation import describe_errors
from withdrawals.policy import WithdrawalSettings


def home_dir() -> Path:
    """Where brokerstream keeps its data: $BROKERSTREAM_HOME or ~/.local/share/brokerstream."""
    env = os.environ.get("BROKERSTREAM_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "brokerstream"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Strict):
    """One trading-platform server (what a bridge sends in the `server` header)."""

    name: str = Field(min_length=1)
    platform: Platform
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="deposit currency")
    # MT4 (and MT5's server-local fields) stamp times in the trade server's zone, not UTC:
    # `timezone` names it (IANA, e.g. Europe/Helsinki, or a convention such as new-york-close,
    # see connectors/server_time.py); the fixed `utc_offset_minutes` is the fallback.
    timezone: str | None = Field(default=None, description="server time zone (IANA name or convention)")
    utc_offset_minutes: int = Field(default=0, ge=-14 * 60, le=14 * 60)
    # cTrader names an account's deposit currency by asset id (ProtoOATrader.depositAssetId,
    # the broker's ProtoOAAssetListRes): id -> ISO code. Unmapped: the server's `currency`.
    deposit_assets: dict[int, str] = Field(default_factory=dict)

    @field_validator("deposit_assets")
    @classmethod
    def _asset_codes(cls, value: dict[int, str]) -> dict[int, str]:
        for asset, code in value.items():
            if not (len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()):
                raise ValueError(f"asset {asset}: {code!r} is not a currency code (three capitals)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            resolve_zone(value)  # a bad name fails at start, the error naming this field
        return value

    @model_validator(mode="after")
    def _one_clock(self) -> ServerConfig:
        if self.timezone is not None and "utc_offset_minutes" in self.model_fields_set:
            raise ValueError(f"server {self.name!r}: give either timezone or utc_offset_minutes, "
                             "not both (a zone already knows its offsets)")
        return self

    def clock(self) -> ServerClock:
        """How this server's wall-clock times become UTC."""
        if self.timezone is not None:
            return ServerClock(resolve_zone(self.timezone))
        return ServerClock(offset_minutes=self.utc_offset_minutes)


class TenantConfig(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = ""
    servers: list[ServerConfig] = Field(min_length=1)


class KafkaConfig(Strict):
    # "local" means the project's own single-node broker (brokerstream kafka up).
    bootstrap: str = "local"
    # Prepended to every topic name (e.g. "staging."), so environments can share a cluster.
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")
    partitions: int = Field(default=6, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    consume_batch: int = Field(default=5000, ge=1)
    dead_letter_topic: str = "dead_letters"
    extra: dict[str, str] = Field(default_factory=dict, description="librdkafka settings")


class ClickHouseConfig(Strict):
    # chdb:///dir (embedded, default under the data dir) or http(s)://user@host:8123/db
    dsn: str = ""
    database: str = Field(default="brokerstream", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not value.startswith(("chdb:", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        return value


class PipelineConfig(Strict):
    batch_rows: int = Field(default=50_000, ge=1, description="flush a table at this many rows")
    epoch_s: float = Field(default=5.0, gt=0, description="recovery snapshot interval (tables flush too)")
    flush_s: float = Field(default=0.5, gt=0, description="write a table's rows once they are this old")
    recovery_dir: str = Field(default="", description="Bytewax recovery; default under home")
    recovery_partitions: int = Field(default=1, ge=1)


class ReceiverConfig(Strict):
    """The webhook receiver's HTTP server limits (services/webhooks.py, docs/payments.md)."""

    header_timeout_s: float = Field(default=10.0, gt=0, le=300,
                                    description="request line + headers must arrive within this: else 408")
    body_timeout_s: float = Field(default=15.0, gt=0, le=600,
                                  description="the body must arrive within this after the headers: else 408")
    max_connections: int = Field(default=4096, ge=1,
                                 description="open connections beyond this are answered 503")
    keep_alive_s: float = Field(default=5.0, gt=0, le=300, description="idle keep-alive connection lifetime")
    max_header_bytes: int = Field(default=16384, ge=1024, le=1 << 20,
                                  description="request line + headers larger than this: 431")
    kafka_probe_s: float = Field(default=2.0, gt=0, le=60,
                                 description="how often Kafka is checked (faster, with backoff, while down)")
    kafka_log_every_s: float = Field(default=30.0, gt=0,
                                     description="while Kafka is unreachable, a warning this often")


class DashboardUser(Strict):
    """One login of the built-in dashboard page (services/dashboard/auth.py)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
    # argon2 hash from `brokerstream dashboard hash-password`; never a password
    password_hash: str = Field(pattern=r"^\$argon2(id|i|d)\$")
    # the tenants this user sees; an admin sees every tenant and the engine's own metrics
    tenants: list[str] = Field(default_factory=list)
    role: Literal["viewer", "admin", "partner"] = "viewer"
    # issue 16, partner logins: the IB (commissions file `ibs[].id`) whose tree a partner sees
    ib: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _tenants_match_role(self) -> DashboardUser:
        if self.role == "viewer" and not self.tenants:
            raise ValueError(f"user {self.name!r}: a viewer needs at least one tenant")
        if self.role == "admin" and self.tenants:
            raise ValueError(f"user {self.name!r}: an admin sees every tenant; leave `tenants` out")
        if self.role == "partner" and (self.ib is None or len(self.tenants) != 1):
            raise ValueError(f"user {self.name!r}: a partner needs `ib` (its IB id) and exactly one "
                             "tenant (the IB's)")
        if self.role != "partner" and self.ib is not None:
            raise ValueError(f"user {self.name!r}: `ib` is for role: partner only")
        return self


class DashboardConfig(Strict):
    users: list[DashboardUser] = Field(default_factory=list)
    # signs the session cookies; better in BROKERSTREAM_DASHBOARD_SECRET. Unset: a random one
    # per process (sessions end at restart; replicas behind one proxy need the same secret).
    session_secret: str = Field(default="", repr=False)
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    secure_cookie: bool = Field(default=False, description="set behind TLS: cookie sent on https only")

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("use at least 32 characters (e.g. python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))')")
        return value


RAW_TOPICS: dict[str, str] = {
    "mt5.deals": "MT5 deals (add/update/delete in the `event` header)",
    "mt5.users": "MT5 users (IMTUser)",
    "mt5.logins": "MT5 online/login events",
    "mt5.ticks": "MT5 ticks",
    "mt4.trades": "MT4 TradeRecord transactions",
    "mt4.users": "MT4 users",
    "mt4.logins": "MT4 online records",
    "mt4.ticks": "MT4 ticks",
    "ctrader.events": "cTrader Open API ProtoMessage envelopes",
    "psp.skrill": "Skrill status_url callbacks",
    "psp.praxis": "Praxis cashier notifications",
    "psp.coinspaid": "CoinsPaid callbacks",
    "psp.nuvei": "Nuvei DMNs",
    "psp.stripe": "Stripe-style events",
    "crm.accounts": "CRM / KYC account events",
}


class Settings(Strict):
    tenants: list[TenantConfig] = Field(min_length=1)
    kafka: KafkaConfig = KafkaConfig()
    clickhouse: ClickHouseConfig = ClickHouseConfig()
    pipeline: PipelineConfig = PipelineConfig()
    psp: PspSettings = PspSettings()
    receiver: ReceiverConfig = ReceiverConfig()
    exposure: ExposureSettings = ExposureSettings()
    rules: RulesSettings = RulesSettings()
    dashboard: DashboardConfig = DashboardConfig()
    # -- reconciliation (issue 16, docs/reconciliation.md) --
    recon: ReconSettings = ReconSettings()
    # -- end reconciliation --
    # -- alert cases and notifications (issue 16; cases/settings.py, docs/cases.md) --
    cases: CasesSettings = CasesSettings()
    notify: NotifySettings = NotifySettings()
    # withdrawal decisions: the policy file or inline policy (docs/withdrawals.md)
    withdrawals: WithdrawalSettings = WithdrawalSettings()
    # IB commission files, one per tenant (docs/commissions.md); relative to this file.
    commissions: list[str] = Field(default_factory=list)
    # deals older than this (event time) leave the commission state; a later correction of one
    # is a `commission_issues` row ("pruned: not applied"). Covers a month's tiers and caps plus
    # two weeks of dealer corrections after month end.
    commissions_keep_days: float = Field(default=45, gt=0)
    # USD value of one unit of each currency, for commissions' amount_usd. A fixing (not live
    # quotes) so that a replay prices exactly as the live run did.
    fx_fixing: dict[str, Decimal] = Field(default_factory=dict)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _psp_tenants_exist(self) -> Settings:
        tenants = {t.id for t in self.tenants}
        for name, provider in self.psp.providers.items():
            if provider.tenant not in tenants:
                raise ValueError(f"psp.providers.{name}.tenant: no tenant {provider.tenant!r} "
                                 f"(tenants are {sorted(tenants)})")
        return self

    @model_validator(mode="after")
    def _dashboard_users(self) -> Settings:
        tenants = {t.id for t in self.tenants}
        names: set[str] = set()
        for user in self.dashboard.users:
            if user.name in names:
                raise ValueError(f"dashboard.users: {user.name!r} is listed twice")
            names.add(user.name)
            unknown = sorted(set(user.tenants) - tenants)
            if unknown:
                raise ValueError(f"dashboard.users.{user.name}: no tenant {', '.join(map(repr, unknown))} "
                                 f"(tenants are {sorted(tenants)})")
        return self

    @model_validator(mode="after")
    def _servers_unique(self) -> Settings:
        seen: dict[str, str] = {}
        for tenant in self.tenants:
            for server in tenant.servers:
                if server.name in seen:
                    raise ValueError(
                        f"server {server.name!r} is listed for tenants {seen[server.name]!r} "
                        f"and {tenant.id!r}: a server belongs to one tenant"
                    )
                seen[server.name] = tenant.id
        return self

    def server_index(self) -> dict[str, tuple[str, ServerConfig]]:
        """Server name -> (tenant id, server config)."""
        return {s.name: (t.id, s) for t in self.tenants for s in t.servers}

    def clickhouse_dsn(self) -> str:
        """$BROKERSTREAM_CLICKHOUSE, else the file's dsn, else embedded under home."""
        env = os.environ.get("BROKERSTREAM_CLICKHOUSE")
        if env:
            return env
        return self.clickhouse.dsn or f"chdb://{home_dir() / 'clickhouse'}"

    def recovery_dir(self) -> Path:
        return Path(self.pipeline.recovery_dir or home_dir() / "recovery").expanduser()


class ConfigError(ValueError):
    """A configuration that cannot be used, with every offending field named."""


def parse_settings(doc: object, source: str = "config") -> Settings:
    try:
        return Settings.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(describe_errors(f"config error in {source}:", exc)) from None


# The example configuration of a source checkout (not package data: a wheel install has none and
# must be given --config or $BROKERSTREAM_CONFIG, which the error says).
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "brokerstream.yaml"


def load_settings(path: str | Path | None = None) -> Settings:
    """Load from `path`, $BROKERSTREAM_CONFIG, or the shipped example config."""
    chosen = Path(path or os.environ.get("BROKERSTREAM_CONFIG") or DEFAULT_CONFIG)
    try:
        doc = yaml.safe_load(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError:
        hint = "" if path or os.environ.get("BROKERSTREAM_CONFIG") else (
            " (the example of a source checkout; pass --config FILE or set BROKERSTREAM_CONFIG)")
        raise ConfigError(f"config file not found: {chosen}{hint}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {chosen} is not valid YAML: {exc}") from None
    settings = parse_settings(doc, str(chosen))
    if settings.commissions:
        base = chosen.resolve().parent
        paths = [str((base / p).resolve()) for p in settings.commissions]
        settings = settings.model_copy(update={"commissions": paths})
    settings = settings.model_copy(update={"rules": settings.rules.resolved(chosen.resolve().parent)})
    settings = settings.model_copy(  # withdrawals: a policy path relative to this file
        update={"withdrawals": settings.withdrawals.resolved(chosen.resolve().parent)})
    bootstrap = os.environ.get("BROKERSTREAM_KAFKA")
    if bootstrap:
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"bootstrap": bootstrap})}
        )
    return settings
