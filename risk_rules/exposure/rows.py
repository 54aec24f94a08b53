"""What an exposure snapshot holds: rows for the `positions`, `exposure` and
`currency_exposure` tables, and the views the risk desk reads beside them.

Table rows are `Canonical` records (frozen pydantic models, like the canonical events), so
`pipelines.tables` can map them to columns the same way. Every Decimal in them is rounded to
8 dp (half-even). A value that needs a price or rate nobody has quoted yet is None, and the
snapshot's `missing` says what was missing: never a silent zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from schemas.events import Canonical

_FIELD_NAMES: dict[type, frozenset[str]] = {}


class _Row(Canonical):
    """A table row; `trusted` (the fast constructor) with the field names cached."""

    @classmethod
    def _field_names(cls) -> set[str]:
        names = _FIELD_NAMES.get(cls)
        if names is None:
            names = _FIELD_NAMES[cls] = frozenset(cls.model_fields)
        return set(names)


class PositionRow(_Row):
    """One position (open, or just closed with `is_deleted`)."""

    position_key: str  # account_key:position ref (position id in hedging, symbol in netting)
    tenant: str
    platform: str
    server: str
    login: int
    account_key: str
    group: str
    book: str
    mode: str  # hedging / netting
    position_id: str
    symbol: str
    side: str  # buy / sell ("" once closed)
    lots: Decimal
    units: Decimal
    open_price: Decimal  # volume-weighted average
    mark_price: Decimal | None  # bid for a long, ask for a short
    mark_source: str  # own / canonical / other_server feed (see conversion.PriceBook.mark); "" no price
    profit_currency: str
    floating_pnl: Decimal | None  # in the profit (quote) currency
    account_currency: str
    floating_pnl_account: Decimal | None
    floating_pnl_usd: Decimal | None
    notional_usd: Decimal | None  # units x mid, in USD (positive)
    realised_pnl: Decimal  # sum of the position's deals' profit+swap+commission+fee, account ccy
    gross_pnl: Decimal  # computed from prices over the closed volume, profit currency
    opened_at: datetime | None
    updated_at: datetime  # event time of its latest deal
    incomplete: bool  # a close found less open than it closed (history before the data)
    as_of: datetime
    version: int  # as_of in epoch milliseconds
    is_deleted: bool  # closed: no longer open


class ExposureRow(_Row):
    """Net position of the clients (or, in `broker_exposure`, of the broker) on one symbol in
    one book of one tenant."""

    tenant: str
    book: str
    symbol: str
    net_lots: Decimal
    net_units: Decimal
    net_notional_usd: Decimal | None  # net units x mid price, in USD
    floating_pnl_usd: Decimal | None  # longs marked at bid, shorts at ask
    as_of: datetime


class CurrencyExposureRow(_Row):
    """Net amount held in one currency (or metal, or crypto asset) in one book of one tenant."""

    tenant: str
    book: str
    currency: str
    net_amount: Decimal | None
    net_usd: Decimal | None
    as_of: datetime


@dataclass(frozen=True, slots=True)
class ExposureAggregate:
    """Exposure rolled up along chosen dimensions; the others are None."""

    tenant: str | None
    server: str | None
    group: str | None
    book: str | None
    symbol: str | None
    positions: int
    long_lots: Decimal
    short_lots: Decimal
    net_lots: Decimal
    net_units: Decimal | None  # None when units of different symbols would be added
    net_notional_usd: Decimal | None
    gross_notional_usd: Decimal | None
    floating_pnl_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class AccountExposure:
    """One account's open exposure, in USD."""

    tenant: str
    account_key: str
    login: int
    group: str
    book: str
    positions: int
    gross_notional_usd: Decimal | None
    floating_pnl_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class ExposureSnapshot:
    as_of: datetime
    positions: list[PositionRow]
    exposure: list[ExposureRow]
    currency_exposure: list[CurrencyExposureRow]
    # The broker's own exposure: minus the clients' times each book's B-book share.
    broker_exposure: list[ExposureRow]
    broker_currency_exposure: list[CurrencyExposureRow]
    top_exposure: list[AccountExposure] = field(default_factory=list)  # largest gross notional
    top_profit: list[AccountExposure] = field(default_factory=list)  # largest floating profit
    top_loss: list[AccountExposure] = field(default_factory=list)  # largest floating loss
    missing: list[str] = field(default_factory=list)  # prices / rates that were needed, unknown
