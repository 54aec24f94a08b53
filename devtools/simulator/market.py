"""The simulated market: instruments, a random walk per instrument in event time, trading hours,
fast markets (news bursts), spreads and the quote each server shows.

Prices are kept as a float mid per instrument; a server's quote is a pair of integers in
points (1 point = 10^-digits), so bid/ask are always exact at the instrument's digits. The
walk is geometric Brownian motion scaled by the instrument's annual volatility and by the
session (volatility is higher when London and New York are open), advanced lazily to whatever
time something needs a price, plus a drift during a fast market.

Contract sizes, digits and quote currencies come from the project's symbols reference
(`schemas.symbols`), so what the simulator books is what the connectors compute.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from connectors.ctrader_symbols import SIMULATED_SYMBOLS
from schemas.symbols import default_book

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
WEEK_MS = 7 * DAY_MS
# 1970-01-01 was a Thursday: (t + 4 days) % week gives Monday 00:00 = 0.
_MONDAY_SHIFT = 4 * DAY_MS
# FX/CFD week: opens Sunday 22:00 UTC, closes Friday 22:00 UTC (winter time).
_WEEK_OPEN = 6 * DAY_MS + 22 * HOUR_MS  # Sunday 22:00, from Monday 00:00
_WEEK_CLOSE = 4 * DAY_MS + 22 * HOUR_MS  # Friday 22:00
# Metals, energies and index CFDs pause for an hour every day at the US close.
_DAILY_BREAK = (21 * HOUR_MS, 22 * HOUR_MS)


@dataclass(frozen=True, slots=True)
class SymbolDef:
    name: str
    price: float  # start price
    vol: float  # annualised volatility
    spread: int  # typical spread in points
    weight: float  # how popular it is with clients (relative)
    session: str  # fx / eu / us / asia / metal / crypto: which hours are busy
    swap_long: float  # per lot per night, in the account currency (approximate)
    swap_short: float


# name, start price, annual vol, typical spread (points), popularity, session, swaps
SYMBOL_DEFS: tuple[SymbolDef, ...] = (
    SymbolDef("EURUSD", 1.05420, 0.075, 6, 14.0, "fx", -7.2, 2.1),
    SymbolDef("GBPUSD", 1.25680, 0.085, 9, 7.0, "fx", -4.1, 0.9),
    SymbolDef("USDJPY", 154.320, 0.095, 9, 7.0, "asia", 12.5, -24.0),
    SymbolDef("EURJPY", 162.680, 0.100, 14, 3.0, "asia", 6.8, -17.5),
    SymbolDef("AUDUSD", 0.65130, 0.095, 8, 3.5, "asia", -2.9, -1.1),
    SymbolDef("XAUUSD", 2712.40, 0.150, 28, 16.0, "metal", -48.0, 21.0),
    SymbolDef("US30", 44290.0, 0.140, 25, 5.0, "us", -9.5, -2.8),
    SymbolDef("BTCUSD", 98430.00, 0.550, 3500, 6.0, "crypto", -62.0, -38.0),
    SymbolDef("USDCHF", 0.88740, 0.080, 11, 1.5, "fx", 6.4, -13.9),
    SymbolDef("USDCAD", 1.39620, 0.065, 12, 2.0, "fx", 1.9, -9.6),
    SymbolDef("NZDUSD", 0.58410, 0.100, 12, 1.2, "asia", -2.2, -1.8),
    SymbolDef("GBPJPY", 194.060, 0.110, 22, 3.5, "asia", 9.1, -26.0),
    SymbolDef("EURGBP", 0.83840, 0.055, 10, 1.2, "eu", -5.6, 0.4),
    SymbolDef("XAGUSD", 31.120, 0.270, 30, 2.5, "metal", -12.0, 3.5),
    SymbolDef("USOIL", 69.85, 0.320, 4, 3.0, "us", -6.5, -3.1),
    SymbolDef("NAS100", 20790.0, 0.200, 18, 5.0, "us", -4.4, -1.2),
    SymbolDef("GER40", 19340.0, 0.165, 15, 3.0, "eu", -3.8, -1.7),
    SymbolDef("ETHUSD", 3380.00, 0.650, 280, 3.0, "crypto", -9.0, -6.0),
)

# Session activity by UTC hour (0..23): tick intensity and volatility follow it.
_SESSIONS: dict[str, tuple[float, ...]] = {
    "fx": (0.35, 0.35, 0.4, 0.4, 0.4, 0.45, 0.6, 0.9, 1.3, 1.3, 1.2, 1.1, 1.2, 1.5,
           1.7, 1.7, 1.5, 1.2, 0.9, 0.8, 0.7, 0.3, 0.25, 0.3),
    "eu": (0.2, 0.2, 0.2, 0.2, 0.2, 0.25, 0.5, 1.1, 1.6, 1.5, 1.3, 1.2, 1.2, 1.3,
           1.4, 1.4, 1.2, 0.8, 0.5, 0.4, 0.3, 0.2, 0.2, 0.2),
    "us": (0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.35, 0.5, 0.7, 0.7, 0.7, 0.7, 0.8, 1.0,
           1.9, 2.0, 1.7, 1.5, 1.4, 1.4, 1.6, 0.5, 0.3, 0.3),
    "asia": (1.2, 1.3, 1.2, 1.1, 1.0, 0.9, 0.9, 1.0, 1.2, 1.1, 1.0, 0.9, 1.0, 1.3,
             1.5, 1.4, 1.2, 0.9, 0.7, 0.6, 0.6, 0.3, 0.6, 1.0),
    "metal": (0.6, 0.6, 0.5, 0.5, 0.5, 0.5, 0.6, 0.9, 1.2, 1.2, 1.1, 1.0, 1.2, 1.6,
              1.9, 1.8, 1.5, 1.2, 0.9, 0.8, 0.7, 0.3, 0.4, 0.6),
    "crypto": (0.8, 0.75, 0.7, 0.65, 0.6, 0.6, 0.65, 0.75, 0.85, 0.9, 0.95, 1.0, 1.05, 1.15,
               1.3, 1.35, 1.3, 1.2, 1.1, 1.05, 1.0, 0.95, 0.9, 0.85),
}

# Fallback conversion rates to USD for currencies no simulated pair covers.
_USD_FALLBACK = {"USD": 1.0, "EUR": 1.054, "GBP": 1.257, "JPY": 1 / 154.3, "CHF": 1 / 0.8874,
                 "CAD": 1 / 1.3962, "AUD": 0.6513, "NZD": 0.5841, "HKD": 1 / 7.78}


@dataclass(slots=True, eq=False)
class Symbol:
    """One instrument of the simulated market (index `idx` in `Market.symbols`)."""

    idx: int
    name: str
    asset_class: str
    digits: int
    point: float
    contract: float  # units per lot
    contract_text: str  # as MT5 prints ContractSize
    quote_ccy: str
    base_ccy: str
    spread: int
    weight: float
    session: tuple[float, ...]
    always_open: bool  # crypto trades at weekends
    daily_break: bool  # metals, energies, indices pause 21:00-22:00 UTC
    swap_long: float
    swap_short: float
    ctrader_id: int  # id in the simulated cTrader symbol list, 0 when cTrader has none
    ctrader_lot: int  # cTrader lotSize: units per lot in cents of units
    sigma_ms: float  # volatility per sqrt(ms) at session activity 1
    fmt: str  # "%.5f": a price as the platforms print it
    tick_size: str  # MT5 TickSize text
    lot_scale: float  # clients trade smaller lots of instruments whose lot is worth more


def build_symbols() -> list[Symbol]:
    book = default_book()
    ctrader = {s.name: s for s in SIMULATED_SYMBOLS}
    out: list[Symbol] = []
    for i, d in enumerate(SYMBOL_DEFS):
        info = book.lookup(d.name)
        if info is None:  # pragma: no cover - the shipped book knows every simulated symbol
            raise ValueError(f"symbol {d.name} is not in the symbols reference")
        ct = ctrader.get(d.name)
        crypto = info.asset_class == "crypto"
        year_ms = (365.25 if crypto else 260.0) * DAY_MS
        out.append(Symbol(
            idx=i, name=d.name, asset_class=info.asset_class, digits=info.digits,
            point=10.0 ** -info.digits, contract=float(info.contract_size),
            contract_text=f"{info.contract_size:.2f}", quote_ccy=info.quote, base_ccy=info.base,
            spread=d.spread, weight=d.weight, session=_SESSIONS[d.session], always_open=crypto,
            daily_break=info.asset_class in ("metal", "index", "energy"),
            swap_long=d.swap_long, swap_short=d.swap_short,
            ctrader_id=ct.id if ct is not None else 0,
            ctrader_lot=ct.lot_size if ct is not None else 0,
            sigma_ms=d.vol / math.sqrt(year_ms), fmt=f"%.{info.digits}f",
            tick_size=f"{10.0 ** -info.digits:g}",
            lot_scale=min(5.0, max(0.2, (100_000.0 / max(float(info.contract_size) * d.price
                                                         * _USD_FALLBACK.get(info.quote, 1.0),
                                                         1.0)) ** 0.7)),
        ))
    return out


def week_ms(t: int) -> int:
    """Milliseconds since Monday 00:00 UTC of t's week."""
    return (t + _MONDAY_SHIFT) % WEEK_MS


