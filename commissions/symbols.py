"""Symbol groups, quote currencies and pip sizes, as commission plans need them.

Plans price by *symbol group* (`fx_major`, `fx_minor`, `fx_exotic`, `metal`, `index`,
`crypto`, `energy`, or anything a broker names). Where a symbol's group and quote currency
come from, first match wins:

1. `symbols.SYMBOL.group` / `.quote_currency` in the commissions configuration;
2. the `symbol_group` function given to the engine (group only);
3. the symbols reference given to the engine (`symbols=`): anything with
   `lookup(symbol) -> info | None` whose info has `asset_class` and `quote` -- exactly
   `schemas.symbols.SymbolBook` and its `SymbolInfo` (duck-typed, so this package does not
   depend on the connectors);
4. the built-in guesses below (`default_symbol_group`, `default_quote_currency`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Protocol

SymbolGroupLookup = Callable[[str], str | None]


class SymbolSpec(Protocol):
    @property
    def asset_class(self) -> str: ...

    @property
    def quote(self) -> str: ...


class SymbolReference(Protocol):
    """What the engine needs of a symbols reference (`schemas.symbols.SymbolBook`)."""

    def lookup(self, platform_symbol: str) -> SymbolSpec | None: ...

FX_MAJORS = frozenset({"EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "USDCAD", "NZDUSD"})
CURRENCIES = frozenset({
    "USD", "EUR", "GBP", "JPY", "CHF", "AUD", "CAD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK",
    "HUF", "TRY", "ZAR", "MXN", "SGD", "HKD", "CNH", "RUB", "ILS", "THB", "INR", "BRL", "KRW",
})
_METALS = ("XAU", "XAG", "XPT", "XPD", "GOLD", "SILVER")
_ENERGY = ("XTI", "XBR", "XNG", "USOIL", "UKOIL", "WTI", "BRENT", "NGAS", "NATGAS", "CRUDE")
_CRYPTO = ("BTC", "ETH", "LTC", "XRP", "BCH", "ADA", "DOT", "SOL", "DOGE", "BNB", "LINK", "XLM")
_INDICES = frozenset({"USTEC", "SPX", "NDX", "DJI", "DAX", "FTSE", "CAC", "HSI", "NIKKEI", "STOXX"})


def is_fx_pair(symbol: str) -> bool:
    return len(symbol) == 6 and symbol[:3] in CURRENCIES and symbol[3:] in CURRENCIES


@lru_cache(maxsize=16_384)
def default_symbol_group(symbol: str) -> str:
    """fx_major / fx_minor / metal / energy / crypto / index, else "other"."""
    name = symbol.upper()
    if name in FX_MAJORS:
        return "fx_major"
    if is_fx_pair(name):
        return "fx_minor"
    if name.startswith(_METALS):
        return "metal"
    if name.startswith(_ENERGY):
        return "energy"
    if name.startswith(_CRYPTO):
        return "crypto"
    if name in _INDICES or any(ch.isdigit() for ch in name):
        return "index"
    return "other"


def default_quote_currency(symbol: str) -> str | None:
    """The quote (profit) currency of an FX pair or a metal/crypto quoted in a currency."""
    name = symbol.upper()
    tail = name[-3:]
    if len(name) >= 6 and tail in CURRENCIES:
        return tail
    return None


def default_pip_size(symbol: str) -> Decimal | None:
    """0.0001 for FX pairs (0.01 when quoted in JPY); None when there is no usual pip."""
    name = symbol.upper()
    if is_fx_pair(name):
        return Decimal("0.01") if name.endswith("JPY") else Decimal("0.0001")
    return None
