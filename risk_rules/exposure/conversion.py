"""Prices from quotes, and conversion between currencies through the latest rates.

`PriceBook` keeps the latest bid and ask of every price *feed*: a platform symbol on a server
(`EURUSD` and `EURUSD.r` on one server are two feeds). A side a quote leaves out (cTrader, when
it is unchanged) keeps the previous value of the same feed; bid and ask are never mixed from two
feeds. A position is marked with its own feed; the fallbacks, flagged by `MarkSource`, are the
canonical symbol's feed on the same server (the feed named as the canonical symbol, else the one
that quoted last), then the canonical symbol's latest feed on any server.

`Rates` converts amounts between currencies with the latest quotes of currency pairs (FX, metals,
crypto): A -> B uses the pair AB directly, else BA inversely (1 / BA), else a path through a
pivot currency (USD by default): A -> USD -> B, each leg direct or inverse. So EURJPY P&L in JPY
reaches USD through USDJPY (1 / USDJPY), GBP reaches EUR through GBPUSD and EURUSD, an index
CFD's P&L in EUR reaches USD through EURUSD. A currency with no path raises `MissingRate`:
a missing rate is never a silent zero.

Rates are mid-market by default (reporting, exposure in USD). `basis="conservative"` converts
at the side a dealer would: a positive amount at the rate received (bid of AB, 1 / ask of BA),
a negative one at the rate paid.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Literal, NamedTuple

from risk_rules.exposure.instruments import InstrumentLookup, InstrumentTable, UnknownInstrument
from risk_rules.exposure.money import EXACT, ONE
from schemas.events import Quote

PriceSide = Literal["bid", "ask", "mid"]
MarkSource = Literal["own", "canonical", "other_server", ""]
Basis = Literal["mid", "conservative"]
_TWO = Decimal(2)


class Price(NamedTuple):
    """The latest known bid and ask of a symbol (either may still be unknown), and their mid:
    (bid + ask) / 2, or the one side known when only one is. Build with `Price.of`."""

    bid: Decimal | None
    ask: Decimal | None
    time: datetime | None = None
    mid: Decimal | None = None

    @classmethod
    def of(cls, bid: Decimal | None, ask: Decimal | None, time: datetime | None = None) -> Price:
        if bid is not None and ask is not None:
            mid: Decimal | None = EXACT.divide(EXACT.add(bid, ask), _TWO)
        else:
            mid = bid if bid is not None else ask
        return cls(bid, ask, time, mid)

    def side(self, side: PriceSide) -> Decimal | None:
        if side == "bid":
            return self.bid
        if side == "ask":
            return self.ask
        return self.mid

    def merged(self, bid: Decimal | None, ask: Decimal | None, time: datetime | None) -> Price:
        """This price after a quote that may leave a side out (None: unchanged)."""
        return Price.of(self.bid if bid is None else bid, self.ask if ask is None else ask, time)


EMPTY_PRICE = Price.of(None, None)


class MissingMarketData(LookupError):
    """A price or a conversion rate that is needed is not known (yet)."""


class MissingRate(MissingMarketData):
    """No rate converts `from_ccy` into `to_ccy` with the quotes known."""

    def __init__(self, from_ccy: str, to_ccy: str, detail: str = "") -> None:
        message = f"no rate {from_ccy}->{to_ccy}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.from_ccy = from_ccy
        self.to_ccy = to_ccy


class MissingPrice(MissingMarketData):
    """No quote (or not the needed side) of a symbol is known."""

    def __init__(self, symbol: str, side: PriceSide, server: str = "") -> None:
        where = f" on {server}" if server else ""
        super().__init__(f"no {side} price for {symbol}{where}")
        self.symbol = symbol
        self.side = side
        self.server = server


class PriceBook:
    """Latest bid/ask per feed (server, platform symbol); per (server, canonical symbol) and per
    canonical symbol, the whole price of the feed that quoted last (never sides of two feeds)."""

    def __init__(self) -> None:
        self._feeds: dict[tuple[str, str], Price] = {}
        self._by_server: dict[tuple[str, str], Price] = {}
        self._latest: dict[str, Price] = {}

    def update(self, server: str, symbol: str, bid: Decimal | None, ask: Decimal | None,
               time: datetime | None = None, platform_symbol: str = "") -> Price:
        key = (server, platform_symbol or symbol)
        price = self._feeds.get(key, EMPTY_PRICE).merged(bid, ask, time)
        self._feeds[key] = price
        self._by_server[(server, symbol)] = price
        self._latest[symbol] = price
        return price

    def price(self, server: str, symbol: str) -> Price | None:
        """The canonical symbol's price on the server, else the latest from any server."""
        return self.mark(server, symbol, symbol)[0]

    def mark(self, server: str, platform_symbol: str, symbol: str) -> tuple[Price | None, MarkSource]:
        """The price that marks a position on `platform_symbol` (canonical `symbol`) on
        `server`, and where it came from: its own feed, else the canonical symbol's feed on the
        same server, else the canonical symbol's latest feed on another server."""
        own = self._feeds.get((server, platform_symbol or symbol))
        if own is not None:
            return own, "own"
        same = self._feeds.get((server, symbol)) or self._by_server.get((server, symbol))
        if same is not None:
            return same, "canonical"
        other = self._latest.get(symbol)
        if other is not None:
            return other, "other_server"
        return None, ""

    def serves(self, server: str, symbol: str) -> bool:
        """Whether any feed of the canonical symbol quoted on this server."""
        return (server, symbol) in self._by_server

    def latest(self, symbol: str) -> Price | None:
        return self._latest.get(symbol)

    def symbols(self) -> list[str]:
        return sorted(self._latest)


