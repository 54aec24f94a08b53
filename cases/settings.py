"""The `cases` and `notify` sections of the configuration (aggregated in pipelines/config.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cases.model import Severity


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CasesSettings(_Strict):
    """Which alerts compliance works as cases (docs/cases.md)."""

    # risk alerts (limits, margin) are the risk desk's: not filed into compliance cases
    categories: list[str] = Field(default_factory=lambda: ["aml", "fraud"], min_length=1)
    # the engine files new alerts into cases this often (0: only when the CLI or the page looks),
    # so that the compliance dashboard's case panels are current in Grafana too
    file_every_s: float = Field(default=30.0, ge=0, le=86400)


class SmtpSettings(_Strict):
    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(alias="from", pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[str] = Field(min_length=1)
    starttls: bool = False
    username: str = ""
    # the name of the environment variable holding the password (never the password itself)
    password_env: str = Field(default="", pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$")
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if "@" not in address or any(c.isspace() for c in address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _password_with_user(self) -> SmtpSettings:
        if self.password_env and not self.username:
            raise ValueError("password_env is set but username is not")
        return self


class NotifySettings(_Strict):
    """Notifications of new alerts at or above `min_severity` (pipelines/notify.py): a
    Slack/Teams-compatible JSON POST to `webhook_url` and/or an e-mail through `smtp`."""

    min_severity: Severity = "high"
    webhook_url: str = ""
    smtp: SmtpSettings | None = None
    categories: list[str] = Field(default_factory=lambda: ["aml", "fraud", "risk"], min_length=1)
    queue_size: int = Field(default=1000, ge=1, le=1_000_000,
                            description="alerts waiting to be sent; beyond, new ones are dropped (counted)")
    attempts: int = Field(default=5, ge=1, le=50, description="tries per alert and channel")
    backoff_s: float = Field(default=1.0, gt=0, le=300, description="first retry pause, doubling")
    max_backoff_s: float = Field(default=60.0, gt=0, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="per HTTP request")
    log_every_s: float = Field(default=60.0, gt=0, description="at most one failure log line this often")
    # alert ids already notified, one a line (restart-safe dedupe); default under the data dir
    state_file: str = ""
    dashboard_url: str = Field(default="", description="base URL of the page, for links to cases")

    @field_validator("webhook_url", "dashboard_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url) or self.smtp is not None
