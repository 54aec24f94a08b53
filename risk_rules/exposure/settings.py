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
    positions_revalue_s: float = Field(
        default=10, gt=0, description="event-time seconds between rewrites of every position's "
        "mark-to-market in `positions` (a deal's position is rewritten at the next snapshot; the "
        "exposure tables follow every price at each snapshot)")
    keep_closed_minutes: float = Field(
        default=60, gt=0, description="a closed position and its deals are kept this long (event time) "
        "for dealer corrections; a later correction of one of its deals is applied from the stored "
        "deal history when the account stage has one, else reported (`correction_issues` and a "
        "`correction.unapplied` alert)")
    routing: BookRouting = BookRouting()
    modes: AccountModes = AccountModes()
    limits: LimitsConfig = LimitsConfig()
    margin: MarginConfig = MarginConfig()
