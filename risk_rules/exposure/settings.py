"""The `exposure` section of the configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from risk_rules.exposure.limits import LimitsConfig
from risk_rules.exposure.margin import MarginConfig
from risk_rules.exposure.routing import AccountModes, BookRouting


class ExposureSettings(BaseModel):
    """The `exposure` section of the configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    snapshot_interval_s: float = Field(default=1.0, gt=0, description="event-time seconds")
    routing: BookRouting = BookRouting()
    modes: AccountModes = AccountModes()
    limits: LimitsConfig = LimitsConfig()
    margin: MarginConfig = MarginConfig()
