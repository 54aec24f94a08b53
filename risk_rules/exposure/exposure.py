"""Live exposure and P&L: the `ExposureEngine`.

Fed deals, quotes, accounts and balance operations in event-time order, it keeps each
account's positions (`PositionBook`) and, incrementally, what they add up to. The per-event
work is small and does not grow with the number of positions:

- a deal changes one position (a correction: the positions it belongs to); the engine takes
  that position's previous contribution out of the aggregates and puts the new one in;
- a quote replaces one price;
- aggregates hold, per (tenant, server, group, book, symbol) and per (account, symbol), the
  long and short lots, units and cost (units x average open price). Floating P&L is linear in
  them - longs: units x bid - cost, shorts: cost - units x ask - so valuing an aggregate at
  snapshot time gives exactly the sum of its positions' floating P&L.

`snapshot(as_of)` values the aggregates with the latest prices and rates into table rows
(`positions`, `exposure`, `currency_exposure`) plus the broker's own exposure and top lists.
Its cost is in the number of aggregates (symbols x groups), plus the positions it is asked to
list: all open ones, or only those changed since the previous snapshot.

Currency exposure: a currency pair (FX, metal, crypto) splits into its base leg (+units of
EUR for a long EURUSD) and its quote leg (-units x average open price of USD: the quote
currency the trade paid), so a long EURUSD and a long EURJPY add up in EUR. Valued at mid, the
two legs of a pair sum to its floating P&L. A CFD (index, commodity, stock) holds no currency
but its floating P&L, in its quote currency (GER40: EUR).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Literal, NamedTuple

from risk_rules.exposure.conversion import MarkSource, MissingRate, Price, PriceBook, Rates
from risk_rules.exposure.instruments import Instrument, InstrumentLookup, InstrumentTable, UnknownInstrument
from risk_rules.exposure.limits import LimitEvent, LimitMonitor, LimitsConfig
from risk_rules.exposure.margin import (
    MarginConfig,
    MarginEvent,
    MarginMonitor,
    MarginStatus,
    margin_units,
    position_margin,
)
from risk_rules.exposure.money import EXACT, NO_MONEY, ZERO, q8, q8_or_none
from risk_rules.exposure.positions import (
    CorrectionIssue,
    DealHistory,
    PositionBook,
    PositionChange,
    PositionKey,
    PositionState,
)
from risk_rules.exposure.routing import AccountModes, BookRouting
from risk_rules.exposure.rows import (
    AccountExposure,
    CurrencyExposureRow,
    ExposureAggregate,
    ExposureRow,
    ExposureSnapshot,
    PositionRow,
)
from schemas.chunked import ChunkedDict
from schemas.events import Account, BalanceOperation, CanonicalRecord, Deal, Quote
from schemas.identity import account_key_of

USD = "USD"
GroupKey = tuple[str, str, str, str, str, str]  # (tenant, server, group, book, symbol, feed)
Feed = tuple[str, str]  # (canonical symbol, platform symbol): one price feed on the account's server
DIMENSIONS = ("tenant", "server", "group", "book", "symbol")
PositionsWanted = Literal["all", "changed", "traded", "none"]
CREDIT_KINDS = frozenset({"credit", "so_compensation_credit"})
TRADING_PLATFORMS = frozenset({"mt4", "mt5", "ctrader"})


@dataclass(slots=True)
class _Agg:
    """Open volume and cost of some positions on one symbol, long and short apart."""

    long_lots: Decimal = ZERO
    long_units: Decimal = ZERO
    long_cost: Decimal = ZERO
    short_lots: Decimal = ZERO
    short_units: Decimal = ZERO
    short_cost: Decimal = ZERO
    positions: int = 0

    def add(self, c: _Contribution) -> None:
        if c.long:
            self.long_lots += c.lots
            self.long_units += c.units
            self.long_cost += c.cost
        else:
            self.short_lots += c.lots
            self.short_units += c.units
            self.short_cost += c.cost
        self.positions += 1

    def subtract(self, c: _Contribution) -> None:
        if c.long:
            self.long_lots -= c.lots
            self.long_units -= c.units
            self.long_cost -= c.cost
        else:
            self.short_lots -= c.lots
            self.short_units -= c.units
            self.short_cost -= c.cost
        self.positions -= 1


class _Contribution(NamedTuple):
    """What one open position adds to the aggregates."""

    group_key: GroupKey
    account_key: str
    symbol: str
    feed: str  # platform symbol
    long: bool
    lots: Decimal
    units: Decimal
    cost: Decimal


@dataclass(slots=True)
class _AccountInfo:
    account_key: str
    tenant: str
    platform: str
    server: str
    login: int
    group: str = ""
    currency: str = ""
    leverage: int = 0
    balance: Decimal | None = None
    credit: Decimal | None = None
    reported_at: datetime | None = None  # event time of the account state balance came from
    # money moved after reported_at: (time, amount, is credit)
    adjustments: list[tuple[datetime, Decimal, bool]] = field(default_factory=list)
    ops: dict[str, tuple[int, Decimal, bool, datetime]] = field(default_factory=dict)

    def adjust(self, time: datetime, amount: Decimal, credit: bool = False) -> None:
        """Money moved at `time`. Kept only after a reported balance (which includes what came
        before it), so the list holds what happened between two account reports."""
        if amount and self.reported_at is not None and time > self.reported_at:
            self.adjustments.append((time, amount, credit))

    def balance_now(self) -> Decimal | None:
        if self.balance is None:
            return None
        return sum((a for _, a, c in self.adjustments if not c), self.balance)

    def credit_now(self) -> Decimal:
        return sum((a for _, a, c in self.adjustments if c), self.credit or ZERO)


@dataclass(slots=True)
class _Valued:
    net_lots: Decimal
    net_units: Decimal
    floating_quote: Decimal | None
    floating_usd: Decimal | None
    notional_usd: Decimal | None
    gross_notional_usd: Decimal | None
    legs: list[tuple[str, Decimal | None]]


def _add_opt(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a + b


def _mul_opt(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a * b


class _Market(NamedTuple):
    price: Price | None
    instrument: Instrument | None
    to_usd: Decimal | None  # quote currency -> USD
    source: MarkSource = "own"


class _Valuer:
    """Prices, rates and instruments for one snapshot, cached, with what was missing."""

    def __init__(self, prices: PriceBook, rates: Rates, instruments: InstrumentLookup) -> None:
        self._prices = prices
        self._rates = rates
        self._instruments = instruments
        self._rate_cache: dict[tuple[str, str], Decimal | None] = {}
        self._inst_cache: dict[str, Instrument | None] = {}
        self._market_cache: dict[tuple[str, str, str], _Market] = {}
        self.missing: set[str] = set()

    def instrument(self, symbol: str) -> Instrument | None:
        if symbol not in self._inst_cache:
            try:
                self._inst_cache[symbol] = self._instruments.instrument(symbol)
            except UnknownInstrument as exc:
                self.missing.add(str(exc))
                self._inst_cache[symbol] = None
        return self._inst_cache[symbol]

    def rate(self, from_ccy: str, to_ccy: str) -> Decimal | None:
        key = (from_ccy, to_ccy)
        if key not in self._rate_cache:
            try:
                self._rate_cache[key] = self._rates.rate(from_ccy, to_ccy)
            except MissingRate as exc:
                self.missing.add(str(exc))
                self._rate_cache[key] = None
        return self._rate_cache[key]

    def market(self, server: str, symbol: str, feed: str = "") -> _Market:
        """Price (of the feed `feed` on `server`, or its documented fallback), instrument and
        quote-currency-to-USD rate of a symbol (cached)."""
        key = (server, feed or symbol, symbol)
        market = self._market_cache.get(key)
        if market is None:
            inst = self.instrument(symbol)
            to_usd = self.rate(inst.quote, USD) if inst is not None else None
            price, source = self._prices.mark(server, feed or symbol, symbol)
            if price is None:
                self.missing.add(f"no quote for {symbol}")
            market = self._market_cache[key] = _Market(price, inst, to_usd, source)
        return market

    def floating(self, server: str, symbol: str, agg: _Agg, price: Price | None) -> Decimal | None:
        """Floating P&L of an aggregate in its quote currency: longs at bid, shorts at ask."""
        if price is None:
            return None
        total = ZERO
        if agg.long_units:
            if price.bid is None:
                self.missing.add(f"no bid price for {symbol} on {server}")
                return None
            total += agg.long_units * price.bid - agg.long_cost
        if agg.short_units:
            if price.ask is None:
                self.missing.add(f"no ask price for {symbol} on {server}")
                return None
            total += agg.short_cost - agg.short_units * price.ask
        return total

    def value(self, server: str, symbol: str, agg: _Agg, feed: str = "") -> _Valued:
        price, inst, to_usd, _source = self.market(server, symbol, feed)
        net_lots = agg.long_lots - agg.short_lots
        net_units = agg.long_units - agg.short_units
        floating = self.floating(server, symbol, agg, price)
        mid = price.mid if price is not None else None
        legs: list[tuple[str, Decimal | None]] = []
        if inst is not None:
            if inst.is_currency_pair:
                legs = [(inst.base, net_units), (inst.quote, agg.short_cost - agg.long_cost)]
            else:
                legs = [(inst.quote, floating)]
        return _Valued(
            net_lots=net_lots,
            net_units=net_units,
            floating_quote=floating,
            floating_usd=_mul_opt(floating, to_usd),
            notional_usd=_mul_opt(_mul_opt(net_units, mid), to_usd),
            gross_notional_usd=_mul_opt(_mul_opt(agg.long_units + agg.short_units, mid), to_usd),
            legs=legs,
        )


class ExposureEngine:
    """Positions, exposure, P&L, limits and margin of every account it is fed."""

    def __init__(
        self,
        *,
        instruments: InstrumentLookup | None = None,
        routing: BookRouting | None = None,
        modes: AccountModes | None = None,
        limits: LimitsConfig | None = None,
        margin: MarginConfig | None = None,
        pivots: tuple[str, ...] = (USD,),
    ) -> None:
        self.instruments: InstrumentLookup = instruments if instruments is not None else InstrumentTable()
        self.routing = routing if routing is not None else BookRouting()
        self.modes = modes if modes is not None else AccountModes()
        self.prices = PriceBook()
        self.rates = Rates(self.instruments, pivots)
        self.limits = LimitMonitor(limits)
        self.margin = MarginMonitor(margin)
        self._books: dict[str, PositionBook] = {}
        # where pruned positions' deals are read back from (None: late corrections are reported)
        self.history: DealHistory | None = None
        self.correction_issues: list[CorrectionIssue] = []  # drained by `take_correction_issues`
        self._accounts: dict[str, _AccountInfo] = {}
        # every open position of the tenant: chunked, so a snapshot re-pickles what changed
        self._contrib: ChunkedDict[PositionKey, _Contribution] = ChunkedDict()
        self._open: ChunkedDict[PositionKey, PositionState] = ChunkedDict()
        self._groups: dict[GroupKey, _Agg] = {}
        self._by_account: dict[str, dict[Feed, _Agg]] = {}
        self._book_cache: dict[tuple[str, str], str] = {}
        # what changed since the last snapshot listing changed positions
        self._dirty: set[PositionKey] = set()
        self._closed: dict[PositionKey, PositionState] = {}
        self._dirty_symbols: set[str] = set()
        self._dirty_currencies: set[str] = set()
        # what changed since the last margin check: only the accounts it touches are recomputed
        self._pivots = pivots
        self._margin_dirty: set[str] = set()  # positions, balance, credit, leverage, currency, group
        self._quoted: dict[str, set[str]] = {}  # canonical symbol -> servers that quoted it
        self._quoted_pairs: set[frozenset[str]] = set()  # currency pairs quoted (rates)
        self._holders: dict[str, set[str]] = {}  # canonical symbol -> accounts holding it
        self._needs: dict[str, frozenset[tuple[str, str]]] = {}  # account -> (quote, account ccy)
        self._rate_users: dict[tuple[str, str], set[str]] = {}  # (quote, account ccy) -> accounts

    # ---- input ---------------------------------------------------------------------------------

    def apply(self, record: CanonicalRecord) -> list[PositionChange]:
        """Any canonical record: deals, quotes, accounts and balance operations are used."""
        if isinstance(record, Deal):
            return self.on_deal(record)
        if isinstance(record, Quote):
            self.on_quote(record)
        elif isinstance(record, Account):
            return self.on_account(record)
        elif isinstance(record, BalanceOperation):
            self.on_balance_operation(record)
        return []

    def on_deal(self, deal: Deal) -> list[PositionChange]:
        account_key = account_key_of(deal)
        book = self._books.get(account_key)
        if book is None:
            book = self._new_book(account_key, deal)
        changes, issues = book.apply_late(deal, self.history)
        self.correction_issues += issues
        if changes:
            with localcontext(EXACT):
                for change in changes:
                    self._fold(change)
        return changes

    def _new_book(self, account_key: str, deal: Deal) -> PositionBook:
        info = self._account(account_key, deal.tenant, deal.platform, deal.server, deal.login)
        if not info.currency:
            info.currency = deal.currency
        mode = self.modes.mode_for(tenant=deal.tenant, server=deal.server, platform=deal.platform,
                                   group=info.group, account_key=account_key, login=deal.login)
        book = self._books[account_key] = PositionBook(account_key, mode, info.group)
        return book

    def on_quote(self, quote: Quote) -> None:
        price = self.prices.update(quote.server, quote.symbol, quote.bid, quote.ask, quote.time,
                                   quote.platform_symbol)
        self._dirty_symbols.add(quote.symbol)
        servers = self._quoted.get(quote.symbol)
        if servers is None:
            servers = self._quoted[quote.symbol] = set()
        servers.add(quote.server)
        if self.rates.set_price(quote.symbol, price):  # one feed's bid and ask, never two
            pair = self.rates.pair_of(quote.symbol)
            if pair is not None:
                self._dirty_currencies.update(c for c in pair if c != USD)
                self._quoted_pairs.add(frozenset(pair))

    def on_account(self, account: Account) -> list[PositionChange]:
        """Group, currency, leverage, balance and credit of an account. A new group re-routes
        its positions (book, netting/hedging mode)."""
        info = self._account(account.account_key, account.tenant, account.platform, account.server,
                             account.login)
        self._margin_dirty.add(account.account_key)
        if account.currency:
            info.currency = account.currency
        if account.leverage:
            info.leverage = account.leverage
        if account.balance is not None or account.credit is not None:
            if account.balance is not None:
                info.balance = account.balance
            if account.credit is not None:
                info.credit = account.credit
            info.reported_at = account.updated_at
            info.adjustments = [a for a in info.adjustments if a[0] > account.updated_at]
            info.ops = {k: v for k, v in info.ops.items() if v[3] > account.updated_at}
        changes: list[PositionChange] = []
        if account.group != info.group:
            info.group = account.group
            book = self._books.get(account.account_key)
            if book is not None:
                changes += book.set_group(account.group)
                mode = self.modes.mode_for(tenant=account.tenant, server=account.server,
                                           platform=account.platform, group=account.group,
                                           account_key=account.account_key, login=account.login)
                changes += book.set_mode(mode)
        with localcontext(EXACT):
            for change in changes:
                self._fold(change)
        return changes

    def on_balance_operation(self, op: BalanceOperation) -> None:
        """Money in or out of a trading account after its last reported balance."""
        if op.platform not in TRADING_PLATFORMS:
            return  # payment-provider records: the platform's own operation moves the balance
        info = self._account(account_key_of(op), op.tenant, op.platform,
                             op.server, op.login)
        if info.reported_at is None or op.time <= info.reported_at:
            return  # the next (or last) reported balance includes it
        held = info.ops.get(op.op_key)
        if held is not None and op.version <= held[0]:
            return
        self._margin_dirty.add(info.account_key)
        credit = op.kind in CREDIT_KINDS
        amount = ZERO if op.is_deleted or op.status != "completed" else op.amount
        with localcontext(EXACT):
            if held is not None:
                info.adjust(held[3], -held[1], held[2])
            info.adjust(op.time, amount, credit)
        info.ops[op.op_key] = (op.version, amount, credit, op.time)

    def on_position_change(self, change: PositionChange) -> None:
        """Fold a position change in (for position books kept elsewhere, e.g. keyed by account:
        what `on_deal` does after `PositionBook.apply`)."""
        with localcontext(EXACT):
            self._fold(change)

    def _fold(self, change: PositionChange) -> None:
        after = change.after
        before = change.before
        if before is None:  # `booked`: a reopened position's realised restarts, the balance not
            realised = after.booked.total if after.booked is not NO_MONEY else ZERO
        elif after.booked is not before.booked:
            realised = change.realised.total
        else:
            realised = ZERO
        if realised and change.time is not None:
            info = self._accounts.get(after.account_key)
            if info is None:
                info = self._account(after.account_key, after.tenant, after.platform, after.server,
                                     after.login)
            info.adjust(change.time, realised)
        self._margin_dirty.add(after.account_key)
        key = after.key
        old = self._contrib.pop(key, None)
        if old is not None:
            self._remove(old)
        self._dirty.add(key)
        if after.signed_units:
            if after.account_key not in self._accounts:
                self._account(after.account_key, after.tenant, after.platform, after.server, after.login)
            contribution = self._contribution(after)
            self._contrib[key] = contribution
            self._insert(contribution)
            self._open[key] = after
            self._closed.pop(key, None)
        elif self._open.pop(key, None) is not None or before is not None:
            self._closed[key] = after

    def set_routing(self, routing: BookRouting) -> None:
        """New book routing: every open position is re-routed."""
        self.routing = routing
        self._book_cache.clear()
        with localcontext(EXACT):
            for key, state in self._open.items():
                old = self._contrib[key]
                self._remove(old)
                new = self._contribution(state)
                self._contrib[key] = new
                self._insert(new)
                self._dirty.add(key)

    def take_correction_issues(self) -> list[CorrectionIssue]:
        """Corrections that could not be applied since the last call (see `PositionBook.apply_late`)."""
        issues, self.correction_issues = self.correction_issues, []
        return issues

    def prune(self, before: datetime) -> int:
        """Forget positions closed before `before` (see `PositionBook.prune`)."""
        return sum(book.prune(before) for book in self._books.values())

    # ---- aggregates ----------------------------------------------------------------------------

    def _account(self, account_key: str, tenant: str, platform: str, server: str, login: int) -> _AccountInfo:
        info = self._accounts.get(account_key)
        if info is None:
            info = self._accounts[account_key] = _AccountInfo(account_key, tenant, platform, server, login)
        return info

    def book_of(self, state: PositionState) -> str:
        """The book a position's flow goes to (routing by its account and group)."""
        return self._route(state.account_key, state.tenant, state.server, state.platform, state.group,
                           state.login)

    def _route(self, account_key: str, tenant: str, server: str, platform: str, group: str,
               login: int) -> str:
        key = (account_key, group)
        book = self._book_cache.get(key)
        if book is None:
            book = self._book_cache[key] = self.routing.book_for(
                tenant=tenant, server=server, platform=platform, group=group, account_key=account_key,
                login=login,
            )
        return book

    def _contribution(self, state: PositionState) -> _Contribution:
        book = self._book_cache.get((state.account_key, state.group))
        if book is None:
            book = self.book_of(state)
        units = state.signed_units
        feed = state.platform_symbol or state.symbol
        return _Contribution(
            (state.tenant, state.server, state.group, book, state.symbol, feed),
            state.account_key,
            state.symbol,
            feed,
            units > 0,
            abs(state.signed_lots),
            abs(units),
            abs(units) * state.avg_price,
        )

    def _insert(self, c: _Contribution) -> None:
        agg = self._groups.get(c.group_key)
        if agg is None:
            agg = self._groups[c.group_key] = _Agg()
        agg.add(c)
        per_symbol = self._by_account.get(c.account_key)
        if per_symbol is None:
            per_symbol = self._by_account[c.account_key] = {}
        account_agg = per_symbol.get((c.symbol, c.feed))
        if account_agg is None:
            account_agg = per_symbol[(c.symbol, c.feed)] = _Agg()
            holders = self._holders.get(c.symbol)
            if holders is None:
                holders = self._holders[c.symbol] = set()
            holders.add(c.account_key)
        account_agg.add(c)

    def _remove(self, c: _Contribution) -> None:
        self._groups[c.group_key].subtract(c)  # kept at zero: its row then reports zero
        per_symbol = self._by_account[c.account_key]
        account_agg = per_symbol[(c.symbol, c.feed)]
        account_agg.subtract(c)
        if not account_agg.positions:
            del per_symbol[(c.symbol, c.feed)]
            if not any(symbol == c.symbol for symbol, _feed in per_symbol):
                self._holders[c.symbol].discard(c.account_key)
            if not per_symbol:
                del self._by_account[c.account_key]

    # ---- reading -------------------------------------------------------------------------------

    def book(self, account_key: str) -> PositionBook | None:
        return self._books.get(account_key)

    def positions(self) -> list[PositionState]:
        """Every open position."""
        return list(self._open.values())

    def snapshot(self, as_of: datetime, *, positions: PositionsWanted = "all",
                 top: int = 10) -> ExposureSnapshot:
        """Everything valued with the latest prices: table rows, broker exposure, top lists.

        `positions`: "all" lists every open position; "changed" only those changed since the
        previous snapshot that listed positions (a deal, a quote of their symbol, a rate of their
        profit or account currency); "traded" only those a deal changed since the previous
        listing (cheap: quotes alone do not count); "none" lists none. Every listing but "none"
        also lists, once, the positions closed since the previous one (`is_deleted`).
        Listing costs ~15 us per position row; the other tables cost per symbol and group, and
        the top lists (`top` > 0) per open account and symbol.
        """
        with localcontext(EXACT):
            valuer = _Valuer(self.prices, self.rates, self.instruments)
            valued = {key: valuer.value(key[1], key[4], agg, key[5]) for key, agg in self._groups.items()}
            exposure = self._exposure_rows(valued, as_of)
            currency = self._currency_rows(valued, valuer, as_of)
            broker = [self._mirror_exposure(row) for row in exposure]
            broker_currency = [self._mirror_currency(row) for row in currency]
            rows = self._position_rows(positions, valuer, as_of) if positions != "none" else []
            accounts = self._account_exposure(valuer) if top > 0 else []
            top_exposure = heapq.nlargest(
                top, (a for a in accounts if a.gross_notional_usd is not None),
                key=lambda a: (a.gross_notional_usd, a.account_key))
            top_profit = heapq.nlargest(
                top, (a for a in accounts if a.floating_pnl_usd is not None and a.floating_pnl_usd > 0),
                key=lambda a: (a.floating_pnl_usd, a.account_key))
            top_loss = heapq.nsmallest(
                top, (a for a in accounts if a.floating_pnl_usd is not None and a.floating_pnl_usd < 0),
                key=lambda a: (a.floating_pnl_usd, a.account_key))
            return ExposureSnapshot(
                as_of=as_of,
                positions=rows,
                exposure=exposure,
                currency_exposure=currency,
                broker_exposure=broker,
                broker_currency_exposure=broker_currency,
                top_exposure=top_exposure,
                top_profit=top_profit,
                top_loss=top_loss,
                missing=sorted(valuer.missing),
            )

    def _exposure_rows(self, valued: dict[GroupKey, _Valued], as_of: datetime) -> list[ExposureRow]:
        sums: dict[tuple[str, str, str], list[Decimal | None]] = {}
        for (tenant, _server, _group, book, symbol, _feed), v in valued.items():
            acc = sums.get((tenant, book, symbol))
            if acc is None:
                sums[(tenant, book, symbol)] = [v.net_lots, v.net_units, v.notional_usd, v.floating_usd]
            else:
                acc[0] = _add_opt(acc[0], v.net_lots)
                acc[1] = _add_opt(acc[1], v.net_units)
                acc[2] = _add_opt(acc[2], v.notional_usd)
                acc[3] = _add_opt(acc[3], v.floating_usd)
        return [
            ExposureRow.trusted({
                "tenant": tenant, "book": book, "symbol": symbol,
                "net_lots": q8(lots or ZERO), "net_units": q8(units or ZERO),
                "net_notional_usd": q8_or_none(notional), "floating_pnl_usd": q8_or_none(floating),
                "as_of": as_of,
            })
            for (tenant, book, symbol), (lots, units, notional, floating) in sorted(sums.items())
        ]

    def _currency_rows(self, valued: dict[GroupKey, _Valued], valuer: _Valuer,
                       as_of: datetime) -> list[CurrencyExposureRow]:
        sums: dict[tuple[str, str, str], Decimal | None] = {}
        for (tenant, _server, _group, book, _symbol, _feed), v in valued.items():
            for currency, amount in v.legs:
                key = (tenant, book, currency)
                sums[key] = _add_opt(sums.get(key, ZERO), amount)
        rows = []
        for (tenant, book, currency), amount in sorted(sums.items()):
            net_usd = _mul_opt(amount, valuer.rate(currency, USD)) if amount else amount
            rows.append(CurrencyExposureRow.trusted({
                "tenant": tenant, "book": book, "currency": currency,
                "net_amount": q8_or_none(amount), "net_usd": q8_or_none(net_usd), "as_of": as_of,
            }))
        return rows

    def _mirror_exposure(self, row: ExposureRow) -> ExposureRow:
        share = -self.routing.books.get(row.book, ZERO)
        return ExposureRow.trusted({
            "tenant": row.tenant, "book": row.book, "symbol": row.symbol,
            "net_lots": q8(row.net_lots * share), "net_units": q8(row.net_units * share),
            "net_notional_usd": q8_or_none(_mul_opt(row.net_notional_usd, share)),
            "floating_pnl_usd": q8_or_none(_mul_opt(row.floating_pnl_usd, share)),
            "as_of": row.as_of,
        })

    def _mirror_currency(self, row: CurrencyExposureRow) -> CurrencyExposureRow:
        share = -self.routing.books.get(row.book, ZERO)
        return CurrencyExposureRow.trusted({
            "tenant": row.tenant, "book": row.book, "currency": row.currency,
            "net_amount": q8_or_none(_mul_opt(row.net_amount, share)),
            "net_usd": q8_or_none(_mul_opt(row.net_usd, share)), "as_of": row.as_of,
        })

    def _position_rows(self, wanted: PositionsWanted, valuer: _Valuer, as_of: datetime) -> list[PositionRow]:
        version = int(as_of.timestamp() * 1000)
        if wanted == "all":
            states = list(self._open.values())
        elif wanted == "traded":
            states = [self._open[key] for key in self._dirty if key in self._open]
        else:
            symbols, currencies = self._dirty_symbols, self._dirty_currencies
            states = []
            for key, state in self._open.items():
                if key in self._dirty or state.symbol in symbols or self._currency_of(state) in currencies:
                    states.append(state)
                elif currencies:
                    inst = valuer.instrument(state.symbol)
                    if inst is not None and inst.quote in currencies:
                        states.append(state)
        rows = [self._position_row(s, valuer, as_of, version) for s in states]
        rows += [self._position_row(s, valuer, as_of, version) for s in self._closed.values()]
        self._dirty.clear()
        self._closed.clear()
        if wanted != "traded":
            self._dirty_symbols.clear()
            self._dirty_currencies.clear()
        return rows

    def _currency_of(self, state: PositionState) -> str:
        info = self._accounts.get(state.account_key)
        return info.currency if info is not None and info.currency else state.currency

    def _position_row(self, state: PositionState, valuer: _Valuer, as_of: datetime,
                      version: int) -> PositionRow:
        price, inst, to_usd, source = valuer.market(state.server, state.symbol, state.platform_symbol)
        mark = floating = floating_account = floating_usd = notional_usd = None
        quote_ccy = inst.quote if inst is not None else ""
        info = self._accounts.get(state.account_key)
        account_ccy = info.currency if info is not None and info.currency else state.currency
        if state.signed_units:
            long = state.signed_units > 0
            if price is not None:
                mark = price.bid if long else price.ask
                if mark is None:
                    side = "bid" if long else "ask"
                    valuer.missing.add(f"no {side} price for {state.symbol} on {state.server}")
                else:
                    floating = (mark - state.avg_price) * state.signed_units
                if price.mid is not None:
                    notional_usd = _mul_opt(abs(state.signed_units) * price.mid, to_usd)
            if inst is not None:
                floating_usd = _mul_opt(floating, to_usd)
                if account_ccy:
                    floating_account = (floating_usd if account_ccy == USD
                                        else _mul_opt(floating, valuer.rate(inst.quote, account_ccy)))
        return PositionRow.trusted({
            "position_key": f"{state.account_key}:{state.key[1]}",
            "tenant": state.tenant,
            "platform": state.platform,
            "server": state.server,
            "login": state.login,
            "account_key": state.account_key,
            "group": state.group,
            "book": self.book_of(state),
            "mode": state.mode,
            "position_id": state.position_id,
            "symbol": state.symbol,
            "side": state.side or "",
            "lots": q8(state.lots),
            "units": q8(state.units),
            "open_price": q8(state.avg_price),
            "mark_price": q8_or_none(mark),
            "mark_source": source if state.signed_units and price is not None else "",
            "profit_currency": quote_ccy,
            "floating_pnl": q8_or_none(floating),
            "account_currency": account_ccy,
            "floating_pnl_account": q8_or_none(floating_account),
            "floating_pnl_usd": q8_or_none(floating_usd),
            "notional_usd": q8_or_none(notional_usd),
            "realised_pnl": q8(state.realised.total),
            "gross_pnl": q8(state.gross_pnl),
            "opened_at": state.opened_at,
            "updated_at": state.updated_at,
            "incomplete": state.incomplete,
            "as_of": as_of,
            "version": version,
            "is_deleted": not state.is_open,
        })

    def _account_exposure(self, valuer: _Valuer) -> list[AccountExposure]:
        out = []
        for account_key, per_symbol in self._by_account.items():
            info = self._accounts.get(account_key)
            if info is None:
                continue
            gross: Decimal | None = ZERO
            floating: Decimal | None = ZERO
            count = 0
            for (symbol, feed), agg in per_symbol.items():
                price, _inst, to_usd, _source = valuer.market(info.server, symbol, feed)
                mid = price.mid if price is not None else None
                gross = _add_opt(gross, _mul_opt(_mul_opt(agg.long_units + agg.short_units, mid), to_usd))
                symbol_floating = valuer.floating(info.server, symbol, agg, price)
                floating = _add_opt(floating, _mul_opt(symbol_floating, to_usd))
                count += agg.positions
            book = self._books.get(account_key)
            group = book.group if book is not None else info.group
            out.append(AccountExposure(
                tenant=info.tenant, account_key=account_key, login=info.login, group=group,
                book=self._route(account_key, info.tenant, info.server, info.platform, group, info.login),
                positions=count, gross_notional_usd=q8_or_none(gross), floating_pnl_usd=q8_or_none(floating),
            ))
        return out

    def account_exposure(self) -> list[AccountExposure]:
        """Every account with open positions: gross notional and floating P&L in USD."""
        with localcontext(EXACT):
            return self._account_exposure(_Valuer(self.prices, self.rates, self.instruments))

    def rollup(self, by: Iterable[str]) -> list[ExposureAggregate]:
        """Exposure along any of tenant, server, group, book, symbol (e.g. per server and
        symbol, per group). Units are only added up when symbol is one of the dimensions."""
        dims = tuple(by)
        unknown = [d for d in dims if d not in DIMENSIONS]
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown}: choose from {DIMENSIONS}")
        keep = [d in dims for d in DIMENSIONS]
        with localcontext(EXACT):
            valuer = _Valuer(self.prices, self.rates, self.instruments)
            sums: dict[tuple[str | None, ...], list[Decimal | None]] = defaultdict(
                lambda: [ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO])
            for key, agg in self._groups.items():
                v = valuer.value(key[1], key[4], agg, key[5])
                out_key = tuple(part if k else None for part, k in zip(key[:5], keep, strict=True))
                acc = sums[out_key]
                values = (Decimal(agg.positions), agg.long_lots, agg.short_lots, v.net_lots, v.net_units,
                          v.notional_usd, v.gross_notional_usd, v.floating_usd)
                for i, value in enumerate(values):
                    acc[i] = _add_opt(acc[i], value)
            return [
                ExposureAggregate(
                    tenant=k[0], server=k[1], group=k[2], book=k[3], symbol=k[4],
                    positions=int(a[0] or 0), long_lots=q8(a[1] or ZERO), short_lots=q8(a[2] or ZERO),
                    net_lots=q8(a[3] or ZERO), net_units=q8_or_none(a[4]) if "symbol" in dims else None,
                    net_notional_usd=q8_or_none(a[5]), gross_notional_usd=q8_or_none(a[6]),
                    floating_pnl_usd=q8_or_none(a[7]),
                )
                for k, a in sorted(sums.items(), key=lambda kv: tuple(p or "" for p in kv[0]))
            ]

    # ---- limits and margin ---------------------------------------------------------------------

    def check_limits(self, snapshot: ExposureSnapshot) -> list[LimitEvent]:
        """Limit breaches and recoveries for a snapshot (see `limits.py`)."""
        return self.limits.evaluate(snapshot)

    def margin_status(self, as_of: datetime, accounts: Iterable[str] | None = None) -> list[MarginStatus]:
        """Equity, margin and margin level of the accounts with open positions (or those
        named), in their account currency."""
        if accounts is None:
            accounts = sorted(set(self._by_account) | set(self.margin.watched()))
        keys = list(accounts)
        config = self.margin.config
        with localcontext(EXACT):
            valuer = _Valuer(self.prices, self.rates, self.instruments)
            out = []
            for key in keys:
                info = self._accounts.get(key)
                if info is None:
                    continue
                leverage = info.leverage or config.default_leverage or 0
                floating: Decimal | None = ZERO
                margin: Decimal | None = ZERO
                notes: list[str] = []
                if not info.currency:
                    notes.append("account currency unknown")
                if not leverage and key in self._by_account:
                    notes.append("leverage unknown")
                if info.balance is None:
                    notes.append("balance unknown")
                for (symbol, feed), agg in self._by_account.get(key, {}).items():
                    inst = valuer.instrument(symbol)
                    price = valuer.market(info.server, symbol, feed).price
                    mid = price.mid if price is not None else None
                    to_account = None
                    if inst is None:
                        notes.append(f"unknown instrument {symbol}")
                    elif info.currency:
                        to_account = valuer.rate(inst.quote, info.currency)
                        if to_account is None:
                            notes.append(f"no rate {inst.quote}->{info.currency}")
                    symbol_floating = valuer.floating(info.server, symbol, agg, price)
                    if symbol_floating is None:
                        notes.append(f"no price to mark {symbol}")
                    floating = _add_opt(floating, _mul_opt(symbol_floating, to_account))
                    if inst is None or mid is None or to_account is None or not leverage:
                        margin = None
                        continue
                    units = margin_units(agg.long_units, agg.short_units, config.hedged_margin)
                    margin = _add_opt(margin, position_margin(units, mid, inst, leverage, to_account))
                out.append(MarginStatus.compute(
                    account_key=key, tenant=info.tenant, server=info.server, login=info.login,
                    group=info.group, currency=info.currency, leverage=leverage,
                    balance=info.balance_now(), credit=info.credit_now(), floating_pnl=floating,
                    margin=margin, missing=tuple(notes), as_of=as_of,
                ))
            return out

    def check_margin(self, as_of: datetime) -> list[MarginEvent]:
        """Margin calls, stop outs and recoveries since the previous check. Only accounts whose
        inputs changed since then are recomputed: their positions, balance, credit, leverage,
        currency or group; a price of a symbol they hold (on their server, or on another while
        their server quotes none of it); a currency pair on the path of a rate they need. Any
        other account's status is what it was, and re-evaluating an unchanged status raises
        nothing (the state machine is idempotent), so the events equal a full recompute's."""
        events: list[MarginEvent] = []
        every = set(self._by_account) | set(self.margin.watched())
        for status in self.margin_status(as_of, sorted(self._margin_candidates() & every)):
            events += self.margin.evaluate(status)
        return events

    def check_margin_full(self, as_of: datetime) -> list[MarginEvent]:
        """`check_margin` recomputing every account (the reference the incremental one equals)."""
        self._margin_candidates()  # consumed: the next incremental check starts from here
        events: list[MarginEvent] = []
        for status in self.margin_status(as_of):
            events += self.margin.evaluate(status)
        return events

    def _margin_candidates(self) -> set[str]:
        """The accounts whose margin inputs changed since the last check (and forget them)."""
        dirty, self._margin_dirty = self._margin_dirty, set()
        for key in dirty:
            self._update_needs(key)
        out = set(dirty)
        for symbol, servers in self._quoted.items():
            for key in self._holders.get(symbol, ()):
                server = self._accounts[key].server
                if server in servers or not self.prices.serves(server, symbol):
                    out.add(key)
        if self._quoted_pairs:
            pairs = self._quoted_pairs
            for (quote, currency), users in self._rate_users.items():
                if users and any(p in pairs for p in self._rate_paths(quote, currency)):
                    out |= users
        self._quoted = {}
        self._quoted_pairs = set()
        return out

    def _rate_paths(self, from_ccy: str, to_ccy: str) -> list[frozenset[str]]:
        """Every currency pair a rate from_ccy -> to_ccy may use (direct, or via a pivot)."""
        paths = [frozenset((from_ccy, to_ccy))]
        for pivot in self._pivots:
            if pivot not in (from_ccy, to_ccy):
                paths += [frozenset((from_ccy, pivot)), frozenset((pivot, to_ccy))]
        return paths

    def _update_needs(self, key: str) -> None:
        """Which rates (quote currency -> account currency) an account's margin needs."""
        info = self._accounts.get(key)
        needs: set[tuple[str, str]] = set()
        if info is not None and info.currency:
            for symbol, _feed in self._by_account.get(key, {}):
                try:
                    quote = self.instruments.instrument(symbol).quote
                except UnknownInstrument:
                    continue
                if quote != info.currency:
                    needs.add((quote, info.currency))
        old = self._needs.get(key, frozenset())
        new = frozenset(needs)
        if new == old:
            return
        for need in old - new:
            self._rate_users[need].discard(key)
        for need in new - old:
            self._rate_users.setdefault(need, set()).add(key)
        if new:
            self._needs[key] = new
        else:
            self._needs.pop(key, None)
