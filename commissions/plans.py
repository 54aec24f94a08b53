"""Commission plans: versioned, effective-dated, validated (pydantic), and how one plan prices
one deal for one IB.

A plan has versions; the version in force for a deal is the one with the latest
`effective_from` at or before the deal's time (a deal before the first version earns nothing
under that plan). A version prices a deal as the sum of

- **per lot**: `per_lot[group] x lots`, `group` being the symbol's group (`fx_major`, `metal`,
  ...); a group the plan does not list earns nothing per lot;
- **share of the spread markup**: `markup_share x markup x units`, the markup in price units
  (the deal's own markup when the dataflow knows it, else the configured per-symbol markup
  in pips x pip size), converted from the symbol's quote currency;
- **share of the client's commission**: `commission_share x |deal.commission|`, converted from
  the account currency (platforms report the charge as a negative number);
- **flat per trade**: `flat_per_trade`;

then capped by `caps.per_trade`. All exact: rounding happens later, per row (`money`).

**Volume tiers.** `volume_tiers` raise the per-lot rates with the IB's lots this calendar month
(UTC) *before* the deal: the whole deal is priced at the tier reached before it, never split
across a tier boundary. A tier lists only the groups whose rate changes; the others keep the
rate of the tier below. The IB's monthly lots are the lots of every deal it currently has
commission rows for (its own clients' and its whole downline's, opening and closing sides).

**Charge.** `per_side`: every deal (opening and closing) is priced. `round_turn`: the rate is
for the round turn and is paid **on the closing deal only** (`out`, `out_by`, `inout`) for
the closing deal's lots — nothing on the opening deal, so nothing to reverse if the position
is never closed and no half cents from halving.

The deal-level rules - `distribution`, `charge`, `min_hold_seconds` and the exclusions that
stop a deal from earning anything - are read from the **direct IB's plan** (the governing
plan); in a differential chain each master's own plan still sets its own rate, tiers, caps
and exclusions for its own level.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from commissions.money import MONEY_CONTEXT, ZERO, RateFunction, convert
from commissions.tree import utc

Distribution = Literal["differential", "cascade"]
Charge = Literal["per_side", "round_turn"]
CLOSING_ENTRIES = frozenset({"out", "out_by", "inout"})


def _to_datetime(value: object) -> object:
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(0))
    return value


UtcDatetime = Annotated[datetime, BeforeValidator(_to_datetime), AfterValidator(utc)]
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Share = Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class VolumeTier(Strict):
    from_lots: Decimal = Field(gt=0, description="applies once the IB's lots this month reach this")
    per_lot: dict[str, Money] = Field(min_length=1, description="rates that change at this tier")


class Caps(Strict):
    per_trade: Money | None = Field(default=None, description="most a deal can earn under the plan")
    per_day: Money | None = Field(default=None, description="most one IB earns in a UTC day")
    per_month: Money | None = Field(default=None, description="most one IB earns in a UTC month")


class Exclusions(Strict):
    symbols: list[str] = Field(default_factory=list, description="canonical symbols; * and ? wildcards")
    symbol_groups: list[str] = Field(default_factory=list)
    account_groups: list[str] = Field(default_factory=list, description="platform groups; wildcards")


class PlanVersion(Strict):
    version: int = Field(ge=1)
    effective_from: UtcDatetime
    note: str = ""
    distribution: Distribution = "differential"
    charge: Charge = "per_side"
    per_lot: dict[str, Money] = Field(default_factory=dict, description="payout currency per lot")
    volume_tiers: list[VolumeTier] = Field(default_factory=list)
    markup_share: Share = ZERO
    commission_share: Share = ZERO
    flat_per_trade: Money = ZERO
    pass_up: Share = Field(default=ZERO, description="cascade: share of what this IB receives "
                           "that goes to its master")
    caps: Caps = Caps()
    min_hold_seconds: int = Field(default=0, ge=0)
    exclude: Exclusions = Exclusions()

    @model_validator(mode="after")
    def _tiers_grow(self) -> PlanVersion:
        previous = ZERO
        for i, tier in enumerate(self.volume_tiers):
            if tier.from_lots <= previous:
                raise ValueError(f"volume_tiers.{i}.from_lots must be above the tier before it "
                                 f"({previous})")
            previous = tier.from_lots
        return self

    def rates_at_tier(self, tier: int) -> dict[str, Decimal]:
        """Per-lot rates at volume tier `tier` (0 = no tier reached)."""
        rates = dict(self.per_lot)
        for step in self.volume_tiers[:tier]:
            rates.update(step.per_lot)
        return rates

    def tier_for(self, lots_so_far: Decimal) -> int:
        """The volume tier reached with `lots_so_far` (0 = below the first tier)."""
        return sum(1 for step in self.volume_tiers if lots_so_far >= step.from_lots)


class Plan(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    name: str = ""
    versions: list[PlanVersion] = Field(min_length=1)

    @model_validator(mode="after")
    def _versions_ordered(self) -> Plan:
        for i in range(1, len(self.versions)):
            before, this = self.versions[i - 1], self.versions[i]
            if this.version <= before.version:
                raise ValueError(f"versions.{i}.version: must be above the version before it "
                                 f"({before.version})")
            if this.effective_from <= before.effective_from:
                raise ValueError(f"versions.{i}.effective_from: must be after version "
                                 f"{before.version}'s ({before.effective_from.isoformat()})")
        return self

    def at(self, moment: datetime) -> PlanVersion | None:
        """The version in force at `moment`, or None before the first one."""
        found = None
        for version in self.versions:
            if version.effective_from <= moment:
                found = version
        return found


# -- pricing ------------------------------------------------------------------------------


@dataclass(frozen=True)  # held in snapshotted state: pickles faster without slots
class DealFacts:
    """What a plan needs to know about a deal (resolved once per deal version)."""

    symbol: str
    group: str
    account_group: str
    entry: str
    lots: Decimal
    units: Decimal
    client_commission: Decimal  # size of the client's charge, account currency
    account_currency: str
    markup: Decimal  # price units per unit of the symbol (0 when unknown)
    quote_currency: str | None
    time: datetime


@dataclass(frozen=True, slots=True)
class Priced:
    """One plan's amount for one deal (exact, payout currency)."""

    amount: Decimal
    rate: Decimal
    volume_tier: int
    capped: bool
    basis: str


