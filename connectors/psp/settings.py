"""Configuration of the payment providers (the `psp` section of the config file).

Example::

    psp:
      max_body_bytes: 65536
      fingerprint_salt: ""            # better: $BROKERSTREAM_PSP_FINGERPRINT_SALT
      providers:
        skrill:   {tenant: acme, merchant_id: "299202295", merchant_email: pay@acme.example}
        praxis:   {tenant: acme, merchant_id: API-Acme, application_key: acme-cashier}
        coinspaid: {tenant: acme, key: "public-key-from-coinspaid"}
        nuvei:    {tenant: zenith, merchant_id: "1234567890"}
        stripe:   {tenant: acme}

Secrets are best left out of the file: ``secret_for("skrill")`` reads
``$BROKERSTREAM_PSP_SKRILL_SECRET`` first and falls back to the file's ``secret``.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, field_validator

PROVIDER_NAMES = ("skrill", "praxis", "coinspaid", "nuvei", "stripe")


class PspProviderSettings(BaseModel):
    """One payment provider: who owns its money, and how to check what it sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="tenant that owns the flows")
    secret: str = Field(
        default="", description="signing secret; $BROKERSTREAM_PSP_<PROVIDER>_SECRET overrides it"
    )
    key: str = Field(default="", description="public key the provider sends (CoinsPaid)")
    merchant_id: str = Field(default="", description="checked against the payload when set")
    application_key: str = Field(default="", description="Praxis application_key, checked when set")
    merchant_email: str = Field(
        default="", description="Skrill: the merchant's wallet email (tells payouts from deposits)"
    )
    allow_unsigned_account: bool = Field(
        default=False,
        description="no longer supported (must be false): the account is read from signed "
        "fields only, whatever the provider",
    )
    tolerance_s: int | None = Field(
        default=None, ge=0,
        description="max age of a signed timestamp; None: the provider's default, 0: no check",
    )
    currency_exponents: dict[str, int] = Field(
        default_factory=dict,
        description="minor-unit exponents for amounts sent in minor units (e.g. {BTC: 8})",
    )
    replay_window_s: int | None = Field(
        default=None, ge=1,
        description="how long after its first sight a notification id is still accepted "
        "(a provider's retry); None: psp.replay_window_s",
    )
    payout_prefix: str = Field(
        default="WD", min_length=1, pattern=r"^[A-Za-z]+$",
        description="the <reference> of a payout's signed '<server>:<login>:<reference>' "
        "starts with this, so the direction of the money is signed too (Skrill, Praxis, Nuvei)",
    )


    @field_validator("allow_unsigned_account")
    @classmethod
    def _signed_account_only(cls, value: bool) -> bool:
        if value:
            raise ValueError("an account named only in unsigned fields could be anyone's: name "
                             "it in the signed reference ('<server>:<login>:<reference>'), see "
                             "docs/payments.md")
        return value


class PspSettings(BaseModel):
    """The webhook receiver and the payment connectors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    providers: dict[str, PspProviderSettings] = Field(default_factory=dict)
    fingerprint_salt: str = Field(
        default="",
        description="secret mixed (with the tenant id) into instrument fingerprints; "
        "$BROKERSTREAM_PSP_FINGERPRINT_SALT overrides it",
    )
    publish_timeout_s: float = Field(
        default=10.0, gt=0, le=120,
        description="how long a webhook waits for Kafka to confirm before answering 503",
    )
    dedupe_cache_size: int = Field(
        default=100_000, ge=0, description="acknowledged webhook ids remembered in memory"
    )
    replay_window_s: int = Field(
        default=86_400, ge=1,
        description="a notification id is accepted again (a provider's retry) only this long "
        "after its first sight; keep it <= 1 day, the lifecycle window of the versions",
    )
    replay_db: str = Field(
        default="",
        description="SQLite file of first sightings (connectors.psp.replay_guard); "
        "'' = $BROKERSTREAM_HOME/psp/replay.sqlite3, ':memory:' = this process only",
    )

    @field_validator("providers")
    @classmethod
    def _known_providers(
        cls, value: dict[str, PspProviderSettings]
    ) -> dict[str, PspProviderSettings]:
        unknown = sorted(set(value) - set(PROVIDER_NAMES))
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}: known are {list(PROVIDER_NAMES)}")
        return value

    def provider(self, name: str) -> PspProviderSettings | None:
        return self.providers.get(name)

    def secret_for(self, provider: str) -> str:
        """$BROKERSTREAM_PSP_<PROVIDER>_SECRET, else the configured secret, else ""."""
        env = os.environ.get(f"BROKERSTREAM_PSP_{provider.upper()}_SECRET")
        if env:
            return env
        cfg = self.providers.get(provider)
        return cfg.secret if cfg is not None else ""

    def replay_window(self, provider: str) -> int:
        cfg = self.providers.get(provider)
        if cfg is not None and cfg.replay_window_s is not None:
            return cfg.replay_window_s
        return self.replay_window_s

    def salt(self) -> str:
        return os.environ.get("BROKERSTREAM_PSP_FINGERPRINT_SALT") or self.fingerprint_salt