def fx_open(t: int) -> bool:
    """Whether the FX/CFD week is open at t (Sunday 22:00 to Friday 22:00 UTC)."""
    w = week_ms(t)
    return not (_WEEK_CLOSE <= w < _WEEK_OPEN)


def next_fx_open(t: int) -> int:
    """The next FX week open at or after t."""
    w = week_ms(t)
    if w < _WEEK_CLOSE:
        return t
    if w < _WEEK_OPEN:
        return t + (_WEEK_OPEN - w)
    return t


def is_open(sym: Symbol, t: int) -> bool:
    if sym.always_open:
        return True
    if not fx_open(t):
        return False
    if sym.daily_break:
        day = t % DAY_MS
        return not (_DAILY_BREAK[0] <= day < _DAILY_BREAK[1])
    return True


def is_rollover(t: int) -> bool:
    """The hour after the US close, when liquidity is thin and spreads are wide."""
    day = t % DAY_MS
    return _DAILY_BREAK[0] <= day < _DAILY_BREAK[1]


class Market:
    """Mid prices of every instrument, advanced lazily in event time."""

    def __init__(self, rng: random.Random, start_ms: int) -> None:
        self.rng = rng
        self.symbols = build_symbols()
        self.by_name = {s.name: s for s in self.symbols}
        # a small random offset so two seeds do not start from the same prices
        self.mid = [d.price * math.exp(rng.gauss(0, 0.004)) for d in SYMBOL_DEFS]
        self.last_t = [start_ms] * len(self.symbols)
        # fast markets: until when, drift per ms (log price), volatility multiplier
        self.burst_until = [0] * len(self.symbols)
        self.burst_drift = [0.0] * len(self.symbols)
        self.burst_vol = [1.0] * len(self.symbols)
        self._usd_pairs = {
            "EUR": ("EURUSD", False), "GBP": ("GBPUSD", False), "AUD": ("AUDUSD", False),
            "NZD": ("NZDUSD", False), "JPY": ("USDJPY", True), "CHF": ("USDCHF", True),
            "CAD": ("USDCAD", True),
        }

    def advance(self, i: int, t: int) -> float:
        """The mid of instrument i at time t (t never goes back for one instrument)."""
        last = self.last_t[i]
        mid = self.mid[i]
        if t <= last:
            return mid
        sym = self.symbols[i]
        self.last_t[i] = t
        if not sym.always_open and not fx_open(t) and not fx_open(last):
            return mid  # nothing moves while the market is shut
        dt = t - last
        act = sym.session[(t // HOUR_MS) % 24]
        sigma = sym.sigma_ms * (0.55 + 0.45 * act)
        drift = 0.0
        if t <= self.burst_until[i] or last < self.burst_until[i]:
            sigma *= self.burst_vol[i]
            drift = self.burst_drift[i] * min(dt, max(0, self.burst_until[i] - last))
        if dt > 6 * HOUR_MS:  # a weekend or daily gap: the price re-opens somewhere else
            dt = min(dt, 24 * HOUR_MS)
        mid *= math.exp(sigma * math.sqrt(dt) * self.rng.gauss(0.0, 1.0) + drift)
        self.mid[i] = mid
        return mid

    def start_burst(self, i: int, t: int, duration_ms: int, direction: int, strength: float) -> None:
        """A fast market: volatility up and a drift worth `strength` typical spreads per second."""
        sym = self.symbols[i]
        self.advance(i, t)
        self.burst_until[i] = t + duration_ms
        per_s = strength * sym.spread * sym.point / max(self.mid[i], 1e-9)
        self.burst_drift[i] = direction * per_s / 1000.0
        self.burst_vol[i] = 2.5

    def usd_rate(self, ccy: str) -> float:
        """Value of one unit of `ccy` in USD at the current mids."""
        if ccy == "USD":
            return 1.0
        pair = self._usd_pairs.get(ccy)
        if pair is not None:
            sym = self.by_name.get(pair[0])
            if sym is not None:
                mid = self.mid[sym.idx]
                return 1.0 / mid if pair[1] else mid
        return _USD_FALLBACK.get(ccy, 1.0)

    def rate(self, from_ccy: str, to_ccy: str) -> float:
        if from_ccy == to_ccy:
            return 1.0
        return self.usd_rate(from_ccy) / self.usd_rate(to_ccy)