def excluded_by(version: PlanVersion, facts: DealFacts) -> str:
    """Why the plan version refuses the deal, or "" if it does not."""
    ex = version.exclude
    if any(fnmatchcase(facts.symbol, pattern) for pattern in ex.symbols):
        return f"symbol {facts.symbol} excluded"
    if facts.group in ex.symbol_groups:
        return f"symbol group {facts.group} excluded"
    if facts.account_group and any(fnmatchcase(facts.account_group, p) for p in ex.account_groups):
        return f"account group {facts.account_group} excluded"
    return ""


def pays_on(version: PlanVersion, entry: str) -> bool:
    """Whether the plan pays on a deal with this entry (round turn: closing deals only)."""
    return version.charge == "per_side" or entry in CLOSING_ENTRIES


def _num(value: Decimal) -> str:
    """A number for the basis text, without trailing zeros: 1.00 -> "1", 0.50 -> "0.5"."""
    return f"{value.normalize():f}"


def price(
    plan_id: str,
    version: PlanVersion,
    facts: DealFacts,
    lots_so_far: Decimal,
    currency: str,
    rate: RateFunction,
) -> Priced:
    """The plan's exact amount for the deal, for an IB with `lots_so_far` lots this month.

    Raises `money.MissingRate` when a currency cannot be converted, and `PricingError` when the
    markup is needed but the symbol's quote currency is unknown.
    """
    label = f"{plan_id} v{version.version}"
    reason = excluded_by(version, facts)
    if reason:
        return Priced(ZERO, ZERO, 0, False, f"{label}: {reason}")
    tier = version.tier_for(lots_so_far)
    per_lot_rate = version.rates_at_tier(tier).get(facts.group, ZERO)
    parts: list[str] = []
    with localcontext(MONEY_CONTEXT):
        amount = per_lot_rate * facts.lots
        tier_note = f" tier {tier}" if tier else ""
        parts.append(f"{_num(facts.lots)} lots x {_num(per_lot_rate)} ({facts.group}{tier_note})")
        if version.markup_share and facts.markup:
            if facts.quote_currency is None:
                raise PricingError(f"symbol {facts.symbol}: quote currency unknown (set "
                                   f"symbols.{facts.symbol}.quote_currency)")
            spread = convert(facts.markup * facts.units, facts.quote_currency, currency, facts.time, rate)
            amount += version.markup_share * spread
            parts.append(f"{_num(version.markup_share * 100)}% of markup {_num(spread)}")
        if version.commission_share and facts.client_commission:
            charged = convert(facts.client_commission, facts.account_currency, currency, facts.time, rate)
            amount += version.commission_share * charged
            parts.append(f"{_num(version.commission_share * 100)}% of client commission {_num(charged)}")
        if version.flat_per_trade:
            amount += version.flat_per_trade
            parts.append(f"flat {_num(version.flat_per_trade)}")
    capped = version.caps.per_trade is not None and amount > version.caps.per_trade
    if capped and version.caps.per_trade is not None:
        amount = version.caps.per_trade
    basis = f"{label}: " + " + ".join(parts)
    if capped:
        basis += f", capped per trade at {_num(amount)}"
    else:
        basis += f" = {_num(amount)}"
    return Priced(amount, per_lot_rate, tier, capped, basis)


class PricingError(ValueError):
    """A deal the plan cannot price with the configuration it has."""