class Rates:
    """Conversion rates between currencies from the latest quotes of currency pairs."""

    def __init__(self, instruments: InstrumentLookup | None = None,
                 pivots: tuple[str, ...] = ("USD",)) -> None:
        self._instruments = instruments if instruments is not None else InstrumentTable()
        self._pivots = pivots
        self._pairs: dict[tuple[str, str], Price] = {}
        self._pair_of: dict[str, tuple[str, str] | None] = {}

    @classmethod
    def from_quotes(cls, quotes: Iterable[Quote], instruments: InstrumentLookup | None = None,
                    pivots: tuple[str, ...] = ("USD",)) -> Rates:
        rates = cls(instruments, pivots)
        for quote in quotes:
            rates.update(quote.symbol, quote.bid, quote.ask, quote.time)
        return rates

    def pair_of(self, symbol: str) -> tuple[str, str] | None:
        """(base, quote) when `symbol` is a currency pair (FX, metal, crypto), else None."""
        if symbol not in self._pair_of:
            try:
                inst = self._instruments.instrument(symbol)
            except UnknownInstrument:
                pair = None
            else:
                pair = (inst.base, inst.quote) if inst.is_currency_pair else None
            self._pair_of[symbol] = pair
        return self._pair_of[symbol]

    def update(self, symbol: str, bid: Decimal | None, ask: Decimal | None,
               time: datetime | None = None) -> bool:
        """Take a quote into account; True when the symbol is a currency pair."""
        pair = self.pair_of(symbol)
        if pair is None:
            return False
        self._pairs[pair] = self._pairs.get(pair, EMPTY_PRICE).merged(bid, ask, time)
        return True

    def set_price(self, symbol: str, price: Price) -> bool:
        """Take one feed's whole price (bid and ask of the same quote stream); True when the
        symbol is a currency pair. Used instead of `update` when several feeds quote a pair, so
        a rate never pairs one server's bid with another's ask."""
        pair = self.pair_of(symbol)
        if pair is None:
            return False
        self._pairs[pair] = price
        return True

    def set_pair(self, base: str, quote: str, bid: Decimal | None, ask: Decimal | None = None) -> None:
        """Set a pair's price directly (ask defaults to bid: a single mid-market rate)."""
        self._pairs[(base, quote)] = Price.of(bid, bid if ask is None else ask)

    # ---- conversion --------------------------------------------------------------------------

    def _leg(self, a: str, b: str, basis: Basis, positive: bool) -> tuple[Decimal, bool] | None:
        """One leg a -> b: (price of ab, multiply) or (price of ba, divide), or None. A positive
        amount multiplies by ab's bid or divides by ba's ask (a negative one: the other sides)."""
        for pair, divide in (((a, b), False), ((b, a), True)):
            price = self._pairs.get(pair)
            if price is None:
                continue
            value = price.mid if basis == "mid" else price.side("bid" if positive != divide else "ask")
            if value is None:
                value = price.mid
            if value:
                return value, divide
        return None

    def _path(self, from_ccy: str, to_ccy: str, basis: Basis, positive: bool) -> list[tuple[Decimal, bool]]:
        direct = self._leg(from_ccy, to_ccy, basis, positive)
        if direct is not None:
            return [direct]
        tried = []
        for pivot in self._pivots:
            if pivot in (from_ccy, to_ccy):
                continue
            first = self._leg(from_ccy, pivot, basis, positive)
            second = self._leg(pivot, to_ccy, basis, positive)
            if first is not None and second is not None:
                return [first, second]
            missing = [f"{a}/{b}" for a, b, leg in ((from_ccy, pivot, first), (pivot, to_ccy, second))
                       if leg is None]
            tried.append(f"through {pivot} (no quote for {' nor '.join(missing)})")
        detail = f"no quote for {from_ccy}{to_ccy} or {to_ccy}{from_ccy}"
        if tried:
            detail += ", nor a path " + ", ".join(tried)
        raise MissingRate(from_ccy, to_ccy, detail)

    @staticmethod
    def _through(amount: Decimal, path: list[tuple[Decimal, bool]]) -> Decimal:
        for price, divide in path:
            amount = EXACT.divide(amount, price) if divide else EXACT.multiply(amount, price)
        return amount

    def rate(self, from_ccy: str, to_ccy: str, *, basis: Basis = "mid", positive: bool = True) -> Decimal:
        """Units of `to_ccy` per unit of `from_ccy`; raises `MissingRate`."""
        if from_ccy == to_ccy:
            return ONE
        return self._through(ONE, self._path(from_ccy, to_ccy, basis, positive))

    def convert(self, amount: Decimal, from_ccy: str, to_ccy: str, *, basis: Basis = "mid") -> Decimal:
        """`amount` of `from_ccy` in `to_ccy` (unrounded); raises `MissingRate`."""
        if from_ccy == to_ccy:
            return amount
        return self._through(amount, self._path(from_ccy, to_ccy, basis, amount >= 0))

    def pairs(self) -> dict[tuple[str, str], Price]:
        return dict(self._pairs)
