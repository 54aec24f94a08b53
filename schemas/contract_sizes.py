"""Contract sizes (units per lot) for platforms whose trade records carry none (MT4).

The symbols reference (`schemas.symbols`, shipped defaults in `symbols_default.yaml`, a
broker's own file on top) decides for every instrument it knows. A symbol it does not know
gets the usual retail CFD specification of its instrument class, guessed from the name:

- FX pairs (and anything not recognised): 100,000 units of the base currency per lot.
- Gold (XAU, GOLD): 100 oz; silver (XAG, SILVER): 5,000 oz; platinum/palladium (XPT/XPD): 100 oz.
- Crude oil (WTI, Brent): 1,000 barrels.
- Cash indices and crypto: 1 unit per lot.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from schemas.symbols import default_book, generic_symbol

FX_CONTRACT = Decimal(100_000)
DEFAULT_CONTRACT = FX_CONTRACT

# Metals, by the 3-letter code the symbol starts with (XAUUSD, XAUEUR, XAGUSD, ...).
_METALS: dict[str, Decimal] = {
    "XAU": Decimal(100),
    "XAG": Decimal(5_000),
    "XPT": Decimal(100),
    "XPD": Decimal(100),
}
_METAL_NAMES: dict[str, Decimal] = {"GOLD": Decimal(100), "SILVER": Decimal(5_000)}

OIL_CONTRACT = Decimal(1_000)
_OIL_PREFIXES = ("XTI", "XBR", "USOIL", "UKOIL", "WTI", "BRENT", "CRUDE", "OIL")
_OIL_NAMES = frozenset({"CL"})  # exact only: a "CL" prefix would catch CLP (Chilean peso) pairs

CRYPTO_CONTRACT = Decimal(1)
_CRYPTO_BASES = (
    "BTC", "ETH", "LTC", "XRP", "BCH", "ADA", "DOT", "SOL", "DOGE", "BNB", "LINK", "XLM",
    "EOS", "TRX", "AVAX", "MATIC", "UNI", "SHIB", "XMR", "ETC", "ATOM", "XTZ", "NEO", "DASH",
)
_CRYPTO_QUOTES = ("USD", "USDT", "USDC", "EUR", "GBP", "JPY", "BTC", "ETH", "")

INDEX_CONTRACT = Decimal(1)
# Cash indices without a digit in their name (names with digits are indices already).
_INDEX_NAMES = frozenset({"USTEC", "SPX", "NDX", "DJI", "DAX", "FTSE", "CAC", "HSI", "NIKKEI",
                          "STOXX", "VIX", "DXY", "USDX"})


def _is_crypto(name: str) -> bool:
    return any(name.startswith(base) and name[len(base):] in _CRYPTO_QUOTES for base in _CRYPTO_BASES)


def contract_size_for(symbol: str) -> Decimal:
    """Units per lot of `symbol` (platform or canonical name): from the symbols reference, else
    by instrument class."""
    info = default_book().lookup(symbol)
    if info is not None:
        return info.contract_size
    return _by_class(generic_symbol(symbol))


@lru_cache(maxsize=16_384)
def _by_class(name: str) -> Decimal:
    """The fallback for symbols the reference does not know (`name` without decoration)."""
    if name in _METAL_NAMES:
        return _METAL_NAMES[name]
    if name[:3] in _METALS:
        return _METALS[name[:3]]
    if name in _OIL_NAMES or (
        name.startswith(_OIL_PREFIXES) and not any(ch.isdigit() for ch in name)
    ):
        return OIL_CONTRACT
    if _is_crypto(name):
        return CRYPTO_CONTRACT
    # FX pairs are six letters and never contain digits; index CFDs nearly always do
    # (US30, US500, NAS100, GER40, UK100, JP225, AUS200, HK50, ...).
    if any(ch.isdigit() for ch in name) or name in _INDEX_NAMES:
        return INDEX_CONTRACT
    return DEFAULT_CONTRACT
