"""Margin of an account, and margin-call / stop-out events with recovery.

- equity = balance + credit + floating P&L (account currency);
- used margin, per position: currency pairs (FX, metals, crypto) units x price in the account
  currency / leverage; CFDs units x price x their margin rate when the instrument has one, else
  the same formula as FX. Hedged volume (long and short on one symbol) counts as configured:
  the larger leg (default, as MT5's "larger leg" and cTrader do), the sum of both, or the net;
- margin level = equity / margin x 100 (none while no margin is used);
- a level at or below the margin-call level (default 100 %) is a margin call, at or below the
  stop-out level (default 50 %) a stop out. Each crossing emits one event; leaving a state
  needs the level to rise above it by `recovery_buffer` points (default 0), so a level
  hovering at the threshold does not flap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from risk_rules.exposure.instruments import Instrument
from risk_rules.exposure.money import EXACT, q8, q8_or_none

MarginState = Literal["normal", "margin_call", "stop_out"]
HedgedMargin = Literal["larger_leg", "sum", "net"]
HUNDRED = Decimal(100)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MarginLevels(_Strict):
    margin_call: Decimal = Field(default=Decimal(100), gt=0, description="margin level %, at or below")
    stop_out: Decimal = Field(default=Decimal(50), ge=0, description="margin level %, at or below")
    recovery_buffer: Decimal = Field(
        default=Decimal(0), ge=0, description="points above a level needed to leave its state"
    )

    @model_validator(mode="after")
    def _ordered(self) -> MarginLevels:
        if self.stop_out > self.margin_call:
            raise ValueError(f"stop_out ({self.stop_out}) must not be above margin_call ({self.margin_call})")
        return self


class GroupMarginLevels(MarginLevels):
    group: str = Field(default="*", description="shell-style pattern on the account group")
    tenant: str | None = None
    server: str | None = None


class MarginConfig(_Strict):
    version: str = "1"
    default: MarginLevels = MarginLevels()
    groups: list[GroupMarginLevels] = Field(default_factory=list, description="first match wins")
    hedged_margin: HedgedMargin = "larger_leg"
    default_leverage: int | None = Field(
        default=None, gt=0, description="used while an account's leverage is unknown"
    )

    def levels_for(self, tenant: str, server: str, group: str) -> MarginLevels:
        for rule in self.groups:
            if ((rule.tenant is None or rule.tenant == tenant)
                    and (rule.server is None or rule.server == server)
                    and fnmatchcase(group, rule.group)):
                return rule
        return self.default


def margin_units(long_units: Decimal, short_units: Decimal, hedged: HedgedMargin) -> Decimal:
    """The units of one symbol that need margin, long and short volume together."""
    if hedged == "sum":
        return EXACT.add(long_units, short_units)
    if hedged == "net":
        return abs(EXACT.subtract(long_units, short_units))
    return max(long_units, short_units)


def position_margin(units: Decimal, price: Decimal, instrument: Instrument, leverage: int,
                    quote_to_account: Decimal) -> Decimal:
    """Margin for `units` at `price` (quote currency), in the account currency (unrounded)."""
    notional = EXACT.multiply(EXACT.multiply(units, price), quote_to_account)
    if instrument.margin_rate is not None and not instrument.is_currency_pair:
        return EXACT.multiply(notional, instrument.margin_rate)
    return EXACT.divide(notional, Decimal(leverage))


def margin_level(equity: Decimal, margin: Decimal) -> Decimal | None:
    """equity / margin x 100, or None while no margin is used."""
    if not margin:
        return None
    return EXACT.divide(EXACT.multiply(equity, HUNDRED), margin)


@dataclass(frozen=True, slots=True)
class MarginStatus:
    """An account's equity and margin at one moment. Money in the account currency, 8 dp.
    `complete` is False when a price or rate was missing: the numbers are then not used for
    events (and `missing` says what was missing)."""

    account_key: str
    tenant: str
    server: str
    login: int
    group: str
    currency: str
    leverage: int
    balance: Decimal | None
    credit: Decimal
    floating_pnl: Decimal | None
    equity: Decimal | None
    margin: Decimal | None
    free_margin: Decimal | None
    margin_level: Decimal | None
    complete: bool
    missing: tuple[str, ...]
    as_of: datetime

    @classmethod
    def compute(cls, *, account_key: str, tenant: str, server: str, login: int, group: str,
                currency: str, leverage: int, balance: Decimal | None, credit: Decimal,
                floating_pnl: Decimal | None, margin: Decimal | None, missing: tuple[str, ...],
                as_of: datetime) -> MarginStatus:
        equity = None
        if balance is not None and floating_pnl is not None:
            equity = EXACT.add(EXACT.add(balance, credit), floating_pnl)
        level = margin_level(equity, margin) if equity is not None and margin is not None else None
        free = EXACT.subtract(equity, margin) if equity is not None and margin is not None else None
        complete = equity is not None and margin is not None and not missing
        return cls(
            account_key, tenant, server, login, group, currency, leverage, q8_or_none(balance),
            q8(credit), q8_or_none(floating_pnl), q8_or_none(equity), q8_or_none(margin),
            q8_or_none(free), q8_or_none(level), complete, missing, as_of,
        )


@dataclass(frozen=True, slots=True)
class MarginEvent:
    """A crossing of a margin level, with the numbers compared."""

    event_id: str
    kind: Literal["margin_call", "stop_out", "margin_recovered"]
    account_key: str
    tenant: str
    server: str
    login: int
    group: str
    previous_state: MarginState
    state: MarginState
    margin_level: Decimal | None
    threshold: Decimal  # the level the margin level was compared with
    equity: Decimal | None
    margin: Decimal | None
    currency: str
    config_version: str
    as_of: datetime


@dataclass(frozen=True, slots=True)
class MarginCall(MarginEvent):
    pass


@dataclass(frozen=True, slots=True)
class StopOut(MarginEvent):
    pass


@dataclass(frozen=True, slots=True)
class MarginRecovered(MarginEvent):
    pass


def classify(level: Decimal | None, current: MarginState, levels: MarginLevels) -> MarginState:
    """The state a margin level puts an account in, given the state it is in (hysteresis)."""
    if level is None:
        return "normal"
    buffer = levels.recovery_buffer
    stop_out = levels.stop_out + buffer if current == "stop_out" else levels.stop_out
    margin_call = levels.margin_call + buffer if current != "normal" else levels.margin_call
    if level <= stop_out:
        return "stop_out"
    if level <= margin_call:
        return "margin_call"
    return "normal"


class MarginMonitor:
    """Margin state per account; `evaluate` returns the events of a state change."""

    def __init__(self, config: MarginConfig | None = None) -> None:
        self.config = config if config is not None else MarginConfig()
        self._state: dict[str, MarginState] = {}

    def state(self, account_key: str) -> MarginState:
        return self._state.get(account_key, "normal")

    def watched(self) -> list[str]:
        """Accounts not in the normal state."""
        return [key for key, state in self._state.items() if state != "normal"]

    def evaluate(self, status: MarginStatus) -> list[MarginEvent]:
        if not status.complete:
            return []  # the numbers are not known: hold the state
        levels = self.config.levels_for(status.tenant, status.server, status.group)
        current = self.state(status.account_key)
        new = classify(status.margin_level, current, levels)
        if new == current:
            return []
        if new == "normal":
            self._state.pop(status.account_key, None)
        else:
            self._state[status.account_key] = new
        event_type: type[MarginEvent]
        kind: Literal["margin_call", "stop_out", "margin_recovered"]
        if new == "stop_out":
            event_type, kind, threshold = StopOut, "stop_out", levels.stop_out
        elif new == "margin_call" and current == "normal":
            event_type, kind, threshold = MarginCall, "margin_call", levels.margin_call
        else:
            event_type, kind = MarginRecovered, "margin_recovered"
            threshold = levels.stop_out if new == "margin_call" else levels.margin_call
            threshold = threshold + levels.recovery_buffer
        ms = int(status.as_of.timestamp() * 1000)
        return [event_type(
            event_id=f"margin:{status.account_key}:{kind}:{new}:{ms}",
            kind=kind,
            account_key=status.account_key,
            tenant=status.tenant,
            server=status.server,
            login=status.login,
            group=status.group,
            previous_state=current,
            state=new,
            margin_level=status.margin_level,
            threshold=threshold,
            equity=status.equity,
            margin=status.margin,
            currency=status.currency,
            config_version=self.config.version,
            as_of=status.as_of,
        )]
