"""What a symbol is: base and quote (profit) currency, contract size, asset class.

`InstrumentLookup` is the small protocol the exposure logic needs. `InstrumentTable` is the
default implementation: explicit entries from a dict (configuration), and, optionally, a guess
from the symbol name for symbols nobody listed (FX pairs, metals, crypto, the usual index and
oil CFDs). The symbols reference (`schemas/symbols.py`, SymbolBook) can replace it through an
adapter whose `instrument(symbol)` returns an `Instrument`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from schemas.contract_sizes import contract_size_for
from schemas.symbols import PAIR_CLASSES, InstrumentClass


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    base: str  # base currency or asset: EUR for EURUSD, XAU for XAUUSD, GER40 for GER40
    quote: str  # quote currency = the currency profit is computed in
    contract_size: Decimal = Decimal(100_000)
    asset_class: InstrumentClass = "fx"
    # Margin as a fraction of the notional (0.05 = 5 %) when the instrument has its own rate
    # (CFDs); None: notional / leverage.
    margin_rate: Decimal | None = None

    @property
    def is_currency_pair(self) -> bool:
        # a currency-like base: the pair converts one into the other (schemas.symbols.PAIR_CLASSES)
        return self.asset_class in PAIR_CLASSES


class UnknownInstrument(LookupError):
    """No instrument is known for a symbol."""

    def __init__(self, symbol: str) -> None:
        super().__init__(f"unknown instrument {symbol!r}: list it in the instruments configuration")
        self.symbol = symbol


class InstrumentLookup(Protocol):
    def instrument(self, symbol: str) -> Instrument:
        """The instrument of a canonical symbol; raises `UnknownInstrument`."""
        ...


class InstrumentSpec(BaseModel):
    """One instrument as configuration writes it (`{"EURUSD": {"base": "EUR", ...}}`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = Field(min_length=1)
    quote: str = Field(pattern=r"^[A-Z0-9]{3,6}$")
    contract_size: Decimal = Field(gt=0)
    asset_class: InstrumentClass = "fx"
    margin_rate: Decimal | None = Field(default=None, gt=0, le=1)

    def build(self, symbol: str) -> Instrument:
        return Instrument(
            symbol=symbol,
            base=self.base,
            quote=self.quote,
            contract_size=self.contract_size,
            asset_class=self.asset_class,
            margin_rate=self.margin_rate,
        )


# ---- guessing from the name ------------------------------------------------------------------

CURRENCIES: frozenset[str] = frozenset({
    "USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "HUF", "CZK",
    "TRY", "ZAR", "MXN", "SGD", "HKD", "CNH", "CNY", "RUB", "ILS", "THB", "INR", "KRW", "TWD", "BRL",
    "CLP", "COP", "ARS", "AED", "SAR", "KWD", "QAR", "BHD", "OMR", "KES", "NGN", "EGP", "IDR", "MYR",
    "PHP", "RON", "BGN", "ISK", "HRK", "UAH", "KZT", "VND", "PKR",
})
METALS: frozenset[str] = frozenset({"XAU", "XAG", "XPT", "XPD"})
CRYPTO: tuple[str, ...] = (
    "BTC", "ETH", "LTC", "XRP", "BCH", "ADA", "DOT", "SOL", "DOGE", "BNB", "LINK", "XLM", "EOS",
    "TRX", "AVAX", "MATIC", "UNI", "SHIB", "XMR", "ETC", "ATOM", "XTZ", "NEO", "DASH",
)
# Cash index CFDs and the currency they are quoted in.
INDEX_CURRENCIES: dict[str, str] = {
    "US30": "USD", "DJ30": "USD", "US500": "USD", "SPX500": "USD", "SPX": "USD", "US100": "USD",
    "NAS100": "USD", "USTEC": "USD", "NDX": "USD", "US2000": "USD", "DXY": "USD", "USDX": "USD",
    "VIX": "USD", "GER40": "EUR", "GER30": "EUR", "DE40": "EUR", "DE30": "EUR", "DAX": "EUR",
    "FRA40": "EUR", "FR40": "EUR", "CAC": "EUR", "EU50": "EUR", "EUSTX50": "EUR", "STOXX": "EUR",
    "ESP35": "EUR", "ES35": "EUR", "NETH25": "EUR", "IT40": "EUR", "UK100": "GBP", "FTSE": "GBP",
    "JP225": "JPY", "JPN225": "JPY", "NIKKEI": "JPY", "AUS200": "AUD", "HK50": "HKD", "HSI": "HKD",
    "CHINA50": "USD", "CN50": "USD", "SWI20": "CHF", "CH20": "CHF",
}
OIL_SYMBOLS: frozenset[str] = frozenset(
    {"XTIUSD", "XBRUSD", "USOIL", "UKOIL", "WTI", "BRENT", "CL", "NGAS", "XNGUSD"}
)


def guess_instrument(symbol: str) -> Instrument | None:
    """The instrument a canonical symbol name most likely is, or None."""
    name = symbol.upper()
    size = contract_size_for(name)
    if name in INDEX_CURRENCIES:
        return Instrument(name, name, INDEX_CURRENCIES[name], size, "index")
    if name in ("GOLD", "SILVER"):
        return Instrument(name, "XAU" if name == "GOLD" else "XAG", "USD", size, "metal")
    if name in OIL_SYMBOLS:
        return Instrument(name, name, "USD", size, "commodity")
    for base in CRYPTO:
        rest = name[len(base):]
        if name.startswith(base) and rest in CURRENCIES:
            return Instrument(name, base, rest, size, "crypto")
    if len(name) == 6 and name.isalpha():
        base, quote = name[:3], name[3:]
        if base in METALS and quote in CURRENCIES:
            return Instrument(name, base, quote, size, "metal")
        if base in CURRENCIES and quote in CURRENCIES:
            return Instrument(name, base, quote, size, "fx")
    return None


class InstrumentTable:
    """Instruments by canonical symbol: listed ones first, then (if `guess`) the name's guess."""

    def __init__(self, instruments: Iterable[Instrument] = (), *, guess: bool = True) -> None:
        self._table: dict[str, Instrument] = {i.symbol: i for i in instruments}
        self._guess = guess

    @classmethod
    def from_dict(
        cls, mapping: Mapping[str, InstrumentSpec | Mapping[str, Any]], *, guess: bool = True
    ) -> InstrumentTable:
        """From `{symbol: {"base", "quote", "contract_size", "asset_class", "margin_rate"}}`."""
        instruments = []
        for symbol, spec in mapping.items():
            model = spec if isinstance(spec, InstrumentSpec) else InstrumentSpec.model_validate(spec)
            instruments.append(model.build(symbol))
        return cls(instruments, guess=guess)

    def add(self, instrument: Instrument) -> None:
        self._table[instrument.symbol] = instrument

    def instrument(self, symbol: str) -> Instrument:
        found = self._table.get(symbol)
        if found is not None:
            return found
        if self._guess:
            guessed = guess_instrument(symbol)
            if guessed is not None:
                self._table[symbol] = guessed
                return guessed
        raise UnknownInstrument(symbol)
